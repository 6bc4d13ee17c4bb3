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
    fn contains(&self, v: &Val<'_>) -> bool {
        match self {
            Self::Entities(ty, ids) => v
                .as_entity()
                .is_some_and(|(t, id)| same_type(t, ty) && ids.contains(id)),
            Self::Strings(ids) => match v {
                Val::V(x) => match x.value_kind() {
                    ValueKind::Lit(Literal::String(s)) => ids.contains(s),
                    _ => false,
                },
                _ => false,
            },
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
    pub fn to_value(self) -> Value {
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

/// Whether two entity types are the same: by address first (the world's own types
/// are shared statics), then by name.
#[inline]
pub fn same_type(a: &EntityType, b: &EntityType) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// An entity id held without allocating: borrowed, or short enough to sit inline.
#[derive(Clone, Copy)]
pub enum EntId<'e> {
    Borrowed(&'e str),
    Inline { len: u8, buf: [u8; 22] },
}

impl<'e> EntId<'e> {
    /// `s` inline when it fits (an org number does), else `None`.
    pub fn inline(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        (b.len() <= 22).then(|| {
            let mut buf = [0u8; 22];
            buf[..b.len()].copy_from_slice(b);
            Self::Inline {
                len: b.len() as u8,
                buf,
            }
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(s) => s,
            // Only whole UTF-8 strings are ever copied in.
            Self::Inline { len, buf } => {
                std::str::from_utf8(&buf[..usize::from(*len)]).unwrap_or_default()
            }
        }
    }
}

/// A reference to an entity by type and id, made without allocating.
#[derive(Clone, Copy)]
pub struct Ent<'e> {
    pub ty: &'e EntityType,
    pub id: EntId<'e>,
}

impl<'e> Ent<'e> {
    pub fn new(ty: &'e EntityType, id: &'e str) -> Self {
        Self {
            ty,
            id: EntId::Borrowed(id),
        }
    }

    /// A reference whose id is copied in: it must fit inline (22 bytes).
    pub fn inline(ty: &'e EntityType, id: &str) -> Option<Self> {
        EntId::inline(id).map(|id| Self { ty, id })
    }

    pub fn uid(&self) -> EntityUID {
        EntityUID::from_components(self.ty.clone(), ast::Eid::new(self.id.as_str()), None)
    }
}

/// A value during evaluation.
#[derive(Clone)]
pub enum Val<'e> {
    /// A boolean: most results are, and they need no Cedar value.
    Bool(bool),
    /// A value as Cedar holds it.
    V(Value),
    /// An entity reference, made without allocating.
    Ent(Ent<'e>),
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
            Self::Bool(b) => Value::from(*b),
            Self::V(v) => v.clone(),
            Self::Ent(e) => Value::from(e.uid()),
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
            Self::Bool(_) | Self::Ent(_) | Self::Set(_) => None,
        }
    }

    /// The type and id of the entity this value refers to, if it is one.
    pub fn as_entity(&self) -> Option<(&EntityType, &str)> {
        match self {
            Self::Ent(e) => Some((e.ty, e.id.as_str())),
            Self::V(v) => match v.value_kind() {
                ValueKind::Lit(Literal::EntityUID(u)) => Some((u.entity_type(), u.eid().as_ref())),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
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
            Self::Bool(_) | Self::Ent(_) | Self::Record(_) => false,
        }
    }
}

/// Cedar's `==`: structural equality, never an error.
pub fn equal<'e>(a: &Val<'e>, b: &Val<'e>) -> bool {
    match (a.as_entity(), b.as_entity()) {
        (Some((t1, i1)), Some((t2, i2))) => return i1 == i2 && same_type(t1, t2),
        // An entity equals only an entity.
        (Some(_), None) | (None, Some(_)) => return false,
        (None, None) => {}
    }
    if let (Some(x), Some(y)) = (a.as_bool(), b.as_bool()) {
        return x == y;
    }
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
        // Entity references and booleans were compared above; a boolean equals
        // only a boolean.
        (Val::Ent(_), _) | (_, Val::Ent(_)) | (Val::Bool(_), _) | (_, Val::Bool(_)) => false,
        (Val::Set(_), other) | (other, Val::Set(_)) => {
            other.is_set() && a.to_value() == b.to_value()
        }
    }
}

/// `set.contains(v)`; `None` when `set` is not a set (a type error).
pub fn contains(set: &Val<'_>, v: &Val<'_>) -> Option<bool> {
    match set {
        // A set of entities or strings holds no sets or records.
        Val::Set(e) => Some(e.contains(v)),
        Val::V(s) => match s.value_kind() {
            ValueKind::Set(s) => Some(s.contains(&v.to_value())),
            _ => None,
        },
        Val::Bool(_) | Val::Ent(_) | Val::Record(_) => None,
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
        let held = |v: &Value| x.contains(&Val::V(v.clone()));
        return Some(if all {
            ys.iter().all(held)
        } else {
            ys.iter().any(held)
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
        Val::Bool(_) | Val::Ent(_) | Val::Record(_) => None,
    }
}

/// One entity, as the evaluator reads it.
pub trait EntityData {
    /// The attribute's value, or `None` when the entity has no such attribute.
    fn attr(&self, name: &str) -> Option<Val<'_>>;
    /// Whether the entity has the attribute (without building its value).
    fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
    /// Whether the entity is a (transitive) descendant of the entity `ty`/`id`.
    fn is_descendant_of(&self, ty: &EntityType, id: &str) -> bool;
    /// Whether the entity is a descendant of any entity of type `ty` named in `ids`.
    fn in_any(&self, ty: &EntityType, ids: &dyn IdList) -> bool {
        let mut hit = false;
        ids.each(&mut |id| hit = hit || self.is_descendant_of(ty, id));
        hit
    }
    /// Those of its ancestors that are Vakt's own records, whose own ancestors the
    /// store gives: an entity in Cedar's format may sit under an organisation, whose
    /// parent is read from the world when asked, so a live change is seen. Vakt's
    /// records themselves have none (their ancestors are all in the records).
    fn records_above(&self) -> &[EntityUID] {
        &[]
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
    fn entity(&self, ty: &EntityType, id: &str) -> Option<&dyn EntityData>;
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
    fn has_attr(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    fn is_descendant_of(&self, ty: &EntityType, id: &str) -> bool {
        ast::Entity::is_descendant_of(
            self,
            &EntityUID::from_components(ty.clone(), ast::Eid::new(id), None),
        )
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
