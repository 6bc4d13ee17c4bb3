//! Live data at scale: how long `vakt serve` takes to load generated worlds of
//! 1,000, 100,000 and 1,000,000 entities from files and from PostgreSQL and how
//! much memory it holds (peak and steady); what one change costs to apply to the
//! million-entity world (p50, p99, max), with the memory a burst of changes adds;
//! the delay from a revocation's commit to a deny on two sidecars following one
//! database (p50, p99); and Authorize latency at half the peak throughput, quiet
//! and while 1,000 changes per second stream in.
//!
//! Run: `cargo bench --bench live` (about 10 minutes; it starts its own PostgreSQL
//! cluster, as the tests do). Without `--bench` (as `cargo test --benches` runs
//! it) it is a short smoke run on small worlds. `VAKT_LIVE_FIRMS=1,100` picks
//! other world sizes, in firms of about 1,000 entities.

#[allow(dead_code)]
#[path = "../../tests/it/common/pg.rs"]
mod pg;

use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;
use tonic::transport::{Channel, Endpoint};
use vakt::proto::authorizer_client::AuthorizerClient;
use vakt::proto::{AuthorizeRequest, Decision};
use vakt::rules::snapshot::SourcePaths;
use vakt::source::files::FileSource;
use vakt::world::{Change, ClientLink, OrgNo};

#[path = "../support/mod.rs"]
mod support;
use support::cpu_us;

// Issue 27's measurements, one stage per file.
mod rename;
mod sections;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn proc_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A `vakt serve` started by the benchmark.
struct Sidecar {
    child: std::process::Child,
    addr: String,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vakt serve --data DATA`; returns it with the time to "listening" and
/// the peak and steady resident memory (MB), read half a second later.
fn serve(data: &std::ffi::OsStr) -> (Sidecar, Duration, u64, u64) {
    let started = Instant::now();
    let mut child = Command::new(support::vakt_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--decision-log",
            "off",
            "--data",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    for l in lines.by_ref().map_while(Result::ok) {
        if l.contains("\"listening\"") {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            addr = v["fields"]["address"].as_str().map(String::from);
            break;
        }
    }
    let took = started.elapsed();
    // Keep reading its log, so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let addr = addr.expect("vakt serve did not start");
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let (peak, steady) = (
        proc_kb(&pid, "VmHWM:") / 1024,
        proc_kb(&pid, "VmRSS:") / 1024,
    );
    (Sidecar { child, addr }, took, peak, steady)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    rename::run(bench);
    sections::run(bench);
    // VAKT_LIVE_FIRMS=1,100 picks other world sizes (in firms of 1,000 entities).
    let sizes: Vec<usize> = match std::env::var("VAKT_LIVE_FIRMS") {
        Ok(v) => v
            .split(',')
            .map(|n| n.trim().parse().expect("VAKT_LIVE_FIRMS"))
            .collect(),
        Err(_) if bench => vec![1, 100, 1000],
        Err(_) => vec![1, 3],
    };
    println!("| entities | files | JSON MB | load s | peak MB | steady MB |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut worlds = Vec::new();
    for &firms in &sizes {
        let dir = tempfile::tempdir().unwrap();
        let files = firms.div_ceil(10);
        let g = vakt::tools::gen::write_world(dir.path(), firms, files, 1).unwrap();
        let (_, took, peak, steady) = serve(dir.path().as_os_str());
        println!(
            "| {} | {files} | {:.0} | {:.2} | {peak} | {steady} |",
            g.entities(),
            g.bytes as f64 / 1e6,
            took.as_secs_f64()
        );
        worlds.push((dir, g));
    }
    let dir = &worlds.last().unwrap().0;

    // One change at a time, applied to the largest world in this process.
    let (_, snap) = FileSource::load(SourcePaths {
        data: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .expect("generated world loads");
    let entities = snap.world.counts().entities();
    // As `vakt serve` does after a load: hand back the memory parsing used.
    // SAFETY: mi_collect only frees memory the allocator no longer hands out.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let wanted = candidates(&snap.world, if bench { 1000 } else { 40 });
    let mut current = snap;
    let sus: Vec<_> = current
        .world
        .system_users()
        .filter(|s| !s.links.is_empty())
        .map(|s| s.id.clone())
        .collect();
    let orgs: Vec<OrgNo> = current
        .world
        .organizations()
        .map(|o| o.org_number)
        .collect();
    let employees: Vec<_> = current.world.employees().map(|e| e.id.clone()).collect();
    let teams: Vec<_> = current.world.teams().map(|t| t.id.clone()).collect();
    let link: ClientLink = current
        .world
        .system_users()
        .find_map(|s| s.links.values().next().cloned())
        .unwrap();
    let rss = || proc_kb("self", "VmRSS:") / 1024;
    let before = rss();
    let n = if bench { 20_000 } else { 500 };
    let mut times = Vec::with_capacity(n);
    let mut peak = before;
    for i in 0..n {
        let su = &sus[i % sus.len()];
        let world = &current.world;
        let change = match i % 5 {
            // A client linked, and another unlinked.
            0 => Change::Link(
                su.clone(),
                orgs[(i * 7919) % orgs.len()],
                Some(link.clone()),
            ),
            1 => {
                let s = world.system_user(su).unwrap();
                match s.links.keys().nth(i % s.links.len().max(1)) {
                    Some(n) => Change::Link(su.clone(), *n, None),
                    // Every link of this one is gone (a small world): link one.
                    None => Change::Link(su.clone(), orgs[i % orgs.len()], Some(link.clone())),
                }
            }
            // An employee deactivated, or moved to another team.
            2 => {
                let mut e = world
                    .employee(&employees[(i * 31) % employees.len()])
                    .unwrap()
                    .clone();
                e.active = !e.active;
                Change::Employee(e.id.clone(), Some(e))
            }
            3 => {
                let mut e = world
                    .employee(&employees[(i * 17) % employees.len()])
                    .unwrap()
                    .clone();
                let t = teams
                    .iter()
                    .find(|t| {
                        t.starts_with(
                            e.id.split('@')
                                .nth(1)
                                .map_or("", |f| f.trim_end_matches(".no")),
                        )
                    })
                    .cloned();
                if let Some(t) = t {
                    e.teams = vec![t].into_boxed_slice();
                }
                Change::Employee(e.id.clone(), Some(e))
            }
            // A team's grants changed.
            _ => {
                let mut t = world.team(&teams[(i * 13) % teams.len()]).unwrap().clone();
                let mut s = t.system_users.to_vec();
                if s.len() > 1 {
                    s.pop();
                } else {
                    s.push(sus[i % sus.len()].clone());
                    s.sort();
                }
                t.system_users = s.into_boxed_slice();
                Change::Team(t.id.clone(), Some(t))
            }
        };
        let data = vakt::rules::snapshot::DataVersion {
            sequence: current.data.sequence + 1,
            ..current.data.clone()
        };
        let t0 = Instant::now();
        match current.apply([change], data) {
            Ok(next) => current = next,
            Err(p) => panic!("change refused: {p:?}"),
        }
        times.push(t0.elapsed());
        if i % 100 == 0 {
            peak = peak.max(rss());
        }
    }
    times.sort();
    println!();
    println!(
        "applying one change to the world of {} entities ({} changes, mixed kinds): p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        entities,
        n,
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    println!(
        "resident memory: {before} MB before the changes, at most {peak} MB during them (+{:.1}%), {} MB after",
        100.0 * (peak as f64 - before as f64) / before as f64,
        rss()
    );
    drop(current);
    postgres(bench, &worlds, wanted);
}

/// CPU time of every PostgreSQL server process on the machine, in µs.
fn postgres_cpu_us() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|e| cpu_us(&e.file_name().to_string_lossy()))
        .sum()
}

/// Requests the world allows, as far as its records show: an active employee, a
/// team of theirs granted an agent system user, a client of that system user in
/// the team's portfolio, a package delegated for it. Each has its own employee and
/// its own client link, so revoking one changes no other. Spread over the world.
fn candidates(w: &vakt::world::World, n: usize) -> Vec<AuthorizeRequest> {
    let mut out = Vec::new();
    let mut links = std::collections::HashSet::new();
    let stride = (w.employees().count() / (n * 4)).max(1);
    for e in w.employees().step_by(stride) {
        if out.len() >= n {
            break;
        }
        if !e.active {
            continue;
        }
        'employee: for t in e.teams.iter() {
            let Some(team) = w.team(t) else { continue };
            for su_id in team.system_users.iter() {
                let Some(su) = w.system_user(su_id) else {
                    continue;
                };
                if su.is_deleted {
                    continue;
                }
                for (client, link) in su.links.iter() {
                    let parent = w.organization(*client).and_then(|o| o.parent());
                    if !link.active
                        || !team.covers(*client, parent)
                        || links.contains(&(su_id.clone(), *client))
                    {
                        continue;
                    }
                    let package = link
                        .access
                        .entries
                        .iter()
                        .flat_map(|(_, p)| p.iter())
                        .find(|p| su.access_packages.contains(p));
                    if let Some(package) = package {
                        links.insert((su_id.clone(), *client));
                        out.push(AuthorizeRequest {
                            employee_id: e.id.to_string(),
                            system_user_id: su_id.to_string(),
                            client_org_number: client.to_string(),
                            access_package: package.to_string(),
                            ..Default::default()
                        });
                        break 'employee;
                    }
                }
            }
        }
    }
    out
}

fn vakt_cli(args: &[&std::ffi::OsStr]) {
    let out = Command::new(support::vakt_bin())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vakt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn client(addr: &str) -> AuthorizerClient<Channel> {
    let ch = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AuthorizerClient::new(ch)
}

async fn decision(c: &mut AuthorizerClient<Channel>, r: &AuthorizeRequest) -> Decision {
    c.authorize(r.clone())
        .await
        .unwrap()
        .into_inner()
        .decision()
}

/// Asks until the answer is a deny; the time from `t0`.
async fn until_deny(
    mut c: AuthorizerClient<Channel>,
    r: &AuthorizeRequest,
    t0: Instant,
) -> Duration {
    while decision(&mut c, r).await != Decision::Deny {
        assert!(t0.elapsed() < Duration::from_secs(10), "no deny after 10 s");
    }
    t0.elapsed()
}

/// Closed loop: 32 callers over 4 connections for `time`; calls per second.
async fn peak(
    clients: &[AuthorizerClient<Channel>],
    reqs: &[AuthorizeRequest],
    time: Duration,
) -> f64 {
    let end = Instant::now() + time;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mut c = clients[i % clients.len()].clone();
        let reqs = reqs.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                c.authorize(reqs[(i + n as usize) % reqs.len()].clone())
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut calls = 0;
    for t in tasks {
        calls += t.await.unwrap();
    }
    calls as f64 / time.as_secs_f64()
}

/// Open loop: `rate` calls per second for `time`, sent on a 1 ms tick whatever the
/// answers do, each timed from its own send. Returns the latency histogram (µs).
async fn fixed_rate(
    clients: &[AuthorizerClient<Channel>],
    reqs: &[AuthorizeRequest],
    rate: f64,
    time: Duration,
) -> Histogram<u64> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    let mut sent = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while start.elapsed() < time {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as usize;
        while sent < due {
            let mut c = clients[sent % clients.len()].clone();
            let r = reqs[sent % reqs.len()].clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                let ok = c.authorize(r).await.is_ok();
                let _ = tx.send((t0.elapsed(), ok));
            });
            sent += 1;
        }
    }
    drop(tx);
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    while let Some((d, ok)) = rx.recv().await {
        assert!(ok, "a call failed under load");
        h.record(d.as_micros().max(1) as u64).unwrap();
    }
    h
}

/// Writes `rate` changes per second (each its own transaction) over two
/// connections until `stop`: employees' `active` and client links' `status`
/// flipped back and forth. Returns the changes committed.
async fn stream_changes(
    url: String,
    employees: Vec<String>,
    links: Vec<(String, String)>,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut writers = Vec::new();
    for w in 0..2usize {
        let (db, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        let (employees, links, stop) = (employees.clone(), links.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let flip_employee = db
                .prepare("UPDATE vakt.employee SET active = NOT active WHERE id = $1")
                .await
                .unwrap();
            let flip_link = db
                .prepare(
                    "UPDATE vakt.client_link SET status = CASE status WHEN 'active' THEN 'removed' ELSE 'active' END
                      WHERE system_user_id = $1 AND client_org_number = $2",
                )
                .await
                .unwrap();
            let start = Instant::now();
            let mut done = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while !stop.load(AtomicOrdering::Relaxed) {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * rate / 2.0) as u64;
                while done < due && !stop.load(AtomicOrdering::Relaxed) {
                    let i = (done as usize) * 2 + w;
                    if i.is_multiple_of(2) {
                        let e = &employees[(i / 2) % employees.len()];
                        db.execute(&flip_employee, &[e]).await.unwrap();
                    } else {
                        let (su, client) = &links[(i / 2) % links.len()];
                        db.execute(&flip_link, &[su, client]).await.unwrap();
                    }
                    done += 1;
                }
            }
            done
        }));
    }
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    total
}

/// PostgreSQL: load at every size; on the largest world, the delay from commit to
/// deny on two sidecars, then Authorize latency at half the peak, quiet and while
/// 1,000 changes per second stream in.
fn postgres(
    bench: bool,
    worlds: &[(tempfile::TempDir, vakt::tools::gen::Generated)],
    wanted: Vec<AuthorizeRequest>,
) {
    let pg = pg::Cluster::start();
    println!();
    println!("From PostgreSQL:");
    println!();
    println!("| entities | import s | load s | peak MB | steady MB |");
    println!("|---:|---:|---:|---:|---:|");
    let mut url = String::new();
    for (i, (dir, g)) in worlds.iter().enumerate() {
        url = pg.create_db(&format!("world{i}"));
        let db = std::ffi::OsStr::new(&url);
        vakt_cli(&["db".as_ref(), "migrate".as_ref(), "--database".as_ref(), db]);
        let t0 = Instant::now();
        vakt_cli(&[
            "db".as_ref(),
            "import".as_ref(),
            dir.path().as_os_str(),
            "--database".as_ref(),
            db,
        ]);
        let import = t0.elapsed();
        let (_, took, peak, steady) = serve(db);
        println!(
            "| {} | {:.1} | {:.2} | {peak} | {steady} |",
            g.entities(),
            import.as_secs_f64(),
            took.as_secs_f64()
        );
    }

    // A copy of the largest world that no sidecar follows: changes streamed into
    // it cost the database and the writer what the real stream costs, and the
    // sidecar nothing. It is the baseline that tells Vakt's share of the cost
    // from the machine's (this one has 2 cores for everything).
    let template = format!("world{}", worlds.len() - 1);
    let mut copied = Err(String::new());
    for _ in 0..50 {
        copied = pg.try_psql(
            "postgres",
            &format!("CREATE DATABASE unfollowed TEMPLATE {template}"),
        );
        if copied.is_ok() {
            break;
        }
        // The last load's sidecar may still be disconnecting.
        std::thread::sleep(Duration::from_millis(100));
    }
    copied.expect("copying the largest world");
    let unfollowed = pg.url("unfollowed");
    let a = serve(url.as_ref()).0;
    let b = serve(url.as_ref()).0;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (db, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        let (mut ca, cb) = (client(&a.addr).await, client(&b.addr).await);
        let mut allowed = Vec::new();
        for r in wanted {
            if decision(&mut ca, &r).await == Decision::Allow {
                allowed.push(r);
            }
        }
        let n = if bench { 200 } else { 6 };
        assert!(allowed.len() >= 2 * n, "only {} allowed requests found", allowed.len());
        let (revoked, load) = allowed.split_at(n);

        // Revocations, one at a time: an employee deactivated, a client link
        // marked removed, a client link deleted. Timed from just before the
        // statement is sent until both sidecars deny.
        let mut both = Vec::with_capacity(n);
        for (i, r) in revoked.iter().enumerate() {
            let mut cb2 = cb.clone();
            assert_eq!(decision(&mut cb2, r).await, Decision::Allow);
            let t0 = Instant::now();
            match i % 3 {
                0 => db.execute("UPDATE vakt.employee SET active = false WHERE id = $1", &[&r.employee_id]).await,
                1 => db.execute(
                    "UPDATE vakt.client_link SET status = 'removed' WHERE system_user_id = $1 AND client_org_number = $2",
                    &[&r.system_user_id, &r.client_org_number],
                ).await,
                _ => db.execute(
                    "DELETE FROM vakt.client_link WHERE system_user_id = $1 AND client_org_number = $2",
                    &[&r.system_user_id, &r.client_org_number],
                ).await,
            }
            .unwrap();
            let (da, dbb) = tokio::join!(until_deny(ca.clone(), r, t0), until_deny(cb.clone(), r, t0));
            both.push(da.max(dbb));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        both.sort();
        println!();
        println!(
            "commit to deny on both of two sidecars ({n} revocations: employee deactivated, link removed, link deleted): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&both, 0.5).as_secs_f64() * 1e3,
            percentile(&both, 0.99).as_secs_f64() * 1e3,
            both[both.len() - 1].as_secs_f64() * 1e3
        );
        drop(b);

        // Load on one sidecar at half its peak, quiet and with changes streaming
        // in, in interleaved rounds.
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(client(&a.addr).await);
        }
        let secs = if bench { 5.0 } else { 0.5 };
        let time = Duration::from_secs_f64(secs);
        let top = peak(&clients, load, time).await;
        let rate = top / 2.0;
        // The revoked half is flipped back and forth: none of the load's requests
        // depend on it.
        let employees: Vec<String> = revoked.iter().step_by(3).map(|r| r.employee_id.clone()).collect();
        let links: Vec<(String, String)> = revoked
            .iter()
            .skip(1)
            .step_by(3)
            .map(|r| (r.system_user_id.clone(), r.client_org_number.clone()))
            .collect();
        let (mut quiet, mut busy) = (Vec::new(), Vec::new());
        let mut changes = Vec::new();
        // CPU (in cores) of the sidecar, PostgreSQL and this process, per run.
        let pid = a.child.id().to_string();
        let sample = || [cpu_us(&pid), postgres_cpu_us(), cpu_us("self")];
        let cores = |from: [f64; 3], to: [f64; 3], secs: f64| {
            [0, 1, 2].map(|i| (to[i] - from[i]) / 1e6 / secs)
        };
        let (mut quiet_cpu, mut busy_cpu, mut base_cpu) = (Vec::new(), Vec::new(), Vec::new());
        let mut baseline = Vec::new();
        for _ in 0..3 {
            let c0 = sample();
            let h = fixed_rate(&clients, load, rate, time).await;
            quiet_cpu.push(cores(c0, sample(), secs));
            quiet.push((h.value_at_quantile(0.5), h.value_at_quantile(0.99)));
            for (target, lat, cpu) in [
                (&unfollowed, &mut baseline, &mut base_cpu),
                (&url, &mut busy, &mut busy_cpu),
            ] {
                let stop = Arc::new(AtomicBool::new(false));
                let writer = tokio::spawn(stream_changes(
                    target.clone(),
                    employees.clone(),
                    links.clone(),
                    1000.0,
                    stop.clone(),
                ));
                let t0 = Instant::now();
                let c0 = sample();
                let h = fixed_rate(&clients, load, rate, time).await;
                cpu.push(cores(c0, sample(), secs));
                stop.store(true, AtomicOrdering::Relaxed);
                let written = writer.await.unwrap();
                if target == &url {
                    changes.push(written as f64 / t0.elapsed().as_secs_f64());
                }
                lat.push((h.value_at_quantile(0.5), h.value_at_quantile(0.99)));
            }
        }
        let mean = |v: &[[f64; 3]], i: usize| v.iter().map(|x| x[i]).sum::<f64>() / v.len() as f64;
        for (label, v) in [("quiet", &quiet_cpu), ("changes to an unfollowed copy", &base_cpu), ("changes followed", &busy_cpu)] {
            println!(
                "CPU in cores, {label}: sidecar {:.2}, PostgreSQL {:.2}, load generator and writer {:.2}",
                mean(v, 0),
                mean(v, 1),
                mean(v, 2)
            );
        }
        let median = |v: &mut Vec<(u64, u64)>, f: fn(&(u64, u64)) -> u64| {
            let mut x: Vec<u64> = v.iter().map(f).collect();
            x.sort();
            x[x.len() / 2]
        };
        let (q50, q99) = (median(&mut quiet, |x| x.0), median(&mut quiet, |x| x.1));
        let (b50, b99) = (median(&mut busy, |x| x.0), median(&mut busy, |x| x.1));
        let (u50, u99) = (
            median(&mut baseline, |x| x.0),
            median(&mut baseline, |x| x.1),
        );
        println!();
        println!("peak (32 callers, 4 connections): {top:.0} calls/s; fixed load {rate:.0} calls/s, 3 interleaved rounds of {secs} s, medians:");
        println!("| | p50 µs | p99 µs |");
        println!("|---|---:|---:|");
        println!("| quiet | {q50} | {q99} |");
        println!("| the same changes into an unfollowed copy | {u50} | {u99} |");
        println!(
            "| {:.0} changes/s streaming in | {b50} | {b99} |",
            changes.iter().sum::<f64>() / changes.len() as f64
        );
        println!(
            "p99 with changes followed / quiet p99: {:.2}; / p99 with the changes unfollowed: {:.2}",
            b99 as f64 / q99 as f64,
            b99 as f64 / u99 as f64
        );
        println!("rounds (p50, p99): quiet {quiet:?}, unfollowed {baseline:?}, followed {busy:?}");
    });
    drop(a);
}
