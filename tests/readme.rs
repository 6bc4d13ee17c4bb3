//! The README tells the truth: its printed client output is what the client prints
//! against the embedded default, its policy example keeps the shipped suites green
//! and does what the text says, and the recorded decision log it points CI at
//! verifies and replays unchanged.
//!
//! `VAKT_BLESS=1 cargo test --test readme` rewrites the README's client output and
//! `examples/decisions.jsonl` from the current binary instead of comparing.

mod common;
use common::*;

#[path = "../examples/client.rs"]
mod client;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const DECISIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/decisions.jsonl");

fn bless() -> bool {
    std::env::var_os("VAKT_BLESS").is_some()
}

/// Every UUID replaced by a fixed token: decision ids differ on every run.
fn without_uuids(s: &str) -> String {
    let b = s.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    'scan: while i < b.len() {
        let mut j = i;
        for (k, n) in shape.iter().enumerate() {
            if j + n > b.len() || !b[j..j + n].iter().all(u8::is_ascii_hexdigit) {
                out.push(s[i..].chars().next().unwrap());
                i += s[i..].chars().next().unwrap().len_utf8();
                continue 'scan;
            }
            j += n;
            if k < 4 {
                if b.get(j) != Some(&b'-') {
                    out.push(s[i..].chars().next().unwrap());
                    i += s[i..].chars().next().unwrap().len_utf8();
                    continue 'scan;
                }
                j += 1;
            }
        }
        out.push_str("<uuid>");
        i = j;
    }
    out
}

/// The body of the first fenced block after the line containing `marker`, and its
/// byte range in `text`.
fn block_after(text: &str, marker: &str) -> (String, std::ops::Range<usize>) {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"))
        + marker.len()
        - 1;
    let open = at + text[at..].find("\n```").expect("a fenced block follows") + 1;
    let body = open + text[open..].find('\n').unwrap() + 1;
    let close = body + text[body..].find("```").expect("the block is closed");
    (text[body..close].to_owned(), body..close)
}

#[tokio::test]
async fn the_client_example_prints_what_the_readme_shows() {
    let s = start(default_snapshot()).await;
    let printed = client::run(format!("http://{}", s.addr)).await.unwrap();
    let readme = std::fs::read_to_string(README).unwrap();
    let (shown, range) = block_after(&readme, "cargo run --example client\n```\n\n");
    if bless() {
        let mut new = readme.clone();
        new.replace_range(range, &printed);
        std::fs::write(README, new).unwrap();
        return;
    }
    assert_eq!(
        without_uuids(&shown),
        without_uuids(&printed),
        "the README's client output is stale; run VAKT_BLESS=1 cargo test --test readme"
    );
}

#[test]
fn the_readme_policy_example_keeps_the_suites_green_and_does_what_it_says() {
    let readme = std::fs::read_to_string(README).unwrap();
    let (policy, _) = block_after(&readme, "### Changing policies");
    assert!(policy.contains("@id("), "{policy}");
    let mut sources = vakt::snapshot::Sources::embedded();
    sources.policies.push(vakt::problem::SourceFile {
        name: "README example.cedar".into(),
        text: policy,
    });
    let report = vakt::suite::run(&vakt::suite::builtin(), &sources);
    assert_eq!(
        report.failed(),
        0,
        "{}",
        vakt::suite::render_pretty(&report, false)
    );
    assert!(report.passed() > 50);
    // What the text says: a person who signed in without MFA is denied; a caller
    // that says nothing about MFA is not affected.
    let snap = vakt::snapshot::Snapshot::build(&sources).unwrap();
    let ask = |mfa: Option<bool>| {
        let raw = vakt::decide::RawRequest {
            employee_id: "kari".into(),
            system_user_id: "tk-regnskap".into(),
            client_org_number: "310015156".into(),
            access_package: REGNSKAP.into(),
            action: String::new(),
            context: mfa.map(|m| serde_json::json!({ "mfa": m }).as_object().unwrap().clone()),
        };
        let q = vakt::decide::Query::check(&snap, raw, "").unwrap();
        vakt::decide::decide(&snap, &q)
    };
    assert!(ask(None).allowed);
    assert!(ask(Some(true)).allowed);
    let denied = ask(Some(false));
    assert!(!denied.allowed);
    assert_eq!(denied.reasons[0].policy_id, "person-without-mfa");
}

/// The calls recorded in examples/decisions.jsonl: the README client's, and a few
/// more so that every kind of deny appears.
async fn record_example_decisions(path: &std::path::Path) {
    let spec = format!("file:{}", path.display()).parse().unwrap();
    let (log, writers) =
        vakt::decision_log::DecisionLog::open(&[spec], &Default::default()).unwrap();
    let s = start_with(default_snapshot(), log, 10).await;
    client::run(format!("http://{}", s.addr)).await.unwrap();
    let mut c = s.client.clone();
    for (e, su, client, pkg) in [
        ("ola", "tk-regnskap", "310017175", REGNSKAP),
        ("per", "tk-regnskap", "310015156", REGNSKAP),
        ("kari", "nm-egen", "310005053", REGNSKAP),
    ] {
        c.authorize(request(e, su, client, pkg)).await.unwrap();
    }
    drop((c, s));
    writers.finish().await;
}

#[tokio::test]
async fn the_recorded_decision_log_verifies_and_replays_unchanged() {
    if bless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        record_example_decisions(&path).await;
        std::fs::copy(&path, DECISIONS).unwrap();
        return;
    }
    let text = std::fs::read_to_string(DECISIONS).unwrap();
    let files = vec![(DECISIONS.to_owned(), text.clone())];
    let verified = vakt::decision_log::verify::verify(&files, &Default::default())
        .expect("examples/decisions.jsonl is an intact chain");
    assert!(verified.records >= 7);
    let snap = default_snapshot();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            v["revision"], snap.revision,
            "examples/decisions.jsonl was recorded on another revision; run VAKT_BLESS=1 cargo test --test readme"
        );
    }
    let report = vakt::replay::replay(DECISIONS, &text, &snap);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.flips.is_empty(), "{:?}", report.flips);
    assert!(report.replayed >= 6);
}

/// The data-file example in "Data files" is a world Vakt loads as it stands.
#[test]
fn the_data_file_example_loads() {
    let text = std::fs::read_to_string(README).unwrap();
    let start = text
        .find("```yaml\norganizations:            # from the Entity Register")
        .expect("the data-file example")
        + "```yaml\n".len();
    let end = start + text[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.yaml"), &text[start..end]).unwrap();
    let src = vakt::snapshot::Sources::read(&vakt::snapshot::SourcePaths {
        data: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let snap = vakt::snapshot::Snapshot::build(&src).unwrap_or_else(|p| panic!("{p}"));
    assert_eq!(snap.world.counts().employees, 1);
}
