//! Loading the schema and the policy files: parse, name each policy by its `@id`,
//! validate strictly against the schema, and pre-parse each `@reason` template.

use crate::problem::SourceFile;
use crate::problem::{from_diagnostic, Problem, Problems};
use cedar_policy::{
    Policy, PolicyId, PolicySet, Schema, SchemaFragment, ValidationMode, Validator,
};
use std::collections::HashMap;
use std::str::FromStr;

/// Parses and joins every schema file (`*.cedarschema`, or `*.cedarschema.json` in
/// Cedar's JSON schema format).
pub fn load_schema(files: &[SourceFile]) -> Result<Schema, Problems> {
    let mut fragments = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        if f.name.ends_with(".json") {
            if let Err(e) = crate::json::check(&f.text) {
                problems.push(Problem::new(
                    &f.name,
                    format!("{}:{}", e.line(), e.column()),
                    e.to_string(),
                ));
                continue;
            }
            match SchemaFragment::from_json_str(&f.text) {
                Ok(frag) => fragments.push(frag),
                Err(e) => problems.extend(from_diagnostic(&f.name, &f.text, &e)),
            }
        } else {
            match SchemaFragment::from_cedarschema_str(&f.text) {
                Ok((frag, _warnings)) => fragments.push(frag),
                Err(e) => problems.extend(from_diagnostic(&f.name, &f.text, &e)),
            }
        }
    }
    if files.is_empty() {
        problems.push(Problem::new(
            "schema",
            "",
            "no schema file (*.cedarschema) was given",
        ));
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Schema::from_schema_fragments(fragments).map_err(|e| {
        let first = files.first().map_or("schema", |f| f.name.as_str());
        Problems(vec![Problem::new(first, "", e.to_string())])
    })
}

/// A piece of a `@reason` message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// The placeholders a `@reason` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Employee,
    SystemUser,
    Client,
    AccessPackage,
    Action,
    EmployeeOrganization,
    SystemUserOwner,
}

const VARS: [(&str, Var); 7] = [
    ("employee", Var::Employee),
    ("system_user", Var::SystemUser),
    ("client", Var::Client),
    ("access_package", Var::AccessPackage),
    ("action", Var::Action),
    ("employee_organization", Var::EmployeeOrganization),
    ("system_user_owner", Var::SystemUserOwner),
];

/// A parsed `@reason("...")` message with `{placeholders}`, e.g. `client {client}
/// is not linked to system user {system_user}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonTemplate(Vec<Piece>);

impl ReasonTemplate {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in reason {s:?}"))?;
            let name = &after[..close];
            let var = VARS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    let known: Vec<_> = VARS.iter().map(|(n, _)| *n).collect();
                    format!(
                        "unknown placeholder {{{name}}} in reason; known: {}",
                        known.join(", ")
                    )
                })?;
            pieces.push(Piece::Var(var));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    /// Fills in the placeholders; `value` gives each variable's text.
    pub fn render<'v>(&self, value: impl Fn(Var) -> std::borrow::Cow<'v, str>) -> String {
        let mut out = String::with_capacity(128);
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => out.push_str(&value(*v)),
            }
        }
        out
    }
}

/// The loaded policy set with each policy's reason template.
#[derive(Debug)]
pub struct Policies {
    pub set: PolicySet,
    pub reasons: HashMap<PolicyId, ReasonTemplate>,
    pub warnings: Vec<Problem>,
}

/// Parses every policy file, names each policy by its `@id` and validates the set
/// strictly against `schema`. Every problem in every file is reported.
pub fn load_policies(files: &[SourceFile], schema: &Schema) -> Result<Policies, Problems> {
    let mut problems = Vec::new();
    let mut set = PolicySet::new();
    let mut reasons = HashMap::new();
    let mut origin: HashMap<PolicyId, String> = HashMap::new();
    // Byte offsets in validation errors refer to the policy's own file.
    let mut text_of: HashMap<PolicyId, &SourceFile> = HashMap::new();

    for f in files {
        let parsed = match PolicySet::from_str(&f.text) {
            Ok(p) => p,
            Err(errs) => {
                for e in errs.iter() {
                    problems.extend(from_diagnostic(&f.name, &f.text, e));
                }
                continue;
            }
        };
        if let Some(t) = parsed.templates().next() {
            problems.push(Problem::new(
                &f.name,
                "",
                format!("template {} is not supported: keep per-client grants in data, not template links", t.id()),
            ));
        }
        for (n, p) in parsed.policies().enumerate() {
            let Some(id) = p.annotation("id") else {
                let at = format!("policy {} of the file", n + 1);
                problems.push(Problem::new(
                    &f.name,
                    at,
                    "policy has no @id(\"...\") annotation",
                ));
                continue;
            };
            let at = find_id_annotation(&f.text, id)
                .map(|o| Problem::at_offset(&f.name, &f.text, o, "").at)
                .unwrap_or_default();
            if id.is_empty() || id.starts_with("vakt:") {
                problems.push(Problem::new(
                    &f.name,
                    at,
                    format!("@id {id:?} is empty or uses the reserved prefix vakt:"),
                ));
                continue;
            }
            let pid = PolicyId::new(id);
            if let Some(other) = origin.get(&pid) {
                problems.push(Problem::new(
                    &f.name,
                    at,
                    format!("@id {id:?} is already used in {other}"),
                ));
                continue;
            }
            if let Some(r) = p.annotation("reason") {
                match ReasonTemplate::parse(r) {
                    Ok(t) => {
                        reasons.insert(pid.clone(), t);
                    }
                    Err(m) => problems.push(Problem::new(&f.name, at.clone(), m)),
                }
            }
            if let Err(e) = set.add(p.new_id(pid.clone())) {
                problems.push(Problem::new(&f.name, at, e.to_string()));
                continue;
            }
            origin.insert(pid.clone(), f.name.clone());
            text_of.insert(pid, f);
        }
    }
    if files.is_empty() {
        problems.push(Problem::new(
            "policies",
            "",
            "no policy file (*.cedar) was given",
        ));
    }

    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    let locate = |pid: &PolicyId, d: &dyn miette::Diagnostic| -> Vec<Problem> {
        match text_of.get(pid) {
            Some(f) => from_diagnostic(&f.name, &f.text, d),
            None => vec![Problem::new("policies", "", d.to_string())],
        }
    };
    for e in result.validation_errors() {
        problems.extend(locate(e.policy_id(), e));
    }
    let warnings = result
        .validation_warnings()
        .flat_map(|w| locate(w.policy_id(), w))
        .collect();
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(Policies {
        set,
        reasons,
        warnings,
    })
}

/// Byte offset of `@id("<id>")` in a policy file, to point reports at the policy.
fn find_id_annotation(text: &str, id: &str) -> Option<usize> {
    text.match_indices("@id").map(|(i, _)| i).find(|&i| {
        let rest = text[i + 3..].trim_start();
        let Some(rest) = rest.strip_prefix('(') else {
            return false;
        };
        let Some(rest) = rest.trim_start().strip_prefix('"') else {
            return false;
        };
        rest.strip_prefix(id).is_some_and(|r| r.starts_with('"'))
    })
}

impl Policies {
    pub fn policy_ids(&self) -> impl Iterator<Item = &PolicyId> {
        self.set.policies().map(Policy::id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_render() {
        let t = ReasonTemplate::parse("client {client} is not linked to {system_user}").unwrap();
        let s = t.render(|v| match v {
            Var::Client => "312004011".into(),
            Var::SystemUser => "tk-regnskap".into(),
            _ => unreachable!(),
        });
        assert_eq!(s, "client 312004011 is not linked to tk-regnskap");
        assert!(ReasonTemplate::parse("bad {nope}")
            .unwrap_err()
            .contains("{nope}"));
        assert!(ReasonTemplate::parse("bad {client")
            .unwrap_err()
            .contains("unclosed"));
    }
}
