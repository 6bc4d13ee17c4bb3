//! The edge of the decision: a request as it arrives (`RawRequest`) is checked
//! field by field into a `Query`, and nothing unchecked goes further. The
//! caller's context is bounded before it is read, then typed against the schema.

use crate::ids::{check_id, check_org_number};
use crate::rules::model;
use crate::rules::snapshot::{sample_derived_context, Snapshot};
use crate::world::OrgNo;
use cedar_policy::{Context, EntityUid};
use cedar_policy_core::ast::{EntityUID as CoreUid, Value as CoreValue};
use smol_str::SmolStr;
use std::sync::Arc;

/// A request field that is malformed; becomes INVALID_ARGUMENT naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: String,
    pub message: String,
}

/// A request as it arrives, before any check.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    pub employee_id: String,
    pub system_user_id: String,
    pub client_org_number: String,
    pub access_package: String,
    pub action: String,
    /// Caller attributes as JSON (from google.protobuf.Struct).
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Caller-sent context attributes, checked against the schema.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallerContext {
    pub(crate) pairs: Vec<(SmolStr, CoreValue)>,
    /// The attributes as the caller sent them, for the decision log.
    pub json: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A request whose every field has been checked. For ResolveSystemUser the system
/// user is empty until each candidate is tried.
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) employee: String,
    pub(crate) system_user: String,
    pub(crate) client: String,
    pub(crate) client_no: OrgNo,
    pub(crate) access_package: String,
    pub(crate) action_id: String,
    pub(crate) action: Arc<CoreUid>,
    pub(crate) context: CallerContext,
}

/// Whether a request field must be given, may be given (a filter), or is not
/// part of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Required,
    Optional,
    Absent,
}

/// Which fields a call takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub employee: Need,
    pub system_user: Need,
    pub client: Need,
    pub access_package: Need,
}

impl Fields {
    const AUTHORIZE: Fields = Fields {
        employee: Need::Required,
        system_user: Need::Required,
        client: Need::Required,
        access_package: Need::Required,
    };
}

impl Query {
    /// Checks every field of an Authorize request; `prefix` goes before field names
    /// in errors (e.g. `requests[2].`).
    pub fn check(snap: &Snapshot, raw: RawRequest, prefix: &str) -> Result<Self, InvalidField> {
        Self::check_fields(snap, raw, prefix, Fields::AUTHORIZE)
    }

    /// Checks every field of a ResolveSystemUser request (which names no system user).
    pub(crate) fn check_resolve(snap: &Snapshot, raw: RawRequest) -> Result<Self, InvalidField> {
        let fields = Fields {
            system_user: Need::Absent,
            ..Fields::AUTHORIZE
        };
        Self::check_fields(snap, raw, "", fields)
    }

    /// Checks the fields a call takes: each required one, and each optional one
    /// that is given. A field that is not given stays empty.
    pub(crate) fn check_fields(
        snap: &Snapshot,
        raw: RawRequest,
        prefix: &str,
        fields: Fields,
    ) -> Result<Self, InvalidField> {
        let bad = |field: &str, message: String| InvalidField {
            field: format!("{prefix}{field}"),
            message,
        };
        let wanted = |need: Need, value: &str| match need {
            Need::Required => true,
            Need::Optional => !value.is_empty(),
            Need::Absent => false,
        };
        if wanted(fields.employee, &raw.employee_id) {
            check_id(&raw.employee_id).map_err(|e| bad("employee_id", e.to_string()))?;
        }
        if wanted(fields.system_user, &raw.system_user_id) {
            check_id(&raw.system_user_id).map_err(|e| bad("system_user_id", e.to_string()))?;
        }
        let client_no = if wanted(fields.client, &raw.client_org_number) {
            check_org_number(&raw.client_org_number).map_err(|e| {
                bad(
                    "client_org_number",
                    format!("{:?} {e}", short(&raw.client_org_number)),
                )
            })?;
            OrgNo::parse(&raw.client_org_number)
                .map_err(|e| bad("client_org_number", e.to_string()))?
        } else {
            OrgNo::PLACEHOLDER
        };
        if wanted(fields.access_package, &raw.access_package) {
            if raw.access_package.is_empty() {
                return Err(bad("access_package", "is empty".into()));
            }
            if !snap.packages.contains(&raw.access_package) {
                return Err(bad(
                    "access_package",
                    format!(
                        "{:?} is not a known access package URN (urn:altinn:accesspackage:...)",
                        short(&raw.access_package)
                    ),
                ));
            }
        }
        let action_id = if raw.action.is_empty() {
            model::DEFAULT_ACTION
        } else {
            raw.action.as_str()
        };
        let Some(action) = snap.actions.get(action_id) else {
            let known: Vec<&str> = snap.actions.keys().map(String::as_str).collect();
            return Err(bad(
                "action",
                format!(
                    "{:?} is not an action in the schema; known: {}",
                    short(action_id),
                    known.join(", ")
                ),
            ));
        };
        let context = check_context(snap, &action.uid, raw.context.as_ref())
            .map_err(|m| bad("context", m))?;
        let keep = |need: Need, v: String| {
            if need == Need::Absent {
                String::new()
            } else {
                v
            }
        };
        Ok(Self {
            employee: keep(fields.employee, raw.employee_id),
            system_user: keep(fields.system_user, raw.system_user_id),
            client: keep(fields.client, raw.client_org_number),
            client_no,
            access_package: keep(fields.access_package, raw.access_package),
            action_id: action_id.to_owned(),
            action: action.core.clone(),
            context,
        })
    }
}

/// At most 64 characters of caller input, for error messages.
fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Most values (attributes, list elements, record fields, at any depth) a caller's
/// context may hold.
pub const MAX_CONTEXT_VALUES: usize = 1000;
/// Deepest nesting of lists and records in a caller's context.
pub const MAX_CONTEXT_DEPTH: usize = 8;
/// Longest string (or attribute name) in a caller's context, in bytes.
pub const MAX_CONTEXT_STRING_BYTES: usize = 4096;

/// Checks the context's size before anything else reads it. The walk stops at
/// the first limit passed, so a hostile context costs no more than the limits.
fn context_within_limits(m: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    use serde_json::Value as J;
    let mut stack: Vec<(&J, usize)> = Vec::new();
    let mut values = 0usize;
    let key_ok = |k: &str| {
        if k.len() > MAX_CONTEXT_STRING_BYTES {
            return Err(format!(
                "holds an attribute name of {} bytes, more than the limit of {MAX_CONTEXT_STRING_BYTES}",
                k.len()
            ));
        }
        Ok(())
    };
    for (k, v) in m {
        key_ok(k)?;
        stack.push((v, 1));
    }
    while let Some((v, depth)) = stack.pop() {
        values += 1;
        if values > MAX_CONTEXT_VALUES {
            return Err(format!(
                "holds more than {MAX_CONTEXT_VALUES} values (attributes, list elements and record fields), the limit"
            ));
        }
        if depth > MAX_CONTEXT_DEPTH {
            return Err(format!(
                "nests lists and records more than {MAX_CONTEXT_DEPTH} deep, the limit"
            ));
        }
        match v {
            J::String(s) if s.len() > MAX_CONTEXT_STRING_BYTES => {
                return Err(format!(
                    "holds a string of {} bytes, more than the limit of {MAX_CONTEXT_STRING_BYTES}",
                    s.len()
                ))
            }
            J::Array(a) => stack.extend(a.iter().map(|x| (x, depth + 1))),
            J::Object(o) => {
                for (k, x) in o {
                    key_ok(k)?;
                    stack.push((x, depth + 1));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks caller context attributes against the schema's context type.
fn check_context(
    snap: &Snapshot,
    action: &EntityUid,
    ctx: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<CallerContext, String> {
    let empty = serde_json::Map::new();
    let user = match ctx {
        Some(m) if !m.is_empty() => m,
        _ if !snap.context_always_checked => return Ok(CallerContext::default()),
        _ => &empty,
    };
    context_within_limits(user)?;
    if let Some(k) = user
        .keys()
        .find(|k| model::DERIVED_CONTEXT.contains(&k.as_str()))
    {
        return Err(format!(
            "attribute {k:?} is set by Vakt and may not be sent"
        ));
    }
    let full = sample_derived_context(Some(user));
    let ctx =
        Context::from_json_value(full, Some((&snap.schema, action))).map_err(|e| with_help(&e))?;
    // Parsing with the schema resolves entity references but does not type-check
    // every attribute; validation does.
    if let Err(e) = ctx.validate(&snap.schema, action) {
        return Err(name_bad_attribute(snap, action, user).unwrap_or_else(|| with_help(&e)));
    }
    let core: &cedar_policy_core::ast::Context = ctx.as_ref();
    let pairs = match core {
        cedar_policy_core::ast::Context::Value(m) => m
            .iter()
            .filter(|(k, _)| !model::DERIVED_CONTEXT.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cedar_policy_core::ast::Context::RestrictedResidual(_) => {
            return Err("context holds unknown values".into())
        }
    };
    Ok(CallerContext {
        pairs,
        json: Some(user.clone()).filter(|m| !m.is_empty()),
    })
}

/// Finds the caller attribute whose value does not fit the schema, checking each
/// on its own, so the error names it instead of quoting the whole context.
fn name_bad_attribute(
    snap: &Snapshot,
    action: &EntityUid,
    user: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    user.iter().find_map(|(k, v)| {
        let one = serde_json::Map::from_iter([(k.clone(), v.clone())]);
        let fits = Context::from_json_value(
            sample_derived_context(Some(&one)),
            Some((&snap.schema, action)),
        )
        .is_ok_and(|c| c.validate(&snap.schema, action).is_ok());
        (!fits).then(|| {
            format!(
                "attribute {k:?} does not have the type the schema declares (got {})",
                short(&v.to_string())
            )
        })
    })
}

fn with_help(e: &dyn miette::Diagnostic) -> String {
    match e.help() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    }
}
