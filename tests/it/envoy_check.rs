//! Envoy's Check on the real server (127.0.0.1:0), called with envoy-types'
//! tonic client: a Vakt built with a binding (the Maskinporten client against
//! the stand-in in common/maskinporten.rs, scopes per package, and a route
//! table read from TOML) decides on the example world, injects the system
//! user's token, and writes a decision record (file sink) for every Check.
//! Every deny is shown next to the same request allowed.

use crate::common::altinn::Altinn;
use crate::common::maskinporten::{Mode, StandIn, SCOPE};
use crate::common::{default_snapshot, snapshot_from, start_vakt, TestServer, REGNSKAP};
use crate::envoy::{check as http, ok};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse, OkHttpResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use vakt::decision_log::{DecisionLog, LogOptions, Writers};
use vakt::maskinporten::{Maskinporten, Scope};
use vakt::server::envoy::EnvoyConfig;
use vakt::server::{Binding, EnvoyBinding, Vakt};

/// Kari may act through tk-regnskap (owned by Tall og Kontroll) for this client…
const CLIENT: &str = "310015156";
/// …and not for this one.
const OTHER: &str = "310003034";
/// Kari may use two system users for this client (tk-regnskap, tk-regnskap-syk).
const TWO_SUS: &str = "310019194";
const OWNER: &str = "310001015";
const KARI: (&str, &str) = ("x-vakt-employee", "kari");

const ROUTES: &str = r#"
[[route]]
name = "register"
host = "platform.altinn.no"
methods = ["GET"]
path = "/register/api/v1/organizations/{orgno}/**"
package = "regnskapsforer-med-signeringsrettighet"
client = { path = "orgno" }
token = "maskinporten"

[[route]]
name = "instantiate"
host = "*.apps.altinn.no"
methods = ["POST"]
path = "/{org}/{app}/instances"
package = "regnskapsforer-med-signeringsrettighet"
client = { body = "/instanceOwner/organisationNumber" }
system_user = "tk-regnskap"
token = "maskinporten"

[[route]]
name = "instance"
host = "*.apps.altinn.no"
methods = ["GET"]
path = "/{org}/{app}/instances/{partyId}/**"
package = "regnskapsforer-med-signeringsrettighet"
client = { path = "partyId", kind = "party-id" }
token = "maskinporten"

[[route]]
name = "exchanged"
host = "platform.altinn.no"
methods = ["GET"]
path = "/storage/api/v1/organizations/{orgno}"
package = "regnskapsforer-med-signeringsrettighet"
client = { path = "orgno" }
token = "altinn"
"#;

/// A running sidecar with Check configured, its Maskinporten stand-in, and its
/// decision log.
struct Setup {
    mp: StandIn,
    /// Altinn's stand-in, when the binding has its token exchange.
    altinn: Option<Altinn>,
    _server: TestServer,
    check: AuthorizationClient<Channel>,
    log: PathBuf,
    _writers: Writers,
    _dir: tempfile::TempDir,
}

/// How the sidecar is built.
#[derive(Default)]
struct Opts {
    shadow: bool,
    /// No `[envoy]` or `[[route]]`.
    no_envoy: bool,
    /// Maskinporten's refresh margin (default: the client's).
    refresh_before: Option<Duration>,
    /// Altinn's token exchange, at its stand-in.
    exchange: bool,
    /// The example world with party ids for CLIENT and OTHER.
    party_ids: bool,
    /// The employee from a JWT in `x-vakt-employee-token`, verified against
    /// this identity provider's JWKS.
    idp: Option<vakt::maskinporten::IdentityProvider>,
}

/// Altinn's party ids of CLIENT and OTHER, in `Opts::party_ids`' world.
const CLIENT_PARTY: &str = "50001234";
const OTHER_PARTY: &str = "50003034";

/// The example world, its organisations CLIENT and OTHER given party ids,
/// written to `dir`.
fn world_with_party_ids(dir: &std::path::Path) -> PathBuf {
    let from = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world");
    let to = dir.join("world");
    std::fs::create_dir(&to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        let mut text = std::fs::read_to_string(f.path()).unwrap();
        if f.file_name() == "organizations.yaml" {
            for (org, party) in [(CLIENT, CLIENT_PARTY), (OTHER, OTHER_PARTY)] {
                let entry = format!("  - orgNumber: \"{org}\"\n");
                assert!(text.contains(&entry));
                text = text.replace(&entry, &format!("{entry}    partyId: {party}\n"));
            }
        }
        std::fs::write(to.join(f.file_name()), text).unwrap();
    }
    to
}

async fn setup(opts: Opts) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    // tk-regnskap as Altinn knows it: owned by Tall og Kontroll, its externalRef.
    mp.add_fixture(
        OWNER,
        Some("tk-regnskap"),
        "tk-regnskap",
        Some("310001015_regnskapsys"),
    );
    let mut config = mp.config(dir.path());
    if let Some(r) = opts.refresh_before {
        config.refresh_before = r;
    }
    let mut binding = Binding::new(Maskinporten::new(config).unwrap());
    binding
        .scopes
        .insert(REGNSKAP.into(), vec![Scope::parse(SCOPE).unwrap()]);
    let altinn = match opts.exchange {
        true => Some(Altinn::start(&mp).await),
        false => None,
    };
    binding.altinn_exchange = altinn.as_ref().map(Altinn::exchange_url);
    if !opts.no_envoy {
        let jwt = match opts.idp {
            Some(_) => "employee_jwt_header = \"x-vakt-employee-token\"\n",
            None => "",
        };
        let text = format!("[envoy]\nshadow = {}\n{jwt}{ROUTES}", opts.shadow);
        let config = EnvoyConfig::from_toml("vakt.toml", &text).unwrap().unwrap();
        binding.envoy = Some(EnvoyBinding {
            config,
            verifier: opts
                .idp
                .map(|idp| Arc::new(idp) as Arc<dyn vakt::server::envoy::EmployeeVerifier>),
        });
    }
    let log = dir.path().join("decisions.jsonl");
    let specs = [format!("file:{}", log.display()).parse().unwrap()];
    let (decision_log, writers) = DecisionLog::open(&specs, &LogOptions::default()).unwrap();
    let snapshot = match opts.party_ids {
        true => snapshot_from(None, None, Some(&world_with_party_ids(dir.path()))),
        false => default_snapshot(),
    };
    let vakt = Vakt::new(snapshot, decision_log).with_binding(binding);
    let server = start_vakt(Arc::new(vakt)).await;
    let check = AuthorizationClient::new(server.channel.clone());
    Setup {
        mp,
        altinn,
        _server: server,
        check,
        log,
        _writers: writers,
        _dir: dir,
    }
}

fn get(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    http("GET", "platform.altinn.no", path, headers, "")
}

fn register(client: &str) -> String {
    format!("/register/api/v1/organizations/{client}/roles")
}

fn post_instance(org: &str, headers: &[(&str, &str)], cut: usize) -> CheckRequest {
    let body = format!(r#"{{"instanceOwner":{{"organisationNumber":"{org}"}},"appId":"ttd/app"}}"#);
    let len = body.len().to_string();
    let mut h = vec![
        ("content-length", len.as_str()),
        ("content-type", "application/json"),
    ];
    h.extend_from_slice(headers);
    http(
        "POST",
        "ttd.apps.altinn.no",
        "/ttd/app/instances",
        &h,
        &body[..body.len() - cut],
    )
}

impl Setup {
    async fn ask(&mut self, req: CheckRequest) -> CheckResponse {
        self.check
            .check(req)
            .await
            .expect("Check answers")
            .into_inner()
    }

    /// Every record written so far.
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The record of the decision `id`.
    fn record(&self, id: &str) -> Value {
        self.records()
            .into_iter()
            .find(|r| r["decision_id"] == id)
            .unwrap_or_else(|| panic!("no record {id}"))
    }
}

/// The injected bearer token of an OK answer.
fn bearer(o: &OkHttpResponse) -> Option<&str> {
    o.headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "authorization")
        .and_then(|h| h.value.strip_prefix("Bearer "))
}

/// The HTTP status and JSON body of a denial, or `None` for an OK.
fn denial(r: &CheckResponse) -> Option<(i32, Value)> {
    match r.http_response.as_ref()? {
        HttpResponse::DeniedResponse(d) => {
            let code = d.status.as_ref().unwrap().code;
            let grpc = r.status.as_ref().unwrap().code;
            match code {
                403 => assert_eq!(grpc, tonic::Code::PermissionDenied as i32),
                503 => assert_eq!(grpc, tonic::Code::Unavailable as i32),
                other => panic!("unexpected HTTP status {other}"),
            }
            Some((code, serde_json::from_str(&d.body).unwrap()))
        }
        HttpResponse::OkResponse(_) => None,
        HttpResponse::ErrorResponse(e) => panic!("error response {e:?}"),
    }
}

/// A 403's first reason id, after checking it is one.
#[track_caller]
fn denied_for(r: &CheckResponse) -> String {
    let (code, body) = denial(r).unwrap_or_else(|| panic!("expected a deny, got {r:?}"));
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["decision"], "DENY");
    body["reasons"][0]["policy_id"].as_str().unwrap().to_owned()
}

fn decision_id(r: &CheckResponse) -> String {
    match &r.dynamic_metadata.as_ref().unwrap().fields["vakt_decision_id"].kind {
        Some(Kind::StringValue(s)) => s.clone(),
        other => panic!("{other:?}"),
    }
}

fn meta(r: &CheckResponse, key: &str) -> Option<Kind> {
    r.dynamic_metadata.as_ref()?.fields.get(key)?.kind.clone()
}

#[tokio::test]
async fn an_allowed_request_gets_the_system_user_s_token_replacing_the_application_s() {
    let mut s = setup(Opts::default()).await;
    let r = s
        .ask(get(
            &register(CLIENT),
            &[
                KARI,
                ("authorization", "Bearer the-application-s-own"),
                ("x-vakt-trace", "1"),
                ("accept", "application/json"),
            ],
        ))
        .await;
    let o = ok(&r).unwrap_or_else(|| panic!("allowed: {r:?}"));
    let token = bearer(o).expect("a bearer token").to_owned();
    // Altinn's stand-in takes it, and it is tk-regnskap's.
    let claims =
        s.mp.altinn_accepts(&token)
            .expect("Altinn accepts the token");
    let details = &claims["authorization_details"][0];
    assert_eq!(details["systemuser_id"][0], "tk-regnskap");
    assert_eq!(details["systemuser_org"]["ID"], format!("0192:{OWNER}"));
    assert_eq!(claims["scope"], SCOPE);
    // One authorization header, replacing the application's.
    let auth: Vec<_> = o
        .headers
        .iter()
        .filter(|h| h.header.as_ref().unwrap().key == "authorization")
        .collect();
    assert_eq!(auth.len(), 1);
    #[allow(deprecated)]
    let append = auth[0].append.as_ref().map(|b| b.value);
    assert_eq!(append, Some(false));
    assert_eq!(o.headers_to_remove, ["x-vakt-employee", "x-vakt-trace"]);
    assert_eq!(
        meta(&r, "vakt_decision"),
        Some(Kind::StringValue("ALLOW".into()))
    );

    // The record: the route, the client, the token's jti, never the token.
    let id = decision_id(&r);
    let rec = s.record(&id);
    assert_eq!(rec["call"], "envoy_check");
    assert_eq!(rec["decision"], "allow");
    assert_eq!(rec["employee_id"], "kari");
    assert_eq!(rec["system_user_id"], "tk-regnskap");
    assert_eq!(rec["client_org_number"], CLIENT);
    assert_eq!(rec["envoy"]["route"], "register");
    assert_eq!(rec["envoy"]["client"], CLIENT);
    assert_eq!(rec["envoy"]["client_from"], "path {orgno}");
    assert_eq!(rec["envoy"]["method"], "GET");
    assert_eq!(rec["envoy"]["host"], "platform.altinn.no");
    assert_eq!(rec["envoy"]["path"], register(CLIENT));
    assert!(rec["envoy"].get("shadow_deny").is_none());
    assert_eq!(rec["token"]["kind"], "maskinporten");
    assert_eq!(rec["token"]["jti"], claims["jti"]);
    assert!(rec["token"]["expires_at"].is_string());
    let text = std::fs::read_to_string(&s.log).unwrap();
    assert!(!text.contains(&token));
    assert!(!text.contains(token.split('.').nth(2).unwrap()));

    // The token is cached: a second Check does not ask Maskinporten again.
    let hits = s.mp.token_hits();
    let again = s.ask(get(&register(CLIENT), &[KARI])).await;
    assert_eq!(bearer(ok(&again).unwrap()), Some(token.as_str()));
    assert_eq!(s.mp.token_hits(), hits);
}

#[tokio::test]
async fn a_wrong_client_in_the_path_or_the_body_is_denied() {
    let mut s = setup(Opts::default()).await;
    let su = ("x-vakt-system-user", "tk-regnskap");
    assert!(ok(&s.ask(get(&register(CLIENT), &[KARI, su])).await).is_some());
    let r = s.ask(get(&register(OTHER), &[KARI, su])).await;
    let why = denied_for(&r);
    assert!(!why.starts_with("vakt:envoy"), "the policies deny: {why}");
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["decision"], "deny");
    assert_eq!(rec["envoy"]["client"], OTHER);
    assert!(rec.get("token").is_none());

    assert!(ok(&s.ask(post_instance(CLIENT, &[KARI], 0)).await).is_some());
    let r = s.ask(post_instance(OTHER, &[KARI], 0)).await;
    denied_for(&r);
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["envoy"]["route"], "instantiate");
    assert_eq!(
        rec["envoy"]["client_from"],
        "body /instanceOwner/organisationNumber"
    );
    assert_eq!(rec["envoy"]["client"], OTHER);
}

#[tokio::test]
async fn encoded_slashes_doubled_slashes_and_dot_segments_cannot_change_the_client() {
    let mut s = setup(Opts::default()).await;
    for spelt in [
        format!("//register//api/v1/./organizations/{CLIENT}//roles/"),
        format!("/register/api/v1/organizations/{OTHER}/../{CLIENT}/roles"),
        format!("/register/api/v1/organizations/{OTHER}/%2e%2e/{CLIENT}/roles"),
    ] {
        let r = s.ask(get(&spelt, &[KARI])).await;
        assert!(ok(&r).is_some(), "{spelt}: {r:?}");
        assert_eq!(s.record(&decision_id(&r))["envoy"]["client"], CLIENT);
    }
    for spelt in [
        format!("/register/api/v1/organizations/{CLIENT}%2F..%2F{OTHER}/roles"),
        format!("/register/api/v1/organizations/{CLIENT}/..%2f..%2f{OTHER}/roles"),
        format!("/register/api/v1/organizations/{CLIENT}/%252F..%252F{OTHER}"),
    ] {
        let r = s.ask(get(&spelt, &[KARI])).await;
        assert_eq!(denied_for(&r), "vakt:envoy-bad-path", "{spelt}");
    }
    // A `..` that moves the client segment is decided where it lands: OTHER.
    let r = s
        .ask(get(
            &format!("/register/api/v1/organizations/{CLIENT}/../{OTHER}/roles"),
            &[KARI],
        ))
        .await;
    denied_for(&r);
    assert_eq!(s.record(&decision_id(&r))["envoy"]["client"], OTHER);
}

#[tokio::test]
async fn a_truncated_body_is_denied() {
    let mut s = setup(Opts::default()).await;
    assert!(ok(&s.ask(post_instance(CLIENT, &[KARI], 0)).await).is_some());
    let r = s.ask(post_instance(CLIENT, &[KARI], 10)).await;
    assert_eq!(denied_for(&r), "vakt:envoy-body");
    let (_, body) = denial(&r).unwrap();
    assert!(body["reasons"][0]["message"]
        .as_str()
        .unwrap()
        .contains("truncated"));
    let partial = s
        .ask(post_instance(
            CLIENT,
            &[KARI, ("x-envoy-auth-partial-body", "true")],
            0,
        ))
        .await;
    assert_eq!(denied_for(&partial), "vakt:envoy-body");
    let rec = s.record(&decision_id(&partial));
    assert_eq!(rec["decision"], "deny");
    assert_eq!(rec["envoy"]["route"], "instantiate");
}

#[tokio::test]
async fn a_missing_employee_or_one_named_twice_is_denied() {
    let mut s = setup(Opts::default()).await;
    assert!(ok(&s.ask(get(&register(CLIENT), &[KARI])).await).is_some());
    let r = s.ask(get(&register(CLIENT), &[])).await;
    assert_eq!(denied_for(&r), "vakt:envoy-employee");
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["envoy"]["route"], "register");
    // Twice, as Envoy sends raw headers (encode_raw_headers): each one listed.
    let mut twice = get(&register(CLIENT), &[]);
    let h = twice
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    h.header_map = Some(HeaderMap {
        headers: ["kari", "ola"]
            .iter()
            .map(|v| HeaderValue {
                key: "x-vakt-employee".into(),
                raw_value: v.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect(),
    });
    let r = s.ask(twice).await;
    assert_eq!(denied_for(&r), "vakt:envoy-employee");
    // Twice, as Envoy's merged map joins them.
    let r = s
        .ask(get(&register(CLIENT), &[("x-vakt-employee", "kari,ola")]))
        .await;
    assert_eq!(denied_for(&r), "vakt:envoy-employee");
}

/// With `employee_jwt_header`, the employee is whoever a valid login of the
/// identity provider names: a forged token, one for another audience, or the
/// plain employee header alone cannot name one.
#[tokio::test]
async fn the_employee_from_a_jwt_must_be_a_valid_login() {
    use crate::common::idp::{Idp, IdpKey};
    let idp = Idp::start().await;
    let verifier = vakt::maskinporten::IdentityProvider::new(idp.config()).unwrap();
    verifier.refresh().await.expect("the stand-in's keys");
    let mut s = setup(Opts {
        idp: Some(verifier),
        ..Default::default()
    })
    .await;
    let login = |key, claims: &Value| format!("Bearer {}", idp.mint(key, claims));
    let good = login(IdpKey::Rsa, &idp.claims("kari"));
    let r = s
        .ask(get(&register(CLIENT), &[("x-vakt-employee-token", &good)]))
        .await;
    let o = ok(&r).expect("a valid login of an allowed employee is allowed");
    assert!(bearer(o).is_some());
    assert_eq!(s.record(&decision_id(&r))["employee_id"], "kari");
    // The same request, its token forged (the right kid, another key).
    let forged = login(IdpKey::Forged, &idp.claims("kari"));
    let r = s
        .ask(get(
            &register(CLIENT),
            &[("x-vakt-employee-token", &forged)],
        ))
        .await;
    assert_eq!(denied_for(&r), "vakt:envoy-employee");
    // Another audience.
    let mut claims = idp.claims("kari");
    claims["aud"] = "someone-else".into();
    let r = s
        .ask(get(
            &register(CLIENT),
            &[("x-vakt-employee-token", &login(IdpKey::Rsa, &claims))],
        ))
        .await;
    assert_eq!(denied_for(&r), "vakt:envoy-employee");
    // The plain header names no one when a login is required.
    let r = s.ask(get(&register(CLIENT), &[KARI])).await;
    assert_eq!(denied_for(&r), "vakt:envoy-employee");
}

#[tokio::test]
async fn an_unknown_route_to_an_altinn_host_is_denied() {
    let mut s = setup(Opts::default()).await;
    assert!(ok(&s.ask(get(&register(CLIENT), &[KARI])).await).is_some());
    let r = s
        .ask(get(&format!("/authorization/api/v1/{CLIENT}"), &[KARI]))
        .await;
    assert_eq!(denied_for(&r), "vakt:envoy-no-route");
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["call"], "envoy_check");
    assert!(rec["envoy"].get("route").is_none());
    assert_eq!(rec["envoy"]["host"], "platform.altinn.no");
    let r = s
        .ask(http("GET", "example.com", &register(CLIENT), &[KARI], ""))
        .await;
    assert_eq!(denied_for(&r), "vakt:envoy-not-altinn");
}

#[tokio::test]
async fn the_system_user_is_resolved_when_exactly_one_may_be_used() {
    let mut s = setup(Opts::default()).await;
    // One usable (tk-regnskap): used, as `an_allowed_request…` shows. Two:
    // the application must name one.
    let r = s.ask(get(&register(TWO_SUS), &[KARI])).await;
    assert_eq!(denied_for(&r), "vakt:envoy-system-user");
    let (_, body) = denial(&r).unwrap();
    let msg = body["reasons"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("x-vakt-system-user") && msg.contains("tk-regnskap-syk"),
        "{msg}"
    );
    let named = s
        .ask(get(
            &register(TWO_SUS),
            &[KARI, ("x-vakt-system-user", "tk-regnskap")],
        ))
        .await;
    assert!(ok(&named).is_some(), "{named:?}");
    // None usable (Per has left the firm).
    let r = s
        .ask(get(&register(CLIENT), &[("x-vakt-employee", "per")]))
        .await;
    assert_eq!(denied_for(&r), "vakt:envoy-system-user");
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["employee_id"], "per");
    assert_eq!(rec["client_org_number"], CLIENT);
}

#[tokio::test]
async fn a_party_id_is_decided_as_the_organisation_the_world_maps_it_to() {
    let mut s = setup(Opts {
        party_ids: true,
        ..Default::default()
    })
    .await;
    let instance = |party: &str| {
        http(
            "GET",
            "ttd.apps.altinn.no",
            &format!("/ttd/app/instances/{party}/data"),
            &[KARI, ("x-vakt-system-user", "tk-regnskap")],
            "",
        )
    };
    let r = s.ask(instance(CLIENT_PARTY)).await;
    assert!(ok(&r).is_some(), "{r:?}");
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["client_org_number"], CLIENT);
    assert_eq!(rec["envoy"]["client"], CLIENT_PARTY);
    assert_eq!(rec["envoy"]["client_from"], "path {partyId}");
    // OTHER's party: decided as OTHER, and denied by the policies.
    let r = s.ask(instance(OTHER_PARTY)).await;
    let why = denied_for(&r);
    assert!(!why.starts_with("vakt:envoy"), "{why}");
    assert_eq!(s.record(&decision_id(&r))["client_org_number"], OTHER);
    // A party id the data does not hold, and one too large for any.
    for party in ["50009999", "99999999999999999999"] {
        let r = s.ask(instance(party)).await;
        let why = denied_for(&r);
        assert!(
            why == "vakt:envoy-party-unknown" || why == "vakt:envoy-client",
            "{party}: {why}"
        );
        let rec = s.record(&decision_id(&r));
        assert_eq!(rec["envoy"]["route"], "instance");
    }
    let r = s.ask(instance("50009999")).await;
    assert_eq!(denied_for(&r), "vakt:envoy-party-unknown");
    assert_eq!(s.record(&decision_id(&r))["envoy"]["client"], "50009999");
}

#[tokio::test]
async fn an_altinn_token_route_without_an_exchange_is_denied() {
    let mut s = setup(Opts::default()).await;
    let r = s
        .ask(get(
            &format!("/storage/api/v1/organizations/{CLIENT}"),
            &[KARI],
        ))
        .await;
    assert_eq!(denied_for(&r), "vakt:envoy-no-exchange");
    assert!(ok(&s.ask(get(&register(CLIENT), &[KARI])).await).is_some());
}

#[tokio::test]
async fn an_altinn_token_route_gets_the_exchanged_token() {
    let mut s = setup(Opts {
        exchange: true,
        ..Default::default()
    })
    .await;
    let path = format!("/storage/api/v1/organizations/{CLIENT}");
    let req = || get(&path, &[KARI, ("authorization", "Bearer app")]);
    // The exchange down: no token, so no ALLOW.
    s.altinn.as_ref().unwrap().set_mode(Mode::Unavailable);
    let r = s.ask(req()).await;
    let (code, body) = denial(&r).unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(code, 503);
    assert_eq!(body["reasons"][0]["policy_id"], "vakt:token-unavailable");
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["decision"], "deny");
    assert!(rec.get("token").is_none());
    // Up: the Altinn token replaces the application's.
    s.altinn.as_ref().unwrap().set_mode(Mode::Up);
    let r = s.ask(req()).await;
    let o = ok(&r).unwrap_or_else(|| panic!("allowed: {r:?}"));
    let token = bearer(o).unwrap().to_owned();
    let altinn = s.altinn.as_ref().unwrap();
    // Altinn's resources take it; it is not a Maskinporten token.
    altinn
        .accepts(&token)
        .expect("Altinn accepts its own token");
    assert!(s.mp.altinn_accepts(&token).is_err());
    let (status, _) = altinn.call_resource(&token).await;
    assert_eq!(status, 200);
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["decision"], "allow");
    assert_eq!(rec["token"]["kind"], "altinn");
    assert_eq!(rec["envoy"]["route"], "exchanged");
    assert!(rec["token"]["jti"].is_string());
    assert!(!std::fs::read_to_string(&s.log).unwrap().contains(&token));
}

#[tokio::test]
async fn maskinporten_down_or_refusing_is_a_503_deny_with_the_reason() {
    let mut s = setup(Opts::default()).await;
    for mode in [Mode::Unavailable, Mode::Refuse] {
        s.mp.set_mode(mode);
        let r = s.ask(get(&register(CLIENT), &[KARI])).await;
        let (code, body) = denial(&r).unwrap_or_else(|| panic!("{mode:?}: {r:?}"));
        assert_eq!(code, 503);
        assert_eq!(body["decision"], "UNAVAILABLE");
        assert_eq!(body["reasons"][0]["policy_id"], "vakt:token-unavailable");
        let rec = s.record(&decision_id(&r));
        assert_eq!(rec["decision"], "deny");
        assert_eq!(rec["reasons"][0]["policy_id"], "vakt:token-unavailable");
        assert!(rec.get("token").is_none());
    }
    // Back up: the same request is allowed.
    s.mp.set_mode(Mode::Up);
    assert!(ok(&s.ask(get(&register(CLIENT), &[KARI])).await).is_some());
    // Maskinporten refuses a system user it does not know (tk-regnskap-syk has
    // no fixture): refused, with its MP code.
    let r = s
        .ask(get(
            &register(TWO_SUS),
            &[KARI, ("x-vakt-system-user", "tk-regnskap-syk")],
        ))
        .await;
    let (code, body) = denial(&r).unwrap();
    assert_eq!(code, 503);
    assert_eq!(body["reasons"][0]["policy_id"], "vakt:token-refused");
    assert!(body["reasons"][0]["message"]
        .as_str()
        .unwrap()
        .contains("MP-303"));
}

#[tokio::test]
async fn a_token_for_another_system_user_is_not_handed_out() {
    let mut s = setup(Opts::default()).await;
    // Altinn's tk-regnskap-syk is another system user than the data's.
    s.mp.add_fixture(OWNER, Some("tk-regnskap-syk"), "someone-else", None);
    let r = s
        .ask(get(
            &register(TWO_SUS),
            &[KARI, ("x-vakt-system-user", "tk-regnskap-syk")],
        ))
        .await;
    assert_eq!(denied_for(&r), "vakt:token-mismatch");
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["decision"], "deny");
    assert!(rec.get("token").is_none());
}

#[tokio::test]
async fn an_expired_token_is_replaced_by_a_fresh_one() {
    let mut s = setup(Opts {
        refresh_before: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    s.mp.set_token_lifetime(3);
    let first = s.ask(get(&register(CLIENT), &[KARI])).await;
    let t1 = bearer(ok(&first).unwrap()).unwrap().to_owned();
    let second = s.ask(get(&register(CLIENT), &[KARI])).await;
    assert_eq!(bearer(ok(&second).unwrap()), Some(t1.as_str()));
    assert_eq!(s.mp.token_hits(), 1);
    // Past its refresh point (3 s lifetime, refreshed 1 s before expiry).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let third = s.ask(get(&register(CLIENT), &[KARI])).await;
    let t3 = bearer(ok(&third).unwrap()).unwrap().to_owned();
    assert_ne!(t1, t3);
    assert_eq!(s.mp.token_hits(), 2);
    assert!(s.mp.altinn_accepts(&t3).is_ok());
    let (j1, j3) = (
        s.record(&decision_id(&first))["token"]["jti"].clone(),
        s.record(&decision_id(&third))["token"]["jti"].clone(),
    );
    assert_ne!(j1, j3);
    // The first one expires (its exp is in whole seconds); Altinn then refuses it.
    crate::common::eventually(Duration::from_secs(5), "the first token to expire", || {
        s.mp.altinn_accepts(&t1).is_err()
    })
    .await;
}

#[tokio::test]
async fn shadow_mode_lets_a_would_be_deny_through_and_records_it() {
    let mut s = setup(Opts {
        shadow: true,
        ..Default::default()
    })
    .await;
    let su = ("x-vakt-system-user", "tk-regnskap");
    // Denied by the policies: let through, with the system user's token.
    let r = s.ask(get(&register(OTHER), &[KARI, su])).await;
    let o = ok(&r).unwrap_or_else(|| panic!("let through: {r:?}"));
    let token = bearer(o).expect("with its token");
    assert!(s.mp.altinn_accepts(token).is_ok());
    assert_eq!(
        o.headers_to_remove,
        ["x-vakt-employee", "x-vakt-system-user"]
    );
    assert_eq!(
        meta(&r, "vakt_decision"),
        Some(Kind::StringValue("SHADOW_DENY".into()))
    );
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["decision"], "deny");
    assert_eq!(rec["envoy"]["shadow_deny"], true);
    assert_eq!(rec["envoy"]["client"], OTHER);
    assert_eq!(rec["token"]["kind"], "maskinporten");
    // Denied before planning (no route): let through unchanged, recorded.
    let r = s
        .ask(get(
            "/authorization/api/v1/x",
            &[KARI, ("authorization", "Bearer app")],
        ))
        .await;
    let o = ok(&r).expect("let through");
    assert!(bearer(o).is_none());
    assert_eq!(o.headers_to_remove, ["x-vakt-employee"]);
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["reasons"][0]["policy_id"], "vakt:envoy-no-route");
    assert_eq!(rec["envoy"]["shadow_deny"], true);
    // An allowed request is a plain ALLOW, not a shadow deny.
    let r = s.ask(get(&register(CLIENT), &[KARI])).await;
    assert_eq!(
        meta(&r, "vakt_decision"),
        Some(Kind::StringValue("ALLOW".into()))
    );
    assert!(s.record(&decision_id(&r))["envoy"]
        .get("shadow_deny")
        .is_none());
}

#[tokio::test]
async fn without_routes_every_check_is_denied_and_recorded() {
    let mut s = setup(Opts {
        no_envoy: true,
        ..Default::default()
    })
    .await;
    let r = s.ask(get(&register(CLIENT), &[KARI])).await;
    assert_eq!(denied_for(&r), "vakt:envoy-not-configured");
    let rec = s.record(&decision_id(&r));
    assert_eq!(rec["call"], "envoy_check");
    assert_eq!(rec["envoy"]["path"], register(CLIENT));
    assert_eq!(s.mp.token_hits(), 0);
}

#[tokio::test]
async fn every_check_writes_a_record_and_none_holds_a_token() {
    let mut s = setup(Opts::default()).await;
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for req in [
        get(&register(CLIENT), &[KARI]),
        get(
            &register(OTHER),
            &[KARI, ("x-vakt-system-user", "tk-regnskap")],
        ),
        get(&register(CLIENT), &[]),
        get("/nowhere", &[KARI]),
        post_instance(CLIENT, &[KARI], 0),
        post_instance(CLIENT, &[KARI], 3),
    ] {
        let r = s.ask(req).await;
        if let Some(t) = ok(&r).and_then(bearer) {
            tokens.push(t.to_owned());
        }
        ids.push(decision_id(&r));
    }
    assert_eq!(tokens.len(), 2);
    let recs = s.records();
    assert_eq!(recs.len(), ids.len());
    for (rec, id) in recs.iter().zip(&ids) {
        assert_eq!(rec["decision_id"], *id);
        assert_eq!(rec["call"], "envoy_check");
        assert!(rec["envoy"]["host"].is_string(), "{rec}");
    }
    let text = std::fs::read_to_string(&s.log).unwrap();
    for t in &tokens {
        assert!(!text.contains(t.as_str()));
    }
}

#[test]
fn check_s_span_is_named_for_envoy_s_service() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (receiver, url) = rt.block_on(crate::common::otlp::traces_and_metrics::start());
    let s =
        crate::common::Spawned::start(&["--otlp-endpoint", &url, "--decision-log", "off"], false);
    // No routes configured: denied, and traced all the same.
    let r = rt.block_on(async {
        let channel = Channel::from_shared(format!("http://{}", s.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        AuthorizationClient::new(channel)
            .check(get(&register(CLIENT), &[KARI]))
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(denied_for(&r), "vakt:envoy-not-configured");
    let name = "envoy.service.auth.v3.Authorization/Check";
    rt.block_on(crate::common::eventually(
        Duration::from_secs(15),
        "Check's span at the receiver",
        || {
            receiver
                .spans
                .lock()
                .unwrap()
                .iter()
                .any(|sp| sp.name == name)
        },
    ));
    let span = receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .find(|sp| sp.name == name)
        .cloned()
        .unwrap();
    let attr = |k: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(
        attr("rpc.service"),
        Some(Any::StringValue(
            "envoy.service.auth.v3.Authorization".into()
        ))
    );
    assert_eq!(attr("rpc.method"), Some(Any::StringValue("Check".into())));
    assert_eq!(attr("rpc.grpc.status_code"), Some(Any::IntValue(0)));
    s.stop();
}
