//! Policy evaluation: each policy's condition prepared once per snapshot and
//! evaluated by Vakt's own interpreter over the world's records.
//!
//! `cedar_policy::Authorizer` rebuilds every policy's condition on every request
//! (about a microsecond per policy), evaluates every policy whatever the action, and
//! needs a Cedar `Entities` holding the whole world (seconds and gigabytes to build
//! at a million entities, and a full rebuild for each change). Vakt prepares each
//! condition once, keeps per action only the policies whose action scope can match,
//! and evaluates them over a [`Store`] that reads the world's records in place.
//!
//! # Layout
//!
//! - [`value`]: values during evaluation, and the [`Store`] / [`EntityData`] traits
//!   the world implements.
//! - `eval`: the interpreter; Cedar's own evaluator words its errors.
//!
//! The combination rule is Cedar's: allow iff some permit is satisfied and no
//! forbid is; a policy that errors is skipped and reported, and Vakt denies. A
//! differential test (tests/it/engine_equivalence.rs) checks every decision against
//! `cedar_policy::Authorizer` over the same world as a Cedar entity store.

mod eval;
pub mod value;

pub use eval::Request;
pub use value::{EntityData, IdList, Store, Val};

use cedar_policy::{PolicyId, PolicySet};
use cedar_policy_core::ast::{self, ActionConstraint, Effect, EntityUID, Expr, Literal, SlotEnv};
use std::collections::HashMap;
use std::sync::Arc;

struct CompiledPolicy {
    id: PolicyId,
    /// The id as written in reasons, worked out once.
    name: String,
    effect: Effect,
    /// The policy's condition without its action scope, which the per-action
    /// policy lists have already decided, and without scope parts that are always true.
    condition: Expr,
    /// Cedar's full condition, for an action Vakt has no policy list for.
    full_condition: Expr,
    env: SlotEnv,
    action: ActionConstraint,
}

fn is_true(e: &Expr) -> bool {
    matches!(e.expr_kind(), ast::ExprKind::Lit(Literal::Bool(true)))
}

/// `principal-scope && resource-scope && body`, leaving out the parts that are
/// literally `true`: each costs an interpreter step on every request.
fn compile_condition(p: &ast::Policy) -> Expr {
    let t = p.template();
    let parts: Vec<Expr> = [
        Some(t.principal_constraint().as_expr()),
        Some(t.resource_constraint().as_expr()),
        t.non_scope_constraints().cloned(),
    ]
    .into_iter()
    .flatten()
    .filter(|e| !is_true(e))
    .collect();
    parts
        .into_iter()
        .reduce(Expr::and)
        .unwrap_or_else(|| Expr::val(true))
}

/// The result of evaluating the policies for one request; each policy is named by
/// its index in the [`Engine`] ([`Engine::policy`]).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Satisfied permit policies.
    pub permits: Vec<usize>,
    /// Satisfied forbid policies.
    pub forbids: Vec<usize>,
    /// Policies that failed to evaluate, with the error.
    pub errors: Vec<(usize, String)>,
}

impl Outcome {
    /// Cedar's rule: allowed iff a permit holds and no forbid does. Vakt adds: any
    /// evaluation error denies, since the failed policy might have been a forbid.
    pub fn allowed(&self) -> bool {
        !self.permits.is_empty() && self.forbids.is_empty() && self.errors.is_empty()
    }
}

/// A policy set prepared for fast evaluation.
pub struct Engine {
    policies: Vec<CompiledPolicy>,
    /// Indices of the policies that can apply, per action (a handful of actions,
    /// so a list beats hashing a uid).
    by_action: Vec<(EntityUID, Arc<[usize]>)>,
    /// Each policy's index, by id.
    index: HashMap<PolicyId, usize>,
}

impl Engine {
    /// Compiles `set` for the given actions; `actions` gives each action with its
    /// action groups (its ancestors in the schema's action hierarchy).
    pub fn new(
        set: &PolicySet,
        actions: impl IntoIterator<Item = (EntityUID, Vec<EntityUID>)>,
    ) -> Self {
        let policies: Vec<CompiledPolicy> = set
            .policies()
            .map(|p| {
                // The same policy rebuilt from Cedar's JSON form has no source
                // locations; the interpreter would otherwise copy one onto every
                // intermediate value.
                let stripped = p.to_json().ok().and_then(|json| {
                    cedar_policy::Policy::from_json(Some(p.id().clone()), json).ok()
                });
                let core: &ast::Policy = stripped.as_ref().unwrap_or(p).as_ref();
                CompiledPolicy {
                    id: p.id().clone(),
                    name: p.id().to_string(),
                    effect: core.effect(),
                    condition: compile_condition(core),
                    full_condition: core.condition(),
                    env: core.env().clone(),
                    action: core.action_constraint().clone(),
                }
            })
            .collect();
        let by_action = actions
            .into_iter()
            .map(|(action, groups)| {
                let applies = |c: &ActionConstraint| match c {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(a) => **a == action,
                    ActionConstraint::In(list) => {
                        list.iter().any(|a| **a == action || groups.contains(a))
                    }
                    // Any constraint Vakt does not understand is evaluated, never skipped.
                    #[allow(unreachable_patterns)]
                    _ => true,
                };
                let idx: Vec<usize> = policies
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| applies(&p.action))
                    .map(|(i, _)| i)
                    .collect();
                (action, idx.into())
            })
            .collect();
        let index = policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        Self {
            policies,
            by_action,
            index,
        }
    }

    /// How many policies there are; each is named by an index below this.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// The id of policy `i` (as written in reasons) and Cedar's own id.
    pub fn policy(&self, i: usize) -> (&str, &PolicyId) {
        let p = &self.policies[i];
        (&p.name, &p.id)
    }

    /// The index of the policy with this id.
    pub fn index_of(&self, id: &PolicyId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Evaluates the policies that can apply to the request's action.
    pub fn evaluate(&self, req: &Request<'_>, store: &dyn Store) -> Outcome {
        let all: Vec<usize>;
        let listed = self
            .by_action
            .iter()
            .find(|(a, _)| {
                a.eid().as_ref() == req.action.id.as_str()
                    && value::same_type(a.entity_type(), req.action.ty)
            })
            .map(|(_, i)| i);
        let (indices, full): (&[usize], bool) = match listed {
            Some(i) => (i, false),
            None => {
                all = (0..self.policies.len()).collect();
                (&all, true)
            }
        };
        let eval = eval::Eval::new(req, store);
        let mut out = Outcome::default();
        for &i in indices {
            let p = &self.policies[i];
            let condition = if full {
                &p.full_condition
            } else {
                &p.condition
            };
            match eval.condition(condition, &p.env) {
                Ok(true) => match p.effect {
                    Effect::Permit => out.permits.push(i),
                    Effect::Forbid => out.forbids.push(i),
                },
                Ok(false) => {}
                Err(eval::Failed) => {
                    // The failing policy also needs the action scope the per-action
                    // list has already decided, when Cedar evaluates it again.
                    let message = eval::explain_failure(req, store, &p.full_condition, &p.env);
                    out.errors.push((i, message));
                }
            }
        }
        out
    }
}
