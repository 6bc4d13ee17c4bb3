//! Every input a fuzz target was given to keep (`fuzz/regressions/<target>/`: each
//! crash found, once fixed) and every seed (`fuzz/seeds/<target>/`) runs through
//! the same entry point as the target, so a fixed crash stays fixed without
//! cargo-fuzz. `scripts/fuzz` runs the targets themselves.

use std::path::Path;

/// A fuzz target's entry point.
type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 5] = [
    ("request", vakt::fuzz::request),
    ("data_file", vakt::fuzz::data_file),
    ("policy_or_schema", vakt::fuzz::policy_or_schema),
    ("decision_log", vakt::fuzz::decision_log),
    ("config_or_properties", vakt::fuzz::config_or_properties),
];

fn inputs(kind: &str, target: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != ".keep"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_kept_input_and_seed_runs_without_a_panic() {
    let mut ran = 0;
    for (target, run) in TARGETS {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "fuzz/seeds/{target} has no seed");
        for path in seeds.into_iter().chain(inputs("regressions", target)) {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
            ran += 1;
        }
    }
    assert!(ran >= 10, "{ran}");
}
