//! Reading the world's tables, whole or by key, into the data format's records,
//! and those into a world or changes to one. The records pass the same checks as
//! those of a data file (`crate::world`'s field and reference checks): the
//! database's constraints should already have refused anything bad, and Vakt does
//! not rely on that.

use super::DbError;
use crate::world::{
    organization_label, AccessRecord, Change, ClientLink, ClientRecord, ClientsRecord,
    EmployeeRecord, Fields, Id, OrgNo, OrganizationRecord, PackageRef, PartyIdValue, RecordKey,
    SystemUser, SystemUserRecord, TeamRecord, World, WorldBuilder,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

const ORGS: &str = "SELECT org_number, name, parent_org_number, unit_type, party_id,
       party_uuid::text
  FROM vakt.organization o";
const SYSTEM_USERS: &str = "SELECT s.id, s.integration_title, s.system_id, s.owner_org_number,
       s.user_type, s.external_ref, s.is_deleted, s.self_delegated,
       ARRAY(SELECT p.package FROM vakt.system_user_package p
              WHERE p.system_user_id = s.id ORDER BY p.package)
  FROM vakt.system_user s";
/// One row per relationship of each link (one with NULL position for a link with
/// none; a relationship with a NULL role is one whose role is unknown).
const LINKS: &str = "SELECT l.system_user_id, l.client_org_number, l.client_id, l.status,
       r.role,
       ARRAY(SELECT p.package FROM vakt.client_link_role_package p
              WHERE p.system_user_id = r.system_user_id
                AND p.client_org_number = r.client_org_number
                AND p.position = r.position ORDER BY p.package),
       r.position
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
       r.role, coalesce(p.packages, '{}'), r.position
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
    /// The links that changed on their own: those whose system user did not
    /// change (a changed system user is read with all its links).
    pub fn single_links(&self) -> Vec<&(String, String)> {
        self.links
            .iter()
            .filter(|(su, _)| !self.system_users.contains(su))
            .collect()
    }

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
        // The sync stamp is read in every poll's snapshot with the position (see
        // `postgres`): its rows only woke the follower.
        if kind == "sync_stamp" {
            return;
        }
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

/// Decodes rows into the data format's records (`crate::world::format`), the
/// same values a data file gives, so that they pass the same checks. What a row
/// holds that no record can (a team with every client and a list as well) is a
/// problem of its own.
fn organization(r: &Row) -> OrganizationRecord {
    OrganizationRecord {
        org_number: r.get(0),
        name: r.get(1),
        parent_org_number: r.get(2),
        unit_type: r.get(3),
        party_id: r.get::<_, Option<i64>>(4).map(PartyIdValue::from),
        party_uuid: r.get(5),
    }
}

/// A system user without its client links (those are read on their own).
fn system_user(r: &Row) -> SystemUserRecord {
    SystemUserRecord {
        id: r.get(0),
        integration_title: Some(r.get(1)),
        system_id: Some(r.get(2)),
        reportee_org_no: r.get(3),
        user_type: Some(r.get(4)),
        access_packages: Some(
            r.get::<_, Vec<String>>(8)
                .into_iter()
                .map(|urn| PackageRef { urn })
                .collect(),
        ),
        external_ref: Some(r.get(5)),
        is_deleted: r.get(6),
        self_delegated: r.get(7),
        clients: Vec::new(),
    }
}

/// Client links from rows of [`LINKS`] (ordered by link, then position), each
/// with the id of its system user.
fn link_records(rows: &[Row]) -> Vec<(String, ClientRecord)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let su: &str = rows[i].get(0);
        let client: &str = rows[i].get(1);
        let first = i;
        let mut access = Vec::new();
        while i < rows.len()
            && rows[i].get::<_, &str>(0) == su
            && rows[i].get::<_, &str>(1) == client
        {
            // The outer join's row for a link with no relationship has no
            // position; a relationship whose role is unknown has one.
            if rows[i].get::<_, Option<i16>>(6).is_some() {
                access.push(AccessRecord {
                    role: rows[i].get(4),
                    packages: rows[i].get(5),
                });
            }
            i += 1;
        }
        let r = &rows[first];
        out.push((
            su.to_owned(),
            ClientRecord {
                client_id: r.get(2),
                client_organization_number: client.to_owned(),
                client_organization_name: None,
                access,
                status: Some(r.get(3)),
            },
        ));
    }
    out
}

fn team(r: &Row) -> Result<TeamRecord, String> {
    let id: String = r.get(0);
    let listed: Vec<String> = r.get(5);
    let all: bool = r.get(3);
    if all && !listed.is_empty() {
        return Err(format!(
            "team {id:?}: all_clients is true and clients are listed in team_client as well; the team's scope is one or the other"
        ));
    }
    Ok(TeamRecord {
        id,
        organization: r.get(1),
        name: r.get(2),
        system_users: r.get(4),
        clients: if all {
            ClientsRecord::Keyword("all".to_owned())
        } else {
            ClientsRecord::List(listed)
        },
    })
}

fn employee(r: &Row) -> EmployeeRecord {
    EmployeeRecord {
        id: r.get(0),
        organization: r.get(1),
        name: r.get(2),
        active: r.get(3),
        kind: Some(r.get(4)),
        teams: r.get(5),
        audit_clients: r.get(6),
    }
}

fn twice(id: &str) -> String {
    format!("id {id:?} is defined twice")
}

/// The records of one read, through the field checks into changes; every
/// problem names its record as the change feed does (`employee "kari": ...`).
struct Checked<'p> {
    fields: Fields<'p>,
    problems: Vec<String>,
    bad: Vec<String>,
    /// The keys read, so that two rows of one key are refused as two records of
    /// one id are.
    seen: BTreeSet<RecordKey>,
}

impl<'p> Checked<'p> {
    fn new(packages: &'p crate::rules::packages::AccessPackages) -> Self {
        Self {
            fields: Fields::new(packages),
            problems: Vec::new(),
            bad: Vec::new(),
            seen: BTreeSet::new(),
        }
    }

    /// Notes the problems found with the record named `label`, and its key (a
    /// key read twice is the problem `twice`).
    fn noted(
        &mut self,
        label: impl std::fmt::Display,
        key: Option<RecordKey>,
        twice: impl FnOnce() -> String,
    ) {
        if let Some(k) = key {
            if !self.seen.insert(k) {
                self.bad.push(twice());
            }
        }
        for m in self.bad.drain(..) {
            self.problems.push(format!("{label}: {m}"));
        }
    }

    fn organization(&mut self, r: &OrganizationRecord) -> Option<Change> {
        let o = self.fields.organization(r, &mut self.bad);
        let key = o.as_ref().map(|o| RecordKey::Organization(o.org_number));
        self.noted(organization_label(&r.org_number), key, || {
            format!("orgNumber {:?} is defined twice", r.org_number)
        });
        o.map(|o| Change::Organization(o.org_number, Some(o)))
    }

    fn system_user(&mut self, r: &SystemUserRecord) -> Option<SystemUser> {
        let s = self.fields.system_user(r, &mut self.bad);
        let key = s.as_ref().map(|s| RecordKey::SystemUser(s.id.clone()));
        self.noted(format_args!("system user {:?}", r.id), key, || twice(&r.id));
        s
    }

    fn link(&mut self, su: &str, c: &ClientRecord) -> Option<(OrgNo, ClientLink)> {
        let l = self.fields.client_link(None, c, &mut self.bad);
        let label = format!(
            "client link {} of system user {su:?}",
            c.client_organization_number
        );
        self.noted(label, None, String::new);
        l
    }

    fn team(&mut self, r: &TeamRecord) -> Option<Change> {
        let t = self.fields.team(r, &mut self.bad);
        let key = t.as_ref().map(|t| RecordKey::Team(t.id.clone()));
        self.noted(format_args!("team {:?}", r.id), key, || twice(&r.id));
        t.map(|t| Change::Team(t.id.clone(), Some(t)))
    }

    fn employee(&mut self, r: &EmployeeRecord) -> Option<Change> {
        let e = self.fields.employee(r, &mut self.bad);
        let key = e.as_ref().map(|e| RecordKey::Employee(e.id.clone()));
        self.noted(format_args!("employee {:?}", r.id), key, || twice(&r.id));
        e.map(|e| Change::Employee(e.id.clone(), Some(e)))
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

/// How long a side read waits for its table lock before it fails (and the read
/// is tried again later).
const SIDE_READ_LOCK_TIMEOUT: &str = "60s";

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
    // A bounded wait for its lock: the caller's transaction may hold locks (the
    // Altinn sync holds SHARE locks while it reads), and an exclusive lock queued
    // behind them (an owner's `vakt db import`) would queue this read behind it,
    // a wait across connections the server cannot see as a deadlock.
    tx.batch_execute(&format!(
        "SET TRANSACTION SNAPSHOT '{exported}'; {WHOLE_READ}; SET LOCAL lock_timeout = '{SIDE_READ_LOCK_TIMEOUT}'"
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

/// Where records read from the database came from, for messages.
const DB_SOURCE: &str = "database";

/// A whole world from every row: the rows decoded into records and built as a
/// world from files is, through the same checks; every problem otherwise.
/// CPU-bound: run it off the runtime's threads at scale.
pub(super) fn world(
    rows: AllRows,
    rules: &crate::rules::snapshot::Rules,
) -> Result<World, Vec<String>> {
    let AllRows {
        orgs,
        system_users,
        links: link_rows,
        teams,
        employees,
        cedar,
    } = rows;
    let mut problems = Vec::new();
    // Each kind's rows go as soon as they are records, so the two are not held
    // whole at once.
    let orgs: Vec<OrganizationRecord> = orgs.iter().map(organization).collect();
    let mut sus: Vec<SystemUserRecord> = system_users.iter().map(system_user).collect();
    drop(system_users);
    let at: HashMap<String, usize> = sus
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    for (su, c) in link_records(&link_rows) {
        match at.get(&su) {
            Some(&i) => sus[i].clients.push(c),
            None => problems.push(format!(
                "client link {} of system user {su:?}: system user {su:?} is not a known system user",
                c.client_organization_number
            )),
        }
    }
    drop(link_rows);
    let teams: Vec<TeamRecord> = teams
        .iter()
        .filter_map(|r| team(r).map_err(|p| problems.push(p)).ok())
        .collect();
    let employees: Vec<EmployeeRecord> = employees.iter().map(employee).collect();
    let mut builder = WorldBuilder::new();
    builder.add_keyed_records(DB_SOURCE, orgs, sus, teams, employees);
    let world = match builder.build(&rules.packages, &rules.schema) {
        Ok(w) => Some(w),
        Err(p) => {
            problems.extend(p.0.into_iter().map(|p| {
                if p.at.is_empty() {
                    p.message
                } else {
                    format!("{}: {}", p.at, p.message)
                }
            }));
            None
        }
    };
    let cedar = match cedar_list(cedar) {
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

/// The most changed keys a poll reads with the generic plans of its reads.
const GENERIC_PLANS_UP_TO: usize = 1000;

/// The rows of the records a change set names, each kind's (empty when none of
/// that kind changed).
#[derive(Default)]
struct Rows {
    orgs: Vec<Row>,
    system_users: Vec<Row>,
    /// Every client link of the changed system users.
    system_user_links: Vec<Row>,
    /// The links changed on their own (their system user unchanged).
    links: Vec<Row>,
    teams: Vec<Row>,
    employees: Vec<Row>,
}

impl Rows {
    /// Reads them within `tx`: every kind's query is sent at once (tokio-postgres
    /// pipelines the queries of one connection that are awaited together), so a
    /// poll waits for one round trip rather than one per kind.
    async fn read(
        tx: &Transaction<'_>,
        statements: &mut super::Statements,
        changed: &Changed,
    ) -> Result<Self, DbError> {
        let keys = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<String>>();
        let by_key = |sql: &str, filter: &str| format!("{sql} WHERE {filter} = ANY($1)");
        let (orgs, system_users, links) = (
            keys(&changed.orgs),
            keys(&changed.system_users),
            changed.single_links(),
        );
        let (teams, employees) = (keys(&changed.teams), keys(&changed.employees));
        let sus: Vec<&str> = links.iter().map(|(s, _)| s.as_str()).collect();
        let clients: Vec<&str> = links.iter().map(|(_, n)| n.as_str()).collect();
        let link_params: [&(dyn ToSql + Sync); 2] = [&sus, &clients];
        // Prepared first (once per connection), then sent together.
        let mut prepare = async |wanted: bool, sql: &str| match wanted {
            true => statements.get(tx, sql).await.map(Some),
            false => Ok(None),
        };
        let sql = [
            prepare(!orgs.is_empty(), &by_key(ORGS, "o.org_number")).await?,
            prepare(!system_users.is_empty(), &by_key(SYSTEM_USERS, "s.id")).await?,
            prepare(
                !system_users.is_empty(),
                &format!("{LINKS} WHERE l.system_user_id = ANY($1){LINKS_ORDER}"),
            )
            .await?,
            prepare(
                !links.is_empty(),
                &format!("{LINKS} WHERE (l.system_user_id, l.client_org_number) IN (SELECT * FROM unnest($1::text[], $2::text[])){LINKS_ORDER}"),
            )
            .await?,
            prepare(!teams.is_empty(), &by_key(TEAMS, "t.id")).await?,
            prepare(!employees.is_empty(), &by_key(EMPLOYEES, "e.id")).await?,
        ];
        let query = async |sql: &Option<tokio_postgres::Statement>,
                           params: &[&(dyn ToSql + Sync)]| match sql {
            Some(sql) => tx.query(sql, params).await,
            None => Ok(Vec::new()),
        };
        let by_keys: [[&(dyn ToSql + Sync); 1]; 4] =
            [[&orgs], [&system_users], [&teams], [&employees]];
        // A few keys, as under a stream of changes: the plan made once per
        // connection (an index lookup per key), never planned again. Left to
        // itself PostgreSQL kept planning each read for its parameters at every
        // poll (the links' read took 0.6 ms to plan and 0.1 ms to run). Many keys
        // (a large transaction) are planned for what they are. Sent first, in
        // the same round trip; it lasts until the poll's transaction ends.
        let generic = async || match changed.len() <= GENERIC_PLANS_UP_TO {
            true => {
                tx.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
                    .await
            }
            false => Ok(()),
        };
        let ((), orgs, system_users, system_user_links, links, teams, employees) = tokio::try_join!(
            generic(),
            query(&sql[0], &by_keys[0]),
            query(&sql[1], &by_keys[1]),
            query(&sql[2], &by_keys[1]),
            query(&sql[3], &link_params),
            query(&sql[4], &by_keys[2]),
            query(&sql[5], &by_keys[3]),
        )?;
        let rows = Self {
            orgs,
            system_users,
            system_user_links,
            links,
            teams,
            employees,
        };
        Ok(rows)
    }
}

/// The changes that bring `world` to the database's state for the keys in
/// `changed` (read within `tx`), with the entities in Cedar's own format when
/// those changed; every problem with the records read otherwise (those that
/// changes would cause in the world are found by applying them). A changed system
/// user is read with all its client links; other links one by one.
pub(super) async fn changes(
    tx: &Transaction<'_>,
    statements: &mut super::Statements,
    changed: &Changed,
    world: &World,
    rules: &crate::rules::snapshot::Rules,
) -> Result<Result<Delta, Vec<String>>, DbError> {
    let mut c = Checked::new(&rules.packages);
    let mut out = Vec::new();
    let keys = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<String>>();
    let rows = Rows::read(tx, statements, changed).await?;

    if !changed.orgs.is_empty() {
        let wanted = keys(&changed.orgs);
        let rows = &rows.orgs;
        let mut found = BTreeSet::new();
        for r in rows {
            found.insert(r.get::<_, String>(0));
            out.extend(c.organization(&organization(r)));
        }
        for gone in wanted.iter().filter(|k| !found.contains(*k)) {
            if let Ok(n) = OrgNo::parse(gone) {
                out.push(Change::Organization(n, None));
            }
        }
    }

    if !changed.system_users.is_empty() {
        let wanted = keys(&changed.system_users);
        let (rows, links) = (&rows.system_users, &rows.system_user_links);
        let mut found = BTreeSet::new();
        let mut fresh: BTreeMap<Id, crate::world::records::Map<OrgNo, ClientLink>> =
            BTreeMap::new();
        for r in rows {
            let record = system_user(r);
            found.insert(Id::from(record.id.as_str()));
            if let Some(su) = c.system_user(&record) {
                fresh.insert(su.id.clone(), crate::world::records::map());
                out.push(Change::SystemUser(su.id.clone(), Some(su)));
            }
        }
        for (su, record) in link_records(links) {
            if let Some((n, link)) = c.link(&su, &record) {
                if let Some(m) = fresh.get_mut(su.as_str()) {
                    m.insert(n, link);
                }
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

    let links = changed.single_links();
    if !links.is_empty() {
        let mut found = BTreeSet::new();
        for (su, record) in link_records(&rows.links) {
            if let Some((n, link)) = c.link(&su, &record) {
                out.push(Change::Link(su.as_str().into(), n, Some(link)));
                found.insert((su, n));
            }
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
        let mut found = BTreeSet::new();
        for r in &rows.teams {
            found.insert(Id::from(r.get::<_, &str>(0)));
            match team(r) {
                Ok(record) => out.extend(c.team(&record)),
                Err(p) => c.problems.push(p),
            }
        }
        for gone in wanted.iter().filter(|k| !found.contains(k.as_str())) {
            out.push(Change::Team(gone.as_str().into(), None));
        }
    }

    if !changed.employees.is_empty() {
        let wanted = keys(&changed.employees);
        let mut found = BTreeSet::new();
        for r in &rows.employees {
            found.insert(Id::from(r.get::<_, &str>(0)));
            out.extend(c.employee(&employee(r)));
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
