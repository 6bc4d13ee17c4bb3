//! Checking records against each other and building a [`World`] from them.
//!
//! Each step checks one kind of record and adds it: organisations, then their
//! operational units' parents, system users with their client links, teams (which
//! grant system users), employees, and entities in Cedar's own format. Every
//! problem is reported, each naming the file, the record's position and the
//! record; nothing is built unless the whole world is consistent.

use super::change::{Change, RecordKey};
use super::checks::{references, Fields, Record};
use super::format::{EmployeeRecord, OrganizationRecord, SystemUserRecord, TeamRecord};
use super::load::{self, Origin, Parsed};
use super::records::OrgNo;
use super::state::World;
use crate::problem::SourceFile;
use crate::problem::{Problem, Problems};
use crate::rules::packages::AccessPackages;
use cedar_policy::Schema;
use std::collections::HashMap;
use std::sync::Arc;

/// Collects records from files (or from code), then checks them and builds a world.
#[derive(Default)]
pub struct WorldBuilder {
    files: Vec<String>,
    records: Parsed,
    /// Entities in Cedar's own format, with the file they came from.
    cedar_json: Vec<(usize, serde_json::Value)>,
}

impl WorldBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one file; its problems are reported by [`WorldBuilder::build`].
    pub fn add_file(&mut self, src: &SourceFile) {
        let file = self.files.len();
        self.files.push(src.name.clone());
        let p = load::parse_file(file, src);
        self.add_parsed(file, p);
    }

    /// Parses several files at once, on every core; their records keep the files'
    /// order.
    pub fn add_files(&mut self, srcs: &[SourceFile]) {
        let first = self.files.len();
        self.files.extend(srcs.iter().map(|f| f.name.clone()));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = srcs.len().div_ceil(threads).max(1);
        let parsed: Vec<Vec<Parsed>> = std::thread::scope(|scope| {
            let handles: Vec<_> = srcs
                .chunks(chunk)
                .enumerate()
                .map(|(c, files)| {
                    scope.spawn(move || {
                        files
                            .iter()
                            .enumerate()
                            .map(|(i, f)| load::parse_file(first + c * chunk + i, f))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for (i, p) in parsed.into_iter().flatten().enumerate() {
            self.add_parsed(first + i, p);
        }
    }

    fn add_parsed(&mut self, file: usize, p: Parsed) {
        self.records.orgs.extend(p.orgs);
        self.records.system_users.extend(p.system_users);
        self.records.teams.extend(p.teams);
        self.records.employees.extend(p.employees);
        self.records.problems.extend(p.problems);
        self.records.attachments.extend(p.attachments);
        self.cedar_json
            .extend(p.cedar_json.into_iter().map(|v| (file, v)));
    }

    /// Adds records built in code (benchmarks, generators) under the file name `source`.
    pub fn add_records(
        &mut self,
        source: &str,
        organizations: Vec<OrganizationRecord>,
        system_users: Vec<SystemUserRecord>,
        teams: Vec<TeamRecord>,
        employees: Vec<EmployeeRecord>,
    ) {
        let file = self.files.len();
        self.files.push(source.to_owned());
        let origin = |key: &str, i: usize| Origin {
            file,
            at: String::new(),
            record: format!("{key}[{i}]"),
        };
        let r = &mut self.records;
        r.orgs.extend(
            organizations
                .into_iter()
                .enumerate()
                .map(|(i, x)| (origin("organizations", i), x)),
        );
        r.system_users.extend(
            system_users
                .into_iter()
                .enumerate()
                .map(|(i, x)| (origin("systemUsers", i), x)),
        );
        r.teams.extend(
            teams
                .into_iter()
                .enumerate()
                .map(|(i, x)| (origin("teams", i), x)),
        );
        r.employees.extend(
            employees
                .into_iter()
                .enumerate()
                .map(|(i, x)| (origin("employees", i), x)),
        );
    }

    /// Adds records read from a database under the source name `source`, each
    /// named by its key (`employee "kari"`) rather than by a place in a file.
    pub(crate) fn add_keyed_records(
        &mut self,
        source: &str,
        organizations: Vec<OrganizationRecord>,
        system_users: Vec<SystemUserRecord>,
        teams: Vec<TeamRecord>,
        employees: Vec<EmployeeRecord>,
    ) {
        let file = self.files.len();
        self.files.push(source.to_owned());
        let origin = |record: String| Origin {
            file,
            at: String::new(),
            record,
        };
        let r = &mut self.records;
        r.orgs.extend(
            organizations
                .into_iter()
                .map(|x| (origin(organization_label(&x.org_number)), x)),
        );
        r.system_users.extend(
            system_users
                .into_iter()
                .map(|x| (origin(format!("system user {:?}", x.id)), x)),
        );
        r.teams.extend(
            teams
                .into_iter()
                .map(|x| (origin(format!("team {:?}", x.id)), x)),
        );
        r.employees.extend(
            employees
                .into_iter()
                .map(|x| (origin(format!("employee {:?}", x.id)), x)),
        );
    }

    /// The keys of the records each file holds, by file name. Files whose changes
    /// are read by rebuilding the world are marked: those with entities in Cedar's
    /// own format (their records have no key), and those that add to system users
    /// of other files (Altinn's per-system-user responses).
    pub fn keys(&self) -> Vec<(String, Vec<RecordKey>, bool)> {
        let mut out: Vec<(String, Vec<RecordKey>, bool)> = self
            .files
            .iter()
            .map(|f| (f.clone(), Vec::new(), false))
            .collect();
        let r = &self.records;
        for (o, x) in &r.orgs {
            if let Ok(n) = OrgNo::parse(&x.org_number) {
                out[o.file].1.push(RecordKey::Organization(n));
            }
        }
        for (o, x) in &r.system_users {
            out[o.file]
                .1
                .push(RecordKey::SystemUser(x.id.as_str().into()));
        }
        for (o, x) in &r.teams {
            out[o.file].1.push(RecordKey::Team(x.id.as_str().into()));
        }
        for (o, x) in &r.employees {
            out[o.file]
                .1
                .push(RecordKey::Employee(x.id.as_str().into()));
        }
        for (file, _) in &self.cedar_json {
            out[*file].2 = true;
        }
        // A file that adds to system users defined elsewhere ties the files
        // together: a change to either is read whole.
        for (o, _) in &r.attachments {
            out[o.file].2 = true;
        }
        out
    }

    /// Checks every record and reference and builds the world, or reports every
    /// problem.
    pub fn build(self, packages: &AccessPackages, schema: &Schema) -> Result<World, Problems> {
        let Self {
            files,
            records,
            cedar_json,
        } = self;
        let mut records = records;
        let attached = attach(&mut records);
        let mut b = Build::new(&files, packages, World::default());
        b.cedar_entities(cedar_json, schema);
        for (o, m) in attached {
            b.problem(&o, m);
        }
        b.records(&records);
        b.finish(false)
    }

    /// Builds onto `base`: the records under `replaced` (the old contents of the
    /// files read again) are taken out, and this builder's records are checked and
    /// put in, as in [`WorldBuilder::build`]; then every reference in the whole world
    /// is checked, since something taken out may still be referred to. Entities in
    /// Cedar's own format are kept from `base`.
    pub fn build_onto(
        self,
        base: &World,
        replaced: &[RecordKey],
        packages: &AccessPackages,
    ) -> Result<World, Problems> {
        let mut world = base.clone();
        for k in replaced {
            world.put(match k {
                RecordKey::Organization(n) => Change::Organization(*n, None),
                RecordKey::SystemUser(id) => Change::SystemUser(id.clone(), None),
                RecordKey::Link(su, n) => Change::Link(su.clone(), *n, None),
                RecordKey::Team(id) => Change::Team(id.clone(), None),
                RecordKey::Employee(id) => Change::Employee(id.clone(), None),
            });
        }
        let mut records = self.records;
        let attached = attach(&mut records);
        let mut b = Build::new(&self.files, packages, world);
        for (o, m) in attached {
            b.problem(&o, m);
        }
        b.records(&records);
        // The records read again were checked above; the rest of the world can
        // only be broken by a record that is gone (something may still name it)
        // or an organisation whose parent changed (its units may now sit two
        // levels deep). Only then is every record checked again.
        let now = &b.world;
        let unsettled = replaced.iter().any(|k| match k {
            RecordKey::Organization(n) => match (base.organization(*n), now.organization(*n)) {
                (_, None) => true,
                (Some(old), Some(new)) => old.parent() != new.parent(),
                (None, Some(_)) => false,
            },
            RecordKey::SystemUser(id) => now.system_user(id).is_none(),
            RecordKey::Link(su, n) => now.system_user(su).is_none_or(|s| !s.links.contains_key(n)),
            RecordKey::Team(id) => now.team(id).is_none(),
            // Nothing names an employee.
            RecordKey::Employee(_) => false,
        });
        b.finish(unsettled)
    }
}

/// An organisation named as its key is (`organization 310015156`), or by the text
/// given when that is not an org number.
pub(crate) fn organization_label(n: &str) -> String {
    match OrgNo::parse(n) {
        Ok(n) => RecordKey::Organization(n).to_string(),
        Err(_) => format!("organization {n:?}"),
    }
}

/// Puts what files add to system users (their clients, packages, self-delegation)
/// into the system users' records; each addition for an unknown system user is a
/// problem.
fn attach(records: &mut Parsed) -> Vec<(Origin, String)> {
    let mut problems = Vec::new();
    let at: HashMap<String, usize> = records
        .system_users
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (r.id.clone(), i))
        .collect();
    for (o, a) in std::mem::take(&mut records.attachments) {
        let Some(&i) = at.get(&a.system_user) else {
            problems.push((
                o,
                format!(
                    "systemUserId {:?} is not a known system user (it must be defined in a data file of this directory)",
                    a.system_user
                ),
            ));
            continue;
        };
        let su = &mut records.system_users[i].1;
        if let Some(c) = a.clients {
            su.clients.extend(c);
        }
        if let Some(p) = a.packages {
            su.access_packages.get_or_insert_with(Vec::new).extend(p);
        }
        if let Some(s) = a.self_delegated {
            su.self_delegated = s;
        }
    }
    problems
}

struct Build<'a> {
    files: &'a [String],
    packages: &'a AccessPackages,
    problems: Vec<Problem>,
    world: World,
}

impl<'a> Build<'a> {
    fn new(files: &'a [String], packages: &'a AccessPackages, world: World) -> Self {
        Self {
            files,
            packages,
            problems: Vec::new(),
            world,
        }
    }

    /// Every record through the field checks into the world, in the order records
    /// refer to each other; then, with every record in, each record's references.
    fn records(&mut self, records: &Parsed) {
        for (o, m) in &records.problems {
            self.problem(o, m);
        }
        let mut fields = Fields::new(self.packages);
        let mut bad = Vec::new();
        for (o, r) in &records.orgs {
            if let Some(org) = fields.organization(r, &mut bad) {
                let (n, org) = (org.org_number, Arc::new(org));
                let old = self.world.orgs.insert(n, org.clone());
                self.world.index_party(n, old.as_deref(), Some(&org));
                if old.is_some() {
                    bad.push(format!("orgNumber {:?} is defined twice", r.org_number));
                }
            }
            self.problems_of(o, &mut bad);
        }
        for (o, r) in &records.system_users {
            if let Some(su) = fields.system_user(r, &mut bad) {
                if self
                    .world
                    .system_users
                    .insert(su.id.clone(), Arc::new(su))
                    .is_some()
                {
                    bad.push(format!("id {:?} is defined twice", r.id));
                }
            }
            self.problems_of(o, &mut bad);
        }
        for (o, r) in &records.teams {
            if let Some(t) = fields.team(r, &mut bad) {
                if self.world.teams.insert(t.id.clone(), Arc::new(t)).is_some() {
                    bad.push(format!("id {:?} is defined twice", r.id));
                }
            }
            self.problems_of(o, &mut bad);
        }
        for (o, r) in &records.employees {
            if let Some(e) = fields.employee(r, &mut bad) {
                if self
                    .world
                    .employees
                    .insert(e.id.clone(), Arc::new(e))
                    .is_some()
                {
                    bad.push(format!("id {:?} is defined twice", r.id));
                }
            }
            self.problems_of(o, &mut bad);
        }
        let each = records
            .orgs
            .iter()
            .map(|(o, r)| (o, Record::Organization(r)))
            .chain(
                records
                    .system_users
                    .iter()
                    .map(|(o, r)| (o, Record::SystemUser(r))),
            )
            .chain(records.teams.iter().map(|(o, r)| (o, Record::Team(r))))
            .chain(
                records
                    .employees
                    .iter()
                    .map(|(o, r)| (o, Record::Employee(r))),
            );
        for (o, r) in each {
            references(&self.world, r, &mut bad);
            self.problems_of(o, &mut bad);
        }
    }

    /// The derived indexes, then the world or every problem; `check_all` also
    /// checks every reference in the world (after records were taken out).
    fn finish(mut self, check_all: bool) -> Result<World, Problems> {
        self.world.reindex();
        if check_all && self.problems.is_empty() {
            for p in self.world.check_references() {
                self.problems
                    .push(Problem::new("data", "", format!("{p} (after this change)")));
            }
        }
        if self.problems.is_empty() {
            Ok(self.world)
        } else {
            Err(Problems(self.problems))
        }
    }

    /// A problem with a record: at its position when known, naming the record.
    fn problem(&mut self, o: &Origin, message: impl std::fmt::Display) {
        let file = self.files[o.file].clone();
        let p = match (o.at.is_empty(), o.record.is_empty()) {
            (true, _) => Problem::new(file, o.record.clone(), message.to_string()),
            (false, true) => Problem::new(file, o.at.clone(), message.to_string()),
            (false, false) => Problem::new(file, o.at.clone(), format!("{}: {message}", o.record)),
        };
        self.problems.push(p);
    }

    /// The problems the checks found with the record from `o`, taken out of `bad`.
    fn problems_of(&mut self, o: &Origin, bad: &mut Vec<String>) {
        for m in bad.drain(..) {
            self.problem(o, m);
        }
    }

    /// Entities in Cedar's own JSON format (see `entity::cedar_entities`).
    fn cedar_entities(&mut self, json: Vec<(usize, serde_json::Value)>, schema: &Schema) {
        let (extra, problems) = super::entity::cedar_entities(json, schema);
        for (file, message) in problems {
            let o = Origin {
                file,
                at: String::new(),
                record: String::new(),
            };
            self.problem(&o, message);
        }
        self.world.extra = Arc::new(extra);
    }
}

impl WorldBuilder {
    /// [`WorldBuilder::build_onto`] in proportion to the change: the records of
    /// the files read again are applied to `base` as a difference against what
    /// those files held (`replaced`), without rebuilding the derived indexes or
    /// checking the rest of the world again (see `change::apply_records`). Files
    /// that add to system users of other files are applied by `build_onto`.
    pub fn apply_onto(
        self,
        base: &World,
        replaced: &[RecordKey],
        packages: &AccessPackages,
    ) -> Result<World, Problems> {
        if !self.records.attachments.is_empty() {
            return self.build_onto(base, replaced, packages);
        }
        super::change::apply_records(base, replaced, &self.files, &self.records, packages)
    }
}
