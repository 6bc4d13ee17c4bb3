//! The gRPC contract: malformed input, hostile ids, batches, decision ids,
//! health checking and reflection.

use crate::common;
use common::*;
use prost_types::value::Kind;
use tonic::Code;
use vakt::proto::{AuthorizeBatchRequest, AuthorizeRequest, Decision};

fn with_context(mut r: AuthorizeRequest, pairs: &[(&str, Kind)]) -> AuthorizeRequest {
    r.context = Some(context(pairs));
    r
}

async fn invalid(s: &mut TestServer, r: AuthorizeRequest) -> String {
    let err = s
        .client
        .authorize(r)
        .await
        .expect_err("expected INVALID_ARGUMENT");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    err.message().to_owned()
}

#[tokio::test]
async fn malformed_fields_are_named() {
    let mut s = start(default_snapshot()).await;
    let ok = request("kari", "tk-regnskap", "310015156", REGNSKAP);
    let cases: Vec<(AuthorizeRequest, &str)> = vec![
        (
            AuthorizeRequest {
                employee_id: "".into(),
                ..ok.clone()
            },
            "employee_id:",
        ),
        (
            AuthorizeRequest {
                system_user_id: "".into(),
                ..ok.clone()
            },
            "system_user_id:",
        ),
        (
            AuthorizeRequest {
                client_org_number: "".into(),
                ..ok.clone()
            },
            "client_org_number:",
        ),
        // Fails the mod-11 check digit.
        (
            AuthorizeRequest {
                client_org_number: "310015157".into(),
                ..ok.clone()
            },
            "client_org_number:",
        ),
        (
            AuthorizeRequest {
                client_org_number: "31001515".into(),
                ..ok.clone()
            },
            "client_org_number:",
        ),
        (
            AuthorizeRequest {
                access_package: "".into(),
                ..ok.clone()
            },
            "access_package:",
        ),
        (
            AuthorizeRequest {
                access_package: "urn:altinn:accesspackage:sykmelding".into(),
                ..ok.clone()
            },
            "access_package:",
        ),
        (
            AuthorizeRequest {
                access_package: "regnskapsforer-med-signeringsrettighet".into(),
                ..ok.clone()
            },
            "access_package:",
        ),
        (
            AuthorizeRequest {
                action: "deleteEverything".into(),
                ..ok.clone()
            },
            "action:",
        ),
        (
            with_context(ok.clone(), &[("mfa", Kind::StringValue("yes".into()))]),
            "context:",
        ),
        (
            with_context(ok.clone(), &[("unknownAttribute", Kind::BoolValue(true))]),
            "context:",
        ),
        (
            with_context(
                ok.clone(),
                &[("client", Kind::StringValue("310015156".into()))],
            ),
            "context:",
        ),
        (
            with_context(
                ok.clone(),
                &[("portfolioTeams", Kind::StringValue("x".into()))],
            ),
            "context:",
        ),
    ];
    for (r, field) in cases {
        let msg = invalid(&mut s, r.clone()).await;
        assert!(msg.starts_with(field), "{r:?} -> {msg}");
    }
    // The same request, well-formed, is allowed: the cases above failed on their field.
    assert_allow(&s.client.authorize(ok).await.unwrap().into_inner());
}

#[tokio::test]
async fn hostile_ids_never_allow_and_never_crash() {
    let mut s = start(default_snapshot()).await;
    let long = "k".repeat(10 * 1024);
    let hostile: Vec<String> = vec![
        "kari\"".into(),
        "kari\" || true || \"".into(),
        "Vakt::Employee::\"kari\"".into(),
        "kari::x".into(),
        "kari\\".into(),
        "kari\\\"".into(),
        "kari\n".into(),
        "kari\r\nFAKE LOG LINE".into(),
        "kari\u{0}".into(),
        "kårî 🙂 ΚΑΡΙ".into(),
        "\u{202e}irak".into(),
        " kari".into(),
        long.clone(),
        format!("kari{long}"),
    ];
    for id in &hostile {
        for (employee, system_user) in [(id.as_str(), "tk-regnskap"), ("kari", id.as_str())] {
            let r = request(employee, system_user, "310015156", REGNSKAP);
            match s.client.authorize(r).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    assert_eq!(resp.decision(), Decision::Deny, "{id:?}: {resp:?}");
                    assert!(!resp.reasons.is_empty());
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::InvalidArgument, "{id:?}: {status:?}")
                }
            }
        }
    }
    // The server is still up and still right.
    assert_allow(&s.ask("kari", "tk-regnskap", "310015156", REGNSKAP).await);
}

#[tokio::test]
async fn hostile_context_values_never_allow() {
    let mut s = start(default_snapshot()).await;
    // A request the context decides: allowed when authenticated, denied when not.
    let base = request("kari", "tk-regnskap", "310015156", REGNSKAP);
    let authenticated = |v: Kind| with_context(base.clone(), &[("authenticated", v)]);
    let yes = s
        .client
        .authorize(authenticated(Kind::BoolValue(true)))
        .await
        .unwrap()
        .into_inner();
    assert_allow(&yes);
    let no = s
        .client
        .authorize(authenticated(Kind::BoolValue(false)))
        .await
        .unwrap()
        .into_inner();
    assert_deny(&no, &["employee-not-authenticated"]);
    let list = |v: Kind| {
        Kind::ListValue(prost_types::ListValue {
            values: vec![prost_types::Value { kind: Some(v) }],
        })
    };
    for kind in [
        Kind::NumberValue(f64::NAN),
        Kind::NumberValue(1e300),
        Kind::NumberValue(0.5),
        Kind::NumberValue(1.0),
        Kind::NullValue(0),
        Kind::StringValue("true".into()),
        Kind::StringValue("x".repeat(10_000)),
        list(Kind::BoolValue(true)),
        Kind::StructValue(context(&[("value", Kind::BoolValue(true))])),
    ] {
        match s.client.authorize(authenticated(kind.clone())).await {
            Ok(resp) => assert_eq!(
                resp.into_inner().decision(),
                Decision::Deny,
                "{kind:?} must not allow"
            ),
            Err(st) => assert_eq!(st.code(), Code::InvalidArgument, "{kind:?}: {st:?}"),
        }
    }
}

#[tokio::test]
async fn decision_ids_are_unique_and_revision_names_the_snapshot() {
    let mut s = start(default_snapshot()).await;
    let mut ids = std::collections::HashSet::new();
    let mut revisions = std::collections::HashSet::new();
    for _ in 0..50 {
        let r = s.ask("kari", "tk-regnskap", "310015156", REGNSKAP).await;
        assert!(
            ids.insert(r.decision_id.clone()),
            "duplicate {}",
            r.decision_id
        );
        revisions.insert(r.revision);
    }
    assert_eq!(revisions.len(), 1);
    let rev = revisions.into_iter().next().unwrap();
    assert_eq!(rev, default_snapshot().revision);
    assert_eq!(rev.len(), 16);
}

#[tokio::test]
async fn batch_answers_in_order_and_checks_every_item() {
    let mut s = start_with(
        default_snapshot(),
        vakt::decision_log::DecisionLog::disabled(),
        3,
    )
    .await;
    let reqs = vec![
        request("kari", "tk-regnskap", "310015156", REGNSKAP),
        request("per", "tk-regnskap", "310015156", REGNSKAP),
        request("randi", "rr-revisjon", "310021210", REVISOR),
    ];
    let out = s
        .client
        .authorize_batch(AuthorizeBatchRequest {
            requests: reqs.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let decisions: Vec<Decision> = out.responses.iter().map(|r| r.decision()).collect();
    assert_eq!(
        decisions,
        [Decision::Allow, Decision::Deny, Decision::Allow]
    );
    assert_deny(&out.responses[1], &["employee-deactivated"]);
    let ids: std::collections::HashSet<_> = out.responses.iter().map(|r| &r.decision_id).collect();
    assert_eq!(ids.len(), 3);

    // One over the configured maximum.
    let mut four = reqs.clone();
    four.push(request("kari", "tk-regnskap", "310015156", REGNSKAP));
    let err = s
        .client
        .authorize_batch(AuthorizeBatchRequest { requests: four })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("requests:"), "{}", err.message());

    // A malformed item is named by its index.
    let mut bad = reqs.clone();
    bad[1].client_org_number = "123".into();
    let err = s
        .client
        .authorize_batch(AuthorizeBatchRequest { requests: bad })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("requests[1].client_org_number:"),
        "{}",
        err.message()
    );

    let empty = s
        .client
        .authorize_batch(AuthorizeBatchRequest { requests: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.responses.is_empty());
}

#[tokio::test]
async fn health_check_reports_serving() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let s = start(default_snapshot()).await;
    let mut health = HealthClient::new(s.channel.clone());
    for service in ["", "vakt.v1.Authorizer"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
}

/// Asks one reflection version, through its own generated client, for the list of
/// services and for the file that defines `vakt.v1.Authorizer`; returns the
/// service names and the methods of that service as the descriptor states them.
macro_rules! reflect {
    ($version:ident, $channel:expr) => {{
        use prost::Message as _;
        use tonic_reflection::pb::$version::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut client = ServerReflectionClient::new($channel);
        let ask = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let reqs = vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "vakt.v1.Authorizer".into(),
            )),
        ];
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(reqs))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", stringify!($version)))
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        let services: Vec<String> = match first.message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected {other:?}"),
        };
        let second = stream.message().await.unwrap().unwrap();
        let files = match second.message_response {
            Some(MessageResponse::FileDescriptorResponse(f)) => f.file_descriptor_proto,
            other => panic!("unexpected {other:?}"),
        };
        let mut methods = Vec::new();
        for f in &files {
            let f = prost_types::FileDescriptorProto::decode(f.as_slice()).unwrap();
            for s in f.service.iter().filter(|s| s.name() == "Authorizer") {
                assert_eq!(f.package(), "vakt.v1");
                methods.extend(s.method.iter().map(|m| m.name().to_owned()));
            }
        }
        (services, methods)
    }};
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_both_list_and_describe_the_service() {
    let s = start(default_snapshot()).await;
    // grpcurl and tonic speak v1; Python's reflection client, Evans and Postman
    // speak v1alpha. Each version lists both, so either shows all that is served.
    for (version, (services, methods)) in [
        ("v1", reflect!(v1, s.channel.clone())),
        ("v1alpha", reflect!(v1alpha, s.channel.clone())),
    ] {
        for name in [
            "vakt.v1.Authorizer",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(
                services.iter().any(|s| s == name),
                "{version} lists {services:?}, not {name}"
            );
        }
        for method in ["Authorize", "AuthorizeBatch", "ResolveSystemUser", "Status"] {
            assert!(
                methods.iter().any(|m| m == method),
                "{version} describes vakt.v1.Authorizer with {methods:?}, not {method}"
            );
        }
    }
}

/// Small responses must not wait for Nagle and the peer's delayed ACK (about 40 ms
/// each): 200 sequential calls on one connection to the real binary take a fraction
/// of a second with TCP_NODELAY on the server's sockets, and 8 s or more without.
#[test]
fn sequential_calls_on_one_connection_do_not_stall() {
    let server = Spawned::start(&[], false);
    let took = server.with_client(|mut c| async move {
        // Warm the connection up first.
        c.authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        for i in 0..200 {
            let e = if i % 2 == 0 { "kari" } else { "per" };
            c.authorize(request(e, "tk-regnskap", "310015156", REGNSKAP))
                .await
                .unwrap();
        }
        started.elapsed()
    });
    assert!(
        took < std::time::Duration::from_secs(2),
        "200 sequential calls took {took:?}: responses are stalling"
    );
    server.stop();
}
