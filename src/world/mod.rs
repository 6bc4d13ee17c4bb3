//! The world Vakt decides over: organisations, system users with their client links,
//! teams and employees, held as plain indexed records.
//!
//! Vakt does not keep a Cedar `Entities` for the whole world: building one costs
//! seconds and gigabytes at a million entities, and every change would recompute the
//! transitive closure. Instead each request looks up the handful of records it needs
//! here (hash lookups, so the cost does not grow with the world) and `decide` builds
//! a small entity slice from them.

mod load;

pub use load::{
    build_world, load_dir, AccessRecord, ClientRecord, ClientsRecord, EmployeeRecord,
    OrganizationRecord, PackageRef, SourceFile, SystemUserRecord, TeamRecord, WorldBuilder,
};

use crate::slice::CedarEntity;
use cedar_policy_core::ast;
use cedar_policy_core::entities::{Entities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use smol_str::SmolStr;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One organisation from the Entity Register.
#[derive(Debug, Clone)]
pub struct Organization {
    pub org_number: String,
    pub name: String,
    /// Set only for operational units (underenhet, BEDR/AAFY).
    pub parent: Option<String>,
    pub cedar: CedarEntity,
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

#[derive(Debug, Clone)]
pub struct Employee {
    pub id: String,
    pub organization: String,
    pub name: String,
    pub active: bool,
    pub kind: EmployeeKind,
    pub teams: Vec<String>,
    pub audit_clients: HashSet<String>,
    pub cedar: CedarEntity,
    /// The uid of each team in `teams`, in the same order.
    pub team_uids: Vec<ast::EntityUID>,
}

/// Which clients a team may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientScope {
    All,
    /// Listed org numbers; a listed parent covers its operational units.
    Listed(HashSet<String>),
}

#[derive(Debug, Clone)]
pub struct Team {
    pub id: String,
    pub organization: String,
    pub name: String,
    pub system_users: HashSet<String>,
    pub clients: ClientScope,
    pub cedar: CedarEntity,
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

/// A client linked to an agent system user by the customer's client administrator.
#[derive(Debug, Clone)]
pub struct ClientLink {
    pub client_id: Box<str>,
    pub org_number: Box<str>,
    /// What the link rests on; shared by every link with the same roles and packages.
    pub access: Arc<LinkAccess>,
    /// False once the link is removed.
    pub active: bool,
}

/// The relationship roles and packages of a client link. Links repeat a handful of
/// combinations, so each distinct one is held once.
#[derive(Debug)]
pub struct LinkAccess {
    /// Relationship URNs the link rests on.
    pub roles: Vec<String>,
    pub packages: Vec<String>,
    /// The same as Cedar sets, for `context.clientLink`.
    pub cedar_roles: ast::Value,
    pub cedar_packages: ast::Value,
    /// The packages delegated through the auditor role, for rule 8.
    pub cedar_auditor_packages: ast::Value,
}

#[derive(Debug, Clone)]
pub struct SystemUser {
    pub id: String,
    pub integration_title: String,
    pub system_id: String,
    pub owner: String,
    pub user_type: UserType,
    pub access_packages: Vec<String>,
    pub external_ref: String,
    pub is_deleted: bool,
    pub self_delegated: bool,
    /// Client links by client org number.
    pub links: HashMap<SmolStr, ClientLink>,
    /// Teams that are granted this system user, sorted.
    pub granted_to: Vec<String>,
    pub cedar: CedarEntity,
}

impl SystemUser {
    /// The active link through which this system user reaches `client`: the client's
    /// own link, or else its parent's (an operational unit inherits from its parent).
    pub fn link_for(&self, client: &str, parent: Option<&str>) -> Option<&ClientLink> {
        let active = |org: &str| self.links.get(org).filter(|l| l.active);
        active(client).or_else(|| parent.and_then(active))
    }
}

impl Team {
    /// Whether the team's client scope covers `client` (whose parent is `parent`).
    pub fn covers(&self, client: &str, parent: Option<&str>) -> bool {
        match &self.clients {
            ClientScope::All => true,
            ClientScope::Listed(orgs) => {
                orgs.contains(client) || parent.is_some_and(|p| orgs.contains(p))
            }
        }
    }
}

/// The whole world, immutable once loaded. Keys are `SmolStr`: ids of up to 23
/// bytes sit inline in the table, so a lookup does not chase a pointer to compare keys.
#[derive(Debug, Default)]
pub struct World {
    orgs: HashMap<SmolStr, Organization>,
    employees: HashMap<SmolStr, Employee>,
    teams: HashMap<SmolStr, Team>,
    system_users: HashMap<SmolStr, SystemUser>,
    /// System user ids by owner org number, sorted: the candidates for ResolveSystemUser.
    system_users_by_owner: HashMap<SmolStr, Vec<String>>,
    /// Entities given in Cedar's own JSON format for types beyond Vakt's core ones,
    /// and the schema's action entities.
    extra_entities: Vec<CedarEntity>,
    /// Every record's entity, indexed for Cedar. The entities are the records' own
    /// (shared, not copied) and hierarchies are closed by construction, so indexing
    /// is one hash insert per entity and no transitive-closure pass.
    entities: Entities,
}

impl World {
    /// Indexes every entity for evaluation; called once the world is complete.
    fn index_entities(&mut self) -> Result<(), String> {
        let all: Vec<CedarEntity> = self
            .orgs
            .values()
            .map(|o| o.cedar.clone())
            .chain(self.employees.values().map(|e| e.cedar.clone()))
            .chain(self.system_users.values().map(|s| s.cedar.clone()))
            .chain(self.teams.values().map(|t| t.cedar.clone()))
            .chain(self.extra_entities.iter().cloned())
            .collect();
        self.entities = Entities::new()
            .add_entities(
                all,
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::none(),
            )
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The Cedar entity store every decision evaluates against.
    pub fn entities(&self) -> &Entities {
        &self.entities
    }

    pub fn organization(&self, org_number: &str) -> Option<&Organization> {
        self.orgs.get(org_number)
    }
    pub fn employee(&self, id: &str) -> Option<&Employee> {
        self.employees.get(id)
    }
    pub fn team(&self, id: &str) -> Option<&Team> {
        self.teams.get(id)
    }
    pub fn system_user(&self, id: &str) -> Option<&SystemUser> {
        self.system_users.get(id)
    }
    /// The system users an organisation owns, by id.
    pub fn system_users_owned_by(&self, org_number: &str) -> &[String] {
        self.system_users_by_owner
            .get(org_number)
            .map_or(&[], Vec::as_slice)
    }
    pub fn extra_entities(&self) -> &[CedarEntity] {
        &self.extra_entities
    }
    /// Parent org number of an operational unit.
    pub fn parent_of(&self, org_number: &str) -> Option<&str> {
        self.orgs.get(org_number)?.parent.as_deref()
    }

    /// Record counts, for the startup log and `vakt validate`.
    pub fn counts(&self) -> WorldCounts {
        WorldCounts {
            organizations: self.orgs.len(),
            system_users: self.system_users.len(),
            client_links: self.system_users.values().map(|s| s.links.len()).sum(),
            teams: self.teams.len(),
            employees: self.employees.len(),
            extra_entities: self.extra_entities.len(),
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
    /// Records that become Cedar entities (client links are attributes, not entities).
    pub fn entities(&self) -> usize {
        self.organizations + self.system_users + self.teams + self.employees + self.extra_entities
    }
}
