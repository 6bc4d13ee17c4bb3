//! Editor and shell support through the real binary: the JSON Schemas in schemas/
//! are what `vakt schema` prints; they accept what Vakt ships (the example worlds,
//! the shipped suites, vakt.example.toml with its commented-out settings and
//! binding tables, the examples in docs/ and deploy/) and refuse files that Vakt
//! refuses; the binding tables' schemas name the keys their readers take, with
//! their defaults; the completion scripts and manual pages name the commands and
//! flags.
//!
//! `VAKT_BLESS=1 cargo test --test it schemas::` rewrites schemas/ from the current
//! binary instead of comparing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The configuration file's binding tables (`serve::binding::TABLES`): objects
/// (and `route` an array of them) in the configuration schema.
const TABLES: [&str; 5] = [
    "maskinporten",
    "altinn",
    "identity_provider",
    "envoy",
    "route",
];

/// `vakt schema WHICH` and the file in schemas/ that holds its output.
const SCHEMAS: [(&str, &str); 3] = [
    ("data", "vakt-data.schema.json"),
    ("suite", "vakt-suite.schema.json"),
    ("config", "vakt-config.schema.json"),
];

fn vakt(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vakt"));
    c.args(args);
    // Settings from the environment of whoever runs the tests must not leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("VAKT_") {
            c.env_remove(k);
        }
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn schema(which: &str) -> Value {
    let file = SCHEMAS.iter().find(|(w, _)| *w == which).unwrap().1;
    let text = std::fs::read_to_string(format!("{ROOT}/schemas/{file}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn validator(which: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&schema(which)).unwrap()
}

/// Every place where `instance` breaks the schema.
fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

fn toml_json(text: &str) -> Value {
    toml::from_str(text).unwrap()
}

fn files_in(dir: &str, ends: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(format!("{ROOT}/{dir}"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            ends.iter().any(|e| n.ends_with(e))
        })
        .collect();
    out.sort();
    out
}

fn read_value(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).unwrap()
    } else {
        yaml(&text)
    }
}

/// The body of the first ```yaml block after `heading` in `doc` (a path from the
/// root, such as `docs/data.md`).
fn doc_yaml_after(doc: &str, heading: &str) -> String {
    let readme = std::fs::read_to_string(format!("{ROOT}/{doc}")).unwrap();
    let at = readme.find(heading).unwrap() + heading.len();
    let open = at + readme[at..].find("```yaml\n").unwrap() + "```yaml\n".len();
    let close = open + readme[open..].find("```").unwrap();
    readme[open..close].to_owned()
}

#[test]
fn the_committed_schemas_are_what_vakt_schema_prints() {
    for (which, file) in SCHEMAS {
        let out = vakt(&["schema", which]);
        assert!(out.status.success(), "{}", text(&out));
        let printed = String::from_utf8(out.stdout).unwrap();
        let path = format!("{ROOT}/schemas/{file}");
        if std::env::var_os("VAKT_BLESS").is_some() {
            std::fs::write(&path, &printed).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == printed,
            "schemas/{file} differs from `vakt schema {which}`; run VAKT_BLESS=1 cargo test --test it schemas::"
        );
        // Each is a schema of the draft it names, as editors will read it.
        let v: Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
        jsonschema::draft7::meta::validate(&v).unwrap();
    }
}

#[test]
fn the_shipped_data_files_are_valid() {
    let v = validator("data");
    let world = files_in("examples/world", &[".yaml", ".json"]);
    assert!(world.len() >= 4, "{world:?}");
    for path in world {
        let e = errors(&v, &read_value(&path));
        assert!(e.is_empty(), "{}: {e:#?}", path.display());
    }
    // examples/altinn-world holds Altinn's own shapes, which the schema does not
    // describe, and Vakt's own records (teams, employees) in the compact format.
    let sections = ["organizations", "systemUsers", "teams", "employees"];
    let mut compact = 0;
    for path in files_in("examples/altinn-world", &[".yaml", ".json"]) {
        let value = read_value(&path);
        let is_compact = value
            .as_object()
            .is_some_and(|o| o.keys().all(|k| sections.contains(&k.as_str())));
        if is_compact {
            compact += 1;
            let e = errors(&v, &value);
            assert!(e.is_empty(), "{}: {e:#?}", path.display());
        }
    }
    assert!(compact >= 2, "the compact files of examples/altinn-world");
    // The example of the format in docs/data.md.
    let e = errors(
        &v,
        &yaml(&doc_yaml_after("docs/data.md", "\n## Data files\n")),
    );
    assert!(e.is_empty(), "docs/data.md's data file: {e:#?}");
}

#[test]
fn the_shipped_suites_are_valid() {
    let v = validator("suite");
    let suites = files_in("policies/tests", &["_test.yaml", "_test.yml"]);
    assert!(suites.len() >= 4, "{suites:?}");
    for path in suites {
        let e = errors(&v, &read_value(&path));
        assert!(e.is_empty(), "{}: {e:#?}", path.display());
    }
    // The example in docs/policies.md, with its world as a path and (commented
    // out) inline.
    let example = doc_yaml_after("docs/policies.md", "\n## Policy test suites\n");
    let e = errors(&v, &yaml(&example));
    assert!(e.is_empty(), "docs/policies.md's suite: {e:#?}");
    let inline = yaml(
        "world:\n  organizations: [{orgNumber: \"310001015\", name: Tall og Kontroll AS}]\n  employees: []\ncases: []\n",
    );
    assert_eq!(errors(&v, &inline), Vec::<String>::new());
}

#[test]
fn the_example_configuration_is_valid_set_and_commented_out() {
    let v = validator("config");
    let example = std::fs::read_to_string(format!("{ROOT}/vakt.example.toml")).unwrap();
    let e = errors(&v, &toml_json(&example));
    assert!(e.is_empty(), "vakt.example.toml: {e:#?}");
    // Its commented-out settings, uncommented.
    let uncommented: String = example
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let uncommented = toml_json(&uncommented);
    assert!(uncommented.as_object().unwrap().len() > 10, "{uncommented}");
    let e = errors(&v, &uncommented);
    assert!(e.is_empty(), "vakt.example.toml uncommented: {e:#?}");
}

/// The schema's top-level keys are the sections the loader reads: the loader names
/// them when it refuses another.
#[test]
fn the_data_schema_has_the_loaders_sections() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.json"), r#"{"staff": []}"#).unwrap();
    let out = vakt(&["validate", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    let expected = said
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{said}"));
    let loader: Vec<&str> = expected
        .lines()
        .next()
        .unwrap()
        .split('`')
        .skip(1)
        .step_by(2)
        .collect();
    let data = schema("data");
    let keys: Vec<&str> = data["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, loader);
    assert_eq!(data["additionalProperties"], false);
}

/// Every setting vakt.example.toml documents, and nothing else, is in the
/// configuration schema, and so is every binding table, each of which the
/// example shows commented out.
#[test]
fn the_config_schema_has_every_setting() {
    let example = std::fs::read_to_string(format!("{ROOT}/vakt.example.toml")).unwrap();
    let mut documented: Vec<&str> = example
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    documented.sort();
    documented.dedup();
    let config = schema("config");
    let properties = config["properties"].as_object().unwrap();
    let mut keys: Vec<&str> = properties
        .keys()
        .map(String::as_str)
        .filter(|k| !TABLES.contains(k))
        .collect();
    keys.sort();
    assert_eq!(keys, documented);
    assert!(!keys.contains(&"config") && !keys.contains(&"help"));
    for table in TABLES {
        let kind = &properties[table]["type"];
        if table == "route" {
            assert_eq!(*kind, "array");
            assert_eq!(properties[table]["items"]["type"], "object");
            assert!(
                example.contains("\n#[[route]]\n"),
                "vakt.example.toml shows no [[route]]"
            );
        } else {
            assert_eq!(*kind, "object", "{table}");
            assert!(
                example.contains(&format!("\n#[{table}]\n")),
                "vakt.example.toml shows no [{table}]"
            );
        }
    }
}

/// vakt.example.toml's commented-out binding tables, uncommented: from
/// `#[maskinporten]` to the end, each line without its first `#`.
fn example_tables() -> String {
    let example = std::fs::read_to_string(format!("{ROOT}/vakt.example.toml")).unwrap();
    let at = example
        .find("\n#[maskinporten]\n")
        .expect("vakt.example.toml shows [maskinporten]");
    example[at + 1..]
        .lines()
        .map(|l| {
            let l = l
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("not commented out: {l:?}"));
            format!("{l}\n")
        })
        .collect()
}

/// The binding tables vakt.example.toml shows are valid by the schema, and
/// `vakt config check` accepts them with a key file where they say.
#[test]
fn the_example_binding_tables_are_valid_and_accepted() {
    let tables = example_tables();
    let value = toml_json(&tables);
    for table in TABLES {
        assert!(value.get(table).is_some(), "no [{table}] in:\n{tables}");
    }
    let e = errors(&validator("config"), &value);
    assert!(e.is_empty(), "vakt.example.toml's tables: {e:#?}");
    let dir = tempfile::tempdir().unwrap();
    let key = crate::common::maskinporten::write_private(
        dir.path(),
        "maskinporten.key",
        &crate::common::maskinporten::key(1).pkcs8_pem,
    );
    let config = tables.replace("/etc/vakt/maskinporten.key", key.to_str().unwrap());
    assert_ne!(config, tables, "the example names its key file");
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, &config).unwrap();
    let out = vakt(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}\n{config}", text(&out));
}

/// The body of every ```toml block in `doc` (a path from the root).
fn doc_toml_blocks(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("{ROOT}/{doc}")).unwrap();
    text.split("```toml\n")
        .skip(1)
        .map(|b| b[..b.find("```").unwrap()].to_owned())
        .collect()
}

/// The configurations docs/maskinporten.md, docs/envoy.md and the egress
/// gateway (deploy/kubernetes/egress/vakt.toml) show are valid by the schema.
#[test]
fn the_documented_binding_tables_are_valid() {
    let v = validator("config");
    let mut shown = Vec::new();
    for doc in ["docs/maskinporten.md", "docs/envoy.md"] {
        let blocks = doc_toml_blocks(doc);
        assert!(!blocks.is_empty(), "{doc} shows no configuration");
        for (i, b) in blocks.into_iter().enumerate() {
            shown.push((format!("{doc}, block {i}"), b));
        }
    }
    let egress = "deploy/kubernetes/egress/vakt.toml";
    shown.push((
        egress.to_owned(),
        std::fs::read_to_string(format!("{ROOT}/{egress}")).unwrap(),
    ));
    let mut seen = std::collections::BTreeSet::new();
    for (name, text) in &shown {
        let value = toml_json(text);
        seen.extend(value.as_object().unwrap().keys().cloned());
        let e = errors(&v, &value);
        assert!(e.is_empty(), "{name}: {e:#?}\n{text}");
    }
    for table in ["maskinporten", "altinn", "envoy", "route"] {
        assert!(seen.contains(table), "no example shows [{table}]: {seen:?}");
    }
}

/// The property names of `schema` (an object schema).
fn property_names(schema: &Value) -> Vec<String> {
    schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The binding tables' schemas name the keys their readers take: every key the
/// schema names is one the reader knows (and a made-up one is refused by both);
/// `[envoy]`, `[[route]]` and a route's `client`, read with serde, name theirs
/// when they refuse one, and the schema names exactly those; and the schema's
/// defaults for `[maskinporten]` are the ones `vakt config show` prints.
#[test]
fn the_binding_table_schemas_name_the_readers_keys() {
    let config = schema("config");
    let p = &config["properties"];
    let v = validator("config");
    // Every key of each table set, and one more no reader knows. Values of the
    // wrong kind are fine: only "unknown key" matters here.
    let mut file = String::new();
    for table in ["maskinporten", "altinn", "identity_provider"] {
        file.push_str(&format!("[{table}]\n"));
        for key in property_names(&p[table]) {
            if key != "scopes" {
                file.push_str(&format!("{key} = 1\n"));
            }
        }
        file.push_str("colour = 1\n");
    }
    file.push_str("[envoy]\ncolour = 1\n[[route]]\ncolour = 1\n");
    file.push_str("[[route]]\nhost = \"altinn.no\"\nmethods = [\"GET\"]\npath = \"/{p}\"\npackage = \"a-ordning\"\nclient = { path = \"p\", colour = 1 }\ntoken = \"maskinporten\"\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, &file).unwrap();
    let out = vakt(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let said = text(&out);
    for table in ["maskinporten", "altinn", "identity_provider"] {
        assert!(
            said.contains(&format!("{table}.colour: unknown key")),
            "{table}: {said}"
        );
        for key in property_names(&p[table]) {
            assert!(
                !said.contains(&format!("{table}.{key}: unknown key")),
                "the schema names {table}.{key}, which the reader does not know: {said}"
            );
        }
    }
    // serde's refusal lists the fields: "unknown field `colour`, expected one of `a`, `b`".
    let expected = |at: &str| -> Vec<String> {
        let line = said
            .lines()
            .find(|l| l.contains(at) && l.contains("unknown field `colour`"))
            .unwrap_or_else(|| panic!("no {at:?} refusing colour in {said}"));
        let list = line.split("expected one of ").nth(1).unwrap();
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let route = &p["route"]["items"];
    assert_eq!(property_names(&p["envoy"]), expected(": envoy: "));
    assert_eq!(property_names(route), expected(": route[0]: "));
    assert_eq!(
        property_names(&route["properties"]["client"]),
        expected(": route[1]: ")
    );
    // And the schema refuses the made-up key in each.
    for bad in [
        "[maskinporten]\ncolour = 1\n",
        "[altinn]\ncolour = 1\n",
        "[identity_provider]\ncolour = 1\n",
        "[envoy]\ncolour = 1\n",
        "[[route]]\ncolour = 1\n",
    ] {
        assert!(!errors(&v, &toml_json(bad)).is_empty(), "{bad}");
    }

    // [maskinporten]'s defaults as `vakt config show` prints them for a file
    // that leaves them out.
    let tables = example_tables();
    let key = crate::common::maskinporten::write_private(
        dir.path(),
        "maskinporten.key",
        &crate::common::maskinporten::key(1).pkcs8_pem,
    );
    let good = tables.replace("/etc/vakt/maskinporten.key", key.to_str().unwrap());
    std::fs::write(&path, &good).unwrap();
    let out = vakt(&["config", "show", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    let mut compared = 0;
    for (key, item) in p["maskinporten"]["properties"].as_object().unwrap() {
        let Some(default) = item.get("default") else {
            continue;
        };
        let line = format!("# {key} = {}  # default", toml_value(default));
        assert!(shown.contains(&line), "{line:?} not in {shown}");
        compared += 1;
    }
    assert!(compared >= 8, "{compared}");
}

/// A JSON scalar as TOML writes it.
fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Copies examples/world into a directory of its own.
fn world_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files_in("examples/world", &[".yaml"]) {
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    dir
}

/// One change to examples/world: the schema and `vakt validate` both accept the
/// world before it and both refuse it after, `vakt validate` naming `names`.
fn data_refused(file: &str, from: &str, to: &str, names: &str) {
    let v = validator("data");
    let dir = world_copy();
    let path = dir.path().join(file);
    let good = std::fs::read_to_string(&path).unwrap();
    assert_eq!(errors(&v, &yaml(&good)), Vec::<String>::new());
    let out = vakt(&["validate", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    assert!(good.contains(from), "{file} has no {from:?}");
    let bad = good.replacen(from, to, 1);
    std::fs::write(&path, &bad).unwrap();
    assert!(
        !errors(&v, &yaml(&bad)).is_empty(),
        "the schema accepts {to:?} in {file}"
    );
    let out = vakt(&["validate", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(names), "{}", text(&out));
}

#[test]
fn a_bad_data_file_is_refused_by_the_schema_as_by_vakt() {
    // A misspelt field of Vakt's own records.
    data_refused(
        "employees.yaml",
        "    active: true",
        "    activ: true",
        "activ",
    );
    // A value outside the enumeration.
    data_refused("employees.yaml", "kind: person", "kind: robot", "robot");
    data_refused(
        "teams.yaml",
        "clients: all",
        "clients: everyone",
        "everyone",
    );
    // An unknown section.
    data_refused("employees.yaml", "\nemployees:", "\nstaff:", "staff");
    // An org number as a YAML number, not a string.
    data_refused(
        "employees.yaml",
        "organization: \"310001015\"",
        "organization: 310001015",
        "organization",
    );
}

#[test]
fn a_bad_suite_is_refused_by_the_schema_as_by_vakt() {
    let v = validator("suite");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules_test.yaml");
    let shipped =
        std::fs::read_to_string(format!("{ROOT}/policies/tests/rules_test.yaml")).unwrap();
    let good = shipped.replacen(
        "world: ../../examples/world",
        &format!("world: {ROOT}/examples/world"),
        1,
    );
    assert_ne!(good, shipped);
    std::fs::write(&path, &good).unwrap();
    assert_eq!(errors(&v, &yaml(&good)), Vec::<String>::new());
    let out = vakt(&["test", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    for (from, to) in [
        ("    systemUser: tk-regnskap", "    systemuser: tk-regnskap"),
        ("    expect: allow", "    expect: permit"),
        ("cases:", "case:"),
    ] {
        let bad = good.replacen(from, to, 1);
        assert_ne!(bad, good);
        std::fs::write(&path, &bad).unwrap();
        assert!(
            !errors(&v, &yaml(&bad)).is_empty(),
            "the schema accepts {to:?}"
        );
        let out = vakt(&["test", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{to:?}: {}", text(&out));
    }
}

#[test]
fn a_bad_configuration_is_refused_by_the_schema_as_by_vakt() {
    let v = validator("config");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        vakt(&["config", "check", path.to_str().unwrap()])
    };
    let good = "max-in-flight = 5\nlisten-unix-mode = \"600\"\nreverse-queries = true\ndecision-log = [\"stdout\"]\nlog-format = \"text\"\n";
    assert_eq!(errors(&v, &toml_json(good)), Vec::<String>::new());
    let out = check(good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    for bad in [
        "max-inflight = 5\n",
        "max-in-flight = -1\n",
        "max-in-flight = \"many\"\n",
        "reverse-queries = \"yes\"\n",
        "log-format = \"jsonl\"\n",
        "decision-log = [[\"stdout\"]]\n",
        "[serve]\nlisten = \"127.0.0.1:1\"\n",
        "[envoy]\nshadow = \"yes\"\n",
        "[envoy]\nemployee_header = \"employee\"\n",
        "[envoy]\nmax_body_bytes = 0\n",
        "[altinn]\nbase = \"https://platform.altinn.no\"\n",
        "[maskinporten]\nissuer = \"https://test.maskinporten.no/\"\nalgorithm = \"ES256\"\n",
        "[maskinporten.scopes]\na-ordning = []\n",
        "[identity_provider]\naudiences = \"vakt\"\n",
        "[[route]]\nhost = \"altinn.no\"\nmethods = [\"GET\"]\npath = \"/{p}\"\npackage = \"a-ordning\"\nclient = { path = \"p\" }\ntoken = \"id-porten\"\n",
        "[[route]]\nhost = \"altinn.no\"\nmethods = [\"GET\"]\npath = \"/{p}\"\npackage = \"a-ordning\"\nclient = { path = \"p\", query = \"q\" }\ntoken = \"altinn\"\n",
    ] {
        assert!(
            !errors(&v, &toml_json(bad)).is_empty(),
            "the schema accepts {bad:?}"
        );
        let out = check(bad);
        assert_eq!(out.status.code(), Some(78), "{bad:?}: {}", text(&out));
    }
}

#[test]
fn completions_name_the_commands_and_flags() {
    let out = vakt(&["completions", "bash"]);
    assert!(out.status.success(), "{}", text(&out));
    let bash = String::from_utf8(out.stdout).unwrap();
    assert!(
        bash.contains("serve") && bash.contains("--decision-log"),
        "{bash}"
    );
    assert!(bash.contains("complete -F"), "not a bash completion script");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = vakt(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("decision-log") && script.contains("max-buffered-request-bytes"),
            "{shell}: {script}"
        );
    }
    let out = vakt(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("possible values"), "{}", text(&out));
}

#[test]
fn man_pages_document_every_command() {
    // roff writes a dash as `\-`.
    let plain = |s: &str| s.replace("\\-", "-");
    let out = vakt(&["man"]);
    assert!(out.status.success(), "{}", text(&out));
    let page = plain(&String::from_utf8(out.stdout).unwrap());
    assert!(page.contains(".TH vakt 1"), "{page}");
    assert!(page.contains("serve"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let out = vakt(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8(out.stdout).unwrap();
    for name in [
        "vakt.1",
        "vakt-serve.1",
        "vakt-audit-verify.1",
        "vakt-config-check.1",
    ] {
        let path = dir.path().join(name);
        assert!(path.is_file(), "no {name} in {listed}");
        assert!(
            listed.contains(path.to_str().unwrap()),
            "{name} not listed: {listed}"
        );
    }
    assert!(!dir.path().join("vakt-help.1").exists());
    let serve = plain(&std::fs::read_to_string(dir.path().join("vakt-serve.1")).unwrap());
    assert!(serve.contains(".TH vakt-serve 1"), "{serve}");
    // Documented in its options, not only named in the synopsis.
    let options = serve.split(".SH OPTIONS").nth(1).unwrap_or_default();
    assert!(
        options.contains("--max-buffered-request-bytes\\fR \\fI<BYTES>")
            && options.contains("Most request bytes all calls together may hold"),
        "{serve}"
    );
    assert!(serve.contains("VAKT_MAX_BUFFERED_REQUEST_BYTES"), "{serve}");

    let out = vakt(&["man", "--out", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent/dir"), "{}", text(&out));
}

/// The editor settings in docs/editors.md are valid JSON and name the schemas
/// that exist, and its modeline names the suite schema by a path that works from
/// policies/tests/.
#[test]
fn the_readme_editor_settings_name_the_schemas() {
    let doc = std::fs::read_to_string(format!("{ROOT}/docs/editors.md")).unwrap();
    assert!(doc.starts_with("# Editor and shell support\n"), "{doc}");
    let section = &doc[..];
    let open = section.find("```json\n").unwrap() + "```json\n".len();
    let close = open + section[open..].find("```").unwrap();
    let settings: Value = serde_json::from_str(&section[open..close]).unwrap();
    let yaml_schemas = settings["yaml.schemas"].as_object().unwrap();
    assert!(yaml_schemas.contains_key("./schemas/vakt-data.schema.json"));
    assert!(yaml_schemas.contains_key("./schemas/vakt-suite.schema.json"));
    assert_eq!(
        settings["json.schemas"][0]["url"],
        "./schemas/vakt-data.schema.json"
    );
    let toml = settings["evenBetterToml.schema.associations"]
        .as_object()
        .unwrap();
    assert!(toml.values().all(|v| v
        .as_str()
        .unwrap()
        .ends_with("/schemas/vakt-config.schema.json")));
    for (_, file) in SCHEMAS {
        assert!(section.contains(&format!("schemas/{file}")), "{file}");
    }
    let modeline = "# yaml-language-server: $schema=../../schemas/vakt-suite.schema.json";
    assert!(section.contains(modeline));
    let target = Path::new(ROOT).join("policies/tests/../../schemas/vakt-suite.schema.json");
    assert!(target.is_file(), "{}", target.display());
}
