//! `vakt shadow report`: what the candidate policies of `--shadow-policies` would
//! have decided differently, from the decisions recorded in the log.

use super::args::Format;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum ShadowCommand {
    /// Summarise the shadow flips a decision log recorded: by direction and by
    /// the policies responsible, with examples. Exit 0, or 1 with --fail-on when
    /// it is triggered; 2 on unreadable lines.
    Report {
        /// Decision logs (JSON lines) written by `vakt serve --shadow-policies`.
        #[arg(value_name = "LOG", required = true)]
        logs: Vec<PathBuf>,
        /// Exit 1 when a served deny would have been allowed (deny-to-allow) or
        /// on any flip (any) [default: report only]
        #[arg(long, value_enum)]
        fail_on: Option<crate::tools::replay::FailOn>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Pretty)]
        format: Format,
    },
}

pub(super) fn run(cmd: ShadowCommand) -> anyhow::Result<ExitCode> {
    let ShadowCommand::Report {
        logs,
        fail_on,
        format,
    } = cmd;
    let mut code = ExitCode::SUCCESS;
    let mut reports = Vec::new();
    for log in &logs {
        let text = crate::problem::read_named(log, crate::problem::MAX_LOG_BYTES)
            .map_err(anyhow::Error::msg)?;
        let name = log.display().to_string();
        let report = crate::tools::replay::shadow_report(&name, &text);
        if !report.problems.is_empty() {
            code = ExitCode::from(2);
        } else if report.fails(fail_on) && code == ExitCode::SUCCESS {
            code = ExitCode::from(1);
        }
        match format {
            Format::Pretty => print!("{}", crate::tools::replay::render_shadow(&report, &name)),
            Format::Json => reports.push(serde_json::json!({"log": name, "report": report})),
        }
    }
    if matches!(format, Format::Json) {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(code)
}
