//! Every rule 1 to 8 of domain.md, allowed and denied, through the real server.

use crate::common;
use common::*;
use prost_types::value::Kind;
use vakt::proto::Decision;

// Org numbers in examples/world.
const TALL_OG_KONTROLL: &str = "310001015";
const NORDLYS: &str = "310005053";
const BAKERI: &str = "310015156";
const BAKERI_MAJORSTUEN: &str = "310016160";
const FJELLSPORT: &str = "310017175";
const HAVBRIS: &str = "310020206";
const FJORDFISK: &str = "310021210";
const SNEKKERIET: &str = "310022225";
const LYSVERKET: &str = "310024244";
const SOLSIDEN: &str = "310025259";
const ELVEBREDDEN: &str = "310026263";

#[tokio::test]
async fn rule1_employee_known_active_authenticated() {
    let mut s = start(default_snapshot()).await;
    assert_allow(&s.ask("kari", "tk-regnskap", BAKERI, REGNSKAP).await);
    assert_deny(
        &s.ask("per", "tk-regnskap", BAKERI, REGNSKAP).await,
        &["employee-deactivated"],
    );
    assert_deny(
        &s.ask("ghost", "tk-regnskap", BAKERI, REGNSKAP).await,
        &["employee-unknown"],
    );

    let mut r = request("kari", "tk-regnskap", BAKERI, REGNSKAP);
    r.context = Some(context(&[("authenticated", Kind::BoolValue(false))]));
    let resp = s.client.authorize(r.clone()).await.unwrap().into_inner();
    assert_deny(&resp, &["employee-not-authenticated"]);

    r.context = Some(context(&[
        ("authenticated", Kind::BoolValue(true)),
        ("mfa", Kind::BoolValue(true)),
    ]));
    assert_allow(&s.client.authorize(r).await.unwrap().into_inner());
}

#[tokio::test]
async fn rule1_automated_jobs_are_principals_too() {
    let mut s = start(default_snapshot()).await;
    assert_allow(
        &s.ask("tk-amelding-batch", "tk-regnskap", FJELLSPORT, REGNSKAP)
            .await,
    );
    assert_deny(
        &s.ask("tk-amelding-batch", "tk-regnskap", HAVBRIS, REGNSKAP)
            .await,
        &["client-not-linked"],
    );
}

#[tokio::test]
async fn rule2_system_user_known_and_not_deleted() {
    let mut s = start(default_snapshot()).await;
    assert_allow(&s.ask("kari", "tk-regnskap", BAKERI, REGNSKAP).await);
    assert_deny(
        &s.ask("kari", "tk-gammel", BAKERI, REGNSKAP).await,
        &["system-user-deleted"],
    );
    assert_deny(
        &s.ask("kari", "tk-missing", BAKERI, REGNSKAP).await,
        &["system-user-unknown"],
    );
}

#[tokio::test]
async fn rule3_no_cross_tenant_use() {
    let mut s = start(default_snapshot()).await;
    assert_allow(&s.ask("siri", "nm-egen", NORDLYS, SKATT).await);
    // Kari (Tall og Kontroll) tries Nordlys Maskin's system user.
    let r = s.ask("kari", "nm-egen", NORDLYS, SKATT).await;
    assert_eq!(r.decision(), Decision::Deny);
    assert!(policy_ids(&r).contains(&"tenant-mismatch"), "{r:#?}");
    assert!(r
        .reasons
        .iter()
        .any(|x| x.message.contains(TALL_OG_KONTROLL) && x.message.contains(NORDLYS)));
}

#[tokio::test]
async fn rule3_cross_tenant_denied_even_when_a_team_grants_it() {
    // A misconfigured team of Tall og Kontroll that lists Nordlys Maskin's system user.
    let dir = tempfile::tempdir().unwrap();
    for f in ["organizations.yaml", "system-users.yaml", "employees.yaml"] {
        std::fs::copy(format!("examples/world/{f}"), dir.path().join(f)).unwrap();
    }
    let teams = std::fs::read_to_string("examples/world/teams.yaml").unwrap()
        + "  - id: tk-feil\n    organization: \"310001015\"\n    systemUsers: [nm-egen]\n    clients: all\n";
    std::fs::write(dir.path().join("teams.yaml"), teams).unwrap();
    let emp = std::fs::read_to_string(dir.path().join("employees.yaml")).unwrap()
        + "  - id: trond\n    organization: \"310001015\"\n    active: true\n    teams: [tk-feil]\n";
    std::fs::write(dir.path().join("employees.yaml"), emp).unwrap();

    let mut s = start(snapshot_from(None, None, Some(dir.path()))).await;
    assert_deny(
        &s.ask("trond", "nm-egen", NORDLYS, SKATT).await,
        &["tenant-mismatch"],
    );
}

#[tokio::test]
async fn rule4_a_team_of_the_employee_is_granted_the_system_user() {
    let mut s = start(default_snapshot()).await;
    assert_allow(&s.ask("jonas", "ed-regnskap", SOLSIDEN, REGNSKAP).await);
    // Eva works in property management; the accounting system user is not hers.
    assert_deny(
        &s.ask("eva", "ed-regnskap", SOLSIDEN, REGNSKAP).await,
        &["team-not-granted"],
    );
}

#[tokio::test]
async fn rule5_system_user_holds_the_package() {
    let mut s = start(default_snapshot()).await;
    assert_allow(
        &s.ask("kari", "tk-sykefravaer", FJELLSPORT, SYKEFRAVAER)
            .await,
    );
    assert_deny(
        &s.ask("kari", "tk-regnskap", FJELLSPORT, SYKEFRAVAER).await,
        &["package-not-delegated-for-client", "package-not-held"],
    );
    // The agent holds a-ordning, but Bydel Grünerløkka's link carries only
    // sykefravaer: Altinn would refuse the call, so Vakt denies it.
    assert_allow(
        &s.ask("ingrid", "ok-underenheter", "310013137", SYKEFRAVAER)
            .await,
    );
    assert_deny(
        &s.ask("ingrid", "ok-underenheter", "310013137", AORDNING)
            .await,
        &["package-not-delegated-for-client"],
    );
}

#[tokio::test]
async fn rule6_client_coverage() {
    let mut s = start(default_snapshot()).await;
    // Agent: linked client allowed, removed link denied.
    assert_allow(&s.ask("kari", "tk-regnskap", BAKERI, REGNSKAP).await);
    assert_deny(
        &s.ask("kari", "tk-regnskap", HAVBRIS, REGNSKAP).await,
        &["client-not-linked"],
    );
    // An operational unit inherits from its linked parent.
    assert_allow(
        &s.ask("kari", "tk-regnskap", BAKERI_MAJORSTUEN, REGNSKAP)
            .await,
    );
    // Standard: the owner and its operational unit, nobody else.
    assert_allow(&s.ask("siri", "nm-egen", "310006068", MVA).await);
    // Bakeri is outside nm-egen's coverage and outside Siri's team portfolio.
    assert_deny(
        &s.ask("siri", "nm-egen", BAKERI, MVA).await,
        &["client-not-covered", "client-outside-portfolio"],
    );
}

#[tokio::test]
async fn rule7_portfolio_checked_team_by_team() {
    let mut s = start(default_snapshot()).await;
    // Ola's team covers Bakeri (and so its operational unit) only.
    assert_allow(&s.ask("ola", "tk-regnskap", BAKERI, REGNSKAP).await);
    assert_allow(
        &s.ask("ola", "tk-regnskap", BAKERI_MAJORSTUEN, REGNSKAP)
            .await,
    );
    assert_deny(
        &s.ask("ola", "tk-regnskap", FJELLSPORT, REGNSKAP).await,
        &["client-outside-portfolio"],
    );
    // Nina: team tk-nord grants tk-regnskap (portfolio Bakeri); team tk-lonn has
    // Fjellsport (grants only tk-sykefravaer). The two do not combine.
    assert_deny(
        &s.ask("nina", "tk-regnskap", FJELLSPORT, REGNSKAP).await,
        &["client-outside-portfolio"],
    );
    assert_allow(
        &s.ask("nina", "tk-sykefravaer", FJELLSPORT, SYKEFRAVAER)
            .await,
    );
    // Lise: same shape at Eiendomsdrift.
    assert_allow(
        &s.ask("lise", "ed-forretningsforer", SOLSIDEN, FORRETNINGSFORER)
            .await,
    );
    assert_deny(
        &s.ask("lise", "ed-forretningsforer", ELVEBREDDEN, FORRETNINGSFORER)
            .await,
        &["client-outside-portfolio"],
    );
}

#[tokio::test]
async fn rule8_auditor_never_acts_as_accountant_for_an_audit_client() {
    let mut s = start(default_snapshot()).await;
    assert_deny(
        &s.ask("randi", "rr-regnskap", FJORDFISK, REGNSKAP).await,
        &["auditor-separation-of-duties"],
    );
    assert_allow(&s.ask("randi", "rr-revisjon", FJORDFISK, REVISOR).await);
    assert_allow(&s.ask("randi", "rr-revisjon", SNEKKERIET, REVISOR).await);
    // Colleagues without the engagement may act as accountant.
    assert_allow(&s.ask("magnus", "rr-regnskap", FJORDFISK, REGNSKAP).await);
    // Randi's engagement does not limit her for other clients.
    assert_allow(&s.ask("randi", "rr-aordning", LYSVERKET, AORDNING).await);
}

#[tokio::test]
async fn a_deny_lists_every_rule_that_failed() {
    let mut s = start(default_snapshot()).await;
    // Per is deactivated, tk-regnskap lacks the package, and Havbris is unlinked;
    // Per's team covers all clients, so the portfolio rule holds.
    assert_deny(
        &s.ask("per", "tk-regnskap", HAVBRIS, SYKEFRAVAER).await,
        &[
            "employee-deactivated",
            "package-not-held",
            "client-not-linked",
        ],
    );
}
