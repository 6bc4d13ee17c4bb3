//! The access review of one organisation: every employee's effective access with
//! its path, conflicts of duties held in grants, deactivated employees still in
//! teams, grants the decision log shows unused, and linked clients no employee
//! can use. Rendered as CSV, JSON or one self-contained HTML file (`render`).
//!
//! Effective access is asked of [`reverse`](crate::decision::reverse), so it is exactly what
//! `Authorize` would allow. Conflicts are read from the grants instead, since rule
//! 8 already denies using both paths: the review shows the grant that should not
//! be there.

mod render;

pub use render::{csv, html, CSV_COLUMNS};

use crate::decision::reverse::{what_can, what_can_query};
use crate::decision::RawRequest;
use crate::rules::model::AUDITOR_ROLE;
use crate::rules::snapshot::Snapshot;
use crate::world::{OrgNo, SystemUser, UserType, World};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

/// The JSON format's name and version.
pub const FORMAT: &str = "vakt-access-review/1";

#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub format: &'static str,
    pub organization: OrgOut,
    pub generated_at: String,
    pub revision: String,
    pub since: Option<String>,
    pub log: Option<LogInfo>,
    pub summary: Summary,
    pub access: Vec<Access>,
    pub conflicts: Vec<Conflict>,
    pub deactivated_in_teams: Vec<Deactivated>,
    pub unused_system_users: Vec<UnusedSystemUser>,
    pub unused_team_grants: Vec<UnusedGrant>,
    pub unusable_clients: Vec<Unusable>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrgOut {
    pub org_number: String,
    pub name: String,
}

/// The decision log the usage sections were read from.
#[derive(Debug, Clone, Serialize)]
pub struct LogInfo {
    pub files: Vec<String>,
    /// Records in the log (every call, every outcome).
    pub records: u64,
    /// Authorize allows through this organisation's system users since `since`.
    pub allows: u64,
    /// Those of them that name no path (written before Vakt recorded paths): they
    /// count for their system user, but for no team grant.
    pub allows_without_path: u64,
    /// The chain was verified before anything was read.
    pub verified: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub employees: usize,
    pub access: usize,
    pub conflicts: usize,
    pub deactivated_in_teams: usize,
    pub unused_system_users: usize,
    pub unused_team_grants: usize,
    pub unusable_clients: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Access {
    pub employee_id: String,
    pub employee_name: String,
    pub system_user_id: String,
    pub system_user_title: String,
    pub user_type: &'static str,
    pub client_org_number: String,
    pub client_name: String,
    pub access_package: String,
    /// The package list's name for it (null when the list gives none).
    pub package_name: Option<String>,
    pub teams: Vec<String>,
    pub link_roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub employee_id: String,
    pub employee_name: String,
    pub client_org_number: String,
    pub client_name: String,
    pub auditor_system_users: Vec<String>,
    pub other_system_users: Vec<String>,
    pub teams: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deactivated {
    pub employee_id: String,
    pub employee_name: String,
    pub teams: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnusedSystemUser {
    pub system_user_id: String,
    pub system_user_title: String,
    pub user_type: &'static str,
    /// The last allow through it in the whole log, before `since`; None if never.
    pub last_used: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnusedGrant {
    pub team_id: String,
    pub team_name: String,
    pub system_user_id: String,
    pub last_used: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unusable {
    pub system_user_id: String,
    pub client_org_number: String,
    pub client_name: String,
    pub why: String,
}

/// One allow read from a verified decision log.
#[derive(Debug, Clone)]
pub struct Used {
    pub at: SystemTime,
    pub timestamp: String,
    pub system_user: String,
    /// The teams of its path; None when the record names no path.
    pub teams: Option<Vec<String>>,
}

/// What the decision log says, for the usage sections.
#[derive(Debug, Clone)]
pub struct Usage {
    pub files: Vec<String>,
    pub records: u64,
    pub allows: Vec<Used>,
}

/// Why a review cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("--org: organisation {0} is not in the world")]
    UnknownOrganization(String),
    #[error("{file}:{line}: {message}")]
    BadRecord {
        file: String,
        line: usize,
        message: String,
    },
}

/// Reads the Authorize allows out of decision-log files whose chain has been
/// verified: (file name, text) in order.
pub fn read_usage(files: &[(String, String)]) -> Result<Usage, ReviewError> {
    #[derive(serde::Deserialize)]
    struct Rec {
        #[serde(default)]
        call: String,
        #[serde(default)]
        decision: String,
        #[serde(default)]
        timestamp: String,
        #[serde(default)]
        system_user_id: String,
        #[serde(default)]
        path: Option<PathIn>,
    }
    #[derive(serde::Deserialize)]
    struct PathIn {
        #[serde(default)]
        teams: Vec<String>,
    }
    let mut usage = Usage {
        files: files.iter().map(|(n, _)| n.clone()).collect(),
        records: 0,
        allows: Vec::new(),
    };
    for (file, text) in files {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| ReviewError::BadRecord {
                file: file.clone(),
                line: i + 1,
                message,
            };
            let r: Rec = crate::json::from_str(line).map_err(|e| bad(e.to_string()))?;
            usage.records += 1;
            if r.call != "authorize" || r.decision != "allow" {
                continue;
            }
            let at = humantime::parse_rfc3339_weak(&r.timestamp)
                .map_err(|e| bad(format!("timestamp {:?}: {e}", r.timestamp)))?;
            usage.allows.push(Used {
                at,
                timestamp: r.timestamp,
                system_user: r.system_user_id,
                teams: r.path.map(|p| p.teams),
            });
        }
    }
    Ok(usage)
}

/// The review of organisation `org` on `snap`, with usage from `usage` (allows at
/// or after `since` count as use).
pub fn review(
    snap: &Snapshot,
    org: OrgNo,
    usage: Option<&Usage>,
    since: Option<(SystemTime, String)>,
) -> Result<Review, ReviewError> {
    let w = &snap.world;
    let o = w
        .organization(org)
        .ok_or_else(|| ReviewError::UnknownOrganization(org.to_string()))?;
    let org_name = |n: OrgNo| {
        w.organization(n)
            .map_or_else(String::new, |o| o.name.to_string())
    };
    let employees = w.employees_of(org);
    let own_sus: Vec<&SystemUser> = w
        .system_users_owned_by(org)
        .iter()
        .filter_map(|id| w.system_user(id))
        .collect();

    // Effective access: exactly what Authorize allows, with the default action
    // and no caller context.
    let mut access = Vec::new();
    for id in employees {
        let Some(e) = w.employee(id) else { continue };
        let raw = RawRequest {
            employee_id: id.to_string(),
            ..Default::default()
        };
        let Ok(q) = what_can_query(snap, raw) else {
            continue;
        };
        for g in what_can(snap, &q, None, usize::MAX).items {
            let su = w.system_user(&g.system_user);
            access.push(Access {
                employee_id: e.id.to_string(),
                employee_name: e.name.to_string(),
                system_user_id: g.system_user.to_string(),
                system_user_title: su.map_or_else(String::new, |s| s.integration_title.to_string()),
                user_type: su.map_or("", |s| s.user_type.as_str()),
                client_org_number: g.client.to_string(),
                client_name: org_name(g.client),
                access_package: g.access_package.to_string(),
                package_name: snap.packages.name(&g.access_package).map(str::to_owned),
                teams: g.path.teams.iter().map(|t| t.to_string()).collect(),
                link_roles: g.path.link_roles.iter().map(|r| r.to_string()).collect(),
            });
        }
    }

    let conflicts = conflicts(w, org, &org_name);

    let deactivated_in_teams: Vec<Deactivated> = employees
        .iter()
        .filter_map(|id| w.employee(id))
        .filter(|e| !e.active && !e.teams.is_empty())
        .map(|e| Deactivated {
            employee_id: e.id.to_string(),
            employee_name: e.name.to_string(),
            teams: e.teams.iter().map(|t| t.to_string()).collect(),
        })
        .collect();

    // Usage from the log: what was used since `since`, and when each was last used.
    let mut log_info = None;
    let mut unused_system_users = Vec::new();
    let mut unused_team_grants = Vec::new();
    if let Some(u) = usage {
        let own: BTreeSet<&str> = own_sus.iter().map(|s| s.id.as_str()).collect();
        let ours: Vec<&Used> = u
            .allows
            .iter()
            .filter(|a| own.contains(a.system_user.as_str()))
            .collect();
        let recent = |a: &&Used| since.as_ref().is_none_or(|(t, _)| a.at >= *t);
        let mut last_su: BTreeMap<&str, &str> = BTreeMap::new();
        let mut last_grant: BTreeMap<(&str, &str), &str> = BTreeMap::new();
        let mut used_su = BTreeSet::new();
        let mut used_grant = BTreeSet::new();
        let (mut allows, mut without_path) = (0u64, 0u64);
        for a in &ours {
            let is_recent = recent(a);
            last_su
                .entry(a.system_user.as_str())
                .and_modify(|t| *t = std::cmp::max(*t, a.timestamp.as_str()))
                .or_insert(a.timestamp.as_str());
            if is_recent {
                allows += 1;
                used_su.insert(a.system_user.as_str());
            }
            match &a.teams {
                None if is_recent => without_path += 1,
                None => {}
                Some(teams) => {
                    for t in teams {
                        let k = (t.as_str(), a.system_user.as_str());
                        last_grant
                            .entry(k)
                            .and_modify(|x| *x = std::cmp::max(*x, a.timestamp.as_str()))
                            .or_insert(a.timestamp.as_str());
                        if is_recent {
                            used_grant.insert(k);
                        }
                    }
                }
            }
        }
        for su in &own_sus {
            if !used_su.contains(su.id.as_str()) {
                unused_system_users.push(UnusedSystemUser {
                    system_user_id: su.id.to_string(),
                    system_user_title: su.integration_title.to_string(),
                    user_type: su.user_type.as_str(),
                    last_used: last_su.get(su.id.as_str()).map(|t| t.to_string()),
                });
            }
        }
        let mut teams: Vec<_> = w.teams().filter(|t| t.organization == org).collect();
        teams.sort_by(|a, b| a.id.cmp(&b.id));
        for t in teams {
            for su in t.system_users.iter() {
                let k = (t.id.as_str(), su.as_str());
                if !used_grant.contains(&k) {
                    unused_team_grants.push(UnusedGrant {
                        team_id: t.id.to_string(),
                        team_name: t.name.to_string(),
                        system_user_id: su.to_string(),
                        last_used: last_grant.get(&k).map(|t| t.to_string()),
                    });
                }
            }
        }
        log_info = Some(LogInfo {
            files: u.files.clone(),
            records: u.records,
            allows,
            allows_without_path: without_path,
            verified: true,
        });
    }

    // Linked clients that no employee can use, with the first reason found.
    let usable: BTreeSet<(&str, &str)> = access
        .iter()
        .map(|a| (a.system_user_id.as_str(), a.client_org_number.as_str()))
        .collect();
    let mut unusable_clients = Vec::new();
    for su in &own_sus {
        let mut linked: Vec<OrgNo> = su
            .links
            .iter()
            .filter(|(_, l)| l.active)
            .map(|(n, _)| *n)
            .collect();
        linked.sort_unstable();
        for client in linked {
            let c = client.to_string();
            if usable.contains(&(su.id.as_str(), c.as_str())) {
                continue;
            }
            unusable_clients.push(Unusable {
                system_user_id: su.id.to_string(),
                client_org_number: c,
                client_name: org_name(client),
                why: why_unusable(w, su, client),
            });
        }
    }

    let summary = Summary {
        employees: employees.len(),
        access: access.len(),
        conflicts: conflicts.len(),
        deactivated_in_teams: deactivated_in_teams.len(),
        unused_system_users: unused_system_users.len(),
        unused_team_grants: unused_team_grants.len(),
        unusable_clients: unusable_clients.len(),
    };
    Ok(Review {
        format: FORMAT,
        organization: OrgOut {
            org_number: org.to_string(),
            name: o.name.to_string(),
        },
        generated_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        revision: snap.revision.clone(),
        since: since.map(|(_, s)| s),
        log: log_info,
        summary,
        access,
        conflicts,
        deactivated_in_teams,
        unused_system_users,
        unused_team_grants,
        unusable_clients,
    })
}

/// Employees who hold, through their teams' grants, both an auditor path (an
/// agent link resting on the auditor role) and another path (another role, or a
/// system user acting for its owner) to one client.
fn conflicts(w: &World, org: OrgNo, org_name: &dyn Fn(OrgNo) -> String) -> Vec<Conflict> {
    let mut out = Vec::new();
    for id in w.employees_of(org) {
        let Some(e) = w.employee(id) else { continue };
        // client -> (auditor system users, other system users, teams)
        type Paths = (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>);
        let mut by_client: BTreeMap<OrgNo, Paths> = BTreeMap::new();
        for tid in e.teams.iter() {
            let Some(team) = w.team(tid) else { continue };
            for su_id in team.system_users.iter() {
                let Some(su) = w.system_user(su_id) else {
                    continue;
                };
                if su.owner != e.organization || su.is_deleted {
                    continue;
                }
                for client in crate::decision::reverse::clients_of(w, su) {
                    let parent = w.organization(client).and_then(|o| o.parent());
                    if !team.covers(client, parent) {
                        continue;
                    }
                    let (auditor, other) = match su.link_for(client, parent) {
                        Some((_, l)) => {
                            let roles = &l.access.roles;
                            (
                                roles.iter().any(|r| r == AUDITOR_ROLE),
                                roles.iter().any(|r| r != AUDITOR_ROLE),
                            )
                        }
                        None => {
                            let own = su.user_type == UserType::Standard || su.self_delegated;
                            let in_owner = client == su.owner || parent == Some(su.owner);
                            (false, own && in_owner)
                        }
                    };
                    let entry = by_client.entry(client).or_default();
                    if auditor {
                        entry.0.insert(su.id.to_string());
                    }
                    if other {
                        entry.1.insert(su.id.to_string());
                    }
                    if auditor || other {
                        entry.2.insert(team.id.to_string());
                    }
                }
            }
        }
        for (client, (auditor, other, teams)) in by_client {
            if auditor.is_empty() || other.is_empty() {
                continue;
            }
            out.push(Conflict {
                employee_id: e.id.to_string(),
                employee_name: e.name.to_string(),
                client_org_number: client.to_string(),
                client_name: org_name(client),
                auditor_system_users: auditor.into_iter().collect(),
                other_system_users: other.into_iter().collect(),
                teams: teams.into_iter().collect(),
            });
        }
    }
    out
}

/// The first reason found why no employee can use `su` for its linked `client`.
fn why_unusable(w: &World, su: &SystemUser, client: OrgNo) -> String {
    if su.is_deleted {
        return "the system user is deleted".into();
    }
    let link = su.links.get(&client);
    if let Some(l) = link {
        if !l
            .access
            .packages
            .iter()
            .any(|p| su.access_packages.contains(p))
        {
            return "the link carries none of the system user's access packages".into();
        }
    }
    let granting: Vec<_> = su.granted_to.iter().filter_map(|t| w.team(t)).collect();
    if granting.is_empty() {
        return "no team is granted the system user".into();
    }
    let parent = w.organization(client).and_then(|o| o.parent());
    let covering: Vec<_> = granting
        .iter()
        .filter(|t| t.covers(client, parent))
        .collect();
    if covering.is_empty() {
        return "no team that is granted the system user has the client in its scope".into();
    }
    let anyone = w.employees_of(su.owner).iter().any(|id| {
        w.employee(id)
            .is_some_and(|e| e.active && covering.iter().any(|t| e.teams.contains(&t.id)))
    });
    if !anyone {
        return "no active employee is in a team that is granted the system user and has the client in its scope".into();
    }
    "every employee who could use it is denied by the policies (for example separation of duties)"
        .into()
}
