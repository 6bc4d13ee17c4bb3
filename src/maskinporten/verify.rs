//! Checking a presented token against Maskinporten's JWKS: signature, issuer,
//! expiry. The JWKS is cached, and fetched again for an unknown `kid` at most
//! once per `jwks_min_refresh`.

use super::error::VerifyError;
use super::types::{from_epoch, TokenClaims, VerifiedToken};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Clock skew allowed on `exp`: small, as the tokens live only about 120 s.
const LEEWAY_SECS: u64 = 5;

#[derive(Default)]
pub(crate) struct JwksState {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl JwksState {
    /// Whether the keys should be fetched (again) before looking up `kid`.
    pub fn wants_refresh(&self, kid: &str, max_age: Duration, min_refresh: Duration) -> bool {
        let stale = self.fetched.is_none_or(|t| t.elapsed() > max_age);
        let unknown = !self.keys.contains_key(kid);
        let may = self.last_attempt.is_none_or(|t| t.elapsed() >= min_refresh);
        (stale || unknown) && may
    }

    pub fn attempted(&mut self) {
        self.last_attempt = Some(Instant::now());
    }

    /// Replaces the keys with the RSA signing keys of `body`.
    pub fn replace(&mut self, body: &[u8]) -> Result<usize, String> {
        self.keys = signing_keys(body, false)?
            .into_iter()
            .map(|(kid, k)| (kid, k.key))
            .collect();
        self.fetched = Some(Instant::now());
        Ok(self.keys.len())
    }

    pub fn key(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }
}

/// The most keys taken from one JWKS; real sets hold a handful.
const MAX_KEYS: usize = 100;

/// A signing key of a JWKS, with the algorithm it names (if it names one).
pub(crate) struct SigningKey {
    pub key: DecodingKey,
    pub alg: Option<jsonwebtoken::jwk::KeyAlgorithm>,
}

/// The signing keys of the JWK set `body`, by `kid`: RSA keys, and elliptic
/// curve keys when `ec` is set. Keys without a `kid`, for encryption, or of
/// other kinds (symmetric ones above all) are left out.
pub(crate) fn signing_keys(body: &[u8], ec: bool) -> Result<HashMap<String, SigningKey>, String> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    let set: JwkSet =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not a JWK set: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in set.keys.iter().take(MAX_KEYS) {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            continue;
        }
        let wanted = match &jwk.algorithm {
            P::RSA(_) => true,
            P::EllipticCurve(_) => ec,
            _ => false,
        };
        if !wanted {
            continue;
        }
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(
                kid.clone(),
                SigningKey {
                    key,
                    alg: jwk.common.key_algorithm,
                },
            );
        }
    }
    Ok(keys)
}

/// The algorithm and kid of `token`, or why it cannot be one of Maskinporten's.
pub(crate) fn header(token: &str) -> Result<(Algorithm, String), VerifyError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Malformed {
        reason: e.to_string(),
    })?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
    ) {
        return Err(VerifyError::Algorithm {
            alg: format!("{:?}", header.alg),
        });
    }
    let kid = header.kid.ok_or(VerifyError::NoKeyId)?;
    Ok((header.alg, kid))
}

#[derive(serde::Deserialize)]
struct Checked {
    #[serde(flatten)]
    claims: TokenClaims,
}

/// Checks signature, issuer and expiry of `token` with `key`.
pub(crate) fn check(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    issuer: &str,
) -> Result<VerifiedToken, VerifyError> {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.validate_aud = false;
    validation.leeway = LEEWAY_SECS;
    let data = jsonwebtoken::decode::<Checked>(token, key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => VerifyError::BadSignature,
            K::ExpiredSignature => VerifyError::Expired,
            K::InvalidIssuer => VerifyError::WrongIssuer {
                found: jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(token)
                    .ok()
                    .and_then(|c| c.get("iss").and_then(|i| i.as_str()).map(str::to_owned))
                    .unwrap_or_default(),
            },
            K::MissingRequiredClaim(c) => VerifyError::Claims {
                reason: format!("no {c} claim"),
            },
            _ => VerifyError::Claims {
                reason: e.to_string(),
            },
        }
    })?;
    let c = data.claims.claims;
    let (system_user_ids, system_user_org) = c.system_user();
    Ok(VerifiedToken {
        expires_at: from_epoch(c.exp.unwrap_or(0)),
        jti: c.jti,
        client_id: c.client_id,
        scope: c.scope.unwrap_or_default(),
        system_user_ids,
        system_user_org,
        consumer_org: c.consumer.and_then(|o| o.org_number()),
    })
}
