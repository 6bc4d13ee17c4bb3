//! Binding decisions through the real server: `AuthorizeWithToken` hands out the
//! decided system user's Maskinporten token on ALLOW only, records its `jti` and
//! expiry (never the token), fails closed when Maskinporten is down or refuses;
//! `VerifyToken` accepts only tokens Maskinporten signed that this sidecar
//! handed out. Maskinporten is the stand-in in tests/it/common/maskinporten.rs.

use crate::common;
use common::maskinporten::*;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::Code;
use vakt::decision_log::{DecisionLog, LogOptions, Writers};
use vakt::maskinporten::{Maskinporten, Scope};
use vakt::proto::{
    AuthorizeWithTokenRequest, AuthorizeWithTokenResponse, Decision, VerifyTokenRequest,
    VerifyTokenResponse,
};
use vakt::server::{Binding, Vakt};

/// Tall og Kontroll AS, owner of the agent system users `tk-*`.
const TK_ORG: &str = "310001015";
/// Nordlys Maskin AS, owner of the standard system user `nm-egen`.
const NORDLYS: &str = "310005053";
const BAKERI: &str = "310015156";
const FJELLSPORT: &str = "310017175";
const KAFFEBRENNERIET: &str = "310019194";
/// Not a client of `tk-regnskap`.
const LYSVERKET: &str = "310024244";

/// A binding sidecar on the example world, its Maskinporten stand-in, and its
/// durable decision log.
struct Binds {
    mp: StandIn,
    server: TestServer,
    log: PathBuf,
    _writers: Writers,
    _dir: tempfile::TempDir,
}

/// The stand-in knows `tk-regnskap` (by its owner and externalRef, with the
/// same id as the example world's); the others a test adds. Scopes allowed:
/// both for the accounting package, one for tax.
async fn binds() -> Binds {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    mp.add_fixture(
        TK_ORG,
        Some("tk-regnskap"),
        "tk-regnskap",
        Some("310001015_regnskapsys"),
    );
    let mut binding = Binding::new(Maskinporten::new(mp.config(dir.path())).unwrap());
    binding
        .scopes
        .insert(REGNSKAP.into(), scopes(&[SCOPE, SCOPE_2]));
    binding.scopes.insert(SKATT.into(), scopes(&[SCOPE]));
    let log = dir.path().join("decisions.jsonl");
    let specs = vec![format!("file:{}", log.display()).parse().unwrap()];
    let (decision_log, writers) = DecisionLog::open(&specs, &LogOptions::default()).unwrap();
    let vakt = Vakt::new(default_snapshot(), decision_log).with_binding(binding);
    let server = start_vakt(Arc::new(vakt)).await;
    Binds {
        mp,
        server,
        log,
        _writers: writers,
        _dir: dir,
    }
}

fn scopes(s: &[&str]) -> Vec<Scope> {
    s.iter().map(|s| Scope::parse(s).unwrap()).collect()
}

fn ask(
    employee: &str,
    su: &str,
    client: &str,
    package: &str,
    s: &[&str],
) -> AuthorizeWithTokenRequest {
    AuthorizeWithTokenRequest {
        request: Some(request(employee, su, client, package)),
        scopes: s.iter().map(|s| s.to_string()).collect(),
    }
}

impl Binds {
    async fn token(
        &mut self,
        r: AuthorizeWithTokenRequest,
    ) -> Result<AuthorizeWithTokenResponse, tonic::Status> {
        self.server
            .client
            .authorize_with_token(r)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn verify(
        &mut self,
        token: &str,
        decision_id: &str,
        su: &str,
    ) -> Result<VerifyTokenResponse, tonic::Status> {
        self.server
            .client
            .verify_token(VerifyTokenRequest {
                access_token: token.into(),
                decision_id: decision_id.into(),
                system_user_id: su.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The decision log's records, in order (durable: each is on disk before
    /// its call is answered).
    fn records(&self) -> Vec<Value> {
        read_records(&self.log)
    }

    fn record(&self, decision_id: &str) -> Value {
        self.records()
            .into_iter()
            .find(|r| r["decision_id"] == decision_id)
            .unwrap_or_else(|| panic!("no record of {decision_id}"))
    }
}

fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The token's claims, read without checking (the stand-in checks).
fn claims(token: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token).unwrap()
}

#[track_caller]
fn assert_no_token(r: &AuthorizeWithTokenResponse) {
    assert!(r.access_token.is_empty(), "{r:?}");
    assert_eq!(r.expires_at_unix, 0);
    assert!(r.token_type.is_empty());
    assert!(r.scopes.is_empty());
}

#[track_caller]
fn assert_code(
    r: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    says: &[&str],
) -> String {
    let s = r.expect_err("expected an error");
    assert_eq!(s.code(), code, "{s:?}");
    for w in says {
        assert!(
            s.message().contains(w),
            "{:?} does not say {w:?}",
            s.message()
        );
    }
    s.message().to_owned()
}

#[tokio::test]
async fn an_allow_hands_out_the_owners_token_for_the_decided_system_user_recorded_by_jti() {
    let mut b = binds().await;
    let r = b
        .token(ask("kari", "tk-regnskap", BAKERI, REGNSKAP, &[SCOPE]))
        .await
        .unwrap();
    assert_eq!(r.decision(), Decision::Allow, "{r:?}");
    assert_eq!(r.token_type, "Bearer");
    assert_eq!(r.scopes, [SCOPE]);
    let left = r.expires_at_unix - now();
    assert!((100..=121).contains(&left), "{left}");
    // Altinn's stand-in accepts it, and it is for tk-regnskap...
    let seen = b.mp.altinn_accepts(&r.access_token).unwrap();
    let details = &seen["authorization_details"][0];
    assert_eq!(details["systemuser_id"], json!(["tk-regnskap"]));
    // ...an agent, so the token is its owner's and names no client.
    assert_eq!(details["systemuser_org"]["ID"], format!("0192:{TK_ORG}"));
    assert!(!seen.to_string().contains(BAKERI), "{seen}");
    // Asked for the owner and the system user's externalRef.
    let (_, grant) = b.mp.last_grant().unwrap();
    assert_eq!(
        grant["authorization_details"][0]["systemuser_org"]["ID"],
        format!("0192:{TK_ORG}")
    );
    assert_eq!(
        grant["authorization_details"][0]["externalRef"],
        "tk-regnskap"
    );
    assert_eq!(b.mp.token_hits(), 1);

    // A second ALLOW, for another client of the same agent, is served from the
    // cache: the same token, no request to Maskinporten.
    let again = b
        .token(ask("kari", "tk-regnskap", FJELLSPORT, REGNSKAP, &[SCOPE]))
        .await
        .unwrap();
    assert_eq!(again.decision(), Decision::Allow);
    assert_eq!(again.access_token, r.access_token);
    assert_ne!(again.decision_id, r.decision_id);
    assert_eq!(b.mp.token_hits(), 1);

    // The records name the token by jti and expiry, never the token itself.
    let jti = claims(&r.access_token)["jti"].as_str().unwrap().to_owned();
    for (id, client) in [(&r.decision_id, BAKERI), (&again.decision_id, FJELLSPORT)] {
        let rec = b.record(id);
        assert_eq!(rec["call"], "authorize_with_token");
        assert_eq!(rec["decision"], "allow");
        assert_eq!(rec["client_org_number"], client);
        assert_eq!(rec["system_user_owner"], TK_ORG);
        assert_eq!(rec["token"]["kind"], "maskinporten");
        assert_eq!(rec["token"]["jti"], jti.as_str());
        assert_eq!(rec["token"]["scope"], SCOPE);
        let expires =
            humantime::parse_rfc3339(rec["token"]["expires_at"].as_str().unwrap()).unwrap();
        let expires = expires.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        assert_eq!(expires, r.expires_at_unix);
    }
    let text = std::fs::read_to_string(&b.log).unwrap();
    let signature = r.access_token.rsplit('.').next().unwrap();
    assert!(!text.contains(&r.access_token));
    assert!(
        !text.contains(signature),
        "the token's signature is in the log"
    );
}

#[tokio::test]
async fn a_standard_system_users_token_is_for_its_owner() {
    let mut b = binds().await;
    b.mp.add_fixture(NORDLYS, Some("nm-egen"), "nm-egen", None);
    let r = b
        .token(ask("siri", "nm-egen", NORDLYS, SKATT, &[SCOPE]))
        .await
        .unwrap();
    assert_eq!(r.decision(), Decision::Allow, "{r:?}");
    let seen = b.mp.altinn_accepts(&r.access_token).unwrap();
    assert_eq!(
        seen["authorization_details"][0]["systemuser_id"],
        json!(["nm-egen"])
    );
    assert_eq!(
        seen["authorization_details"][0]["systemuser_org"]["ID"],
        format!("0192:{NORDLYS}")
    );
}

#[tokio::test]
async fn a_deny_hands_out_no_token_and_asks_maskinporten_nothing() {
    let mut b = binds().await;
    // Allowed but for the client: Lysverket is not tk-regnskap's client.
    let r = b
        .token(ask("kari", "tk-regnskap", LYSVERKET, REGNSKAP, &[SCOPE]))
        .await
        .unwrap();
    assert_eq!(r.decision(), Decision::Deny, "{r:?}");
    assert_eq!(r.reasons[0].policy_id, "client-not-linked");
    assert_no_token(&r);
    assert_eq!(b.mp.token_hits(), 0);
    let rec = b.record(&r.decision_id);
    assert_eq!(rec["call"], "authorize_with_token");
    assert_eq!(rec["decision"], "deny");
    assert!(rec.get("token").is_none_or(Value::is_null), "{rec}");
    // The same request for a client it has is allowed, and asks once.
    let r = b
        .token(ask("kari", "tk-regnskap", BAKERI, REGNSKAP, &[SCOPE]))
        .await
        .unwrap();
    assert_eq!(r.decision(), Decision::Allow);
    assert_eq!(b.mp.token_hits(), 1);
}

#[tokio::test]
async fn bad_requests_and_scopes_are_refused_before_deciding() {
    let mut b = binds().await;
    let missing = AuthorizeWithTokenRequest {
        request: None,
        scopes: vec![SCOPE.into()],
    };
    assert_code(b.token(missing).await, Code::InvalidArgument, &["request"]);
    let mut bad_client = ask("kari", "tk-regnskap", "123", REGNSKAP, &[SCOPE]);
    assert_code(
        b.token(bad_client.clone()).await,
        Code::InvalidArgument,
        &["request.client_org_number"],
    );
    bad_client.request.as_mut().unwrap().client_org_number = BAKERI.into();
    bad_client.request.as_mut().unwrap().access_package = "urn:nope".into();
    assert_code(
        b.token(bad_client).await,
        Code::InvalidArgument,
        &["request.access_package"],
    );
    assert_code(
        b.token(ask("kari", "tk-regnskap", BAKERI, REGNSKAP, &[]))
            .await,
        Code::InvalidArgument,
        &["scopes"],
    );
    let many: Vec<String> = (0..33).map(|i| format!("altinn:s{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_code(
        b.token(ask("kari", "tk-regnskap", BAKERI, REGNSKAP, &many))
            .await,
        Code::InvalidArgument,
        &["scopes", "33"],
    );
    assert_code(
        b.token(ask(
            "kari",
            "tk-regnskap",
            BAKERI,
            REGNSKAP,
            &[SCOPE, "a b"],
        ))
        .await,
        Code::InvalidArgument,
        &["scopes[1]"],
    );
    // Allowed scopes are per package: SCOPE_2 is the accounting package's, not tax's.
    b.mp.add_fixture(NORDLYS, Some("nm-egen"), "nm-egen", None);
    assert_code(
        b.token(ask("siri", "nm-egen", NORDLYS, SKATT, &[SCOPE, SCOPE_2]))
            .await,
        Code::PermissionDenied,
        &[SCOPE_2, SKATT],
    );
    // A package with no scopes configured gets no token at all.
    assert_code(
        b.token(ask("siri", "nm-egen", NORDLYS, MVA, &[SCOPE]))
            .await,
        Code::PermissionDenied,
        &[SCOPE, MVA],
    );
    assert_eq!(b.mp.token_hits(), 0);
    assert!(b.records().is_empty(), "nothing was decided");
    // The same with the allowed scope: allowed, with a token.
    let r = b
        .token(ask("siri", "nm-egen", NORDLYS, SKATT, &[SCOPE]))
        .await
        .unwrap();
    assert_eq!(r.decision(), Decision::Allow);
    assert!(!r.access_token.is_empty());
}

#[tokio::test]
async fn without_maskinporten_the_binding_calls_are_failed_preconditions() {
    let mut s = start(default_snapshot()).await;
    let r = s
        .client
        .authorize_with_token(ask("kari", "tk-regnskap", BAKERI, REGNSKAP, &[SCOPE]))
        .await;
    assert_code(r, Code::FailedPrecondition, &["[maskinporten]"]);
    let r = s
        .client
        .verify_token(VerifyTokenRequest {
            access_token: "eyJ.x.y".into(),
            ..Default::default()
        })
        .await;
    assert_code(r, Code::FailedPrecondition, &["[maskinporten]"]);
}

#[tokio::test]
async fn maskinporten_down_is_unavailable_with_a_deny_record_and_never_an_allow() {
    let mut b = binds().await;
    for mode in [Mode::Refuse, Mode::Unavailable] {
        b.mp.set_mode(mode);
        let message = assert_code(
            b.token(ask("kari", "tk-regnskap", BAKERI, REGNSKAP, &[SCOPE]))
                .await,
            Code::Unavailable,
            &["Maskinporten"],
        );
        // The record of the attempt: the decision id is in the status.
        let rec = b.records().pop().unwrap();
        let id = rec["decision_id"].as_str().unwrap();
        assert!(message.contains(id), "{message}");
        assert_eq!(rec["call"], "authorize_with_token");
        assert_eq!(rec["decision"], "deny");
        assert_eq!(rec["reasons"][0]["policy_id"], "vakt:token-unavailable");
        assert!(rec.get("token").is_none_or(Value::is_null), "{rec}");
    }
    // A token cannot be checked without Maskinporten's keys either.
    let presented =
        b.mp.sign_token(&json!({"iss": b.mp.issuer, "exp": now() + 60, "jti": "j"}));
    assert_code(
        b.verify(&presented, "", "").await,
        Code::Unavailable,
        &["keys"],
    );
    // Back up: the same request is allowed with a token.
    b.mp.set_mode(Mode::Up);
    let r = b
        .token(ask("kari", "tk-regnskap", BAKERI, REGNSKAP, &[SCOPE]))
        .await
        .unwrap();
    assert_eq!(r.decision(), Decision::Allow);
    assert!(!r.access_token.is_empty());
    assert_eq!(b.records().len(), 3);
}

#[tokio::test]
async fn a_refusal_carries_maskinporten_s_error_and_mp_code() {
    let mut b = binds().await;
    // nm-egen is allowed, but the stand-in has no system user for Nordlys.
    let message = assert_code(
        b.token(ask("siri", "nm-egen", NORDLYS, SKATT, &[SCOPE]))
            .await,
        Code::FailedPrecondition,
        &["invalid_altinn_customer_configuration", "MP-303"],
    );
    let rec = b.records().pop().unwrap();
    assert!(message.contains(rec["decision_id"].as_str().unwrap()));
    assert_eq!(rec["decision"], "deny");
    assert_eq!(rec["reasons"][0]["policy_id"], "vakt:token-refused");
    assert!(
        rec["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("MP-303"),
        "{rec}"
    );
}

#[tokio::test]
async fn a_token_for_another_system_user_than_decided_is_not_handed_out() {
    let mut b = binds().await;
    // Altinn's system user for (owner, externalRef tk-regnskap-syk) is not the
    // one the data names.
    b.mp.add_fixture(TK_ORG, Some("tk-regnskap-syk"), "someone-else", None);
    assert_code(
        b.token(ask(
            "kari",
            "tk-regnskap-syk",
            KAFFEBRENNERIET,
            REGNSKAP,
            &[SCOPE],
        ))
        .await,
        Code::Unavailable,
        &["someone-else", "tk-regnskap-syk"],
    );
    let rec = b.records().pop().unwrap();
    assert_eq!(rec["decision"], "deny");
    assert_eq!(rec["reasons"][0]["policy_id"], "vakt:token-unavailable");
    assert_eq!(
        b.mp.token_hits(),
        1,
        "it was asked, and its answer was not used"
    );
}

#[tokio::test]
async fn verify_token_accepts_only_tokens_this_sidecar_handed_out_for_the_decision() {
    let mut b = binds().await;
    b.mp.add_fixture(NORDLYS, Some("nm-egen"), "nm-egen", None);
    let first = b
        .token(ask("kari", "tk-regnskap", BAKERI, REGNSKAP, &[SCOPE]))
        .await
        .unwrap();
    let second = b
        .token(ask("kari", "tk-regnskap", FJELLSPORT, REGNSKAP, &[SCOPE]))
        .await
        .unwrap();
    let other = b
        .token(ask("siri", "nm-egen", NORDLYS, SKATT, &[SCOPE]))
        .await
        .unwrap();
    let token = &first.access_token;
    let jti = claims(token)["jti"].as_str().unwrap().to_owned();

    // With its decision id: valid, and named.
    let v = b
        .verify(token, &first.decision_id, "tk-regnskap")
        .await
        .unwrap();
    assert!(v.valid, "{v:?}");
    assert!(v.reason.is_empty());
    assert_eq!(v.system_user_ids, ["tk-regnskap"]);
    assert_eq!(v.system_user_org, TK_ORG);
    assert_eq!(v.jti, jti);
    assert_eq!(v.expires_at_unix, first.expires_at_unix);
    assert_eq!(v.decision_id, first.decision_id);
    assert_eq!(v.employee_id, "kari");
    assert_eq!(v.client_org_number, BAKERI);
    assert_eq!(v.access_package, REGNSKAP);
    // The cached token was handed to the second decision too.
    let v = b.verify(token, &second.decision_id, "").await.unwrap();
    assert!(v.valid, "{v:?}");
    assert_eq!(v.client_org_number, FJELLSPORT);
    // Without a decision id: the latest decision that handed it out.
    let v = b.verify(token, "", "").await.unwrap();
    assert!(v.valid, "{v:?}");
    assert_eq!(v.decision_id, second.decision_id);

    // For another system user.
    let v = b
        .verify(token, &first.decision_id, "nm-egen")
        .await
        .unwrap();
    assert!(!v.valid);
    assert!(v.reason.contains("nm-egen"), "{v:?}");
    assert!(v.decision_id.is_empty());
    // A decision that handed out another token, a deny, an unknown id.
    let v = b.verify(token, &other.decision_id, "").await.unwrap();
    assert!(!v.valid);
    assert!(v.reason.contains("another token"), "{v:?}");
    let v = b
        .verify(&other.access_token, &other.decision_id, "nm-egen")
        .await
        .unwrap();
    assert!(v.valid, "{v:?}");
    let deny = b
        .token(ask("kari", "tk-regnskap", LYSVERKET, REGNSKAP, &[SCOPE]))
        .await
        .unwrap();
    for id in [
        deny.decision_id.as_str(),
        "0193c7a2-0000-7000-8000-000000000000",
    ] {
        let v = b.verify(token, id, "").await.unwrap();
        assert!(!v.valid, "{id}");
        assert!(v.reason.contains(id), "{v:?}");
    }

    // Forged: the same claims and key id, signed with another key.
    let header = jsonwebtoken::decode_header(token).unwrap();
    let forged = jsonwebtoken::encode(&header, &claims(token), &key(2).encoding).unwrap();
    let v = b.verify(&forged, &first.decision_id, "").await.unwrap();
    assert!(!v.valid);
    assert!(v.reason.contains("signature"), "{v:?}");
    // Expired: signed by Maskinporten, but its time is over.
    let mut old = claims(token);
    old["iat"] = json!(now() - 600);
    old["exp"] = json!(now() - 300);
    let old = b.mp.sign_token(&old);
    let v = b.verify(&old, "", "").await.unwrap();
    assert!(!v.valid);
    assert!(v.reason.contains("expired"), "{v:?}");
    // Maskinporten's, unexpired, but not handed out by this sidecar.
    let mut stray = claims(token);
    stray["jti"] = json!("not-ours");
    let stray = b.mp.sign_token(&stray);
    let v = b.verify(&stray, "", "tk-regnskap").await.unwrap();
    assert!(!v.valid);
    assert_eq!(v.jti, "not-ours", "the token's own claims are reported");
    assert!(v.reason.contains("handed out no such token"), "{v:?}");

    // Bounded input.
    assert_code(
        b.verify("", "", "").await,
        Code::InvalidArgument,
        &["access_token"],
    );
    let huge = "a".repeat(16 * 1024 + 1);
    assert_code(
        b.verify(&huge, "", "").await,
        Code::InvalidArgument,
        &["access_token"],
    );
    assert_code(
        b.verify(token, &"d".repeat(200), "").await,
        Code::InvalidArgument,
        &["decision_id"],
    );
}

#[tokio::test]
async fn a_decision_vouches_for_its_token_only_within_the_tokens_lifetime() {
    let mut b = binds().await;
    b.mp.set_token_lifetime(3);
    let r = b
        .token(ask("kari", "tk-regnskap", BAKERI, REGNSKAP, &[SCOPE]))
        .await
        .unwrap();
    assert_eq!(r.decision(), Decision::Allow, "{r:?}");
    let v = b.verify(&r.access_token, &r.decision_id, "").await.unwrap();
    assert!(v.valid, "{v:?}");
    // Past its expiry, but within the leeway the signature check allows: the
    // decision no longer vouches for it.
    let past = UNIX_EPOCH + std::time::Duration::from_secs(r.expires_at_unix as u64 + 2);
    if let Ok(wait) = past.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let v = b.verify(&r.access_token, &r.decision_id, "").await.unwrap();
    assert!(!v.valid, "{v:?}");
    assert!(v.reason.contains(&r.decision_id), "{v:?}");
    let v = b.verify(&r.access_token, "", "").await.unwrap();
    assert!(!v.valid, "{v:?}");
}
