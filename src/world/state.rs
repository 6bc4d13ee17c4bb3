//! The world at one moment: the persistent maps of records and their look-ups.

use super::entity::{kind, CedarEntity, Kind};
use super::records::{map, Employee, Id, Map, OrgNo, Organization, SystemUser, Team};
use crate::decision::engine::value::{EntityData, Store};
use crate::rules::model::core_uid;
use cedar_policy_core::ast::{self, EntityType, EntityUID};
use std::collections::HashMap;
use std::sync::Arc;

/// The whole world at one moment; cheap to clone, never changed in place.
#[derive(Clone)]
pub struct World {
    pub(super) orgs: Map<OrgNo, Arc<Organization>>,
    pub(super) employees: Map<Id, Arc<Employee>>,
    pub(super) teams: Map<Id, Arc<Team>>,
    pub(super) system_users: Map<Id, Arc<SystemUser>>,
    /// System user ids by owner, sorted: the candidates for ResolveSystemUser.
    pub(super) by_owner: Map<OrgNo, Arc<[Id]>>,
    /// Employee ids by organisation, sorted: the candidates for reverse queries.
    pub(super) staff: Map<OrgNo, Arc<[Id]>>,
    /// Operational units by the parent they inherit from, sorted: the clients a
    /// system user reaches through a parent.
    pub(super) units: Map<OrgNo, Arc<[OrgNo]>>,
    /// Organisations by Altinn party id and by party UUID, those that have one:
    /// each id with one organisation that holds it (a second holder is refused by
    /// the reference checks). Kept as records go in and out (`change`, `build`).
    pub(super) party_ids: PartyIndex<i64>,
    pub(super) party_uuids: PartyIndex<uuid::Uuid>,
    /// Entities in Cedar's own JSON format for types beyond Vakt's own, and the
    /// schema's actions, by uid, each with its ancestors over every file.
    pub(super) extra: Arc<HashMap<EntityUID, CedarEntity>>,
}

impl Default for World {
    fn default() -> Self {
        Self {
            orgs: map(),
            employees: map(),
            teams: map(),
            system_users: map(),
            by_owner: map(),
            staff: map(),
            units: map(),
            party_ids: PartyIndex::default(),
            party_uuids: PartyIndex::default(),
            extra: Arc::default(),
        }
    }
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World {:?}", self.counts())
    }
}

/// Two worlds are equal when they hold the same records (and so the same derived
/// indexes) and the same entities in Cedar's own format, attributes included.
impl PartialEq for World {
    fn eq(&self, other: &Self) -> bool {
        let json = |e: &CedarEntity| {
            cedar_policy::Entity::from(e.entity.clone())
                .to_json_value()
                .ok()
        };
        self.orgs == other.orgs
            && self.employees == other.employees
            && self.teams == other.teams
            && self.system_users == other.system_users
            && self.by_owner == other.by_owner
            && self.staff == other.staff
            && self.units == other.units
            && self.party_ids == other.party_ids
            && self.party_uuids == other.party_uuids
            && self.extra.len() == other.extra.len()
            && self
                .extra
                .iter()
                .all(|(uid, e)| other.extra.get(uid).is_some_and(|o| json(e) == json(o)))
    }
}

impl World {
    pub fn organization(&self, n: OrgNo) -> Option<&Organization> {
        self.orgs.get(&n).map(|o| &**o)
    }
    pub fn employee(&self, id: &str) -> Option<&Employee> {
        self.employees.get(id).map(|e| &**e)
    }
    pub fn team(&self, id: &str) -> Option<&Team> {
        self.teams.get(id).map(|t| &**t)
    }
    pub fn system_user(&self, id: &str) -> Option<&SystemUser> {
        self.system_users.get(id).map(|s| &**s)
    }
    /// The system users an organisation owns, by id, sorted.
    pub fn system_users_owned_by(&self, owner: OrgNo) -> &[Id] {
        self.by_owner.get(&owner).map_or(&[], |ids| &ids[..])
    }
    /// The employees of an organisation, by id, sorted.
    pub fn employees_of(&self, org: OrgNo) -> &[Id] {
        self.staff.get(&org).map_or(&[], |ids| &ids[..])
    }
    /// The operational units that inherit from `parent`, sorted.
    pub fn units_of(&self, parent: OrgNo) -> &[OrgNo] {
        self.units.get(&parent).map_or(&[], |ns| &ns[..])
    }
    /// The organisation Altinn knows by party id `party_id` (the
    /// `{instanceOwnerPartyId}` of an app's paths), when the world holds one; its
    /// `org_number` is the client.
    pub fn organization_by_party_id(&self, party_id: i64) -> Option<&Organization> {
        self.party_ids
            .get(&party_id)
            .and_then(|n| self.organization(n))
    }
    /// The organisation Altinn knows by party UUID `party_uuid`, when the world
    /// holds one.
    pub fn organization_by_party_uuid(&self, party_uuid: uuid::Uuid) -> Option<&Organization> {
        self.party_uuids
            .get(&party_uuid)
            .and_then(|n| self.organization(n))
    }
    /// An entity given in Cedar's own format, or an action.
    pub fn extra_entity(&self, uid: &EntityUID) -> Option<&ast::Entity> {
        self.extra.get(uid).map(|e| &e.entity)
    }

    pub fn organizations(&self) -> impl Iterator<Item = &Organization> {
        self.orgs.values().map(|o| &**o)
    }
    pub fn employees(&self) -> impl Iterator<Item = &Employee> {
        self.employees.values().map(|e| &**e)
    }
    pub fn teams(&self) -> impl Iterator<Item = &Team> {
        self.teams.values().map(|t| &**t)
    }
    pub fn system_users(&self) -> impl Iterator<Item = &SystemUser> {
        self.system_users.values().map(|s| &**s)
    }
    pub fn extra_entities(&self) -> impl Iterator<Item = &ast::Entity> {
        self.extra.values().map(|e| &e.entity)
    }
    /// The entities given in Cedar's own format: the extra entities without the
    /// schema's actions.
    pub fn cedar_entities(&self) -> impl Iterator<Item = &ast::Entity> {
        let action: &ast::EntityType = crate::rules::model::types().action.as_ref();
        self.extra_entities()
            .filter(move |e| e.uid().entity_type() != action)
    }

    /// Record counts, for the startup log and `vakt validate`.
    pub fn counts(&self) -> WorldCounts {
        WorldCounts {
            organizations: self.orgs.len(),
            system_users: self.system_users.len(),
            client_links: self.system_users.values().map(|s| s.links.len()).sum(),
            teams: self.teams.len(),
            employees: self.employees.len(),
            extra_entities: self.extra.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WorldCounts {
    pub organizations: usize,
    pub system_users: usize,
    pub client_links: usize,
    pub teams: usize,
    pub employees: usize,
    pub extra_entities: usize,
}

impl WorldCounts {
    /// Records that are Cedar entities (client links are attributes, not entities).
    pub fn entities(&self) -> usize {
        self.organizations + self.system_users + self.teams + self.employees + self.extra_entities
    }
}

/// The engine reads Vakt's records in place, and entities of Cedar's own format
/// from `extra`.
impl Store for World {
    fn entity(&self, ty: &EntityType, id: &str) -> Option<&dyn EntityData> {
        match kind(ty) {
            Kind::Employee => self.employee(id).map(|e| e as &dyn EntityData),
            Kind::SystemUser => self.system_user(id).map(|e| e as &dyn EntityData),
            Kind::Organization => {
                let n = OrgNo::from_digits(id)?;
                self.organization(n).map(|e| e as &dyn EntityData)
            }
            Kind::Team => self.team(id).map(|e| e as &dyn EntityData),
            Kind::Other => {
                // Access packages are not entities of the store: only their ids
                // are used.
                self.extra
                    .get(&core_uid(ty, id))
                    .map(|e| e as &dyn EntityData)
            }
        }
    }
}

/// Organisations by one of Altinn's party ids. Persistent like the world's maps,
/// but in buckets, each a sorted slice: a map entry per id would cost about 110
/// bytes (a node slot and its share of the node), a bucket entry costs its 16 or 20
/// bytes and a share of one map entry per bucket. A change copies one bucket of a
/// few dozen entries.
#[derive(Clone, PartialEq)]
pub(super) struct PartyIndex<K: Clone + 'static> {
    buckets: Map<u16, Arc<[(K, OrgNo)]>>,
}

impl<K: Clone + 'static> Default for PartyIndex<K> {
    fn default() -> Self {
        Self { buckets: map() }
    }
}

/// A party id's bucket: 2^14 of them, about 37 ids each at 600,000 organisations.
pub(super) trait Bucketed: Ord + Copy + std::hash::Hash {
    fn bucket(&self) -> u16;
}

/// Spreads ids that come in runs (Altinn's are dense, UUIDv7 are time-ordered)
/// over the buckets.
fn mix(x: u64) -> u16 {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 50) as u16
}

impl Bucketed for i64 {
    fn bucket(&self) -> u16 {
        mix(*self as u64)
    }
}

impl Bucketed for uuid::Uuid {
    fn bucket(&self) -> u16 {
        let (hi, lo) = self.as_u64_pair();
        mix(hi ^ lo.rotate_left(17))
    }
}

impl<K: Bucketed + 'static> PartyIndex<K> {
    /// The organisation that holds `k`.
    pub(super) fn get(&self, k: &K) -> Option<OrgNo> {
        let b = self.buckets.get(&k.bucket())?;
        b.binary_search_by(|(x, _)| x.cmp(k)).ok().map(|i| b[i].1)
    }

    /// Gives `k` to `n` (from whichever organisation held it).
    pub(super) fn insert(&mut self, k: K, n: OrgNo) {
        let key = k.bucket();
        let mut v: Vec<(K, OrgNo)> = self.buckets.get(&key).map_or_else(Vec::new, |b| b.to_vec());
        match v.binary_search_by(|(x, _)| x.cmp(&k)) {
            Ok(i) => v[i].1 = n,
            Err(i) => v.insert(i, (k, n)),
        }
        self.buckets.insert(key, v.into());
    }

    /// Takes `k` out.
    pub(super) fn remove(&mut self, k: &K) {
        let key = k.bucket();
        let Some(b) = self.buckets.get(&key) else {
            return;
        };
        let Ok(i) = b.binary_search_by(|(x, _)| x.cmp(k)) else {
            return;
        };
        let mut v = b.to_vec();
        v.remove(i);
        if v.is_empty() {
            self.buckets.remove(&key);
        } else {
            self.buckets.insert(key, v.into());
        }
    }
}

impl<K: Bucketed + 'static> PartyIndex<K> {
    /// The index of `pairs` built at once, each bucket once rather than copied
    /// for every id put in (a load's fast path, `load::load_streamed`); none when
    /// an id is given twice.
    pub(super) fn of_pairs(mut pairs: Vec<(K, OrgNo)>) -> Option<Self> {
        pairs.sort_unstable_by_key(|(k, _)| (k.bucket(), *k));
        if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        let mut buckets = map();
        for run in pairs.chunk_by(|a, b| a.0.bucket() == b.0.bucket()) {
            buckets.insert(run[0].0.bucket(), Arc::from(run));
        }
        Some(Self { buckets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_party_index_holds_each_id_once_whatever_the_order() {
        let org = |i: u32| OrgNo::from_digits(&format!("{:09}", 310_000_000 + i)).unwrap();
        // Dense ids, as Altinn's are: many share a bucket.
        let ids: Vec<i64> = (0..50_000).map(|i| 50_000_000 + i).collect();
        let mut a: PartyIndex<i64> = PartyIndex::default();
        for (i, id) in ids.iter().enumerate() {
            a.insert(*id, org(i as u32));
        }
        let mut b: PartyIndex<i64> = PartyIndex::default();
        for (i, id) in ids.iter().enumerate().rev() {
            b.insert(*id, org(i as u32));
        }
        assert!(a == b);
        assert!(a.buckets.len() > 10_000, "{}", a.buckets.len());
        assert_eq!(a.get(&50_000_123), Some(org(123)));
        assert_eq!(a.get(&49_999_999), None);
        // Moved, taken out, and an old copy left as it was.
        let before = a.clone();
        a.insert(50_000_123, org(7));
        a.remove(&50_000_124);
        a.remove(&1);
        assert_eq!(a.get(&50_000_123), Some(org(7)));
        assert_eq!(a.get(&50_000_124), None);
        assert_eq!(before.get(&50_000_123), Some(org(123)));
        assert_eq!(before.get(&50_000_124), Some(org(124)));
        let u = uuid::Uuid::from_u128(42);
        let mut c: PartyIndex<uuid::Uuid> = PartyIndex::default();
        c.insert(u, org(1));
        assert_eq!(c.get(&u), Some(org(1)));
        c.remove(&u);
        assert!(c == PartyIndex::default());
    }
}
