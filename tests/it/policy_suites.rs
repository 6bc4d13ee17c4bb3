//! The shipped suites in policies/tests/ pass against the shipped policies, through
//! the same runner as `vakt test`, and every policy decides at least one case.

use std::path::PathBuf;
use vakt::rules::snapshot::{SourcePaths, Sources};
use vakt::tools::suite::{discover, render_pretty, run};

#[test]
fn shipped_policy_suites_pass_with_full_coverage() {
    let base = Sources::read(&SourcePaths {
        policies: Some(PathBuf::from("policies")),
        schema: Some(PathBuf::from("schema")),
        data: None,
        ..Default::default()
    })
    .unwrap();
    let files = discover(&[PathBuf::from("policies/tests")]).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    let report = run(&files, &base);
    let text = render_pretty(&report, true);
    assert_eq!(report.failed(), 0, "{text}");
    assert!(report.cases.len() >= 75, "{text}");
    assert_eq!(report.coverage.len(), 14, "{text}");
    assert_eq!(report.coverage_percent(), 100.0, "{text}");
}

/// A suite of three cases, one with a misspelt key: the other two run and are
/// counted, and the misspelt one is one failure naming the file, its line, the
/// case and the key's nearest spelling at the case's level. A misspelt top-level
/// key is named at its level too, and the cases still run.
#[test]
fn a_typo_in_one_case_fails_that_case_alone_by_line() {
    let base = Sources::embedded();
    let dir = tempfile::tempdir().unwrap();
    let world = std::fs::canonicalize("examples/world").unwrap();
    let path = dir.path().join("typo_test.yaml");
    let pkg = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
    let suite = format!(
        r#"name: three cases, one misspelt
world: {world}
cases:
  - name: kari is allowed
    employee: kari
    systemUser: tk-regnskap
    client: "310015156"
    package: {pkg}
    expect: allow
  - name: per is denied
    employee: per
    systemUser: tk-regnskap
    client: "310015156"
    package: {pkg}
    expct: deny
  - name: kari is denied for a client no longer linked
    employee: kari
    systemUser: tk-regnskap
    client: "310020206"
    package: {pkg}
    expect: deny
"#,
        world = world.display()
    );
    std::fs::write(&path, &suite).unwrap();
    let report = run(&discover(std::slice::from_ref(&path)).unwrap(), &base);
    let text = render_pretty(&report, false);
    assert_eq!(report.cases.len(), 2, "{text}");
    assert_eq!((report.passed(), report.failed()), (2, 1), "{text}");
    assert!(text.ends_with("2 passed, 1 failed\n"), "{text}");
    let errors: Vec<String> = report.suite_errors.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        errors,
        [format!(
            "{}:15: case 2 \"per is denied\": unknown key `expct` (did you mean `expect`?)",
            path.display()
        )],
        "{text}"
    );
    assert!(!text.contains("expected keys name, world, cases"), "{text}");

    // A misspelt top-level key: named with the top level's keys; the cases run.
    let fixed = suite.replace("expct:", "expect:");
    std::fs::write(&path, format!("nmae: extra\n{fixed}")).unwrap();
    let report = run(&discover(std::slice::from_ref(&path)).unwrap(), &base);
    let text = render_pretty(&report, false);
    assert_eq!((report.passed(), report.failed()), (3, 1), "{text}");
    assert_eq!(
        report.suite_errors[0].to_string(),
        format!(
            "{}:1: unknown key `nmae` (did you mean `name`?)",
            path.display()
        )
    );

    // A case missing a field, and one of the wrong type: each one failure, by line.
    let broken = fixed
        .replace("    client: \"310020206\"\n", "")
        .replace("expect: allow", "expect: maybe");
    std::fs::write(&path, broken).unwrap();
    let report = run(&discover(std::slice::from_ref(&path)).unwrap(), &base);
    let text = render_pretty(&report, false);
    assert_eq!((report.passed(), report.failed()), (1, 2), "{text}");
    let errors: Vec<String> = report.suite_errors.iter().map(|p| p.to_string()).collect();
    assert!(
        errors[0].starts_with(&format!(
            "{}:9: case 1 \"kari is allowed\": expect: unknown variant `maybe`",
            path.display()
        )),
        "{errors:?}"
    );
    assert_eq!(
        errors[1],
        format!(
            "{}:16: case 3 \"kari is denied for a client no longer linked\": missing field `client`",
            path.display()
        )
    );
}
