//! The reverse questions: who can act for a client with a package, and what can
//! an employee do. Answered by asking [`decide`](crate::decision) about every
//! candidate, so each answer is exactly what `Authorize` would say.
//!
//! Candidates are found the way the rules find them, and only that way: an
//! employee uses the system users their own organisation owns (rule 3); a
//! standard system user (and an agent that delegated its owner to itself) reaches
//! its owner and the owner's operational units, an agent its linked clients and
//! their units (rule 6); a package is one the system user holds (rule 5).
//! `vakt verify` proves the shipped policies allow nothing outside these; a policy
//! set that does would be answered by `Authorize` but not found here.
//!
//! Answers are ordered (WhoCan by employee id, WhatCan by system user, client,
//! package) and read in pages: a page resumes after the last key of the one
//! before, on the same world, so the pages of one answer never mix worlds.

use crate::decision::{
    decide_subject, Fields, InvalidField, Need, Path, Query, RawRequest, Subject,
};
use crate::rules::snapshot::Snapshot;
use crate::world::{Employee, Id, OrgNo, SystemUser, UserType, World};
use smol_str::SmolStr;

/// The most results one page may hold; a larger page size is read as this.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The page size when the caller gives none.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The page size a caller asked for (0: the default), within the limit.
pub fn page_size(asked: u32) -> usize {
    match asked as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// Checks a WhoCan request: a client and a package, optionally a system user,
/// an action and a context (the employee is not part of it).
pub fn who_can_query(snap: &Snapshot, raw: RawRequest) -> Result<Query, InvalidField> {
    let fields = Fields {
        employee: Need::Absent,
        system_user: Need::Optional,
        client: Need::Required,
        access_package: Need::Required,
    };
    Query::check_fields(snap, raw, "", fields)
}

/// Checks a WhatCan request: an employee, optionally a system user, a client and
/// a package to filter by, an action and a context.
pub fn what_can_query(snap: &Snapshot, raw: RawRequest) -> Result<Query, InvalidField> {
    let fields = Fields {
        employee: Need::Required,
        system_user: Need::Optional,
        client: Need::Optional,
        access_package: Need::Optional,
    };
    Query::check_fields(snap, raw, "", fields)
}

/// One way an employee is allowed: through which system user, and its path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    pub system_user: Id,
    pub path: Path,
}

/// An employee allowed to act for the client with the package, and every way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Who {
    pub employee: Id,
    pub routes: Vec<Route>,
}

/// One thing an employee is allowed: a system user, a client and a package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct What {
    pub system_user: Id,
    pub client: OrgNo,
    pub access_package: SmolStr,
    pub path: Path,
}

impl What {
    /// The key answers are ordered by, and a page resumes after.
    pub fn key(&self) -> (Id, OrgNo, SmolStr) {
        (
            self.system_user.clone(),
            self.client,
            self.access_package.clone(),
        )
    }
}

/// One page of an answer, and whether more may follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Candidates remain after the last item, so a next page may hold more. (The
    /// last page of an answer may be empty.)
    pub more: bool,
}

/// Whether `su` may reach `client` at all: the candidates of rule 6.
fn reaches(su: &SystemUser, client: OrgNo, parent: Option<OrgNo>) -> bool {
    let own = su.user_type == UserType::Standard || su.self_delegated;
    let at = |org: OrgNo| (own && su.owner == org) || su.links.contains_key(&org);
    at(client) || parent.is_some_and(at)
}

/// The clients `su` may reach, sorted: its owner and the owner's units for a
/// standard system user (or an agent its owner delegated itself to), and its
/// linked clients and their units.
pub(crate) fn clients_of(w: &World, su: &SystemUser) -> Vec<OrgNo> {
    let mut out = Vec::new();
    let with_units = |org: OrgNo, out: &mut Vec<OrgNo>| {
        out.push(org);
        out.extend_from_slice(w.units_of(org));
    };
    if su.user_type == UserType::Standard || su.self_delegated {
        with_units(su.owner, &mut out);
    }
    for org in su.links.keys() {
        with_units(*org, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Who may act for `q`'s client with its package (and action and context),
/// through `q`'s system user when it names one: up to `limit` employees after
/// `after`, in id order.
pub fn who_can(snap: &Snapshot, q: &Query, after: Option<&str>, limit: usize) -> Page<Who> {
    let w = &snap.world;
    let client = q.client_no;
    let parent = w.organization(client).and_then(|c| c.parent());
    let mut sus: Vec<&SystemUser> = if q.system_user.is_empty() {
        w.system_users()
            .filter(|su| reaches(su, client, parent))
            .collect()
    } else {
        w.system_user(&q.system_user).into_iter().collect()
    };
    sus.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    // Every employee of an organisation that owns a candidate, in id order.
    let mut owners: Vec<OrgNo> = sus.iter().map(|su| su.owner).collect();
    owners.sort_unstable();
    owners.dedup();
    let mut employees: Vec<&Id> = owners.iter().flat_map(|o| w.employees_of(*o)).collect();
    employees.sort_unstable();
    employees.dedup();
    let start = after.map_or(0, |a| employees.partition_point(|e| e.as_str() <= a));
    let mut q = q.clone();
    let mut items = Vec::new();
    for id in &employees[start..] {
        if items.len() == limit {
            return Page { items, more: true };
        }
        let Some(e) = w.employee(id) else { continue };
        q.employee = id.to_string();
        let routes: Vec<Route> = sus
            .iter()
            .filter(|su| su.owner == e.organization)
            .filter_map(|su| allowed(w, snap, &q, e, su))
            .collect();
        if !routes.is_empty() {
            items.push(Who {
                employee: e.id.clone(),
                routes,
            });
        }
    }
    Page { items, more: false }
}

/// Decides `q` for employee `e` through `su`; the route when allowed.
fn allowed(w: &World, snap: &Snapshot, q: &Query, e: &Employee, su: &SystemUser) -> Option<Route> {
    let subject = Subject::with(w, Some(e), Some(su), q.client_no);
    let d = decide_subject(snap, w, q, &subject, &su.id);
    d.allowed.then(|| Route {
        system_user: su.id.clone(),
        path: d.path.unwrap_or_default(),
    })
}

/// What `q`'s employee may do with its action and context, optionally only
/// through `q`'s system user, for `q`'s client, or with `q`'s package (each when
/// given): up to `limit` results after `after`, ordered by system user, client
/// and package.
pub fn what_can(
    snap: &Snapshot,
    q: &Query,
    after: Option<&(Id, OrgNo, SmolStr)>,
    limit: usize,
) -> Page<What> {
    let w = &snap.world;
    let Some(e) = w.employee(&q.employee) else {
        return Page {
            items: Vec::new(),
            more: false,
        };
    };
    let mut q = q.clone();
    let su_filter = std::mem::take(&mut q.system_user);
    let client_filter = (!q.client.is_empty()).then_some(q.client_no);
    let package_filter = (!q.access_package.is_empty()).then(|| q.access_package.clone());
    let mut items = Vec::new();
    for su_id in w.system_users_owned_by(e.organization) {
        if !su_filter.is_empty() && su_filter != *su_id {
            continue;
        }
        if after.is_some_and(|(a, _, _)| su_id < a) {
            continue;
        }
        let Some(su) = w.system_user(su_id) else {
            continue;
        };
        let clients: Vec<OrgNo> = match client_filter {
            Some(c) => {
                let parent = w.organization(c).and_then(|o| o.parent());
                if reaches(su, c, parent) {
                    vec![c]
                } else {
                    Vec::new()
                }
            }
            None => clients_of(w, su),
        };
        let packages: Vec<SmolStr> = match &package_filter {
            Some(p) => su
                .access_packages
                .iter()
                .filter(|x| x.as_str() == p)
                .cloned()
                .collect(),
            None => {
                let mut v = su.access_packages.to_vec();
                v.sort();
                v.dedup();
                v
            }
        };
        for client in clients {
            let subject = Subject::with(w, Some(e), Some(su), client);
            for package in &packages {
                if let Some((a_su, a_client, a_package)) = after {
                    if (su_id, client, package) <= (a_su, *a_client, a_package) {
                        continue;
                    }
                }
                if items.len() == limit {
                    return Page { items, more: true };
                }
                q.client_no = client;
                q.client = client.to_string();
                q.access_package = package.to_string();
                q.system_user = su_id.to_string();
                let d = decide_subject(snap, w, &q, &subject, su_id);
                if !d.allowed {
                    continue;
                }
                items.push(What {
                    system_user: su.id.clone(),
                    client,
                    access_package: package.clone(),
                    path: d.path.unwrap_or_default(),
                });
            }
        }
    }
    Page { items, more: false }
}
