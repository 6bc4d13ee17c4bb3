//! Values during evaluation, and the entity store the evaluator reads.
//!
//! A value is Cedar's own [`Value`], or a set or record that a world record (or the
//! derived context) holds as it is: a team list, a package list, the client link.
//! Those are read in place (`contains`, `in`, `isEmpty` on a sorted id list) and
//! built into a Cedar value only when an operation needs one, so a decision does
//! not allocate a set per attribute it looks at.

use cedar_policy_core::ast::{self, EntityType, EntityUID, Literal, Value, ValueKind};
use smol_str::SmolStr;

/// A sorted list of distinct ids, as a record holds it.
pub trait IdList: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn contains(&self, id: &str) -> bool;
    /// Calls `f` on each id, in order.
    fn each(&self, f: &mut dyn FnMut(&str));
}

/// Whether the sorted `ids` hold `id`.
pub fn sorted_contains(ids: &[SmolStr], id: &str) -> bool {
    ids.binary_search_by(|x| x.as_str().cmp(id)).is_ok()
}

macro_rules! smolstr_list {
    ($($t:ty),*) => {$(
        impl IdList for $t {
            fn len(&self) -> usize {
                <[SmolStr]>::len(self)
            }
            fn contains(&self, id: &str) -> bool {
                sorted_contains(self, id)
            }
            fn each(&self, f: &mut dyn FnMut(&str)) {
                for x in self.iter() {
                    f(x);
                }
            }
        }
    )*};
}

smolstr_list!(Box<[SmolStr]>, Vec<SmolStr>);

/// The elements of a set held in place.
#[derive(Clone, Copy)]
pub enum Elems<'e> {
    /// Entities of one type, by id.
    Entities(&'e EntityType, &'e dyn IdList),
    /// Strings.
    Strings(&'e dyn IdList),
}

impl Elems<'_> {
    fn ids(&self) -> &dyn IdList {
        match self {
            Self::Entities(_, ids) | Self::Strings(ids) => *ids,
        }
    }

    fn len(&self) -> usize {
        self.ids().len()
    }

    /// Whether `v` is an element.
    fn contains(&self, v: &Value) -> bool {
        match (self, v.value_kind()) {
            (Self::Entities(ty, ids), ValueKind::Lit(Literal::EntityUID(u))) => {
                u.entity_type() == *ty && ids.contains(u.eid().as_ref())
            }
            (Self::Strings(ids), ValueKind::Lit(Literal::String(s))) => ids.contains(s),
            _ => false,
        }
    }

    /// Whether `id` names an element of `other` (which holds elements of this kind).
    fn contains_id_of(&self, other: &Self, id: &str) -> bool {
        match (self, other) {
            (Self::Entities(a, ids), Self::Entities(b, _)) => a == b && ids.contains(id),
            (Self::Strings(ids), Self::Strings(_)) => ids.contains(id),
            _ => false,
        }
    }

    /// The set as Cedar holds it.
    pub fn to_value(&self) -> Value {
        let mut out = Vec::with_capacity(self.len());
        match self {
            Self::Entities(ty, ids) => ids.each(&mut |id| out.push(entity_value(ty, id))),
            Self::Strings(ids) => ids.each(&mut |s| out.push(Value::from(s))),
        }
        Value::set(out, None)
    }
}

/// The value of an entity reference.
pub fn entity_value(ty: &EntityType, id: &str) -> Value {
    Value::from(EntityUID::from_components(
        ty.clone(),
        ast::Eid::new(id),
        None,
    ))
}

/// A value during evaluation.
#[derive(Clone)]
pub enum Val<'e> {
    /// A value as Cedar holds it.
    V(Value),
    /// A set held in place.
    Set(Elems<'e>),
    /// A record held in place: its attributes, by name.
    Record(&'e [(SmolStr, Val<'e>)]),
}

impl From<Value> for Val<'_> {
    fn from(v: Value) -> Self {
        Self::V(v)
    }
}

impl<'e> Val<'e> {
    /// The value as Cedar holds it.
    pub fn to_value(&self) -> Value {
        match self {
            Self::V(v) => v.clone(),
            Self::Set(e) => e.to_value(),
            Self::Record(attrs) => {
                Value::record(attrs.iter().map(|(k, v)| (k.clone(), v.to_value())), None)
            }
        }
    }

    /// A record attribute, when this is a record (held in place or by Cedar):
    /// `None` when this is not a record, `Some(None)` when it lacks the attribute.
    pub fn record_attr(&self, name: &str) -> Option<Option<Val<'e>>> {
        match self {
            Self::Record(attrs) => Some(
                attrs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone()),
            ),
            Self::V(v) => match v.value_kind() {
                ValueKind::Record(r) => Some(r.get(name).cloned().map(Val::V)),
                _ => None,
            },
            Self::Set(_) => None,
        }
    }

    /// The entity this value refers to, if it is an entity reference.
    pub fn as_entity(&self) -> Option<&EntityUID> {
        match self {
            Self::V(v) => match v.value_kind() {
                ValueKind::Lit(Literal::EntityUID(u)) => Some(u),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::V(v) => match v.value_kind() {
                ValueKind::Lit(Literal::Bool(b)) => Some(*b),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether this is a set (held in place or by Cedar).
    fn is_set(&self) -> bool {
        match self {
            Self::Set(_) => true,
            Self::V(v) => matches!(v.value_kind(), ValueKind::Set(_)),
            Self::Record(_) => false,
        }
    }
}

/// Cedar's `==`: structural equality, never an error.
pub fn equal<'e>(a: &Val<'e>, b: &Val<'e>) -> bool {
    match (a, b) {
        (Val::V(x), Val::V(y)) => x == y,
        (Val::Set(x), Val::Set(y)) => {
            if x.len() != y.len() {
                return false;
            }
            if x.len() == 0 {
                return true;
            }
            let mut all = true;
            y.ids().each(&mut |id| all &= x.contains_id_of(y, id));
            all
        }
        (Val::Record(_), _) | (_, Val::Record(_)) => a.to_value() == b.to_value(),
        (Val::Set(_), other) | (other, Val::Set(_)) => {
            other.is_set() && a.to_value() == b.to_value()
        }
    }
}

/// `set.contains(v)`; `None` when `set` is not a set (a type error).
pub fn contains(set: &Val<'_>, v: &Val<'_>) -> Option<bool> {
    match set {
        Val::Set(e) => Some(match v {
            Val::V(x) => e.contains(x),
            // A set of entities or strings holds no sets or records.
            _ => false,
        }),
        Val::V(s) => match s.value_kind() {
            ValueKind::Set(s) => Some(s.contains(&v.to_value())),
            _ => None,
        },
        Val::Record(_) => None,
    }
}

/// `a.containsAll(b)` (all = true) or `a.containsAny(b)`; `None` when either is
/// not a set.
pub fn contains_all_or_any<'e>(a: &Val<'e>, b: &Val<'e>, all: bool) -> Option<bool> {
    if !a.is_set() || !b.is_set() {
        return None;
    }
    if let (Val::Set(x), Val::Set(y)) = (a, b) {
        let mut hits = 0;
        y.ids()
            .each(&mut |id| hits += usize::from(x.contains_id_of(y, id)));
        return Some(if all { hits == y.len() } else { hits > 0 });
    }
    if let Val::Set(x) = a {
        // b is a Cedar set: test its elements against the held set.
        let ValueKind::Set(ys) = b.to_value().value else {
            return None;
        };
        return Some(if all {
            ys.iter().all(|v| x.contains(v))
        } else {
            ys.iter().any(|v| x.contains(v))
        });
    }
    let (ValueKind::Set(xs), ValueKind::Set(ys)) = (a.to_value().value, b.to_value().value) else {
        return None;
    };
    Some(if all {
        ys.is_subset(&xs)
    } else {
        !xs.is_disjoint(&ys)
    })
}

/// `s.isEmpty()`; `None` when `s` is not a set.
pub fn is_empty(s: &Val<'_>) -> Option<bool> {
    match s {
        Val::Set(e) => Some(e.len() == 0),
        Val::V(v) => match v.value_kind() {
            ValueKind::Set(s) => Some(s.is_empty()),
            _ => None,
        },
        Val::Record(_) => None,
    }
}

/// One entity, as the evaluator reads it.
pub trait EntityData {
    /// The attribute's value, or `None` when the entity has no such attribute.
    fn attr(&self, name: &str) -> Option<Val<'_>>;
    /// Whether the entity is a (transitive) descendant of `ancestor`.
    fn is_descendant_of(&self, ancestor: &EntityUID) -> bool;
    /// Whether the entity is a descendant of any entity of type `ty` named in `ids`.
    fn in_any(&self, ty: &EntityType, ids: &dyn IdList) -> bool {
        let mut hit = false;
        ids.each(&mut |id| {
            if !hit {
                hit = self.is_descendant_of(&EntityUID::from_components(
                    ty.clone(),
                    ast::Eid::new(id),
                    None,
                ));
            }
        });
        hit
    }
    /// The tag's value, or `None` when the entity has no such tag.
    fn tag(&self, _name: &str) -> Option<Value> {
        None
    }
    /// The entity as Cedar holds it, with every attribute and ancestor.
    fn to_cedar(&self, uid: &EntityUID) -> ast::Entity;
}

/// Where the evaluator finds entities.
pub trait Store {
    fn entity(&self, uid: &EntityUID) -> Option<&dyn EntityData>;
}

/// A Cedar entity (from Cedar's own JSON format, or an action) read as it is.
impl EntityData for ast::Entity {
    fn attr(&self, name: &str) -> Option<Val<'_>> {
        match self.get(name)? {
            ast::PartialValue::Value(v) => Some(Val::V(v.clone())),
            // Entities given as data never hold unknowns; an attribute that did would
            // fail its policy in Cedar's own evaluator, which the error path replays.
            ast::PartialValue::Residual(_) => Some(Val::V(Value::empty_record(None))),
        }
    }
    fn is_descendant_of(&self, ancestor: &EntityUID) -> bool {
        ast::Entity::is_descendant_of(self, ancestor)
    }
    fn tag(&self, name: &str) -> Option<Value> {
        match self.get_tag(name)? {
            ast::PartialValue::Value(v) => Some(v.clone()),
            ast::PartialValue::Residual(_) => None,
        }
    }
    fn to_cedar(&self, _uid: &EntityUID) -> ast::Entity {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ty(s: &str) -> EntityType {
        EntityType::from(ast::Name::from_str(s).unwrap())
    }

    #[test]
    fn held_sets_behave_as_cedar_sets() {
        let team = ty("Vakt::Team");
        let ids: Vec<SmolStr> = vec!["a".into(), "c".into()];
        let other: Vec<SmolStr> = vec!["a".into()];
        let held = Val::Set(Elems::Entities(&team, &ids));
        let sub = Val::Set(Elems::Entities(&team, &other));
        let cedar = Val::V(held.to_value());
        let a = Val::V(entity_value(&team, "a"));
        let b = Val::V(entity_value(&team, "b"));
        assert_eq!(contains(&held, &a), Some(true));
        assert_eq!(contains(&held, &b), Some(false));
        assert_eq!(contains(&held, &Val::V(Value::from("a"))), Some(false));
        assert!(equal(&held, &cedar) && equal(&cedar, &held));
        assert!(!equal(&held, &sub));
        assert_eq!(contains_all_or_any(&held, &sub, true), Some(true));
        assert_eq!(contains_all_or_any(&sub, &held, true), Some(false));
        assert_eq!(contains_all_or_any(&sub, &cedar, false), Some(true));
        assert_eq!(contains_all_or_any(&cedar, &sub, true), Some(true));
        assert_eq!(contains_all_or_any(&held, &a, true), None);
        let empty: Vec<SmolStr> = vec![];
        let none_t = Val::Set(Elems::Entities(&team, &empty));
        let none_s = Val::Set(Elems::Strings(&empty));
        assert!(equal(&none_t, &none_s));
        assert!(equal(&none_t, &Val::V(Value::empty_set(None))));
        assert_eq!(is_empty(&none_s), Some(true));
        assert_eq!(is_empty(&a), None);
    }
}
