//! The configuration file (`vakt serve --config vakt.toml`) and `vakt config
//! check|show`.
//!
//! The file's keys are `vakt serve`'s flags without their dashes (`max-in-flight =
//! 2048`), so one name means one setting everywhere. The file's values become the
//! flags' defaults; a `VAKT_…` environment variable overrides the file, and a flag
//! overrides both. Every key is checked with the flag's own parser before anything
//! starts, and every problem is reported at once, by file, line and key.
//!
//! Its tables (`[maskinporten]`, `[altinn]`, `[identity_provider]`, `[envoy]`,
//! `[[route]]`) are not flags: `serve/binding.rs` reads them, and their problems
//! are reported here with the flags'. Any other table or key is an error.

use crate::problem::line_at;
use clap::{ArgAction, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Exit code for a bad configuration (`EX_CONFIG` from sysexits.h).
pub(super) const EX_CONFIG: u8 = 78;

/// Flags that are not settings: they say where the settings are.
const NOT_SETTINGS: &[&str] = &["help", "config"];

/// One setting from the file: the flag's id and its value(s) as the flag takes them.
pub(super) struct Setting {
    pub id: String,
    values: Vec<String>,
}

/// The configuration file `vakt serve` is to read: `--config FILE` (or
/// `--config=FILE`) among its arguments, or `VAKT_CONFIG`.
pub(super) fn path_for_serve(args: &[OsString]) -> Option<PathBuf> {
    if args.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return None;
    }
    let mut it = args.iter().skip(2);
    while let Some(a) = it.next() {
        let Some(a) = a.to_str() else { continue };
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("VAKT_CONFIG").map(PathBuf::from)
}

/// Reads `path` and checks every key against `serve`'s flags: the settings, or
/// every problem found, each as `file:line: key: what is wrong`.
pub(super) fn read(path: &Path, serve: &Command) -> Result<Vec<Setting>, Vec<String>> {
    let shown = path.display();
    // A regular file of at most 1 MiB: `/dev/zero` or a FIFO is refused at once.
    let text = crate::problem::read_named(path, crate::problem::MAX_SMALL_FILE_BYTES)
        .map_err(|m| vec![m])?;
    let mut settings = read_text(&shown.to_string(), &text, serve)?;
    // The file itself, so that `serve` (and `config check FILE`, which names
    // it without --config) reads its binding tables.
    settings.push(Setting {
        id: "config".into(),
        values: vec![path.to_string_lossy().into_owned()],
    });
    Ok(settings)
}

/// [`read`] on a file's text, named `shown` in problems.
pub(super) fn read_text(
    shown: &str,
    text: &str,
    serve: &Command,
) -> Result<Vec<Setting>, Vec<String>> {
    let table: toml::Spanned<toml::Table> = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_at(text, s.start));
        vec![format!("{shown}:{line}: not TOML: {}", e.message())]
    })?;
    let lines = key_lines(text);
    let mut settings = Vec::new();
    let mut problems: Vec<(usize, String)> = Vec::new();
    // The binding tables are read by their own readers, with the same file:line
    // problems, and reported with the flags'.
    if let Err(found) = super::serve::binding::Tables::from_text(shown, text) {
        problems.extend(found);
    }
    for (key, value) in table.get_ref() {
        if super::serve::binding::TABLES.contains(&key.as_str()) {
            continue;
        }
        let line = lines.get(key.as_str()).copied().unwrap_or(0);
        let problem = |what: String| (line, format!("{shown}:{line}: {key}: {what}"));
        let Some(arg) = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && !NOT_SETTINGS.contains(&key.as_str()))
        else {
            let hint = closest(key, serve)
                .map(|k| format!(" (did you mean {k:?}?)"))
                .unwrap_or_default();
            problems.push(problem(format!(
                "unknown key: not a `vakt serve` setting{hint}"
            )));
            continue;
        };
        let multi = matches!(arg.get_action(), ArgAction::Append);
        let values = match (value, multi) {
            (toml::Value::Array(items), true) => items.iter().map(scalar).collect(),
            (toml::Value::Array(_), false) => Err("takes one value, not a list".to_owned()),
            (v, _) => scalar(v).map(|s| vec![s]),
        };
        let values = match values {
            Ok(v) => v,
            Err(e) => {
                problems.push(problem(e));
                continue;
            }
        };
        if let Err(e) = check_values(arg, &values) {
            problems.push(problem(e));
        } else {
            settings.push(Setting {
                id: arg.get_id().to_string(),
                values,
            });
        }
    }
    if problems.is_empty() {
        Ok(settings)
    } else {
        problems.sort();
        Err(problems.into_iter().map(|(_, p)| p).collect())
    }
}

/// Checks values with the flag's own parser, so a file gets the same check, and
/// the same message, as the command line. (The flag is parsed alone, without its
/// environment variable, so that a bad variable is not reported as the file's.)
fn check_values(arg: &clap::Arg, values: &[String]) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return match values {
            [v] if v == "true" || v == "false" => Ok(()),
            _ => Err("must be true or false".into()),
        };
    }
    let long = arg.get_long().unwrap_or_default();
    let one = Command::new("vakt-serve")
        .no_binary_name(true)
        .arg(arg.clone().env(None::<&'static str>));
    let mut argv = Vec::new();
    for v in values {
        argv.push(format!("--{long}"));
        argv.push(v.clone());
    }
    // clap quotes a value it refuses; a URL's credentials are masked in it.
    one.try_get_matches_from(argv).map(|_| ()).map_err(|e| {
        values
            .iter()
            .fold(clap_message(&e), |m, v| crate::url_secrets::mask_in(&m, v))
    })
}

/// `vakt serve`'s own command with its defaults taken from the settings.
pub(super) fn apply_to_serve(mut serve: Command, settings: Vec<Setting>) -> Command {
    for s in settings {
        serve = serve.mut_arg(s.id, |a| a.default_values(s.values));
    }
    serve
}

/// `cli` with `vakt serve`'s defaults taken from the settings.
pub(super) fn apply(cli: Command, settings: Vec<Setting>) -> Command {
    cli.mut_subcommand("serve", |mut serve| {
        for s in settings {
            serve = serve.mut_arg(s.id, |a| a.default_values(s.values));
        }
        serve
    })
}

/// A TOML scalar as the flag would take it on the command line.
fn scalar(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(_) => Err("a list inside a list".into()),
        toml::Value::Table(_) => Err("a table; settings are plain keys".into()),
    }
}

/// A clap error on one line, without its "error: " prefix and the pointer to
/// `--help`, but with its hints (`[possible values: json, text]`, "a similar
/// value exists"): a bad value in the file gets the help the same flag gets.
pub(super) fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| {
        !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
    });
    let first = lines.next().unwrap_or_default();
    let mut out = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    for hint in lines {
        out.push(' ');
        out.push_str(hint);
    }
    out
}

/// The line on which each key is set, or its table begins, from the spans the
/// TOML parser gives its keys.
fn key_lines(text: &str) -> std::collections::HashMap<String, usize> {
    let Ok(table) = toml::de::DeTable::parse(text) else {
        return Default::default();
    };
    table
        .get_ref()
        .iter()
        .map(|(key, _)| (key.get_ref().to_string(), line_at(text, key.span().start)))
        .collect()
}

/// The setting whose name is nearest to `key`, for a misspelt one.
fn closest<'a>(key: &str, serve: &'a Command) -> Option<&'a str> {
    let normal = key.replace('_', "-");
    serve
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_SETTINGS.contains(l))
        .map(|l| (strsim::levenshtein(&normal, l), l))
        .filter(|(d, l)| *d <= 3.max(l.len() / 4))
        .min()
        .map(|(_, l)| l)
}

/// The effective settings of `vakt serve` as TOML, each with where it came from,
/// secrets masked.
pub(super) fn show(
    serve: &Command,
    matches: &clap::ArgMatches,
    file: Option<&Path>,
    from_file: &[String],
) -> String {
    use clap::parser::ValueSource;
    let mut out = String::new();
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if NOT_SETTINGS.contains(&long) {
            continue;
        }
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|v| {
                v.map(|s| crate::url_secrets::mask_url(&s.to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => format!("--{long}"),
            Some(ValueSource::EnvVariable) => arg
                .get_env()
                .map_or("environment".into(), |e| e.to_string_lossy().into_owned()),
            Some(ValueSource::DefaultValue) => match file {
                Some(f) if from_file.iter().any(|k| k == id) => f.display().to_string(),
                _ => "default".into(),
            },
            _ => "not set".into(),
        };
        let rendered = if matches!(arg.get_action(), ArgAction::Append) {
            let items: Vec<String> = values.iter().map(|v| toml_scalar(v)).collect();
            format!("[{}]", items.join(", "))
        } else if let Some(v) = values.first() {
            toml_scalar(v)
        } else if let Some(shown) = super::telemetry::shown_from_otel(long) {
            out.push_str(&shown);
            continue;
        } else {
            out.push_str(&format!("# {long} = (not set)\n"));
            continue;
        };
        out.push_str(&format!("{long} = {rendered}  # {source}\n"));
    }
    if let Some(f) = file {
        out.push_str(&show_tables(f));
    }
    out
}

/// The binding tables of the file as it gives them, then `[maskinporten]`'s
/// defaults for the keys it leaves out. Paths are shown, never what a file
/// holds; URLs with their credentials masked.
fn show_tables(file: &Path) -> String {
    let Ok(text) = crate::problem::read_named(file, crate::problem::MAX_SMALL_FILE_BYTES) else {
        return String::new();
    };
    let Ok(top) = toml::from_str::<toml::Table>(&text) else {
        return String::new();
    };
    let mut tables = toml::Table::new();
    for name in super::serve::binding::TABLES {
        if let Some(v) = top.get(*name) {
            tables.insert((*name).to_owned(), masked(v.clone()));
        }
    }
    if tables.is_empty() {
        return String::new();
    }
    let mut out = format!("\n# The binding tables, from {}\n", file.display());
    out.push_str(&toml::to_string(&tables).unwrap_or_default());
    if let Some(given) = tables.get("maskinporten").and_then(|m| m.as_table()) {
        let defaults = crate::maskinporten::MaskinportenConfig::new(
            "",
            "",
            crate::maskinporten::KeySource::Rsa {
                key_file: PathBuf::new(),
                kid: String::new(),
            },
        );
        let d = |v: std::time::Duration| humantime::format_duration(v).to_string();
        let shown = [
            ("algorithm", "RS256".to_owned()),
            ("assertion_lifetime", d(defaults.assertion_lifetime)),
            ("connect_timeout", d(defaults.connect_timeout)),
            ("request_timeout", d(defaults.request_timeout)),
            ("refresh_before", d(defaults.refresh_before)),
            ("jwks_max_age", d(defaults.jwks_max_age)),
            ("jwks_min_refresh", d(defaults.jwks_min_refresh)),
        ];
        let mut header = false;
        for (key, value) in shown {
            if given.contains_key(key) {
                continue;
            }
            if !header {
                out.push_str("# [maskinporten] defaults for the keys the file leaves out:\n");
                header = true;
            }
            out.push_str(&format!("# {key} = {value:?}  # default\n"));
        }
        if !given.contains_key("cache_capacity") {
            out.push_str(&format!(
                "# cache_capacity = {}  # default\n",
                defaults.cache_capacity
            ));
        }
    }
    out
}

/// A table's values with URL credentials masked, and anything that looks like
/// key material (a PEM block pasted in place of a path) withheld.
fn masked(v: toml::Value) -> toml::Value {
    match v {
        toml::Value::String(s) if s.contains("-----BEGIN") || s.contains("PRIVATE KEY") => {
            toml::Value::String("(not shown)".into())
        }
        toml::Value::String(s) => toml::Value::String(crate::url_secrets::mask_url(&s)),
        toml::Value::Array(a) => toml::Value::Array(a.into_iter().map(masked).collect()),
        toml::Value::Table(t) => {
            toml::Value::Table(t.into_iter().map(|(k, v)| (k, masked(v))).collect())
        }
        other => other,
    }
}

/// A value as TOML: numbers and booleans bare, everything else quoted.
fn toml_scalar(v: &str) -> String {
    if v == "true" || v == "false" || (v.parse::<i64>().is_ok() && !v.starts_with('+')) {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_keys_are_near() {
        let serve = Command::new("serve")
            .arg(clap::Arg::new("a").long("max-in-flight"))
            .arg(clap::Arg::new("b").long("listen"));
        assert_eq!(closest("max_inflight", &serve), Some("max-in-flight"));
        assert_eq!(closest("lisen", &serve), Some("listen"));
        // Too far from every setting: no guess rather than a wrong one.
        assert_eq!(closest("policy-directory", &serve), None);
    }
}
