//! `vakt review`: write the access review of one organisation as CSV, JSON or a
//! self-contained HTML file.

use super::args::SourceArgs;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct ReviewArgs {
    /// The organisation (9-digit org number) whose employees, teams and system
    /// users are reviewed.
    #[arg(long, value_name = "ORGNR")]
    org: String,
    /// Decision log files (oldest first, as `vakt audit verify` takes them): their
    /// chain is verified, then their allows show which system users and team
    /// grants were used [default: usage is not assessed]
    #[arg(long, value_name = "DECISIONS.jsonl", num_args = 1..)]
    log: Vec<PathBuf>,
    /// The public key of the log's checkpoint signing key: every checkpoint must
    /// carry its signature, as in `vakt audit verify --public-key`.
    #[arg(long, value_name = "FILE", requires = "log")]
    public_key: Option<PathBuf>,
    /// Count only allows at or after this time as use: a date (2026-11-01, from
    /// midnight UTC) or an RFC 3339 time [default: the whole log]
    #[arg(long, value_name = "DATE", requires = "log")]
    since: Option<String>,
    /// Output format [default: from the --out file's extension]
    #[arg(long, value_enum)]
    format: Option<ReviewFormat>,
    /// Where to write the review; `-` for standard output.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    sources: SourceArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ReviewFormat {
    Csv,
    Json,
    Html,
}

/// `--since`: a date or an RFC 3339 time, as a time and as written back.
fn parse_since(s: &str) -> Result<(std::time::SystemTime, String), String> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(|t| (t, full))
        .map_err(|e| {
            format!("--since {s:?}: {e} (give a date such as 2026-11-01, or an RFC 3339 time)")
        })
}

pub(super) fn run(args: ReviewArgs) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        Some(f) => f,
        None => match args.out.extension().and_then(|e| e.to_str()) {
            Some("csv") => ReviewFormat::Csv,
            Some("json") => ReviewFormat::Json,
            Some("html" | "htm") => ReviewFormat::Html,
            _ => anyhow::bail!(
                "--format: not given, and the --out file {} has no csv, json or html extension",
                args.out.display()
            ),
        },
    };
    crate::ids::check_org_number(&args.org)
        .map_err(|e| anyhow::anyhow!("--org {:?}: {e}", args.org))?;
    let org = crate::world::OrgNo::parse(&args.org).map_err(|e| anyhow::anyhow!("--org: {e}"))?;
    let since = args
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    args.sources.check_paths()?;
    let usage = if args.log.is_empty() {
        None
    } else {
        let checked = super::audit::read_for_verify(&args.log, &[], args.public_key.as_deref())?;
        let against = crate::decision_log::verify::Against {
            current: checked.current.as_ref(),
            copies: &checked.others,
            key: checked.key.as_ref(),
        };
        if let Err(broken) = crate::decision_log::verify::verify(&checked.texts, &against) {
            eprintln!("BROKEN: {broken}");
            eprintln!("the decision log does not verify, so it cannot show what was used; no review was written");
            return Ok(ExitCode::from(1));
        }
        Some(crate::tools::review::read_usage(&checked.texts)?)
    };
    args.sources.announce(true);
    let snap = args.sources.load().map_err(|p| anyhow::anyhow!("{p}"))?;
    let review = crate::tools::review::review(&snap, org, usage.as_ref(), since)?;
    let text = match format {
        ReviewFormat::Csv => crate::tools::review::csv(&review),
        ReviewFormat::Json => serde_json::to_string_pretty(&review)? + "\n",
        ReviewFormat::Html => crate::tools::review::html(&review),
    };
    if args.out.as_os_str() == "-" {
        print!("{text}");
    } else {
        super::report::write_report(&args.out, text.as_bytes())?;
        let s = &review.summary;
        eprintln!(
            "wrote {}: {} employees, {} access rows, {} conflicts, {} deactivated in teams, {} unused system users, {} unused team grants, {} unusable clients",
            args.out.display(),
            s.employees,
            s.access,
            s.conflicts,
            s.deactivated_in_teams,
            if review.log.is_some() { s.unused_system_users.to_string() } else { "(not assessed)".into() },
            if review.log.is_some() { s.unused_team_grants.to_string() } else { "(not assessed)".into() },
            s.unusable_clients,
        );
    }
    Ok(ExitCode::SUCCESS)
}
