//! What several commands share: where policies, schema and data come from, the
//! output format, and how problems are reported.

use crate::problem::Problems;
use crate::snapshot::{Snapshot, SourcePaths, Sources};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// employees) [default: the built-in example world, examples/world/]
    #[arg(long, env = "VAKT_DATA", value_name = "DIR")]
    pub(super) data: Option<PathBuf>,
    /// Largest policy, schema or data file read, in bytes; a larger one is refused.
    #[arg(long, env = "VAKT_MAX_FILE_BYTES", value_name = "BYTES", default_value_t = crate::problem::DEFAULT_MAX_FILE_BYTES)]
    pub(super) max_file_bytes: u64,
}

impl SourceArgs {
    /// A directory named on the command line that does not exist is a usage error.
    pub(super) fn check_paths(&self) -> anyhow::Result<()> {
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

    pub(super) fn paths(&self) -> SourcePaths {
        SourcePaths {
            policies: self.policies.clone(),
            schema: self.schema.clone(),
            data: self.data.clone(),
            max_file_bytes: self.max_file_bytes,
        }
    }

    /// Reads and builds the snapshot these sources name.
    pub(super) fn load(&self) -> Result<Snapshot, Problems> {
        Snapshot::build(&Sources::read(&self.paths())?)
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
            line.push_str(&format!(
                ", data from {}",
                from(&self.data, "example world (examples/world/)")
            ));
        }
        eprintln!("{line}");
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
