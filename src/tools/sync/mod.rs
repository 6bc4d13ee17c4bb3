//! `vakt altinn sync`'s pure part: what Altinn answered, turned into the world's
//! records (organisations, system users with their client links), the difference
//! from the world that holds now, and the guard against mass removals. No I/O:
//! the command (src/cli/altinn.rs) reads Altinn, checks and writes.

use crate::world::{
    AccessRecord, ClientRecord, OrganizationRecord, PackageRef, PartyIdValue, SystemUserRecord,
    World,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

pub mod altinn;

/// The most a sync may remove, as a share of the links (or system users) held,
/// unless the operator confirms it.
pub const DEFAULT_MAX_REMOVAL_SHARE: f64 = 0.2;

/// A party as Altinn names it (an owner or a client).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartyRead {
    pub org_number: String,
    pub name: String,
    pub party_id: Option<i64>,
    pub party_uuid: Option<String>,
    /// The legal entity an operational unit belongs to (a subunit in
    /// `authorizedparties`).
    pub parent_org_number: Option<String>,
    pub unit_type: Option<String>,
}

/// One client of an agent system user, with what was delegated for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientRead {
    pub party: PartyRead,
    pub client_id: Option<String>,
    /// Each relationship with its packages; a relationship Altinn did not name is
    /// `None`, written as an access entry without a role (`authorizedparties`
    /// lists a client's packages, not the role behind them). The packages count,
    /// but rule 8 finds no auditor basis in it, so an auditor is denied for that
    /// client (fail-closed).
    pub access: Vec<(Option<String>, Vec<String>)>,
}

/// One system user as the vendor's list and its own answers give it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SystemUserRead {
    pub id: String,
    pub integration_title: String,
    pub system_id: String,
    pub reportee_org_no: String,
    /// `standard` or `agent` (as Altinn writes it).
    pub user_type: String,
    pub external_ref: Option<String>,
    /// The owner as a party, when Altinn named it (for its name and ids).
    pub owner: Option<PartyRead>,
    /// The packages the system user holds for its owner (a standard system
    /// user's, or an agent's self-delegation).
    pub owner_packages: Vec<String>,
    /// Whether an agent also acts for its owner.
    pub self_delegated: bool,
    pub clients: Vec<ClientRead>,
    /// Operational units Altinn named under the owner or a client, with their
    /// parent: organisations only, no links of their own.
    pub units: Vec<PartyRead>,
}

/// A complete read of every configured system.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AltinnRead {
    pub system_users: Vec<SystemUserRead>,
}

/// The records a sync writes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Synced {
    pub organizations: Vec<OrganizationRecord>,
    pub system_users: Vec<SystemUserRecord>,
}

fn org_record(p: &PartyRead) -> OrganizationRecord {
    OrganizationRecord {
        org_number: p.org_number.clone(),
        name: p.name.clone(),
        parent_org_number: p.parent_org_number.clone(),
        unit_type: p.unit_type.clone(),
        party_id: p.party_id.map(PartyIdValue::from),
        party_uuid: p.party_uuid.clone(),
    }
}

/// Adds what `p` says of an organisation; what an earlier mention said is kept
/// where this one says nothing.
fn note(orgs: &mut BTreeMap<String, OrganizationRecord>, p: &PartyRead) {
    let new = org_record(p);
    match orgs.get_mut(&p.org_number) {
        None => {
            orgs.insert(p.org_number.clone(), new);
        }
        Some(o) => {
            if o.name.is_empty() {
                o.name = new.name;
            }
            o.parent_org_number = o.parent_org_number.take().or(new.parent_org_number);
            o.unit_type = o.unit_type.take().or(new.unit_type);
            o.party_id = o.party_id.take().or(new.party_id);
            o.party_uuid = o.party_uuid.take().or(new.party_uuid);
        }
    }
}

fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
    v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// The world's records for what Altinn answered. Organisations `elsewhere`
/// (defined by the vendor's own files or rows) are not written again.
pub fn records(read: &AltinnRead, elsewhere: &BTreeSet<String>) -> Synced {
    let mut orgs = BTreeMap::new();
    let mut users = Vec::with_capacity(read.system_users.len());
    for su in &read.system_users {
        match &su.owner {
            Some(o) => note(&mut orgs, o),
            None => note(
                &mut orgs,
                &PartyRead {
                    org_number: su.reportee_org_no.clone(),
                    ..PartyRead::default()
                },
            ),
        }
        for u in &su.units {
            note(&mut orgs, u);
        }
        let agent = su.user_type.eq_ignore_ascii_case("agent");
        let mut clients: BTreeMap<String, ClientRecord> = BTreeMap::new();
        let mut packages: BTreeSet<String> = su.owner_packages.iter().cloned().collect();
        if agent {
            for c in &su.clients {
                note(&mut orgs, &c.party);
                let access = c.access.iter().map(|(role, p)| AccessRecord {
                    role: role.clone(),
                    packages: sorted(p.iter().cloned()),
                });
                packages.extend(c.access.iter().flat_map(|(_, p)| p.iter().cloned()));
                // One link per client: two answers for one client join.
                let link = clients
                    .entry(c.party.org_number.clone())
                    .or_insert_with(|| ClientRecord {
                        client_id: c.client_id.clone(),
                        client_organization_number: c.party.org_number.clone(),
                        client_organization_name: None,
                        access: Vec::new(),
                        status: None,
                    });
                for a in access {
                    match link.access.iter_mut().find(|x| x.role == a.role) {
                        Some(x) => x.packages = sorted(x.packages.drain(..).chain(a.packages)),
                        None => link.access.push(a),
                    }
                }
            }
        }
        users.push(SystemUserRecord {
            id: su.id.clone(),
            integration_title: Some(su.integration_title.clone()),
            system_id: Some(su.system_id.clone()),
            reportee_org_no: su.reportee_org_no.clone(),
            user_type: Some(if agent { "agent" } else { "standard" }.to_owned()),
            access_packages: Some(packages.into_iter().map(|urn| PackageRef { urn }).collect()),
            external_ref: su.external_ref.clone(),
            is_deleted: false,
            self_delegated: agent && su.self_delegated,
            clients: clients.into_values().collect(),
        });
    }
    users.sort_by(|a, b| a.id.cmp(&b.id));
    Synced {
        organizations: orgs
            .into_iter()
            .filter(|(n, _)| !elsewhere.contains(n))
            .map(|(_, o)| o)
            .collect(),
        system_users: users,
    }
}

/// Keeps each system user of `previous` that Altinn no longer lists as deleted
/// (`isDeleted`, no clients): a team of the vendor's may still name it by id, and
/// rule 2 denies a deleted system user, so its removal takes effect without
/// breaking the vendor's own records. The diff counts it as removed.
pub fn keep_deleted(previous: &[SystemUserRecord], synced: &mut Synced) {
    let listed: BTreeSet<String> = synced.system_users.iter().map(|s| s.id.clone()).collect();
    for s in previous {
        if listed.contains(&s.id) {
            continue;
        }
        let mut gone = s.clone();
        gone.is_deleted = true;
        gone.self_delegated = false;
        gone.clients.clear();
        gone.access_packages.get_or_insert_with(Vec::new);
        synced.system_users.push(gone);
    }
    synced.system_users.sort_by(|a, b| a.id.cmp(&b.id));
}

/// One system user as the diff sees it: its packages, and its active links'
/// packages by client.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Held {
    pub packages: BTreeSet<String>,
    pub links: BTreeMap<String, BTreeSet<String>>,
}

/// What the world holds now, by system user id.
pub fn held_in_world(world: &World) -> BTreeMap<String, Held> {
    world
        .system_users()
        .filter(|s| !s.is_deleted)
        .map(|s| (s.id.to_string(), held(&SystemUserRecord::from(s))))
        .collect()
}

/// What the records hold, by system user id.
pub fn held_in_records(users: &[SystemUserRecord]) -> BTreeMap<String, Held> {
    users
        .iter()
        .filter(|s| !s.is_deleted)
        .map(|s| (s.id.clone(), held(s)))
        .collect()
}

fn held(s: &SystemUserRecord) -> Held {
    Held {
        packages: s
            .access_packages
            .iter()
            .flatten()
            .map(|p| p.urn.clone())
            .collect(),
        links: s
            .clients
            .iter()
            .filter(|c| {
                c.status
                    .as_deref()
                    .is_none_or(|s| s.eq_ignore_ascii_case("active"))
            })
            .map(|c| {
                (
                    c.client_organization_number.clone(),
                    c.access
                        .iter()
                        .flat_map(|a| a.packages.iter().cloned())
                        .collect(),
                )
            })
            .collect(),
    }
}

/// What one sync changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diff {
    pub system_users_added: Vec<String>,
    pub system_users_removed: Vec<String>,
    /// (system user, client)
    pub links_added: Vec<(String, String)>,
    pub links_removed: Vec<(String, String)>,
    /// (system user, client or "" for the system user's own, package)
    pub packages_added: Vec<(String, String, String)>,
    pub packages_removed: Vec<(String, String, String)>,
    /// Links and system users held before the sync.
    pub links_before: usize,
    pub system_users_before: usize,
}

impl Diff {
    /// Whether the sync changes nothing.
    pub fn is_empty(&self) -> bool {
        self.system_users_added.is_empty()
            && self.system_users_removed.is_empty()
            && self.links_added.is_empty()
            && self.links_removed.is_empty()
            && self.packages_added.is_empty()
            && self.packages_removed.is_empty()
    }

    /// Changes by kind, as the log and the metrics name them.
    pub fn counts(&self) -> [(&'static str, usize); 6] {
        [
            ("system_user_added", self.system_users_added.len()),
            ("system_user_removed", self.system_users_removed.len()),
            ("link_added", self.links_added.len()),
            ("link_removed", self.links_removed.len()),
            ("package_added", self.packages_added.len()),
            ("package_removed", self.packages_removed.len()),
        ]
    }

    /// The diff as text, one change a line (`+`/`-`), for `--dry-run`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.system_users_added {
            let _ = writeln!(out, "+ system user {s}");
        }
        for s in &self.system_users_removed {
            let _ = writeln!(out, "- system user {s}");
        }
        for (s, c) in &self.links_added {
            let _ = writeln!(out, "+ link {s} -> {c}");
        }
        for (s, c) in &self.links_removed {
            let _ = writeln!(out, "- link {s} -> {c}");
        }
        let on = |c: &str| {
            if c.is_empty() {
                String::new()
            } else {
                format!(" -> {c}")
            }
        };
        for (s, c, p) in &self.packages_added {
            let _ = writeln!(out, "+ package {s}{}: {p}", on(c));
        }
        for (s, c, p) in &self.packages_removed {
            let _ = writeln!(out, "- package {s}{}: {p}", on(c));
        }
        if out.is_empty() {
            out.push_str("no changes\n");
        }
        out
    }
}

/// The difference from `before` to `after`. A removed system user's links count
/// as removed links.
pub fn diff(before: &BTreeMap<String, Held>, after: &BTreeMap<String, Held>) -> Diff {
    let empty = Held::default();
    let mut d = Diff {
        links_before: before.values().map(|h| h.links.len()).sum(),
        system_users_before: before.len(),
        ..Diff::default()
    };
    let ids: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for id in ids {
        let (b, a) = (before.get(id), after.get(id));
        match (b, a) {
            (None, Some(_)) => d.system_users_added.push(id.clone()),
            (Some(_), None) => d.system_users_removed.push(id.clone()),
            _ => {}
        }
        let (b, a) = (b.unwrap_or(&empty), a.unwrap_or(&empty));
        for p in a.packages.difference(&b.packages) {
            d.packages_added
                .push((id.clone(), String::new(), p.clone()));
        }
        for p in b.packages.difference(&a.packages) {
            d.packages_removed
                .push((id.clone(), String::new(), p.clone()));
        }
        let none = BTreeSet::new();
        let clients: BTreeSet<&String> = b.links.keys().chain(a.links.keys()).collect();
        for c in clients {
            let (bl, al) = (b.links.get(c), a.links.get(c));
            match (bl, al) {
                (None, Some(_)) => d.links_added.push((id.clone(), c.clone())),
                (Some(_), None) => d.links_removed.push((id.clone(), c.clone())),
                _ => {}
            }
            let (bl, al) = (bl.unwrap_or(&none), al.unwrap_or(&none));
            for p in al.difference(bl) {
                d.packages_added.push((id.clone(), c.clone(), p.clone()));
            }
            for p in bl.difference(al) {
                d.packages_removed.push((id.clone(), c.clone(), p.clone()));
            }
        }
    }
    d
}

/// Why the guard refuses a sync.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the sync would remove {removed} of {held} {what} ({share:.1} %), more than the {limit:.1} % max_removal_share allows; confirm with --confirm-removals")]
pub struct TooManyRemovals {
    pub what: &'static str,
    pub removed: usize,
    pub held: usize,
    pub share: f64,
    pub limit: f64,
}

/// The mass-removal guard: a sync that would remove more than `max_share` of the
/// links held, or of the system users held, is refused. An API glitch that
/// answers "nobody" must not revoke everyone; a real mass removal is confirmed by
/// the operator.
pub fn guard(d: &Diff, max_share: f64) -> Result<(), TooManyRemovals> {
    for (what, removed, held) in [
        ("client links", d.links_removed.len(), d.links_before),
        (
            "system users",
            d.system_users_removed.len(),
            d.system_users_before,
        ),
    ] {
        if held == 0 || removed == 0 {
            continue;
        }
        let share = removed as f64 / held as f64;
        if share > max_share {
            return Err(TooManyRemovals {
                what,
                removed,
                held,
                share: share * 100.0,
                limit: max_share * 100.0,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
