//! The deployment example: each Kustomize overlay of deploy/kubernetes renders with
//! `kubectl kustomize` and passes `kubernetes-validate --strict` for Kubernetes 1.29
//! and the newest version it knows; in each, vakt is a native sidecar whose flags,
//! environment variables and `vakt.toml` are ones `vakt serve` accepts, with probes
//! on the admin listener the configuration opens, its socket, key and decision log
//! on the volumes they need, and the decision log on a volume of each pod's own.
//! The Dockerfile builds with the command CI runs. The egress gateway example
//! (deploy/kubernetes/egress) validates too, and its NetworkPolicies, Secret
//! mounts, envoy.yaml (checked against Envoy's v3 API from the envoy-types
//! protos) and vakt.toml keep Vakt's check binding.

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
    render_dir(&root().join("deploy/kubernetes/overlays").join(overlay))
}

/// A Kustomize directory as `kubectl kustomize` renders it.
fn render_dir(dir: &Path) -> String {
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
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let kinds = validate_strictly(&format!("overlays/{overlay}"), &rendered);
        assert!(
            kinds.iter().any(|k| k == "StatefulSet/accounting-app")
                && kinds
                    .iter()
                    .any(|k| k.starts_with("ConfigMap/vakt-config-")),
            "{overlay}: {kinds:?}"
        );
    }
}

/// Validates rendered manifests with `kubernetes-validate --strict` against
/// Kubernetes 1.29 and the newest version it knows: every resource passes
/// against both and nothing else is said. Returns each resource as `Kind/name`.
fn validate_strictly(name: &str, rendered: &str) -> Vec<String> {
    let validator = kubernetes_validate();
    let newest = newest_kubernetes(&validator);
    let dir = tempfile::tempdir().unwrap();
    let kinds: Vec<String> = documents(rendered)
        .iter()
        .map(|d| format!("{}/{}", str_of(&d["kind"]), str_of(&d["metadata"]["name"])))
        .collect();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, rendered).unwrap();
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
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}:\n{report}");
    // Every resource passed against both versions, and nothing else was said.
    for version in [OLDEST_KUBERNETES, &newest] {
        for kind in &kinds {
            let line = format!(
                "passed for resource {} against version {version}",
                kind.to_lowercase()
            );
            assert!(report.contains(&line), "{name}: no {line:?} in\n{report}");
        }
    }
    assert!(
        report.lines().all(|l| l.contains(" passed for resource ")),
        "{name}:\n{report}"
    );
    kinds
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

// The egress gateway (deploy/kubernetes/egress): Envoy with Vakt's Check in
// front of every request to Altinn. Envoy is not packaged for these machines,
// so its configuration is read and checked here, not run.

/// The egress gateway example, relative to the repository.
const EGRESS: &str = "deploy/kubernetes/egress";
/// The gateway's Deployment and the label its pods carry.
const GATEWAY: &str = "altinn-egress";
const NAME_LABEL: &str = "app.kubernetes.io/name";
/// What a call's body may add to a Check message on top of the body itself:
/// its headers and attributes.
const CHECK_OVERHEAD_BYTES: u64 = 64 * 1024;

/// The egress example as `kubectl kustomize` renders it.
struct Egress {
    docs: Vec<Value>,
}

impl Egress {
    fn render() -> Self {
        Self {
            docs: documents(&render_dir(&root().join(EGRESS))),
        }
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{EGRESS}: no {kind}/{name}"))
    }

    /// Everything that runs pods: each with its pod template.
    fn workloads(&self) -> impl Iterator<Item = &Value> {
        self.docs
            .iter()
            .filter(|d| d["spec"]["template"]["spec"].is_mapping())
    }

    fn gateway(&self) -> &Value {
        self.named("Deployment", GATEWAY)
    }

    /// The text of `key` in the ConfigMap behind the volume mounted at `path`
    /// (a file in the mounted directory, or the file itself with subPath).
    fn mounted_file(&self, workload: &Value, container: &Value, path: &str) -> String {
        let pod = &workload["spec"]["template"]["spec"];
        let mount = seq(&container["volumeMounts"])
            .iter()
            .filter(|m| {
                let at = str_of(&m["mountPath"]);
                path == at || path.starts_with(&format!("{at}/"))
            })
            .max_by_key(|m| str_of(&m["mountPath"]).len())
            .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
        let key = match str_of(&mount["subPath"]) {
            "" => path.rsplit('/').next().unwrap(),
            sub => sub,
        };
        let volume = seq(&pod["volumes"])
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let map = str_of(&volume["configMap"]["name"]);
        assert!(!map.is_empty(), "{path} is not from a ConfigMap");
        str_of(&self.named("ConfigMap", map)["data"][key]).to_owned()
    }

    /// The vakt container of the gateway's pod.
    fn vakt(&self) -> &Value {
        container(self.gateway(), "vakt")
    }

    /// Vakt's configuration file as the gateway's vakt container reads it (its
    /// --config), and its settings.
    fn vakt_toml(&self) -> (String, toml::Table) {
        let args = seq(&self.vakt()["args"]);
        let at = args
            .iter()
            .map(str_of)
            .skip_while(|a| *a != "--config")
            .nth(1)
            .expect("vakt serve --config");
        let text = self.mounted_file(self.gateway(), self.vakt(), at);
        let table = toml::from_str(&text).unwrap();
        (text, table)
    }

    /// envoy.yaml as the gateway's envoy container reads it (its -c).
    fn envoy_yaml(&self) -> (String, Value) {
        let envoy = container(self.gateway(), "envoy");
        let args: Vec<&str> = seq(&envoy["args"]).iter().map(str_of).collect();
        let at = args
            .iter()
            .skip_while(|a| **a != "-c" && **a != "--config-path")
            .nth(1)
            .expect("envoy -c");
        let text = self.mounted_file(self.gateway(), envoy, at);
        let yaml = serde_yaml_ng::from_str(&text).unwrap();
        (text, yaml)
    }
}

/// Every container of a workload's pod, init containers (native sidecars) too.
fn containers(workload: &Value) -> Vec<&Value> {
    let pod = &workload["spec"]["template"]["spec"];
    seq(&pod["initContainers"])
        .iter()
        .chain(seq(&pod["containers"]))
        .collect()
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    containers(workload)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn pod_labels(workload: &Value) -> &Value {
    &workload["spec"]["template"]["metadata"]["labels"]
}

/// Whether a label selector selects these labels. Only matchLabels is used in
/// the example; anything else fails the test rather than being misread.
fn selects(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector["matchExpressions"].is_null(),
        "matchExpressions is not read by this test: {selector:?}"
    );
    selector["matchLabels"]
        .as_mapping()
        .map(|m| m.iter().all(|(k, v)| &labels[k.as_str().unwrap()] == v))
        .unwrap_or(true)
}

/// An egress rule that lets traffic leave the cluster: to anywhere (no `to`)
/// or to an address block.
fn leaves_the_cluster(rule: &Value) -> bool {
    let to = seq(&rule["to"]);
    to.is_empty() || to.iter().any(|peer| !peer["ipBlock"].is_null())
}

/// The ports a rule allows, as `PROTOCOL/port`; `*` for every port.
fn ports(rule: &Value) -> Vec<String> {
    let ports = seq(&rule["ports"]);
    if ports.is_empty() {
        return vec!["*".into()];
    }
    ports
        .iter()
        .map(|p| {
            let protocol = match str_of(&p["protocol"]) {
                "" => "TCP",
                p => p,
            };
            let port = match &p["port"] {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => "*".into(),
            };
            format!("{protocol}/{port}")
        })
        .collect()
}

/// A DNS rule: to kube-system's DNS pods on port 53 only.
fn is_dns(rule: &Value) -> bool {
    seq(&rule["to"]).iter().all(|peer| {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "kube-system"
            && peer["podSelector"]["matchLabels"]["k8s-app"] == "kube-dns"
    }) && ports(rule).iter().all(|p| p == "UDP/53" || p == "TCP/53")
}

#[test]
fn the_egress_gateway_renders_and_validates_strictly_against_kubernetes_1_29_and_the_newest() {
    let rendered = render_dir(&root().join(EGRESS));
    let kinds = validate_strictly(EGRESS, &rendered);
    for want in [
        "Deployment/altinn-egress",
        "Service/altinn-egress",
        "Deployment/accounting-app",
        "NetworkPolicy/default-deny-egress",
        "NetworkPolicy/altinn-egress-gateway",
        "NetworkPolicy/altinn-egress-clients",
    ] {
        assert!(kinds.iter().any(|k| k == want), "no {want} in {kinds:?}");
    }
}

#[test]
fn only_the_gateway_leaves_the_cluster_and_applications_reach_only_the_gateway() {
    let e = Egress::render();
    let policies: Vec<&Value> = e
        .all("NetworkPolicy")
        .into_iter()
        .filter(|p| seq(&p["spec"]["policyTypes"]).iter().any(|t| t == "Egress"))
        .collect();
    let gateway_labels = pod_labels(e.gateway());
    let envoy_port = seq(&container(e.gateway(), "envoy")["ports"])
        .iter()
        .find(|p| p["name"] == "http")
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap();

    // What each pod may send: the egress rules of every policy that selects it
    // (NetworkPolicies add up).
    let mut checked = 0;
    for w in e.workloads() {
        let name = str_of(&w["metadata"]["name"]);
        let labels = pod_labels(w);
        let selecting: Vec<&&Value> = policies
            .iter()
            .filter(|p| selects(&p["spec"]["podSelector"], labels))
            .collect();
        assert!(
            selecting
                .iter()
                .any(|p| p["spec"]["podSelector"] == Value::Mapping(Default::default())),
            "{name}: the namespace's default deny does not select it"
        );
        let rules: Vec<&Value> = selecting
            .iter()
            .flat_map(|p| seq(&p["spec"]["egress"]))
            .collect();
        let out: Vec<&&Value> = rules.iter().filter(|r| leaves_the_cluster(r)).collect();
        if name == GATEWAY {
            // TLS out, and only that: not to the cluster's own addresses or
            // the cloud's metadata service.
            assert_eq!(out.len(), 1, "{name}: {out:?}");
            assert_eq!(ports(out[0]), ["TCP/443"], "{name}");
            for peer in seq(&out[0]["to"]) {
                let except: Vec<&str> =
                    seq(&peer["ipBlock"]["except"]).iter().map(str_of).collect();
                for private in [
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "169.254.0.0/16",
                ] {
                    assert!(except.contains(&private), "{name}: {private} reachable");
                }
            }
        } else {
            assert!(out.is_empty(), "{name} may leave the cluster: {out:?}");
            // Only the gateway's Envoy, and DNS.
            let mut to_gateway = false;
            for r in &rules {
                let peers = seq(&r["to"]);
                let gateway_only = peers.iter().all(|p| {
                    p["namespaceSelector"].is_null()
                        && selects(&p["podSelector"], gateway_labels)
                        && p["podSelector"]["matchLabels"][NAME_LABEL] == GATEWAY
                });
                if gateway_only {
                    assert_eq!(ports(r), [format!("TCP/{envoy_port}")], "{name}");
                    to_gateway = true;
                } else {
                    assert!(is_dns(r), "{name}: an egress rule to elsewhere: {r:?}");
                }
            }
            assert!(to_gateway, "{name} cannot reach the gateway");
        }
        checked += 1;
    }
    assert_eq!(checked, 2, "the gateway and the application");

    // A policy that lets pods leave the cluster selects the gateway's pods
    // alone: its selector needs the gateway's name label.
    for p in &policies {
        if seq(&p["spec"]["egress"]).iter().any(leaves_the_cluster) {
            assert_eq!(
                p["spec"]["podSelector"]["matchLabels"][NAME_LABEL],
                GATEWAY,
                "{}",
                str_of(&p["metadata"]["name"])
            );
        }
    }

    // The gateway admits the applications on Envoy's port, and Prometheus on
    // Vakt's metrics port; nothing reaches Vakt's gRPC port, which is on loopback.
    let gateway_policy = e.named("NetworkPolicy", "altinn-egress-gateway");
    assert!(selects(
        &gateway_policy["spec"]["podSelector"],
        gateway_labels
    ));
    let ingress = seq(&gateway_policy["spec"]["ingress"]);
    assert!(!ingress.is_empty());
    for r in ingress {
        let p = ports(r);
        assert!(
            p == [format!("TCP/{envoy_port}")] || p == ["TCP/9464"],
            "ingress to the gateway on {p:?}"
        );
    }
}

#[test]
fn the_maskinporten_key_is_mounted_in_vakt_s_container_alone() {
    let e = Egress::render();
    let (_, settings) = e.vakt_toml();
    let key_file = settings["maskinporten"]["key_file"].as_str().unwrap();
    let gateway = e.gateway();
    let pod = &gateway["spec"]["template"]["spec"];
    let key_volume_name = volume_at(EGRESS, e.vakt(), key_file);
    let key_volume = seq(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == key_volume_name)
        .unwrap();
    let secret = str_of(&key_volume["secret"]["secretName"]);
    assert!(!secret.is_empty(), "{key_file} is not from a Secret");
    assert_eq!(key_volume["secret"]["defaultMode"].as_u64(), Some(0o400));

    // No other container of any pod mounts a volume of that Secret, or reads it
    // into its environment.
    let mut mounted_in = Vec::new();
    for w in e.workloads() {
        let volumes = seq(&w["spec"]["template"]["spec"]["volumes"]);
        let holds_secret = |v: &Value| {
            v["secret"]["secretName"] == secret
                || seq(&v["projected"]["sources"])
                    .iter()
                    .any(|s| s["secret"]["name"] == secret)
        };
        for c in containers(w) {
            let who = format!("{}/{}", str_of(&w["metadata"]["name"]), str_of(&c["name"]));
            for m in seq(&c["volumeMounts"]) {
                let v = volumes.iter().find(|v| v["name"] == m["name"]).unwrap();
                if holds_secret(v) {
                    mounted_in.push(who.clone());
                }
            }
            for env in seq(&c["env"]) {
                assert_ne!(
                    env["valueFrom"]["secretKeyRef"]["name"], secret,
                    "{who} reads the key"
                );
            }
            for from in seq(&c["envFrom"]) {
                assert_ne!(from["secretRef"]["name"], secret, "{who} reads the key");
            }
        }
    }
    assert_eq!(mounted_in, [format!("{GATEWAY}/vakt")]);

    // Envoy cannot reach Vakt's files through a shared process namespace.
    assert_ne!(pod["shareProcessNamespace"], Value::Bool(true));
    // The application mounts no Secret at all.
    let app = e.named("Deployment", "accounting-app");
    assert!(seq(&app["spec"]["template"]["spec"]["volumes"])
        .iter()
        .all(|v| v["secret"].is_null() && v["projected"].is_null()));
}

/// The port of a `host:port` address.
fn port_of(address: &str) -> u64 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

fn seconds(duration: &str) -> f64 {
    duration
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{duration:?} is not a duration in seconds"))
}

/// Each cluster's endpoints, as (host, port).
fn endpoints(cluster: &Value) -> Vec<(String, u64)> {
    seq(&cluster["load_assignment"]["endpoints"])
        .iter()
        .flat_map(|e| seq(&e["lb_endpoints"]))
        .map(|e| {
            let a = &e["endpoint"]["address"]["socket_address"];
            (
                str_of(&a["address"]).to_owned(),
                a["port_value"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The clusters whose endpoints are Altinn's, by name.
fn altinn_clusters(envoy: &Value) -> Vec<&Value> {
    let clusters = seq(&envoy["static_resources"]["clusters"]);
    // Only clusters with endpoints listed: a cluster that finds its hosts
    // otherwise (a dynamic forward proxy) would need a check of its own.
    for c in clusters {
        assert!(
            !c["load_assignment"].is_null(),
            "cluster {} has no listed endpoints",
            str_of(&c["name"])
        );
    }
    clusters
        .iter()
        .filter(|c| {
            endpoints(c)
                .iter()
                .any(|(h, _)| h.ends_with(".altinn.no") || h == "altinn.no")
        })
        .collect()
}

/// Each HTTP connection manager of the listeners, with its listener's port.
fn connection_managers(envoy: &Value) -> Vec<(u64, &Value)> {
    seq(&envoy["static_resources"]["listeners"])
        .iter()
        .flat_map(|l| {
            let port = l["address"]["socket_address"]["port_value"]
                .as_u64()
                .unwrap();
            seq(&l["filter_chains"])
                .iter()
                .flat_map(|c| seq(&c["filters"]))
                .filter(|f| f["name"] == "envoy.filters.network.http_connection_manager")
                .map(move |f| (port, &f["typed_config"]))
        })
        .collect()
}

/// The routes of a connection manager, each with its virtual host.
fn routes(hcm: &Value) -> Vec<(&Value, &Value)> {
    seq(&hcm["route_config"]["virtual_hosts"])
        .iter()
        .flat_map(|vh| seq(&vh["routes"]).iter().map(move |r| (vh, r)))
        .collect()
}

/// The connection manager whose routes go to Altinn, and its port; the test
/// fails unless there is exactly one.
fn altinn_connection_manager(envoy: &Value) -> (u64, &Value) {
    let altinn: Vec<&str> = altinn_clusters(envoy)
        .iter()
        .map(|c| str_of(&c["name"]))
        .collect();
    let found: Vec<(u64, &Value)> = connection_managers(envoy)
        .into_iter()
        .filter(|(_, hcm)| {
            routes(hcm)
                .iter()
                .any(|(_, r)| altinn.contains(&str_of(&r["route"]["cluster"])))
        })
        .collect();
    assert_eq!(found.len(), 1, "one listener goes to Altinn");
    found[0]
}

const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";

#[test]
fn envoy_asks_vakt_about_every_request_to_altinn_and_refuses_when_it_cannot() {
    let e = Egress::render();
    let (_, envoy) = e.envoy_yaml();
    let (_, vakt) = e.vakt_toml();
    let listen = vakt
        .get("listen")
        .and_then(|v| v.as_str())
        .unwrap_or("127.0.0.1:50051");
    assert!(
        listen.starts_with("127.0.0.1:"),
        "Vakt's Check is reachable from outside the pod: {listen}"
    );
    let (port, hcm) = altinn_connection_manager(&envoy);
    assert_eq!(
        seq(&container(e.gateway(), "envoy")["ports"])
            .iter()
            .find(|p| p["name"] == "http")
            .unwrap()["containerPort"]
            .as_u64(),
        Some(port)
    );

    // Check is the first filter: nothing acts on a request before Vakt has
    // decided it.
    let filters = seq(&hcm["http_filters"]);
    assert_eq!(filters[0]["name"], EXT_AUTHZ, "{filters:?}");
    assert_eq!(filters.last().unwrap()["name"], "envoy.filters.http.router");
    let authz = &filters[0]["typed_config"];
    assert_eq!(
        authz["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
    );
    assert_eq!(authz["transport_api_version"], "V3");
    // Said, not left to the default: Vakt out of reach means no request goes on.
    assert_eq!(authz["failure_mode_allow"], Value::Bool(false));
    assert!(authz["http_service"].is_null());

    // At Vakt's gRPC port, in this pod, over HTTP/2, with a deadline no longer
    // than Vakt's own.
    let grpc = &authz["grpc_service"];
    let timeout = seconds(str_of(&grpc["timeout"]));
    let vakt_timeout = vakt
        .get("request-timeout")
        .and_then(|v| v.as_str())
        .map_or(10.0, |t| {
            humantime::parse_duration(t).unwrap().as_secs_f64()
        });
    assert!(timeout > 0.0 && timeout <= vakt_timeout, "{timeout}");
    let cluster_name = str_of(&grpc["envoy_grpc"]["cluster_name"]);
    let cluster = seq(&envoy["static_resources"]["clusters"])
        .iter()
        .find(|c| c["name"] == cluster_name)
        .unwrap_or_else(|| panic!("no cluster {cluster_name}"));
    assert_eq!(
        endpoints(cluster),
        [("127.0.0.1".to_owned(), port_of(listen))]
    );
    let options = &cluster["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert!(options["explicit_http_config"]["http2_protocol_options"].is_mapping());

    // Bodies: whole or not at all, as bytes, no larger than Vakt reads, and a
    // Check carrying one fits in Vakt's largest message.
    let body = &authz["with_request_body"];
    assert_eq!(body["allow_partial_message"], Value::Bool(false));
    assert_eq!(body["pack_as_bytes"], Value::Bool(true));
    let max_request = body["max_request_bytes"].as_u64().unwrap();
    let vakt_max_body = vakt["envoy"]["max_body_bytes"].as_integer().unwrap() as u64;
    assert!(
        max_request <= vakt_max_body,
        "{max_request} > {vakt_max_body}"
    );
    let max_message = vakt
        .get("max-message-bytes")
        .and_then(|v| v.as_integer())
        .unwrap_or(1024 * 1024) as u64;
    assert!(
        max_request + CHECK_OVERHEAD_BYTES <= max_message,
        "a Check with a {max_request}-byte body does not fit Vakt's {max_message}-byte messages"
    );

    // The path Vakt decides is the path Altinn gets.
    assert_eq!(hcm["normalize_path"], Value::Bool(true));
    assert_eq!(hcm["merge_slashes"], Value::Bool(true));
    let escaped = str_of(&hcm["path_with_escaped_slashes_action"]);
    assert!(
        ["REJECT_REQUEST", "UNESCAPE_AND_REDIRECT"].contains(&escaped),
        "{escaped}"
    );

    // No route or virtual host turns Check off, and every route goes to one of
    // Altinn's clusters (or answers itself): nothing else is reachable.
    let altinn: Vec<&str> = altinn_clusters(&envoy)
        .iter()
        .map(|c| str_of(&c["name"]))
        .collect();
    let routes = routes(hcm);
    assert!(!routes.is_empty());
    for (vh, r) in routes {
        for per_filter in [
            &vh["typed_per_filter_config"],
            &r["typed_per_filter_config"],
        ] {
            let per_route = &per_filter[EXT_AUTHZ];
            assert_ne!(per_route["disabled"], Value::Bool(true), "{r:?}");
            // A route may skip the body; it may not change where Check goes.
            assert!(per_route["check_settings"]["grpc_service"].is_null());
        }
        assert!(
            r["direct_response"].is_mapping() || altinn.contains(&str_of(&r["route"]["cluster"])),
            "a route to elsewhere: {r:?}"
        );
    }

    // Envoy's admin API listens on loopback only.
    assert_eq!(
        envoy["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
}

#[test]
fn envoy_originates_tls_to_altinn_checking_the_name_and_the_ca() {
    let e = Egress::render();
    let (_, envoy) = e.envoy_yaml();
    let (_, vakt) = e.vakt_toml();
    let clusters = altinn_clusters(&envoy);
    assert!(clusters.len() >= 2, "the platform and an app owner");
    for c in &clusters {
        let name = str_of(&c["name"]);
        let eps = endpoints(c);
        let host = &eps[0].0;
        assert!(eps.iter().all(|(h, p)| h == host && *p == 443), "{name}");
        let tls = &c["transport_socket"];
        assert_eq!(tls["name"], "envoy.transport_sockets.tls", "{name}");
        let tls = &tls["typed_config"];
        assert_eq!(
            tls["@type"],
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
        );
        assert_eq!(str_of(&tls["sni"]), host, "{name}");
        let validation = &tls["common_tls_context"]["validation_context"];
        assert!(
            !str_of(&validation["trusted_ca"]["filename"]).is_empty(),
            "{name}: no CAs to check Altinn's certificate against"
        );
        assert!(
            seq(&validation["match_typed_subject_alt_names"])
                .iter()
                .any(|m| m["san_type"] == "DNS" && m["matcher"]["exact"] == host.as_str()),
            "{name}: the certificate's name is not checked"
        );
        assert!(
            validation["trust_chain_verification"].is_null()
                || validation["trust_chain_verification"] == "VERIFY_TRUST_CHAIN"
        );
    }

    // Each Altinn virtual host goes to the cluster of its own host, so the
    // host Vakt decides is the host Envoy connects to; and each is a host
    // Vakt counts as Altinn's, so Check never answers "not Altinn" for it.
    let (_, hcm) = altinn_connection_manager(&envoy);
    let altinn_hosts: Vec<&str> = vakt["envoy"]["altinn_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for vh in seq(&hcm["route_config"]["virtual_hosts"]) {
        let domains: Vec<&str> = seq(&vh["domains"]).iter().map(str_of).collect();
        for (_, r) in routes(hcm)
            .into_iter()
            .filter(|(v, _)| std::ptr::eq(*v, vh))
        {
            let cluster = clusters
                .iter()
                .find(|c| c["name"] == r["route"]["cluster"])
                .unwrap();
            assert_eq!(domains, [endpoints(cluster)[0].0.as_str()]);
        }
        for d in domains {
            assert!(
                altinn_hosts.iter().any(|h| match h.strip_prefix('*') {
                    Some(suffix) => d.ends_with(suffix) && d.len() > suffix.len(),
                    None => d == *h,
                }),
                "{d} is not among Vakt's altinn_hosts {altinn_hosts:?}"
            );
        }
    }
}

#[test]
fn the_application_reaches_altinn_through_the_gateway_over_plain_http() {
    let e = Egress::render();
    let (_, envoy) = e.envoy_yaml();
    let app = e.named("Deployment", "accounting-app");
    let c = container(app, "app");
    assert_eq!(
        containers(app).len(),
        1,
        "the application has no Vakt of its own"
    );
    let env = |name: &str| {
        seq(&c["env"])
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| str_of(&v["value"]).to_owned())
            .unwrap_or_else(|| panic!("the application has no {name}"))
    };

    // Its HTTP proxy is the gateway's Service, whose port leads to Envoy's
    // Altinn listener on the gateway's pods.
    let service = e.named("Service", GATEWAY);
    assert!(selects(
        &Value::Mapping(
            [("matchLabels".into(), service["spec"]["selector"].clone())]
                .into_iter()
                .collect()
        ),
        pod_labels(e.gateway())
    ));
    let (listener_port, hcm) = altinn_connection_manager(&envoy);
    let service_port = &seq(&service["spec"]["ports"])[0];
    let target = &service_port["targetPort"];
    let envoy_container = container(e.gateway(), "envoy");
    let target_port = seq(&envoy_container["ports"])
        .iter()
        .find(|p| &p["name"] == target || &p["containerPort"] == target)
        .unwrap()["containerPort"]
        .as_u64();
    assert_eq!(target_port, Some(listener_port));
    let proxy = format!(
        "http://{GATEWAY}:{}",
        service_port["port"].as_u64().unwrap()
    );
    assert_eq!(env("http_proxy"), proxy);
    assert_eq!(env("HTTP_PROXY"), proxy);
    assert!(seq(&c["env"]).iter().all(|v| v["name"] != "HTTPS_PROXY"));
    // Envoy takes requests in the form a proxy gets them.
    assert_eq!(
        hcm["http_protocol_options"]["allow_absolute_url"],
        Value::Bool(true)
    );

    // Plain HTTP to a host Envoy has a virtual host for: the gateway speaks TLS.
    let platform = env("ALTINN_PLATFORM_URL");
    let host = platform
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{platform} is not plain http"));
    assert!(seq(&hcm["route_config"]["virtual_hosts"])
        .iter()
        .any(|vh| seq(&vh["domains"]).iter().any(|d| d == host)));
}

#[test]
fn the_gateway_s_vakt_toml_passes_vakt_config_check_with_a_key_of_its_own() {
    let e = Egress::render();
    let vakt_container = e.vakt();
    let (text, settings) = e.vakt_toml();
    let repo = root().display().to_string();

    // Flags and variables `vakt serve` has.
    let (flags, envs) = serve_vocabulary();
    let args: Vec<&str> = seq(&vakt_container["args"]).iter().map(str_of).collect();
    assert_eq!(args[0], "serve");
    for a in &args {
        if let Some(flag) = a.strip_prefix("--") {
            assert!(flags.iter().any(|f| f == flag), "--{flag}");
        }
    }
    let env: Vec<(String, String)> = seq(&vakt_container["env"])
        .iter()
        .map(|e| {
            let name = str_of(&e["name"]).to_owned();
            assert!(envs.contains(&name), "{name} is not a vakt serve variable");
            let value =
                str_of(&e["value"]).replace("/etc/vakt/data", &format!("{repo}/examples/world"));
            (name, value)
        })
        .collect();

    // A throwaway RSA key where the Secret would be, readable by its owner only.
    let dir = tempfile::tempdir().unwrap();
    let key = {
        use aws_lc_rs::encoding::AsDer as _;
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        crate::common::maskinporten::pem("PRIVATE KEY", kp.as_der().unwrap().as_ref())
    };
    let key_file = crate::common::maskinporten::write_private(dir.path(), "mp.key", &key);
    let key_at = settings["maskinporten"]["key_file"].as_str().unwrap();
    let local = text
        .replace("/etc/vakt/policies", &format!("{repo}/policies"))
        .replace("/etc/vakt/schema", &format!("{repo}/schema"))
        .replace(key_at, key_file.to_str().unwrap());
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, local).unwrap();
    let out = vakt(&["config", "check", path.to_str().unwrap()], &env);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where the envoy-types crate's proto files are (it ships Envoy's
/// data-plane-api and what it imports).
fn envoy_protos() -> PathBuf {
    // This machine's packages only: the others' are not downloaded.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc).arg("-vV").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", host])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .expect("envoy-types among the dependencies")["manifest_path"]
        .as_str()
        .unwrap()
        .to_owned();
    Path::new(&manifest).parent().unwrap().join("proto")
}

/// Envoy's v3 API: the bootstrap and the packages of every `@type` the
/// configuration names.
fn envoy_api(protos: &Path, config: &Value) -> protox::prost_reflect::DescriptorPool {
    fn type_urls(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    if k == "@type" {
                        out.push(str_of(v).to_owned());
                    }
                    type_urls(v, out);
                }
            }
            Value::Sequence(s) => s.iter().for_each(|v| type_urls(v, out)),
            _ => {}
        }
    }
    let api = protos.join("data-plane-api");
    let mut files = vec!["envoy/config/bootstrap/v3/bootstrap.proto".to_owned()];
    let mut urls = Vec::new();
    type_urls(config, &mut urls);
    for url in urls {
        let name = url
            .strip_prefix("type.googleapis.com/")
            .unwrap_or_else(|| panic!("{url}: not a type.googleapis.com URL"));
        let package = name.rsplit_once('.').unwrap().0.replace('.', "/");
        let dir = std::fs::read_dir(api.join(&package))
            .unwrap_or_else(|_| panic!("{url}: no package {package} in Envoy's API"));
        for f in dir {
            let f = f.unwrap().file_name().into_string().unwrap();
            if f.ends_with(".proto") {
                files.push(format!("{package}/{f}"));
            }
        }
    }
    files.sort();
    files.dedup();
    let includes = [
        "data-plane-api",
        "xds",
        "protoc-gen-validate",
        "googleapis",
        "cel-spec",
        "opentelemetry-proto",
        "client_model",
    ]
    .map(|d| protos.join(d));
    let mut compiler = protox::Compiler::new(includes).unwrap();
    compiler.include_imports(true);
    compiler.open_files(files).unwrap();
    compiler.descriptor_pool()
}

/// Every field of `v` that `message` lacks, every value of the wrong kind,
/// every enum value it does not have, and two members of one oneof, each as
/// `path: what`. Messages as Envoy reads YAML: proto3 JSON names or field
/// names, `Any` by its `@type`, durations as `"5s"`, wrappers as plain values.
fn api_problems(
    pool: &protox::prost_reflect::DescriptorPool,
    message: &protox::prost_reflect::MessageDescriptor,
    v: &Value,
    at: &str,
    problems: &mut Vec<String>,
) {
    use protox::prost_reflect::Kind;
    let plain = |ok: bool, what: &str, problems: &mut Vec<String>| {
        if !ok {
            problems.push(format!("{at}: {v:?} is not {what}"));
        }
    };
    match message.full_name() {
        "google.protobuf.Duration" => {
            let ok = v
                .as_str()
                .and_then(|s| s.strip_suffix('s'))
                .is_some_and(|s| s.parse::<f64>().is_ok());
            return plain(ok, "a duration such as \"5s\"", problems);
        }
        "google.protobuf.Struct" => return plain(v.is_mapping(), "a mapping", problems),
        "google.protobuf.Value" => return,
        "google.protobuf.BoolValue" => return plain(v.is_bool(), "a boolean", problems),
        "google.protobuf.StringValue" => return plain(v.is_string(), "a string", problems),
        "google.protobuf.UInt32Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.Int64Value"
        | "google.protobuf.DoubleValue" => return plain(v.is_number(), "a number", problems),
        _ => {}
    }
    let Some(map) = v.as_mapping() else {
        problems.push(format!("{at}: not a mapping ({})", message.full_name()));
        return;
    };
    let mut message = message.clone();
    if message.full_name() == "google.protobuf.Any" {
        let url = str_of(&map["@type"]);
        match url
            .strip_prefix("type.googleapis.com/")
            .and_then(|n| pool.get_message_by_name(n))
        {
            Some(m) => message = m,
            None => {
                problems.push(format!("{at}: unknown @type {url:?}"));
                return;
            }
        }
    }
    let mut oneofs: Vec<(String, String)> = Vec::new();
    for (k, v) in map {
        let key = str_of(k);
        if key == "@type" {
            continue;
        }
        let here = format!("{at}.{key}");
        let Some(field) = message
            .get_field_by_name(key)
            .or_else(|| message.get_field_by_json_name(key))
        else {
            problems.push(format!("{here}: no such field in {}", message.full_name()));
            continue;
        };
        if let Some(oneof) = field.containing_oneof() {
            if let Some((_, other)) = oneofs.iter().find(|(o, _)| o == oneof.name()) {
                problems.push(format!(
                    "{here}: {other} is given too (oneof {})",
                    oneof.name()
                ));
            }
            oneofs.push((oneof.name().to_owned(), key.to_owned()));
        }
        let items: Vec<(String, &Value, Kind)> = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("a map field's kind is its entry message")
            };
            let kind = entry.map_entry_value_field().kind();
            let Some(entries) = v.as_mapping() else {
                problems.push(format!("{here}: not a mapping"));
                continue;
            };
            entries
                .iter()
                .map(|(k, v)| (format!("{here}.{}", str_of(k)), v, kind.clone()))
                .collect()
        } else if field.is_list() {
            let Some(list) = v.as_sequence() else {
                problems.push(format!("{here}: not a list"));
                continue;
            };
            list.iter()
                .enumerate()
                .map(|(i, v)| (format!("{here}[{i}]"), v, field.kind()))
                .collect()
        } else {
            vec![(here, v, field.kind())]
        };
        for (at, v, kind) in items {
            let ok = match &kind {
                Kind::Message(m) => {
                    api_problems(pool, m, v, &at, problems);
                    true
                }
                Kind::Enum(e) => match v {
                    Value::String(s) => e.get_value_by_name(s).is_some(),
                    _ => false,
                },
                Kind::Bool => v.is_bool(),
                Kind::String | Kind::Bytes => v.is_string(),
                Kind::Double | Kind::Float => v.is_number(),
                _ => v.as_i64().is_some(),
            };
            if !ok {
                problems.push(format!("{at}: {v:?} is not a {kind:?}"));
            }
        }
    }
}

#[test]
fn envoy_yaml_names_only_fields_and_values_of_envoy_s_v3_api() {
    let e = Egress::render();
    let (text, envoy) = e.envoy_yaml();
    let protos = envoy_protos();
    let pool = envoy_api(&protos, &envoy);
    let bootstrap = pool
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .unwrap();
    let check = |config: &Value| {
        let mut problems = Vec::new();
        api_problems(&pool, &bootstrap, config, "", &mut problems);
        problems
    };
    assert_eq!(check(&envoy), Vec::<String>::new());

    // The check sees a misspelt field, an enum value Envoy lacks, and a value
    // of the wrong kind, where Envoy would refuse to start.
    let misspelt: Value = serde_yaml_ng::from_str(
        &text
            .replace("merge_slashes: true", "merge_slash: true")
            .replace("REJECT_REQUEST", "REJECT")
            .replace(
                "allow_partial_message: false",
                "allow_partial_message: \"no\"",
            ),
    )
    .unwrap();
    let problems = check(&misspelt);
    for want in [
        ".merge_slash: no such field",
        ".path_with_escaped_slashes_action: String(\"REJECT\") is not",
        ".with_request_body.allow_partial_message: String(\"no\") is not",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want:?} not in {problems:#?}"
        );
    }
}
