//! The records of the world, compact and immutable: each is shared (by `Arc`)
//! between successive worlds until a change replaces it.

use crate::decision::engine::IdList;
use crate::ids::{check_org_number, OrgNumberError};
use smol_str::SmolStr;
use std::fmt;
use std::num::NonZeroI64;
use std::sync::Arc;

/// A record id (employee, team, system user): ids of up to 23 bytes sit inline.
pub type Id = SmolStr;

/// Whether the sorted `ids` hold `id`.
pub fn sorted_has(ids: &[Id], id: &str) -> bool {
    ids.binary_search_by(|x| x.as_str().cmp(id)).is_ok()
}

/// A persistent map: a change copies only the path to the changed entry, so a new
/// world shares everything else with the one before it.
pub type Map<K, V> =
    imbl::GenericHashMap<K, V, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;

/// A new, empty [`Map`].
pub fn map<K, V>() -> Map<K, V>
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
{
    Map::with_hasher(foldhash::fast::RandomState::default())
}

/// A Norwegian organisation number: nine digits with a valid mod-11 check digit,
/// held as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgNo(u32);

impl OrgNo {
    /// Stands in for an invalid org number in a record that is reported as a
    /// problem; a world holding it is never built.
    pub(crate) const PLACEHOLDER: OrgNo = OrgNo(0);

    pub fn parse(s: &str) -> Result<Self, OrgNumberError> {
        check_org_number(s)?;
        // Nine ASCII digits always fit.
        Ok(Self(s.parse().unwrap_or_default()))
    }

    /// Nine digits as a number, without the check-digit test: for looking up an id
    /// that is either a known org number or nothing.
    pub fn from_digits(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 9 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(Self(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))))
    }

    /// The nine digits, without allocating.
    pub fn digits(self) -> OrgDigits {
        let mut b = [b'0'; 9];
        let mut n = self.0;
        for d in b.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        OrgDigits(b)
    }
}

/// The nine digits of an [`OrgNo`], on the stack.
pub struct OrgDigits([u8; 9]);

impl std::ops::Deref for OrgDigits {
    type Target = str;
    fn deref(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for OrgNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digits())
    }
}

impl serde::Serialize for OrgNo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.digits())
    }
}

/// A sorted list of org numbers reads as a list of ids.
impl IdList for Box<[OrgNo]> {
    fn len(&self) -> usize {
        <[OrgNo]>::len(self)
    }
    fn contains(&self, id: &str) -> bool {
        OrgNo::from_digits(id).is_some_and(|n| self.binary_search(&n).is_ok())
    }
    fn each(&self, f: &mut dyn FnMut(&str)) {
        for n in self.iter() {
            f(&n.digits());
        }
    }
}

/// One organisation from the Entity Register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub org_number: OrgNo,
    pub name: Box<str>,
    /// The Entity Register's parent, as given.
    pub parent_org_number: Option<OrgNo>,
    /// The Entity Register's organisation form, upper-case (BEDR, AAFY, ORGL, AS...).
    pub unit_type: Option<SmolStr>,
    /// Altinn's ids for the organisation as a party, when given: boxed, so that an
    /// organisation without them (most, in a world of a million) carries one null
    /// pointer and no more.
    pub party: Option<Box<Party>>,
}

/// Altinn's ids for an organisation as a party: Altinn's paths name a client by
/// either (`/{org}/{app}/instances/{instanceOwnerPartyId}/…`, `?party={uuid}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Party {
    /// The party id (`partyId`): positive, so held in 8 bytes with its absence.
    pub id: Option<NonZeroI64>,
    /// The party UUID (`partyUuid`).
    pub uuid: Option<uuid::Uuid>,
}

impl Party {
    /// The ids, boxed; none when neither is given.
    pub fn boxed(id: Option<NonZeroI64>, uuid: Option<uuid::Uuid>) -> Option<Box<Self>> {
        (id.is_some() || uuid.is_some()).then(|| Box::new(Self { id, uuid }))
    }
}

impl Organization {
    /// Altinn's party id for the organisation, when known.
    pub fn party_id(&self) -> Option<i64> {
        self.party.as_ref()?.id.map(NonZeroI64::get)
    }

    /// Altinn's party UUID for the organisation, when known.
    pub fn party_uuid(&self) -> Option<uuid::Uuid> {
        self.party.as_ref()?.uuid
    }

    /// The parent this organisation inherits from: only an operational unit (BEDR
    /// or AAFY, or a unit whose form is not given) inherits; a sub-entity (ORGL) or
    /// any other legal entity inherits nothing from its parent in the register.
    pub fn parent(&self) -> Option<OrgNo> {
        match self.unit_type.as_deref() {
            Some(t) if t != "BEDR" && t != "AAFY" => None,
            _ => self.parent_org_number,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmployeeKind {
    Person,
    Automation,
}

impl EmployeeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Automation => "automation",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Employee {
    pub id: Id,
    pub organization: OrgNo,
    pub name: Box<str>,
    pub active: bool,
    pub kind: EmployeeKind,
    /// Sorted, without repeats.
    pub teams: Box<[Id]>,
    /// Organisations the employee has an audit engagement for; sorted.
    pub audit_clients: Box<[OrgNo]>,
}

/// Which clients a team may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientScope {
    All,
    /// Listed org numbers, sorted; a listed parent covers its operational units.
    Listed(Box<[OrgNo]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: Id,
    pub organization: OrgNo,
    pub name: Box<str>,
    /// The system users the team may use; sorted, without repeats.
    pub system_users: Box<[Id]>,
    pub clients: ClientScope,
}

impl Team {
    /// Whether the team's client scope covers `client` (whose parent is `parent`).
    pub fn covers(&self, client: OrgNo, parent: Option<OrgNo>) -> bool {
        match &self.clients {
            ClientScope::All => true,
            ClientScope::Listed(orgs) => {
                orgs.binary_search(&client).is_ok()
                    || parent.is_some_and(|p| orgs.binary_search(&p).is_ok())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    Standard,
    Agent,
}

impl UserType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Agent => "agent",
        }
    }
}

/// The id Altinn gives a client delegation: usually a UUID, held as a number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientId {
    #[default]
    None,
    Uuid(u128),
    Text(Box<str>),
}

impl ClientId {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            None | Some("") => Self::None,
            Some(s) => match uuid::Uuid::try_parse(s) {
                Ok(u) if u.hyphenated().to_string() == s => Self::Uuid(u.as_u128()),
                _ => Self::Text(s.into()),
            },
        }
    }

    pub fn to_text(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Uuid(u) => Some(uuid::Uuid::from_u128(*u).hyphenated().to_string()),
            Self::Text(t) => Some(t.to_string()),
        }
    }
}

/// A client linked to an agent system user by the customer's client administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLink {
    pub client_id: ClientId,
    /// What the link rests on; shared by every link with the same roles and packages.
    pub access: Arc<LinkAccess>,
    /// False once the link is removed.
    pub active: bool,
}

/// One relationship of a client link (its role URN, `None` when unknown) with
/// the packages delegated through it, sorted.
pub type AccessEntry = (Option<SmolStr>, Box<[SmolStr]>);

/// The relationships a client link rests on and the packages delegated through
/// each. Links repeat a handful of combinations, so each distinct one is held once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkAccess {
    /// Each relationship (role URN), in the order given, with the packages
    /// delegated through it, sorted. `None`: packages delegated through a
    /// relationship nobody knows (`vakt altinn sync` where Altinn's answer names
    /// no role); they count as the link's packages, never as an auditor's.
    pub entries: Box<[AccessEntry]>,
    /// Every known role, sorted.
    pub roles: Box<[SmolStr]>,
    /// Every package delegated through any role, sorted.
    pub packages: Box<[SmolStr]>,
    /// The packages delegated through the auditor role, sorted.
    pub auditor_packages: Box<[SmolStr]>,
}

impl LinkAccess {
    /// The access of a link with these entries.
    pub fn new(entries: Vec<(Option<SmolStr>, Vec<SmolStr>)>) -> Self {
        let sorted = |mut v: Vec<SmolStr>| {
            v.sort();
            v.dedup();
            v.into_boxed_slice()
        };
        let roles = sorted(entries.iter().filter_map(|(r, _)| r.clone()).collect());
        let packages = sorted(
            entries
                .iter()
                .flat_map(|(_, p)| p.iter().cloned())
                .collect(),
        );
        // A relationship that lists no packages carries none: Altinn accepts a call
        // for a client only with a package delegated for it, so Vakt does not guess.
        let auditor_packages = sorted(
            entries
                .iter()
                .filter(|(r, _)| r.as_deref() == Some(crate::rules::model::AUDITOR_ROLE))
                .flat_map(|(_, p)| p.iter().cloned())
                .collect(),
        );
        Self {
            entries: entries.into_iter().map(|(r, p)| (r, sorted(p))).collect(),
            roles,
            packages,
            auditor_packages,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUser {
    pub id: Id,
    pub integration_title: Box<str>,
    pub system_id: Box<str>,
    pub owner: OrgNo,
    pub user_type: UserType,
    /// Package URNs, sorted, without repeats.
    pub access_packages: Box<[SmolStr]>,
    pub external_ref: Box<str>,
    pub is_deleted: bool,
    pub self_delegated: bool,
    /// Client links by client org number.
    pub links: Map<OrgNo, ClientLink>,
    /// The teams granted this system user, sorted (derived from the teams).
    pub granted_to: Box<[Id]>,
}

impl SystemUser {
    /// The active link through which this system user reaches `client`: the client's
    /// own link, or else its parent's (an operational unit inherits from its parent).
    pub fn link_for(&self, client: OrgNo, parent: Option<OrgNo>) -> Option<(OrgNo, &ClientLink)> {
        let active = |org: OrgNo| self.links.get(&org).filter(|l| l.active).map(|l| (org, l));
        active(client).or_else(|| parent.and_then(active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organisation_stays_small_with_or_without_party_ids() {
        // 64 bytes, 80 with its Arc: mimalloc's size class for the 72 it took
        // before party ids, so an organisation without them costs nothing more.
        assert!(std::mem::size_of::<Organization>() <= 64);
        assert_eq!(std::mem::size_of::<Party>(), 32);
        assert!(Party::boxed(None, None).is_none());
    }

    #[test]
    fn org_numbers_round_trip_and_read_as_ids() {
        let n = OrgNo::parse("310015156").unwrap();
        assert_eq!(n.to_string(), "310015156");
        assert!(OrgNo::parse("310015157").is_err());
        let list: Box<[OrgNo]> = Box::new([n, OrgNo::parse("310020206").unwrap()]);
        assert!(IdList::contains(&list, "310015156"));
        assert!(!IdList::contains(&list, "31001515"));
        let mut seen = Vec::new();
        list.each(&mut |s| seen.push(s.to_owned()));
        assert_eq!(seen, ["310015156", "310020206"]);
        let u = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
        assert_eq!(ClientId::parse(Some(u)).to_text().as_deref(), Some(u));
        assert!(matches!(ClientId::parse(Some(u)), ClientId::Uuid(_)));
        assert_eq!(
            ClientId::parse(Some("abc")).to_text().as_deref(),
            Some("abc")
        );
    }
}

/// The key of one record of the world.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKey {
    Organization(OrgNo),
    SystemUser(Id),
    /// A client link: the system user and the client.
    Link(Id, OrgNo),
    Team(Id),
    Employee(Id),
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Organization(n) => write!(f, "organization {n}"),
            Self::SystemUser(id) => write!(f, "system user {id:?}"),
            Self::Link(su, n) => write!(f, "client link {n} of system user {su:?}"),
            Self::Team(id) => write!(f, "team {id:?}"),
            Self::Employee(id) => write!(f, "employee {id:?}"),
        }
    }
}
