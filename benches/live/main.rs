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
//!
//! `VAKT_LIVE_STAGES` runs only some stages (a comma-separated list; all when
//! unset): `rename` and `sections` (issue 27's file stages), `files` (loading
//! from files at every size), `apply` (single changes in process), `postgres`
//! (loading from PostgreSQL at every size, and commit to deny on two sidecars),
//! `follow` (Authorize latency at half the peak while changes stream in); `live`
//! names the last four together (when the list names `sections`, that stage
//! ends the run unless the list also names `live`). With
//! `follow` alone only the largest world is generated and imported:
//! `VAKT_LIVE_STAGES=follow VAKT_LIVE_FIRMS=1000` measures issue 27's item 6
//! without the other stages. `VAKT_LIVE_ROUNDS` sets that stage's interleaved
//! rounds (3 when unset).

#[allow(dead_code)]
#[path = "../../tests/it/common/pg.rs"]
mod pg;

use hdrhistogram::Histogram;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
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

/// A `vakt serve` started by the benchmark.
struct Sidecar {
    child: std::process::Child,
    addr: String,
    /// From its log: the polls that applied changes, and the records they applied.
    applied: Arc<[AtomicU64; 2]>,
}

impl Sidecar {
    fn applied(&self) -> (u64, u64) {
        (
            self.applied[0].load(AtomicOrdering::Relaxed),
            self.applied[1].load(AtomicOrdering::Relaxed),
        )
    }
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
    let (child, mut lines) = support::serve_data(data);
    let mut addr = None;
    for l in lines.by_ref().map_while(Result::ok) {
        if l.contains("\"listening\"") {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            addr = v["fields"]["address"].as_str().map(String::from);
            break;
        }
    }
    let took = started.elapsed();
    // Keep reading its log, so that it never blocks on a full pipe, counting the
    // polls that applied changes.
    let applied = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let counts = applied.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if !l.contains("data changed; applied") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
            counts[0].fetch_add(1, AtomicOrdering::Relaxed);
            let records = v["fields"]["records"].as_u64().unwrap_or(0);
            counts[1].fetch_add(records, AtomicOrdering::Relaxed);
        }
    });
    let addr = addr.expect("vakt serve did not start");
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let (peak, steady) = (
        support::proc_kb(&pid, "VmHWM:") / 1024,
        support::proc_kb(&pid, "VmRSS:") / 1024,
    );
    (
        Sidecar {
            child,
            addr,
            applied,
        },
        took,
        peak,
        steady,
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// The stages `VAKT_LIVE_STAGES` names (see the file's header); every stage when
/// unset.
struct Stages(Option<Vec<String>>);

impl Stages {
    const ALL: [&'static str; 7] = [
        "rename", "sections", "live", "files", "apply", "postgres", "follow",
    ];
    /// The stages of this file, which `live` names together.
    const LIVE: [&'static str; 4] = ["files", "apply", "postgres", "follow"];

    fn from_env() -> Self {
        Self(std::env::var("VAKT_LIVE_STAGES").ok().map(|v| {
            let named: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
            for n in &named {
                assert!(
                    Self::ALL.contains(&n.as_str()),
                    "VAKT_LIVE_STAGES: unknown stage {n:?} (known: {:?})",
                    Self::ALL
                );
            }
            named
        }))
    }

    fn has(&self, stage: &str) -> bool {
        self.0.as_ref().is_none_or(|v| {
            v.iter()
                .any(|s| s == stage || (s == "live" && Self::LIVE.contains(&stage)))
        })
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let stages = Stages::from_env();
    if stages.has("rename") {
        rename::run(bench);
    }
    if stages.has("sections") {
        sections::run(bench);
    }
    if !["files", "apply", "postgres", "follow"]
        .iter()
        .any(|s| stages.has(s))
    {
        return;
    }
    // VAKT_LIVE_FIRMS=1,100 picks other world sizes (in firms of 1,000 entities).
    let mut sizes: Vec<usize> = match std::env::var("VAKT_LIVE_FIRMS") {
        Ok(v) => v
            .split(',')
            .map(|n| n.trim().parse().expect("VAKT_LIVE_FIRMS"))
            .collect(),
        Err(_) if bench => vec![1, 100, 1000],
        Err(_) => vec![1, 3],
    };
    // Only the stages that go through every size need the smaller worlds.
    if !stages.has("files") && !stages.has("postgres") {
        sizes.drain(..sizes.len() - 1);
    }
    if stages.has("files") {
        println!("| entities | files | JSON MB | load s | peak MB | steady MB |");
        println!("|---:|---:|---:|---:|---:|---:|");
    }
    let mut worlds = Vec::new();
    for &firms in &sizes {
        let dir = tempfile::tempdir().unwrap();
        let files = firms.div_ceil(10);
        let g = vakt::tools::gen::write_world(dir.path(), firms, files, 1).unwrap();
        if stages.has("files") {
            let (_, took, peak, steady) = serve(dir.path().as_os_str());
            println!(
                "| {} | {files} | {:.0} | {:.2} | {peak} | {steady} |",
                g.entities(),
                g.bytes as f64 / 1e6,
                took.as_secs_f64()
            );
        }
        worlds.push((dir, g));
    }
    let dir = &worlds.last().unwrap().0;

    // The largest world in this process: requests it allows, and the changes.
    let (_, snap) = FileSource::load(SourcePaths {
        data: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .expect("generated world loads");
    // As `vakt serve` does after a load: hand back the memory parsing used.
    // SAFETY: mi_collect only frees memory the allocator no longer hands out.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let wanted = candidates(&snap.world, if bench { 1000 } else { 40 });
    if stages.has("apply") {
        apply_changes(bench, snap);
    } else {
        drop(snap);
    }
    if stages.has("postgres") || stages.has("follow") {
        postgres(bench, &worlds, wanted, &stages);
    }
}

/// One change at a time, applied to `snap`'s world in this process: the time of
/// each, and the memory a burst of them adds.
fn apply_changes(bench: bool, snap: vakt::rules::snapshot::Snapshot) {
    let entities = snap.world.counts().entities();
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
    let rss = || support::proc_kb("self", "VmRSS:") / 1024;
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
}

/// CPU time of every PostgreSQL server process on the machine, in µs, those that
/// ended included: a backend's time moves to the postmaster's children's time
/// (`cutime`, `cstime`) when it exits, so a sum over the living alone would drop
/// the writer's backends that end between two samples.
fn postgres_cpu_us() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<f64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0.0))
                .collect();
            // utime, stime, cutime, cstime, in clock ticks of 1/100 s.
            [11, 12, 13, 14]
                .iter()
                .map(|&i| f.get(i).unwrap_or(&0.0))
                .sum::<f64>()
                * 10_000.0
        })
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
/// 1,000 changes per second stream in (the stages `postgres` and `follow`; with
/// `follow` alone, only the largest world is imported).
fn postgres(
    bench: bool,
    worlds: &[(tempfile::TempDir, vakt::tools::gen::Generated)],
    wanted: Vec<AuthorizeRequest>,
    stages: &Stages,
) {
    let pg = pg::Cluster::start();
    println!();
    println!("From PostgreSQL:");
    println!();
    println!("| entities | import s | load s | peak MB | steady MB |");
    println!("|---:|---:|---:|---:|---:|");
    let mut url = String::new();
    for (i, (dir, g)) in worlds.iter().enumerate() {
        if !stages.has("postgres") && i + 1 < worlds.len() {
            continue;
        }
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
    let unfollowed = if stages.has("follow") {
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
        pg.url("unfollowed")
    } else {
        String::new()
    };
    let a = serve(url.as_ref()).0;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ca = client(&a.addr).await;
        let mut allowed = Vec::new();
        for r in wanted {
            if decision(&mut ca, &r).await == Decision::Allow {
                allowed.push(r);
            }
        }
        let n = if bench { 200 } else { 6 };
        assert!(
            allowed.len() >= 2 * n,
            "only {} allowed requests found",
            allowed.len()
        );
        let (revoked, load) = allowed.split_at(n);
        if stages.has("postgres") {
            revocations(&url, &a, revoked).await;
        }
        if stages.has("follow") {
            // The revoked half is flipped back and forth: none of the load's
            // requests depend on it.
            let employees: Vec<String> = revoked
                .iter()
                .step_by(3)
                .map(|r| r.employee_id.clone())
                .collect();
            let links: Vec<(String, String)> = revoked
                .iter()
                .skip(1)
                .step_by(3)
                .map(|r| (r.system_user_id.clone(), r.client_org_number.clone()))
                .collect();
            under_changes(bench, &a, load, (&url, &unfollowed), (employees, links)).await;
        }
    });
    drop(a);
}

/// Revocations, one at a time: an employee deactivated, a client link marked
/// removed, a client link deleted. Timed from just before the statement is sent
/// until both `a` and a second sidecar on the same database deny.
async fn revocations(url: &str, a: &Sidecar, revoked: &[AuthorizeRequest]) {
    let b = serve(url.as_ref()).0;
    let (db, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let (ca, cb) = (client(&a.addr).await, client(&b.addr).await);
    let n = revoked.len();
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
}

/// Busy CPU time of the whole machine (every process, interrupts included), in
/// µs, from `/proc/stat`.
fn machine_busy_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // user, nice, system, (idle, iowait), irq, softirq, steal; guest time is
    // already in user.
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).unwrap_or(&0.0))
        .sum();
    busy * 10_000.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One phase of one round under [`under_changes`].
struct Phase {
    p50: u64,
    p99: u64,
    /// Cores used by the sidecar, PostgreSQL, this process (load generator and
    /// writer) and everything else on the machine.
    cpu: [f64; 4],
    /// The sidecar's polls that applied changes, and the records they applied.
    applied: (u64, u64),
    /// Changes committed per second by the writer (0 when quiet).
    changes: f64,
    /// The follower's own cost, per second: its thread's CPU (ms) and context
    /// switches (each a wake-up), and those of its connection's backend.
    follower: [f64; 4],
}

/// CPU time (µs) and context switches (voluntary and not) of `/proc/PATH`, a
/// process or one thread (`PID/task/TID`).
fn cpu_and_switches(path: &str) -> [f64; 2] {
    let cpu = support::cpu_us(path);
    let switches: f64 = std::fs::read_to_string(format!("/proc/{path}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum();
    [cpu, switches]
}

/// The follower's thread in the sidecar `pid` (named `vakt-follow`), as
/// `PID/task/TID`.
fn follower_thread(pid: &str) -> Option<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(Result::ok)
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "vakt-follow")
        })
        .map(|t| format!("{pid}/task/{}", t.file_name().to_string_lossy()))
}

/// One sidecar driven at half its peak by an open-loop generator in interleaved
/// rounds: quiet; while 1,000 changes per second go into `unfollowed`, a copy no
/// sidecar follows; while the same changes go into `followed`. Each round prints
/// its latencies, the machine's CPU split and the followed/unfollowed p99 ratio.
async fn under_changes(
    bench: bool,
    a: &Sidecar,
    load: &[AuthorizeRequest],
    (followed, unfollowed): (&str, &str),
    (employees, links): (Vec<String>, Vec<(String, String)>),
) {
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(client(&a.addr).await);
    }
    let rounds: usize = std::env::var("VAKT_LIVE_ROUNDS")
        .map(|v| v.parse().expect("VAKT_LIVE_ROUNDS"))
        .unwrap_or(3);
    let secs = if bench { 5.0 } else { 0.5 };
    let time = Duration::from_secs_f64(secs);
    let top = peak(&clients, load, time).await;
    let rate = top / 2.0;
    let pid = a.child.id().to_string();
    // The follower's thread, and the backend of its connection (the sidecar's
    // only one once loaded: application_name `vakt`).
    let thread = follower_thread(&pid).unwrap_or_default();
    let backends: Vec<String> = {
        let (db, conn) = tokio_postgres::connect(followed, NoTls).await.unwrap();
        tokio::spawn(conn);
        db.query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'vakt' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i32>(0).to_string())
        .collect()
    };
    println!("the follower's thread: /proc/{thread}; its connection's backend(s): {backends:?}");
    let follower_sample = || {
        let t = cpu_and_switches(&thread);
        let b = backends
            .iter()
            .map(|p| cpu_and_switches(p))
            .fold([0.0; 2], |a, x| [a[0] + x[0], a[1] + x[1]]);
        [t[0], t[1], b[0], b[1]]
    };
    let sample = || {
        [
            cpu_us(&pid),
            postgres_cpu_us(),
            cpu_us("self"),
            machine_busy_us(),
        ]
    };
    let phase = |from: [f64; 4], to: [f64; 4], took: f64| {
        let c = [0, 1, 2, 3].map(|i| (to[i] - from[i]) / 1e6 / took);
        [c[0], c[1], c[2], (c[3] - c[0] - c[1] - c[2]).max(0.0)]
    };
    println!();
    println!(
        "peak (32 callers, 4 connections): {top:.0} calls/s; fixed load {rate:.0} calls/s, {rounds} interleaved rounds of {secs} s; load average at the start {}",
        load_average()
    );
    println!("| round | phase | p50 µs | p99 µs | CPU cores: sidecar | PostgreSQL | generator + writer | other | changes/s | polls applied/s | records/poll | follower thread: CPU ms/s / switches/s | its backend: CPU ms/s / switches/s |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let names = ["quiet", "unfollowed", "followed"];
    let mut all: Vec<[Phase; 3]> = Vec::new();
    for round in 1..=rounds {
        let mut phases = Vec::new();
        for (i, target) in [None, Some(unfollowed), Some(followed)]
            .into_iter()
            .enumerate()
        {
            let stop = Arc::new(AtomicBool::new(false));
            let writer = target.map(|t| {
                tokio::spawn(stream_changes(
                    t.to_owned(),
                    employees.clone(),
                    links.clone(),
                    1000.0,
                    stop.clone(),
                ))
            });
            let applied0 = a.applied();
            let f0 = follower_sample();
            let t0 = Instant::now();
            let c0 = sample();
            let h = fixed_rate(&clients, load, rate, time).await;
            let took = t0.elapsed().as_secs_f64();
            let cpu = phase(c0, sample(), took);
            let f1 = follower_sample();
            let follower =
                [0, 1, 2, 3].map(|i| (f1[i] - f0[i]) / took / if i % 2 == 0 { 1e3 } else { 1.0 });
            let applied1 = a.applied();
            stop.store(true, AtomicOrdering::Relaxed);
            let changes = match writer {
                Some(w) => w.await.unwrap() as f64 / t0.elapsed().as_secs_f64(),
                None => 0.0,
            };
            let p = Phase {
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                cpu,
                applied: (applied1.0 - applied0.0, applied1.1 - applied0.1),
                changes,
                follower,
            };
            println!(
                "| {round} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} | {:.1} / {:.0} | {:.1} / {:.0} |",
                names[i],
                p.p50,
                p.p99,
                p.cpu[0],
                p.cpu[1],
                p.cpu[2],
                p.cpu[3],
                p.changes,
                p.applied.0 as f64 / took,
                p.applied.1 as f64 / p.applied.0.max(1) as f64,
                p.follower[0],
                p.follower[1],
                p.follower[2],
                p.follower[3],
            );
            phases.push(p);
        }
        let [q, u, f]: [Phase; 3] = phases.try_into().unwrap_or_else(|_| unreachable!());
        println!(
            "round {round}: followed p99 / unfollowed p99 {:.2}, / quiet p99 {:.2}; load average {}",
            f.p99 as f64 / u.p99 as f64,
            f.p99 as f64 / q.p99 as f64,
            load_average()
        );
        all.push([q, u, f]);
    }
    let median = |f: &dyn Fn(&[Phase; 3]) -> f64| {
        let mut x: Vec<f64> = all.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    println!();
    println!("medians over the rounds:");
    println!("| phase | p50 µs | p99 µs | CPU cores: sidecar | PostgreSQL | generator + writer | other | follower thread: CPU ms/s / switches/s | its backend: CPU ms/s / switches/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut p99s = [0.0; 3];
    for (i, name) in names.iter().enumerate() {
        p99s[i] = median(&|r| r[i].p99 as f64);
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} / {:.0} | {:.1} / {:.0} |",
            median(&|r| r[i].p50 as f64),
            p99s[i],
            median(&|r| r[i].cpu[0]),
            median(&|r| r[i].cpu[1]),
            median(&|r| r[i].cpu[2]),
            median(&|r| r[i].cpu[3]),
            median(&|r| r[i].follower[0]),
            median(&|r| r[i].follower[1]),
            median(&|r| r[i].follower[2]),
            median(&|r| r[i].follower[3]),
        );
    }
    let ratios: Vec<String> = all
        .iter()
        .map(|r| format!("{:.2}", r[2].p99 as f64 / r[1].p99 as f64))
        .collect();
    println!(
        "p99 with changes followed / p99 with the changes unfollowed: {:.2} (medians; per round {}); / quiet p99: {:.2}",
        p99s[2] / p99s[1],
        ratios.join(", "),
        p99s[2] / p99s[0]
    );
    println!("load average at the end {}", load_average());
}
