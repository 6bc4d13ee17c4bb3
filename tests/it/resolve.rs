//! ResolveSystemUser returns exactly the system users the employee may use.

use crate::common;
use common::*;
use vakt::proto::{ResolveSystemUserRequest, ResolveSystemUserResponse};

async fn resolve(
    s: &mut TestServer,
    employee: &str,
    client: &str,
    package: &str,
) -> ResolveSystemUserResponse {
    s.client
        .resolve_system_user(ResolveSystemUserRequest {
            employee_id: employee.into(),
            client_org_number: client.into(),
            access_package: package.into(),
            ..Default::default()
        })
        .await
        .expect("ResolveSystemUser succeeds")
        .into_inner()
}

fn ids(r: &ResolveSystemUserResponse) -> Vec<&str> {
    r.system_users.iter().map(|s| s.id.as_str()).collect()
}

#[tokio::test]
async fn returns_exactly_the_usable_system_users() {
    let mut s = start(default_snapshot()).await;
    // Kaffebrenneriet is on both the accounting-only and the combined system user.
    let r = resolve(&mut s, "kari", "310019194", REGNSKAP).await;
    assert_eq!(ids(&r), ["tk-regnskap", "tk-regnskap-syk"]);
    assert!(r.reasons.is_empty());
    assert!(!r.decision_id.is_empty() && !r.revision.is_empty());

    let r = resolve(&mut s, "kari", "310019194", SYKEFRAVAER).await;
    assert_eq!(ids(&r), ["tk-regnskap-syk"]);
    let choice = &r.system_users[0];
    assert_eq!(choice.external_ref, "tk-regnskap-syk");
    assert_eq!(choice.user_type, "agent");
    assert_eq!(choice.system_id, "310001015_regnskapsys");

    let r = resolve(&mut s, "kari", "310017175", SYKEFRAVAER).await;
    assert_eq!(ids(&r), ["tk-sykefravaer"]);

    // The auditor gets the auditor system user, never the accountant one.
    let r = resolve(&mut s, "randi", "310021210", REVISOR).await;
    assert_eq!(ids(&r), ["rr-revisjon"]);

    // Own reporting plus the self-delegated agent.
    let r = resolve(&mut s, "ingrid", "310008087", SYKEFRAVAER).await;
    assert_eq!(ids(&r), ["ok-egen", "ok-samlet"]);
    let r = resolve(&mut s, "ingrid", "310011118", AORDNING).await;
    assert_eq!(ids(&r), ["ok-underenheter"]);
}

#[tokio::test]
async fn empty_with_reasons_when_none_is_usable() {
    let mut s = start(default_snapshot()).await;
    let r = resolve(&mut s, "randi", "310021210", REGNSKAP).await;
    assert!(r.system_users.is_empty());
    let policies: Vec<&str> = r.reasons.iter().map(|x| x.policy_id.as_str()).collect();
    assert!(policies.contains(&"auditor-separation-of-duties"), "{r:#?}");

    let r = resolve(&mut s, "per", "310015156", REGNSKAP).await;
    assert!(r.system_users.is_empty());
    assert!(
        r.reasons
            .iter()
            .any(|x| x.policy_id == "employee-deactivated"),
        "{r:#?}"
    );

    let r = resolve(&mut s, "nobody", "310015156", REGNSKAP).await;
    assert!(r.system_users.is_empty());
    assert_eq!(r.reasons.len(), 1);
    assert!(r.reasons[0].message.contains("nobody"));
}

#[tokio::test]
async fn malformed_input_is_invalid_argument() {
    let mut s = start(default_snapshot()).await;
    let err = s
        .client
        .resolve_system_user(ResolveSystemUserRequest {
            employee_id: "kari".into(),
            client_org_number: "310019195".into(),
            access_package: REGNSKAP.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("client_org_number:"),
        "{}",
        err.message()
    );
}
