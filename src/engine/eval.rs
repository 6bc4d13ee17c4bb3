//! The interpreter: Cedar's expression semantics over a [`Store`], with values read
//! in place where they can be.
//!
//! Every operator behaves as `cedar-policy-core`'s evaluator does (the arithmetic,
//! comparison and extension calls are Cedar's own functions). When a policy fails
//! to evaluate, the message comes from Cedar too: the failing policy is evaluated
//! again by Cedar's own evaluator over the entities this one touched, so an error
//! reads exactly as Cedar would word it.

use super::value::{self, Elems, EntityData, Store, Val};
use cedar_policy_core::ast::{
    self, BinaryOp, EntityUID, Expr, ExprKind, Literal, SlotEnv, UnaryOp, Value, ValueKind, Var,
};
use cedar_policy_core::entities::{Entities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::evaluator::{binary_arith, binary_relation, unary_app, Evaluator};
use cedar_policy_core::extensions::Extensions;
use smol_str::SmolStr;
use std::cell::RefCell;
use std::sync::Arc;

/// What a request gives the policies.
pub struct Request<'e> {
    pub principal: Arc<EntityUID>,
    pub action: Arc<EntityUID>,
    pub resource: Arc<EntityUID>,
    /// The context record.
    pub context: Val<'e>,
}

/// Evaluation failed; the message is worked out afterwards (see [`explain_failure`]).
#[derive(Debug)]
pub(super) struct Failed;

type R<T> = Result<T, Failed>;

/// One request's evaluator.
pub(super) struct Eval<'e, 'r> {
    req: &'r Request<'e>,
    store: &'e dyn Store,
    principal: Option<&'e dyn EntityData>,
    resource: Option<&'e dyn EntityData>,
    /// When set, every entity looked up is noted here (for the error replay).
    touched: Option<&'r RefCell<Vec<EntityUID>>>,
}

impl<'e, 'r> Eval<'e, 'r> {
    pub fn new(req: &'r Request<'e>, store: &'e dyn Store) -> Self {
        Self {
            req,
            store,
            principal: store.entity(&req.principal),
            resource: store.entity(&req.resource),
            touched: None,
        }
    }

    fn recording(
        req: &'r Request<'e>,
        store: &'e dyn Store,
        touched: &'r RefCell<Vec<EntityUID>>,
    ) -> Self {
        let mut e = Self::new(req, store);
        e.touched = Some(touched);
        e
    }

    /// The entity a uid names; the principal and resource are already at hand.
    fn entity(&self, uid: &Arc<EntityUID>) -> Option<&'e dyn EntityData> {
        if let Some(t) = self.touched {
            t.borrow_mut().push(uid.as_ref().clone());
        }
        if Arc::ptr_eq(uid, &self.req.principal) {
            return self.principal;
        }
        if Arc::ptr_eq(uid, &self.req.resource) {
            return self.resource;
        }
        self.store.entity(uid)
    }

    /// Evaluates a policy condition to a boolean.
    pub fn condition(&self, e: &Expr, slots: &SlotEnv) -> R<bool> {
        self.eval(e, slots)?.as_bool().ok_or(Failed)
    }

    fn bool_of(&self, e: &Expr, slots: &SlotEnv) -> R<bool> {
        self.eval(e, slots)?.as_bool().ok_or(Failed)
    }

    fn entity_of(v: &Val<'e>) -> R<Arc<EntityUID>> {
        match v {
            Val::V(v) => match v.value_kind() {
                ValueKind::Lit(Literal::EntityUID(u)) => Ok(u.clone()),
                _ => Err(Failed),
            },
            _ => Err(Failed),
        }
    }

    fn eval(&self, e: &Expr, slots: &SlotEnv) -> R<Val<'e>> {
        Ok(match e.expr_kind() {
            ExprKind::Lit(lit) => Val::V(Value::from(lit.clone())),
            ExprKind::Var(v) => match v {
                Var::Principal => {
                    Val::V(Value::from(Literal::EntityUID(self.req.principal.clone())))
                }
                Var::Action => Val::V(Value::from(Literal::EntityUID(self.req.action.clone()))),
                Var::Resource => Val::V(Value::from(Literal::EntityUID(self.req.resource.clone()))),
                Var::Context => self.req.context.clone(),
            },
            ExprKind::Slot(id) => Val::V(Value::from(slots.get(id).ok_or(Failed)?.clone())),
            ExprKind::If {
                test_expr,
                then_expr,
                else_expr,
            } => {
                if self.bool_of(test_expr, slots)? {
                    self.eval(then_expr, slots)?
                } else {
                    self.eval(else_expr, slots)?
                }
            }
            ExprKind::And { left, right } => {
                let v = self.bool_of(left, slots)? && self.bool_of(right, slots)?;
                Val::V(v.into())
            }
            ExprKind::Or { left, right } => {
                let v = self.bool_of(left, slots)? || self.bool_of(right, slots)?;
                Val::V(v.into())
            }
            ExprKind::UnaryApp { op, arg } => {
                let a = self.eval(arg, slots)?;
                match op {
                    UnaryOp::IsEmpty => Val::V(value::is_empty(&a).ok_or(Failed)?.into()),
                    _ => Val::V(unary_app(*op, a.to_value(), None).map_err(|_| Failed)?),
                }
            }
            ExprKind::BinaryApp { op, arg1, arg2 } => {
                let a = self.eval(arg1, slots)?;
                let b = self.eval(arg2, slots)?;
                self.binary(*op, a, b)?
            }
            ExprKind::ExtensionFunctionApp { fn_name, args } => {
                let vals = args
                    .iter()
                    .map(|a| self.eval(a, slots).map(|v| v.to_value()))
                    .collect::<R<Vec<_>>>()?;
                let f = Extensions::all_available()
                    .func(fn_name)
                    .map_err(|_| Failed)?;
                match f.call(&vals).map_err(|_| Failed)? {
                    ast::PartialValue::Value(v) => Val::V(v),
                    ast::PartialValue::Residual(_) => return Err(Failed),
                }
            }
            ExprKind::GetAttr { expr, attr } => {
                let target = self.eval(expr, slots)?;
                self.get_attr(&target, attr)?
            }
            ExprKind::HasAttr { expr, attr } => {
                let target = self.eval(expr, slots)?;
                Val::V(self.has_attr(&target, attr)?.into())
            }
            ExprKind::ExtHasAttr { expr, attrs } => {
                let mut current = self.eval(expr, slots)?;
                let mut it = attrs.iter().peekable();
                let mut has = true;
                while let Some(attr) = it.next() {
                    if !self.has_attr(&current, attr)? {
                        has = false;
                        break;
                    }
                    if it.peek().is_some() {
                        current = self.get_attr(&current, attr)?;
                    }
                }
                Val::V(has.into())
            }
            ExprKind::Like { expr, pattern } => match self.eval(expr, slots)? {
                Val::V(v) => match v.value_kind() {
                    ValueKind::Lit(Literal::String(s)) => Val::V(pattern.wildcard_match(s).into()),
                    _ => return Err(Failed),
                },
                _ => return Err(Failed),
            },
            ExprKind::Is { expr, entity_type } => {
                let v = self.eval(expr, slots)?;
                let u = Self::entity_of(&v)?;
                Val::V((u.entity_type() == entity_type).into())
            }
            ExprKind::Set(items) => {
                let vals = items
                    .iter()
                    .map(|i| self.eval(i, slots).map(|v| v.to_value()))
                    .collect::<R<Vec<_>>>()?;
                Val::V(Value::set(vals, None))
            }
            ExprKind::Record(map) => {
                let vals = map
                    .iter()
                    .map(|(k, v)| self.eval(v, slots).map(|v| (k.clone(), v.to_value())))
                    .collect::<R<Vec<_>>>()?;
                Val::V(Value::record(vals, None))
            }
            // Unknowns (partial evaluation) and error nodes never evaluate.
            #[allow(unreachable_patterns)]
            _ => return Err(Failed),
        })
    }

    fn binary(&self, op: BinaryOp, a: Val<'e>, b: Val<'e>) -> R<Val<'e>> {
        Ok(match op {
            BinaryOp::Eq => Val::V(value::equal(&a, &b).into()),
            BinaryOp::Less | BinaryOp::LessEq => Val::V(
                binary_relation(
                    op,
                    &a.to_value(),
                    &b.to_value(),
                    Extensions::all_available(),
                )
                .map_err(|_| Failed)?,
            ),
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => {
                Val::V(binary_arith(op, a.to_value(), b.to_value(), None).map_err(|_| Failed)?)
            }
            BinaryOp::In => Val::V(self.is_in(&a, &b)?.into()),
            BinaryOp::Contains => Val::V(value::contains(&a, &b).ok_or(Failed)?.into()),
            BinaryOp::ContainsAll => Val::V(
                value::contains_all_or_any(&a, &b, true)
                    .ok_or(Failed)?
                    .into(),
            ),
            BinaryOp::ContainsAny => Val::V(
                value::contains_all_or_any(&a, &b, false)
                    .ok_or(Failed)?
                    .into(),
            ),
            BinaryOp::GetTag | BinaryOp::HasTag => {
                let uid = Self::entity_of(&a)?;
                let Val::V(tag) = &b else { return Err(Failed) };
                let ValueKind::Lit(Literal::String(tag)) = tag.value_kind() else {
                    return Err(Failed);
                };
                let found = self.entity(&uid).map(|e| e.tag(tag));
                match op {
                    BinaryOp::HasTag => Val::V(found.flatten().is_some().into()),
                    _ => Val::V(found.flatten().ok_or(Failed)?),
                }
            }
        })
    }

    /// `a in b`: a is b, or one of b's members, or a descendant of one of them.
    fn is_in(&self, a: &Val<'e>, b: &Val<'e>) -> R<bool> {
        let uid = Self::entity_of(a)?;
        let entity = self.entity(&uid);
        let under = |target: &EntityUID| {
            uid.as_ref() == target || entity.is_some_and(|e| e.is_descendant_of(target))
        };
        match b {
            Val::Set(Elems::Entities(ty, ids)) => Ok((uid.entity_type() == *ty
                && ids.contains(uid.eid().as_ref()))
                || entity.is_some_and(|e| e.in_any(ty, *ids))),
            // Cedar requires every member to be an entity, even when one matches first.
            Val::Set(Elems::Strings(ids)) if ids.is_empty() => Ok(false),
            Val::Set(Elems::Strings(_)) | Val::Record(_) => Err(Failed),
            Val::V(v) => match v.value_kind() {
                ValueKind::Lit(Literal::EntityUID(t)) => Ok(under(t)),
                ValueKind::Set(s) => {
                    let mut targets = Vec::with_capacity(s.len());
                    for m in s.iter() {
                        match m.value_kind() {
                            ValueKind::Lit(Literal::EntityUID(t)) => targets.push(t),
                            _ => return Err(Failed),
                        }
                    }
                    Ok(targets.into_iter().any(|t| under(t)))
                }
                _ => Err(Failed),
            },
        }
    }

    fn get_attr(&self, target: &Val<'e>, attr: &SmolStr) -> R<Val<'e>> {
        if let Ok(uid) = Self::entity_of(target) {
            return self.entity(&uid).ok_or(Failed)?.attr(attr).ok_or(Failed);
        }
        target.record_attr(attr).flatten().ok_or(Failed)
    }

    fn has_attr(&self, target: &Val<'e>, attr: &SmolStr) -> R<bool> {
        if let Ok(uid) = Self::entity_of(target) {
            return Ok(self.entity(&uid).is_some_and(|e| e.attr(attr).is_some()));
        }
        Ok(target.record_attr(attr).ok_or(Failed)?.is_some())
    }
}

/// Why a condition failed, worded by Cedar's own evaluator: the condition is
/// evaluated again over the entities this evaluator touched, in Cedar's form.
pub(super) fn explain_failure(
    req: &Request<'_>,
    store: &dyn Store,
    condition: &Expr,
    slots: &SlotEnv,
) -> String {
    let touched = RefCell::new(Vec::new());
    // Run again, noting every entity looked up on the way to the failure.
    let _ = Eval::recording(req, store, &touched).condition(condition, slots);
    let mut uids = touched.into_inner();
    uids.extend([
        req.principal.as_ref().clone(),
        req.action.as_ref().clone(),
        req.resource.as_ref().clone(),
    ]);
    uids.sort();
    uids.dedup();
    let entities: Vec<ast::Entity> = uids
        .iter()
        .filter_map(|u| store.entity(u).map(|e| e.to_cedar(u)))
        .collect();
    let entities = match Entities::new().add_entities(
        entities.into_iter().map(Arc::new),
        None::<&NoEntitiesSchema>,
        TCComputation::AssumeAlreadyComputed,
        Extensions::none(),
    ) {
        Ok(e) => e,
        Err(e) => return format!("cannot evaluate: {e}"),
    };
    let context = match req.context.to_value().value {
        ValueKind::Record(r) => ast::Context::Value(r),
        _ => ast::Context::empty(),
    };
    let request = ast::Request::new_unchecked(
        ast::EntityUIDEntry::known(req.principal.as_ref().clone(), None),
        ast::EntityUIDEntry::known(req.action.as_ref().clone(), None),
        ast::EntityUIDEntry::known(req.resource.as_ref().clone(), None),
        Some(context),
    );
    let cedar = Evaluator::new(request, &entities, Extensions::all_available());
    match cedar.interpret(condition, slots) {
        Err(e) => e.to_string(),
        Ok(v) if !matches!(v.value_kind(), ValueKind::Lit(Literal::Bool(_))) => {
            format!("the condition evaluated to {v}, which is not a boolean")
        }
        // The evaluators disagree; the policy still counts as failed, so the request
        // is denied, and the disagreement is reported.
        Ok(v) => {
            tracing::error!(result = %v, "Vakt's evaluator failed where Cedar's did not");
            format!("Vakt's evaluator failed where Cedar's gives {v}; the request is denied")
        }
    }
}
