//! Loading a world written as four section files (organisations, system users,
//! teams, employees), as an export writes them (issue 27, item 5).
//!
//! For each world size, the same generated world in two layouts: the files of
//! `vakt gen-world` (ten firms a file), and the four files an export writes
//! (`vakt gen-world --layout sections`, through `World::write_files` as `vakt db
//! export`). `vakt serve --data DIR` is started on each, in
//! interleaved rounds; load time is from process start to "listening", peak
//! resident memory is `VmHWM` and steady is `VmRSS` half a second later.
//!
//! Stage `sections` of `VAKT_LIVE_STAGES` (every stage runs when it is unset):
//! `VAKT_LIVE_STAGES=sections cargo bench --bench live` runs only this one, on
//! the million-entity world (about 2 minutes).

use std::path::Path;
use std::time::{Duration, Instant};

/// Whether `VAKT_LIVE_STAGES` (a comma-separated list) names `stage`; every stage
/// runs when it is unset.
pub fn wanted(stage: &str) -> bool {
    std::env::var("VAKT_LIVE_STAGES").map_or(true, |v| v.split(',').any(|s| s.trim() == stage))
}

/// One load: seconds to "listening", peak MB, steady MB, and the CPU seconds
/// (user and system) it took, which vary less than the time on a shared machine.
fn load(dir: &Path) -> (f64, u64, u64, f64) {
    let started = Instant::now();
    let (mut child, mut lines) = super::support::serve_data(dir.as_os_str());
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("\"listening\""));
    let took = started.elapsed().as_secs_f64();
    let cpu = super::support::cpu_us(&child.id().to_string()) / 1e6;
    std::thread::spawn(move || lines.for_each(drop));
    assert!(listening, "vakt serve did not start on {}", dir.display());
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id();
    let (peak, steady) = (
        super::support::proc_kb(&pid.to_string(), "VmHWM:") / 1024,
        super::support::proc_kb(&pid.to_string(), "VmRSS:") / 1024,
    );
    let _ = child.kill();
    let _ = child.wait();
    (took, peak, steady, cpu)
}

/// The generated world of `firms` firms in both layouts: (gen-world's files, the
/// four section files an export writes, `vakt gen-world --layout sections`).
fn layouts(firms: usize) -> (tempfile::TempDir, tempfile::TempDir, usize) {
    let files = tempfile::tempdir().expect("temp dir");
    let g = vakt::tools::gen::write_world(files.path(), firms, firms.div_ceil(10), 1)
        .expect("world written");
    let sections = tempfile::tempdir().expect("temp dir");
    vakt::tools::gen::write_world_sections(sections.path(), firms, 1).expect("world exported");
    (files, sections, g.entities())
}

fn mb(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0) as f64
        / 1e6
}

/// Loads each size's world in both layouts, `rounds` times each, interleaved, and
/// prints the round with the median load time. Sizes: `VAKT_LIVE_FIRMS`, else
/// 1,000 firms with `--bench` and 1 and 3 firms in the smoke run. When
/// `VAKT_LIVE_STAGES` is set and names none of the stages of `main.rs` (`live`,
/// `files`, `apply`, `postgres`, `follow`), the benchmark ends here.
pub fn run(bench: bool) {
    if wanted("sections") {
        let sizes: Vec<usize> = match std::env::var("VAKT_LIVE_FIRMS") {
            Ok(v) => v
                .split(',')
                .map(|n| n.trim().parse().expect("VAKT_LIVE_FIRMS"))
                .collect(),
            Err(_) if bench => vec![1000],
            Err(_) => vec![1, 3],
        };
        measure(bench, &sizes);
    }
    // The stages of main.rs take many minutes: the run ends here unless the list
    // names one of them.
    if !["live", "files", "apply", "postgres", "follow"]
        .iter()
        .any(|s| wanted(s))
    {
        std::process::exit(0);
    }
}

fn measure(bench: bool, sizes: &[usize]) {
    let rounds = if bench { 3 } else { 1 };
    println!();
    println!(
        "Loading in two layouts (issue 27, item 5): the round of median load time of {rounds}"
    );
    println!(
        "| entities | layout | files | JSON MB | load s | CPU s | peak MB | steady MB | peak / steady |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for &firms in sizes {
        let (files, sections, entities) = layouts(firms);
        let mut runs: [Vec<(f64, u64, u64, f64)>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, dir) in [files.path(), sections.path()].into_iter().enumerate() {
                runs[i].push(load(dir));
            }
        }
        for (i, (name, dir)) in [("gen-world", files.path()), ("sections", sections.path())]
            .into_iter()
            .enumerate()
        {
            let r = &mut runs[i];
            r.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (took, peak, steady, cpu) = r[r.len() / 2];
            let n = std::fs::read_dir(dir).map_or(0, |d| d.count());
            println!(
                "| {entities} | {name} | {n} | {:.0} | {took:.2} | {cpu:.2} | {peak} | {steady} | {:.2} |",
                mb(dir),
                peak as f64 / steady.max(1) as f64
            );
        }
    }
}
