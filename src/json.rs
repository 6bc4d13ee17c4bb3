//! JSON read strictly: a member named twice in one object is an error, never
//! "the last one wins".
//!
//! serde_json keeps the last of two equal keys in a map, and a reader that looks
//! at the first (a proxy, a log viewer, a person) sees another request than the
//! one decided: `{"id": "per", "id": "kari"}` would be decided as kari. Every
//! JSON text Vakt reads, from the network or from a file, goes through here.

use serde::de::{DeserializeOwned, DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashSet;

/// The deepest nesting checked (serde_json's own limit when building values).
const MAX_DEPTH: usize = 128;

/// `text` parsed as a JSON value; a member given twice in any object is an error
/// naming it, with its line and column.
pub(crate) fn parse(text: &[u8]) -> Result<Value, serde_json::Error> {
    parse_at(text).map_err(|(_, e)| e)
}

/// [`parse`], also saying where a duplicate member is, as a path from the top
/// (`subject.id`, `evaluations[2].resource.id`); empty for other errors.
pub(crate) fn parse_at(text: &[u8]) -> Result<Value, (String, serde_json::Error)> {
    let trail = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = StrictValue { trail: &trail }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| {
        // Only a duplicate is a data error here: the rest are syntax.
        if !e.is_data() {
            return (String::new(), e);
        }
        let mut path = String::new();
        for step in trail.into_inner().into_iter().rev() {
            if !path.is_empty() && !step.starts_with('[') {
                path.push('.');
            }
            path.push_str(&step);
        }
        (path, e)
    })
}

/// `text` read as `T`, after checking that no object in it names a member twice.
pub(crate) fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    check(text)?;
    serde_json::from_str(text)
}

/// Checks that no object in `text` names a member twice, without building it.
pub(crate) fn check(text: &str) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    Unique { depth: 0 }.deserialize(&mut de)?;
    de.end()
}

fn duplicate<E: serde::de::Error>(k: &str) -> E {
    E::custom(format_args!(
        "duplicate member {k:?}: a member may be given once"
    ))
}

/// Walks any JSON, checking member names, keeping nothing.
struct Unique {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(A::Error::custom("nested too deeply"));
        }
        while a.next_element_seed(Unique { depth })?.is_some() {}
        Ok(())
    }
    fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<(), M::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(M::Error::custom("nested too deeply"));
        }
        let mut seen: HashSet<Key<'de>> = HashSet::new();
        while let Some(k) = m.next_key::<Key<'de>>()? {
            if seen.contains(&k) {
                return Err(duplicate(k.as_str()));
            }
            m.next_value_seed(Unique { depth })?;
            seen.insert(k);
        }
        Ok(())
    }
}

/// A member name, borrowed from the text when it has no escapes. Names compare
/// by their text, not by how they were read: an escaped "\u0069d" is "id".
enum Key<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key<'_> {}

impl std::hash::Hash for Key<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

/// Builds a [`Value`], refusing a member given twice. On the way out of an error,
/// each level adds its step to `trail` (innermost first).
struct StrictValue<'t> {
    trail: &'t RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        loop {
            match a.next_element_seed(StrictValue { trail: self.trail }) {
                Ok(Some(x)) => v.push(x),
                Ok(None) => return Ok(Value::Array(v)),
                Err(e) => {
                    self.trail.borrow_mut().push(format!("[{}]", v.len()));
                    return Err(e);
                }
            }
        }
    }
    fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Value, M::Error> {
        let mut out = Map::new();
        while let Some(k) = m.next_key::<String>()? {
            if out.contains_key(&k) {
                let e = duplicate(&k);
                self.trail.borrow_mut().push(k);
                return Err(e);
            }
            match m.next_value_seed(StrictValue { trail: self.trail }) {
                Ok(v) => out.insert(k, v),
                Err(e) => {
                    self.trail.borrow_mut().push(k);
                    return Err(e);
                }
            };
        }
        Ok(Value::Object(out))
    }
}

/// Used where a [`Value`] is read through serde (`from_str::<Strict>`).
pub(crate) struct Strict(pub Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let trail = RefCell::new(Vec::new());
        StrictValue { trail: &trail }.deserialize(d).map(Strict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_given_twice_is_refused_at_any_depth_and_named() {
        for text in [
            r#"{"id": "per", "id": "kari"}"#,
            r#"{"subject": {"type": "employee", "id": "per", "id": "kari"}}"#,
            r#"[{"a": 1}, {"b": {"c": [1, {"d": 1, "d": 2}]}}]"#,
            r#"{"id": "per", "\u0069d": "kari"}"#,
        ] {
            let e = parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("duplicate member"), "{text}: {e}");
            let e = check(text).unwrap_err().to_string();
            assert!(
                e.contains("duplicate member") && e.contains("line 1"),
                "{text}: {e}"
            );
        }
        assert!(parse(br#"{"a": {"id": 1}, "b": {"id": 2}}"#).is_ok());
        let (at, _) =
            parse_at(br#"{"evaluations": [{}, {"subject": {"id": "a", "id": "b"}}]}"#).unwrap_err();
        assert_eq!(at, "evaluations[1].subject.id");
        assert!(check(r#"{"a": {"id": 1}, "b": {"id": 2}}"#).is_ok());
        assert!(check(&"[".repeat(200)).is_err());
    }
}
