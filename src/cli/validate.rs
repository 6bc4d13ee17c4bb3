//! `vakt validate`: parse and strictly validate policies, schema and data.

use super::args::{report_problems, SourceArgs};
use std::process::ExitCode;

pub(super) fn run(args: &SourceArgs) -> anyhow::Result<ExitCode> {
    args.check_paths()?;
    args.announce(true);
    let snap = match args.load() {
        Ok(s) => s,
        Err(problems) => return Ok(report_problems(&problems)),
    };
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
    Ok(ExitCode::SUCCESS)
}
