//! What several commands share: where policies, schema and data come from, the
//! output format, and how problems are reported.

use crate::problem::{Problem, Problems};
use crate::rules::snapshot::{Rules, Snapshot, SourcePaths, Sources};
use crate::source::postgres::{Database, DbError, PostgresSource};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the data comes from: a directory of files, or a PostgreSQL database.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum DataArg {
    Dir(PathBuf),
    Database(Box<Database>),
}

/// Parses a database URL without ever echoing it: clap's own message for a bad
/// value quotes the value, and a URL may hold a password.
#[derive(Clone, Copy)]
pub(super) struct DatabaseParser;

impl clap::builder::TypedValueParser for DatabaseParser {
    type Value = Database;
    fn parse_ref(
        &self,
        _: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Database, clap::Error> {
        let name = arg.map_or("the database".to_owned(), |a| format!("--{}", a.get_id()));
        let bad = |m: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "{name}: not a usable database URL (not shown, it may hold a password): {m}\n"
                ),
            )
        };
        value
            .to_str()
            .ok_or_else(|| bad("not UTF-8".into()))?
            .parse()
            .map_err(bad)
    }
}

/// `--data DIR|URL`, parsed without echoing a URL.
#[derive(Clone, Copy)]
pub(super) struct DataParser;

impl clap::builder::TypedValueParser for DataParser {
    type Value = DataArg;
    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<DataArg, clap::Error> {
        if value.to_str().is_some_and(Database::is_url) {
            DatabaseParser
                .parse_ref(cmd, arg, value)
                .map(|db| DataArg::Database(Box::new(db)))
        } else {
            Ok(DataArg::Dir(PathBuf::from(value)))
        }
    }
}

super::changes::settings! {
/// Where policies, schema and data come from; each defaults to the built-in copy.
#[derive(Args, Clone, Default)]
pub(super) struct SourceArgs {
    /// Directory of *.cedar policy files [default: the built-in copy of policies/]
    #[arg(long, env = "VAKT_POLICIES", value_name = "DIR")]
    pub(super) policies: Option<PathBuf>,
    /// Directory of *.cedarschema files and access-packages.json [default: the
    /// built-in copy of schema/]
    #[arg(long, env = "VAKT_SCHEMA", value_name = "DIR")]
    pub(super) schema: Option<PathBuf>,
    /// Directory of JSON/YAML data files (organizations, systemUsers, teams,
    /// employees), or a PostgreSQL database as postgres://USER:PASSWORD@HOST/DB
    /// [default: the built-in example world, examples/world/]
    #[arg(long, env = "VAKT_DATA", value_name = "DIR|URL", value_parser = DataParser)]
    pub(super) data: Option<DataArg>,
    /// A manifest of the data files in sha256sum's format (`sha256sum *.yaml >
    /// SHA256SUMS`): only the files it lists are read, and only once each matches
    /// its SHA-256, so a set of files being written is never applied half-done
    /// [default: every data file in --data, once written and settled]
    #[arg(long, env = "VAKT_DATA_MANIFEST", value_name = "FILE")]
    pub(super) data_manifest: Option<PathBuf>,
    /// Largest policy, schema or data file read, in bytes; a larger one is refused.
    #[arg(long, env = "VAKT_MAX_FILE_BYTES", value_name = "BYTES", default_value_t = crate::problem::DEFAULT_MAX_FILE_BYTES)]
    pub(super) max_file_bytes: u64,
    /// What a client link that lists no packages for a relationship (such as the
    /// authentication API's delegated-clients list) carries
    #[arg(
        long,
        env = "VAKT_LINKS_WITHOUT_PACKAGES",
        value_enum,
        default_value = "deny"
    )]
    pub(super) links_without_packages: LinksWithoutPackages,
}
}

/// `--links-without-packages`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq)]
pub(super) enum LinksWithoutPackages {
    /// No packages: requests through such a link are denied with
    /// package-not-delegated-for-client
    #[default]
    Deny,
    /// The system user's own packages; each decision that relied on it carries
    /// the reason vakt:link-packages-assumed
    SystemUserPackages,
}

impl SourceArgs {
    /// A directory named on the command line that does not exist is a usage error.
    pub(super) fn check_paths(&self) -> anyhow::Result<()> {
        for (flag, p) in [
            ("--policies", &self.policies),
            ("--schema", &self.schema),
            ("--data", &self.data_dir()),
        ] {
            if let Some(p) = p {
                if !p.is_dir() {
                    anyhow::bail!("{flag} {}: no such directory", p.display());
                }
            }
        }
        if let Some(m) = &self.data_manifest {
            if self.data_dir().is_none() {
                anyhow::bail!(
                    "--data-manifest {}: needs --data DIR (a directory of data files)",
                    m.display()
                );
            }
            if !m.is_file() {
                anyhow::bail!("--data-manifest {}: no such file", m.display());
            }
        }
        Ok(())
    }

    /// The data directory, when the data comes from files.
    pub(super) fn data_dir(&self) -> Option<PathBuf> {
        match &self.data {
            Some(DataArg::Dir(d)) => Some(d.clone()),
            _ => None,
        }
    }

    /// The database, when the data comes from one.
    pub(super) fn database(&self) -> Option<&Database> {
        match &self.data {
            Some(DataArg::Database(db)) => Some(db),
            _ => None,
        }
    }

    /// Where the files come from (no data directory when the data is a database).
    pub(super) fn paths(&self) -> SourcePaths {
        SourcePaths {
            policies: self.policies.clone(),
            schema: self.schema.clone(),
            data: self.data_dir(),
            data_manifest: self.data_manifest.clone(),
            max_file_bytes: self.max_file_bytes,
            link_packages: match self.links_without_packages {
                LinksWithoutPackages::Deny => crate::rules::model::LinkPackages::None,
                LinksWithoutPackages::SystemUserPackages => {
                    crate::rules::model::LinkPackages::SystemUserPackages
                }
            },
        }
    }

    /// Reads and builds the snapshot these sources name.
    pub(super) fn load(&self) -> Result<Snapshot, Problems> {
        let Some(db) = self.database() else {
            return Snapshot::build(&Sources::read(&self.paths())?);
        };
        let rules = Rules::build(&Sources::read(&self.paths())?)?;
        let loaded = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| db_problems(db, DbError::Io(e)))?
            .block_on(PostgresSource::load(db.clone(), rules));
        loaded.map(|(_, s)| s).map_err(|e| db_problems(db, e))
    }

    /// One line on stderr saying where each input came from, so that a command run
    /// from any directory says what it decided on.
    pub(super) fn announce(&self, with_data: bool) {
        let from = |p: &Option<PathBuf>, builtin: &str| match p {
            Some(d) => d.display().to_string(),
            None => format!("built-in {builtin}"),
        };
        let mut line = format!(
            "vakt: policies from {}, schema from {}",
            from(&self.policies, "policies/"),
            from(&self.schema, "schema/")
        );
        if with_data {
            let data = match &self.data {
                Some(DataArg::Database(db)) => db.to_string(),
                _ => from(&self.data_dir(), "example world (examples/world/)"),
            };
            line.push_str(&format!(", data from {data}"));
        }
        eprintln!("{line}");
    }
}

/// A database's failure as problems: each of the data's problems on its own, named
/// by the database.
pub(super) fn db_problems(db: &Database, e: DbError) -> Problems {
    let name = db.to_string();
    match e {
        DbError::Data(list) => Problems(
            list.into_iter()
                .map(|m| Problem::new(name.clone(), "", m))
                .collect(),
        ),
        other => Problems(vec![Problem::new(name, "", other.to_string())]),
    }
}

/// Prints every problem to stderr; exit code 1.
pub(super) fn report_problems(problems: &Problems) -> ExitCode {
    for p in &problems.0 {
        eprintln!("{p}");
    }
    eprintln!("{} problem(s) found", problems.0.len());
    ExitCode::from(1)
}

/// Output format of the reporting commands.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum Format {
    /// Readable text.
    Pretty,
    /// One JSON document.
    Json,
}
