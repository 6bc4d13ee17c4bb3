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

// The binding tables: [maskinporten] (with [maskinporten.scopes]), [altinn],
// [envoy] and [[route]], read with the flags and checked with them.

const MP_DOC: &str = include_str!("../../docs/maskinporten.md");

/// A route Check can decide on the example world: Kari through tk-regnskap.
const REGISTER_ROUTE: &str = r#"
[[route]]
name = "register"
host = "platform.altinn.no"
methods = ["GET"]
path = "/register/api/v1/organizations/{orgno}/**"
package = "regnskapsforer-med-signeringsrettighet"
client = { path = "orgno" }
system_user = "tk-regnskap"
token = "maskinporten"
"#;

/// `[maskinporten]` for `issuer` with the test client's key written (0600) into
/// `dir`, and scopes for the package of [`REGISTER_ROUTE`].
fn maskinporten_table(dir: &std::path::Path, issuer: &str) -> String {
    use common::maskinporten::{key, write_private, CLIENT_ID, CLIENT_KID, SCOPE};
    let key_file = write_private(dir, "maskinporten.key", &key(1).pkcs8_pem);
    format!(
        "[maskinporten]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\nkey_file = \"{}\"\nkid = \"{CLIENT_KID}\"\nconnect_timeout = \"2s\"\nrequest_timeout = \"5s\"\n\n[maskinporten.scopes]\nregnskapsforer-med-signeringsrettighet = [\"{SCOPE}\"]\n",
        key_file.display()
    )
}

#[test]
fn every_bad_key_in_the_binding_tables_is_reported_at_once_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    let key = common::maskinporten::write_private(
        dir.path(),
        "mp.key",
        &common::maskinporten::key(1).pkcs8_pem,
    );
    let body = format!(
        r#"max-in-flight = "lots"

[maskinporten]
issuer = "http://maskinporten.example/"
client_id = "vakt"
key_file = "{}"
algorithm = "ES256"
request_timeout = "soon"
colour = "blue"

[maskinporten.scopes]
a-ordning = ["altinn:instances.read", "has space"]

[altinn]
base_url = "ftp://platform.tt02.altinn.no"
region = "tt02"

[envoy]
employee_header = "employee"

[[route]]
host = "platform.altinn.no"
methods = ["GET"]
path = "/{{party}}"
package = "a-ordning"
client = {{ path = "party", kind = "party-id" }}
token = "altinn"
scopes = ["altinn:instances.write"]

[tls]
cert = "x"
"#,
        key.display()
    );
    std::fs::write(&path, body).unwrap();
    let shown = path.display();
    for args in [
        vec!["config", "check", path.to_str().unwrap()],
        vec!["serve", "--config", path.to_str().unwrap()],
    ] {
        let out = vakt(&args, &[]);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        let t = text(&out);
        for want in [
            format!("{shown}:1: max-in-flight: invalid value 'lots'"),
            format!("{shown}:4: maskinporten.issuer: \"http://maskinporten.example/\" uses plain http"),
            format!("{shown}:3: maskinporten.kid: is required with key_file"),
            format!("{shown}:7: maskinporten.algorithm: \"ES256\" must be"),
            format!("{shown}:8: maskinporten.request_timeout: \"soon\" is not a duration"),
            format!("{shown}:9: maskinporten.colour: unknown key"),
            format!("{shown}:12: maskinporten.scopes.a-ordning: scope \"has space\""),
            format!("{shown}:15: altinn.base_url: \"ftp://platform.tt02.altinn.no\" must be an https URL"),
            format!("{shown}:14: altinn.region: unknown key"),
            format!("{shown}:18: envoy.employee_header: \"employee\" must be"),
            format!("{shown}:30: tls: unknown key"),
        ] {
            assert!(t.contains(&want), "{args:?}: {want:?} not in {t}");
        }
        // One line per problem, each `vakt: file:line: key: …`.
        for line in t.lines() {
            assert!(line.starts_with(&format!("vakt: {shown}:")), "{line}");
        }
    }
}

#[test]
fn a_maskinporten_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    let table = maskinporten_table(dir.path(), "https://test.maskinporten.no/");
    std::fs::write(&path, &table).unwrap();
    let file = path.to_str().unwrap();
    let out = vakt(&["config", "check", file], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let key = dir.path().join("maskinporten.key");
    for mode in [0o644, 0o604, 0o666] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        for args in [
            vec!["config", "check", file],
            vec!["serve", "--config", file],
        ] {
            let out = vakt(&args, &[]);
            assert_eq!(
                out.status.code(),
                Some(78),
                "{mode:o} {args:?}: {}",
                text(&out)
            );
            let want = format!(
                "{file}:4: maskinporten.key_file: {}: mode {mode:o} lets more than its owner read or change the key",
                key.display()
            );
            assert!(text(&out).contains(&want), "{want:?} not in {}", text(&out));
        }
    }
}

#[test]
fn routes_and_altinn_without_maskinporten_are_refused_and_so_are_unknown_packages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    let file = path.to_str().unwrap();
    let check = |contents: &str| {
        std::fs::write(&path, contents).unwrap();
        let out = vakt(&["config", "check", file], &[]);
        (out.status.code(), text(&out))
    };
    // Routes, [envoy] and [altinn] without [maskinporten].
    let (code, t) = check(&format!(
        "[envoy]\nshadow = true\n\n[altinn]\nbase_url = \"https://platform.tt02.altinn.no\"\n{REGISTER_ROUTE}"
    ));
    assert_eq!(code, Some(78), "{t}");
    for want in [
        format!("{file}:1: envoy: needs [maskinporten]"),
        format!("{file}:4: altinn: needs [maskinporten]"),
        format!("{file}:7: route: needs [maskinporten]"),
    ] {
        assert!(t.contains(&want), "{want:?} not in {t}");
    }
    // With it, the same routes are accepted...
    let mp = maskinporten_table(dir.path(), "https://test.maskinporten.no/");
    let (code, t) = check(&format!("{mp}{REGISTER_ROUTE}"));
    assert_eq!(code, Some(0), "{t}");
    // ...but not a route whose token is "altinn" without [altinn], nor scopes
    // its package is not allowed.
    let altinn_route = REGISTER_ROUTE.replace(
        "token = \"maskinporten\"",
        "token = \"altinn\"\nscopes = [\"altinn:instances.write\"]",
    );
    let (code, t) = check(&format!("{mp}{altinn_route}"));
    assert_eq!(code, Some(78), "{t}");
    let route_line = mp.lines().count() + 2;
    for want in [
        format!("{file}:{route_line}: route[0] (\"register\").token: \"altinn\" needs [altinn] base_url"),
        format!("{file}:{route_line}: route[0] (\"register\").scopes: \"altinn:instances.write\" is not allowed for urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"),
    ] {
        assert!(t.contains(&want), "{want:?} not in {t}");
    }
    // Reported with [maskinporten]'s own problems, all at once.
    let bad_mp = mp.replace("connect_timeout", "algorithm = \"ES256\"\nconnect_timeout");
    let (code, t) = check(&format!("{bad_mp}{altinn_route}"));
    assert_eq!(code, Some(78), "{t}");
    for want in [
        format!("{file}:6: maskinporten.algorithm: \"ES256\""),
        format!(
            "{file}:{}: route[0] (\"register\").scopes: \"altinn:instances.write\" is not allowed",
            route_line + 1
        ),
    ] {
        assert!(t.contains(&want), "{want:?} not in {t}");
    }
    // The employee from a JWT needs [identity_provider], and it is used only so.
    let idp = "\n[identity_provider]\nissuer = \"https://login.example.org/\"\njwks_uri = \"https://login.example.org/jwks\"\naudiences = [\"vakt\"]\n";
    let jwt = "\n[envoy]\nemployee_jwt_header = \"x-vakt-employee-token\"\n";
    let (code, t) = check(&format!("{mp}{jwt}{REGISTER_ROUTE}"));
    assert_eq!(code, Some(78), "{t}");
    assert!(
        t.contains("envoy.employee_jwt_header: needs [identity_provider]"),
        "{t}"
    );
    let (code, t) = check(&format!("{mp}{idp}{REGISTER_ROUTE}"));
    assert_eq!(code, Some(78), "{t}");
    assert!(
        t.contains("identity_provider: is configured, but [envoy] employee_jwt_header is not set"),
        "{t}"
    );
    let (code, t) = check(&format!("{mp}{jwt}{idp}{REGISTER_ROUTE}"));
    assert_eq!(code, Some(0), "{t}");
    // Packages the schema does not know, in a route and in the scopes.
    let unknown = format!(
        "{}\nno-such-package = [\"altinn:instances.read\"]\n{}",
        mp.trim_end(),
        REGISTER_ROUTE.replace(
            "package = \"regnskapsforer-med-signeringsrettighet\"",
            "package = \"also-not-a-package\"\nscopes = [\"altinn:instances.read\"]"
        )
    )
    .replace(
        "regnskapsforer-med-signeringsrettighet = ",
        "also-not-a-package = ",
    );
    let (code, t) = check(&unknown);
    assert_eq!(code, Some(78), "{t}");
    for want in [
        "maskinporten.scopes: \"urn:altinn:accesspackage:no-such-package\" is not a known access package",
        "route[0] (\"register\").package: \"urn:altinn:accesspackage:also-not-a-package\" is not a known access package",
    ] {
        assert!(t.contains(want), "{want:?} not in {t}");
    }
}

#[test]
fn config_show_shows_the_tables_with_the_key_path_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    let mp = maskinporten_table(dir.path(), "https://test.maskinporten.no/");
    std::fs::write(&path, format!("max-batch = 5\n{mp}{REGISTER_ROUTE}")).unwrap();
    let out = vakt(&["config", "show", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    let key = dir.path().join("maskinporten.key");
    for want in [
        "max-batch = 5".to_owned(),
        "[maskinporten]".to_owned(),
        format!("key_file = \"{}\"", key.display()),
        "issuer = \"https://test.maskinporten.no/\"".to_owned(),
        "# algorithm = \"RS256\"  # default".to_owned(),
        "[[route]]".to_owned(),
        "name = \"register\"".to_owned(),
    ] {
        assert!(shown.contains(&want), "{want:?} not in {shown}");
    }
    let pem = std::fs::read_to_string(&key).unwrap();
    let body = pem.lines().nth(1).unwrap();
    assert!(
        !shown.contains(body) && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
}

/// The configuration docs/maskinporten.md and the README show for
/// Maskinporten's test environment is accepted as it is, with a key file where
/// it says.
#[test]
fn the_documented_maskinporten_example_is_accepted() {
    for doc in [MP_DOC, include_str!("../../README.md")] {
        documented_maskinporten_example_is_accepted(doc);
    }
}

fn documented_maskinporten_example_is_accepted(doc: &str) {
    let start = doc.find("```toml\n[maskinporten]").expect("the example");
    let example = &doc[start + "```toml\n".len()..];
    let example = &example[..example.find("```").unwrap()];
    assert!(example.contains("issuer = \"https://test.maskinporten.no/\""));
    assert!(example.contains("base_url = \"https://platform.tt02.altinn.no\""));
    let dir = tempfile::tempdir().unwrap();
    let key = common::maskinporten::write_private(
        dir.path(),
        "maskinporten.key",
        &common::maskinporten::key(1).pkcs8_pem,
    );
    let config = example.replace("/etc/vakt/maskinporten.key", key.to_str().unwrap());
    assert_ne!(config, example, "the example names its key file");
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, &config).unwrap();
    let out = vakt(&["config", "check", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}\n{config}", text(&out));
    // Production changes only settings.
    let production = config
        .replace(
            "https://test.maskinporten.no/",
            vakt::maskinporten::PRODUCTION_ISSUER,
        )
        .replace("platform.tt02.altinn.no", "platform.altinn.no");
    std::fs::write(&path, &production).unwrap();
    let out = vakt(&["config", "check", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A SIGHUP that adds [maskinporten] and a route: AuthorizeWithToken goes from
/// FAILED_PRECONDITION to a token the Altinn stand-in accepts, and Check
/// decides the new route. A file with a problem then keeps the last good
/// binding, and one that leaves [maskinporten] unchanged keeps its client (and
/// its cached token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_that_adds_the_binding_and_a_route_is_used_by_the_next_calls() {
    use common::maskinporten::{StandIn, SCOPE};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    use std::time::Duration;
    let mp = StandIn::start().await;
    // tk-regnskap as Altinn knows it: owned by Tall og Kontroll, its externalRef.
    mp.add_fixture("310001015", Some("tk-regnskap"), "tk-regnskap", None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, "decision-log = \"off\"\n").unwrap();
    let config = path.to_str().unwrap().to_owned();
    let server = tokio::task::spawn_blocking(move || Spawned::start(&["--config", &config], false))
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = vakt::proto::authorizer_client::AuthorizerClient::new(channel.clone());
    let mut check = AuthorizationClient::new(channel);
    let ask = || vakt::proto::AuthorizeWithTokenRequest {
        request: Some(request("kari", "tk-regnskap", "310015156", REGNSKAP)),
        scopes: vec![SCOPE.into()],
    };
    let envoy_request = || CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: "platform.altinn.no".into(),
                    path: "/register/api/v1/organizations/310015156/units".into(),
                    headers: [("x-vakt-employee".to_owned(), "kari".to_owned())].into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    };
    let err = client.authorize_with_token(ask()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let before = check.check(envoy_request()).await;
    assert!(
        !matches!(&before, Ok(r) if matches!(r.get_ref().http_response, Some(HttpResponse::OkResponse(_)))),
        "Check allowed without a route: {before:?}"
    );

    // The binding and a route, then SIGHUP.
    let good = format!(
        "decision-log = \"off\"\n{}{REGISTER_ROUTE}",
        maskinporten_table(dir.path(), &mp.issuer)
    );
    std::fs::write(&path, &good).unwrap();
    signal(server.pid(), libc::SIGHUP);
    let answer = eventually_some(
        Duration::from_secs(20),
        "AuthorizeWithToken to work",
        || {
            let mut c = client.clone();
            async move { c.authorize_with_token(ask()).await.ok() }
        },
    )
    .await
    .into_inner();
    assert_eq!(
        answer.decision,
        vakt::proto::Decision::Allow as i32,
        "{answer:?}"
    );
    let claims = mp.altinn_accepts(&answer.access_token).unwrap();
    assert_eq!(
        claims["authorization_details"][0]["systemuser_id"][0],
        "tk-regnskap"
    );
    let allowed = check.check(envoy_request()).await.unwrap().into_inner();
    let Some(HttpResponse::OkResponse(ok)) = &allowed.http_response else {
        panic!("Check did not allow the new route: {allowed:?}");
    };
    let bearer = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key.eq_ignore_ascii_case("authorization"))
        .map(|h| h.value.clone())
        .expect("Check sets authorization");
    let injected = bearer.strip_prefix("Bearer ").expect("a bearer token");
    mp.altinn_accepts(injected).unwrap();
    let hits = mp.token_hits();

    // A file with a problem: the last good binding stays.
    std::fs::write(&path, good.replace("kid = ", "kidd = ")).unwrap();
    signal(server.pid(), libc::SIGHUP);
    until(
        Duration::from_secs(20),
        "the bad file to be refused",
        || {
            server
                .diagnostics()
                .iter()
                .any(|l| l.contains("settings not reloaded") && l.contains("maskinporten.kidd"))
        },
    );
    let again = client
        .authorize_with_token(ask())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.decision, vakt::proto::Decision::Allow as i32);

    // The same [maskinporten] again: the client and its cached token are kept.
    std::fs::write(&path, &good).unwrap();
    signal(server.pid(), libc::SIGHUP);
    until(
        Duration::from_secs(20),
        "the binding to be reloaded",
        || {
            server
                .diagnostics()
                .iter()
                .any(|l| l.contains("binding reloaded") && l.contains("\"kept\""))
        },
    );
    let kept = client
        .authorize_with_token(ask())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.access_token, answer.access_token);
    assert_eq!(
        mp.token_hits(),
        hits,
        "a kept client asks Maskinporten nothing"
    );
    drop(server);
}
