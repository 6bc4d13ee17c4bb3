//! Loading a data directory as it is read (`Snapshot::load_keyed`, what `vakt
//! serve` does): the same world, record keys, hashes and revision as the full load
//! (`Sources::read` then `Snapshot::build_keyed`) for every layout, and for data
//! with a problem the very same problems, each naming its file and line. (That
//! the streamed path itself reads the valid layouts, rather than the full load it
//! falls back on, is `world::load`'s unit test.)

use std::path::Path;
use vakt::rules::snapshot::{Snapshot, SourcePaths, Sources};

fn paths(dir: &Path) -> SourcePaths {
    SourcePaths {
        data: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

/// Loads `dir` both ways and asserts they agree: the world, each file's keys and
/// hash, and the revision.
fn same_both_ways(dir: &Path) {
    let paths = paths(dir);
    let sources = Sources::read(&paths).unwrap_or_else(|p| panic!("{p}"));
    let (full, keys) = Snapshot::build_keyed(&sources).unwrap_or_else(|p| panic!("{p}"));
    let (streamed, rules, read) = Snapshot::load_keyed(&paths).unwrap_or_else(|p| panic!("{p}"));
    assert!(streamed.world == full.world, "{}", dir.display());
    assert!(full.world.counts().entities() > 0);
    assert_eq!(streamed.revision, full.revision);
    assert_eq!(streamed.data, full.data);
    assert!(rules.data.is_empty(), "the data's texts are not kept");
    assert_eq!(read.len(), sources.data.len());
    for ((f, r), (name, k, cedar)) in sources.data.iter().zip(&read).zip(keys) {
        assert_eq!(r.name, f.name);
        assert_eq!(r.name, name);
        assert_eq!(r.hash, vakt::world::sha256(&f.text), "{name}");
        assert_eq!(r.keys, k, "{name}");
        assert_eq!(r.cedar, cedar, "{name}");
    }
}

#[test]
fn a_streamed_load_gives_the_full_loads_world_in_every_layout() {
    // Generated firms, several a file, and the same world as four section files.
    let firms = tempfile::tempdir().unwrap();
    vakt::tools::gen::write_world(firms.path(), 12, 5, 3).unwrap();
    same_both_ways(firms.path());
    let sections = tempfile::tempdir().unwrap();
    vakt::tools::gen::write_world_sections(sections.path(), 12, 3).unwrap();
    same_both_ways(sections.path());
    // YAML; and Altinn's shapes, where files add to other files' system users
    // (read the full way).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    same_both_ways(&root.join("world"));
    same_both_ways(&root.join("altinn-world"));
    // Entities in Cedar's own format beside the records.
    let cedar = tempfile::tempdir().unwrap();
    vakt::tools::gen::write_world(cedar.path(), 1, 1, 3).unwrap();
    std::fs::write(
        cedar.path().join("entities.json"),
        r#"[{"uid": {"type": "Vakt::Organization", "id": "999999999"}, "attrs": {}, "parents": []}]"#,
    )
    .unwrap();
    match Snapshot::build(&Sources::read(&paths(cedar.path())).unwrap()) {
        // Whatever the full load says of it, the streamed load says the same.
        Ok(_) => same_both_ways(cedar.path()),
        Err(p) => assert_eq!(
            Snapshot::load_keyed(&paths(cedar.path()))
                .err()
                .map(|e| e.to_string()),
            Some(p.to_string())
        ),
    }
}

/// Writes `files` into a new directory and asserts that both loads refuse it with
/// the same problems, each containing every one of `expected`.
fn same_problems(files: &[(&str, &str)], expected: &[&str], max_file_bytes: Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut paths = paths(dir.path());
    if let Some(max) = max_file_bytes {
        paths.max_file_bytes = max;
    }
    let full = Sources::read(&paths)
        .and_then(|s| Snapshot::build(&s))
        .err()
        .expect("the full load refuses it")
        .to_string();
    let streamed = Snapshot::load_keyed(&paths)
        .err()
        .expect("the streamed load refuses it")
        .to_string();
    assert_eq!(streamed, full);
    for e in expected {
        assert!(streamed.contains(e), "{e:?} not in:\n{streamed}");
    }
}

const ORG: &str = r#"{"orgNumber": "310001015", "name": "Tall og Kontroll AS"}"#;

#[test]
fn problems_found_while_streaming_are_reported_with_file_and_line() {
    // An id given in two files: the second is reported, at its line.
    let employee = r#"{"id": "kari", "organization": "310001015", "active": true}"#;
    same_problems(
        &[
            (
                "a.json",
                &format!("{{\"organizations\": [\n{ORG}],\n\"employees\": [\n{employee}]}}"),
            ),
            ("b.json", &format!("{{\"employees\": [\n\n{employee}]}}")),
        ],
        &["b.json", "3:", "id \"kari\" is defined twice"],
        None,
    );
    // A reference to nothing, across section files.
    same_problems(
        &[
            ("organizations.json", &format!("{{\"organizations\": [\n{ORG}\n]}}")),
            (
                "employees.json",
                "{\"employees\": [\n{\"id\": \"kari\", \"organization\": \"310001015\", \"active\": true, \"teams\": [\"nobody\"]}\n]}",
            ),
        ],
        &["employees.json", "2:", "teams[0] \"nobody\" is not a known team"],
        None,
    );
    // A bad field, and a record that does not parse.
    same_problems(
        &[(
            "w.json",
            "{\"organizations\": [\n{\"orgNumber\": \"310001016\"},\n{\"name\": 5}\n]}",
        )],
        &["w.json", "2:", "3:", "orgNumber"],
        None,
    );
    // Not valid JSON.
    same_problems(
        &[(
            "w.json",
            "{\"organizations\": [\n{\"orgNumber\": \"310001015\"\n]}",
        )],
        &["w.json", "not valid JSON"],
        None,
    );
    // Every input still has a limit.
    same_problems(
        &[("w.json", &format!("{{\"organizations\": [\n{ORG}\n]}}"))],
        &["w.json", "--max-file-bytes"],
        Some(16),
    );
}
