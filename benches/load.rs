//! gRPC load against a floor: Authorize (and AuthorizeBatch) driven over loopback
//! by a load generator in this process against `vakt serve` in another, each result
//! a ratio to a floor measured in the same run, in interleaved rounds.
//!
//! The floor is a minimal tonic service in a third process (this binary, re-run
//! with `--serve-floor`): the same proto, the same transport settings and runtime
//! as Vakt, answering every call with a fixed response of a typical size, so the
//! ratio says what Vakt's own work costs on top of the transport.
//!
//! Run: `cargo bench --bench load` (about 5 minutes). Options after `--`:
//! `--seconds S` per run (2), `--rounds R` (3), `--concurrency 1,8,32,128`,
//! `--modes off,stdout,file,file+buffered,batch10,batch100,shadow,token,check`.
//! `shadow` is `stdout` with `--shadow-policies` (the shipped policies without
//! the tenant rule, so the cross-tenant requests of the mix flip): its
//! throughput over `stdout`'s is the cost of shadow evaluation.
//!
//! `token` and `check` make the decision binding (issue 25): `vakt serve
//! --config` with `[maskinporten]` pointed at a Maskinporten stand-in in this
//! process (the tests' own, `support/binding.rs`). `token` drives
//! `AuthorizeWithToken` over the same mix, the token cached (the warm-up fills
//! the cache); `check` drives Envoy's `Authorization/Check` with requests built
//! with envoy-types for a route table covering the mix. Both log to stdout and
//! are compared with the `stdout` mode of the same run (targets: at most 1.2×
//! and 1.5× an `Authorize`). With `token`, a cache miss is measured too: a
//! third server whose stand-in issues tokens shorter-lived than the cache's
//! refresh margin, so that every call fetches, against the stand-in's `/token`
//! timed directly (target: a miss adds one round trip, and exactly one token
//! request reaches the stand-in per miss).
//!
//! With `stdout` and `file` (issue 27): the durable log against what the disk
//! allows. Closed-loop callers each wait for their record's fsync, so at
//! concurrency C the durable mode can reach at most about
//! `stdout rps × RTT / (RTT + fsync)`, RTT being the stdout mode's round trip
//! (C / its throughput) and fsync the median `fdatasync` of a 500-byte append in
//! the log's directory, which this benchmark measures itself before each round
//! (`--fsync-samples N` appends, 300 by default). It reports the durable mode's
//! throughput against that bound, the floor and the stdout mode (targets: 0.75 of
//! the bound at 32, 0.8 of stdout at 128).
//! Without `--bench` (as `cargo test --benches` runs it) it is a short smoke run.

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use vakt::proto::authorizer_client::AuthorizerClient;
use vakt::proto::{
    AuthorizeBatchRequest, AuthorizeBatchResponse, AuthorizeRequest, AuthorizeResponse,
    AuthorizeWithTokenRequest, AuthorizeWithTokenResponse, ResolveSystemUserRequest,
    ResolveSystemUserResponse,
};

mod support;
use support::cpu_us;
#[path = "support/binding.rs"]
mod binding;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";

/// The mix: allows and denies of several kinds on the example world (what a
/// caller of the shipped sidecar would ask), and whether each is allowed.
const MIX: &[(&str, &str, &str, bool)] = &[
    ("kari", "tk-regnskap", "310015156", true),   // allow
    ("per", "tk-regnskap", "310015156", false),   // deny: deactivated
    ("kari", "tk-regnskap", "310020206", false),  // deny: link removed
    ("ola", "tk-regnskap", "310015156", true),    // allow
    ("ola", "tk-regnskap", "310017175", false),   // deny: portfolio
    ("randi", "rr-regnskap", "310021210", false), // deny: separation of duties
];

/// The requests sent, in turn.
fn requests() -> Vec<AuthorizeRequest> {
    MIX.iter()
        .map(|(e, s, c, _)| AuthorizeRequest {
            employee_id: (*e).into(),
            system_user_id: (*s).into(),
            client_org_number: (*c).into(),
            access_package: REGNSKAP.into(),
            ..Default::default()
        })
        .collect()
}

/// The mix as `AuthorizeWithToken` calls: the same requests and the scope that
/// `[maskinporten.scopes]` allows the package.
fn token_requests() -> Vec<AuthorizeWithTokenRequest> {
    requests()
        .into_iter()
        .map(|r| AuthorizeWithTokenRequest {
            request: Some(r),
            scopes: vec![binding::SCOPE.into()],
        })
        .collect()
}

/// The mix as Envoy's Check calls for `GET` to Altinn's register API: the
/// employee and the system user in Vakt's headers, the client in the path,
/// and the headers Envoy sends besides (the application's own bearer token,
/// which an ALLOW replaces).
fn check_requests() -> Vec<CheckRequest> {
    MIX.iter()
        .enumerate()
        .map(|(i, (e, s, c, _))| {
            let path = format!("/register/api/v1/organizations/{c}");
            let headers = [
                (":authority", "platform.altinn.no"),
                (":method", "GET"),
                (":path", path.as_str()),
                (":scheme", "https"),
                ("accept", "application/json"),
                ("user-agent", "regnskapsapp/2.3"),
                ("authorization", "Bearer application-token"),
                ("x-request-id", &format!("6f1c2d3e-0000-4000-8000-{i:012}")),
                ("x-vakt-employee", e),
                ("x-vakt-system-user", s),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            CheckRequest {
                attributes: Some(AttributeContext {
                    request: Some(Request {
                        time: None,
                        http: Some(HttpRequest {
                            id: format!("{i}"),
                            method: "GET".into(),
                            host: "platform.altinn.no".into(),
                            path: path.clone(),
                            scheme: "https".into(),
                            protocol: "HTTP/1.1".into(),
                            headers,
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                }),
            }
        })
        .collect()
}

/// What the load generator sends, built once.
struct Mix {
    single: Vec<AuthorizeRequest>,
    token: Vec<AuthorizeWithTokenRequest>,
    check: Vec<CheckRequest>,
}

impl Mix {
    fn new() -> Self {
        Self {
            single: requests(),
            token: token_requests(),
            check: check_requests(),
        }
    }
}

/// Whether an `AuthorizeWithToken` answer is what the mix's `i`th request
/// should get: the decision, and a token with an ALLOW only.
fn token_answer_right(r: &AuthorizeWithTokenResponse, i: usize) -> bool {
    let allowed = r.decision == vakt::proto::Decision::Allow as i32;
    // A token with an ALLOW, and none with a deny.
    let has_token = !r.access_token.is_empty();
    allowed == MIX[i].3 && allowed == has_token
}

/// Whether a Check answer is what the mix's `i`th request should get: OK with
/// the system user's token for an allow, a 403 for a deny.
fn check_answer_right(r: &CheckResponse, i: usize) -> bool {
    let code = r.status.as_ref().map_or(-1, |s| s.code);
    match (&r.http_response, MIX[i].3) {
        (Some(HttpResponse::OkResponse(ok)), true) => {
            code == 0
                && ok.headers.iter().any(|h| {
                    h.header.as_ref().is_some_and(|h| {
                        h.key == "authorization"
                            && h.value.starts_with("Bearer ")
                            && h.value != "Bearer application-token"
                    })
                })
        }
        (Some(HttpResponse::DeniedResponse(_)), false) => {
            code == tonic::Code::PermissionDenied as i32
        }
        _ => false,
    }
}

// ---- The floor: a minimal service with the same messages and transport. ----

/// Fixed answers of the size Vakt gives for an allow.
struct Floor {
    answer: AuthorizeResponse,
    with_token: AuthorizeWithTokenResponse,
}

#[tonic::async_trait]
impl vakt::proto::authorizer_server::Authorizer for Floor {
    async fn authorize(
        &self,
        _: tonic::Request<AuthorizeRequest>,
    ) -> Result<tonic::Response<AuthorizeResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.answer.clone()))
    }

    async fn authorize_batch(
        &self,
        req: tonic::Request<AuthorizeBatchRequest>,
    ) -> Result<tonic::Response<AuthorizeBatchResponse>, tonic::Status> {
        let n = req.into_inner().requests.len();
        Ok(tonic::Response::new(AuthorizeBatchResponse {
            responses: vec![self.answer.clone(); n],
        }))
    }

    async fn authorize_with_token(
        &self,
        _: tonic::Request<AuthorizeWithTokenRequest>,
    ) -> Result<tonic::Response<AuthorizeWithTokenResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.with_token.clone()))
    }

    async fn verify_token(
        &self,
        _: tonic::Request<vakt::proto::VerifyTokenRequest>,
    ) -> Result<tonic::Response<vakt::proto::VerifyTokenResponse>, tonic::Status> {
        Ok(tonic::Response::new(
            vakt::proto::VerifyTokenResponse::default(),
        ))
    }

    async fn resolve_system_user(
        &self,
        _: tonic::Request<ResolveSystemUserRequest>,
    ) -> Result<tonic::Response<ResolveSystemUserResponse>, tonic::Status> {
        Ok(tonic::Response::new(ResolveSystemUserResponse::default()))
    }

    async fn status(
        &self,
        _: tonic::Request<vakt::proto::StatusRequest>,
    ) -> Result<tonic::Response<vakt::proto::StatusResponse>, tonic::Status> {
        Ok(tonic::Response::new(vakt::proto::StatusResponse::default()))
    }

    async fn who_can(
        &self,
        _: tonic::Request<vakt::proto::WhoCanRequest>,
    ) -> Result<tonic::Response<vakt::proto::WhoCanResponse>, tonic::Status> {
        Ok(tonic::Response::new(vakt::proto::WhoCanResponse::default()))
    }

    async fn what_can(
        &self,
        _: tonic::Request<vakt::proto::WhatCanRequest>,
    ) -> Result<tonic::Response<vakt::proto::WhatCanResponse>, tonic::Status> {
        Ok(tonic::Response::new(vakt::proto::WhatCanResponse::default()))
    }
}

/// The floor's Check: a fixed ALLOW as Vakt answers one (token injected, Vakt's
/// headers removed, the decision in the metadata), built by Vakt's own `respond`.
struct FloorCheck(CheckResponse);

#[tonic::async_trait]
impl envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization for FloorCheck {
    async fn check(
        &self,
        _: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.0.clone()))
    }
}

/// Runs the floor server until stdin closes; prints its address first. Its
/// token is `token_bytes` long, as the stand-in's are.
fn serve_floor(token_bytes: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening {}", listener.local_addr().unwrap());
        // A response of the size Vakt gives for an allow.
        let reasons = vec![vakt::proto::Reason {
            policy_id: "use-system-user".into(),
            message: format!("employee kari may use system user tk-regnskap for client 310015156 with {REGNSKAP}"),
        }];
        let answer = AuthorizeResponse {
            decision: vakt::proto::Decision::Allow as i32,
            reasons: reasons.clone(),
            decision_id: "019ad3c1-3f0a-7c2e-9d1b-5e8f2a4b6c7d".into(),
            revision: "fd75ee476d916713".into(),
            data_sequence: 1,
        };
        // A JWT's shape: three base64url parts.
        let part = token_bytes.saturating_sub(2) / 3;
        let token = ["eyJ".to_owned() + &"a".repeat(part.saturating_sub(3)), "b".repeat(part), "c".repeat(part)].join(".");
        let with_token = AuthorizeWithTokenResponse {
            decision: answer.decision,
            reasons: reasons.clone(),
            decision_id: answer.decision_id.clone(),
            revision: answer.revision.clone(),
            data_sequence: 1,
            access_token: token.clone(),
            expires_at_unix: 1_800_000_000,
            token_type: "Bearer".into(),
            scopes: vec![binding::SCOPE.into()],
        };
        use vakt::server::envoy::{respond, Outcome, Reason, Verdict};
        let check = respond(
            &Outcome {
                verdict: Verdict::Allow,
                reasons: reasons.iter().map(|r| Reason::new(&r.policy_id, r.message.clone())).collect(),
                decision_id: answer.decision_id.clone(),
                shadow: false,
                route: Some("register".into()),
                vakt_headers: vec!["x-vakt-employee".into(), "x-vakt-system-user".into()],
            },
            Some(&token),
        );
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_line(&mut String::new());
        });
        vakt::server::transport(&vakt::server::Limits::default())
            .add_service(vakt::proto::authorizer_server::AuthorizerServer::new(Floor { answer, with_token }))
            .add_service(envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer::new(FloorCheck(check)))
            .serve_with_incoming_shutdown(vakt::server::incoming(listener, &vakt::server::Limits::default().accept_limits()), async {
                let _ = stdin_closed.await;
            })
            .await
            .unwrap();
    });
}

// ---- Servers under test. ----

struct Server {
    name: String,
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_floor(token_bytes: usize) -> Server {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve-floor", "--token-bytes", &token_bytes.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_owned();
    Server {
        name: "floor".into(),
        child,
        addr,
    }
}

/// `vakt serve` with the given decision log; its stdout goes to a file, as a
/// container runtime's log driver would take it.
fn start_vakt(name: &str, log: &str, extra: &[&str], dir: &std::path::Path) -> Server {
    let stdout = std::fs::File::create(dir.join(format!("{name}.stdout"))).unwrap();
    let mut args = vec!["--decision-log", log];
    args.extend(extra);
    let (child, addr) = support::spawn_vakt(&args, stdout);
    Server {
        name: name.into(),
        child,
        addr,
    }
}

// ---- The load generator. ----

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Single,
    Batch(usize),
    /// `AuthorizeWithToken`.
    Token,
    /// Envoy's `Authorization/Check`.
    Check,
}

/// One timed run: `concurrency` callers over ceil(concurrency / 8) connections,
/// each with one call in flight at a time, for `time`. A call that fails, or
/// (with `judge`, for Vakt and not the floor) whose `AuthorizeWithToken` or
/// Check answer is not the mix's, counts as an error.
struct Run {
    calls: u64,
    errors: u64,
    seconds: f64,
    latency: Histogram<u64>,
    /// CPU time (user + system) the server and this load generator spent, in µs.
    server_cpu_us: f64,
    client_cpu_us: f64,
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    addr: &str,
    server_pid: u32,
    kind: Kind,
    judge: bool,
    mix: &Arc<Mix>,
    concurrency: usize,
    warmup: Duration,
    time: Duration,
) -> Run {
    let conns = concurrency.div_ceil(8);
    let mut channels = Vec::new();
    for _ in 0..conns {
        let ch: Channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        channels.push(ch);
    }
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + warmup;
    let end = start + time;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut client = AuthorizerClient::new(channels[i % conns].clone());
        let mut check_client = AuthorizationClient::new(channels[i % conns].clone());
        let mix = mix.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut calls = 0u64;
            let mut n = i;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let reqs = &mix.single;
                let at = n % reqs.len();
                let ok = match kind {
                    Kind::Single => client.authorize(reqs[at].clone()).await.is_ok(),
                    Kind::Batch(size) => client
                        .authorize_batch(AuthorizeBatchRequest {
                            requests: (0..size)
                                .map(|k| reqs[(n + k) % reqs.len()].clone())
                                .collect(),
                        })
                        .await
                        .is_ok(),
                    Kind::Token => match client.authorize_with_token(mix.token[at].clone()).await {
                        Ok(r) => !judge || token_answer_right(r.get_ref(), at),
                        Err(_) => false,
                    },
                    Kind::Check => match check_client.check(mix.check[at].clone()).await {
                        Ok(r) => !judge || check_answer_right(r.get_ref(), at),
                        Err(_) => false,
                    },
                };
                n += 1;
                let t1 = Instant::now();
                if t0 >= start {
                    if ok {
                        calls += 1;
                        let _ = h.record((t1 - t0).as_micros().max(1) as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (calls, h)
        }));
    }
    // CPU time is read over the measured window only.
    tokio::time::sleep_until(tokio::time::Instant::from_std(start)).await;
    let (s0, c0) = (cpu_us(&server_pid.to_string()), cpu_us("self"));
    tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
    let (s1, c1) = (cpu_us(&server_pid.to_string()), cpu_us("self"));
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut calls = 0;
    for t in tasks {
        let (c, h) = t.await.unwrap();
        calls += c;
        latency.add(h).unwrap();
    }
    Run {
        calls,
        errors: errors.load(Ordering::Relaxed),
        seconds: time.as_secs_f64(),
        latency,
        server_cpu_us: s1 - s0,
        client_cpu_us: c1 - c0,
    }
}

struct Totals {
    rates: Vec<f64>,
    errors: u64,
    latency: Histogram<u64>,
    calls: u64,
    server_cpu_us: f64,
    client_cpu_us: f64,
}

impl Totals {
    fn new() -> Self {
        Self {
            rates: Vec::new(),
            errors: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            calls: 0,
            server_cpu_us: 0.0,
            client_cpu_us: 0.0,
        }
    }
    fn add(&mut self, r: Run) {
        self.rates.push(r.calls as f64 / r.seconds);
        self.errors += r.errors;
        self.latency.add(r.latency).unwrap();
        self.calls += r.calls;
        self.server_cpu_us += r.server_cpu_us;
        self.client_cpu_us += r.client_cpu_us;
    }
    /// CPU µs per call: the server's and the load generator's.
    fn cpu_per_call(&self) -> (f64, f64) {
        let n = self.calls.max(1) as f64;
        (self.server_cpu_us / n, self.client_cpu_us / n)
    }
    fn median(&self) -> f64 {
        let mut v = self.rates.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn q(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }
}

struct Options {
    seconds: f64,
    rounds: usize,
    concurrency: Vec<usize>,
    modes: Vec<String>,
    /// Calls of each kind per round of the cache-miss measurement.
    miss_calls: usize,
    /// Appends timed with `fdatasync` before each round, for the durable bound.
    fsync_samples: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let list = |name: &str, default: &str| -> Vec<String> {
        value(name)
            .unwrap_or_else(|| default.to_owned())
            .split(',')
            .map(str::to_owned)
            .collect()
    };
    let all_modes = "off,stdout,file,file+buffered,batch10,batch100,shadow,token,check";
    if bench {
        Options {
            seconds: value("--seconds").map_or(2.0, |s| s.parse().unwrap()),
            rounds: value("--rounds").map_or(3, |s| s.parse().unwrap()),
            concurrency: list("--concurrency", "1,8,32,128")
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            modes: list("--modes", all_modes),
            miss_calls: value("--miss-calls").map_or(200, |s| s.parse().unwrap()),
            fsync_samples: value("--fsync-samples").map_or(300, |s| s.parse().unwrap()),
        }
    } else {
        // Smoke run: every mode briefly, so a broken benchmark fails CI.
        Options {
            seconds: 0.2,
            rounds: 1,
            concurrency: vec![1, 8],
            modes: list("--modes", all_modes),
            miss_calls: 10,
            fsync_samples: 20,
        }
    }
}

/// Sends each request of the mix once to a `token` or `check` server and
/// panics unless each answer is the mix's (and, for Check, unless each deny
/// came from the policies, not from reading the request): a benchmark of
/// wrong answers would measure nothing. Fills the token cache too.
async fn verify_answers(addr: &str, kind: Kind, mix: &Mix) {
    let ch = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for (i, asked) in MIX.iter().enumerate() {
        match kind {
            Kind::Token => {
                let r = AuthorizerClient::new(ch.clone())
                    .authorize_with_token(mix.token[i].clone())
                    .await
                    .unwrap_or_else(|e| panic!("AuthorizeWithToken {:?} failed: {e}", asked))
                    .into_inner();
                assert!(
                    token_answer_right(&r, i),
                    "AuthorizeWithToken {:?}: decision {} with {} token bytes, reasons {:?}",
                    asked,
                    r.decision,
                    r.access_token.len(),
                    r.reasons
                );
            }
            Kind::Check => {
                let r = AuthorizationClient::new(ch.clone())
                    .check(mix.check[i].clone())
                    .await
                    .unwrap_or_else(|e| panic!("Check {:?} failed: {e}", asked))
                    .into_inner();
                let denial = match &r.http_response {
                    Some(HttpResponse::DeniedResponse(d)) => d.body.clone(),
                    _ => String::new(),
                };
                assert!(
                    check_answer_right(&r, i),
                    "Check {:?}: status {:?}, body {denial}",
                    asked,
                    r.status
                );
                assert!(
                    !denial.contains("vakt:envoy-"),
                    "Check {:?} was denied before deciding: {denial}",
                    asked
                );
            }
            _ => {}
        }
    }
}

/// What the cache-miss measurement found, in µs per call.
struct Miss {
    rounds: usize,
    calls: usize,
    /// AuthorizeWithToken, token cached and uncached (the allows of the mix).
    hit: Histogram<u64>,
    miss: Histogram<u64>,
    /// The stand-in's /token timed directly: signing the grant, the request.
    sign: Histogram<u64>,
    round_trip: Histogram<u64>,
    /// Both, as one token request costs a client.
    direct: Histogram<u64>,
    /// Token requests that reached the miss server's stand-in during its calls.
    token_hits: usize,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

/// The cache-miss measurement, one call at a time on one connection each, in
/// interleaved rounds: the stand-in's `/token` directly, `AuthorizeWithToken`
/// on the `token` server (cached) and on the `miss` server (whose tokens are
/// already due for refresh when they arrive, so every call fetches one). The
/// calls are the mix's two allows: a deny fetches no token.
async fn measure_miss(
    hit_addr: &str,
    miss_addr: &str,
    miss_standin: &binding::StandIn,
    mix: &Mix,
    rounds: usize,
    calls: usize,
) -> Miss {
    let connect = |addr: String| async move {
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let mut hit_client = AuthorizerClient::new(connect(hit_addr.to_owned()).await);
    let mut miss_client = AuthorizerClient::new(connect(miss_addr.to_owned()).await);
    let allows: Vec<usize> = (0..MIX.len()).filter(|&i| MIX[i].3).collect();
    let mut m = Miss {
        rounds,
        calls,
        hit: histogram(),
        miss: histogram(),
        sign: histogram(),
        round_trip: histogram(),
        direct: histogram(),
        token_hits: 0,
    };
    let us = |d: Duration| d.as_micros().max(1) as u64;
    // The miss server's first fetch also reads the issuer's metadata (the token
    // endpoint), once: not a miss's cost, so it is not measured.
    let first = miss_client
        .authorize_with_token(mix.token[allows[0]].clone())
        .await
        .expect("AuthorizeWithToken (first fetch)")
        .into_inner();
    let mut last_token = first.access_token;
    for _ in 0..rounds {
        for _ in 0..calls {
            let t0 = Instant::now();
            let grant = binding::sign_grant(miss_standin);
            let signed = t0.elapsed();
            let (rt, _) = binding::direct_token(miss_standin, &grant).await;
            m.sign.record(us(signed)).unwrap();
            m.round_trip.record(us(rt)).unwrap();
            m.direct.record(us(signed + rt)).unwrap();
        }
        for k in 0..calls {
            let i = allows[k % allows.len()];
            let t0 = Instant::now();
            let r = hit_client
                .authorize_with_token(mix.token[i].clone())
                .await
                .expect("AuthorizeWithToken (cached)")
                .into_inner();
            m.hit.record(us(t0.elapsed())).unwrap();
            assert!(token_answer_right(&r, i), "cached: {:?}", r.reasons);
        }
        let before = miss_standin.token_hits();
        for k in 0..calls {
            let i = allows[k % allows.len()];
            let t0 = Instant::now();
            let r = miss_client
                .authorize_with_token(mix.token[i].clone())
                .await
                .expect("AuthorizeWithToken (cache miss)")
                .into_inner();
            m.miss.record(us(t0.elapsed())).unwrap();
            assert!(token_answer_right(&r, i), "miss: {:?}", r.reasons);
            // A new token each time: the call did miss.
            assert_ne!(r.access_token, last_token, "a token was served twice");
            last_token = r.access_token;
        }
        m.token_hits += miss_standin.token_hits() - before;
    }
    m
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve-floor") {
        let token_bytes = args
            .iter()
            .position(|a| a == "--token-bytes")
            .and_then(|i| args.get(i + 1))
            .map_or(1000, |s| s.parse().unwrap());
        return serve_floor(token_bytes);
    }
    let opts = options();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let wants = |m: &str| opts.modes.iter().any(|x| x == m);
    // The Maskinporten stand-in of the `token` and `check` servers, in this
    // process: tokens live 120 s, as Maskinporten's do.
    let standin = (wants("token") || wants("check"))
        .then(|| rt.block_on(binding::start_standin(Duration::from_secs(120))));
    let config = standin
        .as_ref()
        .map(|s| binding::write_config(s, dir.path(), "binding", REGNSKAP));
    // The floor's token is as long as the stand-in's.
    let token_bytes = standin.as_ref().map_or(1000, |s| {
        rt.block_on(binding::direct_token(s, &binding::sign_grant(s)))
            .1
            .len()
    });
    let floor = start_floor(token_bytes);
    // Each mode's server, and the kind of call it is driven with.
    let mut servers: Vec<(Server, Kind)> = Vec::new();
    // The candidate policies of the shadow mode.
    let candidate = dir.path().join("candidate");
    std::fs::create_dir_all(&candidate).unwrap();
    for (name, body) in vakt::rules::embedded::POLICIES {
        let file = std::path::Path::new(name).file_name().unwrap();
        if file != "03-tenant.cedar" {
            std::fs::write(candidate.join(file), body).unwrap();
        }
    }
    let candidate = candidate.to_str().unwrap().to_owned();
    let config_arg = config
        .as_ref()
        .map(|c| c.to_str().unwrap().to_owned())
        .unwrap_or_default();
    for m in &opts.modes {
        let extra: &[&str] = match m.as_str() {
            "shadow" => &["--shadow-policies", &candidate],
            "token" | "check" => &["--config", &config_arg],
            _ => &[],
        };
        let (log, kind) = match m.as_str() {
            "off" => ("off".to_owned(), Kind::Single),
            "stdout" => ("stdout".to_owned(), Kind::Single),
            "file" => (
                format!("file:{}", dir.path().join("durable.jsonl").display()),
                Kind::Single,
            ),
            "file+buffered" => (
                format!(
                    "file+buffered:{}",
                    dir.path().join("buffered.jsonl").display()
                ),
                Kind::Single,
            ),
            "batch10" => ("stdout".to_owned(), Kind::Batch(10)),
            "batch100" => ("stdout".to_owned(), Kind::Batch(100)),
            "shadow" => ("stdout".to_owned(), Kind::Single),
            "token" => ("stdout".to_owned(), Kind::Token),
            "check" => ("stdout".to_owned(), Kind::Check),
            other => panic!("unknown mode {other}"),
        };
        servers.push((start_vakt(m, &log, extra, dir.path()), kind));
    }
    // The cache-miss server: its stand-in's tokens live less than the cache's
    // refresh margin (20 s), so each is due for refresh when it arrives.
    let miss = wants("token").then(|| {
        let s = rt.block_on(binding::start_standin(Duration::from_secs(10)));
        let config = binding::write_config(&s, dir.path(), "miss", REGNSKAP);
        let server = start_vakt(
            "miss",
            "stdout",
            &["--config", config.to_str().unwrap()],
            dir.path(),
        );
        (server, s)
    });
    let mix = Arc::new(Mix::new());
    for (s, k) in &servers {
        rt.block_on(verify_answers(&s.addr, *k, &mix));
    }
    let fetched_before = standin.as_ref().map_or(0, |s| s.token_hits());
    let warmup = Duration::from_secs_f64((opts.seconds / 4.0).min(0.5));
    let time = Duration::from_secs_f64(opts.seconds);
    let mut kinds: Vec<Kind> = servers.iter().map(|(_, k)| *k).collect();
    kinds.sort();
    kinds.dedup();
    let mut results: BTreeMap<(usize, String), Totals> = BTreeMap::new();
    let mut floors: BTreeMap<(usize, Kind), Totals> = BTreeMap::new();
    // The durable bound's fsync: appends synced in the directory the file mode
    // logs into, before each round, so the disk is measured as the runs find it.
    let durable = wants("file") && wants("stdout");
    let mut fsyncs: Vec<Duration> = Vec::new();
    for &c in &opts.concurrency {
        for round in 0..opts.rounds {
            if durable {
                fsyncs.extend(time_fsyncs(dir.path(), opts.fsync_samples));
            }
            // Interleaved: the floor, then each mode, so noise hits all alike.
            for &k in &kinds {
                let r = rt.block_on(drive(
                    &floor.addr,
                    floor.child.id(),
                    k,
                    false,
                    &mix,
                    c,
                    warmup,
                    time,
                ));
                floors.entry((c, k)).or_insert_with(Totals::new).add(r);
            }
            for (s, k) in &servers {
                let r = rt.block_on(drive(
                    &s.addr,
                    s.child.id(),
                    *k,
                    true,
                    &mix,
                    c,
                    warmup,
                    time,
                ));
                results
                    .entry((c, s.name.clone()))
                    .or_insert_with(Totals::new)
                    .add(r);
            }
            eprintln!(
                "concurrency {c}: round {} of {} done",
                round + 1,
                opts.rounds
            );
        }
    }
    let fetched = standin.as_ref().map_or(0, |s| s.token_hits()) - fetched_before;
    let token_addr = servers
        .iter()
        .find(|(s, _)| s.name == "token")
        .map(|(s, _)| s.addr.clone());
    let missed = match (&miss, &token_addr) {
        (Some((server, s)), Some(hit)) => Some(rt.block_on(measure_miss(
            hit,
            &server.addr,
            s,
            &mix,
            opts.rounds,
            opts.miss_calls,
        ))),
        _ => None,
    };
    println!(
        "{} s per run after {:.1} s warm-up, {} interleaved rounds; concurrency C over ceil(C/8) connections; medians of rounds, latency over all rounds",
        opts.seconds,
        warmup.as_secs_f64(),
        opts.rounds
    );
    println!();
    println!("| concurrency | server | calls/s | decisions/s | p50 µs | p90 µs | p99 µs | p99.9 µs | errors | ratio to floor | p99 / floor p99 | server CPU µs/call | client CPU µs/call |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &c in &opts.concurrency {
        for &k in &kinds {
            let f = &floors[&(c, k)];
            let label = match k {
                Kind::Single => "floor".to_owned(),
                Kind::Batch(n) => format!("floor, batch {n}"),
                Kind::Token => "floor, AuthorizeWithToken".to_owned(),
                Kind::Check => "floor, Check".to_owned(),
            };
            row(c, &label, f, k, f);
        }
        for (s, k) in &servers {
            let t = &results[&(c, s.name.clone())];
            row(c, &format!("vakt, {}", s.name), t, *k, &floors[&(c, *k)]);
        }
    }
    // Shadow evaluation's cost: its throughput over the same log without it.
    if let (Some(_), Some(_)) = (
        servers.iter().find(|(s, _)| s.name == "shadow"),
        servers.iter().find(|(s, _)| s.name == "stdout"),
    ) {
        println!();
        for &c in &opts.concurrency {
            let with = results[&(c, "shadow".to_owned())].median();
            let without = results[&(c, "stdout".to_owned())].median();
            println!(
                "concurrency {c}: shadow / stdout throughput {:.2} (target at 32: at least 0.70)",
                with / without
            );
        }
    }
    if durable {
        report_durable(&opts, &results, &floors, &mut fsyncs);
    }
    // A binding call's cost over an Authorize's (the stdout mode: the same log).
    if servers.iter().any(|(s, _)| s.name == "stdout") {
        for (mode, call, target) in [
            ("token", "AuthorizeWithToken, token cached", 1.2),
            ("check", "Check", 1.5),
        ] {
            if !servers.iter().any(|(s, _)| s.name == mode) {
                continue;
            }
            println!();
            for &c in &opts.concurrency {
                let t = &results[&(c, mode.to_owned())];
                let a = &results[&(c, "stdout".to_owned())];
                let (t_cpu, a_cpu) = (t.cpu_per_call().0, a.cpu_per_call().0);
                println!(
                    "concurrency {c}: {call} / Authorize (stdout): cost by throughput {:.2} ({:.0} / {:.0} calls/s), server CPU per call {:.2} ({t_cpu:.1} / {a_cpu:.1} µs), p50 {:.2} ({} / {} µs) (target: at most {target:.2})",
                    a.median() / t.median(),
                    t.median(),
                    a.median(),
                    t_cpu / a_cpu,
                    t.q(0.5) as f64 / a.q(0.5) as f64,
                    t.q(0.5),
                    a.q(0.5),
                );
            }
        }
    }
    if standin.is_some() {
        println!();
        println!(
            "Maskinporten stand-in: {fetched} token requests during the token and check runs (each server's cache filled before, refreshed when a token nears expiry)"
        );
    }
    if let Some(m) = &missed {
        let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5);
        let added = p50(&m.miss) as f64 - p50(&m.hit) as f64;
        let per_miss = m.token_hits as f64 / (m.rounds * m.calls) as f64;
        println!();
        println!(
            "cache miss, C = 1, {} rounds of {} calls each (p50 / mean µs): AuthorizeWithToken cached {} / {:.0}, missed {} / {:.0}; the stand-in's /token directly: grant signed {} / {:.0}, request on its own connection {} / {:.0}, both {} / {:.0}",
            m.rounds,
            m.calls,
            p50(&m.hit),
            m.hit.mean(),
            p50(&m.miss),
            m.miss.mean(),
            p50(&m.sign),
            m.sign.mean(),
            p50(&m.round_trip),
            m.round_trip.mean(),
            p50(&m.direct),
            m.direct.mean(),
        );
        println!(
            "cache miss: miss - hit {added:.0} µs = {:.2} of one direct token request (grant and round trip; target: 1, one round trip and no more), {:.2} of the bare round trip; token requests per miss {per_miss:.2} (target: exactly 1)",
            added / p50(&m.direct) as f64,
            added / p50(&m.round_trip) as f64,
        );
    }
    // A buffered stdout log must keep up: count what it dropped.
    for (s, _) in &servers {
        if ["stdout", "token", "check"].contains(&s.name.as_str()) {
            let text = std::fs::read_to_string(dir.path().join(format!("{}.stdout", s.name)))
                .unwrap_or_default();
            let dropped: u64 = text
                .lines()
                .filter(|l| l.contains("\"event\":\"decision_records_dropped\""))
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["dropped"].as_u64())
                .sum();
            println!();
            println!(
                "{} log: {} records written, {dropped} dropped",
                s.name,
                text.lines().count()
            );
        }
    }
    let errors: u64 = results.values().map(|t| t.errors).sum();
    assert_eq!(errors, 0, "calls failed or were answered wrongly");
    if let Some(m) = &missed {
        assert_eq!(
            m.token_hits,
            m.rounds * m.calls,
            "each cache miss must send exactly one token request"
        );
    }
    drop(servers);
    drop(miss);
    drop(floor);
    drop(standin);
}

/// Appends `n` lines of 500 bytes (newline included) to a file in `dir`, each
/// followed by `fdatasync`, as the durable log's writer does; the time of each sync.
fn time_fsyncs(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    use std::io::Write;
    let path = dir.join("fsync-probe.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let mut line = vec![b'x'; 499];
    line.push(b'\n');
    let times = (0..n)
        .map(|_| {
            f.write_all(&line).unwrap();
            let t0 = Instant::now();
            f.sync_data().unwrap();
            t0.elapsed()
        })
        .collect();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    times
}

/// The durable file mode against the disk's bound, the floor and the stdout mode.
fn report_durable(
    opts: &Options,
    results: &BTreeMap<(usize, String), Totals>,
    floors: &BTreeMap<(usize, Kind), Totals>,
    fsyncs: &mut [Duration],
) {
    fsyncs.sort();
    let at = |q: f64| fsyncs[((fsyncs.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    let fsync_us = at(0.5);
    println!();
    println!(
        "fdatasync of a 500-byte append in the log's directory, {} samples ({} before each round): median {fsync_us:.0} µs, p10 {:.0}, p90 {:.0}, p99 {:.0}",
        fsyncs.len(),
        opts.fsync_samples,
        at(0.1),
        at(0.9),
        at(0.99),
    );
    for &c in &opts.concurrency {
        let file = results[&(c, "file".to_owned())].median();
        let stdout = results[&(c, "stdout".to_owned())].median();
        let floor = floors[&(c, Kind::Single)].median();
        let rtt_us = c as f64 / stdout * 1e6;
        let bound = stdout * rtt_us / (rtt_us + fsync_us);
        println!(
            "concurrency {c}: durable file {file:.0} calls/s; bound {bound:.0} (stdout {stdout:.0} calls/s, RTT {rtt_us:.0} µs, fsync {fsync_us:.0} µs); durable / bound {:.2} (target at 32: at least 0.75), / floor {:.2}, / stdout {:.2} (target at 128: at least 0.80)",
            file / bound,
            file / floor,
            file / stdout,
        );
    }
}

fn row(c: usize, label: &str, t: &Totals, kind: Kind, floor: &Totals) {
    let per_call = match kind {
        Kind::Batch(n) => n as f64,
        Kind::Single | Kind::Token | Kind::Check => 1.0,
    };
    let (server_cpu, client_cpu) = t.cpu_per_call();
    println!(
        "| {c} | {label} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {server_cpu:.1} | {client_cpu:.1} |",
        t.median(),
        t.median() * per_call,
        t.q(0.5),
        t.q(0.9),
        t.q(0.99),
        t.q(0.999),
        t.errors,
        t.median() / floor.median(),
        t.q(0.99) as f64 / floor.q(0.99) as f64,
    );
}
