//! [`Altinn`]: reads from Altinn's APIs with tokens from the Maskinporten
//! client. A list is read whole, every page, or not at all; a `next` link is
//! followed only on the base URL's origin, so a token never leaves for another
//! host; pages, answers and items are bounded.

use super::error::AltinnError;
use super::types::{AuthorizedParty, ClientDto, Page, SystemUser};
use crate::maskinporten::{altinn_message, http, Maskinporten, OrgNumber, Scope};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use url::Url;

/// The vendor's list of system users for one of its systems.
pub const SYSTEM_USERS_PATH: &str = "/authentication/api/v1/systemuser/vendor/bysystem";
/// The parties a system user may act for, with packages and roles.
pub const AUTHORIZED_PARTIES_PATH: &str = "/accessmanagement/api/v1/enduser/authorizedparties";
/// An agent system user's clients, with roles and packages.
pub const CLIENT_DELEGATIONS_PATH: &str =
    "/accessmanagement/api/v1/enduser/clientdelegations/agents/accesspackages";
/// Altinn's token exchange (Maskinporten token in, Altinn token out).
pub const EXCHANGE_PATH: &str = "/authentication/api/v1/exchange/maskinporten";

/// The vendor token's scope for the system-user list.
pub const SYSTEM_USERS_SCOPE: &str = "altinn:authentication/systemregister.write";
/// The system user's own scope for its authorized parties.
pub const AUTHORIZED_PARTIES_SCOPE: &str = "altinn:accessmanagement/authorizedparties";
/// The client administrator's scope for an agent's client list.
pub const CLIENT_DELEGATIONS_SCOPE: &str = "altinn:clientdelegations.read";

/// The bounds of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Pages followed in one list (Altinn's are 50 items a page).
    pub max_pages: usize,
    /// Bytes read of one answer.
    pub max_body: usize,
    /// Items in one list, all pages together.
    pub max_items: usize,
}

impl Default for Limits {
    /// 10,000 pages (500,000 system users of one system), 16 MiB an answer,
    /// a million items.
    fn default() -> Self {
        Self {
            max_pages: 10_000,
            max_body: 16 * 1024 * 1024,
            max_items: 1_000_000,
        }
    }
}

/// The Altinn client. Cheap to clone (the Maskinporten client is shared).
#[derive(Debug, Clone)]
pub struct Altinn {
    /// The base URL without a trailing slash (`https://platform.tt02.altinn.no`).
    base: String,
    base_url: Url,
    maskinporten: Maskinporten,
    limits: Limits,
}

/// Whose token a read sends.
enum Auth<'a> {
    /// The vendor's own Maskinporten token with this scope.
    Vendor(&'static str),
    /// The system user's Maskinporten token with this scope, exchanged for an
    /// Altinn token.
    SystemUser(&'a SystemUser, &'static str),
}

impl Altinn {
    /// A client for Altinn at `base_url` (`https://platform.tt02.altinn.no`;
    /// plain http only on loopback, for a stand-in), reading with tokens from
    /// `maskinporten`. Nothing is fetched until a read.
    pub fn new(base_url: &str, maskinporten: Maskinporten) -> Result<Self, AltinnError> {
        let bad = |reason: String| AltinnError::Misconfigured {
            reason: format!("base URL {base_url:?}: {reason}"),
        };
        let url = Url::parse(base_url).map_err(|e| bad(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if http::is_loopback(&url) => {}
            _ => return Err(bad("must be https (plain http only on loopback)".into())),
        }
        if url.host().is_none() {
            return Err(bad("names no host".into()));
        }
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(bad("must not carry a query, fragment or credentials".into()));
        }
        let base = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            base,
            base_url: url,
            maskinporten,
            limits: Limits::default(),
        })
    }

    /// The same client with other bounds.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Altinn's token exchange under the base URL.
    pub fn exchange_url(&self) -> Url {
        self.url(EXCHANGE_PATH)
    }

    /// Every system user of the vendor's system `system_id`, all pages
    /// (`GET {base}/authentication/api/v1/systemuser/vendor/bysystem/{systemId}`
    /// with the vendor's token, scope [`SYSTEM_USERS_SCOPE`]).
    ///
    /// Deleted system users are absent (Altinn leaves them out; one marked
    /// `isDeleted` is dropped too). Any page failing fails the whole read, naming
    /// the page. Each record is checked: `id` a UUID, given once; `systemId` the
    /// system asked for; `reporteeOrgNo` an organisation number; `userType` and
    /// `externalRef` present and bounded.
    pub async fn system_users(&self, system_id: &str) -> Result<Vec<SystemUser>, AltinnError> {
        if system_id.is_empty()
            || system_id.len() > 255
            || !system_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(AltinnError::Misconfigured {
                reason: format!(
                    "system id {system_id:?} must be 1 to 255 letters, digits, '_', '-' or '.'"
                ),
            });
        }
        let mut first = self.url(SYSTEM_USERS_PATH);
        if let Ok(mut segments) = first.path_segments_mut() {
            segments.push(system_id);
        }
        let what = format!("the system users of system {system_id}");
        let users: Vec<SystemUser> = self
            .pages(&what, first, &Auth::Vendor(SYSTEM_USERS_SCOPE))
            .await?;
        let mut seen = HashSet::with_capacity(users.len());
        let mut out = Vec::with_capacity(users.len());
        for (i, su) in users.into_iter().enumerate() {
            let invalid = |reason: String| AltinnError::Invalid {
                call: what.clone(),
                reason: format!("system user {} of the list: {reason}", i + 1),
            };
            check_system_user(&su, system_id).map_err(invalid)?;
            if !seen.insert(su.id.to_ascii_lowercase()) {
                return Err(invalid(format!(
                    "id {} is listed twice: the pages do not add up to one list",
                    su.id
                )));
            }
            if !su.is_deleted {
                out.push(su);
            }
        }
        Ok(out)
    }

    /// The parties `system_user` may act for, with access packages and roles
    /// (`GET {base}/accessmanagement/api/v1/enduser/authorizedparties?includeAccessPackages=true&includeRoles=true`),
    /// read with that system user's own token: Maskinporten's for its owner and
    /// `externalRef` (scope [`AUTHORIZED_PARTIES_SCOPE`]), exchanged at
    /// Altinn. The owner for a standard system user; the clients for an agent.
    ///
    /// The token must name `system_user` (else it is another system user's
    /// list, and the read fails). Each party's `partyUuid` must be a UUID and
    /// its `organizationNumber`, when given, an organisation number.
    pub async fn authorized_parties(
        &self,
        system_user: &SystemUser,
    ) -> Result<Vec<AuthorizedParty>, AltinnError> {
        let mut url = self.url(AUTHORIZED_PARTIES_PATH);
        url.query_pairs_mut()
            .append_pair("includeAccessPackages", "true")
            .append_pair("includeRoles", "true");
        let what = format!("the authorized parties of system user {}", system_user.id);
        let auth = Auth::SystemUser(system_user, AUTHORIZED_PARTIES_SCOPE);
        let call = format!("{what} ({})", shown(&url));
        let bearer = self.bearer(&call, &auth).await?;
        let body = self.get(&call, &url, &bearer).await?;
        let parties: Vec<AuthorizedParty> = parse(&call, &body)?;
        let mut count = 0;
        for (i, p) in parties.iter().enumerate() {
            check_party(p, &format!("[{i}]"), 0, &mut count, self.limits.max_items).map_err(
                |reason| AltinnError::Invalid {
                    call: call.clone(),
                    reason,
                },
            )?;
        }
        Ok(parties)
    }

    /// The complete client list of the agent system user
    /// `agent_system_user_id`, owned by the party `owner_party_uuid`, with each
    /// client's roles and packages, all pages
    /// (`GET {base}/accessmanagement/api/v1/enduser/clientdelegations/agents/accesspackages?party={owner}&to={agent}`).
    /// Read with the token of `admin`, a system user of the owner that the
    /// customer approved with the `klientadministrator` package (scope
    /// [`CLIENT_DELEGATIONS_SCOPE`], exchanged at Altinn).
    ///
    /// Each client's `client.id` must be a UUID, given once, its
    /// `organizationIdentifier`, when given, an organisation number, and every
    /// role and package a URN.
    pub async fn client_delegations(
        &self,
        admin: &SystemUser,
        owner_party_uuid: &str,
        agent_system_user_id: &str,
    ) -> Result<Vec<ClientDto>, AltinnError> {
        for (name, v) in [
            ("owner party UUID", owner_party_uuid),
            ("agent system user id", agent_system_user_id),
        ] {
            if !is_uuid(v) {
                return Err(AltinnError::Misconfigured {
                    reason: format!("the {name} {v:?} is not a UUID"),
                });
            }
        }
        let mut first = self.url(CLIENT_DELEGATIONS_PATH);
        first
            .query_pairs_mut()
            .append_pair("party", owner_party_uuid)
            .append_pair("to", agent_system_user_id);
        let what = format!("the clients of agent system user {agent_system_user_id}");
        let clients: Vec<ClientDto> = self
            .pages(
                &what,
                first,
                &Auth::SystemUser(admin, CLIENT_DELEGATIONS_SCOPE),
            )
            .await?;
        let mut seen = HashSet::with_capacity(clients.len());
        for (i, c) in clients.iter().enumerate() {
            let invalid = |reason: String| AltinnError::Invalid {
                call: what.clone(),
                reason: format!("client {} of the list: {reason}", i + 1),
            };
            check_client(c).map_err(invalid)?;
            if !seen.insert(c.client.id.to_ascii_lowercase()) {
                return Err(invalid(format!(
                    "client.id {} is listed twice: the pages do not add up to one list",
                    c.client.id
                )));
            }
        }
        Ok(clients)
    }

    fn url(&self, path: &str) -> Url {
        // The base was a URL and the paths are constants: this parses.
        Url::parse(&format!("{}{path}", self.base)).unwrap_or_else(|_| self.base_url.clone())
    }

    /// Every page of a `{links: {next}, data}` list from `first`.
    async fn pages<T: DeserializeOwned>(
        &self,
        what: &str,
        first: Url,
        auth: &Auth<'_>,
    ) -> Result<Vec<T>, AltinnError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut url = first;
        for page in 1..=self.limits.max_pages {
            seen.insert(url.as_str().to_owned());
            let call = format!("{what}, page {page} ({})", shown(&url));
            // Per page: a long read outlives a token; the cache answers the rest.
            let bearer = self.bearer(&call, auth).await?;
            let body = self.get(&call, &url, &bearer).await?;
            let p: Page<T> = parse(&call, &body)?;
            if out.len() + p.data.len() > self.limits.max_items {
                return Err(AltinnError::Invalid {
                    call,
                    reason: format!(
                        "the list has more than {} items, the most read",
                        self.limits.max_items
                    ),
                });
            }
            out.extend(p.data);
            let Some(next) = p.links.next.filter(|n| !n.trim().is_empty()) else {
                tracing::debug!(
                    list = what,
                    pages = page,
                    items = out.len(),
                    "Altinn list read"
                );
                return Ok(out);
            };
            let next = self
                .next_url(&url, &next)
                .map_err(|reason| AltinnError::Invalid {
                    call: call.clone(),
                    reason,
                })?;
            if seen.contains(next.as_str()) {
                return Err(AltinnError::Invalid {
                    call,
                    reason: format!(
                        "links.next {} was read before: the pages loop",
                        shown(&next)
                    ),
                });
            }
            url = next;
        }
        Err(AltinnError::Invalid {
            call: what.to_owned(),
            reason: format!(
                "the list has more than {} pages, the most followed",
                self.limits.max_pages
            ),
        })
    }

    /// `next` as a URL on the base URL's origin (scheme, host and port); a
    /// relative link is read against the page it came from.
    fn next_url(&self, page: &Url, next: &str) -> Result<Url, String> {
        if next.len() > 8 * 1024 {
            return Err("links.next is longer than 8 KiB".into());
        }
        let url = page
            .join(next.trim())
            .map_err(|e| format!("links.next is not a URL: {e}"))?;
        if url.origin() != self.base_url.origin()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!(
                "links.next points at {}, not at {}: the token is sent to the base URL's origin alone",
                origin_of(&url),
                origin_of(&self.base_url)
            ));
        }
        if !url
            .path()
            .starts_with(self.base_url.path().trim_end_matches('/'))
        {
            return Err(format!(
                "links.next {} is outside the base URL's path",
                shown(&url)
            ));
        }
        Ok(url)
    }

    /// The bearer token for one request.
    async fn bearer(&self, call: &str, auth: &Auth<'_>) -> Result<String, AltinnError> {
        let mp = &self.maskinporten;
        match auth {
            Auth::Vendor(scope) => {
                let scope = scope_of(scope)?;
                let t = mp
                    .vendor_token(&[scope])
                    .await
                    .map_err(|e| AltinnError::token(call, e))?;
                Ok(t.access_token.expose().to_owned())
            }
            Auth::SystemUser(su, scope) => {
                let scope = scope_of(scope)?;
                let org =
                    OrgNumber::parse(&su.reportee_org_no).map_err(|e| AltinnError::Invalid {
                        call: call.to_owned(),
                        reason: format!("system user {}: reporteeOrgNo: {e}", su.id),
                    })?;
                let t = mp
                    .system_user_token(&org, &[scope], su.grant_external_ref())
                    .await
                    .map_err(|e| AltinnError::token(call, e))?;
                // Maskinporten picks the system user by owner and externalRef:
                // a token for another one would read another's list.
                if !t
                    .system_user_ids
                    .iter()
                    .any(|id| id.eq_ignore_ascii_case(&su.id))
                {
                    return Err(AltinnError::Invalid {
                        call: call.to_owned(),
                        reason: format!(
                            "Maskinporten's token for {} with externalRef {:?} names system user(s) {:?}, not {}",
                            su.reportee_org_no, su.external_ref, t.system_user_ids, su.id
                        ),
                    });
                }
                let altinn = mp
                    .altinn_token(&t, &self.exchange_url())
                    .await
                    .map_err(|e| AltinnError::token(call, e))?;
                Ok(altinn.access_token.expose().to_owned())
            }
        }
    }

    /// One GET: the body of a 200, or the failure in Altinn's terms.
    async fn get(
        &self,
        call: &str,
        url: &Url,
        bearer: &str,
    ) -> Result<hyper::body::Bytes, AltinnError> {
        let answer = self
            .maskinporten
            .http()
            .get_json_bearer(url, bearer, self.limits.max_body)
            .await
            .map_err(|reason| {
                // An answer larger than the bound is Altinn's answer, not an
                // outage: retrying gets the same.
                if reason.contains(http::TOO_LARGE) {
                    AltinnError::Invalid {
                        call: call.to_owned(),
                        reason,
                    }
                } else {
                    AltinnError::Unavailable {
                        call: call.to_owned(),
                        reason,
                    }
                }
            })?;
        match answer.status {
            200 => Ok(answer.body),
            401 | 403 => Err(AltinnError::Refused {
                call: call.to_owned(),
                status: Some(answer.status),
                message: altinn_message(answer.status, &answer.body),
            }),
            429 | 500..=599 => Err(AltinnError::Unavailable {
                call: call.to_owned(),
                reason: altinn_message(answer.status, &answer.body),
            }),
            status => Err(AltinnError::Invalid {
                call: call.to_owned(),
                reason: format!(
                    "it answered {}; is the base URL right?",
                    altinn_message(status, &answer.body)
                ),
            }),
        }
    }
}

fn scope_of(s: &str) -> Result<Scope, AltinnError> {
    Scope::parse(s).map_err(|reason| AltinnError::Misconfigured { reason })
}

/// An answer read as `T`, a problem naming the field
/// (`data[3].reporteeOrgNo: invalid type: null, expected a string`).
fn parse<T: DeserializeOwned>(call: &str, body: &[u8]) -> Result<T, AltinnError> {
    let invalid = |reason: String| AltinnError::Invalid {
        call: call.to_owned(),
        reason,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            invalid(format!("not the answer expected: {inner}"))
        } else {
            invalid(format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| invalid(format!("more after the answer: {e}")))?;
    Ok(v)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok_and(|u| !u.is_nil())
}

/// A text from Altinn that Vakt keeps: at most `max` bytes, no control
/// characters.
fn check_text(field: &str, s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("{field}: longer than {max} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{field}: has a control character"));
    }
    Ok(())
}

fn check_system_user(su: &SystemUser, system_id: &str) -> Result<(), String> {
    if !is_uuid(&su.id) {
        return Err(format!("id {:?} is not a UUID", su.id));
    }
    let at = |field: &str| format!("{}: {field}", su.id);
    if su.system_id != system_id {
        return Err(format!(
            "{}: systemId {:?} is not the system asked for",
            su.id, su.system_id
        ));
    }
    crate::ids::check_org_number(&su.reportee_org_no)
        .map_err(|e| format!("{}: reporteeOrgNo {:?}: {e}", su.id, su.reportee_org_no))?;
    if su.user_type.is_empty() {
        return Err(format!("{}: userType is empty", su.id));
    }
    check_text(&at("userType"), &su.user_type, 64)?;
    check_text(&at("externalRef"), &su.external_ref, 255)?;
    check_text(&at("integrationTitle"), &su.integration_title, 1024)?;
    check_text(&at("created"), &su.created, 64)?;
    Ok(())
}

fn check_party(
    p: &AuthorizedParty,
    path: &str,
    depth: usize,
    count: &mut usize,
    max: usize,
) -> Result<(), String> {
    *count += 1;
    if *count > max {
        return Err(format!("more than {max} parties, the most read"));
    }
    if depth > 4 {
        return Err(format!("{path}: subunits nest deeper than 4"));
    }
    if !is_uuid(&p.party_uuid) {
        return Err(format!("{path}.partyUuid {:?} is not a UUID", p.party_uuid));
    }
    if let Some(o) = &p.organization_number {
        crate::ids::check_org_number(o)
            .map_err(|e| format!("{path}.organizationNumber {o:?}: {e}"))?;
    }
    for (k, v) in p
        .authorized_access_packages
        .iter()
        .map(|v| ("authorizedAccessPackages", v))
        .chain(p.authorized_roles.iter().map(|v| ("authorizedRoles", v)))
    {
        if v.is_empty() {
            return Err(format!("{path}.{k}: an empty entry"));
        }
        check_text(&format!("{path}.{k}"), v, 256)?;
    }
    for (j, s) in p.subunits.iter().enumerate() {
        check_party(s, &format!("{path}.subunits[{j}]"), depth + 1, count, max)?;
    }
    Ok(())
}

fn check_client(c: &ClientDto) -> Result<(), String> {
    let e = &c.client;
    if !is_uuid(&e.id) {
        return Err(format!("client.id {:?} is not a UUID", e.id));
    }
    if let Some(o) = &e.organization_identifier {
        crate::ids::check_org_number(o)
            .map_err(|err| format!("{}: client.organizationIdentifier {o:?}: {err}", e.id))?;
    }
    for (j, a) in c.access.iter().enumerate() {
        if !a.role.urn.starts_with("urn:") {
            return Err(format!(
                "{}: access[{j}].role.urn {:?} is not a URN",
                e.id, a.role.urn
            ));
        }
        check_text(&format!("{}: access[{j}].role.urn", e.id), &a.role.urn, 256)?;
        for (k, p) in a.packages.iter().enumerate() {
            if !p.urn.starts_with("urn:") {
                return Err(format!(
                    "{}: access[{j}].packages[{k}].urn {:?} is not a URN",
                    e.id, p.urn
                ));
            }
            check_text(
                &format!("{}: access[{j}].packages[{k}].urn", e.id),
                &p.urn,
                256,
            )?;
        }
    }
    Ok(())
}

/// A URL as shown in errors: scheme, host, port and path; never the query
/// (an opaque continuation) or credentials.
fn shown(url: &Url) -> String {
    format!("GET {}{}", origin_of(url), url.path())
}

fn origin_of(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}://{}:{p}", url.scheme(), url.host_str().unwrap_or("")),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_that_fails_is_named_with_its_path() {
        let e = parse::<Page<SystemUser>>(
            "the list",
            br#"{"links": {}, "data": [{"id": "x", "systemId": "s", "reporteeOrgNo": null, "userType": "agent"}]}"#,
        )
        .unwrap_err();
        let AltinnError::Invalid { reason, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(reason.starts_with("data[0].reporteeOrgNo: "), "{reason}");
        let e = parse::<Page<SystemUser>>("the list", b"<html>").unwrap_err();
        assert_eq!(e.kind(), "invalid");
    }

    #[test]
    fn only_whole_uuids_are_uuids() {
        assert!(is_uuid("a1f5c2e0-0000-4000-8000-000000000001"));
        for bad in [
            "",
            "00000000-0000-0000-0000-000000000000",
            "a1f5c2e000004000800000000000000001",
            "{a1f5c2e0-0000-4000-8000-000000000001}",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }
}
