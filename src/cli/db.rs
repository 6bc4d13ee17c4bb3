//! `vakt db`: the PostgreSQL database as a shared source of data. Applies the
//! schema's migrations, and moves a world between files and the database.
//!
//! Who connects as what: `migrate` as a superuser (or a role with CREATEROLE that
//! owns schema `vakt`), `import` as a member of `vakt_owner`, `export` and `vakt
//! serve` as members of `vakt_reader`; whatever writes the world's rows, as a
//! member of `vakt_writer`.

use super::args::{db_problems, report_problems};
use crate::problem::{Problem, Problems};
use crate::rules::snapshot::{Rules, Snapshot, SourcePaths, Sources};
use crate::source::postgres::{self, migrate, write, Database, PostgresSource};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

// Each command's help names the role it runs as (see the module's comment).
#[derive(Subcommand)]
pub(super) enum DbCommand {
    /// Create or upgrade Vakt's schema (`vakt`) in the database, with the roles
    /// vakt_owner, vakt_writer and vakt_reader (no login, no password); safe to run
    /// from many places at once. Run it as a superuser (or a role with CREATEROLE
    /// that owns the schema).
    Migrate(DbArgs),
    /// Load the data files in DIR into the database, checked as `vakt serve` checks
    /// them, in one transaction; every sidecar then reads the world again whole.
    /// Run it as a member of vakt_owner: the only way to bulk load.
    Import(ImportArgs),
    /// Write the database's world into DIR as data files (as a member of
    /// vakt_reader).
    Export(ExportArgs),
}

#[derive(Args)]
pub(super) struct DbArgs {
    /// The database, as postgres://USER:PASSWORD@HOST:PORT/DB
    #[arg(long, env = "VAKT_DATABASE", value_name = "URL", value_parser = super::args::DatabaseParser)]
    database: Database,
    /// Directory of *.cedarschema files and access-packages.json, whose packages
    /// the database accepts [default: the built-in copy of schema/]
    #[arg(long, env = "VAKT_SCHEMA", value_name = "DIR")]
    schema: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct ImportArgs {
    /// Directory of JSON/YAML data files.
    dir: PathBuf,
    #[command(flatten)]
    db: DbArgs,
    /// Replace the world the database holds (without it, the database must hold
    /// none).
    #[arg(long)]
    replace: bool,
    /// Largest data file read, in bytes; a larger one is refused.
    #[arg(long, env = "VAKT_MAX_FILE_BYTES", value_name = "BYTES", default_value_t = crate::problem::DEFAULT_MAX_FILE_BYTES)]
    max_file_bytes: u64,
}

#[derive(Args)]
pub(super) struct ExportArgs {
    /// Directory to write organizations.json, system-users.json, teams.json,
    /// employees.json and (for entities in Cedar's own format) entities.json into;
    /// created if missing.
    dir: PathBuf,
    #[command(flatten)]
    db: DbArgs,
}

pub(super) fn run(cmd: DbCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cmd {
            DbCommand::Migrate(a) => migrate_db(a).await,
            DbCommand::Import(a) => import(a).await,
            DbCommand::Export(a) => export(a).await,
        }
    })
}

fn paths(schema: &Option<PathBuf>) -> SourcePaths {
    SourcePaths {
        schema: schema.clone(),
        ..SourcePaths::default()
    }
}

async fn migrate_db(a: DbArgs) -> anyhow::Result<ExitCode> {
    let sources = match Sources::read(&paths(&a.schema)) {
        Ok(s) => s,
        Err(p) => return Ok(report_problems(&p)),
    };
    let rules = match Rules::build(&sources) {
        Ok(r) => r,
        Err(p) => return Ok(report_problems(&p)),
    };
    let mut client = match postgres::connect_plain(&a.database).await {
        Ok(c) => c,
        Err(e) => return Ok(report_problems(&db_problems(&a.database, e))),
    };
    match migrate::migrate(&mut client, rules.packages.urns()).await {
        Ok(m) => {
            for (v, name) in &m.applied {
                eprintln!("vakt: applied migration {v} ({name})");
            }
            println!(
                "{}: Vakt schema at version {}{}",
                a.database,
                m.version,
                if m.applied.is_empty() {
                    " (already up to date)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report_problems(&db_problems(&a.database, e))),
    }
}

async fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    if !a.dir.is_dir() {
        anyhow::bail!("{}: no such directory", a.dir.display());
    }
    let paths = SourcePaths {
        data: Some(a.dir.clone()),
        max_file_bytes: a.max_file_bytes,
        ..paths(&a.db.schema)
    };
    let snapshot = match tokio::task::spawn_blocking(move || {
        Sources::read(&paths).and_then(|s| Snapshot::build(&s))
    })
    .await?
    {
        Ok(s) => s,
        Err(p) => return Ok(report_problems(&p)),
    };
    let mut client = match postgres::connect_plain(&a.db.database).await {
        Ok(c) => c,
        Err(e) => return Ok(report_problems(&db_problems(&a.db.database, e))),
    };
    match write::import(&mut client, &snapshot.world, a.replace).await {
        Ok(done) => {
            let c = snapshot.world.counts();
            println!(
                "{}: imported {} organisations, {} system users, {} client links, {} teams, {} employees, {} other entities ({} rows)",
                a.db.database,
                c.organizations,
                c.system_users,
                c.client_links,
                c.teams,
                c.employees,
                snapshot.world.cedar_entities().count(),
                done.rows
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report_problems(&db_problems(&a.db.database, e))),
    }
}

async fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    if a.dir.exists() {
        let foreign = other_data_files(&a.dir)?;
        if !foreign.is_empty() {
            return Ok(report_problems(&Problems(
                foreign
                    .into_iter()
                    .map(|f| {
                        Problem::new(
                            f,
                            "",
                            "a data file the export would not replace; export into an empty directory",
                        )
                    })
                    .collect(),
            )));
        }
    } else {
        std::fs::create_dir_all(&a.dir)?;
    }
    let sources = match Sources::read(&paths(&a.db.schema)) {
        Ok(s) => s,
        Err(p) => return Ok(report_problems(&p)),
    };
    let rules = match Rules::build(&sources) {
        Ok(r) => r,
        Err(p) => return Ok(report_problems(&p)),
    };
    let snapshot = match PostgresSource::load(a.db.database.clone(), rules).await {
        Ok((_, s)) => s,
        Err(e) => return Ok(report_problems(&db_problems(&a.db.database, e))),
    };
    let dir = a.dir.clone();
    let written = tokio::task::spawn_blocking(move || snapshot.world.write_files(&dir)).await??;
    println!(
        "{}: wrote {} files into {}",
        a.db.database,
        written.len(),
        a.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Data files in `dir` that are not the export's own.
fn other_data_files(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let ours: Vec<&str> = crate::world::FILES
        .iter()
        .map(|(_, f)| *f)
        .chain([crate::world::CEDAR_FILE])
        .collect();
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let data = [".json", ".yaml", ".yml"].iter().any(|x| name.ends_with(x));
        if data && !ours.contains(&name) {
            out.push(p.display().to_string());
        }
    }
    out.sort();
    Ok(out)
}
