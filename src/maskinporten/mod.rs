//! Vakt's Maskinporten client: the only holder of the vendor's Maskinporten key.
//! It signs JWT grants (RFC 7523), gets system-user and vendor tokens, caches them,
//! and checks presented tokens against Maskinporten's JWKS.
//!
//! - `config`: [`MaskinportenConfig`], its checks, and the key (never printed).
//! - `grant`: the signed grant, by Maskinporten's rules.
//! - `http`: HTTPS to Maskinporten, bounded in size and time; plain http only to
//!   loopback.
//! - `cache`: tokens per (party, scopes), refreshed before expiry, one fetch in
//!   flight per entry.
//! - `verify`: the JWKS and the checks of a presented token.
//!
//! Every failure fails closed: no token, and a [`TokenError`] the caller maps to
//! gRPC (`Unavailable` → `UNAVAILABLE`). No error or log line carries a token, a
//! grant or the key.

mod cache;
mod config;
mod error;
mod grant;
mod http;
mod idp;
mod types;
mod verify;

pub use config::{GrantAlgorithm, KeySource, MaskinportenConfig, PRODUCTION_ISSUER, TEST_ISSUER};
pub use idp::{IdentityProvider, IdentityProviderConfig};
pub use error::{ConfigError, FieldProblem, TokenError, VerifyError};
pub use types::{AccessToken, OrgNumber, Scope, Token, VerifiedToken};

use grant::Party;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use url::Url;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Longest `externalRef` accepted; Altinn's are short names or UUIDs.
const MAX_EXTERNAL_REF: usize = 255;

/// The Maskinporten client. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Maskinporten {
    inner: Arc<Inner>,
}

struct Inner {
    config: MaskinportenConfig,
    issuer: Url,
    token_endpoint: Option<Url>,
    audience: String,
    signing: config::SigningKey,
    http: http::HttpClient,
    metadata: tokio::sync::Mutex<Option<(Instant, Arc<Metadata>)>>,
    cache: cache::TokenCache,
    jwks: tokio::sync::Mutex<verify::JwksState>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for Maskinporten {
    /// The issuer and client only; never the key or a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maskinporten")
            .field("issuer", &self.inner.config.issuer)
            .field("client_id", &self.inner.config.client_id)
            .field("key", &self.inner.signing)
            .finish_non_exhaustive()
    }
}

/// The parts of Maskinporten's metadata (RFC 8414) Vakt uses.
#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    #[serde(default)]
    token_endpoint: Option<String>,
    #[serde(default)]
    jwks_uri: Option<String>,
}

/// Maskinporten's successful token answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    expires_in: u64,
    #[serde(default)]
    scope: Option<String>,
}

/// Maskinporten's error answer.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl Maskinporten {
    /// Checks the configuration (all problems at once), reads the key and builds
    /// the client. Nothing is fetched until the first token or check.
    pub fn new(config: MaskinportenConfig) -> Result<Self, ConfigError> {
        let checked = config.checked()?;
        let http = http::HttpClient::new(
            &checked.extra_roots,
            config.connect_timeout,
            config.request_timeout,
        )
        .map_err(|message| ConfigError {
            problems: vec![FieldProblem {
                field: "extra_ca_file",
                message,
            }],
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                cache: cache::TokenCache::new(config.cache_capacity, config.refresh_before),
                issuer: checked.issuer,
                token_endpoint: checked.token_endpoint,
                audience: checked.audience,
                signing: checked.signing,
                http,
                metadata: tokio::sync::Mutex::default(),
                jwks: tokio::sync::Mutex::default(),
                fetches: AtomicU64::new(0),
                config,
            }),
        })
    }

    /// A token for the system user that `org` owns (picked by `external_ref`
    /// when the org has more than one for Vakt's system), with `scopes`. From the
    /// cache when it has more than `refresh_before` left.
    ///
    /// For an agent (client-delegation) system user `org` is the owner, the
    /// accounting firm: the token does not name the client.
    pub async fn system_user_token(
        &self,
        org: &OrgNumber,
        scopes: &[Scope],
        external_ref: Option<&str>,
    ) -> Result<Token, TokenError> {
        if let Some(r) = external_ref {
            if r.is_empty() || r.len() > MAX_EXTERNAL_REF || r.chars().any(char::is_control) {
                return Err(TokenError::InvalidRequest {
                    reason: format!("externalRef must be 1 to {MAX_EXTERNAL_REF} bytes without control characters"),
                });
            }
        }
        let party = Party::SystemUser {
            org: org.clone(),
            external_ref: external_ref.map(str::to_owned),
        };
        self.token(party, scopes).await
    }

    /// A token for the vendor itself (no `authorization_details`), as Altinn's
    /// vendor APIs need.
    pub async fn vendor_token(&self, scopes: &[Scope]) -> Result<Token, TokenError> {
        self.token(Party::Vendor, scopes).await
    }

    /// `token` exchanged at Altinn's token exchange (`exchange`, the URL of
    /// `GET authentication/api/v1/exchange/maskinporten`) for an Altinn token,
    /// cached for the Maskinporten token's lifetime.
    pub async fn altinn_token(&self, _token: &Token, _exchange: &Url) -> Result<Token, TokenError> {
        Err(TokenError::unavailable("Altinn's token exchange is not built yet"))
    }

    /// How many token requests were sent to Maskinporten since start.
    pub fn token_requests(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// How many entries the token cache holds.
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    async fn token(&self, party: Party, scopes: &[Scope]) -> Result<Token, TokenError> {
        if scopes.is_empty() {
            return Err(TokenError::InvalidRequest {
                reason: "at least one scope is needed (Maskinporten requires scope)".into(),
            });
        }
        let mut sorted: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let scope = sorted.join(" ");
        let key = (party.clone(), scope.clone());
        self.inner
            .cache
            .get_or_fetch(key, || self.fetch(party, scope))
            .await
    }

    /// One token request: a fresh grant, POSTed to the token endpoint.
    async fn fetch(&self, party: Party, scope: String) -> Result<Token, TokenError> {
        let inner = &*self.inner;
        let endpoint = self.token_endpoint().await?;
        let assertion = grant::sign(
            &grant::GrantInput {
                audience: &inner.audience,
                client_id: &inner.config.client_id,
                algorithm: inner.config.algorithm,
                lifetime: inner.config.assertion_lifetime,
                scope: &scope,
                party: &party,
            },
            &inner.signing,
        )
        .map_err(|reason| TokenError::Misconfigured { reason })?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &assertion)
            .finish();
        let started = SystemTime::now();
        inner.fetches.fetch_add(1, Ordering::Relaxed);
        let answer = inner
            .http
            .post_form(&endpoint, form)
            .await
            .map_err(TokenError::unavailable)?;
        match answer.status {
            200 => {}
            429 | 500..=599 => {
                return Err(TokenError::unavailable(format!(
                    "the token endpoint answered HTTP {}",
                    answer.status
                )))
            }
            status => return Err(refusal(status, &answer.body)),
        }
        let t: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
            TokenError::unavailable(format!("the token answer is not Maskinporten's: {e}"))
        })?;
        if t.access_token.is_empty() || t.expires_in == 0 {
            return Err(TokenError::unavailable(
                "the token answer has no token or no lifetime",
            ));
        }
        if let Some(tt) = &t.token_type {
            if !tt.eq_ignore_ascii_case("bearer") {
                return Err(TokenError::unavailable(format!(
                    "the token type is {tt:?}, not Bearer"
                )));
            }
        }
        // The claims are read, not verified: the token came over TLS from the
        // token endpoint itself. Opaque tokens simply have none.
        let claims =
            jsonwebtoken::dangerous::insecure_decode_claims::<types::TokenClaims>(&t.access_token)
                .ok();
        let (system_user_ids, system_user_org) =
            claims.as_ref().map(|c| c.system_user()).unwrap_or_default();
        let mut expires_at = started + Duration::from_secs(t.expires_in);
        if let Some(exp) = claims.as_ref().and_then(|c| c.exp) {
            expires_at = expires_at.min(types::from_epoch(exp));
        }
        let token = Token {
            jti: claims.as_ref().and_then(|c| c.jti.clone()),
            scope: t.scope.unwrap_or(scope),
            access_token: AccessToken::new(t.access_token),
            expires_at,
            system_user_ids,
            system_user_org,
        };
        tracing::info!(
            jti = token.jti.as_deref().unwrap_or("-"),
            expires_in = t.expires_in,
            scope = %token.scope,
            system_user = ?token.system_user_ids,
            "Maskinporten token issued"
        );
        Ok(token)
    }

    /// The token endpoint: configured, or from the metadata.
    async fn token_endpoint(&self) -> Result<Url, TokenError> {
        if let Some(u) = &self.inner.token_endpoint {
            return Ok(u.clone());
        }
        let m = self.metadata().await?;
        let u = m
            .token_endpoint
            .as_deref()
            .ok_or_else(|| TokenError::Misconfigured {
                reason: "the issuer's metadata names no token_endpoint".into(),
            })?;
        self.endpoint_url("token_endpoint", u)
    }

    fn endpoint_url(&self, what: &str, u: &str) -> Result<Url, TokenError> {
        let url = Url::parse(u).map_err(|e| TokenError::Misconfigured {
            reason: format!("the metadata's {what} {u:?} is not a URL: {e}"),
        })?;
        if url.scheme() != "https" && !(url.scheme() == "http" && http::is_loopback(&url)) {
            return Err(TokenError::Misconfigured {
                reason: format!("the metadata's {what} {u:?} is not https"),
            });
        }
        Ok(url)
    }

    /// The issuer's metadata, fetched once and again after `jwks_max_age`.
    async fn metadata(&self) -> Result<Arc<Metadata>, TokenError> {
        let mut slot = self.inner.metadata.lock().await;
        if let Some((at, m)) = &*slot {
            if at.elapsed() < self.inner.config.jwks_max_age {
                return Ok(m.clone());
            }
        }
        let url = well_known(&self.inner.issuer);
        let answer = self
            .inner
            .http
            .get(&url)
            .await
            .map_err(TokenError::unavailable)?;
        if answer.status != 200 {
            return Err(TokenError::unavailable(format!(
                "the issuer's metadata answered HTTP {}",
                answer.status
            )));
        }
        let m: Metadata = serde_json::from_slice(&answer.body).map_err(|e| {
            TokenError::unavailable(format!(
                "the issuer's metadata is not RFC 8414 metadata: {e}"
            ))
        })?;
        // RFC 8414 §3.3: metadata naming another issuer must not be used.
        if m.issuer != self.inner.config.issuer {
            return Err(TokenError::Misconfigured {
                reason: format!(
                    "the metadata names issuer {:?}, not the configured {:?}",
                    m.issuer, self.inner.config.issuer
                ),
            });
        }
        let m = Arc::new(m);
        *slot = Some((Instant::now(), m.clone()));
        Ok(m)
    }

    /// Checks that `token` was issued by Maskinporten (signature against its
    /// JWKS, issuer, expiry) and says whom it is for: compare
    /// [`VerifiedToken::system_user_ids`] with the system user a decision allowed.
    pub async fn verify_token(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let (alg, kid) = verify::header(token)?;
        let c = &self.inner.config;
        let mut jwks = self.inner.jwks.lock().await;
        let mut refresh_failed = None;
        if jwks.wants_refresh(&kid, c.jwks_max_age, c.jwks_min_refresh) {
            jwks.attempted();
            match self.fetch_jwks().await {
                Ok(body) => {
                    let n = jwks
                        .replace(&body)
                        .map_err(|reason| VerifyError::Unavailable { reason })?;
                    tracing::info!(keys = n, "Maskinporten JWKS fetched");
                }
                // Keys already held are public keys Maskinporten published: they
                // stay usable while a refresh fails.
                Err(reason) => {
                    tracing::warn!(%reason, "Maskinporten JWKS could not be fetched");
                    refresh_failed = Some(reason);
                }
            }
        }
        let key = match (jwks.key(&kid), refresh_failed) {
            (Some(k), _) => k.clone(),
            // The kid may well be Maskinporten's: say the keys were out of
            // reach, so the caller answers UNAVAILABLE, not a forgery.
            (None, Some(reason)) => return Err(VerifyError::Unavailable { reason }),
            (None, None) => return Err(VerifyError::UnknownKey { kid }),
        };
        drop(jwks);
        verify::check(token, alg, &key, &c.issuer)
    }

    async fn fetch_jwks(&self) -> Result<Vec<u8>, String> {
        let m = self.metadata().await.map_err(|e| e.to_string())?;
        let u = m
            .jwks_uri
            .as_deref()
            .ok_or("the issuer's metadata names no jwks_uri")?;
        let url = self
            .endpoint_url("jwks_uri", u)
            .map_err(|e| e.to_string())?;
        let answer = self.inner.http.get(&url).await?;
        if answer.status != 200 {
            return Err(format!("the JWKS answered HTTP {}", answer.status));
        }
        Ok(answer.body.to_vec())
    }
}

/// The metadata URL of `issuer` (RFC 8414 §3): the well-known path goes between
/// the host and the issuer's own path.
fn well_known(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = issuer.path().trim_end_matches('/');
    url.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    url
}

/// A 4xx answer as a refusal, with the MP code from its description.
fn refusal(status: u16, body: &[u8]) -> TokenError {
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(e) => {
            let description = e.error_description.unwrap_or_default();
            TokenError::Refused {
                mp_code: error::mp_code(&description),
                error: e.error,
                error_description: description,
            }
        }
        Err(_) => TokenError::Refused {
            error: format!("HTTP {status}"),
            error_description: "the answer carried no OAuth error".into(),
            mp_code: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_url_follows_rfc_8414() {
        let u = |s: &str| well_known(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            u("https://test.maskinporten.no/"),
            "https://test.maskinporten.no/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            u("https://idp.example/tenant"),
            "https://idp.example/.well-known/oauth-authorization-server/tenant"
        );
    }
}
