//! Where the data comes from, and how fresh it is: the copy built into the binary,
//! files that are watched (`files`), or PostgreSQL (`postgres`), each a
//! [`Source`] that loads the first snapshot and then follows its changes.
//!
//! Every source keeps a [`DataStatus`] that the status call reads and the request
//! path checks against `--max-staleness` with two atomic loads: when the data was
//! last confirmed current, and whether the source is in sync.

pub mod files;
pub mod postgres;
pub(crate) mod settle;
pub mod sync_stamp;

use crate::rules::snapshot::{Rules, Snapshot, SnapshotHandle, SourcePaths, Sources};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the data comes from, loaded, and ready to be followed.
pub enum Source {
    /// The example world built into the binary (policies and schema may still
    /// come from files, which are followed).
    BuiltIn(Box<files::FileSource>),
    /// Data files, followed as they change.
    Files(Box<files::FileSource>),
    /// A PostgreSQL database, followed through its change log; the policies
    /// and schema (files or built in) are followed as files.
    Postgres(Box<postgres::PostgresSource>, SourcePaths),
}

/// Why the first load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The policies, schema or data have problems.
    #[error("{0}")]
    Problems(crate::problem::Problems),
    /// The database could not be read.
    #[error("reading the world from {database}")]
    Database {
        database: String,
        #[source]
        error: postgres::DbError,
    },
    /// The task that read the files stopped.
    #[error("reading the files stopped")]
    Task(#[from] tokio::task::JoinError),
}

/// How a source follows its changes.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// How often files are read again without a change event (`--rescan-interval`).
    pub rescan_interval: Duration,
    /// How often the database is asked for changes without a notification
    /// (`--poll-interval`).
    pub poll_interval: Duration,
    /// How long a file written in place must stay unchanged (`--data-settle`).
    pub settle: Duration,
}

/// How long a start waits for files that keep changing before it reads them as
/// they are.
const START_PATIENCE: Duration = Duration::from_secs(10);

impl Source {
    /// Loads the first snapshot: from `database` when there is one (with the
    /// policies and schema of `paths`), else from the files `paths` names (the
    /// built-in copy for each that names none), once they are whole. `rebuilt`
    /// runs once the snapshot is built (the binary hands memory back).
    pub async fn load(
        paths: SourcePaths,
        database: Option<postgres::Database>,
        settle: Duration,
        rebuilt: fn(),
    ) -> Result<(Self, Snapshot), LoadError> {
        let Some(db) = database else {
            let from_files =
                paths.policies.is_some() || paths.schema.is_some() || paths.data.is_some();
            // `Status.data_source` names where the data comes from: policies from
            // files over the built-in example world are still "built-in" data.
            let data_from_files = paths.data.is_some();
            let (source, snapshot) = tokio::task::spawn_blocking(move || {
                let loaded = if from_files {
                    files::FileSource::load_settled(paths, settle, START_PATIENCE)
                } else {
                    files::FileSource::load(paths)
                };
                rebuilt();
                loaded
            })
            .await?
            .map_err(LoadError::Problems)?;
            let source = Box::new(source);
            return Ok((
                if data_from_files {
                    Self::Files(source)
                } else {
                    Self::BuiltIn(source)
                },
                snapshot,
            ));
        };
        let rule_paths = paths.clone();
        let rules = tokio::task::spawn_blocking(move || {
            Sources::read(&rule_paths).and_then(|s| Rules::build(&s))
        })
        .await?
        .map_err(LoadError::Problems)?;
        tracing::info!(database = %db, "reading the world from the database");
        let database = db.to_string();
        let (source, snapshot) = postgres::PostgresSource::load(db, rules)
            .await
            .map_err(|error| LoadError::Database { database, error })?;
        rebuilt();
        Ok((Self::Postgres(Box::new(source), paths), snapshot))
    }

    /// What the status call names the source: `built-in`, `files` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BuiltIn(_) => "built-in",
            Self::Files(_) => "files",
            Self::Postgres(..) => "postgres",
        }
    }

    /// How old the data may grow when `--max-staleness` is not set: a database
    /// has a heartbeat, files have none to go by.
    pub fn default_max_staleness(&self) -> Option<Duration> {
        match self {
            Self::BuiltIn(_) | Self::Files(_) => None,
            Self::Postgres(..) => Some(postgres::DEFAULT_MAX_STALENESS),
        }
    }

    /// Follows the source until the task is dropped: swaps each new snapshot into
    /// `snapshots`, keeps `status` current, and reads everything again on SIGHUP
    /// (`hangup`). `rebuilt` runs after each full rebuild.
    pub async fn follow(
        self,
        snapshots: Arc<SnapshotHandle>,
        status: Arc<DataStatus>,
        hangup: tokio::signal::unix::Signal,
        how: Follow,
        rebuilt: fn(),
    ) {
        match self {
            Self::BuiltIn(source) | Self::Files(source) => {
                files::follow(
                    *source,
                    snapshots,
                    status,
                    hangup,
                    how.rescan_interval,
                    how.settle,
                    rebuilt,
                )
                .await
            }
            Self::Postgres(source, rules) => {
                postgres::follow(
                    *source,
                    rules,
                    snapshots,
                    status,
                    hangup,
                    (how.poll_interval, how.settle),
                    rebuilt,
                )
                .await
            }
        }
    }
}

/// How a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SyncState {
    /// The data follows its source.
    Live = 0,
    /// The first load is under way.
    Loading = 1,
    /// The source cannot be reached; the last data keeps serving while it is tried
    /// again.
    Reconnecting = 2,
    /// A change failed Vakt's checks; nothing after it is applied, and the last good
    /// data keeps serving until the change is corrected.
    Stopped = 3,
    /// A reload failed; the last good snapshot keeps serving.
    ReloadFailed = 4,
}

impl SyncState {
    /// Every state, for metrics that show which one is current.
    pub const ALL: [Self; 5] = [
        Self::Live,
        Self::Loading,
        Self::Reconnecting,
        Self::Stopped,
        Self::ReloadFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Loading => "loading",
            Self::Reconnecting => "reconnecting",
            Self::Stopped => "stopped",
            Self::ReloadFailed => "reload-failed",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Live,
            1 => Self::Loading,
            2 => Self::Reconnecting,
            3 => Self::Stopped,
            _ => Self::ReloadFailed,
        }
    }
}

/// How the data stands: shared by the source (which writes it) and the server
/// (which reads it on every request and for the status call).
pub struct DataStatus {
    /// What the data comes from, for the status call: `built-in`, `files`, `postgres`.
    pub source: &'static str,
    /// When the data was last confirmed current, in ms since the Unix epoch.
    confirmed_ms: AtomicU64,
    state: AtomicU8,
    /// Change sets applied since start.
    applied: AtomicU64,
    /// The last failure (a reload's problems, a change that failed its checks, a
    /// lost connection), for the status call; never read on the request path.
    last_error: Mutex<Option<String>>,
    /// Reloads refused, and other failures to follow the source, since start.
    reload_failures: AtomicU64,
    sync_failures: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl DataStatus {
    pub fn new(source: &'static str) -> Self {
        Self {
            source,
            confirmed_ms: AtomicU64::new(now_ms()),
            state: AtomicU8::new(SyncState::Live as u8),
            applied: AtomicU64::new(0),
            last_error: Mutex::new(None),
            reload_failures: AtomicU64::new(0),
            sync_failures: AtomicU64::new(0),
        }
    }

    /// The data is current as of now.
    pub fn confirm(&self) {
        self.confirmed_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// How long ago the data was last confirmed current.
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.confirmed_ms.load(Ordering::Relaxed)))
    }

    pub fn state(&self) -> SyncState {
        SyncState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: SyncState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// A change set was applied: the data is current and in sync.
    pub fn applied(&self) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.set_state(SyncState::Live);
        self.confirm();
    }

    /// A change set was applied while other changes still wait to be read: in
    /// sync, but not confirmed current.
    pub fn applied_unconfirmed(&self) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.set_state(SyncState::Live);
    }

    pub fn changes_applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// A failure: a reload refused, or the source could not be followed.
    pub fn fail(&self, state: SyncState, error: String) {
        match state {
            SyncState::ReloadFailed => &self.reload_failures,
            _ => &self.sync_failures,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.set_state(state);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }

    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    pub fn sync_failures(&self) -> u64 {
        self.sync_failures.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// How long change events are gathered before acting on them: an editor's save or
/// a ConfigMap swap is several events. Short, since it is not what keeps a file
/// being written from being read (see `settle`).
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(25);

/// Watches `dirs` for changes to the files Vakt reads; each batch of events sends
/// one message (more are dropped while one is waiting). The watcher must be kept
/// alive; without one (the platform refused), the receiver never yields and the
/// caller's interval is the only check. Tells `writers` (when given) what each event says of the files' writers;
/// events for a file named like `also` (the data manifest) count too.
pub(crate) fn watch(
    dirs: &[std::path::PathBuf],
    writers: Option<std::sync::Arc<settle::Writers>>,
    also: Option<std::ffi::OsString>,
) -> (
    Option<notify::RecommendedWatcher>,
    tokio::sync::mpsc::Receiver<()>,
) {
    use notify::event::{AccessKind, AccessMode, EventKind};
    use notify::Watcher as _;
    let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
    if dirs.is_empty() {
        return (None, rx);
    }
    let told = writers.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(e) = res else { return };
        // Opening and reading (Vakt's own reads among them) change nothing.
        if matches!(
            e.kind,
            EventKind::Access(AccessKind::Open(_) | AccessKind::Close(AccessMode::Read))
        ) {
            return;
        }
        let concerns = |p: &std::path::Path| {
            files::concerns(p) || (also.is_some() && p.file_name() == also.as_deref())
        };
        if e.need_rescan() || e.paths.iter().any(|p| concerns(p)) {
            if let Some(w) = &writers {
                w.observe(&e);
            }
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "file watching unavailable; files are read again every interval");
            return (None, rx);
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch directory; it is read again every interval, and a file written in place is read once it settles");
            if let Some(w) = &told {
                w.blind();
            }
        }
    }
    (Some(watcher), rx)
}
