//! Data from files, followed as they change.
//!
//! Each file read is remembered by its stamp (size, time, inode) and content hash
//! (and, for data files, the keys of the records it holds). A look reads again only
//! files whose stamp moved, and compares contents: a touched but unchanged file
//! changes nothing. A change is read only once it is whole (see `settle`): closed
//! by its writer and unchanged over the settle interval, renamed into place, or,
//! with a data manifest, matching it. Changed data files are applied to the serving
//! world as a difference (their old records out, their new ones in, every
//! reference checked); a changed policy or schema file rebuilds the whole snapshot.
//! Either way the new snapshot is built off the request path and swapped in whole,
//! and an invalid change leaves the last good one serving.

use super::settle::{Settle, Stamp, State, Verdict, Writers};
use crate::problem::{
    list_dir as list, read_data_file as read_file, Problem, Problems, SourceFile,
};
use crate::rules::snapshot::{DataVersion, Snapshot, SourcePaths, Sources};
use crate::world::{parse_manifest, sha256, Manifest, RecordKey, WorldBuilder};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What is known of one data file.
#[derive(Debug, Clone)]
struct Tracked {
    stamp: Stamp,
    hash: [u8; 32],
    keys: Vec<RecordKey>,
    /// A change to the data is read by rebuilding the world: the file holds
    /// entities in Cedar's own format, or adds to system users of other files.
    cedar: bool,
}

/// The files a snapshot was built from, to follow as they change.
pub struct FileSource {
    paths: SourcePaths,
    /// Every policy, schema and package file read (and the data manifest), with
    /// its stamp and hash when read.
    rules: BTreeMap<PathBuf, (Stamp, [u8; 32])>,
    /// Data files by path.
    data: BTreeMap<PathBuf, Tracked>,
    settle: Settle,
    /// What the watcher saw writers do, once [`follow`] watches.
    writers: Option<Arc<Writers>>,
    /// Files that changed but are not whole yet: when to look at them again
    /// (`None` inside: at the next event), or `None` when none waits.
    waiting: Option<Option<Instant>>,
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
    /// Only the data manifest's sync stamp changed (`vakt altinn sync` found
    /// nothing new): the same world, stamped anew.
    Stamped,
    /// Files changed but are not whole yet (being written, settling, or not
    /// matching the data manifest); nothing was applied. Look again by `until`.
    Waiting {
        files: Vec<String>,
        until: Option<Instant>,
    },
}

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (m.len(), m.mtime(), m.mtime_nsec(), m.ino())
}

fn stamp_of(p: &Path) -> Option<Stamp> {
    std::fs::metadata(p).ok().map(|m| stamp(&m))
}

fn is_data_file(n: &str) -> bool {
    n.ends_with(".json") || n.ends_with(".yaml") || n.ends_with(".yml")
}

fn is_policy_file(n: &str) -> bool {
    n.ends_with(".cedar")
}

fn is_schema_file(n: &str) -> bool {
    n.ends_with(".cedarschema")
        || n.ends_with(".cedarschema.json")
        || n == crate::rules::packages::FILE_NAME
}

/// The policy, schema and package files in the directories `paths` names.
fn rule_files(paths: &SourcePaths) -> Result<Vec<PathBuf>, Problems> {
    let mut out = Vec::new();
    if let Some(d) = &paths.policies {
        out.extend(list(d, is_policy_file)?);
    }
    if let Some(d) = &paths.schema {
        out.extend(list(d, is_schema_file)?);
    }
    Ok(out)
}

/// One changed file as a look saw it.
struct Changed {
    path: PathBuf,
    state: State,
    /// The text read, for data files that are present.
    text: Option<String>,
}

/// What one look found.
#[derive(Default)]
struct Look {
    /// Policy, schema, package and manifest files that differ from what is applied.
    rules: Vec<Changed>,
    /// Data files that differ from what is applied.
    data: Vec<Changed>,
    /// Files whose stamp moved but whose content did not.
    restamped: Vec<(PathBuf, Stamp)>,
    /// The data manifest, when one is set.
    manifest: Option<Manifest>,
    /// The data manifest, when it differs from the one applied.
    manifest_changed: Option<Changed>,
}

impl FileSource {
    /// Reads every file and builds the first snapshot.
    pub fn load(paths: SourcePaths) -> Result<(Self, Snapshot), Problems> {
        // Stamps are taken before the files are read: a file that changes while
        // it is read then shows a new stamp, and is read again on the next look.
        let before = Self::stamps(&paths);
        // The data's texts are read, hashed and built from one at a time; only
        // the rules' sources are kept (issue 27, item 5).
        let (snapshot, sources, read) = Snapshot::load_keyed(&paths)?;
        let stamp_before = |name: &str| before.get(Path::new(name)).copied().unwrap_or_default();
        let mut data = BTreeMap::new();
        if paths.data.is_some() {
            for f in read {
                data.insert(
                    PathBuf::from(&f.name),
                    Tracked {
                        stamp: stamp_before(&f.name),
                        hash: f.hash,
                        keys: f.keys,
                        cedar: f.cedar,
                    },
                );
            }
        }
        let mut rules = BTreeMap::new();
        for (p, hash) in rules_read(&paths, &sources) {
            let stamp = before.get(&p).copied().unwrap_or_default();
            rules.insert(p, (stamp, hash));
        }
        // The sync stamp the manifest carries (see `sync_stamp`).
        let mut synced_at = None;
        if let Some(m) = &paths.data_manifest {
            // Read again to remember it; Sources::read has checked it. A rebuild
            // checks that this is the text the look saw whole.
            if let Ok(text) = read_file(m, paths.max_file_bytes) {
                let dir = paths.data.as_deref().unwrap_or(Path::new("."));
                // The stamp counts only if this manifest lists exactly the data
                // read: one renamed in since then stamps data not yet applied
                // (the next look applies both).
                let read: BTreeMap<PathBuf, [u8; 32]> = data
                    .iter()
                    .map(|(p, t): (&PathBuf, &Tracked)| (p.clone(), t.hash))
                    .collect();
                synced_at = parse_manifest(&m.display().to_string(), &text, dir)
                    .ok()
                    .filter(|l| l.files.iter().cloned().collect::<BTreeMap<_, _>>() == read)
                    .and_then(|l| l.synced_at);
                rules.insert(
                    m.clone(),
                    (stamp_before(&m.display().to_string()), sha256(&text)),
                );
            }
        }
        let source = Self {
            rules,
            paths,
            data,
            settle: Settle::new(DEFAULT_SETTLE),
            writers: None,
            waiting: None,
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
        Ok((source, snapshot.with_synced_at(synced_at)))
    }

    /// The stamp of every file the source reads, as it is now.
    fn stamps(paths: &SourcePaths) -> BTreeMap<PathBuf, Stamp> {
        let mut out = BTreeMap::new();
        let data = paths
            .data
            .iter()
            .flat_map(|d| list(d, is_data_file).unwrap_or_default());
        for p in rule_files(paths)
            .unwrap_or_default()
            .into_iter()
            .chain(data)
            .chain(paths.data_manifest.clone())
        {
            if let Some(s) = stamp_of(&p) {
                out.insert(p, s);
            }
        }
        out
    }

    /// [`FileSource::load`], once the files have stayed the same over `settle`:
    /// at start no watcher has seen the writers yet, so two looks that far apart
    /// must agree first. Files that keep changing for `patience` are read as
    /// they are then, with a WARN.
    pub fn load_settled(
        paths: SourcePaths,
        settle: Duration,
        patience: Duration,
    ) -> Result<(Self, Snapshot), Problems> {
        let started = Instant::now();
        let mut before = Self::stamps(&paths);
        loop {
            std::thread::sleep(settle);
            let now = Self::stamps(&paths);
            if now == before {
                break;
            }
            if started.elapsed() >= patience {
                tracing::warn!(
                    waited = ?patience,
                    "files kept changing while Vakt started; reading them as they are"
                );
                break;
            }
            before = now;
        }
        Self::load(paths)
    }

    /// How long a file written in place must stay unchanged before it is read.
    pub fn set_settle(&mut self, interval: Duration) {
        self.settle = Settle::new(interval);
    }

    /// Files that changed but are not whole yet: when to look at them again
    /// (`Some(None)`: at the next event).
    pub fn waiting(&self) -> Option<Option<Instant>> {
        self.waiting
    }

    /// Every file's content hash as applied, the manifest's included.
    fn hashes(&self) -> BTreeMap<PathBuf, [u8; 32]> {
        self.rules
            .iter()
            .map(|(p, (_, h))| (p.clone(), *h))
            .chain(self.data.iter().map(|(p, t)| (p.clone(), t.hash)))
            .collect()
    }

    /// The directories to watch.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.paths.dirs();
        if let Some(dir) = self.paths.data_manifest.as_ref().and_then(|m| m.parent()) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
        dirs
    }

    /// Looks at the files again. Returns the snapshot to serve when something
    /// changed and is whole; every problem otherwise (the current snapshot keeps
    /// serving). `force` rebuilds whole even if nothing seems to have changed
    /// (SIGHUP), once what changed is whole.
    pub fn refresh(
        &mut self,
        current: &Snapshot,
        force: bool,
    ) -> Result<(Refreshed, Option<Snapshot>), Problems> {
        let mut look = self.look()?;
        let gate = self.gate(&look);
        self.waiting = None;
        let cedar_touched = look.data.iter().any(|c| {
            c.text
                .as_deref()
                .is_some_and(|t| t.trim_start().starts_with('['))
                || self.data.get(&c.path).is_some_and(|t| t.cedar)
        });
        let rebuild = force
            || !look.rules.is_empty()
            || cedar_touched
            // Files that add to other files' system users: any data change is read
            // whole, so an addition is never applied without its system user.
            || (!look.data.is_empty() && self.data.values().any(|t| t.cedar));
        if let Some((files, held, until)) = gate {
            // Data files that are whole are applied while others wait (a renamed
            // revocation must not wait for an unrelated file being written), unless
            // the files are read as one set: under a manifest, or for a rebuild.
            let apart =
                !rebuild && self.paths.data_manifest.is_none() && look.manifest_changed.is_none();
            look.data.retain(|c| !held.contains(&c.path));
            if !apart || look.data.is_empty() {
                self.waiting = Some(until);
                return Ok((Refreshed::Waiting { files, until }, None));
            }
            self.waiting = Some(until);
        }
        if rebuild {
            return self.rebuild(&look, current);
        }
        for (p, s) in &look.restamped {
            if let Some(t) = self.data.get_mut(p) {
                t.stamp = *s;
            } else if let Some(r) = self.rules.get_mut(p) {
                r.0 = *s;
            }
        }
        if let Some(Changed {
            path,
            state: Some(state),
            ..
        }) = &look.manifest_changed
        {
            self.rules.insert(path.clone(), *state);
        }
        // The manifest's sync stamp: it is applied with the files it lists.
        let synced_at = look.manifest.as_ref().and_then(|m| m.synced_at);
        if look.data.is_empty() {
            self.settle.clear();
            if synced_at != current.synced_at {
                let data = DataVersion {
                    sequence: current.data.sequence + 1,
                    ..current.data.clone()
                };
                let stamped = current
                    .with_world(current.world.clone(), data)
                    .with_synced_at(synced_at);
                return Ok((Refreshed::Stamped, Some(stamped)));
            }
            return Ok((Refreshed::Unchanged, None));
        }
        let mut replaced: Vec<RecordKey> = Vec::new();
        for c in &look.data {
            if let Some(t) = self.data.get(&c.path) {
                replaced.extend(t.keys.iter().cloned());
            }
        }
        let present: Vec<(&Changed, SourceFile)> = look
            .data
            .iter()
            .filter_map(|c| {
                c.text.as_ref().map(|text| {
                    (
                        c,
                        SourceFile {
                            name: c.path.display().to_string(),
                            text: text.clone(),
                        },
                    )
                })
            })
            .collect();
        let mut builder = WorldBuilder::new();
        for (_, f) in &present {
            builder.add_file(f);
        }
        let keys = builder.keys();
        // A file now in Cedar's own format, or one that adds to system users of
        // other files, ties the files together: read whole.
        if keys.iter().any(|(_, _, cedar)| *cedar) {
            return self.rebuild(&look, current);
        }
        let world = builder.apply_onto(&current.world, &replaced, &current.packages)?;
        // Applied: remember the files as they are now.
        let mut names = Vec::new();
        for c in look.data.iter().filter(|c| c.state.is_none()) {
            self.data.remove(&c.path);
            names.push(format!("{} (removed)", c.path.display()));
        }
        for ((c, f), (_, keys, cedar)) in present.into_iter().zip(keys) {
            let (stamp, hash) = c.state.unwrap_or_default();
            names.push(f.name.clone());
            self.data.insert(
                c.path.clone(),
                Tracked {
                    stamp,
                    hash,
                    keys,
                    cedar,
                },
            );
        }
        names.sort();
        self.applied();
        let data = DataVersion {
            sequence: current.data.sequence + 1,
            in_flight: Arc::new([]),
            identity: self.identity(),
        };
        Ok((
            Refreshed::Data { files: names },
            Some(current.with_world(world, data).with_synced_at(synced_at)),
        ))
    }

    /// Reads every file again and builds the snapshot whole, once every file read
    /// is the one `look` saw whole (or the one applied, if it did not change).
    fn rebuild(
        &mut self,
        look: &Look,
        current: &Snapshot,
    ) -> Result<(Refreshed, Option<Snapshot>), Problems> {
        let (mut fresh, snapshot) = Self::load(self.paths.clone())?;
        // Every file the load read must be the one the look saw whole (or the
        // one applied, if it did not change): a file whose write began after
        // the look is not read half-done.
        let mut expected = self.hashes();
        for c in look
            .rules
            .iter()
            .chain(&look.data)
            .chain(&look.manifest_changed)
        {
            match c.state {
                Some((_, h)) => expected.insert(c.path.clone(), h),
                None => expected.remove(&c.path),
            };
        }
        let read = fresh.hashes();
        if read != expected {
            let moved: Vec<String> = read
                .keys()
                .chain(expected.keys())
                .filter(|p| read.get(*p) != expected.get(*p))
                .map(|p| format!("{} (changed while read)", p.display()))
                .collect();
            self.waiting = Some(None);
            return Ok((
                Refreshed::Waiting {
                    files: moved,
                    until: None,
                },
                None,
            ));
        }
        let snapshot = snapshot.with_world(
            snapshot.world.clone(),
            DataVersion {
                sequence: current.data.sequence + 1,
                ..snapshot.data.clone()
            },
        );
        fresh.settle = std::mem::replace(&mut self.settle, Settle::new(Duration::ZERO));
        fresh.writers = self.writers.take();
        fresh.waiting = None;
        *self = fresh;
        self.applied();
        Ok((Refreshed::Rebuilt, Some(snapshot)))
    }

    /// What was pending was applied. Files still waiting keep their place in
    /// the settle check.
    fn applied(&mut self) {
        if self.waiting.is_none() {
            self.settle.clear();
            if let Some(w) = &self.writers {
                w.applied();
            }
        }
    }

    /// Which changes are not whole yet, if any: what to say of each, their
    /// paths, and when to look again.
    #[allow(clippy::type_complexity)]
    fn gate(
        &mut self,
        look: &Look,
    ) -> Option<(
        Vec<String>,
        std::collections::BTreeSet<PathBuf>,
        Option<Instant>,
    )> {
        let now = Instant::now();
        let writers = self.writers.clone();
        let mut waiting = Vec::new();
        let mut held = std::collections::BTreeSet::new();
        let mut until: Option<Instant> = None;
        let mut open = false;
        let mut wait = |c: &Changed, v: Verdict, waiting: &mut Vec<String>| match v {
            Verdict::Ready => {}
            Verdict::Open => {
                open = true;
                held.insert(c.path.clone());
                waiting.push(format!("{} (open for writing)", c.path.display()))
            }
            Verdict::Settling(at) => {
                held.insert(c.path.clone());
                waiting.push(format!("{} (settling)", c.path.display()));
                until = Some(until.map_or(at, |u| u.min(at)));
            }
        };
        for c in look.rules.iter().chain(&look.manifest_changed) {
            let v = self
                .settle
                .verdict(&c.path, &c.state, writers.as_deref(), now);
            wait(c, v, &mut waiting);
        }
        match &look.manifest {
            // With a manifest, the data is whole when it matches the manifest.
            Some(m) => {
                let mut hashes: BTreeMap<&Path, [u8; 32]> = self
                    .data
                    .iter()
                    .map(|(p, t)| (p.as_path(), t.hash))
                    .collect();
                for c in &look.data {
                    match c.state {
                        Some((_, h)) => hashes.insert(&c.path, h),
                        None => hashes.remove(c.path.as_path()),
                    };
                }
                for (p, want) in &m.files {
                    if hashes.get(p.as_path()) != Some(want) {
                        waiting.push(format!(
                            "{} (does not match the data manifest)",
                            p.display()
                        ));
                    }
                }
            }
            None => {
                for c in &look.data {
                    let v = self
                        .settle
                        .verdict(&c.path, &c.state, writers.as_deref(), now);
                    wait(c, v, &mut waiting);
                }
            }
        }
        // A file open for writing is looked at again when its writer closes it;
        // the rest when they are due to have settled.
        let until = if open { None } else { until };
        (!waiting.is_empty()).then_some((waiting, held, until))
    }

    /// Stats every file the source reads; reads and hashes those whose stamp moved.
    fn look(&self) -> Result<Look, Problems> {
        let mut look = Look::default();
        let max = self.paths.max_file_bytes;
        let mut problems = Vec::new();
        // Reads one file whose stamp moved: its state and text, or a problem. The
        // stamp is taken first: a write during the read shows on the next look.
        let read = |p: &Path, problems: &mut Vec<Problem>| -> Option<(State, Option<String>)> {
            let Some(s) = stamp_of(p) else {
                return Some((None, None));
            };
            match read_file(p, max) {
                Ok(text) => Some((Some((s, sha256(&text))), Some(text))),
                Err(m) => {
                    problems.push(Problem::new(p.display().to_string(), "", m));
                    None
                }
            }
        };
        // Policy, schema and package files, and the manifest.
        let mut rule_paths = rule_files(&self.paths)?;
        rule_paths.extend(self.paths.data_manifest.iter().cloned());
        let gone = self
            .rules
            .keys()
            .filter(|p| !rule_paths.contains(p) && Some(*p) != self.paths.data_manifest.as_ref())
            .cloned()
            .collect::<Vec<_>>();
        let mut manifest_text = None;
        for p in rule_paths {
            let applied = self.rules.get(&p);
            let now = stamp_of(&p);
            let is_manifest = Some(&p) == self.paths.data_manifest.as_ref();
            if applied.is_some() && applied.map(|a| a.0) == now && !is_manifest {
                continue;
            }
            let Some((state, text)) = read(&p, &mut problems) else {
                continue;
            };
            if is_manifest {
                manifest_text = text;
            }
            match (applied, state) {
                (Some(a), Some((s, h))) if a.1 == h => {
                    if a.0 != s {
                        look.restamped.push((p, s));
                    }
                }
                // The manifest is data: it changes which data files are read,
                // not the rules.
                _ if is_manifest => {
                    look.manifest_changed = Some(Changed {
                        path: p,
                        state,
                        text: None,
                    })
                }
                _ => look.rules.push(Changed {
                    path: p,
                    state,
                    text: None,
                }),
            }
        }
        for p in gone {
            look.rules.push(Changed {
                path: p,
                state: None,
                text: None,
            });
        }
        // The data files: those the manifest lists, or every one in the directory.
        if let Some(dir) = &self.paths.data {
            let candidates = match (&self.paths.data_manifest, manifest_text) {
                (Some(m), Some(text)) => {
                    // The text the settle check saw, not a second read of the file.
                    let manifest = parse_manifest(&m.display().to_string(), &text, dir)?;
                    let listed = manifest.files.iter().map(|(p, _)| p.clone()).collect();
                    look.manifest = Some(manifest);
                    listed
                }
                (Some(m), None) => {
                    problems.push(Problem::new(m.display().to_string(), "", "cannot read"));
                    Vec::new()
                }
                (None, _) => {
                    let found = list(dir, is_data_file)?;
                    if found.is_empty() {
                        problems.push(Problem::new(
                            dir.display().to_string(),
                            "",
                            "holds no .json, .yaml or .yml data file",
                        ));
                    }
                    found
                }
            };
            for p in &candidates {
                let applied = self.data.get(p);
                if applied.is_some() && applied.map(|t| t.stamp) == stamp_of(p) {
                    continue;
                }
                let Some((state, text)) = read(p, &mut problems) else {
                    continue;
                };
                match (applied, state) {
                    (Some(t), Some((s, h))) if t.hash == h => look.restamped.push((p.clone(), s)),
                    (None, None) => {}
                    _ => look.data.push(Changed {
                        path: p.clone(),
                        state,
                        text,
                    }),
                }
            }
            for p in self.data.keys().filter(|p| !candidates.contains(p)) {
                look.data.push(Changed {
                    path: p.clone(),
                    state: None,
                    text: None,
                });
            }
        }
        if problems.is_empty() {
            Ok(look)
        } else {
            Err(Problems(problems))
        }
    }

    /// What the data files are now, for the revision: their hashes, by name.
    fn identity(&self) -> String {
        // As `vakt validate` and the built-in data name the same files.
        crate::rules::snapshot::data_identity_of(self.data.iter().map(|(p, t)| {
            let base = p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            (base, t.hash)
        }))
    }
}

/// The policy, schema and package files `paths` name, each as it is now.
pub(crate) fn rule_states(paths: &SourcePaths) -> Vec<(PathBuf, State)> {
    rule_files(paths)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let state = stamp_of(&p).and_then(|s| {
                read_file(&p, paths.max_file_bytes)
                    .ok()
                    .map(|text| (s, sha256(&text)))
            });
            (p, state)
        })
        .collect()
}

/// Whether the policy, schema and package files in `sources` (read from the
/// directories `paths` name) are exactly those `seen`, by content hash.
pub(crate) fn read_as_seen(
    paths: &SourcePaths,
    sources: &Sources,
    seen: &std::collections::HashMap<PathBuf, [u8; 32]>,
) -> bool {
    let read: std::collections::HashMap<PathBuf, [u8; 32]> = rules_read(paths, sources).collect();
    &read == seen
}

/// The policy, schema and package files `sources` read from the directories
/// `paths` names, with their content hashes. The others (the package list, say,
/// when --schema has none) are the built-in ones.
fn rules_read<'a>(
    paths: &'a SourcePaths,
    sources: &'a Sources,
) -> impl Iterator<Item = (PathBuf, [u8; 32])> + 'a {
    sources
        .policies
        .iter()
        .chain(&sources.schema)
        .chain([&sources.packages])
        .filter(|f| {
            Path::new(&f.name).parent().is_some_and(|d| {
                paths.policies.as_deref() == Some(d) || paths.schema.as_deref() == Some(d)
            })
        })
        .map(|f| (PathBuf::from(&f.name), sha256(&f.text)))
}

/// The default `--data-settle`.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(200);

/// Whether `p` is a file the source reads (for filtering watcher events).
pub fn concerns(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "..data" || is_data_file(n) || is_policy_file(n) || is_schema_file(n))
}

/// Follows the files: looks again on every change the watcher reports, every
/// `every` as a backstop and heartbeat, when a change that is settling is due, and
/// in full on SIGHUP; swaps each new snapshot into `snapshots` and keeps `status`
/// current. `settle` is how long a file written in place must stay unchanged.
/// `rebuilt` runs after a full rebuild (the binary hands memory back). Runs until
/// the task is dropped.
pub async fn follow(
    mut source: FileSource,
    snapshots: Arc<crate::rules::snapshot::SnapshotHandle>,
    status: Arc<super::DataStatus>,
    mut hangup: tokio::signal::unix::Signal,
    every: Duration,
    settle: Duration,
    rebuilt: fn(),
) {
    let writers = Arc::new(Writers::default());
    let (watcher, mut events) = super::watch(
        &source.dirs(),
        Some(writers.clone()),
        source
            .paths
            .data_manifest
            .as_ref()
            .and_then(|m| m.file_name())
            .map(|n| n.to_os_string()),
    );
    if watcher.is_some() {
        source.writers = Some(writers);
    }
    source.set_settle(settle);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    let mut last_waiting: Option<Vec<String>> = None;
    // When a change that is settling is due to be looked at again.
    let mut again: Option<tokio::time::Instant> = None;
    // A SIGHUP's full reload waits, like any change, until the files are whole.
    let mut force = false;
    loop {
        let due = again;
        tokio::select! {
            Some(()) = events.recv() => {
                // Events are gathered a moment only while a file is being
                // written in place (a save is several events); a file renamed
                // into place is whole, and is applied at once.
                if source.writers.as_ref().is_none_or(|w| w.writing()) {
                    tokio::time::sleep(super::DEBOUNCE).await;
                }
                while events.try_recv().is_ok() {}
            }
            _ = tick.tick() => {}
            () = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => {}
            Some(()) = hangup.recv() => {
                tracing::info!("SIGHUP: reading every file again");
                force = true;
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
        // Files that are not whole yet are looked at again when due (or at the
        // next event, for one still open); until then the data is not confirmed
        // current, as the files on disk are not what is applied.
        let waiting = source.waiting();
        again = waiting.flatten().map(tokio::time::Instant::from_std);
        if let Ok((Refreshed::Waiting { files, .. }, _)) = &result {
            if last_waiting.as_ref() != Some(files) {
                tracing::info!(files = ?files, "files changed; waiting until they are whole");
                last_waiting = Some(files.clone());
            }
            continue;
        }
        force = false;
        if waiting.is_none() {
            last_waiting = None;
        }
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
                let synced = snap.synced_at.map(humantime::format_rfc3339_millis);
                snapshots.store(snap);
                if waiting.is_none() {
                    status.applied();
                } else {
                    status.applied_unconfirmed();
                }
                last_error = None;
                match what {
                    Refreshed::Data { files } => {
                        tracing::info!(%revision, data_sequence = sequence, files = ?files, "data changed; applied")
                    }
                    Refreshed::Stamped => {
                        tracing::info!(data_sequence = sequence, synced_at = ?synced, "sync stamp changed; applied")
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
