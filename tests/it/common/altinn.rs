//! An Altinn stand-in on 127.0.0.1:0 speaking Altinn's protocol: the token
//! exchange (`GET /authentication/api/v1/exchange/maskinporten` with a
//! Maskinporten bearer token, which it accepts only when the Maskinporten
//! stand-in's JWKS signed it), its own OpenID metadata and JWKS, and one
//! protected resource that accepts only the Altinn tokens it issued, so a test
//! can show that a token works end to end.
//!
//! Answers follow Altinn's ASP.NET controller: the token as text, or as a JSON
//! string when `application/json` is the first type the client accepts; a
//! refusal is a 401 problem document.

use super::maskinporten::{json_response, key, serve_http, Mode, StandIn};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

pub const EXCHANGE_PATH: &str = "/authentication/api/v1/exchange/maskinporten";
pub const JWKS_PATH: &str = "/authentication/api/v1/openid/.well-known/openid-configuration/jwks";
/// The protected resource: answers the caller's org number and system user.
pub const RESOURCE_PATH: &str = "/storage/api/v1/instances";
const ALTINN_KID: &str = "altinn-signing-1";
/// Altinn's clock skew on the Maskinporten token (its controller's 10 s).
const CLOCK_SKEW: u64 = 10;

struct State {
    issuer: String,
    mp_issuer: String,
    mp_keys: HashMap<String, DecodingKey>,
    exchanges: AtomicUsize,
    resource_hits: AtomicUsize,
    /// The `exp - iat` of the Altinn tokens it issues.
    lifetime: AtomicU64,
    /// Answer the token as a JSON string whatever the client accepts.
    always_json: AtomicBool,
}

/// A running Altinn stand-in; stops when dropped.
pub struct Altinn {
    pub addr: SocketAddr,
    /// The base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    mode: Arc<Mutex<Mode>>,
    state: Arc<State>,
    _stop: oneshot::Sender<()>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Altinn {
    /// Trusts the tokens `mp`'s JWKS signs, as Altinn trusts Maskinporten's.
    pub async fn start(mp: &StandIn) -> Self {
        let mode = Arc::new(Mutex::new(Mode::Up));
        let mp_keys = mp
            .jwks()
            .keys
            .iter()
            .map(|k| {
                (
                    k.common.key_id.clone().unwrap(),
                    DecodingKey::from_jwk(k).unwrap(),
                )
            })
            .collect();
        // The port is known only once bound: the issuer is set after.
        let state_slot: Arc<Mutex<Option<Arc<State>>>> = Arc::default();
        let slot = state_slot.clone();
        let (addr, stop) = serve_http(mode.clone(), move |req| {
            let st = slot.lock().unwrap().clone();
            async move {
                match st {
                    Some(st) => handle(&st, req),
                    None => json_response(503, json!({"title": "starting"})),
                }
            }
        })
        .await;
        let base = format!("http://127.0.0.1:{}", addr.port());
        let state = Arc::new(State {
            issuer: format!("{base}/authentication/api/v1/openid/"),
            mp_issuer: mp.issuer.clone(),
            mp_keys,
            exchanges: AtomicUsize::new(0),
            resource_hits: AtomicUsize::new(0),
            lifetime: AtomicU64::new(1800),
            always_json: AtomicBool::new(false),
        });
        *state_slot.lock().unwrap() = Some(state.clone());
        Self {
            addr,
            base,
            mode,
            state,
            _stop: stop,
        }
    }

    /// The exchange's URL, as `[altinn] exchange_url` would name it.
    pub fn exchange_url(&self) -> url::Url {
        url::Url::parse(&format!("{}{EXCHANGE_PATH}", self.base)).unwrap()
    }

    pub fn resource_url(&self) -> String {
        format!("{}{RESOURCE_PATH}", self.base)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The lifetime of the Altinn tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.state.lifetime.store(secs, Ordering::SeqCst);
    }

    /// Answer the token JSON-quoted, as ASP.NET does when JSON is accepted.
    pub fn set_always_json(&self, on: bool) {
        self.state.always_json.store(on, Ordering::SeqCst);
    }

    /// How many exchange requests reached it (accepted or not).
    pub fn exchanges(&self) -> usize {
        self.state.exchanges.load(Ordering::SeqCst)
    }

    /// Checks `bearer` as the protected resource does: its claims, or why not.
    pub fn accepts(&self, bearer: &str) -> Result<Value, String> {
        check_altinn(&self.state, bearer)
    }

    /// GETs the protected resource with `bearer`: its status and body.
    pub async fn call_resource(&self, bearer: &str) -> (u16, Value) {
        let url = self.resource_url();
        let bearer = bearer.to_owned();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut r = agent
                .get(&url)
                .header("authorization", &format!("Bearer {bearer}"))
                .call()
                .unwrap();
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&body).unwrap_or(Value::Null))
        })
        .await
        .unwrap()
    }
}

fn problem(status: u16, title: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        json!({
            "type": "https://tools.ietf.org/html/rfc9110#section-15.5.2",
            "title": title,
            "status": status,
            "traceId": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        }),
    )
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn handle(st: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", EXCHANGE_PATH) => {
            st.exchanges.fetch_add(1, Ordering::SeqCst);
            let Some(token) = bearer(&req) else {
                return problem(401, "Unauthorized");
            };
            let claims = match check_maskinporten(st, &token) {
                Ok(c) => c,
                Err(_) => return problem(401, "Unauthorized"),
            };
            let jwt = issue(st, claims);
            // ASP.NET's content negotiation: JSON when the client accepts it
            // first, else the string formatter's text/plain.
            let accept = req
                .headers()
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let json_first = accept.trim_start().starts_with("application/json");
            if json_first || st.always_json.load(Ordering::SeqCst) {
                json_response(200, Value::String(jwt))
            } else {
                Response::builder()
                    .status(200)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(Full::new(Bytes::from(jwt)))
                    .unwrap()
            }
        }
        ("GET", "/authentication/api/v1/openid/.well-known/openid-configuration") => json_response(
            200,
            json!({
                "issuer": st.issuer,
                "jwks_uri": format!("{}{}", st.issuer.trim_end_matches("/authentication/api/v1/openid/"), JWKS_PATH),
            }),
        ),
        ("GET", JWKS_PATH) => json_response(
            200,
            serde_json::to_value(JwkSet {
                keys: vec![key(3).jwk(ALTINN_KID)],
            })
            .unwrap(),
        ),
        ("GET", RESOURCE_PATH) => {
            st.resource_hits.fetch_add(1, Ordering::SeqCst);
            let Some(token) = bearer(&req) else {
                return problem(401, "Unauthorized");
            };
            match check_altinn(st, &token) {
                Ok(c) => json_response(
                    200,
                    json!({
                        "orgNumber": c["urn:altinn:orgNumber"],
                        "authorization_details": c["authorization_details"],
                        "instances": [],
                    }),
                ),
                Err(_) => problem(401, "Unauthorized"),
            }
        }
        _ => problem(404, "Not Found"),
    }
}

/// Altinn's check of a Maskinporten token: signed by a key of Maskinporten's
/// JWKS, Maskinporten's issuer, unexpired (10 s skew), with a `consumer`.
fn check_maskinporten(st: &State, token: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let key = st.mp_keys.get(&kid).ok_or("unknown kid")?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[&st.mp_issuer]);
    v.validate_aud = false;
    v.leeway = CLOCK_SKEW;
    let claims = jsonwebtoken::decode::<Value>(token, key, &v)
        .map_err(|e| e.to_string())?
        .claims;
    let consumer = claims["consumer"]["ID"]
        .as_str()
        .and_then(|id| id.strip_prefix("0192:"))
        .ok_or("no consumer")?;
    let mut claims = claims.clone();
    claims["urn:altinn:orgNumber"] = json!(consumer);
    Ok(claims)
}

/// An Altinn token for the Maskinporten token's claims: theirs without `aud`,
/// `iss`, `client_amr` and `jti`, plus Altinn's own.
fn issue(st: &State, mut claims: Value) -> String {
    let o = claims.as_object_mut().unwrap();
    for k in ["aud", "iss", "client_amr", "jti"] {
        o.remove(k);
    }
    let iat = now();
    o.insert(
        "urn:altinn:authenticatemethod".into(),
        json!("maskinporten"),
    );
    o.insert("urn:altinn:authlevel".into(), json!(3));
    o.insert("iss".into(), json!(st.issuer));
    o.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    o.insert("iat".into(), json!(iat));
    o.insert("nbf".into(), json!(iat));
    o.insert(
        "exp".into(),
        json!(iat + st.lifetime.load(Ordering::SeqCst)),
    );
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(ALTINN_KID.into());
    h.typ = Some("JWT".into());
    jsonwebtoken::encode(&h, &claims, &key(3).encoding).unwrap()
}

/// The protected resource's check: an Altinn token this stand-in issued.
fn check_altinn(st: &State, token: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.kid.as_deref() != Some(ALTINN_KID) {
        return Err("not an Altinn token".into());
    }
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[&st.issuer]);
    v.validate_aud = false;
    v.leeway = 0;
    let key = DecodingKey::from_jwk(&key(3).jwk(ALTINN_KID)).unwrap();
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}
