//! Cedar's own authorizer over the same world, as the yardstick Vakt's engine is
//! checked against (tests/it/engine_equivalence.rs) and measured against (the decide
//! benchmark). Nothing on the serving path uses it.
//!
//! The world's records are written out in full as a Cedar entity store, the request
//! context is the one Vakt derives, and `cedar_policy::Authorizer` decides; the
//! outcome is explained with the same reason templates as [`crate::decision`].

use crate::decision::engine::{EntityData, Outcome};
use crate::decision::{explain, with_context, Decision, Derived, Query, Subject};
use crate::rules::model::{self, core_types};
use crate::rules::snapshot::Snapshot;
use crate::world::World;
use cedar_policy::{Authorizer, PolicyId};
use cedar_policy_core::ast::{self, ValueKind};
use cedar_policy_core::entities::{Entities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;

/// Every record of a world as a Cedar entity, with the world's other entities.
pub fn cedar_entities(world: &World) -> Vec<ast::Entity> {
    let t = core_types();
    let mut out = Vec::new();
    for o in world.organizations() {
        out.push(o.to_cedar(&model::core_uid(&t.organization, &o.org_number.digits())));
    }
    for e in world.employees() {
        out.push(e.to_cedar(&model::core_uid(&t.employee, &e.id)));
    }
    for team in world.teams() {
        out.push(team.to_cedar(&model::core_uid(&t.team, &team.id)));
    }
    for su in world.system_users() {
        out.push(su.to_cedar(&model::core_uid(&t.system_user, &su.id)));
    }
    out.extend(world.extra_entities().cloned());
    out
}

/// Cedar's authorizer with the whole world as its entity store.
pub struct Reference {
    entities: cedar_policy::Entities,
    authorizer: Authorizer,
}

impl Reference {
    pub fn new(world: &World) -> Self {
        let entities = Entities::from_entities(
            cedar_entities(world),
            None::<&NoEntitiesSchema>,
            TCComputation::ComputeNow,
            Extensions::all_available(),
        )
        .expect("a world's entities form a valid Cedar entity store");
        Self {
            entities: cedar_policy::Entities::from(entities),
            authorizer: Authorizer::new(),
        }
    }

    /// Decides as `cedar_policy::Authorizer` does, explained like [`crate::decision::decide`].
    pub fn decide(&self, snap: &Snapshot, q: &Query) -> Decision {
        let subject = Subject::find(&snap.world, q);
        let derived = Derived::of(&snap.world, q, &subject, snap.link_packages);
        let context = with_context(q, &derived, |c| match c.to_value().value {
            ValueKind::Record(r) => ast::Context::Value(r),
            _ => ast::Context::empty(),
        });
        let t = core_types();
        let principal = model::core_uid(&t.employee, &q.employee);
        let resource = model::core_uid(&t.system_user, &q.system_user);
        let action = snap
            .actions
            .get(&q.action_id)
            .expect("a checked query names a known action");
        let request = cedar_policy::Request::new(
            principal.into(),
            action.uid.clone(),
            resource.into(),
            cedar_policy::Context::from(context),
            None,
        )
        .expect("without a schema a request always builds");
        let response = self
            .authorizer
            .is_authorized(&request, &snap.policies.set, &self.entities);
        let diag = response.diagnostics();
        let mut outcome = Outcome::default();
        let index = |id: &PolicyId| {
            snap.engine
                .index_of(id)
                .expect("Cedar names only policies of the set")
        };
        let reasons: Vec<usize> = diag.reason().map(index).collect();
        match response.decision() {
            cedar_policy::Decision::Allow => outcome.permits = reasons,
            cedar_policy::Decision::Deny => outcome.forbids = reasons,
        }
        outcome.errors = diag
            .errors()
            .map(|e| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(pe) = e;
                (index(pe.policy_id()), pe.inner().to_string())
            })
            .collect();
        // Cedar lists what it found in no particular order; Vakt's engine in policy
        // order. The explanation sorts reasons, so only the sets matter.
        let mut d = explain(snap, q, &subject, &q.system_user, outcome);
        d.reasons.extend(derived.note(q, &q.system_user));
        d
    }
}

/// What one engine made of one request: the decision, the policies that decide it
/// (satisfied forbids, or else satisfied permits) and those that failed, by id, with
/// each failure's message.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub satisfied: std::collections::BTreeSet<String>,
    pub errors: std::collections::BTreeMap<String, String>,
}

impl Reference {
    /// Evaluates `set` as it is (not validated against a schema, unlike a loaded
    /// policy set) for one request of any principal, action and resource, with both
    /// Vakt's engine over `world` and Cedar's authorizer over this store, which must
    /// have been made from the same world. For the generated comparison in
    /// tests/it/engine_equivalence.rs. Both verdicts follow Cedar's decision rule
    /// (Vakt's own rule also denies on any error; that is the same errors).
    #[doc(hidden)]
    pub fn evaluate_both(
        &self,
        world: &World,
        set: &cedar_policy::PolicySet,
        principal: &cedar_policy::EntityUid,
        action: &cedar_policy::EntityUid,
        resource: &cedar_policy::EntityUid,
        context: &cedar_policy::Context,
    ) -> (Verdict, Verdict) {
        // Each action with its groups, from the schema's actions in the world.
        let action_type: &ast::EntityType = model::types().action.as_ref();
        let actions: Vec<(ast::EntityUID, Vec<ast::EntityUID>)> = world
            .extra_entities()
            .filter(|e| e.uid().entity_type() == action_type)
            .map(|e| (e.uid().clone(), e.ancestors().cloned().collect()))
            .collect();
        let engine = crate::decision::engine::Engine::new(set, actions);
        let core = |u: &cedar_policy::EntityUid| -> ast::EntityUID { u.clone().into() };
        let (p, a, r) = (core(principal), core(action), core(resource));
        let ctx = match AsRef::<ast::Context>::as_ref(context) {
            ast::Context::Value(m) => {
                ast::Value::record(m.iter().map(|(k, v)| (k.clone(), v.clone())), None)
            }
            ast::Context::RestrictedResidual(_) => ast::Value::empty_record(None),
        };
        let req = crate::decision::engine::Request {
            principal: crate::decision::engine::value::Ent::new(p.entity_type(), p.eid().as_ref()),
            action: crate::decision::engine::value::Ent::new(a.entity_type(), a.eid().as_ref()),
            resource: crate::decision::engine::value::Ent::new(r.entity_type(), r.eid().as_ref()),
            context: crate::decision::engine::Val::V(ctx),
        };
        let out = engine.evaluate(&req, world);
        let name = |i: usize| engine.policy(i).0.to_owned();
        let vakt = Verdict {
            allowed: !out.permits.is_empty() && out.forbids.is_empty(),
            // The policies that decide, as Cedar names them: the satisfied forbids
            // when there are any, else the satisfied permits.
            satisfied: if out.forbids.is_empty() {
                &out.permits
            } else {
                &out.forbids
            }
            .iter()
            .map(|&i| name(i))
            .collect(),
            errors: out
                .errors
                .iter()
                .map(|(i, m)| (name(*i), m.clone()))
                .collect(),
        };
        let request = cedar_policy::Request::new(
            principal.clone(),
            action.clone(),
            resource.clone(),
            context.clone(),
            None,
        )
        .expect("without a schema a request always builds");
        let response = self.authorizer.is_authorized(&request, set, &self.entities);
        let diag = response.diagnostics();
        let cedar = Verdict {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            satisfied: diag.reason().map(ToString::to_string).collect(),
            errors: diag
                .errors()
                .map(|e| {
                    let cedar_policy::AuthorizationError::PolicyEvaluationError(pe) = e;
                    (pe.policy_id().to_string(), pe.inner().to_string())
                })
                .collect(),
        };
        (vakt, cedar)
    }
}
