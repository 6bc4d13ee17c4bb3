//! Every file Vakt reads, through the real binary: a FIFO, a device or an
//! over-size file is refused at once, by name, instead of hanging or filling
//! memory; a Kubernetes-style chain of symbolic links to a regular file is read.
//! And credentials in URLs never reach the output of `vakt config show` or
//! `vakt db`, whether the URL is well formed, holds an unencoded `@`, or does not
//! parse.

use crate::common;
use common::wait_at_most;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `vakt args` with `env` (and no other `VAKT_` variable), killed after
/// `limit`: (exit code, stdout + stderr, how long it took). A run that had to be
/// killed has no exit code.
fn vakt(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Option<i32>, String, Duration) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vakt"));
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("VAKT_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    let started = Instant::now();
    let mut child = c.spawn().unwrap();
    let status = wait_at_most(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status.and_then(|s| s.code()), text, started.elapsed())
}

/// A FIFO at `dir/name`, with no writer: opening it for reading would block.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
    path
}

/// A self-signed certificate and its key, as PEM.
fn cert_and_key() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

const FAST: Duration = Duration::from_secs(10);

/// Asserts a refusal: exit `code` within [`FAST`], naming `file` and saying `why`.
fn refused(run: (Option<i32>, String, Duration), code: i32, file: &Path, why: &str) {
    let (status, text, took) = run;
    assert_eq!(status, Some(code), "after {took:?}: {text}");
    let named = format!("{}: ", file.display());
    assert!(text.contains(&named), "{file:?} not named: {text}");
    assert!(text.contains(why), "no {why:?}: {text}");
}

#[test]
fn a_device_as_the_configuration_is_refused_at_once() {
    // Before, this read /dev/zero into memory until the process was killed.
    let run = vakt(
        &["config", "check", "/dev/zero"],
        &[],
        Duration::from_secs(3),
    );
    refused(
        run,
        78,
        Path::new("/dev/zero"),
        "is a special file (FIFO, socket or device), not a regular file",
    );
}

#[test]
fn a_fifo_as_the_configuration_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = fifo(dir.path(), "vakt.toml");
    for args in [
        vec!["config", "check", f.to_str().unwrap()],
        vec!["config", "show", f.to_str().unwrap()],
    ] {
        refused(vakt(&args, &[], FAST), 78, &f, "not a regular file");
    }
    // `vakt serve --config` reads it the same way, before anything starts.
    refused(
        vakt(
            &[
                "serve",
                "--config",
                f.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            &[],
            FAST,
        ),
        78,
        &f,
        "not a regular file",
    );
}

#[test]
fn an_over_size_configuration_is_refused_naming_its_own_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    // Valid TOML (comments), one byte past 1 MiB.
    let mut text = String::from("max-in-flight = 64\n");
    while text.len() <= 1 << 20 {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, &text).unwrap();
    let (status, out, _) = vakt(&["config", "check", path.to_str().unwrap()], &[], FAST);
    assert_eq!(status, Some(78), "{out}");
    assert!(out.contains(&format!("{}: is ", path.display())), "{out}");
    assert!(
        out.contains("more than the limit of 1048576 bytes"),
        "{out}"
    );
    // No flag sets this limit, so none is named.
    assert!(!out.contains("--max-file-bytes"), "{out}");

    // The same file, just under the limit, is read.
    std::fs::write(&path, &text[..1 << 20]).unwrap();
    let (status, out, _) = vakt(&["config", "check", path.to_str().unwrap()], &[], FAST);
    assert!(!out.contains("more than the limit"), "{out}");
    assert_eq!(status, Some(0), "{out}");
}

#[test]
fn a_fifo_or_a_device_as_a_tls_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_and_key();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let key_fifo = fifo(dir.path(), "fifo.key");
    let config = |cert: &Path, key: &Path| {
        let path = dir.path().join("vakt.toml");
        std::fs::write(
            &path,
            format!(
                "tls-cert = {:?}\ntls-key = {:?}\n",
                cert.to_str().unwrap(),
                key.to_str().unwrap()
            ),
        )
        .unwrap();
        path
    };

    // The real pair is accepted: what is refused below is the file's type.
    let good = config(&cert_path, &key_path);
    let (status, out, _) = vakt(&["config", "check", good.to_str().unwrap()], &[], FAST);
    assert_eq!(status, Some(0), "{out}");

    for (cert, key, bad) in [
        (&cert_path, &key_fifo, &key_fifo),
        (
            &cert_path,
            &PathBuf::from("/dev/zero"),
            &PathBuf::from("/dev/zero"),
        ),
        (&key_fifo, &key_path, &key_fifo),
    ] {
        let file = config(cert, key);
        refused(
            vakt(&["config", "check", file.to_str().unwrap()], &[], FAST),
            78,
            bad,
            "not a regular file",
        );
    }
    // And from the command line of `vakt serve`.
    refused(
        vakt(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                cert_path.to_str().unwrap(),
                "--tls-key",
                key_fifo.to_str().unwrap(),
            ],
            &[],
            FAST,
        ),
        78,
        &key_fifo,
        "not a regular file",
    );
}

#[test]
fn fifos_as_logs_suites_and_policies_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = fifo(dir.path(), "decisions.jsonl");
    let suite = fifo(dir.path(), "fifo_test.yaml");
    let policy = fifo(dir.path(), "fifo.cedar");
    for (args, file) in [
        (vec!["replay", "--log", log.to_str().unwrap()], &log),
        (vec!["shadow", "report", log.to_str().unwrap()], &log),
        (vec!["test", suite.to_str().unwrap()], &suite),
        (vec!["fmt", "--check", policy.to_str().unwrap()], &policy),
    ] {
        let (status, text, took) = vakt(&args, &[], FAST);
        assert!(status.is_some(), "{args:?} hung for {took:?}: {text}");
        assert!(
            text.contains(&file.display().to_string()) && text.contains("not a regular file"),
            "{args:?}: {text}"
        );
        assert_ne!(status, Some(0), "{args:?}: {text}");
    }
}

/// A Kubernetes ConfigMap or Secret mount: `name -> ..data/name`,
/// `..data -> ..2026_12_07_…`, and the regular file in the timestamped directory.
fn configmap(dir: &Path, files: &[(&str, &str)]) {
    let stamped = dir.join("..2026_12_07_12_00_00.000000001");
    std::fs::create_dir(&stamped).unwrap();
    for (name, text) in files {
        std::fs::write(stamped.join(name), text).unwrap();
    }
    std::os::unix::fs::symlink(stamped.file_name().unwrap(), dir.join("..data")).unwrap();
    for (name, _) in files {
        std::os::unix::fs::symlink(Path::new("..data").join(name), dir.join(name)).unwrap();
    }
}

#[test]
fn configmap_symbolic_links_to_regular_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_and_key();
    configmap(
        dir.path(),
        &[
            ("tls.crt", &cert),
            ("tls.key", &key),
            ("vakt.toml", "max-in-flight = 77\n"),
        ],
    );
    let config = dir.path().join("vakt.toml");
    assert!(std::fs::symlink_metadata(&config)
        .unwrap()
        .file_type()
        .is_symlink());
    let tls = [
        ("VAKT_TLS_CERT", dir.path().join("tls.crt")),
        ("VAKT_TLS_KEY", dir.path().join("tls.key")),
    ];
    let env: Vec<(&str, &str)> = tls.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
    let (status, out, _) = vakt(&["config", "check", config.to_str().unwrap()], &env, FAST);
    assert_eq!(status, Some(0), "{out}");
    let (status, out, _) = vakt(&["config", "show", config.to_str().unwrap()], &env, FAST);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("max-in-flight = 77"), "{out}");

    // A link that leads nowhere is refused by name.
    std::fs::remove_file(dir.path().join("..data")).unwrap();
    refused(
        vakt(&["config", "check", config.to_str().unwrap()], &[], FAST),
        78,
        &config,
        "symbolic link that leads nowhere readable",
    );
}

/// Asserts that `text` holds none of `secrets`.
fn shows_none(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{s:?} shown: {text}");
    }
}

#[test]
fn config_show_masks_every_credential_in_a_url() {
    // A password in the user-info part, percent-encoded, and one in the query.
    let (status, out, _) = vakt(
        &["config", "show"],
        &[(
            "VAKT_DATA",
            "postgres://u:p%40ss@h/db?password=hunter2&sslmode=require",
        )],
        FAST,
    );
    assert_eq!(status, Some(0), "{out}");
    shows_none(&out, &["hunter2", "p%40ss", "p@ss"]);
    assert!(
        out.contains("data = \"postgres://u:****@h/db?password=****&sslmode=require\""),
        "{out}"
    );

    // The same in a configuration file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vakt.toml");
    std::fs::write(
        &file,
        "data = \"postgres://u:p%40ss@h/db?password=hunter2&sslmode=disable\"\notlp-endpoint = \"http://h:4317/?api_key=hunter2\"\n",
    )
    .unwrap();
    let (status, out, _) = vakt(&["config", "show", file.to_str().unwrap()], &[], FAST);
    assert_eq!(status, Some(0), "{out}");
    shows_none(&out, &["hunter2", "p%40ss"]);
    assert!(out.contains("api_key=****"), "{out}");

    // A password with `/` in it: a URL parser ends the host part at the `/`,
    // PostgreSQL's reads the password to the `@`.
    let (status, out, _) = vakt(
        &["config", "show"],
        &[("VAKT_DATA", "postgres://u:pa/ss@h/db")],
        FAST,
    );
    assert_eq!(status, Some(0), "{out}");
    shows_none(&out, &["pa/ss", "u:pa"]);
    assert!(out.contains("postgres://u:****@h/db"), "{out}");

    // An OTLP endpoint that does not parse at all.
    let (status, out, _) = vakt(
        &["config", "show"],
        &[(
            "VAKT_OTLP_ENDPOINT",
            "http://u:hunter2@[::1:4317/?token=s3cr3t",
        )],
        FAST,
    );
    assert_eq!(status, Some(0), "{out}");
    shows_none(&out, &["hunter2", "s3cr3t"]);

    // An unencoded `@` in the password: refused, with no piece of it shown.
    for url in [
        "postgres://u:pa@ss@h/db",
        "postgres://u:pa@ss@h/db?password=hunter2",
    ] {
        let (status, out, _) = vakt(&["config", "show"], &[("VAKT_DATA", url)], FAST);
        assert_eq!(status, Some(78), "{out}");
        shows_none(&out, &["pa@ss", "ss@h", "hunter2"]);
        assert!(out.contains("%40"), "{out}");
        std::fs::write(&file, format!("data = {url:?}\n")).unwrap();
        let (status, out, _) = vakt(&["config", "check", file.to_str().unwrap()], &[], FAST);
        assert_eq!(status, Some(78), "{out}");
        shows_none(&out, &["pa@ss", "ss@h", "hunter2"]);
    }

    // A value refused by its flag's own parser, which quotes it: masked in the
    // message, from the environment, a file or the command line.
    let sink = "otpl:http://u:hunter2@collector:4317";
    let (status, out, _) = vakt(&["config", "show"], &[("VAKT_DECISION_LOG", sink)], FAST);
    assert_eq!(status, Some(78), "{out}");
    shows_none(&out, &["hunter2"]);
    assert!(out.contains("invalid value"), "{out}");
    std::fs::write(&file, format!("decision-log = [{sink:?}]\n")).unwrap();
    let (status, out, _) = vakt(&["config", "check", file.to_str().unwrap()], &[], FAST);
    assert_eq!(status, Some(78), "{out}");
    shows_none(&out, &["hunter2"]);
    let (status, out, _) = vakt(&["serve", "--decision-log", sink], &[], FAST);
    assert_eq!(status, Some(2), "{out}");
    shows_none(&out, &["hunter2"]);
    assert!(out.contains("invalid value"), "{out}");

    // A URL that does not parse: refused without showing it.
    let (status, out, _) = vakt(
        &["config", "show"],
        &[("VAKT_DATA", "postgres://u:hunter2@[::1/db")],
        FAST,
    );
    assert_eq!(status, Some(78), "{out}");
    shows_none(&out, &["hunter2"]);
}

#[test]
fn db_commands_never_show_a_password() {
    // Nothing listens on port 1: each command fails at connecting, and says
    // which database it tried.
    for (url, secrets) in [
        (
            "postgres://u:p%40ss@127.0.0.1:1/db?password=hunter2",
            &["hunter2", "p%40ss", "p@ss"][..],
        ),
        // Before, the URL was split at the first `@`: the password's tail was the
        // host, shown and looked up.
        ("postgres://u:pa@ss@127.0.0.1:1/db", &["pa@ss", "ss@"][..]),
        ("postgres://u:hunter2@[::1/db", &["hunter2"][..]),
    ] {
        let (status, out, took) = vakt(
            &["db", "migrate", "--database", url],
            &[],
            Duration::from_secs(30),
        );
        assert!(status.is_some_and(|c| c != 0), "after {took:?}: {out}");
        shows_none(&out, secrets);
    }
}

/// The decision log's signing key, and the public key `audit verify` reads, are
/// refused at once when they are a device or a FIFO (before, `/dev/zero` as the
/// signing key grew memory by 400 MB/s until the process was killed).
#[test]
fn a_fifo_or_a_device_as_a_key_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let key_fifo = fifo(dir.path(), "fifo.key");
    let log = format!("file:{}", dir.path().join("d.jsonl").display());
    for bad in [PathBuf::from("/dev/zero"), key_fifo.clone()] {
        let (status, text, took) = vakt(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--decision-log",
                &log,
                "--decision-log-signing-key",
                bad.to_str().unwrap(),
            ],
            &[],
            FAST,
        );
        assert!(
            matches!(status, Some(c) if c != 0),
            "after {took:?}: {text}"
        );
        assert!(text.contains(&bad.display().to_string()), "{text}");
        assert!(text.contains("not a regular file"), "{text}");
    }
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    for bad in [PathBuf::from("/dev/zero"), key_fifo] {
        let (status, text, took) = vakt(
            &[
                "audit",
                "verify",
                "--public-key",
                bad.to_str().unwrap(),
                empty.to_str().unwrap(),
            ],
            &[],
            FAST,
        );
        assert!(
            matches!(status, Some(c) if c != 0),
            "after {took:?}: {text}"
        );
        assert!(text.contains(&bad.display().to_string()), "{text}");
    }
}
