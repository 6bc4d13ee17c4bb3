//! The `vakt` command line: `serve`, `validate`, `check`, `test`, `fmt` and
//! `replay`. Errors become messages and exit codes here; nothing below this layer
//! uses `anyhow`. Exit codes: 0 success or allow, 1 invalid, failing or deny, 2 usage
//! error (bad flags, missing paths, unreadable input).

use crate::decide::{decide, Query, RawRequest};
use crate::decision_log::{DecisionLog, FileSink, Fsync, Writers};
use crate::server::{self, Vakt, DEFAULT_MAX_BATCH};
use crate::snapshot::{Snapshot, SnapshotHandle, SourcePaths, Sources};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "vakt",
    version,
    about = "Authorization sidecar for employees acting through Altinn system users"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC sidecar (with no flags: shipped policies, schema and example world).
    Serve(ServeArgs),
    /// Parse and strictly validate policies, schema and data; report every problem.
    Validate(SourceArgs),
    /// Decide one request against local files, without a server.
    Check(CheckArgs),
    /// Run policy test suites (*_test.yaml).
    Test(TestArgs),
    /// Format policy files in Cedar's canonical style.
    Fmt(FmtArgs),
    /// Re-decide logged decisions under candidate policies; report what would flip.
    Replay(ReplayArgs),
    /// Check decision logs.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain of decision log files (oldest first, for rotated
    /// files), and against a checkpoint detect a truncated tail.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A checkpoint written beside the log (`<log>.checkpoint`); defaults to the
        /// one beside the last file, when it exists.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TestArgs {
    /// Suite files, or directories searched for *_test.yaml.
    #[arg(default_value = "policies/tests")]
    paths: Vec<PathBuf>,
    /// Directory of *.cedar policy files under test.
    #[arg(long, env = "VAKT_POLICIES", value_name = "DIR")]
    policies: Option<PathBuf>,
    /// Directory of *.cedarschema files.
    #[arg(long, env = "VAKT_SCHEMA", value_name = "DIR")]
    schema: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Report, per policy, how many cases it decided.
    #[arg(long)]
    coverage: bool,
    /// Fail when fewer than N percent of the policies decided at least one case.
    #[arg(long, value_name = "N")]
    min_coverage: Option<f64>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Pretty,
    Json,
}

#[derive(Args)]
struct FmtArgs {
    /// List the files that would change and exit 1 instead of rewriting them.
    #[arg(long)]
    check: bool,
    /// Policy files, or directories of *.cedar files.
    #[arg(default_value = "policies")]
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct ReplayArgs {
    /// A decision log (JSON lines) written by `vakt serve`.
    #[arg(long, value_name = "DECISIONS.jsonl")]
    log: PathBuf,
    #[command(flatten)]
    sources: SourceArgs,
    /// Exit 1 when a logged deny would be allowed (deny-to-allow) or on any flip (any).
    #[arg(long, value_enum)]
    fail_on: Option<crate::replay::FailOn>,
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
}

/// Where policies, schema and data come from; each defaults to the built-in copy.
#[derive(Args, Clone)]
struct SourceArgs {
    /// Directory of *.cedar policy files.
    #[arg(long, env = "VAKT_POLICIES", value_name = "DIR")]
    policies: Option<PathBuf>,
    /// Directory of *.cedarschema files (and access-packages.json).
    #[arg(long, env = "VAKT_SCHEMA", value_name = "DIR")]
    schema: Option<PathBuf>,
    /// Directory of JSON/YAML data files (organizations, systemUsers, teams, employees).
    #[arg(long, env = "VAKT_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
}

impl SourceArgs {
    /// A directory named on the command line that does not exist is a usage error.
    fn check_paths(&self) -> anyhow::Result<()> {
        for (flag, p) in [
            ("--policies", &self.policies),
            ("--schema", &self.schema),
            ("--data", &self.data),
        ] {
            if let Some(p) = p {
                if !p.is_dir() {
                    anyhow::bail!("{flag} {}: no such directory", p.display());
                }
            }
        }
        Ok(())
    }

    fn paths(&self) -> SourcePaths {
        SourcePaths {
            policies: self.policies.clone(),
            schema: self.schema.clone(),
            data: self.data.clone(),
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// Address to listen on. A sidecar listens on loopback by default.
    #[arg(long, env = "VAKT_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Largest number of requests accepted in one AuthorizeBatch.
    #[arg(long, env = "VAKT_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// Where decision records go: "stdout" (buffered), "file:PATH" (durable: a call
    /// is answered only once its record is written), or "off". Repeat for several.
    #[arg(
        long,
        env = "VAKT_DECISION_LOG",
        value_delimiter = ',',
        default_value = "stdout"
    )]
    decision_log: Vec<String>,
    /// Context attributes written as "[redacted]" in decision records.
    #[arg(
        long,
        env = "VAKT_DECISION_LOG_REDACT",
        value_delimiter = ',',
        value_name = "FIELD"
    )]
    decision_log_redact: Vec<String>,
    /// When a durable decision log file is fsynced.
    #[arg(long, env = "VAKT_DECISION_LOG_FSYNC", value_enum, default_value_t = Fsync::Always)]
    decision_log_fsync: Fsync,
    /// Rotate a decision log file once it holds this many bytes.
    #[arg(long, env = "VAKT_DECISION_LOG_ROTATE_BYTES", value_name = "BYTES")]
    decision_log_rotate_bytes: Option<u64>,
    /// Rotate a decision log file once it has been written to for this many seconds.
    #[arg(long, env = "VAKT_DECISION_LOG_ROTATE_SECS", value_name = "SECONDS")]
    decision_log_rotate_secs: Option<u64>,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    sources: SourceArgs,
    #[arg(long)]
    employee: String,
    #[arg(long)]
    system_user: String,
    #[arg(long)]
    client: String,
    #[arg(long)]
    package: String,
    #[arg(long, default_value = "")]
    action: String,
    /// Caller context attributes as a JSON object, e.g. '{"mfa": true}'.
    #[arg(long)]
    context: Option<String>,
}

/// Runs the command line; exit codes: 0 ok/allow, 1 invalid/deny, 2 usage error.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Serve(a) => serve(a).map(|()| ExitCode::SUCCESS),
        Command::Validate(a) => a.check_paths().map(|()| validate(&a)),
        Command::Check(a) => check(a),
        Command::Test(a) => test(a),
        Command::Fmt(a) => fmt(a),
        Command::Replay(a) => replay(a),
        Command::Audit(AuditCommand::Verify { files, checkpoint }) => {
            audit_verify(&files, checkpoint)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vakt: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_diagnostics() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VAKT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Diagnostics go to stderr; stdout carries decision records.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .json()
        .try_init();
}

fn load(sources: &SourceArgs) -> Result<Snapshot, crate::problem::Problems> {
    Snapshot::build(&Sources::read(&sources.paths())?)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.sources.check_paths()?;
    init_diagnostics();
    let snapshot = load(&args.sources).map_err(|p| anyhow::anyhow!("{p}"))?;
    if args.max_batch == 0 {
        anyhow::bail!("--max-batch must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let mut log = DecisionLog::disabled();
        log.redact_context_fields(args.decision_log_redact.iter().cloned());
        let mut writers = Writers::default();
        for sink in &args.decision_log {
            match sink.as_str() {
                "stdout" => log.add_buffered(Box::new(std::io::stdout()), 65_536, &mut writers),
                "off" => {}
                s if s.starts_with("otlp:") || s.starts_with("otlp+durable:") => {
                    let (durable, endpoint) = match s.strip_prefix("otlp+durable:") {
                        Some(e) => (true, e),
                        None => (false, &s["otlp:".len()..]),
                    };
                    log.add_otlp(endpoint, durable, &mut writers)
                }
                s if s.starts_with("file:") || s.starts_with("file+buffered:") => log
                    .add_durable_file(
                        Path::new(s.split_once(':').map_or("", |(_, p)| p)),
                        FileSink {
                            durable: s.starts_with("file:"),
                            fsync: args.decision_log_fsync,
                            rotate_bytes: args.decision_log_rotate_bytes.filter(|b| *b > 0),
                            rotate_after: args
                                .decision_log_rotate_secs
                                .filter(|s| *s > 0)
                                .map(std::time::Duration::from_secs),
                        },
                        &mut writers,
                    )
                    .map_err(|e| anyhow::anyhow!("--decision-log {s}: {e}"))?,
                other => anyhow::bail!(
                    "--decision-log {other:?}: expected stdout, file:PATH, file+buffered:PATH, otlp:URL, otlp+durable:URL or off"
                ),
            }
        }
        let counts = snapshot.world.counts();
        tracing::info!(
            revision = %snapshot.revision,
            policies = snapshot.policies.set.policies().count(),
            entities = counts.entities(),
            client_links = counts.client_links,
            "snapshot loaded"
        );
        let vakt = Arc::new(Vakt {
            snapshot: SnapshotHandle::new(snapshot),
            log,
            max_batch: args.max_batch,
        });
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        let reload = tokio::spawn(reload_on_hangup(vakt.clone(), args.sources.clone()));
        server::serve(listener, vakt.clone(), shutdown_signal()).await?;
        // The decision log's writer finishes once every handle to it is gone, so
        // stop the reload task (it holds one) before waiting for the last records.
        reload.abort();
        let _ = reload.await;
        drop(vakt);
        writers.finish().await;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// On SIGHUP, re-reads every source and swaps in the new snapshot; on any problem,
/// keeps serving the old one.
async fn reload_on_hangup(vakt: Arc<Vakt>, sources: SourceArgs) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let s = sources.clone();
        match tokio::task::spawn_blocking(move || load(&s)).await {
            Ok(Ok(snap)) => {
                tracing::info!(revision = %snap.revision, "snapshot reloaded");
                vakt.snapshot.store(snap);
            }
            Ok(Err(problems)) => {
                tracing::error!(problems = %problems, "reload failed; keeping the current snapshot")
            }
            Err(e) => tracing::error!(error = %e, "reload failed; keeping the current snapshot"),
        }
    }
}

/// Prints every problem to stderr; exit code 1.
fn report_problems(problems: &crate::problem::Problems) -> ExitCode {
    for p in &problems.0 {
        eprintln!("{p}");
    }
    eprintln!("{} problem(s) found", problems.0.len());
    ExitCode::from(1)
}

fn validate(args: &SourceArgs) -> ExitCode {
    match load(args) {
        Ok(snap) => {
            for w in &snap.policies.warnings {
                println!("warning: {w}");
            }
            let c = snap.world.counts();
            println!(
                "ok: {} policies, {} organisations, {} system users ({} client links), {} teams, {} employees; revision {}",
                snap.policies.set.policies().count(),
                c.organizations,
                c.system_users,
                c.client_links,
                c.teams,
                c.employees,
                snap.revision
            );
            ExitCode::SUCCESS
        }
        Err(problems) => report_problems(&problems),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    args.sources.check_paths()?;
    let snap = match load(&args.sources) {
        Ok(s) => s,
        // Invalid policies or data: reported like `validate`, exit 1.
        Err(problems) => return Ok(report_problems(&problems)),
    };
    let context = match &args.context {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            Ok(_) => anyhow::bail!("--context must be a JSON object"),
            Err(e) => anyhow::bail!("--context is not valid JSON: {e}"),
        },
    };
    let raw = RawRequest {
        employee_id: args.employee,
        system_user_id: args.system_user,
        client_org_number: args.client,
        access_package: args.package,
        action: args.action,
        context,
    };
    let q = Query::check(&snap, raw, "").map_err(|e| anyhow::anyhow!("{e}"))?;
    let d = decide(&snap, &q);
    println!("{}", if d.allowed { "ALLOW" } else { "DENY" });
    for r in &d.reasons {
        println!("  {}: {}", r.policy_id, r.message);
    }
    Ok(if d.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let sources = SourceArgs {
        policies: args.policies.clone(),
        schema: args.schema.clone(),
        data: None,
    };
    sources.check_paths()?;
    let base = Sources::read(&sources.paths()).map_err(|p| anyhow::anyhow!("{p}"))?;
    // Policies and schema under test must load before any suite can mean anything.
    if let Err(problems) = Snapshot::build(&base) {
        return Ok(report_problems(&problems));
    }
    let files = crate::suite::discover(&args.paths)?;
    if files.is_empty() {
        anyhow::bail!("no *_test.yaml suite found in {:?}", args.paths);
    }
    let report = crate::suite::run(&files, &base);
    match args.format {
        Format::Pretty => print!("{}", crate::suite::render_pretty(&report, args.coverage)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, crate::suite::render_junit(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut ok = report.failed() == 0;
    if let Some(min) = args.min_coverage {
        let got = report.coverage_percent();
        if got < min {
            eprintln!("coverage {got:.1}% is below the minimum of {min}%");
            ok = false;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Every *.cedar file in `paths` (files as given, directories not recursed).
fn policy_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_file() {
            out.push(p.clone());
        } else if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().is_some_and(|e| e == "cedar"))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            anyhow::bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(out)
}

fn fmt(args: FmtArgs) -> anyhow::Result<ExitCode> {
    let config = cedar_policy_formatter::Config {
        line_width: 80,
        indent_width: 2,
    };
    let mut changed = Vec::new();
    let mut failed = false;
    for f in policy_files(&args.paths)? {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let pretty = match cedar_policy_formatter::policies_str_to_pretty(&text, &config) {
            Ok(p) => p,
            Err(e) => {
                for p in
                    crate::problem::from_diagnostic(&f.display().to_string(), &text, e.as_ref())
                {
                    eprintln!("{p}");
                }
                failed = true;
                continue;
            }
        };
        if pretty != text {
            changed.push(f.clone());
            if !args.check {
                std::fs::write(&f, &pretty).with_context(|| format!("writing {}", f.display()))?;
            }
        }
    }
    for f in &changed {
        println!(
            "{}{}",
            if args.check {
                "would reformat "
            } else {
                "reformatted "
            },
            f.display()
        );
    }
    Ok(if failed || (args.check && !changed.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    args.sources.check_paths()?;
    let text = std::fs::read_to_string(&args.log)
        .with_context(|| format!("reading {}", args.log.display()))?;
    let snap = load(&args.sources).map_err(|p| anyhow::anyhow!("{p}"))?;
    let name = args.log.display().to_string();
    let report = crate::replay::replay(&name, &text, &snap);
    match args.format {
        Format::Pretty => print!("{}", crate::replay::render(&report, &name, &snap.revision)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if !report.problems.is_empty() {
        return Ok(ExitCode::from(2));
    }
    Ok(if report.fails(args.fail_on) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn audit_verify(files: &[PathBuf], checkpoint: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let texts = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .map(|t| (f.display().to_string(), t))
                .with_context(|| format!("reading {}", f.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let default_cp = files
        .last()
        .map(|f| crate::decision_log::checkpoint_path(f))
        .filter(|p| p.is_file());
    let cp = match checkpoint.or(default_cp) {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let cp: crate::audit::Checkpoint = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a checkpoint", path.display()))?;
            Some(cp)
        }
    };
    match crate::audit::verify(&texts, cp.as_ref()) {
        Ok(v) => {
            let against = cp
                .map(|c| format!(", consistent with the checkpoint of {} records", c.records))
                .unwrap_or_default();
            println!("ok: {} records, chain head {}{against}", v.records, v.head);
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("BROKEN: {broken}");
            Ok(ExitCode::from(1))
        }
    }
}
