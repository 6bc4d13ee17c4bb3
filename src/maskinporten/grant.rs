//! The JWT grant (RFC 7523) Vakt signs for each token request, by Maskinporten's
//! rules: RS256/384/512, `kid` or `x5c`, `aud` the issuer, `iss` the client id, a
//! fresh `jti`, at most 120 s, and for a system user one `authorization_details`.

use super::config::{GrantAlgorithm, SigningKey};
use super::types::{epoch_now, OrgNumber};
use serde::Serialize;
use std::time::Duration;

/// Who the token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Party {
    /// The vendor itself: no `authorization_details`.
    Vendor,
    /// The system user owned by `org`, picked by `external_ref` when given.
    SystemUser {
        org: OrgNumber,
        external_ref: Option<String>,
    },
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_details: Option<[AuthorizationDetail<'a>; 1]>,
}

#[derive(Serialize)]
struct AuthorizationDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    systemuser_org: SystemUserOrg,
    #[serde(rename = "externalRef", skip_serializing_if = "Option::is_none")]
    external_ref: Option<&'a str>,
}

#[derive(Serialize)]
struct SystemUserOrg {
    authority: &'static str,
    #[serde(rename = "ID")]
    id: String,
}

pub(crate) struct GrantInput<'a> {
    pub audience: &'a str,
    pub client_id: &'a str,
    pub algorithm: GrantAlgorithm,
    pub lifetime: Duration,
    pub scope: &'a str,
    pub party: &'a Party,
}

/// A signed grant. The error names no key material.
pub(crate) fn sign(input: &GrantInput<'_>, key: &SigningKey) -> Result<String, String> {
    let mut header = jsonwebtoken::Header::new(input.algorithm.jwt());
    header.kid = key.kid.clone();
    header.x5c = key.x5c.clone();
    let iat = epoch_now();
    let claims = Claims {
        aud: input.audience,
        iss: input.client_id,
        iat,
        exp: iat + input.lifetime.as_secs() as i64,
        jti: uuid::Uuid::new_v4().to_string(),
        scope: input.scope,
        authorization_details: match input.party {
            Party::Vendor => None,
            Party::SystemUser { org, external_ref } => Some([AuthorizationDetail {
                kind: "urn:altinn:systemuser",
                systemuser_org: SystemUserOrg {
                    authority: "iso6523-actorid-upis",
                    id: format!("0192:{org}"),
                },
                external_ref: external_ref.as_deref(),
            }]),
        },
    };
    jsonwebtoken::encode(&header, &claims, &key.key)
        .map_err(|e| format!("cannot sign the grant: {}", e.kind_name()))
}

/// A short name for a signing error's kind, without its details.
trait KindName {
    fn kind_name(&self) -> &'static str;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind as K;
        match self.kind() {
            K::InvalidRsaKey(_) | K::InvalidKeyFormat => "the RSA key is not usable",
            K::InvalidAlgorithm | K::InvalidAlgorithmName => "the algorithm does not fit the key",
            _ => "signing failed",
        }
    }
}
