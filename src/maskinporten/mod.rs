//! Vakt's Maskinporten client: the only holder of the vendor's Maskinporten key.
//! It signs JWT grants (RFC 7523), gets system-user and vendor tokens, caches them,
//! exchanges them for Altinn tokens, and checks presented tokens against
//! Maskinporten's JWKS. Beside it, the end-user system's identity provider, whose
//! JWTs name the employee behind an Envoy Check.
//!
//! - `config`: [`MaskinportenConfig`], its checks, and the key (never printed).
//! - `grant`: the signed grant, by Maskinporten's rules.
//! - `http`: HTTPS to Maskinporten, Altinn and the identity provider, bounded in
//!   size and time; plain http only to loopback.
//! - `cache`: tokens per (party, scopes), and Altinn tokens per Maskinporten
//!   token, refreshed before expiry, one fetch in flight per entry.
//! - `verify`: JWKS parsing and the checks of a presented Maskinporten token.
//! - `idp`: [`IdentityProvider`], the employee from the identity provider's JWT,
//!   checked against its JWKS without ever blocking.
//!
//! Every failure fails closed: no token, and a [`TokenError`] the caller maps to
//! gRPC (`Unavailable` → `UNAVAILABLE`). No error or log line carries a token, a
//! grant or the key.

mod cache;
mod config;
mod error;
mod grant;
pub(crate) mod http;
mod idp;
mod types;
mod verify;

pub use config::{
    GrantAlgorithm, KeySource, MaskinportenConfig, MaskinportenTable, PRODUCTION_ISSUER,
    TEST_ISSUER,
};
pub use error::{ConfigError, FieldProblem, TokenError, VerifyError, ALTINN_REFUSAL};
pub use idp::{IdentityProvider, IdentityProviderConfig};
pub use types::{AccessToken, OrgNumber, Scope, Token, VerifiedToken};

use error::ALTINN_EXCHANGE;
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
    /// Altinn tokens by (exchange URL, SHA-256 of the Maskinporten token).
    altinn_cache: cache::TokenCache<(String, [u8; 32])>,
    jwks: tokio::sync::Mutex<verify::JwksState>,
    fetches: AtomicU64,
    exchanges: AtomicU64,
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
                altinn_cache: cache::TokenCache::new(config.cache_capacity, config.refresh_before),
                issuer: checked.issuer,
                token_endpoint: checked.token_endpoint,
                audience: checked.audience,
                signing: checked.signing,
                http,
                metadata: tokio::sync::Mutex::default(),
                jwks: tokio::sync::Mutex::default(),
                fetches: AtomicU64::new(0),
                exchanges: AtomicU64::new(0),
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
        self.shared_system_user_token(org, scopes, external_ref)
            .await
            .map(|t| (*t).clone())
    }

    /// [`system_user_token`](Self::system_user_token) as the cache holds it:
    /// shared, not copied. The request path's way to it: a hit copies neither
    /// the token nor its key.
    pub(crate) async fn shared_system_user_token(
        &self,
        org: &OrgNumber,
        scopes: &[Scope],
        external_ref: Option<&str>,
    ) -> Result<Arc<Token>, TokenError> {
        if let Some(r) = external_ref {
            if r.is_empty() || r.len() > MAX_EXTERNAL_REF || r.chars().any(char::is_control) {
                return Err(TokenError::InvalidRequest {
                    reason: format!("externalRef must be 1 to {MAX_EXTERNAL_REF} bytes without control characters"),
                });
            }
        }
        self.token(Who::SystemUser { org, external_ref }, scopes)
            .await
    }

    /// A token for the vendor itself (no `authorization_details`), as Altinn's
    /// vendor APIs need.
    pub async fn vendor_token(&self, scopes: &[Scope]) -> Result<Token, TokenError> {
        self.token(Who::Vendor, scopes).await.map(|t| (*t).clone())
    }

    /// `token` exchanged at Altinn's token exchange (`exchange`, the URL of
    /// `GET authentication/api/v1/exchange/maskinporten`) for an Altinn token,
    /// cached for the Maskinporten token's lifetime.
    ///
    /// One exchange per Maskinporten token (however many callers wait for it);
    /// the Altinn token is used until the earlier of its own `exp` and the
    /// Maskinporten token's expiry. Altinn out of reach, a 5xx or a 429 is
    /// [`TokenError::Unavailable`]; a 401 or 403 is [`TokenError::Refused`]
    /// with an `error` starting [`ALTINN_REFUSAL`] and Altinn's message; any
    /// other answer is [`TokenError::Misconfigured`] (a wrong URL, most likely).
    pub async fn altinn_token(&self, token: &Token, exchange: &Url) -> Result<Token, TokenError> {
        self.shared_altinn_token(token, exchange)
            .await
            .map(|t| (*t).clone())
    }

    /// [`altinn_token`](Self::altinn_token) as the cache holds it: shared,
    /// not copied. The Maskinporten token's SHA-256 (the cache's key) is
    /// taken once per token, not per call.
    pub(crate) async fn shared_altinn_token(
        &self,
        token: &Token,
        exchange: &Url,
    ) -> Result<Arc<Token>, TokenError> {
        if token.remaining().is_zero() {
            return Err(TokenError::InvalidRequest {
                reason: "the Maskinporten token to exchange has expired".into(),
            });
        }
        if exchange.scheme() != "https"
            && !(exchange.scheme() == "http" && http::is_loopback(exchange))
        {
            return Err(TokenError::Misconfigured {
                reason: format!(
                    "{ALTINN_EXCHANGE} {}://{}{} is not https",
                    exchange.scheme(),
                    exchange.host_str().unwrap_or(""),
                    exchange.path()
                ),
            });
        }
        let key = (exchange.as_str().to_owned(), token.digest());
        self.inner
            .altinn_cache
            .get_or_fetch(&key, || self.exchange(token, exchange))
            .await
    }

    /// One exchange at Altinn.
    async fn exchange(&self, token: &Token, url: &Url) -> Result<Token, TokenError> {
        let inner = &*self.inner;
        inner.exchanges.fetch_add(1, Ordering::Relaxed);
        let answer = inner
            .http
            .get_bearer(url, token.access_token.expose())
            .await
            .map_err(|e| {
                TokenError::unavailable(format!("{ALTINN_EXCHANGE} is unavailable: {e}"))
            })?;
        match answer.status {
            200 => {}
            401 | 403 => {
                return Err(TokenError::Refused {
                    error: format!(
                        "{}{}",
                        error::ALTINN_REFUSAL,
                        if answer.status == 401 {
                            "unauthorized"
                        } else {
                            "forbidden"
                        }
                    ),
                    error_description: altinn_message(answer.status, &answer.body),
                    mp_code: None,
                })
            }
            429 | 500..=599 => {
                return Err(TokenError::unavailable(format!(
                    "{ALTINN_EXCHANGE} is unavailable: it answered HTTP {}",
                    answer.status
                )))
            }
            status => {
                return Err(TokenError::Misconfigured {
                    reason: format!(
                        "{ALTINN_EXCHANGE} answered HTTP {status} ({}); is its URL right?",
                        altinn_message(status, &answer.body)
                    ),
                })
            }
        }
        let jwt = altinn_answer(&answer.body).ok_or_else(|| {
            TokenError::unavailable(format!(
                "{ALTINN_EXCHANGE} answered something that is not a JWT"
            ))
        })?;
        // Read, not verified: it came over TLS from the exchange itself, and
        // Altinn checks it on every call.
        let claims = jsonwebtoken::dangerous::insecure_decode_claims::<types::TokenClaims>(&jwt)
            .map_err(|_| {
                TokenError::unavailable(format!(
                    "{ALTINN_EXCHANGE} answered a token whose claims cannot be read"
                ))
            })?;
        let mut expires_at = token.expires_at;
        if let Some(exp) = claims.exp {
            expires_at = expires_at.min(types::from_epoch(exp));
        }
        if expires_at <= SystemTime::now() {
            return Err(TokenError::unavailable(format!(
                "{ALTINN_EXCHANGE} answered a token that has already expired"
            )));
        }
        let altinn = Token {
            access_token: AccessToken::new(jwt),
            expires_at,
            jti: claims.jti,
            scope: token.scope.clone(),
            system_user_ids: token.system_user_ids.clone(),
            system_user_org: token.system_user_org.clone(),
            digest: Default::default(),
        };
        tracing::info!(
            jti = altinn.jti.as_deref().unwrap_or("-"),
            maskinporten_jti = token.jti.as_deref().unwrap_or("-"),
            expires_in = altinn.remaining().as_secs(),
            "Altinn token exchanged"
        );
        Ok(altinn)
    }

    /// The HTTP client (its roots and timeouts), for the Altinn client's reads.
    pub(crate) fn http(&self) -> &http::HttpClient {
        &self.inner.http
    }

    /// How many exchanges were sent to Altinn since start.
    pub fn altinn_exchanges(&self) -> u64 {
        self.inner.exchanges.load(Ordering::Relaxed)
    }

    /// How many token requests were sent to Maskinporten since start.
    pub fn token_requests(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// How many entries the token cache holds.
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    async fn token(&self, who: Who<'_>, scopes: &[Scope]) -> Result<Arc<Token>, TokenError> {
        if scopes.is_empty() {
            return Err(TokenError::InvalidRequest {
                reason: "at least one scope is needed (Maskinporten requires scope)".into(),
            });
        }
        cached(&self.inner.cache, who, scopes, |p, s| self.fetch(p, s)).await
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
            digest: Default::default(),
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

/// The JWT of the exchange's answer: ASP.NET answers a string as text, or as a
/// JSON string when JSON is what the client accepts first. `None` unless it
/// has a JWT's shape (three base64url parts).
fn altinn_answer(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let jwt = if text.starts_with('"') {
        serde_json::from_str::<String>(text).ok()?
    } else {
        text.to_owned()
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let base64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (parts.len() == 3 && parts.iter().all(|p| base64url(p))).then_some(jwt)
}

/// Altinn's message in a refusal: a problem document's `detail` or `title`, a
/// JSON string, or the text; bounded and without control characters.
pub(crate) fn altinn_message(status: u16, body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => ["detail", "title", "error_description", "error"]
            .iter()
            .find_map(|k| o.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
            .unwrap_or_default(),
        Ok(serde_json::Value::String(s)) => s,
        _ => text.to_owned(),
    };
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX)
        .collect();
    let message = message.trim();
    if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("{message} (HTTP {status})")
    }
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

/// Who a token is asked for, borrowed from the caller: the cache's key is made
/// from it, and a [`Party`] (owned) only for a fetch.
#[derive(Clone, Copy)]
enum Who<'a> {
    Vendor,
    SystemUser {
        org: &'a OrgNumber,
        external_ref: Option<&'a str>,
    },
}

impl Who<'_> {
    fn party(self) -> Party {
        match self {
            Who::Vendor => Party::Vendor,
            Who::SystemUser { org, external_ref } => Party::SystemUser {
                org: org.clone(),
                external_ref: external_ref.map(str::to_owned),
            },
        }
    }
}

/// The cache's key for `who` and `scopes`: one text, the party's fields and
/// the scopes (sorted, deduplicated, space-joined) on lines of their own. No
/// field can hold a line break (an org number is digits, an externalRef has
/// no control character, a scope no space or control character), so two
/// different keys never read alike. Returns the joined scopes' place in it.
fn key_text(who: Who<'_>, scopes: &[Scope]) -> (String, usize) {
    let mut key = String::with_capacity(
        16 + scopes.iter().map(|s| s.as_str().len() + 1).sum::<usize>()
            + match who {
                Who::Vendor => 0,
                Who::SystemUser { org, external_ref } => {
                    org.as_str().len() + external_ref.map_or(0, str::len)
                }
            },
    );
    match who {
        Who::Vendor => key.push_str("vendor\n"),
        Who::SystemUser { org, external_ref } => {
            key.push_str("system user\n");
            key.push_str(org.as_str());
            match external_ref {
                Some(r) => {
                    key.push_str("\n+");
                    key.push_str(r);
                }
                None => key.push_str("\n-"),
            }
            key.push('\n');
        }
    }
    let at = key.len();
    if let [one] = scopes {
        key.push_str(one.as_str());
    } else {
        let mut sorted: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        for (i, s) in sorted.iter().enumerate() {
            if i > 0 {
                key.push(' ');
            }
            key.push_str(s);
        }
    }
    (key, at)
}

/// The token cached for `who` and `scopes` (sorted, deduplicated and
/// space-joined), else `fetch`'s for them. A hit is the cache's own token
/// (shared) and copies nothing of the party; only a miss makes the [`Party`]
/// and the joined scopes for the fetch.
async fn cached<F, Fut>(
    cache: &cache::TokenCache,
    who: Who<'_>,
    scopes: &[Scope],
    fetch: F,
) -> Result<Arc<Token>, TokenError>
where
    F: FnOnce(Party, String) -> Fut,
    Fut: std::future::Future<Output = Result<Token, TokenError>>,
{
    let (key, at) = key_text(who, scopes);
    cache
        .get_or_fetch(key.as_str(), || fetch(who.party(), key[at..].to_owned()))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` cache hits as `token` makes them, for a system user with an
    /// external ref and two scopes.
    #[inline(never)]
    fn probe_hits(rt: &tokio::runtime::Runtime, c: &cache::TokenCache, n: usize) -> usize {
        let scopes = [
            Scope::parse("altinn:instances.write").unwrap(),
            Scope::parse("altinn:instances.read").unwrap(),
        ];
        let org = types::OrgNumber::parse("991825827").unwrap();
        let mut bytes = 0;
        for _ in 0..n {
            let who = Who::SystemUser {
                org: &org,
                external_ref: Some("ref-1"),
            };
            let t = rt
                .block_on(cached(c, who, &scopes, |_, _| async {
                    Err(TokenError::unavailable("a hit was expected"))
                }))
                .unwrap();
            bytes += t.access_token.expose().len();
        }
        bytes
    }

    fn token_for_probe() -> Token {
        Token {
            access_token: types::AccessToken::new("x".repeat(1000)),
            expires_at: SystemTime::now() + Duration::from_secs(120),
            jti: Some("jti-1".into()),
            scope: "altinn:instances.read altinn:instances.write".into(),
            system_user_ids: vec!["su-1".into()],
            system_user_org: Some("991825827".into()),
            digest: Default::default(),
        }
    }

    /// A cached token is served from the cache every time (and the fixed
    /// workload `valgrind --tool=callgrind --toggle-collect='*probe_hits*'` counts).
    #[test]
    fn token_hit_probe() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let c = cache::TokenCache::new(10, Duration::from_secs(20));
        assert_eq!(probe_hits(&rt, &c, 0), 0);
        let org = types::OrgNumber::parse("991825827").unwrap();
        let who = Who::SystemUser {
            org: &org,
            external_ref: Some("ref-1"),
        };
        // The fetch is asked with the party and the sorted, joined scopes.
        let scopes = [
            Scope::parse("altinn:instances.write").unwrap(),
            Scope::parse("altinn:instances.read").unwrap(),
            Scope::parse("altinn:instances.read").unwrap(),
        ];
        let expected = Party::SystemUser {
            org: org.clone(),
            external_ref: Some("ref-1".into()),
        };
        let asked = rt
            .block_on(cached(&c, who, &scopes, |party, scope| async move {
                assert_eq!(party, expected);
                assert_eq!(scope, "altinn:instances.read altinn:instances.write");
                Ok(token_for_probe())
            }))
            .unwrap();
        assert_eq!(asked.jti.as_deref(), Some("jti-1"));
        assert_eq!(probe_hits(&rt, &c, 1000), 1000 * 1000);
    }

    /// Keys differ whenever the party or the scopes do, and not for the
    /// scopes' order or repeats.
    #[test]
    fn cache_keys_tell_parties_and_scopes_apart() {
        let org = types::OrgNumber::parse("991825827").unwrap();
        let other = types::OrgNumber::parse("310001015").unwrap();
        let s = |v: &[&str]| {
            v.iter()
                .map(|x| Scope::parse(x).unwrap())
                .collect::<Vec<_>>()
        };
        let su = |org, external_ref| Who::SystemUser { org, external_ref };
        let key = |who, scopes: &[Scope]| key_text(who, scopes).0;
        let ab = s(&["a:b", "c:d"]);
        assert_eq!(
            key(su(&org, None), &ab),
            key(su(&org, None), &s(&["c:d", "a:b", "c:d"]))
        );
        let keys = [
            key(Who::Vendor, &ab),
            key(su(&org, None), &ab),
            key(su(&org, Some("r")), &ab),
            key(su(&org, Some("r2")), &ab),
            key(su(&other, Some("r")), &ab),
            key(su(&org, Some("r")), &s(&["a:b"])),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let (k, at) = key_text(su(&org, Some("r")), &ab);
        assert_eq!(&k[at..], "a:b c:d");
    }

    /// A cached token's digest is its SHA-256, the same on every call.
    #[test]
    fn a_tokens_digest_is_its_sha256() {
        use sha2::Digest as _;
        let t = token_for_probe();
        let want: [u8; 32] = sha2::Sha256::digest("x".repeat(1000).as_bytes()).into();
        assert_eq!(t.digest(), want);
        assert_eq!(t.digest(), want);
        assert_eq!(t.clone().digest(), want);
    }

    #[test]
    fn the_exchange_answer_is_read_as_text_or_as_a_json_string() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2ln";
        assert_eq!(altinn_answer(jwt.as_bytes()).as_deref(), Some(jwt));
        assert_eq!(
            altinn_answer(format!("\"{jwt}\"\n").as_bytes()).as_deref(),
            Some(jwt)
        );
        for bad in [
            "",
            "<html>ok</html>",
            "a.b",
            "a.b.c.d",
            "\"a b.c.d\"",
            "a..c",
        ] {
            assert_eq!(altinn_answer(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn altinns_refusal_message_is_bounded_and_readable() {
        let problem = br#"{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.2","title":"Unauthorized","status":401}"#;
        assert_eq!(altinn_message(401, problem), "Unauthorized (HTTP 401)");
        assert_eq!(altinn_message(403, b""), "HTTP 403");
        assert_eq!(altinn_message(401, b"no\r\nway"), "no  way (HTTP 401)");
        assert!(altinn_message(401, &[b'x'; 5000]).len() < 220);
    }

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
