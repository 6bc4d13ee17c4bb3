//! The shipped suites in policies/tests/ pass against the shipped policies, through
//! the same runner as `vakt test`, and every policy decides at least one case.

use std::path::PathBuf;
use vakt::snapshot::{SourcePaths, Sources};
use vakt::suite::{discover, render_pretty, run};

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
