//! Envoy's external authorization (`envoy.service.auth.v3.Authorization/Check`)
//! as pure functions: [`plan`] reads a `CheckRequest` against the route table
//! into what to decide, [`respond`] turns the decision (and the token, on ALLOW)
//! into the `CheckResponse`. The service that glues decide and the token in
//! between lives with the gRPC server; nothing here does I/O.
//!
//! Fail closed throughout: every input this module cannot read with certainty
//! (an unknown route, a path spelt to mislead, a truncated body, a missing
//! employee) is a [`Denied`], never an allow. `docs/envoy.md` describes the
//! route table and the path rules.

mod config;
mod path;
mod respond;
mod wire;

pub use config::{
    ClientFrom, ClientKind, EmployeeFrom, EnvoyConfig, HostPattern, Route, TokenKind,
    DEFAULT_ALTINN_HOSTS, DEFAULT_EMPLOYEE_HEADER, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_SYSTEM_USER_HEADER, VAKT_HEADER_PREFIX,
};
pub use path::{normalise, NormalPath, PathError, Pattern};
pub use respond::{is_token, respond, respond_owned, Outcome, Verdict};
pub use wire::{CheckInput, CheckMessage};

use std::borrow::Cow;
use wire::Http;

/// The header Envoy adds when `with_request_body.allow_partial_message` let a
/// body through cut at `max_request_bytes`.
pub const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// One reason for an outcome, as in `Authorize`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub policy_id: String,
    pub message: String,
}

impl Reason {
    pub fn new(policy_id: &str, message: impl Into<String>) -> Self {
        Self {
            policy_id: policy_id.to_owned(),
            message: message.into(),
        }
    }
}

/// The request as Check saw it, for the decision record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSummary {
    pub method: String,
    /// Lower-case, without port.
    pub host: String,
    /// The normalised path (empty when the path could not be normalised).
    pub path: String,
}

/// The client as extracted from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub kind: ClientKind,
    /// A checked org number, or a party id of digits.
    pub value: String,
    /// Where it was found: `path {instanceOwnerPartyId}`, `query party`,
    /// `body /instanceOwner/organisationNumber`.
    pub from: String,
}

/// What one Check asks Vakt to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionInput {
    pub route: String,
    pub employee: String,
    /// The route's fixed system user or the system-user header's; `None`
    /// leaves the choice to the wiring (ResolveSystemUser).
    pub system_user: Option<String>,
    pub client: Client,
    /// The full access package URN.
    pub package: String,
    pub action: Option<String>,
    pub token: TokenKind,
    pub scopes: Vec<String>,
    pub request: RequestSummary,
    /// Vakt's own headers on the request, to be removed on its way to Altinn.
    pub vakt_headers: Vec<String>,
}

/// Why a Check cannot be decided: it is denied before any policy is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub reason: Reason,
    /// The route, when one matched before the failure.
    pub route: Option<String>,
    pub request: RequestSummary,
    pub vakt_headers: Vec<String>,
}

/// Verifies the employee's JWT (signature against the identity provider's JWKS,
/// issuer, audience, expiry) and says who it names. Supplied by the JWKS code;
/// an `Err` is the reason the token is refused.
pub trait EmployeeVerifier: Send + Sync {
    fn employee(&self, jwt: &str) -> Result<String, String>;
}

/// Reason ids for the denials [`plan`] makes.
pub mod reason {
    pub const NOT_HTTP: &str = "vakt:envoy-not-http";
    pub const BAD_HOST: &str = "vakt:envoy-bad-host";
    pub const BAD_PATH: &str = "vakt:envoy-bad-path";
    pub const NO_ROUTE: &str = "vakt:envoy-no-route";
    pub const NOT_ALTINN: &str = "vakt:envoy-not-altinn";
    pub const EMPLOYEE: &str = "vakt:envoy-employee";
    pub const SYSTEM_USER: &str = "vakt:envoy-system-user";
    pub const CLIENT: &str = "vakt:envoy-client";
    pub const BODY: &str = "vakt:envoy-body";
    /// No `[envoy]` or `[[route]]` is configured.
    pub const NOT_CONFIGURED: &str = "vakt:envoy-not-configured";
    /// The client is a party id the world does not map to an organisation.
    pub const PARTY_UNKNOWN: &str = "vakt:envoy-party-unknown";
    /// The planned request is not one the decision can take (an unknown
    /// package or action).
    pub const INVALID: &str = "vakt:envoy-invalid";
    /// Neither the route nor `[maskinporten.scopes]` gives the token a scope,
    /// or the route asks for one the package may not carry.
    pub const SCOPES: &str = "vakt:envoy-scopes";
    /// The route's token is `altinn`, and no token exchange is configured.
    pub const NO_EXCHANGE: &str = "vakt:envoy-no-exchange";
    /// Maskinporten (or Altinn's exchange) could not give the token.
    pub const TOKEN_UNAVAILABLE: &str = "vakt:token-unavailable";
    /// Maskinporten refused the token request (its MP code in the message).
    pub const TOKEN_REFUSED: &str = "vakt:token-refused";
    /// The token Maskinporten gave is not for the system user decided on.
    pub const TOKEN_MISMATCH: &str = "vakt:token-mismatch";
}

/// The request's headers: from `header_map` when Envoy sends raw headers
/// (`encode_raw_headers`), else from `headers`. Borrowed from the request, not
/// copied (only a raw value that is not UTF-8 is); keys are compared without
/// regard to ASCII case, as if lower-cased.
struct Headers<'c>(Vec<(&'c str, Cow<'c, str>)>);

impl<'c> Headers<'c> {
    fn of(http: &'c Http) -> Self {
        let out = match &http.header_map {
            Some(m) if !m.headers.is_empty() => m
                .headers
                .iter()
                .map(|h| {
                    let value = if h.raw_value.is_empty() {
                        Cow::Borrowed(h.value.as_str())
                    } else {
                        // Not UTF-8 is kept visible as such, so it fails any check.
                        String::from_utf8_lossy(&h.raw_value)
                    };
                    (h.key.as_str(), value)
                })
                .collect(),
            _ => http.headers().map(|(k, v)| (k, Cow::Borrowed(v))).collect(),
        };
        Self(out)
    }

    /// The one value of `name`: `Ok(None)` when absent, an error when given
    /// more than once (Envoy's merged map joins repeats with ',').
    fn one(&self, name: &str) -> Result<Option<&str>, String> {
        let mut found = self
            .0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref());
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some(v), None) if !v.contains(',') => Ok(Some(v)),
            _ => Err(format!("{name} is given more than once")),
        }
    }

    fn vakt_headers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| {
                k.get(..VAKT_HEADER_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(VAKT_HEADER_PREFIX))
            })
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Reads a Check request against the route table: the route it falls under,
/// the employee, the client and the rest of what to decide; or why it is denied
/// before deciding. `verifier` reads the employee from a JWT when the
/// configuration asks for that (without one, such requests are denied).
pub fn plan(
    check: &(impl CheckMessage + ?Sized),
    config: &EnvoyConfig,
    verifier: Option<&dyn EmployeeVerifier>,
) -> Result<DecisionInput, Box<Denied>> {
    let check = check.as_input();
    let req = Incoming::read(&check)?;
    let (route, captures) = req.route(config)?;
    let employee = req.employee(config, route, verifier)?;
    let system_user = req.system_user(config, route)?;
    let client = req.client(config, route, &captures)?;
    Ok(DecisionInput {
        route: route.name.clone(),
        employee,
        system_user,
        client,
        package: route.package.clone(),
        action: route.action.clone(),
        token: route.token,
        scopes: route.scopes.clone(),
        request: req.summary,
        vakt_headers: req.vakt_headers,
    })
}

/// The denial of a Check on a sidecar without `[envoy]` or `[[route]]`: every
/// request is denied (`vakt:envoy-not-configured`), with as much of the request
/// as could be read for the record.
pub fn unconfigured(check: &(impl CheckMessage + ?Sized)) -> Box<Denied> {
    let mut denied = match Incoming::read(&check.as_input()) {
        Ok(req) => req.deny(None, reason::NOT_CONFIGURED, String::new()),
        Err(d) => d,
    };
    denied.reason = Reason::new(
        reason::NOT_CONFIGURED,
        "Vakt has no [envoy] or [[route]] configured, so it denies every Check",
    );
    denied
}

/// A route that matches a request, with the path's captures (name, value).
type Matched<'r, 'p> = (&'r Route, Vec<(&'r str, &'p str)>);

/// A Check's HTTP request, read as far as every route needs: its headers, its
/// host, and its normalised path and raw query.
struct Incoming<'c> {
    http: &'c Http,
    headers: Headers<'c>,
    vakt_headers: Vec<String>,
    summary: RequestSummary,
    path: NormalPath,
    query: &'c str,
}

impl<'c> Incoming<'c> {
    fn read(check: &'c CheckInput) -> Result<Self, Box<Denied>> {
        let Some(http) = check.http() else {
            return Err(Box::new(Denied {
                reason: Reason::new(reason::NOT_HTTP, "the check carries no HTTP request"),
                route: None,
                request: RequestSummary {
                    method: String::new(),
                    host: String::new(),
                    path: String::new(),
                },
                vakt_headers: Vec::new(),
            }));
        };
        let headers = Headers::of(http);
        let vakt_headers = headers.vakt_headers();
        let mut req = Self {
            http,
            headers,
            vakt_headers,
            summary: RequestSummary {
                method: http.method.clone(),
                host: String::new(),
                path: String::new(),
            },
            path: NormalPath::none(),
            query: "",
        };
        let Some(host) = normal_host(&http.host) else {
            return Err(req.deny(
                None,
                reason::BAD_HOST,
                format!("the host {:?} is not a host name", short(&http.host)),
            ));
        };
        req.summary.host = host;
        let (path, query) = match path::split_target(&http.path) {
            Ok(p) => p,
            Err(e) => return Err(req.deny(None, reason::BAD_PATH, e.to_string())),
        };
        req.summary.path = path.as_str().to_owned();
        req.path = path;
        req.query = query;
        Ok(req)
    }

    fn deny(&self, route: Option<&Route>, id: &str, message: String) -> Box<Denied> {
        Box::new(Denied {
            reason: Reason::new(id, message),
            route: route.map(|r| r.name.clone()),
            request: self.summary.clone(),
            vakt_headers: self.vakt_headers.clone(),
        })
    }

    /// The first route whose host, method and path match, with the path's captures.
    fn route<'r>(&self, config: &'r EnvoyConfig) -> Result<Matched<'r, '_>, Box<Denied>> {
        let host = &self.summary.host;
        let matched = config.routes.iter().find_map(|r| {
            (r.host.matches(host) && r.methods.contains(&self.http.method))
                .then(|| r.path.matches(&self.path).map(|caps| (r, caps)))
                .flatten()
        });
        if let Some(m) = matched {
            return Ok(m);
        }
        let (id, message) = if config.is_altinn_host(host) {
            (
                reason::NO_ROUTE,
                format!(
                    "no route covers {} {}{}: a request to an Altinn host that no route names is denied",
                    short(&self.http.method),
                    host,
                    self.summary.path
                ),
            )
        } else {
            (
                reason::NOT_ALTINN,
                format!("{host} is not an Altinn host and no route names it"),
            )
        };
        Err(self.deny(None, id, message))
    }

    /// The employee behind the request: from its header, or from a verified JWT.
    fn employee(
        &self,
        config: &EnvoyConfig,
        route: &Route,
        verifier: Option<&dyn EmployeeVerifier>,
    ) -> Result<String, Box<Denied>> {
        let denied = |message: String| self.deny(Some(route), reason::EMPLOYEE, message);
        let (EmployeeFrom::Header(name) | EmployeeFrom::Jwt(name)) = &config.employee;
        let value = match self.headers.one(name) {
            Ok(Some(v)) => v,
            Ok(None) => return Err(denied(format!("no employee: the {name} header is missing"))),
            Err(e) => return Err(denied(e)),
        };
        let employee = match &config.employee {
            EmployeeFrom::Header(_) => value.to_owned(),
            EmployeeFrom::Jwt(_) => {
                let token = value.strip_prefix("Bearer ").unwrap_or(value);
                let Some(verifier) = verifier else {
                    return Err(denied(
                        "the employee's token cannot be verified: no verifier is configured".into(),
                    ));
                };
                verifier
                    .employee(token)
                    .map_err(|e| denied(format!("the employee's token is refused: {e}")))?
            }
        };
        crate::ids::check_id(&employee).map_err(|e| denied(format!("the employee id {e}")))?;
        Ok(employee)
    }

    /// The system user: the route's, or the one the system-user header names (a
    /// header naming another than the route's is denied); `None` when neither.
    fn system_user(
        &self,
        config: &EnvoyConfig,
        route: &Route,
    ) -> Result<Option<String>, Box<Denied>> {
        let denied = |message: String| self.deny(Some(route), reason::SYSTEM_USER, message);
        let named = self
            .headers
            .one(&config.system_user_header)
            .map_err(denied)?;
        if let Some(n) = named {
            crate::ids::check_id(n).map_err(|e| denied(format!("the system user id {e}")))?;
        }
        match (&route.system_user, named) {
            (Some(fixed), Some(n)) if fixed != n => Err(denied(format!(
                "the request names system user {:?}, but route {:?} uses {:?}",
                short(n),
                route.name,
                fixed
            ))),
            (Some(fixed), _) => Ok(Some(fixed.clone())),
            (None, n) => Ok(n.map(str::to_owned)),
        }
    }

    /// The client where the route says it is named, checked for its kind.
    fn client(
        &self,
        config: &EnvoyConfig,
        route: &Route,
        captures: &[(&str, &str)],
    ) -> Result<Client, Box<Denied>> {
        let denied = |id: &str, message: String| self.deny(Some(route), id, message);
        let (value, from) = match &route.client {
            ClientFrom::Path(name) => {
                let Some((_, v)) = captures.iter().find(|(n, _)| *n == name.as_str()) else {
                    return Err(denied(
                        reason::CLIENT,
                        format!("the path has no {{{name}}}"),
                    ));
                };
                ((*v).to_owned(), ["path {", name, "}"].concat())
            }
            ClientFrom::Query(name) => {
                let mut values = path::query_values(self.query, name)
                    .map_err(|e| denied(reason::BAD_PATH, e.to_string()))?;
                match (values.pop(), values.is_empty()) {
                    (Some(v), true) => (v, format!("query {name}")),
                    (None, _) => {
                        return Err(denied(
                            reason::CLIENT,
                            format!("the query parameter {name:?} is missing"),
                        ))
                    }
                    (Some(_), false) => {
                        return Err(denied(
                            reason::CLIENT,
                            format!("the query parameter {name:?} is given more than once"),
                        ))
                    }
                }
            }
            ClientFrom::Body(pointer) => {
                match body_client(self.http, &self.headers, pointer, config.max_body_bytes) {
                    Ok(v) => (v, format!("body {pointer}")),
                    Err(e) => return Err(denied(reason::BODY, e)),
                }
            }
        };
        let checked = match route.client_kind {
            ClientKind::OrgNumber => crate::ids::check_org_number(&value)
                .map_err(|e| format!("the client org number {:?} ({from}) {e}", short(&value))),
            ClientKind::PartyId => {
                if !value.is_empty()
                    && value.len() <= 19
                    && value.bytes().all(|b| b.is_ascii_digit())
                {
                    Ok(())
                } else {
                    Err(format!(
                        "the client party id {:?} ({from}) is not a number",
                        short(&value)
                    ))
                }
            }
        };
        checked.map_err(|e| denied(reason::CLIENT, e))?;
        Ok(Client {
            kind: route.client_kind,
            value,
            from,
        })
    }
}

/// The client at `pointer` in the request body, or why the body cannot say.
fn body_client(
    http: &Http,
    headers: &Headers<'_>,
    pointer: &str,
    max: usize,
) -> Result<String, String> {
    if headers
        .one(PARTIAL_BODY_HEADER)?
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err("the body is truncated (Envoy sent part of it; raise with_request_body.max_request_bytes or send less)".into());
    }
    let body: &[u8] = if http.raw_body.is_empty() {
        http.body.as_bytes()
    } else {
        &http.raw_body
    };
    let declared = match headers.one("content-length")? {
        None => None,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return Err(format!("content-length {:?} is not a number", short(v))),
        },
    };
    if declared.is_some_and(|n| n > max as u64) || body.len() > max {
        return Err(format!(
            "the body is larger than the {max} bytes Vakt reads for a client"
        ));
    }
    match declared {
        Some(n) if (body.len() as u64) < n && body.is_empty() => {
            return Err("the body is needed to find the client but was not sent (configure Envoy's with_request_body)".into())
        }
        Some(n) if (body.len() as u64) < n => {
            return Err(format!("the body is truncated: {} of {n} bytes arrived", body.len()))
        }
        Some(n) if (body.len() as u64) > n => {
            return Err(format!("the body is longer ({} bytes) than its content-length ({n})", body.len()))
        }
        _ => {}
    }
    if let Some(enc) = headers.one("content-encoding")? {
        if !enc.trim().eq_ignore_ascii_case("identity") {
            return Err(format!(
                "the body is encoded ({}) and cannot be read",
                short(enc)
            ));
        }
    }
    if body.is_empty() {
        return Err("the body is needed to find the client but is empty".into());
    }
    let value = crate::json::parse(body).map_err(|e| {
        format!(
            "the body is not JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })?;
    match value.pointer(pointer) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(format!("the body's {pointer} is not a string or number")),
        None => Err(format!("the body has no {pointer}")),
    }
}

/// `host` lower-case without its port or a trailing dot; `None` if it is not a
/// host name (an IP literal in brackets is kept, and matches no route).
fn normal_host(host: &str) -> Option<String> {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        let end = rest.find(']')?;
        &h[..end + 2]
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return None,
            None => h,
        }
    };
    let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'));
    ok.then_some(h)
}

/// At most 64 characters of request input, for reasons.
fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests;
