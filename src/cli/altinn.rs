//! `vakt altinn sync`: reads the vendor's system users, their packages and their
//! clients from Altinn with the vendor's Maskinporten client, and writes them
//! into the world the sidecars follow: its own data files renamed into `--data`
//! and listed in the manifest, or one transaction into PostgreSQL. Once, or
//! `--every` interval; a failed read, check or write keeps the last good data.
//!
//! The pure part (records, diff, guard) is `crate::tools::sync`; the Altinn
//! client is `crate::altinn`.

use super::args::DatabaseParser;
use super::config::EX_CONFIG;
use crate::altinn::{Altinn, AltinnError, AuthorizedParty, SystemUser};
use crate::maskinporten::{Maskinporten, MaskinportenConfig};
use crate::problem::{line_at, toml_lines};
use crate::problem::{Problem, Problems, SourceFile};
use crate::rules::snapshot::{Snapshot, SourcePaths, Sources};
use crate::source::postgres::{self, write, Database};
use crate::tools::sync::{self as pure, AltinnRead, Held, Synced};
use crate::world::{
    EmployeeRecord, OrganizationRecord, RecordKey, SystemUserRecord, TeamRecord, WorldBuilder,
};
use clap::{Args, Subcommand};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[derive(Subcommand)]
pub(super) enum AltinnCommand {
    /// Read the vendor's system users, their packages and clients from Altinn and
    /// write them into the world the sidecars follow (files or PostgreSQL);
    /// employees and teams stay where they are.
    Sync(SyncArgs),
}

#[derive(Args)]
pub(super) struct SyncArgs {
    /// The configuration file: [maskinporten] (the vendor's client), [altinn]
    /// base_url and [altinn.sync] (systems, client_admins, max_removal_share)
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The data directory the sidecars read: the sync writes
    /// altinn-organizations.json and altinn-system-users.json into it
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "database",
        conflicts_with = "database"
    )]
    data: Option<PathBuf>,
    /// The data manifest to write (the files of --data and their SHA-256, with
    /// the sync's stamp) [default: DIR/SHA256SUMS]
    #[arg(long, value_name = "FILE", requires = "data")]
    data_manifest: Option<PathBuf>,
    /// The PostgreSQL database the sidecars read, as postgres://USER:PASSWORD@HOST/DB
    /// (connect as a member of vakt_writer: the sync's system users and the
    /// organisations Altinn names are written as row changes, in one
    /// transaction; employees and teams are never touched)
    #[arg(long, value_name = "URL", value_parser = DatabaseParser)]
    database: Option<Database>,
    /// Directory of *.cedarschema files and access-packages.json the result is
    /// checked against [default: the built-in copy of schema/]
    #[arg(long, env = "VAKT_SCHEMA", value_name = "DIR")]
    schema: Option<PathBuf>,
    /// Sync again every DURATION (such as 5m); a failed sync keeps the last good
    /// data and is tried again at the next interval [default: once]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    /// Print what would change, and write nothing
    #[arg(long)]
    dry_run: bool,
    /// Apply a sync that removes more than max_removal_share of the links or
    /// system users (the operator confirms a real mass removal)
    #[arg(long)]
    confirm_removals: bool,
    /// Serve the sync's metrics (vakt_altinn_sync_*) as Prometheus text on
    /// http://ADDR/metrics
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Largest data file read, in bytes; a larger one is refused.
    #[arg(long, env = "VAKT_MAX_FILE_BYTES", value_name = "BYTES", default_value_t = crate::problem::DEFAULT_MAX_FILE_BYTES)]
    max_file_bytes: u64,
}

/// The sync's own data files in `--data`.
const ORGANIZATIONS_FILE: &str = "altinn-organizations.json";
const SYSTEM_USERS_FILE: &str = "altinn-system-users.json";
/// The manifest's name when `--data-manifest` is not given.
const MANIFEST_FILE: &str = "SHA256SUMS";
/// Most systems and client administrators `[altinn.sync]` may name.
const MAX_SYSTEMS: usize = 1000;

/// `[altinn.sync]` and what it needs, read and checked.
struct SyncConfig {
    maskinporten: MaskinportenConfig,
    base_url: String,
    systems: Vec<String>,
    /// Customer org number → the id of its klientadministrator system user.
    client_admins: BTreeMap<String, String>,
    max_removal_share: f64,
}

/// Reads the configuration: every problem at once, each as `file:line: key: what`.
fn read_config(path: &Path) -> Result<SyncConfig, Vec<String>> {
    let text = crate::problem::read_named(path, crate::problem::MAX_SMALL_FILE_BYTES)
        .map_err(|m| vec![m])?;
    let file = path.display().to_string();
    let top: toml::Table = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_at(&text, s.start));
        vec![format!("{file}:{line}: not TOML: {}", e.message().trim())]
    })?;
    let lines = toml_lines(&text);
    let line = |key: &str| {
        let mut k = key;
        loop {
            if let Some(l) = lines.get(k) {
                return *l;
            }
            match k.rsplit_once('.') {
                Some((parent, _)) => k = parent,
                None => return 0,
            }
        }
    };
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut bad = |key: &str, what: String| {
        let l = line(key);
        problems.push((l, format!("{file}:{l}: {key}: {what}")));
    };
    let maskinporten = match MaskinportenConfig::from_toml(&file, &text) {
        Ok(Some(t)) => Some(t.config),
        Ok(None) => {
            bad(
                "maskinporten",
                "is required: the sync reads Altinn with the vendor's Maskinporten client".into(),
            );
            None
        }
        Err(found) => {
            for p in found {
                let l = p
                    .strip_prefix(file.as_str())
                    .and_then(|r| r.strip_prefix(':'))
                    .and_then(|r| r.split(':').next())
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                problems.push((l, p));
            }
            None
        }
    };
    let mut bad = |key: &str, what: String| {
        let l = line(key);
        problems.push((l, format!("{file}:{l}: {key}: {what}")));
    };
    let altinn = top.get("altinn").and_then(toml::Value::as_table);
    let base_url = match altinn.and_then(|a| a.get("base_url")) {
        None => {
            bad(
                "altinn.base_url",
                "is required, such as \"https://platform.tt02.altinn.no\"".into(),
            );
            None
        }
        Some(toml::Value::String(s)) => match url::Url::parse(s) {
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {
                Some(s.clone())
            }
            Ok(_) => {
                bad(
                    "altinn.base_url",
                    format!("{s:?} must be an https URL (http only on loopback)"),
                );
                None
            }
            Err(e) => {
                bad("altinn.base_url", format!("{s:?} is not a URL: {e}"));
                None
            }
        },
        Some(v) => {
            bad(
                "altinn.base_url",
                format!("must be a string, not {}", v.type_str()),
            );
            None
        }
    };
    let sync = altinn
        .and_then(|a| a.get("sync"))
        .and_then(toml::Value::as_table);
    let Some(sync) = sync else {
        bad(
            "altinn.sync",
            "is required: [altinn.sync] systems = [\"<systemId>\"]".into(),
        );
        problems.sort();
        return Err(problems.into_iter().map(|(_, p)| p).collect());
    };
    for k in sync.keys() {
        if !["systems", "client_admins", "max_removal_share"].contains(&k.as_str()) {
            bad(
                &format!("altinn.sync.{k}"),
                "unknown key (systems, client_admins, max_removal_share)".into(),
            );
        }
    }
    let mut systems = Vec::new();
    match sync.get("systems") {
        Some(toml::Value::Array(a)) if !a.is_empty() && a.len() <= MAX_SYSTEMS => {
            for (i, v) in a.iter().enumerate() {
                match v.as_str() {
                    Some(s) if !s.is_empty() && s.len() <= 255 => {
                        if systems.iter().any(|x| x == s) {
                            bad("altinn.sync.systems", format!("[{i}] {s:?} is given twice"));
                        }
                        systems.push(s.to_owned());
                    }
                    _ => bad(
                        "altinn.sync.systems",
                        format!("[{i}] must be a system id (1 to 255 characters)"),
                    ),
                }
            }
        }
        Some(_) => bad(
            "altinn.sync.systems",
            format!("must be a list of 1 to {MAX_SYSTEMS} system ids"),
        ),
        None => bad(
            "altinn.sync.systems",
            "is required: the systems whose system users are read".into(),
        ),
    }
    let mut client_admins = BTreeMap::new();
    match sync.get("client_admins") {
        None => {}
        Some(toml::Value::Table(t)) if t.len() <= MAX_SYSTEMS => {
            for (org, v) in t {
                let key = format!("altinn.sync.client_admins.{org}");
                if crate::ids::check_org_number(org).is_err() {
                    bad(&key, format!("{org:?} is not an organisation number"));
                }
                match v.as_str() {
                    Some(id) if uuid::Uuid::try_parse(id).is_ok() => {
                        client_admins.insert(org.clone(), id.to_owned());
                    }
                    _ => bad(
                        &key,
                        "must be the id (a UUID) of the customer's klientadministrator system user"
                            .into(),
                    ),
                }
            }
        }
        Some(_) => bad(
            "altinn.sync.client_admins",
            format!(
                "must be a table of at most {MAX_SYSTEMS} \"<org number>\" = \"<system user id>\""
            ),
        ),
    }
    let max_removal_share = match sync.get("max_removal_share") {
        None => Some(pure::DEFAULT_MAX_REMOVAL_SHARE),
        Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(x) if (0.0..=1.0).contains(&x) => Some(x),
            _ => {
                bad(
                    "altinn.sync.max_removal_share",
                    "must be a number from 0 to 1 (0.2 is 20 %)".into(),
                );
                None
            }
        },
    };
    match (maskinporten, base_url, max_removal_share) {
        (Some(maskinporten), Some(base_url), Some(max_removal_share)) if problems.is_empty() => {
            Ok(SyncConfig {
                maskinporten,
                base_url,
                systems,
                client_admins,
                max_removal_share,
            })
        }
        _ => {
            problems.sort();
            problems.dedup();
            Err(problems.into_iter().map(|(_, p)| p).collect())
        }
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

pub(super) fn run(cmd: AltinnCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AltinnCommand::Sync(a) => sync(a),
    }
}

/// The sync's metrics, served on `--metrics-listen`.
#[derive(Default)]
struct Metrics {
    runs: AtomicU64,
    last_success_unix: AtomicU64,
    /// Milliseconds.
    last_duration_ms: AtomicU64,
    refusals: AtomicU64,
    changes: Mutex<BTreeMap<&'static str, u64>>,
    failures: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    fn fail(&self, reason: &'static str) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, v: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        gauge(
            "vakt_altinn_sync_runs_total",
            "Syncs started.",
            "counter",
            self.runs.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "vakt_altinn_sync_last_success_timestamp_seconds",
            "When the last sync succeeded (Unix time; 0: never).",
            "gauge",
            self.last_success_unix.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "vakt_altinn_sync_duration_seconds",
            "How long the last sync took.",
            "gauge",
            format!(
                "{:.3}",
                self.last_duration_ms.load(Ordering::Relaxed) as f64 / 1000.0
            ),
        );
        gauge(
            "vakt_altinn_sync_removals_refused_total",
            "Syncs refused by the mass-removal guard.",
            "counter",
            self.refusals.load(Ordering::Relaxed).to_string(),
        );
        out.push_str("# HELP vakt_altinn_sync_changes_total Changes applied, by kind.\n# TYPE vakt_altinn_sync_changes_total counter\n");
        let changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, _) in pure::Diff::default().counts() {
            let n = changes.get(kind).copied().unwrap_or(0);
            out.push_str(&format!(
                "vakt_altinn_sync_changes_total{{kind=\"{kind}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP vakt_altinn_sync_failures_total Failed syncs, by stage.\n# TYPE vakt_altinn_sync_failures_total counter\n");
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for reason in ["read", "check", "guard", "write"] {
            let n = failures.get(reason).copied().unwrap_or(0);
            out.push_str(&format!(
                "vakt_altinn_sync_failures_total{{stage=\"{reason}\"}} {n}\n"
            ));
        }
        out
    }
}

/// Serves `GET /metrics` (and nothing else) on `listener`.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            // Out of descriptors, most likely: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // A request line and headers, at most 8 KiB, within 5 s.
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while n < buf.len() {
                    let m = conn.read(&mut buf[n..]).await?;
                    if m == 0 {
                        break;
                    }
                    n += m;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "not found\n".to_owned())
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        });
    }
}

/// Why one sync failed.
enum Failed {
    /// Altinn could not be read whole.
    Read(String),
    /// The result, or the data it joins, does not pass the checks.
    Check(Problems),
    /// The guard refused.
    Guard(pure::TooManyRemovals),
    /// Writing failed.
    Write(String),
}

impl Failed {
    fn stage(&self) -> &'static str {
        match self {
            Self::Read(_) => "read",
            Self::Check(_) => "check",
            Self::Guard(_) => "guard",
            Self::Write(_) => "write",
        }
    }
}

fn sync(a: SyncArgs) -> anyhow::Result<ExitCode> {
    let config = match read_config(&a.config) {
        Ok(c) => c,
        Err(problems) => {
            for p in problems {
                eprintln!("vakt: {p}");
            }
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    if let Some(d) = &a.data {
        if !d.is_dir() {
            anyhow::bail!("--data {}: no such directory", d.display());
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let maskinporten = match Maskinporten::new(config.maskinporten.clone()) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("vakt: {}: maskinporten: {e}", a.config.display());
                return Ok(ExitCode::from(EX_CONFIG));
            }
        };
        let altinn = match Altinn::new(&config.base_url, maskinporten) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("vakt: {}: altinn.base_url: {e}", a.config.display());
                return Ok(ExitCode::from(EX_CONFIG));
            }
        };
        let metrics = Arc::new(Metrics::default());
        if let Some(addr) = a.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(address = %listener.local_addr()?, "altinn sync metrics listening");
            tokio::spawn(serve_metrics(listener, metrics.clone()));
        }
        loop {
            let code = once(&a, &config, &altinn, &metrics).await;
            let Some(every) = a.every else {
                return Ok(code);
            };
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                () = terminated() => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}

/// Resolves on SIGTERM (never, where it cannot be listened for).
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// One sync: its outcome logged and counted; the exit code it gives alone.
async fn once(a: &SyncArgs, config: &SyncConfig, altinn: &Altinn, metrics: &Metrics) -> ExitCode {
    metrics.runs.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let result = attempt(a, config, altinn).await;
    metrics
        .last_duration_ms
        .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    match result {
        Ok(d) => {
            let c = d.counts();
            if !a.dry_run {
                metrics.last_success_unix.store(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    Ordering::Relaxed,
                );
                let mut changes = metrics.changes.lock().unwrap_or_else(|e| e.into_inner());
                for (kind, n) in c {
                    *changes.entry(kind).or_default() += n as u64;
                }
            }
            tracing::info!(
                dry_run = a.dry_run,
                system_users_added = c[0].1,
                system_users_removed = c[1].1,
                links_added = c[2].1,
                links_removed = c[3].1,
                packages_added = c[4].1,
                packages_removed = c[5].1,
                duration_ms = started.elapsed().as_millis() as u64,
                "altinn sync done"
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            metrics.fail(f.stage());
            match &f {
                Failed::Read(e) => {
                    tracing::error!(error = %e, "altinn sync failed: Altinn could not be read whole; the last good data is kept")
                }
                Failed::Check(p) => {
                    tracing::error!(error = %p, "altinn sync failed: the result does not pass the checks; the last good data is kept")
                }
                Failed::Guard(e) => {
                    metrics.refusals.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        removed = e.removed,
                        held = e.held,
                        what = e.what,
                        error = %e,
                        "altinn sync refused: too many removals at once"
                    )
                }
                Failed::Write(e) => {
                    tracing::error!(error = %e, "altinn sync failed: the data could not be written; the last good data is kept")
                }
            }
            ExitCode::from(1)
        }
    }
}

/// Reads Altinn whole: every page of every system, each system user's parties,
/// and the client list where a client administrator is configured.
async fn read_altinn(config: &SyncConfig, altinn: &Altinn) -> Result<AltinnRead, AltinnError> {
    let mut users: Vec<SystemUser> = Vec::new();
    for system in &config.systems {
        users.extend(altinn.system_users(system).await?);
    }
    let mut parties: Vec<Vec<AuthorizedParty>> = Vec::with_capacity(users.len());
    for su in &users {
        parties.push(altinn.authorized_parties(su).await?);
    }
    // The party UUID of each organisation any answer named (an owner's, for its
    // client list).
    let mut uuids: HashMap<String, String> = HashMap::new();
    for p in parties.iter().flatten() {
        if let Some(n) = &p.organization_number {
            uuids
                .entry(n.clone())
                .or_insert_with(|| p.party_uuid.clone());
        }
    }
    let mut out = AltinnRead::default();
    for (su, parties) in users.iter().zip(&parties) {
        let agent = su.kind() == Some(crate::world::UserType::Agent);
        let admin = config.client_admins.get(&su.reportee_org_no);
        let list = match (agent, admin) {
            (true, Some(admin_id)) => {
                let admin = users.iter().find(|u| u.id.eq_ignore_ascii_case(admin_id));
                let Some(admin) = admin else {
                    return Err(AltinnError::Misconfigured {
                        reason: format!(
                            "client administrator {admin_id} of {} is not among the configured systems' system users",
                            su.reportee_org_no
                        ),
                    });
                };
                let Some(owner) = uuids.get(&su.reportee_org_no) else {
                    return Err(AltinnError::Invalid {
                        call: format!("the authorized parties of system user {}", admin.id),
                        reason: format!(
                            "the owner {} is not among them, so its party UUID is unknown",
                            su.reportee_org_no
                        ),
                    });
                };
                Some(altinn.client_delegations(admin, owner, &su.id).await?)
            }
            _ => None,
        };
        out.system_users
            .push(pure::altinn::system_user(su, parties, list.as_deref()));
    }
    Ok(out)
}

/// The data as it stands in the data directory: the files the manifest lists
/// (every data file when there is no manifest yet), and the manifest's text.
fn current_files(
    dir: &Path,
    manifest: &Path,
    max: u64,
) -> Result<(Vec<SourceFile>, Option<String>), Problems> {
    if manifest.exists() {
        let text = crate::problem::read_data_file(manifest, max)
            .map_err(|m| Problems(vec![Problem::new(manifest.display().to_string(), "", m)]))?;
        let m = crate::world::parse_manifest(&manifest.display().to_string(), &text, dir)?;
        let files = crate::world::read_listed(&m, manifest, max)?;
        Ok((files, Some(text)))
    } else {
        let files = crate::problem::read_dir_files(
            dir,
            |n| n.ends_with(".json") || n.ends_with(".yaml") || n.ends_with(".yml"),
            max,
        )?;
        Ok((files, None))
    }
}

fn is_ours(name: &str) -> bool {
    let base = Path::new(name).file_name().and_then(|n| n.to_str());
    matches!(base, Some(ORGANIZATIONS_FILE | SYSTEM_USERS_FILE))
}

/// The sync's own files as they were last written.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Ours {
    #[serde(default)]
    organizations: Vec<OrganizationRecord>,
    #[serde(default)]
    system_users: Vec<SystemUserRecord>,
}

fn sources(schema: &Option<PathBuf>, data: Vec<SourceFile>) -> Result<Sources, Problems> {
    let mut s = Sources::read(&SourcePaths {
        schema: schema.clone(),
        ..SourcePaths::default()
    })?;
    s.data = data;
    Ok(s)
}

fn json(x: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string_pretty(x).unwrap_or_default();
    s.push('\n');
    s
}

async fn attempt(a: &SyncArgs, config: &SyncConfig, altinn: &Altinn) -> Result<pure::Diff, Failed> {
    // When the read of Altinn began: the stamp. What Altinn answered is at
    // least this new (a change made after it began may or may not be in it), so
    // a stamp taken later would say the data is newer than it is.
    let started = SystemTime::now();
    // Altinn first, whole: a read that fails part-way changes nothing.
    let read = read_altinn(config, altinn)
        .await
        .map_err(|e| Failed::Read(e.to_string()))?;
    match (&a.data, &a.database) {
        (Some(dir), _) => {
            let manifest = a
                .data_manifest
                .clone()
                .unwrap_or_else(|| dir.join(MANIFEST_FILE));
            let (a, config, dir) = (a.clone_parts(), config.max_removal_share, dir.clone());
            tokio::task::spawn_blocking(move || {
                to_files(&a, config, &dir, &manifest, &read, started)
            })
            .await
            .map_err(|e| Failed::Write(e.to_string()))?
        }
        (None, Some(db)) => to_postgres(a, config.max_removal_share, db, &read, started).await,
        (None, None) => Err(Failed::Write("give --data DIR or --database URL".into())),
    }
}

/// What writing needs of the arguments.
#[derive(Clone)]
struct Parts {
    schema: Option<PathBuf>,
    dry_run: bool,
    confirm_removals: bool,
    max_file_bytes: u64,
}

impl SyncArgs {
    fn clone_parts(&self) -> Parts {
        Parts {
            schema: self.schema.clone(),
            dry_run: self.dry_run,
            confirm_removals: self.confirm_removals,
            max_file_bytes: self.max_file_bytes,
        }
    }
}

/// The diff, printed for a dry run, and the guard.
fn judge(
    p: &Parts,
    max_share: f64,
    before: &BTreeMap<String, Held>,
    after: &Synced,
) -> Result<pure::Diff, Failed> {
    let d = pure::diff(before, &pure::held_in_records(&after.system_users));
    if p.dry_run {
        print!("{}", d.render());
    }
    if !p.confirm_removals {
        pure::guard(&d, max_share).map_err(Failed::Guard)?;
    }
    Ok(d)
}

fn to_files(
    p: &Parts,
    max_share: f64,
    dir: &Path,
    manifest: &Path,
    read: &AltinnRead,
    started: SystemTime,
) -> Result<pure::Diff, Failed> {
    let (files, manifest_text) =
        current_files(dir, manifest, p.max_file_bytes).map_err(Failed::Check)?;
    let (ours, others): (Vec<SourceFile>, Vec<SourceFile>) =
        files.into_iter().partition(|f| is_ours(&f.name));
    let mut previous = Ours::default();
    for f in &ours {
        let o: Ours = serde_json::from_str(&f.text)
            .map_err(|e| Failed::Check(Problems(vec![Problem::new(&f.name, "", e.to_string())])))?;
        previous.organizations.extend(o.organizations);
        previous.system_users.extend(o.system_users);
    }
    // Organisations the vendor's own files define stay there.
    let mut b = WorldBuilder::new();
    b.add_files(&others);
    let elsewhere: BTreeSet<String> = b
        .keys()
        .into_iter()
        .flat_map(|(_, keys, _)| keys)
        .filter_map(|k| match k {
            RecordKey::Organization(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    let mut synced = pure::records(read, &elsewhere);
    // An organisation Altinn no longer names is kept: an employee's audit
    // engagement or a team's portfolio may still name it.
    let named: BTreeSet<String> = synced
        .organizations
        .iter()
        .map(|o| o.org_number.clone())
        .collect();
    synced.organizations.extend(
        previous
            .organizations
            .into_iter()
            .filter(|o| !named.contains(&o.org_number) && !elsewhere.contains(&o.org_number)),
    );
    synced
        .organizations
        .sort_by(|a, b| a.org_number.cmp(&b.org_number));
    pure::keep_deleted(&previous.system_users, &mut synced);
    let before = pure::held_in_records(&previous.system_users);
    let d = judge(p, max_share, &before, &synced)?;
    let new_files = [
        (
            ORGANIZATIONS_FILE,
            json(&serde_json::json!({ "organizations": synced.organizations })),
        ),
        (
            SYSTEM_USERS_FILE,
            json(&serde_json::json!({ "systemUsers": synced.system_users })),
        ),
    ];
    // Checked with the vendor's own files as `vakt validate` would.
    let mut data = others.clone();
    data.extend(new_files.iter().map(|(n, t)| SourceFile {
        name: dir.join(n).display().to_string(),
        text: t.clone(),
    }));
    let sources = sources(&p.schema, data).map_err(Failed::Check)?;
    Snapshot::build(&sources).map_err(Failed::Check)?;
    if p.dry_run {
        return Ok(d);
    }
    // The data files first, each renamed into place; then the manifest, which
    // makes them the world (a sidecar with the manifest reads all or nothing).
    for (name, text) in &new_files {
        write_renamed(&dir.join(name), text).map_err(Failed::Write)?;
    }
    let mut lines: Vec<String> = Vec::new();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    for f in &others {
        let name = Path::new(&f.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        lines.push(format!(
            "{}  {name}",
            hex::encode(crate::world::sha256(&f.text))
        ));
        listed.insert(name);
    }
    for (name, text) in &new_files {
        lines.push(format!(
            "{}  {name}",
            hex::encode(crate::world::sha256(text))
        ));
    }
    // Comments the operator wrote are kept.
    let comments = manifest_text
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| l.starts_with('#'))
        .map(str::to_owned);
    let mut text: String = comments.chain(lines).map(|l| l + "\n").collect();
    // The time the read of Altinn began (see `attempt`).
    text = stamp(&text, started);
    write_renamed(manifest, &text).map_err(Failed::Write)?;
    Ok(d)
}

/// The manifest's text stamped as synced at `at` (S3's freshness stamp).
fn stamp(text: &str, at: SystemTime) -> String {
    crate::source::sync_stamp::restamp(text, at)
}

/// Writes `text` to a temporary file beside `path`, flushed, and renames it into
/// place: a reader sees the old file or the new one.
fn write_renamed(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.sync.tmp"));
    let done = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    done.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

async fn to_postgres(
    a: &SyncArgs,
    max_share: f64,
    db: &Database,
    read: &AltinnRead,
    started: SystemTime,
) -> Result<pure::Diff, Failed> {
    let p = a.clone_parts();
    let problems = |e| super::args::db_problems(db, e);
    let rules =
        crate::rules::snapshot::Rules::build(&sources(&p.schema, vec![]).map_err(Failed::Check)?)
            .map_err(Failed::Check)?;
    // As vakt_writer: row changes only, in one transaction that holds the
    // sync's locks from its read of the world to its commit (see
    // `write::begin_sync` for why locks).
    let mut client = postgres::connect_plain(db)
        .await
        .map_err(|e| Failed::Write(problems(e).to_string()))?;
    let syncing = write::begin_sync(&mut client, db, rules, !p.dry_run)
        .await
        .map_err(|e| match e {
            postgres::DbError::Data(_) => Failed::Check(problems(e)),
            e => Failed::Write(problems(e).to_string()),
        })?;
    let world = &syncing.world;
    let mut synced = pure::records(read, &BTreeSet::new());
    // Every organisation the database holds is kept (employees and teams may
    // name it); those Altinn names are as Altinn names them.
    let named: BTreeSet<String> = synced
        .organizations
        .iter()
        .map(|o| o.org_number.clone())
        .collect();
    synced.organizations.extend(
        world
            .organizations()
            .map(OrganizationRecord::from)
            .filter(|o| !named.contains(&o.org_number)),
    );
    let previous: Vec<SystemUserRecord> =
        world.system_users().map(SystemUserRecord::from).collect();
    pure::keep_deleted(&previous, &mut synced);
    let before = pure::held_in_world(world);
    let d = judge(&p, max_share, &before, &synced)?;
    let teams: Vec<TeamRecord> = world.teams().map(TeamRecord::from).collect();
    let employees: Vec<EmployeeRecord> = world.employees().map(EmployeeRecord::from).collect();
    // Checked as `vakt validate` would, with the vendor's teams and employees as
    // the locked transaction reads them: what is checked is what commits.
    let sources = sources(&p.schema, vec![]).map_err(Failed::Check)?;
    let snapshot = Snapshot::build_with(&sources, |b| {
        b.add_records(
            "altinn sync",
            synced.organizations.clone(),
            synced.system_users.clone(),
            teams,
            employees,
        )
    })
    .map_err(Failed::Check)?;
    // Entities in Cedar's own format are not written, but the check above
    // would not see them: a world with any is refused rather than left
    // unchecked.
    if world.cedar_entities().next().is_some() {
        return Err(Failed::Check(Problems(vec![Problem::new(
            db.to_string(),
            "",
            "the database holds entities in Cedar's own format, which the sync's check does not cover; sync into a world without them",
        )])));
    }
    if p.dry_run {
        return Ok(d);
    }
    // Stamped with the time the read of Altinn began: the data is at least
    // that new, never newer than the stamp says.
    let written = syncing
        .commit(&snapshot.world, started)
        .await
        .map_err(|e| Failed::Write(problems(e).to_string()))?;
    tracing::debug!(
        organizations = written.organizations,
        system_users = written.system_users,
        "altinn sync rows written"
    );
    Ok(d)
}
