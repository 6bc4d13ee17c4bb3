//! `vakt check`: one decision against local files, without a server.

use super::args::{report_problems, SourceArgs};
use crate::decision::{decide, Query, RawRequest};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// The employee (or automated job) behind the call.
    #[arg(long, value_name = "ID")]
    employee: String,
    /// The system user the call would be made through.
    #[arg(long, value_name = "ID")]
    system_user: String,
    /// The client's 9-digit organisation number.
    #[arg(long, value_name = "ORGNR")]
    client: String,
    /// The access package URN (urn:altinn:accesspackage:...).
    #[arg(long, value_name = "URN")]
    package: String,
    /// The Cedar action.
    #[arg(long, default_value = crate::rules::model::DEFAULT_ACTION)]
    action: String,
    /// Caller context attributes as a JSON object, e.g. '{"mfa": true}'.
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
}

pub(super) fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    args.sources.check_paths()?;
    let context = match &args.context {
        None => None,
        Some(text) => match crate::json::parse(text.as_bytes()) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            Ok(_) => anyhow::bail!("--context must be a JSON object"),
            Err(e) => anyhow::bail!("--context: {e}"),
        },
    };
    args.sources.announce(true);
    let snap = match args.sources.load() {
        Ok(s) => s,
        // Invalid policies or data: reported like `validate`, exit 1.
        Err(problems) => return Ok(report_problems(&problems)),
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
