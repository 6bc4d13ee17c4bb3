//! Unit tests of the Envoy check's planning and answers.

use super::*;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse, OkHttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;

const ORG: &str = "991825827";
const OTHER_ORG: &str = "974760673";

fn config() -> EnvoyConfig {
    EnvoyConfig::from_toml(
        "t.toml",
        r#"
[[route]]
name = "instance"
host = "*.apps.altinn.no"
methods = ["GET", "PUT"]
path = "/{org}/{app}/instances/{party}/**"
package = "a-ordning"
client = { path = "party", kind = "party-id" }
token = "altinn"

[[route]]
name = "by-org"
host = "platform.altinn.no"
methods = ["GET"]
path = "/register/{orgno}"
package = "a-ordning"
client = { path = "orgno" }
token = "maskinporten"

[[route]]
name = "instantiate"
host = "*.apps.altinn.no"
methods = ["POST"]
path = "/{org}/{app}/instances"
package = "a-ordning"
client = { body = "/instanceOwner/organisationNumber" }
token = "altinn"

[[route]]
name = "query"
host = "platform.altinn.no"
methods = ["GET"]
path = "/parties"
package = "a-ordning"
client = { query = "orgno" }
system_user = "su-1"
token = "maskinporten"
"#,
    )
    .unwrap()
    .unwrap()
}

fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: method.into(),
                    host: host.into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    body: body.into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

/// Envoy's message as the Check service reads it: encoded, and decoded as the
/// part Check reads ([`CheckInput`]).
fn input(r: &CheckRequest) -> CheckInput {
    use prost::Message as _;
    CheckInput::decode(r.encode_to_vec().as_slice())
        .expect("a CheckRequest decodes as a CheckInput")
}

fn get(host: &str, path: &str) -> CheckRequest {
    request("GET", host, path, &[("x-vakt-employee", "kari")], "")
}

fn client_of(r: &CheckRequest) -> Result<String, String> {
    plan(r, &config(), None)
        .map(|d| d.client.value)
        .map_err(|d| format!("{}: {}", d.reason.policy_id, d.reason.message))
}

#[test]
fn a_path_client_is_planned() {
    let d = plan(
        &get("ttd.apps.altinn.no:443", "/ttd/app/instances/512/data?x=1"),
        &config(),
        None,
    )
    .unwrap();
    assert_eq!(d.route, "instance");
    assert_eq!(d.employee, "kari");
    assert_eq!(d.client.value, "512");
    assert_eq!(d.client.kind, ClientKind::PartyId);
    assert_eq!(d.client.from, "path {party}");
    assert_eq!(d.package, "urn:altinn:accesspackage:a-ordning");
    assert_eq!(d.token, TokenKind::Altinn);
    assert_eq!(d.request.path, "/ttd/app/instances/512/data");
    assert_eq!(d.vakt_headers, ["x-vakt-employee"]);
}

#[test]
fn spellings_of_a_path_cannot_change_the_client() {
    let plain = client_of(&get("platform.altinn.no", &format!("/register/{ORG}"))).unwrap();
    assert_eq!(plain, ORG);
    // Every spelling either names the same client or is denied; none names OTHER_ORG.
    let tries = [
        format!("//register//{ORG}"),
        format!("/register/./{ORG}/"),
        format!("/register/{OTHER_ORG}/../{ORG}"),
        format!("/register/{OTHER_ORG}/%2e%2e/{ORG}"),
        format!("/x/../register/{ORG}"),
        format!("/register/{ORG}%2F..%2F{OTHER_ORG}"),
        format!("/register/{ORG}%5c..%5c{OTHER_ORG}"),
        format!("/register/{ORG}/..%2F{OTHER_ORG}"),
        format!("/register/%39{}", &ORG[1..]),
        format!("/register/{ORG}\\..\\{OTHER_ORG}"),
        format!("/register/{ORG}%00"),
        format!("/register/{ORG}%252F..%252F{OTHER_ORG}"),
    ];
    for t in &tries {
        match client_of(&get("platform.altinn.no", t)) {
            Ok(c) => assert_eq!(c, ORG, "{t}"),
            Err(e) => assert!(
                e.starts_with("vakt:envoy-bad-path") || e.starts_with("vakt:envoy-no-route"),
                "{t}: {e}"
            ),
        }
    }
    // And the denied ones are denied for the spelling: each is denied.
    for t in &tries[5..8] {
        assert!(
            client_of(&get("platform.altinn.no", t))
                .unwrap_err()
                .contains("encoded slash"),
            "{t}"
        );
    }
}

#[test]
fn generated_spellings_never_change_the_client() {
    // A small exhaustive property: inserting each trick before, inside and after
    // the client segment gives ORG or a denial, never another client.
    let tricks = [
        "/",
        "//",
        "/./",
        "/x/../",
        "/%2e/",
        "/x/%2e%2e/",
        "%2F",
        "%2f..%2f",
        "%5C",
        "/..",
        "%2e%2e",
        "%25",
        "%",
    ];
    let base = format!("/register/{ORG}");
    for trick in tricks {
        for at in 0..=base.len() {
            if !base.is_char_boundary(at) {
                continue;
            }
            let spelt = format!("{}{trick}{}", &base[..at], &base[at..]);
            if let Ok(c) = client_of(&get("platform.altinn.no", &spelt)) {
                assert_eq!(c, ORG, "{spelt}");
            }
        }
    }
}

#[test]
fn a_wrong_client_in_the_path_is_planned_as_that_client() {
    // The plan names the client the request would reach; deciding on it is what
    // denies a wrong one. Here: OTHER_ORG, not ORG.
    assert_eq!(
        client_of(&get(
            "platform.altinn.no",
            &format!("/register/{OTHER_ORG}")
        ))
        .unwrap(),
        OTHER_ORG
    );
    let bad = client_of(&get("platform.altinn.no", "/register/991825828")).unwrap_err();
    assert!(
        bad.starts_with("vakt:envoy-client") && bad.contains("check digit"),
        "{bad}"
    );
}

#[test]
fn body_client_and_its_failures() {
    let body = format!(r#"{{"instanceOwner":{{"organisationNumber":"{ORG}"}}}}"#);
    let len = body.len().to_string();
    let post = |headers: &[(&str, &str)], body: &str| {
        let mut h = vec![("x-vakt-employee", "kari")];
        h.extend_from_slice(headers);
        client_of(&request(
            "POST",
            "ttd.apps.altinn.no",
            "/ttd/app/instances",
            &h,
            body,
        ))
    };
    assert_eq!(post(&[("content-length", &len)], &body).unwrap(), ORG);
    assert_eq!(post(&[], &body).unwrap(), ORG);
    let truncated = post(&[("content-length", &len)], &body[..body.len() - 5]).unwrap_err();
    assert!(truncated.contains("truncated"), "{truncated}");
    let partial = post(&[(PARTIAL_BODY_HEADER, "true")], &body).unwrap_err();
    assert!(partial.contains("truncated"), "{partial}");
    let missing = post(&[("content-length", &len)], "").unwrap_err();
    assert!(missing.contains("with_request_body"), "{missing}");
    let not_json = post(&[], "organisationNumber=991825827").unwrap_err();
    assert!(
        not_json.starts_with("vakt:envoy-body") && not_json.contains("not JSON"),
        "{not_json}"
    );
    let dup = format!(
        r#"{{"instanceOwner":{{"organisationNumber":"{ORG}","organisationNumber":"{OTHER_ORG}"}}}}"#
    );
    assert!(post(&[], &dup).unwrap_err().contains("not JSON"));
    let gz = post(&[("content-encoding", "gzip")], &body).unwrap_err();
    assert!(gz.contains("encoded"), "{gz}");
    let big = format!(
        r#"{{"pad":"{}","instanceOwner":{{"organisationNumber":"{ORG}"}}}}"#,
        "x".repeat(DEFAULT_MAX_BODY_BYTES)
    );
    assert!(post(&[], &big).unwrap_err().contains("larger than"));
    let absent = post(&[], r#"{"instanceOwner":{}}"#).unwrap_err();
    assert!(
        absent.contains("has no /instanceOwner/organisationNumber"),
        "{absent}"
    );
    let wrong = post(
        &[],
        &format!(r#"{{"instanceOwner":{{"organisationNumber":"{OTHER_ORG}"}}}}"#),
    )
    .unwrap();
    assert_eq!(wrong, OTHER_ORG);
}

#[test]
fn query_client_once_only() {
    let q = |p: &str| client_of(&get("platform.altinn.no", p));
    assert_eq!(q(&format!("/parties?orgno={ORG}")).unwrap(), ORG);
    assert!(q(&format!("/parties?orgno={ORG}&orgno={OTHER_ORG}"))
        .unwrap_err()
        .contains("more than once"));
    assert!(q("/parties").unwrap_err().contains("missing"));
    assert!(q(&format!("/parties?orgno={ORG}&x=%zz"))
        .unwrap_err()
        .starts_with("vakt:envoy-bad-path"));
}

#[test]
fn employee_and_system_user_headers() {
    let c = config();
    let p = |h: &[(&str, &str)]| {
        plan(
            &request(
                "GET",
                "platform.altinn.no",
                &format!("/parties?orgno={ORG}"),
                h,
                "",
            ),
            &c,
            None,
        )
    };
    let ok = p(&[("x-vakt-employee", "kari")]).unwrap();
    assert_eq!(ok.system_user.as_deref(), Some("su-1"));
    let missing = p(&[]).unwrap_err();
    assert_eq!(missing.reason.policy_id, reason::EMPLOYEE);
    assert!(missing
        .reason
        .message
        .contains("x-vakt-employee header is missing"));
    assert!(p(&[("x-vakt-employee", "kari,per")])
        .unwrap_err()
        .reason
        .message
        .contains("more than once"));
    assert!(p(&[("x-vakt-employee", " kari")]).is_err());
    let clash = p(&[("x-vakt-employee", "kari"), ("x-vakt-system-user", "su-2")]).unwrap_err();
    assert_eq!(clash.reason.policy_id, reason::SYSTEM_USER);
    let same = p(&[("x-vakt-employee", "kari"), ("x-vakt-system-user", "su-1")]).unwrap();
    assert_eq!(same.vakt_headers, ["x-vakt-employee", "x-vakt-system-user"]);
}

struct Fixed;
impl EmployeeVerifier for Fixed {
    fn employee(&self, jwt: &str) -> Result<String, String> {
        if jwt == "good" {
            Ok("kari".into())
        } else {
            Err("bad signature".into())
        }
    }
}

#[test]
fn employee_from_a_verified_jwt() {
    let mut c = config();
    c.employee = EmployeeFrom::Jwt("x-vakt-employee-token".into());
    let r = |v: &str| {
        request(
            "GET",
            "platform.altinn.no",
            &format!("/register/{ORG}"),
            &[("x-vakt-employee-token", v), ("x-vakt-employee", "per")],
            "",
        )
    };
    assert_eq!(
        plan(&r("Bearer good"), &c, Some(&Fixed)).unwrap().employee,
        "kari"
    );
    assert!(plan(&r("forged"), &c, Some(&Fixed))
        .unwrap_err()
        .reason
        .message
        .contains("bad signature"));
    assert!(plan(&r("good"), &c, None)
        .unwrap_err()
        .reason
        .message
        .contains("no verifier"));
}

#[test]
fn unknown_routes_and_hosts_are_denied() {
    let no_route = plan(
        &get("platform.altinn.no", "/storage/api/v1/instances"),
        &config(),
        None,
    )
    .unwrap_err();
    assert_eq!(no_route.reason.policy_id, reason::NO_ROUTE);
    let method = plan(
        &request(
            "DELETE",
            "platform.altinn.no",
            &format!("/register/{ORG}"),
            &[("x-vakt-employee", "kari")],
            "",
        ),
        &config(),
        None,
    )
    .unwrap_err();
    assert_eq!(method.reason.policy_id, reason::NO_ROUTE);
    let other = plan(
        &get("example.com", &format!("/register/{ORG}")),
        &config(),
        None,
    )
    .unwrap_err();
    assert_eq!(other.reason.policy_id, reason::NOT_ALTINN);
    let lookalike = plan(
        &get(
            "platform.altinn.no.example.com",
            &format!("/register/{ORG}"),
        ),
        &config(),
        None,
    )
    .unwrap_err();
    assert_eq!(lookalike.reason.policy_id, reason::NOT_ALTINN);
    assert!(plan(&CheckRequest::default(), &config(), None).is_err());
    assert!(plan(&get("a b", "/"), &config(), None).is_err());
    // The same request on a routed host and path is planned.
    assert!(plan(
        &get("PLATFORM.altinn.no.", &format!("/register/{ORG}")),
        &config(),
        None
    )
    .is_ok());
}

fn ok_of(r: &CheckResponse) -> &OkHttpResponse {
    match r.http_response.as_ref().unwrap() {
        HttpResponse::OkResponse(o) => o,
        other => panic!("not ok: {other:?}"),
    }
}

#[test]
fn responses() {
    let input = plan(
        &request(
            "GET",
            "platform.altinn.no",
            &format!("/register/{ORG}"),
            &[
                ("x-vakt-employee", "kari"),
                ("x-vakt-trace", "1"),
                ("authorization", "Bearer app"),
            ],
            "",
        ),
        &config(),
        None,
    )
    .unwrap();
    let allow = Outcome::decided(&input, Verdict::Allow, vec![], "d-1".into(), false);
    let r = respond(&allow, Some("eyJ.abc.def"));
    assert_eq!(r.status.as_ref().unwrap().code, 0);
    let ok = ok_of(&r);
    assert_eq!(ok.headers_to_remove, ["x-vakt-employee", "x-vakt-trace"]);
    let h = &ok.headers[0];
    assert_eq!(h.header.as_ref().unwrap().key, "authorization");
    assert_eq!(h.header.as_ref().unwrap().value, "Bearer eyJ.abc.def");
    #[allow(deprecated)]
    let append = h.append.as_ref().unwrap().value;
    assert!(!append);

    // An ALLOW without a usable token fails closed.
    for bad in [None, Some(""), Some("a b"), Some("a\r\nx-evil: 1")] {
        let r = respond(&allow, bad);
        assert_eq!(
            r.status.as_ref().unwrap().code,
            tonic::Code::Unavailable as i32,
            "{bad:?}"
        );
    }

    let deny = Outcome::decided(
        &input,
        Verdict::Deny,
        vec![Reason::new("p1", "not your client")],
        "d-2".into(),
        false,
    );
    let r = respond(&deny, Some("eyJ.abc.def"));
    assert_eq!(
        r.status.as_ref().unwrap().code,
        tonic::Code::PermissionDenied as i32
    );
    let HttpResponse::DeniedResponse(d) = r.http_response.unwrap() else {
        panic!()
    };
    assert_eq!(d.status.unwrap().code, 403);
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"decision": "DENY", "reasons": [{"policy_id": "p1", "message": "not your client"}], "decision_id": "d-2"})
    );
    assert!(d
        .headers
        .iter()
        .any(|h| h.header.as_ref().unwrap().key == "content-type"
            && h.header.as_ref().unwrap().value == "application/json"));

    let shadow = Outcome {
        shadow: true,
        ..deny
    };
    let r = respond(&shadow, Some("eyJ.abc.def"));
    assert_eq!(r.status.as_ref().unwrap().code, 0);
    assert_eq!(
        ok_of(&r).headers[0].header.as_ref().unwrap().value,
        "Bearer eyJ.abc.def"
    );
    let meta = &r.dynamic_metadata.as_ref().unwrap().fields;
    assert_eq!(
        meta["vakt_decision"].kind,
        Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(
            "SHADOW_DENY".into()
        ))
    );
    let r = respond(&shadow, None);
    assert!(ok_of(&r).headers.is_empty());
    assert_eq!(
        ok_of(&r).headers_to_remove,
        ["x-vakt-employee", "x-vakt-trace"]
    );
}

/// The planning and answer of one Check, `n` times, on a request with the
/// headers Envoy typically forwards: what callgrind counts for
/// BENCHMARKS.md's binding section (`check_cost_probe`).
#[inline(never)]
fn probe_loop(wire: &[u8], c: &EnvoyConfig, n: usize) -> usize {
    use prost::Message as _;
    let mut kept = 0;
    for i in 0..n {
        // As Check does it: the request decoded as `CheckInput`, then the
        // plan's route and Vakt's headers move into the answer
        // (`respond_owned`), nothing is copied for it.
        let check = CheckInput::decode(wire).unwrap();
        let input = plan(&check, c, None).unwrap();
        let allow = Outcome {
            verdict: Verdict::Allow,
            reasons: vec![],
            decision_id: format!("d-{i}"),
            shadow: false,
            route: Some(input.route),
            vakt_headers: input.vakt_headers,
        };
        kept += respond_owned(allow, Some("eyJ.abc.def")).encoded_len();
    }
    kept
}

/// A typical request plans and answers every time (and the fixed workload
/// `valgrind --tool=callgrind --toggle-collect='*probe_loop*'` counts).
#[test]
fn check_cost_probe() {
    let headers = [
        (":authority", "ttd.apps.altinn.no"),
        (":method", "GET"),
        (":path", "/ttd/app/instances/512/data?x=1"),
        (":scheme", "https"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) client/1.0"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "0b8a0c1e-6a1f-4c9e-9f3b-2b7c1d5e8a90"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("authorization", "Bearer app"),
        ("x-vakt-employee", "kari"),
        ("x-vakt-trace", "1"),
    ];
    let r = request(
        "GET",
        "ttd.apps.altinn.no:443",
        "/ttd/app/instances/512/data?x=1",
        &headers,
        "",
    );
    use prost::Message as _;
    assert!(probe_loop(&r.encode_to_vec(), &config(), 1000) > 0);
}

/// The 403 body is written straight from the outcome: the same bytes as the
/// JSON document it replaces (decision, reasons, decision id, in that order,
/// escaped alike), and `respond` answers as `respond_owned` does.
#[test]
fn the_deny_body_reads_as_before() {
    let outcome = Outcome {
        verdict: Verdict::Deny,
        reasons: vec![
            Reason::new("rule-1", "no \"access\" for kari\n(ø)"),
            Reason::new("rule-2", "second"),
        ],
        decision_id: "d-1".into(),
        shadow: false,
        route: Some("register".into()),
        vakt_headers: vec!["x-vakt-employee".into()],
    };
    let r = respond(&outcome, None);
    assert_eq!(r, respond_owned(outcome.clone(), None));
    let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else {
        panic!("a deny: {r:?}")
    };
    let want = serde_json::json!({
        "decision": "DENY",
        "reasons": outcome.reasons.iter().map(|r| serde_json::json!({
            "policy_id": r.policy_id,
            "message": r.message,
        })).collect::<Vec<_>>(),
        "decision_id": outcome.decision_id,
    });
    assert_eq!(d.body, want.to_string());
    assert_eq!(
        r.status.as_ref().map(|s| s.message.as_str()),
        Some("no \"access\" for kari\n(ø)")
    );
}

/// Every byte of a long token is checked, the last block's and the tail's
/// alike.
#[test]
fn a_long_token_is_checked_to_its_last_byte() {
    let good = format!(
        "eyJ{}.{}.{}",
        "a".repeat(400),
        "b-_~+/=".repeat(60),
        "c".repeat(333)
    );
    assert!(is_token(&good));
    for at in [0, 31, 32, 500, good.len() - 1] {
        let mut bad = good.clone().into_bytes();
        bad[at] = b' ';
        assert!(!is_token(std::str::from_utf8(&bad).unwrap()), "{at}");
    }
    assert!(!is_token(""));
    assert!(!is_token("a\r\nb"));
}

/// The headers map is decoded entry by entry, and read as the map reads: a key
/// sent twice keeps its last value (as `CheckRequest`'s own map keeps it), two
/// spellings in case are two keys, and so a header given twice.
#[test]
fn headers_read_as_the_map_reads() {
    use prost::Message as _;
    let wire = |entries: &[(&str, &str)]| {
        let mut r = input(&get("platform.altinn.no", &format!("/parties?orgno={ORG}")));
        let http = r
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|q| q.http.as_mut())
            .unwrap();
        http.header_entries = entries
            .iter()
            .map(|(k, v)| wire::MapEntry {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect();
        r.encode_to_vec()
    };
    let repeated = wire(&[
        ("x-vakt-employee", "per"),
        ("accept", "*/*"),
        ("x-vakt-employee", "kari"),
    ]);
    let envoy = CheckRequest::decode(repeated.as_slice()).unwrap();
    let envoy_map = &envoy
        .attributes
        .unwrap()
        .request
        .unwrap()
        .http
        .unwrap()
        .headers;
    assert_eq!(envoy_map["x-vakt-employee"], "kari");
    let ours = CheckInput::decode(repeated.as_slice()).unwrap();
    assert_eq!(plan(&ours, &config(), None).unwrap().employee, "kari");
    assert_eq!(ours.http().unwrap().headers().count(), 2);

    let two_spellings = wire(&[("X-Vakt-Employee", "kari"), ("x-vakt-employee", "kari")]);
    let ours = CheckInput::decode(two_spellings.as_slice()).unwrap();
    let denied = plan(&ours, &config(), None).unwrap_err();
    assert_eq!(denied.reason.policy_id, reason::EMPLOYEE);
    assert!(denied.reason.message.contains("more than once"));
}

/// What Check does not read (the peers, TLS, metadata, context extensions, the
/// other HTTP fields) is skipped while decoding and changes nothing.
#[test]
fn the_rest_of_the_check_request_is_skipped() {
    use envoy_types::pb::envoy::config::core::v3::{
        address, socket_address, Address, Metadata, SocketAddress,
    };
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{Peer, TlsSession};
    let bare = request(
        "GET",
        "platform.altinn.no",
        &format!("/parties?orgno={ORG}"),
        &[("x-vakt-employee", "kari"), ("x-vakt-trace", "1")],
        "",
    );
    let peer = Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "10.0.0.7".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(8443)),
                ..Default::default()
            })),
        }),
        service: "app".into(),
        principal: "spiffe://cluster/ns/app".into(),
        ..Default::default()
    };
    let mut full = bare.clone();
    let a = full.attributes.as_mut().unwrap();
    a.source = Some(peer.clone());
    a.destination = Some(peer);
    a.context_extensions = [("k".to_owned(), "v".to_owned())].into();
    a.metadata_context = Some(Metadata::default());
    a.tls_session = Some(TlsSession {
        sni: "platform.altinn.no".into(),
    });
    let http = a.request.as_mut().unwrap().http.as_mut().unwrap();
    http.id = "17".into();
    http.scheme = "https".into();
    http.query = "orgno=1".into();
    http.fragment = "f".into();
    http.size = 12;
    http.protocol = "HTTP/2".into();
    let c = config();
    assert_eq!(
        plan(&full, &c, None).unwrap(),
        plan(&bare, &c, None).unwrap()
    );
}
