//! The world Vakt decides over: organisations, system users with their client
//! links, teams and employees, held as compact records in persistent maps.
//!
//! Vakt keeps no Cedar `Entities` for the world: building one costs seconds and
//! gigabytes at a million entities, and every change would recompute it. The
//! evaluator reads the records in place instead ([`entity`]), and a decision looks
//! up only the handful it needs, so its cost does not grow with the world. The maps
//! are persistent: a changed world shares every untouched record with the one
//! before it, so a change costs a few path copies, not a rebuild, and a reader
//! holding the old world is never disturbed.
//!
//! # Layout
//!
//! - [`records`]: the record types.
//! - [`entity`]: the records as Cedar entities, for the evaluator and for export.
//! - `load`: reading data files; `build`: checking records and building a world.

mod build;
pub mod entity;
mod load;
pub mod records;

pub use build::WorldBuilder;
pub use load::{
    load_dir, AccessRecord, ClientRecord, ClientsRecord, EmployeeRecord, OrganizationRecord,
    PackageRef, SourceFile, SystemUserRecord, TeamRecord,
};
pub use records::{
    ClientId, ClientLink, ClientScope, Employee, EmployeeKind, Id, LinkAccess, OrgNo, Organization,
    SystemUser, Team, UserType,
};

use cedar_policy_core::ast::{self, EntityUID};
use records::{map, Map};
use std::collections::HashMap;
use std::sync::Arc;

/// The whole world at one moment; cheap to clone, never changed in place.
#[derive(Clone)]
pub struct World {
    orgs: Map<OrgNo, Arc<Organization>>,
    employees: Map<Id, Arc<Employee>>,
    teams: Map<Id, Arc<Team>>,
    system_users: Map<Id, Arc<SystemUser>>,
    /// System user ids by owner, sorted: the candidates for ResolveSystemUser.
    by_owner: Map<OrgNo, Arc<[Id]>>,
    /// Entities in Cedar's own JSON format for types beyond Vakt's own, and the
    /// schema's actions, by uid.
    extra: Arc<HashMap<EntityUID, ast::Entity>>,
}

impl Default for World {
    fn default() -> Self {
        Self {
            orgs: map(),
            employees: map(),
            teams: map(),
            system_users: map(),
            by_owner: map(),
            extra: Arc::default(),
        }
    }
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World {:?}", self.counts())
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
    /// An entity given in Cedar's own format, or an action.
    pub fn extra_entity(&self, uid: &EntityUID) -> Option<&ast::Entity> {
        self.extra.get(uid)
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
        self.extra.values()
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
