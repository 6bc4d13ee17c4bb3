//! The one set of checks every record passes, whatever its source: a data file, the
//! database read whole, or one change read from the database's feed (or applied in
//! code). Each source decodes its records into the data format's types (`format`)
//! and hands them here, so a record refused from one source is refused from every
//! other, with the same reason naming the same field.
//!
//! Two kinds, kept apart because they need different things:
//!
//! - field checks ([`Fields`]) look at one record alone (org number check digits,
//!   id shape, enum values, role URNs, known access packages) and turn it into the
//!   world's compact record;
//! - reference checks ([`references`]) look the record's references up in a world
//!   (known organisations, system users and teams, operational units one level
//!   deep). A full build checks every record once all are in; a change checks the
//!   records it touched once all its changes are in.
//!
//! Duplicate ids are found where records are gathered (`build`, and the database
//! reader for rows of one key), since only a set of records can hold two. A party
//! id or party UUID given to two organisations is a reference check: the world's
//! party indexes say which organisation holds each.

use super::format::{
    ClientRecord, ClientsRecord, EmployeeRecord, OrganizationRecord, PartyIdValue,
    SystemUserRecord, TeamRecord,
};
use super::records::{
    map, ClientId, ClientLink, ClientScope, Employee, EmployeeKind, Id, LinkAccess, Map, OrgNo,
    Organization, Party, SystemUser, Team, UserType,
};
use super::state::World;
use crate::ids::check_id;
use crate::rules::packages::AccessPackages;
use smol_str::SmolStr;
use std::collections::HashMap;
use std::sync::Arc;

/// The field checks, with what they share across records: the package list, and
/// each distinct client-link access, held once.
pub(crate) struct Fields<'a> {
    packages: &'a AccessPackages,
    interned: HashMap<LinkAccess, Arc<LinkAccess>>,
}

/// An org number that must be valid: the number, or the problem naming `field`
/// (formatted only then: most records have no problem).
fn org_no(field: impl std::fmt::Display, n: &str, bad: &mut Vec<String>) -> Option<OrgNo> {
    OrgNo::parse(n)
        .map_err(|e| bad.push(format!("{field} {n:?} {e}")))
        .ok()
}

/// A record id that must be well formed.
fn id(s: &str, bad: &mut Vec<String>) -> Option<Id> {
    check_id(s).map_err(|e| bad.push(format!("id {e}"))).ok()?;
    Some(s.into())
}

/// Altinn's party id as written, when it is one: a whole number from 1 to
/// `i64::MAX` (Altinn's are `int` today; the width leaves room). The reason
/// otherwise, naming the field.
fn party_id_of(v: &PartyIdValue) -> Result<std::num::NonZeroI64, String> {
    /// A whole number, saturated beyond `i128`; none when `v` is not written as one.
    fn whole(v: &PartyIdValue) -> Option<i128> {
        match v {
            PartyIdValue::Integer(n) => Some(*n),
            // A float is whole only when it is too large to be anything but
            // (a JSON integer beyond 64 bits reads as one).
            PartyIdValue::Fraction(x) if x.fract() == 0.0 && x.abs() >= 9.2e18 => {
                Some(if *x > 0.0 { i128::MAX } else { i128::MIN })
            }
            PartyIdValue::Fraction(_) => None,
            PartyIdValue::Text(t) => {
                let (minus, digits) = match t.strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, t.as_str()),
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let n = digits.parse::<i128>().unwrap_or(i128::MAX);
                Some(if minus { -n } else { n })
            }
        }
    }
    match whole(v) {
        None => Err(format!(
            "partyId {v} must be a whole number written in digits, as Altinn writes party ids (50012345)"
        )),
        Some(n) if n <= 0 => Err(format!("partyId {v} must be greater than 0")),
        Some(n) => i64::try_from(n)
            .ok()
            .and_then(std::num::NonZeroI64::new)
            .ok_or_else(|| format!("partyId {v} is too large: a party id is at most {}", i64::MAX)),
    }
}

/// Altinn's party UUID, when `s` is one; the reason otherwise.
fn party_uuid_of(s: &str) -> Result<uuid::Uuid, String> {
    match uuid::Uuid::try_parse(s) {
        Ok(u) if u.is_nil() => Err(format!(
            "partyUuid {s:?} is the nil UUID, which names no party"
        )),
        Ok(u) => Ok(u),
        Err(_) => Err(format!(
            "partyUuid {s:?} is not a UUID (as Altinn writes them: 8-4-4-4-12 hex digits)"
        )),
    }
}

/// Two organisations given one party id or UUID: named in order, so the reason
/// reads the same whichever of the two is checked.
fn given_twice(field: &str, value: impl std::fmt::Display, a: OrgNo, b: OrgNo) -> String {
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    format!("{field} {value} is given to two organisations, {a} and {b}")
}

/// The parent an organisation record inherits from (as [`Organization::parent`]),
/// when its parent is a valid org number.
fn inherits_from(r: &OrganizationRecord) -> Option<OrgNo> {
    match r.unit_type.as_deref() {
        Some(t) if !t.eq_ignore_ascii_case("BEDR") && !t.eq_ignore_ascii_case("AAFY") => None,
        _ => r
            .parent_org_number
            .as_deref()
            .and_then(|p| OrgNo::parse(p).ok()),
    }
}

impl<'a> Fields<'a> {
    pub(crate) fn new(packages: &'a AccessPackages) -> Self {
        Self {
            packages,
            interned: HashMap::new(),
        }
    }

    /// The organisation, or none when its number is not one (every problem in `bad`).
    pub(crate) fn organization(
        &mut self,
        r: &OrganizationRecord,
        bad: &mut Vec<String>,
    ) -> Option<Organization> {
        let n = org_no("orgNumber", &r.org_number, bad)?;
        let parent = r
            .parent_org_number
            .as_deref()
            .and_then(|p| org_no("parentOrgNumber", p, bad));
        let party_id = r
            .party_id
            .as_ref()
            .and_then(|v| party_id_of(v).map_err(|e| bad.push(e)).ok());
        let party_uuid = r
            .party_uuid
            .as_deref()
            .and_then(|u| party_uuid_of(u).map_err(|e| bad.push(e)).ok());
        Some(Organization {
            org_number: n,
            name: r.name.as_str().into(),
            parent_org_number: parent,
            unit_type: r
                .unit_type
                .as_deref()
                .map(|t| t.to_ascii_uppercase().into()),
            party: Party::boxed(party_id, party_uuid),
        })
    }

    /// The system user with its client links, or none when its id is not one.
    pub(crate) fn system_user(
        &mut self,
        r: &SystemUserRecord,
        bad: &mut Vec<String>,
    ) -> Option<SystemUser> {
        let id = id(&r.id, bad)?;
        let owner = org_no("reporteeOrgNo", &r.reportee_org_no, bad);
        // Altinn's APIs write enum values in varying case, and Register spells
        // them its own way.
        let user_type = match r
            .user_type
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("standard" | "first-party-system-user") => UserType::Standard,
            Some("agent" | "client-party-system-user") => UserType::Agent,
            Some(other) => {
                bad.push(format!("userType {other:?} must be \"standard\" or \"agent\" (or Register's \"first-party-system-user\" or \"client-party-system-user\")"));
                UserType::Standard
            }
            None => {
                bad.push("userType: missing; Altinn's system-user API returns it (\"standard\" or \"agent\") for every system user since March 2025: fetch the record again, or add it".to_owned());
                UserType::Standard
            }
        };
        if r.access_packages.is_none() && !r.is_deleted {
            bad.push("accessPackages: missing, which would deny every request; Altinn's system-user API returns them (GET …/systemuser/agents, GET …/systemuser/{party}/{id}), and a standard system user's delegations list them (GET …/systemuser/{party}/{id}/delegations); give [] for none".to_owned());
        }
        let mut own: Vec<SmolStr> = Vec::new();
        for (i, p) in r.access_packages.iter().flatten().enumerate() {
            if self.packages.contains(&p.urn) {
                own.push(p.urn.as_str().into());
            } else {
                bad.push(format!(
                    "accessPackages[{i}].urn {:?} is not a known access package",
                    p.urn
                ));
            }
        }
        own.sort();
        own.dedup();
        if user_type == UserType::Standard && !r.clients.is_empty() {
            bad.push(
                "clients: a standard system user has no client links; use userType \"agent\""
                    .to_owned(),
            );
        }
        if user_type == UserType::Standard && r.self_delegated {
            bad.push("selfDelegated applies only to agent system users".to_owned());
        }
        let mut links: Map<OrgNo, ClientLink> = map();
        for (i, c) in r.clients.iter().enumerate() {
            if let Some((n, link)) = self.client_link(Some(i), c, bad) {
                if links.insert(n, link).is_some() {
                    bad.push(format!(
                        "clients[{i}].clientOrganizationNumber {:?} is linked twice",
                        c.client_organization_number
                    ));
                }
            }
        }
        Some(SystemUser {
            id,
            integration_title: r.integration_title.as_deref().unwrap_or("").into(),
            system_id: r.system_id.as_deref().unwrap_or("").into(),
            owner: owner.unwrap_or(OrgNo::PLACEHOLDER),
            user_type,
            access_packages: own.into_boxed_slice(),
            external_ref: r.external_ref.as_deref().unwrap_or("").into(),
            is_deleted: r.is_deleted,
            self_delegated: r.self_delegated,
            links,
            granted_to: Box::default(),
        })
    }

    /// One client link, the `i`-th of its system user's (its fields named
    /// `clients[i].…`), or on its own (none); none when the client's org number is
    /// not one.
    pub(crate) fn client_link(
        &mut self,
        i: Option<usize>,
        c: &ClientRecord,
        bad: &mut Vec<String>,
    ) -> Option<(OrgNo, ClientLink)> {
        let field = LinkField(i);
        let n = org_no(
            format_args!("{field}clientOrganizationNumber"),
            &c.client_organization_number,
            bad,
        )?;
        let active = match c.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("active") => true,
            Some("removed") => false,
            Some(other) => {
                bad.push(format!(
                    "{field}status {other:?} must be \"active\" or \"removed\""
                ));
                false
            }
        };
        let mut entries = Vec::with_capacity(c.access.len());
        for (j, a) in c.access.iter().enumerate() {
            // An absent role is allowed (unknown relationship); one given must
            // be Altinn's.
            if let Some(role) = a.role.as_deref().filter(|r| !r.starts_with("urn:altinn:")) {
                bad.push(format!(
                    "{field}access[{j}].role {role:?} is not an Altinn role URN"
                ));
            }
            for (k, p) in a.packages.iter().enumerate() {
                if !self.packages.contains(p) {
                    bad.push(format!(
                        "{field}access[{j}].packages[{k}] {p:?} is not a known access package"
                    ));
                }
            }
            entries.push((
                a.role.as_deref().map(SmolStr::from),
                a.packages
                    .iter()
                    .map(|p| SmolStr::from(p.as_str()))
                    .collect(),
            ));
        }
        let access = LinkAccess::new(entries);
        let access = self
            .interned
            .entry(access.clone())
            .or_insert_with(|| Arc::new(access))
            .clone();
        Some((
            n,
            ClientLink {
                client_id: ClientId::parse(c.client_id.as_deref()),
                access,
                active,
            },
        ))
    }

    /// The team, or none when its id is not one.
    pub(crate) fn team(&mut self, r: &TeamRecord, bad: &mut Vec<String>) -> Option<Team> {
        let id = id(&r.id, bad)?;
        let organization = org_no("organization", &r.organization, bad);
        let mut system_users: Vec<Id> = r.system_users.iter().map(|s| s.as_str().into()).collect();
        system_users.sort();
        system_users.dedup();
        let clients = match &r.clients {
            ClientsRecord::Keyword(k) if k == "all" => ClientScope::All,
            ClientsRecord::Keyword(k) => {
                bad.push(format!(
                    "clients {k:?} must be \"all\" or a list of org numbers"
                ));
                ClientScope::Listed(Box::default())
            }
            ClientsRecord::List(l) => {
                let mut listed: Vec<OrgNo> = l
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| org_no(format_args!("clients[{i}]"), n, bad))
                    .collect();
                listed.sort();
                listed.dedup();
                ClientScope::Listed(listed.into_boxed_slice())
            }
        };
        Some(Team {
            id,
            organization: organization.unwrap_or(OrgNo::PLACEHOLDER),
            name: r.name.as_str().into(),
            system_users: system_users.into_boxed_slice(),
            clients,
        })
    }

    /// The employee, or none when its id is not one.
    pub(crate) fn employee(
        &mut self,
        r: &EmployeeRecord,
        bad: &mut Vec<String>,
    ) -> Option<Employee> {
        let id = id(&r.id, bad)?;
        let organization = org_no("organization", &r.organization, bad);
        let kind = match r.kind.as_deref() {
            None | Some("person") => EmployeeKind::Person,
            Some("automation") => EmployeeKind::Automation,
            Some(other) => {
                bad.push(format!(
                    "kind {other:?} must be \"person\" or \"automation\""
                ));
                EmployeeKind::Person
            }
        };
        let mut audit_clients: Vec<OrgNo> = r
            .audit_clients
            .iter()
            .enumerate()
            .filter_map(|(i, n)| org_no(format_args!("auditClients[{i}]"), n, bad))
            .collect();
        audit_clients.sort();
        audit_clients.dedup();
        let mut teams: Vec<Id> = r.teams.iter().map(|t| t.as_str().into()).collect();
        teams.sort();
        teams.dedup();
        Some(Employee {
            id,
            organization: organization.unwrap_or(OrgNo::PLACEHOLDER),
            name: r.name.as_str().into(),
            active: r.active,
            kind,
            teams: teams.into_boxed_slice(),
            audit_clients: audit_clients.into_boxed_slice(),
        })
    }
}

/// The prefix of a client link's fields: `clients[3].` within a system user,
/// nothing for a link on its own.
struct LinkField(Option<usize>);

impl std::fmt::Display for LinkField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(i) => write!(f, "clients[{i}]."),
            None => Ok(()),
        }
    }
}

/// A record whose references are checked.
#[derive(Clone, Copy)]
pub(crate) enum Record<'r> {
    Organization(&'r OrganizationRecord),
    SystemUser(&'r SystemUserRecord),
    /// A client link of the system user with this id, on its own.
    Link(&'r str, &'r ClientRecord),
    Team(&'r TeamRecord),
    Employee(&'r EmployeeRecord),
}

/// An org number that must name an organisation of `world` (an invalid one was
/// reported by the field checks).
fn known_org(world: &World, field: impl std::fmt::Display, n: &str, bad: &mut Vec<String>) {
    if let Ok(no) = OrgNo::parse(n) {
        if !world.orgs.contains_key(&no) {
            bad.push(format!("{field} {n:?} is not a known organisation"));
        }
    }
}

/// Every reference of `r` that `world` does not hold, and every rule between
/// records it breaks.
pub(crate) fn references(world: &World, r: Record<'_>, bad: &mut Vec<String>) {
    match r {
        Record::Organization(o) => {
            let Ok(n) = OrgNo::parse(&o.org_number) else {
                return;
            };
            // The world's index keeps each party id with one organisation that
            // holds it: another holder is the second.
            if let Some(Ok(p)) = o.party_id.as_ref().map(party_id_of) {
                match world.party_ids.get(&p.get()) {
                    Some(m) if m != n => bad.push(given_twice("partyId", p, n, m)),
                    _ => {}
                }
            }
            if let Some(Ok(u)) = o.party_uuid.as_deref().map(party_uuid_of) {
                match world.party_uuids.get(&u) {
                    Some(m) if m != n => bad.push(given_twice(
                        "partyUuid",
                        format_args!("{:?}", u.hyphenated().to_string()),
                        n,
                        m,
                    )),
                    _ => {}
                }
            }
            let Some(p) = inherits_from(o) else {
                return;
            };
            match world.orgs.get(&p) {
                _ if p == n => bad.push("parentOrgNumber is the organisation itself".to_owned()),
                None => bad.push(format!(
                    "parentOrgNumber \"{p}\" is not a known organisation"
                )),
                // A unit under a unit would silently extend inheritance beyond what
                // Altinn grants.
                Some(parent) if parent.parent().is_some() => bad.push(format!(
                    "parentOrgNumber \"{p}\" is itself an operational unit; units are one level deep"
                )),
                Some(_) => {}
            }
        }
        Record::SystemUser(s) => {
            known_org(world, "reporteeOrgNo", &s.reportee_org_no, bad);
            for (i, c) in s.clients.iter().enumerate() {
                known_org(
                    world,
                    format_args!("clients[{i}].clientOrganizationNumber"),
                    &c.client_organization_number,
                    bad,
                );
            }
        }
        Record::Link(su, c) => {
            match world.system_users.get(su) {
                None => bad.push(format!("system user {su:?} is not a known system user")),
                Some(s) if s.user_type == UserType::Standard => bad.push(format!(
                    "system user {su:?} is a standard system user, which has no client links"
                )),
                Some(_) => {}
            }
            known_org(
                world,
                "clientOrganizationNumber",
                &c.client_organization_number,
                bad,
            );
        }
        Record::Team(t) => {
            known_org(world, "organization", &t.organization, bad);
            for (i, s) in t.system_users.iter().enumerate() {
                if !world.system_users.contains_key(s.as_str()) {
                    bad.push(format!("systemUsers[{i}] {s:?} is not a known system user"));
                }
            }
            if let ClientsRecord::List(l) = &t.clients {
                for (i, n) in l.iter().enumerate() {
                    known_org(world, format_args!("clients[{i}]"), n, bad);
                }
            }
        }
        Record::Employee(e) => {
            known_org(world, "organization", &e.organization, bad);
            for (i, t) in e.teams.iter().enumerate() {
                if !world.teams.contains_key(t.as_str()) {
                    bad.push(format!("teams[{i}] {t:?} is not a known team"));
                }
            }
            for (i, n) in e.audit_clients.iter().enumerate() {
                known_org(world, format_args!("auditClients[{i}]"), n, bad);
            }
        }
    }
}

// Whether every reference in a world holds, read from its own records: what
// [`references`] finds with each record of a valid load, found without turning
// records back into the data format, for a load's fast path
// (`load::load_streamed`, which runs the two halves on two threads). On `false`
// the load is read again the full way, which says what is wrong and where.

/// The organisations' references: each parent known, not the organisation
/// itself, and not a unit itself. (That no party id or UUID is given to two is
/// found as the party indexes are built, `PartyIndex::of_pairs`.)
pub(crate) fn organizations_hold(world: &World) -> bool {
    world.orgs.values().all(|o| {
        let n = o.org_number;
        o.parent().is_none_or(|p| {
            p != n
                && world
                    .orgs
                    .get(&p)
                    .is_some_and(|parent| parent.parent().is_none())
        })
    })
}

/// The references of system users (owner, clients), teams (organisation, system
/// users, clients) and employees (organisation, teams, audit clients).
pub(crate) fn others_hold(world: &World) -> bool {
    let org = |n: &OrgNo| world.orgs.contains_key(n);
    world
        .system_users
        .values()
        .all(|s| org(&s.owner) && s.links.keys().all(org))
        && world.teams.values().all(|t| {
            org(&t.organization)
                && t.system_users
                    .iter()
                    .all(|s| world.system_users.contains_key(s.as_str()))
                && match &t.clients {
                    ClientScope::All => true,
                    ClientScope::Listed(l) => l.iter().all(org),
                }
        })
        && world.employees.values().all(|e| {
            org(&e.organization)
                && e.teams.iter().all(|t| world.teams.contains_key(t.as_str()))
                && e.audit_clients.iter().all(org)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_ids_are_whole_positive_and_fit_in_64_bits() {
        let id = |v: PartyIdValue| party_id_of(&v).map(|n| n.get());
        assert_eq!(id(PartyIdValue::Integer(50012345)), Ok(50012345));
        assert_eq!(id(PartyIdValue::Text("50012345".into())), Ok(50012345));
        assert_eq!(id(PartyIdValue::Integer(i64::MAX.into())), Ok(i64::MAX));
        let why = |v: PartyIdValue| party_id_of(&v).unwrap_err();
        assert!(why(PartyIdValue::Fraction(1.5)).contains("must be a whole number"));
        // A whole value written as a float is not how Altinn writes one.
        assert!(why(PartyIdValue::Fraction(2.0)).contains("partyId 2.0 must be a whole number"));
        assert!(why(PartyIdValue::Text("".into())).contains("must be a whole number"));
        assert!(why(PartyIdValue::Text("+5".into())).contains("must be a whole number"));
        assert!(why(PartyIdValue::Text(" 5".into())).contains("must be a whole number"));
        assert_eq!(
            why(PartyIdValue::Integer(0)),
            "partyId 0 must be greater than 0"
        );
        assert_eq!(
            why(PartyIdValue::Text("-7".into())),
            "partyId \"-7\" must be greater than 0"
        );
        let large =
            "partyId 9223372036854775808 is too large: a party id is at most 9223372036854775807";
        assert_eq!(why(PartyIdValue::Integer(i128::from(i64::MAX) + 1)), large);
        assert!(why(PartyIdValue::Fraction(1e30)).contains("is too large"));
        assert!(why(PartyIdValue::Text("9".repeat(60))).contains("is too large"));
        assert!(why(PartyIdValue::Fraction(-1e30)).contains("must be greater than 0"));
    }

    #[test]
    fn party_uuids_are_uuids_and_never_nil() {
        let u = "4a06214d-b261-4695-b33a-0771a995b503";
        assert_eq!(party_uuid_of(u).unwrap().to_string(), u);
        assert_eq!(party_uuid_of(&u.to_uppercase()).unwrap().to_string(), u);
        assert!(party_uuid_of("4a06214d")
            .unwrap_err()
            .contains("is not a UUID"));
        assert!(party_uuid_of("00000000-0000-0000-0000-000000000000")
            .unwrap_err()
            .contains("nil UUID"));
    }
}
