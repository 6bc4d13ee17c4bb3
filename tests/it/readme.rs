//! The README and the docs it points to tell the truth: the README's printed client
//! output is what the client prints against the embedded default, and its client
//! command reuses the release build; the policy example in docs/policies.md keeps
//! the shipped suites green and does what the text says, and the recorded decision
//! log it points CI at verifies and replays unchanged; the data-file example in
//! docs/data.md loads; the redaction example in docs/decision-log.md runs with the
//! shipped schema and is recorded as shown. Every relative link and `#anchor` in
//! the README, docs/ and the other documents resolves, the README stays short, and
//! docs/architecture.md names every dependency in Cargo.toml.
//!
//! `VAKT_BLESS=1 cargo test --test it readme::` rewrites the README's client output and
//! `examples/decisions.jsonl` from the current binary instead of comparing.

use crate::common;
use common::*;

// client_examples.rs loads the same file for its own comparison.
#[allow(clippy::duplicate_mod)]
#[path = "../../examples/client.rs"]
mod client;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
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
        .unwrap_or_else(|| panic!("the document has no {marker:?}"))
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
    let (shown, range) = block_after(&readme, "cargo run --release --example client\n```\n\n");
    if bless() {
        let mut new = readme.clone();
        new.replace_range(range, &printed);
        std::fs::write(README, new).unwrap();
        return;
    }
    assert_eq!(
        without_uuids(&shown),
        without_uuids(&printed),
        "the README's client output is stale; run VAKT_BLESS=1 cargo test --test it readme::"
    );
}

#[test]
fn the_readme_policy_example_keeps_the_suites_green_and_does_what_it_says() {
    let doc = std::fs::read_to_string(format!("{ROOT}/docs/policies.md")).unwrap();
    let (policy, _) = block_after(&doc, "### Changing policies");
    assert!(policy.contains("@id("), "{policy}");
    let mut sources = vakt::rules::snapshot::Sources::embedded();
    sources.policies.push(vakt::problem::SourceFile {
        name: "README example.cedar".into(),
        text: policy,
    });
    let report = vakt::tools::suite::run(&vakt::tools::suite::builtin(), &sources);
    assert_eq!(
        report.failed(),
        0,
        "{}",
        vakt::tools::suite::render_pretty(&report, false)
    );
    assert!(report.passed() > 50);
    // What the text says: a person who signed in without MFA is denied; a caller
    // that says nothing about MFA is not affected.
    let snap = vakt::rules::snapshot::Snapshot::build(&sources).unwrap();
    let ask = |mfa: Option<bool>| {
        let raw = vakt::decision::RawRequest {
            employee_id: "kari".into(),
            system_user_id: "tk-regnskap".into(),
            client_org_number: "310015156".into(),
            access_package: REGNSKAP.into(),
            action: String::new(),
            context: mfa.map(|m| serde_json::json!({ "mfa": m }).as_object().unwrap().clone()),
        };
        let q = vakt::decision::Query::check(&snap, raw, "").unwrap();
        vakt::decision::decide(&snap, &q)
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
            "examples/decisions.jsonl was recorded on another revision; run VAKT_BLESS=1 cargo test --test it readme::"
        );
    }
    let report = vakt::tools::replay::replay(DECISIONS, &text, &snap);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.flips.is_empty(), "{:?}", report.flips);
    assert!(report.replayed >= 6);
}

/// The data-file example in docs/data.md, "Data files", is a world Vakt loads as it
/// stands.
#[test]
fn the_data_file_example_loads() {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/data.md")).unwrap();
    let start = text
        .find("```yaml\norganizations:            # from the Entity Register")
        .expect("the data-file example")
        + "```yaml\n".len();
    let end = start + text[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.yaml"), &text[start..end]).unwrap();
    let src = vakt::rules::snapshot::Sources::read(&vakt::rules::snapshot::SourcePaths {
        data: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let snap = vakt::rules::snapshot::Snapshot::build(&src).unwrap_or_else(|p| panic!("{p}"));
    assert_eq!(snap.world.counts().employees, 1);
}

/// The quick start's client command reuses the release build the sidecar was
/// just started with, and no document in the repository still gives the form that
/// makes a second, debug build first.
#[test]
fn the_client_example_runs_on_the_release_build() {
    let readme = std::fs::read_to_string(README).unwrap();
    // The quick start's first command builds the release profile.
    assert!(
        readme.contains("```sh\ncargo run --release -- serve "),
        "the quick start no longer starts the sidecar with cargo run --release"
    );
    let (client, _) = block_after(&readme, "With the sidecar running, in another terminal");
    assert_eq!(client.trim(), "cargo run --release --example client");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    let mut dirs = vec![
        root.join("docs"),
        root.join("examples"),
        root.join("deploy"),
        root.join("scripts"),
    ];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !["node_modules", "target", "build", "bin", "obj"].contains(&name.as_str()) {
                    dirs.push(p);
                }
            } else {
                docs.push(p);
            }
        }
    }
    for doc in &docs {
        let Ok(text) = std::fs::read_to_string(doc) else {
            continue;
        };
        assert!(
            !text.contains("cargo run --example client"),
            "{} gives the debug-build command; say cargo run --release --example client",
            doc.display()
        );
    }
    assert!(docs.len() > 10, "{docs:?}");
}

/// A JSON value as a protobuf one.
fn to_proto(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(to_proto).collect(),
        }),
        serde_json::Value::Object(m) => Kind::StructValue(prost_types::Struct {
            fields: m.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The redaction example in docs/decision-log.md, "What is never written": its
/// request is taken by the shipped schema (the attribute it named before, `note`,
/// is refused), and its record has the members the document shows.
#[tokio::test]
async fn the_redaction_example_runs_with_the_shipped_schema_and_is_recorded_as_shown() {
    let readme = std::fs::read_to_string(format!("{ROOT}/docs/decision-log.md")).unwrap();
    assert!(
        readme.contains("For example, with `--decision-log-redact mfa`, this `Authorize` request")
    );
    let (request, _) = block_after(&readme, "For example, with `--decision-log-redact mfa`");
    let (shown, _) = block_after(&readme, "is denied, and recorded with these members");
    let request: serde_json::Value = serde_json::from_str(&request).unwrap();
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let field = |k: &str| request[k].as_str().unwrap().to_owned();
    let context = |c: &serde_json::Value| prost_types::Struct {
        fields: c
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), to_proto(v)))
            .collect(),
    };
    let grpc = vakt::proto::AuthorizeRequest {
        employee_id: field("employee_id"),
        system_user_id: field("system_user_id"),
        client_org_number: field("client_org_number"),
        access_package: field("access_package"),
        context: Some(context(&request["context"])),
        ..Default::default()
    };

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let spec = format!("file:{}", path.display()).parse().unwrap();
    let opts = vakt::decision_log::LogOptions {
        redact: vec!["mfa".into()],
        ..Default::default()
    };
    let (log, writers) = vakt::decision_log::DecisionLog::open(&[spec], &opts).unwrap();
    // The embedded default is the shipped schema/ and policies/.
    let s = start_with(default_snapshot(), log, 10).await;
    let mut c = s.client.clone();
    let answer = c
        .authorize(grpc.clone())
        .await
        .expect("the shipped schema takes the example's context")
        .into_inner();
    assert_eq!(answer.decision(), vakt::proto::Decision::Deny);
    // The attribute the README used to name is not the shipped schema's.
    let mut note = grpc.clone();
    note.context = Some(context(&serde_json::json!({"note": "Bearer abc"})));
    let refused = c.authorize(note).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    drop((c, s));
    writers.finish().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for (k, v) in shown.as_object().unwrap() {
        assert_eq!(&record[k], v, "{k} in {record:#}");
    }
    assert!(!text.contains("eyJ"), "{text}");
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped (hyphens
/// and underscores kept), spaces as hyphens; markup shows only its text.
fn anchor_of(heading: &str) -> String {
    let text = without_link_targets(heading).replace('`', "");
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `[text](target)` as `text`.
fn without_link_targets(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("](") {
        let Some(end) = rest[at..].find(')') else {
            break;
        };
        out.push_str(&rest[..at]);
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    out.replace('[', "")
}

/// A document's lines outside fenced code blocks, with inline code removed, each
/// with its line number.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut kept = String::new();
        for (k, part) in line.split('`').enumerate() {
            if k % 2 == 0 {
                kept.push_str(part);
            }
        }
        out.push((i + 1, kept));
    }
    out
}

/// Every anchor a Markdown file's headings give (a repeated heading gets `-1`,
/// `-2`, ... as on GitHub).
fn anchors(text: &str) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut all = std::collections::HashSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fenced || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor_of(&line[hashes..]);
        let n = seen.entry(base.clone()).or_default();
        all.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    all
}

/// Every relative link in `doc` (and `#anchor`, in it or in another Markdown
/// file) that does not resolve, as "file:line: target: why".
fn broken_links(doc: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(doc).unwrap();
    let dir = doc.parent().unwrap();
    let mut broken = Vec::new();
    for (n, line) in prose_lines(&text) {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else {
                break;
            };
            let target = &after[..end];
            rest = &after[end..];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target, None),
            };
            let file = if path.is_empty() {
                doc.to_path_buf()
            } else {
                dir.join(path)
            };
            let at = format!("{}:{n}: {target}", doc.display());
            if !file.exists() {
                broken.push(format!("{at}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                if file.extension().is_some_and(|e| e == "md") {
                    let target_text = std::fs::read_to_string(&file).unwrap();
                    if !anchors(&target_text).contains(anchor) {
                        broken.push(format!("{at}: no heading gives #{anchor}"));
                    }
                }
            }
        }
    }
    broken
}

/// The documents whose links are checked: the README, every file in docs/, the
/// benchmarks, and the READMEs of deploy/, deploy/kubernetes/ and examples/.
fn documents() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(ROOT);
    let mut docs = vec![
        root.join("README.md"),
        root.join("BENCHMARKS.md"),
        root.join("BENCHMARKS-history.md"),
        root.join("deploy/README.md"),
        root.join("deploy/kubernetes/README.md"),
    ];
    for dir in ["docs", "examples"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|e| e == "md") {
                docs.push(p);
            } else if p.join("README.md").is_file() {
                docs.push(p.join("README.md"));
            }
        }
    }
    docs
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    // The check itself finds a missing file, a missing anchor in another file and
    // in the same one, and passes a good link, an outside one and one in code.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.md"), "# B\n\n## Limits and `flags`\n").unwrap();
    let a = dir.path().join("a.md");
    std::fs::write(
        &a,
        "# A\n\n[ok](b.md#limits-and-flags) [out](https://example.org/x#y) `[code](gone.md)`\n\
         [gone](gone.md) [anchor](b.md#limit) [here](#a) [not here](#b)\n\
         ```\n[fenced](gone.md)\n```\n",
    )
    .unwrap();
    let found = broken_links(&a);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].ends_with(":4: gone.md: no such file"),
        "{found:#?}"
    );
    assert!(
        found[1].ends_with(":4: b.md#limit: no heading gives #limit"),
        "{found:#?}"
    );
    assert!(
        found[2].ends_with(":4: #b: no heading gives #b"),
        "{found:#?}"
    );

    let docs = documents();
    assert!(
        docs.iter().any(|d| d.ends_with("docs/api.md")) && docs.len() >= 12,
        "{docs:#?}"
    );
    for readme in ["deploy/README.md", "deploy/kubernetes/README.md"] {
        assert!(docs.iter().any(|d| d.ends_with(readme)), "{readme}");
    }
    let broken: Vec<String> = docs.iter().flat_map(|d| broken_links(d)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The README is the front page: what Vakt is, the quick start, the API at a
/// glance and links. Everything else lives in docs/.
#[test]
fn the_readme_stays_short_and_links_every_doc() {
    let readme = std::fs::read_to_string(README).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; move the detail to docs/"
    );
    for e in std::fs::read_dir(format!("{ROOT}/docs")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            assert!(
                readme.contains(&format!("](docs/{name}")),
                "README.md does not link docs/{name}"
            );
            let text = std::fs::read_to_string(e.path()).unwrap();
            assert!(text.starts_with("# "), "docs/{name} starts with its title");
        }
    }
}

/// docs/architecture.md gives a reason for every dependency Cargo.toml names.
#[test]
fn the_architecture_doc_names_every_dependency() {
    let manifest: toml::Table = std::fs::read_to_string(format!("{ROOT}/Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let doc = std::fs::read_to_string(format!("{ROOT}/docs/architecture.md")).unwrap();
    let choices = &doc[doc
        .find("\n## Dependency choices\n")
        .expect("docs/architecture.md has a Dependency choices section")..];
    let mut missing = Vec::new();
    let mut named = 0;
    for table in ["dependencies", "build-dependencies", "dev-dependencies"] {
        for name in manifest[table].as_table().unwrap().keys() {
            named += 1;
            if !choices.contains(&format!("`{name}`")) {
                missing.push(format!("{table}: {name}"));
            }
        }
    }
    assert!(named > 50, "{named}");
    assert!(
        missing.is_empty(),
        "docs/architecture.md, \"Dependency choices\", gives no reason for:\n{}",
        missing.join("\n")
    );
}
