//! The deployment example: each Kustomize overlay of deploy/kubernetes renders with
//! `kubectl kustomize` and passes `kubernetes-validate --strict` for Kubernetes 1.29
//! and the newest version it knows; in each, vakt is a native sidecar whose flags,
//! environment variables and `vakt.toml` are ones `vakt serve` accepts, with probes
//! on the admin listener the configuration opens, its socket, key and decision log
//! on the volumes they need, and the decision log on a volume of each pod's own.
//! The Dockerfile builds with the command CI runs.

use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The overlays a user applies (`kubectl apply -k deploy/kubernetes/overlays/NAME`).
const OVERLAYS: [&str; 2] = ["files", "postgres"];

/// The oldest Kubernetes with native sidecars on by default.
const OLDEST_KUBERNETES: &str = "1.29";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn vakt(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vakt"));
    cmd.args(args).env_remove("VAKT_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Every `--flag` and `VAKT_…` variable of `vakt serve`, from its help.
fn serve_vocabulary() -> (Vec<String>, Vec<String>) {
    let help = String::from_utf8(vakt(&["serve", "--help"], &[]).stdout).unwrap();
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

/// Runs a tool the test needs, failing with what to install when it is missing.
fn run(program: &Path, args: &[&str], install: &str) -> std::process::Output {
    match Command::new(program).args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{} is not installed: {install}", program.display())
        }
        Err(e) => panic!("{}: {e}", program.display()),
    }
}

/// An overlay as `kubectl kustomize` renders it (what `kubectl apply -k` sends).
fn render(overlay: &str) -> String {
    let dir = root().join("deploy/kubernetes/overlays").join(overlay);
    let out = run(
        Path::new("kubectl"),
        &["kustomize", dir.to_str().unwrap()],
        "tests/it/deploy.rs renders deploy/kubernetes/overlays/* with `kubectl kustomize`; \
         install kubectl 1.27 or newer (its kustomize v5 reads these overlays; tested \
         with kubectl 1.32) and run again",
    );
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// kubernetes-validate from the virtual environment scripts/test makes, or PATH.
fn kubernetes_validate() -> PathBuf {
    let venv = root().join("target/python/bin/kubernetes-validate");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("kubernetes-validate")
    }
}

const INSTALL_KUBERNETES_VALIDATE: &str = "tests/it/deploy.rs validates the rendered overlays \
     with it; run scripts/test (it installs kubernetes-validate from PyPI into target/python) \
     or `target/python/bin/pip install kubernetes-validate`, and run again";

/// The newest Kubernetes version kubernetes-validate has schemas for: its default.
fn newest_kubernetes(validator: &Path) -> String {
    let help = run(validator, &["--help"], INSTALL_KUBERNETES_VALIDATE);
    let help = String::from_utf8_lossy(&help.stdout).replace(['\n', ' '], "");
    let newest = help
        .split("Defaultsto")
        .nth(1)
        .and_then(|v| {
            v.split('.')
                .take(2)
                .map(str::to_owned)
                .reduce(|a, b| a + "." + &b)
        })
        .unwrap_or_else(|| panic!("kubernetes-validate --help names no default version: {help}"));
    let minor = |v: &str| v.split('.').nth(1).unwrap().parse::<u32>().unwrap();
    assert!(
        minor(&newest) >= minor(OLDEST_KUBERNETES),
        "kubernetes-validate knows only up to {newest}"
    );
    newest
}

#[test]
fn each_overlay_renders_and_validates_strictly_against_kubernetes_1_29_and_the_newest() {
    let validator = kubernetes_validate();
    let newest = newest_kubernetes(&validator);
    let dir = tempfile::tempdir().unwrap();
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let kinds: Vec<String> = documents(&rendered)
            .iter()
            .map(|d| format!("{}/{}", str_of(&d["kind"]), str_of(&d["metadata"]["name"])))
            .collect();
        assert!(
            kinds.iter().any(|k| k == "StatefulSet/accounting-app")
                && kinds
                    .iter()
                    .any(|k| k.starts_with("ConfigMap/vakt-config-")),
            "{overlay}: {kinds:?}"
        );
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let out = run(
            &validator,
            &[
                "--strict",
                "-k",
                OLDEST_KUBERNETES,
                "-k",
                &newest,
                file.to_str().unwrap(),
            ],
            INSTALL_KUBERNETES_VALIDATE,
        );
        let report = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "overlays/{overlay}:\n{report}");
        // Every resource passed against both versions, and nothing else was said.
        for version in [OLDEST_KUBERNETES, &newest] {
            for kind in &kinds {
                let line = format!(
                    "passed for resource {} against version {version}",
                    kind.to_lowercase()
                );
                assert!(
                    report.contains(&line),
                    "overlays/{overlay}: no {line:?} in\n{report}"
                );
            }
        }
        assert!(
            report.lines().all(|l| l.contains(" passed for resource ")),
            "overlays/{overlay}:\n{report}"
        );
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

/// The directory a volume named `name` is mounted at in a container.
fn mount_of<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    seq(&container["volumeMounts"])
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| str_of(&m["mountPath"]))
}

/// The volume mounted at `dir` (or at a directory above it) in a container.
fn volume_at<'a>(overlay: &str, container: &'a Value, dir: &str) -> &'a str {
    seq(&container["volumeMounts"])
        .iter()
        .filter(|m| {
            let at = str_of(&m["mountPath"]);
            dir == at || dir.starts_with(&format!("{at}/"))
        })
        .max_by_key(|m| str_of(&m["mountPath"]).len())
        .map(|m| str_of(&m["name"]))
        .unwrap_or_else(|| panic!("{overlay}: nothing is mounted at {dir}"))
}

#[test]
fn each_overlay_runs_vakt_as_a_native_sidecar_with_settings_vakt_accepts() {
    let (flags, envs) = serve_vocabulary();
    assert!(flags.contains(&"config".to_owned()) && envs.contains(&"VAKT_DATA".to_owned()));
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit");
    assert!(
        vakt(&["audit", "keygen", "--out", key.to_str().unwrap()], &[])
            .status
            .success()
    );
    let repo = root().display().to_string();
    for overlay in OVERLAYS {
        let docs = documents(&render(overlay));
        let set = docs
            .iter()
            .find(|d| d["kind"] == "StatefulSet")
            .unwrap_or_else(|| panic!("{overlay}: no StatefulSet"));
        let pod = &set["spec"]["template"]["spec"];

        // A native sidecar: an init container that restarts, so the kubelet starts
        // the application after its startup probe and stops it after the application.
        assert!(
            seq(&pod["containers"]).iter().all(|c| c["name"] != "vakt"),
            "{overlay}: vakt is an ordinary container"
        );
        let c = seq(&pod["initContainers"])
            .iter()
            .find(|c| c["name"] == "vakt")
            .unwrap_or_else(|| panic!("{overlay}: no vakt init container"));
        assert_eq!(str_of(&c["restartPolicy"]), "Always", "{overlay}");
        let app = seq(&pod["containers"])
            .iter()
            .find(|c| c["name"] == "app")
            .unwrap();

        // Flags and variables `vakt serve` has.
        let args = seq(&c["args"]);
        assert_eq!(str_of(&args[0]), "serve", "{overlay}");
        for a in args.iter().map(str_of) {
            if let Some(flag) = a.strip_prefix("--") {
                let flag = flag.split('=').next().unwrap();
                assert!(
                    flags.iter().any(|f| f == flag),
                    "{overlay}: --{flag} is not a vakt serve flag"
                );
            }
        }
        let mut env = Vec::new();
        for e in seq(&c["env"]) {
            let name = str_of(&e["name"]).to_owned();
            assert!(
                envs.contains(&name),
                "{overlay}: {name} is not a vakt serve variable"
            );
            let value = match (&e["value"], &e["valueFrom"]["secretKeyRef"]) {
                (Value::String(v), _) => {
                    v.replace("/etc/vakt/data", &format!("{repo}/examples/world"))
                }
                // What `config check` can take for a URL it never connects to.
                (_, Value::Mapping(_)) if name == "VAKT_DATA" => {
                    "postgres://vakt@127.0.0.1:1/vakt".to_owned()
                }
                _ => panic!("{overlay}: {name} has no value to check"),
            };
            env.push((name, value));
        }

        // Every mount names a volume of the pod or a claim of each pod's own; no
        // claim is shared by the replicas.
        let claims: Vec<&str> = seq(&set["spec"]["volumeClaimTemplates"])
            .iter()
            .map(|t| str_of(&t["metadata"]["name"]))
            .collect();
        let volumes = seq(&pod["volumes"]);
        assert!(
            volumes.iter().all(|v| v["persistentVolumeClaim"].is_null()),
            "{overlay}: a claim that all replicas would share"
        );
        let volume = |name: &str| volumes.iter().find(|v| v["name"] == name);
        for m in seq(&c["volumeMounts"])
            .iter()
            .chain(seq(&app["volumeMounts"]))
        {
            let name = str_of(&m["name"]);
            assert!(
                volume(name).is_some() || claims.contains(&name),
                "{overlay}: the mount {name} has no volume"
            );
        }

        // The configuration: the ConfigMap kustomize named, mounted at --config.
        let config_at = args
            .iter()
            .map(str_of)
            .skip_while(|a| *a != "--config")
            .nth(1)
            .unwrap();
        let config_volume = volume(volume_at(overlay, c, config_at)).unwrap();
        let config_map = str_of(&config_volume["configMap"]["name"]);
        let toml_text = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == config_map)
            .unwrap_or_else(|| panic!("{overlay}: no ConfigMap {config_map}"))["data"]["vakt.toml"]
            .as_str()
            .unwrap();
        let settings: toml::Table = toml::from_str(toml_text).unwrap();
        let setting = |k: &str| settings[k].as_str().unwrap();

        // Probes on the admin listener; the application starts once Vakt is ready.
        let admin: u64 = setting("metrics-listen")
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        for (probe, path) in [
            ("startupProbe", "/readyz"),
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/healthz"),
        ] {
            let p = &c[probe]["httpGet"];
            assert_eq!(str_of(&p["path"]), path, "{overlay}: {probe}");
            let port = seq(&c["ports"])
                .iter()
                .find(|q| q["name"] == p["port"])
                .unwrap_or_else(|| panic!("{overlay}: {probe} names a port vakt lacks"));
            assert_eq!(
                port["containerPort"].as_u64(),
                Some(admin),
                "{overlay}: {probe}"
            );
        }

        // The socket in a directory both containers mount, at the address the
        // application is given.
        let socket = setting("listen-unix");
        let socket_dir = socket.rsplit_once('/').unwrap().0;
        let shared = volume_at(overlay, c, socket_dir);
        assert!(!volume(shared).unwrap()["emptyDir"].is_null(), "{overlay}");
        assert_eq!(mount_of(app, shared), Some(socket_dir), "{overlay}");
        assert!(
            seq(&app["env"])
                .iter()
                .any(|e| str_of(&e["value"]) == format!("unix://{socket}")),
            "{overlay}: the application is not given unix://{socket}"
        );

        // The signing key from a Secret; the decision log file on each pod's claim.
        let key_at = setting("decision-log-signing-key");
        let key_volume = volume(volume_at(overlay, c, key_at)).unwrap();
        assert!(
            !key_volume["secret"].is_null(),
            "{overlay}: the key is no Secret"
        );
        let files: Vec<&str> = settings["decision-log"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s.as_str()?.strip_prefix("file:"))
            .collect();
        assert!(!files.is_empty(), "{overlay}: no durable decision log");
        for f in files {
            let on = volume_at(overlay, c, f);
            assert!(
                claims.contains(&on),
                "{overlay}: the decision log {f} is on {on}, not on a claim of each pod's own"
            );
        }

        // `vakt config check` accepts it, its in-pod paths pointing at this
        // repository's directories, with the container's environment.
        let local = toml_text
            .replace("/etc/vakt/policies", &format!("{repo}/policies"))
            .replace("/etc/vakt/schema", &format!("{repo}/schema"))
            .replace(key_at, &format!("{}.key", key.display()));
        let path = keys.path().join(format!("{overlay}.toml"));
        std::fs::write(&path, local).unwrap();
        let out = vakt(&["config", "check", path.to_str().unwrap()], &env);
        assert!(
            out.status.success(),
            "{overlay}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The data source is the overlay's, and is one vakt reads.
        let data = &env.iter().find(|(k, _)| k == "VAKT_DATA").unwrap().1;
        match overlay {
            "files" => {
                assert!(
                    !volume(volume_at(overlay, c, "/etc/vakt/data")).unwrap()["configMap"]
                        .is_null()
                );
                assert!(data.ends_with("/examples/world"), "{data}");
            }
            _ => assert!(data.starts_with("postgres://"), "{data}"),
        }
    }
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
