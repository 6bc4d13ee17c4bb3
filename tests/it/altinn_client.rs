//! The Altinn client (src/altinn/) against the Altinn stand-in
//! (tests/it/common/altinn.rs) and the Maskinporten stand-in: every page of the
//! vendor's system-user list or none, deletions as absence, `next` links kept
//! on the base URL's origin, refusals and outages in their own kinds, a system
//! user's authorized parties with its own exchanged token, and an agent's
//! client list read with the client administrator's token.

use crate::common;
use common::altinn::{
    client, party, Altinn as AltinnStandIn, SystemUserFixture, AUTHORIZED_PARTIES_SCOPE,
    CLIENT_DELEGATIONS_SCOPE, SYSTEM_USERS_PATH,
};
use common::maskinporten::*;
use std::collections::HashSet;
use vakt::altinn::{Altinn, AltinnError, ClientList, Limits, SystemUser};
use vakt::maskinporten::Maskinporten;

const SYSTEM: &str = "310000000_vakt";
const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
const LONN: &str = "urn:altinn:accesspackage:regnskapsforer-lonn";
const REGN_ROLE: &str = "urn:altinn:external-role:ccr:regnskapsforer";

struct Env {
    _dir: tempfile::TempDir,
    mp: StandIn,
    altinn: AltinnStandIn,
    client: Altinn,
}

/// The stand-ins with the vendor's system registered, and a client for them
/// whose Maskinporten client may ask for the system users' scopes.
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    mp.register_client(
        CLIENT_ID,
        VENDOR_ORG,
        ClientKey::Jwk(Box::new(key(1).jwk(CLIENT_KID))),
        &[AUTHORIZED_PARTIES_SCOPE, CLIENT_DELEGATIONS_SCOPE],
    );
    let altinn = AltinnStandIn::start(&mp).await;
    altinn.add_system(SYSTEM, VENDOR_ORG);
    let client = Altinn::new(
        &altinn.base,
        Maskinporten::new(mp.config(dir.path())).unwrap(),
    )
    .unwrap();
    Env {
        _dir: dir,
        mp,
        altinn,
        client,
    }
}

fn ids(users: &[SystemUser]) -> HashSet<String> {
    users.iter().map(|u| u.id.clone()).collect()
}

fn expected_ids(records: &[serde_json::Value]) -> HashSet<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `n` valid organisation numbers from `seed` on.
fn orgs(mut seed: u32, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        seed += 1;
        out.extend(common::altinn::org_number(seed));
    }
    out
}

fn fixture(id: &str, org: &str, external_ref: Option<&str>, user_type: &str) -> SystemUserFixture {
    SystemUserFixture {
        id: id.into(),
        system_id: SYSTEM.into(),
        org: org.into(),
        external_ref: external_ref.map(str::to_owned),
        user_type: user_type.into(),
    }
}

#[tokio::test]
async fn every_page_is_read_across_five_pages() {
    let e = env().await;
    let records = e.altinn.add_system_users(&e.mp, SYSTEM, 1000, 230);
    // Another system's system users are not in this system's list.
    e.altinn.add_system("310000000_other", VENDOR_ORG);
    e.altinn.add_system_users(&e.mp, "310000000_other", 5000, 3);
    let before = e.altinn.list_pages();
    let users = e.client.system_users(SYSTEM).await.unwrap();
    assert_eq!(e.altinn.list_pages() - before, 5, "50 a page: 5 pages");
    assert_eq!(users.len(), 230);
    assert_eq!(ids(&users), expected_ids(&records));
    let first = &users[0];
    assert_eq!(first.system_id, SYSTEM);
    assert_eq!(first.supplier_orgno, VENDOR_ORG);
    assert_eq!(first.kind(), Some(vakt::world::UserType::Standard));
    assert_eq!(first.external_ref, first.reportee_org_no);
    assert_eq!(first.grant_external_ref(), None);
}

#[tokio::test]
async fn a_deleted_system_user_is_absent_from_the_next_read() {
    let e = env().await;
    let records = e.altinn.add_system_users(&e.mp, SYSTEM, 2000, 60);
    let gone = records[55]["id"].as_str().unwrap().to_owned();
    assert!(ids(&e.client.system_users(SYSTEM).await.unwrap()).contains(&gone));
    e.altinn.delete_system_user(&gone);
    let users = e.client.system_users(SYSTEM).await.unwrap();
    assert_eq!(users.len(), 59);
    assert!(!ids(&users).contains(&gone));
}

#[tokio::test]
async fn a_failure_on_page_3_of_5_fails_the_whole_read() {
    let e = env().await;
    e.altinn.add_system_users(&e.mp, SYSTEM, 3000, 201);
    for status in [500, 503, 429] {
        e.altinn.fail_page(Some((3, status)));
        let err = e.client.system_users(SYSTEM).await.unwrap_err();
        let AltinnError::Unavailable { call, reason } = &err else {
            panic!("{status}: expected Unavailable, got {err:?}")
        };
        assert!(call.contains("page 3"), "{call}");
        assert!(call.contains(SYSTEM), "{call}");
        assert!(reason.contains(&status.to_string()), "{reason}");
        assert_eq!(err.kind(), "unavailable");
    }
    // Page 3 refused is refused, not unavailable; still nothing is returned.
    e.altinn.fail_page(Some((3, 403)));
    let err = e.client.system_users(SYSTEM).await.unwrap_err();
    assert!(
        matches!(&err, AltinnError::Refused { status: Some(403), call, .. } if call.contains("page 3")),
        "{err:?}"
    );
    // Healed, the same read is whole: 201 on 5 pages.
    e.altinn.fail_page(None);
    assert_eq!(e.client.system_users(SYSTEM).await.unwrap().len(), 201);
}

#[tokio::test]
async fn an_answer_vakt_cannot_use_names_its_page_and_field() {
    let e = env().await;
    e.altinn.add_system_users(&e.mp, SYSTEM, 3500, 120);
    e.altinn.corrupt_page(Some(2));
    let err = e.client.system_users(SYSTEM).await.unwrap_err();
    let AltinnError::Invalid { call, reason } = &err else {
        panic!("expected Invalid, got {err:?}")
    };
    assert!(call.contains("page 2"), "{call}");
    assert!(reason.starts_with("data[0].reporteeOrgNo: "), "{reason}");
    e.altinn.corrupt_page(None);
    // Bounds: pages, and bytes of one answer.
    let limited = |limits| e.client.clone().with_limits(limits);
    let err = limited(Limits {
        max_pages: 2,
        ..Limits::default()
    })
    .system_users(SYSTEM)
    .await
    .unwrap_err();
    assert!(
        matches!(&err, AltinnError::Invalid { reason, .. } if reason.contains("more than 2 pages")),
        "{err:?}"
    );
    let err = limited(Limits {
        max_items: 100,
        ..Limits::default()
    })
    .system_users(SYSTEM)
    .await
    .unwrap_err();
    assert!(
        matches!(&err, AltinnError::Invalid { call, reason } if call.contains("page 3") && reason.contains("more than 100 items")),
        "{err:?}"
    );
    let err = limited(Limits {
        max_body: 4096,
        ..Limits::default()
    })
    .system_users(SYSTEM)
    .await
    .unwrap_err();
    assert!(
        matches!(&err, AltinnError::Invalid { call, reason } if call.contains("page 1") && reason.contains("4096")),
        "{err:?}"
    );
    assert_eq!(e.client.system_users(SYSTEM).await.unwrap().len(), 120);
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused_and_nothing_is_sent_there() {
    let e = env().await;
    e.altinn.add_system_users(&e.mp, SYSTEM, 4000, 80);
    // Another server on another port: another origin, as another host would be.
    let elsewhere = AltinnStandIn::start(&e.mp).await;
    elsewhere.add_system(SYSTEM, VENDOR_ORG);
    let foreign = format!("{}{SYSTEM_USERS_PATH}{SYSTEM}?token=MTox", elsewhere.base);
    e.altinn.set_next_override(Some(&foreign));
    let err = e.client.system_users(SYSTEM).await.unwrap_err();
    let AltinnError::Invalid { call, reason } = &err else {
        panic!("expected Invalid, got {err:?}")
    };
    assert!(call.contains("page 1"), "{call}");
    assert!(reason.contains("links.next"), "{reason}");
    assert!(reason.contains(&elsewhere.base), "{reason}");
    assert_eq!(elsewhere.list_pages(), 0, "the token went elsewhere");
    // https on the same host and port is another origin too.
    let port = e.altinn.addr.port();
    e.altinn.set_next_override(Some(&format!(
        "https://127.0.0.1:{port}{SYSTEM_USERS_PATH}{SYSTEM}"
    )));
    assert!(matches!(
        e.client.system_users(SYSTEM).await,
        Err(AltinnError::Invalid { .. })
    ));
    // A next link back to the first page is a loop.
    e.altinn.set_next_override(Some(&format!(
        "{}{SYSTEM_USERS_PATH}{SYSTEM}",
        e.altinn.base
    )));
    let err = e.client.system_users(SYSTEM).await.unwrap_err();
    assert!(
        matches!(&err, AltinnError::Invalid { reason, .. } if reason.contains("loop")),
        "{err:?}"
    );
    e.altinn.set_next_override(None);
    assert_eq!(e.client.system_users(SYSTEM).await.unwrap().len(), 80);
}

#[tokio::test]
async fn a_token_for_another_vendor_is_refused() {
    let e = env().await;
    e.altinn.add_system_users(&e.mp, SYSTEM, 5000, 3);
    e.mp.register_client(
        "other-vendor",
        STRANGER_ORG,
        ClientKey::Jwk(Box::new(key(1).jwk(CLIENT_KID))),
        &[VENDOR_SCOPE],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = e.mp.config(dir.path());
    config.client_id = "other-vendor".into();
    let other = Altinn::new(&e.altinn.base, Maskinporten::new(config).unwrap()).unwrap();
    let err = other.system_users(SYSTEM).await.unwrap_err();
    let AltinnError::Refused {
        status, message, ..
    } = &err
    else {
        panic!("expected Refused, got {err:?}")
    };
    assert_eq!(*status, Some(403));
    assert!(message.contains("not the vendor's own"), "{message}");
    assert_eq!(err.kind(), "refused");
    assert!(!err.to_string().contains("eyJ"), "a token in {err}");
    // The right vendor reads the same list.
    assert_eq!(e.client.system_users(SYSTEM).await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_outage_is_unavailable() {
    let e = env().await;
    e.altinn.add_system_users(&e.mp, SYSTEM, 6000, 3);
    for mode in [Mode::Unavailable, Mode::Refuse] {
        e.altinn.set_mode(mode);
        let err = e.client.system_users(SYSTEM).await.unwrap_err();
        assert!(
            matches!(&err, AltinnError::Unavailable { call, .. } if call.contains("page 1")),
            "{mode:?}: {err:?}"
        );
    }
    // Maskinporten down is an outage too: no token, no read.
    e.altinn.set_mode(Mode::Up);
    e.mp.set_mode(Mode::Unavailable);
    let fresh = Altinn::new(
        &e.altinn.base,
        Maskinporten::new(e.mp.config(e._dir.path())).unwrap(),
    )
    .unwrap();
    assert_eq!(
        fresh.system_users(SYSTEM).await.unwrap_err().kind(),
        "unavailable"
    );
    e.mp.set_mode(Mode::Up);
    assert_eq!(e.client.system_users(SYSTEM).await.unwrap().len(), 3);
}

#[tokio::test]
async fn authorized_parties_of_a_standard_and_an_agent_system_user() {
    let e = env().await;
    let [owner_org, agency_org] = <[String; 2]>::try_from(orgs(7000, 2)).unwrap();
    let standard_id = uuid::Uuid::new_v4().to_string();
    let agent_id = uuid::Uuid::new_v4().to_string();
    e.altinn
        .add_system_user(&e.mp, fixture(&standard_id, &owner_org, None, "standard"));
    e.altinn.add_system_user(
        &e.mp,
        fixture(&agent_id, &agency_org, Some("klient-a"), "agent"),
    );
    let owner_uuid = uuid::Uuid::new_v4().to_string();
    e.altinn.set_authorized_parties(
        &standard_id,
        vec![party(
            &owner_uuid,
            &owner_org,
            "Eier AS",
            &[LONN],
            &["DAGL"],
        )],
    );
    let clients: Vec<(String, String)> = orgs(7100, 3)
        .into_iter()
        .map(|o| (uuid::Uuid::new_v4().to_string(), o))
        .collect();
    e.altinn.set_authorized_parties(
        &agent_id,
        clients
            .iter()
            .map(|(u, o)| party(u, o, "Klient AS", &[REGNSKAP, LONN], &[]))
            .collect(),
    );
    let users = e.client.system_users(SYSTEM).await.unwrap();
    let standard = users.iter().find(|u| u.id == standard_id).unwrap();
    let agent = users.iter().find(|u| u.id == agent_id).unwrap();
    assert_eq!(agent.kind(), Some(vakt::world::UserType::Agent));
    assert_eq!(agent.grant_external_ref(), Some("klient-a"));

    let exchanges = e.altinn.exchanges();
    let own = e.client.authorized_parties(standard).await.unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].party_uuid, owner_uuid);
    assert_eq!(
        own[0].organization_number.as_deref(),
        Some(owner_org.as_str())
    );
    assert_eq!(own[0].authorized_access_packages, [LONN]);
    assert_eq!(own[0].authorized_roles, ["DAGL"]);
    assert!(
        e.altinn.exchanges() > exchanges,
        "read with an exchanged token"
    );

    let theirs = e.client.authorized_parties(agent).await.unwrap();
    assert_eq!(theirs.len(), clients.len());
    for (p, (u, o)) in theirs.iter().zip(&clients) {
        assert_eq!(&p.party_uuid, u);
        assert_eq!(p.organization_number.as_deref(), Some(o.as_str()));
        assert_eq!(p.authorized_access_packages, [REGNSKAP, LONN]);
    }

    // A deleted system user's own token reads nothing.
    e.altinn.delete_system_user(&agent_id);
    let err = e.client.authorized_parties(agent).await.unwrap_err();
    assert!(
        matches!(
            err,
            AltinnError::Refused {
                status: Some(403),
                ..
            }
        ),
        "{err:?}"
    );
    // A record naming a system user Maskinporten does not give is refused by
    // Maskinporten, and nothing is read.
    let mut stranger = standard.clone();
    stranger.reportee_org_no = STRANGER_ORG.into();
    stranger.external_ref = String::new();
    let err = e.client.authorized_parties(&stranger).await.unwrap_err();
    assert!(
        matches!(&err, AltinnError::Refused { status: None, message, .. } if message.contains("MP-303")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_client_delegation_list_is_read_with_the_client_administrators_token() {
    let e = env().await;
    let agency_org = orgs(8000, 1).remove(0);
    let admin_id = uuid::Uuid::new_v4().to_string();
    let agent_id = uuid::Uuid::new_v4().to_string();
    e.altinn.add_system_user(
        &e.mp,
        fixture(&admin_id, &agency_org, Some("klientadmin"), "standard"),
    );
    e.altinn.add_system_user(
        &e.mp,
        fixture(&agent_id, &agency_org, Some("regnskap"), "agent"),
    );
    let owner_uuid = uuid::Uuid::new_v4().to_string();
    let client_orgs = orgs(8100, 60);
    let clients: Vec<serde_json::Value> = client_orgs
        .iter()
        .map(|o| {
            client(
                &uuid::Uuid::new_v4().to_string(),
                o,
                "Klient AS",
                REGN_ROLE,
                &[REGNSKAP],
            )
        })
        .collect();
    e.altinn.set_clients(&owner_uuid, &agent_id, clients);
    let users = e.client.system_users(SYSTEM).await.unwrap();
    let admin = users.iter().find(|u| u.id == admin_id).unwrap();
    let agent = users.iter().find(|u| u.id == agent_id).unwrap();

    // Not yet approved as client administrator: refused.
    let err = e
        .client
        .client_delegations(admin, &owner_uuid, &agent_id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AltinnError::Refused { status: Some(403), call, .. } if call.contains("page 1")),
        "{err:?}"
    );
    e.altinn.add_client_admin(&owner_uuid, &admin_id);
    // The agent itself is no client administrator.
    assert!(matches!(
        e.client
            .client_delegations(agent, &owner_uuid, &agent_id)
            .await,
        Err(AltinnError::Refused { .. })
    ));

    let before = e.altinn.list_pages();
    let list = e
        .client
        .client_delegations(admin, &owner_uuid, &agent_id)
        .await
        .unwrap();
    assert_eq!(e.altinn.list_pages() - before, 2, "60 clients: 2 pages");
    assert_eq!(list.len(), 60);
    let read: Vec<String> = list
        .iter()
        .map(|c| c.client.organization_identifier.clone().unwrap())
        .collect();
    assert_eq!(read, client_orgs);
    assert_eq!(list[0].access[0].role.urn, REGN_ROLE);
    assert_eq!(
        list[0].access[0].role.code.as_deref(),
        Some("regnskapsforer")
    );
    assert_eq!(list[0].access[0].packages[0].urn, REGNSKAP);
    // Written as the data files take it: `{"systemUserId", "clients"}`.
    let file = serde_json::to_value(ClientList::new(&agent_id, list)).unwrap();
    assert_eq!(file["systemUserId"], agent_id.as_str());
    assert_eq!(file["clients"]["links"]["next"], serde_json::Value::Null);
    assert_eq!(
        file["clients"]["data"][59]["client"]["organizationIdentifier"],
        client_orgs[59].as_str()
    );
    assert_eq!(
        file["clients"]["data"][0]["access"][0]["role"]["urn"],
        REGN_ROLE
    );

    // A failing second page fails the list.
    e.altinn.fail_page(Some((2, 502)));
    let err = e
        .client
        .client_delegations(admin, &owner_uuid, &agent_id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AltinnError::Unavailable { call, .. } if call.contains("page 2")),
        "{err:?}"
    );
    // Ids that cannot go into the query are refused before anything is sent.
    assert_eq!(
        e.client
            .client_delegations(admin, "not-a-uuid", &agent_id)
            .await
            .unwrap_err()
            .kind(),
        "misconfigured"
    );
}
