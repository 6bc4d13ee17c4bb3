//! Overload: `vakt serve` (default limits, decision log to stdout, piped to a file)
//! driven past its peak over loopback, to show that it sheds rather than queues.
//!
//! 1. The peak: closed-loop Authorize at several concurrencies; the highest
//!    throughput is the peak, at concurrency c*.
//! 2. Open loop at twice the peak: calls are started at a fixed rate whatever
//!    happens to earlier ones, over 16 connections.
//! 3. Closed loop at ten times c*.
//!
//! 2 and 3 run in rounds, each between two measurements of the peak at c*, whose
//! mean is the round's baseline. It reports the throughput of admitted calls as a
//! ratio to the peak, and the admitted calls per second of server CPU as a ratio to
//! the peak's (what the server does with the CPU it gets),
//! what was shed (RESOURCE_EXHAUSTED), the health check's latency (a separate
//! connection, every 20 ms) and the server's resident memory. The load generator
//! runs on the same two cores as the server, so at twice the peak it takes CPU
//! the server would otherwise have; the ratios include that.
//!
//! Run: `cargo bench --bench overload` (about 2 minutes). Options after `--`:
//! `--seconds S` per phase (5), `--rounds R` (3). Without `--bench` it is a short
//! smoke run.

use hdrhistogram::Histogram;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use vakt::proto::authorizer_client::AuthorizerClient;
use vakt::proto::AuthorizeRequest;

mod support;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";

fn requests() -> Vec<AuthorizeRequest> {
    [
        ("kari", "tk-regnskap", "310015156"),
        ("per", "tk-regnskap", "310015156"),
        ("ola", "tk-regnskap", "310017175"),
        ("ola", "tk-regnskap", "310015156"),
    ]
    .into_iter()
    .map(|(e, s, c)| AuthorizeRequest {
        employee_id: e.into(),
        system_user_id: s.into(),
        client_org_number: c.into(),
        access_package: REGNSKAP.into(),
        ..Default::default()
    })
    .collect()
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_vakt(dir: &std::path::Path) -> Server {
    let stdout = std::fs::File::create(dir.join("decisions.stdout")).unwrap();
    let (child, addr) = support::spawn_vakt(&[], stdout);
    Server { child, addr }
}

/// Resident memory of `pid` now and at its peak, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn channels(addr: &str, n: usize) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    out
}

#[derive(Default)]
struct Outcome {
    ok: AtomicU64,
    shed: AtomicU64,
    other: AtomicU64,
}

impl Outcome {
    fn count(&self, r: &Result<tonic::Response<vakt::proto::AuthorizeResponse>, tonic::Status>) {
        match r {
            Ok(_) => &self.ok,
            Err(s) if s.code() == tonic::Code::ResourceExhausted => &self.shed,
            Err(_) => &self.other,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// Health checks every 20 ms on a connection of their own until `end`, from a
/// thread and runtime of their own (so an overloaded generator does not delay
/// them); their latencies in µs.
fn spawn_health(addr: String, end: Instant) -> std::thread::JoinHandle<Histogram<u64>> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(watch_health(addr, end))
    })
}

async fn watch_health(addr: String, end: Instant) -> Histogram<u64> {
    let ch = channels(&addr, 1).await.pop().unwrap();
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    let mut lat = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    while Instant::now() < end {
        let t0 = Instant::now();
        let ok = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: "vakt.v1.Authorizer".into(),
            })
            .await
            .is_ok_and(|r| r.into_inner().status == 1);
        let us = if ok {
            t0.elapsed().as_micros() as u64
        } else {
            // A failed check counts as the longest wait.
            60_000_000
        };
        let _ = lat.record(us.max(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lat
}

/// Closed loop: `concurrency` callers each with one call in flight; admitted calls
/// per second, and what happened to the others.
async fn closed(
    pid: u32,
    addr: &str,
    concurrency: usize,
    warmup: Duration,
    time: Duration,
) -> (f64, f64, Outcome) {
    let conns = channels(addr, concurrency.div_ceil(8).min(64)).await;
    let reqs = Arc::new(requests());
    let outcome = Arc::new(Outcome::default());
    let start = Instant::now() + warmup;
    let end = start + time;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut c = AuthorizerClient::new(conns[i % conns.len()].clone());
        let (reqs, outcome) = (reqs.clone(), outcome.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = i;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = c.authorize(reqs[n % reqs.len()].clone()).await;
                n += 1;
                if t0 >= start {
                    outcome.count(&r);
                }
            }
        }));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(start)).await;
    let cpu0 = support::cpu_us(&pid.to_string());
    for t in tasks {
        let _ = t.await;
    }
    let cpu = (support::cpu_us(&pid.to_string()) - cpu0) / 1e6;
    let outcome = Arc::try_unwrap(outcome).unwrap_or_default();
    let ok = outcome.ok.load(Ordering::Relaxed) as f64;
    (ok / time.as_secs_f64(), ok / cpu.max(0.01), outcome)
}

/// Open loop: a call started every 1/`rate` s for `time`, over 16 connections,
/// whatever happened to earlier ones (at most 50,000 outstanding, to bound the
/// generator; calls it could not start are counted as not sent).
async fn open(pid: u32, addr: &str, rate: f64, time: Duration) -> (f64, f64, Outcome, u64) {
    let conns = channels(addr, 16).await;
    let reqs = Arc::new(requests());
    let outcome = Arc::new(Outcome::default());
    let outstanding = Arc::new(AtomicU64::new(0));
    let mut not_sent = 0u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let cpu0 = support::cpu_us(&pid.to_string());
    let end = start + time;
    let mut next = start;
    let mut n = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    while next < end {
        // Start every call whose time has come (the timer is coarser than the
        // interval at high rates).
        while next <= Instant::now() && next < end {
            if outstanding.load(Ordering::Relaxed) >= 50_000 {
                not_sent += 1;
            } else {
                let mut c = AuthorizerClient::new(conns[n % conns.len()].clone());
                let req = reqs[n % reqs.len()].clone();
                let (outcome, outstanding) = (outcome.clone(), outstanding.clone());
                outstanding.fetch_add(1, Ordering::Relaxed);
                tasks.spawn(async move {
                    let r = c.authorize(req).await;
                    outcome.count(&r);
                    outstanding.fetch_sub(1, Ordering::Relaxed);
                });
            }
            n += 1;
            next += interval;
        }
        while tasks.try_join_next().is_some() {}
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
    // Calls still outstanding at the end finish (bounded by the request timeout);
    // admitted throughput counts those answered within the window plus them.
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (support::cpu_us(&pid.to_string()) - cpu0) / 1e6;
    let outcome = Arc::try_unwrap(outcome).unwrap_or_default();
    let ok = outcome.ok.load(Ordering::Relaxed) as f64;
    (ok / elapsed, ok / cpu.max(0.01), outcome, not_sent)
}

/// One hostile request of 3.9 MB (a context list of 350,000 strings, under tonic's
/// default 4 MiB limit but over Vakt's 1 MiB): how long until it is refused, and
/// what it cost the server in memory.
async fn hostile_request(addr: &str, pid: u32) {
    use prost_types::value::Kind;
    let mut c = AuthorizerClient::new(channels(addr, 1).await.pop().unwrap())
        .max_encoding_message_size(64 << 20);
    let mut req = requests()[0].clone();
    let values = (0..350_000)
        .map(|i| prost_types::Value {
            kind: Some(Kind::StringValue(format!("v{i}"))),
        })
        .collect();
    req.context = Some(prost_types::Struct {
        fields: [(
            "tags".to_owned(),
            prost_types::Value {
                kind: Some(Kind::ListValue(prost_types::ListValue { values })),
            },
        )]
        .into_iter()
        .collect(),
    });
    // What encoding it costs this client, to tell apart from the server's part.
    let t0 = Instant::now();
    let size = prost::Message::encode_to_vec(&req).len();
    let encode = t0.elapsed();
    let (_, hwm_before) = rss_mib(pid);
    let cpu_before = support::cpu_us(&pid.to_string());
    let t0 = Instant::now();
    let r = c.authorize(req).await;
    let took = t0.elapsed();
    let server_cpu_ms = (support::cpu_us(&pid.to_string()) - cpu_before) / 1000.0;
    let (_, hwm_after) = rss_mib(pid);
    println!(
        "hostile request of {:.1} MB: {} after {:.1} ms ({:.1} ms of it encoding in this client); server CPU {server_cpu_ms:.0} ms (clock ticks of 10 ms); server peak resident {hwm_before:.0} -> {hwm_after:.0} MiB",
        size as f64 / 1e6,
        match &r {
            Ok(_) => "ANSWERED".to_owned(),
            Err(s) => format!("refused {:?}", s.code()),
        },
        took.as_secs_f64() * 1000.0,
        encode.as_secs_f64() * 1000.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let seconds: f64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 5.0 } else { 0.5 });
    let time = Duration::from_secs_f64(seconds);
    let warmup = Duration::from_secs_f64(if full { 1.0 } else { 0.2 });
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 3 } else { 1 });
    let dir = tempfile::tempdir().unwrap();
    let server = start_vakt(dir.path());
    let pid = server.child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // 1. The concurrency of the peak.
        let mut peak = (0.0, 0usize);
        for c in [8, 32, 128] {
            let (rate, per_cpu, o) = closed(pid, &server.addr, c, warmup, time).await;
            println!(
                "closed loop c={c:<4} {rate:>9.0} calls/s, {per_cpu:>7.0} per server CPU second; shed {} other errors {}",
                o.shed.load(Ordering::Relaxed),
                o.other.load(Ordering::Relaxed)
            );
            if rate > peak.0 {
                peak = (rate, c);
            }
        }
        let peak_c = peak.1;
        hostile_request(&server.addr, pid).await;
        let (rss_before, _) = rss_mib(pid);
        println!("peak at c={peak_c}; server resident {rss_before:.0} MiB");

        // 2 and 3, in rounds, each between two measurements of the peak, which is
        // their baseline (the machine drifts).
        for round in 1..=rounds {
            let (before, before_cpu, _) = closed(pid, &server.addr, peak_c, warmup, time).await;
            let end = Instant::now() + time + Duration::from_secs(1);
            let health = spawn_health(server.addr.clone(), end);
            let (admitted, open_cpu, o, not_sent) =
                open(pid, &server.addr, 2.0 * before, time).await;
            let open_health = health.join().unwrap();
            let (open_rss, _) = rss_mib(pid);
            let c10 = peak_c * 10;
            let end = Instant::now() + warmup + time + Duration::from_secs(1);
            let health = spawn_health(server.addr.clone(), end);
            let (many, many_cpu, o10) = closed(pid, &server.addr, c10, warmup, time).await;
            let many_health = health.join().unwrap();
            let (many_rss, hwm) = rss_mib(pid);
            let (after, after_cpu, _) = closed(pid, &server.addr, peak_c, warmup, time).await;
            let peak_rate = (before + after) / 2.0;
            let peak_cpu = (before_cpu + after_cpu) / 2.0;
            let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "round {round}: peak {peak_rate:.0} calls/s ({before:.0} before, {after:.0} after), {peak_cpu:.0} per server CPU second"
            );
            println!(
                "  open loop at {:.0} calls/s (2x peak): admitted {admitted:.0} calls/s = {:.2} of peak, {:.2} of the peak's calls per server CPU second; shed {}, other errors {}, not sent {not_sent}; health p50 {:.1} ms p99 {:.1} ms max {:.1} ms; server resident {open_rss:.0} MiB",
                2.0 * before,
                admitted / peak_rate,
                open_cpu / peak_cpu,
                o.shed.load(Ordering::Relaxed),
                o.other.load(Ordering::Relaxed),
                ms(&open_health, 0.5),
                ms(&open_health, 0.99),
                open_health.max() as f64 / 1000.0,
            );
            println!(
                "  closed loop at c={c10} (10x c*): admitted {many:.0} calls/s = {:.2} of peak, {:.2} per server CPU second; shed {}, other errors {}; health p50 {:.1} ms p99 {:.1} ms max {:.1} ms; server resident {many_rss:.0} MiB (peak so far {hwm:.0} MiB)",
                many / peak_rate,
                many_cpu / peak_cpu,
                o10.shed.load(Ordering::Relaxed),
                o10.other.load(Ordering::Relaxed),
                ms(&many_health, 0.5),
                ms(&many_health, 0.99),
                many_health.max() as f64 / 1000.0,
            );
        }
    });
    drop(server);
}
