//! `vakt replay`: re-decide logged decisions under candidate policies.

use super::args::{Format, SourceArgs};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct ReplayArgs {
    /// A decision log (JSON lines) written by `vakt serve`.
    #[arg(long, value_name = "DECISIONS.jsonl")]
    log: PathBuf,
    #[command(flatten)]
    sources: SourceArgs,
    /// Exit 1 when a logged deny would be allowed (deny-to-allow) or on any flip
    /// (any) [default: report only]
    #[arg(long, value_enum)]
    fail_on: Option<crate::tools::replay::FailOn>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
}

pub(super) fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    args.sources.check_paths()?;
    let text = crate::problem::read_named(&args.log, crate::problem::MAX_LOG_BYTES)
        .map_err(anyhow::Error::msg)?;
    args.sources.announce(true);
    let snap = args.sources.load().map_err(|p| anyhow::anyhow!("{p}"))?;
    let name = args.log.display().to_string();
    let report = crate::tools::replay::replay(&name, &text, &snap);
    match args.format {
        Format::Pretty => print!(
            "{}",
            crate::tools::replay::render(&report, &name, &snap.revision)
        ),
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
