//! No file is applied while it is being written, through the real binary, queried
//! without pause while a writer works: a data file rewritten in place and cut at a
//! line break, a policy file cut after its first policy, and a set of files under
//! a data manifest written with pauses between closed writes. No ALLOW may appear
//! that the finished files deny. Each test also shows that the cut state, renamed
//! into place whole, does allow: the request is one that only the finished file
//! denies.

use crate::common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vakt::proto::Decision;

const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");
const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");

fn copy_dir(from: &str, to: &Path, keep: fn(&str) -> bool) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        if p.is_file() && keep(&name) {
            std::fs::copy(&p, to.join(name)).unwrap();
        }
    }
}

fn decide(s: &Spawned, employee: &str) -> Decision {
    let e = employee.to_owned();
    s.with_client(|mut c| async move {
        c.authorize(request(&e, "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap()
            .into_inner()
            .decision()
    })
}

/// Asks about `employee` without pause on a thread of its own, until stopped;
/// counts the ALLOWs and the answers.
struct Watcher {
    stop: Arc<AtomicBool>,
    allows: Arc<AtomicUsize>,
    answers: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Watcher {
    fn start(s: &Spawned, employee: &str) -> Self {
        let (stop, allows, answers) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (url, e) = (s.url(), employee.to_owned());
        let (st, al, an) = (stop.clone(), allows.clone(), answers.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut c = vakt::proto::authorizer_client::AuthorizerClient::connect(url)
                    .await
                    .unwrap();
                // Bounded: the writers below finish within seconds.
                let deadline = Instant::now() + Duration::from_secs(60);
                while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let r = c
                        .authorize(request(&e, "tk-regnskap", "310015156", REGNSKAP))
                        .await
                        .unwrap()
                        .into_inner();
                    if r.decision() == Decision::Allow {
                        al.fetch_add(1, Ordering::Relaxed);
                    }
                    an.fetch_add(1, Ordering::Relaxed);
                }
            });
        });
        Self {
            stop,
            allows,
            answers,
            thread,
        }
    }

    /// Stops asking: (ALLOWs, answers).
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.allows.load(Ordering::Relaxed),
            self.answers.load(Ordering::Relaxed),
        )
    }
}

/// Writes `text` over `file` in place in two parts, holding the file open in
/// between for `pause` (longer than the settle interval).
fn write_in_place_with_pause(file: &Path, text: &str, cut: usize, pause: Duration) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(file)
        .unwrap();
    f.write_all(&text.as_bytes()[..cut]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(pause);
    f.write_all(&text.as_bytes()[cut..]).unwrap();
    f.flush().unwrap();
    drop(f);
}

/// Puts `text` in place of `file` by writing a temporary file and renaming it.
fn rename_into_place(file: &Path, text: &str) {
    let tmp = file.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// employees.yaml with Kari's audit engagement for Bakeri Brød AS (310015156)
/// stated after her teams, and the line break before it where the file is cut.
fn employees_with_audit_engagement() -> (String, usize) {
    let text = std::fs::read_to_string(Path::new(WORLD).join("employees.yaml")).unwrap();
    let anchor = "    teams: [tk-regnskap-team]\n";
    let at = text.find(anchor).unwrap() + anchor.len();
    let full = format!(
        "{}    auditClients: [\"310015156\"]\n{}",
        &text[..at],
        &text[at..]
    );
    (full, at)
}

#[test]
fn a_data_file_cut_at_a_line_break_is_not_applied_while_its_writer_holds_it_open() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(WORLD, dir.path(), |_| true);
    let s = Spawned::start(
        &[
            "--data",
            dir.path().to_str().unwrap(),
            "--rescan-interval",
            "100ms",
        ],
        false,
    );
    let file = dir.path().join("employees.yaml");
    let (full, cut) = employees_with_audit_engagement();
    assert_eq!(decide(&s, "kari"), Decision::Allow);
    let writer = {
        let (file, full) = (file.clone(), full.clone());
        std::thread::spawn(move || {
            write_in_place_with_pause(&file, &full, cut, Duration::from_millis(1500))
        })
    };
    // Well past the settle interval, the cut file is still open: nothing is
    // applied, and the sidecar says what it waits for.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(data_sequence(&s), 1);
    assert!(
        s.diagnostics()
            .iter()
            .any(|l| l.contains("waiting until they are whole") && l.contains("open for writing")),
        "no line saying a file is open for writing"
    );
    writer.join().unwrap();
    until(Duration::from_secs(10), "the whole file to apply", || {
        decide(&s, "kari") == Decision::Deny
    });
    assert_eq!(data_sequence(&s), 2);

    // The cut state on its own is a valid world that allows: renamed into place
    // whole, it is applied at once.
    rename_into_place(&file, &full[..cut]);
    until(Duration::from_secs(10), "the cut file to apply", || {
        decide(&s, "kari") == Decision::Allow
    });
    s.stop();
}

fn data_sequence(s: &Spawned) -> u64 {
    s.with_client(|mut c| async move {
        c.status(vakt::proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .data_sequence
    })
}

/// Kari is first denied by `employees.yaml` as `full` states it (renamed into
/// place); then the same file is written again in place, cut at `cut`, where the
/// restriction would be lost: not a single ALLOW may be seen while it is written.
fn no_allow_while_rewritten((full, cut): (String, usize)) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(WORLD, dir.path(), |_| true);
    let s = Spawned::start(&["--data", dir.path().to_str().unwrap()], false);
    let file = dir.path().join("employees.yaml");
    rename_into_place(&file, &full);
    until(Duration::from_secs(10), "the restriction to apply", || {
        decide(&s, "kari") == Decision::Deny
    });
    let w = Watcher::start(&s, "kari");
    write_in_place_with_pause(&file, &full, cut, Duration::from_millis(1500));
    std::thread::sleep(Duration::from_millis(600));
    let (allows, answers) = w.finish();
    assert!(
        answers > 20,
        "too few answers to watch the write: {answers}"
    );
    assert_eq!(
        allows, 0,
        "ALLOWs while the file was written: {allows} of {answers}"
    );
    s.stop();
}

#[test]
fn no_allow_is_seen_while_a_revoking_data_file_is_written_in_place() {
    no_allow_while_rewritten(employees_with_audit_engagement());
}

#[test]
fn a_policy_file_cut_after_its_first_policy_is_not_applied_while_written() {
    let policies = tempfile::tempdir().unwrap();
    copy_dir(POLICIES, policies.path(), |n| n.ends_with(".cedar"));
    let s = Spawned::start(&["--policies", policies.path().to_str().unwrap()], false);
    // Per has left the firm: only the forbid `employee-deactivated`, the second
    // policy of 01-employee.cedar, denies him.
    assert_eq!(decide(&s, "per"), Decision::Deny);
    let file = policies.path().join("01-employee.cedar");
    let text = std::fs::read_to_string(&file).unwrap();
    let cut = text.find("@id(\"employee-deactivated\")").unwrap();

    let w = Watcher::start(&s, "per");
    write_in_place_with_pause(&file, &text, cut, Duration::from_millis(1500));
    std::thread::sleep(Duration::from_millis(600));
    let (allows, answers) = w.finish();
    assert!(
        answers > 20,
        "too few answers to watch the write: {answers}"
    );
    assert_eq!(
        allows, 0,
        "ALLOWs while the policy file was written: {allows} of {answers}"
    );

    // Cut after its first policy, the file parses, and allows Per.
    rename_into_place(&file, &text[..cut]);
    until(
        Duration::from_secs(10),
        "the cut policy file to apply",
        || decide(&s, "per") == Decision::Allow,
    );
    s.stop();
}

fn sha256_hex(text: &str) -> String {
    vakt::world::sha256(text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256sum`'s lines for the files of `dir` named in `names`, with `over`
/// standing in for one file's text.
fn manifest(dir: &Path, names: &[&str], over: (&str, &str)) -> String {
    names
        .iter()
        .map(|n| {
            let text = if *n == over.0 {
                over.1.to_owned()
            } else {
                std::fs::read_to_string(dir.join(n)).unwrap()
            };
            format!("{}  {n}\n", sha256_hex(&text))
        })
        .collect()
}

#[test]
fn with_a_data_manifest_files_written_with_closed_pauses_apply_only_when_they_match() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(WORLD, dir.path(), |_| true);
    let file = dir.path().join("employees.yaml");
    let (full, cut) = employees_with_audit_engagement();
    std::fs::write(&file, &full).unwrap();
    // An unlisted file is not read: it would break the world if it were.
    std::fs::write(dir.path().join("scratch.yaml"), "employees: [ {").unwrap();
    let names = [
        "employees.yaml",
        "organizations.yaml",
        "system-users.yaml",
        "teams.yaml",
    ];
    let sums = dir.path().join("SHA256SUMS");
    std::fs::write(&sums, manifest(dir.path(), &names, ("", ""))).unwrap();
    let s = Spawned::start(
        &[
            "--data",
            dir.path().to_str().unwrap(),
            "--data-manifest",
            sums.to_str().unwrap(),
            "--rescan-interval",
            "100ms",
        ],
        false,
    );
    assert_eq!(decide(&s, "kari"), Decision::Deny);
    assert_eq!(decide(&s, "sigrid"), Decision::Deny);
    // The tool's next version adds Sigrid. It states what it will write, then
    // writes it in two closed writes with a pause longer than the settle interval
    // between them; the first stops where Kari's engagement would be lost.
    let next = format!(
        "{full}  - id: sigrid\n    organization: \"310001015\"\n    name: Sigrid Strand\n    active: true\n    kind: person\n    teams: [tk-regnskap-team]\n"
    );
    rename_into_place(
        &sums,
        &manifest(dir.path(), &names, ("employees.yaml", &next)),
    );
    let w = Watcher::start(&s, "kari");
    std::fs::write(&file, &next[..cut]).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(&next.as_bytes()[cut..]).unwrap();
    drop(f);
    until(
        Duration::from_secs(10),
        "the matching files to apply",
        || decide(&s, "sigrid") == Decision::Allow,
    );
    let (allows, answers) = w.finish();
    assert!(answers > 20, "too few answers: {answers}");
    assert_eq!(
        allows, 0,
        "ALLOWs while the files were written: {allows} of {answers}"
    );
    assert!(
        s.diagnostics()
            .iter()
            .any(|l| l.contains("does not match the data manifest")),
        "no line saying the files did not match yet"
    );
    // The cut file, renamed into place without a manifest that lists it, is
    // never read.
    rename_into_place(&file, &next[..cut]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(decide(&s, "kari"), Decision::Deny);
    s.stop();
}

#[test]
fn a_bad_data_manifest_is_refused_at_start_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(WORLD, dir.path(), |_| true);
    let sums = dir.path().join("SHA256SUMS");
    std::fs::write(
        &sums,
        format!("{}  employees.yaml\nnot a line\n", "0".repeat(64)),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "validate",
            "--data",
            dir.path().to_str().unwrap(),
            "--data-manifest",
        ])
        .arg(&sums)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("SHA256SUMS:2:1:"), "{err}");
    assert!(err.contains("sha256sum"), "{err}");
    // A well-formed manifest that a listed file does not match is refused too.
    std::fs::write(&sums, format!("{}  employees.yaml\n", "0".repeat(64))).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "validate",
            "--data",
            dir.path().to_str().unwrap(),
            "--data-manifest",
        ])
        .arg(&sums)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("employees.yaml: does not match its SHA-256"),
        "{err}"
    );
}

/// employees.yaml with Kari deactivated, her `active: false` stated after her
/// teams (where the file is cut) instead of `active: true` before them.
fn employees_with_kari_deactivated() -> (String, usize) {
    let text = std::fs::read_to_string(Path::new(WORLD).join("employees.yaml")).unwrap();
    let kari = "  - id: kari\n    organization: \"310001015\"\n    name: Kari Nordmann\n    active: true\n";
    assert!(text.contains(kari));
    let moved = text.replacen(
        kari,
        "  - id: kari\n    organization: \"310001015\"\n    name: Kari Nordmann\n",
        1,
    );
    let anchor = "    teams: [tk-regnskap-team]\n";
    let at = moved.find(anchor).unwrap() + anchor.len();
    (
        format!("{}    active: false\n{}", &moved[..at], &moved[at..]),
        at,
    )
}

#[test]
fn no_allow_is_seen_while_a_deactivation_is_written_in_place() {
    // Cut before `active: false`: whether a record without `active` loads or
    // not, no ALLOW may be seen.
    no_allow_while_rewritten(employees_with_kari_deactivated());
}

#[test]
fn a_renamed_revocation_is_applied_while_another_file_is_still_being_written() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(WORLD, dir.path(), |_| true);
    let s = Spawned::start(&["--data", dir.path().to_str().unwrap()], false);
    assert_eq!(decide(&s, "kari"), Decision::Allow);
    // teams.yaml is held open, half written, for a long while...
    let teams = dir.path().join("teams.yaml");
    let teams_text = std::fs::read_to_string(&teams).unwrap();
    let writer = {
        let (teams, text) = (teams.clone(), teams_text.clone());
        std::thread::spawn(move || {
            let cut = text[..text.len() / 2].rfind('\n').unwrap() + 1;
            write_in_place_with_pause(&teams, &text, cut, Duration::from_secs(4))
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // ...while Kari's audit engagement is renamed into place: it applies at once.
    let (full, _) = employees_with_audit_engagement();
    rename_into_place(&dir.path().join("employees.yaml"), &full);
    until(
        Duration::from_secs(2),
        "the renamed revocation to apply",
        || decide(&s, "kari") == Decision::Deny,
    );
    writer.join().unwrap();
    s.stop();
}
