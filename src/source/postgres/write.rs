//! Writing a whole world into the tables (`vakt db import`): one transaction, so
//! sidecars see the old world or the new one, never a mix; and `COPY`, so a
//! million records take seconds.
//!
//! The row triggers would record every row; the import disables them for its own
//! transaction instead, which only an owner of the tables can (a member of
//! `vakt_owner`, or a superuser), and moves the feed's epoch, so every sidecar reads
//! the world again whole once it commits. No session setting can do this.

use super::DbError;
use crate::world::{ClientScope, SystemUser, World};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Transaction};

/// Every table of the world, parents before children; each has the feed's
/// triggers `feed` and `feed_truncate`.
pub(super) const TABLES: &[&str] = &[
    "organization",
    "system_user",
    "system_user_package",
    "client_link",
    "client_link_role",
    "client_link_role_package",
    "team",
    "team_system_user",
    "team_client",
    "employee",
    "employee_team",
    "employee_audit_client",
    "cedar_entity",
];

/// What an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Rows written, over every table.
    pub rows: u64,
}

/// Counts the organisations the database holds (an empty database has none).
pub async fn organizations(client: &Client) -> Result<i64, DbError> {
    Ok(client
        .query_one("SELECT count(*) FROM vakt.organization", &[])
        .await?
        .get(0))
}

/// Writes `world` into the database in one transaction. With `replace`, the world
/// there is replaced; without, the database must hold none. Sidecars following the
/// database read the new world whole.
pub async fn import(
    client: &mut Client,
    world: &World,
    replace: bool,
) -> Result<Imported, DbError> {
    import_stamped(client, world, replace, None).await
}

/// [`import`], with the sync stamp (`vakt altinn sync`'s, `synced_at`) written in
/// the same transaction: the stamp commits with the data it stamps, or neither.
pub async fn import_stamped(
    client: &mut Client,
    world: &World,
    replace: bool,
    synced_at: Option<std::time::SystemTime>,
) -> Result<Imported, DbError> {
    super::migrate::check(client).await?;
    let owner: bool = client
        .query_one("SELECT pg_has_role('vakt_owner', 'USAGE')", &[])
        .await?
        .get(0);
    if !owner {
        return Err(DbError::Data(vec![
            "vakt db import writes as the tables' owner: connect as a member of vakt_owner (or a superuser)".to_owned(),
        ]));
    }
    let tx = client.transaction().await?;
    // The feed's triggers stand down for this transaction (ALTER TABLE is
    // transactional: they fire again for everyone else at commit, and were never
    // off for anyone else, who waits on the lock). The epoch moved below tells
    // every sidecar to read the whole world again.
    let toggle = |on: &str| {
        TABLES
            .iter()
            .map(|t| {
                format!("ALTER TABLE vakt.{t} {on} TRIGGER feed, {on} TRIGGER feed_truncate;\n")
            })
            .collect::<String>()
    };
    tx.batch_execute(&toggle("DISABLE")).await?;
    if replace {
        let all: Vec<String> = TABLES.iter().map(|t| format!("vakt.{t}")).collect();
        tx.batch_execute(&format!("TRUNCATE {}", all.join(", ")))
            .await?;
    } else {
        let n: i64 = tx
            .query_one("SELECT count(*) FROM vakt.organization", &[])
            .await?
            .get(0);
        if n > 0 {
            return Err(DbError::Data(vec![format!(
                "the database already holds a world ({n} organisations); give --replace to replace it"
            )]));
        }
    }
    let mut rows = 0;
    rows += copy_organizations(&tx, world).await?;
    rows += copy_system_users(&tx, world).await?;
    rows += copy_teams(&tx, world).await?;
    rows += copy_employees(&tx, world).await?;
    rows += copy_cedar(&tx, world).await?;
    // The triggers were off: the epoch says "read everything", and its
    // notification wakes the sidecars at commit.
    tx.batch_execute(&toggle("ENABLE ALWAYS")).await?;
    tx.batch_execute("SELECT vakt.feed_bulk_loaded()").await?;
    if let Some(at) = synced_at {
        tx.execute(SYNC_STAMP_SQL, &[&at]).await?;
    }
    tx.commit().await?;
    Ok(Imported { rows })
}

/// Writes `rows` into `table` (`columns`, typed) with one binary COPY; returns
/// the rows written.
async fn copy<'r, I>(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[(&str, Type)],
    rows: I,
) -> Result<u64, DbError>
where
    I: IntoIterator<Item = Vec<Box<dyn ToSql + Sync + Send + 'r>>>,
{
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let types: Vec<Type> = columns.iter().map(|(_, t)| t.clone()).collect();
    let sink = tx
        .copy_in(&format!(
            "COPY vakt.{table} ({}) FROM STDIN BINARY",
            names.join(", ")
        ))
        .await?;
    let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for row in rows {
        let refs: Vec<&(dyn ToSql + Sync)> = row.iter().map(|b| &**b as _).collect();
        w.as_mut().write(&refs).await?;
    }
    Ok(w.finish().await?)
}

/// A relationship's role as its cell: the URN, or NULL where it is unknown.
trait RoleCell {
    fn cell(&self) -> Option<String>;
}

impl RoleCell for smol_str::SmolStr {
    fn cell(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl RoleCell for Option<smol_str::SmolStr> {
    fn cell(&self) -> Option<String> {
        self.as_ref().map(ToString::to_string)
    }
}

fn cells<'r>(v: Vec<Box<dyn ToSql + Sync + Send + 'r>>) -> Vec<Box<dyn ToSql + Sync + Send + 'r>> {
    v
}

async fn copy_organizations(tx: &Transaction<'_>, world: &World) -> Result<u64, DbError> {
    copy(
        tx,
        "organization",
        &[
            ("org_number", Type::TEXT),
            ("name", Type::TEXT),
            ("parent_org_number", Type::TEXT),
            ("unit_type", Type::TEXT),
            ("party_id", Type::INT8),
            // A uuid's binary form is its 16 bytes, which is also bytea's: the
            // server reads them as the column's uuid (tokio-postgres is built
            // without its uuid feature).
            ("party_uuid", Type::BYTEA),
        ],
        world.organizations().map(|o| {
            cells(vec![
                Box::new(o.org_number.to_string()),
                Box::new(o.name.to_string()),
                Box::new(o.parent_org_number.map(|p| p.to_string())),
                Box::new(o.unit_type.as_ref().map(|t| t.to_string())),
                Box::new(o.party_id()),
                Box::new(o.party_uuid().map(|u| u.as_bytes().to_vec())),
            ])
        }),
    )
    .await
}

async fn copy_system_users(tx: &Transaction<'_>, world: &World) -> Result<u64, DbError> {
    let n = copy(
        tx,
        "system_user",
        &[
            ("id", Type::TEXT),
            ("integration_title", Type::TEXT),
            ("system_id", Type::TEXT),
            ("owner_org_number", Type::TEXT),
            ("user_type", Type::TEXT),
            ("external_ref", Type::TEXT),
            ("is_deleted", Type::BOOL),
            ("self_delegated", Type::BOOL),
        ],
        world.system_users().map(|s| {
            cells(vec![
                Box::new(s.id.to_string()),
                Box::new(s.integration_title.to_string()),
                Box::new(s.system_id.to_string()),
                Box::new(s.owner.to_string()),
                Box::new(s.user_type.as_str()),
                Box::new(s.external_ref.to_string()),
                Box::new(s.is_deleted),
                Box::new(s.self_delegated),
            ])
        }),
    )
    .await?;
    let users: Vec<&SystemUser> = world.system_users().collect();
    Ok(n + copy_system_user_parts(tx, &users).await?)
}

/// The rows below each of `users`: its packages, its client links, their
/// relationships and those relationships' packages.
async fn copy_system_user_parts(
    tx: &Transaction<'_>,
    users: &[&SystemUser],
) -> Result<u64, DbError> {
    let mut n = 0;
    n += copy(
        tx,
        "system_user_package",
        &[("system_user_id", Type::TEXT), ("package", Type::TEXT)],
        users.iter().copied().flat_map(|s| {
            s.access_packages
                .iter()
                .map(|p| cells(vec![Box::new(s.id.to_string()), Box::new(p.to_string())]))
        }),
    )
    .await?;
    n += copy(
        tx,
        "client_link",
        &[
            ("system_user_id", Type::TEXT),
            ("client_org_number", Type::TEXT),
            ("client_id", Type::TEXT),
            ("status", Type::TEXT),
        ],
        users.iter().copied().flat_map(|s| {
            s.links.iter().map(|(c, l)| {
                cells(vec![
                    Box::new(s.id.to_string()),
                    Box::new(c.to_string()),
                    Box::new(l.client_id.to_text()),
                    Box::new(if l.active { "active" } else { "removed" }),
                ])
            })
        }),
    )
    .await?;
    n += copy(
        tx,
        "client_link_role",
        &[
            ("system_user_id", Type::TEXT),
            ("client_org_number", Type::TEXT),
            ("position", Type::INT2),
            ("role", Type::TEXT),
        ],
        users.iter().copied().flat_map(|s| {
            s.links.iter().flat_map(move |(c, l)| {
                l.access
                    .entries
                    .iter()
                    .enumerate()
                    .map(move |(i, (role, _))| {
                        cells(vec![
                            Box::new(s.id.to_string()),
                            Box::new(c.to_string()),
                            Box::new(i as i16),
                            Box::new(RoleCell::cell(role)),
                        ])
                    })
            })
        }),
    )
    .await?;
    n += copy(
        tx,
        "client_link_role_package",
        &[
            ("system_user_id", Type::TEXT),
            ("client_org_number", Type::TEXT),
            ("position", Type::INT2),
            ("package", Type::TEXT),
        ],
        users.iter().copied().flat_map(|s| {
            s.links.iter().flat_map(move |(c, l)| {
                l.access
                    .entries
                    .iter()
                    .enumerate()
                    .flat_map(move |(i, (_, packages))| {
                        packages.iter().map(move |p| {
                            cells(vec![
                                Box::new(s.id.to_string()),
                                Box::new(c.to_string()),
                                Box::new(i as i16),
                                Box::new(p.to_string()),
                            ])
                        })
                    })
            })
        }),
    )
    .await?;
    Ok(n)
}

async fn copy_teams(tx: &Transaction<'_>, world: &World) -> Result<u64, DbError> {
    let mut n = copy(
        tx,
        "team",
        &[
            ("id", Type::TEXT),
            ("organization", Type::TEXT),
            ("name", Type::TEXT),
            ("all_clients", Type::BOOL),
        ],
        world.teams().map(|t| {
            cells(vec![
                Box::new(t.id.to_string()),
                Box::new(t.organization.to_string()),
                Box::new(t.name.to_string()),
                Box::new(matches!(t.clients, ClientScope::All)),
            ])
        }),
    )
    .await?;
    n += copy(
        tx,
        "team_system_user",
        &[("team_id", Type::TEXT), ("system_user_id", Type::TEXT)],
        world.teams().flat_map(|t| {
            t.system_users
                .iter()
                .map(|s| cells(vec![Box::new(t.id.to_string()), Box::new(s.to_string())]))
        }),
    )
    .await?;
    n += copy(
        tx,
        "team_client",
        &[("team_id", Type::TEXT), ("client_org_number", Type::TEXT)],
        world.teams().flat_map(|t| {
            let listed: &[crate::world::OrgNo] = match &t.clients {
                ClientScope::All => &[],
                ClientScope::Listed(l) => l,
            };
            listed
                .iter()
                .map(|c| cells(vec![Box::new(t.id.to_string()), Box::new(c.to_string())]))
        }),
    )
    .await?;
    Ok(n)
}

async fn copy_employees(tx: &Transaction<'_>, world: &World) -> Result<u64, DbError> {
    let mut n = copy(
        tx,
        "employee",
        &[
            ("id", Type::TEXT),
            ("organization", Type::TEXT),
            ("name", Type::TEXT),
            ("active", Type::BOOL),
            ("kind", Type::TEXT),
        ],
        world.employees().map(|e| {
            cells(vec![
                Box::new(e.id.to_string()),
                Box::new(e.organization.to_string()),
                Box::new(e.name.to_string()),
                Box::new(e.active),
                Box::new(e.kind.as_str()),
            ])
        }),
    )
    .await?;
    n += copy(
        tx,
        "employee_team",
        &[("employee_id", Type::TEXT), ("team_id", Type::TEXT)],
        world.employees().flat_map(|e| {
            e.teams
                .iter()
                .map(|t| cells(vec![Box::new(e.id.to_string()), Box::new(t.to_string())]))
        }),
    )
    .await?;
    n += copy(
        tx,
        "employee_audit_client",
        &[
            ("employee_id", Type::TEXT),
            ("client_org_number", Type::TEXT),
        ],
        world.employees().flat_map(|e| {
            e.audit_clients
                .iter()
                .map(|c| cells(vec![Box::new(e.id.to_string()), Box::new(c.to_string())]))
        }),
    )
    .await?;
    Ok(n)
}

async fn copy_cedar(tx: &Transaction<'_>, world: &World) -> Result<u64, DbError> {
    let mut n = 0;
    for e in world.cedar_entities() {
        let e = cedar_policy::Entity::from(e.clone());
        let json = e
            .to_json_value()
            .map_err(|err| DbError::Data(vec![format!("Cedar entity {}: {err}", e.uid())]))?;
        let text = json.to_string();
        n += tx
            .execute(
                "INSERT INTO vakt.cedar_entity (entity_type, entity_id, entity) VALUES ($1, $2, $3::text::jsonb)",
                &[
                    &e.uid().type_name().to_string(),
                    &e.uid().id().unescaped(),
                    &text,
                ],
            )
            .await?;
    }
    Ok(n)
}

/// Held by `vakt altinn sync` for its transaction ("vaktsync" in ASCII), so two
/// syncs into one database run one after the other: the second reads what the
/// first committed.
pub const SYNC_LOCK_KEY: i64 = 0x7661_6b74_7379_6e63;

/// How long a sync waits for its locks before it gives up (and is tried again
/// at the next interval).
const SYNC_LOCK_TIMEOUT: &str = "120s";

/// A sync's transaction ([`begin_sync`]): the world the database holds, which
/// nobody else changes until it commits ([`Syncing::commit`]) or is dropped
/// (rolled back).
pub struct Syncing<'a> {
    tx: Transaction<'a>,
    /// The world in the database as the sync found it.
    pub world: World,
}

/// Opens `vakt altinn sync`'s transaction on `client` (connected as a member of
/// `vakt_writer`) and reads the world in it.
///
/// Why locks rather than a snapshot isolation level: the sync checks the world
/// it writes as `vakt validate` would, and that check reaches every record (a
/// team names system users, an employee audit clients, a unit its parent). Under
/// REPEATABLE READ another writer could commit, between the read and the commit,
/// a change the check never saw (an employee is kept, but a team naming a
/// system user the sync marks deleted would not be checked against it);
/// SERIALIZABLE would catch that only when every writer runs SERIALIZABLE too,
/// and the vendor's writers are any SQL client. So, with `write`, the
/// transaction first takes the sync's advisory lock (concurrent syncs wait
/// here, before they read), then locks the world's tables in SHARE mode: other
/// writers' row changes wait until the sync commits, readers (the sidecars)
/// never wait, and what the sync reads and checks is exactly what it commits
/// on (READ COMMITTED is enough: nothing else changes these tables meanwhile).
/// The sync reads Altinn before it opens the transaction, so the locks are held
/// only for reading, checking and writing the database. Without `write` (a dry
/// run), one read-only REPEATABLE READ snapshot, with no locks.
pub async fn begin_sync<'a>(
    client: &'a mut Client,
    db: &super::Database,
    rules: std::sync::Arc<crate::rules::snapshot::Rules>,
    write: bool,
) -> Result<Syncing<'a>, DbError> {
    super::migrate::check(client).await?;
    let tx = if write {
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{SYNC_LOCK_TIMEOUT}'"))
            .await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SYNC_LOCK_KEY])
            .await?;
        let all: Vec<String> = TABLES.iter().map(|t| format!("vakt.{t}")).collect();
        tx.batch_execute(&format!("LOCK TABLE {} IN SHARE MODE", all.join(", ")))
            .await?;
        tx
    } else {
        client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?
    };
    let rows = super::read::all_rows(db, &tx).await?;
    let world = tokio::task::spawn_blocking(move || super::read::world(rows, &rules))
        .await
        .map_err(|e| DbError::Data(vec![format!("building the world failed: {e}")]))?
        .map_err(DbError::Data)?;
    Ok(Syncing { tx, world })
}

const UPSERT_ORGANIZATION: &str = "INSERT INTO vakt.organization
   (org_number, name, parent_org_number, unit_type, party_id, party_uuid)
 VALUES ($1, $2, $3, $4, $5, $6::text::uuid)
 ON CONFLICT (org_number) DO UPDATE SET name = EXCLUDED.name,
   parent_org_number = EXCLUDED.parent_org_number, unit_type = EXCLUDED.unit_type,
   party_id = EXCLUDED.party_id, party_uuid = EXCLUDED.party_uuid";

const UPSERT_SYSTEM_USER: &str = "INSERT INTO vakt.system_user
   (id, integration_title, system_id, owner_org_number, user_type, external_ref,
    is_deleted, self_delegated)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
 ON CONFLICT (id) DO UPDATE SET integration_title = EXCLUDED.integration_title,
   system_id = EXCLUDED.system_id, owner_org_number = EXCLUDED.owner_org_number,
   user_type = EXCLUDED.user_type, external_ref = EXCLUDED.external_ref,
   is_deleted = EXCLUDED.is_deleted, self_delegated = EXCLUDED.self_delegated";

/// What a sync wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncWritten {
    /// Organisations inserted or updated.
    pub organizations: u64,
    /// System users inserted, updated (with their packages and links) or deleted.
    pub system_users: u64,
}

/// A whole number of microseconds since the epoch, rounded down: PostgreSQL
/// keeps microseconds, and a stamp rounded up would say the data is newer than
/// it is.
fn whole_micros(t: std::time::SystemTime) -> std::time::SystemTime {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => {
            std::time::UNIX_EPOCH + std::time::Duration::new(d.as_secs(), d.subsec_micros() * 1000)
        }
        Err(_) => t,
    }
}

impl Syncing<'_> {
    /// Brings the database from [`Self::world`] to `after` with row changes, as
    /// `vakt_writer` may: organisations `after` holds that are new or differ are
    /// upserted (none is deleted: the vendor's teams and employees may name
    /// them); each system user that is new or differs is upserted with its
    /// packages and client links written again, and one `after` lacks is
    /// deleted. Teams, employees and entities in Cedar's own format are never
    /// written. Then the sync stamp, `synced_at`, in the same transaction, and
    /// the commit: the stamp commits with the data, or neither.
    pub async fn commit(
        self,
        after: &World,
        synced_at: std::time::SystemTime,
    ) -> Result<SyncWritten, DbError> {
        use crate::world::{OrganizationRecord, SystemUserRecord};
        let tx = &self.tx;
        let before = &self.world;
        let mut written = SyncWritten::default();
        for o in after.organizations() {
            let same = before
                .organization(o.org_number)
                .is_some_and(|b| OrganizationRecord::from(b) == OrganizationRecord::from(o));
            if same {
                continue;
            }
            tx.execute(
                UPSERT_ORGANIZATION,
                &[
                    &o.org_number.to_string(),
                    &o.name.to_string(),
                    &o.parent_org_number.map(|p| p.to_string()),
                    &o.unit_type.as_ref().map(|t| t.to_string()),
                    &o.party_id(),
                    &o.party_uuid().map(|u| u.to_string()),
                ],
            )
            .await?;
            written.organizations += 1;
        }
        let changed: Vec<&SystemUser> = after
            .system_users()
            .filter(|s| {
                before
                    .system_user(&s.id)
                    .is_none_or(|b| SystemUserRecord::from(b) != SystemUserRecord::from(*s))
            })
            .collect();
        for s in &changed {
            tx.execute(
                UPSERT_SYSTEM_USER,
                &[
                    &s.id.to_string(),
                    &s.integration_title.to_string(),
                    &s.system_id.to_string(),
                    &s.owner.to_string(),
                    &s.user_type.as_str(),
                    &s.external_ref.to_string(),
                    &s.is_deleted,
                    &s.self_delegated,
                ],
            )
            .await?;
        }
        let ids: Vec<String> = changed.iter().map(|s| s.id.to_string()).collect();
        // Their packages and links are written again whole (a link's
        // relationships and their packages go with it, ON DELETE CASCADE).
        tx.execute(
            "DELETE FROM vakt.system_user_package WHERE system_user_id = ANY($1)",
            &[&ids],
        )
        .await?;
        tx.execute(
            "DELETE FROM vakt.client_link WHERE system_user_id = ANY($1)",
            &[&ids],
        )
        .await?;
        copy_system_user_parts(tx, &changed).await?;
        written.system_users += changed.len() as u64;
        let gone: Vec<String> = before
            .system_users()
            .filter(|s| after.system_user(&s.id).is_none())
            .map(|s| s.id.to_string())
            .collect();
        written.system_users += tx
            .execute("DELETE FROM vakt.system_user WHERE id = ANY($1)", &[&gone])
            .await?;
        write_sync_stamp(tx, whole_micros(synced_at)).await?;
        self.tx.commit().await?;
        Ok(written)
    }
}

/// Sets the sync stamp (`crate::source::sync_stamp`); `$1` is the time
/// (`timestamptz`, a `SystemTime`). Run it in the transaction that writes the
/// synced data.
pub const SYNC_STAMP_SQL: &str = "INSERT INTO vakt.sync_stamp (one, synced_at) VALUES (true, $1)
 ON CONFLICT (one) DO UPDATE SET synced_at = EXCLUDED.synced_at";

/// Runs [`SYNC_STAMP_SQL`] in `tx`, the sync's transaction: the stamp commits
/// with the data, or neither does.
pub async fn write_sync_stamp(
    tx: &tokio_postgres::Transaction<'_>,
    at: std::time::SystemTime,
) -> Result<(), DbError> {
    tx.execute(SYNC_STAMP_SQL, &[&at]).await?;
    Ok(())
}
