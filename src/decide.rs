//! The decision: check a request at the edge, then load → slice → evaluate → explain.
//!
//! For each request Vakt looks up the few records it needs in the world (employee,
//! system user, client and its parent, the system user's owner), builds a small
//! Cedar entity slice from them, derives the per-request facts (which of the
//! employee's teams cover the client, which client link applies), and lets the
//! policies decide. Nothing here does I/O or takes a lock; the cost does not grow
//! with the world. Any evaluation error denies.

use crate::engine::Outcome;
use crate::ids::{check_id, check_org_number};
use crate::model::{self, types};
use crate::policy::Var;
use crate::slice::{self, Subject};
use crate::snapshot::{sample_derived_context, Snapshot};
use crate::world::SystemUser;
use cedar_policy::{Context, EntityUid, PolicyId};
use cedar_policy_core::ast::{EntityUID as CoreUid, Value as CoreValue};
use smol_str::SmolStr;

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
pub struct CallerContext {
    pairs: Vec<(SmolStr, CoreValue)>,
    /// The attributes as the caller sent them, for the decision log.
    pub json: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A request whose every field has been checked.
#[derive(Debug, Clone)]
pub struct Query {
    pub employee: String,
    pub system_user: String,
    pub client: String,
    pub access_package: String,
    pub package_uid: CoreUid,
    pub action_id: String,
    pub action: EntityUid,
    pub context: CallerContext,
}

impl Query {
    /// Checks every field of `raw`; `prefix` goes before field names in errors
    /// (e.g. `requests[2].`). `system_user` may be absent for ResolveSystemUser.
    pub fn check(snap: &Snapshot, raw: RawRequest, prefix: &str) -> Result<Self, InvalidField> {
        let bad = |field: &str, message: String| InvalidField {
            field: format!("{prefix}{field}"),
            message,
        };
        check_id(&raw.employee_id).map_err(|e| bad("employee_id", e.to_string()))?;
        check_id(&raw.system_user_id).map_err(|e| bad("system_user_id", e.to_string()))?;
        let (package_uid, action_id, action, context) = check_common(snap, &raw, &bad)?;
        Ok(Self {
            employee: raw.employee_id,
            system_user: raw.system_user_id,
            client: raw.client_org_number,
            access_package: raw.access_package,
            package_uid,
            action_id,
            action,
            context,
        })
    }
}

type Common = (CoreUid, String, EntityUid, CallerContext);

/// Checks the fields Authorize and ResolveSystemUser share.
pub fn check_common(
    snap: &Snapshot,
    raw: &RawRequest,
    bad: &dyn Fn(&str, String) -> InvalidField,
) -> Result<Common, InvalidField> {
    check_org_number(&raw.client_org_number).map_err(|e| {
        bad(
            "client_org_number",
            format!("{:?} {e}", short(&raw.client_org_number)),
        )
    })?;
    if raw.access_package.is_empty() {
        return Err(bad("access_package", "is empty".into()));
    }
    let Some(package_uid) = snap.packages.uid(&raw.access_package) else {
        return Err(bad(
            "access_package",
            format!(
                "{:?} is not a known access package URN (urn:altinn:accesspackage:...)",
                short(&raw.access_package)
            ),
        ));
    };
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
    let context =
        check_context(snap, action, raw.context.as_ref()).map_err(|m| bad("context", m))?;
    Ok((
        package_uid.clone(),
        action_id.to_owned(),
        action.clone(),
        context,
    ))
}

/// At most 64 characters of caller input, for error messages.
fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
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

/// One reason for a decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reason {
    pub policy_id: String,
    pub message: String,
}

/// The outcome of one decision.
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub reasons: Vec<Reason>,
}

/// Decides one checked request against a snapshot.
pub fn decide(snap: &Snapshot, q: &Query) -> Decision {
    let subject = Subject::find(&snap.world, &q.employee, &q.system_user, &q.client);
    decide_subject(snap, q, &subject, &q.system_user)
}

fn decide_subject(snap: &Snapshot, q: &Query, subject: &Subject<'_>, su_id: &str) -> Decision {
    let t = types();
    let w = &snap.world;
    let context = slice::context(w, subject, &q.package_uid, &q.context.pairs);
    let principal = subject.employee.map_or_else(
        || slice::euid(&t.employee, &q.employee),
        |e| e.cedar.uid().clone(),
    );
    let resource = subject.system_user.map_or_else(
        || slice::euid(&t.system_user, su_id),
        |s| s.cedar.uid().clone(),
    );
    let outcome = snap.engine.evaluate(
        principal,
        q.action.as_ref(),
        resource,
        context,
        w.entities(),
    );
    explain(snap, q, subject, su_id, outcome)
}

/// Turns an evaluation outcome into a decision with reasons from the policies'
/// `@reason` annotations.
fn explain(
    snap: &Snapshot,
    q: &Query,
    subject: &Subject<'_>,
    su_id: &str,
    outcome: Outcome,
) -> Decision {
    let vars = |v: Var| -> String {
        match v {
            Var::Employee => q.employee.clone(),
            Var::SystemUser => su_id.to_owned(),
            Var::Client => q.client.clone(),
            Var::AccessPackage => q.access_package.clone(),
            Var::Action => q.action_id.clone(),
            Var::EmployeeOrganization => subject
                .employee
                .map_or("(unknown)".into(), |e| e.organization.clone()),
            Var::SystemUserOwner => subject
                .system_user
                .map_or("(unknown)".into(), |s| s.owner.clone()),
        }
    };
    let render = |id: &PolicyId, allow: bool| Reason {
        policy_id: id.to_string(),
        message: match snap.policies.reasons.get(id) {
            Some(t) => t.render(vars),
            None if allow => format!("permitted by policy {id}"),
            None => format!("forbidden by policy {id}"),
        },
    };
    let allowed = outcome.allowed();
    let mut reasons: Vec<Reason> = if allowed {
        outcome.permits.iter().map(|id| render(id, true)).collect()
    } else {
        outcome.forbids.iter().map(|id| render(id, false)).collect()
    };
    // Fail closed: a policy that errored might have been a forbid.
    reasons.extend(outcome.errors.iter().map(|(id, e)| Reason {
        policy_id: id.to_string(),
        message: format!("policy {id} could not be evaluated, so the request is denied: {e}"),
    }));
    if !allowed && reasons.is_empty() {
        reasons.push(Reason {
            policy_id: "vakt:no-permit".into(),
            message: format!(
                "no policy permits employee {} to {} system user {} for client {} with {}",
                q.employee, q.action_id, su_id, q.client, q.access_package
            ),
        });
    }
    reasons.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
    Decision { allowed, reasons }
}

/// Decides with `cedar_policy::Authorizer` on the same slice and context: the
/// reference [`decide`] is tested against, and the benchmark's baseline.
pub fn decide_reference(snap: &Snapshot, q: &Query) -> Decision {
    let t = types();
    let w = &snap.world;
    let subject = Subject::find(w, &q.employee, &q.system_user, &q.client);
    let entities =
        cedar_policy::Entities::from(slice::entities(w, &subject).expect("slice builds"));
    let context = slice::context(w, &subject, &q.package_uid, &q.context.pairs);
    let context = cedar_policy::Context::from(cedar_policy_core::ast::Context::Value(
        std::sync::Arc::new(context),
    ));
    let principal = model::uid(&t.employee, &q.employee);
    let resource = model::uid(&t.system_user, &q.system_user);
    let request = cedar_policy::Request::new(principal, q.action.clone(), resource, context, None)
        .expect("request builds");
    let response = snap
        .authorizer
        .is_authorized(&request, &snap.policies.set, &entities);
    let diag = response.diagnostics();
    let mut outcome = Outcome::default();
    let reasons: Vec<PolicyId> = diag.reason().cloned().collect();
    match response.decision() {
        cedar_policy::Decision::Allow => outcome.permits = reasons,
        cedar_policy::Decision::Deny => outcome.forbids = reasons,
    }
    outcome.errors = diag
        .errors()
        .map(|e| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(pe) = e;
            (pe.policy_id().clone(), e.to_string())
        })
        .collect();
    explain(snap, q, &subject, &q.system_user, outcome)
}

/// The system users an employee may use for a client and package.
#[derive(Debug, Clone)]
pub struct Resolution<'a> {
    pub usable: Vec<&'a SystemUser>,
    /// Why each other candidate is not usable.
    pub reasons: Vec<Reason>,
}

/// A checked ResolveSystemUser request.
#[derive(Debug, Clone)]
pub struct ResolveQuery {
    pub employee: String,
    pub client: String,
    pub access_package: String,
    pub package_uid: CoreUid,
    pub action_id: String,
    pub action: EntityUid,
    pub context: CallerContext,
}

impl ResolveQuery {
    pub fn check(snap: &Snapshot, raw: RawRequest) -> Result<Self, InvalidField> {
        let bad = |field: &str, message: String| InvalidField {
            field: field.to_owned(),
            message,
        };
        check_id(&raw.employee_id).map_err(|e| bad("employee_id", e.to_string()))?;
        let (package_uid, action_id, action, context) = check_common(snap, &raw, &bad)?;
        Ok(Self {
            employee: raw.employee_id,
            client: raw.client_org_number,
            access_package: raw.access_package,
            package_uid,
            action_id,
            action,
            context,
        })
    }
}

/// Decides the request for every system user the employee's organisation owns and
/// keeps those allowed: the same decision Authorize makes, once per candidate.
pub fn resolve<'a>(snap: &'a Snapshot, rq: &ResolveQuery) -> Resolution<'a> {
    let w = &snap.world;
    let Some(employee) = w.employee(&rq.employee) else {
        return Resolution {
            usable: Vec::new(),
            reasons: vec![Reason {
                policy_id: "vakt:no-candidates".into(),
                message: format!(
                    "employee {} is not known, so no system user can be chosen",
                    rq.employee
                ),
            }],
        };
    };
    let candidates = w.system_users_owned_by(&employee.organization);
    if candidates.is_empty() {
        return Resolution {
            usable: Vec::new(),
            reasons: vec![Reason {
                policy_id: "vakt:no-candidates".into(),
                message: format!(
                    "organisation {} owns no system users",
                    employee.organization
                ),
            }],
        };
    }
    let mut usable = Vec::new();
    let mut reasons = Vec::new();
    for id in candidates {
        let Some(su) = w.system_user(id) else {
            continue;
        };
        let q = Query {
            employee: rq.employee.clone(),
            system_user: id.clone(),
            client: rq.client.clone(),
            access_package: rq.access_package.clone(),
            package_uid: rq.package_uid.clone(),
            action_id: rq.action_id.clone(),
            action: rq.action.clone(),
            context: rq.context.clone(),
        };
        let subject = Subject::with(w, Some(employee), Some(su), &rq.client);
        let d = decide_subject(snap, &q, &subject, id);
        if d.allowed {
            usable.push(su);
        } else {
            reasons.extend(d.reasons);
        }
    }
    if !usable.is_empty() {
        reasons.clear();
    }
    Resolution { usable, reasons }
}
