//! Changing a world record by record, without a rebuild: the derived indexes
//! (the teams that grant each system user, the system users of each owner) are kept
//! right change by change, and the references of every changed record are checked
//! against the world the changes lead to.
//!
//! A change set is applied to a copy of the world; the maps are persistent, so the
//! copy costs nothing and shares every untouched record. Readers holding the old
//! world never see a half-applied change.

use super::checks::{references, Fields, Record};
use super::format::{
    ClientRecord, EmployeeRecord, OrganizationRecord, SystemUserRecord, TeamRecord,
};
use super::load::{Origin, Parsed};
pub use super::records::RecordKey;
use super::records::{ClientLink, Employee, Id, Map, OrgNo, Organization, SystemUser, Team};
use super::state::World;
use crate::problem::{Problem, Problems};
use crate::rules::packages::AccessPackages;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// One change: a record put in (added or replaced) or taken out.
#[derive(Debug, Clone)]
pub enum Change {
    Organization(OrgNo, Option<Organization>),
    /// A system user's own fields; its client links are changed on their own, and
    /// the teams granting it are derived. Replacing a system user keeps its links.
    SystemUser(Id, Option<SystemUser>),
    Link(Id, OrgNo, Option<ClientLink>),
    Team(Id, Option<Team>),
    Employee(Id, Option<Employee>),
}

impl Change {
    pub fn key(&self) -> RecordKey {
        match self {
            Self::Organization(n, _) => RecordKey::Organization(*n),
            Self::SystemUser(id, _) => RecordKey::SystemUser(id.clone()),
            Self::Link(su, n, _) => RecordKey::Link(su.clone(), *n),
            Self::Team(id, _) => RecordKey::Team(id.clone()),
            Self::Employee(id, _) => RecordKey::Employee(id.clone()),
        }
    }
}

/// A change that would leave the world inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ChangeProblem {
    pub key: RecordKey,
    pub message: String,
}

/// An index of sorted lists from grouped values.
fn sorted_index<K, V>(groups: std::collections::BTreeMap<K, Vec<V>>) -> Map<K, Arc<[V]>>
where
    K: std::hash::Hash + Eq + Clone,
    V: Ord,
{
    let mut m = super::records::map();
    for (k, mut vs) in groups {
        vs.sort();
        m.insert(k, vs.into());
    }
    m
}

/// Adds `v` to the sorted list at `k` (a copy of that one list).
fn list<K, V>(m: &mut Map<K, Arc<[V]>>, k: K, v: &V)
where
    K: std::hash::Hash + Eq + Clone,
    V: Ord + Clone,
{
    if m.get(&k).is_some_and(|vs| vs.binary_search(v).is_ok()) {
        return;
    }
    let mut vs: Vec<V> = m.get(&k).map_or_else(Vec::new, |vs| vs.to_vec());
    if let Err(i) = vs.binary_search(v) {
        vs.insert(i, v.clone());
        m.insert(k, vs.into());
    }
}

/// Takes `v` out of the sorted list at `k`, and the list when it is left empty.
fn unlist<K, V>(m: &mut Map<K, Arc<[V]>>, k: K, v: &V)
where
    K: std::hash::Hash + Eq + Clone,
    V: Ord + Clone,
{
    let Some(mut vs) = m.get(&k).map(|vs| vs.to_vec()) else {
        return;
    };
    if let Ok(i) = vs.binary_search(v) {
        vs.remove(i);
        if vs.is_empty() {
            m.remove(&k);
        } else {
            m.insert(k, vs.into());
        }
    }
}

impl World {
    /// The world after `changes`, applied in order, or every problem with them (the
    /// world itself is never changed). References are checked once all are applied,
    /// so a change set may add an organisation and the employees that refer to it
    /// in any order.
    pub fn apply(
        &self,
        changes: impl IntoIterator<Item = Change>,
        packages: &AccessPackages,
    ) -> Result<World, Vec<ChangeProblem>> {
        let mut w = self.clone();
        let mut touched = BTreeSet::new();
        for c in changes {
            touched.insert(c.key());
            w.put(c);
        }
        // A party id left by one organisation in this change set may be held by
        // another the set gave it to before: it goes to that one now.
        for k in &touched {
            if let RecordKey::Organization(n) = k {
                w.claim_party(*n);
            }
        }
        // An organisation given a parent puts its own units two levels deep: they
        // are checked again too (the check is theirs: a unit's parent must not be a
        // unit).
        let units: Vec<RecordKey> = touched
            .iter()
            .filter_map(|k| match k {
                RecordKey::Organization(n) => Some(*n),
                _ => None,
            })
            .filter(|n| w.organization(*n).is_some_and(|o| o.parent().is_some()))
            .flat_map(|n| w.units_of(n).to_vec())
            .map(RecordKey::Organization)
            .collect();
        touched.extend(units);
        let problems: Vec<ChangeProblem> = touched
            .into_iter()
            .flat_map(|k| w.check_record(&k, packages))
            .collect();
        if problems.is_empty() {
            Ok(w)
        } else {
            Err(problems)
        }
    }

    /// This world with `entities` (lists in Cedar's own JSON format, tagged with
    /// where each came from) in place of its entities of types beyond Vakt's own;
    /// every problem with them otherwise, tagged alike.
    pub fn with_cedar_entities<T: Copy>(
        &self,
        entities: Vec<(T, serde_json::Value)>,
        schema: &cedar_policy::Schema,
    ) -> Result<World, Vec<(T, String)>> {
        let (extra, problems) = super::entity::cedar_entities(entities, schema);
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut w = self.clone();
        w.extra = Arc::new(extra);
        Ok(w)
    }

    /// Applies one change, keeping the derived indexes right.
    pub(crate) fn put(&mut self, c: Change) {
        match c {
            Change::Organization(n, Some(o)) => {
                let parent = o.parent();
                let o = Arc::new(o);
                let old = self.orgs.insert(n, o.clone());
                if let Some(p) = old.as_ref().and_then(|old| old.parent()) {
                    if Some(p) != parent {
                        unlist(&mut self.units, p, &n);
                    }
                }
                if let Some(p) = parent {
                    list(&mut self.units, p, &n);
                }
                self.index_party(n, old.as_deref(), Some(&o));
            }
            Change::Organization(n, None) => {
                let old = self.orgs.remove(&n);
                if let Some(p) = old.as_ref().and_then(|old| old.parent()) {
                    unlist(&mut self.units, p, &n);
                }
                self.index_party(n, old.as_deref(), None);
            }
            Change::SystemUser(id, Some(mut su)) => {
                let old = self.system_users.get(id.as_str()).cloned();
                if let Some(old) = &old {
                    su.links = old.links.clone();
                    su.granted_to = old.granted_to.clone();
                    if old.owner != su.owner {
                        self.unlist_owner(old.owner, &id);
                    }
                } else {
                    su.granted_to = self.teams_granting(&id);
                }
                let owner = su.owner;
                self.system_users.insert(id.clone(), Arc::new(su));
                self.list_owner(owner, &id);
            }
            Change::SystemUser(id, None) => {
                if let Some(old) = self.system_users.remove(id.as_str()) {
                    self.unlist_owner(old.owner, &id);
                }
            }
            Change::Link(su, n, link) => {
                if let Some(s) = self.system_users.get_mut(su.as_str()) {
                    let s = Arc::make_mut(s);
                    match link {
                        Some(l) => {
                            s.links.insert(n, l);
                        }
                        None => {
                            s.links.remove(&n);
                        }
                    }
                }
            }
            Change::Team(id, team) => {
                let before: Vec<Id> = self
                    .teams
                    .get(id.as_str())
                    .map(|t| t.system_users.to_vec())
                    .unwrap_or_default();
                let after: Vec<Id> = team
                    .as_ref()
                    .map(|t| t.system_users.to_vec())
                    .unwrap_or_default();
                match team {
                    Some(t) => {
                        self.teams.insert(id.clone(), Arc::new(t));
                    }
                    None => {
                        self.teams.remove(id.as_str());
                    }
                }
                for su in before.iter().filter(|s| !after.contains(s)) {
                    self.set_granted(su, &id, false);
                }
                for su in after.iter().filter(|s| !before.contains(s)) {
                    self.set_granted(su, &id, true);
                }
            }
            Change::Employee(id, Some(e)) => {
                let org = e.organization;
                if let Some(old) = self.employees.insert(id.clone(), Arc::new(e)) {
                    if old.organization != org {
                        unlist(&mut self.staff, old.organization, &id);
                    }
                }
                list(&mut self.staff, org, &id);
            }
            Change::Employee(id, None) => {
                if let Some(old) = self.employees.remove(id.as_str()) {
                    unlist(&mut self.staff, old.organization, &id);
                }
            }
        }
    }

    /// Works out the derived indexes afresh from the records: the teams granting each
    /// system user, the system users of each owner, the employees of each
    /// organisation and the operational units of each parent.
    pub(crate) fn reindex(&mut self) {
        let mut granted: std::collections::HashMap<Id, Vec<Id>> = std::collections::HashMap::new();
        for t in self.teams.values() {
            for s in t.system_users.iter() {
                granted.entry(s.clone()).or_default().push(t.id.clone());
            }
        }
        let ids: Vec<Id> = self.system_users.keys().cloned().collect();
        let mut by_owner: std::collections::BTreeMap<OrgNo, Vec<Id>> = Default::default();
        for id in ids {
            let mut teams = granted.remove(&id).unwrap_or_default();
            teams.sort();
            teams.dedup();
            if let Some(s) = self.system_users.get_mut(id.as_str()) {
                if *s.granted_to != *teams {
                    Arc::make_mut(s).granted_to = teams.into_boxed_slice();
                }
                by_owner.entry(s.owner).or_default().push(id);
            }
        }
        self.by_owner = sorted_index(by_owner);
        let mut staff: std::collections::BTreeMap<OrgNo, Vec<Id>> = Default::default();
        for e in self.employees.values() {
            staff.entry(e.organization).or_default().push(e.id.clone());
        }
        self.staff = sorted_index(staff);
        let mut units: std::collections::BTreeMap<OrgNo, Vec<OrgNo>> = Default::default();
        for o in self.orgs.values() {
            if let Some(p) = o.parent() {
                units.entry(p).or_default().push(o.org_number);
            }
        }
        self.units = sorted_index(units);
    }

    /// Keeps the party indexes right as organisation `n` goes from `old` to `new`.
    /// An id stays with the organisation that holds it: one given to a second
    /// organisation is left to the first, and the reference checks find the
    /// second (`checks::references`), naming both.
    pub(super) fn index_party(
        &mut self,
        n: OrgNo,
        old: Option<&Organization>,
        new: Option<&Organization>,
    ) {
        let was = old.and_then(|o| o.party.as_deref());
        let now = new.and_then(|o| o.party.as_deref());
        let was_id = was.and_then(|p| p.id).map(|p| p.get());
        let now_id = now.and_then(|p| p.id).map(|p| p.get());
        if was_id != now_id {
            if let Some(p) = was_id {
                if self.party_ids.get(&p) == Some(n) {
                    self.party_ids.remove(&p);
                }
            }
            if let Some(p) = now_id {
                let held = self
                    .party_ids
                    .get(&p)
                    .is_some_and(|m| self.orgs.get(&m).is_some_and(|o| o.party_id() == Some(p)));
                if !held {
                    self.party_ids.insert(p, n);
                }
            }
        }
        let was_uuid = was.and_then(|p| p.uuid);
        let now_uuid = now.and_then(|p| p.uuid);
        if was_uuid != now_uuid {
            if let Some(u) = was_uuid {
                if self.party_uuids.get(&u) == Some(n) {
                    self.party_uuids.remove(&u);
                }
            }
            if let Some(u) = now_uuid {
                let held = self
                    .party_uuids
                    .get(&u)
                    .is_some_and(|m| self.orgs.get(&m).is_some_and(|o| o.party_uuid() == Some(u)));
                if !held {
                    self.party_uuids.insert(u, n);
                }
            }
        }
    }

    /// Gives organisation `n` its party ids in the indexes where no organisation
    /// holds them (after another left them within one change set).
    fn claim_party(&mut self, n: OrgNo) {
        let Some(party) = self.orgs.get(&n).and_then(|o| o.party.as_deref().copied()) else {
            return;
        };
        if let Some(p) = party.id {
            if self.party_ids.get(&p.get()).is_none() {
                self.party_ids.insert(p.get(), n);
            }
        }
        if let Some(u) = party.uuid {
            if self.party_uuids.get(&u).is_none() {
                self.party_uuids.insert(u, n);
            }
        }
    }

    /// The teams that grant system user `su`, sorted: a scan of the teams, for a
    /// system user that is added after the teams that name it.
    fn teams_granting(&self, su: &str) -> Box<[Id]> {
        let mut ids: Vec<Id> = self
            .teams
            .values()
            .filter(|t| super::records::sorted_has(&t.system_users, su))
            .map(|t| t.id.clone())
            .collect();
        ids.sort();
        ids.into_boxed_slice()
    }

    fn set_granted(&mut self, su: &str, team: &Id, granted: bool) {
        let Some(s) = self.system_users.get_mut(su) else {
            return;
        };
        let has = s.granted_to.binary_search(team);
        match (has, granted) {
            (Err(i), true) => {
                let mut v = s.granted_to.to_vec();
                v.insert(i, team.clone());
                Arc::make_mut(s).granted_to = v.into_boxed_slice();
            }
            (Ok(i), false) => {
                let mut v = s.granted_to.to_vec();
                v.remove(i);
                Arc::make_mut(s).granted_to = v.into_boxed_slice();
            }
            _ => {}
        }
    }

    fn list_owner(&mut self, owner: OrgNo, su: &Id) {
        list(&mut self.by_owner, owner, su);
    }

    fn unlist_owner(&mut self, owner: OrgNo, su: &Id) {
        unlist(&mut self.by_owner, owner, su);
    }

    /// Every problem with the record under `key` in this world: the field checks
    /// and the reference checks every record passes (`checks`), on the record as
    /// the data format writes it. A record that is not there has none (removals
    /// are checked by what refers to them).
    pub(crate) fn check_record(
        &self,
        key: &RecordKey,
        packages: &AccessPackages,
    ) -> Vec<ChangeProblem> {
        let mut bad = Vec::new();
        let mut fields = Fields::new(packages);
        match key {
            RecordKey::Organization(n) => {
                if let Some(o) = self.organization(*n) {
                    let r = OrganizationRecord::from(o);
                    fields.organization(&r, &mut bad);
                    references(self, Record::Organization(&r), &mut bad);
                }
            }
            RecordKey::SystemUser(id) => {
                if let Some(s) = self.system_user(id) {
                    let r = SystemUserRecord::from(s);
                    fields.system_user(&r, &mut bad);
                    references(self, Record::SystemUser(&r), &mut bad);
                }
            }
            RecordKey::Link(su, n) => match self.system_user(su) {
                Some(s) => {
                    if let Some(l) = s.links.get(n) {
                        let r = ClientRecord::of_link(*n, l);
                        fields.client_link(None, &r, &mut bad);
                        references(self, Record::Link(su, &r), &mut bad);
                    }
                }
                None => bad.push(format!("system user {su:?} is not a known system user")),
            },
            RecordKey::Team(id) => {
                if let Some(t) = self.team(id) {
                    let r = TeamRecord::from(t);
                    fields.team(&r, &mut bad);
                    references(self, Record::Team(&r), &mut bad);
                }
            }
            RecordKey::Employee(id) => {
                if let Some(e) = self.employee(id) {
                    let r = EmployeeRecord::from(e);
                    fields.employee(&r, &mut bad);
                    references(self, Record::Employee(&r), &mut bad);
                }
            }
        }
        bad.into_iter()
            .map(|message| ChangeProblem {
                key: key.clone(),
                message,
            })
            .collect()
    }

    /// Every dangling reference in the whole world: what removing records left
    /// behind. One pass over every record, with the reference checks alone (every
    /// record passed the field checks on its way in).
    pub(crate) fn check_references(&self) -> Vec<ChangeProblem> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        let mut note = |key: RecordKey, bad: &mut Vec<String>| {
            out.extend(bad.drain(..).map(|message| ChangeProblem {
                key: key.clone(),
                message,
            }))
        };
        for o in self.orgs.values() {
            references(
                self,
                Record::Organization(&OrganizationRecord::from(&**o)),
                &mut bad,
            );
            note(RecordKey::Organization(o.org_number), &mut bad);
        }
        for s in self.system_users.values() {
            references(
                self,
                Record::SystemUser(&SystemUserRecord::from(&**s)),
                &mut bad,
            );
            note(RecordKey::SystemUser(s.id.clone()), &mut bad);
        }
        for t in self.teams.values() {
            references(self, Record::Team(&TeamRecord::from(&**t)), &mut bad);
            note(RecordKey::Team(t.id.clone()), &mut bad);
        }
        for e in self.employees.values() {
            references(
                self,
                Record::Employee(&EmployeeRecord::from(&**e)),
                &mut bad,
            );
            note(RecordKey::Employee(e.id.clone()), &mut bad);
        }
        out
    }
}

/// The problems with the records of one file, or the checks run after them.
struct Report<'a> {
    files: &'a [String],
    problems: Vec<Problem>,
}

impl Report<'_> {
    /// A problem with a record: at its position when known, naming the record
    /// (as a full build names it).
    fn at(&mut self, o: &Origin, message: &str) {
        let file = self.files.get(o.file).cloned().unwrap_or_default();
        self.problems
            .push(match (o.at.is_empty(), o.record.is_empty()) {
                (true, _) => Problem::new(file, o.record.clone(), message),
                (false, true) => Problem::new(file, o.at.clone(), message),
                (false, false) => {
                    Problem::new(file, o.at.clone(), format!("{}: {message}", o.record))
                }
            });
    }

    fn drain(&mut self, o: &Origin, bad: &mut Vec<String>) {
        for m in bad.drain(..) {
            self.at(o, &m);
        }
    }

    /// A record that did not change but is broken by what did.
    fn after(&mut self, p: &ChangeProblem) {
        self.problems
            .push(Problem::new("data", "", format!("{p} (after this change)")));
    }
}

/// The records of the files read again, put into `base` as a difference: what
/// those files held before (`replaced`) and no longer hold is taken out, what is
/// new or changed is put in, through the same incremental path as [`World::apply`]
/// (the derived indexes kept right change by change), and what is the same is left
/// alone. Each record put in passes the field checks, and its references are
/// checked against the world the change leads to; so are the records a change
/// can break: the units of an organisation given a parent, and the teams that
/// granted a system user taken out. A team or organisation taken out may be named
/// anywhere, so then every reference in the world is checked, as a full build
/// would. The world that results is the one a full build of the files gives, or
/// every problem is reported, each naming its file and line.
///
/// Files that add to system users defined elsewhere are read by a full rebuild
/// (their `attachments` are not applied here).
pub(super) fn apply_records(
    base: &World,
    replaced: &[RecordKey],
    files: &[String],
    records: &Parsed,
    packages: &AccessPackages,
) -> Result<World, Problems> {
    let mut report = Report {
        files,
        problems: Vec::new(),
    };
    for (o, m) in &records.problems {
        report.at(o, m);
    }
    let old: HashSet<&RecordKey> = replaced.iter().collect();
    let mut seen: HashSet<RecordKey> = HashSet::new();
    // Defined twice: twice in the files read again, or there and in a file that
    // did not change (whose records are still in `base`).
    let mut twice = |key: RecordKey| {
        let elsewhere = !old.contains(&key) && base.holds(&key);
        !seen.insert(key) || elsewhere
    };
    let mut fields = Fields::new(packages);
    let mut bad = Vec::new();
    let mut w = base.clone();
    // The records put in, by index, for their reference checks.
    let (mut orgs, mut sus, mut teams, mut employees) = (vec![], vec![], vec![], vec![]);
    for (i, (o, r)) in records.orgs.iter().enumerate() {
        if let Some(org) = fields.organization(r, &mut bad) {
            let n = org.org_number;
            if twice(RecordKey::Organization(n)) {
                bad.push(format!("orgNumber {:?} is defined twice", r.org_number));
            } else if base.orgs.get(&n).is_none_or(|b| **b != org) {
                w.put(Change::Organization(n, Some(org)));
                orgs.push(i);
            }
        }
        report.drain(o, &mut bad);
    }
    // System users before teams: a new one is granted by the teams put after it
    // (no team already in the world can name a system user that was not).
    for (i, (o, r)) in records.system_users.iter().enumerate() {
        if let Some(mut su) = fields.system_user(r, &mut bad) {
            if twice(RecordKey::SystemUser(su.id.clone())) {
                bad.push(format!("id {:?} is defined twice", r.id));
            } else {
                let before = base.system_users.get(su.id.as_str());
                if let Some(b) = before {
                    su.granted_to = b.granted_to.clone();
                }
                if before.is_none_or(|b| **b != su) {
                    w.put_system_user(su);
                    sus.push(i);
                }
            }
        }
        report.drain(o, &mut bad);
    }
    for (i, (o, r)) in records.teams.iter().enumerate() {
        if let Some(t) = fields.team(r, &mut bad) {
            if twice(RecordKey::Team(t.id.clone())) {
                bad.push(format!("id {:?} is defined twice", r.id));
            } else if base.teams.get(t.id.as_str()).is_none_or(|b| **b != t) {
                w.put(Change::Team(t.id.clone(), Some(t)));
                teams.push(i);
            }
        }
        report.drain(o, &mut bad);
    }
    for (i, (o, r)) in records.employees.iter().enumerate() {
        if let Some(e) = fields.employee(r, &mut bad) {
            if twice(RecordKey::Employee(e.id.clone())) {
                bad.push(format!("id {:?} is defined twice", r.id));
            } else if base.employees.get(e.id.as_str()).is_none_or(|b| **b != e) {
                w.put(Change::Employee(e.id.clone(), Some(e)));
                employees.push(i);
            }
        }
        report.drain(o, &mut bad);
    }
    // What the files held and hold no more.
    let mut check_all = false;
    let mut granting: BTreeSet<Id> = BTreeSet::new();
    for k in replaced.iter().filter(|k| !seen.contains(*k)) {
        match k {
            RecordKey::Organization(n) => {
                check_all = true;
                w.put(Change::Organization(*n, None));
            }
            RecordKey::SystemUser(id) => {
                if let Some(s) = w.system_users.get(id.as_str()) {
                    granting.extend(s.granted_to.iter().cloned());
                }
                w.put(Change::SystemUser(id.clone(), None));
            }
            RecordKey::Link(su, n) => w.put(Change::Link(su.clone(), *n, None)),
            RecordKey::Team(id) => {
                check_all = true;
                w.put(Change::Team(id.clone(), None));
            }
            RecordKey::Employee(id) => w.put(Change::Employee(id.clone(), None)),
        }
    }
    // A party id one organisation left may be held by another put in before.
    let put_orgs: Vec<OrgNo> = orgs
        .iter()
        .filter_map(|&i| OrgNo::parse(&records.orgs[i].1.org_number).ok())
        .collect();
    for n in &put_orgs {
        w.claim_party(*n);
    }
    // Every record put in, against the world it leads to.
    for &i in &orgs {
        let (o, r) = &records.orgs[i];
        references(&w, Record::Organization(r), &mut bad);
        report.drain(o, &mut bad);
    }
    for &i in &sus {
        let (o, r) = &records.system_users[i];
        references(&w, Record::SystemUser(r), &mut bad);
        report.drain(o, &mut bad);
    }
    for &i in &teams {
        let (o, r) = &records.teams[i];
        references(&w, Record::Team(r), &mut bad);
        report.drain(o, &mut bad);
    }
    for &i in &employees {
        let (o, r) = &records.employees[i];
        references(&w, Record::Employee(r), &mut bad);
        report.drain(o, &mut bad);
    }
    if check_all {
        if report.problems.is_empty() {
            for p in w.check_references() {
                report.after(&p);
            }
        }
    } else {
        // What the change can break of the records it did not touch: the units
        // of an organisation that is now a unit itself, and the teams that
        // granted a system user now gone.
        let mut again: BTreeSet<RecordKey> = put_orgs
            .iter()
            .filter(|n| w.organization(**n).is_some_and(|o| o.parent().is_some()))
            .flat_map(|n| w.units_of(*n).to_vec())
            .map(RecordKey::Organization)
            .collect();
        again.extend(granting.into_iter().map(RecordKey::Team));
        for k in &again {
            for p in w.check_record(k, packages) {
                report.after(&p);
            }
        }
    }
    if report.problems.is_empty() {
        Ok(w)
    } else {
        Err(Problems(report.problems))
    }
}

impl World {
    /// Whether the world holds a record under `key`.
    fn holds(&self, key: &RecordKey) -> bool {
        match key {
            RecordKey::Organization(n) => self.orgs.contains_key(n),
            RecordKey::SystemUser(id) => self.system_users.contains_key(id.as_str()),
            RecordKey::Link(su, n) => self
                .system_users
                .get(su.as_str())
                .is_some_and(|s| s.links.contains_key(n)),
            RecordKey::Team(id) => self.teams.contains_key(id.as_str()),
            RecordKey::Employee(id) => self.employees.contains_key(id.as_str()),
        }
    }

    /// Puts in a system user whole, its client links as given (unlike
    /// [`Change::SystemUser`], which keeps the links it had): a record read
    /// again from a file. The teams granting it are kept; one new to the world
    /// is granted by the teams put in after it.
    fn put_system_user(&mut self, mut su: SystemUser) {
        let id = su.id.clone();
        match self.system_users.get(id.as_str()) {
            Some(old) => {
                su.granted_to = old.granted_to.clone();
                if old.owner != su.owner {
                    let owner = old.owner;
                    self.unlist_owner(owner, &id);
                }
            }
            None => su.granted_to = Box::default(),
        }
        let owner = su.owner;
        self.system_users.insert(id.clone(), Arc::new(su));
        self.list_owner(owner, &id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::snapshot::{Snapshot, Sources};

    fn example() -> Snapshot {
        Snapshot::build(&Sources::embedded()).unwrap()
    }

    fn org(n: &str) -> OrgNo {
        OrgNo::parse(n).unwrap()
    }

    #[test]
    fn changes_keep_the_indexes_right_and_leave_the_old_world_alone() {
        let snap = example();
        let w = &snap.world;
        let team = w.team("tk-regnskap-team").unwrap().clone();
        assert!(!w
            .system_user("ed-regnskap")
            .unwrap()
            .granted_to
            .contains(&team.id));
        // The team is granted ed-regnskap, and loses tk-regnskap.
        let mut changed = team.clone();
        changed.system_users = vec![Id::from("ed-regnskap")].into_boxed_slice();
        let w2 = w
            .apply(
                [Change::Team(team.id.clone(), Some(changed))],
                &snap.packages,
            )
            .unwrap();
        assert!(w2
            .system_user("ed-regnskap")
            .unwrap()
            .granted_to
            .contains(&team.id));
        assert!(!w2
            .system_user("tk-regnskap")
            .unwrap()
            .granted_to
            .contains(&team.id));
        assert!(w
            .system_user("tk-regnskap")
            .unwrap()
            .granted_to
            .contains(&team.id));
        // Removing a client link.
        let bakeri = org("310015156");
        assert!(w
            .system_user("tk-regnskap")
            .unwrap()
            .links
            .contains_key(&bakeri));
        let w3 = w
            .apply(
                [Change::Link("tk-regnskap".into(), bakeri, None)],
                &snap.packages,
            )
            .unwrap();
        assert!(!w3
            .system_user("tk-regnskap")
            .unwrap()
            .links
            .contains_key(&bakeri));
        // A system user moved to another owner leaves the first owner's list.
        let mut su = w.system_user("nm-egen").unwrap().clone();
        let (old, new) = (su.owner, org("310001015"));
        su.owner = new;
        let w4 = w
            .apply(
                [Change::SystemUser(su.id.clone(), Some(su))],
                &snap.packages,
            )
            .unwrap();
        assert!(!w4.system_users_owned_by(old).contains(&Id::from("nm-egen")));
        assert!(w4.system_users_owned_by(new).contains(&Id::from("nm-egen")));
    }

    #[test]
    fn party_ids_follow_the_organisations_change_by_change() {
        use super::super::records::Party;
        use std::num::NonZeroI64;
        let snap = example();
        let w = &snap.world;
        let with = |n: &str, id: Option<i64>, u: Option<u128>| {
            let mut o = w.organization(org(n)).unwrap().clone();
            o.party = Party::boxed(id.and_then(NonZeroI64::new), u.map(uuid::Uuid::from_u128));
            Change::Organization(org(n), Some(o))
        };
        let by_id = |w: &World, id: i64| {
            w.organization_by_party_id(id)
                .map(|o| o.org_number.to_string())
        };
        let by_uuid = |w: &World, u: u128| {
            w.organization_by_party_uuid(uuid::Uuid::from_u128(u))
                .map(|o| o.org_number.to_string())
        };
        let (a, b, c) = ("310001015", "310015156", "310017175");
        let w1 = w
            .apply(
                [with(a, Some(1001), Some(7)), with(b, Some(1002), None)],
                &snap.packages,
            )
            .unwrap();
        assert_eq!(by_id(&w1, 1001).as_deref(), Some(a));
        assert_eq!(by_id(&w1, 1002).as_deref(), Some(b));
        assert_eq!(by_uuid(&w1, 7).as_deref(), Some(a));
        assert_eq!(by_id(&w1, 1003), None);
        assert_eq!(by_id(w, 1001), None, "the old world is untouched");
        // Moved within one change set, the taker written first.
        let w2 = w1
            .apply(
                [with(c, Some(1002), None), with(b, None, None)],
                &snap.packages,
            )
            .unwrap();
        assert_eq!(by_id(&w2, 1002).as_deref(), Some(c));
        // Swapped between two organisations.
        let w3 = w2
            .apply(
                [with(a, Some(1002), Some(7)), with(c, Some(1001), None)],
                &snap.packages,
            )
            .unwrap();
        assert_eq!(by_id(&w3, 1001).as_deref(), Some(c));
        assert_eq!(by_id(&w3, 1002).as_deref(), Some(a));
        // Given to a second organisation while the holder stays as it is:
        // refused, naming both, whichever is checked.
        let err = w3
            .apply([with(b, Some(1001), None)], &snap.packages)
            .unwrap_err();
        assert_eq!(
            err.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["organization 310015156: partyId 1001 is given to two organisations, 310015156 and 310017175"]
        );
        let err = w3
            .apply([with(b, None, Some(7))], &snap.packages)
            .unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "organization 310015156: partyUuid \"00000000-0000-0000-0000-000000000007\" is given to two organisations, 310001015 and 310015156"
        );
        // Both given it in one change set: refused too.
        assert!(w
            .apply(
                [with(b, Some(5), None), with(c, Some(5), None)],
                &snap.packages
            )
            .is_err());
        // Taken away: gone from the index.
        let w4 = w3.apply([with(c, None, None)], &snap.packages).unwrap();
        assert_eq!(by_id(&w4, 1001), None);
        assert_eq!(by_id(&w4, 1002).as_deref(), Some(a));
        // The indexes kept change by change are those a build of the records gives.
        let mut b = super::super::WorldBuilder::new();
        b.add_records(
            "records",
            w4.organizations().map(OrganizationRecord::from).collect(),
            w4.system_users().map(SystemUserRecord::from).collect(),
            w4.teams().map(TeamRecord::from).collect(),
            w4.employees().map(EmployeeRecord::from).collect(),
        );
        let built = b.build(&snap.packages, &snap.schema).unwrap();
        assert!(built.party_ids == w4.party_ids && built.party_uuids == w4.party_uuids);
    }

    #[test]
    fn a_change_that_breaks_a_reference_is_refused_naming_it() {
        let snap = example();
        let w = &snap.world;
        let mut kari = w.employee("kari").unwrap().clone();
        kari.teams = vec![Id::from("no-such-team")].into_boxed_slice();
        let err = w
            .apply(
                [Change::Employee(kari.id.clone(), Some(kari.clone()))],
                &snap.packages,
            )
            .unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "employee \"kari\": teams[0] \"no-such-team\" is not a known team"
        );
        // The team added in the same change set: fine, whatever the order.
        let team = Team {
            id: "no-such-team".into(),
            organization: kari.organization,
            name: "New".into(),
            system_users: Box::default(),
            clients: super::super::records::ClientScope::All,
        };
        assert!(w
            .apply(
                [
                    Change::Employee(kari.id.clone(), Some(kari)),
                    Change::Team(team.id.clone(), Some(team)),
                ],
                &snap.packages
            )
            .is_ok());
        // A link to an unknown organisation, and to a standard system user.
        let link = w
            .system_user("tk-regnskap")
            .unwrap()
            .links
            .values()
            .next()
            .unwrap()
            .clone();
        let err = w
            .apply(
                [
                    Change::Link("tk-regnskap".into(), org("310030309"), Some(link.clone())),
                    Change::Link("nm-egen".into(), org("310015156"), Some(link)),
                ],
                &snap.packages,
            )
            .unwrap_err();
        let text: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|t| t
                .contains("clientOrganizationNumber \"310030309\" is not a known organisation")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("\"nm-egen\" is a standard system user")),
            "{text:?}"
        );
    }
}
