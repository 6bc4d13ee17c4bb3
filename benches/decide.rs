//! Decision cost against world size: one in-process decision (check excluded;
//! look-up, derived context, evaluation and reasons included) on worlds of 1,000
//! and 1,000,000 entities, measured in interleaved rounds so machine noise hits all
//! alike. The baseline is the same decision by `cedar_policy::Authorizer` over the
//! small world as a Cedar entity store (same context, same policies), i.e. what
//! Vakt would cost with Cedar's own evaluator.
//!
//! Run: `cargo bench --bench decide` (set VAKT_BENCH_LARGE=100000 for a quick run).
//! Without `--bench` (as `cargo test --benches` runs it) it is a short smoke run.

use std::hint::black_box;
use std::time::Instant;
use vakt::decision::reference::Reference;
use vakt::decision::{decide, Query, RawRequest};
use vakt::ids::check_org_number;
use vakt::rules::snapshot::{Snapshot, Sources};
use vakt::world::*;

// The same allocator as the `vakt` binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
const SYK: &str = "urn:altinn:accesspackage:sykefravaer";
const REVISOR_ROLE: &str = "urn:altinn:external-role:ccr:revisor";
const ACCOUNTANT_ROLE: &str = "urn:altinn:external-role:ccr:regnskapsforer";

/// Valid org numbers, in order, from a starting prefix.
struct OrgNumbers(u32);
impl Iterator for OrgNumbers {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        loop {
            self.0 += 1;
            for d in 0..10 {
                let n = format!("{:08}{d}", self.0);
                if check_org_number(&n).is_ok() {
                    return Some(n);
                }
            }
        }
    }
}

/// One accounting firm per 1,000 entities: the firm, its operational unit, 4 system
/// users, 10 teams, 200 employees and 784 client organisations (a quarter of them
/// operational units), the big agent linked to every client.
type RawQuery = (String, String, String, String);

/// Returns the same mix of requests twice: spread over every tenant, and confined
/// to the first tenant (the working set of the 1,000-entity world).
fn generate(b: &mut WorldBuilder, entities: usize) -> (Vec<RawQuery>, Vec<RawQuery>) {
    let tenants = (entities / 1000).max(1);
    let mut numbers = OrgNumbers(40_000_000);
    let mut tenant_orgs: Vec<(String, String, Vec<String>)> = Vec::with_capacity(tenants);
    let (mut orgs, mut sus, mut teams, mut emps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in 0..tenants {
        let firm = numbers.next().unwrap();
        let unit = numbers.next().unwrap();
        orgs.push(OrganizationRecord {
            org_number: firm.clone(),
            name: format!("Firm {t}"),
            parent_org_number: None,
            unit_type: None,
            party_id: None,
            party_uuid: None,
        });
        orgs.push(OrganizationRecord {
            org_number: unit.clone(),
            name: format!("Firm {t} unit"),
            parent_org_number: Some(firm.clone()),
            unit_type: None,
            party_id: None,
            party_uuid: None,
        });
        let mut clients: Vec<String> = Vec::with_capacity(784);
        let mut parent = String::new();
        for i in 0..784 {
            let n = numbers.next().unwrap();
            let p = (i % 4 == 3).then(|| parent.clone());
            if p.is_none() {
                parent = n.clone();
            }
            orgs.push(OrganizationRecord {
                org_number: n.clone(),
                name: format!("Client {t}-{i}"),
                parent_org_number: p,
                unit_type: None,
                party_id: None,
                party_uuid: None,
            });
            clients.push(n);
        }
        let link = |n: &String, role: &str, pkg: &str| ClientRecord {
            client_id: None,
            client_organization_number: n.clone(),
            client_organization_name: None,
            access: vec![AccessRecord {
                role: Some(role.to_owned()),
                packages: vec![pkg.into()],
            }],
            status: None,
        };
        let su = |id: String, ty: &str, pkgs: &[&str], links: Vec<ClientRecord>| SystemUserRecord {
            id: id.clone(),
            integration_title: Some(id.clone()),
            system_id: Some("bench".into()),
            reportee_org_no: firm.clone(),
            user_type: Some(ty.into()),
            access_packages: Some(
                pkgs.iter()
                    .map(|p| PackageRef { urn: (*p).into() })
                    .collect(),
            ),
            external_ref: Some(id),
            is_deleted: false,
            self_delegated: false,
            clients: links,
        };
        let roots: Vec<&String> = clients
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 != 3)
            .map(|(_, c)| c)
            .collect();
        sus.push(su(
            format!("t{t}-regnskap"),
            "agent",
            &[REGNSKAP],
            roots
                .iter()
                .map(|c| link(c, ACCOUNTANT_ROLE, REGNSKAP))
                .collect(),
        ));
        sus.push(su(
            format!("t{t}-syk"),
            "agent",
            &[SYK],
            roots
                .iter()
                .step_by(2)
                .map(|c| link(c, "urn:altinn:role:rettighetshaver", SYK))
                .collect(),
        ));
        sus.push(su(
            format!("t{t}-revisjon"),
            "agent",
            &["urn:altinn:accesspackage:ansvarlig-revisor"],
            roots
                .iter()
                .step_by(3)
                .map(|c| {
                    link(
                        c,
                        REVISOR_ROLE,
                        "urn:altinn:accesspackage:ansvarlig-revisor",
                    )
                })
                .collect(),
        ));
        sus.push(su(
            format!("t{t}-egen"),
            "standard",
            &[SYK, REGNSKAP],
            vec![],
        ));
        for k in 0..10 {
            let scope = if k < 5 {
                ClientsRecord::Keyword("all".into())
            } else {
                ClientsRecord::List(
                    roots
                        .iter()
                        .skip(k * 50)
                        .take(100)
                        .map(|c| (*c).clone())
                        .collect(),
                )
            };
            teams.push(TeamRecord {
                id: format!("t{t}-team{k}"),
                organization: firm.clone(),
                name: String::new(),
                system_users: vec![
                    format!("t{t}-regnskap"),
                    format!("t{t}-syk"),
                    format!("t{t}-egen"),
                ],
                clients: scope,
            });
        }
        for e in 0..200 {
            emps.push(EmployeeRecord {
                id: format!("t{t}-e{e}"),
                organization: firm.clone(),
                name: String::new(),
                active: e % 50 != 0,
                kind: None,
                teams: vec![
                    format!("t{t}-team{}", e % 10),
                    format!("t{t}-team{}", (e + 3) % 10),
                ],
                // One in ten is an auditor with 20 audit engagements.
                audit_clients: if e % 10 == 0 {
                    roots
                        .iter()
                        .skip(e)
                        .take(20)
                        .map(|c| (*c).clone())
                        .collect()
                } else {
                    Vec::new()
                },
            });
        }
        tenant_orgs.push((firm, unit, clients));
    }
    b.add_records("generated", orgs, sus, teams, emps);
    // The same mix of requests in every world: allows and denies of several kinds
    // (portfolio, deactivated employee, unlinked client, standard system user,
    // cross-tenant).
    let mix = |spread: usize| -> Vec<RawQuery> {
        (0..2048usize)
            .map(|k| {
                let t = (k * 7919) % spread;
                let (firm, unit, clients) = &tenant_orgs[t];
                let e = format!("t{t}-e{}", (k * 37) % 200);
                let (s, c, p) = match k % 4 {
                    0 => (
                        format!("t{t}-regnskap"),
                        clients[(k * 97) % 784].clone(),
                        REGNSKAP,
                    ),
                    1 => (format!("t{t}-syk"), clients[(k * 53) % 784].clone(), SYK),
                    2 => (
                        format!("t{t}-egen"),
                        if k % 8 == 2 {
                            firm.clone()
                        } else {
                            unit.clone()
                        },
                        SYK,
                    ),
                    // Cross-tenant: Tall og Kontroll's system user from the example world.
                    _ => ("tk-regnskap".to_owned(), clients[k % 784].clone(), REGNSKAP),
                };
                (e, s, c, p.to_owned())
            })
            .collect()
    };
    (mix(tenants), mix(1))
}

struct World1 {
    name: String,
    snap: Snapshot,
    /// Requests spread over every tenant.
    queries: Vec<Query>,
    /// The same requests confined to one tenant.
    focused: Vec<Query>,
}

fn build(entities: usize) -> World1 {
    let started = Instant::now();
    let mut raw = (Vec::new(), Vec::new());
    let snap = Snapshot::build_with(&Sources::embedded(), |b| raw = generate(b, entities))
        .expect("generated world is valid");
    let counts = snap.world.counts();
    eprintln!(
        "built world of {} entities ({} client links) in {:.1} s; resident memory now {} MB",
        counts.entities(),
        counts.client_links,
        started.elapsed().as_secs_f64(),
        resident_mb()
    );
    let check = |raw: Vec<RawQuery>| -> Vec<Query> {
        raw.into_iter()
            .map(|(e, s, c, p)| {
                let raw = RawRequest {
                    employee_id: e,
                    system_user_id: s,
                    client_org_number: c,
                    access_package: p,
                    ..Default::default()
                };
                Query::check(&snap, raw, "").expect("bench query is well-formed")
            })
            .collect()
    };
    let (queries, focused) = (check(raw.0), check(raw.1));
    World1 {
        name: format!("{}", counts.entities()),
        snap,
        queries,
        focused,
    }
}

/// Resident set size of this process, from /proc.
fn resident_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
        / 1024
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let large: usize = std::env::var("VAKT_BENCH_LARGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 1_000_000 } else { 10_000 });
    let worlds = [build(1_000), build(large)];
    let allowed: Vec<usize> = worlds
        .iter()
        .map(|w| {
            w.queries
                .iter()
                .filter(|q| decide(&w.snap, q).allowed)
                .count()
        })
        .collect();

    // Interleaved rounds: baseline, small world, large world (requests spread over
    // all tenants), large world (requests confined to one tenant), again and again.
    let rounds: usize = std::env::var("VAKT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 40 } else { 2 });
    let per_round = 2048;
    let (small, big) = (&worlds[0], &worlds[1]);
    let reference = Reference::new(&small.snap.world);
    let series: [(&str, &Snapshot, &[Query]); 3] = [
        ("small", &small.snap, &small.queries),
        ("spread", &big.snap, &big.queries),
        ("focused", &big.snap, &big.focused),
    ];
    let mut samples: [Vec<u64>; 4] = Default::default();
    for round in 0..rounds {
        for i in 0..per_round {
            let q = &small.queries[(round * per_round + i) % small.queries.len()];
            let t0 = Instant::now();
            black_box(reference.decide(&small.snap, black_box(q)));
            samples[0].push(t0.elapsed().as_nanos() as u64);
        }
        for (w, (_, snap, queries)) in series.iter().enumerate() {
            for i in 0..per_round {
                let q = &queries[(round * per_round + i) % queries.len()];
                let t0 = Instant::now();
                black_box(decide(snap, black_box(q)));
                samples[w + 1].push(t0.elapsed().as_nanos() as u64);
            }
        }
    }
    let names = [
        format!(
            "baseline: cedar_policy::Authorizer, {} entities",
            small.name
        ),
        format!("vakt decide, {} entities", small.name),
        format!(
            "vakt decide, {} entities, spread over all tenants",
            big.name
        ),
        format!("vakt decide, {} entities, one tenant's requests", big.name),
    ];
    let mut medians = [0u64; 4];
    println!("{:<62} {:>8} {:>8} {:>8}", "", "p50 µs", "p90 µs", "p99 µs");
    for (i, s) in samples.iter_mut().enumerate() {
        s.sort_unstable();
        medians[i] = percentile(s, 0.5);
        println!(
            "{:<62} {:>8.2} {:>8.2} {:>8.2}",
            names[i],
            percentile(s, 0.5) as f64 / 1e3,
            percentile(s, 0.9) as f64 / 1e3,
            percentile(s, 0.99) as f64 / 1e3
        );
    }
    let focused_allowed = big
        .focused
        .iter()
        .filter(|q| decide(&big.snap, q).allowed)
        .count();
    println!(
        "allowed: {} of {} (small), {} (spread), {} (one tenant)",
        allowed[0],
        small.queries.len(),
        allowed[1],
        focused_allowed
    );
    println!(
        "ratio large/small, requests spread (p50): {:.2}",
        medians[2] as f64 / medians[1] as f64
    );
    println!(
        "ratio large/small, same working set (p50): {:.2}",
        medians[3] as f64 / medians[1] as f64
    );
    println!(
        "ratio small/baseline (p50): {:.2}",
        medians[1] as f64 / medians[0] as f64
    );
}
