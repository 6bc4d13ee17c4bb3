//! The decision: check a request at the edge, then load → slice → evaluate → explain.
//!
//! For each request Vakt looks up the few records it needs in the world (employee,
//! system user, client and its parent, the system user's owner), builds a small
//! Cedar entity slice from them, derives the per-request facts (which of the
//! employee's teams cover the client, which client link applies), and lets the
//! policies decide. Nothing here does I/O or takes a lock; the cost does not grow
//! with the world. Any evaluation error denies.

use crate::ids::{check_id, check_org_number};
use crate::model::{self, types, uid};
use crate::policy::Var;
use crate::snapshot::{sample_derived_context, Snapshot};
use crate::world::{Employee, Organization, SystemUser, World};
use cedar_policy::{
    Context, Decision as CedarDecision, Entities, Entity, EntityUid, PolicyId, Request,
    RestrictedExpression,
};
use std::collections::{HashMap, HashSet};

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
    pairs: Vec<(String, RestrictedExpression)>,
}

/// A request whose every field has been checked.
#[derive(Debug, Clone)]
pub struct Query {
    pub employee: String,
    pub system_user: String,
    pub client: String,
    pub access_package: String,
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
        let (action_id, action, context) = check_common(snap, &raw, &bad)?;
        Ok(Self {
            employee: raw.employee_id,
            system_user: raw.system_user_id,
            client: raw.client_org_number,
            access_package: raw.access_package,
            action_id,
            action,
            context,
        })
    }
}

type Common = (String, EntityUid, CallerContext);

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
    if !snap.packages.contains(&raw.access_package) {
        return Err(bad(
            "access_package",
            format!(
                "{:?} is not a known access package URN (urn:altinn:accesspackage:...)",
                short(&raw.access_package)
            ),
        ));
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
    let context =
        check_context(snap, action, raw.context.as_ref()).map_err(|m| bad("context", m))?;
    Ok((action_id.to_owned(), action.clone(), context))
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
    let pairs = ctx
        .into_iter()
        .filter(|(k, _)| !model::DERIVED_CONTEXT.contains(&k.as_str()))
        .collect();
    Ok(CallerContext { pairs })
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
    let w = &snap.world;
    let employee = w.employee(&q.employee);
    let su = w.system_user(&q.system_user);
    decide_with(snap, q, employee, su, &q.system_user)
}

fn decide_with(
    snap: &Snapshot,
    q: &Query,
    employee: Option<&Employee>,
    su: Option<&SystemUser>,
    su_id: &str,
) -> Decision {
    let t = types();
    let w = &snap.world;
    let client = w.organization(&q.client);
    let parent = client.and_then(|c| c.parent.as_deref());
    let client_uid = client.map_or_else(|| uid(&t.organization, &q.client), |c| c.uid.clone());

    let slice = build_slice(w, employee, su, client, parent, &q.client);
    let context = derived_context(w, q, employee, su, client_uid, parent);
    let principal = employee.map_or_else(|| uid(&t.employee, &q.employee), |e| e.uid.clone());
    let resource = su.map_or_else(|| uid(&t.system_user, su_id), |s| s.uid.clone());

    let evaluated = slice.and_then(|entities| {
        let context =
            Context::from_pairs(context.into_iter().chain(q.context.pairs.iter().cloned()))
                .map_err(|e| e.to_string())?;
        let request = Request::new(principal, q.action.clone(), resource, context, None)
            .map_err(|e| e.to_string())?;
        Ok(snap
            .authorizer
            .is_authorized(&request, &snap.policies.set, &entities))
    });
    let vars = |v: Var| -> String {
        match v {
            Var::Employee => q.employee.clone(),
            Var::SystemUser => su_id.to_owned(),
            Var::Client => q.client.clone(),
            Var::AccessPackage => q.access_package.clone(),
            Var::Action => q.action_id.clone(),
            Var::EmployeeOrganization => {
                employee.map_or("(unknown)".into(), |e| e.organization.clone())
            }
            Var::SystemUserOwner => su.map_or("(unknown)".into(), |s| s.owner.clone()),
        }
    };
    let response = match evaluated {
        Ok(r) => r,
        // Building the slice cannot fail on checked data; if it ever does, deny.
        Err(e) => {
            return Decision {
                allowed: false,
                reasons: vec![Reason {
                    policy_id: "vakt:internal-error".into(),
                    message: format!("Vakt could not build the request, so it is denied: {e}"),
                }],
            }
        }
    };

    let diag = response.diagnostics();
    let mut reasons: Vec<Reason> = diag
        .reason()
        .map(|id| Reason {
            policy_id: id.to_string(),
            message: explain(snap, id, &vars, response.decision() == CedarDecision::Allow),
        })
        .collect();
    let errors: Vec<Reason> = diag
        .errors()
        .map(|e| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(pe) = e;
            Reason {
                policy_id: pe.policy_id().to_string(),
                message: format!("{e}; denied to fail closed"),
            }
        })
        .collect();
    // Fail closed: a policy that errored might have been a forbid.
    let allowed = response.decision() == CedarDecision::Allow && errors.is_empty();
    if !allowed {
        reasons.retain(|_| response.decision() == CedarDecision::Deny);
        reasons.extend(errors);
        if reasons.is_empty() {
            reasons.push(Reason {
                policy_id: "vakt:no-permit".into(),
                message: format!(
                    "no policy permits employee {} to {} system user {} for client {} with {}",
                    q.employee, q.action_id, su_id, q.client, q.access_package
                ),
            });
        }
    }
    reasons.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
    Decision { allowed, reasons }
}

fn explain(snap: &Snapshot, id: &PolicyId, vars: &dyn Fn(Var) -> String, allow: bool) -> String {
    match snap.policies.reasons.get(id) {
        Some(t) => t.render(vars),
        None if allow => format!("permitted by policy {id}"),
        None => format!("forbidden by policy {id}"),
    }
}

/// The entities one request can reach: the employee, the system user, the client,
/// its parent and the system user's owner, plus any extra Cedar entities.
fn build_slice(
    w: &World,
    employee: Option<&Employee>,
    su: Option<&SystemUser>,
    client: Option<&Organization>,
    parent: Option<&str>,
    client_org: &str,
) -> Result<Entities, String> {
    let mut list: Vec<Entity> = Vec::with_capacity(6 + w.extra_entities().len());
    let mut orgs: Vec<&Organization> = Vec::with_capacity(3);
    orgs.extend(client);
    orgs.extend(parent.and_then(|p| w.organization(p)));
    if let Some(owner) = su.and_then(|s| w.organization(&s.owner)) {
        if !orgs.iter().any(|o| o.org_number == owner.org_number) {
            orgs.push(owner);
        }
    }
    if let Some(e) = employee {
        list.push(employee_entity(e, client_org, parent)?);
    }
    if let Some(s) = su {
        list.push(system_user_entity(s)?);
    }
    for o in orgs {
        list.push(organization_entity(o)?);
    }
    list.extend(w.extra_entities().iter().cloned());
    Entities::from_entities(list, None).map_err(|e| e.to_string())
}

fn uid_set<'a>(uids: impl IntoIterator<Item = &'a EntityUid>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        uids.into_iter()
            .cloned()
            .map(RestrictedExpression::new_entity_uid),
    )
}

fn s(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_owned())
}

fn employee_entity(e: &Employee, client: &str, parent: Option<&str>) -> Result<Entity, String> {
    let t = types();
    // Audit engagements are projected onto the client and its parent: all a rule
    // about this request can ask, at a cost independent of the engagement count.
    let audits = [Some(client), parent]
        .into_iter()
        .flatten()
        .filter(|o| e.audit_clients.contains(*o))
        .map(|o| RestrictedExpression::new_entity_uid(uid(&t.organization, o)));
    let attrs = HashMap::from([
        (
            "organization".to_owned(),
            RestrictedExpression::new_entity_uid(e.organization_uid.clone()),
        ),
        ("name".to_owned(), s(&e.name)),
        (
            "active".to_owned(),
            RestrictedExpression::new_bool(e.active),
        ),
        ("kind".to_owned(), s(e.kind.as_str())),
        ("teams".to_owned(), uid_set(&e.team_uids)),
        (
            "auditClients".to_owned(),
            RestrictedExpression::new_set(audits),
        ),
    ]);
    let parents: HashSet<EntityUid> = e.team_uids.iter().cloned().collect();
    Entity::new(e.uid.clone(), attrs, parents).map_err(|e| e.to_string())
}

fn system_user_entity(su: &SystemUser) -> Result<Entity, String> {
    let attrs = HashMap::from([
        (
            "owner".to_owned(),
            RestrictedExpression::new_entity_uid(su.owner_uid.clone()),
        ),
        ("userType".to_owned(), s(su.user_type.as_str())),
        (
            "isDeleted".to_owned(),
            RestrictedExpression::new_bool(su.is_deleted),
        ),
        (
            "selfDelegated".to_owned(),
            RestrictedExpression::new_bool(su.self_delegated),
        ),
        ("externalRef".to_owned(), s(&su.external_ref)),
        ("systemId".to_owned(), s(&su.system_id)),
        ("integrationTitle".to_owned(), s(&su.integration_title)),
        ("accessPackages".to_owned(), uid_set(&su.package_uids)),
    ]);
    let parents: HashSet<EntityUid> = su.granted_uids.iter().cloned().collect();
    Entity::new(su.uid.clone(), attrs, parents).map_err(|e| e.to_string())
}

fn organization_entity(o: &Organization) -> Result<Entity, String> {
    let t = types();
    let attrs = HashMap::from([
        ("orgNumber".to_owned(), s(&o.org_number)),
        ("name".to_owned(), s(&o.name)),
    ]);
    let parents: HashSet<EntityUid> = o.parent.iter().map(|p| uid(&t.organization, p)).collect();
    Entity::new(o.uid.clone(), attrs, parents).map_err(|e| e.to_string())
}

/// The context attributes Vakt derives from the request and the world.
fn derived_context(
    w: &World,
    q: &Query,
    employee: Option<&Employee>,
    su: Option<&SystemUser>,
    client_uid: EntityUid,
    parent: Option<&str>,
) -> Vec<(String, RestrictedExpression)> {
    let t = types();
    // Team by team: only the employee's own teams whose scope covers the client.
    let portfolio = employee
        .into_iter()
        .flat_map(|e| e.teams.iter().zip(&e.team_uids))
        .filter(|(id, _)| {
            w.team(id)
                .is_some_and(|team| team.covers(&q.client, parent))
        })
        .map(|(_, u)| u);
    let mut ctx = vec![
        (
            model::CTX_CLIENT.to_owned(),
            RestrictedExpression::new_entity_uid(client_uid),
        ),
        (
            model::CTX_ACCESS_PACKAGE.to_owned(),
            RestrictedExpression::new_entity_uid(uid(&t.access_package, &q.access_package)),
        ),
        (model::CTX_PORTFOLIO_TEAMS.to_owned(), uid_set(portfolio)),
    ];
    if let Some(link) = su.and_then(|s| s.link_for(&q.client, parent)) {
        let record = RestrictedExpression::new_record([
            (
                "client".to_owned(),
                RestrictedExpression::new_entity_uid(uid(&t.organization, &link.org_number)),
            ),
            (
                "roles".to_owned(),
                RestrictedExpression::new_set(link.roles.iter().map(|r| s(r))),
            ),
            (
                "packages".to_owned(),
                RestrictedExpression::new_set(
                    link.packages
                        .iter()
                        .map(|p| RestrictedExpression::new_entity_uid(uid(&t.access_package, p))),
                ),
            ),
        ]);
        if let Ok(record) = record {
            ctx.push((model::CTX_CLIENT_LINK.to_owned(), record));
        }
    }
    ctx
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
        let (action_id, action, context) = check_common(snap, &raw, &bad)?;
        Ok(Self {
            employee: raw.employee_id,
            client: raw.client_org_number,
            access_package: raw.access_package,
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
            action_id: rq.action_id.clone(),
            action: rq.action.clone(),
            context: rq.context.clone(),
        };
        let d = decide_with(snap, &q, Some(employee), Some(su), id);
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
