//! The configuration file through the real binary: the example file documents
//! every setting with its default and is accepted as it is and uncommented; every
//! problem in a bad file is reported at once by line, with exit code 78; and the
//! environment overrides the file, and flags override both, on a real server.

use crate::common;
use common::*;
use std::process::{Command, Output};

const EXAMPLE: &str = include_str!("../../vakt.example.toml");

fn vakt(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vakt"));
    c.args(args);
    // Settings from the environment of whoever runs the tests must not leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("VAKT_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every `--flag` of `vakt serve`, from its help.
fn serve_flags() -> Vec<String> {
    let help = text(&vakt(&["serve", "--help"], &[]));
    let mut flags: Vec<String> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '<']).next())
        .map(str::to_owned)
        .filter(|f| f != "help" && f != "config")
        .collect();
    flags.dedup();
    flags
}

#[test]
fn the_example_documents_every_setting_with_its_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let out = vakt(&["config", "check", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Every setting is in it, set or commented out.
    let flags = serve_flags();
    assert!(flags.len() > 25, "{flags:?}");
    for f in &flags {
        let set = format!("\n{f} = ");
        let commented = format!("\n# {f} = ");
        assert!(
            EXAMPLE.contains(&set) || EXAMPLE.contains(&commented),
            "vakt.example.toml does not document {f}"
        );
    }

    // What it sets is the built-in default: `config show` without a file agrees.
    let defaults = text(&vakt(&["config", "show"], &[]));
    for line in EXAMPLE
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
    {
        let (key, value) = line.split_once(" = ").unwrap();
        let shown = defaults
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("config show has no {key}"));
        // Compared as values: `"660"` and `660` are the same setting.
        let default = shown
            .strip_prefix(&format!("{key} = "))
            .and_then(|r| r.split("  #").next())
            .unwrap();
        assert_eq!(
            default.trim_matches('"'),
            value.trim_matches('"'),
            "the example says {line:?}, the default is {shown:?}"
        );
    }

    // The commented-out examples are accepted too, given real paths.
    let out = vakt(
        &[
            "audit",
            "keygen",
            "--out",
            dir.path().join("k").to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let key = dir.path().join("k.key");
    // A certificate for the TLS settings.
    let tls_key = rcgen::KeyPair::generate().unwrap();
    let tls_cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&tls_key)
        .unwrap();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, tls_cert.pem()).unwrap();
    std::fs::write(&key_path, tls_key.serialize_pem()).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    // A data manifest of the example world.
    let manifest = dir.path().join("SHA256SUMS");
    let mut sums = String::new();
    for e in std::fs::read_dir(format!("{root}/examples/world")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let hex: String = vakt::world::sha256(&text)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sums.push_str(&format!(
            "{hex}  {}\n",
            p.file_name().unwrap().to_str().unwrap()
        ));
    }
    std::fs::write(&manifest, sums).unwrap();
    let uncommented: String = EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.split(' ').nth(1) == Some("=") => {
                let k = rest.split(' ').next().unwrap();
                match k {
                    "policies" => format!("policies = \"{root}/policies\""),
                    "schema" => format!("schema = \"{root}/schema\""),
                    "data" => format!("data = \"{root}/examples/world\""),
                    "decision-log-signing-key" => {
                        format!("decision-log-signing-key = \"{}\"", key.display())
                    }
                    "tls-cert" => format!("tls-cert = \"{}\"", cert_path.display()),
                    "tls-key" => format!("tls-key = \"{}\"", key_path.display()),
                    "tls-client-ca" => format!("tls-client-ca = \"{}\"", cert_path.display()),
                    "data-manifest" => format!("data-manifest = \"{}\"", manifest.display()),
                    _ => rest.to_owned(),
                }
            }
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, &uncommented).unwrap();
    let out = vakt(&["config", "check", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}\n{uncommented}", text(&out));
}

#[test]
fn every_problem_in_a_file_is_reported_at_once_with_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\nmax-in-flight = \"lots\"\nmax-inflight = 3\ndecision-log = [\"nowhere\"]\n[tls]\ncert = \"x\"\n",
    )
    .unwrap();
    for args in [
        vec!["config", "check", path.to_str().unwrap()],
        vec!["serve", "--config", path.to_str().unwrap()],
    ] {
        let out = vakt(&args, &[]);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        let t = text(&out);
        let shown = path.display();
        for want in [
            format!("{shown}:2: max-in-flight: invalid value 'lots'"),
            format!("{shown}:3: max-inflight: unknown key"),
            "did you mean \"max-in-flight\"".to_owned(),
            format!("{shown}:4: decision-log: invalid value 'nowhere'"),
            format!("{shown}:5: tls: unknown key"),
        ] {
            assert!(t.contains(&want), "{args:?}: {want:?} not in {t}");
        }
    }
    // Settings that are wrong together are reported together too.
    std::fs::write(
        &path,
        "max-in-flight = 0\nmax-batch = 0\npolicies = \"/no/such/dir\"\n",
    )
    .unwrap();
    let out = vakt(&["config", "check", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let t = text(&out);
    for want in [
        "--max-in-flight must be at least 1",
        "--max-batch must be at least 1",
        "/no/such/dir",
    ] {
        assert!(t.contains(want), "{want:?} not in {t}");
    }
}

#[test]
fn the_environment_overrides_the_file_and_flags_override_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    std::fs::write(
        &path,
        "max-batch = 2\ndecision-log = \"off\"\ndata = \"postgres://vakt:s3cret@db.example:5432/vakt\"\n",
    )
    .unwrap();
    let shown = text(&vakt(
        &["config", "show", path.to_str().unwrap()],
        &[("VAKT_MAX_BATCH", "3")],
    ));
    assert!(shown.contains("max-batch = 3  # VAKT_MAX_BATCH"), "{shown}");
    assert!(
        shown.contains(&format!("decision-log = [\"off\"]  # {}", path.display())),
        "{shown}"
    );
    assert!(
        shown.contains("postgres://vakt:****@db.example:5432/vakt") && !shown.contains("s3cret"),
        "{shown}"
    );

    // On a real server: a batch of 3 against max-batch from the file, the
    // environment and a flag.
    std::fs::write(&path, "max-batch = 2\ndecision-log = \"off\"\n").unwrap();
    let config = path.to_str().unwrap();
    let batch = || vakt::proto::AuthorizeBatchRequest {
        requests: vec![request("kari", "tk-regnskap", "310015156", REGNSKAP); 3],
    };
    let from_file = Spawned::start(&["--config", config], false);
    from_file.with_client(|mut c| async move {
        let err = c.authorize_batch(batch()).await.unwrap_err();
        assert!(err.message().contains("maximum of 2"), "{err:?}");
    });
    from_file.stop();
    let from_env = Spawned::start_with(&["--config", config], false, |c| {
        c.env("VAKT_MAX_BATCH", "3");
    });
    from_env.with_client(|mut c| async move {
        assert_eq!(
            c.authorize_batch(batch())
                .await
                .unwrap()
                .into_inner()
                .responses
                .len(),
            3
        );
    });
    from_env.stop();
    let from_flag = Spawned::start_with(&["--config", config, "--max-batch", "1"], false, |c| {
        c.env("VAKT_MAX_BATCH", "3");
    });
    from_flag.with_client(|mut c| async move {
        let err = c.authorize_batch(batch()).await.unwrap_err();
        assert!(err.message().contains("maximum of 1"), "{err:?}");
    });
    from_flag.stop();
}

#[test]
fn a_sighup_reloads_the_settings_that_can_change_and_names_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    let log = format!("file:{}", dir.path().join("decisions.jsonl").display());
    // A second sink, added by the reload.
    let second_path = dir.path().join("second.jsonl");
    let second = format!("file:{}", second_path.display());
    std::fs::write(&path, format!("max-batch = 2\ndecision-log = \"{log}\"\n")).unwrap();
    let s = Spawned::start(&["--config", path.to_str().unwrap()], false);
    let batch = |n: usize| vakt::proto::AuthorizeBatchRequest {
        requests: vec![request("kari", "tk-regnskap", "310015156", REGNSKAP); n],
    };
    let hup = |s: &Spawned, expect: &str, count: usize| {
        signal(s.pid(), libc::SIGHUP);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(eventually(
            std::time::Duration::from_secs(10),
            expect,
            || {
                s.diagnostics()
                    .iter()
                    .filter(|l| l.contains(expect))
                    .count()
                    >= count
            },
        ));
    };
    s.with_client(|mut c| async move {
        assert!(c.authorize_batch(batch(3)).await.is_err());
    });
    // A limit that changes at run time, one that needs a restart, and more
    // diagnostics.
    std::fs::write(
        &path,
        format!("max-batch = 5\nmax-concurrent-streams = 16\nlog-level = \"debug\"\ndecision-log = [\"{log}\", \"{second}\"]\n"),
    )
    .unwrap();
    hup(&s, "settings reloaded", 1);
    let warned = s
        .diagnostics()
        .into_iter()
        .find(|l| l.contains("take effect only after a restart"))
        .expect("a WARN for the setting that needs a restart");
    assert!(
        warned.contains("\"WARN\"") && warned.contains("max-concurrent-streams"),
        "{warned}"
    );
    assert!(!warned.contains("max-batch"), "{warned}");
    s.with_client(|mut c| async move {
        assert_eq!(
            c.authorize_batch(batch(5))
                .await
                .unwrap()
                .into_inner()
                .responses
                .len(),
            5
        );
        assert!(c.authorize_batch(batch(6)).await.is_err());
    });
    // The new log level: decisions are logged at debug.
    tokio::runtime::Runtime::new().unwrap().block_on(eventually(
        std::time::Duration::from_secs(10),
        "a decision logged at debug",
        || {
            s.diagnostics()
                .iter()
                .any(|l| l.contains("\"DEBUG\"") && l.contains("\"decision\""))
        },
    ));
    // The added sink has the records since the reload; the first one went on with
    // its chain, whole.
    let in_second = std::fs::read_to_string(&second_path).unwrap();
    assert_eq!(in_second.lines().count(), 5, "{in_second}");
    let first = dir.path().join("decisions.jsonl");
    let out = vakt(&["audit", "verify", first.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).starts_with("ok: 5 records"), "{}", text(&out));
    // Settings with a problem change nothing.
    std::fs::write(
        &path,
        format!("max-batch = \"many\"\ndecision-log = \"{log}\"\n"),
    )
    .unwrap();
    hup(&s, "settings not reloaded", 1);
    s.with_client(|mut c| async move {
        assert_eq!(
            c.authorize_batch(batch(5))
                .await
                .unwrap()
                .into_inner()
                .responses
                .len(),
            5
        );
    });
    s.stop();
}

/// A bad value in the file gets the hints the same mistake as a flag gets
/// (clap's possible values and its "similar value"), named by file and line.
#[test]
fn a_bad_value_in_the_file_gets_the_flags_hints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, "max-batch = 10\nlog-format = \"jsn\"\n").unwrap();
    let flag = text(&vakt(&["serve", "--log-format", "jsn"], &[]));
    for hint in [
        "[possible values: json, text]",
        "a similar value exists: 'json'",
    ] {
        assert!(flag.contains(hint), "the flag's own hint changed: {flag}");
    }
    for args in [
        vec!["config", "check", path.to_str().unwrap()],
        vec!["serve", "--config", path.to_str().unwrap()],
    ] {
        let out = vakt(&args, &[]);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        let line = text(&out)
            .lines()
            .find(|l| l.contains("vakt.toml:2: log-format: invalid value 'jsn'"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{args:?}: {}", text(&out)));
        for hint in [
            "[possible values: json, text]",
            "a similar value exists: 'json'",
        ] {
            assert!(line.contains(hint), "{args:?}: {line}");
        }
    }
}

/// `vakt config show FILE --max-batch 7` previews that a flag overrides the file,
/// and `config check` checks the flags with the file.
#[test]
fn config_show_and_check_take_serve_flags_after_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, "max-batch = 5\n").unwrap();
    let file = path.to_str().unwrap();
    let line = |out: &Output| {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("max-batch = "))
            .unwrap_or_else(|| panic!("{}", text(out)))
            .to_owned()
    };
    assert_eq!(
        line(&vakt(&["config", "show", file], &[])),
        format!("max-batch = 5  # {file}")
    );
    assert_eq!(
        line(&vakt(&["config", "show", file, "--max-batch", "7"], &[])),
        "max-batch = 7  # --max-batch"
    );
    // The flag overrides the environment too, and needs no file.
    assert_eq!(
        line(&vakt(
            &["config", "show", "--max-batch", "7"],
            &[("VAKT_MAX_BATCH", "6")]
        )),
        "max-batch = 7  # --max-batch"
    );
    // `check` checks the flags as `vakt serve` would.
    let out = vakt(&["config", "check", file, "--max-batch", "7"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = vakt(&["config", "check", file, "--max-batch", "0"], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("--max-batch must be at least 1"),
        "{}",
        text(&out)
    );
    // A flag `vakt serve` does not have is refused as `vakt serve` refuses it.
    let out = vakt(&["config", "check", file, "--max-bach", "7"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--max-bach"), "{}", text(&out));
}

/// The same mistake, a data directory that does not exist, as a flag to `vakt
/// serve`, in the file `vakt serve --config` reads, and in the file `vakt config
/// check` checks: one message, on stderr, and exit 78 each time.
#[test]
fn a_missing_data_directory_is_one_message_and_exit_78_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, "data = \"/nonexistent\"\n").unwrap();
    let file = path.to_str().unwrap();
    let expected = "vakt: --data /nonexistent: no such directory\n";
    for args in [
        vec!["serve", "--data", "/nonexistent"],
        vec!["serve", "--config", file],
        vec!["config", "check", file],
        vec!["config", "check", file, "--max-batch", "7"],
    ] {
        let out = vakt(&args, &[]);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            expected,
            "{args:?}: stdout {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
