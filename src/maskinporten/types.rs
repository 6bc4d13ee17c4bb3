//! The values the Maskinporten client takes and gives: org numbers, scopes, the
//! token (its secret hidden from Debug), and what a token's claims say.

use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A Norwegian organisation number, checked (9 digits, mod-11).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgNumber(String);

impl OrgNumber {
    pub fn parse(s: &str) -> Result<Self, crate::ids::OrgNumberError> {
        crate::ids::check_org_number(s)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OrgNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An OAuth scope (`altinn:instances.read`): RFC 6749's scope-token, printable
/// ASCII without space, `"` or `\`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 256 {
            return Err(format!("scope {s:?} must be 1 to 256 characters"));
        }
        if !s
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return Err(format!("scope {s:?} has a character a scope cannot hold (space, quote, backslash, non-ASCII)"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The access token itself. Debug and Display never show it; read it with
/// [`AccessToken::expose`] only to put it on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub(crate) fn new(s: String) -> Self {
        Self(s)
    }

    /// The token, for an `authorization: Bearer` header or a gRPC answer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessToken(<{} bytes hidden>)", self.0.len())
    }
}

/// A token Maskinporten issued, with what Vakt records about it.
#[derive(Debug, Clone)]
pub struct Token {
    pub access_token: AccessToken,
    /// When Vakt stops using it: the request's start plus `expires_in`, so
    /// never later than Maskinporten's own `exp`.
    pub expires_at: SystemTime,
    /// The token's `jti`, for the decision record (the token itself is never
    /// recorded); `None` when the token is not a JWT.
    pub jti: Option<String>,
    /// The scopes granted, space-separated as Maskinporten answers them.
    pub scope: String,
    /// The system user ids in the token's `authorization_details`.
    pub system_user_ids: Vec<String>,
    /// The `systemuser_org` of the token, as an org number (`0192:` removed).
    pub system_user_org: Option<String>,
    /// The token's SHA-256, taken when first asked for (the Altinn cache's key).
    pub(super) digest: Digest,
}

/// A token's SHA-256, taken once. Debug shows whether it was taken, not it.
#[derive(Clone, Default)]
pub(crate) struct Digest(std::sync::OnceLock<[u8; 32]>);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Digest(taken)"
        } else {
            "Digest(not taken)"
        })
    }
}

impl Token {
    /// The SHA-256 of the access token: taken on the first call, then kept
    /// with the token (a cached token is asked for it on every exchange).
    pub(crate) fn digest(&self) -> [u8; 32] {
        *self.digest.0.get_or_init(|| {
            use sha2::Digest as _;
            sha2::Sha256::digest(self.access_token.expose().as_bytes()).into()
        })
    }

    /// Seconds left until [`expires_at`](Self::expires_at), zero once past.
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}

/// A presented token that Maskinporten's JWKS vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub jti: Option<String>,
    pub client_id: Option<String>,
    pub scope: String,
    pub expires_at: SystemTime,
    /// The system user ids in `authorization_details`; empty for a vendor token.
    pub system_user_ids: Vec<String>,
    /// The system user's owner, as an org number.
    pub system_user_org: Option<String>,
    /// The organisation the token was issued to (`consumer`), as an org number.
    pub consumer_org: Option<String>,
}

impl VerifiedToken {
    /// Whether the token is for system user `id` (an id a decision allowed).
    pub fn is_for_system_user(&self, id: &str) -> bool {
        self.system_user_ids.iter().any(|s| s == id)
    }
}

/// The claims of a Maskinporten token Vakt reads.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenClaims {
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub consumer: Option<OrgRef>,
    #[serde(default)]
    pub authorization_details: Vec<serde_json::Value>,
}

/// `{authority, ID}` (real tokens) or `{authority, id}` (some documentation).
#[derive(Debug, Deserialize)]
pub(crate) struct OrgRef {
    #[serde(rename = "ID", alias = "id", default)]
    pub id: Option<String>,
}

impl OrgRef {
    /// The org number without the ISO 6523 `0192:` prefix.
    pub fn org_number(&self) -> Option<String> {
        let id = self.id.as_deref()?;
        Some(id.strip_prefix("0192:").unwrap_or(id).to_owned())
    }
}

impl TokenClaims {
    /// The system user ids and owner from the `urn:altinn:systemuser` entries;
    /// `system_id` is not required (a planned kind of system user lacks it).
    pub fn system_user(&self) -> (Vec<String>, Option<String>) {
        let mut ids = Vec::new();
        let mut org = None;
        for d in &self.authorization_details {
            if d.get("type").and_then(|t| t.as_str()) != Some("urn:altinn:systemuser") {
                continue;
            }
            match d.get("systemuser_id") {
                Some(serde_json::Value::Array(a)) => {
                    ids.extend(a.iter().filter_map(|v| v.as_str().map(str::to_owned)))
                }
                Some(serde_json::Value::String(s)) => ids.push(s.clone()),
                _ => {}
            }
            if org.is_none() {
                org = d
                    .get("systemuser_org")
                    .and_then(|o| serde_json::from_value::<OrgRef>(o.clone()).ok())
                    .and_then(|o| o.org_number());
            }
        }
        (ids, org)
    }
}

pub(crate) fn from_epoch(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

pub(crate) fn epoch_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_user_claims_are_read_with_id_in_either_case_and_without_system_id() {
        let claims: TokenClaims = serde_json::from_value(serde_json::json!({
            "authorization_details": [{
                "type": "urn:altinn:systemuser",
                "systemuser_id": ["a0b1"],
                "systemuser_org": {"authority": "iso6523-actorid-upis", "id": "0192:991825827"}
            }]
        }))
        .unwrap();
        assert_eq!(
            claims.system_user(),
            (vec!["a0b1".to_owned()], Some("991825827".to_owned()))
        );
        let claims: TokenClaims = serde_json::from_value(serde_json::json!({
            "authorization_details": [{
                "type": "urn:altinn:systemuser",
                "systemuser_id": ["c2"],
                "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": "0192:991825827"},
                "system_id": "vendor_system"
            }]
        }))
        .unwrap();
        assert_eq!(
            claims.system_user(),
            (vec!["c2".to_owned()], Some("991825827".to_owned()))
        );
    }

    #[test]
    fn a_token_never_shows_in_debug() {
        let t = AccessToken::new("eyJsecret.part.sig".into());
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn scopes_are_rfc_6749_scope_tokens() {
        assert!(Scope::parse("altinn:instances.read").is_ok());
        for bad in ["", "a b", "a\"b", "a\\b", "æ"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }
}
