//! The decision: check a request at the edge, then look up → derive → evaluate →
//! explain.
//!
//! For each request Vakt looks up the few records it needs (employee, system user,
//! client and its parent), derives the facts Cedar cannot express (which of the
//! employee's teams cover the client, which client link applies), and evaluates the
//! policies over the world's records read in place (`engine`). Nothing
//! here does I/O or takes a lock, and no step grows with the size of the world.
//! Any evaluation error denies.

pub(crate) mod engine;
pub mod reference;
pub mod reverse;

use crate::decision::engine::value::{Elems, Ent};
use crate::decision::engine::{Outcome, Request, Val};
use crate::ids::{check_id, check_org_number};
use crate::rules::model::{self, core_types};
use crate::rules::policy::Var;
use crate::rules::snapshot::{sample_derived_context, Rules, Snapshot};
use crate::world::{Employee, OrgNo, SystemUser, World};
use cedar_policy::{Context, EntityUid};
use cedar_policy_core::ast::{EntityUID as CoreUid, Value as CoreValue};
use smol_str::SmolStr;
use std::borrow::Cow;
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
    pairs: Vec<(SmolStr, CoreValue)>,
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
    /// For an allow: how it is allowed (the decision log records it).
    pub path: Option<Path>,
}

/// The policy id of a deny because the data may not be decided on.
pub const DATA_STALE: &str = "vakt:data-stale";

impl Decision {
    /// A deny because the data may miss a revocation: it is too old, or lacks a
    /// change the caller asked for.
    pub fn data_stale(why: &str) -> Self {
        Self {
            allowed: false,
            reasons: vec![Reason {
                policy_id: DATA_STALE.into(),
                message: format!("{why}, so the request is denied"),
            }],
            path: None,
        }
    }
}

/// What one request is about, as found in the world.
pub(crate) struct Subject<'w> {
    pub(crate) employee: Option<&'w Employee>,
    pub(crate) system_user: Option<&'w SystemUser>,
    /// The client's parent, when the client is an operational unit.
    pub(crate) parent: Option<OrgNo>,
}

impl<'w> Subject<'w> {
    pub(crate) fn find(w: &'w World, q: &Query) -> Self {
        Self::with(
            w,
            w.employee(&q.employee),
            w.system_user(&q.system_user),
            q.client_no,
        )
    }

    pub(crate) fn with(
        w: &'w World,
        employee: Option<&'w Employee>,
        system_user: Option<&'w SystemUser>,
        client: OrgNo,
    ) -> Self {
        Self {
            employee,
            system_user,
            parent: w.organization(client).and_then(|c| c.parent()),
        }
    }
}

/// The facts Vakt derives for one request, which the context record reads in place.
pub(crate) struct Derived {
    /// Those of the employee's teams whose client scope covers the client, sorted.
    portfolio: Vec<SmolStr>,
    /// The active link to the client (or its parent): the linked org and its access.
    link: Option<(OrgNo, Arc<crate::world::LinkAccess>)>,
    /// When the link lists no packages for a relationship and the operator chose
    /// to take the system user's own for it: the link's packages and auditor
    /// packages with them.
    assumed: Option<Assumed>,
}

/// A link's packages with the system user's own taken for what it does not list.
pub(crate) struct Assumed {
    packages: Box<[SmolStr]>,
    auditor_packages: Box<[SmolStr]>,
}

impl Derived {
    pub(crate) fn of(
        w: &World,
        q: &Query,
        s: &Subject<'_>,
        link_packages: model::LinkPackages,
    ) -> Self {
        let portfolio = s
            .employee
            .into_iter()
            .flat_map(|e| e.teams.iter())
            .filter(|id| {
                w.team(id)
                    .is_some_and(|team| team.covers(q.client_no, s.parent))
            })
            .cloned()
            .collect();
        let link = s
            .system_user
            .and_then(|su| su.link_for(q.client_no, s.parent))
            .map(|(org, l)| (org, l.access.clone()));
        let assumed = match (&link, s.system_user, link_packages) {
            (Some((_, access)), Some(su), model::LinkPackages::SystemUserPackages)
                if access.entries.is_empty()
                    || access.entries.iter().any(|(_, p)| p.is_empty()) =>
            {
                // A link that names no relationship at all (a delegated-clients
                // list) carries the system user's packages, but through no
                // auditor role.
                let with_own = |auditor_only: bool| {
                    let mut v: Vec<SmolStr> = Vec::new();
                    if access.entries.is_empty() && !auditor_only {
                        v.extend(su.access_packages.iter().cloned());
                    }
                    for (role, p) in access.entries.iter() {
                        if auditor_only && role != model::AUDITOR_ROLE {
                            continue;
                        }
                        if p.is_empty() {
                            v.extend(su.access_packages.iter().cloned());
                        } else {
                            v.extend(p.iter().cloned());
                        }
                    }
                    v.sort();
                    v.dedup();
                    v.into_boxed_slice()
                };
                Some(Assumed {
                    packages: with_own(false),
                    auditor_packages: with_own(true),
                })
            }
            _ => None,
        };
        Self {
            portfolio,
            link,
            assumed,
        }
    }

    /// The path of an allow, from what was derived for it: those of the teams
    /// covering the client that grant the system user, and the link.
    fn path(&self, su: Option<&SystemUser>) -> Path {
        Path {
            teams: self
                .portfolio
                .iter()
                .filter(|t| su.is_some_and(|s| crate::world::records::sorted_has(&s.granted_to, t)))
                .cloned()
                .collect(),
            link_client: self.link.as_ref().map(|(org, _)| *org),
            link_roles: self
                .link
                .as_ref()
                .map_or_else(Vec::new, |(_, l)| l.roles.to_vec()),
        }
    }

    /// The note a decision carries when its link's packages were assumed.
    pub(crate) fn note(&self, q: &Query, su_id: &str) -> Option<Reason> {
        self.assumed.as_ref().map(|_| Reason {
            policy_id: "vakt:link-packages-assumed".into(),
            message: format!(
                "the link of client {} to system user {su_id} lists no packages for a relationship; the system user's own packages were taken for it (links without packages: system-user-packages)",
                q.client
            ),
        })
    }
}

/// Runs `f` with the request's context record: what Vakt derives, then the
/// caller's attributes. The record reads the derived facts in place.
pub(crate) fn with_context<T>(q: &Query, d: &Derived, f: impl FnOnce(Val<'_>) -> T) -> T {
    let t = core_types();
    let link_attrs: Option<[(SmolStr, Val<'_>); 4]> = d.link.as_ref().map(|(org, access)| {
        [
            (
                SmolStr::new_static("auditorPackages"),
                Val::Set(Elems::Entities(
                    &t.access_package,
                    d.assumed
                        .as_ref()
                        .map_or(&access.auditor_packages, |a| &a.auditor_packages),
                )),
            ),
            (
                SmolStr::new_static("client"),
                Val::Ent(
                    Ent::inline(&t.organization, &org.digits()).expect("nine digits fit inline"),
                ),
            ),
            (
                SmolStr::new_static("packages"),
                Val::Set(Elems::Entities(
                    &t.access_package,
                    d.assumed.as_ref().map_or(&access.packages, |a| &a.packages),
                )),
            ),
            (
                SmolStr::new_static("roles"),
                Val::Set(Elems::Strings(&access.roles)),
            ),
        ]
    });
    let mut attrs: Vec<(SmolStr, Val<'_>)> = Vec::with_capacity(4 + q.context.pairs.len());
    attrs.push((
        SmolStr::new_static(model::CTX_ACCESS_PACKAGE),
        Val::Ent(Ent::new(&t.access_package, &q.access_package)),
    ));
    attrs.push((
        SmolStr::new_static(model::CTX_CLIENT),
        Val::Ent(Ent::new(&t.organization, &q.client)),
    ));
    if let Some(link) = &link_attrs {
        attrs.push((
            SmolStr::new_static(model::CTX_CLIENT_LINK),
            Val::Record(link),
        ));
    }
    attrs.push((
        SmolStr::new_static(model::CTX_PORTFOLIO_TEAMS),
        Val::Set(Elems::Entities(&t.team, &d.portfolio)),
    ));
    for (k, v) in &q.context.pairs {
        attrs.push((k.clone(), Val::V(v.clone())));
    }
    f(Val::Record(&attrs))
}

/// The request: the employee asks to act on the system user, with `context`.
pub(crate) fn request<'a>(q: &'a Query, system_user: &'a str, context: Val<'a>) -> Request<'a> {
    let t = core_types();
    Request {
        principal: Ent::new(&t.employee, &q.employee),
        action: Ent::new(q.action.entity_type(), q.action.eid().as_ref()),
        resource: Ent::new(&t.system_user, system_user),
        context,
    }
}

/// Decides one checked request against a snapshot.
pub fn decide(snap: &Snapshot, q: &Query) -> Decision {
    decide_under(snap, &snap.world, q)
}

/// Decides one checked request under other rules (a candidate policy set built
/// with the same schema) on a snapshot's world: shadow evaluation.
pub fn decide_under(rules: &Rules, world: &World, q: &Query) -> Decision {
    let subject = Subject::find(world, q);
    decide_subject(rules, world, q, &subject, &q.system_user)
}

pub(crate) fn decide_subject(
    rules: &Rules,
    world: &World,
    q: &Query,
    subject: &Subject<'_>,
    su_id: &str,
) -> Decision {
    let derived = Derived::of(world, q, subject, rules.link_packages);
    let outcome = with_context(q, &derived, |context| {
        rules.engine.evaluate(&request(q, su_id, context), world)
    });
    let mut d = explain(rules, q, subject, su_id, outcome);
    d.reasons.extend(derived.note(q, su_id));
    if d.allowed {
        d.path = Some(derived.path(subject.system_user));
    }
    d
}

/// Turns an evaluation outcome into a decision with reasons from the policies'
/// `@reason` annotations.
pub(crate) fn explain(
    snap: &Rules,
    q: &Query,
    subject: &Subject<'_>,
    su_id: &str,
    outcome: Outcome,
) -> Decision {
    let vars = |v: Var| -> Cow<'_, str> {
        match v {
            Var::Employee => Cow::Borrowed(&q.employee),
            Var::SystemUser => Cow::Borrowed(su_id),
            Var::Client => Cow::Borrowed(&q.client),
            Var::AccessPackage => Cow::Borrowed(&q.access_package),
            Var::Action => Cow::Borrowed(&q.action_id),
            Var::EmployeeOrganization => subject
                .employee
                .map_or("(unknown)".into(), |e| e.organization.to_string().into()),
            Var::SystemUserOwner => subject
                .system_user
                .map_or("(unknown)".into(), |s| s.owner.to_string().into()),
        }
    };
    let render = |i: usize, allow: bool| {
        let (id, _) = snap.engine.policy(i);
        Reason {
            policy_id: id.to_owned(),
            message: match &snap.reasons[i] {
                Some(t) => t.render(vars),
                None if allow => format!("permitted by policy {id}"),
                None => format!("forbidden by policy {id}"),
            },
        }
    };
    let allowed = outcome.allowed();
    let mut reasons: Vec<Reason> = if allowed {
        outcome.permits.iter().map(|&i| render(i, true)).collect()
    } else {
        outcome.forbids.iter().map(|&i| render(i, false)).collect()
    };
    // Fail closed: a policy that errored might have been a forbid.
    reasons.extend(outcome.errors.iter().map(|(i, e)| {
        let (id, _) = snap.engine.policy(*i);
        Reason {
            policy_id: id.to_owned(),
            message: format!("policy {id} could not be evaluated, so the request is denied: {e}"),
        }
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
    Decision {
        allowed,
        reasons,
        path: None,
    }
}

/// How an allowed request is allowed: the employee's teams that grant the system
/// user and have the client in scope, and the client link it rests on. The
/// decision log records it with each allow, so that an access review can tell
/// which grants were used.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Path {
    pub teams: Vec<SmolStr>,
    /// The organisation the link is to: the client, or its parent for an
    /// operational unit. None when no link is involved (a standard system user,
    /// or an agent acting for its owner).
    pub link_client: Option<OrgNo>,
    pub link_roles: Vec<SmolStr>,
}

/// The system users an employee may use for a client and package.
#[derive(Debug, Clone)]
pub(crate) struct Resolution<'a> {
    pub(crate) usable: Vec<&'a SystemUser>,
    /// Why each other candidate is not usable.
    pub(crate) reasons: Vec<Reason>,
}

impl Resolution<'_> {
    /// No system user, because the data may not be decided on.
    pub(crate) fn data_stale(why: &str) -> Self {
        Self {
            usable: Vec::new(),
            reasons: Decision::data_stale(why).reasons,
        }
    }
}

/// Decides the request for every system user the employee's organisation owns and
/// keeps those allowed: the same decision Authorize makes, once per candidate.
pub(crate) fn resolve<'a>(snap: &'a Snapshot, q: &Query) -> Resolution<'a> {
    let w = &snap.world;
    let none = |message: String| Resolution {
        usable: Vec::new(),
        reasons: vec![Reason {
            policy_id: "vakt:no-candidates".into(),
            message,
        }],
    };
    let Some(employee) = w.employee(&q.employee) else {
        return none(format!(
            "employee {} is not known, so no system user can be chosen",
            q.employee
        ));
    };
    let candidates = w.system_users_owned_by(employee.organization);
    if candidates.is_empty() {
        return none(format!(
            "organisation {} owns no system users",
            employee.organization
        ));
    }
    let mut usable = Vec::new();
    let mut reasons = Vec::new();
    for id in candidates {
        let Some(su) = w.system_user(id) else {
            continue;
        };
        let subject = Subject::with(w, Some(employee), Some(su), q.client_no);
        let d = decide_subject(snap, &snap.world, q, &subject, id);
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
