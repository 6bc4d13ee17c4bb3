//! The interpreter: Cedar's expression semantics over a [`Store`], with values read
//! in place where they can be.
//!
//! Every operator behaves as `cedar-policy-core`'s evaluator does (the arithmetic,
//! comparison and extension calls are Cedar's own functions). When a policy fails
//! to evaluate, the message comes from Cedar too: the failing policy is evaluated
//! again by Cedar's own evaluator over the entities this one touched, so an error
//! reads exactly as Cedar would word it.

use super::value::{self, Elems, Ent, EntityData, Store, Val};
use cedar_policy_core::ast::{
    self, BinaryOp, EntityType, EntityUID, Expr, ExprKind, Literal, SlotEnv, UnaryOp, Value,
    ValueKind, Var,
};
use cedar_policy_core::entities::{Entities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::evaluator::{binary_arith, binary_relation, unary_app, Evaluator};
use cedar_policy_core::extensions::Extensions;
use smol_str::SmolStr;
use std::cell::RefCell;
use std::sync::Arc;

/// What a request gives the policies.
pub struct Request<'e> {
    pub principal: Ent<'e>,
    pub action: Ent<'e>,
    pub resource: Ent<'e>,
    /// The context record.
    pub context: Val<'e>,
}

/// Evaluation failed; the message is worked out afterwards (see [`explain_failure`]).
#[derive(Debug)]
pub(super) struct Failed;

type R<T> = Result<T, Failed>;

/// One request's evaluator. Values it produces may borrow from the request, the
/// store and the context, all of which outlive it (`'a`).
pub(super) struct Eval<'a> {
    req: &'a Request<'a>,
    store: &'a dyn Store,
    principal: Option<&'a dyn EntityData>,
    resource: Option<&'a dyn EntityData>,
    /// When set, every entity looked up is noted here (for the error replay).
    touched: Option<&'a RefCell<Vec<EntityUID>>>,
}

/// A uid as an entity reference that borrows it.
fn ent_of(uid: &EntityUID) -> Ent<'_> {
    Ent::new(uid.entity_type(), uid.eid().as_ref())
}

/// Whether `e` is the entity `ty`/`id` (ids first: they differ more often, and
/// the world's own types are compared by address before by name).
fn is(e: &Ent<'_>, ty: &EntityType, id: &str) -> bool {
    e.id.as_str() == id && value::same_type(e.ty, ty)
}

impl<'a> Eval<'a> {
    pub fn new(req: &'a Request<'a>, store: &'a dyn Store) -> Self {
        let find = |e: &Ent<'_>| store.entity(e.ty, e.id.as_str());
        Self {
            req,
            store,
            principal: find(&req.principal),
            resource: find(&req.resource),
            touched: None,
        }
    }

    fn recording(
        req: &'a Request<'a>,
        store: &'a dyn Store,
        touched: &'a RefCell<Vec<EntityUID>>,
    ) -> Self {
        let mut e = Self::new(req, store);
        e.touched = Some(touched);
        e
    }

    /// The entity `ty`/`id`; the principal and resource are already at hand.
    fn entity(&self, ty: &EntityType, id: &str) -> Option<&'a dyn EntityData> {
        if let Some(t) = self.touched {
            t.borrow_mut().push(EntityUID::from_components(
                ty.clone(),
                ast::Eid::new(id),
                None,
            ));
        }
        if is(&self.req.principal, ty, id) {
            return self.principal;
        }
        if is(&self.req.resource, ty, id) {
            return self.resource;
        }
        self.store.entity(ty, id)
    }

    /// Evaluates a policy condition to a boolean.
    pub fn condition(&self, e: &'a Expr, slots: &'a SlotEnv) -> R<bool> {
        self.eval(e, slots)?.as_bool().ok_or(Failed)
    }

    fn bool_of(&self, e: &'a Expr, slots: &'a SlotEnv) -> R<bool> {
        self.eval(e, slots)?.as_bool().ok_or(Failed)
    }

    fn eval(&self, e: &'a Expr, slots: &'a SlotEnv) -> R<Val<'a>> {
        Ok(match e.expr_kind() {
            ExprKind::Lit(Literal::EntityUID(u)) => Val::Ent(ent_of(u)),
            ExprKind::Lit(lit) => Val::V(Value::from(lit.clone())),
            ExprKind::Var(v) => match v {
                Var::Principal => Val::Ent(self.req.principal),
                Var::Action => Val::Ent(self.req.action),
                Var::Resource => Val::Ent(self.req.resource),
                Var::Context => self.req.context.clone(),
            },
            ExprKind::Slot(id) => Val::Ent(ent_of(slots.get(id).ok_or(Failed)?)),
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
                Val::Bool(v)
            }
            ExprKind::Or { left, right } => {
                let v = self.bool_of(left, slots)? || self.bool_of(right, slots)?;
                Val::Bool(v)
            }
            ExprKind::UnaryApp { op, arg } => {
                let a = self.eval(arg, slots)?;
                match op {
                    UnaryOp::IsEmpty => Val::Bool(value::is_empty(&a).ok_or(Failed)?),
                    UnaryOp::Not => Val::Bool(!a.as_bool().ok_or(Failed)?),
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
                Val::Bool(self.has_attr(&target, attr)?)
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
                Val::Bool(has)
            }
            ExprKind::Like { expr, pattern } => match self.eval(expr, slots)? {
                Val::V(v) => match v.value_kind() {
                    ValueKind::Lit(Literal::String(s)) => Val::Bool(pattern.wildcard_match(s)),
                    _ => return Err(Failed),
                },
                _ => return Err(Failed),
            },
            ExprKind::Is { expr, entity_type } => {
                let v = self.eval(expr, slots)?;
                let (ty, _) = v.as_entity().ok_or(Failed)?;
                Val::Bool(ty == entity_type)
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

    fn binary(&self, op: BinaryOp, a: Val<'a>, b: Val<'a>) -> R<Val<'a>> {
        Ok(match op {
            BinaryOp::Eq => Val::Bool(value::equal(&a, &b)),
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
            BinaryOp::In => Val::Bool(self.is_in(&a, &b)?),
            BinaryOp::Contains => Val::Bool(value::contains(&a, &b).ok_or(Failed)?),
            BinaryOp::ContainsAll => {
                Val::Bool(value::contains_all_or_any(&a, &b, true).ok_or(Failed)?)
            }
            BinaryOp::ContainsAny => {
                Val::Bool(value::contains_all_or_any(&a, &b, false).ok_or(Failed)?)
            }
            BinaryOp::GetTag | BinaryOp::HasTag => {
                let (ty, id) = a.as_entity().ok_or(Failed)?;
                let Val::V(tag) = &b else { return Err(Failed) };
                let ValueKind::Lit(Literal::String(tag)) = tag.value_kind() else {
                    return Err(Failed);
                };
                let found = self.entity(ty, id).map(|e| e.tag(tag));
                match op {
                    BinaryOp::HasTag => Val::Bool(found.flatten().is_some()),
                    _ => Val::V(found.flatten().ok_or(Failed)?),
                }
            }
        })
    }

    /// `a in b`: a is b, or one of b's members, or a descendant of one of them.
    fn is_in(&self, a: &Val<'a>, b: &Val<'a>) -> R<bool> {
        let (ty, id) = a.as_entity().ok_or(Failed)?;
        let entity = self.entity(ty, id);
        let under = |t: &EntityType, i: &str| {
            (t == ty && i == id)
                || entity.is_some_and(|e| {
                    e.is_descendant_of(t, i) || self.via_records(e, |r| r.is_descendant_of(t, i))
                })
        };
        match b {
            Val::Set(Elems::Entities(t, ids)) => Ok((ty == *t && ids.contains(id))
                || entity.is_some_and(|e| {
                    e.in_any(t, *ids) || self.via_records(e, |r| r.in_any(t, *ids))
                })),
            // Cedar requires every member to be an entity, even when one matches first.
            Val::Set(Elems::Strings(ids)) if ids.is_empty() => Ok(false),
            Val::Set(Elems::Strings(_)) | Val::Record(_) | Val::Bool(_) => Err(Failed),
            Val::Ent(e) => Ok(under(e.ty, e.id.as_str())),
            Val::V(v) => match v.value_kind() {
                ValueKind::Lit(Literal::EntityUID(u)) => {
                    Ok(under(u.entity_type(), u.eid().as_ref()))
                }
                ValueKind::Set(s) => {
                    let mut targets = Vec::with_capacity(s.len());
                    for m in s.iter() {
                        match m.value_kind() {
                            ValueKind::Lit(Literal::EntityUID(u)) => targets.push(u),
                            _ => return Err(Failed),
                        }
                    }
                    Ok(targets
                        .into_iter()
                        .any(|u| under(u.entity_type(), u.eid().as_ref())))
                }
                _ => Err(Failed),
            },
        }
    }

    /// Whether `test` holds for an ancestor of `e`'s that is one of Vakt's records
    /// (see [`EntityData::records_above`]), as the store holds that record now. The
    /// records themselves are among `e`'s ancestors already; this adds theirs.
    fn via_records(&self, e: &dyn EntityData, test: impl Fn(&dyn EntityData) -> bool) -> bool {
        e.records_above().iter().any(|u| {
            self.entity(u.entity_type(), u.eid().as_ref())
                .is_some_and(&test)
        })
    }

    fn get_attr(&self, target: &Val<'a>, attr: &SmolStr) -> R<Val<'a>> {
        if let Some((ty, id)) = target.as_entity() {
            return self.entity(ty, id).ok_or(Failed)?.attr(attr).ok_or(Failed);
        }
        target.record_attr(attr).flatten().ok_or(Failed)
    }

    fn has_attr(&self, target: &Val<'a>, attr: &SmolStr) -> R<bool> {
        if let Some((ty, id)) = target.as_entity() {
            return Ok(self.entity(ty, id).is_some_and(|e| e.has_attr(attr)));
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
    uids.extend([req.principal.uid(), req.action.uid(), req.resource.uid()]);
    uids.sort();
    uids.dedup();
    let entities: Vec<ast::Entity> = uids
        .iter()
        .filter_map(|u| {
            let data = store.entity(u.entity_type(), u.eid().as_ref())?;
            let mut e = data.to_cedar(u);
            // The ancestors of the records above it, as the world holds them now.
            for r in data.records_above() {
                if let Some(rec) = store.entity(r.entity_type(), r.eid().as_ref()) {
                    for a in rec.to_cedar(r).ancestors() {
                        e.add_indirect_ancestor(a.clone());
                    }
                }
            }
            Some(e)
        })
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
        ast::EntityUIDEntry::known(req.principal.uid(), None),
        ast::EntityUIDEntry::known(req.action.uid(), None),
        ast::EntityUIDEntry::known(req.resource.uid(), None),
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
