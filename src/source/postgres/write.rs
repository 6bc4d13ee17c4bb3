//! Writing a whole world into the tables (`vakt db import`): one transaction, so
//! sidecars see the old world or the new one, never a mix; and `COPY`, so a
//! million records take seconds.
//!
//! The row triggers would record every row; the import disables them for its own
//! transaction instead, which only an owner of the tables can (a member of
//! `vakt_owner`, or a superuser), and moves the feed's epoch, so every sidecar reads
//! the world again whole once it commits. No session setting can do this.

use super::DbError;
use crate::world::{ClientScope, World};
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
        tx.execute(crate::source::sync_stamp::SQL, &[&at]).await?;
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
    let mut n = copy(
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
    n += copy(
        tx,
        "system_user_package",
        &[("system_user_id", Type::TEXT), ("package", Type::TEXT)],
        world.system_users().flat_map(|s| {
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
        world.system_users().flat_map(|s| {
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
        world.system_users().flat_map(|s| {
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
                            Box::new(role.to_string()),
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
        world.system_users().flat_map(|s| {
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
