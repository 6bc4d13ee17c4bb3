//! The cost of one change against the world's size: a new one-employee file
//! renamed over the old one, timed until `vakt serve` denies (issue 27, item 4).
//!
//! For each size a generated world is written as the four section files an export
//! writes (`World::write_files`, as `vakt db export` does), with one employee, one
//! the world allows, taken out into a file of its own, `one-employee.json`. Then
//! `vakt serve --data DIR` follows the directory and, 20 times, the employee is
//! deactivated: the file is written anew under a temporary name in the same
//! directory and renamed over the old one, timed from the rename to the first
//! DENY. Each time it is put back the same way (untimed) and asked until ALLOW.
//!
//! Sizes: 1 and 1,000 firms (about 1,000 and 1,000,000 entities) with `--bench`;
//! 1 and 3 firms in the smoke run. `VAKT_LIVE_STAGES=rename` runs this stage
//! alone (about 3 minutes with `--bench`).

use super::{candidates, client, decision, percentile, serve, until_deny};
use std::path::Path;
use std::time::{Duration, Instant};
use vakt::proto::Decision;
use vakt::rules::snapshot::SourcePaths;
use vakt::source::files::FileSource;
use vakt::world::{Change, EmployeeRecord, Id};

/// Changes timed at each size.
const CHANGES: usize = 20;

/// The file the one employee is in.
const FILE: &str = "one-employee.json";

/// Runs the stage (`main` runs it when `VAKT_LIVE_STAGES` is unset or names
/// `rename`).
pub fn run(bench: bool) {
    let sizes: [usize; 2] = if bench { [1, 1000] } else { [1, 3] };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!();
    println!("One employee deactivated by renaming a new one-employee file over the old one, beside the world in four section files ({CHANGES} changes; time from the rename to the first DENY):");
    println!();
    println!("| entities | section files MB | p50 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|");
    let mut p99s = Vec::new();
    for firms in sizes {
        let (entities, mb, mut times) = measure(firms, &rt);
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p99 = percentile(&times, 0.99);
        println!(
            "| {entities} | {mb:.0} | {:.1} | {:.1} | {:.1} |",
            ms(percentile(&times, 0.5)),
            ms(p99),
            ms(*times.last().unwrap())
        );
        p99s.push((entities, p99));
    }
    let (small, large) = (p99s[0], p99s[p99s.len() - 1]);
    println!();
    println!(
        "p99 at {} entities / p99 at {} entities: {:.2} (target: at most 2; and p99 at most 100 ms at 1,000,000)",
        large.0,
        small.0,
        large.1.as_secs_f64() / small.1.as_secs_f64()
    );
}

/// Writes the employee's file, `active` or not, under a temporary name, and
/// renames it into place.
fn place(dir: &Path, record: &EmployeeRecord, active: bool) {
    let mut r = record.clone();
    r.active = active;
    let text = serde_json::to_string(&serde_json::json!({ "employees": [r] })).unwrap();
    let tmp = dir.join(".one-employee.json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(FILE)).unwrap();
}

/// One size: the entities, the section files' size (MB) and the time of each change.
fn measure(firms: usize, rt: &tokio::runtime::Runtime) -> (usize, f64, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let (request, record, entities) = {
        let generated = tempfile::tempdir().unwrap();
        vakt::tools::gen::write_world(generated.path(), firms, firms.div_ceil(10), 1).unwrap();
        let (_, snap) = FileSource::load(SourcePaths {
            data: Some(generated.path().to_path_buf()),
            ..Default::default()
        })
        .expect("generated world loads");
        let request = candidates(&snap.world, 1)
            .into_iter()
            .next()
            .expect("the world allows some request");
        let employee = snap.world.employee(&request.employee_id).unwrap();
        let record = EmployeeRecord::from(employee);
        let rest = snap
            .apply(
                [Change::Employee(
                    Id::from(request.employee_id.as_str()),
                    None,
                )],
                snap.data.clone(),
            )
            .unwrap();
        rest.world.write_files(dir.path()).unwrap();
        (request, record, snap.world.counts().entities())
    };
    let mb = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum::<u64>() as f64
        / 1e6;
    place(dir.path(), &record, true);
    let (sidecar, _, _, _) = serve(dir.path().as_os_str());
    let times = rt.block_on(async {
        let mut c = client(&sidecar.addr).await;
        assert_eq!(decision(&mut c, &request).await, Decision::Allow);
        let mut times = Vec::with_capacity(CHANGES);
        for _ in 0..CHANGES {
            let t0 = Instant::now();
            place(dir.path(), &record, false);
            times.push(until_deny(c.clone(), &request, t0).await);
            place(dir.path(), &record, true);
            let back = Instant::now();
            while decision(&mut c, &request).await != Decision::Allow {
                assert!(
                    back.elapsed() < Duration::from_secs(10),
                    "no allow after 10 s"
                );
            }
        }
        times
    });
    drop(sidecar);
    (entities, mb, times)
}
