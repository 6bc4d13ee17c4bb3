//! Reverse queries on a 1,000,000-entity world: one page of 1,000 results of
//! WhoCan and of WhatCan, in process and over gRPC, against a baseline measured
//! in the same run: 1,000 `Authorize` decisions in process (what a page must at
//! least decide). Also the memory of worlds kept for open answers while the data
//! changes (each change set is a new world that a page token keeps for 60 s).
//!
//! The world: `vakt gen-world`'s 1,000 accounting firms (1,000 entities each)
//! plus one large firm, so an answer holds several pages of 1,000: 3,000
//! employees in a team that sees every client, granted an agent linked to 1,500
//! clients with two packages.
//!
//! Run: `cargo bench --bench reverse` (VAKT_BENCH_FIRMS=100 for a quick run).
//! Without `--bench` (as `cargo test --benches` runs it) it is a short smoke run.

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vakt::decision::reverse::{what_can, what_can_query, who_can, who_can_query};
use vakt::decision::{decide, Query, RawRequest};
use vakt::rules::snapshot::{Snapshot, SourcePaths, Sources};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
const MVA: &str = "urn:altinn:accesspackage:merverdiavgift";
const ACCOUNTANT: &str = "urn:altinn:external-role:ccr:regnskapsforer";

fn org_numbers(from: u32, n: usize) -> Vec<String> {
    (from..)
        .flat_map(|p| (0..10).map(move |d| format!("{p:08}{d}")))
        .filter(|s| vakt::ids::check_org_number(s).is_ok())
        .take(n)
        .collect()
}

/// The large firm, as one more data file.
fn big_firm(dir: &std::path::Path) -> (String, Vec<String>) {
    let numbers = org_numbers(90_000_000, 1501);
    let firm = numbers[0].clone();
    let clients = numbers[1..].to_vec();
    let mut orgs = vec![json!({"orgNumber": firm, "name": "Stor Regnskap AS"})];
    orgs.extend(
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"orgNumber": c, "name": format!("Storklient {i} AS")})),
    );
    let su = json!({
        "id": "big-regnskap", "integrationTitle": "Stor regnskap", "systemId": "big_regnskap",
        "reporteeOrgNo": firm, "userType": "agent", "externalRef": "big-regnskap", "isDeleted": false,
        "accessPackages": [{"urn": REGNSKAP}, {"urn": MVA}],
        "clients": clients.iter().map(|c| json!({"clientOrganizationNumber": c, "access": [{"role": ACCOUNTANT, "packages": [REGNSKAP, MVA]}]})).collect::<Vec<_>>(),
    });
    let team = json!({"id": "big-all", "organization": firm, "name": "Alle", "systemUsers": ["big-regnskap"], "clients": "all"});
    let emps: Vec<_> = (0..3000)
        .map(|e| json!({"id": format!("b{e:04}@stor.no"), "organization": firm, "name": format!("Ansatt {e}"), "active": true, "kind": "person", "teams": ["big-all"]}))
        .collect();
    std::fs::write(
        dir.join("big-firm.json"),
        json!({"organizations": orgs, "systemUsers": [su], "teams": [team], "employees": emps})
            .to_string(),
    )
    .unwrap();
    (firm, clients)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn max(v: &[Duration]) -> Duration {
    v.iter().copied().max().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let firms: usize = std::env::var("VAKT_BENCH_FIRMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 1000 } else { 5 });
    let rounds = if full { 15 } else { 2 };
    let dir = tempfile::tempdir().unwrap();
    let generated = vakt::tools::gen::write_world(dir.path(), firms, 8, 7).unwrap();
    let (_, clients) = big_firm(dir.path());
    let started = Instant::now();
    let sources = Sources::read(&SourcePaths {
        data: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let snap = Arc::new(Snapshot::build(&sources).unwrap_or_else(|p| panic!("{p}")));
    let entities = snap.world.counts().entities();
    println!(
        "world: {} firms + the large one, {entities} entities, loaded in {:.1} s, {:.0} MB resident",
        generated.firms,
        started.elapsed().as_secs_f64(),
        rss_mb()
    );

    let who = who_can_query(
        &snap,
        RawRequest {
            client_org_number: clients[700].clone(),
            access_package: REGNSKAP.into(),
            ..Default::default()
        },
    )
    .unwrap();
    let what = what_can_query(
        &snap,
        RawRequest {
            employee_id: "b1500@stor.no".into(),
            ..Default::default()
        },
    )
    .unwrap();
    // The baseline: 1,000 Authorize decisions, the least a page of 1,000 decides.
    let baseline_queries: Vec<Query> = (0..1000)
        .map(|i| {
            Query::check(
                &snap,
                RawRequest {
                    employee_id: format!("b{i:04}@stor.no"),
                    system_user_id: "big-regnskap".into(),
                    client_org_number: clients[700].clone(),
                    access_package: REGNSKAP.into(),
                    ..Default::default()
                },
                "",
            )
            .unwrap()
        })
        .collect();
    let (mut base, mut who_first, mut who_next, mut what_first, mut what_next) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sizes = (0, 0, 0, 0);
    for _ in 0..rounds {
        let t = Instant::now();
        let allowed = baseline_queries
            .iter()
            .filter(|q| decide(&snap, q).allowed)
            .count();
        base.push(t.elapsed());
        assert_eq!(allowed, 1000);

        let t = Instant::now();
        let p1 = who_can(&snap, &who, None, 1000);
        who_first.push(t.elapsed());
        let after = p1.items.last().map(|w| w.employee.to_string());
        let t = Instant::now();
        let p2 = who_can(&snap, &who, after.as_deref(), 1000);
        who_next.push(t.elapsed());

        let t = Instant::now();
        let q1 = what_can(&snap, &what, None, 1000);
        what_first.push(t.elapsed());
        let after = q1.items.last().map(|w| w.key());
        let t = Instant::now();
        let q2 = what_can(&snap, &what, after.as_ref(), 1000);
        what_next.push(t.elapsed());
        sizes = (
            p1.items.len(),
            p2.items.len(),
            q1.items.len(),
            q2.items.len(),
        );
    }
    let b = median(&mut base);
    println!("in process, median of {rounds} rounds (worst):");
    println!(
        "  baseline: 1,000 Authorize decisions      {:7.2} ms ({:.2})",
        ms(b),
        ms(max(&base))
    );
    for (name, n, v) in [
        ("WhoCan, first page", sizes.0, &mut who_first),
        ("WhoCan, second page", sizes.1, &mut who_next),
        ("WhatCan, first page", sizes.2, &mut what_first),
        ("WhatCan, second page", sizes.3, &mut what_next),
    ] {
        let worst = max(v);
        let m = median(v);
        println!(
            "  {name:<22} {n:>5} results {:7.2} ms ({:.2})  ratio to baseline {:.2}  target <= 50 ms: {}",
            ms(m),
            ms(worst),
            m.as_secs_f64() / b.as_secs_f64(),
            if m <= Duration::from_millis(50) { "met" } else { "MISSED" }
        );
    }
    if full {
        assert_eq!(sizes, (1000, 1000, 1000, 1000), "pages of 1,000");
    }

    // Over gRPC, through the real server: the first page and the next, by token.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vakt = Arc::new(
        vakt::server::Vakt::new(
            snap.with_world(snap.world.clone(), snap.data.clone()),
            vakt::decision_log::DecisionLog::disabled(),
        )
        .with_options(vakt::server::Options {
            reverse_queries: true,
            ..Default::default()
        }),
    );
    let (mut grpc_first, mut grpc_next) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(vakt::server::serve(
            listener,
            vakt.clone(),
            std::future::pending(),
        ));
        let mut c =
            vakt::proto::authorizer_client::AuthorizerClient::connect(format!("http://{addr}"))
                .await
                .unwrap()
                .max_decoding_message_size(64 << 20);
        for _ in 0..rounds {
            let req = vakt::proto::WhatCanRequest {
                employee_id: "b1500@stor.no".into(),
                page_size: 1000,
                ..Default::default()
            };
            let t = Instant::now();
            let r = c.what_can(req.clone()).await.unwrap().into_inner();
            grpc_first.push(t.elapsed());
            let t = Instant::now();
            let r2 = c
                .what_can(vakt::proto::WhatCanRequest {
                    page_token: r.next_page_token,
                    ..req
                })
                .await
                .unwrap()
                .into_inner();
            grpc_next.push(t.elapsed());
            assert_eq!(r2.grants.len(), r.grants.len());
        }
    });
    println!("over gRPC, WhatCan pages of 1,000, median (worst):");
    for (name, v) in [
        ("first page", &mut grpc_first),
        ("next page, by token", &mut grpc_next),
    ] {
        let worst = max(v);
        let m = median(v);
        println!(
            "  {name:<22} {:7.2} ms ({:.2})  ratio to baseline {:.2}  target <= 50 ms: {}",
            ms(m),
            ms(worst),
            m.as_secs_f64() / b.as_secs_f64(),
            if m <= Duration::from_millis(50) {
                "met"
            } else {
                "MISSED"
            }
        );
    }

    // Worlds kept for open answers: 32 successive worlds (the most kept), each one
    // change set (an employee deactivated) after the one before.
    let before = rss_mb();
    let mut kept: Vec<Snapshot> = Vec::new();
    let mut cur = snap.with_world(snap.world.clone(), snap.data.clone());
    for i in 0..32 {
        let id = format!("b{:04}@stor.no", 2000 + i);
        let mut e = cur.world.employee(&id).unwrap().clone();
        e.active = false;
        let next = cur
            .apply(
                [vakt::world::Change::Employee(id.into(), Some(e))],
                cur.data.clone(),
            )
            .unwrap();
        kept.push(cur);
        cur = next;
    }
    println!(
        "32 worlds kept for open answers, one change apart: +{:.1} MB resident over the one world ({:.0} MB)",
        rss_mb() - before,
        before
    );
    drop(kept);
}
