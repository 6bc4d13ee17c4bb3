//! Reading the world's tables, whole or by key, into changes to a world. Every
//! value is checked as the file loader checks it (the database's constraints
//! should already have refused anything bad; Vakt does not rely on that).

use super::DbError;
use crate::ids::check_id;
use crate::world::{
    Change, ClientId, ClientLink, ClientScope, Employee, EmployeeKind, Id, LinkAccess, OrgNo,
    Organization, RecordKey, SystemUser, Team, UserType, World,
};
use smol_str::SmolStr;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

const ORGS: &str = "SELECT org_number, name, parent_org_number, unit_type FROM vakt.organization o";
const SYSTEM_USERS: &str = "SELECT s.id, s.integration_title, s.system_id, s.owner_org_number,
       s.user_type, s.external_ref, s.is_deleted, s.self_delegated,
       ARRAY(SELECT p.package FROM vakt.system_user_package p
              WHERE p.system_user_id = s.id ORDER BY p.package)
  FROM vakt.system_user s";
/// One row per relationship of each link (one with NULL role for a link with none).
const LINKS: &str = "SELECT l.system_user_id, l.client_org_number, l.client_id, l.status,
       r.role,
       ARRAY(SELECT p.package FROM vakt.client_link_role_package p
              WHERE p.system_user_id = r.system_user_id
                AND p.client_org_number = r.client_org_number
                AND p.position = r.position ORDER BY p.package)
  FROM vakt.client_link l
  LEFT JOIN vakt.client_link_role r
    ON r.system_user_id = l.system_user_id AND r.client_org_number = l.client_org_number";
const LINKS_ORDER: &str = " ORDER BY l.system_user_id, l.client_org_number, r.position";
const TEAMS: &str = "SELECT t.id, t.organization, t.name, t.all_clients,
       ARRAY(SELECT x.system_user_id FROM vakt.team_system_user x
              WHERE x.team_id = t.id ORDER BY 1),
       ARRAY(SELECT c.client_org_number FROM vakt.team_client c
              WHERE c.team_id = t.id ORDER BY 1)
  FROM vakt.team t";
const EMPLOYEES: &str = "SELECT e.id, e.organization, e.name, e.active, e.kind,
       ARRAY(SELECT x.team_id FROM vakt.employee_team x WHERE x.employee_id = e.id ORDER BY 1),
       ARRAY(SELECT a.client_org_number FROM vakt.employee_audit_client a
              WHERE a.employee_id = e.id ORDER BY 1)
  FROM vakt.employee e";
/// The whole-table forms of [`LINKS`], [`TEAMS`] and [`EMPLOYEES`], with the same
/// columns: one aggregation per child table joined by hash, where the per-row
/// subqueries would probe an index once per row (2.5 times slower at a million
/// entities).
const LINKS_ALL: &str = "SELECT l.system_user_id, l.client_org_number, l.client_id, l.status,
       r.role, coalesce(p.packages, '{}')
  FROM vakt.client_link l
  LEFT JOIN vakt.client_link_role r
    ON r.system_user_id = l.system_user_id AND r.client_org_number = l.client_org_number
  LEFT JOIN (SELECT system_user_id, client_org_number, position,
                    array_agg(package ORDER BY package) AS packages
               FROM vakt.client_link_role_package GROUP BY 1, 2, 3) p
    ON p.system_user_id = r.system_user_id AND p.client_org_number = r.client_org_number
   AND p.position = r.position
 ORDER BY l.system_user_id, l.client_org_number, r.position";
const TEAMS_ALL: &str = "SELECT t.id, t.organization, t.name, t.all_clients,
       coalesce(s.system_users, '{}'), coalesce(c.clients, '{}')
  FROM vakt.team t
  LEFT JOIN (SELECT team_id, array_agg(system_user_id ORDER BY system_user_id) AS system_users
               FROM vakt.team_system_user GROUP BY 1) s ON s.team_id = t.id
  LEFT JOIN (SELECT team_id, array_agg(client_org_number ORDER BY client_org_number) AS clients
               FROM vakt.team_client GROUP BY 1) c ON c.team_id = t.id";
const EMPLOYEES_ALL: &str = "SELECT e.id, e.organization, e.name, e.active, e.kind,
       coalesce(t.teams, '{}'), coalesce(a.clients, '{}')
  FROM vakt.employee e
  LEFT JOIN (SELECT employee_id, array_agg(team_id ORDER BY team_id) AS teams
               FROM vakt.employee_team GROUP BY 1) t ON t.employee_id = e.id
  LEFT JOIN (SELECT employee_id, array_agg(client_org_number ORDER BY client_org_number) AS clients
               FROM vakt.employee_audit_client GROUP BY 1) a ON a.employee_id = e.id";
const CEDAR: &str = "SELECT entity::text FROM vakt.cedar_entity ORDER BY entity_type, entity_id";

/// The keys a change set touched, by kind, as the change feed names them.
#[derive(Debug, Default, Clone)]
pub(super) struct Changed {
    pub orgs: BTreeSet<String>,
    pub system_users: BTreeSet<String>,
    pub links: BTreeSet<(String, String)>,
    pub teams: BTreeSet<String>,
    pub employees: BTreeSet<String>,
    pub cedar: bool,
    /// A whole kind changed (a TRUNCATE or a bulk load): read everything again.
    pub whole: bool,
    /// The newest transaction among the changes, for messages.
    pub newest_xid: Option<String>,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        self.orgs.is_empty()
            && self.system_users.is_empty()
            && self.links.is_empty()
            && self.teams.is_empty()
            && self.employees.is_empty()
            && !self.cedar
            && !self.whole
    }

    /// Notes one change row.
    pub fn add(&mut self, kind: &str, key: Option<String>, sub: Option<String>) {
        let Some(key) = key else {
            self.whole = true;
            return;
        };
        match kind {
            "organization" => {
                self.orgs.insert(key);
            }
            "system_user" => {
                self.system_users.insert(key);
            }
            "client_link" => {
                self.links.insert((key, sub.unwrap_or_default()));
            }
            "team" => {
                self.teams.insert(key);
            }
            "employee" => {
                self.employees.insert(key);
            }
            "cedar_entity" => self.cedar = true,
            // A kind a newer schema added: read everything, so nothing is missed.
            _ => self.whole = true,
        }
    }

    /// How many records changed, for the log.
    pub fn len(&self) -> usize {
        self.orgs.len()
            + self.system_users.len()
            + self.links.len()
            + self.teams.len()
            + self.employees.len()
            + usize::from(self.cedar)
    }
}

/// Turns rows into records, checking every value, and keeps every problem.
#[derive(Default)]
struct Convert {
    /// Each naming the record: "employee \"kari\": ...".
    problems: Vec<String>,
    /// Each distinct client-link access, held once.
    interned: HashMap<LinkAccess, Arc<LinkAccess>>,
}

impl Convert {
    fn bad(&mut self, key: impl std::fmt::Display, message: String) {
        self.problems.push(format!("{key}: {message}"));
    }

    fn org_no(&mut self, key: &RecordKey, field: &str, s: &str) -> OrgNo {
        OrgNo::parse(s).unwrap_or_else(|e| {
            self.bad(key.clone(), format!("{field} {s:?} {e}"));
            OrgNo::PLACEHOLDER
        })
    }

    fn id(&mut self, kind: fn(Id) -> RecordKey, s: &str) -> Id {
        let id = Id::from(s);
        if let Err(e) = check_id(s) {
            self.bad(kind(id.clone()), format!("id {e}"));
        }
        id
    }

    fn organization(&mut self, r: &Row) -> (OrgNo, Organization) {
        let number: &str = r.get(0);
        let n = OrgNo::parse(number).unwrap_or_else(|e| {
            self.bad(
                format!("organization {number:?}"),
                format!("org_number {number:?} {e}"),
            );
            OrgNo::PLACEHOLDER
        });
        let key = RecordKey::Organization(n);
        let parent = r
            .get::<_, Option<&str>>(2)
            .map(|p| self.org_no(&key, "parent_org_number", p));
        let org = Organization {
            org_number: n,
            name: r.get::<_, &str>(1).into(),
            parent_org_number: parent,
            unit_type: r
                .get::<_, Option<&str>>(3)
                .map(|t| t.to_ascii_uppercase().into()),
        };
        (n, org)
    }

    fn system_user(&mut self, r: &Row) -> SystemUser {
        let id = self.id(RecordKey::SystemUser, r.get(0));
        let key = RecordKey::SystemUser(id.clone());
        let owner = self.org_no(&key, "owner_org_number", r.get(3));
        let user_type = match r.get::<_, &str>(4) {
            "standard" => UserType::Standard,
            "agent" => UserType::Agent,
            other => {
                self.bad(
                    key,
                    format!("user_type {other:?} must be \"standard\" or \"agent\""),
                );
                UserType::Standard
            }
        };
        let mut packages: Vec<SmolStr> = r
            .get::<_, Vec<&str>>(8)
            .into_iter()
            .map(SmolStr::from)
            .collect();
        packages.sort();
        packages.dedup();
        SystemUser {
            id,
            integration_title: r.get::<_, &str>(1).into(),
            system_id: r.get::<_, &str>(2).into(),
            owner,
            user_type,
            access_packages: packages.into_boxed_slice(),
            external_ref: r.get::<_, &str>(5).into(),
            is_deleted: r.get(6),
            self_delegated: r.get(7),
            links: crate::world::records::map(),
            granted_to: Box::default(),
        }
    }

    /// Client links from rows of [`LINKS`] (ordered by link, then position).
    fn links<'r>(&mut self, rows: &'r [Row]) -> Vec<(&'r str, OrgNo, ClientLink)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let su: &str = rows[i].get(0);
            let client: &str = rows[i].get(1);
            let mut entries: Vec<(SmolStr, Vec<SmolStr>)> = Vec::new();
            let first = i;
            while i < rows.len()
                && rows[i].get::<_, &str>(0) == su
                && rows[i].get::<_, &str>(1) == client
            {
                if let Some(role) = rows[i].get::<_, Option<&str>>(4) {
                    let packages: Vec<&str> = rows[i].get(5);
                    entries.push((
                        role.into(),
                        packages.into_iter().map(SmolStr::from).collect(),
                    ));
                }
                i += 1;
            }
            let r = &rows[first];
            let n = OrgNo::parse(client).unwrap_or(OrgNo::PLACEHOLDER);
            let key = RecordKey::Link(su.into(), n);
            if n == OrgNo::PLACEHOLDER {
                self.bad(
                    key.clone(),
                    format!("client_org_number {client:?} is not a valid org number"),
                );
            }
            let active = match r.get::<_, &str>(3) {
                "active" => true,
                "removed" => false,
                other => {
                    self.bad(
                        key.clone(),
                        format!("status {other:?} must be \"active\" or \"removed\""),
                    );
                    false
                }
            };
            for (role, _) in &entries {
                if !role.starts_with("urn:altinn:") {
                    self.bad(
                        key.clone(),
                        format!("role {role:?} is not an Altinn role URN"),
                    );
                }
            }
            let access = LinkAccess::new(entries);
            let access = self
                .interned
                .entry(access.clone())
                .or_insert_with(|| Arc::new(access))
                .clone();
            out.push((
                su,
                n,
                ClientLink {
                    client_id: ClientId::parse(r.get::<_, Option<&str>>(2)),
                    access,
                    active,
                },
            ));
        }
        out
    }

    fn team(&mut self, r: &Row) -> Team {
        let id = self.id(RecordKey::Team, r.get(0));
        let key = RecordKey::Team(id.clone());
        let organization = self.org_no(&key, "organization", r.get(1));
        let system_users: Vec<Id> = r.get::<_, Vec<&str>>(4).into_iter().map(Id::from).collect();
        let listed: Vec<OrgNo> = r
            .get::<_, Vec<&str>>(5)
            .into_iter()
            .map(|n| self.org_no(&key, "team_client", n))
            .collect();
        let all: bool = r.get(3);
        if all && !listed.is_empty() {
            self.bad(
                key,
                "all_clients is true and clients are listed in team_client as well; the team's scope is one or the other".into(),
            );
        }
        let mut listed = listed;
        listed.sort();
        listed.dedup();
        Team {
            id,
            organization,
            name: r.get::<_, &str>(2).into(),
            system_users: system_users.into_boxed_slice(),
            clients: if all {
                ClientScope::All
            } else {
                ClientScope::Listed(listed.into_boxed_slice())
            },
        }
    }

    fn employee(&mut self, r: &Row) -> Employee {
        let id = self.id(RecordKey::Employee, r.get(0));
        let key = RecordKey::Employee(id.clone());
        let organization = self.org_no(&key, "organization", r.get(1));
        let kind = match r.get::<_, &str>(4) {
            "person" => EmployeeKind::Person,
            "automation" => EmployeeKind::Automation,
            other => {
                self.bad(
                    key.clone(),
                    format!("kind {other:?} must be \"person\" or \"automation\""),
                );
                EmployeeKind::Person
            }
        };
        let teams: Vec<Id> = r.get::<_, Vec<&str>>(5).into_iter().map(Id::from).collect();
        let mut audit: Vec<OrgNo> = r
            .get::<_, Vec<&str>>(6)
            .into_iter()
            .map(|n| self.org_no(&key, "employee_audit_client", n))
            .collect();
        audit.sort();
        audit.dedup();
        Employee {
            id,
            organization,
            name: r.get::<_, &str>(2).into(),
            active: r.get(3),
            kind,
            teams: teams.into_boxed_slice(),
            audit_clients: audit.into_boxed_slice(),
        }
    }
}

/// What a change set does to the world.
pub(super) struct Delta {
    pub changes: Vec<Change>,
    /// Every entity in Cedar's own format, when those changed.
    pub cedar: Option<serde_json::Value>,
}

impl Delta {
    /// Applies the delta to `world`: every problem the changes would cause
    /// otherwise.
    pub fn apply(
        self,
        world: &World,
        rules: &crate::rules::snapshot::Rules,
    ) -> Result<World, Vec<String>> {
        let w = world
            .apply(self.changes, &rules.packages)
            .map_err(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        match self.cedar {
            None => Ok(w),
            Some(v) => w
                .with_cedar_entities(vec![(CEDAR_SOURCE, v)], &rules.schema)
                .map_err(|p| p.into_iter().map(|(f, m)| format!("{f}: {m}")).collect()),
        }
    }
}

/// Every row of every table, read in one transaction.
pub(super) struct AllRows {
    orgs: Vec<Row>,
    system_users: Vec<Row>,
    links: Vec<Row>,
    teams: Vec<Row>,
    employees: Vec<Row>,
    cedar: Vec<String>,
}

/// Settings for whole-table reads: compiling these scans and hash joins with JIT
/// costs more than it saves, and the hashes of a million rows fit in memory only
/// with more than the default 4 MB (the settings end with the transaction).
const WHOLE_READ: &str = "SET LOCAL jit = off; SET LOCAL work_mem = '64MB'";

/// Reads every table from one snapshot: the small ones within `tx`, the two
/// largest (links and employees) on connections of their own that import `tx`'s
/// exported snapshot, so the database reads them in parallel while this process
/// receives the rest.
pub(super) async fn all_rows(
    db: &super::Database,
    tx: &Transaction<'_>,
) -> Result<AllRows, DbError> {
    tx.batch_execute(WHOLE_READ).await?;
    let exported: String = tx
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0);
    let side = |sql: &'static str| side_read(db, &exported, sql);
    let (orgs, system_users, teams, cedar, links, employees) = tokio::try_join!(
        async { Ok(tx.query(ORGS, &[]).await?) },
        async { Ok(tx.query(SYSTEM_USERS, &[]).await?) },
        async { Ok(tx.query(TEAMS_ALL, &[]).await?) },
        cedar_rows(tx),
        side(LINKS_ALL),
        side(EMPLOYEES_ALL),
    )?;
    Ok(AllRows {
        orgs,
        system_users,
        links,
        teams,
        employees,
        cedar,
    })
}

/// One query on a connection of its own, in a read-only transaction that sees
/// exactly the snapshot `exported` names.
async fn side_read(
    db: &super::Database,
    exported: &str,
    sql: &'static str,
) -> Result<Vec<Row>, DbError> {
    // The id comes from the server; it is checked before it goes into a statement
    // (SET TRANSACTION SNAPSHOT takes no parameters).
    if exported.is_empty() || !exported.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(DbError::Data(vec![format!(
            "unexpected exported snapshot id {exported:?}"
        )]));
    }
    let mut client = super::connect_plain(db).await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    tx.batch_execute(&format!(
        "SET TRANSACTION SNAPSHOT '{exported}'; {WHOLE_READ}"
    ))
    .await?;
    let rows = tx.query(sql, &[]).await?;
    tx.commit().await?;
    Ok(rows)
}

async fn cedar_rows(tx: &Transaction<'_>) -> Result<Vec<String>, DbError> {
    Ok(tx
        .query(CEDAR, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Where entities in Cedar's own format came from, for messages.
const CEDAR_SOURCE: &str = "vakt.cedar_entity";

/// The entities in Cedar's own format as one list for the checker.
fn cedar_list(rows: Vec<String>) -> Result<serde_json::Value, String> {
    rows.iter()
        .map(|t| serde_json::from_str(t))
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .map(serde_json::Value::Array)
        .map_err(|e| format!("{CEDAR_SOURCE}: {e}"))
}

/// A whole world from every row, checked as a world from files is; every problem
/// otherwise. CPU-bound: run it off the runtime's threads at scale.
pub(super) fn world(rows: AllRows, rules: &crate::rules::snapshot::Rules) -> Result<World, Vec<String>> {
    let mut c = Convert::default();
    let mut changes: Vec<Change> = Vec::with_capacity(
        rows.orgs.len() + rows.system_users.len() + rows.teams.len() + rows.employees.len(),
    );
    for r in &rows.orgs {
        let (n, o) = c.organization(r);
        changes.push(Change::Organization(n, Some(o)));
    }
    let mut own: HashMap<Id, Box<[SmolStr]>> = HashMap::with_capacity(rows.system_users.len());
    for r in &rows.system_users {
        let su = c.system_user(r);
        own.insert(su.id.clone(), su.access_packages.clone());
        changes.push(Change::SystemUser(su.id.clone(), Some(su)));
    }
    for (su, n, link) in c.links(&rows.links) {
        changes.push(Change::Link(su.into(), n, Some(link)));
    }
    for r in &rows.teams {
        let t = c.team(r);
        changes.push(Change::Team(t.id.clone(), Some(t)));
    }
    for r in &rows.employees {
        let e = c.employee(r);
        changes.push(Change::Employee(e.id.clone(), Some(e)));
    }
    drop(rows.orgs);
    let mut problems = std::mem::take(&mut c.problems);
    let world = match World::from_changes(changes, &rules.packages) {
        Ok(w) => Some(w),
        Err(p) => {
            problems.extend(p.iter().map(ToString::to_string));
            None
        }
    };
    let cedar = match cedar_list(rows.cedar) {
        Ok(v) => v,
        Err(p) => {
            problems.push(p);
            serde_json::Value::Array(Vec::new())
        }
    };
    match world {
        Some(w) if problems.is_empty() => w
            .with_cedar_entities(vec![(CEDAR_SOURCE, cedar)], &rules.schema)
            .map_err(|p| p.into_iter().map(|(f, m)| format!("{f}: {m}")).collect()),
        _ => Err(problems),
    }
}

/// The changes that bring `world` to the database's state for the keys in
/// `changed` (read within `tx`), with the entities in Cedar's own format when
/// those changed; every problem with the records read otherwise (those that
/// changes would cause in the world are found by applying them). A changed system
/// user is read with all its client links; other links one by one.
pub(super) async fn changes(
    tx: &Transaction<'_>,
    changed: &Changed,
    world: &World,
    rules: &crate::rules::snapshot::Rules,
) -> Result<Result<Delta, Vec<String>>, DbError> {
    let mut c = Convert::default();
    let mut out = Vec::new();
    let keys = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<String>>();
    let query = |sql: &str, filter: &str| format!("{sql} WHERE {filter} = ANY($1)");

    if !changed.orgs.is_empty() {
        let wanted = keys(&changed.orgs);
        let rows = tx.query(&query(ORGS, "o.org_number"), &[&wanted]).await?;
        let mut found = BTreeSet::new();
        for r in &rows {
            let (n, o) = c.organization(r);
            found.insert(r.get::<_, String>(0));
            out.push(Change::Organization(n, Some(o)));
        }
        for gone in wanted.iter().filter(|k| !found.contains(*k)) {
            if let Ok(n) = OrgNo::parse(gone) {
                out.push(Change::Organization(n, None));
            }
        }
    }

    let mut own: HashMap<Id, Box<[SmolStr]>> = HashMap::new();
    if !changed.system_users.is_empty() {
        let wanted = keys(&changed.system_users);
        let rows = tx.query(&query(SYSTEM_USERS, "s.id"), &[&wanted]).await?;
        let links = tx
            .query(
                &format!("{LINKS} WHERE l.system_user_id = ANY($1){LINKS_ORDER}"),
                &[&wanted],
            )
            .await?;
        let mut found = BTreeSet::new();
        let mut fresh: BTreeMap<Id, crate::world::records::Map<OrgNo, ClientLink>> =
            BTreeMap::new();
        for r in &rows {
            let su = c.system_user(r);
            found.insert(su.id.clone());
            own.insert(su.id.clone(), su.access_packages.clone());
            fresh.insert(su.id.clone(), crate::world::records::map());
            out.push(Change::SystemUser(su.id.clone(), Some(su)));
        }
        for (su, n, link) in c.links(&links) {
            if let Some(m) = fresh.get_mut(su) {
                m.insert(n, link);
            }
        }
        // The links as they are now, against the links the world holds.
        for (id, links) in fresh {
            let before = world.system_user(&id).map(|s| s.links.clone());
            for (n, l) in links.iter() {
                if before.as_ref().and_then(|b| b.get(n)) != Some(l) {
                    out.push(Change::Link(id.clone(), *n, Some(l.clone())));
                }
            }
            for n in before.iter().flat_map(|b| b.keys()) {
                if !links.contains_key(n) {
                    out.push(Change::Link(id.clone(), *n, None));
                }
            }
        }
        for gone in wanted.iter().filter(|k| !found.contains(k.as_str())) {
            out.push(Change::SystemUser(gone.as_str().into(), None));
        }
    }

    let links: Vec<&(String, String)> = changed
        .links
        .iter()
        .filter(|(su, _)| !changed.system_users.contains(su))
        .collect();
    if !links.is_empty() {
        let sus: Vec<&str> = links.iter().map(|(s, _)| s.as_str()).collect();
        let clients: Vec<&str> = links.iter().map(|(_, n)| n.as_str()).collect();
        let params: [&(dyn ToSql + Sync); 2] = [&sus, &clients];
        let rows = tx
            .query(
                &format!("{LINKS} WHERE (l.system_user_id, l.client_org_number) IN (SELECT * FROM unnest($1::text[], $2::text[])){LINKS_ORDER}"),
                &params,
            )
            .await?;
        let mut found = BTreeSet::new();
        for (su, n, link) in c.links(&rows) {
            found.insert((su.to_owned(), n));
            out.push(Change::Link(su.into(), n, Some(link)));
        }
        for (su, client) in links {
            if let Ok(n) = OrgNo::parse(client) {
                if !found.contains(&(su.clone(), n)) {
                    out.push(Change::Link(su.as_str().into(), n, None));
                }
            }
        }
    }

    if !changed.teams.is_empty() {
        let wanted = keys(&changed.teams);
        let rows = tx.query(&query(TEAMS, "t.id"), &[&wanted]).await?;
        let mut found = BTreeSet::new();
        for r in &rows {
            let t = c.team(r);
            found.insert(t.id.clone());
            out.push(Change::Team(t.id.clone(), Some(t)));
        }
        for gone in wanted.iter().filter(|k| !found.contains(k.as_str())) {
            out.push(Change::Team(gone.as_str().into(), None));
        }
    }

    if !changed.employees.is_empty() {
        let wanted = keys(&changed.employees);
        let rows = tx.query(&query(EMPLOYEES, "e.id"), &[&wanted]).await?;
        let mut found = BTreeSet::new();
        for r in &rows {
            let e = c.employee(r);
            found.insert(e.id.clone());
            out.push(Change::Employee(e.id.clone(), Some(e)));
        }
        for gone in wanted.iter().filter(|k| !found.contains(k.as_str())) {
            out.push(Change::Employee(gone.as_str().into(), None));
        }
    }

    let cedar = if changed.cedar {
        match cedar_list(cedar_rows(tx).await?) {
            Ok(v) => {
                if let Err(p) =
                    world.with_cedar_entities(vec![(CEDAR_SOURCE, v.clone())], &rules.schema)
                {
                    c.problems
                        .extend(p.into_iter().map(|(f, m)| format!("{f}: {m}")));
                }
                Some(v)
            }
            Err(p) => {
                c.problems.push(p);
                None
            }
        }
    } else {
        None
    };
    if c.problems.is_empty() {
        Ok(Ok(Delta {
            changes: out,
            cedar,
        }))
    } else {
        Ok(Err(c.problems))
    }
}
