//! The decision log through the real server: every field present and typed, no
//! token ever written, durable records survive kill -9 whole, a log that cannot be
//! written fails calls closed, and `vakt audit verify` catches tampering.

use crate::common;
use common::*;
use std::path::Path;
use std::process::Command;
use tonic::Code;
use vakt::decision_log::verify::verify;
use vakt::decision_log::{DecisionLog, LogOptions, Writers};
use vakt::proto::{AuthorizeBatchRequest, ResolveSystemUserRequest};

const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJrYXJpIiwiYXVkIjoiYWx0aW5uIn0.c2lnbmF0dXJlLWJ5dGVz";

fn durable_log(path: &Path) -> (DecisionLog, Writers) {
    open_log(&format!("file:{}", path.display()), &LogOptions::default())
}

/// Opens a decision log with the sinks `specs` names, as `--decision-log` takes them.
fn open_log(specs: &str, opts: &LogOptions) -> (DecisionLog, Writers) {
    let specs: Vec<_> = specs.split(',').map(|s| s.parse().unwrap()).collect();
    DecisionLog::open(&specs, opts).unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("torn or invalid line {l:?}: {e}"))
        })
        .collect()
}

#[tokio::test]
async fn every_field_is_present_and_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let (log, writers) = durable_log(&path);
    let mut s = start_with(default_snapshot(), log, 10).await;
    let mut req = tonic::Request::new(request("kari", "tk-regnskap", "310015156", REGNSKAP));
    req.metadata_mut()
        .insert("x-vakt-caller", "payroll-service".parse().unwrap());
    req.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let allow = s.client.authorize(req).await.unwrap().into_inner();
    let deny = s.ask("per", "tk-regnskap", "310015156", REGNSKAP).await;
    let batch = s
        .client
        .authorize_batch(AuthorizeBatchRequest {
            requests: vec![request("ola", "tk-regnskap", "310017175", REGNSKAP)],
        })
        .await
        .unwrap()
        .into_inner();
    let resolved = s
        .client
        .resolve_system_user(ResolveSystemUserRequest {
            employee_id: "kari".into(),
            client_org_number: "310019194".into(),
            access_package: REGNSKAP.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Durable: every record is on disk before its call is answered.
    let recs = lines(&path);
    assert_eq!(recs.len(), 4);
    let ids: Vec<&str> = recs
        .iter()
        .map(|r| r["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            &allow.decision_id,
            &deny.decision_id,
            &batch.responses[0].decision_id,
            &resolved.decision_id
        ]
    );
    let r = &recs[0];
    assert_eq!(r["seq"], 1);
    assert_eq!(r["prev_hash"], vakt::decision_log::chain::GENESIS);
    let ts = r["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
    assert_eq!(r["call"], "authorize");
    assert_eq!(r["employee_id"], "kari");
    assert_eq!(r["system_user_id"], "tk-regnskap");
    assert_eq!(r["system_user_external_ref"], "tk-regnskap");
    assert_eq!(r["system_user_owner"], "310001015");
    assert_eq!(r["client_org_number"], "310015156");
    assert_eq!(r["access_package"], REGNSKAP);
    assert_eq!(r["action"], "useSystemUser");
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["reasons"][0]["policy_id"], "use-system-user");
    assert!(r["reasons"][0]["message"]
        .as_str()
        .unwrap()
        .contains("kari"));
    assert_eq!(r["revision"], allow.revision);
    assert!(r["evaluation_us"].is_u64());
    assert!(r["caller"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(r["caller"]["service"], "payroll-service");
    assert_eq!(r["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(r["span_id"], "00f067aa0ba902b7");
    assert_eq!(recs[1]["decision"], "deny");
    assert_eq!(recs[1]["reasons"][0]["policy_id"], "employee-deactivated");
    assert_eq!(recs[3]["call"], "resolve_system_user");
    assert_eq!(
        recs[3]["usable_system_users"],
        serde_json::json!(["tk-regnskap", "tk-regnskap-syk"])
    );
    drop((s, writers));
}

#[tokio::test]
async fn a_token_in_any_field_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let (log, writers) = durable_log(&path);
    let mut s = start_with(default_snapshot(), log, 10).await;
    let bearer = format!("Bearer {JWT}");
    for (e, su) in [
        (JWT, "tk-regnskap"),
        ("kari", JWT),
        (bearer.as_str(), bearer.as_str()),
    ] {
        let mut req = tonic::Request::new(request(e, su, "310015156", REGNSKAP));
        req.metadata_mut()
            .insert("x-vakt-caller", JWT.parse().unwrap());
        let r = s.client.authorize(req).await.unwrap().into_inner();
        assert_eq!(r.decision(), vakt::proto::Decision::Deny);
    }
    // Fields that are checked (org number, package, context) refuse a token outright.
    let mut bad = request("kari", "tk-regnskap", JWT, JWT);
    bad.action = JWT.into();
    assert_eq!(
        s.client.authorize(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(!text.contains("eyJ") && !text.contains("Bearer"), "{text}");
    assert!(text.contains("[redacted]"));
    drop((s, writers));
}

#[tokio::test]
async fn a_full_log_fails_calls_closed() {
    // /dev/full accepts the open and refuses every write with ENOSPC.
    let (log, writers) = durable_log(Path::new("/dev/full"));
    let mut s = start_with(default_snapshot(), log, 10).await;
    let err = s
        .client
        .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
        .await
        .expect_err("an ALLOW must not be answered without a record");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("decision log"), "{}", err.message());
    let err = s
        .client
        .authorize_batch(AuthorizeBatchRequest {
            requests: vec![request("kari", "tk-regnskap", "310015156", REGNSKAP)],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    drop((s, writers));
}

#[test]
fn the_server_refuses_to_start_on_an_unwritable_log() {
    let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--decision-log",
            "file:/no/such/dir/decisions.jsonl",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/no/such/dir/decisions.jsonl: cannot open for writing"));
}

#[test]
fn the_server_refuses_a_fifo_as_its_log_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("decisions.jsonl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["serve", "--listen", "127.0.0.1:0", "--decision-log"])
        .arg(format!("file:{}", fifo.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Opening a FIFO for writing would wait for a reader for ever.
    let status = wait_at_most(&mut child, std::time::Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: is a directory, FIFO or socket",
            fifo.display()
        )),
        "{err}"
    );
}

/// Starts `vakt serve` with a durable file log; returns the child and its address.
fn serve_with_log(path: &Path) -> Spawned {
    Spawned::start(
        &["--decision-log", &format!("file:{}", path.display())],
        false,
    )
}

#[test]
fn kill_9_under_load_leaves_whole_lines_and_every_answered_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let mut server = serve_with_log(&path);
    let addr = server.addr.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let answered = rt.block_on(async {
        let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let answered = answered.clone();
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = vakt::proto::authorizer_client::AuthorizerClient::connect(format!(
                    "http://{addr}"
                ))
                .await
                .unwrap();
                // Bounded: at most 400 calls per task; stops at the first failure (the kill).
                for i in 0..400 {
                    let e = if (i + t) % 3 == 0 { "per" } else { "kari" };
                    match c
                        .authorize(request(e, "tk-regnskap", "310015156", REGNSKAP))
                        .await
                    {
                        Ok(r) => answered.lock().unwrap().push(r.into_inner().decision_id),
                        Err(_) => break,
                    }
                }
            }));
        }
        // Kill the server while the calls are in flight.
        eventually(
            std::time::Duration::from_secs(60),
            "300 answered calls",
            || answered.lock().unwrap().len() >= 300,
        )
        .await;
        server.kill9();
        for t in tasks {
            let _ = t.await;
        }
        let v = answered.lock().unwrap().clone();
        v
    });
    assert!(answered.len() >= 300);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "torn last line");
    let recs = lines(&path);
    let logged: std::collections::HashSet<&str> = recs
        .iter()
        .map(|r| r["decision_id"].as_str().unwrap())
        .collect();
    for id in &answered {
        assert!(
            logged.contains(id.as_str()),
            "answered decision {id} is not in the log"
        );
    }
    let files = vec![(path.display().to_string(), text)];
    assert_eq!(
        verify(&files, &Default::default()).unwrap().records as usize,
        recs.len()
    );
}

#[test]
fn audit_verify_catches_tampering_and_a_restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    // Two server runs on the same file: the second continues the chain.
    for _ in 0..2 {
        let server = serve_with_log(&path);
        server.with_client(|mut c| async move {
            for e in ["kari", "per", "ola"] {
                c.authorize(request(e, "tk-regnskap", "310015156", REGNSKAP))
                    .await
                    .unwrap();
            }
        });
        server.stop();
    }
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify"];
        args.extend_from_slice(extra);
        args.push(path.to_str().unwrap());
        Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(&args)
            .output()
            .unwrap()
    };
    let out = verify(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with("ok: 6 records")
            && stdout.contains("consistent with the checkpoint of record seq 6"),
        "{stdout}"
    );

    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let check = |content: String, expect: &str| {
        std::fs::write(&path, content).unwrap();
        let out = verify(&[]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{expect}: {stdout}");
        assert!(stdout.contains(expect), "{expect}: {stdout}");
    };
    let join = |v: Vec<&str>| v.join("\n") + "\n";
    check(
        original.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1),
        "was edited, inserted, deleted or reordered",
    );
    let mut deleted = lines.clone();
    deleted.remove(2);
    check(join(deleted), "expected record seq 3, found seq 4");
    let mut inserted = lines.clone();
    inserted.insert(3, lines[1]);
    check(join(inserted), "expected record seq 4, found seq 2");
    let mut reordered = lines.clone();
    reordered.swap(3, 4);
    check(join(reordered), "expected record seq 4, found seq 5");
    check(join(lines[..5].to_vec()), "the tail was truncated");
    std::fs::write(&path, &original).unwrap();
    assert_eq!(verify(&[]).status.code(), Some(0));
}

#[tokio::test]
async fn context_is_logged_with_named_fields_redacted_and_replays_faithfully() {
    use prost_types::{value::Kind, Struct, Value};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let (log, writers) = open_log(
        &format!("file:{}", path.display()),
        &LogOptions {
            redact: vec!["mfa".to_owned()],
            ..LogOptions::default()
        },
    );
    let mut s = start_with(default_snapshot(), log, 10).await;
    let mut r = request("kari", "tk-regnskap", "310015156", REGNSKAP);
    let ctx = |pairs: &[(&str, bool)]| Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value {
                        kind: Some(Kind::BoolValue(*v)),
                    },
                )
            })
            .collect(),
    };
    r.context = Some(ctx(&[("authenticated", false)]));
    assert_eq!(
        s.client
            .authorize(r.clone())
            .await
            .unwrap()
            .into_inner()
            .decision(),
        vakt::proto::Decision::Deny
    );
    r.context = Some(ctx(&[("authenticated", true), ("mfa", true)]));
    assert_eq!(
        s.client.authorize(r).await.unwrap().into_inner().decision(),
        vakt::proto::Decision::Allow
    );
    let recs = lines(&path);
    assert_eq!(
        recs[0]["context"],
        serde_json::json!({"authenticated": false})
    );
    assert_eq!(
        recs[1]["context"],
        serde_json::json!({"authenticated": true, "mfa": "[redacted]"})
    );

    // Replay re-decides with the logged context: the unauthenticated deny stays a deny;
    // the record with a redacted field cannot be replayed and says so.
    let text = std::fs::read_to_string(&path).unwrap();
    let report = vakt::tools::replay::replay("decisions.jsonl", &text, &default_snapshot());
    assert_eq!(
        (report.replayed, report.unchanged, report.flips.len()),
        (1, 1, 0)
    );
    assert_eq!(recs[1]["redacted"], serde_json::json!(["context.mfa"]));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.skipped, 1);
    assert!(
        report.skipped_lines[0].reason.contains("context.mfa")
            && report.skipped_lines[0]
                .reason
                .contains("cannot be re-decided"),
        "{}",
        report.skipped_lines[0].reason
    );
    drop((s, writers));
}

#[test]
fn rotation_keeps_whole_records_and_one_verifiable_chain_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let log_arg = format!("file:{}", path.display());
    // Two server runs with a small rotation size: many files, one chain.
    for _ in 0..2 {
        let server = Spawned::start(
            &[
                "--decision-log",
                &log_arg,
                "--decision-log-rotate-bytes",
                "3000",
            ],
            false,
        );
        server.with_client(|mut c| async move {
            for i in 0..20 {
                let e = if i % 3 == 0 { "per" } else { "kari" };
                c.authorize(request(e, "tk-regnskap", "310015156", REGNSKAP))
                    .await
                    .unwrap();
            }
        });
        server.stop();
    }
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("decisions.jsonl.") && !n.ends_with("checkpoint")
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected several rotated files, got {files:?}"
    );
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.ends_with('\n')
                && text
                    .lines()
                    .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
    }
    files.push(path.clone());
    let mut args: Vec<String> = vec!["audit".into(), "verify".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with("ok: 40 records") && stdout.contains("checkpoint of record seq 40"),
        "{stdout}"
    );

    // Leaving out a rotated file in the middle breaks the chain.
    let mut gap = args.clone();
    gap.remove(3);
    let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(&gap)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn the_otlp_sink_delivers_chained_records_to_a_receiver() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let (receiver, url) = otlp::start().await;
    let (log, writers) = open_log(&format!("otlp+durable:{url}"), &LogOptions::default());
    let mut s = start_with(default_snapshot(), log, 10).await;
    let mut ids = Vec::new();
    for e in ["kari", "per", "ola"] {
        ids.push(
            s.ask(e, "tk-regnskap", "310015156", REGNSKAP)
                .await
                .decision_id,
        );
    }
    // Durable: each call was answered only after the receiver had its record.
    let got = receiver.0.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    let bodies: Vec<String> = got
        .iter()
        .map(|r| match r.body.as_ref().and_then(|b| b.value.clone()) {
            Some(Any::StringValue(s)) => s,
            other => panic!("unexpected body {other:?}"),
        })
        .collect();
    for (body, id) in bodies.iter().zip(&ids) {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["decision_id"], id.as_str());
    }
    let attr = |r: &opentelemetry_proto::tonic::logs::v1::LogRecord, k: &str| {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(
        attr(&got[1], "decision"),
        Some(Any::StringValue("deny".into()))
    );
    assert_eq!(
        attr(&got[0], "employee_id"),
        Some(Any::StringValue("kari".into()))
    );
    let files = vec![("otlp".to_owned(), bodies.join("\n") + "\n")];
    assert_eq!(verify(&files, &Default::default()).unwrap().records, 3);
    drop(s);
    drop(writers);
}

#[tokio::test]
async fn a_durable_otlp_sink_that_cannot_deliver_fails_calls_closed() {
    // Nothing listens here: a port that was just free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (log, writers) = open_log(
        &format!("otlp+durable:http://127.0.0.1:{port}"),
        &LogOptions::default(),
    );
    let mut s = start_with(default_snapshot(), log, 10).await;
    let err = s
        .client
        .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    drop((s, writers));
}

#[tokio::test]
async fn a_buffered_file_never_blocks_and_counts_what_it_loses() {
    // A full disk: calls are still answered, and the loss is counted.
    let (log, full_writers) = open_log("file+buffered:/dev/full", &LogOptions::default());
    let vakt_log = std::sync::Arc::new(log);
    let mut s = start_with(default_snapshot(), DecisionLog::disabled(), 10).await;
    drop(
        s.client
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap(),
    );
    let rec = vakt::decision_log::DecisionRecord {
        decision_id: "d1",
        timestamp: vakt::decision_log::now_rfc3339(),
        call: "authorize",
        employee_id: "kari",
        system_user_id: None,
        system_user_external_ref: None,
        system_user_owner: None,
        usable_system_users: None,
        client_org_number: "310015156",
        access_package: REGNSKAP,
        action: "useSystemUser",
        decision: "allow",
        reasons: &[],
        revision: "r",
        data_sequence: 1,
        evaluation_us: 1,
        context: None,
        caller: &Default::default(),
        trace: &Default::default(),
        shadow: None,
        path: None,
        token: None,
        envoy: None,
    };
    for _ in 0..5 {
        vakt_log
            .submit(&rec)
            .wait()
            .await
            .expect("a buffered sink never fails the call");
    }
    eventually(
        std::time::Duration::from_secs(10),
        "5 dropped records",
        || vakt_log.dropped() >= 5,
    )
    .await;
    assert_eq!(vakt_log.dropped(), 5);

    // A writable file: the records arrive, chained, without the call waiting for them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let (log, writers) = open_log(
        &format!("file+buffered:{}", path.display()),
        &LogOptions::default(),
    );
    for _ in 0..3 {
        log.submit(&rec).wait().await.unwrap();
    }
    // The writers finish once every handle to their logs is gone.
    drop((log, vakt_log, s));
    writers.finish().await;
    full_writers.finish().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let files = vec![("f".to_owned(), text)];
    assert_eq!(verify(&files, &Default::default()).unwrap().records, 3);
}

#[tokio::test]
async fn the_checkpoint_follows_an_idle_log_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let (log, writers) = durable_log(&path);
    let mut s = start_with(default_snapshot(), log, 10).await;
    let cp_path = vakt::decision_log::checkpoint::checkpoint_path(&path);
    for n in 1..=3u64 {
        s.ask("kari", "tk-regnskap", "310015156", REGNSKAP).await;
        // The sidecar is idle now: the checkpoint must catch up with the record.
        let started = std::time::Instant::now();
        eventually(
            std::time::Duration::from_secs(1),
            "the checkpoint to name the last record",
            || {
                std::fs::read_to_string(&cp_path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .is_some_and(|cp| cp["last_seq"] == n)
            },
        )
        .await;
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
    drop((s, writers));
}
