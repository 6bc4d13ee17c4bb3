//! The Maskinporten client's configuration, its checks (every bad field reported
//! at once, by name), and the signing key it loads: never logged, never printed.

use super::error::{ConfigError, FieldProblem};
use super::types::Scope;
use crate::problem::{line_at, toml_lines};
use jsonwebtoken::{Algorithm, EncodingKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// Maskinporten's production issuer.
pub const PRODUCTION_ISSUER: &str = "https://maskinporten.no/";
/// Maskinporten's test-environment issuer.
pub const TEST_ISSUER: &str = "https://test.maskinporten.no/";

/// Longest key or certificate file read, in bytes: a chain of a few certificates.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// Maskinporten refuses a grant whose `exp - iat` exceeds this.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(120);

/// Where the client's signing key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An RSA private key (PKCS#1 or PKCS#8 PEM) registered with Maskinporten
    /// under `kid`: the grant's header names the kid.
    Rsa { key_file: PathBuf, kid: String },
    /// A business certificate (virksomhetssertifikat): the chain's PEM file, leaf
    /// first, and the leaf's RSA private key. The grant's header carries the
    /// chain as `x5c`.
    Certificate {
        chain_file: PathBuf,
        key_file: PathBuf,
    },
}

impl std::fmt::Debug for KeySource {
    /// Paths and the kid only: they name the key, they are not it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rsa { key_file, kid } => f
                .debug_struct("Rsa")
                .field("key_file", key_file)
                .field("kid", kid)
                .finish(),
            Self::Certificate {
                chain_file,
                key_file,
            } => f
                .debug_struct("Certificate")
                .field("chain_file", chain_file)
                .field("key_file", key_file)
                .finish(),
        }
    }
}

/// The signing algorithm of the grant; Maskinporten takes these three only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GrantAlgorithm {
    #[default]
    Rs256,
    Rs384,
    Rs512,
}

impl GrantAlgorithm {
    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Rs384 => Algorithm::RS384,
            Self::Rs512 => Algorithm::RS512,
        }
    }
}

/// How Vakt talks to Maskinporten. Build with [`MaskinportenConfig::new`] and
/// change fields, or read `[maskinporten]` with [`MaskinportenConfig::from_toml`];
/// [`MaskinportenConfig::check`] says what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskinportenConfig {
    /// The issuer, e.g. [`TEST_ISSUER`]. Its metadata
    /// (`/.well-known/oauth-authorization-server`) names the token endpoint and
    /// the JWKS.
    pub issuer: String,
    /// The token endpoint; unset, it comes from the issuer's metadata.
    pub token_endpoint: Option<String>,
    /// The grant's `aud`; unset, the issuer (Maskinporten's rule).
    pub audience: Option<String>,
    /// The client id of Vakt's Maskinporten integration: the grant's `iss`.
    pub client_id: String,
    pub key: KeySource,
    pub algorithm: GrantAlgorithm,
    /// The grant's `exp - iat`; at most 120 s.
    pub assertion_lifetime: Duration,
    /// A PEM file of CA certificates trusted besides the built-in roots (a
    /// private Maskinporten stand-in, a TLS-inspecting proxy).
    pub extra_ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// The whole exchange: connect, TLS, request and answer.
    pub request_timeout: Duration,
    /// How many tokens the cache holds; the oldest entry goes first.
    pub cache_capacity: usize,
    /// A cached token is replaced when it has less than this left, so that a
    /// token handed out outlives the call it is for.
    pub refresh_before: Duration,
    /// How long the JWKS is trusted before it is fetched again.
    pub jwks_max_age: Duration,
    /// The shortest time between two JWKS fetches for an unknown `kid`, so that
    /// tokens with made-up kids cannot drive traffic to Maskinporten.
    pub jwks_min_refresh: Duration,
}

impl MaskinportenConfig {
    /// A configuration with the defaults: RS256, a 60 s grant, 2 s to connect
    /// and 10 s per exchange, 10 000 cached tokens refreshed 20 s before expiry,
    /// the JWKS kept a day and fetched for an unknown kid at most every 30 s.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>, key: KeySource) -> Self {
        Self {
            issuer: issuer.into(),
            token_endpoint: None,
            audience: None,
            client_id: client_id.into(),
            key,
            algorithm: GrantAlgorithm::Rs256,
            assertion_lifetime: Duration::from_secs(60),
            extra_ca_file: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            cache_capacity: 10_000,
            refresh_before: Duration::from_secs(20),
            jwks_max_age: Duration::from_secs(24 * 3600),
            jwks_min_refresh: Duration::from_secs(30),
        }
    }

    /// Checks every field, reads the key (and certificate) files and checks
    /// their permissions; reports all problems at once.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.checked().map(drop)
    }

    /// What [`check`](Self::check) finds, and on success the parts built from it.
    pub(crate) fn checked(&self) -> Result<Checked, ConfigError> {
        let mut problems = Vec::new();
        let mut bad =
            |field: &'static str, message: String| problems.push(FieldProblem { field, message });
        let issuer = check_url(&self.issuer).map_err(|m| bad("issuer", m)).ok();
        let token_endpoint = match &self.token_endpoint {
            None => None,
            Some(u) => check_url(u).map_err(|m| bad("token_endpoint", m)).ok(),
        };
        if let Some(aud) = &self.audience {
            if let Err(m) = check_text(aud) {
                bad("audience", m);
            }
        }
        if let Err(m) = check_text(&self.client_id) {
            bad("client_id", m);
        }
        if self.assertion_lifetime.is_zero() || self.assertion_lifetime > MAX_ASSERTION_LIFETIME {
            bad(
                "assertion_lifetime",
                format!(
                    "{:?} is not between 1 s and 120 s (Maskinporten refuses a longer grant)",
                    self.assertion_lifetime
                ),
            );
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("jwks_max_age", self.jwks_max_age),
        ] {
            if d.is_zero() {
                bad(field, "must be more than zero".into());
            }
        }
        // Tokens live about 120 s: refreshing more than a minute early would
        // fetch a new token for nearly every call.
        if self.refresh_before > Duration::from_secs(60) {
            bad(
                "refresh_before",
                format!(
                    "{:?} is more than 60 s; Maskinporten's tokens live about 120 s",
                    self.refresh_before
                ),
            );
        }
        if self.cache_capacity == 0 {
            bad("cache_capacity", "must be at least 1".into());
        }
        let extra_roots = match &self.extra_ca_file {
            None => Vec::new(),
            Some(path) => match read_certificates(path) {
                Ok(certs) => certs,
                Err(m) => {
                    bad("extra_ca_file", m);
                    Vec::new()
                }
            },
        };
        let signing = match &self.key {
            KeySource::Rsa { key_file, kid } => {
                if let Err(m) = check_text(kid) {
                    bad("key.kid", m);
                }
                match read_private_key(key_file) {
                    Ok(key) => Some(SigningKey {
                        key,
                        kid: Some(kid.clone()),
                        x5c: None,
                    }),
                    Err(m) => {
                        bad("key.key_file", m);
                        None
                    }
                }
            }
            KeySource::Certificate {
                chain_file,
                key_file,
            } => {
                let chain = read_certificates(chain_file)
                    .map_err(|m| bad("key.chain_file", m))
                    .ok();
                let key = read_private_key(key_file)
                    .map_err(|m| bad("key.key_file", m))
                    .ok();
                match (chain, key) {
                    (Some(chain), Some(key)) => match leaf_matches(&chain[0], &key) {
                        Ok(()) => Some(SigningKey {
                            key,
                            kid: None,
                            x5c: Some(chain.iter().map(|c| base64_std(c)).collect()),
                        }),
                        Err(m) => {
                            bad("key.chain_file", m);
                            None
                        }
                    },
                    _ => None,
                }
            }
        };
        match (problems.is_empty(), issuer, signing) {
            (true, Some(issuer), Some(signing)) => Ok(Checked {
                audience: self.audience.clone().unwrap_or_else(|| self.issuer.clone()),
                issuer,
                token_endpoint,
                signing,
                extra_roots,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Problems found while reading `[maskinporten]`, and the keys they were about.
struct Found {
    problems: Vec<(usize, String)>,
    /// Keys already reported: check()'s problems with them are not repeated.
    reported: Vec<&'static str>,
}

/// `[maskinporten]` of the configuration file, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskinportenTable {
    pub config: MaskinportenConfig,
    /// `[maskinporten.scopes]`: access package URN (a short name is read with
    /// the `urn:altinn:accesspackage:` prefix) → the scopes its tokens may carry.
    pub scopes: HashMap<String, Vec<Scope>>,
    /// The line of `[maskinporten]`.
    pub line: usize,
    /// The line of each `[maskinporten.scopes]` entry, by package URN, for
    /// problems found later (a package the schema does not know).
    pub scope_lines: HashMap<String, usize>,
}

/// The keys of `[maskinporten]`, for the hint on a misspelt one.
const TOML_KEYS: &[&str] = &[
    "issuer",
    "token_endpoint",
    "audience",
    "client_id",
    "key_file",
    "kid",
    "certificate_chain_file",
    "algorithm",
    "assertion_lifetime",
    "extra_ca_file",
    "connect_timeout",
    "request_timeout",
    "cache_capacity",
    "refresh_before",
    "jwks_max_age",
    "jwks_min_refresh",
    "scopes",
];

/// Most entries `[maskinporten.scopes]` may have, and most scopes per entry.
const MAX_SCOPE_ENTRIES: usize = 1024;
const MAX_SCOPES_PER_PACKAGE: usize = 64;

impl MaskinportenConfig {
    /// Reads `[maskinporten]` (and `[maskinporten.scopes]`) from a configuration
    /// file's text, other keys left alone; `None` when it has none. Every problem
    /// is reported, each as `file:line: maskinporten.key: what is wrong`,
    /// including [`check`](Self::check)'s (the key file's permissions among
    /// them), each on its key's line.
    pub fn from_toml(file: &str, text: &str) -> Result<Option<MaskinportenTable>, Vec<String>> {
        let top: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_at(text, s.start));
            vec![format!("{file}:{line}: {}", e.message().trim())]
        })?;
        let Some(value) = top.get("maskinporten") else {
            return Ok(None);
        };
        let lines = toml_lines(text);
        let table_line = lines.get("maskinporten").copied().unwrap_or(0);
        let line = |key: &str| {
            lines
                .get(&format!("maskinporten.{key}"))
                .copied()
                .unwrap_or(table_line)
        };
        let Some(table) = value.as_table() else {
            return Err(vec![format!(
                "{file}:{table_line}: maskinporten: must be a table ([maskinporten])"
            )]);
        };
        let mut found = Found {
            problems: Vec::new(),
            reported: Vec::new(),
        };
        let bad = |found: &mut Found, key: &'static str, what: String| {
            let l = line(key);
            found
                .problems
                .push((l, format!("{file}:{l}: maskinporten.{key}: {what}")));
            found.reported.push(key);
        };
        for key in table.keys() {
            if !TOML_KEYS.contains(&key.as_str()) {
                let hint = TOML_KEYS
                    .iter()
                    .map(|k| (strsim::levenshtein(key, k), *k))
                    .filter(|(d, k)| *d <= 3.max(k.len() / 4))
                    .min()
                    .map(|(_, k)| format!(" (did you mean {k:?}?)"))
                    .unwrap_or_default();
                let l = lines
                    .get(&format!("maskinporten.{key}"))
                    .copied()
                    .unwrap_or(table_line);
                found.problems.push((
                    l,
                    format!("{file}:{l}: maskinporten.{key}: unknown key{hint}"),
                ));
            }
        }
        let string = |found: &mut Found, key: &'static str| -> Option<String> {
            match table.get(key) {
                None => None,
                Some(toml::Value::String(s)) => Some(s.clone()),
                Some(v) => {
                    bad(
                        found,
                        key,
                        format!("must be a string, not {}", v.type_str()),
                    );
                    None
                }
            }
        };
        let issuer = string(&mut found, "issuer");
        let token_endpoint = string(&mut found, "token_endpoint");
        let audience = string(&mut found, "audience");
        let client_id = string(&mut found, "client_id");
        let key_file = string(&mut found, "key_file");
        let kid = string(&mut found, "kid");
        let chain_file = string(&mut found, "certificate_chain_file");
        let algorithm = string(&mut found, "algorithm");
        let extra_ca_file = string(&mut found, "extra_ca_file");
        let durations: Vec<(&'static str, Option<String>)> = [
            "assertion_lifetime",
            "connect_timeout",
            "request_timeout",
            "refresh_before",
            "jwks_max_age",
            "jwks_min_refresh",
        ]
        .into_iter()
        .map(|k| (k, string(&mut found, k)))
        .collect();
        for (key, v) in [
            ("issuer", &issuer),
            ("client_id", &client_id),
            ("key_file", &key_file),
        ] {
            if v.is_none() && !found.reported.contains(&key) {
                bad(&mut found, key, "is required".into());
            }
        }
        let key = match (chain_file, kid) {
            (Some(_), Some(_)) => {
                bad(
                    &mut found,
                    "kid",
                    "give kid (a key registered with Maskinporten) or certificate_chain_file (a business certificate, sent as x5c), not both".into()
                );
                None
            }
            (Some(chain), None) => Some(KeySource::Certificate {
                chain_file: chain.into(),
                key_file: key_file.clone().unwrap_or_default().into(),
            }),
            (None, Some(kid)) => Some(KeySource::Rsa {
                key_file: key_file.clone().unwrap_or_default().into(),
                kid,
            }),
            (None, None) => {
                if !found.reported.contains(&"kid") {
                    bad(
                        &mut found,
                        "kid",
                        "is required with key_file: the key id registered with Maskinporten (or give certificate_chain_file for a business certificate)".into()
                    );
                }
                None
            }
        };
        let mut config = MaskinportenConfig::new(
            issuer.unwrap_or_default(),
            client_id.unwrap_or_default(),
            key.unwrap_or_else(|| KeySource::Rsa {
                key_file: key_file.unwrap_or_default().into(),
                kid: "-".into(),
            }),
        );
        config.token_endpoint = token_endpoint;
        config.audience = audience;
        config.extra_ca_file = extra_ca_file.map(PathBuf::from);
        match algorithm.as_deref() {
            None | Some("RS256") => {}
            Some("RS384") => config.algorithm = GrantAlgorithm::Rs384,
            Some("RS512") => config.algorithm = GrantAlgorithm::Rs512,
            Some(a) => bad(
                &mut found,
                "algorithm",
                format!(
                    "{a:?} must be \"RS256\", \"RS384\" or \"RS512\" (Maskinporten takes no other)"
                ),
            ),
        }
        for (key, v) in durations {
            let Some(v) = v else { continue };
            let d = match humantime::parse_duration(&v) {
                Ok(d) => d,
                Err(e) => {
                    bad(
                        &mut found,
                        key,
                        format!("{v:?} is not a duration such as \"10s\": {e}"),
                    );
                    continue;
                }
            };
            match key {
                "assertion_lifetime" => config.assertion_lifetime = d,
                "connect_timeout" => config.connect_timeout = d,
                "request_timeout" => config.request_timeout = d,
                "refresh_before" => config.refresh_before = d,
                "jwks_max_age" => config.jwks_max_age = d,
                _ => config.jwks_min_refresh = d,
            }
        }
        match table.get("cache_capacity") {
            None => {}
            Some(toml::Value::Integer(n)) if *n >= 0 => {
                config.cache_capacity = usize::try_from(*n).unwrap_or(usize::MAX)
            }
            Some(v) => bad(
                &mut found,
                "cache_capacity",
                format!("{v} is not a number of tokens"),
            ),
        }
        let mut scopes = HashMap::new();
        let mut scope_lines = HashMap::new();
        match table.get("scopes") {
            None => {}
            Some(toml::Value::Table(t)) => {
                if t.len() > MAX_SCOPE_ENTRIES {
                    bad(
                        &mut found,
                        "scopes",
                        format!("has {} entries, more than {MAX_SCOPE_ENTRIES}", t.len()),
                    );
                }
                for (package, list) in t.iter().take(MAX_SCOPE_ENTRIES) {
                    let l = lines
                        .get(&format!("maskinporten.scopes.{package}"))
                        .copied()
                        .unwrap_or_else(|| line("scopes"));
                    let mut wrong = |what: String| {
                        found.problems.push((
                            l,
                            format!("{file}:{l}: maskinporten.scopes.{package}: {what}"),
                        ))
                    };
                    let urn = if package.starts_with(crate::rules::packages::URN_PREFIX) {
                        package.clone()
                    } else {
                        format!("{}{package}", crate::rules::packages::URN_PREFIX)
                    };
                    if urn.len() == crate::rules::packages::URN_PREFIX.len()
                        || urn.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        wrong("is not an access package (a URN or its short name)".into());
                        continue;
                    }
                    let Some(items) = list.as_array() else {
                        wrong(format!(
                            "must be a list of scopes, such as [\"altinn:instances.read\"], not {}",
                            list.type_str()
                        ));
                        continue;
                    };
                    if items.is_empty() || items.len() > MAX_SCOPES_PER_PACKAGE {
                        wrong(format!(
                            "must list 1 to {MAX_SCOPES_PER_PACKAGE} scopes (leave the package out to allow none)"
                        ));
                        continue;
                    }
                    let mut parsed = Vec::with_capacity(items.len());
                    for item in items {
                        match item.as_str().map(Scope::parse) {
                            Some(Ok(s)) => parsed.push(s),
                            Some(Err(e)) => wrong(e),
                            None => wrong(format!("{item} is not a scope (a string)")),
                        }
                    }
                    if scope_lines.insert(urn.clone(), l).is_some() {
                        wrong(format!(
                            "{urn} is given twice (as its URN and its short name)"
                        ));
                    }
                    scopes.insert(urn, parsed);
                }
            }
            Some(v) => bad(
                &mut found,
                "scopes",
                format!(
                    "must be a table of access package = [scopes] ([maskinporten.scopes]), not {}",
                    v.type_str()
                ),
            ),
        }
        // The checks of the values themselves, the key files' among them.
        if let Err(e) = config.check() {
            for p in e.problems {
                let key = match p.field {
                    "key.kid" => "kid",
                    "key.key_file" => "key_file",
                    "key.chain_file" => "certificate_chain_file",
                    f => f,
                };
                if !found.reported.contains(&key) {
                    let l = line(key);
                    found
                        .problems
                        .push((l, format!("{file}:{l}: maskinporten.{key}: {}", p.message)));
                }
            }
        }
        let mut problems = found.problems;
        if problems.is_empty() {
            Ok(Some(MaskinportenTable {
                config,
                scopes,
                line: table_line,
                scope_lines,
            }))
        } else {
            problems.sort();
            Err(problems.into_iter().map(|(_, p)| p).collect())
        }
    }
}

/// What a checked configuration yields.
pub(crate) struct Checked {
    pub issuer: Url,
    pub token_endpoint: Option<Url>,
    pub audience: String,
    pub signing: SigningKey,
    pub extra_roots: Vec<Vec<u8>>,
}

/// The client's private key and what the grant's header says about it.
pub(crate) struct SigningKey {
    pub key: EncodingKey,
    pub kid: Option<String>,
    /// The certificate chain, base64 (standard, padded) DER, leaf first.
    pub x5c: Option<Vec<String>>,
}

impl std::fmt::Debug for SigningKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("x5c_certificates", &self.x5c.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// An http(s) URL; plain http is accepted here and refused at use unless the
/// host is loopback (see `http::check_scheme`), so a test can use it.
fn check_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if super::http::is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{s:?} uses plain http; only https is allowed off loopback"
            ))
        }
        other => return Err(format!("{s:?} has scheme {other:?}; use https")),
    }
    if url.host().is_none() {
        return Err(format!("{s:?} names no host"));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "{s:?} must not carry a query, fragment or credentials"
        ));
    }
    Ok(url)
}

fn check_text(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 512 || s.chars().any(char::is_control) {
        return Err("must be at most 512 bytes without control characters".into());
    }
    Ok(())
}

fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(format!(
            "{shown}: {} bytes, more than a key file holds",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{shown}: {e}"))
}

/// Reads the RSA private key, refusing a file that more than its owner can read
/// (the decision-log key's rule): whoever reads it can act as every system user.
fn read_private_key(path: &Path) -> Result<EncodingKey, String> {
    let shown = path.display();
    let bytes = read_small(path)?;
    {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        if crate::decision_log::checkpoint::key_file_is_exposed(m.mode(), m.uid()) {
            return Err(format!(
                "{shown}: mode {:o} lets more than its owner read or change the key (chmod 600; a group may read it only when root owns the file)",
                m.mode() & 0o777
            ));
        }
    }
    // The library's message never quotes the key; ours names the file only.
    let key = EncodingKey::from_rsa_pem(&bytes)
        .map_err(|_| format!("{shown}: not an RSA private key in PEM (PKCS#1 or PKCS#8)"))?;
    // A key that cannot sign (a truncated one) fails here, not at the first call.
    jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256)
        .map_err(|_| format!("{shown}: the RSA key cannot be used to sign"))?;
    Ok(key)
}

/// Reads one or more PEM certificates as DER.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let shown = path.display();
    let bytes = read_small(path)?;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{shown}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{shown}: holds no certificate"));
    }
    Ok(certs)
}

/// Checks that the leaf certificate carries the private key's public half and is
/// within its validity, so a mismatched pair fails at start, not at Maskinporten.
fn leaf_matches(leaf: &[u8], key: &EncodingKey) -> Result<(), String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| format!("the first certificate does not parse: {e}"))?;
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = cert.public_key().parsed() else {
        return Err("the first certificate's key is not RSA".into());
    };
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, Algorithm::RS256)
        .map_err(|_| "the RSA key cannot be used to sign".to_owned())?;
    let jsonwebtoken::jwk::AlgorithmParameters::RSA(params) = &jwk.algorithm else {
        return Err("the key is not RSA".into());
    };
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|x| **x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    let n = base64_url_decode(&params.n);
    if strip(rsa.modulus) != strip(&n) {
        return Err(
            "the first certificate is not for key.key_file's key (put the leaf first)".into(),
        );
    }
    if !cert.validity().is_valid() {
        return Err(format!(
            "the certificate is not valid now (valid {} to {})",
            cert.validity().not_before,
            cert.validity().not_after
        ));
    }
    Ok(())
}

pub(crate) fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_default()
}
