//! The world's records as Cedar entities: read in place by the evaluator
//! ([`EntityData`]), or written out in full as Cedar holds them (for Cedar's own
//! authorizer in tests, error messages, and counterexamples); and entities given
//! in Cedar's own JSON format, checked against the schema.
//!
//! The attribute names and types here are those `schema/vakt.cedarschema` declares
//! for Vakt's own entity types.

use super::records::{Employee, OrgNo, Organization, SystemUser, Team};
use super::state::World;
use crate::engine::value::{sorted_contains, Elems, Ent, EntityData, IdList, Store, Val};
use crate::model::{core_types, core_uid};
use cedar_policy_core::ast::{self, EntityType, EntityUID, PartialValue, Value};
use smol_str::SmolStr;
use std::collections::HashSet;

/// A reference to the organisation `n`, made without allocating.
fn org_ref(n: OrgNo) -> Val<'static> {
    match Ent::inline(&core_types().organization, &n.digits()) {
        Some(e) => Val::Ent(e),
        None => Val::V(crate::engine::value::entity_value(
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
    crate::engine::value::same_type(ty, &core_types().organization)
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
    crate::engine::value::same_type(ty, &core_types().team) && sorted_contains(teams, id)
}

/// Whether the sorted `teams` meet the team ids `ids`.
fn teams_meet(teams: &[SmolStr], ty: &EntityType, ids: &dyn IdList) -> bool {
    crate::engine::value::same_type(ty, &core_types().team) && teams.iter().any(|t| ids.contains(t))
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
enum Kind {
    Employee,
    SystemUser,
    Organization,
    Team,
    Other,
}

/// Which of Vakt's types `ty` is: by address first (references the world makes use
/// the shared statics), by name otherwise.
fn kind(ty: &EntityType) -> Kind {
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
                self.extra_entity(&core_uid(ty, id))
                    .map(|e| e as &dyn EntityData)
            }
        }
    }
}

/// Entities in Cedar's own JSON format, each value a list tagged with where it came
/// from, checked against the schema, for types beyond Vakt's own; and the schema's
/// actions, so `action in ...` sees groups. Every problem, tagged alike.
pub(super) fn cedar_entities<T: Copy>(
    json: Vec<(T, serde_json::Value)>,
    schema: &cedar_policy::Schema,
) -> (
    std::collections::HashMap<ast::EntityUID, ast::Entity>,
    Vec<(T, String)>,
) {
    let t = crate::model::types();
    let mut extra: std::collections::HashMap<ast::EntityUID, ast::Entity> =
        std::collections::HashMap::new();
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
                        extra.insert(core.uid().clone(), core.clone());
                    }
                }
            }
        }
    }
    if let Ok(actions) = schema.action_entities() {
        for a in actions.iter() {
            let core: &ast::Entity = a.as_ref();
            extra.insert(core.uid().clone(), core.clone());
        }
    }
    (extra, problems)
}
