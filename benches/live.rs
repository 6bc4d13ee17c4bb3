//! Live data at scale: how long `vakt serve` takes to load generated worlds of
//! 1,000, 100,000 and 1,000,000 entities from files and how much memory it holds
//! (peak and steady), and what one change costs to apply to the million-entity
//! world (p50, p99, max), with the memory a burst of changes adds.
//!
//! Run: `cargo bench --bench live` (about 2 minutes). Without `--bench` (as `cargo
//! test --benches` runs it) it is a short smoke run on small worlds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vakt::snapshot::SourcePaths;
use vakt::source::files::FileSource;
use vakt::world::{Change, ClientLink, OrgNo};

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

/// Starts `vakt serve` on the data in `dir`; returns the time to "listening" and
/// the peak and steady resident memory (MB).
fn serve_and_measure(dir: &std::path::Path) -> (Duration, u64, u64) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--decision-log",
            "off",
            "--data",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for l in lines.map_while(Result::ok) {
        if l.contains("\"listening\"") {
            break;
        }
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let (peak, steady) = (
        proc_kb(&pid, "VmHWM:") / 1024,
        proc_kb(&pid, "VmRSS:") / 1024,
    );
    let _ = child.kill();
    let _ = child.wait();
    (took, peak, steady)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if bench { &[1, 100, 1000] } else { &[1, 3] };
    println!("| entities | files | JSON MB | load s | peak MB | steady MB |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut largest = None;
    for &firms in sizes {
        let dir = tempfile::tempdir().unwrap();
        let files = firms.div_ceil(10);
        let g = vakt::gen::write_world(dir.path(), firms, files, 1).unwrap();
        let (took, peak, steady) = serve_and_measure(dir.path());
        println!(
            "| {} | {files} | {:.0} | {:.2} | {peak} | {steady} |",
            g.entities(),
            g.bytes as f64 / 1e6,
            took.as_secs_f64()
        );
        largest = Some(dir);
    }
    let dir = largest.unwrap();

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
                let n = *s.links.keys().nth(i % s.links.len().max(1)).unwrap();
                Change::Link(su.clone(), n, None)
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
        let data = vakt::snapshot::DataVersion {
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
}
