//! `vakt test`: run policy test suites.

use super::args::{report_problems, Format, SourceArgs};
use crate::rules::snapshot::{Snapshot, Sources};
use crate::tools::suite;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct TestArgs {
    /// Suite files, or directories searched for *_test.yaml [default: the built-in
    /// copy of the shipped suites, policies/tests/]
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Directory of *.cedar policy files under test [default: the built-in copy of
    /// policies/]
    #[arg(long, env = "VAKT_POLICIES", value_name = "DIR")]
    policies: Option<PathBuf>,
    /// Directory of *.cedarschema files [default: the built-in copy of schema/]
    #[arg(long, env = "VAKT_SCHEMA", value_name = "DIR")]
    schema: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Report, per policy, how many cases it decided.
    #[arg(long)]
    coverage: bool,
    /// Fail when fewer than N percent of the policies decided at least one case
    /// [default: no minimum]
    #[arg(long, value_name = "N")]
    min_coverage: Option<f64>,
}

pub(super) fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let sources = SourceArgs {
        policies: args.policies.clone(),
        schema: args.schema.clone(),
        data: None,
        data_manifest: None,
        max_file_bytes: crate::problem::DEFAULT_MAX_FILE_BYTES,
        links_without_packages: Default::default(),
    };
    sources.check_paths()?;
    let files = if args.paths.is_empty() {
        eprintln!("vakt: suites from the built-in copy of policies/tests/");
        suite::builtin()
    } else {
        suite::discover(&args.paths)?
    };
    if files.is_empty() {
        anyhow::bail!("no *_test.yaml suite found in {:?}", args.paths);
    }
    sources.announce(false);
    let base = Sources::read(&sources.paths()).map_err(|p| anyhow::anyhow!("{p}"))?;
    // Policies and schema under test must load before any suite can mean anything.
    if let Err(problems) = Snapshot::build(&base) {
        return Ok(report_problems(&problems));
    }
    let report = suite::run(&files, &base);
    match args.format {
        Format::Pretty => print!("{}", suite::render_pretty(&report, args.coverage)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(path) = &args.junit {
        super::report::write_report(path, suite::render_junit(&report).as_bytes())?;
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
