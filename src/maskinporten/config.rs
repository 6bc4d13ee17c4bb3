//! The Maskinporten client's configuration, its checks (every bad field reported
//! at once, by name), and the signing key it loads: never logged, never printed.

use super::error::{ConfigError, FieldProblem};
use jsonwebtoken::{Algorithm, EncodingKey};
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
/// change fields; [`MaskinportenConfig::check`] says what is wrong with it.
#[derive(Debug, Clone)]
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
