//! The end-user system's identity provider: its employees' JWTs verified
//! against its JWKS (signature, issuer, audience, expiry), so that Envoy's
//! Check learns the employee from a valid login rather than a header anyone
//! can set.
//!
//! Checking never blocks: it is called on the request path from a sync trait.
//! The keys are those of the last fetch; a tokio task fetches them again every
//! `jwks_max_age` ([`IdentityProvider::start`]), and a token signed with a key
//! they do not hold starts a fetch in the background (at most one per
//! `min_refresh`) and is refused. Keys already held stay in use while a fetch
//! fails: they are public keys the identity provider published.

use super::error::{ConfigError, FieldProblem};
use super::http::{self, HttpClient};
use super::verify::{signing_keys, SigningKey};
use crate::problem::line_at;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use url::Url;

/// The claim that names the employee unless `employee_claim` says otherwise.
pub const DEFAULT_EMPLOYEE_CLAIM: &str = "sub";
/// How long fetched keys are used before they are fetched again, by default.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// The clock skew allowed on `exp` and `nbf`, by default.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The most `leeway` may be.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// The bounds of `jwks_max_age` in the configuration file.
pub const MIN_JWKS_MAX_AGE: Duration = Duration::from_secs(60);
pub const MAX_JWKS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Fetches started by unknown keys are at least this far apart, by default.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(10);
/// The longest token read; an employee's JWT is a few KB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The most audiences and the longest claim name the configuration may give.
const MAX_AUDIENCES: usize = 32;
const MAX_CLAIM_NAME: usize = 128;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature algorithms accepted. Never `none` or HMAC: a JWKS that holds
/// a symmetric key must not make a token anyone could sign.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// The keys `[identity_provider]` may have.
const TOML_KEYS: &[&str] = &[
    "issuer",
    "jwks_uri",
    "audiences",
    "employee_claim",
    "extra_ca_file",
    "jwks_max_age",
    "leeway",
];

/// `[identity_provider]` in the configuration file.
#[derive(Debug, Clone)]
pub struct IdentityProviderConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// Where its keys are (`jwks_uri` of its OpenID metadata).
    pub jwks_uri: String,
    /// Accepted `aud` values; a token must carry one of them.
    pub audiences: Vec<String>,
    /// The claim that holds the employee id (default `sub`).
    pub employee_claim: String,
    /// Extra CA certificates (PEM) for the JWKS endpoint.
    pub extra_ca_file: Option<PathBuf>,
    /// How long fetched keys are trusted before they are fetched again.
    pub jwks_max_age: Duration,
    /// Allowed clock skew for `exp` and `nbf`.
    pub leeway: Duration,
}

impl IdentityProviderConfig {
    /// A configuration with the defaults: `employee_claim = "sub"`, keys
    /// fetched hourly, 30 s leeway, no extra CA.
    pub fn new(
        issuer: impl Into<String>,
        jwks_uri: impl Into<String>,
        audiences: Vec<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_uri: jwks_uri.into(),
            audiences,
            employee_claim: DEFAULT_EMPLOYEE_CLAIM.into(),
            extra_ca_file: None,
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// Reads `[identity_provider]` from a configuration file's text; `None`
    /// when the file has none. Every problem is reported as
    /// `file:line: identity_provider.key: …`, on the key's own line (a missing
    /// key on the table's).
    pub fn from_toml(file: &str, text: &str) -> Result<Option<Self>, Vec<String>> {
        use toml::de::{DeTable, DeValue};
        let doc = DeTable::parse(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_at(text, s.start));
            vec![format!("{file}:{line}: {}", e.message().trim())]
        })?;
        let Some((name, section)) = doc
            .get_ref()
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == "identity_provider")
        else {
            return Ok(None);
        };
        let table_line = line_at(text, name.span().start);
        let DeValue::Table(table) = section.get_ref() else {
            return Err(vec![format!(
                "{file}:{table_line}: identity_provider: must be a table ([identity_provider])"
            )]);
        };
        let mut problems: Vec<(usize, String)> = Vec::new();
        let mut bad = |line: usize, key: &str, what: String| {
            problems.push((
                line,
                format!("{file}:{line}: identity_provider.{key}: {what}"),
            ));
        };
        let mut config = IdentityProviderConfig::new(String::new(), String::new(), Vec::new());
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in table.iter() {
            let key: &str = k.get_ref().as_ref();
            let line = line_at(text, k.span().start);
            let string = |v: &DeValue| match v {
                DeValue::String(s) => Ok(s.to_string()),
                other => Err(format!("must be a string, not {}", type_name(other))),
            };
            let duration =
                |v: &DeValue, min: Duration, max: Duration| -> Result<Duration, String> {
                    let s = string(v).map_err(|e| format!("{e} (a duration such as \"10m\")"))?;
                    let d = humantime::parse_duration(&s)
                        .map_err(|e| format!("{s:?} is not a duration such as \"10m\": {e}"))?;
                    if d < min || d > max {
                        return Err(format!(
                            "{s:?} is not between {} and {}",
                            humantime::format_duration(min),
                            humantime::format_duration(max)
                        ));
                    }
                    Ok(d)
                };
            let result: Result<(), String> = match key {
                "issuer" => string(v.get_ref()).and_then(|s| {
                    check_text(&s)?;
                    config.issuer = s;
                    Ok(())
                }),
                "jwks_uri" => string(v.get_ref()).and_then(|s| {
                    check_url(&s)?;
                    config.jwks_uri = s;
                    Ok(())
                }),
                "audiences" => match v.get_ref() {
                    DeValue::Array(items) => {
                        let mut list = Vec::new();
                        let mut err = None;
                        for (i, item) in items.iter().enumerate() {
                            match string(item.get_ref()).and_then(|s| check_text(&s).map(|()| s)) {
                                Ok(s) => list.push(s),
                                Err(e) => {
                                    err.get_or_insert(format!("[{i}]: {e}"));
                                }
                            }
                        }
                        match err {
                            Some(e) => Err(e),
                            None if list.is_empty() => {
                                Err("must name at least one audience".into())
                            }
                            None if list.len() > MAX_AUDIENCES => {
                                Err(format!("names more than {MAX_AUDIENCES} audiences"))
                            }
                            None => {
                                config.audiences = list;
                                Ok(())
                            }
                        }
                    }
                    other => Err(format!(
                        "must be a list of strings (audiences = [\"…\"]), not {}",
                        type_name(other)
                    )),
                },
                "employee_claim" => string(v.get_ref()).and_then(|s| {
                    check_claim_name(&s)?;
                    config.employee_claim = s;
                    Ok(())
                }),
                "extra_ca_file" => string(v.get_ref()).and_then(|s| {
                    let path = PathBuf::from(&s);
                    super::config::read_certificates(&path)?;
                    config.extra_ca_file = Some(path);
                    Ok(())
                }),
                "jwks_max_age" => duration(v.get_ref(), MIN_JWKS_MAX_AGE, MAX_JWKS_MAX_AGE)
                    .map(|d| config.jwks_max_age = d),
                "leeway" => {
                    duration(v.get_ref(), Duration::ZERO, MAX_LEEWAY).map(|d| config.leeway = d)
                }
                _ => {
                    let hint = TOML_KEYS
                        .iter()
                        .map(|k| (strsim::levenshtein(key, k), *k))
                        .filter(|(d, k)| *d <= 3.max(k.len() / 4))
                        .min()
                        .map(|(_, k)| format!(" (did you mean {k:?}?)"))
                        .unwrap_or_default();
                    Err(format!("unknown key{hint}"))
                }
            };
            match result {
                Ok(()) => seen.push(TOML_KEYS.iter().find(|k| **k == key).copied().unwrap_or("")),
                Err(e) => {
                    seen.push(TOML_KEYS.iter().find(|k| **k == key).copied().unwrap_or(""));
                    bad(line, key, e);
                }
            }
        }
        for required in ["issuer", "jwks_uri", "audiences"] {
            if !seen.contains(&required) {
                bad(table_line, required, "is required".into());
            }
        }
        if problems.is_empty() {
            Ok(Some(config))
        } else {
            problems.sort_by_key(|(l, _)| *l);
            Err(problems.into_iter().map(|(_, p)| p).collect())
        }
    }

    /// Every problem of this configuration, each with its field.
    fn problems(&self) -> (Vec<FieldProblem>, Option<Url>, Vec<Vec<u8>>) {
        let mut problems = Vec::new();
        let mut bad =
            |field: &'static str, message: String| problems.push(FieldProblem { field, message });
        if let Err(e) = check_text(&self.issuer) {
            bad("issuer", e);
        }
        let url = match check_url(&self.jwks_uri) {
            Ok(u) => Some(u),
            Err(e) => {
                bad("jwks_uri", e);
                None
            }
        };
        if self.audiences.is_empty() {
            bad("audiences", "must name at least one audience".into());
        } else if self.audiences.len() > MAX_AUDIENCES {
            bad(
                "audiences",
                format!("names more than {MAX_AUDIENCES} audiences"),
            );
        }
        for a in &self.audiences {
            if let Err(e) = check_text(a) {
                bad("audiences", e);
            }
        }
        if let Err(e) = check_claim_name(&self.employee_claim) {
            bad("employee_claim", e);
        }
        if self.jwks_max_age.is_zero() {
            bad("jwks_max_age", "must be more than zero".into());
        }
        if self.leeway > MAX_LEEWAY {
            bad(
                "leeway",
                format!("must be at most {}", humantime::format_duration(MAX_LEEWAY)),
            );
        }
        let roots = match &self.extra_ca_file {
            None => Vec::new(),
            Some(path) => match super::config::read_certificates(path) {
                Ok(r) => r,
                Err(e) => {
                    bad("extra_ca_file", e);
                    Vec::new()
                }
            },
        };
        (problems, url, roots)
    }
}

fn type_name(v: &toml::de::DeValue) -> &'static str {
    use toml::de::DeValue as V;
    match v {
        V::String(_) => "a string",
        V::Integer(_) => "an integer",
        V::Float(_) => "a float",
        V::Boolean(_) => "a boolean",
        V::Datetime(_) => "a datetime",
        V::Array(_) => "an array",
        V::Table(_) => "a table",
    }
}

fn check_text(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 1024 || s.chars().any(char::is_control) {
        return Err("must be at most 1024 bytes without control characters".into());
    }
    Ok(())
}

fn check_claim_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_CLAIM_NAME || s.chars().any(char::is_control) {
        return Err(format!(
            "must be a claim name of 1 to {MAX_CLAIM_NAME} bytes without control characters"
        ));
    }
    Ok(())
}

fn check_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if http::is_loopback(&url) => Ok(url),
        _ => Err(format!("{s:?} must be https (plain http only to loopback)")),
    }
}

/// The keys of the last fetch and how the last fetch went.
#[derive(Default)]
struct Keys {
    keys: HashMap<String, SigningKey>,
    fetched: Option<Instant>,
    last_error: Option<String>,
}

struct Inner {
    config: IdentityProviderConfig,
    jwks_uri: Url,
    http: HttpClient,
    keys: RwLock<Keys>,
    /// A background fetch is under way.
    refreshing: AtomicBool,
    last_attempt: Mutex<Option<Instant>>,
    min_refresh_ms: AtomicU64,
    fetches: AtomicU64,
}

/// A verifier of the identity provider's JWTs. Cheap to clone; clones share
/// the keys.
#[derive(Clone)]
pub struct IdentityProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("issuer", &self.inner.config.issuer)
            .field("jwks_uri", &self.inner.config.jwks_uri)
            .finish_non_exhaustive()
    }
}

/// Clears the "fetch under way" flag however the fetch ends.
struct Refreshing(Arc<Inner>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::Release);
    }
}

impl IdentityProvider {
    /// Builds the verifier (nothing is fetched until it is needed, or
    /// `refresh` is called). All problems of the configuration are reported
    /// together, each [`FieldProblem::field`] a key of `[identity_provider]`
    /// (`jwks_uri`); [`ConfigError`]'s own Display speaks of Maskinporten, so
    /// callers print the problems with their table.
    pub fn new(config: IdentityProviderConfig) -> Result<Self, ConfigError> {
        let (mut problems, url, roots) = config.problems();
        let http = match HttpClient::new(&roots, CONNECT_TIMEOUT, REQUEST_TIMEOUT) {
            Ok(h) => Some(h),
            Err(message) => {
                problems.push(FieldProblem {
                    field: "extra_ca_file",
                    message,
                });
                None
            }
        };
        let (Some(jwks_uri), Some(http), true) = (url, http, problems.is_empty()) else {
            return Err(ConfigError { problems });
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                jwks_uri,
                http,
                keys: RwLock::default(),
                refreshing: AtomicBool::new(false),
                last_attempt: Mutex::new(None),
                min_refresh_ms: AtomicU64::new(DEFAULT_MIN_REFRESH.as_millis() as u64),
                fetches: AtomicU64::new(0),
            }),
        })
    }

    /// Sets how far apart fetches started by unknown keys (or by a failed
    /// fetch) are at least; 10 s unless set.
    pub fn with_min_refresh(self, d: Duration) -> Self {
        self.inner.min_refresh_ms.store(
            d.as_millis().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
        self
    }

    /// The configuration it verifies with.
    pub fn config(&self) -> &IdentityProviderConfig {
        &self.inner.config
    }

    /// How many JWKS fetches were started since it was built.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Whether keys from a fetch are held (tokens can be verified).
    pub fn has_keys(&self) -> bool {
        self.read_keys().fetched.is_some()
    }

    fn min_refresh(&self) -> Duration {
        Duration::from_millis(self.inner.min_refresh_ms.load(Ordering::Relaxed))
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        // A poisoned lock only means a panic elsewhere mid-write; the keys
        // are still a whole map (they are replaced, never edited).
        self.inner.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches the keys now and keeps them; on failure the keys held stay and
    /// the reason is kept for the refusals. The number of keys fetched.
    pub async fn refresh(&self) -> Result<usize, String> {
        let inner = &*self.inner;
        *inner.last_attempt.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        inner.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match inner.http.get(&inner.jwks_uri).await {
            Err(e) => Err(e),
            Ok(a) if a.status != 200 => Err(format!("the JWKS answered HTTP {}", a.status)),
            Ok(a) => signing_keys(&a.body, true).and_then(|keys| {
                if keys.is_empty() {
                    Err("the JWKS holds no RSA or EC signing key with a kid".into())
                } else {
                    Ok(keys)
                }
            }),
        };
        let mut held = inner.keys.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(keys) => {
                let n = keys.len();
                held.keys = keys;
                held.fetched = Some(Instant::now());
                held.last_error = None;
                drop(held);
                tracing::info!(keys = n, issuer = %inner.config.issuer, "identity provider keys fetched");
                Ok(n)
            }
            Err(reason) => {
                held.last_error = Some(reason.clone());
                drop(held);
                tracing::warn!(%reason, issuer = %inner.config.issuer, "identity provider keys could not be fetched");
                Err(reason)
            }
        }
    }

    /// Starts the task that keeps the keys fresh: a fetch now (unless keys
    /// younger than `jwks_max_age` are held), again every `jwks_max_age`, and
    /// after a failure every `min_refresh`. The task ends when the last clone
    /// of this verifier is dropped. Call it inside the tokio runtime.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let idp = IdentityProvider { inner };
                let wait = idp.next_fetch_in();
                drop(idp);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let idp = IdentityProvider { inner };
                if idp.next_fetch_in().is_zero() {
                    let _ = idp.refresh().await;
                }
            }
        })
    }

    /// How long until the keys are due to be fetched again.
    fn next_fetch_in(&self) -> Duration {
        let keys = self.read_keys();
        let last_attempt = *self
            .inner
            .last_attempt
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due_after = |since: Instant, wait: Duration| wait.saturating_sub(since.elapsed());
        match (keys.fetched, &keys.last_error, last_attempt) {
            (_, Some(_), Some(at)) => due_after(at, self.min_refresh().max(Duration::from_secs(1))),
            (Some(at), None, _) => due_after(at, self.inner.config.jwks_max_age),
            _ => Duration::ZERO,
        }
    }

    /// Starts a fetch in the background unless one is under way or the last
    /// one started less than `min_refresh` ago. Outside a tokio runtime it
    /// does nothing.
    fn refresh_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut last = self
                .inner
                .last_attempt
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.min_refresh()) {
                return;
            }
            if self.inner.refreshing.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let guard = Refreshing(self.inner.clone());
        let idp = self.clone();
        runtime.spawn(async move {
            let _guard = guard;
            let _ = idp.refresh().await;
        });
    }

    /// The employee the token names, or why it is refused. Never blocks: keys
    /// come from the last fetch, and an unknown `kid` starts a fetch in the
    /// background and refuses this token.
    ///
    /// Checked: the signature (RS256/384/512, PS256/384/512, ES256/384; the
    /// key named by `kid`), `iss`, one of the audiences in `aud`, `exp` and
    /// `nbf` with the leeway, and the employee claim: a string that is a valid
    /// id. A `Bearer ` prefix is allowed.
    pub fn employee(&self, jwt: &str) -> Result<String, String> {
        let jwt = jwt.trim();
        let jwt = match jwt.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("bearer ") => jwt[7..].trim_start(),
            _ => jwt,
        };
        if jwt.is_empty() {
            return Err("no employee token was given".into());
        }
        if jwt.len() > MAX_TOKEN_BYTES {
            return Err(format!(
                "the employee's token is longer than {MAX_TOKEN_BYTES} bytes"
            ));
        }
        let header = jsonwebtoken::decode_header(jwt)
            .map_err(|e| format!("the employee's token is not a signed JWT: {e}"))?;
        let alg = header.alg;
        if !ALGORITHMS.contains(&alg) {
            return Err(format!(
                "the employee's token is signed with {alg:?}, which is not accepted (RS256/384/512, PS256/384/512, ES256/384)"
            ));
        }
        let kid = header
            .kid
            .ok_or("the employee's token names no key id (kid)")?;
        let keys = self.read_keys();
        if keys.fetched.is_none() {
            let why = match &keys.last_error {
                Some(e) => format!("the identity provider's keys could not be fetched yet: {e}"),
                None => "the identity provider's keys are not fetched yet".to_owned(),
            };
            drop(keys);
            self.refresh_in_background();
            return Err(why);
        }
        if keys
            .fetched
            .is_some_and(|t| t.elapsed() > self.inner.config.jwks_max_age)
        {
            // Still used while the new ones come: they are public keys the
            // identity provider published.
            self.refresh_in_background();
        }
        let Some(key) = keys.keys.get(&kid) else {
            drop(keys);
            self.refresh_in_background();
            return Err(format!(
                "the employee's token was signed with key {}, which the identity provider's keys do not hold (they are being fetched again)",
                shown(&kid)
            ));
        };
        if let Some(named) = key.alg {
            if format!("{named:?}") != format!("{alg:?}") {
                return Err(format!(
                    "the employee's token says {alg:?}, but key {} is for {named:?}",
                    shown(&kid)
                ));
            }
        }
        let c = &self.inner.config;
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_issuer(&[&c.issuer]);
        validation.set_audience(&c.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = c.leeway.as_secs();
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(jwt, &key.key, &validation)
                .map_err(|e| refusal(&e, jwt, &kid, alg, c))?;
        drop(keys);
        match data.claims.get(&c.employee_claim) {
            None => Err(format!(
                "the employee's token has no {} claim",
                c.employee_claim
            )),
            Some(Value::String(s)) => match crate::ids::check_id(s) {
                Ok(()) => Ok(s.clone()),
                Err(e) => Err(format!(
                    "the employee's token's {} claim is not a usable employee id: {e}",
                    c.employee_claim
                )),
            },
            Some(_) => Err(format!(
                "the employee's token's {} claim is not a string",
                c.employee_claim
            )),
        }
    }
}

/// A value from the token, for a reason: quoted, escaped and short.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Why `jsonwebtoken` refused the token, in words.
fn refusal(
    e: &jsonwebtoken::errors::Error,
    jwt: &str,
    kid: &str,
    alg: Algorithm,
    c: &IdentityProviderConfig,
) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    let claim = |name: &str| {
        jsonwebtoken::dangerous::insecure_decode_claims::<Value>(jwt)
            .ok()
            .and_then(|v| v.get(name).cloned())
            .map(|v| match v {
                Value::String(s) => shown(&s),
                other => shown(&other.to_string()),
            })
            .unwrap_or_else(|| "nothing".into())
    };
    match e.kind() {
        K::InvalidSignature => {
            "the employee's token's signature does not hold: it was forged or changed".into()
        }
        K::ExpiredSignature => "the employee's token has expired".into(),
        K::ImmatureSignature => "the employee's token is not valid yet (nbf)".into(),
        K::InvalidIssuer => format!(
            "the employee's token was issued by {}, not by {:?}",
            claim("iss"),
            c.issuer
        ),
        K::InvalidAudience => format!(
            "the employee's token is for audience {}, not one of {:?}",
            claim("aud"),
            c.audiences
        ),
        K::MissingRequiredClaim(name) => format!("the employee's token has no {name} claim"),
        K::InvalidAlgorithm => format!(
            "the employee's token says {alg:?}, which key {} is not for",
            shown(kid)
        ),
        _ => format!("the employee's token cannot be read: {e}"),
    }
}
