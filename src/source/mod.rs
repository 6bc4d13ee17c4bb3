//! Where the data comes from, and how fresh it is: the copy built into the binary,
//! files that are watched (`files`), or PostgreSQL (`postgres`).
//!
//! Every source keeps a [`DataStatus`] that the status call reads and the request
//! path checks against `--max-staleness` with two atomic loads: when the data was
//! last confirmed current, and whether the source is in sync.

pub mod files;
pub mod postgres;
pub(crate) mod settle;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
