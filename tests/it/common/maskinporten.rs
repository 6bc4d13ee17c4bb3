//! A Maskinporten stand-in that speaks the real protocol on 127.0.0.1:0: RFC 8414
//! metadata, a JWKS, and a `/token` that enforces the JWT-grant rules (algorithm,
//! key, audience, issuer, clock skew, lifetime, `jti` replay, scope,
//! `authorization_details` against its fixtures) with Maskinporten's error JSON;
//! plus an Altinn stand-in check that accepts only tokens from its JWKS, and
//! `serve_http`, the plain-http server the other stand-ins (altinn.rs, idp.rs)
//! are built on.
//!
//! MP codes: MP-012 (reused grant) and MP-303 (wrong `systemuser_org`) are
//! Maskinporten's; the others are the stand-in's own picks within the documented
//! ranges (MP-1xx invalid grant, MP-2xx scope).

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use vakt::maskinporten::{KeySource, MaskinportenConfig};

pub const CLIENT_ID: &str = "vakt-test-client";
pub const CLIENT_KID: &str = "vakt-key-1";
/// The vendor's own org number (the client's `consumer`).
pub const VENDOR_ORG: &str = "310000000";
/// A customer with one system user for Vakt's system (default externalRef).
pub const CUSTOMER_ORG: &str = "991825827";
pub const CUSTOMER_SYSTEM_USER: &str = "a1f5c2e0-0000-4000-8000-000000000001";
/// A customer with two system users, told apart by externalRef.
pub const AGENCY_ORG: &str = "310000019";
pub const AGENCY_SYSTEM_USER_A: &str = "a1f5c2e0-0000-4000-8000-00000000000a";
pub const AGENCY_SYSTEM_USER_B: &str = "a1f5c2e0-0000-4000-8000-00000000000b";
/// An org with no system user for Vakt's system.
pub const STRANGER_ORG: &str = "310000027";
pub const SCOPE: &str = "altinn:instances.read";
pub const SCOPE_2: &str = "altinn:instances.write";
pub const VENDOR_SCOPE: &str = "altinn:authentication/systemregister.write";
const STANDIN_KID: &str = "standin-signing-1";

/// An RSA key made for the tests.
pub struct RsaKey {
    pub pkcs8_pem: String,
    pub encoding: EncodingKey,
}

impl RsaKey {
    /// Its public half as a JWK under `kid`.
    pub fn jwk(&self, kid: &str) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, Algorithm::RS256).expect("RSA JWK");
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    }
}

/// Makes a 2048-bit RSA key (aws-lc-rs; rcgen's ring backend cannot).
fn generate_rsa() -> RsaKey {
    use aws_lc_rs::encoding::AsDer as _;
    let kp =
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA keygen");
    let der = kp.as_der().expect("PKCS#8");
    let pkcs8_pem = pem("PRIVATE KEY", der.as_ref());
    let encoding = EncodingKey::from_rsa_pem(pkcs8_pem.as_bytes()).expect("RSA PEM");
    RsaKey {
        pkcs8_pem,
        encoding,
    }
}

/// Keys made once per test process: RSA generation is slow in a debug build.
/// 0: the stand-in's signing key; 1: the client's key; 2: a stranger's key;
/// 3: the Altinn stand-in's; 4 and 5: the identity-provider stand-in's.
pub fn key(i: usize) -> &'static RsaKey {
    static KEYS: OnceLock<Vec<RsaKey>> = OnceLock::new();
    &KEYS.get_or_init(|| (0..6).map(|_| generate_rsa()).collect())[i]
}

pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes `text` to `dir/name` with mode 0600, as a key file should be.
pub fn write_private(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Accepts connections and closes them at once.
    Refuse,
    /// Answers every request 503.
    Unavailable,
}

/// A registered client key.
pub enum ClientKey {
    Jwk(Box<Jwk>),
    /// A business certificate's leaf, DER.
    Certificate(Vec<u8>),
}

struct Client {
    org: String,
    keys: HashMap<String, DecodingKey>,
    certificates: Vec<Vec<u8>>,
    scopes: HashSet<String>,
}

/// A system user in the stand-in's fixtures.
#[derive(Clone)]
pub struct Fixture {
    pub org: String,
    /// The externalRef it was created with (the org number when none was).
    pub external_ref: String,
    pub system_user_id: String,
    pub system_id: Option<String>,
}

struct State {
    issuer: String,
    mode: Mutex<Mode>,
    clients: Mutex<HashMap<String, Client>>,
    fixtures: Mutex<Vec<Fixture>>,
    seen_jti: Mutex<HashSet<String>>,
    token_hits: AtomicUsize,
    token_lifetime: AtomicU64,
    /// Delay before each /token answer, to widen races.
    token_delay_ms: AtomicU64,
    /// The header and claims of the last grant accepted.
    last_grant: Mutex<Option<(Value, Value)>>,
    /// Sign tokens with the stranger's key under the stand-in's kid: an
    /// impostor's tokens, which no one trusting the JWKS accepts.
    forge: std::sync::atomic::AtomicBool,
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    pub addr: SocketAddr,
    /// Its issuer: `http://127.0.0.1:PORT/`, or `https://…` with TLS.
    pub issuer: String,
    /// The PEM file of the CA its TLS certificate chains to (TLS only).
    pub ca_file: Option<PathBuf>,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl StandIn {
    /// Plain http on 127.0.0.1, with the standard client and fixtures.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// HTTPS on 127.0.0.1 with a certificate from a CA made here, written to
    /// `dir/standin-ca.pem`.
    pub async fn start_tls(dir: &Path) -> Self {
        Self::start_with(Some(dir)).await
    }

    async fn start_with(tls_dir: Option<&Path>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (acceptor, ca_file) = match tls_dir {
            None => (None, None),
            Some(dir) => {
                let (acceptor, ca_pem) = tls_acceptor();
                let ca_file = dir.join("standin-ca.pem");
                std::fs::write(&ca_file, ca_pem).unwrap();
                (Some(acceptor), Some(ca_file))
            }
        };
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let issuer = format!("{scheme}://127.0.0.1:{}/", addr.port());
        let state = Arc::new(State {
            issuer: issuer.clone(),
            mode: Mutex::new(Mode::Up),
            clients: Mutex::default(),
            fixtures: Mutex::default(),
            seen_jti: Mutex::default(),
            token_hits: AtomicUsize::new(0),
            token_lifetime: AtomicU64::new(120),
            token_delay_ms: AtomicU64::new(0),
            last_grant: Mutex::default(),
            forge: Default::default(),
        });
        let (stop, mut stopped) = oneshot::channel::<()>();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut stopped => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                if *st.mode.lock().unwrap() == Mode::Refuse {
                    drop(tcp);
                    continue;
                }
                let st = st.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&st, req).await) }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        let s = Self {
            addr,
            issuer,
            ca_file,
            state,
            stop: Some(stop),
        };
        s.register_client(
            CLIENT_ID,
            VENDOR_ORG,
            ClientKey::Jwk(Box::new(key(1).jwk(CLIENT_KID))),
            &[SCOPE, SCOPE_2, VENDOR_SCOPE],
        );
        s.add_fixture(
            CUSTOMER_ORG,
            None,
            CUSTOMER_SYSTEM_USER,
            Some("vakt_test_system"),
        );
        s.add_fixture(
            AGENCY_ORG,
            Some("team-a"),
            AGENCY_SYSTEM_USER_A,
            Some("vakt_test_system"),
        );
        // A kind of system user without system_id, which a token may carry.
        s.add_fixture(AGENCY_ORG, Some("team-b"), AGENCY_SYSTEM_USER_B, None);
        s
    }

    /// Registers a client (or adds a key to one).
    pub fn register_client(&self, client_id: &str, org: &str, key: ClientKey, scopes: &[&str]) {
        let mut clients = self.state.clients.lock().unwrap();
        let c = clients
            .entry(client_id.to_owned())
            .or_insert_with(|| Client {
                org: org.to_owned(),
                keys: HashMap::new(),
                certificates: Vec::new(),
                scopes: HashSet::new(),
            });
        c.scopes.extend(scopes.iter().map(|s| s.to_string()));
        match key {
            ClientKey::Jwk(jwk) => {
                let kid = jwk.common.key_id.clone().expect("kid");
                c.keys.insert(kid, DecodingKey::from_jwk(&jwk).unwrap());
            }
            ClientKey::Certificate(der) => c.certificates.push(der),
        }
    }

    pub fn add_fixture(
        &self,
        org: &str,
        external_ref: Option<&str>,
        id: &str,
        system_id: Option<&str>,
    ) {
        self.state.fixtures.lock().unwrap().push(Fixture {
            org: org.to_owned(),
            external_ref: external_ref.unwrap_or(org).to_owned(),
            system_user_id: id.to_owned(),
            system_id: system_id.map(str::to_owned),
        });
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// The `expires_in` (and `exp - iat`) of tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.state.token_lifetime.store(secs, Ordering::SeqCst);
    }

    /// From now on, issue forged tokens (the stranger's key, the stand-in's kid).
    pub fn set_forge(&self, on: bool) {
        self.state.forge.store(on, Ordering::SeqCst);
    }

    pub fn set_token_delay(&self, d: Duration) {
        self.state
            .token_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many requests reached /token.
    pub fn token_hits(&self) -> usize {
        self.state.token_hits.load(Ordering::SeqCst)
    }

    /// The header and claims of the last grant /token accepted.
    pub fn last_grant(&self) -> Option<(Value, Value)> {
        self.state.last_grant.lock().unwrap().clone()
    }

    /// A client configuration for this stand-in with the standard client's key
    /// written (0600) into `dir`.
    pub fn config(&self, dir: &Path) -> MaskinportenConfig {
        let key_file = write_private(dir, "client.key", &key(1).pkcs8_pem);
        let mut c = MaskinportenConfig::new(
            self.issuer.clone(),
            CLIENT_ID,
            KeySource::Rsa {
                key_file,
                kid: CLIENT_KID.into(),
            },
        );
        c.extra_ca_file = self.ca_file.clone();
        c.connect_timeout = Duration::from_secs(2);
        c.request_timeout = Duration::from_secs(5);
        c.jwks_min_refresh = Duration::from_millis(200);
        c
    }

    /// Signs `claims` as the stand-in would sign a token (for expired or
    /// wrong-issuer tokens in tests).
    pub fn sign_token(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(STANDIN_KID.into());
        jsonwebtoken::encode(&h, claims, &key(0).encoding).unwrap()
    }

    /// The JWKS it publishes at `/jwk`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![key(0).jwk(STANDIN_KID)],
        }
    }

    /// The Altinn stand-in: accepts a bearer token only if the stand-in's JWKS
    /// key signed it, for its issuer, unexpired; answers its claims.
    pub fn altinn_accepts(&self, bearer: &str) -> Result<Value, String> {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[&self.issuer]);
        v.validate_aud = false;
        v.leeway = 0;
        let header = jsonwebtoken::decode_header(bearer).map_err(|e| e.to_string())?;
        if header.kid.as_deref() != Some(STANDIN_KID) {
            return Err("unknown kid".into());
        }
        let key = DecodingKey::from_jwk(&key(0).jwk(STANDIN_KID)).unwrap();
        jsonwebtoken::decode::<Value>(bearer, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }
}

/// A plain-http server on 127.0.0.1:0 answering with `handle`, for the other
/// stand-ins; `mode` is read for each connection and request as the
/// Maskinporten stand-in's is. Stops when the returned sender is dropped.
pub async fn serve_http<H, Fut>(
    mode: Arc<Mutex<Mode>>,
    handle: H,
) -> (SocketAddr, oneshot::Sender<()>)
where
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = &mut stopped => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            if *mode.lock().unwrap() == Mode::Refuse {
                drop(tcp);
                continue;
            }
            let handle = handle.clone();
            let mode = mode.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let handle = handle.clone();
                    let mode = mode.clone();
                    async move {
                        if *mode.lock().unwrap() == Mode::Unavailable {
                            return Ok::<_, std::convert::Infallible>(json_response(
                                503,
                                json!({"title": "Service Unavailable", "status": 503}),
                            ));
                        }
                        Ok(handle(req).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, stop)
}

/// A TLS acceptor for 127.0.0.1 and the PEM of its CA.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem())
}

pub fn json_response(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn oauth_error(error: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(
        400,
        json!({"error": error, "error_description": description}),
    )
}

async fn handle(st: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if *st.mode.lock().unwrap() == Mode::Unavailable {
        return json_response(503, json!({"error": "temporarily_unavailable"}));
    }
    let base = st.issuer.trim_end_matches('/');
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/.well-known/oauth-authorization-server") => json_response(
            200,
            json!({
                "issuer": st.issuer,
                "token_endpoint": format!("{base}/token"),
                "jwks_uri": format!("{base}/jwk"),
                "grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "RS512"],
            }),
        ),
        ("GET", "/jwk") => {
            let set = JwkSet {
                keys: vec![key(0).jwk(STANDIN_KID)],
            };
            json_response(200, serde_json::to_value(set).unwrap())
        }
        ("POST", "/token") => {
            st.token_hits.fetch_add(1, Ordering::SeqCst);
            let delay = st.token_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let form_ok = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            let Ok(body) = Limited::new(req.into_body(), 64 * 1024).collect().await else {
                return oauth_error("invalid_request", "body too large");
            };
            if !form_ok {
                return oauth_error("invalid_request", "not a form");
            }
            match token(st, &body.to_bytes()) {
                Ok(v) => json_response(200, v),
                Err((error, description)) => oauth_error(error, &description),
            }
        }
        _ => json_response(404, json!({"error": "not_found"})),
    }
}

type Refusal = (&'static str, String);

fn bad(error: &'static str, description: impl Into<String>) -> Refusal {
    (error, description.into())
}

/// The /token rules, in Maskinporten's order: form, grant header, client key,
/// claims, replay, scope, system user.
fn token(st: &State, body: &[u8]) -> Result<Value, Refusal> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return Err(bad(
            "unsupported_grant_type",
            "grant_type must be jwt-bearer",
        ));
    }
    let assertion = form
        .get("assertion")
        .ok_or_else(|| bad("invalid_request", "no assertion"))?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| {
        bad(
            "invalid_request",
            "Invalid assertion. Invalid parameter value",
        )
    })?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
    ) {
        return Err(bad(
            "invalid_grant",
            format!(
                "Invalid assertion. alg {:?} is not supported (MP-101)",
                header.alg
            ),
        ));
    }
    let claims: Value =
        jsonwebtoken::dangerous::insecure_decode_claims(assertion).map_err(|_| {
            bad(
                "invalid_request",
                "Invalid assertion. Invalid parameter value",
            )
        })?;
    let client_id = claims["iss"].as_str().unwrap_or_default().to_owned();
    let clients = st.clients.lock().unwrap();
    let client = clients.get(&client_id).ok_or_else(|| {
        bad(
            "invalid_grant",
            "Invalid assertion. Client authentication failed. (MP-105)",
        )
    })?;
    let client_key = match (&header.kid, &header.x5c) {
        (Some(kid), None) => client.keys.get(kid).cloned().ok_or_else(|| {
            bad(
                "invalid_grant",
                "Invalid assertion. Client authentication failed. Unknown kid (MP-102)",
            )
        })?,
        (None, Some(chain)) => {
            use base64::Engine as _;
            let leaf = chain
                .first()
                .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                .ok_or_else(|| bad("invalid_grant", "Invalid assertion. x5c is empty (MP-102)"))?;
            if !client.certificates.contains(&leaf) {
                return Err(bad(
                    "invalid_grant",
                    "Invalid assertion. Client authentication failed. The JWT is signed with an invalid certificate. (MP-102)",
                ));
            }
            use x509_parser::prelude::*;
            let (_, cert) = X509Certificate::from_der(&leaf)
                .map_err(|_| bad("invalid_grant", "x5c (MP-102)"))?;
            DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data)
        }
        _ => {
            return Err(bad(
                "invalid_grant",
                "Invalid assertion. Exactly one of kid and x5c (MP-102)",
            ))
        }
    };
    let mut v = Validation::new(header.alg);
    v.validate_aud = false;
    v.validate_exp = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(assertion, &client_key, &v).map_err(|_| {
        bad(
            "invalid_grant",
            "Invalid assertion. Client authentication failed. Bad signature (MP-103)",
        )
    })?;
    if claims["aud"].as_str() != Some(st.issuer.as_str()) {
        return Err(bad(
            "invalid_grant",
            "Invalid assertion. Client authentication failed. Invalid JWT claim aud (MP-104)",
        ));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err(bad(
            "invalid_grant",
            "Invalid assertion. iat and exp are required (MP-106)",
        ));
    };
    if (iat - now()).abs() > 10 {
        return Err(bad(
            "invalid_grant",
            "Invalid assertion. iat is not within 10 s of our clock (MP-106)",
        ));
    }
    if exp - iat > 120 || exp <= now() {
        return Err(bad(
            "invalid_grant",
            "Invalid assertion. exp - iat is more than 120 s, or exp has passed (MP-107)",
        ));
    }
    let jti = claims["jti"]
        .as_str()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| bad("invalid_grant", "Invalid assertion. No jti (MP-108)"))?;
    if !st.seen_jti.lock().unwrap().insert(jti.to_owned()) {
        return Err(bad(
            "invalid_grant",
            "Invalid assertion. Grant is used before (MP-012)",
        ));
    }
    let scope = claims["scope"].as_str().unwrap_or_default();
    if scope.is_empty() {
        return Err(bad("invalid_scope", "Token request has no scope (MP-201)"));
    }
    if let Some(s) = scope.split(' ').find(|s| !client.scopes.contains(*s)) {
        return Err(bad(
            "invalid_scope",
            format!("Token request contains invalid scopes for client: {s} (MP-202)"),
        ));
    }
    let consumer_org = client.org.clone();
    drop(clients);
    let details = match claims.get("authorization_details") {
        None => None,
        Some(d) => Some(system_user(st, d)?),
    };
    let lifetime = st.token_lifetime.load(Ordering::SeqCst) as i64;
    let issued = now();
    let mut token_claims = json!({
        "iss": st.issuer,
        "client_amr": if header.x5c.is_some() { "virksomhetssertifikat" } else { "private_key_jwt" },
        "token_type": "Bearer",
        "client_id": client_id,
        "consumer": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{consumer_org}")},
        "scope": scope,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(d) = details {
        token_claims["authorization_details"] = json!([d]);
    }
    let access_token = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(STANDIN_KID.into());
        let signer = if st.forge.load(Ordering::SeqCst) {
            2
        } else {
            0
        };
        jsonwebtoken::encode(&h, &token_claims, &key(signer).encoding).unwrap()
    };
    *st.last_grant.lock().unwrap() = Some((serde_json::to_value(&header).unwrap(), claims.clone()));
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": scope,
    }))
}

/// Checks a grant's `authorization_details` against the fixtures and answers the
/// token's entry.
fn system_user(st: &State, d: &Value) -> Result<Value, Refusal> {
    let malformed = || {
        bad(
            "invalid_request",
            "authorization_details is malformed (MP-301)",
        )
    };
    let arr = d
        .as_array()
        .filter(|a| a.len() == 1)
        .ok_or_else(malformed)?;
    let d = &arr[0];
    if d["type"] != "urn:altinn:systemuser"
        || d["systemuser_org"]["authority"] != "iso6523-actorid-upis"
    {
        return Err(malformed());
    }
    let id = d["systemuser_org"]["ID"].as_str().ok_or_else(malformed)?;
    let org = id
        .strip_prefix("0192:")
        .filter(|o| o.len() == 9)
        .ok_or_else(malformed)?;
    let external_ref = match d.get("externalRef") {
        None => org,
        Some(r) => r.as_str().ok_or_else(malformed)?,
    };
    let fixtures = st.fixtures.lock().unwrap();
    let f = fixtures
        .iter()
        .find(|f| f.org == org && f.external_ref == external_ref)
        .ok_or_else(|| {
            bad(
                "invalid_altinn_customer_configuration",
                format!("No system user for the system in organisation {org} with externalRef {external_ref} (MP-303)"),
            )
        })?;
    let mut entry = json!({
        "type": "urn:altinn:systemuser",
        "systemuser_id": [f.system_user_id],
        "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{}", f.org)},
    });
    if let Some(s) = &f.system_id {
        entry["system_id"] = json!(s);
    }
    Ok(entry)
}
