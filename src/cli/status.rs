//! `vakt status`: ask a running sidecar how it stands.

use super::args::Format;
use crate::proto::authorizer_client::AuthorizerClient;
use crate::proto::StatusRequest;
use anyhow::Context as _;
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct StatusArgs {
    /// The sidecar to ask.
    #[arg(long, env = "VAKT_ADDRESS", default_value = "http://127.0.0.1:50051")]
    address: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
}

pub(super) fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let s = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(args.address.clone())
            .with_context(|| format!("{:?} is not a URL", args.address))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.address))?;
        let r = AuthorizerClient::new(channel)
            .status(StatusRequest {})
            .await
            .with_context(|| format!("asking {} for its status", args.address))?;
        anyhow::Ok(r.into_inner())
    })?;
    match args.format {
        super::args::Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "revision": s.revision,
                "rules_revision": s.rules_revision,
                "data_sequence": s.data_sequence,
                "data_age_seconds": s.data_age_seconds,
                "sync_state": s.sync_state,
                "last_error": s.last_error,
                "data_source": s.data_source,
                "changes_applied": s.changes_applied,
                "max_staleness_seconds": s.max_staleness_seconds,
                "last_sync_unix": s.last_sync_unix,
                "sync_age_seconds": s.sync_age_seconds,
                "max_sync_age_seconds": s.max_sync_age_seconds,
                "organizations": s.organizations,
                "system_users": s.system_users,
                "client_links": s.client_links,
                "teams": s.teams,
                "employees": s.employees,
            }))?
        ),
        super::args::Format::Pretty => {
            println!(
                "revision        {} (rules {})",
                s.revision, s.rules_revision
            );
            println!(
                "data            {}, sequence {}, confirmed current {:.1} s ago, {} change sets applied",
                s.data_source, s.data_sequence, s.data_age_seconds, s.changes_applied
            );
            let limit = if s.max_staleness_seconds > 0.0 {
                format!(" (denies past {:.1} s)", s.max_staleness_seconds)
            } else {
                String::new()
            };
            println!("sync            {}{limit}", s.sync_state);
            println!("altinn sync     {}", altinn_sync(&s));
            println!(
                "world           {} organisations, {} system users ({} client links), {} teams, {} employees",
                s.organizations, s.system_users, s.client_links, s.teams, s.employees
            );
            if !s.last_error.is_empty() {
                println!("last error      {}", s.last_error);
            }
        }
    }
    // The exit status says whether the data may be decided on: live, and (under
    // --max-sync-age) synced recently enough.
    let sync_ok = s.max_sync_age_seconds <= 0.0
        || (s.last_sync_unix > 0.0 && s.sync_age_seconds <= s.max_sync_age_seconds);
    Ok(if s.sync_state == "live" && sync_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The last sync from Altinn, for people: its time and age, and the limit.
fn altinn_sync(s: &crate::proto::StatusResponse) -> String {
    let limit = if s.max_sync_age_seconds > 0.0 {
        format!(" (denies past {:.1} s)", s.max_sync_age_seconds)
    } else {
        String::new()
    };
    if s.last_sync_unix <= 0.0 {
        let denied = if limit.is_empty() {
            ""
        } else {
            ": every request is denied"
        };
        return format!("never (the data carries no sync stamp){limit}{denied}");
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(s.last_sync_unix);
    format!(
        "{}, {:.1} s ago{limit}",
        humantime::format_rfc3339_seconds(at),
        s.sync_age_seconds
    )
}
