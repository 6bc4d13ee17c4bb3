//! A small client for a running Vakt: one allow, two denies with reasons, and which
//! system user to fetch a token for.
//!
//! Run `cargo run --release -- serve` in one terminal, then
//! `cargo run --release --example client [http://127.0.0.1:50051]` in another.
//! (tests/it/readme.rs runs `run` against a real server and checks that the README
//! shows exactly what it prints.)

use std::fmt::Write as _;
use vakt::proto::authorizer_client::AuthorizerClient;
use vakt::proto::{AuthorizeRequest, ResolveSystemUserRequest};

const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    print!("{}", run(addr).await?);
    Ok(())
}

/// Asks the questions and returns what to print.
pub async fn run(addr: String) -> Result<String, Box<dyn std::error::Error>> {
    let mut vakt = AuthorizerClient::connect(addr).await?;
    let mut out = String::new();
    for (employee, system_user, client, why) in [
        (
            "kari",
            "tk-regnskap",
            "310015156",
            "Kari (accounting team) for client Bakeri Brød AS",
        ),
        (
            "kari",
            "tk-regnskap",
            "310020206",
            "Kari for Havbris AS, whose client link was removed",
        ),
        (
            "randi",
            "rr-regnskap",
            "310021210",
            "Randi, Fjordfisk's auditor, as its accountant",
        ),
    ] {
        let r = vakt
            .authorize(AuthorizeRequest {
                employee_id: employee.into(),
                system_user_id: system_user.into(),
                client_org_number: client.into(),
                access_package: REGNSKAP.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        writeln!(
            out,
            "{why}:\n  {:?} (decision {}, revision {})",
            r.decision(),
            r.decision_id,
            r.revision
        )?;
        for reason in &r.reasons {
            writeln!(out, "    {}: {}", reason.policy_id, reason.message)?;
        }
    }

    let r = vakt
        .resolve_system_user(ResolveSystemUserRequest {
            employee_id: "kari".into(),
            client_org_number: "310019194".into(),
            access_package: "urn:altinn:accesspackage:sykefravaer".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    writeln!(
        out,
        "System users Kari may use for Kaffebrenneriet AS with sykefravaer:"
    )?;
    for s in &r.system_users {
        writeln!(
            out,
            "  {} (external ref {}, {})",
            s.id, s.external_ref, s.user_type
        )?;
    }
    Ok(out)
}
