//! Data from PostgreSQL, shared by many sidecars: the world read from one
//! consistent snapshot, then followed change by change through the change feed.
//!
//! # How the feed stays gap-free
//!
//! Triggers (see `migrations/0001_world.sql`) record the key of every written
//! record with the writer's transaction id. Transaction ids are handed out at a
//! transaction's first write, not at its commit, so "everything after id 42" would
//! miss a transaction 41 that commits later. The position is therefore a whole
//! `pg_snapshot` (`xmin:xmax:in-flight ids`). Each poll runs in one REPEATABLE READ
//! transaction: it takes a newer snapshot, selects the change rows of exactly the
//! transactions visible now but not at the position (`pg_visible_in_snapshot`),
//! and reads those records again under the new snapshot. Every committed
//! transaction becomes visible between exactly one pair of positions, so each
//! poll moves the world from one consistent database state to a later one, with no
//! change missed or applied twice, whatever order transactions commit in.
//!
//! LISTEN/NOTIFY wakes the follower at once after a commit; a poll every
//! interval is the heartbeat that confirms a quiet database is still current.
//!
//! # How a lost change is noticed
//!
//! The feed is complete only while its rows stay and its triggers fire. Roles that
//! write the world cannot touch either (`migrations/0002_roles_and_feed_guard.sql`),
//! but an owner can, and a database can be restored. So each poll also reads a
//! [`Guard`] in its snapshot: the cluster and database, the feed's epoch (moved by
//! a TRUNCATE, UPDATE or DELETE of recent change rows and by a bulk load), and the
//! catalogue's state of the feed's tables, triggers and trigger functions. When
//! any differs from the guard read with the world, the world is read again whole;
//! while a feed trigger is disabled or missing, following stops (and the data ages
//! towards `--max-staleness`). A position therefore never passes a transaction
//! whose changes were not applied, and `min_data_sequence` means what it says.
//!
//! # The sync stamp
//!
//! `vakt altinn sync` writes the time of its last successful read of Altinn into
//! the one row of `vakt.sync_stamp` (migration 4) in the transaction that writes
//! the data. Every poll and every whole read takes it in the same statement that
//! fixes its snapshot, so a snapshot's stamp is the one committed with its data,
//! whatever the feed says; the feed's rows for it only wake the follower.
//!
//! # Layout
//!
//! - `migrate`: the schema's migrations and the version check.
//! - `read`: reading tables, whole or by key, into changes to a world.
//! - `write`: writing a whole world into the tables (`vakt db import`).
//! - `follow`: connecting, polling, reconnecting; the follower task.

pub mod migrate;
mod read;
pub mod write;

mod follow;
pub use follow::follow;

use crate::rules::snapshot::{DataVersion, Rules, Snapshot};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel, NoTls, Transaction};

/// The default `--max-staleness` for a database source: ten heartbeats missed.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(10);

/// How long one poll or load may take before the connection is given up as dead.
const POLL_TIMEOUT: Duration = Duration::from_secs(15);

/// A database to read the world from, as given by a `postgres://` URL.
#[derive(Clone, PartialEq)]
pub struct Database {
    config: tokio_postgres::Config,
    /// The URL without its password, for logs and the status call.
    shown: String,
}

impl Database {
    /// Whether `s` names a database rather than a directory.
    pub fn is_url(s: &str) -> bool {
        s.starts_with("postgres://") || s.starts_with("postgresql://")
    }
}

impl std::str::FromStr for Database {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !Self::is_url(s) {
            return Err("a database URL starts with postgres:// or postgresql://".into());
        }
        let mut config: tokio_postgres::Config = s.parse().map_err(
            |e: tokio_postgres::Error| match std::error::Error::source(&e) {
                // The name of an unknown parameter may be a piece of a password
                // that holds an unencoded `&`: it is not repeated.
                Some(why) if why.to_string().starts_with("unknown option") => {
                    format!("{e}: an unknown query parameter (a value that holds `&`, `=` or `@` must be percent-encoded)")
                }
                Some(why) => format!("{e}: {why}"),
                None => e.to_string(),
            },
        )?;
        // The URL is split at its first `@`, as libpq does: a password with an
        // unencoded `@` leaves its tail in the host name, where it would be shown
        // and looked up. No host name holds `@`, so such a URL is refused.
        let split_password = config.get_hosts().iter().any(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.contains('@'),
            tokio_postgres::config::Host::Unix(p) => p.to_string_lossy().contains('@'),
        });
        if split_password {
            return Err(
                "the host name holds `@`: a user name or password that holds `@` must write it as %40"
                    .into(),
            );
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("vakt");
        }
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(h, p)| match h {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                tokio_postgres::config::Host::Unix(p2) => format!("{}:{p}", p2.display()),
            })
            .collect();
        let shown = format!(
            "postgres://{}{}/{}",
            config
                .get_user()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            hosts.join(","),
            config.get_dbname().unwrap_or("")
        );
        Ok(Self { config, shown })
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the database has no Vakt schema; run `vakt db migrate` first")]
    NotMigrated,
    #[error("the change feed cannot be followed: {0}; an owner must restore it (the world is then read again whole)")]
    FeedUnsafe(String),
    #[error("the database's Vakt schema is version {found}, this binary needs {needed}; run `vakt db migrate`")]
    OldSchema { found: i64, needed: i64 },
    #[error("the database's Vakt schema is version {found}, newer than this binary knows ({known}); upgrade Vakt")]
    NewerSchema { found: i64, known: i64 },
    #[error("migration {version} ({name}) was changed after it was applied")]
    MigrationChanged { version: i64, name: &'static str },
    #[error("connected to a standby; Vakt follows the primary (a standby's snapshots do not list running transactions)")]
    Standby,
    #[error("the database connection closed")]
    Closed,
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the data in the database fails Vakt's checks:\n{}", .0.join("\n"))]
    Data(Vec<String>),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A PostgreSQL error with the server's message and detail, when there is one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(c) = db.constraint() {
                s.push_str(&format!(" [constraint {c}]"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    }
}

/// A connection, and a wake-up for each committed change the database announces.
pub(crate) struct Connection {
    pub client: Client,
    pub wake: Arc<tokio::sync::Notify>,
    /// The poll's statements, prepared once on this connection.
    pub statements: Statements,
    driver: tokio::task::JoinHandle<()>,
}

/// Statements prepared on one connection, by their text. A poll runs the same
/// few statements a hundred times a second under a stream of changes; prepared,
/// each is one round trip (bind and execute) where an unnamed one is two (parse
/// and describe, then bind and execute), and the database plans it once per
/// connection rather than at every poll. The texts are a fixed set (the poll's
/// and `read::changes`'s), so the map stays small.
#[derive(Default)]
pub(crate) struct Statements(std::collections::HashMap<String, tokio_postgres::Statement>);

impl Statements {
    /// `sql` prepared (on the first use, within `tx`).
    async fn get(
        &mut self,
        tx: &Transaction<'_>,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, DbError> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = tx.prepare(sql).await?;
        self.0.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects, checks the schema version, and listens for the change feed's
/// wake-ups.
pub(crate) async fn connect(db: &Database) -> Result<Connection, DbError> {
    let (client, mut conn) = db.config.connect(NoTls).await?;
    let wake = Arc::new(tokio::sync::Notify::new());
    let notify = wake.clone();
    // Driving the connection ourselves is how notifications are received; a
    // notification is only a wake-up, the poll reads the truth.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => notify.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    // Wake the follower so it notices the closed connection now.
                    notify.notify_one();
                    break;
                }
            }
        }
    });
    let c = Connection {
        client,
        wake,
        statements: Statements::default(),
        driver,
    };
    migrate::check(&c.client).await?;
    c.client.batch_execute("LISTEN vakt_feed").await?;
    Ok(c)
}

/// Connects without listening: for commands (`vakt db ...`).
pub async fn connect_plain(db: &Database) -> Result<Client, DbError> {
    let (client, conn) = db.config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A consistent read: one REPEATABLE READ, READ ONLY transaction.
async fn snapshot_tx(client: &mut Client) -> Result<Transaction<'_>, DbError> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// A position in the database's history: the text of a `pg_snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    text: String,
    xmax: u64,
    in_flight: Vec<u64>,
}

impl Position {
    fn parse(text: String) -> Option<Self> {
        let mut parts = text.split(':');
        let _xmin: u64 = parts.next()?.parse().ok()?;
        let xmax: u64 = parts.next()?.parse().ok()?;
        let in_flight = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<u64>, _>>()
                .ok()?,
        };
        Some(Self {
            text,
            xmax,
            in_flight,
        })
    }

    /// The data sequence of this position: every transaction with an id up to it
    /// is in the data, except those in flight.
    fn sequence(&self) -> u64 {
        self.xmax.saturating_sub(1)
    }
}

/// The world in PostgreSQL, followed from a position.
pub struct PostgresSource {
    db: Database,
    /// Where the serving world stands.
    position: Position,
    /// The feed's guard, read with the world: when a poll finds another, changes
    /// may be missing and the world is read again whole.
    guard: Guard,
    /// Names the data for the revision: the cluster and the position of the last
    /// change applied.
    identity: String,
    /// The sync stamp at the position (`vakt.sync_stamp`), if there is one.
    synced_at: Option<SystemTime>,
}

const HEAD: &str = "SELECT pg_current_snapshot()::text,
       pg_is_in_recovery(),
       (SELECT pruned_max FROM vakt.feed_meta) < pg_snapshot_xmin($1::text::pg_snapshot),
       pg_snapshot_xmax(pg_current_snapshot()) >= pg_snapshot_xmax($1::text::pg_snapshot),
       (SELECT synced_at FROM vakt.sync_stamp)";
/// [`HEAD`], [`CLUSTER`] and [`GUARD`] in one statement (`$1` the position, `$2`
/// the feed's tables): what a poll reads before it trusts the feed, in one round
/// trip. Columns 0–4 are [`HEAD`]'s, 5 [`CLUSTER`]'s, 6–8 [`GUARD`]'s.
static POLL_HEAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{HEAD},\n       ({CLUSTER}),\n       g.*\n  FROM ({}) g",
        GUARD.replace("$1", "$2")
    )
});
const CHANGED: &str = "SELECT kind, key, sub, max(xid)::text FROM vakt.feed_change
 WHERE xid >= pg_snapshot_xmin($1::text::pg_snapshot)
   AND NOT pg_visible_in_snapshot(xid, $1::text::pg_snapshot)
 GROUP BY kind, key, sub";
/// The cluster (a restore or failover changes its identifier, a restart its start
/// time) and the database in it (a dump restored into a new database has another
/// oid).
const CLUSTER: &str = "SELECT system_identifier::text || '/' || pg_postmaster_start_time()::text
       || '/' || (SELECT oid FROM pg_database WHERE datname = current_database())::text
  FROM pg_control_system()";
/// The feed's guard, `$1` the tables the feed covers: see [`Guard`].
///
/// Every poll runs it, so it reads the catalogue by index, never a whole
/// catalogue table: the tables by oid, their triggers by table, and the
/// functions of schema vakt through `pg_depend` (PostgreSQL records every
/// function's dependency on its schema when it is created or moved into one;
/// `pg_proc` has no index on the schema, and filtering it by
/// `to_regnamespace(...)`, a stable function, called it once per row of
/// `pg_proc`: 0.8 ms of the backend's 2 ms a poll).
const GUARD: &str = "SELECT
  (SELECT instance::text || '/' || epoch::text FROM vakt.feed_epoch),
  md5(coalesce((SELECT string_agg(concat_ws(',', c.oid, c.xmin, c.relfilenode, t.oid, t.xmin,
                                   t.tgenabled, p.oid, p.xmin), ';' ORDER BY c.oid, t.oid)
     FROM unnest($1::text[] || ARRAY['feed_change', 'feed_meta', 'feed_epoch']) x
     JOIN pg_class c ON c.oid = to_regclass(format('vakt.%I', x))
     LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
     LEFT JOIN pg_proc p ON p.oid = t.tgfoid), '')
      -- Every function of schema vakt too: the ones the triggers call, those
      -- that move the epoch or prune the feed, and any new one (in the
      -- triggers' search path, one could take a call over).
      || '|' || coalesce((SELECT string_agg(concat_ws(',', p.oid, p.xmin), ';' ORDER BY p.oid)
                            FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
                           WHERE d.refclassid = 'pg_namespace'::regclass
                             AND d.refobjid = (SELECT to_regnamespace('vakt'))::oid
                             AND d.refobjsubid = 0 AND d.classid = 'pg_proc'::regclass), '')),
  (SELECT string_agg(format('trigger %s on vakt.%s is %s', e.tg, e.tbl,
                            CASE WHEN t.tgenabled IS NULL THEN 'missing' ELSE 'disabled' END),
                     '; ' ORDER BY e.tbl, e.tg)
     FROM (SELECT x AS tbl, unnest(ARRAY['feed', 'feed_truncate']) AS tg FROM unnest($1::text[]) x
           UNION ALL
           SELECT 'feed_change', unnest(ARRAY['feed_truncated', 'feed_updated', 'feed_deleted'])) e
     LEFT JOIN pg_trigger t
       ON t.tgrelid = to_regclass(format('vakt.%I', e.tbl)) AND t.tgname = e.tg
    WHERE t.tgenabled IS DISTINCT FROM 'A')";

/// What says that the change feed still holds every change since a position: read
/// in the same snapshot as the world or the poll, and compared on every poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Guard {
    /// [`CLUSTER`]: the cluster, its start, and the database.
    cluster: String,
    /// The database's id and the feed's epoch (`vakt.feed_epoch`), which moves
    /// whenever change rows may be missing.
    epoch: Option<String>,
    /// A hash over the catalogue rows of the feed's and the world's tables, their
    /// triggers and trigger functions: disabling a trigger, even for a moment
    /// inside one transaction, replacing a function, or rewriting a table changes
    /// it (every ALTER writes a new row version).
    machinery: Option<String>,
}

impl Guard {
    /// Reads the guard within `tx` (its snapshot); an error when the feed cannot
    /// be followed at all.
    async fn read(tx: &Transaction<'_>) -> Result<Self, DbError> {
        let cluster: String = tx.query_one(CLUSTER, &[]).await?.get(0);
        let tables: Vec<&str> = write::TABLES.to_vec();
        let r = tx.query_one(GUARD, &[&tables]).await?;
        Self::from_row(cluster, &r, 0)
    }

    /// The guard from [`GUARD`]'s columns in `r`, starting at `at`.
    fn from_row(cluster: String, r: &tokio_postgres::Row, at: usize) -> Result<Self, DbError> {
        if let Some(why) = r.get::<_, Option<String>>(at + 2) {
            return Err(DbError::FeedUnsafe(why));
        }
        let epoch: Option<String> = r.get(at);
        if epoch.is_none() {
            return Err(DbError::FeedUnsafe(
                "vakt.feed_epoch holds no row".to_owned(),
            ));
        }
        Ok(Self {
            cluster,
            epoch,
            machinery: r.get(at + 1),
        })
    }

    /// Why the world must be read again whole, when `now` differs from `self`.
    fn moved(&self, now: &Self) -> Option<&'static str> {
        if self.cluster != now.cluster {
            Some("the database restarted, or is another database or cluster now (a restore or failover)")
        } else if self.epoch != now.epoch {
            Some("the change feed's epoch moved (change rows were truncated, updated or deleted, or a bulk load)")
        } else if self.machinery != now.machinery {
            Some("the feed's triggers, tables or functions of schema vakt were altered")
        } else {
            None
        }
    }
}

/// What a poll found.
pub(crate) enum Polled {
    /// Nothing followed changed; the position moved on.
    Quiet,
    /// Changes applied: the snapshot to serve, and how many records changed.
    Applied(Snapshot, usize),
    /// Read again whole (the feed could not be continued, or a whole table
    /// changed): the snapshot to serve, and why.
    Reloaded(Snapshot, &'static str),
    /// The changes fail Vakt's checks: nothing applied, the position stays.
    Refused {
        problems: Vec<String>,
        newest_xid: Option<String>,
    },
}

impl PostgresSource {
    /// Connects, reads the whole world from one snapshot, and builds the first
    /// snapshot to serve with `rules`.
    pub async fn load(db: Database, rules: Arc<Rules>) -> Result<(Self, Snapshot), DbError> {
        let mut conn = connect(&db).await?;
        let (world, position, guard, synced_at) = tokio::time::timeout(
            POLL_TIMEOUT * 8,
            read_whole(&db, &mut conn.client, rules.clone()),
        )
        .await
        .map_err(|_| DbError::Timeout(POLL_TIMEOUT * 8))??;
        let mut source = Self {
            db,
            position: position.clone(),
            guard,
            identity: String::new(),
            synced_at,
        };
        source.changed_at(&position);
        let snapshot = Snapshot::new(rules, world, source.data_version()).with_synced_at(synced_at);
        Ok((source, snapshot))
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    fn changed_at(&mut self, p: &Position) {
        let mut h = Sha256::new();
        h.update(self.guard.cluster.as_bytes());
        h.update([0]);
        h.update(p.text.as_bytes());
        self.identity = hex::encode(&h.finalize()[..8]);
    }

    fn data_version(&self) -> DataVersion {
        DataVersion {
            sequence: self.position.sequence(),
            in_flight: self.position.in_flight.clone().into(),
            identity: self.identity.clone(),
        }
    }

    /// After a reconnect: whether this is still the cluster the position belongs
    /// to (a restore or failover starts history again).
    pub(crate) async fn same_cluster(&self, client: &Client) -> Result<bool, DbError> {
        let now: String = client.query_one(CLUSTER, &[]).await?.get(0);
        Ok(now == self.guard.cluster)
    }

    /// Reads the whole world again, under `rules` (new rules, or a reload the feed
    /// asked for).
    pub(crate) async fn reload(
        &mut self,
        client: &mut Client,
        rules: Arc<Rules>,
    ) -> Result<Snapshot, DbError> {
        let (world, position, guard, synced_at) = tokio::time::timeout(
            POLL_TIMEOUT * 8,
            read_whole(&self.db, client, rules.clone()),
        )
        .await
        .map_err(|_| DbError::Timeout(POLL_TIMEOUT * 8))??;
        self.guard = guard;
        self.position = position.clone();
        self.synced_at = synced_at;
        self.changed_at(&position);
        Ok(Snapshot::new(rules, world, self.data_version()).with_synced_at(synced_at))
    }

    /// One poll: what changed since the position, applied to `current`.
    pub(crate) async fn poll(
        &mut self,
        conn: &mut Connection,
        current: &Snapshot,
    ) -> Result<Polled, DbError> {
        tokio::time::timeout(POLL_TIMEOUT, self.poll_inner(conn, current))
            .await
            .map_err(|_| DbError::Timeout(POLL_TIMEOUT))?
    }

    /// Three round trips when nothing changed, four otherwise: the transaction
    /// begun; the head (snapshot, guard) and the feed's rows since the position,
    /// sent together; the changed records, every kind's query sent together; the
    /// commit.
    async fn poll_inner(
        &mut self,
        conn: &mut Connection,
        current: &Snapshot,
    ) -> Result<Polled, DbError> {
        let Connection {
            client, statements, ..
        } = conn;
        let tx = snapshot_tx(client).await?;
        let head_sql = statements.get(&tx, &POLL_HEAD).await?;
        let changed_sql = statements.get(&tx, CHANGED).await?;
        let tables: Vec<&str> = write::TABLES.to_vec();
        // Sent together: the first statement fixes the transaction's snapshot,
        // so the feed's rows are read in the snapshot the head describes. They
        // are used only once the head says the feed can be trusted.
        let (head_params, changed_params): ([&(dyn ToSql + Sync); 2], [&(dyn ToSql + Sync); 1]) =
            ([&self.position.text, &tables], [&self.position.text]);
        let (head, rows) = tokio::try_join!(
            tx.query_one(&head_sql, &head_params),
            tx.query(&changed_sql, &changed_params),
        )?;
        if head.get::<_, bool>(1) {
            return Err(DbError::Standby);
        }
        let at = Position::parse(head.get(0)).ok_or_else(|| {
            DbError::Data(vec![format!(
                "unreadable pg_snapshot {:?}",
                head.get::<_, String>(0)
            )])
        })?;
        // Before anything of the feed is trusted: is it still the feed the
        // position belongs to?
        let guard = Guard::from_row(head.get(5), &head, 6)?;
        if let Some(why) = self.guard.moved(&guard) {
            drop(tx);
            return Ok(Polled::Reloaded(
                self.reload(client, current.rules().clone()).await?,
                why,
            ));
        }
        let (complete, forward): (bool, bool) = (head.get(2), head.get(3));
        // The stamp committed with the data at `at`.
        let synced_at: Option<SystemTime> = head.get(4);
        if !complete || !forward {
            drop(tx);
            let why = if forward {
                "changes were pruned from the feed before they were read"
            } else {
                "the database's history went back (a restore or failover)"
            };
            return Ok(Polled::Reloaded(
                self.reload(client, current.rules().clone()).await?,
                why,
            ));
        }
        let mut changed = read::Changed::default();
        for r in rows {
            changed.add(r.get(0), r.get(1), r.get(2));
            let xid: String = r.get(3);
            let newer = changed
                .newest_xid
                .as_ref()
                .is_none_or(|n| n.parse::<u64>().ok() < xid.parse::<u64>().ok());
            if newer {
                changed.newest_xid = Some(xid);
            }
        }
        if changed.whole {
            drop(tx);
            return Ok(Polled::Reloaded(
                self.reload(client, current.rules().clone()).await?,
                "a whole table changed (a TRUNCATE or a bulk load)",
            ));
        }
        if changed.is_empty() {
            tx.commit().await?;
            self.position = at;
            self.synced_at = synced_at;
            return Ok(Polled::Quiet);
        }
        let delta =
            read::changes(&tx, statements, &changed, &current.world, current.rules()).await?;
        tx.commit().await?;
        let world = delta.and_then(|d| d.apply(&current.world, current.rules()));
        match world {
            Ok(world) => {
                self.position = at.clone();
                self.synced_at = synced_at;
                self.changed_at(&at);
                Ok(Polled::Applied(
                    current
                        .with_world(world, self.data_version())
                        .with_synced_at(synced_at),
                    changed.len(),
                ))
            }
            Err(problems) => Ok(Polled::Refused {
                problems,
                newest_xid: changed.newest_xid,
            }),
        }
    }

    /// The snapshot to serve after a quiet poll moved the position: the same world
    /// at the new data version (with the sync stamp there), or none if neither
    /// moved.
    pub(crate) fn moved(&self, current: &Snapshot) -> Option<Snapshot> {
        let data = self.data_version();
        if self.synced_at != current.synced_at {
            tracing::info!(
                synced_at = ?self.synced_at.map(humantime::format_rfc3339_millis),
                "sync stamp changed; applied"
            );
        } else if data == current.data {
            return None;
        }
        Some(
            current
                .with_world(current.world.clone(), data)
                .with_synced_at(self.synced_at),
        )
    }
}

/// Reads every table from one snapshot and builds the world (off the runtime's
/// threads: a million records take seconds of CPU); with the snapshot's position
/// and the feed's guard in it.
async fn read_whole(
    db: &Database,
    client: &mut Client,
    rules: Arc<Rules>,
) -> Result<(crate::world::World, Position, Guard, Option<SystemTime>), DbError> {
    let tx = snapshot_tx(client).await?;
    // The first statement fixes the transaction's snapshot: every read below sees
    // exactly the transactions this position says.
    let head = tx
        .query_one(
            "SELECT pg_current_snapshot()::text, pg_is_in_recovery(),
                    (SELECT synced_at FROM vakt.sync_stamp)",
            &[],
        )
        .await?;
    if head.get::<_, bool>(1) {
        return Err(DbError::Standby);
    }
    let text: String = head.get(0);
    let synced_at: Option<SystemTime> = head.get(2);
    let position = Position::parse(text.clone())
        .ok_or_else(|| DbError::Data(vec![format!("unreadable pg_snapshot {text:?}")]))?;
    let guard = Guard::read(&tx).await?;
    let started = std::time::Instant::now();
    let rows = read::all_rows(db, &tx).await?;
    tx.commit().await?;
    let read = started.elapsed();
    let world = tokio::task::spawn_blocking(move || read::world(rows, &rules))
        .await
        .map_err(|e| DbError::Data(vec![format!("building the world failed: {e}")]))?
        .map_err(DbError::Data)?;
    tracing::debug!(
        read_ms = read.as_millis() as u64,
        build_ms = (started.elapsed() - read).as_millis() as u64,
        "whole world read"
    );
    Ok((world, position, guard, synced_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_as_data_sequences() {
        let p = Position::parse("773:776:773,775".into()).unwrap();
        assert_eq!(p.sequence(), 775);
        assert_eq!(p.in_flight, [773, 775]);
        let q = Position::parse("775:775:".into()).unwrap();
        assert_eq!(q.sequence(), 774);
        assert!(q.in_flight.is_empty());
        assert!(Position::parse("x:1:".into()).is_none());
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        let db: Database = "postgres://vakt:s3cret@db.example:6543/world"
            .parse()
            .unwrap();
        assert_eq!(db.to_string(), "postgres://vakt@db.example:6543/world");
        assert!(!format!("{db:?}").contains("s3cret"));
        assert!("/var/data".parse::<Database>().is_err());
        let db: Database = "postgres://u:p%40ss@h/db?password=hunter2&sslmode=require"
            .parse()
            .unwrap();
        assert_eq!(db.to_string(), "postgres://u@h:5432/db");
        assert!(!format!("{db:?}").contains("hunter2"));
    }

    #[test]
    fn a_password_with_an_unencoded_at_is_refused_without_showing_it() {
        for url in [
            "postgres://u:pa@ss@h/db",
            "postgres://pa@ss@h/db",
            "postgres://u:pa@ss@h,h2/db",
        ] {
            let why = url.parse::<Database>().unwrap_err();
            assert!(why.contains("%40"), "{why}");
            for piece in ["pa@ss", "ss@h"] {
                assert!(!why.contains(piece), "{piece} in {why}");
            }
        }
        let why = "postgres://h/db?password=hun&ter2=x"
            .parse::<Database>()
            .unwrap_err();
        assert!(!why.contains("ter2"), "{why}");
    }
}
