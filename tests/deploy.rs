//! The deployment example: every manifest in deploy/kubernetes parses, the vakt
//! container's flags and environment variables are ones `vakt serve` accepts, its
//! `vakt.toml` passes `vakt config check`, the probes point at the admin listener
//! the configuration opens, and the Dockerfile builds with the command CI runs.

use std::path::Path;
use std::process::Command;

fn vakt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .env_remove("VAKT_CONFIG")
        .output()
        .unwrap()
}

/// Every `--flag` and `VAKT_…` variable of `vakt serve`, from its help.
fn serve_vocabulary() -> (Vec<String>, Vec<String>) {
    let help = String::from_utf8(vakt(&["serve", "--help"]).stdout).unwrap();
    let flags = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '<']).next())
        .map(str::to_owned)
        .collect();
    let envs = help
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[env: "))
        .filter_map(|l| l.split('=').next())
        .map(str::to_owned)
        .collect();
    (flags, envs)
}

fn manifests() -> Vec<(String, serde_yaml::Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.push((path.display().to_string(), v));
        }
    }
    assert!(docs.len() >= 3, "{docs:?}");
    docs
}

fn str_of(v: &serde_yaml::Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn every_manifest_uses_only_what_vakt_accepts() {
    let (flags, envs) = serve_vocabulary();
    assert!(flags.contains(&"config".to_owned()) && envs.contains(&"VAKT_DATA".to_owned()));
    let docs = manifests();
    let mut vakt_containers = 0;
    let mut admin_ports = Vec::new();
    for (file, doc) in &docs {
        let containers = doc["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for c in containers.iter().filter(|c| c["name"] == "vakt") {
            vakt_containers += 1;
            if let Some(args) = c["args"].as_sequence() {
                assert_eq!(str_of(&args[0]), "serve", "{file}");
                for a in args.iter().map(str_of) {
                    if let Some(flag) = a.strip_prefix("--") {
                        let flag = flag.split('=').next().unwrap();
                        assert!(
                            flags.iter().any(|f| f == flag),
                            "{file}: --{flag} is not a vakt serve flag"
                        );
                    }
                }
            }
            for e in c["env"].as_sequence().into_iter().flatten() {
                let name = str_of(&e["name"]);
                assert!(
                    envs.iter().any(|v| v == name),
                    "{file}: {name} is not a vakt serve variable"
                );
            }
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                let p = &c[probe]["httpGet"];
                if p.is_null() {
                    continue;
                }
                assert!(
                    ["/healthz", "/readyz"].contains(&str_of(&p["path"])),
                    "{file}: {probe} path"
                );
                let port = str_of(&p["port"]);
                let named = c["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|q| q["name"] == port)
                    .unwrap_or_else(|| {
                        panic!("{file}: {probe} names port {port:?}, which the container lacks")
                    });
                admin_ports.push(named["containerPort"].as_u64().unwrap());
            }
        }
    }
    assert!(vakt_containers >= 2, "{vakt_containers}");

    // The configuration: accepted by `vakt config check` once its in-pod paths
    // point at this repository's directories, and opening the probes' port.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit");
    assert!(vakt(&["audit", "keygen", "--out", key.to_str().unwrap()])
        .status
        .success());
    let root = env!("CARGO_MANIFEST_DIR");
    let mut checked = 0;
    for (file, doc) in &docs {
        let Some(toml) = doc["data"]["vakt.toml"].as_str() else {
            continue;
        };
        let metrics = toml
            .lines()
            .find_map(|l| l.strip_prefix("metrics-listen = "))
            .unwrap_or_else(|| panic!("{file}: vakt.toml opens no admin listener for the probes"));
        let port: u64 = metrics
            .trim_matches('"')
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            admin_ports.iter().all(|p| *p == port),
            "{file}: probes on {admin_ports:?}, admin on {port}"
        );
        let local = toml
            .replace("/etc/vakt/policies", &format!("{root}/policies"))
            .replace("/etc/vakt/schema", &format!("{root}/schema"))
            .replace("/etc/vakt/data", &format!("{root}/examples/world"))
            .replace(
                "/etc/vakt/audit/audit.key",
                &format!("{}.key", key.display()),
            );
        let path = dir.path().join("vakt.toml");
        std::fs::write(&path, local).unwrap();
        let out = vakt(&["config", "check", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 1);
}

#[test]
fn the_dockerfile_builds_with_the_command_ci_runs_and_runs_as_non_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let runs: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("RUN "))
        .collect();
    assert_eq!(runs, ["scripts/build-release"]);
    assert!(
        ci.lines().any(|l| l.trim() == "scripts/build-release"),
        "CI does not run the image's build"
    );
    assert!(dockerfile.contains("\nUSER 65532:65532\n"));
    assert!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count()
            == 2,
        "multi-stage"
    );
    // What the image runs by default is a command vakt accepts.
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .unwrap();
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert_eq!(cmd[..2], ["serve", "--config"]);
}
