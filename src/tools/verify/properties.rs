//! The properties file: assumptions that state what Vakt's derivation guarantees,
//! and the properties to prove, each a Cedar condition checked against the schema.

use crate::problem::{Problem, Problems};
use cedar_policy::{Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use serde::Deserialize;

/// The largest properties file read, in bytes.
pub const MAX_PROPERTIES_BYTES: usize = 1 << 20;

/// What a property claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// No request where `when` holds is allowed.
    NeverAllows,
    /// Some request where `when` holds is allowed.
    CanAllow,
    /// No policy raises an evaluation error.
    NeverErrors,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NeverAllows => "never-allows",
            Self::CanAllow => "can-allow",
            Self::NeverErrors => "never-errors",
        }
    }
}

/// A fact Vakt guarantees about every request it decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assumption {
    pub id: String,
    /// Where Vakt guarantees it, for the reader.
    #[serde(default)]
    pub why: String,
    pub condition: String,
}

/// One claim about the policy set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Property {
    pub id: String,
    pub kind: Kind,
    #[serde(default)]
    pub description: String,
    /// The domain rule it enforces, for the reader.
    #[serde(default)]
    pub rule: Option<u32>,
    /// The requests it speaks of; every request when absent.
    #[serde(default)]
    pub when: Option<String>,
}

/// A parsed properties file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Properties {
    #[serde(default, rename = "assumption")]
    pub assumptions: Vec<Assumption>,
    #[serde(default, rename = "property")]
    pub properties: Vec<Property>,
}

/// The id of the guard policy `vakt verify` builds; policies may not use it.
pub(super) const GUARD_ID: &str = "vakt-verify-guard";

impl Properties {
    /// Parses `text` (named `file` in problems) and checks each condition against
    /// `schema` as a policy `when` clause would be, reporting every problem.
    pub fn parse(file: &str, text: &str, schema: &Schema) -> Result<Self, Problems> {
        if text.len() > MAX_PROPERTIES_BYTES {
            return Err(Problems(vec![Problem::new(
                file,
                "",
                format!("larger than {MAX_PROPERTIES_BYTES} bytes"),
            )]));
        }
        let parsed: Self = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| line_column(text, s.start))
                .unwrap_or_default();
            Problems(vec![Problem::new(file, at, e.message().to_owned())])
        })?;
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let conditions = parsed
            .assumptions
            .iter()
            .map(|a| (format!("assumption {:?}", a.id), &a.id, Some(&a.condition)))
            .chain(
                parsed
                    .properties
                    .iter()
                    .map(|p| (format!("property {:?}", p.id), &p.id, p.when.as_ref())),
            );
        for (what, id, condition) in conditions {
            if id.is_empty() {
                problems.push(Problem::new(file, "", format!("{what}: id is empty")));
            }
            if !seen.insert(id.clone()) {
                problems.push(Problem::new(file, "", format!("{what}: id is used twice")));
            }
            if let Some(c) = condition {
                if let Err(e) = check_condition(c, schema) {
                    problems.push(Problem::new(file, "", format!("{what}: {e}")));
                }
            }
        }
        for p in &parsed.properties {
            if p.kind == Kind::NeverErrors && p.when.is_some() {
                problems.push(Problem::new(
                    file,
                    "",
                    format!(
                        "property {:?}: a never-errors property takes no `when`",
                        p.id
                    ),
                ));
            }
        }
        if parsed.properties.is_empty() {
            problems.push(Problem::new(file, "", "no [[property]] to prove"));
        }
        if problems.is_empty() {
            Ok(parsed)
        } else {
            Err(Problems(problems))
        }
    }

    /// The conjunction of every assumption and, when given, `when`, as one
    /// Cedar condition.
    pub(super) fn condition(&self, when: Option<&str>) -> String {
        let parts: Vec<String> = self
            .assumptions
            .iter()
            .map(|a| format!("({})", a.condition.trim()))
            .chain(when.map(|w| format!("({})", w.trim())))
            .collect();
        if parts.is_empty() {
            "true".into()
        } else {
            parts.join(" &&\n  ")
        }
    }
}

/// A policy `effect (principal, action, resource) when { condition };` named
/// [`GUARD_ID`].
pub(super) fn guard(effect: &str, condition: &str) -> Result<Policy, String> {
    Policy::parse(
        Some(PolicyId::new(GUARD_ID)),
        format!("{effect} (principal, action, resource)\nwhen {{\n  {condition}\n}};"),
    )
    .map_err(|e| format!("{e}"))
}

/// Parses `condition` as a policy's `when` clause and validates it strictly.
fn check_condition(condition: &str, schema: &Schema) -> Result<(), String> {
    let policy = guard("permit", condition)?;
    let set = PolicySet::from_policies([policy]).map_err(|e| e.to_string())?;
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    let first = result.validation_errors().next().map(|e| e.to_string());
    match first {
        None => Ok(()),
        Some(e) => Err(format!(
            "the condition does not validate against the schema: {e}"
        )),
    }
}

fn line_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{column}")
}
