//! Altinn's and the Entity Register's responses as saved from their APIs:
//! recognising what a JSON data file holds and restating each record in Vakt's
//! compact format, which `load` then checks like any other.
//!
//! Recognised, each unchanged as its API returns it:
//!
//! - the Entity Register (data.brreg.no): one unit, or the bulk download (a
//!   top-level array); `organisasjonsnummer`, `navn`, `overordnetEnhet`,
//!   `organisasjonsform.kode`;
//! - Altinn Register v2 organisations: `organizationIdentifier`, `displayName`,
//!   `unitType`, and the party's `partyId` and `partyUuid`, usually in a
//!   `{"data": [...]}` envelope;
//! - Altinn's system-user API: the agents list (a top-level array), vendor lists in
//!   a `{links, data}` envelope, and one system user (`byExternalId`);
//! - the delegated-clients response (`systemUserInformation` names the agent, and
//!   `data` lists its clients without roles or packages);
//! - access management's client list (`ClientDto`: `client.organizationIdentifier`,
//!   `access[].role` as an object, packages as objects), which does not name the
//!   agent, so it is wrapped as `{"systemUserId": ..., "clients": <response>}`.
//!   Altinn always names the role of each entry there, so one without a role is
//!   refused as not Altinn's answer; only Vakt's own format may leave a role out
//!   (a relationship nobody knows, as `vakt altinn sync` writes it);
//! - a standard system user's delegations (`{"systemUserId", "accessPackages"}`)
//!   and the self-delegation answer, wrapped as `{"systemUserId", "selfDelegated"}`.
//!
//! The records stay in place: each keeps the byte offset of its object, so every
//! problem points at its line and column.

use crate::json::Strict;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// What one file held, restated.
#[derive(Default)]
pub(super) struct Restated {
    /// Organisations in the compact format, each with the offset of its record.
    pub organizations: Vec<(usize, Value)>,
    /// System users in the compact format.
    pub system_users: Vec<(usize, Value)>,
    /// What a file adds to a system user defined elsewhere.
    pub attachments: Vec<(usize, Attachment)>,
    /// Problems: the offset they point at, and the message.
    pub problems: Vec<(usize, String)>,
    /// Said once per file, at WARN.
    pub warnings: Vec<String>,
}

/// What a file adds to a system user that another record defines.
#[derive(Debug, Default)]
pub struct Attachment {
    pub system_user: String,
    /// Client links, in the compact format (from a client list).
    pub clients: Option<Vec<(usize, Value)>>,
    /// Access packages, as URNs (from a standard system user's delegations).
    pub packages: Option<Vec<String>>,
    pub self_delegated: Option<bool>,
}

/// Whether `text` (a JSON file) is in one of Altinn's shapes rather than Vakt's
/// compact format or Cedar's entity format; `None` when it is not recognised as
/// one, so the caller reads it as before.
pub(super) fn restate(text: &str) -> Option<Result<Restated, (usize, String)>> {
    let base = text.as_ptr() as usize;
    let offset = |raw: &RawValue| (raw.get().as_ptr() as usize).saturating_sub(base);
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return None,
        };
        // Cedar entities have a `uid`; anything else is read as Altinn's, where
        // a record that cannot be read (a key given twice) is reported.
        let first = items.first()?;
        if let Ok(Strict(Value::Object(m))) = serde_json::from_str::<Strict>(first.get()) {
            if m.contains_key("uid") {
                return None;
            }
        }
        let mut out = Restated::default();
        list(&mut out, "", items.iter().map(|r| (offset(r), *r)));
        return Some(Ok(out));
    }
    let top: Entries<'_> = serde_json::from_str(text).ok()?;
    let keys: Vec<&str> = top.0.iter().map(|(k, _)| k.as_str()).collect();
    let compact = ["organizations", "systemUsers", "teams", "employees"];
    if keys.iter().all(|k| compact.contains(k)) {
        return None;
    }
    let get = |k: &str| top.0.iter().find(|(x, _)| x == k).map(|(_, v)| *v);
    let mut out = Restated::default();
    if let (Some(info), Some(data)) = (get("systemUserInformation"), get("data")) {
        // The authentication API's delegated clients of one agent.
        let Some(agent) = peek(info.get()).and_then(|m| {
            m.get("systemUserId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }) else {
            return Some(Err((
                offset(info),
                "systemUserInformation.systemUserId: missing; the delegated-clients response names its agent there".into(),
            )));
        };
        let clients = match clients_of(&mut out, data, &offset) {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        out.warnings.push(
            "a delegated-clients list carries no roles or packages, so rules 5 and 8 cannot be decided from it: its links carry no packages and deny with package-not-delegated-for-client. Feed access management's client list (with roles and packages) instead".into(),
        );
        out.attachments.push((
            offset(info),
            Attachment {
                system_user: agent,
                clients: Some(clients),
                ..Default::default()
            },
        ));
        return Some(Ok(out));
    }
    if let Some(su) = get("systemUserId") {
        let Some(id) = serde_json::from_str::<String>(su.get()).ok() else {
            return Some(Err((offset(su), "systemUserId: expected a string".into())));
        };
        let mut a = Attachment {
            system_user: id,
            ..Default::default()
        };
        for (k, v) in &top.0 {
            match k.as_str() {
                "systemUserId" | "rights" | "links" => {}
                "clients" => match clients_of(&mut out, v, &offset) {
                    Ok(c) => a.clients = Some(c),
                    Err(e) => return Some(Err(e)),
                },
                "accessPackages" => match serde_json::from_str::<Value>(v.get()) {
                    Ok(Value::Array(items)) => {
                        let mut urns = Vec::new();
                        for (i, p) in items.iter().enumerate() {
                            match package_urn(p) {
                                Some(u) => urns.push(u),
                                None => out.problems.push((
                                    offset(v),
                                    format!("accessPackages[{i}]: expected a URN or an object with \"urn\""),
                                )),
                            }
                        }
                        a.packages = Some(urns);
                    }
                    _ => {
                        return Some(Err((
                            offset(v),
                            "accessPackages: expected a list".into(),
                        )))
                    }
                },
                "selfDelegated" => match serde_json::from_str::<bool>(v.get()) {
                    Ok(b) => a.self_delegated = Some(b),
                    Err(_) => {
                        return Some(Err((
                            offset(v),
                            "selfDelegated: expected true or false".into(),
                        )))
                    }
                },
                other => {
                    return Some(Err((
                        offset(v),
                        format!("unknown key {other:?} beside systemUserId; expected clients, accessPackages or selfDelegated"),
                    )))
                }
            }
        }
        out.attachments.push((offset(su), a));
        return Some(Ok(out));
    }
    if let Some(data) = get("data") {
        // A `{links, data}` envelope.
        let items: Vec<&RawValue> = match serde_json::from_str(data.get()) {
            Ok(v) => v,
            Err(_) => return Some(Err((offset(data), "data: expected a list".into()))),
        };
        list(&mut out, "data", items.iter().map(|r| (offset(r), *r)));
        return Some(Ok(out));
    }
    // One record: an Entity Register unit or one system user.
    let m = peek(text)?;
    let at = text.len() - trimmed.len();
    match kind(&m) {
        Some(k) => record(&mut out, k, "", at, &m),
        None => return None,
    }
    // One system user without `userType`: `byExternalId` as it answered before
    // March 2025, when every system user was standard (Altinn itself still reads
    // a missing type so). In a list, a missing type stays an error.
    if let Some((_, Value::Object(su))) = out.system_users.last_mut() {
        if !su.contains_key("userType") {
            su.insert("userType".into(), Value::String("standard".into()));
            out.warnings.push(
                "a system user without userType (byExternalId before March 2025) is read as standard, as Altinn reads it".into(),
            );
        }
    }
    Some(Ok(out))
}

/// A JSON object's entries in order, refusing a key given twice.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Entries<'a>, M::Error> {
                let mut out: Vec<(String, &'a RawValue)> = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    if out.iter().any(|(x, _)| *x == k) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    out.push((k, m.next_value()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// An object, read strictly; `None` when the text is not one.
fn peek(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Strict>(text) {
        Ok(Strict(Value::Object(m))) => Some(m),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Organization,
    SystemUser,
}

/// What a record is, by the fields only that kind has.
fn kind(m: &Map<String, Value>) -> Option<Kind> {
    let has = |k: &str| m.contains_key(k);
    if has("organisasjonsnummer") || has("organizationIdentifier") || has("orgNumber") {
        Some(Kind::Organization)
    } else if has("reporteeOrgNo") || has("systemId") || has("integrationTitle") {
        Some(Kind::SystemUser)
    } else {
        None
    }
}

/// The records of a list, all of one kind (the first's); a record of another or
/// of no known kind is a problem, never dropped silently.
fn list<'a>(out: &mut Restated, path: &str, items: impl Iterator<Item = (usize, &'a RawValue)>) {
    let mut first: Option<Kind> = None;
    for (i, (at, raw)) in items.enumerate() {
        let here = if path.is_empty() {
            format!("[{i}]")
        } else {
            format!("{path}[{i}]")
        };
        let m = match serde_json::from_str::<Strict>(raw.get()) {
            Ok(Strict(Value::Object(m))) => m,
            Ok(_) => {
                out.problems
                    .push((at, format!("{here}: expected an object")));
                continue;
            }
            Err(e) => {
                out.problems
                    .push((at, format!("{here}: {}", strip(&e.to_string()))));
                continue;
            }
        };
        match (kind(&m), first) {
            (None, _) => out.problems.push((
                at,
                format!("{here}: not a record Vakt knows: expected an organisation (organisasjonsnummer, organizationIdentifier, orgNumber) or a system user (reporteeOrgNo)"),
            )),
            (Some(k), Some(f)) if k != f => out.problems.push((
                at,
                format!("{here}: a list mixes organisations and system users; keep them in separate files"),
            )),
            (Some(k), _) => {
                first = Some(k);
                record(out, k, &here, at, &m);
            }
        }
    }
}

/// serde_json's " at line L column C": the problem carries its own position.
fn strip(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

/// A string field under any of its names.
fn text_of<'m>(m: &'m Map<String, Value>, names: &[&str]) -> Option<&'m Value> {
    names
        .iter()
        .find_map(|n| m.get(*n))
        .filter(|v| !v.is_null())
}

fn record(out: &mut Restated, k: Kind, path: &str, at: usize, m: &Map<String, Value>) {
    let mut problems = Vec::new();
    let field = |f: &str| {
        if path.is_empty() {
            f.to_owned()
        } else {
            format!("{path}.{f}")
        }
    };
    match k {
        Kind::Organization => {
            let mut o = Map::new();
            match text_of(
                m,
                &["orgNumber", "organisasjonsnummer", "organizationIdentifier"],
            ) {
                Some(Value::String(n)) => {
                    o.insert("orgNumber".into(), Value::String(n.clone()));
                }
                _ => problems.push(format!(
                    "{}: expected the organisation number as a string",
                    field("organisasjonsnummer")
                )),
            }
            if let Some(v) = text_of(m, &["name", "navn", "displayName"]) {
                o.insert("name".into(), v.clone());
            }
            if let Some(v) = text_of(m, &["parentOrgNumber", "overordnetEnhet"]) {
                o.insert("parentOrgNumber".into(), v.clone());
            }
            match text_of(m, &["unitType", "organizationForm", "organisasjonsform"]) {
                Some(Value::Object(form)) => match form.get("kode") {
                    Some(Value::String(code)) => {
                        o.insert("unitType".into(), Value::String(code.clone()));
                    }
                    _ => problems.push(format!(
                        "{}: expected an object with the form's \"kode\"",
                        field("organisasjonsform")
                    )),
                },
                Some(v) => {
                    o.insert("unitType".into(), v.clone());
                }
                None => {}
            }
            // Register v2 names the party as the compact format does; checked there.
            for k in ["partyId", "partyUuid"] {
                if let Some(v) = text_of(m, &[k]) {
                    o.insert(k.into(), v.clone());
                }
            }
            if problems.is_empty() {
                out.organizations.push((at, Value::Object(o)));
            }
        }
        Kind::SystemUser => {
            let mut s = Map::new();
            for (from, to) in [
                ("id", "id"),
                ("integrationTitle", "integrationTitle"),
                ("systemId", "systemId"),
                ("reporteeOrgNo", "reporteeOrgNo"),
                ("externalRef", "externalRef"),
                ("isDeleted", "isDeleted"),
                ("selfDelegated", "selfDelegated"),
            ] {
                if let Some(v) = m.get(from).filter(|v| !v.is_null()) {
                    s.insert(to.into(), v.clone());
                }
            }
            // A missing userType or accessPackages stays missing: `build` says
            // which API returns them (packages may come from another file).
            if let Some(v) = m.get("userType").or_else(|| m.get("systemUserType")) {
                s.insert("userType".into(), v.clone());
            }
            if let Some(v) = m.get("accessPackages") {
                s.insert("accessPackages".into(), v.clone());
            }
            if problems.is_empty() {
                out.system_users.push((at, Value::Object(s)));
            }
        }
    }
    out.problems.extend(problems.into_iter().map(|p| (at, p)));
}

/// The clients of a client list: access management's `ClientDto` list (bare or in
/// an envelope), or the authentication API's delegated clients; in the compact
/// format.
fn clients_of(
    out: &mut Restated,
    raw: &RawValue,
    offset: &dyn Fn(&RawValue) -> usize,
) -> Result<Vec<(usize, Value)>, (usize, String)> {
    let items: Vec<&RawValue> = match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
        Ok(v) => v,
        Err(_) => match serde_json::from_str::<Entries<'_>>(raw.get()) {
            Ok(e) => match e.0.iter().find(|(k, _)| k == "data") {
                Some((_, d)) => serde_json::from_str(d.get())
                    .map_err(|_| (offset(d), "data: expected a list of clients".to_owned()))?,
                None => {
                    return Err((
                        offset(raw),
                        "clients: expected a list of clients, or a response with \"data\"".into(),
                    ))
                }
            },
            Err(e) => return Err((offset(raw), format!("clients: {}", strip(&e.to_string())))),
        },
    };
    let mut clients = Vec::with_capacity(items.len());
    for (i, r) in items.iter().enumerate() {
        let at = offset(r);
        let m = match serde_json::from_str::<Strict>(r.get()) {
            Ok(Strict(Value::Object(m))) => m,
            Ok(_) => {
                out.problems
                    .push((at, format!("clients[{i}]: expected an object")));
                continue;
            }
            Err(e) => {
                out.problems
                    .push((at, format!("clients[{i}]: {}", strip(&e.to_string()))));
                continue;
            }
        };
        match client(&m) {
            Ok(c) => clients.push((at, c)),
            Err(ps) => out
                .problems
                .extend(ps.into_iter().map(|p| (at, format!("clients[{i}].{p}")))),
        }
    }
    Ok(clients)
}

/// A package as Altinn writes it: the URN, or an object with `urn`.
fn package_urn(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("urn").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// One client in the compact format, from any of Altinn's spellings.
fn client(m: &Map<String, Value>) -> Result<Value, Vec<String>> {
    let mut problems = Vec::new();
    let inner = m.get("client").and_then(Value::as_object);
    let pick = |names: &[&str], nested: &str| {
        text_of(m, names)
            .or_else(|| inner.and_then(|c| c.get(nested)).filter(|v| !v.is_null()))
            .cloned()
    };
    let mut c = Map::new();
    match pick(&["clientOrganizationNumber", "organizationIdentifier"], "organizationIdentifier") {
        Some(v) => {
            c.insert("clientOrganizationNumber".into(), v);
        }
        None => problems.push(
            "clientOrganizationNumber: missing (also looked for organizationIdentifier and client.organizationIdentifier)"
                .to_owned(),
        ),
    }
    if let Some(v) = pick(&["clientId"], "id") {
        c.insert("clientId".into(), v);
    }
    if let Some(v) = pick(&["clientOrganizationName"], "name") {
        c.insert("clientOrganizationName".into(), v);
    }
    if let Some(v) = m.get("status") {
        c.insert("status".into(), v.clone());
    }
    if let Some(access) = m.get("access") {
        let Some(entries) = access.as_array() else {
            problems.push("access: expected a list".into());
            return Err(problems);
        };
        let mut out = Vec::new();
        for (j, a) in entries.iter().enumerate() {
            let role = match a.get("role") {
                Some(Value::String(r)) => Some(r.clone()),
                Some(Value::Object(r)) => r.get("urn").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            // Altinn's `RoleAccessPackages` always carries its role: a missing
            // one means the file is not Altinn's answer, so it is refused rather
            // than read as an unknown relationship.
            let Some(role) = role else {
                problems.push(format!(
                    "access[{j}].role: expected a role URN, or an object with \"urn\""
                ));
                continue;
            };
            let mut packages = Vec::new();
            for (k, p) in a
                .get("packages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                match package_urn(p) {
                    Some(u) => packages.push(Value::String(u)),
                    None => problems.push(format!(
                        "access[{j}].packages[{k}]: expected a URN or an object with \"urn\""
                    )),
                }
            }
            out.push(serde_json::json!({"role": role, "packages": packages}));
        }
        c.insert("access".into(), Value::Array(out));
    }
    if problems.is_empty() {
        Ok(Value::Object(c))
    } else {
        Err(problems)
    }
}
