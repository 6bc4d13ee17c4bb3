//! The `vakt` command line: `serve`, `validate` and `check`. Errors become
//! messages and exit codes here; nothing below this layer uses `anyhow`.

use crate::decide::{decide, Query, RawRequest};
use crate::decision_log::DecisionLog;
use crate::server::{self, Vakt, DEFAULT_MAX_BATCH};
use crate::snapshot::{Snapshot, SnapshotHandle, SourcePaths, Sources};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Where decision records go: "stdout" or "off".
    #[arg(long, env = "VAKT_DECISION_LOG", default_value = "stdout")]
    decision_log: String,
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
        Command::Validate(a) => Ok(validate(&a)),
        Command::Check(a) => check(a),
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
        let (log, log_task) = match args.decision_log.as_str() {
            "stdout" => {
                let (l, t) = DecisionLog::spawn(Box::new(std::io::stdout()), 65_536);
                (l, Some(t))
            }
            "off" => (DecisionLog::disabled(), None),
            other => anyhow::bail!("--decision-log {other:?}: expected \"stdout\" or \"off\""),
        };
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
        tokio::spawn(reload_on_hangup(vakt.clone(), args.sources.clone()));
        server::serve(listener, vakt.clone(), shutdown_signal()).await?;
        tracing::info!("stopped");
        drop(vakt);
        if let Some(t) = log_task {
            let _ = t.await;
        }
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
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s) found", problems.0.len());
            ExitCode::from(1)
        }
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let snap = load(&args.sources).map_err(|p| anyhow::anyhow!("{p}"))?;
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
