//! Checking records against each other and building a [`World`] from them.
//!
//! Each step checks one kind of record and adds it: organisations, then their
//! operational units' parents, system users with their client links, teams (which
//! grant system users), employees, and entities in Cedar's own format. Every
//! problem is reported, each naming the file, the record's position and the
//! record; nothing is built unless the whole world is consistent.

use super::change::{Change, RecordKey};
use super::load::{
    self, ClientsRecord, EmployeeRecord, OrganizationRecord, Origin, Parsed, SystemUserRecord,
    TeamRecord,
};
use super::records::{
    map, ClientId, ClientLink, ClientScope, Employee, EmployeeKind, Id, LinkAccess, Map, OrgNo,
    Organization, SystemUser, Team, UserType,
};
use super::state::World;
use crate::ids::check_id;
use crate::rules::packages::AccessPackages;
use crate::problem::SourceFile;
use crate::problem::{Problem, Problems};
use cedar_policy::Schema;
use smol_str::SmolStr;
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
        b.finish(!replaced.is_empty())
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
    /// Each distinct client-link access, held once.
    interned: HashMap<LinkAccess, Arc<LinkAccess>>,
}

impl<'a> Build<'a> {
    fn new(files: &'a [String], packages: &'a AccessPackages, world: World) -> Self {
        Self {
            files,
            packages,
            problems: Vec::new(),
            world,
            interned: HashMap::new(),
        }
    }

    /// Every step, in the order records refer to each other.
    fn records(&mut self, records: &Parsed) {
        for (o, m) in &records.problems {
            self.problem(o, m);
        }
        self.organizations(&records.orgs);
        self.operational_units(&records.orgs);
        self.system_users(&records.system_users);
        self.teams(&records.teams);
        self.employees(&records.employees);
    }

    /// The derived indexes, then the world or every problem; `check_all` also
    /// checks every reference in the world (after records were taken out).
    fn finish(mut self, check_all: bool) -> Result<World, Problems> {
        self.world.reindex();
        if check_all && self.problems.is_empty() {
            for p in self.world.check_references(self.packages) {
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

    /// An org number that must be valid and name a known organisation.
    fn known_org(&mut self, o: &Origin, field: &str, n: &str) -> Option<OrgNo> {
        match OrgNo::parse(n) {
            Err(e) => {
                self.problem(o, format!("{field} {n:?} {e}"));
                None
            }
            Ok(no) if self.world.orgs.contains_key(&no) => Some(no),
            Ok(no) => {
                self.problem(o, format!("{field} {n:?} is not a known organisation"));
                Some(no)
            }
        }
    }

    /// A record id that must be well formed.
    fn id(&mut self, o: &Origin, id: &str) -> Option<Id> {
        match check_id(id) {
            Ok(()) => Some(id.into()),
            Err(e) => {
                self.problem(o, format!("id {e}"));
                None
            }
        }
    }

    fn organizations(&mut self, recs: &[(Origin, OrganizationRecord)]) {
        for (o, r) in recs {
            let n = match OrgNo::parse(&r.org_number) {
                Ok(n) => n,
                Err(e) => {
                    self.problem(o, format!("orgNumber {:?} {e}", r.org_number));
                    continue;
                }
            };
            let parent = match r.parent_org_number.as_deref().map(OrgNo::parse) {
                None => None,
                Some(Ok(p)) => Some(p),
                Some(Err(e)) => {
                    self.problem(
                        o,
                        format!(
                            "parentOrgNumber {:?} {e}",
                            r.parent_org_number.as_deref().unwrap_or("")
                        ),
                    );
                    None
                }
            };
            let org = Organization {
                org_number: n,
                name: r.name.as_str().into(),
                parent_org_number: parent,
                unit_type: r
                    .unit_type
                    .as_deref()
                    .map(|t| t.to_ascii_uppercase().into()),
            };
            if self.world.orgs.insert(n, Arc::new(org)).is_some() {
                self.problem(o, format!("orgNumber {:?} is defined twice", r.org_number));
            }
        }
    }

    /// Operational units sit one level below a known legal entity. Only the parents
    /// that confer inheritance (BEDR/AAFY units) must be sound.
    fn operational_units(&mut self, recs: &[(Origin, OrganizationRecord)]) {
        for (o, r) in recs {
            let Ok(n) = OrgNo::parse(&r.org_number) else {
                continue;
            };
            let Some(p) = self.world.orgs.get(&n).and_then(|org| org.parent()) else {
                continue;
            };
            let message = match self.world.orgs.get(&p) {
                _ if p == n => "parentOrgNumber is the organisation itself".to_owned(),
                None => format!("parentOrgNumber \"{p}\" is not a known organisation"),
                // A unit under a unit would silently extend inheritance beyond what
                // Altinn grants.
                Some(parent) if parent.parent().is_some() => format!(
                    "parentOrgNumber \"{p}\" is itself an operational unit; units are one level deep"
                ),
                Some(_) => continue,
            };
            self.problem(o, message);
        }
    }

    fn system_users(&mut self, recs: &[(Origin, SystemUserRecord)]) {
        for (o, r) in recs {
            let Some(id) = self.id(o, &r.id) else {
                continue;
            };
            let owner = self.known_org(o, "reporteeOrgNo", &r.reportee_org_no);
            // Altinn's APIs write enum values in varying case, and Register spells
            // them its own way.
            let user_type = match r
                .user_type
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("standard" | "first-party-system-user") => UserType::Standard,
                Some("agent" | "client-party-system-user") => UserType::Agent,
                Some(other) => {
                    self.problem(
                        o,
                        format!("userType {other:?} must be \"standard\" or \"agent\" (or Register's \"first-party-system-user\" or \"client-party-system-user\")"),
                    );
                    UserType::Standard
                }
                None => {
                    self.problem(
                        o,
                        "userType: missing; Altinn's system-user API returns it (\"standard\" or \"agent\") for every system user since March 2025: fetch the record again, or add it",
                    );
                    UserType::Standard
                }
            };
            if r.access_packages.is_none() && !r.is_deleted {
                self.problem(
                    o,
                    "accessPackages: missing, which would deny every request; Altinn's system-user API returns them (GET …/systemuser/agents, GET …/systemuser/{party}/{id}), and a standard system user's delegations list them (GET …/systemuser/{party}/{id}/delegations); give [] for none",
                );
            }
            let mut own: Vec<SmolStr> = Vec::new();
            for (i, p) in r.access_packages.iter().flatten().enumerate() {
                if self.packages.contains(&p.urn) {
                    own.push(p.urn.as_str().into());
                } else {
                    self.problem(
                        o,
                        format!(
                            "accessPackages[{i}].urn {:?} is not a known access package",
                            p.urn
                        ),
                    );
                }
            }
            own.sort();
            own.dedup();
            if user_type == UserType::Standard && !r.clients.is_empty() {
                self.problem(
                    o,
                    "clients: a standard system user has no client links; use userType \"agent\"",
                );
            }
            if user_type == UserType::Standard && r.self_delegated {
                self.problem(o, "selfDelegated applies only to agent system users");
            }
            let links = self.client_links(o, r);
            let su = SystemUser {
                id: id.clone(),
                integration_title: r.integration_title.as_deref().unwrap_or("").into(),
                system_id: r.system_id.as_deref().unwrap_or("").into(),
                owner: owner.unwrap_or(OrgNo::PLACEHOLDER),
                user_type,
                access_packages: own.into_boxed_slice(),
                external_ref: r.external_ref.as_deref().unwrap_or("").into(),
                is_deleted: r.is_deleted,
                self_delegated: r.self_delegated,
                links,
                granted_to: Box::default(),
            };
            if self.world.system_users.insert(id, Arc::new(su)).is_some() {
                self.problem(o, format!("id {:?} is defined twice", r.id));
            }
        }
    }

    fn client_links(&mut self, o: &Origin, r: &SystemUserRecord) -> Map<OrgNo, ClientLink> {
        let mut links = map();
        for (i, c) in r.clients.iter().enumerate() {
            let field = format!("clients[{i}].clientOrganizationNumber");
            let Some(n) = self.known_org(o, &field, &c.client_organization_number) else {
                continue;
            };
            let active = match c.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("active") => true,
                Some("removed") => false,
                Some(other) => {
                    self.problem(
                        o,
                        format!("clients[{i}].status {other:?} must be \"active\" or \"removed\""),
                    );
                    false
                }
            };
            let mut entries = Vec::with_capacity(c.access.len());
            for (j, a) in c.access.iter().enumerate() {
                if !a.role.starts_with("urn:altinn:") {
                    self.problem(
                        o,
                        format!(
                            "clients[{i}].access[{j}].role {:?} is not an Altinn role URN",
                            a.role
                        ),
                    );
                }
                for (k, p) in a.packages.iter().enumerate() {
                    if !self.packages.contains(p) {
                        self.problem(
                            o,
                            format!("clients[{i}].access[{j}].packages[{k}] {p:?} is not a known access package"),
                        );
                    }
                }
                entries.push((
                    SmolStr::from(a.role.as_str()),
                    a.packages
                        .iter()
                        .map(|p| SmolStr::from(p.as_str()))
                        .collect(),
                ));
            }
            let access = LinkAccess::new(entries);
            let access = self
                .interned
                .entry(access.clone())
                .or_insert_with(|| Arc::new(access))
                .clone();
            let link = ClientLink {
                client_id: ClientId::parse(c.client_id.as_deref()),
                access,
                active,
            };
            if links.insert(n, link).is_some() {
                self.problem(
                    o,
                    format!("{field} {:?} is linked twice", c.client_organization_number),
                );
            }
        }
        links
    }

    fn teams(&mut self, recs: &[(Origin, TeamRecord)]) {
        for (o, r) in recs {
            let Some(id) = self.id(o, &r.id) else {
                continue;
            };
            let organization = self.known_org(o, "organization", &r.organization);
            let mut system_users: Vec<Id> = Vec::new();
            for (i, s) in r.system_users.iter().enumerate() {
                if self.world.system_users.contains_key(s.as_str()) {
                    system_users.push(s.as_str().into());
                } else {
                    self.problem(
                        o,
                        format!("systemUsers[{i}] {s:?} is not a known system user"),
                    );
                }
            }
            system_users.sort();
            system_users.dedup();
            let clients = match &r.clients {
                ClientsRecord::Keyword(k) if k == "all" => ClientScope::All,
                ClientsRecord::Keyword(k) => {
                    self.problem(
                        o,
                        format!("clients {k:?} must be \"all\" or a list of org numbers"),
                    );
                    ClientScope::Listed(Box::default())
                }
                ClientsRecord::List(l) => {
                    let mut listed: Vec<OrgNo> = Vec::with_capacity(l.len());
                    for (i, n) in l.iter().enumerate() {
                        listed.extend(self.known_org(o, &format!("clients[{i}]"), n));
                    }
                    listed.sort();
                    listed.dedup();
                    ClientScope::Listed(listed.into_boxed_slice())
                }
            };
            let team = Team {
                id: id.clone(),
                organization: organization.unwrap_or(OrgNo::PLACEHOLDER),
                name: r.name.as_str().into(),
                system_users: system_users.into_boxed_slice(),
                clients,
            };
            if self.world.teams.insert(id, Arc::new(team)).is_some() {
                self.problem(o, format!("id {:?} is defined twice", r.id));
            }
        }
    }

    fn employees(&mut self, recs: &[(Origin, EmployeeRecord)]) {
        for (o, r) in recs {
            let Some(id) = self.id(o, &r.id) else {
                continue;
            };
            let organization = self.known_org(o, "organization", &r.organization);
            let kind = match r.kind.as_deref() {
                None | Some("person") => EmployeeKind::Person,
                Some("automation") => EmployeeKind::Automation,
                Some(other) => {
                    self.problem(
                        o,
                        format!("kind {other:?} must be \"person\" or \"automation\""),
                    );
                    EmployeeKind::Person
                }
            };
            for (i, team) in r.teams.iter().enumerate() {
                if !self.world.teams.contains_key(team.as_str()) {
                    self.problem(o, format!("teams[{i}] {team:?} is not a known team"));
                }
            }
            let mut audit_clients = Vec::with_capacity(r.audit_clients.len());
            for (i, n) in r.audit_clients.iter().enumerate() {
                audit_clients.extend(self.known_org(o, &format!("auditClients[{i}]"), n));
            }
            audit_clients.sort();
            audit_clients.dedup();
            let mut teams: Vec<Id> = r.teams.iter().map(|t| t.as_str().into()).collect();
            teams.sort();
            teams.dedup();
            let e = Employee {
                id: id.clone(),
                organization: organization.unwrap_or(OrgNo::PLACEHOLDER),
                name: r.name.as_str().into(),
                active: r.active,
                kind,
                teams: teams.into_boxed_slice(),
                audit_clients: audit_clients.into_boxed_slice(),
            };
            if self.world.employees.insert(id, Arc::new(e)).is_some() {
                self.problem(o, format!("id {:?} is defined twice", r.id));
            }
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
