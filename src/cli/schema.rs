//! `vakt schema data|suite|config`: JSON Schemas of the compact data files, the
//! policy test suites and `vakt serve`'s configuration file, for editors.
//!
//! Each is made from what reads the file, so it cannot drift from it: the data and
//! suite schemas from the serde types the loaders deserialize into (their
//! `JsonSchema` derives), the configuration schema from `vakt serve`'s own flags,
//! which are what every key of the file is checked with. The configuration
//! file's binding tables (`[maskinporten]`, `[altinn]`, `[identity_provider]`,
//! `[envoy]`, `[[route]]`) are read by hand, so their schemas are written here,
//! with the defaults of the readers' own constructors and constants;
//! tests/it/schemas.rs checks their keys against what the readers accept. They
//! are draft-07, the draft that yaml-language-server, VS Code and Even Better
//! TOML all read.
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
    for name in super::serve::binding::TABLES {
        if let Some(table) = binding_table(name) {
            properties.insert((*name).to_owned(), table);
        }
    }
    json!({
        "$schema": DRAFT,
        "title": "vakt serve configuration file",
        "description": "`vakt serve --config FILE`: each key is a `vakt serve` flag without its dashes. A VAKT_... environment variable overrides the file, and a flag overrides both. The tables [maskinporten] (with [maskinporten.scopes]), [altinn], [identity_provider], [envoy] and [[route]] bind decisions to tokens (docs/maskinporten.md, docs/envoy.md). Unknown keys are errors.",
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    })
}

/// A string key with its description.
fn text(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

/// A duration key (humantime: `"10s"`, `"5m"`, `"1day"`) with its default.
fn duration(description: &str, default: std::time::Duration) -> Value {
    json!({
        "type": "string",
        "description": format!("{description} A duration such as \"10s\"."),
        "default": humantime::format_duration(default).to_string(),
    })
}

/// A header Vakt reads: lower case and `x-vakt-*`, so that Check removes it
/// before the request goes on (`check_vakt_header`).
fn vakt_header(description: &str, default: Option<&str>) -> Value {
    let mut v = json!({
        "type": "string",
        "pattern": "^x-vakt-[a-z0-9-]+$",
        "description": format!("{description} Lower case, starting with x-vakt-, so that it is removed before the request goes on."),
    });
    if let Some(d) = default {
        v["default"] = json!(d);
    }
    v
}

/// The schema of one of the binding tables (`serve::binding::TABLES`), as its
/// reader reads it: `MaskinportenConfig::from_toml`,
/// `IdentityProviderConfig::from_toml`, `EnvoyConfig::from_toml` (its `Raw*`
/// types) and `serve::binding`'s `[altinn]`.
fn binding_table(name: &str) -> Option<Value> {
    use crate::maskinporten::{IdentityProviderConfig, KeySource, MaskinportenConfig};
    use crate::server::envoy;
    // A scope as `Scope::parse` takes it: 1 to 256 printable ASCII characters,
    // no space, quote or backslash.
    let scope = json!({"type": "string", "pattern": "^[!#-\\[\\]-~]{1,256}$"});
    let table = match name {
        "maskinporten" => {
            let d = MaskinportenConfig::new(
                "",
                "",
                KeySource::Rsa {
                    key_file: Default::default(),
                    kid: String::new(),
                },
            );
            json!({
                "type": "object",
                "description": "Vakt's Maskinporten client: Vakt alone holds the key, and hands out a system user's token only with an ALLOW (docs/maskinporten.md). Needed by [altinn], [envoy] and [[route]].",
                "properties": {
                    "issuer": text("Maskinporten's issuer: the grant's aud, and where its metadata is (https://test.maskinporten.no/, https://maskinporten.no/). https; plain http only to loopback."),
                    "token_endpoint": text("The token endpoint (default: from the issuer's /.well-known/oauth-authorization-server)."),
                    "audience": text("The grant's aud (default: the issuer)."),
                    "client_id": text("Your Maskinporten integration's client id: the grant's iss."),
                    "key_file": text("The RSA private key (PKCS#1 or PKCS#8 PEM), readable by its owner only (chmod 600)."),
                    "kid": text("The key id the key is registered under with Maskinporten. Give kid or certificate_chain_file, not both."),
                    "certificate_chain_file": text("A business certificate (virksomhetssertifikat) chain, PEM, leaf first, whose key is key_file; the grant carries it as x5c. Give kid or certificate_chain_file, not both."),
                    "algorithm": {
                        "type": "string",
                        "enum": ["RS256", "RS384", "RS512"],
                        "default": "RS256",
                        "description": "The grant's signing algorithm (Maskinporten takes no other).",
                    },
                    "assertion_lifetime": duration("The grant's exp - iat, at most 120 s.", d.assertion_lifetime),
                    "extra_ca_file": text("PEM CA certificates trusted besides the built-in roots (a TLS-inspecting proxy)."),
                    "connect_timeout": duration("How long connecting to Maskinporten may take.", d.connect_timeout),
                    "request_timeout": duration("How long a whole exchange with Maskinporten may take.", d.request_timeout),
                    "cache_capacity": {
                        "type": "integer",
                        "minimum": 1,
                        "default": d.cache_capacity,
                        "description": "Tokens cached, per (system user, scopes, externalRef); the oldest goes first.",
                    },
                    "refresh_before": duration("A cached token with less than this left is fetched again; at most 60 s.", d.refresh_before),
                    "jwks_max_age": duration("How long Maskinporten's JWKS is kept before it is fetched again.", d.jwks_max_age),
                    "jwks_min_refresh": duration("The least time between JWKS fetches for an unknown kid.", d.jwks_min_refresh),
                    "scopes": {
                        "type": "object",
                        "description": "[maskinporten.scopes]: access package (its URN, or its short name such as a-ordning) = the scopes its tokens may carry. A package not listed gets no token; a package the schema does not know is an error.",
                        "maxProperties": 1024,
                        "additionalProperties": {
                            "type": "array",
                            "items": scope.clone(),
                            "minItems": 1,
                            "maxItems": 64,
                        },
                    },
                },
                "required": ["issuer", "client_id", "key_file"],
                "oneOf": [
                    {"required": ["kid"]},
                    {"required": ["certificate_chain_file"]},
                ],
                "additionalProperties": false,
            })
        }
        "altinn" => json!({
            "type": "object",
            "description": "Altinn's token exchange, for routes whose token is \"altinn\": {base_url}/authentication/api/v1/exchange/maskinporten. Needs [maskinporten].",
            "properties": {
                "base_url": text("Altinn's platform URL (https://platform.tt02.altinn.no, https://platform.altinn.no): https (plain http only to loopback), without query, fragment or credentials."),
                "sync": {
                    "type": "object",
                    "description": "`vakt altinn sync` (docs/altinn-sync.md); vakt serve ignores it.",
                    "properties": {
                        "systems": {
                            "type": "array",
                            "items": {"type": "string", "minLength": 1, "maxLength": 255},
                            "minItems": 1,
                            "maxItems": 1000,
                            "description": "The vendor's systems in Altinn's system register, whose system users are read.",
                        },
                        "client_admins": {
                            "type": "object",
                            "additionalProperties": {"type": "string", "format": "uuid"},
                            "maxProperties": 1000,
                            "description": "Customer org number -> the id of the system user it approved with klientadministrator, for its complete client list with roles.",
                        },
                        "max_removal_share": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "default": crate::tools::sync::DEFAULT_MAX_REMOVAL_SHARE,
                            "description": "A sync that would remove more than this share of the links or system users is refused unless --confirm-removals.",
                        },
                    },
                    "required": ["systems"],
                    "additionalProperties": false,
                },
            },
            "required": ["base_url"],
            "additionalProperties": false,
        }),
        "identity_provider" => {
            let d = IdentityProviderConfig::new("", "", Vec::new());
            json!({
                "type": "object",
                "description": "The end-user system's identity provider, whose JWTs name the employee behind an Envoy Check ([envoy] employee_jwt_header, which this table needs and which needs it): signature against its JWKS, issuer, audience, expiry.",
                "properties": {
                    "issuer": text("The iss every token must carry."),
                    "jwks_uri": text("Where its keys are (jwks_uri of its OpenID metadata): https, plain http only to loopback."),
                    "audiences": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 1,
                        "maxItems": 32,
                        "description": "The accepted aud values; a token must carry one of them.",
                    },
                    "employee_claim": {
                        "type": "string",
                        "default": d.employee_claim,
                        "description": "The claim that holds the employee id.",
                    },
                    "extra_ca_file": text("PEM CA certificates trusted for jwks_uri besides the built-in roots."),
                    "jwks_max_age": duration("How long fetched keys are used before they are fetched again, 1 minute to 7 days.", d.jwks_max_age),
                    "leeway": duration("The clock skew allowed on exp and nbf, at most 5 minutes.", d.leeway),
                },
                "required": ["issuer", "jwks_uri", "audiences"],
                "additionalProperties": false,
            })
        }
        "envoy" => json!({
            "type": "object",
            "description": "Envoy's ext_authz Check (docs/envoy.md): where the employee and the system user are named, Altinn's hosts, bodies, and shadow mode. Needs [maskinporten].",
            "properties": {
                "employee_header": vakt_header("The header the application names the employee in. Give this or employee_jwt_header, not both.", Some(envoy::DEFAULT_EMPLOYEE_HEADER)),
                "employee_jwt_header": vakt_header("Instead of employee_header: the header holding the employee's JWT (optionally \"Bearer <jwt>\"), verified against [identity_provider].", None),
                "system_user_header": vakt_header("The header that may name the system user; not the employee's header.", Some(envoy::DEFAULT_SYSTEM_USER_HEADER)),
                "altinn_hosts": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "^(\\*\\.)?[a-z0-9-]+(\\.[a-z0-9-]+)*$"},
                    "default": envoy::DEFAULT_ALTINN_HOSTS,
                    "description": "Altinn's hosts: a lower-case host name, or *. and one. A request no route matches is vakt:envoy-no-route to these, vakt:envoy-not-altinn to any other host.",
                },
                "max_body_bytes": {
                    "type": "integer",
                    "minimum": 1,
                    // MAX_BODY_BYTES_LIMIT in src/server/envoy/config.rs.
                    "maximum": 16 * 1024 * 1024,
                    "default": envoy::DEFAULT_MAX_BODY_BYTES,
                    "description": "The largest request body read for a client, in bytes.",
                },
                "shadow": {
                    "type": "boolean",
                    "default": false,
                    "description": "Shadow mode for rollout: a request that would be denied goes on (with its token when one can be had) and is recorded as a shadow deny.",
                },
            },
            "not": {"required": ["employee_header", "employee_jwt_header"]},
            "additionalProperties": false,
        }),
        "route" => json!({
            "type": "array",
            "description": "[[route]]: the route table of Envoy's Check, tried in file order; the first whose host, method and path match decides the request (docs/envoy.md). Needs [maskinporten].",
            "items": {
                "type": "object",
                "properties": {
                    "name": text("Names the route in decision records and errors; unique (default: route[N], from 0 in file order)."),
                    "host": {
                        "type": "string",
                        "pattern": "^(\\*\\.)?[a-z0-9-]+(\\.[a-z0-9-]+)*$",
                        "description": "A lower-case host name (platform.altinn.no), or *. and one (*.altinn.no: any host below it, not altinn.no itself). No port, no trailing dot.",
                    },
                    "methods": {
                        "type": "array",
                        "items": {"type": "string", "pattern": "^[A-Z]+$"},
                        "minItems": 1,
                        "description": "Upper-case HTTP methods.",
                    },
                    "path": {
                        "type": "string",
                        "pattern": "^/",
                        "description": "A path pattern: literal segments, {capture}, * (one segment), ** (any number, last only).",
                    },
                    "package": text("An access package URN (urn:altinn:accesspackage:a-ordning) or its short name (a-ordning)."),
                    "client": {
                        "type": "object",
                        "description": "Where the client is named: exactly one of path, query and body, and its kind.",
                        "properties": {
                            "path": text("A capture of the path pattern."),
                            "query": text("A query parameter, given exactly once."),
                            "body": {
                                "type": "string",
                                "pattern": "^/",
                                "description": "A JSON pointer (RFC 6901) into a JSON body; needs Envoy's with_request_body.",
                            },
                            "kind": {
                                "type": "string",
                                "enum": ["org-number", "party-id"],
                                "default": "org-number",
                                "description": "org-number: 9 digits with a valid check digit; party-id: an Altinn party id, decided as the organisation whose partyId it is in the data.",
                            },
                        },
                        "oneOf": [
                            {"required": ["path"]},
                            {"required": ["query"]},
                            {"required": ["body"]},
                        ],
                        "additionalProperties": false,
                    },
                    "system_user": text("Always this system user (default: the system-user header's, else the one the employee may use, resolved as ResolveSystemUser)."),
                    "token": {
                        "type": "string",
                        "enum": ["maskinporten", "altinn"],
                        "description": "The token put in authorization on ALLOW: the system user's Maskinporten token, or that token exchanged at Altinn (needs [altinn]).",
                    },
                    "action": text("The Cedar action (default: useSystemUser)."),
                    "scopes": {
                        "type": "array",
                        "items": scope,
                        "description": "The scopes the token is asked for, each allowed for the package by [maskinporten.scopes] (default: every scope it allows the package).",
                    },
                },
                "required": ["host", "methods", "path", "package", "client", "token"],
                "additionalProperties": false,
            },
        }),
        _ => return None,
    };
    Some(table)
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
