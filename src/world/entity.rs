//! The world's records as Cedar entities: read in place by the evaluator
//! ([`EntityData`]), or written out in full as Cedar holds them (for Cedar's own
//! authorizer in tests, error messages, and counterexamples); and entities given
//! in Cedar's own JSON format, checked against the schema.
//!
//! The attribute names and types here are those `schema/vakt.cedarschema` declares
//! for Vakt's own entity types.

use super::records::{Employee, OrgNo, Organization, SystemUser, Team};
use crate::decision::engine::value::{sorted_contains, Elems, Ent, EntityData, IdList, Val};
use crate::rules::model::{core_types, core_uid};
use cedar_policy_core::ast::{self, EntityType, EntityUID, PartialValue, Value};
use smol_str::SmolStr;
use std::collections::{HashMap, HashSet};

/// A reference to the organisation `n`, made without allocating.
fn org_ref(n: OrgNo) -> Val<'static> {
    match Ent::inline(&core_types().organization, &n.digits()) {
        Some(e) => Val::Ent(e),
        None => Val::V(crate::decision::engine::value::entity_value(
            &core_types().organization,
            &n.digits(),
        )),
    }
}

fn org_uid(n: OrgNo) -> EntityUID {
    core_uid(&core_types().organization, &n.digits())
}

/// Whether `ty`/`id` names the organisation `n`.
fn is_org(ty: &EntityType, id: &str, n: OrgNo) -> bool {
    crate::decision::engine::value::same_type(ty, &core_types().organization)
        && OrgNo::from_digits(id) == Some(n)
}

/// Writes an entity out in full: every attribute the evaluator can read, and its
/// parents (Vakt's hierarchies are one level deep, so they are all its ancestors).
fn cedar_entity(
    uid: &EntityUID,
    data: &dyn EntityData,
    attrs: &[&str],
    parents: impl IntoIterator<Item = EntityUID>,
) -> ast::Entity {
    let attrs: Vec<(SmolStr, PartialValue)> = attrs
        .iter()
        .filter_map(|a| {
            data.attr(a)
                .map(|v| (SmolStr::new(a), PartialValue::Value(v.to_value())))
        })
        .collect();
    ast::Entity::new_with_attr_partial_value(
        uid.clone(),
        attrs,
        HashSet::new(),
        parents.into_iter().collect(),
        [],
    )
}

impl EntityData for Organization {
    fn attr(&self, name: &str) -> Option<Val<'_>> {
        Some(match name {
            "orgNumber" => Val::V(Value::from(&*self.org_number.digits())),
            "name" => Val::V(Value::from(&*self.name)),
            "parent" => org_ref(self.parent()?),
            _ => return None,
        })
    }
    fn has_attr(&self, name: &str) -> bool {
        match name {
            "orgNumber" | "name" => true,
            "parent" => self.parent().is_some(),
            _ => false,
        }
    }
    fn is_descendant_of(&self, ty: &EntityType, id: &str) -> bool {
        self.parent().is_some_and(|p| is_org(ty, id, p))
    }
    fn in_any(&self, ty: &EntityType, ids: &dyn IdList) -> bool {
        ty == &core_types().organization && self.parent().is_some_and(|p| ids.contains(&p.digits()))
    }
    fn to_cedar(&self, uid: &EntityUID) -> ast::Entity {
        cedar_entity(
            uid,
            self,
            &["orgNumber", "name", "parent"],
            self.parent().map(org_uid),
        )
    }
}

impl EntityData for Team {
    fn attr(&self, name: &str) -> Option<Val<'_>> {
        Some(match name {
            "organization" => org_ref(self.organization),
            "name" => Val::V(Value::from(&*self.name)),
            _ => return None,
        })
    }
    fn has_attr(&self, name: &str) -> bool {
        matches!(name, "organization" | "name")
    }
    fn is_descendant_of(&self, _: &EntityType, _: &str) -> bool {
        false
    }
    fn in_any(&self, _: &EntityType, _: &dyn IdList) -> bool {
        false
    }
    fn to_cedar(&self, uid: &EntityUID) -> ast::Entity {
        cedar_entity(uid, self, &["organization", "name"], [])
    }
}

/// Whether `ty`/`id` is a team in `teams`.
fn is_team_in(teams: &[SmolStr], ty: &EntityType, id: &str) -> bool {
    crate::decision::engine::value::same_type(ty, &core_types().team) && sorted_contains(teams, id)
}

/// Whether the sorted `teams` meet the team ids `ids`.
fn teams_meet(teams: &[SmolStr], ty: &EntityType, ids: &dyn IdList) -> bool {
    crate::decision::engine::value::same_type(ty, &core_types().team)
        && teams.iter().any(|t| ids.contains(t))
}

impl EntityData for Employee {
    fn attr(&self, name: &str) -> Option<Val<'_>> {
        let t = core_types();
        Some(match name {
            "organization" => org_ref(self.organization),
            "name" => Val::V(Value::from(&*self.name)),
            "active" => Val::V(Value::from(self.active)),
            "kind" => Val::V(Value::from(self.kind.as_str())),
            "teams" => Val::Set(Elems::Entities(&t.team, &self.teams)),
            "auditClients" => Val::Set(Elems::Entities(&t.organization, &self.audit_clients)),
            _ => return None,
        })
    }
    fn has_attr(&self, name: &str) -> bool {
        matches!(
            name,
            "organization" | "name" | "active" | "kind" | "teams" | "auditClients"
        )
    }
    fn is_descendant_of(&self, ty: &EntityType, id: &str) -> bool {
        is_team_in(&self.teams, ty, id)
    }
    fn in_any(&self, ty: &EntityType, ids: &dyn IdList) -> bool {
        teams_meet(&self.teams, ty, ids)
    }
    fn to_cedar(&self, uid: &EntityUID) -> ast::Entity {
        let t = core_types();
        cedar_entity(
            uid,
            self,
            &[
                "organization",
                "name",
                "active",
                "kind",
                "teams",
                "auditClients",
            ],
            self.teams.iter().map(|id| core_uid(&t.team, id)),
        )
    }
}

impl EntityData for SystemUser {
    fn attr(&self, name: &str) -> Option<Val<'_>> {
        let t = core_types();
        Some(match name {
            "owner" => org_ref(self.owner),
            "userType" => Val::V(Value::from(self.user_type.as_str())),
            "isDeleted" => Val::V(Value::from(self.is_deleted)),
            "selfDelegated" => Val::V(Value::from(self.self_delegated)),
            "externalRef" => Val::V(Value::from(&*self.external_ref)),
            "systemId" => Val::V(Value::from(&*self.system_id)),
            "integrationTitle" => Val::V(Value::from(&*self.integration_title)),
            "accessPackages" => Val::Set(Elems::Entities(&t.access_package, &self.access_packages)),
            _ => return None,
        })
    }
    fn has_attr(&self, name: &str) -> bool {
        matches!(
            name,
            "owner"
                | "userType"
                | "isDeleted"
                | "selfDelegated"
                | "externalRef"
                | "systemId"
                | "integrationTitle"
                | "accessPackages"
        )
    }
    fn is_descendant_of(&self, ty: &EntityType, id: &str) -> bool {
        is_team_in(&self.granted_to, ty, id)
    }
    fn in_any(&self, ty: &EntityType, ids: &dyn IdList) -> bool {
        teams_meet(&self.granted_to, ty, ids)
    }
    fn to_cedar(&self, uid: &EntityUID) -> ast::Entity {
        let t = core_types();
        cedar_entity(
            uid,
            self,
            &[
                "owner",
                "userType",
                "isDeleted",
                "selfDelegated",
                "externalRef",
                "systemId",
                "integrationTitle",
                "accessPackages",
            ],
            self.granted_to.iter().map(|id| core_uid(&t.team, id)),
        )
    }
}

/// Vakt's own entity types.
pub(super) enum Kind {
    Employee,
    SystemUser,
    Organization,
    Team,
    Other,
}

/// Which of Vakt's types `ty` is: by address first (references the world makes use
/// the shared statics), by name otherwise.
pub(super) fn kind(ty: &EntityType) -> Kind {
    let t = core_types();
    let by = |eq: &dyn Fn(&EntityType) -> bool| {
        if eq(&t.employee) {
            Some(Kind::Employee)
        } else if eq(&t.system_user) {
            Some(Kind::SystemUser)
        } else if eq(&t.organization) {
            Some(Kind::Organization)
        } else if eq(&t.team) {
            Some(Kind::Team)
        } else {
            None
        }
    };
    by(&|c| std::ptr::eq(ty, c))
        .or_else(|| by(&|c| ty == c))
        .unwrap_or(Kind::Other)
}

/// An entity given in Cedar's own format (or a schema action), with its place in
/// the whole world's hierarchy.
///
/// Cedar computes ancestors over one entity store; Vakt reads each file into its own,
/// so an entity's ancestors as loaded stop at its file. The closure over every file
/// is worked out once per load of these entities (they change only with a whole
/// rebuild). Ancestors that are Vakt's own records are kept apart: their ancestors
/// (a unit's parent, an employee's teams) are read from the records when a policy
/// asks, so a live change to a record is seen at once without recomputing anything.
pub(crate) struct CedarEntity {
    /// As loaded: its parents, and its ancestors within its file as Cedar computed
    /// them. This is what is exported and compared.
    pub(super) entity: ast::Entity,
    /// Ancestors reached through entities of other files, which `entity` lacks.
    beyond_file: HashSet<EntityUID>,
    /// Its ancestors that are Vakt's own records, sorted.
    records: Box<[EntityUID]>,
}

impl CedarEntity {
    /// An entity whose ancestors are all its own (a schema action).
    fn alone(entity: ast::Entity) -> Self {
        Self {
            entity,
            beyond_file: HashSet::new(),
            records: Box::default(),
        }
    }

    /// The entity with every ancestor reached through entities in Cedar's format.
    fn closed(&self) -> ast::Entity {
        let mut e = self.entity.clone();
        for a in &self.beyond_file {
            e.add_indirect_ancestor(a.clone());
        }
        e
    }
}

impl EntityData for CedarEntity {
    fn attr(&self, name: &str) -> Option<Val<'_>> {
        self.entity.attr(name)
    }
    fn has_attr(&self, name: &str) -> bool {
        EntityData::has_attr(&self.entity, name)
    }
    fn is_descendant_of(&self, ty: &EntityType, id: &str) -> bool {
        let uid = EntityUID::from_components(ty.clone(), ast::Eid::new(id), None);
        self.entity.is_descendant_of(&uid) || self.beyond_file.contains(&uid)
    }
    fn records_above(&self) -> &[EntityUID] {
        &self.records
    }
    fn tag(&self, name: &str) -> Option<Value> {
        EntityData::tag(&self.entity, name)
    }
    fn to_cedar(&self, _uid: &EntityUID) -> ast::Entity {
        self.closed()
    }
}

/// Whether `ty` is one of the types of Vakt's own records (whose ancestors the
/// records give).
fn is_record_type(ty: &EntityType) -> bool {
    !matches!(kind(ty), Kind::Other)
}

/// Entities in Cedar's own JSON format, each value a list tagged with where it came
/// from, checked against the schema, for types beyond Vakt's own; and the schema's
/// actions, so `action in ...` sees groups. Every problem, tagged alike.
///
/// Each entity's ancestors are closed over every list, as Cedar closes them over one
/// entity store; an entity given twice, differently, or a cycle across lists is a
/// problem, as Cedar refuses both in one store.
pub(super) fn cedar_entities<T: Copy>(
    json: Vec<(T, serde_json::Value)>,
    schema: &cedar_policy::Schema,
) -> (HashMap<EntityUID, CedarEntity>, Vec<(T, String)>) {
    let t = crate::rules::model::types();
    let mut loaded: HashMap<EntityUID, (T, ast::Entity)> = HashMap::new();
    let mut problems = Vec::new();
    for (from, value) in json {
        match cedar_policy::Entities::from_json_value(value, Some(schema)) {
            Err(e) => problems.push((from, format!("Cedar entities: {e}"))),
            Ok(entities) => {
                for e in entities.iter() {
                    let u = e.uid();
                    if t.is_core(u.type_name()) {
                        problems.push((
                            from,
                            format!("Cedar entity {u}: {} records belong in the Vakt data format (organizations, systemUsers, teams, employees)", u.type_name()),
                        ));
                    } else if u.type_name() != &t.action {
                        let core: &ast::Entity = e.as_ref();
                        match loaded.get(core.uid()) {
                            // The same entity in two lists is harmless; two different
                            // ones would leave its parents to the order of the files.
                            Some((_, other)) if !other.deep_eq(core) => problems.push((
                                from,
                                format!("Cedar entity {u} is given twice, differently (in another file too)"),
                            )),
                            Some(_) => {}
                            None => {
                                loaded.insert(core.uid().clone(), (from, core.clone()));
                            }
                        }
                    }
                }
            }
        }
    }
    // Cedar's own closure, over every list at once.
    let mut closed: HashMap<EntityUID, ast::Entity> = loaded
        .iter()
        .map(|(u, (_, e))| (u.clone(), e.clone()))
        .collect();
    if let Err(e) = cedar_policy_core::transitive_closure::compute_tc(&mut closed, true) {
        use cedar_policy_core::transitive_closure::TcError;
        let (message, at) = match &e {
            TcError::HasCycle(c) => (
                format!("Cedar entity {} is its own ancestor: its parents form a cycle across the Cedar entity files", c.vertex_with_loop()),
                loaded.get(c.vertex_with_loop()).map(|(f, _)| *f),
            ),
            other => (format!("Cedar entities: {other}"), None),
        };
        if let Some(from) = at.or_else(|| loaded.values().next().map(|(f, _)| *f)) {
            problems.push((from, message));
        }
    }
    let mut extra: HashMap<EntityUID, CedarEntity> = HashMap::with_capacity(loaded.len());
    for (uid, (_, entity)) in loaded {
        let all = closed.remove(&uid);
        let beyond_file: HashSet<EntityUID> = all
            .iter()
            .flat_map(|c| c.ancestors())
            .filter(|a| !entity.is_descendant_of(a))
            .cloned()
            .collect();
        let mut records: Vec<EntityUID> = all
            .iter()
            .flat_map(|c| c.ancestors())
            .filter(|a| is_record_type(a.entity_type()))
            .cloned()
            .collect();
        records.sort();
        records.dedup();
        extra.insert(
            uid,
            CedarEntity {
                entity,
                beyond_file,
                records: records.into_boxed_slice(),
            },
        );
    }
    if let Ok(actions) = schema.action_entities() {
        for a in actions.iter() {
            let core: &ast::Entity = a.as_ref();
            extra.insert(core.uid().clone(), CedarEntity::alone(core.clone()));
        }
    }
    (extra, problems)
}
