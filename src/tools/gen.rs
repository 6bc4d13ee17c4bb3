//! Generated worlds for benchmarks and tests (`vakt gen-world`): accounting firms in
//! Vakt's data format, of any size, the same for the same seed.
//!
//! Each firm is about 1,000 entities: the firm and 2 operational units; 600
//! client organisations, a quarter of them operational units of other clients; 7
//! system users (own reporting, accounting, payroll, audit, VAT, tax, and a deleted
//! one) with 316 client links between them; 20 teams, most with a portfolio of 40
//! clients; 370 employees in one or two teams each, some deactivated, some
//! automated jobs, the auditors with audit engagements. So 1,000 firms make a world
//! of about 1,000,000 entities and 316,000 client links.

use crate::ids::check_org_number;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

/// Entities per generated firm.
pub const ENTITIES_PER_FIRM: usize = 1000;

const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
const LONN: [&str; 2] = [
    "urn:altinn:accesspackage:a-ordning",
    "urn:altinn:accesspackage:sykefravaer",
];
const REVISOR: &str = "urn:altinn:accesspackage:ansvarlig-revisor";
const MVA: &str = "urn:altinn:accesspackage:merverdiavgift";
const SKATT: &str = "urn:altinn:accesspackage:skatt-naering";
const ACCOUNTANT: &str = "urn:altinn:external-role:ccr:regnskapsforer";
const AUDITOR: &str = "urn:altinn:external-role:ccr:revisor";
const DELEGATED: &str = "urn:altinn:role:rettighetshaver";

/// A small deterministic generator (SplitMix64): the same seed gives the same world.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Valid org numbers, in order, from a starting prefix.
struct OrgNumbers(u32);

impl OrgNumbers {
    fn next(&mut self) -> String {
        loop {
            self.0 += 1;
            for d in 0..10 {
                let n = format!("{:08}{d}", self.0);
                if check_org_number(&n).is_ok() {
                    return n;
                }
            }
        }
    }
}

/// What a generated world holds.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Generated {
    pub firms: usize,
    pub organizations: usize,
    pub system_users: usize,
    pub client_links: usize,
    pub teams: usize,
    pub employees: usize,
    pub bytes: u64,
}

impl Generated {
    pub fn entities(&self) -> usize {
        self.organizations + self.system_users + self.teams + self.employees
    }
}

/// One firm's records, as the four sections of a data file.
fn firm(f: usize, numbers: &mut OrgNumbers, rng: &mut Rng, out: &mut [Vec<Value>; 4]) {
    let [orgs, sus, teams, emps] = out;
    let firm = numbers.next();
    orgs.push(
        json!({"orgNumber": firm, "name": format!("Regnskapsbyrå {f} AS"), "unitType": "AS"}),
    );
    for u in 0..2 {
        orgs.push(json!({
            "orgNumber": numbers.next(),
            "name": format!("Regnskapsbyrå {f} AS avd. {u}"),
            "parentOrgNumber": firm,
            "unitType": "BEDR",
        }));
    }
    // 600 clients: legal entities, and every fourth an operational unit of one.
    let mut roots: Vec<String> = Vec::with_capacity(450);
    let mut all: Vec<String> = Vec::with_capacity(600);
    for i in 0..600 {
        let n = numbers.next();
        if i % 4 == 3 && !roots.is_empty() {
            let parent = roots[rng.below(roots.len())].clone();
            orgs.push(json!({
                "orgNumber": n,
                "name": format!("Klient {f}-{i} avd."),
                "parentOrgNumber": parent,
                "unitType": "BEDR",
            }));
        } else {
            orgs.push(
                json!({"orgNumber": n, "name": format!("Klient {f}-{i} AS"), "unitType": "AS"}),
            );
            roots.push(n.clone());
        }
        all.push(n);
    }
    let link = |org: &str, role: &str, packages: &[&str]| {
        json!({
            "clientOrganizationNumber": org,
            "access": [{"role": role, "packages": packages}],
        })
    };
    let su = |id: &str, user_type: &str, packages: &[&str], clients: Vec<Value>, deleted: bool| {
        json!({
            "id": id,
            "integrationTitle": id,
            "systemId": format!("{firm}_regnskap"),
            "reporteeOrgNo": firm,
            "userType": user_type,
            "externalRef": id,
            "isDeleted": deleted,
            "accessPackages": packages.iter().map(|p| json!({"urn": p})).collect::<Vec<_>>(),
            "clients": clients,
        })
    };
    let pick = |rng: &mut Rng, n: usize| -> Vec<String> {
        let start = rng.below(roots.len());
        (0..n)
            .map(|k| roots[(start + k * 7) % roots.len()].clone())
            .collect()
    };
    let accounting = pick(rng, 200);
    let payroll = pick(rng, 80);
    let audited = pick(rng, 36);
    let id = |s: &str| format!("f{f}-{s}");
    sus.push(su(
        &id("egen"),
        "standard",
        &[LONN[0], LONN[1], MVA, SKATT],
        vec![],
        false,
    ));
    sus.push(su(
        &id("regnskap"),
        "agent",
        &[REGNSKAP],
        accounting
            .iter()
            .map(|c| link(c, ACCOUNTANT, &[REGNSKAP]))
            .collect(),
        false,
    ));
    sus.push(su(
        &id("lonn"),
        "agent",
        &LONN,
        payroll.iter().map(|c| link(c, DELEGATED, &LONN)).collect(),
        false,
    ));
    sus.push(su(
        &id("revisjon"),
        "agent",
        &[REVISOR],
        audited
            .iter()
            .map(|c| link(c, AUDITOR, &[REVISOR]))
            .collect(),
        false,
    ));
    sus.push(su(&id("mva"), "agent", &[MVA], vec![], false));
    sus.push(su(&id("skatt"), "agent", &[SKATT], vec![], false));
    sus.push(su(&id("gammel"), "agent", &[REGNSKAP], vec![], true));
    // Teams: 0-1 see every client; the rest have portfolios. Accounting teams use
    // the accounting and own system users, payroll teams the payroll one, audit teams
    // the audit one.
    for k in 0..20 {
        let granted: Vec<String> = match k {
            0..=11 => vec![id("regnskap"), id("egen"), id("mva"), id("skatt")],
            12..=16 => vec![id("lonn"), id("egen")],
            _ => vec![id("revisjon")],
        };
        let clients = if k < 2 {
            json!("all")
        } else {
            let start = rng.below(all.len());
            json!((0..40)
                .map(|j| all[(start + j * 3) % all.len()].clone())
                .collect::<Vec<_>>())
        };
        teams.push(json!({
            "id": id(&format!("t{k}")),
            "organization": firm,
            "name": format!("Team {k}"),
            "systemUsers": granted,
            "clients": clients,
        }));
    }
    for e in 0..370 {
        let first = rng.below(20);
        let mut team_ids = vec![id(&format!("t{first}"))];
        if e % 3 == 0 {
            team_ids.push(id(&format!("t{}", (first + 1 + rng.below(19)) % 20)));
        }
        let auditor = first >= 17;
        emps.push(json!({
            "id": format!("e{e}@f{f}.no"),
            "organization": firm,
            "name": format!("Ansatt {f}-{e}"),
            "active": e % 50 != 7,
            "kind": if e % 33 == 5 { "automation" } else { "person" },
            "teams": team_ids,
            "auditClients": if auditor { audited.iter().take(20).cloned().collect() } else { Vec::new() },
        }));
    }
}

/// Writes a world of `firms` firms into `files` JSON files in `dir` (which must
/// exist), firm by firm, so memory does not grow with the world.
pub fn write_world(
    dir: &Path,
    firms: usize,
    files: usize,
    seed: u64,
) -> std::io::Result<Generated> {
    let files = files.clamp(1, firms.max(1));
    let mut numbers = OrgNumbers(50_000_000);
    let mut rng = Rng(seed);
    let mut g = Generated {
        firms,
        ..Generated::default()
    };
    let per_file = firms.div_ceil(files);
    let mut f = 0;
    for file in 0..files {
        let path = dir.join(format!("world-{file:04}.json"));
        let mut sections: [Vec<Value>; 4] = Default::default();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        while f < firms && f < (file + 1) * per_file {
            firm(f, &mut numbers, &mut rng, &mut sections);
            f += 1;
        }
        g.organizations += sections[0].len();
        g.system_users += sections[1].len();
        g.client_links += sections[1]
            .iter()
            .map(|s| s["clients"].as_array().map_or(0, Vec::len))
            .sum::<usize>();
        g.teams += sections[2].len();
        g.employees += sections[3].len();
        let [orgs, sus, teams, emps] = sections;
        serde_json::to_writer(
            &mut out,
            &json!({"organizations": orgs, "systemUsers": sus, "teams": teams, "employees": emps}),
        )?;
        out.write_all(b"\n")?;
        out.flush()?;
        g.bytes += std::fs::metadata(&path)?.len();
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_world_is_valid_and_the_same_for_the_same_seed() {
        let dir = tempfile::tempdir().unwrap();
        let g = write_world(dir.path(), 3, 2, 7).unwrap();
        assert_eq!(g.entities(), 3 * ENTITIES_PER_FIRM);
        assert_eq!(g.client_links, 3 * 316);
        let paths = crate::rules::snapshot::SourcePaths {
            data: Some(dir.path().to_owned()),
            ..Default::default()
        };
        let snap =
            crate::rules::snapshot::Snapshot::build(&crate::rules::snapshot::Sources::read(&paths).unwrap())
                .unwrap_or_else(|p| panic!("{p}"));
        let c = snap.world.counts();
        // The schema's one action is an entity of the world too.
        assert_eq!(c.entities() - c.extra_entities, 3 * ENTITIES_PER_FIRM);
        let again = tempfile::tempdir().unwrap();
        write_world(again.path(), 3, 2, 7).unwrap();
        for name in ["world-0000.json", "world-0001.json"] {
            assert_eq!(
                std::fs::read(dir.path().join(name)).unwrap(),
                std::fs::read(again.path().join(name)).unwrap()
            );
        }
    }
}
