//! When a file that changed on disk may be read: once its writer has closed it and
//! it has stayed the same over the settle interval, or at once when it was renamed
//! into place.
//!
//! A file rewritten in place passes through states that are valid files but not
//! the file meant: cut at a line break, a YAML list is still a list, and a `.cedar`
//! file cut after its first policy still parses, without the `forbid`s below it.
//! Applying such a state can allow what the finished file denies. So a change is
//! read only when nothing suggests a write is still under way:
//!
//! - the watcher saw no write to the file since its writer last closed it
//!   (inotify's close-after-write), and
//! - two looks at least the settle interval apart saw the same size, modification
//!   time, inode and content hash.
//!
//! A rename into the directory (the way `mv`, most editors and atomic writers
//! finish), or the `..data` symlink swap of a Kubernetes ConfigMap, replaces the
//! whole file in one step: it is read at once. A writer that pauses with the file
//! closed cannot be told from a finished one; `--data-manifest` is for that.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Size, modification time (seconds, nanoseconds) and inode.
pub(crate) type Stamp = (u64, i64, i64, u64);

/// A file as one look saw it: its stamp and content hash, or absent.
pub(crate) type State = Option<(Stamp, [u8; 32])>;

/// What the watcher saw writers do; written by the watcher's thread, read by the
/// follower. Never touched on the request path.
#[derive(Default)]
pub(crate) struct Writers(Mutex<Seen>);

#[derive(Default)]
struct Seen {
    /// Written to since their writer last closed them.
    open: HashSet<PathBuf>,
    /// Renamed into place since last applied, and not written to since.
    placed: HashSet<PathBuf>,
    /// A ConfigMap's `..data` link was swapped: every file was replaced at once.
    swapped: bool,
    /// Some directory could not be watched: what is seen of writers is not the
    /// whole story, so only the settle check counts.
    blind: bool,
}

impl Writers {
    /// Takes note of one watcher event.
    pub(crate) fn observe(&self, e: &notify::Event) {
        use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
        let Ok(mut seen) = self.0.lock() else { return };
        if e.need_rescan() {
            // Events were lost (the kernel's queue overflowed), a close among
            // them perhaps: no file can be known to be open any more. The settle
            // check still applies to every change.
            seen.open.clear();
            tracing::warn!("file events were lost; changes are read once they settle");
            return;
        }
        for p in &e.paths {
            let swap = p.file_name().is_some_and(|n| n == "..data");
            match e.kind {
                // `Both` names the old path first: only the last is the new name.
                EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                    if Some(p) == e.paths.last() =>
                {
                    if swap {
                        seen.swapped = true;
                    }
                    seen.open.remove(p);
                    seen.placed.insert(p.clone());
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {}
                // Creating a file writes nothing yet (and a link made with `ln`
                // is whole at once); the first write, or the truncation of an
                // existing file, reports a modification.
                EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
                    seen.placed.remove(p);
                    seen.open.insert(p.clone());
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    seen.open.remove(p);
                }
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                    seen.open.remove(p);
                    seen.placed.remove(p);
                }
                _ => {}
            }
        }
    }

    /// Some directory could not be watched: from now on only the settle check
    /// counts.
    pub(crate) fn blind(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.blind = true;
        }
    }

    fn is_blind(&self) -> bool {
        self.0.lock().map_or(true, |s| s.blind)
    }

    fn is_open(&self, p: &Path) -> bool {
        let p = absolute(p);
        self.0.lock().is_ok_and(|s| s.open.contains(&*p))
    }

    fn is_placed(&self, p: &Path) -> bool {
        let p = absolute(p);
        self.0
            .lock()
            .is_ok_and(|s| s.swapped || s.placed.contains(&*p))
    }

    /// Whether a file may be being written: one is open for writing, or some
    /// directory is not watched (so writes may go unseen). Only then are events
    /// gathered a moment before looking; a rename into place, a close or a
    /// removal is looked at at once.
    pub(crate) fn writing(&self) -> bool {
        !self.0.lock().is_ok_and(|s| !s.blind && s.open.is_empty())
    }

    /// The changes seen so far are applied: renames are forgotten.
    pub(crate) fn applied(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.placed.clear();
            s.swapped = false;
        }
    }
}

/// `p` as the watcher names it: the watcher makes a relative directory absolute
/// (against the working directory), so a file read from `--data ./data` is
/// looked up by its absolute path, or its rename would go unseen and it would
/// wait to settle.
fn absolute(p: &Path) -> std::borrow::Cow<'_, Path> {
    if p.is_absolute() {
        std::borrow::Cow::Borrowed(p)
    } else {
        std::path::absolute(p).map_or(std::borrow::Cow::Borrowed(p), std::borrow::Cow::Owned)
    }
}

/// Whether a change may be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ready,
    /// Written to and not yet closed by its writer.
    Open,
    /// Changed within the settle interval; look again at this time.
    Settling(Instant),
}

/// The settle check: each changed file as first seen in its current state.
pub(crate) struct Settle {
    interval: Duration,
    first_seen: HashMap<PathBuf, (State, Instant)>,
}

impl Settle {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            first_seen: HashMap::new(),
        }
    }

    /// Whether `path`, which differs from what is applied and is now `state`, may
    /// be read. `writers` is `None` when no watcher runs (only the settle check
    /// then applies).
    pub(crate) fn verdict(
        &mut self,
        path: &Path,
        state: &State,
        writers: Option<&Writers>,
        now: Instant,
    ) -> Verdict {
        if let Some(w) = writers.filter(|w| !w.is_blind()) {
            if w.is_open(path) {
                self.first_seen.remove(path);
                return Verdict::Open;
            }
            if state.is_some() && w.is_placed(path) {
                return Verdict::Ready;
            }
        }
        match self.first_seen.get(path) {
            Some((seen, at)) if seen == state => {
                let due = *at + self.interval;
                if now >= due {
                    Verdict::Ready
                } else {
                    Verdict::Settling(due)
                }
            }
            _ => {
                self.first_seen.insert(path.to_path_buf(), (*state, now));
                if self.interval.is_zero() {
                    Verdict::Ready
                } else {
                    Verdict::Settling(now + self.interval)
                }
            }
        }
    }

    /// Every pending change was applied (or undone): start afresh.
    pub(crate) fn clear(&mut self) {
        self.first_seen.clear();
    }
}

/// The policy and schema files of a source whose data is elsewhere (a
/// database): whether what changed since they were last read is whole.
pub(crate) struct RuleFiles {
    settle: Settle,
    writers: Option<std::sync::Arc<Writers>>,
    /// Each file's content hash when last read.
    read: HashMap<PathBuf, [u8; 32]>,
}

impl RuleFiles {
    pub(crate) fn new(
        settle: Duration,
        writers: Option<std::sync::Arc<Writers>>,
        now: &[(PathBuf, State)],
    ) -> Self {
        let mut r = Self {
            settle: Settle::new(settle),
            writers,
            read: HashMap::new(),
        };
        r.accept(now);
        r
    }

    /// `Ok` when every file in `now` that differs from what was last read is
    /// whole; otherwise when to look again (`None`: at the next event).
    pub(crate) fn whole(&mut self, now: &[(PathBuf, State)]) -> Result<(), Option<Instant>> {
        let at = Instant::now();
        let mut again: Result<(), Option<Instant>> = Ok(());
        let gone = self
            .read
            .keys()
            .filter(|p| !now.iter().any(|(q, _)| q == *p))
            .map(|p| (p.clone(), None));
        let changed: Vec<(PathBuf, State)> = now
            .iter()
            .filter(|(p, s)| self.read.get(p) != s.map(|(_, h)| h).as_ref())
            .cloned()
            .chain(gone.collect::<Vec<_>>())
            .collect();
        for (p, s) in &changed {
            match self.settle.verdict(p, s, self.writers.as_deref(), at) {
                Verdict::Ready => {}
                Verdict::Open => again = Err(again.err().flatten()),
                Verdict::Settling(due) => {
                    let earlier = again.err().flatten().map_or(due, |d: Instant| d.min(due));
                    again = Err(Some(earlier));
                }
            }
        }
        again
    }

    /// Each file's content hash as last accepted.
    pub(crate) fn read_hashes(&self) -> HashMap<PathBuf, [u8; 32]> {
        self.read.clone()
    }

    /// The files in `now` were read.
    pub(crate) fn accept(&mut self, now: &[(PathBuf, State)]) {
        self.read = now
            .iter()
            .filter_map(|(p, s)| s.map(|(_, h)| (p.clone(), h)))
            .collect();
        self.settle.clear();
        if let Some(w) = &self.writers {
            w.applied();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, DataChange, EventKind, ModifyKind, RenameMode};

    fn event(kind: EventKind, p: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(p))
    }

    #[test]
    fn a_file_settles_only_after_two_equal_looks() {
        let mut s = Settle::new(Duration::from_millis(200));
        let t0 = Instant::now();
        let a: State = Some(((1, 2, 3, 4), [1; 32]));
        let b: State = Some(((2, 2, 3, 4), [2; 32]));
        let p = Path::new("/d/e.yaml");
        assert!(matches!(s.verdict(p, &a, None, t0), Verdict::Settling(_)));
        assert!(matches!(
            s.verdict(p, &a, None, t0 + Duration::from_millis(100)),
            Verdict::Settling(_)
        ));
        // Changed again: the interval starts over.
        assert!(matches!(
            s.verdict(p, &b, None, t0 + Duration::from_millis(250)),
            Verdict::Settling(_)
        ));
        assert_eq!(
            s.verdict(p, &b, None, t0 + Duration::from_millis(460)),
            Verdict::Ready
        );
    }

    #[test]
    fn a_file_open_for_writing_waits_for_its_close_and_a_rename_does_not() {
        let w = Writers::default();
        let mut s = Settle::new(Duration::from_millis(200));
        let t0 = Instant::now();
        let st: State = Some(((1, 2, 3, 4), [1; 32]));
        let p = Path::new("/d/e.yaml");
        w.observe(&event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            "/d/e.yaml",
        ));
        // Unchanged for far longer than the interval, but still open.
        assert_eq!(s.verdict(p, &st, Some(&w), t0), Verdict::Open);
        assert_eq!(
            s.verdict(p, &st, Some(&w), t0 + Duration::from_secs(5)),
            Verdict::Open
        );
        w.observe(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/d/e.yaml",
        ));
        let t1 = t0 + Duration::from_secs(6);
        assert!(matches!(
            s.verdict(p, &st, Some(&w), t1),
            Verdict::Settling(_)
        ));
        assert_eq!(
            s.verdict(p, &st, Some(&w), t1 + Duration::from_millis(200)),
            Verdict::Ready
        );
        // Renamed into place: at once.
        let q = Path::new("/d/f.yaml");
        w.observe(&event(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            "/d/f.yaml",
        ));
        assert_eq!(s.verdict(q, &st, Some(&w), t1), Verdict::Ready);
        // A file named relative to the working directory: the watcher names it
        // by its absolute path.
        let rel = Path::new("some-dir/g.yaml");
        w.observe(
            &notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
                .add_path(std::env::current_dir().unwrap().join(rel)),
        );
        assert_eq!(s.verdict(rel, &st, Some(&w), t1), Verdict::Ready);
        // ...unless written to after the rename.
        w.observe(&event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            "/d/f.yaml",
        ));
        assert_eq!(s.verdict(q, &st, Some(&w), t1), Verdict::Open);
    }
}
