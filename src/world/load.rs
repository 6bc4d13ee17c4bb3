//! Reading the world from a directory of JSON or YAML files, and checking it.
//!
//! Every file is an object with any of the keys `organizations`, `systemUsers`,
//! `teams` and `employees`, each a list of records (format in README "Data files").
//! A file whose top level is a list holds entities in Cedar's own JSON format.
//! Every problem found is reported, each naming the file and the record; nothing
//! is loaded unless the whole world is consistent.

use super::*;
use crate::ids::{check_id, check_org_number};
use crate::model::types;
use crate::packages::AccessPackages;
use crate::problem::{Problem, Problems};
use crate::slice;
use cedar_policy::{Entities, Schema};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// One input file, by display name (its path) and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

// ---- The file format. Field names follow Altinn's APIs. ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DataFile {
    #[serde(default)]
    organizations: Vec<serde_json::Value>,
    #[serde(default)]
    system_users: Vec<serde_json::Value>,
    #[serde(default)]
    teams: Vec<serde_json::Value>,
    #[serde(default)]
    employees: Vec<serde_json::Value>,
}

/// Altinn-shaped records tolerate fields Vakt does not use, so a vendor can feed
/// what Altinn returns as it is.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationRecord {
    pub org_number: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub parent_org_number: Option<String>,
    /// The Entity Register's organisation form, when given (BEDR, AAFY, ORGL, AS, ...).
    /// Only an operational unit (BEDR, AAFY) inherits from its parent.
    #[serde(default, alias = "organizationForm")]
    pub unit_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemUserRecord {
    pub id: String,
    #[serde(default)]
    pub integration_title: Option<String>,
    #[serde(default)]
    pub system_id: Option<String>,
    pub reportee_org_no: String,
    pub user_type: String,
    /// `[{"urn": ...}]` as Altinn returns them, or bare URNs.
    #[serde(default, deserialize_with = "package_refs")]
    pub access_packages: Vec<PackageRef>,
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(default)]
    pub self_delegated: bool,
    #[serde(default)]
    pub clients: Vec<ClientRecord>,
}

#[derive(Debug, Deserialize)]
pub struct PackageRef {
    pub urn: String,
}

/// A package as Altinn writes it in different APIs: `{"urn": ...}` or the bare URN.
#[derive(Deserialize)]
#[serde(untagged)]
enum PackageForm {
    Urn(String),
    Object { urn: String },
}

impl PackageForm {
    fn into_urn(self) -> String {
        match self {
            Self::Urn(u) | Self::Object { urn: u } => u,
        }
    }
}

fn package_refs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PackageRef>, D::Error> {
    package_urns(d).map(|v| v.into_iter().map(|urn| PackageRef { urn }).collect())
}

fn package_urns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<PackageForm>::deserialize(d).map(|v| v.into_iter().map(PackageForm::into_urn).collect())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRecord {
    #[serde(default)]
    pub client_id: Option<String>,
    pub client_organization_number: String,
    #[serde(default)]
    pub client_organization_name: Option<String>,
    #[serde(default)]
    pub access: Vec<AccessRecord>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AccessRecord {
    pub role: String,
    /// URNs, or `{"urn": ...}` objects.
    #[serde(default, deserialize_with = "package_urns")]
    pub packages: Vec<String>,
}

/// Vakt's own records are strict: a misspelt field is an error, not a silent default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamRecord {
    pub id: String,
    pub organization: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub system_users: Vec<String>,
    pub clients: ClientsRecord,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ClientsRecord {
    Keyword(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmployeeRecord {
    pub id: String,
    pub organization: String,
    #[serde(default)]
    pub name: String,
    pub active: bool,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub audit_clients: Vec<String>,
}

/// Where a record came from, for messages.
#[derive(Debug, Clone)]
struct Origin {
    file: usize,
    /// `line:column` of the record in its file, when it can be found.
    at: String,
    record: String,
}

/// Reads every `*.json`, `*.yaml` and `*.yml` file directly in `dir`, in name order.
pub fn load_dir(dir: &Path) -> Result<Vec<SourceFile>, Problems> {
    let fail =
        |message: String| Problems(vec![Problem::new(dir.display().to_string(), "", message)]);
    let entries =
        std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read directory: {e}")))?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(fail("holds no .json, .yaml or .yml data file".into()));
    }
    let mut files = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(text) => files.push(SourceFile {
                name: p.display().to_string(),
                text,
            }),
            Err(e) => errors.push(Problem::new(
                p.display().to_string(),
                "",
                format!("cannot read: {e}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(Problems(errors))
    }
}

/// Collects records from files, then checks and indexes them into a [`World`].
#[derive(Default)]
pub struct WorldBuilder {
    files: Vec<String>,
    orgs: Vec<(Origin, OrganizationRecord)>,
    system_users: Vec<(Origin, SystemUserRecord)>,
    teams: Vec<(Origin, TeamRecord)>,
    employees: Vec<(Origin, EmployeeRecord)>,
    cedar_json: Vec<(usize, serde_json::Value)>,
    errors: Vec<Problem>,
}

impl WorldBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn error(&mut self, file: usize, record: impl Into<String>, message: impl Into<String>) {
        let p = Problem::new(self.files[file].clone(), record, message);
        self.errors.push(p);
    }

    /// A problem with a record: at its position when known, naming the record.
    fn record_error(&mut self, o: &Origin, message: impl std::fmt::Display) {
        let p = if o.at.is_empty() {
            Problem::new(
                self.files[o.file].clone(),
                o.record.clone(),
                message.to_string(),
            )
        } else {
            Problem::new(
                self.files[o.file].clone(),
                o.at.clone(),
                format!("{}: {message}", o.record),
            )
        };
        self.errors.push(p);
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
        self.orgs.extend(
            organizations
                .into_iter()
                .enumerate()
                .map(|(i, r)| (origin("organizations", i), r)),
        );
        self.system_users.extend(
            system_users
                .into_iter()
                .enumerate()
                .map(|(i, r)| (origin("systemUsers", i), r)),
        );
        self.teams.extend(
            teams
                .into_iter()
                .enumerate()
                .map(|(i, r)| (origin("teams", i), r)),
        );
        self.employees.extend(
            employees
                .into_iter()
                .enumerate()
                .map(|(i, r)| (origin("employees", i), r)),
        );
    }

    /// Parses one file; problems are collected, not returned.
    pub fn add_file(&mut self, src: &SourceFile) {
        let file = self.files.len();
        self.files.push(src.name.clone());
        let is_yaml = src.name.ends_with(".yaml") || src.name.ends_with(".yml");
        let value: serde_json::Value = if is_yaml {
            match serde_yaml::from_str(&src.text) {
                Ok(v) => v,
                Err(e) => {
                    let at = e
                        .location()
                        .map(|l| format!("{}:{}", l.line(), l.column()))
                        .unwrap_or_default();
                    return self.error(file, at, format!("not valid YAML: {e}"));
                }
            }
        } else {
            match serde_json::from_str(&src.text) {
                Ok(v) => v,
                Err(e) => {
                    let at = format!("{}:{}", e.line(), e.column());
                    return self.error(file, at, format!("not valid JSON: {e}"));
                }
            }
        };
        if value.is_array() {
            self.cedar_json.push((file, value));
            return;
        }
        let data: DataFile = match serde_path_to_error::deserialize(value) {
            Ok(d) => d,
            Err(e) => {
                return self.error(
                    file,
                    "",
                    format!(
                        "expected an object with keys organizations, systemUsers, teams, employees: {} at {}",
                        e.inner(),
                        e.path()
                    ),
                )
            }
        };
        let text = src.text.as_str();
        self.parse_records(
            file,
            text,
            "organizations",
            data.organizations,
            |b, o, r| b.orgs.push((o, r)),
        );
        self.parse_records(file, text, "systemUsers", data.system_users, |b, o, r| {
            b.system_users.push((o, r))
        });
        self.parse_records(file, text, "teams", data.teams, |b, o, r| {
            b.teams.push((o, r))
        });
        self.parse_records(file, text, "employees", data.employees, |b, o, r| {
            b.employees.push((o, r))
        });
    }

    fn parse_records<R: serde::de::DeserializeOwned>(
        &mut self,
        file: usize,
        text: &str,
        key: &str,
        values: Vec<serde_json::Value>,
        mut push: impl FnMut(&mut Self, Origin, R),
    ) {
        let mut from = text.find(key).unwrap_or(0);
        for (i, v) in values.into_iter().enumerate() {
            let id = record_id(&v);
            let at = id
                .and_then(|id| find_value(text, from, id).map(|o| (o, id.len())))
                .map(|(offset, len)| {
                    from = offset + len + 1;
                    let (l, c) = crate::problem::line_col(text, offset);
                    format!("{l}:{c}")
                })
                .unwrap_or_default();
            let origin = Origin {
                file,
                at,
                record: record_label(key, i, id),
            };
            match serde_path_to_error::deserialize::<_, R>(v) {
                Ok(r) => push(self, origin, r),
                Err(e) => {
                    let path = e.path().to_string();
                    let msg = if path == "." {
                        e.inner().to_string()
                    } else {
                        format!("{path}: {}", e.inner())
                    };
                    self.record_error(&origin, msg);
                }
            }
        }
    }

    /// Checks every reference and builds the world, or reports every problem.
    pub fn build(mut self, packages: &AccessPackages, schema: &Schema) -> Result<World, Problems> {
        let t = types();
        let mut world = World::default();
        let mut errs: Vec<(Origin, String)> = Vec::new();

        // Organisations first: everything else refers to them.
        for (o, r) in &self.orgs {
            if let Err(e) = check_org_number(&r.org_number) {
                errs.push((o.clone(), format!("orgNumber {:?} {e}", r.org_number)));
                continue;
            }
            if let Some(p) = &r.parent_org_number {
                if let Err(e) = check_org_number(p) {
                    errs.push((o.clone(), format!("parentOrgNumber {p:?} {e}")));
                }
            }
            // A sub-entity (ORGL) or any other legal entity has a parent in the Entity
            // Register but inherits nothing from it: only BEDR/AAFY units do.
            let parent = match r.unit_type.as_deref().map(str::to_ascii_uppercase) {
                Some(t) if t != "BEDR" && t != "AAFY" => None,
                _ => r.parent_org_number.clone(),
            };
            let org = Organization {
                org_number: r.org_number.clone(),
                name: r.name.clone(),
                cedar: slice::organization_entity(&r.org_number, &r.name, parent.as_deref()),
                parent,
            };
            if world
                .orgs
                .insert(r.org_number.as_str().into(), org)
                .is_some()
            {
                errs.push((
                    o.clone(),
                    format!("orgNumber {:?} is defined twice", r.org_number),
                ));
            }
        }
        for (o, r) in &self.orgs {
            // Only the parents that confer inheritance (see above) must be sound.
            let Some(p) = world
                .orgs
                .get(r.org_number.as_str())
                .and_then(|org| org.parent.clone())
            else {
                continue;
            };
            let p = &p;
            match world.orgs.get(p.as_str()) {
                _ if p == &r.org_number => {
                    errs.push((o.clone(), "parentOrgNumber is the organisation itself".into()))
                }
                None => errs.push((o.clone(), format!("parentOrgNumber {p:?} is not a known organisation"))),
                // Operational units sit one level below a legal entity; a unit under a
                // unit would silently extend inheritance beyond what Altinn grants.
                Some(parent) if parent.parent.is_some() => errs.push((
                    o.clone(),
                    format!("parentOrgNumber {p:?} is itself an operational unit; units are one level deep"),
                )),
                Some(_) => {}
            }
        }
        let known_org =
            |world: &World, errs: &mut Vec<(Origin, String)>, o: &Origin, field: &str, n: &str| {
                if let Err(e) = check_org_number(n) {
                    errs.push((o.clone(), format!("{field} {n:?} {e}")));
                } else if !world.orgs.contains_key(n) {
                    errs.push((
                        o.clone(),
                        format!("{field} {n:?} is not a known organisation"),
                    ));
                }
            };

        type AccessKey = (Vec<String>, Vec<String>, Vec<String>);
        let mut interned: HashMap<AccessKey, Arc<LinkAccess>> = HashMap::new();
        for (o, r) in &self.system_users {
            if let Err(e) = check_id(&r.id) {
                errs.push((o.clone(), format!("id {e}")));
                continue;
            }
            known_org(&world, &mut errs, o, "reporteeOrgNo", &r.reportee_org_no);
            // Altinn's APIs write enum values in varying case.
            let user_type = match r.user_type.to_ascii_lowercase().as_str() {
                "standard" => UserType::Standard,
                "agent" => UserType::Agent,
                other => {
                    errs.push((
                        o.clone(),
                        format!("userType {other:?} must be \"standard\" or \"agent\""),
                    ));
                    UserType::Standard
                }
            };
            for (i, p) in r.access_packages.iter().enumerate() {
                if !packages.contains(&p.urn) {
                    errs.push((
                        o.clone(),
                        format!(
                            "accessPackages[{i}].urn {:?} is not a known access package",
                            p.urn
                        ),
                    ));
                }
            }
            if user_type == UserType::Standard && !r.clients.is_empty() {
                errs.push((
                    o.clone(),
                    "clients: a standard system user has no client links; use userType \"agent\""
                        .into(),
                ));
            }
            if user_type == UserType::Standard && r.self_delegated {
                errs.push((
                    o.clone(),
                    "selfDelegated applies only to agent system users".into(),
                ));
            }
            let mut links = HashMap::new();
            for (i, c) in r.clients.iter().enumerate() {
                let field = format!("clients[{i}].clientOrganizationNumber");
                known_org(&world, &mut errs, o, &field, &c.client_organization_number);
                let status = c.status.as_deref().map(str::to_ascii_lowercase);
                let active = match status.as_deref() {
                    None | Some("active") => true,
                    Some("removed") => false,
                    Some(other) => {
                        errs.push((
                            o.clone(),
                            format!(
                                "clients[{i}].status {other:?} must be \"active\" or \"removed\""
                            ),
                        ));
                        false
                    }
                };
                for (j, a) in c.access.iter().enumerate() {
                    if !a.role.starts_with("urn:altinn:") {
                        errs.push((
                            o.clone(),
                            format!(
                                "clients[{i}].access[{j}].role {:?} is not an Altinn role URN",
                                a.role
                            ),
                        ));
                    }
                    for (k, p) in a.packages.iter().enumerate() {
                        if !packages.contains(p) {
                            errs.push((o.clone(), format!("clients[{i}].access[{j}].packages[{k}] {p:?} is not a known access package")));
                        }
                    }
                }
                let roles: Vec<String> = c.access.iter().map(|a| a.role.clone()).collect();
                let link_packages: Vec<String> = c
                    .access
                    .iter()
                    .flat_map(|a| a.packages.iter().cloned())
                    .collect();
                // The packages delegated through the auditor role; an entry that lists
                // none carries the system user's packages, as a new link does in Altinn.
                let mut auditor_packages: Vec<String> = c
                    .access
                    .iter()
                    .filter(|a| a.role == crate::model::AUDITOR_ROLE)
                    .flat_map(|a| {
                        if a.packages.is_empty() {
                            r.access_packages.iter().map(|p| p.urn.clone()).collect()
                        } else {
                            a.packages.clone()
                        }
                    })
                    .collect();
                auditor_packages.sort();
                auditor_packages.dedup();
                let access = interned
                    .entry((roles, link_packages, auditor_packages))
                    .or_insert_with_key(|(r, p, a)| {
                        Arc::new(slice::link_access(r.clone(), p.clone(), a.clone()))
                    })
                    .clone();
                let link = ClientLink {
                    client_id: c.client_id.clone().unwrap_or_default().into(),
                    org_number: c.client_organization_number.as_str().into(),
                    access,
                    active,
                };
                if links
                    .insert(c.client_organization_number.as_str().into(), link)
                    .is_some()
                {
                    errs.push((
                        o.clone(),
                        format!("{field} {:?} is linked twice", c.client_organization_number),
                    ));
                }
            }
            let su = SystemUser {
                id: r.id.clone(),
                integration_title: r.integration_title.clone().unwrap_or_default(),
                system_id: r.system_id.clone().unwrap_or_default(),
                owner: r.reportee_org_no.clone(),
                user_type,
                access_packages: r.access_packages.iter().map(|p| p.urn.clone()).collect(),
                external_ref: r.external_ref.clone().unwrap_or_default(),
                is_deleted: r.is_deleted,
                self_delegated: r.self_delegated,
                links,
                granted_to: Vec::new(),
                // Filled in once every team is known.
                cedar: slice::placeholder(),
            };
            if world
                .system_users
                .insert(r.id.as_str().into(), su)
                .is_some()
            {
                errs.push((o.clone(), format!("id {:?} is defined twice", r.id)));
            }
        }

        for (o, r) in &self.teams {
            if let Err(e) = check_id(&r.id) {
                errs.push((o.clone(), format!("id {e}")));
                continue;
            }
            known_org(&world, &mut errs, o, "organization", &r.organization);
            let mut system_users = HashSet::new();
            for (i, s) in r.system_users.iter().enumerate() {
                match world.system_users.get_mut(s.as_str()) {
                    Some(su) => {
                        if system_users.insert(s.clone()) {
                            su.granted_to.push(r.id.clone());
                        }
                    }
                    None => errs.push((
                        o.clone(),
                        format!("systemUsers[{i}] {s:?} is not a known system user"),
                    )),
                }
            }
            let clients = match &r.clients {
                ClientsRecord::Keyword(k) if k == "all" => ClientScope::All,
                ClientsRecord::Keyword(k) => {
                    errs.push((
                        o.clone(),
                        format!("clients {k:?} must be \"all\" or a list of org numbers"),
                    ));
                    ClientScope::Listed(HashSet::new())
                }
                ClientsRecord::List(l) => {
                    for (i, n) in l.iter().enumerate() {
                        known_org(&world, &mut errs, o, &format!("clients[{i}]"), n);
                    }
                    ClientScope::Listed(l.iter().cloned().collect())
                }
            };
            let team = Team {
                id: r.id.clone(),
                organization: r.organization.clone(),
                name: r.name.clone(),
                cedar: slice::team_entity(&r.id, &r.organization, &r.name),
                system_users,
                clients,
            };
            if world.teams.insert(r.id.as_str().into(), team).is_some() {
                errs.push((o.clone(), format!("id {:?} is defined twice", r.id)));
            }
        }

        for (o, r) in &self.employees {
            if let Err(e) = check_id(&r.id) {
                errs.push((o.clone(), format!("id {e}")));
                continue;
            }
            known_org(&world, &mut errs, o, "organization", &r.organization);
            let kind = match r.kind.as_deref() {
                None | Some("person") => EmployeeKind::Person,
                Some("automation") => EmployeeKind::Automation,
                Some(other) => {
                    errs.push((
                        o.clone(),
                        format!("kind {other:?} must be \"person\" or \"automation\""),
                    ));
                    EmployeeKind::Person
                }
            };
            for (i, team) in r.teams.iter().enumerate() {
                if !world.teams.contains_key(team.as_str()) {
                    errs.push((
                        o.clone(),
                        format!("teams[{i}] {team:?} is not a known team"),
                    ));
                }
            }
            for (i, n) in r.audit_clients.iter().enumerate() {
                known_org(&world, &mut errs, o, &format!("auditClients[{i}]"), n);
            }
            let mut teams = r.teams.clone();
            teams.sort();
            teams.dedup();
            let team_uids = teams.iter().map(|id| slice::team_uid(id)).collect();
            let mut e = Employee {
                id: r.id.clone(),
                organization: r.organization.clone(),
                name: r.name.clone(),
                active: r.active,
                kind,
                teams,
                audit_clients: r.audit_clients.iter().cloned().collect(),
                cedar: slice::placeholder(),
                team_uids,
            };
            e.cedar = slice::employee_entity(&e);
            if world.employees.insert(r.id.as_str().into(), e).is_some() {
                errs.push((o.clone(), format!("id {:?} is defined twice", r.id)));
            }
        }

        for (file, value) in std::mem::take(&mut self.cedar_json) {
            match Entities::from_json_value(value, Some(schema)) {
                Err(e) => self.error(file, "", format!("Cedar entities: {e}")),
                Ok(entities) => {
                    for e in entities.iter() {
                        let u = e.uid();
                        if t.is_core(u.type_name()) {
                            self.error(
                                file,
                                "",
                                format!("Cedar entity {u}: {} records belong in the Vakt data format (organizations, systemUsers, teams, employees)", u.type_name()),
                            );
                        } else if u.type_name() != &t.action {
                            world
                                .extra_entities
                                .push(std::sync::Arc::new(AsRef::<ast::Entity>::as_ref(e).clone()));
                        }
                    }
                }
            }
        }

        // Action entities are part of the store, so `action in ...` sees the
        // schema's action groups.
        if let Ok(actions) = schema.action_entities() {
            for a in actions.iter() {
                world
                    .extra_entities
                    .push(std::sync::Arc::new(AsRef::<ast::Entity>::as_ref(a).clone()));
            }
        }
        for su in world.system_users.values_mut() {
            su.granted_to.sort();
            su.cedar = slice::system_user_entity(su);
        }
        for su in world.system_users.values() {
            world
                .system_users_by_owner
                .entry(su.owner.as_str().into())
                .or_default()
                .push(su.id.clone());
        }
        for ids in world.system_users_by_owner.values_mut() {
            ids.sort();
        }

        for (o, msg) in errs {
            self.record_error(&o, msg);
        }
        if self.errors.is_empty() {
            if let Err(e) = world.index_entities() {
                self.errors
                    .push(Problem::new("data", "", format!("Cedar entities: {e}")));
                return Err(Problems(self.errors));
            }
            Ok(world)
        } else {
            Err(Problems(self.errors))
        }
    }
}

/// The record's id (`id`, or `orgNumber` for organisations), when it is a string.
fn record_id(v: &serde_json::Value) -> Option<&str> {
    ["id", "orgNumber"]
        .iter()
        .find_map(|k| v.get(k).and_then(|x| x.as_str()))
}

/// `employees[3] ("kari")`: the key, index and, when readable, the record's id.
fn record_label(key: &str, i: usize, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{key}[{i}] ({id:?})"),
        None => format!("{key}[{i}]"),
    }
}

/// Byte offset of the first `value` at or after `from` that stands as a whole
/// scalar (quoted, or a bare YAML value): where a record with that id starts.
fn find_value(text: &str, from: usize, value: &str) -> Option<usize> {
    let mut start = from.min(text.len());
    while let Some(rel) = text.get(start..)?.find(value) {
        let at = start + rel;
        let before = text[..at].chars().next_back();
        let after = text[at + value.len()..].chars().next();
        let quoted = matches!(before, Some('"' | '\'')) && before == after;
        let bare = matches!(before, Some(' ' | ':'))
            && matches!(after, None | Some('\n' | '\r' | ',' | '}' | ' ' | '#'));
        if quoted || bare {
            return Some(if quoted { at - 1 } else { at });
        }
        start = at + value.len().max(1);
    }
    None
}

/// Parses and checks a whole data set.
pub fn build_world(
    files: &[SourceFile],
    packages: &AccessPackages,
    schema: &Schema,
) -> Result<World, Problems> {
    let mut b = WorldBuilder::new();
    for f in files {
        b.add_file(f);
    }
    b.build(packages, schema)
}
