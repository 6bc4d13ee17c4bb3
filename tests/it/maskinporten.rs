//! The Maskinporten client against the stand-in (tests/it/common/maskinporten.rs),
//! which enforces the real JWT-grant rules: tokens, refusals with MP codes,
//! outages, the cache, vendor tokens, token checks and key-file rules; and
//! Altinn's token exchange against the Altinn stand-in (tests/it/common/altinn.rs).

use crate::common;
use common::altinn::Altinn;
use common::maskinporten::*;
use serde_json::{json, Value};
use std::time::Duration;
use vakt::maskinporten::{
    KeySource, Maskinporten, MaskinportenConfig, OrgNumber, Scope, TokenError, VerifyError,
};

fn org(s: &str) -> OrgNumber {
    OrgNumber::parse(s).unwrap()
}

fn scopes(s: &[&str]) -> Vec<Scope> {
    s.iter().map(|s| Scope::parse(s).unwrap()).collect()
}

fn client(config: MaskinportenConfig) -> Maskinporten {
    Maskinporten::new(config).expect("config is good")
}

fn refused_code(r: Result<vakt::maskinporten::Token, TokenError>) -> (String, Option<String>) {
    match r {
        Err(TokenError::Refused { error, mp_code, .. }) => (error, mp_code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_system_user_token_is_fetched_with_a_grant_the_stand_in_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let c = client(mp.config(dir.path()));
    let t = c
        .system_user_token(&org(CUSTOMER_ORG), &scopes(&[SCOPE]), None)
        .await
        .unwrap();
    assert_eq!(t.system_user_ids, [CUSTOMER_SYSTEM_USER]);
    assert_eq!(t.system_user_org.as_deref(), Some(CUSTOMER_ORG));
    assert_eq!(t.scope, SCOPE);
    assert!(t.jti.is_some());
    let left = t.remaining().as_secs();
    assert!((100..=120).contains(&left), "{left}");
    // The grant as the stand-in saw it.
    let (header, claims) = mp.last_grant().unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], CLIENT_KID);
    assert!(header.get("x5c").is_none_or(Value::is_null));
    assert_eq!(claims["aud"], mp.issuer.as_str());
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["scope"], SCOPE);
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=120).contains(&lifetime), "{lifetime}");
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    assert_eq!(
        claims["authorization_details"],
        json!([{"type": "urn:altinn:systemuser",
                "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{CUSTOMER_ORG}")}}])
    );
    // Altinn's stand-in takes it.
    let seen = mp.altinn_accepts(t.access_token.expose()).unwrap();
    assert_eq!(
        seen["authorization_details"][0]["systemuser_id"][0],
        CUSTOMER_SYSTEM_USER
    );

    // externalRef picks the system user; one without system_id is read too.
    let t = c
        .system_user_token(&org(AGENCY_ORG), &scopes(&[SCOPE]), Some("team-b"))
        .await
        .unwrap();
    assert_eq!(t.system_user_ids, [AGENCY_SYSTEM_USER_B]);
    assert_eq!(
        mp.last_grant().unwrap().1["authorization_details"][0]["externalRef"],
        "team-b"
    );
}

#[tokio::test]
async fn the_token_endpoint_is_found_through_the_metadata_or_taken_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let mut config = mp.config(dir.path());
    config.token_endpoint = Some(format!("{}token", mp.issuer));
    let c = client(config);
    c.vendor_token(&scopes(&[VENDOR_SCOPE])).await.unwrap();
    assert_eq!(mp.token_hits(), 1);
}

#[tokio::test]
async fn a_vendor_token_has_no_authorization_details() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let c = client(mp.config(dir.path()));
    let t = c.vendor_token(&scopes(&[VENDOR_SCOPE])).await.unwrap();
    let (_, claims) = mp.last_grant().unwrap();
    assert!(claims.get("authorization_details").is_none(), "{claims}");
    assert!(t.system_user_ids.is_empty());
    let seen = mp.altinn_accepts(t.access_token.expose()).unwrap();
    assert!(seen.get("authorization_details").is_none());
    assert_eq!(seen["consumer"]["ID"], format!("0192:{VENDOR_ORG}"));
}

#[tokio::test]
async fn each_refusal_comes_back_as_refused_with_its_mp_code() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let good = client(mp.config(dir.path()));
    // The same client gets a token for a customer with a system user...
    good.system_user_token(&org(CUSTOMER_ORG), &scopes(&[SCOPE]), None)
        .await
        .unwrap();
    // ...and is refused for an org without one, or an unknown externalRef.
    assert_eq!(
        refused_code(
            good.system_user_token(&org(STRANGER_ORG), &scopes(&[SCOPE]), None)
                .await
        ),
        (
            "invalid_altinn_customer_configuration".into(),
            Some("MP-303".into())
        )
    );
    assert_eq!(
        refused_code(
            good.system_user_token(&org(AGENCY_ORG), &scopes(&[SCOPE]), Some("team-z"))
                .await
        )
        .1,
        Some("MP-303".into())
    );
    // A scope the client does not have.
    assert_eq!(
        refused_code(
            good.system_user_token(&org(CUSTOMER_ORG), &scopes(&["altinn:other"]), None)
                .await
        ),
        ("invalid_scope".into(), Some("MP-202".into()))
    );
    // A kid that is not registered.
    let mut config = mp.config(dir.path());
    config.key = KeySource::Rsa {
        key_file: write_private(dir.path(), "client2.key", &key(1).pkcs8_pem),
        kid: "not-registered".into(),
    };
    assert_eq!(
        refused_code(client(config).vendor_token(&scopes(&[VENDOR_SCOPE])).await).1,
        Some("MP-102".into())
    );
    // The registered kid, signed with another key.
    let mut config = mp.config(dir.path());
    config.key = KeySource::Rsa {
        key_file: write_private(dir.path(), "stranger.key", &key(2).pkcs8_pem),
        kid: CLIENT_KID.into(),
    };
    assert_eq!(
        refused_code(client(config).vendor_token(&scopes(&[VENDOR_SCOPE])).await).1,
        Some("MP-103".into())
    );
    // Another audience than the issuer.
    let mut config = mp.config(dir.path());
    config.audience = Some("https://maskinporten.no/".into());
    assert_eq!(
        refused_code(client(config).vendor_token(&scopes(&[VENDOR_SCOPE])).await).1,
        Some("MP-104".into())
    );
    // A client id Maskinporten does not know.
    let mut config = mp.config(dir.path());
    config.client_id = "someone-else".into();
    assert_eq!(
        refused_code(client(config).vendor_token(&scopes(&[VENDOR_SCOPE])).await).1,
        Some("MP-105".into())
    );
    // RS384 and RS512 are accepted as well.
    for alg in [
        vakt::maskinporten::GrantAlgorithm::Rs384,
        vakt::maskinporten::GrantAlgorithm::Rs512,
    ] {
        let mut config = mp.config(dir.path());
        config.algorithm = alg;
        client(config)
            .vendor_token(&scopes(&[VENDOR_SCOPE]))
            .await
            .unwrap();
    }
    // No scope is refused before anything is sent.
    let hits = mp.token_hits();
    assert!(matches!(
        good.vendor_token(&[]).await,
        Err(TokenError::InvalidRequest { .. })
    ));
    assert_eq!(mp.token_hits(), hits);
}

/// POSTs a hand-made grant to the stand-in: the rules Vakt's own grants never
/// break are still enforced there.
async fn post_grant(issuer: &str, assertion: String) -> (u16, Value) {
    let url = format!("{issuer}token");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(&url)
            .send_form([
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .unwrap();
        (
            r.status().as_u16(),
            r.body_mut().read_json::<Value>().unwrap(),
        )
    })
    .await
    .unwrap()
}

fn grant(issuer: &str, iat_offset: i64, lifetime: i64, scope: &str, jti: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({"aud": issuer, "iss": CLIENT_ID, "iat": now + iat_offset, "exp": now + iat_offset + lifetime,
           "jti": jti, "scope": scope})
}

fn sign(alg: jsonwebtoken::Algorithm, key: &jsonwebtoken::EncodingKey, claims: &Value) -> String {
    let mut h = jsonwebtoken::Header::new(alg);
    h.kid = Some(CLIENT_KID.into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

#[tokio::test]
async fn the_stand_in_refuses_es256_replays_skew_long_grants_and_missing_scope() {
    use jsonwebtoken::Algorithm::{ES256, RS256};
    let mp = StandIn::start().await;
    let rsa = &key(1).encoding;
    let mp_code = |v: &Value| v["error_description"].as_str().unwrap().to_owned();
    // A good grant passes once; the same grant again is a replay.
    let g = sign(RS256, rsa, &grant(&mp.issuer, 0, 60, SCOPE, "jti-1"));
    assert_eq!(post_grant(&mp.issuer, g.clone()).await.0, 200);
    let (status, body) = post_grant(&mp.issuer, g).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(mp_code(&body).contains("MP-012"), "{body}");
    // ES256, even from a registered kid.
    let ec = rcgen::KeyPair::generate().unwrap();
    let ec = jsonwebtoken::EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
    let (status, body) = post_grant(
        &mp.issuer,
        sign(ES256, &ec, &grant(&mp.issuer, 0, 60, SCOPE, "jti-2")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(mp_code(&body).contains("MP-101"), "{body}");
    // iat a minute off; a 300 s grant; no scope.
    for (claims, code) in [
        (grant(&mp.issuer, -60, 60, SCOPE, "jti-3"), "MP-106"),
        (grant(&mp.issuer, 0, 300, SCOPE, "jti-4"), "MP-107"),
        (grant(&mp.issuer, 0, 60, "", "jti-5"), "MP-201"),
    ] {
        let (status, body) = post_grant(&mp.issuer, sign(RS256, rsa, &claims)).await;
        assert_eq!(status, 400, "{body}");
        assert!(mp_code(&body).contains(code), "{code}: {body}");
    }
}

#[tokio::test]
async fn an_outage_fails_closed_as_unavailable_and_recovery_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let c = client(mp.config(dir.path()));
    let (o, s) = (org(CUSTOMER_ORG), scopes(&[SCOPE]));
    let ask = || c.system_user_token(&o, &s, None);
    mp.set_mode(Mode::Refuse);
    assert!(matches!(ask().await, Err(TokenError::Unavailable { .. })));
    mp.set_mode(Mode::Unavailable);
    match ask().await {
        Err(TokenError::Unavailable { reason }) => assert!(reason.contains("503"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A token cannot be checked while the JWKS is out of reach: unavailable,
    // not a forgery; once back, the same token checks out.
    let token = mp.sign_token(&json!({"iss": mp.issuer, "exp": 4_000_000_000u64, "scope": SCOPE}));
    assert!(matches!(
        c.verify_token(&token).await,
        Err(VerifyError::Unavailable { .. })
    ));
    mp.set_mode(Mode::Up);
    ask().await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await; // jwks_min_refresh
    c.verify_token(&token).await.unwrap();
    // Gone altogether: connection refused.
    let issuer = mp.issuer.clone();
    drop(mp);
    let mut config = MaskinportenConfig::new(
        issuer,
        CLIENT_ID,
        KeySource::Rsa {
            key_file: write_private(dir.path(), "c.key", &key(1).pkcs8_pem),
            kid: CLIENT_KID.into(),
        },
    );
    config.connect_timeout = Duration::from_secs(1);
    let gone = client(config);
    assert!(matches!(
        gone.vendor_token(&scopes(&[VENDOR_SCOPE])).await,
        Err(TokenError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn fifty_concurrent_callers_share_one_token_request() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    mp.set_token_delay(Duration::from_millis(300));
    let c = client(mp.config(dir.path()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let c = c.clone();
        // Scopes in either order and doubled: one cache entry.
        let s = if i % 2 == 0 {
            vec![SCOPE, SCOPE_2]
        } else {
            vec![SCOPE_2, SCOPE, SCOPE]
        };
        tasks.spawn(async move {
            c.system_user_token(&org(CUSTOMER_ORG), &scopes(&s), None)
                .await
                .map(|t| t.jti)
        });
    }
    let jtis: std::collections::HashSet<_> = tasks
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(jtis.len(), 1, "{jtis:?}");
    assert_eq!(mp.token_hits(), 1);
    assert_eq!(c.token_requests(), 1);
    // Another system user is another entry.
    c.system_user_token(&org(AGENCY_ORG), &scopes(&[SCOPE]), Some("team-a"))
        .await
        .unwrap();
    assert_eq!(mp.token_hits(), 2);
}

#[tokio::test]
async fn a_token_is_refreshed_before_it_expires_and_an_expired_one_is_never_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    mp.set_token_lifetime(22);
    let mut config = mp.config(dir.path());
    config.refresh_before = Duration::from_secs(20);
    let c = client(config);
    let (o, s) = (org(CUSTOMER_ORG), scopes(&[SCOPE]));
    let ask = || c.system_user_token(&o, &s, None);
    let first = ask().await.unwrap();
    // More than 20 s left: from the cache.
    assert_eq!(ask().await.unwrap().jti, first.jti);
    assert_eq!(mp.token_hits(), 1);
    // Once less than 20 s is left, a new one, while the first still lives.
    common::eventually_some(
        Duration::from_secs(5),
        "the first token has under 20 s left",
        || async { (first.remaining() < Duration::from_secs(20)).then_some(()) },
    )
    .await;
    let second = ask().await.unwrap();
    assert_ne!(second.jti, first.jti);
    assert!(first.remaining() > Duration::ZERO);
    assert_eq!(mp.token_hits(), 2);

    // With no refresh margin, a token past its expiry is replaced.
    mp.set_token_lifetime(1);
    let mut config = mp.config(dir.path());
    config.refresh_before = Duration::ZERO;
    let c = client(config);
    let short = c.vendor_token(&scopes(&[VENDOR_SCOPE])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(short.remaining(), Duration::ZERO);
    let next = c.vendor_token(&scopes(&[VENDOR_SCOPE])).await.unwrap();
    assert_ne!(next.jti, short.jti);
    assert!(next.remaining() > Duration::ZERO);
}

#[tokio::test]
async fn the_cache_is_bounded_and_drops_the_oldest_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let mut config = mp.config(dir.path());
    config.cache_capacity = 2;
    let c = client(config);
    let s = scopes(&[SCOPE]);
    c.system_user_token(&org(CUSTOMER_ORG), &s, None)
        .await
        .unwrap();
    c.system_user_token(&org(AGENCY_ORG), &s, Some("team-a"))
        .await
        .unwrap();
    c.system_user_token(&org(CUSTOMER_ORG), &s, None)
        .await
        .unwrap();
    assert_eq!(mp.token_hits(), 2, "a hit while the cache has room");
    c.system_user_token(&org(AGENCY_ORG), &s, Some("team-b"))
        .await
        .unwrap();
    assert_eq!(c.cached_tokens(), 2);
    // The first entry went: asking for it fetches again.
    c.system_user_token(&org(CUSTOMER_ORG), &s, None)
        .await
        .unwrap();
    assert_eq!(mp.token_hits(), 4);
}

#[tokio::test]
async fn verify_token_accepts_the_stand_ins_tokens_and_refuses_forged_expired_and_foreign_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let c = client(mp.config(dir.path()));
    let t = c
        .system_user_token(&org(CUSTOMER_ORG), &scopes(&[SCOPE]), None)
        .await
        .unwrap();
    let v = c.verify_token(t.access_token.expose()).await.unwrap();
    assert!(v.is_for_system_user(CUSTOMER_SYSTEM_USER));
    assert!(!v.is_for_system_user(AGENCY_SYSTEM_USER_A));
    assert_eq!(v.system_user_org.as_deref(), Some(CUSTOMER_ORG));
    assert_eq!(v.consumer_org.as_deref(), Some(VENDOR_ORG));
    assert_eq!(v.jti, t.jti);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |iss: &str, exp: i64| {
        json!({"iss": iss, "exp": exp, "iat": now - 10, "jti": "x", "scope": SCOPE,
               "authorization_details": [{"type": "urn:altinn:systemuser", "systemuser_id": [AGENCY_SYSTEM_USER_A],
               "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{AGENCY_ORG}")}}]})
    };
    // The stand-in's own signature on good claims passes.
    assert!(c
        .verify_token(&mp.sign_token(&claims(&mp.issuer, now + 60)))
        .await
        .is_ok());
    assert_eq!(
        c.verify_token(&mp.sign_token(&claims(&mp.issuer, now - 60)))
            .await,
        Err(VerifyError::Expired)
    );
    assert!(matches!(
        c.verify_token(&mp.sign_token(&claims("https://evil.example/", now + 60))).await,
        Err(VerifyError::WrongIssuer { found }) if found == "https://evil.example/"
    ));
    // Signed with another key under the stand-in's kid.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = jsonwebtoken::decode_header(t.access_token.expose())
        .unwrap()
        .kid;
    let forged = jsonwebtoken::encode(&h, &claims(&mp.issuer, now + 60), &key(2).encoding).unwrap();
    assert_eq!(
        c.verify_token(&forged).await,
        Err(VerifyError::BadSignature)
    );
    // A real token whose claims were swapped for another system user's.
    let parts: Vec<&str> = t.access_token.expose().split('.').collect();
    let other = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(claims(&mp.issuer, now + 60).to_string())
    };
    let swapped = format!("{}.{other}.{}", parts[0], parts[2]);
    assert_eq!(
        c.verify_token(&swapped).await,
        Err(VerifyError::BadSignature)
    );
    // An unknown kid, an HMAC token, and not a JWT at all.
    h.kid = Some("unknown".into());
    let unknown =
        jsonwebtoken::encode(&h, &claims(&mp.issuer, now + 60), &key(0).encoding).unwrap();
    assert!(matches!(
        c.verify_token(&unknown).await,
        Err(VerifyError::UnknownKey { .. })
    ));
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(&mp.issuer, now + 60),
        &jsonwebtoken::EncodingKey::from_secret(b"guess").unwrap(),
    )
    .unwrap();
    assert!(matches!(
        c.verify_token(&hs).await,
        Err(VerifyError::Algorithm { .. })
    ));
    assert!(matches!(
        c.verify_token("not a token").await,
        Err(VerifyError::Malformed { .. })
    ));
}

#[tokio::test]
async fn https_with_an_extra_ca_works_and_without_it_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start_tls(dir.path()).await;
    assert!(mp.issuer.starts_with("https://"));
    let c = client(mp.config(dir.path()));
    let t = c
        .system_user_token(&org(CUSTOMER_ORG), &scopes(&[SCOPE]), None)
        .await
        .unwrap();
    assert!(c.verify_token(t.access_token.expose()).await.is_ok());
    let mut config = mp.config(dir.path());
    config.extra_ca_file = None;
    match client(config).vendor_token(&scopes(&[VENDOR_SCOPE])).await {
        Err(TokenError::Unavailable { reason }) => assert!(reason.contains("TLS"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_business_certificate_signs_with_x5c() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let leaf_for = |k: &RsaKey| {
        let kp =
            KeyPair::from_pkcs8_pem_and_sign_algo(&k.pkcs8_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        CertificateParams::new(vec!["vakt-test".to_owned()])
            .unwrap()
            .signed_by(&kp, &issuer)
            .unwrap()
    };
    let leaf = leaf_for(key(1));
    mp.register_client(
        "cert-client",
        VENDOR_ORG,
        ClientKey::Certificate(leaf.der().to_vec()),
        &[SCOPE],
    );
    let chain_file = dir.path().join("chain.pem");
    std::fs::write(&chain_file, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    let key_file = write_private(dir.path(), "cert.key", &key(1).pkcs8_pem);
    let mut config = mp.config(dir.path());
    config.client_id = "cert-client".into();
    config.key = KeySource::Certificate {
        chain_file: chain_file.clone(),
        key_file: key_file.clone(),
    };
    let c = client(config.clone());
    let t = c
        .system_user_token(&org(CUSTOMER_ORG), &scopes(&[SCOPE]), None)
        .await
        .unwrap();
    let (header, _) = mp.last_grant().unwrap();
    assert_eq!(header["x5c"].as_array().unwrap().len(), 2);
    assert!(header.get("kid").is_none_or(Value::is_null));
    assert_eq!(
        mp.altinn_accepts(t.access_token.expose()).unwrap()["client_amr"],
        "virksomhetssertifikat"
    );
    // A chain for another key is caught at start.
    let other = leaf_for(key(2));
    std::fs::write(&chain_file, other.pem()).unwrap();
    let e = config.check().unwrap_err();
    assert_eq!(e.problems[0].field, "key.chain_file", "{e}");
}

#[test]
fn a_key_file_others_or_a_group_can_reach_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = write_private(dir.path(), "k.pem", &key(1).pkcs8_pem);
    let config = MaskinportenConfig::new(
        TEST_ISSUER_FOR_TESTS,
        CLIENT_ID,
        KeySource::Rsa {
            key_file: path.clone(),
            kid: CLIENT_KID.into(),
        },
    );
    assert_eq!(config.check(), Ok(()));
    for mode in [0o644, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = config.check().unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].field, "key.key_file");
        assert!(e.problems[0].message.contains(&format!("{mode:o}")), "{e}");
    }
}

const TEST_ISSUER_FOR_TESTS: &str = vakt::maskinporten::TEST_ISSUER;

#[test]
fn check_reports_every_bad_field_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MaskinportenConfig::new(
        "ftp://maskinporten.no/",
        "",
        KeySource::Rsa {
            key_file: dir.path().join("missing.pem"),
            kid: "k".into(),
        },
    );
    config.token_endpoint = Some("http://maskinporten.no/token".into());
    config.assertion_lifetime = Duration::from_secs(300);
    config.cache_capacity = 0;
    let e = config.check().unwrap_err();
    let fields: Vec<&str> = e.problems.iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        [
            "issuer",
            "token_endpoint",
            "client_id",
            "assertion_lifetime",
            "cache_capacity",
            "key.key_file"
        ],
        "{e}"
    );
    assert!(e.to_string().contains("missing.pem"), "{e}");
    // A file that is not a key is named as such.
    let path = write_private(dir.path(), "junk.pem", "not a key");
    config = MaskinportenConfig::new(
        TEST_ISSUER_FOR_TESTS,
        CLIENT_ID,
        KeySource::Rsa {
            key_file: path,
            kid: "k".into(),
        },
    );
    let e = config.check().unwrap_err();
    assert!(
        e.problems[0].message.contains("not an RSA private key"),
        "{e}"
    );
}

#[tokio::test]
async fn the_key_and_the_token_never_show_in_debug_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let config = mp.config(dir.path());
    let c = client(config.clone());
    let t = c
        .system_user_token(&org(CUSTOMER_ORG), &scopes(&[SCOPE]), None)
        .await
        .unwrap();
    let refused = c
        .system_user_token(&org(STRANGER_ORG), &scopes(&[SCOPE]), None)
        .await
        .unwrap_err();
    let shown = format!("{c:?} {config:?} {t:?} {refused:?} {refused}");
    // A line from the middle of the key's PEM, and the token itself.
    let key_line = key(1).pkcs8_pem.lines().nth(5).unwrap();
    assert!(!shown.contains(key_line), "{shown}");
    assert!(!shown.contains(t.access_token.expose()), "{shown}");
    let token_payload = t.access_token.expose().split('.').nth(1).unwrap();
    assert!(!shown.contains(token_payload));
    assert!(shown.contains(CLIENT_ID), "{shown}");
}

#[tokio::test]
async fn an_altinn_token_is_exchanged_once_per_maskinporten_token_and_works_at_altinn() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let altinn = Altinn::start(&mp).await;
    let c = client(mp.config(dir.path()));
    let exchange = altinn.exchange_url();
    let t = c
        .system_user_token(&org(CUSTOMER_ORG), &scopes(&[SCOPE]), None)
        .await
        .unwrap();
    // Twenty callers at once, then more: one exchange.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (c, t, exchange) = (c.clone(), t.clone(), exchange.clone());
        tasks.spawn(async move { c.altinn_token(&t, &exchange).await.unwrap() });
    }
    let tokens: Vec<_> = tasks.join_all().await;
    let a = c.altinn_token(&t, &exchange).await.unwrap();
    assert!(tokens.iter().all(|x| x.access_token == a.access_token));
    assert_eq!(altinn.exchanges(), 1);
    assert_eq!(c.altinn_exchanges(), 1);
    // It is Altinn's token, for the same system user, no longer-lived than the
    // Maskinporten token.
    assert_ne!(a.access_token, t.access_token);
    assert_ne!(a.jti, t.jti);
    assert!(a.jti.is_some());
    assert_eq!(a.system_user_ids, [CUSTOMER_SYSTEM_USER]);
    assert_eq!(a.system_user_org.as_deref(), Some(CUSTOMER_ORG));
    assert!(a.expires_at <= t.expires_at);
    // End to end: Altinn's resource takes the Altinn token, not the
    // Maskinporten one.
    let (status, body) = altinn.call_resource(a.access_token.expose()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orgNumber"], VENDOR_ORG);
    assert_eq!(
        body["authorization_details"][0]["systemuser_id"][0],
        CUSTOMER_SYSTEM_USER
    );
    assert_eq!(altinn.call_resource(t.access_token.expose()).await.0, 401);

    // Another Maskinporten token is another exchange; an Altinn token that
    // lives shorter than it sets the expiry; a JSON-quoted answer is read too.
    altinn.set_token_lifetime(60);
    altinn.set_always_json(true);
    let v = c.vendor_token(&scopes(&[VENDOR_SCOPE])).await.unwrap();
    let b = c.altinn_token(&v, &exchange).await.unwrap();
    assert_eq!(altinn.exchanges(), 2);
    let left = b.remaining().as_secs();
    assert!((50..=60).contains(&left), "{left}");
    assert!(v.remaining().as_secs() > 100);
    assert_eq!(altinn.call_resource(b.access_token.expose()).await.0, 200);
    c.altinn_token(&v, &exchange).await.unwrap();
    c.altinn_token(&t, &exchange).await.unwrap();
    assert_eq!(altinn.exchanges(), 2, "both are cached");
}

#[tokio::test]
async fn altinn_refuses_a_forged_maskinporten_token_and_the_refusal_carries_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let altinn = Altinn::start(&mp).await;
    let c = client(mp.config(dir.path()));
    // The same request with a genuine token is exchanged...
    let good = c.vendor_token(&scopes(&[VENDOR_SCOPE])).await.unwrap();
    c.altinn_token(&good, &altinn.exchange_url()).await.unwrap();
    // ...and with an impostor's token (right kid, wrong key) refused.
    mp.set_forge(true);
    let forged = c
        .system_user_token(&org(CUSTOMER_ORG), &scopes(&[SCOPE]), None)
        .await
        .unwrap();
    assert!(mp.altinn_accepts(forged.access_token.expose()).is_err());
    let e = c
        .altinn_token(&forged, &altinn.exchange_url())
        .await
        .unwrap_err();
    match &e {
        TokenError::Refused {
            error,
            error_description,
            mp_code,
        } => {
            assert_eq!(error, "altinn:unauthorized");
            assert!(error.starts_with(vakt::maskinporten::ALTINN_REFUSAL));
            assert_eq!(error_description, "Unauthorized (HTTP 401)");
            assert_eq!(mp_code, &None);
        }
        other => panic!("{other:?}"),
    }
    let shown = e.to_string();
    assert!(
        shown.starts_with("Altinn's token exchange refused"),
        "{shown}"
    );
    assert!(!shown.contains(forged.access_token.expose()));
    // A wrong exchange URL is the configuration's fault.
    let mut wrong = altinn.exchange_url();
    wrong.set_path("/authentication/api/v1/exchange/nowhere");
    assert!(matches!(
        c.altinn_token(&good, &wrong).await,
        Err(TokenError::Misconfigured { .. })
    ));
    // An expired Maskinporten token is not sent at all.
    mp.set_forge(false);
    mp.set_token_lifetime(1);
    let short = c
        .vendor_token(&scopes(&[VENDOR_SCOPE, SCOPE]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let sent = altinn.exchanges();
    assert!(matches!(
        c.altinn_token(&short, &altinn.exchange_url()).await,
        Err(TokenError::InvalidRequest { .. })
    ));
    assert_eq!(altinn.exchanges(), sent);
}

#[tokio::test]
async fn altinn_down_fails_closed_as_unavailable_and_recovery_exchanges_again() {
    let dir = tempfile::tempdir().unwrap();
    let mp = StandIn::start().await;
    let altinn = Altinn::start(&mp).await;
    let c = client(mp.config(dir.path()));
    let t = c.vendor_token(&scopes(&[VENDOR_SCOPE])).await.unwrap();
    let exchange = altinn.exchange_url();
    altinn.set_mode(Mode::Refuse);
    match c.altinn_token(&t, &exchange).await {
        Err(e @ TokenError::Unavailable { .. }) => assert!(
            e.to_string()
                .starts_with("Altinn's token exchange is unavailable"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    altinn.set_mode(Mode::Unavailable);
    match c.altinn_token(&t, &exchange).await {
        Err(TokenError::Unavailable { reason }) => assert!(reason.contains("503"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A failure is not kept: once Altinn is back the same token is exchanged.
    altinn.set_mode(Mode::Up);
    let a = c.altinn_token(&t, &exchange).await.unwrap();
    assert_eq!(altinn.call_resource(a.access_token.expose()).await.0, 200);
    // Gone altogether.
    let gone = altinn.exchange_url();
    drop(altinn);
    let v = c
        .vendor_token(&scopes(&[VENDOR_SCOPE, SCOPE]))
        .await
        .unwrap();
    assert!(matches!(
        c.altinn_token(&v, &gone).await,
        Err(TokenError::Unavailable { .. })
    ));
}
