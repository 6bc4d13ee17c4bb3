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
//! `--modes off,stdout,file,file+buffered,batch10,batch100,shadow`.
//! `shadow` is `stdout` with `--shadow-policies` (the shipped policies without
//! the tenant rule, so the cross-tenant requests of the mix flip): its
//! throughput over `stdout`'s is the cost of shadow evaluation.
//! Without `--bench` (as `cargo test --benches` runs it) it is a short smoke run.

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
    ResolveSystemUserRequest, ResolveSystemUserResponse,
};

mod support;
use support::cpu_us;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";

/// The requests sent, in turn: allows and denies of several kinds on the example
/// world (what a caller of the shipped sidecar would ask).
fn requests() -> Vec<AuthorizeRequest> {
    [
        ("kari", "tk-regnskap", "310015156", REGNSKAP), // allow
        ("per", "tk-regnskap", "310015156", REGNSKAP),  // deny: deactivated
        ("kari", "tk-regnskap", "310020206", REGNSKAP), // deny: link removed
        ("ola", "tk-regnskap", "310015156", REGNSKAP),  // allow
        ("ola", "tk-regnskap", "310017175", REGNSKAP),  // deny: portfolio
        ("randi", "rr-regnskap", "310021210", REGNSKAP), // deny: separation of duties
    ]
    .into_iter()
    .map(|(e, s, c, p)| AuthorizeRequest {
        employee_id: e.into(),
        system_user_id: s.into(),
        client_org_number: c.into(),
        access_package: p.into(),
        ..Default::default()
    })
    .collect()
}

// ---- The floor: a minimal service with the same messages and transport. ----

struct Floor(AuthorizeResponse);

#[tonic::async_trait]
impl vakt::proto::authorizer_server::Authorizer for Floor {
    async fn authorize(
        &self,
        _: tonic::Request<AuthorizeRequest>,
    ) -> Result<tonic::Response<AuthorizeResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.0.clone()))
    }

    async fn authorize_batch(
        &self,
        req: tonic::Request<AuthorizeBatchRequest>,
    ) -> Result<tonic::Response<AuthorizeBatchResponse>, tonic::Status> {
        let n = req.into_inner().requests.len();
        Ok(tonic::Response::new(AuthorizeBatchResponse {
            responses: vec![self.0.clone(); n],
        }))
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

/// Runs the floor server until stdin closes; prints its address first.
fn serve_floor() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening {}", listener.local_addr().unwrap());
        // A response of the size Vakt gives for an allow.
        let response = AuthorizeResponse {
            decision: vakt::proto::Decision::Allow as i32,
            reasons: vec![vakt::proto::Reason {
                policy_id: "use-system-user".into(),
                message: format!("employee kari may use system user tk-regnskap for client 310015156 with {REGNSKAP}"),
            }],
            decision_id: "019ad3c1-3f0a-7c2e-9d1b-5e8f2a4b6c7d".into(),
            revision: "fd75ee476d916713".into(),
            data_sequence: 1,
        };
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_line(&mut String::new());
        });
        vakt::server::transport(&vakt::server::Limits::default())
            .add_service(vakt::proto::authorizer_server::AuthorizerServer::new(Floor(response)))
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

fn start_floor() -> Server {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve-floor")
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
}

/// One timed run: `concurrency` callers over ceil(concurrency / 8) connections,
/// each with one call in flight at a time, for `time`.
struct Run {
    calls: u64,
    errors: u64,
    seconds: f64,
    latency: Histogram<u64>,
    /// CPU time (user + system) the server and this load generator spent, in µs.
    server_cpu_us: f64,
    client_cpu_us: f64,
}

async fn drive(
    addr: &str,
    server_pid: u32,
    kind: Kind,
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
    let reqs = Arc::new(requests());
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + warmup;
    let end = start + time;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut client = AuthorizerClient::new(channels[i % conns].clone());
        let reqs = reqs.clone();
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
                let ok = match kind {
                    Kind::Single => client.authorize(reqs[n % reqs.len()].clone()).await.is_ok(),
                    Kind::Batch(size) => client
                        .authorize_batch(AuthorizeBatchRequest {
                            requests: (0..size)
                                .map(|k| reqs[(n + k) % reqs.len()].clone())
                                .collect(),
                        })
                        .await
                        .is_ok(),
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
    let all_modes = "off,stdout,file,file+buffered,batch10,batch100,shadow";
    if bench {
        Options {
            seconds: value("--seconds").map_or(2.0, |s| s.parse().unwrap()),
            rounds: value("--rounds").map_or(3, |s| s.parse().unwrap()),
            concurrency: list("--concurrency", "1,8,32,128")
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            modes: list("--modes", all_modes),
        }
    } else {
        // Smoke run: every mode briefly, so a broken benchmark fails CI.
        Options {
            seconds: 0.2,
            rounds: 1,
            concurrency: vec![1, 8],
            modes: list("--modes", all_modes),
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--serve-floor") {
        return serve_floor();
    }
    let opts = options();
    let dir = tempfile::tempdir().unwrap();
    let floor = start_floor();
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
    for m in &opts.modes {
        let extra: &[&str] = match m.as_str() {
            "shadow" => &["--shadow-policies", &candidate],
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
            other => panic!("unknown mode {other}"),
        };
        servers.push((start_vakt(m, &log, extra, dir.path()), kind));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let warmup = Duration::from_secs_f64((opts.seconds / 4.0).min(0.5));
    let time = Duration::from_secs_f64(opts.seconds);
    let mut kinds: Vec<Kind> = servers.iter().map(|(_, k)| *k).collect();
    kinds.sort();
    kinds.dedup();
    let mut results: BTreeMap<(usize, String), Totals> = BTreeMap::new();
    let mut floors: BTreeMap<(usize, Kind), Totals> = BTreeMap::new();
    for &c in &opts.concurrency {
        for round in 0..opts.rounds {
            // Interleaved: the floor, then each mode, so noise hits all alike.
            for &k in &kinds {
                let r = rt.block_on(drive(&floor.addr, floor.child.id(), k, c, warmup, time));
                floors.entry((c, k)).or_insert_with(Totals::new).add(r);
            }
            for (s, k) in &servers {
                let r = rt.block_on(drive(&s.addr, s.child.id(), *k, c, warmup, time));
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
    // A buffered stdout log must keep up: count what it dropped.
    for (s, _) in &servers {
        if s.name == "stdout" {
            let text =
                std::fs::read_to_string(dir.path().join("stdout.stdout")).unwrap_or_default();
            let dropped: u64 = text
                .lines()
                .filter(|l| l.contains("\"event\":\"decision_records_dropped\""))
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["dropped"].as_u64())
                .sum();
            println!();
            println!(
                "stdout log: {} records written, {dropped} dropped",
                text.lines().count()
            );
        }
    }
    let errors: u64 = results.values().map(|t| t.errors).sum();
    assert_eq!(errors, 0, "calls failed");
    drop(servers);
    drop(floor);
}

fn row(c: usize, label: &str, t: &Totals, kind: Kind, floor: &Totals) {
    let per_call = match kind {
        Kind::Single => 1.0,
        Kind::Batch(n) => n as f64,
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
