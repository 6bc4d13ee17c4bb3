//! The Envoy check's configuration: the `[envoy]` table and the `[[route]]`
//! route table of the configuration file, checked whole so that every bad route
//! is reported at once, each by file, line, route and field.

use super::path::Pattern;
use crate::problem::line_at;
use crate::rules::packages::URN_PREFIX;
use crate::rules::snapshot::Rules;
use serde::Deserialize;

/// Vakt's own request headers all start with this; every one is removed before
/// a request goes on to Altinn.
pub const VAKT_HEADER_PREFIX: &str = "x-vakt-";
/// The header that names the employee unless `[envoy] employee_header` says otherwise.
pub const DEFAULT_EMPLOYEE_HEADER: &str = "x-vakt-employee";
/// The header that may name the system user.
pub const DEFAULT_SYSTEM_USER_HEADER: &str = "x-vakt-system-user";
/// The hosts that are Altinn's unless `[envoy] altinn_hosts` says otherwise.
pub const DEFAULT_ALTINN_HOSTS: &[&str] = &["altinn.no", "*.altinn.no"];
/// The largest request body read for a client, unless `[envoy] max_body_bytes` says otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most `[envoy] max_body_bytes` may be.
pub const MAX_BODY_BYTES_LIMIT: usize = 16 * 1024 * 1024;

/// The checked configuration of the Envoy check.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    pub employee: EmployeeFrom,
    pub system_user_header: String,
    pub altinn_hosts: Vec<HostPattern>,
    pub max_body_bytes: usize,
    /// Shadow mode: a request that would be denied goes through (with its token
    /// when one can be had) and is recorded as a shadow deny.
    pub shadow: bool,
    /// In file order; the first route that matches a request decides it.
    pub routes: Vec<Route>,
}

/// Where the employee behind a request is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmployeeFrom {
    /// A header the application sets (its value is the employee id).
    Header(String),
    /// A JWT from the end-user system's identity provider, in this header
    /// (optionally after `Bearer `), verified by an [`super::EmployeeVerifier`].
    Jwt(String),
}

/// A host, or every host under a domain (`*.altinn.no`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.altinn.no` is kept as `.altinn.no`: any host that ends with it and
    /// has at least one label before it. `altinn.no` itself does not match.
    Suffix(String),
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let (wild, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let ok_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || !name.split('.').all(ok_label) {
            return Err(format!(
                "{text:?} is not a lower-case host name or '*.' followed by one (no port, no trailing dot)"
            ));
        }
        Ok(if wild {
            Self::Suffix(format!(".{name}"))
        } else {
            Self::Exact(name.to_owned())
        })
    }

    /// Whether `host` (already lower-case, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => host == h,
            Self::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

/// One `[[route]]`: which requests it covers and how they are decided.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name`, or `route[N]` (from 0, in file order) when none is given.
    pub name: String,
    pub host: HostPattern,
    pub methods: Vec<String>,
    pub path: Pattern,
    /// The full access package URN.
    pub package: String,
    pub client: ClientFrom,
    pub client_kind: ClientKind,
    /// A fixed system user; when absent the request's system-user header names
    /// it, or the wiring resolves one.
    pub system_user: Option<String>,
    pub token: TokenKind,
    /// The Cedar action; `None` is the default (`useSystemUser`).
    pub action: Option<String>,
    /// The scopes the token is asked for; empty leaves it to the package's.
    pub scopes: Vec<String>,
}

/// Where a route finds the client in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrom {
    /// A capture of the path pattern.
    Path(String),
    /// A query parameter, given exactly once.
    Query(String),
    /// A JSON pointer into the request body (needs Envoy's `with_request_body`).
    Body(String),
}

/// What the client value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A 9-digit organisation number with a valid check digit.
    OrgNumber,
    /// An Altinn party id (digits), such as `{instanceOwnerPartyId}`.
    PartyId,
}

/// Which token Check puts in `authorization` on ALLOW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The system user's Maskinporten token.
    Maskinporten,
    /// That token exchanged for an Altinn token.
    Altinn,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEnvoy {
    employee_header: Option<String>,
    employee_jwt_header: Option<String>,
    system_user_header: Option<String>,
    altinn_hosts: Option<Vec<String>>,
    max_body_bytes: Option<i64>,
    shadow: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    host: String,
    methods: Vec<String>,
    path: String,
    package: String,
    client: RawClient,
    system_user: Option<String>,
    token: String,
    action: Option<String>,
    scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    path: Option<String>,
    query: Option<String>,
    body: Option<String>,
    kind: Option<String>,
}

/// The keys of the configuration file this module reads; the rest belong to others.
#[derive(Deserialize)]
struct Top {
    #[serde(default)]
    envoy: Option<toml::Spanned<toml::Table>>,
    #[serde(default)]
    route: Vec<toml::Spanned<toml::Table>>,
}

impl EnvoyConfig {
    /// Reads `[envoy]` and `[[route]]` from a configuration file's text (other
    /// keys are left alone). `None` when the file has neither: the Check service
    /// is not configured. Every problem is reported, each as
    /// `file:line: route[N] ("name").field: what is wrong`.
    pub fn from_toml(file: &str, text: &str) -> Result<Option<Self>, Vec<String>> {
        let top: Top = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_at(text, s.start));
            vec![format!("{file}:{line}: {}", e.message().trim())]
        })?;
        if top.envoy.is_none() && top.route.is_empty() {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let (raw_envoy, envoy_line) = match top.envoy {
            Some(t) => {
                let line = line_at(text, t.span().start);
                match toml::Value::Table(t.into_inner()).try_into::<RawEnvoy>() {
                    Ok(r) => (r, line),
                    Err(e) => {
                        problems.push(format!("{file}:{line}: envoy: {}", e.message().trim()));
                        (RawEnvoy::default(), line)
                    }
                }
            }
            None => (RawEnvoy::default(), 0),
        };
        let mut bad_envoy = |field: &str, what: String| {
            problems.push(format!("{file}:{envoy_line}: envoy.{field}: {what}"));
        };
        let header = |field: &str, v: Option<String>, default: &str| -> Result<String, String> {
            let v = v.unwrap_or_else(|| default.to_owned());
            check_vakt_header(&v).map_err(|e| format!("{field}: {e}"))?;
            Ok(v)
        };
        let employee = match (raw_envoy.employee_header, raw_envoy.employee_jwt_header) {
            (Some(_), Some(_)) => {
                bad_envoy(
                    "employee_jwt_header",
                    "give employee_header or employee_jwt_header, not both".into(),
                );
                EmployeeFrom::Header(DEFAULT_EMPLOYEE_HEADER.into())
            }
            (None, Some(j)) => match check_vakt_header(&j) {
                Ok(()) => EmployeeFrom::Jwt(j),
                Err(e) => {
                    bad_envoy("employee_jwt_header", e);
                    EmployeeFrom::Jwt(DEFAULT_EMPLOYEE_HEADER.into())
                }
            },
            (h, None) => match header("employee_header", h, DEFAULT_EMPLOYEE_HEADER) {
                Ok(h) => EmployeeFrom::Header(h),
                Err(e) => {
                    let (f, m) = e.split_once(": ").unwrap_or(("employee_header", &e));
                    bad_envoy(f, m.to_owned());
                    EmployeeFrom::Header(DEFAULT_EMPLOYEE_HEADER.into())
                }
            },
        };
        let system_user_header = match header(
            "system_user_header",
            raw_envoy.system_user_header,
            DEFAULT_SYSTEM_USER_HEADER,
        ) {
            Ok(h) => h,
            Err(e) => {
                bad_envoy("system_user_header", e);
                DEFAULT_SYSTEM_USER_HEADER.into()
            }
        };
        let mut altinn_hosts = Vec::new();
        let hosts = raw_envoy.altinn_hosts.unwrap_or_else(|| {
            DEFAULT_ALTINN_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect()
        });
        for (i, h) in hosts.iter().enumerate() {
            match HostPattern::parse(h) {
                Ok(p) => altinn_hosts.push(p),
                Err(e) => bad_envoy(&format!("altinn_hosts[{i}]"), e),
            }
        }
        let max_body_bytes = match raw_envoy.max_body_bytes {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(n) if n >= 1 && n as u64 <= MAX_BODY_BYTES_LIMIT as u64 => n as usize,
            Some(n) => {
                bad_envoy(
                    "max_body_bytes",
                    format!("{n} is not between 1 and {MAX_BODY_BYTES_LIMIT}"),
                );
                DEFAULT_MAX_BODY_BYTES
            }
        };
        if employee == EmployeeFrom::Header(system_user_header.clone()) {
            bad_envoy(
                "system_user_header",
                "is the same header as the employee's".into(),
            );
        }
        let mut routes = Vec::with_capacity(top.route.len());
        let mut names: Vec<(String, usize)> = Vec::new();
        for (i, spanned) in top.route.into_iter().enumerate() {
            let line = line_at(text, spanned.span().start);
            let raw = match toml::Value::Table(spanned.into_inner()).try_into::<RawRoute>() {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{file}:{line}: route[{i}]: {}", e.message().trim()));
                    continue;
                }
            };
            let label = match &raw.name {
                Some(n) => format!("route[{i}] ({n:?})"),
                None => format!("route[{i}]"),
            };
            let mut bad = |field: &str, what: String| {
                problems.push(format!("{file}:{line}: {label}.{field}: {what}"));
            };
            match check_route(i, raw) {
                Ok(route) => {
                    if let Some((_, first)) = names.iter().find(|(n, _)| *n == route.name) {
                        bad(
                            "name",
                            format!("{:?} is also the name of route[{first}]", route.name),
                        );
                    } else {
                        names.push((route.name.clone(), i));
                    }
                    routes.push(route);
                }
                Err(found) => {
                    for (field, what) in found {
                        bad(field, what);
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Some(Self {
                employee,
                system_user_header,
                altinn_hosts,
                max_body_bytes,
                shadow: raw_envoy.shadow.unwrap_or(false),
                routes,
            }))
        } else {
            Err(problems)
        }
    }

    /// Routes whose package the rules do not know, as problems naming each (the
    /// package list comes with the schema, known only once the rules are loaded).
    pub fn unknown_packages(&self, rules: &Rules) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| !rules.packages.contains(&r.package))
            .map(|r| {
                format!(
                    "route {:?}: package {:?} is not a known access package",
                    r.name, r.package
                )
            })
            .collect()
    }

    /// Whether `host` is one of Altinn's.
    pub fn is_altinn_host(&self, host: &str) -> bool {
        self.altinn_hosts.iter().any(|p| p.matches(host))
    }
}

fn check_vakt_header(h: &str) -> Result<(), String> {
    let valid = h.len() > VAKT_HEADER_PREFIX.len()
        && h.starts_with(VAKT_HEADER_PREFIX)
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{h:?} must be a lower-case header name starting with {VAKT_HEADER_PREFIX:?}, so that it is removed before the request goes on"
        ))
    }
}

/// A route's fields checked; every problem found, each with its field.
fn check_route(i: usize, raw: RawRoute) -> Result<Route, Vec<(&'static str, String)>> {
    let mut bad: Vec<(&'static str, String)> = Vec::new();
    let name = match raw.name {
        Some(n) if n.trim().is_empty() || n.trim() != n || n.chars().any(char::is_control) => {
            bad.push((
                "name",
                format!("{n:?} is empty or has surrounding whitespace or control characters"),
            ));
            n
        }
        Some(n) => n,
        None => format!("route[{i}]"),
    };
    let host = HostPattern::parse(&raw.host)
        .map_err(|e| bad.push(("host", e)))
        .ok();
    if raw.methods.is_empty() {
        bad.push((
            "methods",
            "is empty: name the methods, such as [\"GET\"]".into(),
        ));
    }
    for m in &raw.methods {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            bad.push(("methods", format!("{m:?} is not an upper-case HTTP method")));
        }
    }
    let path = Pattern::parse(&raw.path)
        .map_err(|e| bad.push(("path", format!("{:?} {e}", raw.path))))
        .ok();
    let package = if raw.package.starts_with(URN_PREFIX) {
        raw.package.clone()
    } else {
        format!("{URN_PREFIX}{}", raw.package)
    };
    let short = &package[URN_PREFIX.len()..];
    if short.is_empty()
        || !short
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bad.push((
            "package",
            format!(
                "{:?} is neither an access package URN ({URN_PREFIX}...) nor a short name such as \"a-ordning\"",
                raw.package
            ),
        ));
    }
    let client = match (raw.client.path, raw.client.query, raw.client.body) {
        (Some(p), None, None) => {
            if path.as_ref().is_some_and(|pat| !pat.captures(&p)) {
                bad.push((
                    "client.path",
                    format!("{p:?} is not a capture of the path pattern {:?}", raw.path),
                ));
            }
            Some(ClientFrom::Path(p))
        }
        (None, Some(q), None) => {
            if q.is_empty() {
                bad.push(("client.query", "is empty".into()));
            }
            Some(ClientFrom::Query(q))
        }
        (None, None, Some(b)) => {
            if let Err(e) = check_pointer(&b) {
                bad.push(("client.body", format!("{b:?} {e}")));
            }
            Some(ClientFrom::Body(b))
        }
        _ => {
            bad.push((
                "client",
                "give exactly one of path = \"<capture>\", query = \"<parameter>\" or body = \"<JSON pointer>\"".into(),
            ));
            None
        }
    };
    let client_kind = match raw.client.kind.as_deref() {
        None | Some("org-number") => ClientKind::OrgNumber,
        Some("party-id") => ClientKind::PartyId,
        Some(k) => {
            bad.push((
                "client.kind",
                format!("{k:?} must be \"org-number\" or \"party-id\""),
            ));
            ClientKind::OrgNumber
        }
    };
    if let Some(s) = &raw.system_user {
        if let Err(e) = crate::ids::check_id(s) {
            bad.push(("system_user", format!("{s:?} {e}")));
        }
    }
    let token = match raw.token.as_str() {
        "maskinporten" => TokenKind::Maskinporten,
        "altinn" => TokenKind::Altinn,
        t => {
            bad.push((
                "token",
                format!("{t:?} must be \"maskinporten\" or \"altinn\""),
            ));
            TokenKind::Maskinporten
        }
    };
    if let Some(a) = &raw.action {
        if let Err(e) = crate::ids::check_id(a) {
            bad.push(("action", format!("{a:?} {e}")));
        }
    }
    let scopes = raw.scopes.unwrap_or_default();
    for s in &scopes {
        if s.is_empty()
            || s.bytes()
                .any(|b| b <= b' ' || b == 0x7f || b == b'"' || b == b'\\')
        {
            bad.push((
                "scopes",
                format!("{s:?} is not a scope (no spaces or quotes)"),
            ));
        }
    }
    match (host, path, client) {
        (Some(host), Some(path), Some(client)) if bad.is_empty() => Ok(Route {
            name,
            host,
            methods: raw.methods,
            path,
            package,
            client,
            client_kind,
            system_user: raw.system_user,
            token,
            action: raw.action,
            scopes,
        }),
        _ => Err(bad),
    }
}

/// An RFC 6901 JSON pointer to a member: starts with '/', `~` only as `~0` or `~1`.
fn check_pointer(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err(
            "is not a JSON pointer (it starts with '/', as /instanceOwner/organisationNumber)",
        );
    }
    let b = p.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'~' && !matches!(b.get(i + 1), Some(b'0' | b'1')) {
            return Err("has a '~' that is not ~0 or ~1");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:50051"

[envoy]
shadow = true

[[route]]
name = "instantiate"
host = "*.apps.altinn.no"
methods = ["POST"]
path = "/{org}/{app}/instances"
package = "a-ordning"
client = { body = "/instanceOwner/organisationNumber" }
token = "altinn"

[[route]]
host = "platform.altinn.no"
methods = ["GET", "PUT"]
path = "/{org}/{app}/instances/{instanceOwnerPartyId}/**"
package = "urn:altinn:accesspackage:skattegrunnlag"
client = { path = "instanceOwnerPartyId", kind = "party-id" }
system_user = "a3e8f4a4-0000-4000-8000-000000000001"
token = "maskinporten"
"#;

    #[test]
    fn a_good_table_reads_with_defaults() {
        let c = EnvoyConfig::from_toml("vakt.toml", GOOD).unwrap().unwrap();
        assert!(c.shadow);
        assert_eq!(c.employee, EmployeeFrom::Header("x-vakt-employee".into()));
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].package, "urn:altinn:accesspackage:a-ordning");
        assert_eq!(c.routes[1].name, "route[1]");
        assert_eq!(c.routes[1].client_kind, ClientKind::PartyId);
        assert!(c.is_altinn_host("platform.altinn.no"));
        assert!(c.is_altinn_host("altinn.no"));
        assert!(!c.is_altinn_host("evilaltinn.no"));
        assert!(!c.is_altinn_host("altinn.no.evil.example"));
    }

    #[test]
    fn no_envoy_keys_is_not_configured() {
        assert!(EnvoyConfig::from_toml("f", "listen = \"x\"\n")
            .unwrap()
            .is_none());
    }

    #[test]
    fn every_bad_route_is_reported_at_once_with_line_and_field() {
        let text = r#"
[envoy]
employee_header = "employee"

[[route]]
name = "one"
host = "Platform.altinn.no:443"
methods = ["get"]
path = "/a//{x}"
package = "Not A Package"
client = { path = "y", query = "z" }
token = "id-porten"

[[route]]
host = "platform.altinn.no"
methods = ["GET"]
path = "/{party}"
package = "a-ordning"
client = { path = "party" }
token = "altinn"
colour = "blue"

[[route]]
name = "one"
host = "platform.altinn.no"
methods = ["GET"]
path = "/x/{p}"
package = "a-ordning"
client = { path = "nope", kind = "ssn" }
token = "altinn"
"#;
        let problems = EnvoyConfig::from_toml("vakt.toml", text).unwrap_err();
        let all = problems.join("\n");
        for want in [
            "vakt.toml:2: envoy.employee_header: \"employee\" must be",
            "vakt.toml:5: route[0] (\"one\").host:",
            "vakt.toml:5: route[0] (\"one\").methods: \"get\"",
            "vakt.toml:5: route[0] (\"one\").path: \"/a//{x}\" has an empty segment",
            "vakt.toml:5: route[0] (\"one\").package:",
            "vakt.toml:5: route[0] (\"one\").client: give exactly one",
            "vakt.toml:5: route[0] (\"one\").token: \"id-porten\"",
            "vakt.toml:14: route[1]: unknown field `colour`",
            "vakt.toml:23: route[2] (\"one\").client.path: \"nope\" is not a capture",
            "vakt.toml:23: route[2] (\"one\").client.kind: \"ssn\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn duplicate_route_names_are_refused() {
        let text = r#"
[[route]]
name = "a"
host = "altinn.no"
methods = ["GET"]
path = "/{p}"
package = "a-ordning"
client = { path = "p" }
token = "altinn"

[[route]]
name = "a"
host = "altinn.no"
methods = ["GET"]
path = "/x/{p}"
package = "a-ordning"
client = { path = "p" }
token = "altinn"
"#;
        let problems = EnvoyConfig::from_toml("f.toml", text).unwrap_err();
        assert_eq!(
            problems,
            ["f.toml:11: route[1] (\"a\").name: \"a\" is also the name of route[0]"]
        );
    }

    #[test]
    fn host_patterns() {
        let s = HostPattern::parse("*.altinn.no").unwrap();
        assert!(s.matches("platform.altinn.no"));
        assert!(s.matches("a.b.altinn.no"));
        assert!(!s.matches("altinn.no"));
        assert!(!s.matches("xaltinn.no"));
        for bad in [
            "",
            "*.",
            "a..b",
            "ALTINN.no",
            "altinn.no.",
            "altinn.no:443",
            "*altinn.no",
            "a.*.no",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
