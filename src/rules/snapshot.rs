//! One immutable snapshot of everything a decision reads: schema, policies, access
//! package list and world, with the revision that names them. Requests load the
//! current snapshot without locks; a reload builds a whole new one and swaps it in,
//! so policies and data always change together and a failed reload changes nothing.

use crate::decision::engine::Engine;
use crate::problem::SourceFile;
use crate::problem::{read_dir_files, Problem, Problems, DEFAULT_MAX_FILE_BYTES};
use crate::rules::embedded;
use crate::rules::model::{self, types, DERIVED_CONTEXT};
use crate::rules::packages::{self, AccessPackages};
use crate::rules::policy::{load_policies, load_schema, Policies, ReasonTemplate};
use crate::world::{load_dir, read_listed, read_manifest, World, WorldBuilder};
use arc_swap::ArcSwap;
use cedar_policy::{Context, EntityUid, Request, Schema};
use cedar_policy_core::ast::EntityUID as CoreUid;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a snapshot's inputs come from: a directory, or the copy built into the binary.
#[derive(Debug, Clone)]
pub struct SourcePaths {
    pub policies: Option<PathBuf>,
    pub schema: Option<PathBuf>,
    pub data: Option<PathBuf>,
    /// The data manifest (`--data-manifest`): when set, the data is the files it
    /// lists, each matching its SHA-256; other files in the data directory are not
    /// read.
    pub data_manifest: Option<PathBuf>,
    /// The largest input file read, in bytes.
    pub max_file_bytes: u64,
    /// What a client link that lists no packages carries.
    pub link_packages: model::LinkPackages,
}

impl SourcePaths {
    /// The directories given, to watch.
    pub fn dirs(&self) -> Vec<PathBuf> {
        [&self.policies, &self.schema, &self.data]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl Default for SourcePaths {
    fn default() -> Self {
        Self {
            policies: None,
            schema: None,
            data: None,
            data_manifest: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            link_packages: model::LinkPackages::None,
        }
    }
}

/// The text of every input of a snapshot.
#[derive(Debug, Clone)]
pub struct Sources {
    pub schema: Vec<SourceFile>,
    pub packages: SourceFile,
    pub policies: Vec<SourceFile>,
    pub data: Vec<SourceFile>,
    /// What a client link that lists no packages carries (a setting, part of the
    /// rules and their revision).
    pub link_packages: model::LinkPackages,
}

impl Sources {
    /// The shipped policies, schema and example world.
    pub fn embedded() -> Self {
        Self {
            schema: embedded::source_files(embedded::SCHEMA),
            packages: embedded::source_files(&[embedded::PACKAGES]).remove(0),
            policies: embedded::source_files(embedded::POLICIES),
            data: embedded::source_files(embedded::WORLD),
            link_packages: model::LinkPackages::None,
        }
    }

    /// Reads each directory given; the others come from the embedded default.
    pub fn read(paths: &SourcePaths) -> Result<Self, Problems> {
        let mut s = Self::embedded();
        s.link_packages = paths.link_packages;
        let mut problems = Vec::new();
        let max = paths.max_file_bytes;
        let mut read = |dir: &Path, keep: &dyn Fn(&str) -> bool| {
            read_dir_files(dir, keep, max)
                .map_err(|p| problems.extend(p.0))
                .ok()
        };
        if let Some(dir) = &paths.policies {
            if let Some(f) = read(dir, &|n| n.ends_with(".cedar")) {
                s.policies = f;
            }
        }
        if let Some(dir) = &paths.schema {
            if let Some(f) = read(dir, &|n| {
                n.ends_with(".cedarschema") || n.ends_with(".cedarschema.json")
            }) {
                s.schema = f;
            }
            if let Some(mut f) = read(dir, &|n| n == packages::FILE_NAME) {
                if !f.is_empty() {
                    s.packages = f.remove(0);
                }
            }
        }
        if let Some(dir) = &paths.data {
            let read = match &paths.data_manifest {
                Some(m) => read_manifest(m, dir, max).and_then(|l| read_listed(&l, m, max)),
                None => load_dir(dir, max),
            };
            match read {
                Ok(f) => s.data = f,
                Err(p) => problems.extend(p.0),
            }
        }
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(Problems(problems))
        }
    }
}

/// The records one data file holds: its name, their keys, and whether it holds
/// entities in Cedar's own format.
pub type FileKeys = (String, Vec<crate::world::RecordKey>, bool);

/// An action a request may name.
#[derive(Debug, Clone)]
pub(crate) struct Action {
    pub(crate) uid: EntityUid,
    /// The same uid as the evaluator holds it.
    pub(crate) core: Arc<CoreUid>,
}

/// The rules a decision follows: schema, policies, packages and what is prepared
/// from them. Shared by successive snapshots until the policies or schema change.
pub struct Rules {
    pub(crate) schema: Schema,
    pub(crate) policies: Policies,
    pub(crate) packages: AccessPackages,
    /// The policies compiled for evaluation.
    pub(crate) engine: Engine,
    /// Each policy's `@reason` template, by its index in the engine.
    pub(crate) reasons: Vec<Option<ReasonTemplate>>,
    /// Actions whose principal is an employee and resource a system user, by id.
    pub(crate) actions: BTreeMap<String, Action>,
    /// True when the schema's context has caller attributes that are required, so even
    /// a request without context must be checked against the schema.
    pub(crate) context_always_checked: bool,
    /// What a client link that lists no packages carries.
    pub(crate) link_packages: model::LinkPackages,
    /// Names the schema, packages and policies: the first 16 hex digits of a SHA-256
    /// over their files.
    pub rules_revision: String,
}

/// Which data a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataVersion {
    /// The data sequence. From files it counts the change sets applied since the
    /// first load (1). From PostgreSQL it is the database's position: every
    /// transaction with an id up to it is in the data, except those `in_flight`.
    pub sequence: u64,
    /// Transactions below `sequence` that had not committed at this position.
    pub in_flight: Arc<[u64]>,
    /// What the data is, for the revision: a hash of the data files, or the
    /// database's position.
    pub identity: String,
}

impl DataVersion {
    /// Whether a change made at `sequence` (a data sequence from a status call, or a
    /// database transaction's id) is in this data.
    pub fn covers(&self, sequence: u64) -> bool {
        sequence <= self.sequence && !self.in_flight.contains(&sequence)
    }
}

/// Everything one decision reads: the rules and the world, with the revision that
/// names them together.
pub struct Snapshot {
    rules: Arc<Rules>,
    pub world: World,
    pub data: DataVersion,
    /// When the data was last synced from Altinn: the stamp written with it
    /// (`source::sync_stamp`), or `None` when it carries none.
    pub synced_at: Option<std::time::SystemTime>,
    /// Names the rules and the data: 16 hex digits.
    pub revision: String,
}

impl std::ops::Deref for Snapshot {
    type Target = Rules;
    fn deref(&self) -> &Rules {
        &self.rules
    }
}

impl Snapshot {
    /// Parses and checks every input, reporting every problem in every file.
    pub fn build(src: &Sources) -> Result<Self, Problems> {
        Self::build_with(src, |_| {})
    }

    /// Like [`Snapshot::build`], with the keys of the records each data file holds
    /// (name, keys, whether it holds entities in Cedar's own format), in file order.
    pub fn build_keyed(src: &Sources) -> Result<(Self, Vec<FileKeys>), Problems> {
        let mut keys = Vec::new();
        let snap = Self::build_with(src, |b| keys = b.keys())?;
        Ok((snap, keys))
    }

    /// Like [`Snapshot::build`], with records added in code to the world (used by
    /// generators and benchmarks; such records are not part of the revision).
    pub fn build_with(
        src: &Sources,
        add: impl FnOnce(&mut WorldBuilder),
    ) -> Result<Self, Problems> {
        let schema = load_schema(&src.schema)?;
        let packages = AccessPackages::parse(&src.packages.name, &src.packages.text)
            .map_err(|e| Problems(vec![Problem::new(e.file, "", e.message)]))?;
        // Report policy and data problems together.
        let policies = load_policies(&src.policies, &schema);
        let mut builder = WorldBuilder::new();
        builder.add_files(&src.data);
        add(&mut builder);
        let world = builder.build(&packages, &schema);
        let (policies, world) = match (policies, world) {
            (Ok(p), Ok(w)) => (p, w),
            (p, w) => {
                let mut all = p.err().map(|e| e.0).unwrap_or_default();
                all.extend(w.err().map(|e| e.0).unwrap_or_default());
                return Err(Problems(all));
            }
        };
        let rules = Rules::compile(src, schema, policies, packages)?;
        let data = DataVersion {
            sequence: 1,
            in_flight: Arc::new([]),
            identity: data_identity(&src.data),
        };
        Ok(Self::of(rules, world, data))
    }

    /// A snapshot of `rules` over `world` (a world read from a database).
    pub fn new(rules: Arc<Rules>, world: World, data: DataVersion) -> Self {
        Self::of(rules, world, data)
    }

    /// The rules this snapshot follows.
    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    fn of(rules: Arc<Rules>, world: World, data: DataVersion) -> Self {
        let mut h = Sha256::new();
        for part in [rules.rules_revision.as_bytes(), data.identity.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Self {
            revision: hex::encode(&h.finalize()[..8]),
            rules,
            world,
            data,
            synced_at: None,
        }
    }

    /// The same rules over another world: a data change needs no recompiling.
    /// The sync stamp stays until the source says another.
    pub fn with_world(&self, world: World, data: DataVersion) -> Self {
        Self {
            synced_at: self.synced_at,
            ..Self::of(self.rules.clone(), world, data)
        }
    }

    /// This snapshot with the sync stamp `at` (see [`Snapshot::synced_at`]).
    pub fn with_synced_at(self, at: Option<std::time::SystemTime>) -> Self {
        Self {
            synced_at: at,
            ..self
        }
    }

    /// The snapshot after `changes` (see [`World::apply`]), at data version `data`;
    /// every problem with them otherwise.
    pub fn apply(
        &self,
        changes: impl IntoIterator<Item = crate::world::Change>,
        data: DataVersion,
    ) -> Result<Self, Vec<crate::world::ChangeProblem>> {
        let world = self.world.apply(changes, &self.packages)?;
        Ok(self.with_world(world, data))
    }
}

impl Rules {
    /// Parses and checks the schema, package list and policies of `src` (its data
    /// is not read), reporting every problem.
    pub fn build(src: &Sources) -> Result<Arc<Self>, Problems> {
        let schema = load_schema(&src.schema)?;
        let packages = AccessPackages::parse(&src.packages.name, &src.packages.text)
            .map_err(|e| Problems(vec![Problem::new(e.file, "", e.message)]))?;
        let policies = load_policies(&src.policies, &schema)?;
        Self::compile(src, schema, policies, packages)
    }

    fn compile(
        src: &Sources,
        schema: Schema,
        policies: Policies,
        packages: AccessPackages,
    ) -> Result<Arc<Self>, Problems> {
        let actions = employee_actions(&schema);
        let context_always_checked = check_schema_contract(&schema, &actions, &src.schema)?;
        let engine = Engine::new(&policies.set, action_groups(&schema, &actions));
        let reasons = (0..engine.policy_count())
            .map(|i| policies.reasons.get(engine.policy(i).1).cloned())
            .collect();
        Ok(Arc::new(Rules {
            engine,
            reasons,
            rules_revision: rules_revision(src),
            link_packages: src.link_packages,
            schema,
            policies,
            packages,
            actions,
            context_always_checked,
        }))
    }
}

/// The schema's actions that apply to an employee using a system user.
fn employee_actions(schema: &Schema) -> BTreeMap<String, Action> {
    let t = types();
    schema
        .request_envs()
        .filter(|env| env.principal() == &t.employee && env.resource() == &t.system_user)
        .map(|env| {
            let uid = env.action().clone();
            let core: &CoreUid = uid.as_ref();
            (
                uid.id().unescaped().to_owned(),
                Action {
                    core: Arc::new(core.clone()),
                    uid,
                },
            )
        })
        .collect()
}

/// Each action with its action groups (ancestors in the schema's action hierarchy).
fn action_groups(
    schema: &Schema,
    actions: &BTreeMap<String, Action>,
) -> Vec<(
    cedar_policy_core::ast::EntityUID,
    Vec<cedar_policy_core::ast::EntityUID>,
)> {
    let hierarchy = schema.action_entities().ok();
    actions
        .values()
        .map(|a| {
            let groups = hierarchy
                .as_ref()
                .and_then(|h| {
                    h.ancestors(&a.uid)
                        .map(|it| it.cloned().map(Into::into).collect())
                })
                .unwrap_or_default();
            (a.uid.clone().into(), groups)
        })
        .collect()
}

/// Checks that the schema declares what Vakt derives (the entity types and the
/// context attributes it fills in) by validating a sample request against it.
/// Returns whether the context has required caller attributes.
fn check_schema_contract(
    schema: &Schema,
    actions: &BTreeMap<String, Action>,
    files: &[SourceFile],
) -> Result<bool, Problems> {
    let file = files.first().map_or("schema", |f| f.name.as_str());
    let fail = |m: String| Problems(vec![Problem::new(file, "", m)]);
    if !actions.contains_key(model::DEFAULT_ACTION) {
        return Err(fail(format!(
            "the schema must declare action {:?} for principal Vakt::Employee and resource Vakt::SystemUser",
            model::DEFAULT_ACTION
        )));
    }
    let t = types();
    let mut required_caller_attrs = false;
    for (name, action) in actions {
        let result =
            Context::from_json_value(sample_derived_context(None), Some((schema, &action.uid)))
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    let (p, r) = (
                        model::uid(&t.employee, "x"),
                        model::uid(&t.system_user, "x"),
                    );
                    Request::new(p, action.uid.clone(), r, c, Some(schema))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
        let Err(e) = result else { continue };
        // Either a derived attribute is missing or mistyped, or the schema has
        // required caller attributes; only the first is a broken schema.
        if DERIVED_CONTEXT
            .iter()
            .any(|a| e.contains(&format!("`{a}`")))
        {
            return Err(fail(format!(
                "action {name}: the context must declare client: Vakt::Organization, accessPackage: Vakt::AccessPackage, portfolioTeams: Set<Vakt::Team> and an optional clientLink record: {e}"
            )));
        }
        required_caller_attrs = true;
    }
    Ok(required_caller_attrs)
}

/// A context holding only what Vakt derives, with placeholder values, in Cedar's
/// JSON form; the caller's attributes are added to it to check them against the schema.
pub(crate) fn sample_derived_context(
    user: Option<&serde_json::Map<String, serde_json::Value>>,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(
        model::CTX_CLIENT.into(),
        serde_json::json!({"__entity": {"type": "Vakt::Organization", "id": "000000000"}}),
    );
    m.insert(
        model::CTX_ACCESS_PACKAGE.into(),
        serde_json::json!({"__entity": {"type": "Vakt::AccessPackage", "id": "urn:altinn:accesspackage:x"}}),
    );
    m.insert(model::CTX_PORTFOLIO_TEAMS.into(), serde_json::json!([]));
    if let Some(user) = user {
        for (k, v) in user {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::Value::Object(m)
}

/// Adds a file to a hash by base name and text: the same files give the same
/// hash wherever they sit.
fn hash_file(h: &mut Sha256, kind: &str, f: &SourceFile) {
    let base = Path::new(&f.name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(&f.name);
    for part in [kind.as_bytes(), base.as_bytes(), f.text.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
}

fn rules_revision(src: &Sources) -> String {
    let mut h = Sha256::new();
    src.schema
        .iter()
        .for_each(|f| hash_file(&mut h, "schema", f));
    hash_file(&mut h, "packages", &src.packages);
    src.policies
        .iter()
        .for_each(|f| hash_file(&mut h, "policy", f));
    // The setting changes decisions, so it is part of what the revision names.
    if src.link_packages == model::LinkPackages::SystemUserPackages {
        h.update(b"links-without-packages=system-user-packages");
    }
    hex::encode(&h.finalize()[..8])
}

/// Names a set of data files: a hash over their names and texts.
pub fn data_identity(files: &[SourceFile]) -> String {
    data_identity_of(files.iter().map(|f| {
        let base = Path::new(&f.name)
            .file_name()
            .map_or_else(|| f.name.clone(), |n| n.to_string_lossy().into_owned());
        (base, crate::world::sha256(&f.text))
    }))
}

/// Names a set of data files by each one's name within its directory and the
/// SHA-256 of its text, in name order: the same files give the same identity
/// wherever they sit and however they were listed (the built-in copy, a
/// directory, a follower of live files), so the revision names the data alone.
pub(crate) fn data_identity_of(files: impl IntoIterator<Item = (String, [u8; 32])>) -> String {
    let mut files: Vec<_> = files.into_iter().collect();
    files.sort();
    let mut h = Sha256::new();
    for (name, hash) in &files {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(hash);
    }
    hex::encode(&h.finalize()[..8])
}

/// The current snapshot, shared by every request; swapped whole on reload.
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
    /// Told of every swap, for calls that wait for a change to arrive.
    swapped: tokio::sync::watch::Sender<()>,
}

impl SnapshotHandle {
    pub fn new(s: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(s),
            swapped: tokio::sync::watch::Sender::new(()),
        }
    }
    /// The snapshot to decide on: a lock-free load.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
    pub fn store(&self, s: Snapshot) {
        self.current.store(Arc::new(s));
        self.swapped.send_replace(());
    }
    /// Notified at every swap after this call.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.swapped.subscribe()
    }
}

impl Snapshot {
    /// [`Sources::read`] and [`Snapshot::build_keyed`] in one, for a server that
    /// follows its files: a data directory without a manifest is read while its
    /// world is built (`world::load_streamed`), so every text and every parsed
    /// record are never held at once. At any problem, and with a data manifest or
    /// the built-in data, the files are read and built the full way, which reports
    /// every problem with its file and line. Returns the snapshot, the sources of
    /// its rules (`data` is left empty: the data's texts are not kept), and each
    /// data file read, with its hash and the keys of its records.
    pub fn load_keyed(
        paths: &SourcePaths,
    ) -> Result<(Self, Sources, Vec<crate::world::ReadFile>), Problems> {
        let started = std::time::Instant::now();
        if let (Some(dir), None) = (&paths.data, &paths.data_manifest) {
            if let Some(done) = Self::load_streamed(paths, dir) {
                tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "data loaded as read"
                );
                return Ok(done);
            }
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                "data has a problem or a part read whole: reading it the full way"
            );
        }
        let mut sources = Sources::read(paths)?;
        let (snapshot, keys) = Self::build_keyed(&sources)?;
        let read = std::mem::take(&mut sources.data)
            .into_iter()
            .zip(keys)
            .map(|(f, (name, keys, cedar))| crate::world::ReadFile {
                hash: crate::world::sha256(&f.text),
                name,
                keys,
                cedar,
            })
            .collect();
        Ok((snapshot, sources, read))
    }

    /// The fast path of [`Snapshot::load_keyed`]; none at any problem.
    fn load_streamed(
        paths: &SourcePaths,
        dir: &Path,
    ) -> Option<(Self, Sources, Vec<crate::world::ReadFile>)> {
        let files = crate::world::list_data_dir(dir).ok()?;
        let mut sources = Sources::read(&SourcePaths {
            data: None,
            ..paths.clone()
        })
        .ok()?;
        sources.data = Vec::new();
        let started = std::time::Instant::now();
        let rules = Rules::build(&sources).ok()?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "schema, packages and policies read"
        );
        let (world, read) = crate::world::load_streamed(
            &files,
            paths.max_file_bytes,
            &rules.packages,
            &rules.schema,
        )?;
        let data = DataVersion {
            sequence: 1,
            in_flight: Arc::new([]),
            identity: data_identity_of(read.iter().map(|f| {
                let base = Path::new(&f.name)
                    .file_name()
                    .map_or_else(|| f.name.clone(), |n| n.to_string_lossy().into_owned());
                (base, f.hash)
            })),
        };
        Some((Self::of(rules, world, data), sources, read))
    }
}
