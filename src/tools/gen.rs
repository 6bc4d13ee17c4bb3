//! Generated worlds for benchmarks and tests (`vakt gen-world`): accounting firms in
//! Vakt's data format, written through its record types, of any size, the same for
//! the same seed.
//!
//! Each firm is about 1,000 entities: the firm and 2 operational units; 600
//! client organisations, a quarter of them operational units of other clients; 7
//! system users (own reporting, accounting, payroll, audit, VAT, tax, and a deleted
//! one) with 316 client links between them; 20 teams, most with a portfolio of 40
//! clients; 370 employees in one or two teams each, some deactivated, some
//! automated jobs, the auditors with audit engagements. So 1,000 firms make a world
//! of about 1,000,000 entities and 316,000 client links.

use crate::ids::check_org_number;
use crate::world::{
    AccessRecord, ClientRecord, ClientsRecord, DataFile, EmployeeRecord, OrganizationRecord,
    PackageRef, SystemUserRecord, TeamRecord,
};
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

/// An organisation record, with Altinn's party ids as a synced world holds them:
/// both derived from the org number, so they are unique and the same for the
/// same seed (and the random choices of the world stay as they were).
fn org(n: String, name: String, parent: Option<&str>, unit_type: &str) -> OrganizationRecord {
    // Each eight-digit prefix gives one org number (its check digit), so the
    // prefix is unique: an eight-digit party id, as Altinn's are.
    let prefix: i64 = n[..8].parse().unwrap_or_default();
    let mut mix = Rng(prefix as u64);
    let bytes = (u128::from(mix.next()) << 64 | u128::from(mix.next())).to_be_bytes();
    OrganizationRecord {
        party_id: Some(prefix.into()),
        party_uuid: Some(
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string(),
        ),
        org_number: n,
        name,
        parent_org_number: parent.map(str::to_owned),
        unit_type: Some(unit_type.to_owned()),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// One firm's records, added to a data file's sections.
fn firm(f: usize, numbers: &mut OrgNumbers, rng: &mut Rng, out: &mut DataFile) {
    let DataFile {
        organizations: orgs,
        system_users: sus,
        teams,
        employees: emps,
    } = out;
    let firm = numbers.next();
    orgs.push(org(
        firm.clone(),
        format!("Regnskapsbyrå {f} AS"),
        None,
        "AS",
    ));
    for u in 0..2 {
        orgs.push(org(
            numbers.next(),
            format!("Regnskapsbyrå {f} AS avd. {u}"),
            Some(&firm),
            "BEDR",
        ));
    }
    // 600 clients: legal entities, and every fourth an operational unit of one.
    let mut roots: Vec<String> = Vec::with_capacity(450);
    let mut all: Vec<String> = Vec::with_capacity(600);
    for i in 0..600 {
        let n = numbers.next();
        if i % 4 == 3 && !roots.is_empty() {
            let parent = roots[rng.below(roots.len())].clone();
            orgs.push(org(
                n.clone(),
                format!("Klient {f}-{i} avd."),
                Some(&parent),
                "BEDR",
            ));
        } else {
            orgs.push(org(n.clone(), format!("Klient {f}-{i} AS"), None, "AS"));
            roots.push(n.clone());
        }
        all.push(n);
    }
    let link = |org: &str, role: &str, packages: &[&str]| ClientRecord {
        client_id: None,
        client_organization_number: org.to_owned(),
        client_organization_name: None,
        access: vec![AccessRecord {
            role: Some(role.to_owned()),
            packages: strings(packages),
        }],
        status: None,
    };
    let su = |id: &str,
              user_type: &str,
              packages: &[&str],
              clients: Vec<ClientRecord>,
              deleted: bool| SystemUserRecord {
        id: id.to_owned(),
        integration_title: Some(id.to_owned()),
        system_id: Some(format!("{firm}_regnskap")),
        reportee_org_no: firm.clone(),
        user_type: Some(user_type.to_owned()),
        access_packages: Some(
            packages
                .iter()
                .map(|p| PackageRef {
                    urn: (*p).to_owned(),
                })
                .collect(),
        ),
        external_ref: Some(id.to_owned()),
        is_deleted: deleted,
        self_delegated: false,
        clients,
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
            ClientsRecord::Keyword("all".to_owned())
        } else {
            let start = rng.below(all.len());
            ClientsRecord::List(
                (0..40)
                    .map(|j| all[(start + j * 3) % all.len()].clone())
                    .collect(),
            )
        };
        teams.push(TeamRecord {
            id: id(&format!("t{k}")),
            organization: firm.clone(),
            name: format!("Team {k}"),
            system_users: granted,
            clients,
        });
    }
    for e in 0..370 {
        let first = rng.below(20);
        let mut team_ids = vec![id(&format!("t{first}"))];
        if e % 3 == 0 {
            team_ids.push(id(&format!("t{}", (first + 1 + rng.below(19)) % 20)));
        }
        let auditor = first >= 17;
        emps.push(EmployeeRecord {
            id: format!("e{e}@f{f}.no"),
            organization: firm.clone(),
            name: format!("Ansatt {f}-{e}"),
            active: e % 50 != 7,
            kind: Some(if e % 33 == 5 { "automation" } else { "person" }.to_owned()),
            teams: team_ids,
            audit_clients: if auditor {
                audited.iter().take(20).cloned().collect()
            } else {
                Vec::new()
            },
        });
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
        let mut data = DataFile::default();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        while f < firms && f < (file + 1) * per_file {
            firm(f, &mut numbers, &mut rng, &mut data);
            f += 1;
        }
        g.organizations += data.organizations.len();
        g.system_users += data.system_users.len();
        g.client_links += data
            .system_users
            .iter()
            .map(|s| s.clients.len())
            .sum::<usize>();
        g.teams += data.teams.len();
        g.employees += data.employees.len();
        serde_json::to_writer(&mut out, &data)?;
        out.write_all(b"\n")?;
        out.flush()?;
        g.bytes += std::fs::metadata(&path)?.len();
    }
    Ok(g)
}

/// Writes the world [`write_world`] writes, with the same seed, as an export
/// writes a world (`vakt db export`, [`crate::world::World::write_files`]): one
/// file per section (organizations.json, system-users.json, teams.json,
/// employees.json), records sorted by key, one a line. The world is built in
/// memory first (about 1.2 GB at 1,000 firms), so the files are exactly the ones an
/// export of it gives.
pub fn write_world_sections(dir: &Path, firms: usize, seed: u64) -> std::io::Result<Generated> {
    let mut numbers = OrgNumbers(50_000_000);
    let mut rng = Rng(seed);
    let mut data = DataFile::default();
    for f in 0..firms {
        firm(f, &mut numbers, &mut rng, &mut data);
    }
    let mut g = Generated {
        firms,
        organizations: data.organizations.len(),
        system_users: data.system_users.len(),
        client_links: data.system_users.iter().map(|s| s.clients.len()).sum(),
        teams: data.teams.len(),
        employees: data.employees.len(),
        bytes: 0,
    };
    let mut sources = crate::rules::snapshot::Sources::embedded();
    sources.data = Vec::new();
    let snap = crate::rules::snapshot::Snapshot::build_with(&sources, |b| {
        b.add_records(
            "generated",
            data.organizations,
            data.system_users,
            data.teams,
            data.employees,
        )
    })
    .map_err(|p| std::io::Error::other(p.to_string()))?;
    for path in snap.world.write_files(dir)? {
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
        let snap = crate::rules::snapshot::Snapshot::build(
            &crate::rules::snapshot::Sources::read(&paths).unwrap(),
        )
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
        // The same world as four section files, as an export writes them.
        let sections = tempfile::tempdir().unwrap();
        let s = write_world_sections(sections.path(), 3, 7).unwrap();
        assert_eq!(s.entities(), g.entities());
        assert_eq!(s.client_links, g.client_links);
        let mut names: Vec<String> = std::fs::read_dir(sections.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "employees.json",
                "organizations.json",
                "system-users.json",
                "teams.json"
            ]
        );
        let read = |dir: &Path| {
            crate::rules::snapshot::Snapshot::build(
                &crate::rules::snapshot::Sources::read(&crate::rules::snapshot::SourcePaths {
                    data: Some(dir.to_owned()),
                    ..Default::default()
                })
                .unwrap(),
            )
            .unwrap_or_else(|p| panic!("{p}"))
            .world
        };
        assert!(read(sections.path()) == snap.world);
    }
}
