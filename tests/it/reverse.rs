//! WhoCan and WhatCan over gRPC against the real server: off unless asked for;
//! answers equal the in-process reverse queries (which `tests/it/properties.rs`
//! proves equal to Authorize) and every result is an ALLOW when asked again with
//! Authorize; pages read across a world swap stay on the world they began on;
//! tokens that expired, were altered or belong to another query are refused.

use crate::common;
use common::*;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;
use vakt::decision_log::DecisionLog;
use vakt::proto::{WhatCanRequest, WhoCanRequest};
use vakt::server::{Options, Vakt};

async fn serve_reverse(lifetime: Duration) -> (TestServer, Arc<Vakt>) {
    let vakt = Arc::new(
        Vakt::new(default_snapshot(), DecisionLog::disabled()).with_options(Options {
            reverse_queries: true,
            reverse_page_lifetime: lifetime,
            ..Default::default()
        }),
    );
    (start_vakt(vakt.clone()).await, vakt)
}

fn who(client: &str, package: &str, page_size: u32, token: &str) -> WhoCanRequest {
    WhoCanRequest {
        client_org_number: client.into(),
        access_package: package.into(),
        page_size,
        page_token: token.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn reverse_queries_are_off_unless_asked_for() {
    let mut s = start(default_snapshot()).await;
    let e = s
        .client
        .who_can(who("310015156", REGNSKAP, 0, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("--reverse-queries"), "{e:?}");
    let e = s
        .client
        .what_can(WhatCanRequest {
            employee_id: "kari".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}

/// Every client of the example world with every package: WhoCan read one
/// employee per page equals the in-process answer, and each path is allowed by
/// Authorize; WhatCan for every employee likewise.
#[tokio::test]
async fn answers_agree_with_authorize_page_by_page() {
    let (mut s, vakt) = serve_reverse(Duration::from_secs(60)).await;
    let snap = vakt.snapshot().load();
    let clients: Vec<String> = snap
        .world
        .organizations()
        .map(|o| o.org_number.to_string())
        .collect();
    let mut allows = 0;
    for client in &clients {
        for package in [REGNSKAP, REVISOR, AORDNING, SYKEFRAVAER, MVA] {
            let mut token = String::new();
            let mut got = Vec::new();
            loop {
                let r = s
                    .client
                    .who_can(who(client, package, 1, &token))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(r.employees.len() <= 1);
                assert_eq!(r.revision, snap.revision);
                got.extend(r.employees);
                token = r.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            let q = vakt::decision::reverse::who_can_query(
                &snap,
                vakt::decision::RawRequest {
                    client_org_number: client.clone(),
                    access_package: package.into(),
                    ..Default::default()
                },
            )
            .unwrap();
            let want = vakt::decision::reverse::who_can(&snap, &q, None, 1000);
            assert!(!want.more);
            let want: Vec<String> = want.items.iter().map(|w| w.employee.to_string()).collect();
            let ids: Vec<String> = got.iter().map(|w| w.employee_id.clone()).collect();
            assert_eq!(ids, want, "WhoCan {client} {package}");
            for w in &got {
                for p in &w.paths {
                    assert!(!p.team_ids.is_empty(), "{w:?}");
                    let a = s
                        .ask(&w.employee_id, &p.system_user_id, client, package)
                        .await;
                    assert_allow(&a);
                    allows += 1;
                }
            }
        }
    }
    assert!(
        allows > 20,
        "only {allows} allowed paths in the example world"
    );
    let employees: Vec<String> = snap.world.employees().map(|e| e.id.to_string()).collect();
    for e in &employees {
        let r = s
            .client
            .what_can(WhatCanRequest {
                employee_id: e.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.next_page_token.is_empty());
        for g in &r.grants {
            let a = s
                .ask(
                    e,
                    &g.system_user_id,
                    &g.client_org_number,
                    &g.access_package,
                )
                .await;
            assert_allow(&a);
        }
    }
}

#[tokio::test]
async fn pages_stay_on_the_world_they_began_on_and_expire() {
    let (mut s, vakt) = serve_reverse(Duration::from_millis(1500)).await;
    let first = s
        .client
        .what_can(WhatCanRequest {
            employee_id: "kari".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.grants.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let began_on = first.revision.clone();
    // Kari leaves: the new world answers nothing for her ...
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir("examples/world").unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let emp = dir.path().join("employees.yaml");
    let text = std::fs::read_to_string(&emp).unwrap();
    let kari = "name: Kari Nordmann\n    active: true";
    assert!(text.contains(kari));
    std::fs::write(
        &emp,
        text.replace(kari, "name: Kari Nordmann\n    active: false"),
    )
    .unwrap();
    vakt.snapshot()
        .store(snapshot_from(None, None, Some(dir.path())));
    let now = s
        .client
        .what_can(WhatCanRequest {
            employee_id: "kari".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(now.grants.is_empty(), "{now:?}");
    assert_ne!(now.revision, began_on);
    // ... but her answer that began before goes on from the world it began on.
    let second = s
        .client
        .what_can(WhatCanRequest {
            employee_id: "kari".into(),
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.revision, began_on);
    assert_eq!(second.grants.len(), 1);
    assert!(
        (
            &second.grants[0].system_user_id,
            &second.grants[0].client_org_number,
            &second.grants[0].access_package
        ) > (
            &first.grants[0].system_user_id,
            &first.grants[0].client_org_number,
            &first.grants[0].access_package
        )
    );
    // A token for another query, an altered one and an expired one are refused.
    let other = s
        .client
        .what_can(WhatCanRequest {
            employee_id: "ola".into(),
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument, "{other:?}");
    assert!(other.message().contains("page_token"), "{other:?}");
    let mut altered = first.next_page_token.clone();
    altered.insert(3, 'x');
    let bad = s
        .client
        .what_can(WhatCanRequest {
            employee_id: "kari".into(),
            page_token: altered,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    // Deliberate pause, not a wait: the tokens live 1.5 s (see serve_reverse
    // above), so let that time pass for the second page's token to expire.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let expired = s
        .client
        .what_can(WhatCanRequest {
            employee_id: "kari".into(),
            page_size: 1,
            page_token: second.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition, "{expired:?}");
    assert!(expired.message().contains("expired"), "{expired:?}");
}

#[tokio::test]
async fn bad_fields_are_named() {
    let (mut s, _) = serve_reverse(Duration::from_secs(60)).await;
    let e = s
        .client
        .who_can(who("123", REGNSKAP, 0, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("client_org_number"), "{e:?}");
    let e = s
        .client
        .who_can(who("310015156", "urn:altinn:accesspackage:nope", 0, ""))
        .await
        .unwrap_err();
    assert!(e.message().starts_with("access_package"), "{e:?}");
    let e = s
        .client
        .what_can(WhatCanRequest::default())
        .await
        .unwrap_err();
    assert!(e.message().starts_with("employee_id"), "{e:?}");
    // A page size past the limit is read as the limit.
    let r = s
        .client
        .what_can(WhatCanRequest {
            employee_id: "kari".into(),
            page_size: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.grants.len() <= vakt::decision::reverse::MAX_PAGE_SIZE);
}
