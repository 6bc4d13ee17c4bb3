//! Data from files, followed as they change.
//!
//! Each file read is remembered by its content hash (and, for data files, the keys
//! of the records it holds). A refresh reads again only files whose size, time or
//! inode moved, and compares contents: a touched but unchanged file changes
//! nothing. Changed data files are applied to the serving world as a difference
//! (their old records out, their new ones in, every reference checked); a changed
//! policy or schema file rebuilds the whole snapshot. Either way the new snapshot is
//! built off the request path and swapped in whole, and an invalid change leaves
//! the last good one serving.

use crate::problem::{read_dir_files, Problem, Problems, SourceFile};
use crate::snapshot::{DataVersion, Snapshot, SourcePaths, Sources};
use crate::world::{RecordKey, WorldBuilder};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What is known of one data file.
#[derive(Debug, Clone)]
struct Tracked {
    /// Size, modification time and inode when last read.
    stamp: (u64, i64, i64, u64),
    hash: [u8; 32],
    text_len: usize,
    keys: Vec<RecordKey>,
    /// A change to the data is read by rebuilding the world: the file holds
    /// entities in Cedar's own format, or adds to system users of other files.
    cedar: bool,
}

/// The files a snapshot was built from, to follow as they change.
pub struct FileSource {
    paths: SourcePaths,
    /// Hash of every policy and schema file read.
    rules: [u8; 32],
    /// Data files by path.
    data: BTreeMap<PathBuf, Tracked>,
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// Nothing changed.
    Unchanged,
    /// Data files changed and were applied as a difference.
    Data { files: Vec<String> },
    /// Policies or schema changed (or files in Cedar's own format): rebuilt whole.
    Rebuilt,
}

fn stamp(m: &std::fs::Metadata) -> (u64, i64, i64, u64) {
    (m.len(), m.mtime(), m.mtime_nsec(), m.ino())
}

fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn is_data_file(n: &str) -> bool {
    n.ends_with(".json") || n.ends_with(".yaml") || n.ends_with(".yml")
}

impl FileSource {
    /// Reads every file and builds the first snapshot.
    pub fn load(paths: SourcePaths) -> Result<(Self, Snapshot), Problems> {
        let sources = Sources::read(&paths)?;
        let (snapshot, keys) = Snapshot::build_keyed(&sources)?;
        let mut data = BTreeMap::new();
        if paths.data.is_some() {
            for (f, (_, keys, cedar)) in sources.data.iter().zip(keys) {
                let stamp = std::fs::metadata(&f.name)
                    .map(|m| stamp(&m))
                    .unwrap_or_default();
                data.insert(
                    PathBuf::from(&f.name),
                    Tracked {
                        stamp,
                        hash: hash(&f.text),
                        text_len: f.text.len(),
                        keys,
                        cedar,
                    },
                );
            }
        }
        let source = Self {
            rules: rules_hash(&sources),
            paths,
            data,
        };
        let snapshot = if source.paths.data.is_some() {
            let data = DataVersion {
                identity: source.identity(),
                ..snapshot.data.clone()
            };
            snapshot.with_world(snapshot.world.clone(), data)
        } else {
            snapshot
        };
        Ok((source, snapshot))
    }

    /// The directories to watch.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.paths.dirs()
    }

    /// Looks at the files again. Returns the snapshot to serve when something
    /// changed; every problem otherwise (the current snapshot keeps serving).
    /// `force` rebuilds whole even if nothing seems to have changed (SIGHUP).
    pub fn refresh(
        &mut self,
        current: &Snapshot,
        force: bool,
    ) -> Result<(Refreshed, Option<Snapshot>), Problems> {
        let rules = rules_hash(&Sources::read(&SourcePaths {
            data: None,
            ..self.paths.clone()
        })?);
        let scan = self.scan_data()?;
        let rebuild = force
            || rules != self.rules
            || scan.changed.iter().any(|(p, f)| {
                f.text.trim_start().starts_with('[') || self.data.get(p).is_some_and(|t| t.cedar)
            })
            || scan
                .removed
                .iter()
                .any(|p| self.data.get(p).is_some_and(|t| t.cedar))
            // Files that add to other files' system users: any data change is read
            // whole, so an addition is never applied without its system user.
            || ((!scan.changed.is_empty() || !scan.removed.is_empty())
                && self.data.values().any(|t| t.cedar));
        if rebuild {
            let (fresh, snapshot) = Self::load(self.paths.clone())?;
            let snapshot = snapshot.with_world(
                snapshot.world.clone(),
                DataVersion {
                    sequence: current.data.sequence + 1,
                    ..snapshot.data.clone()
                },
            );
            *self = fresh;
            return Ok((Refreshed::Rebuilt, Some(snapshot)));
        }
        if scan.changed.is_empty() && scan.removed.is_empty() {
            // Stamps that moved without a change in content are remembered anew.
            for (p, s) in scan.restamped {
                if let Some(t) = self.data.get_mut(&p) {
                    t.stamp = s;
                }
            }
            return Ok((Refreshed::Unchanged, None));
        }
        let mut replaced: Vec<RecordKey> = Vec::new();
        for p in scan.changed.iter().map(|(p, _)| p).chain(&scan.removed) {
            if let Some(t) = self.data.get(p) {
                replaced.extend(t.keys.iter().cloned());
            }
        }
        let mut builder = WorldBuilder::new();
        for (_, f) in &scan.changed {
            builder.add_file(f);
        }
        let keys = builder.keys();
        let world = builder.build_onto(&current.world, &replaced, &current.packages)?;
        // Applied: remember the files as they are now.
        for p in &scan.removed {
            self.data.remove(p);
        }
        let mut names = Vec::new();
        for ((p, f), (_, keys, cedar)) in scan.changed.into_iter().zip(keys) {
            names.push(f.name.clone());
            let stamp = scan.stamps.get(&p).copied().unwrap_or_default();
            self.data.insert(
                p,
                Tracked {
                    stamp,
                    hash: hash(&f.text),
                    text_len: f.text.len(),
                    keys,
                    cedar,
                },
            );
        }
        names.extend(
            scan.removed
                .iter()
                .map(|p| format!("{} (removed)", p.display())),
        );
        for (p, s) in scan.restamped {
            if let Some(t) = self.data.get_mut(&p) {
                t.stamp = s;
            }
        }
        let data = DataVersion {
            sequence: current.data.sequence + 1,
            in_flight: Arc::new([]),
            identity: self.identity(),
        };
        Ok((
            Refreshed::Data { files: names },
            Some(current.with_world(world, data)),
        ))
    }

    /// What the data files are now, for the revision: their hashes, by name.
    fn identity(&self) -> String {
        let mut h = Sha256::new();
        for (p, t) in &self.data {
            h.update(p.file_name().map_or(&[][..], |n| n.as_encoded_bytes()));
            h.update(t.hash);
            h.update((t.text_len as u64).to_le_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }

    /// The data files that are new, changed in content, or gone.
    fn scan_data(&self) -> Result<Scan, Problems> {
        let mut scan = Scan::default();
        let Some(dir) = &self.paths.data else {
            return Ok(scan);
        };
        let listed = std::fs::read_dir(dir).map_err(|e| {
            Problems(vec![Problem::new(
                dir.display().to_string(),
                "",
                format!("cannot read directory: {e}"),
            )])
        })?;
        let mut present = Vec::new();
        let mut to_read = Vec::new();
        for e in listed.filter_map(Result::ok) {
            let p = e.path();
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with("..") || !is_data_file(name) {
                continue;
            }
            present.push(p.clone());
            let st = std::fs::metadata(&p).map(|m| stamp(&m)).ok();
            match (self.data.get(&p), st) {
                (Some(t), Some(s)) if t.stamp == s => {}
                (_, st) => {
                    if let Some(s) = st {
                        scan.stamps.insert(p.clone(), s);
                    }
                    to_read.push(p);
                }
            }
        }
        if present.is_empty() {
            return Err(Problems(vec![Problem::new(
                dir.display().to_string(),
                "",
                "holds no .json, .yaml or .yml data file",
            )]));
        }
        // Read what moved, with the same checks and limits as the first load.
        let wanted: std::collections::HashSet<PathBuf> = to_read.iter().cloned().collect();
        let files = read_dir_files(
            dir,
            |n| is_data_file(n) && wanted.contains(&dir.join(n)),
            self.paths.max_file_bytes,
        )?;
        for f in files {
            let p = PathBuf::from(&f.name);
            match self.data.get(&p) {
                Some(t) if t.hash == hash(&f.text) => {
                    if let Some(s) = scan.stamps.get(&p) {
                        scan.restamped.push((p, *s));
                    }
                }
                _ => scan.changed.push((p, f)),
            }
        }
        scan.removed = self
            .data
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        Ok(scan)
    }
}

#[derive(Default)]
struct Scan {
    changed: Vec<(PathBuf, SourceFile)>,
    removed: Vec<PathBuf>,
    /// Files whose stamp moved but whose content did not.
    restamped: Vec<(PathBuf, (u64, i64, i64, u64))>,
    stamps: BTreeMap<PathBuf, (u64, i64, i64, u64)>,
}

/// A hash of every policy and schema file (and the package list).
fn rules_hash(s: &Sources) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in s.schema.iter().chain(&s.policies).chain([&s.packages]) {
        h.update(f.name.as_bytes());
        h.update((f.text.len() as u64).to_le_bytes());
        h.update(f.text.as_bytes());
    }
    h.finalize().into()
}

/// Whether `p` is a file the source reads (for filtering watcher events).
pub fn concerns(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n == "..data"
            || is_data_file(n)
            || n.ends_with(".cedar")
            || n.ends_with(".cedarschema")
            || n.ends_with(".cedarschema.json")
            || n == crate::packages::FILE_NAME
    })
}

/// Follows the files: refreshes on every change the watcher reports (debounced),
/// every `every` as a backstop and heartbeat, and in full on SIGHUP; swaps each new
/// snapshot into `snapshots` and keeps `status` current. `rebuilt` runs after a
/// full rebuild (the binary hands memory back). Runs until the task is dropped.
pub async fn follow(
    mut source: FileSource,
    snapshots: Arc<crate::snapshot::SnapshotHandle>,
    status: Arc<super::DataStatus>,
    mut hangup: tokio::signal::unix::Signal,
    every: std::time::Duration,
    rebuilt: fn(),
) {
    let (_watcher, mut events) = super::watch(&source.dirs());
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        let force = tokio::select! {
            Some(()) = events.recv() => {
                tokio::time::sleep(super::DEBOUNCE).await;
                while events.try_recv().is_ok() {}
                false
            }
            _ = tick.tick() => false,
            Some(()) = hangup.recv() => {
                tracing::info!("SIGHUP: reading every file again");
                true
            }
        };
        let current = snapshots.load();
        let done = tokio::task::spawn_blocking(move || {
            let r = source.refresh(&current, force);
            (r, source)
        })
        .await;
        let (result, back) = match done {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "reload task failed; files are no longer followed");
                status.fail(super::SyncState::ReloadFailed, e.to_string());
                return;
            }
        };
        source = back;
        match result {
            Ok((Refreshed::Unchanged, _)) => {
                // The files are what is applied (a failed change may have been
                // undone): the data is current.
                if last_error.take().is_some() {
                    tracing::info!("files are back to the applied data; following again");
                }
                status.set_state(super::SyncState::Live);
                status.confirm();
            }
            Ok((what, Some(snap))) => {
                let (revision, sequence) = (snap.revision.clone(), snap.data.sequence);
                snapshots.store(snap);
                status.applied();
                last_error = None;
                match what {
                    Refreshed::Data { files } => {
                        tracing::info!(%revision, data_sequence = sequence, files = ?files, "data changed; applied")
                    }
                    _ => {
                        rebuilt();
                        tracing::info!(%revision, data_sequence = sequence, "snapshot rebuilt")
                    }
                }
            }
            Ok((_, None)) => status.confirm(),
            Err(problems) => {
                // The last good snapshot keeps serving; the data is no longer
                // confirmed current, so --max-staleness will fail it closed.
                let text = problems.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(problems = %text, "reload failed; keeping the last good snapshot");
                }
                status.fail(super::SyncState::ReloadFailed, text.clone());
                last_error = Some(text);
            }
        }
    }
}
