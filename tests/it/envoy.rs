//! The Envoy check (`src/server/envoy/`) on requests built with `envoy-types`, as
//! Envoy sends them: each is planned against a route table read from TOML,
//! decided by the real engine on the example world, and answered; every denial
//! is shown next to the same request that is allowed. (The gRPC service around
//! these functions is tested with the server wiring.)

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse, OkHttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use std::path::Path;
use vakt::decision::{decide, Query, RawRequest};
use vakt::rules::snapshot::{Snapshot, SourcePaths, Sources};
use vakt::server::envoy::{
    plan, respond, EnvoyConfig, Outcome, Reason, Verdict, PARTIAL_BODY_HEADER,
};

const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzdSJ9.c2ln";
/// Kari may act through tk-regnskap for this client (README's example)...
const CLIENT: &str = "310015156";
/// ...and not for this one (not a client of tk-regnskap).
const OTHER: &str = "310003034";

const ROUTES: &str = r#"
[[route]]
name = "register"
host = "platform.altinn.no"
methods = ["GET"]
path = "/register/api/v1/organizations/{orgno}/**"
package = "regnskapsforer-med-signeringsrettighet"
client = { path = "orgno" }
system_user = "tk-regnskap"
token = "maskinporten"

[[route]]
name = "instantiate"
host = "*.apps.altinn.no"
methods = ["POST"]
path = "/{org}/{app}/instances"
package = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet"
client = { body = "/instanceOwner/organisationNumber" }
system_user = "tk-regnskap"
token = "altinn"
"#;

fn snapshot() -> Snapshot {
    let src = Sources::read(&SourcePaths {
        data: Some(Path::new(WORLD).to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    Snapshot::build(&src).unwrap()
}

fn config(shadow: bool) -> EnvoyConfig {
    let text = format!("[envoy]\nshadow = {shadow}\n{ROUTES}");
    EnvoyConfig::from_toml("routes.toml", &text)
        .unwrap()
        .unwrap()
}

/// A Check request as Envoy sends it (headers in the merged map); shared with
/// `envoy_check.rs`.
pub(crate) fn check(
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
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                    body: body.into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

/// What the wiring will do: plan, decide with the engine, answer.
fn answer(req: &CheckRequest, cfg: &EnvoyConfig, snap: &Snapshot) -> CheckResponse {
    let id = "0190-test".to_owned();
    let input = match plan(req, cfg, None) {
        Ok(i) => i,
        Err(d) => return respond(&Outcome::denied(&d, id, cfg.shadow), None),
    };
    let raw = RawRequest {
        employee_id: input.employee.clone(),
        system_user_id: input.system_user.clone().unwrap_or_default(),
        client_org_number: input.client.value.clone(),
        access_package: input.package.clone(),
        action: input.action.clone().unwrap_or_default(),
        context: None,
    };
    let (verdict, reasons) = match Query::check(snap, raw, "") {
        Err(e) => (
            Verdict::Deny,
            vec![Reason::new("vakt:invalid", e.to_string())],
        ),
        Ok(q) => {
            let d = decide(snap, &q);
            let reasons = d
                .reasons
                .iter()
                .map(|r| Reason::new(&r.policy_id, r.message.clone()))
                .collect();
            (
                if d.allowed {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                },
                reasons,
            )
        }
    };
    respond(
        &Outcome::decided(&input, verdict, reasons, id, cfg.shadow),
        Some(TOKEN),
    )
}

/// The OK answer of a Check, or `None` for a denial; shared with `envoy_check.rs`.
pub(crate) fn ok(r: &CheckResponse) -> Option<&OkHttpResponse> {
    match r.http_response.as_ref()? {
        HttpResponse::OkResponse(o) if r.status.as_ref().is_some_and(|s| s.code == 0) => Some(o),
        _ => None,
    }
}

/// The denial's JSON body, or `None` for an allow.
fn denial(r: &CheckResponse) -> Option<serde_json::Value> {
    match r.http_response.as_ref()? {
        HttpResponse::DeniedResponse(d) => {
            assert_eq!(d.status.as_ref().unwrap().code, 403);
            assert_eq!(
                r.status.as_ref().unwrap().code,
                tonic::Code::PermissionDenied as i32
            );
            Some(serde_json::from_str(&d.body).unwrap())
        }
        _ => None,
    }
}

fn reason_ids(v: &serde_json::Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy_id"].as_str().unwrap().to_owned())
        .collect()
}

fn get(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    check("GET", "platform.altinn.no", path, headers, "")
}

const KARI: (&str, &str) = ("x-vakt-employee", "kari");

#[test]
fn a_wrong_client_in_the_path_is_denied() {
    let (snap, cfg) = (snapshot(), config(false));
    let right = answer(
        &get(
            &format!("/register/api/v1/organizations/{CLIENT}/x"),
            &[KARI],
        ),
        &cfg,
        &snap,
    );
    assert!(ok(&right).is_some(), "{right:?}");
    let wrong = answer(
        &get(
            &format!("/register/api/v1/organizations/{OTHER}/x"),
            &[KARI],
        ),
        &cfg,
        &snap,
    );
    let body = denial(&wrong).expect("denied");
    assert_eq!(body["decision"], "DENY");
    assert_eq!(body["decision_id"], "0190-test");
    assert!(!reason_ids(&body).is_empty());
}

#[test]
fn a_wrong_client_in_the_body_is_denied() {
    let (snap, cfg) = (snapshot(), config(false));
    let post = |org: &str| {
        let body =
            format!(r#"{{"instanceOwner":{{"organisationNumber":"{org}"}},"appId":"ttd/app"}}"#);
        let len = body.len().to_string();
        answer(
            &check(
                "POST",
                "ttd.apps.altinn.no",
                "/ttd/app/instances",
                &[
                    KARI,
                    ("content-length", &len),
                    ("content-type", "application/json"),
                ],
                &body,
            ),
            &cfg,
            &snap,
        )
    };
    assert!(ok(&post(CLIENT)).is_some());
    assert!(denial(&post(OTHER)).is_some());
}

#[test]
fn encoded_and_doubled_slashes_and_dot_segments() {
    let (snap, cfg) = (snapshot(), config(false));
    let allowed = |p: &str| ok(&answer(&get(p, &[KARI]), &cfg, &snap)).is_some();
    let ids = |p: &str| reason_ids(&denial(&answer(&get(p, &[KARI]), &cfg, &snap)).expect(p));
    let base = format!("/register/api/v1/organizations/{CLIENT}/x");
    assert!(allowed(&base));
    // Spellings of the allowed request stay allowed, for the same client.
    assert!(allowed(&format!(
        "//register//api/v1/./organizations/{CLIENT}//x/"
    )));
    assert!(allowed(&format!(
        "/register/api/v1/organizations/{OTHER}/../{CLIENT}/x"
    )));
    assert!(allowed(&format!(
        "/register/api/v1/organizations/{OTHER}/%2e%2e/{CLIENT}/x"
    )));
    // Spellings that would reach OTHER are denied, never allowed.
    for p in [
        format!("/register/api/v1/organizations/{CLIENT}/..%2F..%2F{OTHER}/x"),
        format!("/register/api/v1/organizations/{CLIENT}%2F..%2F{OTHER}/x"),
        format!("/register/api/v1/organizations/{CLIENT}/%5C..%5C{OTHER}"),
        format!("/register/api/v1/organizations/{CLIENT}/x\\..\\..\\{OTHER}"),
        format!("/register/api/v1/organizations/{CLIENT}/%252F..%252F{OTHER}"),
    ] {
        assert_eq!(ids(&p), ["vakt:envoy-bad-path"], "{p}");
    }
    // A `..` that moves the client segment is decided on where it lands.
    assert!(!allowed(&format!(
        "/register/api/v1/organizations/{CLIENT}/../{OTHER}/x"
    )));
}

#[test]
fn a_truncated_body_is_denied() {
    let (snap, cfg) = (snapshot(), config(false));
    let body = format!(r#"{{"instanceOwner":{{"organisationNumber":"{CLIENT}"}}}}"#);
    let len = body.len().to_string();
    let post = |h: &[(&str, &str)], b: &str| {
        answer(
            &check("POST", "ttd.apps.altinn.no", "/ttd/app/instances", h, b),
            &cfg,
            &snap,
        )
    };
    assert!(ok(&post(&[KARI, ("content-length", &len)], &body)).is_some());
    let cut = denial(&post(&[KARI, ("content-length", &len)], &body[..20])).unwrap();
    assert_eq!(reason_ids(&cut), ["vakt:envoy-body"]);
    assert!(cut["reasons"][0]["message"]
        .as_str()
        .unwrap()
        .contains("truncated"));
    let partial = denial(&post(&[KARI, (PARTIAL_BODY_HEADER, "true")], &body)).unwrap();
    assert!(partial["reasons"][0]["message"]
        .as_str()
        .unwrap()
        .contains("truncated"));
    let not_json = denial(&post(&[KARI], "<instance/>")).unwrap();
    assert!(not_json["reasons"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not JSON"));
}

#[test]
fn a_missing_employee_is_denied() {
    let (snap, cfg) = (snapshot(), config(false));
    let p = format!("/register/api/v1/organizations/{CLIENT}/x");
    assert!(ok(&answer(&get(&p, &[KARI]), &cfg, &snap)).is_some());
    let body = denial(&answer(&get(&p, &[]), &cfg, &snap)).unwrap();
    assert_eq!(reason_ids(&body), ["vakt:envoy-employee"]);
    // An employee who may not act for the client is denied by the policies.
    assert!(denial(&answer(
        &get(&p, &[("x-vakt-employee", "nobody-here")]),
        &cfg,
        &snap
    ))
    .is_some());
}

#[test]
fn an_unknown_route_to_an_altinn_host_is_denied() {
    let (snap, cfg) = (snapshot(), config(false));
    let p = format!("/register/api/v1/organizations/{CLIENT}/x");
    assert!(ok(&answer(&get(&p, &[KARI]), &cfg, &snap)).is_some());
    let other_path = denial(&answer(
        &get("/storage/api/v1/instances", &[KARI]),
        &cfg,
        &snap,
    ))
    .unwrap();
    assert_eq!(reason_ids(&other_path), ["vakt:envoy-no-route"]);
    let other_host = denial(&answer(
        &check("GET", "apps.altinn.no", &p, &[KARI], ""),
        &cfg,
        &snap,
    ))
    .unwrap();
    assert_eq!(reason_ids(&other_host), ["vakt:envoy-no-route"]);
    let not_altinn = denial(&answer(
        &check("GET", "example.com", &p, &[KARI], ""),
        &cfg,
        &snap,
    ))
    .unwrap();
    assert_eq!(reason_ids(&not_altinn), ["vakt:envoy-not-altinn"]);
}

#[test]
fn the_token_replaces_the_application_s_and_vakt_headers_are_removed() {
    let (snap, cfg) = (snapshot(), config(false));
    let req = get(
        &format!("/register/api/v1/organizations/{CLIENT}/x"),
        &[
            KARI,
            ("authorization", "Bearer the-app-s-own"),
            ("x-vakt-system-user", "tk-regnskap"),
            ("accept", "application/json"),
        ],
    );
    let r = answer(&req, &cfg, &snap);
    let ok = ok(&r).expect("allowed");
    assert_eq!(ok.headers.len(), 1);
    let h = &ok.headers[0];
    let hv = h.header.as_ref().unwrap();
    assert_eq!(
        (hv.key.as_str(), hv.value.as_str()),
        ("authorization", &*format!("Bearer {TOKEN}"))
    );
    #[allow(deprecated)]
    let append = h.append.as_ref().map(|b| b.value);
    assert_eq!(append, Some(false), "must replace, not append");
    assert_eq!(h.append_action, 2, "OVERWRITE_IF_EXISTS_OR_ADD");
    assert_eq!(
        ok.headers_to_remove,
        ["x-vakt-employee", "x-vakt-system-user"]
    );
}

#[test]
fn shadow_mode_lets_a_would_be_deny_through_flagged() {
    let snap = snapshot();
    let wrong = get(
        &format!("/register/api/v1/organizations/{OTHER}/x"),
        &[KARI],
    );
    assert!(denial(&answer(&wrong, &config(false), &snap)).is_some());
    let r = answer(&wrong, &config(true), &snap);
    let ok = ok(&r).expect("let through in shadow mode");
    assert_eq!(
        ok.headers[0].header.as_ref().unwrap().value,
        format!("Bearer {TOKEN}")
    );
    assert_eq!(ok.headers_to_remove, ["x-vakt-employee"]);
    let meta = &r.dynamic_metadata.as_ref().unwrap().fields;
    use envoy_types::pb::google::protobuf::value::Kind;
    assert_eq!(
        meta["vakt_decision"].kind,
        Some(Kind::StringValue("SHADOW_DENY".into()))
    );
    assert_eq!(meta["vakt_shadow"].kind, Some(Kind::BoolValue(true)));
    // An allowed request in shadow mode is a plain ALLOW.
    let right = answer(
        &get(
            &format!("/register/api/v1/organizations/{CLIENT}/x"),
            &[KARI],
        ),
        &config(true),
        &snap,
    );
    let meta = &right.dynamic_metadata.as_ref().unwrap().fields;
    assert_eq!(
        meta["vakt_decision"].kind,
        Some(Kind::StringValue("ALLOW".into()))
    );
    // A request denied before deciding goes through untouched but for Vakt's headers.
    let unrouted = answer(&get("/nowhere", &[KARI]), &config(true), &snap);
    let ok = self::ok(&unrouted).expect("let through");
    assert!(ok.headers.is_empty());
    assert_eq!(ok.headers_to_remove, ["x-vakt-employee"]);
}

#[test]
fn the_documented_example_configuration_reads() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/envoy.md")).unwrap();
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let cfg = EnvoyConfig::from_toml("docs/envoy.md", &doc[start..end])
        .unwrap()
        .unwrap();
    assert_eq!(cfg.routes.len(), 2);
    assert!(cfg.unknown_packages(&snapshot()).is_empty());
}
