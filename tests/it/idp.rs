//! The identity provider's JWTs, checked against the stand-in's JWKS
//! (tests/it/common/idp.rs): the employee from a valid login; forged, foreign,
//! expired and malformed tokens refused with their reason; keys fetched in the
//! background, never on the request path; `[identity_provider]` read with
//! every problem on its line.

use crate::common::eventually;
use crate::common::idp::*;
use crate::common::maskinporten::Mode;
use serde_json::json;
use std::time::Duration;
use vakt::maskinporten::{IdentityProvider, IdentityProviderConfig};

async fn ready(idp: &Idp) -> IdentityProvider {
    let p = IdentityProvider::new(idp.config())
        .unwrap()
        .with_min_refresh(Duration::from_millis(200));
    assert_eq!(p.refresh().await, Ok(3));
    p
}

fn refused(r: Result<String, String>) -> String {
    match r {
        Err(why) => why,
        Ok(e) => panic!("accepted, employee {e:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_names_the_employee_with_rsa_pss_and_ec_keys() {
    let idp = Idp::start().await;
    let p = IdentityProvider::new(idp.config())
        .unwrap()
        .with_min_refresh(Duration::from_millis(200));
    // The task fetches the keys at once.
    let _task = p.start();
    eventually(Duration::from_secs(5), "the first fetch", || p.has_keys()).await;
    let claims = idp.claims(EMPLOYEE);
    for key in [IdpKey::Rsa, IdpKey::Pss, IdpKey::Ec] {
        assert_eq!(
            p.employee(&idp.mint(key, &claims)),
            Ok(EMPLOYEE.to_owned()),
            "{key:?}"
        );
    }
    let token = idp.mint(IdpKey::Rsa, &claims);
    assert_eq!(p.employee(&format!("Bearer {token}")), Ok(EMPLOYEE.into()));
    // Another claim, one of several audiences, `aud` as a list.
    let mut config = idp.config();
    config.employee_claim = "preferred_username".into();
    config.audiences = vec!["other".into(), "vakt-2".into()];
    let p2 = IdentityProvider::new(config).unwrap();
    p2.refresh().await.unwrap();
    let mut c = idp.claims("ignored-sub");
    c["preferred_username"] = json!("ola@firma.no");
    c["aud"] = json!(["someone", "vakt-2"]);
    assert_eq!(
        p2.employee(&idp.mint(IdpKey::Ec, &c)),
        Ok("ola@firma.no".into())
    );
    // The first provider's audience is not among them.
    assert!(refused(p2.employee(&token)).contains("audience"));
}

#[tokio::test]
async fn forged_foreign_expired_and_early_tokens_are_refused_with_the_reason() {
    let idp = Idp::start().await;
    let p = ready(&idp).await;
    let good = idp.claims(EMPLOYEE);
    assert!(p.employee(&idp.mint(IdpKey::Rsa, &good)).is_ok());

    // The right kid, another key.
    let why = refused(p.employee(&idp.mint(IdpKey::Forged, &good)));
    assert!(why.contains("signature does not hold"), "{why}");
    // A changed payload under a genuine signature.
    let genuine = idp.mint(IdpKey::Rsa, &good);
    let other = idp.mint(IdpKey::Rsa, &idp.claims("boss"));
    let parts: Vec<&str> = genuine.split('.').collect();
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert!(refused(p.employee(&spliced)).contains("signature does not hold"));
    // Another issuer.
    let mut c = good.clone();
    c["iss"] = json!("https://evil.example/");
    let why = refused(p.employee(&idp.mint(IdpKey::Rsa, &c)));
    assert!(why.contains("issued by \"https://evil.example/\""), "{why}");
    // Another audience, and none.
    let mut c = good.clone();
    c["aud"] = json!("someone-else");
    let why = refused(p.employee(&idp.mint(IdpKey::Rsa, &c)));
    assert!(why.contains("audience \"someone-else\""), "{why}");
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("aud");
    assert!(refused(p.employee(&idp.mint(IdpKey::Rsa, &c))).contains("no aud claim"));
    // Expired past the leeway (5 s); within it, still good.
    let mut c = good.clone();
    c["exp"] = json!(now() - 60);
    assert!(refused(p.employee(&idp.mint(IdpKey::Rsa, &c))).contains("expired"));
    c["exp"] = json!(now() - 2);
    assert!(p.employee(&idp.mint(IdpKey::Rsa, &c)).is_ok());
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("exp");
    assert!(refused(p.employee(&idp.mint(IdpKey::Rsa, &c))).contains("no exp claim"));
    // Not valid yet.
    let mut c = good.clone();
    c["nbf"] = json!(now() + 60);
    assert!(refused(p.employee(&idp.mint(IdpKey::Rsa, &c))).contains("not valid yet"));
    // HMAC with the kid of an RSA key, and alg none: never accepted.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(IdpKey::Rsa.kid().into());
    let hs = jsonwebtoken::encode(
        &h,
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"k").unwrap(),
    )
    .unwrap();
    assert!(refused(p.employee(&hs)).contains("HS256"));
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","kid":"idp-rsa-1"}"#),
        genuine.split('.').nth(1).unwrap()
    );
    assert!(refused(p.employee(&none)).contains("not a signed JWT"));
    // An RSA key's kid on an ES256 token.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some(IdpKey::Ec.kid().into());
    let wrong =
        jsonwebtoken::encode(&h, &good, &crate::common::maskinporten::key(4).encoding).unwrap();
    assert!(refused(p.employee(&wrong)).contains("ES256"));
    // No kid, garbage, too long.
    let h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let no_kid =
        jsonwebtoken::encode(&h, &good, &crate::common::maskinporten::key(4).encoding).unwrap();
    assert!(refused(p.employee(&no_kid)).contains("kid"));
    assert!(refused(p.employee("not a token")).contains("not a signed JWT"));
    assert!(refused(p.employee("")).contains("no employee token"));
    assert!(refused(p.employee(&"a".repeat(20_000))).contains("longer than"));
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test]
async fn the_employee_claim_must_be_a_string_that_is_a_valid_id() {
    let idp = Idp::start().await;
    let p = ready(&idp).await;
    assert!(p
        .employee(&idp.mint(IdpKey::Rsa, &idp.claims("kari")))
        .is_ok());
    let mut c = idp.claims("kari");
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        p.employee(&idp.mint(IdpKey::Rsa, &c)),
        Err("the employee's token has no sub claim".into())
    );
    c["sub"] = json!(42);
    assert!(refused(p.employee(&idp.mint(IdpKey::Rsa, &c))).contains("not a string"));
    for bad in ["", " kari", "ka\nri", "kari\u{200b}"] {
        let why = refused(p.employee(&idp.mint(IdpKey::Rsa, &idp.claims(bad))));
        assert!(why.contains("not a usable employee id"), "{bad:?}: {why}");
    }
    let long = "k".repeat(10_000);
    assert!(
        refused(p.employee(&idp.mint(IdpKey::Rsa, &idp.claims(&long))))
            .contains("not a usable employee id")
    );
}

#[tokio::test]
async fn an_unknown_kid_is_fetched_in_the_background_then_accepted_and_fetches_are_rate_limited() {
    let idp = Idp::start().await;
    let p = ready(&idp).await;
    idp.rotate();
    let token = idp.mint(IdpKey::Rotated, &idp.claims(EMPLOYEE));
    // Refused at once (nothing blocks on the fetch)...
    let why = refused(p.employee(&token));
    assert!(
        why.contains("\"idp-rsa-2\"") && why.contains("fetched again"),
        "{why}"
    );
    // ...and accepted once the background fetch has the new key.
    eventually(Duration::from_secs(5), "the rotated key", || {
        p.employee(&token).is_ok()
    })
    .await;
    // A flood of tokens naming a kid that does not exist starts at most one
    // fetch per min_refresh (200 ms).
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = p.jwks_fetches();
    let ghost = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("ghost".into());
        jsonwebtoken::encode(
            &h,
            &idp.claims(EMPLOYEE),
            &crate::common::maskinporten::key(4).encoding,
        )
        .unwrap()
    };
    for _ in 0..1000 {
        assert!(p.employee(&ghost).is_err());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.jwks_fetches() - before, 1);
    // The keys still work meanwhile.
    assert!(p.employee(&token).is_ok());
}

#[tokio::test]
async fn before_the_first_fetch_and_while_the_jwks_is_unreachable_tokens_are_refused_with_the_reason(
) {
    let idp = Idp::start().await;
    let token = idp.mint(IdpKey::Rsa, &idp.claims(EMPLOYEE));
    idp.set_mode(Mode::Unavailable);
    let p = IdentityProvider::new(idp.config())
        .unwrap()
        .with_min_refresh(Duration::from_millis(200));
    assert_eq!(
        p.employee(&token),
        Err("the identity provider's keys are not fetched yet".into())
    );
    let e = p.refresh().await.unwrap_err();
    assert!(e.contains("503"), "{e}");
    let why = refused(p.employee(&token));
    assert!(
        why.starts_with("the identity provider's keys could not be fetched yet")
            && why.contains("503"),
        "{why}"
    );
    // Connection refused says so too.
    idp.set_mode(Mode::Refuse);
    tokio::time::sleep(Duration::from_millis(250)).await;
    p.refresh().await.unwrap_err();
    assert!(refused(p.employee(&token)).contains("could not be fetched yet"));
    // Back up: the refusals themselves start the fetch that ends them.
    idp.set_mode(Mode::Up);
    eventually(Duration::from_secs(5), "keys after the outage", || {
        p.employee(&token).is_ok()
    })
    .await;
    // Keys held stay in use while the JWKS is out of reach.
    idp.set_mode(Mode::Unavailable);
    assert!(p.refresh().await.is_err());
    assert_eq!(p.employee(&token), Ok(EMPLOYEE.into()));
}

#[test]
fn identity_provider_config_is_read_with_defaults_and_none_without_the_table() {
    let text = r#"
[maskinporten]
issuer = "https://test.maskinporten.no/"

[identity_provider]
issuer = "https://login.example.no/"
jwks_uri = "https://login.example.no/jwks"
audiences = ["vakt"]
"#;
    let c = IdentityProviderConfig::from_toml("vakt.toml", text)
        .unwrap()
        .unwrap();
    assert_eq!(c.issuer, "https://login.example.no/");
    assert_eq!(c.jwks_uri, "https://login.example.no/jwks");
    assert_eq!(c.audiences, ["vakt"]);
    assert_eq!(c.employee_claim, "sub");
    assert_eq!(c.extra_ca_file, None);
    assert_eq!(c.jwks_max_age, Duration::from_secs(3600));
    assert_eq!(c.leeway, Duration::from_secs(30));
    assert!(IdentityProvider::new(c).is_ok());

    let full = r#"
[identity_provider]
issuer = "https://login.example.no/"
jwks_uri = "http://127.0.0.1:9/jwks"
audiences = ["vakt", "egress"]
employee_claim = "preferred_username"
jwks_max_age = "10m"
leeway = "0s"
"#;
    let c = IdentityProviderConfig::from_toml("vakt.toml", full)
        .unwrap()
        .unwrap();
    assert_eq!(c.audiences, ["vakt", "egress"]);
    assert_eq!(c.employee_claim, "preferred_username");
    assert_eq!(c.jwks_max_age, Duration::from_secs(600));
    assert_eq!(c.leeway, Duration::ZERO);

    assert!(
        IdentityProviderConfig::from_toml("vakt.toml", "[maskinporten]\nissuer = \"x\"\n")
            .unwrap()
            .is_none()
    );
    assert_eq!(
        IdentityProviderConfig::from_toml("vakt.toml", "a = 1\n[identity_provider\n")
            .unwrap_err()
            .len(),
        1
    );
    assert!(
        IdentityProviderConfig::from_toml("vakt.toml", "a = 1\n[identity_provider\n").unwrap_err()
            [0]
        .starts_with("vakt.toml:2: ")
    );
}

#[test]
fn identity_provider_config_problems_are_all_reported_on_their_lines() {
    let text = r#"# Vakt
[identity_provider]
isuer = "https://login.example.no/"
jwks_uri = "http://login.example.no/jwks"
audiences = []
employee_claim = ""
extra_ca_file = "/nonexistent/ca.pem"
jwks_max_age = 30
leeway = "10 minutes"
"#;
    let problems = IdentityProviderConfig::from_toml("vakt.toml", text).unwrap_err();
    let expect = [
        "vakt.toml:2: identity_provider.issuer: is required",
        "vakt.toml:3: identity_provider.isuer: unknown key (did you mean \"issuer\"?)",
        "vakt.toml:4: identity_provider.jwks_uri: \"http://login.example.no/jwks\" must be https (plain http only to loopback)",
        "vakt.toml:5: identity_provider.audiences: must name at least one audience",
        "vakt.toml:6: identity_provider.employee_claim: must be a claim name",
        "vakt.toml:7: identity_provider.extra_ca_file: ",
        "vakt.toml:8: identity_provider.jwks_max_age: must be a string, not an integer",
        "vakt.toml:9: identity_provider.leeway: \"10 minutes\" is not between 0s and 5m",
    ];
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    for (p, e) in problems.iter().zip(expect) {
        assert!(p.starts_with(e), "{p:?} should start with {e:?}");
    }
    // Wrong types, and audiences given as a string.
    let text =
        "[identity_provider]\nissuer = 1\njwks_uri = \"https://x/jwks\"\naudiences = \"vakt\"\n";
    let problems = IdentityProviderConfig::from_toml("f", text).unwrap_err();
    assert_eq!(
        problems,
        [
            "f:2: identity_provider.issuer: must be a string, not an integer",
            "f:4: identity_provider.audiences: must be a list of strings (audiences = [\"…\"]), not a string",
        ]
    );
    // The table as a value.
    let problems =
        IdentityProviderConfig::from_toml("f", "\n\nidentity_provider = 3\n").unwrap_err();
    assert_eq!(
        problems,
        ["f:3: identity_provider: must be a table ([identity_provider])"]
    );
}

#[test]
fn a_configuration_built_in_code_is_checked_whole_by_new() {
    let mut c = IdentityProviderConfig::new("", "ftp://login.example.no/jwks", vec![]);
    c.leeway = Duration::from_secs(3600);
    let e = IdentityProvider::new(c).unwrap_err();
    let fields: Vec<&str> = e.problems.iter().map(|p| p.field).collect();
    assert_eq!(fields, ["issuer", "jwks_uri", "audiences", "leeway"]);
}
