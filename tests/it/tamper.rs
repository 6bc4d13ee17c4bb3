//! Tamper evidence and faults of the durable decision log, through the real binary:
//! every kind of tampering is caught by `vakt audit verify --public-key` and named;
//! a restart checks the log against its signed checkpoint and refuses one that does
//! not match unless told, recording the override; a torn last line is cut with a
//! WARN; a write past a real file-size limit (RLIMIT_FSIZE) never leaves a partial
//! record, fails calls closed and turns health NOT_SERVING until a write succeeds.
//! Records that were on file past the last checkpoint when Vakt continued a log
//! are never attested by a later signature; `vakt audit verify` says what it read
//! and fails on a set that does not begin at the log's first record; a checkpoint
//! that could not be written is written once it can be, without a restart.

use crate::common;
use common::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tonic::Code;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A key pair made by `vakt audit keygen` in `dir`: (private, public).
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    let out = vakt(&["audit", "keygen", "--out", prefix.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let (key, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the private key must be readable only by its owner"
    );
    // It never overwrites a key by accident.
    let again = vakt(&["audit", "keygen", "--out", prefix.to_str().unwrap()]);
    assert!(!again.status.success());
    (key, public)
}

fn serve_signed(log: &Path, key: &Path, extra: &[&str]) -> Spawned {
    let sink = format!("file:{}", log.display());
    let mut args = vec![
        "--decision-log",
        &sink,
        "--decision-log-signing-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Spawned::start(&args, false)
}

fn calls(s: &Spawned, employees: &[&'static str]) {
    let employees = employees.to_vec();
    s.with_client(|mut c| async move {
        for e in employees {
            c.authorize(request(e, "tk-regnskap", "310015156", REGNSKAP))
                .await
                .unwrap();
        }
    });
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Rewrites the chain fields of `lines` from the first on, as an attacker who can
/// edit the log (but not sign) would after changing it.
fn rechain(lines: &[String]) -> Vec<String> {
    let mut prev = "0".repeat(64);
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(l).unwrap();
            v.insert("seq".into(), (i as u64 + 1).into());
            v.insert("prev_hash".into(), prev.clone().into());
            let line = serde_json::to_string(&v).unwrap();
            prev = sha256_hex(line.as_bytes());
            line
        })
        .collect()
}

#[test]
fn every_kind_of_tampering_is_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "audit");
    let (_, other_public) = keygen(dir.path(), "other");
    let log = dir.path().join("decisions.jsonl");
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["kari", "per", "ola", "kari"]);
    // The copies of signed checkpoints in the diagnostic log so far: the last
    // record each covers.
    let copied = |s: &Spawned| -> Vec<u64> {
        s.diagnostics()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["fields"]["checkpoint"].as_str().map(str::to_owned))
            .filter_map(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
            .filter_map(|c| c["last_seq"].as_u64())
            .collect()
    };
    // Idle until the sink has signed a checkpoint of the first four records...
    until(
        Duration::from_secs(10),
        "a checkpoint of the first four records",
        || copied(&s).contains(&4),
    );
    calls(&s, &["per", "kari", "ola", "kari"]);
    // ...and one of all eight, whose copy shows the first one's to be older (the
    // rollback case below).
    until(
        Duration::from_secs(10),
        "a checkpoint of all eight records",
        || copied(&s).contains(&8),
    );
    let diagnostics = s.diagnostics();
    s.stop();
    // The copies of the checkpoints in the diagnostic log, as an operator keeps them.
    let copies = dir.path().join("diagnostics.jsonl");
    std::fs::write(&copies, diagnostics.join("\n") + "\n").unwrap();
    let cp_path = dir.path().join("decisions.jsonl.checkpoint");
    let checkpoint = std::fs::read_to_string(&cp_path).unwrap();
    let cp: serde_json::Value = serde_json::from_str(&checkpoint).unwrap();
    assert_eq!(
        (cp["first_seq"].as_u64(), cp["last_seq"].as_u64()),
        (Some(1), Some(8)),
        "the final checkpoint covers every record: {checkpoint}"
    );
    assert!(cp["signature"].is_string() && cp["prev_checkpoint"].is_string());
    let older: Vec<serde_json::Value> = diagnostics
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["checkpoint"].as_str().map(str::to_owned))
        .map(|c| serde_json::from_str(&c).unwrap())
        .collect();
    let earlier = older
        .iter()
        .find(|c| c["last_seq"] == 4)
        .unwrap_or_else(|| panic!("no checkpoint of the first four records: {older:?}"))
        .to_string();

    let verify = |public: &Path| {
        vakt(&[
            "audit",
            "verify",
            "--public-key",
            public.to_str().unwrap(),
            "--checkpoint",
            copies.to_str().unwrap(),
            log.to_str().unwrap(),
        ])
    };
    let out = verify(&public);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("every checkpoint signed by key"),
        "{}",
        text(&out)
    );

    let original = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<String> = original.lines().map(str::to_owned).collect();
    let join = |v: &[String]| v.join("\n") + "\n";
    let forged_record = {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&lines[1]).unwrap();
        v.insert("seq".into(), 9.into());
        v.insert("prev_hash".into(), sha256_hex(lines[7].as_bytes()).into());
        v.insert("employee_id".into(), "mallory".into());
        serde_json::to_string(&v).unwrap()
    };
    // The first two records deleted, two forged ones appended to keep the count,
    // and the whole chain recomputed.
    let cut_head = rechain(&[&lines[2..], &lines[..2]].concat());
    let mut forged_checkpoint = cp.clone();
    forged_checkpoint["last_seq"] = 7.into();
    forged_checkpoint["head"] = sha256_hex(lines[6].as_bytes()).into();
    let mut edited = lines.clone();
    edited[2] = edited[2].replacen("\"decision\":\"", "\"decision\":\"x", 1);
    let mut deleted = lines.clone();
    deleted.remove(3);
    let mut inserted = lines.clone();
    inserted.insert(4, lines[1].clone());
    let mut reordered = lines.clone();
    reordered.swap(5, 6);
    let cases: Vec<(&str, String, Option<String>, &str)> = vec![
        (
            "an edited record",
            join(&edited),
            None,
            "was edited, inserted, deleted or reordered",
        ),
        (
            "a deleted record",
            join(&deleted),
            None,
            "expected record seq 4, found seq 5",
        ),
        (
            "an inserted record",
            join(&inserted),
            None,
            "expected record seq 5, found seq 2",
        ),
        (
            "reordered records",
            join(&reordered),
            None,
            "expected record seq 6, found seq 7",
        ),
        (
            "a forged record appended with a valid chain",
            join(&lines) + &forged_record + "\n",
            None,
            "follow the last signed checkpoint",
        ),
        (
            "the first records deleted",
            join(&lines[2..]),
            None,
            "records were cut from its head",
        ),
        (
            "the first records deleted and the chain recomputed",
            join(&cut_head),
            None,
            "is not the one the checkpoint beside it names",
        ),
        (
            "the last record cut",
            join(&lines[..7]),
            None,
            "the tail was truncated",
        ),
        (
            "the last record cut and the checkpoint edited to match",
            join(&lines[..7]),
            Some(forged_checkpoint.to_string()),
            "its signature does not match its contents",
        ),
        (
            "the checkpoint rolled back to an older signed one",
            original.clone(),
            Some(earlier.clone()),
            "the checkpoint was rolled back",
        ),
    ];
    for (what, log_text, checkpoint_text, expect) in cases {
        std::fs::write(&log, &log_text).unwrap();
        std::fs::write(&cp_path, checkpoint_text.as_deref().unwrap_or(&checkpoint)).unwrap();
        let out = verify(&public);
        assert_eq!(out.status.code(), Some(1), "{what} passed: {}", text(&out));
        assert!(
            text(&out).contains(expect),
            "{what}: expected {expect:?} in {}",
            text(&out)
        );
    }
    // Without the copies, the rolled-back checkpoint shows as records no signed
    // checkpoint covers.
    std::fs::write(&log, &original).unwrap();
    std::fs::write(&cp_path, &earlier).unwrap();
    let out = vakt(&[
        "audit",
        "verify",
        "--public-key",
        public.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("records seq 5 to 8 follow the last signed checkpoint"),
        "{}",
        text(&out)
    );
    // Another key's public half does not verify the real checkpoint.
    std::fs::write(&cp_path, &checkpoint).unwrap();
    let out = verify(&other_public);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("was signed by key"), "{}", text(&out));
    // And untouched, it still verifies.
    assert!(verify(&public).status.success());
}

/// `vakt serve` with a signed durable log that is expected to refuse to start.
fn refused(log: &Path, key: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--decision-log",
            &format!("file:{}", log.display()),
            "--decision-log-signing-key",
            key.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_at_most(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
    }
    let mut err = String::new();
    use std::io::Read as _;
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(
        status.is_some_and(|s| !s.success()),
        "serve should refuse the log: {status:?} {err}"
    );
    err
}

#[test]
fn a_restart_checks_the_log_against_its_checkpoint_and_records_an_override() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "audit");
    let log = dir.path().join("decisions.jsonl");
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["kari", "per", "ola"]);
    s.stop();
    let original = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let cp_path = dir.path().join("decisions.jsonl.checkpoint");
    let checkpoint = std::fs::read_to_string(&cp_path).unwrap();

    // A cut tail and an edited record are refused, each named, with the way out.
    std::fs::write(&log, lines[..2].join("\n") + "\n").unwrap();
    let err = refused(&log, &key);
    assert!(
        err.contains("its tail was cut") && err.contains("--decision-log-accept-mismatch"),
        "{err}"
    );
    // The restart reads only the file's first line and its tail, so this is a
    // change to the record the checkpoint pins.
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[2] = edited[2].replacen("\"ola\"", "\"olav\"", 1);
    let edited = edited.join("\n") + "\n";
    std::fs::write(&log, &edited).unwrap();
    std::fs::write(&cp_path, &checkpoint).unwrap();
    let err = refused(&log, &key);
    assert!(err.contains("does not match its checkpoint"), "{err}");
    assert!(
        err.contains("refusing to continue it"),
        "the refusal is logged: {err}"
    );

    // The operator's override is honoured and recorded in the log itself.
    std::fs::write(&cp_path, &checkpoint).unwrap();
    let s = serve_signed(&log, &key, &["--decision-log-accept-mismatch"]);
    calls(&s, &["kari"]);
    s.stop();
    let after = std::fs::read_to_string(&log).unwrap();
    let note: serde_json::Value = serde_json::from_str(after.lines().nth(3).unwrap()).unwrap();
    assert_eq!(note["event"], "checkpoint_mismatch_accepted", "{after}");
    assert!(
        note["problem"].as_str().unwrap().contains("head hash"),
        "{note}"
    );

    // An untouched log is continued without a word, and verifies.
    std::fs::write(&log, &original).unwrap();
    std::fs::write(&cp_path, &checkpoint).unwrap();
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["per"]);
    let diagnostics = s.diagnostics();
    s.stop();
    assert!(!diagnostics.iter().any(|l| l.contains("does not match")));
    let out = vakt(&[
        "audit",
        "verify",
        "--public-key",
        public.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).starts_with("ok: 4 records"), "{}", text(&out));
}

#[test]
fn a_torn_last_line_is_cut_at_start_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "audit");
    let log = dir.path().join("decisions.jsonl");
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["kari", "per"]);
    s.stop();
    // A crash in the middle of writing record 3.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    use std::io::Write as _;
    f.write_all(br#"{"seq":3,"prev_hash":"0123"#).unwrap();
    drop(f);
    let s = serve_signed(&log, &key, &[]);
    let warned = s
        .diagnostics()
        .into_iter()
        .find(|l| l.contains("partial record"));
    let warned = warned.expect("a WARN naming the cut record");
    assert!(
        warned.contains("\"WARN\"") && warned.contains("\"record_seq\":3"),
        "{warned}"
    );
    calls(&s, &["ola"]);
    s.stop();
    let out = vakt(&[
        "audit",
        "verify",
        "--public-key",
        public.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).starts_with("ok: 3 records"), "{}", text(&out));
}

async fn health(url: String) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
    h.check(tonic_health::pb::HealthCheckRequest {
        service: "vakt.v1.Authorizer".into(),
    })
    .await
    .unwrap()
    .into_inner()
    .status
}

/// Sets the soft file-size limit of process `pid` (the hard limit stays unlimited,
/// so it can be raised again without privileges).
fn set_file_size_limit(pid: i32, bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit reads `lim` and writes nothing (no old-limit pointer).
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_write_past_the_file_size_limit_fails_closed_and_recovers_by_itself() {
    const LIMIT: u64 = 24 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let sink = format!("file:{}", log.display());
    let s = Spawned::start(&["--decision-log", &sink], false);
    set_file_size_limit(s.pid(), LIMIT);
    let url = s.url();
    let pid = s.pid();
    let log_for_client = log.clone();
    s.with_client(|mut c| async move {
        assert_eq!(health(url.clone()).await, 1, "SERVING before the fault");
        // Calls that would be allowed, until the file reaches the limit.
        let mut answered = 0;
        let err = loop {
            match c
                .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
                .await
            {
                Ok(r) => {
                    assert_eq!(r.into_inner().decision(), vakt::proto::Decision::Allow);
                    answered += 1;
                    assert!(answered < 1000, "the file-size limit never hit");
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(err.message().contains("decision log"), "{err:?}");
        let text = std::fs::read_to_string(&log_for_client).unwrap();
        assert!(text.ends_with('\n'), "a partial record was left behind");
        assert_eq!(
            text.lines().count(),
            answered,
            "exactly the answered records"
        );
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
        eventually_some(
            Duration::from_secs(5),
            "health to turn NOT_SERVING",
            || async { (health(url.clone()).await == 2).then_some(()) },
        )
        .await;
        // Still failing closed while the fault lasts.
        let again = c
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::Unavailable);
        // The operator makes room: the next write succeeds and the sink recovers
        // by itself.
        set_file_size_limit(pid, libc::RLIM_INFINITY);
        let ok = c
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.decision(), vakt::proto::Decision::Allow);
        eventually_some(Duration::from_secs(5), "health to recover", || async {
            (health(url.clone()).await == 1).then_some(())
        })
        .await;
    });
    let diagnostics = s.diagnostics();
    s.stop();
    assert!(
        diagnostics
            .iter()
            .any(|l| l.contains("\"ERROR\"") && l.contains("decision log write failed")),
        "no ERROR logged for the failed write"
    );
    // The chain is intact across the failure.
    let out = vakt(&["audit", "verify", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn low_free_space_is_warned_before_the_disk_fills() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let sink = format!("file:{}", log.display());
    // More free space than any disk has: the warning must come at once.
    let s = Spawned::start(
        &[
            "--decision-log",
            &sink,
            "--decision-log-min-free-bytes",
            "1000000000000000000",
        ],
        false,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(eventually(
        Duration::from_secs(5),
        "a WARN about free space",
        || {
            s.diagnostics()
                .iter()
                .any(|l| l.contains("\"WARN\"") && l.contains("running out of space"))
        },
    ));
    s.stop();
}

/// Peak resident memory of process `pid`, in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_restart_reads_only_the_tail_of_a_large_log() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    // 150 MB of chained records, with a checkpoint of the last one.
    let big = dir.path().join("big.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    let mut prev = "0".repeat(64);
    let padding = "p".repeat(900);
    let records = 150_000u64;
    for seq in 1..=records {
        let line = format!(
            r#"{{"seq":{seq},"prev_hash":"{prev}","timestamp":"2026-12-01T00:00:00Z","decision_id":"d{seq}","note":"{padding}"}}"#
        );
        out.write_all(line.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
        prev = sha256_hex(line.as_bytes());
    }
    out.flush().unwrap();
    drop(out);
    let cp = serde_json::json!({
        "first_seq": 1, "last_seq": records, "head": prev,
        "timestamp": "2026-12-01T00:00:01Z",
    });
    std::fs::write(dir.path().join("big.jsonl.checkpoint"), cp.to_string()).unwrap();
    let small = dir.path().join("small.jsonl");
    let peak = |log: &Path| {
        let s = Spawned::start(
            &["--decision-log", &format!("file:{}", log.display())],
            false,
        );
        calls(&s, &["kari"]);
        let kib = peak_rss_kib(s.pid());
        s.stop();
        kib
    };
    let (with_small, with_big) = (peak(&small), peak(&big));
    // The chain went on from the last record.
    let tail = std::fs::read_to_string(dir.path().join("big.jsonl.checkpoint")).unwrap();
    assert!(
        tail.contains(&format!("\"last_seq\":{}", records + 1)),
        "{tail}"
    );
    assert!(
        with_big < with_small + 20 * 1024,
        "continuing a 150 MB log took {with_big} KiB at peak, against {with_small} KiB for an empty one"
    );
}

/// Verifies `log` (and `more` files before it) with the public key and any extra
/// arguments.
fn verify_signed(public: &Path, extra: &[&str], files: &[&Path]) -> Output {
    let mut args = vec!["audit", "verify", "--public-key", public.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    vakt(&args)
}

/// The checkpoints a server wrote to its diagnostic log, saved as an operator keeps
/// them.
fn save_copies(dir: &Path, diagnostics: &[String]) -> PathBuf {
    let copies = dir.join("diagnostics.jsonl");
    std::fs::write(&copies, diagnostics.join("\n") + "\n").unwrap();
    copies
}

#[test]
fn a_record_appended_before_a_restart_is_never_attested_by_a_later_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "audit");
    let log = dir.path().join("decisions.jsonl");
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["kari", "per", "ola", "kari"]);
    let mut diagnostics = s.diagnostics();
    s.stop();
    let cp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("decisions.jsonl.checkpoint")).unwrap(),
    )
    .unwrap();
    assert_eq!(cp["last_seq"], 4, "{cp}");
    // A forged record after the last signed checkpoint, correctly chained and
    // stamped a second after it: what a crash could have left, so the restart
    // accepts it.
    let original = std::fs::read_to_string(&log).unwrap();
    let last = original.lines().last().unwrap();
    let mut forged: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(last).unwrap();
    forged.insert("seq".into(), 5.into());
    forged.insert("prev_hash".into(), sha256_hex(last.as_bytes()).into());
    forged.insert("employee_id".into(), "mallory".into());
    let at = humantime::parse_rfc3339(cp["timestamp"].as_str().unwrap()).unwrap()
        + Duration::from_secs(1);
    forged.insert(
        "timestamp".into(),
        humantime::format_rfc3339_micros(at).to_string().into(),
    );
    let forged = serde_json::to_string(&forged).unwrap();
    std::fs::write(&log, format!("{original}{forged}\n")).unwrap();

    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["per"]);
    diagnostics.extend(s.diagnostics());
    s.stop();
    let warned = diagnostics
        .iter()
        .find(|l| l.contains("recorded in the log as unattested"))
        .unwrap_or_else(|| panic!("no WARN about the unchecked record: {diagnostics:#?}"));
    assert!(
        warned.contains("\"WARN\"")
            && warned.contains("\"from_seq\":5")
            && warned.contains("\"to_seq\":5"),
        "{warned}"
    );
    // The chain says so itself, before the next signature.
    let after = std::fs::read_to_string(&log).unwrap();
    let note: serde_json::Value = serde_json::from_str(after.lines().nth(5).unwrap()).unwrap();
    assert_eq!(
        (
            &note["seq"],
            &note["event"],
            &note["unattested_from"],
            &note["unattested_to"]
        ),
        (
            &serde_json::json!(6),
            &serde_json::json!("unattested_records"),
            &serde_json::json!(5),
            &serde_json::json!(5)
        ),
        "{note}"
    );
    let cp_after: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("decisions.jsonl.checkpoint")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cp_after["last_seq"], 7,
        "the new checkpoint covers the forgery: {cp_after}"
    );

    // With the key, the forged record is named as unattested and verify fails,
    // with the diagnostic log's copies of the checkpoints too.
    let copies = save_copies(dir.path(), &diagnostics);
    for extra in [vec![], vec!["--checkpoint", copies.to_str().unwrap()]] {
        let out = verify_signed(&public, &extra, &[&log]);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", text(&out));
        assert!(
            text(&out).contains("records seq 5 to 5 are not attested by any signature")
                && text(&out).contains("as its record seq 6 says"),
            "{}",
            text(&out)
        );
        // And for each range, what attests it.
        for range in [
            "\n  seq 1 to 4: attested by a signed checkpoint\n",
            "\n  seq 5 to 5: NOT attested",
            "\n  seq 6 to 7: attested by a signed checkpoint\n",
        ] {
            assert!(text(&out).contains(range), "{range:?} in {}", text(&out));
        }
    }
    // Without the key, the report says for each range what attests it.
    let out = vakt(&["audit", "verify", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.starts_with("ok: 7 records checked, seq 1 to 7, from 1 file"),
        "{report}"
    );
    for range in [
        "  seq 1 to 4: covered by a checkpoint",
        "  seq 5 to 5: NOT attested",
        "  seq 6 to 7: covered by a checkpoint",
    ] {
        assert!(report.contains(range), "{range:?} in {report}");
    }
}

#[test]
fn verify_says_what_it_read_and_fails_on_a_set_that_does_not_begin_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "audit");
    let log = dir.path().join("decisions.jsonl");
    let s = serve_signed(&log, &key, &["--decision-log-rotate-bytes", "3000"]);
    calls(&s, &["kari"; 20]);
    let mut diagnostics = s.diagnostics();
    s.stop();
    // A run without rotation, so the current file holds records.
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["per", "ola"]);
    diagnostics.extend(s.diagnostics());
    s.stop();
    let copies = save_copies(dir.path(), &diagnostics);
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("decisions.jsonl.") && !n.contains("checkpoint")
        })
        .collect();
    rotated.sort();
    assert!(rotated.len() >= 2, "{rotated:?}");
    let first_current: u64 = serde_json::from_str::<serde_json::Value>(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap()["seq"]
        .as_u64()
        .unwrap();
    assert!(first_current > 1);

    // The whole set: every record, named by its first and last seq and files.
    let mut all: Vec<&Path> = rotated.iter().map(PathBuf::as_path).collect();
    all.push(&log);
    let out = verify_signed(&public, &[], &all);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).starts_with(&format!(
            "ok: 22 records checked, seq 1 to 22, from {} files",
            all.len()
        )) && text(&out).contains("  seq 1 to 22: attested by a signed checkpoint"),
        "{}",
        text(&out)
    );

    // Only the current file, as if every rotated file had been deleted: it does
    // not begin the log, with or without the checkpoint copies.
    for extra in [vec![], vec!["--checkpoint", copies.to_str().unwrap()]] {
        let out = verify_signed(&public, &extra, &[&log]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains(&format!(
                "the records given begin at seq {first_current}, not at the log's first record (seq 1)"
            )),
            "{}",
            text(&out)
        );
    }
    // Without the first rotated file only, the same.
    let out = verify_signed(&public, &[], &all[1..]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not at the log's first record"),
        "{}",
        text(&out)
    );

    // Asked to check from there on, it does, and says so.
    let from = first_current.to_string();
    let out = verify_signed(&public, &["--from-seq", &from], &[&log]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).starts_with(&format!(
            "ok: {} records checked, seq {first_current} to 22, from 1 file",
            23 - first_current
        )) && text(&out).contains(&format!(
            "(from --from-seq {first_current}: records before it were not checked)"
        )),
        "{}",
        text(&out)
    );
    // A --from-seq that is not where the files begin fails.
    let out = verify_signed(&public, &["--from-seq", "1"], &[&log]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("but --from-seq says 1"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_emptied_log_without_its_checkpoint_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "audit");
    let log = dir.path().join("decisions.jsonl");
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["kari", "per"]);
    s.stop();
    assert!(verify_signed(&public, &[], &[&log]).status.success());
    let cp_path = dir.path().join("decisions.jsonl.checkpoint");
    // Emptied and its checkpoint deleted.
    std::fs::write(&log, "").unwrap();
    std::fs::remove_file(&cp_path).unwrap();
    let out = verify_signed(&public, &[], &[&log]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no checkpoint was given") && text(&out).contains("holds no record"),
        "{}",
        text(&out)
    );
    let out = vakt(&["audit", "verify", log.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Records that no checkpoint covers fail with the key too.
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["ola"]);
    s.stop();
    std::fs::remove_file(&cp_path).unwrap();
    let out = verify_signed(&public, &[], &[&log]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no signature covers records seq 1 to 1"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_checkpoint_that_could_not_be_written_is_written_once_it_can_be() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "audit");
    let log = dir.path().join("decisions.jsonl");
    let cp_path = dir.path().join("decisions.jsonl.checkpoint");
    // A directory where the checkpoint's temporary file goes: every checkpoint
    // write fails (even for root), while the log itself is still written.
    let blocker = dir.path().join(".decisions.jsonl.checkpoint.tmp");
    let last_seq = || -> u64 {
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&cp_path).unwrap())
            .unwrap()["last_seq"]
            .as_u64()
            .unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["kari"]);
    rt.block_on(eventually(
        Duration::from_secs(5),
        "checkpoint of 1",
        || last_seq() == 1,
    ));
    // (In place of the file reserved for the next checkpoint.)
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    calls(&s, &["per", "ola"]);
    rt.block_on(eventually(
        Duration::from_secs(5),
        "a failed checkpoint",
        || {
            s.diagnostics()
                .iter()
                .any(|l| l.contains("\"ERROR\"") && l.contains("decision log checkpoint failed"))
        },
    ));
    // While it fails, the signed log does not verify: the fault is real.
    let out = verify_signed(&public, &[], &[&log]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("records seq 2 to 3 follow the last signed checkpoint"),
        "{}",
        text(&out)
    );
    // Room again: with no new call and no restart, the checkpoint catches up.
    std::fs::remove_dir(&blocker).unwrap();
    rt.block_on(eventually(
        Duration::from_secs(5),
        "checkpoint of 3",
        || last_seq() == 3,
    ));
    let out = verify_signed(&public, &[], &[&log]);
    assert!(out.status.success(), "while still running: {}", text(&out));

    // The same fault, cleared just before a stop: the last checkpoint is written
    // at shutdown.
    // (In place of the file reserved for the next checkpoint.)
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    calls(&s, &["kari"]);
    rt.block_on(eventually(
        Duration::from_secs(5),
        "a second failed checkpoint",
        || {
            s.diagnostics()
                .iter()
                .filter(|l| l.contains("decision log checkpoint failed"))
                .count()
                >= 2
        },
    ));
    std::fs::remove_dir(&blocker).unwrap();
    s.stop();
    assert_eq!(last_seq(), 4);
    let out = verify_signed(&public, &[], &[&log]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn audit_verify_refuses_a_fifo_at_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = keygen(dir.path(), "audit");
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let log = dir.path().join("decisions.jsonl");
    std::fs::write(&log, "").unwrap();
    let f = fifo.to_str().unwrap();
    let cases: [Vec<&str>; 3] = [
        vec!["audit", "verify", f],
        vec!["audit", "verify", "--public-key", f, log.to_str().unwrap()],
        vec![
            "audit",
            "verify",
            "--public-key",
            public.to_str().unwrap(),
            "--checkpoint",
            f,
            log.to_str().unwrap(),
        ],
    ];
    for args in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_at_most(&mut child, Duration::from_secs(10));
        if status.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{args:?} hung or passed: {}",
            text(&out)
        );
        assert!(
            text(&out).contains(&format!("{f}: is a special file")),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// A tmpfs of `kib` KiB mounted on a directory, unmounted when dropped: a real
/// file system that fills up. Mounting needs root (CAP_SYS_ADMIN); without it
/// there is none.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u64) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to a new file in `dir` until its file system is full.
fn fill(dir: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let page = [0u8; 4096];
    while f.write_all(&page).is_ok() {}
    while f.write_all(&page[..1]).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn the_last_checkpoint_is_written_at_shutdown_when_records_filled_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "audit");
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    // A real full disk: a small tmpfs. Mounting it needs root (CI runs as root);
    // without it the test fails rather than pass unrun.
    let _mounted = Tmpfs::mount(&disk, 512).expect(
        "mounting a 512 KiB tmpfs failed: run this test as root (`mount -t tmpfs` must work)",
    );
    let log = disk.join("decisions.jsonl");
    let cp_path = disk.join("decisions.jsonl.checkpoint");
    let last_seq = || -> u64 {
        std::fs::read_to_string(&cp_path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["last_seq"].as_u64())
            .unwrap_or(0)
    };
    let s = serve_signed(&log, &key, &[]);
    calls(&s, &["kari"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(eventually(
        Duration::from_secs(5),
        "checkpoint of 1",
        || last_seq() == 1,
    ));
    // A record within half a second of that checkpoint waits for the next one;
    // meanwhile the disk fills up.
    calls(&s, &["per"]);
    fill(&disk);
    assert_eq!(
        last_seq(),
        1,
        "the checkpoint was written before the disk filled"
    );
    s.stop();
    assert_eq!(
        last_seq(),
        2,
        "no checkpoint of the last record at shutdown"
    );
    let out = verify_signed(&public, &[], &[&log]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("  seq 1 to 2: attested by a signed checkpoint"),
        "{}",
        text(&out)
    );
}

/// Checkpoint copies are read from the JSON diagnostic log: given a text-format
/// one, `audit verify --checkpoint` says that `--log-format json` is needed.
#[test]
fn a_text_format_diagnostic_log_as_checkpoint_copies_names_log_format_json() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    std::fs::write(&log, "").unwrap();
    let diagnostics = dir.path().join("vakt.log");
    std::fs::write(
        &diagnostics,
        " INFO decision log checkpoint checkpoint={\"first_seq\":0,\"last_seq\":3}\n",
    )
    .unwrap();
    let out = vakt(&[
        "audit",
        "verify",
        "--checkpoint",
        diagnostics.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("vakt.log:1:"), "{said}");
    assert!(said.contains("--log-format json"), "{said}");
}

/// `openssl pkey` reads both keys `vakt audit keygen` writes, as Cargo.toml and
/// docs/decision-log.md say: PKCS#8 (`BEGIN PRIVATE KEY`) and SPKI (`BEGIN PUBLIC KEY`).
#[test]
fn openssl_reads_the_keys_keygen_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "audit");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let public_text = std::fs::read_to_string(&public).unwrap();
    assert!(
        key_text.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{key_text}"
    );
    assert!(
        public_text.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{public_text}"
    );
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("openssl (Debian package openssl) is needed: {e}"))
    };
    let private = openssl(&["pkey", "-in", key.to_str().unwrap(), "-noout"]);
    assert!(private.status.success(), "openssl pkey: {}", text(&private));
    let public_out = openssl(&["pkey", "-pubin", "-in", public.to_str().unwrap(), "-noout"]);
    assert!(
        public_out.status.success(),
        "openssl pkey -pubin: {}",
        text(&public_out)
    );
    // The two are one pair: openssl's public half of the private key is the .pub.
    let derived = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    assert!(derived.status.success(), "{}", text(&derived));
    assert_eq!(String::from_utf8_lossy(&derived.stdout), public_text);
}
