//! An identity-provider stand-in on 127.0.0.1:0: a JWKS endpoint whose keys a
//! test chooses (RSA and EC, published or not), and employee JWTs minted with
//! chosen claims and keys, as the end-user system's login would issue them.

use super::maskinporten::{json_response, key, serve_http, Mode};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use vakt::maskinporten::IdentityProviderConfig;

/// The audience the stand-in's tokens are for by default.
pub const AUDIENCE: &str = "vakt-egress";
pub const EMPLOYEE: &str = "kari.nordmann";

/// A key the stand-in can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpKey {
    /// RSA, RS256, published from the start.
    Rsa,
    /// EC P-256, ES256, published from the start.
    Ec,
    /// RSA, PS256, published from the start.
    Pss,
    /// RSA, RS256, published only after [`Idp::rotate`].
    Rotated,
    /// The Maskinporten stand-in's stranger key (never published), under the
    /// `Rsa` key's kid: a forgery.
    Forged,
}

impl IdpKey {
    pub fn kid(self) -> &'static str {
        match self {
            IdpKey::Rsa | IdpKey::Forged => "idp-rsa-1",
            IdpKey::Ec => "idp-ec-1",
            IdpKey::Pss => "idp-pss-1",
            IdpKey::Rotated => "idp-rsa-2",
        }
    }

    fn alg(self) -> Algorithm {
        match self {
            IdpKey::Ec => Algorithm::ES256,
            IdpKey::Pss => Algorithm::PS256,
            _ => Algorithm::RS256,
        }
    }

    fn encoding(self) -> &'static EncodingKey {
        match self {
            IdpKey::Rsa | IdpKey::Pss => &key(4).encoding,
            IdpKey::Rotated => &key(5).encoding,
            IdpKey::Forged => &key(2).encoding,
            IdpKey::Ec => ec_key(),
        }
    }

    fn jwk(self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(self.encoding(), self.alg()).expect("JWK");
        jwk.common.key_id = Some(self.kid().to_owned());
        jwk
    }
}

/// An EC P-256 key, made once per test process.
fn ec_key() -> &'static EncodingKey {
    static KEY: OnceLock<EncodingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let kp = rcgen::KeyPair::generate().expect("P-256 key");
        EncodingKey::from_ec_der(&kp.serialize_der())
    })
}

/// A running identity-provider stand-in; stops when dropped.
pub struct Idp {
    pub addr: SocketAddr,
    /// Its issuer, `http://127.0.0.1:PORT/`.
    pub issuer: String,
    mode: Arc<Mutex<Mode>>,
    published: Arc<Mutex<Vec<IdpKey>>>,
    hits: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Idp {
    /// Publishes the `Rsa`, `Ec` and `Pss` keys at `/jwks`.
    pub async fn start() -> Self {
        let mode = Arc::new(Mutex::new(Mode::Up));
        let published = Arc::new(Mutex::new(vec![IdpKey::Rsa, IdpKey::Ec, IdpKey::Pss]));
        let hits = Arc::new(AtomicUsize::new(0));
        let (p, h) = (published.clone(), hits.clone());
        let (addr, stop) = serve_http(mode.clone(), move |req| {
            let keys = p.lock().unwrap().clone();
            let h = h.clone();
            async move {
                if req.method() == "GET" && req.uri().path() == "/jwks" {
                    h.fetch_add(1, Ordering::SeqCst);
                    let set = JwkSet {
                        keys: keys.iter().map(|k| k.jwk()).collect(),
                    };
                    json_response(200, serde_json::to_value(set).unwrap())
                } else {
                    json_response(404, json!({"error": "not_found"}))
                }
            }
        })
        .await;
        Self {
            addr,
            issuer: format!("http://127.0.0.1:{}/", addr.port()),
            mode,
            published,
            hits,
            _stop: stop,
        }
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}jwks", self.issuer)
    }

    /// A configuration for this stand-in (audience [`AUDIENCE`], `sub`).
    pub fn config(&self) -> IdentityProviderConfig {
        let mut c = IdentityProviderConfig::new(
            self.issuer.clone(),
            self.jwks_uri(),
            vec![AUDIENCE.into()],
        );
        c.leeway = Duration::from_secs(5);
        c
    }

    /// Publishes the `Rotated` key too.
    pub fn rotate(&self) {
        self.published.lock().unwrap().push(IdpKey::Rotated);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// How many times `/jwks` was fetched.
    pub fn jwks_hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The claims of a good token for `employee`: this issuer, [`AUDIENCE`],
    /// valid for five minutes.
    pub fn claims(&self, employee: &str) -> Value {
        let t = now();
        json!({
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": employee,
            "iat": t,
            "nbf": t,
            "exp": t + 300,
        })
    }

    /// `claims` signed with `key`, its kid in the header.
    pub fn mint(&self, key: IdpKey, claims: &Value) -> String {
        let mut h = Header::new(key.alg());
        h.kid = Some(key.kid().to_owned());
        jsonwebtoken::encode(&h, claims, key.encoding()).unwrap()
    }
}
