//! A member (or key) given twice is refused in every file and value Vakt reads,
//! through the real binary, with the file and line: Cedar-format entity files, a
//! schema in Cedar's JSON format, the access package list, YAML data, the
//! configuration file and `vakt check --context`. Each case also shows that the
//! same input with the member given once is accepted, so the refusal is the
//! duplicate's. (AuthZEN bodies: tests/it/authzen.rs.)

use std::path::Path;
use std::process::{Command, Output};

const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");
const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema");

fn vakt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .output()
        .unwrap()
}

/// What the command printed, on either stream.
fn stderr(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_dir(from: &str, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// A project in Cedar's own entity format, of a type a schema fragment adds,
/// under a team of Vakt's; `parents` given once or twice.
fn cedar_entity(parents_twice: bool) -> String {
    let parents = r#""parents": [{"type": "Vakt::Team", "id": "tk-regnskap-team"}]"#;
    let second = if parents_twice {
        r#", "parents": [{"type": "Vakt::Team", "id": "tk-lonn"}]"#
    } else {
        ""
    };
    format!(
        r#"[
  {{
    "uid": {{"type": "Extra::Project", "id": "p1"}},
    "attrs": {{}},
    {parents}{second}
  }}
]
"#
    )
}

#[test]
fn a_cedar_format_entity_file_with_a_member_twice_is_refused_with_its_file() {
    let schema = tempfile::tempdir().unwrap();
    copy_dir(SCHEMA, schema.path());
    std::fs::write(
        schema.path().join("extra.cedarschema"),
        "namespace Extra {\n  entity Project in [Vakt::Team];\n}\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(WORLD, dir.path());
    let file = dir.path().join("extra.json");
    let args = [
        "validate",
        "--schema",
        schema.path().to_str().unwrap(),
        "--data",
        dir.path().to_str().unwrap(),
    ];
    std::fs::write(&file, cedar_entity(true)).unwrap();
    let o = vakt(&args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("extra.json:") && err.contains("duplicate member \"parents\""),
        "{err}"
    );
    std::fs::write(&file, cedar_entity(false)).unwrap();
    let o = vakt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_json_schema_and_the_package_list_with_a_member_twice_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(SCHEMA, dir.path());
    let packages = std::fs::read_to_string(dir.path().join("access-packages.json")).unwrap();
    let twice = packages.replacen("{", "{\"packages\": [],", 1);
    assert_ne!(twice, packages);
    std::fs::write(dir.path().join("access-packages.json"), &twice).unwrap();
    let o = vakt(&["validate", "--schema", dir.path().to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("access-packages.json") && err.contains("duplicate member \"packages\""),
        "{err}"
    );
    std::fs::write(dir.path().join("access-packages.json"), &packages).unwrap();

    // A schema fragment in Cedar's JSON format adds a type; given twice, its
    // `memberOfTypes` is refused.
    let fragment = |twice: bool| {
        let extra = if twice {
            r#", "memberOfTypes": []"#
        } else {
            ""
        };
        format!(
            r#"{{"Extra": {{"entityTypes": {{"Project": {{"memberOfTypes": ["Vakt::Team"]{extra}, "shape": {{"type": "Record", "attributes": {{}}}}}}}}, "actions": {{}}}}}}"#
        )
    };
    let f = dir.path().join("extra.cedarschema.json");
    std::fs::write(&f, fragment(true)).unwrap();
    let o = vakt(&["validate", "--schema", dir.path().to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("extra.cedarschema.json:1:")
            && err.contains("duplicate member \"memberOfTypes\""),
        "{err}"
    );
    std::fs::write(&f, fragment(false)).unwrap();
    let o = vakt(&["validate", "--schema", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn yaml_data_with_a_key_twice_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(WORLD, dir.path());
    let f = dir.path().join("employees.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    let twice = text.replacen(
        "    active: true\n",
        "    active: false\n    active: true\n",
        1,
    );
    assert_ne!(twice, text);
    std::fs::write(&f, twice).unwrap();
    let o = vakt(&["validate", "--data", dir.path().to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("employees.yaml:") && err.contains("duplicate entry with key \"active\""),
        "{err}"
    );
}

#[test]
fn the_configuration_file_with_a_key_twice_is_refused_with_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vakt.toml");
    std::fs::write(&f, "max-in-flight = 10\nmax-in-flight = 20\n").unwrap();
    let o = vakt(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains("vakt.toml:2:"), "{}", stderr(&o));
    std::fs::write(&f, "max-in-flight = 20\n").unwrap();
    let o = vakt(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_check_context_with_a_member_twice_is_refused() {
    let base = [
        "check",
        "--employee",
        "kari",
        "--system-user",
        "tk-regnskap",
        "--client",
        "310015156",
        "--package",
        "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet",
        "--context",
    ];
    let mut args = base.to_vec();
    args.push(r#"{"authenticated": false, "authenticated": true}"#);
    let o = vakt(&args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("duplicate member \"authenticated\""),
        "{}",
        stderr(&o)
    );
    let mut args = base.to_vec();
    args.push(r#"{"authenticated": true}"#);
    let o = vakt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}
