//! Live data from files, through the real binary: a data change is applied as a
//! difference and a revocation denies at once; a policy change rebuilds; an invalid
//! change keeps the last good snapshot and says why; touching a file changes
//! nothing; editors' rename saves and Kubernetes ConfigMap swaps are followed;
//! stale data and an unapplied change fail closed; SIGHUP never kills a loading
//! sidecar.

use crate::common;
use common::*;
use std::path::Path;
use std::time::Duration;
use vakt::proto::{Decision, StatusRequest, StatusResponse};

const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");

/// A copy of the example world's files in `dir`.
fn copy_world(dir: &Path) {
    for e in std::fs::read_dir(WORLD).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
}

fn status(s: &Spawned) -> StatusResponse {
    s.with_client(|mut c| async move { c.status(StatusRequest {}).await.unwrap().into_inner() })
}

fn decide(s: &Spawned, employee: &str, su: &str, client: &str) -> vakt::proto::AuthorizeResponse {
    let (e, su, client) = (employee.to_owned(), su.to_owned(), client.to_owned());
    s.with_client(|mut c| async move {
        c.authorize(request(&e, &su, &client, REGNSKAP))
            .await
            .unwrap()
            .into_inner()
    })
}

/// Rewrites `file` by writing a temporary file and renaming it over, as editors do.
fn save(file: &Path, text: &str) {
    let tmp = file.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn unlink_bakeri(dir: &Path) {
    let f = dir.join("system-users.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    // Tall og Kontroll's client administrator removes the link to Bakeri Brød AS.
    let changed = text.replacen(
        "clientOrganizationNumber: \"310015156\"",
        "clientOrganizationNumber: \"310015156\"\n        status: removed",
        1,
    );
    assert_ne!(text, changed);
    save(&f, &changed);
}

#[test]
fn a_data_change_is_applied_without_a_rebuild_and_revokes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    copy_world(dir.path());
    let data = dir.path().to_str().unwrap();
    // A long rescan interval: only the watcher can notice the change in time.
    let s = Spawned::start(&["--data", data, "--rescan-interval", "1h"], false);
    assert_eq!(
        decide(&s, "kari", "tk-regnskap", "310015156").decision(),
        Decision::Allow
    );
    let before = status(&s);
    assert_eq!(
        (
            before.sync_state.as_str(),
            before.data_source.as_str(),
            before.data_sequence
        ),
        ("live", "files", 1)
    );
    unlink_bakeri(dir.path());
    until(Duration::from_secs(5), "the revocation to apply", || {
        decide(&s, "kari", "tk-regnskap", "310015156").decision() == Decision::Deny
    });
    let r = decide(&s, "kari", "tk-regnskap", "310015156");
    assert_eq!(policy_ids(&r), ["client-not-linked"]);
    assert_eq!(r.data_sequence, 2);
    let after = status(&s);
    assert_eq!((after.data_sequence, after.changes_applied), (2, 1));
    assert_ne!(after.revision, before.revision);
    assert_eq!(after.rules_revision, before.rules_revision);
    // Other decisions are untouched.
    assert_eq!(
        decide(&s, "ola", "tk-regnskap", "310015156").decision(),
        Decision::Deny
    );
    assert_eq!(
        decide(&s, "kari", "tk-regnskap", "310019194").decision(),
        Decision::Allow
    );
    s.stop();
}

#[test]
fn an_invalid_change_keeps_the_last_good_snapshot_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    copy_world(dir.path());
    let data = dir.path().to_str().unwrap();
    let s = Spawned::start(
        &[
            "--data",
            data,
            "--rescan-interval",
            "200ms",
            "--max-staleness",
            "1s",
        ],
        false,
    );
    let emp = dir.path().join("employees.yaml");
    let good = std::fs::read_to_string(&emp).unwrap();
    // Kari re-activated by a key given twice: refused, not applied.
    save(
        &emp,
        &good.replacen("  - id: per\n", "  - id: per\n    active: true\n", 1),
    );
    until(Duration::from_secs(5), "the reload to fail", || {
        status(&s).sync_state == "reload-failed"
    });
    let st = status(&s);
    assert!(
        st.last_error.contains("employees.yaml:")
            && st
                .last_error
                .contains("duplicate entry with key \"active\""),
        "{}",
        st.last_error
    );
    assert_eq!(st.data_sequence, 1);
    // Past --max-staleness the last good data no longer decides: fail closed.
    until(Duration::from_secs(5), "stale data to deny", || {
        policy_ids(&decide(&s, "kari", "tk-regnskap", "310015156")) == ["vakt:data-stale"]
    });
    // Corrected: live again, and allowing again.
    save(&emp, &good);
    until(
        Duration::from_secs(5),
        "the corrected files to apply",
        || status(&s).sync_state == "live",
    );
    assert_eq!(
        decide(&s, "kari", "tk-regnskap", "310015156").decision(),
        Decision::Allow
    );
    assert_eq!(
        decide(&s, "per", "tk-regnskap", "310015156").decision(),
        Decision::Deny
    );
    s.stop();
}

#[test]
fn touching_a_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    copy_world(dir.path());
    let data = dir.path().to_str().unwrap();
    let s = Spawned::start(&["--data", data, "--rescan-interval", "100ms"], false);
    let f = dir.path().join("teams.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, &text).unwrap();
    save(&f, &text);
    // Deliberate pause, not a wait: nothing observable happens when nothing
    // changes, so let eight rescan intervals pass before checking that none applied.
    std::thread::sleep(Duration::from_millis(800));
    let st = status(&s);
    assert_eq!(
        (st.changes_applied, st.data_sequence, st.sync_state.as_str()),
        (0, 1, "live")
    );
    s.stop();
}

#[test]
fn a_configmap_swap_is_followed() {
    // The layout Kubernetes mounts: files are links into `..data`, itself a link
    // to a timestamped directory that an update replaces in one rename.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v1 = d.join("..2026_12_01_v1");
    std::fs::create_dir(&v1).unwrap();
    copy_world(&v1);
    std::os::unix::fs::symlink("..2026_12_01_v1", d.join("..data")).unwrap();
    for e in std::fs::read_dir(WORLD).unwrap() {
        let name = e.unwrap().file_name();
        std::os::unix::fs::symlink(Path::new("..data").join(&name), d.join(&name)).unwrap();
    }
    let s = Spawned::start(
        &["--data", d.to_str().unwrap(), "--rescan-interval", "1h"],
        false,
    );
    assert_eq!(
        decide(&s, "kari", "tk-regnskap", "310015156").decision(),
        Decision::Allow
    );
    let v2 = d.join("..2026_12_01_v2");
    std::fs::create_dir(&v2).unwrap();
    copy_world(&v2);
    unlink_bakeri(&v2);
    std::os::unix::fs::symlink("..2026_12_01_v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    until(Duration::from_secs(5), "the swapped data to apply", || {
        decide(&s, "kari", "tk-regnskap", "310015156").decision() == Decision::Deny
    });
    assert_eq!(status(&s).changes_applied, 1);
    s.stop();
}

#[test]
fn a_policy_change_rebuilds_and_sighup_still_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).unwrap();
    for (name, text) in vakt::rules::embedded::POLICIES {
        std::fs::write(pol.join(Path::new(name).file_name().unwrap()), text).unwrap();
    }
    let s = Spawned::start(
        &[
            "--policies",
            pol.to_str().unwrap(),
            "--rescan-interval",
            "1h",
        ],
        false,
    );
    let before = status(&s);
    std::fs::write(
        pol.join("70-kari-on-leave.cedar"),
        "@id(\"kari-on-leave\")\n@reason(\"kari is on leave\")\nforbid (principal == Vakt::Employee::\"kari\", action, resource);\n",
    )
    .unwrap();
    until(Duration::from_secs(5), "the new policy to apply", || {
        policy_ids(&decide(&s, "kari", "tk-regnskap", "310015156")) == ["kari-on-leave"]
    });
    assert_ne!(status(&s).rules_revision, before.rules_revision);
    // SIGHUP reads everything again and keeps serving.
    signal(s.pid(), libc::SIGHUP);
    until(Duration::from_secs(5), "SIGHUP to reload", || {
        status(&s).changes_applied >= 2
    });
    assert_eq!(
        decide(&s, "ola", "tk-regnskap", "310015156").decision(),
        Decision::Allow
    );
    s.stop();
}

#[test]
fn a_call_waits_for_the_change_it_asks_for_then_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    copy_world(dir.path());
    let data = dir.path().to_str().unwrap();
    let s = Spawned::start(
        &[
            "--data",
            data,
            "--rescan-interval",
            "1h",
            "--sequence-wait",
            "300ms",
        ],
        false,
    );
    let ask = |min: u64| {
        s.with_client(|mut c| async move {
            let mut r = request("kari", "tk-regnskap", "310015156", REGNSKAP);
            r.min_data_sequence = min;
            c.authorize(r).await.unwrap().into_inner()
        })
    };
    assert_eq!(ask(1).decision(), Decision::Allow);
    // Sequence 2 does not exist yet: the call waits, then denies.
    let started = std::time::Instant::now();
    let r = ask(2);
    assert_eq!(policy_ids(&r), ["vakt:data-stale"]);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A change arrives while a call waits for it.
    let waiter = {
        let url = s.url();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = vakt::proto::authorizer_client::AuthorizerClient::connect(url)
                    .await
                    .unwrap();
                let mut r = request("kari", "tk-regnskap", "310015156", REGNSKAP);
                r.min_data_sequence = 2;
                c.authorize(r).await.unwrap().into_inner()
            })
        })
    };
    // Deliberate pause: gives the waiting call a head start. Either order is
    // allowed (see below), so this only makes the interesting one likely.
    std::thread::sleep(Duration::from_millis(50));
    unlink_bakeri(dir.path());
    let r = waiter.join().unwrap();
    // Either the change arrived within the wait (the revocation decides) or not
    // (stale); never an allow on data without it.
    assert_eq!(r.decision(), Decision::Deny);
    until(Duration::from_secs(5), "the change to apply", || {
        status(&s).data_sequence == 2
    });
    assert_eq!(policy_ids(&ask(2)), ["client-not-linked"]);
    s.stop();
}

#[test]
fn sighup_while_a_large_world_loads_does_not_kill_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "gen-world",
            "--firms",
            "40",
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--decision-log",
            "off",
            "--data",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the sidecar to say it is loading, then SIGHUP it all through the load.
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("\"loading\"")),
        "the sidecar never said it was loading"
    );
    std::thread::spawn(move || for _ in lines {});
    for _ in 0..20 {
        signal(child.id() as i32, libc::SIGHUP);
        // Deliberate pacing: spreads the signals over the load.
        std::thread::sleep(Duration::from_millis(25));
    }
    // Deliberate pause: gives a sidecar that a signal killed time to exit before
    // checking that it still runs.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the sidecar died of a SIGHUP: {:?}",
        child.try_wait()
    );
    signal(child.id() as i32, libc::SIGTERM);
    let status = wait_at_most(&mut child, Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// Saved Altinn responses are followed too: a client dropped from access
/// management's list of one agent (another file defines the agent) denies, and
/// the system user's own file changing keeps the client lists of the others.
#[test]
fn altinn_client_lists_are_followed() {
    const SAVED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/altinn-world");
    const TK: &str = "0b7f3a52-6d1e-4c8a-9f43-1a2b3c4d5e01";
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(SAVED).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json" || x == "yaml") {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let data = dir.path().to_str().unwrap();
    let s = Spawned::start(&["--data", data, "--rescan-interval", "1h"], false);
    assert_eq!(
        decide(&s, "kari", TK, "310015156").decision(),
        Decision::Allow
    );
    assert_eq!(
        decide(&s, "kari", TK, "310019194").decision(),
        Decision::Allow
    );
    // The agents list changes (a title), so the agent's record is read again: its
    // clients, from another file, stay.
    let agents = dir.path().join("systemusers-agents.json");
    let text = std::fs::read_to_string(&agents).unwrap();
    save(
        &agents,
        &text.replacen(
            "Tall og Kontroll regnskap",
            "Tall og Kontroll regnskap 2",
            1,
        ),
    );
    until(Duration::from_secs(5), "the agents list to apply", || {
        status(&s).data_sequence == 2
    });
    assert_eq!(
        decide(&s, "kari", TK, "310015156").decision(),
        Decision::Allow
    );
    // Bakeri Brød AS drops out of the agent's client list.
    let clients = dir.path().join("clients-tk-regnskap.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&clients).unwrap()).unwrap();
    v["clients"]["data"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["client"]["organizationIdentifier"] != "310015156");
    save(&clients, &serde_json::to_string_pretty(&v).unwrap());
    until(Duration::from_secs(5), "the revocation to apply", || {
        decide(&s, "kari", TK, "310015156").decision() == Decision::Deny
    });
    assert_eq!(
        policy_ids(&decide(&s, "kari", TK, "310015156")),
        ["client-not-linked"]
    );
    assert_eq!(
        decide(&s, "kari", TK, "310019194").decision(),
        Decision::Allow
    );
    s.stop();
}
