//! The access packages Vakt knows: Altinn's list of package URNs, read from the
//! schema directory (`access-packages.json`) so an operator can extend it.

use cedar_policy_core::ast::EntityUID;
use std::collections::HashMap;
use std::sync::Arc;

/// The file in the schema directory that lists the known access packages.
pub const FILE_NAME: &str = "access-packages.json";

/// Prefix every access package URN carries.
pub const URN_PREFIX: &str = "urn:altinn:accesspackage:";

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct PackageListError {
    pub file: String,
    pub message: String,
}

/// The set of known access package URNs, each with its Cedar entity uid.
#[derive(Debug, Clone, Default)]
pub struct AccessPackages {
    urns: HashMap<String, Arc<EntityUID>>,
    /// The list's display name of each package that has one (Altinn's, in
    /// Norwegian), for people reading a review.
    names: HashMap<String, String>,
}

#[derive(serde::Deserialize)]
struct ListFile {
    packages: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    urn: String,
    #[serde(default)]
    name: Option<String>,
}

impl AccessPackages {
    /// Parses the package list (`{"packages": [{"urn": ...}, ...]}`); `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, PackageListError> {
        let err = |message: String| PackageListError {
            file: file.to_owned(),
            message,
        };
        let list: ListFile = crate::json::from_str(text)
            .map_err(|e| err(format!("line {}, column {}: {e}", e.line(), e.column())))?;
        let mut urns = HashMap::with_capacity(list.packages.len());
        let mut names = HashMap::with_capacity(list.packages.len());
        for (i, p) in list.packages.into_iter().enumerate() {
            if !p.urn.starts_with(URN_PREFIX) || p.urn.len() == URN_PREFIX.len() {
                return Err(err(format!(
                    "packages[{i}].urn {:?} does not start with {URN_PREFIX}",
                    p.urn
                )));
            }
            let uid = Arc::new(crate::rules::model::core_uid(
                &crate::rules::model::core_types().access_package,
                &p.urn,
            ));
            if urns.insert(p.urn.clone(), uid).is_some() {
                return Err(err(format!(
                    "packages[{i}].urn {:?} is listed twice",
                    p.urn
                )));
            }
            if let Some(name) = p.name.filter(|n| !n.trim().is_empty()) {
                names.insert(p.urn, name);
            }
        }
        Ok(Self { urns, names })
    }

    /// The list's name for a package, if it gives one.
    pub fn name(&self, urn: &str) -> Option<&str> {
        self.names.get(urn).map(String::as_str)
    }

    pub fn contains(&self, urn: &str) -> bool {
        self.urns.contains_key(urn)
    }

    /// The Cedar uid of a known package.
    pub fn uid(&self, urn: &str) -> Option<&Arc<EntityUID>> {
        self.urns.get(urn)
    }

    /// Every known package URN, in no particular order.
    pub fn urns(&self) -> impl Iterator<Item = &str> {
        self.urns.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.urns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_list_parses() {
        let text = include_str!("../../schema/access-packages.json");
        let p = AccessPackages::parse("access-packages.json", text).unwrap();
        assert_eq!(p.len(), 223);
        assert!(p.contains("urn:altinn:accesspackage:a-ordning"));
        assert!(!p.contains("urn:altinn:accesspackage:sykmelding"));
        assert_eq!(
            p.name("urn:altinn:accesspackage:jordbruk"),
            Some("Jordbruk")
        );
        let bare = AccessPackages::parse(
            "f.json",
            r#"{"packages":[{"urn":"urn:altinn:accesspackage:x"}]}"#,
        )
        .unwrap();
        assert_eq!(bare.name("urn:altinn:accesspackage:x"), None);
    }

    #[test]
    fn bad_lists_are_refused() {
        let e = AccessPackages::parse("f.json", r#"{"packages":[{"urn":"x"}]}"#).unwrap_err();
        assert!(e.to_string().contains("packages[0].urn"), "{e}");
        let e = AccessPackages::parse("f.json", "{").unwrap_err();
        assert!(e.to_string().starts_with("f.json: line 1"), "{e}");
    }
}
