//! `vakt audit verify`: check the hash chain of decision log files.

use crate::decision_log::chain::{checkpoint_path, Checkpoint};
use crate::decision_log::verify::verify;
use anyhow::Context as _;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Verify the hash chain of decision log files (oldest first, for rotated
    /// files), and against a checkpoint detect a truncated tail.
    Verify {
        /// Log files, oldest first: `decisions.jsonl.* decisions.jsonl`.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// A checkpoint to check the log against [default: `<last file>.checkpoint`,
        /// when it exists]
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
}

pub(super) fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify { files, checkpoint } = cmd;
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
        .map(|f| checkpoint_path(f))
        .filter(|p| p.is_file());
    let cp = match checkpoint.or(default_cp) {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let cp: Checkpoint = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a checkpoint", path.display()))?;
            Some(cp)
        }
    };
    match verify(&texts, cp.as_ref()) {
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
