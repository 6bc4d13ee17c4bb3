//! Shared test harness: starts the real Vakt server on 127.0.0.1:0 and connects a
//! real tonic client to it.
#![allow(dead_code)]

pub mod altinn;
pub mod idp;
pub mod maskinporten;
pub mod otlp;
pub mod pg;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use vakt::decision_log::DecisionLog;
use vakt::proto::authorizer_client::AuthorizerClient;
use vakt::proto::{AuthorizeRequest, AuthorizeResponse, Decision};
use vakt::rules::snapshot::{Snapshot, SourcePaths, Sources};
use vakt::server::{serve, Vakt};

pub const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
pub const REVISOR: &str = "urn:altinn:accesspackage:ansvarlig-revisor";
pub const SYKEFRAVAER: &str = "urn:altinn:accesspackage:sykefravaer";
pub const AORDNING: &str = "urn:altinn:accesspackage:a-ordning";
pub const SKATT: &str = "urn:altinn:accesspackage:skatt-naering";
pub const MVA: &str = "urn:altinn:accesspackage:merverdiavgift";
pub const FORRETNINGSFORER: &str = "urn:altinn:accesspackage:forretningsforer-eiendom";

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: AuthorizerClient<Channel>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The embedded default: shipped policies, schema and example world.
pub fn default_snapshot() -> Snapshot {
    Snapshot::build(&Sources::embedded()).expect("embedded default loads")
}

/// A snapshot from directories; unset ones come from the embedded default.
pub fn snapshot_from(
    policies: Option<&Path>,
    schema: Option<&Path>,
    data: Option<&Path>,
) -> Snapshot {
    let paths = SourcePaths {
        policies: policies.map(Path::to_path_buf),
        schema: schema.map(Path::to_path_buf),
        data: data.map(Path::to_path_buf),
        ..Default::default()
    };
    Snapshot::build(&Sources::read(&paths).expect("sources read")).expect("snapshot builds")
}

pub async fn start(snapshot: Snapshot) -> TestServer {
    start_with(snapshot, DecisionLog::disabled(), 100).await
}

pub async fn start_with(snapshot: Snapshot, log: DecisionLog, max_batch: usize) -> TestServer {
    let vakt = Vakt::new(snapshot, log).with_options(vakt::server::Options {
        max_batch,
        ..Default::default()
    });
    start_vakt(Arc::new(vakt)).await
}

/// Serves `vakt` on 127.0.0.1:0 and connects a client.
pub async fn start_vakt(vakt: Arc<Vakt>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(listener, vakt, async {
            let _ = stopped.await;
        })
        .await
        .expect("server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("client connects");
    TestServer {
        addr,
        client: AuthorizerClient::new(channel.clone()),
        channel,
        stop: Some(stop),
    }
}

pub fn request(employee: &str, system_user: &str, client: &str, package: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        employee_id: employee.into(),
        system_user_id: system_user.into(),
        client_org_number: client.into(),
        access_package: package.into(),
        ..Default::default()
    }
}

impl TestServer {
    pub async fn ask(
        &mut self,
        employee: &str,
        system_user: &str,
        client: &str,
        package: &str,
    ) -> AuthorizeResponse {
        self.client
            .authorize(request(employee, system_user, client, package))
            .await
            .unwrap_or_else(|s| {
                panic!("Authorize({employee}, {system_user}, {client}) failed: {s:?}")
            })
            .into_inner()
    }
}

pub fn policy_ids(r: &AuthorizeResponse) -> Vec<&str> {
    r.reasons.iter().map(|r| r.policy_id.as_str()).collect()
}

/// Asserts an allow.
#[track_caller]
pub fn assert_allow(r: &AuthorizeResponse) {
    assert_eq!(r.decision(), Decision::Allow, "expected ALLOW, got {r:#?}");
    assert_eq!(policy_ids(r), ["use-system-user"], "{r:#?}");
}

/// Asserts a deny whose reasons are exactly `ids`.
#[track_caller]
pub fn assert_deny(r: &AuthorizeResponse, ids: &[&str]) {
    assert_eq!(r.decision(), Decision::Deny, "expected DENY, got {r:#?}");
    let mut got = policy_ids(r);
    got.sort();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(got, want, "{r:#?}");
    assert!(r.reasons.iter().all(|x| !x.message.is_empty()));
}

/// A google.protobuf.Struct of caller context attributes.
pub fn context(pairs: &[(&str, prost_types::value::Kind)]) -> prost_types::Struct {
    prost_types::Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    prost_types::Value {
                        kind: Some(v.clone()),
                    },
                )
            })
            .collect(),
    }
}

/// The `vakt` binary running `serve` in a child process; stopped with SIGKILL if
/// it is still running when dropped.
pub struct Spawned {
    child: std::process::Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// Every diagnostic line it has written so far.
    diagnostics: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Spawned {
    /// Starts `vakt serve --listen 127.0.0.1:0 ARGS` and waits (at most 60 s) for
    /// its "listening" line. Its stdout (the decision log) is piped when
    /// `capture_stdout`; its diagnostics keep being drained.
    pub fn start(args: &[&str], capture_stdout: bool) -> Self {
        Self::start_with(args, capture_stdout, |_| {})
    }

    /// [`Spawned::start`], with `adjust` applied to the command first (for limits
    /// set in the child, or its environment).
    pub fn start_with(
        args: &[&str],
        capture_stdout: bool,
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut command = Command::new(env!("CARGO_BIN_EXE_vakt"));
        adjust(&mut command);
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(if capture_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let diagnostics = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = diagnostics.clone();
        // Reads diagnostics for the address, then keeps draining them so the
        // server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if v["fields"]["message"] == "listening" {
                    let _ = tx.send(v["fields"]["address"].as_str().unwrap_or("").to_owned());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("vakt serve {args:?} did not start listening within 60 s");
            }
        };
        Self {
            child,
            addr,
            diagnostics,
        }
    }

    /// The diagnostic lines written so far.
    pub fn diagnostics(&self) -> Vec<String> {
        self.diagnostics.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM and waits (at most 30 s) for a graceful exit; returns what it
    /// wrote to stdout when that was captured.
    pub fn stop(mut self) -> String {
        use std::io::Read;
        // Read stdout while waiting, so a full pipe cannot hold the server up.
        let reader = self.child.stdout.take().map(|mut stdout| {
            std::thread::spawn(move || {
                let mut out = String::new();
                let _ = stdout.read_to_string(&mut out);
                out
            })
        });
        signal(self.pid(), libc::SIGTERM);
        let status = wait_at_most(&mut self.child, std::time::Duration::from_secs(30));
        if status.is_none() {
            let _ = self.child.kill();
        }
        let out = reader
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "vakt serve did not exit cleanly on SIGTERM: {status:?}"
        );
        out
    }

    /// Sends SIGTERM and waits at most `limit` for the exit; `None` if it did not
    /// exit in time (it is killed then).
    pub fn stop_within(mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        signal(self.pid(), libc::SIGTERM);
        let status = wait_at_most(&mut self.child, limit);
        if status.is_none() {
            let _ = self.child.kill();
        }
        status
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        signal(self.pid(), libc::SIGKILL);
        let _ = wait_at_most(&mut self.child, std::time::Duration::from_secs(30));
    }

    /// Runs `calls` with a client connected to the server, on a runtime of its own.
    pub fn with_client<F, Fut, T>(&self, calls: F) -> T
    where
        F: FnOnce(AuthorizerClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // The runtime, and with it the client's connection, is gone when this
        // returns, so a graceful stop need not wait for it.
        rt.block_on(async {
            let client = AuthorizerClient::connect(self.url()).await.unwrap();
            calls(client).await
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the vakt binary with `args` to the end and returns what it printed.
pub fn vakt(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .output()
        .unwrap()
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Waits for the child to exit, at most `limit`.
pub fn wait_at_most(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Polls `done` every 10 ms until it holds; panics with `what` after `limit`.
pub async fn eventually(limit: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {limit:?} for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Polls `cond` every 10 ms until it holds and returns how long that took; panics
/// naming `what` and the time waited once `limit` has passed. The blocking twin of
/// [`eventually`], for tests that run outside an async runtime. The short period keeps
/// the returned time close to the moment the state changed, which tests that measure
/// how fast a change applies rely on.
pub fn until(
    limit: std::time::Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !cond() {
        let waited = start.elapsed();
        assert!(
            waited < limit,
            "waited {waited:?} (limit {limit:?}) for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    start.elapsed()
}

/// Calls `attempt` every 10 ms until it returns `Some`, and returns that value;
/// panics naming `what` once `limit` has passed. For waits whose check is itself
/// asynchronous: a call, a connection, a health probe.
pub async fn eventually_some<T, Fut>(
    limit: std::time::Duration,
    what: &str,
    mut attempt: impl FnMut() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = attempt().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {limit:?} for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The blocking twin of [`eventually_some`]: calls `attempt` every 10 ms until it
/// returns `Some`; panics naming `what` once `limit` has passed.
pub fn until_some<T>(
    limit: std::time::Duration,
    what: &str,
    mut attempt: impl FnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = attempt() {
            return v;
        }
        let waited = start.elapsed();
        assert!(
            waited < limit,
            "waited {waited:?} (limit {limit:?}) for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

// The admin HTTP listener (`--metrics-listen`), as a probe or scraper sees it.

/// The admin listener's address, from the "admin listening" diagnostic.
pub fn admin_addr(s: &Spawned) -> String {
    logged_address(s, "admin listening")
}

/// The address of the AuthZEN listener (`--authzen-listen 127.0.0.1:0`).
pub fn authzen_addr(s: &Spawned) -> String {
    logged_address(s, "AuthZEN API listening")
}

/// The `address` field of the diagnostic line `message`.
fn logged_address(s: &Spawned, message: &str) -> String {
    s.diagnostics()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == message)
        .and_then(|v| v["fields"]["address"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no {message:?} line"))
}

/// A plain HTTP/1.1 GET: (status, body).
pub fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: vakt\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `name{labels}` in a scrape.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A gRPC client over the Unix socket at `path`; the error says why it could not
/// connect.
pub async fn unix_client(path: std::path::PathBuf) -> Result<AuthorizerClient<Channel>, String> {
    let channel = tonic::transport::Endpoint::from_static("http://vakt.local")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(AuthorizerClient::new(channel))
}

/// The Python with grpcio and grpcio-tools: `VAKT_PYTHON`, or the virtual
/// environment `scripts/test` makes in `target/python`.
pub fn python() -> std::path::PathBuf {
    let p = std::env::var_os("VAKT_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/python/bin/python"
            ))
        });
    let ok = std::process::Command::new(&p)
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} has no grpcio and grpcio-tools: run scripts/test (it makes target/python), or set VAKT_PYTHON to a Python with `pip install grpcio grpcio-tools`",
        p.display()
    );
    p
}

/// Python stubs of `proto/` generated with `py`'s grpcio-tools, in a temporary
/// directory that lives as long as the value.
pub fn python_stubs(py: &std::path::Path) -> tempfile::TempDir {
    let root = env!("CARGO_MANIFEST_DIR");
    let stubs = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(py)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(format!("{root}/proto"))
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .arg(format!("{root}/proto/vakt/v1/authorization.proto"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stubs
}
