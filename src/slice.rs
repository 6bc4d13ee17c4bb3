//! The Cedar view of the world: each record's entity parts, computed once at load,
//! and the per-request slice and context assembled from them.
//!
//! Every record's entity is built once at load and shared. Hierarchies are closed
//! by construction (a team has no parents; an operational unit's parent has none),
//! so no transitive-closure pass is needed.

use crate::model::{self, types};
use crate::world::{ClientLink, Employee, LinkAccess, Organization, SystemUser, World};
use cedar_policy_core::ast::{self, EntityUID, PartialValue, Value};
use cedar_policy_core::entities::{Entities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use smol_str::SmolStr;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// A record's Cedar entity, built once at load and shared by every request.
pub type CedarEntity = Arc<ast::Entity>;

fn entity(
    uid: EntityUID,
    attrs: Vec<(SmolStr, PartialValue)>,
    parents: HashSet<EntityUID>,
) -> CedarEntity {
    Arc::new(ast::Entity::new_with_attr_partial_value(
        uid,
        attrs,
        HashSet::new(),
        parents,
        [],
    ))
}

/// A placeholder until the record's entity is built.
pub fn placeholder() -> CedarEntity {
    entity(euid(&types().organization, ""), Vec::new(), HashSet::new())
}

/// A core entity uid, built through the API from a type and a raw id.
pub fn euid(ty: &cedar_policy::EntityTypeName, id: &str) -> EntityUID {
    model::uid(ty, id).into()
}

pub fn team_uid(id: &str) -> EntityUID {
    euid(&types().team, id)
}

fn org_uid(n: &str) -> EntityUID {
    euid(&types().organization, n)
}

fn attr(name: &str, v: impl Into<Value>) -> (SmolStr, PartialValue) {
    (SmolStr::new(name), PartialValue::Value(v.into()))
}

fn uid_set<'a>(uids: impl IntoIterator<Item = &'a EntityUID>) -> Value {
    Value::set(uids.into_iter().cloned().map(Value::from), None)
}

pub fn organization_entity(org_number: &str, name: &str, parent: Option<&str>) -> CedarEntity {
    let mut attrs = vec![attr("orgNumber", org_number), attr("name", name)];
    attrs.extend(parent.map(|p| attr("parent", org_uid(p))));
    entity(
        org_uid(org_number),
        attrs,
        parent.map(org_uid).into_iter().collect(),
    )
}

pub fn team_entity(id: &str, organization: &str, name: &str) -> CedarEntity {
    entity(
        team_uid(id),
        vec![
            attr("organization", org_uid(organization)),
            attr("name", name),
        ],
        HashSet::new(),
    )
}

pub fn employee_entity(e: &Employee) -> CedarEntity {
    let audits: Vec<EntityUID> = e.audit_clients.iter().map(|o| org_uid(o)).collect();
    entity(
        euid(&types().employee, &e.id),
        vec![
            attr("organization", org_uid(&e.organization)),
            attr("name", e.name.as_str()),
            attr("active", e.active),
            attr("kind", e.kind.as_str()),
            attr("teams", uid_set(&e.team_uids)),
            attr("auditClients", uid_set(&audits)),
        ],
        e.team_uids.iter().cloned().collect(),
    )
}

pub fn system_user_entity(su: &SystemUser) -> CedarEntity {
    let t = types();
    let packages: Vec<EntityUID> = su
        .access_packages
        .iter()
        .map(|p| euid(&t.access_package, p))
        .collect();
    entity(
        euid(&t.system_user, &su.id),
        vec![
            attr("owner", org_uid(&su.owner)),
            attr("userType", su.user_type.as_str()),
            attr("isDeleted", su.is_deleted),
            attr("selfDelegated", su.self_delegated),
            attr("externalRef", su.external_ref.as_str()),
            attr("systemId", su.system_id.as_str()),
            attr("integrationTitle", su.integration_title.as_str()),
            attr("accessPackages", uid_set(&packages)),
        ],
        su.granted_to.iter().map(|id| team_uid(id)).collect(),
    )
}

/// The roles and packages of a client link, with their Cedar sets.
pub fn link_access(
    roles: Vec<String>,
    packages: Vec<String>,
    auditor_packages: Vec<String>,
) -> LinkAccess {
    let t = types();
    let uids = |ps: &[String]| -> Vec<EntityUID> {
        ps.iter().map(|p| euid(&t.access_package, p)).collect()
    };
    LinkAccess {
        cedar_roles: Value::set(roles.iter().map(|r| Value::from(r.as_str())), None),
        cedar_packages: uid_set(&uids(&packages)),
        cedar_auditor_packages: uid_set(&uids(&auditor_packages)),
        roles,
        packages,
    }
}

/// The `ClientLink` record for one link.
fn link_value(link: &ClientLink) -> Value {
    Value::record(
        [
            ("client", Value::from(org_uid(&link.org_number))),
            ("roles", link.access.cedar_roles.clone()),
            ("packages", link.access.cedar_packages.clone()),
            (
                "auditorPackages",
                link.access.cedar_auditor_packages.clone(),
            ),
        ],
        None,
    )
}

/// What one request is about, as found in the world.
pub struct Subject<'a> {
    pub employee: Option<&'a Employee>,
    pub system_user: Option<&'a SystemUser>,
    pub client: &'a str,
    pub client_org: Option<&'a Organization>,
    /// The client's parent, when the client is an operational unit.
    pub parent: Option<&'a str>,
}

impl<'a> Subject<'a> {
    pub fn find(w: &'a World, employee: &str, system_user: &str, client: &'a str) -> Self {
        Self::with(w, w.employee(employee), w.system_user(system_user), client)
    }

    pub fn with(
        w: &'a World,
        employee: Option<&'a Employee>,
        su: Option<&'a SystemUser>,
        client: &'a str,
    ) -> Self {
        let client_org = w.organization(client);
        Self {
            employee,
            system_user: su,
            client,
            client_org,
            parent: client_org.and_then(|c| c.parent.as_deref()),
        }
    }

    pub fn client_uid(&self) -> EntityUID {
        self.client_org
            .map_or_else(|| org_uid(self.client), |c| c.cedar.uid().clone())
    }
}

/// The entities one request can reach: the employee, the system user, the client,
/// its parent and the system user's owner, plus any extra Cedar entities. Each is
/// shared, not copied. Vakt evaluates against the world's whole store instead
/// ([`World::entities`]); this per-request slice is what `cedar_policy::Authorizer`
/// is given in `decide_reference`.
pub fn entities(w: &World, s: &Subject<'_>) -> Result<Entities, String> {
    let mut list: Vec<CedarEntity> = Vec::with_capacity(5 + w.extra_entities().len());
    list.extend(s.employee.map(|e| e.cedar.clone()));
    list.extend(s.system_user.map(|su| su.cedar.clone()));
    list.extend(s.client_org.map(|o| o.cedar.clone()));
    list.extend(
        s.parent
            .and_then(|p| w.organization(p))
            .map(|o| o.cedar.clone()),
    );
    if let Some(owner) = s.system_user.and_then(|su| w.organization(&su.owner)) {
        if Some(owner.org_number.as_str()) != Some(s.client)
            && Some(owner.org_number.as_str()) != s.parent
        {
            list.push(owner.cedar.clone());
        }
    }
    list.extend(w.extra_entities().iter().cloned());
    list.extend(
        s.employee
            .into_iter()
            .flat_map(|e| e.teams.iter())
            .filter_map(|t| w.team(t))
            .map(|t| t.cedar.clone()),
    );
    Entities::new()
        .add_entities(
            list,
            None::<&NoEntitiesSchema>,
            TCComputation::AssumeAlreadyComputed,
            Extensions::none(),
        )
        .map_err(|e| e.to_string())
}

/// The context: what Vakt derives for this request, then the caller's attributes.
pub fn context(
    w: &World,
    s: &Subject<'_>,
    access_package: &EntityUID,
    caller: &[(SmolStr, Value)],
) -> BTreeMap<SmolStr, Value> {
    // Team by team: only the employee's own teams whose scope covers the client.
    let portfolio = s
        .employee
        .into_iter()
        .flat_map(|e| e.teams.iter().zip(&e.team_uids))
        .filter(|(id, _)| {
            w.team(id)
                .is_some_and(|team| team.covers(s.client, s.parent))
        })
        .map(|(_, u)| u);
    let mut ctx = BTreeMap::new();
    ctx.insert(
        SmolStr::new_static(model::CTX_CLIENT),
        Value::from(s.client_uid()),
    );
    ctx.insert(
        SmolStr::new_static(model::CTX_ACCESS_PACKAGE),
        Value::from(access_package.clone()),
    );
    ctx.insert(
        SmolStr::new_static(model::CTX_PORTFOLIO_TEAMS),
        uid_set(portfolio),
    );
    if let Some(link) = s.system_user.and_then(|su| su.link_for(s.client, s.parent)) {
        ctx.insert(
            SmolStr::new_static(model::CTX_CLIENT_LINK),
            link_value(link),
        );
    }
    for (k, v) in caller {
        ctx.insert(k.clone(), v.clone());
    }
    ctx
}
