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
//!
//! The vendor's reads, with fixtures a test sets (`add_system`,
//! `add_system_user(s)`, `delete_system_user`, `set_authorized_parties`,
//! `set_clients`, `add_client_admin`) and failures it injects (`fail_page`,
//! `set_next_override`, `set_mode`):
//! - `GET /authentication/api/v1/systemuser/vendor/bysystem/{systemId}`: a
//!   Maskinporten vendor token (no system user in it) with scope
//!   `altinn:authentication/systemregister.write` whose consumer owns the system
//!   (else 403); 50 a page, deleted ones left out, `links.next` an absolute URL
//!   with an opaque `token`;
//! - `GET /accessmanagement/api/v1/enduser/authorizedparties`: an Altinn token
//!   (exchanged here) for a live system user with scope
//!   `altinn:accessmanagement/authorizedparties`; that system user's parties, with
//!   packages and roles only when `includeAccessPackages`/`includeRoles` are true;
//! - `GET /accessmanagement/api/v1/enduser/clientdelegations/agents/accesspackages?party=&to=`:
//!   an Altinn token with scope `altinn:clientdelegations.read` for a system user
//!   registered as the party's client administrator; the `ClientDto` pages.

use super::maskinporten::{json_response, key, serve_http, Mode, StandIn};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

pub const EXCHANGE_PATH: &str = "/authentication/api/v1/exchange/maskinporten";
pub const JWKS_PATH: &str = "/authentication/api/v1/openid/.well-known/openid-configuration/jwks";
/// The protected resource: answers the caller's org number and system user.
pub const RESOURCE_PATH: &str = "/storage/api/v1/instances";
pub const SYSTEM_USERS_PATH: &str = "/authentication/api/v1/systemuser/vendor/bysystem/";
pub const AUTHORIZED_PARTIES_PATH: &str = "/accessmanagement/api/v1/enduser/authorizedparties";
pub const CLIENT_DELEGATIONS_PATH: &str =
    "/accessmanagement/api/v1/enduser/clientdelegations/agents/accesspackages";
pub const SYSTEM_USERS_SCOPE: &str = "altinn:authentication/systemregister.write";
pub const AUTHORIZED_PARTIES_SCOPE: &str = "altinn:accessmanagement/authorizedparties";
pub const CLIENT_DELEGATIONS_SCOPE: &str = "altinn:clientdelegations.read";
/// Altinn's page size for the vendor's list and the client list.
pub const PAGE_SIZE: usize = 50;
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
    /// The base URL, for `links.next`.
    base: String,
    registry: Mutex<Registry>,
    /// Pages of the paged lists answered (failed ones included).
    list_pages: AtomicUsize,
    /// When the first page of any paged list was first served.
    first_page_at: Mutex<Option<SystemTime>>,
}

/// A system user in the stand-in's fixtures.
#[derive(Clone, Debug)]
pub struct SystemUserFixture {
    pub id: String,
    pub system_id: String,
    pub org: String,
    /// `None`: created without one (Altinn then reports the org number).
    pub external_ref: Option<String>,
    /// `"standard"` or `"agent"`.
    pub user_type: String,
}

#[derive(Default)]
struct Registry {
    /// System id → the vendor's org number (its owner in the system register).
    systems: HashMap<String, String>,
    /// In creation order; the index is the sequence the page tokens continue from.
    system_users: Vec<(SystemUserFixture, bool)>,
    /// System user id → its authorized parties (`AuthorizedPartyExternal`).
    parties: HashMap<String, Vec<Value>>,
    /// (owner party UUID, agent system user id) → its `ClientDto`s.
    clients: HashMap<(String, String), Vec<Value>>,
    /// Owner party UUID → the system users approved as its client administrator.
    client_admins: HashMap<String, HashSet<String>>,
    /// Page k (1-based) of any paged list answers this status.
    fail_page: Option<(usize, u16)>,
    /// The first page's `links.next`, instead of the real one.
    next_override: Option<String>,
    /// Page k's first item has `reporteeOrgNo: null` (system users) or no
    /// `client` (clients).
    corrupt_page: Option<usize>,
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
            base: base.clone(),
            registry: Mutex::default(),
            list_pages: AtomicUsize::new(0),
            first_page_at: Mutex::default(),
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

    /// Registers `system_id` in the system register, owned by `vendor_org`.
    pub fn add_system(&self, system_id: &str, vendor_org: &str) {
        self.reg()
            .systems
            .insert(system_id.to_owned(), vendor_org.to_owned());
    }

    /// Adds a system user to Altinn and to `mp`'s fixtures (so Maskinporten
    /// issues its token); its record as the vendor's list answers it.
    pub fn add_system_user(&self, mp: &StandIn, f: SystemUserFixture) -> Value {
        mp.add_fixture(
            &f.org,
            f.external_ref.as_deref(),
            &f.id,
            Some(f.system_id.as_str()),
        );
        let mut reg = self.reg();
        let record = system_user_record(&reg, &f);
        reg.system_users.push((f, false));
        record
    }

    /// Adds `n` standard system users of `system_id`, each for its own
    /// organisation (valid org numbers from `first_org_seed`); their records.
    pub fn add_system_users(
        &self,
        mp: &StandIn,
        system_id: &str,
        first_org_seed: u32,
        n: usize,
    ) -> Vec<Value> {
        let mut seed = first_org_seed;
        (0..n)
            .map(|_| {
                let org = loop {
                    seed += 1;
                    if let Some(o) = org_number(seed) {
                        break o;
                    }
                };
                self.add_system_user(
                    mp,
                    SystemUserFixture {
                        id: uuid::Uuid::new_v4().to_string(),
                        system_id: system_id.to_owned(),
                        org,
                        external_ref: None,
                        user_type: "standard".into(),
                    },
                )
            })
            .collect()
    }

    /// Deletes a system user: left out of the list, refused its own reads.
    pub fn delete_system_user(&self, id: &str) {
        for (f, deleted) in &mut self.reg().system_users {
            if f.id == id {
                *deleted = true;
            }
        }
    }

    /// What `authorizedparties` answers the system user `id`.
    pub fn set_authorized_parties(&self, id: &str, parties: Vec<Value>) {
        self.reg().parties.insert(id.to_owned(), parties);
    }

    /// The client list of agent `agent_id` owned by `owner_party_uuid`.
    pub fn set_clients(&self, owner_party_uuid: &str, agent_id: &str, clients: Vec<Value>) {
        self.reg()
            .clients
            .insert((owner_party_uuid.to_owned(), agent_id.to_owned()), clients);
    }

    /// Approves system user `admin_id` as client administrator of the party.
    pub fn add_client_admin(&self, owner_party_uuid: &str, admin_id: &str) {
        self.reg()
            .client_admins
            .entry(owner_party_uuid.to_owned())
            .or_default()
            .insert(admin_id.to_owned());
    }

    /// From now on page `page` (1-based) of every paged list answers `status`;
    /// `None` heals it.
    pub fn fail_page(&self, failure: Option<(usize, u16)>) {
        self.reg().fail_page = failure;
    }

    /// From now on page `page` (1-based) of every paged list has a broken first
    /// item; `None` heals it.
    pub fn corrupt_page(&self, page: Option<usize>) {
        self.reg().corrupt_page = page;
    }

    /// The first page's `links.next` (e.g. on another host); `None` heals it.
    pub fn set_next_override(&self, next: Option<&str>) {
        self.reg().next_override = next.map(str::to_owned);
    }

    /// Pages of the paged lists answered, failed ones included.
    pub fn list_pages(&self) -> usize {
        self.state.list_pages.load(Ordering::SeqCst)
    }

    /// When the stand-in first served a first page of a paged list (the start
    /// of the first sync's read, as Altinn saw it).
    pub fn first_page_at(&self) -> Option<SystemTime> {
        *self.state.first_page_at.lock().unwrap()
    }

    fn reg(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.state.registry.lock().unwrap()
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
        ("GET", p) if p.starts_with(SYSTEM_USERS_PATH) => {
            let system_id = p[SYSTEM_USERS_PATH.len()..].to_owned();
            system_users(st, &req, &system_id)
        }
        ("GET", AUTHORIZED_PARTIES_PATH) => authorized_parties(st, &req),
        ("GET", CLIENT_DELEGATIONS_PATH) => client_delegations(st, &req),
        _ => problem(404, "Not Found"),
    }
}

/// A valid organisation number (mod-11) from a seed, or `None` when the seed's
/// check digit would be 10.
pub fn org_number(seed: u32) -> Option<String> {
    let base = format!("3{:07}", seed % 10_000_000);
    let weights = [3, 2, 7, 6, 5, 4, 3, 2];
    let sum: u32 = base
        .bytes()
        .zip(weights)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return None,
        c => c,
    };
    Some(format!("{base}{check}"))
}

/// An authorized party as `authorizedparties` answers it.
pub fn party(uuid: &str, org: &str, name: &str, packages: &[&str], roles: &[&str]) -> Value {
    json!({
        "partyUuid": uuid,
        "name": name,
        "organizationNumber": org,
        "parentId": null,
        "personId": null,
        "dateOfBirth": null,
        "partyId": 50_000_000 + (uuid.bytes().map(u64::from).sum::<u64>() % 1_000_000),
        "type": "Organization",
        "unitType": "AS",
        "isDeleted": false,
        "onlyHierarchyElementWithNoAccess": false,
        "authorizedAccessPackages": packages,
        "authorizedResources": [],
        "authorizedRoles": roles,
        "authorizedInstances": [],
        "subunits": [],
    })
}

/// A `ClientDto`: the client and its packages through one role.
pub fn client(uuid: &str, org: &str, name: &str, role_urn: &str, packages: &[&str]) -> Value {
    json!({
        "client": {
            "id": uuid, "name": name, "type": "Organisasjon", "variant": "AS",
            "parent": null, "children": null, "partyid": 51_000_000,
            "userId": null, "username": null, "organizationIdentifier": org,
            "personIdentifier": null, "dateOfBirth": null, "dateOfDeath": null,
            "isDeleted": false, "deletedAt": null,
        },
        "access": [{
            "role": {
                "id": uuid::Uuid::new_v4().to_string(),
                "code": role_urn.rsplit(':').next().unwrap_or(""),
                "urn": role_urn,
                "children": null,
            },
            "packages": packages.iter().map(|p| json!({
                "id": uuid::Uuid::new_v4().to_string(), "urn": p, "areaId": null,
            })).collect::<Vec<_>>(),
        }],
    })
}

fn system_user_record(reg: &Registry, f: &SystemUserFixture) -> Value {
    let vendor = reg.systems.get(&f.system_id).cloned().unwrap_or_default();
    json!({
        "id": f.id,
        "integrationTitle": format!("Vakt for {}", f.org),
        "systemId": f.system_id,
        "productName": "",
        "reporteeOrgNo": f.org,
        "created": "2026-01-05T09:30:00.123456Z",
        "isDeleted": false,
        "supplierName": "",
        "supplierOrgno": vendor,
        "externalRef": f.external_ref.as_deref().unwrap_or(&f.org),
        "userType": f.user_type,
    })
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn has_scope(claims: &Value, scope: &str) -> bool {
    claims["scope"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|x| x == scope))
}

/// The system user an (exchanged) token is for.
fn token_system_user(claims: &Value) -> Option<String> {
    claims["authorization_details"]
        .as_array()?
        .iter()
        .find(|d| d["type"] == "urn:altinn:systemuser")?["systemuser_id"][0]
        .as_str()
        .map(str::to_owned)
}

/// One page of `items` from the opaque `token` (`{sequence}:{page}`, base64url),
/// with `next` under `path` when more follow; or the injected failure.
fn page_of(
    st: &State,
    reg: &Registry,
    req: &Request<Incoming>,
    items: Vec<(usize, Value)>,
) -> Response<Full<Bytes>> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    st.list_pages.fetch_add(1, Ordering::SeqCst);
    st.first_page_at
        .lock()
        .unwrap()
        .get_or_insert_with(SystemTime::now);
    let mut q = query(req);
    let (after, page) = match q.remove("token") {
        None => (None, 1),
        Some(t) => {
            let decoded = b64
                .decode(t.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((seq, page)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return problem(400, "Bad Request");
            };
            match (seq.parse::<usize>(), page.parse::<usize>()) {
                (Ok(s), Ok(p)) => (Some(s), p),
                _ => return problem(400, "Bad Request"),
            }
        }
    };
    if let Some((k, status)) = reg.fail_page {
        if k == page {
            return problem(status, "Injected failure");
        }
    }
    let rest: Vec<(usize, Value)> = items
        .into_iter()
        .filter(|(seq, _)| after.is_none_or(|a| *seq > a))
        .collect();
    let more = rest.len() > PAGE_SIZE;
    let mut data: Vec<(usize, Value)> = rest.into_iter().take(PAGE_SIZE).collect();
    if reg.corrupt_page == Some(page) {
        if let Some((_, first)) = data.first_mut() {
            let o = first.as_object_mut().unwrap();
            if o.contains_key("reporteeOrgNo") {
                o.insert("reporteeOrgNo".into(), Value::Null);
            } else {
                o.remove("client");
            }
        }
    }
    let next = if page == 1 && reg.next_override.is_some() {
        reg.next_override.clone()
    } else if more {
        let last = data.last().map(|(s, _)| *s).unwrap_or(0);
        let mut u = url::Url::parse(&format!("{}{}", st.base, req.uri().path())).unwrap();
        {
            let mut qp = u.query_pairs_mut();
            for (k, v) in &q {
                qp.append_pair(k, v);
            }
            qp.append_pair("token", &b64.encode(format!("{last}:{}", page + 1)));
        }
        Some(u.to_string())
    } else {
        None
    };
    json_response(
        200,
        json!({
            "links": {"next": next},
            "data": data.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        }),
    )
}

fn system_users(st: &State, req: &Request<Incoming>, system_id: &str) -> Response<Full<Bytes>> {
    let Some(token) = bearer(req) else {
        return problem(401, "Unauthorized");
    };
    // The vendor API takes Maskinporten's token itself, not an exchanged one.
    let Ok(claims) = check_maskinporten(st, &token) else {
        return problem(401, "Unauthorized");
    };
    if !has_scope(&claims, SYSTEM_USERS_SCOPE) || token_system_user(&claims).is_some() {
        return problem(403, "Forbidden");
    }
    let reg = st.registry.lock().unwrap();
    let Some(vendor) = reg.systems.get(system_id) else {
        return problem(404, "System not found");
    };
    if claims["urn:altinn:orgNumber"].as_str() != Some(vendor.as_str()) {
        return problem(403, "The system is not the vendor's own");
    }
    let items = reg
        .system_users
        .iter()
        .enumerate()
        .filter(|(_, (f, deleted))| !deleted && f.system_id == system_id)
        .map(|(i, (f, _))| (i, system_user_record(&reg, f)))
        .collect();
    page_of(st, &reg, req, items)
}

/// The live system user an exchanged Altinn token with `scope` is for.
fn altinn_caller(
    st: &State,
    req: &Request<Incoming>,
    scope: &str,
) -> Result<String, (u16, &'static str)> {
    let token = bearer(req).ok_or((401, "Unauthorized"))?;
    let claims = check_altinn(st, &token).map_err(|_| (401, "Unauthorized"))?;
    if !has_scope(&claims, scope) {
        return Err((403, "Forbidden"));
    }
    let id = token_system_user(&claims).ok_or((403, "Forbidden"))?;
    let reg = st.registry.lock().unwrap();
    let live = reg
        .system_users
        .iter()
        .any(|(f, deleted)| f.id == id && !deleted);
    if !live {
        return Err((403, "Forbidden"));
    }
    Ok(id)
}

fn authorized_parties(st: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let id = match altinn_caller(st, req, AUTHORIZED_PARTIES_SCOPE) {
        Ok(id) => id,
        Err((status, title)) => return problem(status, title),
    };
    let q = query(req);
    let packages = q.get("includeAccessPackages").map(String::as_str) == Some("true");
    let roles = q.get("includeRoles").map(String::as_str) == Some("true");
    let reg = st.registry.lock().unwrap();
    let mut parties = reg.parties.get(&id).cloned().unwrap_or_default();
    for p in &mut parties {
        if !packages {
            p["authorizedAccessPackages"] = json!([]);
        }
        if !roles {
            p["authorizedRoles"] = json!([]);
        }
    }
    json_response(200, Value::Array(parties))
}

fn client_delegations(st: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let admin = match altinn_caller(st, req, CLIENT_DELEGATIONS_SCOPE) {
        Ok(id) => id,
        Err((status, title)) => return problem(status, title),
    };
    let q = query(req);
    let (Some(party), Some(to)) = (q.get("party"), q.get("to")) else {
        return problem(400, "Bad Request");
    };
    let reg = st.registry.lock().unwrap();
    if !reg
        .client_admins
        .get(party)
        .is_some_and(|a| a.contains(&admin))
    {
        return problem(403, "Forbidden");
    }
    let items = reg
        .clients
        .get(&(party.clone(), to.clone()))
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .collect();
    page_of(st, &reg, req, items)
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
