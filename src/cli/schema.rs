//! `vakt schema data|suite|config`: JSON Schemas of the compact data files, the
//! policy test suites and `vakt serve`'s configuration file, for editors.
//!
//! Each is made from what reads the file, so it cannot drift from it: the data and
//! suite schemas from the serde types the loaders deserialize into (their
//! `JsonSchema` derives), the configuration schema from `vakt serve`'s own flags,
//! which are what every key of the file is checked with. They are draft-07, the
//! draft that yaml-language-server, VS Code and Even Better TOML all read.
//! The committed copies in `schemas/` are compared with this output by
//! tests/it/schemas.rs.

use crate::tools::suite::SuiteDoc;
use crate::world::{EmployeeRecord, OrganizationRecord, SystemUserRecord, TeamRecord};
use clap::{ArgAction, Command, ValueEnum};
use serde_json::{json, Map, Value};
use std::io::Write as _;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct SchemaArgs {
    /// Which file's schema to print
    #[arg(value_enum)]
    which: Which,
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    /// A data file in the compact format (JSON or YAML)
    Data,
    /// A policy test suite (*_test.yaml)
    Suite,
    /// `vakt serve`'s configuration file (TOML)
    Config,
}

/// The draft every schema here is written in.
const DRAFT: &str = "http://json-schema.org/draft-07/schema#";

/// A data file in the compact format. The loader reads the sections by hand (it
/// keeps each record's position), so this type only describes them; its section
/// names are checked against the loader's by tests/it/schemas.rs.
#[derive(schemars::JsonSchema)]
#[schemars(
    deny_unknown_fields,
    rename_all = "camelCase",
    title = "Vakt data file (compact format)",
    description = "Any of the four sections, each a list of records; records may be split across files in any way. Altinn's own response shapes and lists of Cedar entities are read too, but are not described here."
)]
// Never built: only its schema is used.
#[allow(dead_code)]
struct DataFile {
    /// Organisations, as the Entity Register describes them.
    #[schemars(default)]
    organizations: Vec<OrganizationRecord>,
    /// System users, as Altinn's system-user API returns them.
    #[schemars(default)]
    system_users: Vec<SystemUserRecord>,
    #[schemars(default)]
    teams: Vec<TeamRecord>,
    #[schemars(default)]
    employees: Vec<EmployeeRecord>,
}

fn generator() -> schemars::SchemaGenerator {
    schemars::generate::SchemaSettings::draft07().into_generator()
}

/// The schema of a compact data file.
pub(super) fn data() -> Value {
    generator().into_root_schema_for::<DataFile>().to_value()
}

/// The schema of a policy test suite.
pub(super) fn suite() -> Value {
    let mut generator = generator();
    // The suite reads `world` as any JSON value and looks at it itself: a path, or
    // a data file inline.
    let data = generator.subschema_for::<DataFile>().to_value();
    let mut root = generator.into_root_schema_for::<SuiteDoc>().to_value();
    if let Some(root) = root.as_object_mut() {
        root.insert("title".into(), json!("Vakt policy test suite"));
        root.insert(
            "description".into(),
            json!("Run by `vakt test`: a world and the cases decided in it."),
        );
        if let Some(world) = root
            .get_mut("properties")
            .and_then(|p| p.get_mut("world"))
            .and_then(Value::as_object_mut)
        {
            world.retain(|k, _| k == "description");
            world.insert(
                "anyOf".into(),
                json!([
                    {"type": "string", "description": "A data directory, relative to the suite's file."},
                    data,
                ]),
            );
        }
    }
    root
}

/// The schema of `vakt serve`'s configuration file: one key per setting, each
/// typed by the flag it sets.
pub(super) fn config(serve: &Command) -> Value {
    let mut properties = Map::new();
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if !is_setting(serve, long) {
            continue;
        }
        let mut item = Map::new();
        let integer = is_unsigned(arg);
        let flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let values: Vec<_> = arg
            .get_possible_values()
            .into_iter()
            .filter(|v| !v.is_hide_set())
            .collect();
        let mut description = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        if flag {
            item.insert("type".into(), json!("boolean"));
        } else if !values.is_empty() {
            item.insert("type".into(), json!("string"));
            item.insert(
                "enum".into(),
                values.iter().map(|v| json!(v.get_name())).collect(),
            );
            for v in &values {
                if let Some(help) = v.get_help() {
                    description.push_str(&format!("\n- {}: {help}", v.get_name()));
                }
            }
        } else if let Some(max) = integer {
            // The file's value is handed to the flag as text, so `"1000"` is as
            // good as `1000`.
            item.insert("type".into(), json!(["integer", "string"]));
            item.insert("minimum".into(), json!(0));
            item.insert("maximum".into(), json!(max));
            item.insert("pattern".into(), json!("^[0-9]+$"));
        } else {
            item.insert("type".into(), json!("string"));
        }
        let typed = |v: &str| -> Value {
            if flag {
                json!(v == "true")
            } else if let (Some(_), Ok(n)) = (integer, v.parse::<u64>()) {
                json!(n)
            } else {
                json!(v)
            }
        };
        let mut defaults: Vec<Value> = arg
            .get_default_values()
            .iter()
            .map(|v| typed(&v.to_string_lossy()))
            .collect();
        if flag && defaults.is_empty() {
            // clap gives a switch its default only when the command is built.
            defaults.push(json!(matches!(arg.get_action(), ArgAction::SetFalse)));
        }
        let list = matches!(arg.get_action(), ArgAction::Append);
        let mut schema = if list {
            // One value or a list of them, as the flag may be given once or repeated.
            let item = Value::Object(item);
            let mut m = Map::new();
            m.insert(
                "anyOf".into(),
                json!([item, {"type": "array", "items": item}]),
            );
            m
        } else {
            item
        };
        if let Some(env) = arg.get_env() {
            description.push_str(&format!(
                "\n\nFlag --{long}, environment {}.",
                env.to_string_lossy()
            ));
        }
        schema.insert("description".into(), json!(description.trim()));
        match (list, defaults.as_slice()) {
            (_, []) => {}
            (false, [one]) => {
                schema.insert("default".into(), one.clone());
            }
            _ => {
                schema.insert("default".into(), Value::Array(defaults));
            }
        }
        properties.insert(long.to_owned(), Value::Object(schema));
    }
    json!({
        "$schema": DRAFT,
        "title": "vakt serve configuration file",
        "description": "`vakt serve --config FILE`: each key is a `vakt serve` flag without its dashes. A VAKT_... environment variable overrides the file, and a flag overrides both. Unknown keys are errors.",
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    })
}

/// Whether `key` is a setting of the file: whatever the file's reader does not
/// call an unknown key (the flags that say where the settings are, such as
/// `--config`, are not settings).
fn is_setting(serve: &Command, key: &str) -> bool {
    match super::config::read_text("schema", &format!("{key} = \"\"\n"), serve) {
        Ok(_) => true,
        Err(problems) => !problems.iter().any(|p| p.contains("unknown key")),
    }
}

/// The largest value of a flag that takes an unsigned integer, or `None` for any
/// other flag.
fn is_unsigned(arg: &clap::Arg) -> Option<u64> {
    use std::any::TypeId;
    let t = arg.get_value_parser().type_id();
    [
        (TypeId::of::<u8>(), u64::from(u8::MAX)),
        (TypeId::of::<u16>(), u64::from(u16::MAX)),
        (TypeId::of::<u32>(), u64::from(u32::MAX)),
        (TypeId::of::<u64>(), u64::MAX),
        (TypeId::of::<usize>(), usize::MAX as u64),
    ]
    .into_iter()
    .find(|(id, _)| t == *id)
    .map(|(_, max)| max)
}

/// The schema with `$schema`, `title` and `description` first, where a reader of
/// the file looks for them.
fn heading_first(schema: Value) -> Value {
    let Value::Object(mut rest) = schema else {
        return schema;
    };
    let mut out = Map::new();
    for key in ["$schema", "title", "description"] {
        if let Some(v) = rest.shift_remove(key) {
            out.insert(key.into(), v);
        }
    }
    out.extend(rest);
    Value::Object(out)
}

/// `vakt schema`.
pub(super) fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = match args.which {
        Which::Data => data(),
        Which::Suite => suite(),
        Which::Config => {
            let command = <super::Cli as clap::CommandFactory>::command();
            let serve = command
                .find_subcommand("serve")
                .expect("serve is a command");
            config(serve)
        }
    };
    let mut text = serde_json::to_string_pretty(&heading_first(schema))?;
    text.push('\n');
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
