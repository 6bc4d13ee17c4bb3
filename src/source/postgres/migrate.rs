//! The database schema's migrations, shipped in the binary and applied by
//! `vakt db migrate`; and the check a sidecar makes that the schema is there.

use super::DbError;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// Version, name, SQL. Append only: a migration that has shipped is never edited.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "world",
        include_str!("../../../migrations/0001_world.sql"),
    ),
    (
        2,
        "roles_and_feed_guard",
        include_str!("../../../migrations/0002_roles_and_feed_guard.sql"),
    ),
    (
        3,
        "party_ids",
        include_str!("../../../migrations/0003_party_ids.sql"),
    ),
    (
        4,
        "sync_stamp",
        include_str!("../../../migrations/0004_sync_stamp.sql"),
    ),
    (
        5,
        "unknown_link_role",
        include_str!("../../../migrations/0005_unknown_link_role.sql"),
    ),
];

/// The schema version this binary reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Held while migrating, so sidecars and deploy jobs that start together migrate
/// once: "vakt" in ASCII.
const LOCK_KEY: i64 = 0x7661_6b74;

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Migrations applied now, by version and name.
    pub applied: Vec<(i64, String)>,
    /// The schema version now.
    pub version: i64,
}

/// Applies every migration the database lacks, each in its own transaction, under
/// an advisory lock; then makes sure every package in `packages` is known.
pub async fn migrate<'a>(
    client: &mut Client,
    packages: impl Iterator<Item = &'a str>,
) -> Result<Migrated, DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply_pending(client, packages).await;
    // The lock also goes with the session, should this fail.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply_pending<'a>(
    client: &mut Client,
    packages: impl Iterator<Item = &'a str>,
) -> Result<Migrated, DbError> {
    // Only when missing: CREATE SCHEMA checks the right to create in the database
    // before it looks whether the schema exists, and an owner that migrates after
    // the first migration need not hold that right.
    let schema: bool = client
        .query_one("SELECT to_regnamespace('vakt') IS NOT NULL", &[])
        .await?
        .get(0);
    if !schema {
        client.batch_execute("CREATE SCHEMA vakt").await?;
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS vakt.schema_version (
                 version    bigint PRIMARY KEY,
                 name       text NOT NULL,
                 sha256     text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: std::collections::BTreeMap<i64, String> = client
        .query("SELECT version, sha256 FROM vakt.schema_version", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if let Some(&newest) = applied.keys().next_back() {
        if newest > SCHEMA_VERSION {
            return Err(DbError::NewerSchema {
                found: newest,
                known: SCHEMA_VERSION,
            });
        }
    }
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let sum = hex::encode(Sha256::digest(sql.as_bytes()));
        match applied.get(version) {
            Some(s) if *s == sum => continue,
            Some(_) => {
                return Err(DbError::MigrationChanged {
                    version: *version,
                    name,
                })
            }
            None => {}
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO vakt.schema_version (version, name, sha256) VALUES ($1, $2, $3)",
            &[version, name, &sum],
        )
        .await?;
        tx.commit().await?;
        done.push((*version, (*name).to_owned()));
    }
    let urns: Vec<&str> = packages.collect();
    client
        .execute(
            "INSERT INTO vakt.access_package (urn) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            &[&urns],
        )
        .await?;
    Ok(Migrated {
        applied: done,
        version: SCHEMA_VERSION,
    })
}

/// Fails unless the database holds the schema version this binary reads.
pub async fn check(client: &Client) -> Result<(), DbError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('vakt.schema_version') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Err(DbError::NotMigrated);
    }
    let found: Option<i64> = client
        .query_one("SELECT max(version) FROM vakt.schema_version", &[])
        .await?
        .get(0);
    match found {
        None => Err(DbError::NotMigrated),
        Some(v) if v < SCHEMA_VERSION => Err(DbError::OldSchema {
            found: v,
            needed: SCHEMA_VERSION,
        }),
        Some(v) if v > SCHEMA_VERSION => Err(DbError::NewerSchema {
            found: v,
            known: SCHEMA_VERSION,
        }),
        Some(_) => Ok(()),
    }
}
