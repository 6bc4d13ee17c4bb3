//! AuthZEN's JSON, read strictly (every required member, every type) and mapped
//! onto Vakt's request; and Vakt's answers written back in AuthZEN's shapes.
//!
//! The mapping: the subject is the employee (`type` "employee"); the resource is
//! the system user (`type` "system_user"), with the client acted for as its
//! property `client_org_number`; the action is Vakt's Cedar action (`name`, e.g.
//! "useSystemUser"), with the access package as its property `access_package`;
//! the context is the request's context, checked against the schema as over gRPC.

use crate::decision::{InvalidField, RawRequest};
use crate::server::authorize::Answer;
use serde_json::{json, Map, Value};

pub(super) const EMPLOYEE: &str = "employee";
pub(super) const SYSTEM_USER: &str = "system_user";
pub(super) const ORGANIZATION: &str = "organization";

/// A request that is not well-formed; answered with 400 and this message.
#[derive(Debug)]
pub(crate) struct BadRequest(pub String);

fn bad(path: &str, what: &str) -> BadRequest {
    BadRequest(format!("{path}: {what}"))
}

/// The four members of an evaluation, each as given (after defaults).
#[derive(Clone, Copy, Default)]
pub(crate) struct Entities<'a> {
    pub subject: Option<&'a Value>,
    pub action: Option<&'a Value>,
    pub resource: Option<&'a Value>,
    pub context: Option<&'a Value>,
}

impl<'a> Entities<'a> {
    /// The members of a request object.
    pub fn of(m: &'a Map<String, Value>) -> Self {
        Self {
            subject: m.get("subject"),
            action: m.get("action"),
            resource: m.get("resource"),
            context: m.get("context"),
        }
    }

    /// An item of a batch: each member it gives replaces the default whole.
    pub fn over(item: &'a Map<String, Value>, defaults: Self) -> Self {
        Self {
            subject: item.get("subject").or(defaults.subject),
            action: item.get("action").or(defaults.action),
            resource: item.get("resource").or(defaults.resource),
            context: item.get("context").or(defaults.context),
        }
    }
}

fn object<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a Map<String, Value>, BadRequest> {
    match v {
        None | Some(Value::Null) => Err(bad(path, "is required")),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(bad(path, "must be an object")),
    }
}

fn opt_object<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, BadRequest> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(bad(&format!("{path}.{key}"), "must be an object")),
    }
}

fn string<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, BadRequest> {
    match m.get(key) {
        None | Some(Value::Null) => Err(bad(&format!("{path}.{key}"), "is required")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(&format!("{path}.{key}"), "must be a string")),
    }
}

fn opt_string<'a>(
    m: Option<&'a Map<String, Value>>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, BadRequest> {
    match m.and_then(|m| m.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(&format!("{path}.{key}"), "must be a string")),
    }
}

/// The caller's context: an object, or nothing.
fn context(v: Option<&Value>) -> Result<Option<Map<String, Value>>, BadRequest> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(_) => Err(bad("context", "must be an object")),
    }
}

/// An entity's `type` and `id`, both required.
fn typed<'a>(
    v: Option<&'a Value>,
    path: &str,
) -> Result<(&'a Map<String, Value>, &'a str, &'a str), BadRequest> {
    let m = object(v, path)?;
    Ok((m, string(m, "type", path)?, string(m, "id", path)?))
}

fn expect_type(t: &str, want: &str, path: &str) -> Result<(), BadRequest> {
    if t == want {
        Ok(())
    } else {
        Err(bad(
            &format!("{path}.type"),
            &format!("must be {want:?} (got {t:?})"),
        ))
    }
}

/// The action's name and its `access_package` property, if any.
fn action(v: Option<&Value>) -> Result<(String, Option<String>), BadRequest> {
    let m = object(v, "action")?;
    let name = string(m, "name", "action")?.to_owned();
    let props = opt_object(m, "properties", "action")?;
    let package = opt_string(props, "access_package", "action.properties")?.map(str::to_owned);
    Ok((name, package))
}

/// A system user resource: its id and the client it acts for.
fn system_user(v: Option<&Value>) -> Result<(String, String), BadRequest> {
    let (m, t, id) = typed(v, "resource")?;
    expect_type(t, SYSTEM_USER, "resource")?;
    let props = opt_object(m, "properties", "resource")?;
    let client = opt_string(props, "client_org_number", "resource.properties")?
        .ok_or_else(|| bad("resource.properties.client_org_number", "is required"))?;
    Ok((id.to_owned(), client.to_owned()))
}

/// An employee subject's id.
fn employee(v: Option<&Value>) -> Result<String, BadRequest> {
    let (_, t, id) = typed(v, "subject")?;
    expect_type(t, EMPLOYEE, "subject")?;
    Ok(id.to_owned())
}

/// One access evaluation as Vakt's request.
pub(crate) fn evaluation(e: Entities<'_>) -> Result<RawRequest, BadRequest> {
    let employee_id = employee(e.subject)?;
    let (action, package) = action(e.action)?;
    let access_package =
        package.ok_or_else(|| bad("action.properties.access_package", "is required"))?;
    let (system_user_id, client_org_number) = system_user(e.resource)?;
    Ok(RawRequest {
        employee_id,
        system_user_id,
        client_org_number,
        access_package,
        action,
        context: context(e.context)?,
    })
}

/// Subject search (who can): the request, or None when the types asked about
/// are not Vakt's (no results). The resource is a system user with the client
/// as its property, or an organisation (the client, through any system user).
pub(crate) fn subject_search(body: &Map<String, Value>) -> Result<Option<RawRequest>, BadRequest> {
    let subject = object(body.get("subject"), "subject")?;
    let t = string(subject, "type", "subject")?;
    let (action, package) = action(body.get("action"))?;
    let access_package =
        package.ok_or_else(|| bad("action.properties.access_package", "is required"))?;
    let (m, rt, id) = typed(body.get("resource"), "resource")?;
    let ctx = context(body.get("context"))?;
    if t != EMPLOYEE {
        return Ok(None);
    }
    let (system_user_id, client_org_number) = match rt {
        SYSTEM_USER => {
            let props = opt_object(m, "properties", "resource")?;
            let client = opt_string(props, "client_org_number", "resource.properties")?
                .ok_or_else(|| bad("resource.properties.client_org_number", "is required"))?;
            (id.to_owned(), client.to_owned())
        }
        ORGANIZATION => (String::new(), id.to_owned()),
        _ => return Ok(None),
    };
    Ok(Some(RawRequest {
        employee_id: String::new(),
        system_user_id,
        client_org_number,
        access_package,
        action,
        context: ctx,
    }))
}

/// Resource search (what can): the request, or None when the types asked about
/// are not Vakt's. The client and the package are optional filters.
pub(crate) fn resource_search(body: &Map<String, Value>) -> Result<Option<RawRequest>, BadRequest> {
    let (_, st, id) = typed(body.get("subject"), "subject")?;
    let (action, package) = action(body.get("action"))?;
    let resource = object(body.get("resource"), "resource")?;
    let rt = string(resource, "type", "resource")?;
    let props = opt_object(resource, "properties", "resource")?;
    let client = opt_string(props, "client_org_number", "resource.properties")?;
    let ctx = context(body.get("context"))?;
    if st != EMPLOYEE || rt != SYSTEM_USER {
        return Ok(None);
    }
    Ok(Some(RawRequest {
        employee_id: id.to_owned(),
        system_user_id: String::new(),
        client_org_number: client.unwrap_or_default().to_owned(),
        access_package: package.unwrap_or_default(),
        action,
        context: ctx,
    }))
}

/// Action search: the employee, the system user and client, and the context;
/// None when the types are not Vakt's.
pub(crate) fn action_search(body: &Map<String, Value>) -> Result<Option<RawRequest>, BadRequest> {
    let (_, st, id) = typed(body.get("subject"), "subject")?;
    let (m, rt, su) = typed(body.get("resource"), "resource")?;
    let ctx = context(body.get("context"))?;
    if st != EMPLOYEE || rt != SYSTEM_USER {
        return Ok(None);
    }
    let props = opt_object(m, "properties", "resource")?;
    let client = opt_string(props, "client_org_number", "resource.properties")?
        .ok_or_else(|| bad("resource.properties.client_org_number", "is required"))?;
    Ok(Some(RawRequest {
        employee_id: id.to_owned(),
        system_user_id: su.to_owned(),
        client_org_number: client.to_owned(),
        access_package: String::new(),
        action: String::new(),
        context: ctx,
    }))
}

/// A search's `page`: its token and limit.
pub(crate) fn page(body: &Map<String, Value>) -> Result<(String, u32), BadRequest> {
    let Some(page) = opt_object(body, "page", "")? else {
        return Ok((String::new(), 0));
    };
    let token = opt_string(Some(page), "token", "page")?
        .unwrap_or_default()
        .to_owned();
    let limit = match page.get("limit") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("page.limit", "must be a non-negative integer"))?
            .min(u64::from(u32::MAX)) as u32,
    };
    Ok((token, limit))
}

/// The request without its `page`, which names the query a token belongs to.
pub(crate) fn query_text(body: &Map<String, Value>) -> String {
    let mut m = body.clone();
    m.remove("page");
    Value::Object(m).to_string()
}

/// A field Vakt's check names, as the AuthZEN member it came from.
pub(super) fn invalid(e: InvalidField) -> BadRequest {
    let member = match e.field.as_str() {
        "employee_id" => "subject.id",
        "system_user_id" => "resource.id",
        "client_org_number" => "resource.properties.client_org_number",
        "access_package" => "action.properties.access_package",
        "action" => "action.name",
        other => other,
    };
    BadRequest(format!("{member}: {}", e.message))
}

/// A decision: `decision`, and a context with Vakt's reasons and the ids that
/// find it in the decision log. The one conversion from the domain answer.
pub(super) fn decision(a: &Answer<'_>) -> Value {
    json!({
        "decision": a.decision.allowed,
        "context": {
            "decision_id": a.decision_id,
            "revision": a.revision,
            "data_sequence": a.data_sequence,
            "reasons": a.decision.reasons.iter().map(|r| json!({"policy_id": r.policy_id, "message": r.message})).collect::<Vec<_>>(),
        }
    })
}

/// A batch item that could not be decided: a deny, with the error.
pub(super) fn item_error(message: &str) -> Value {
    json!({"decision": false, "context": {"error": {"status": 400, "message": message}}})
}

/// A path, as result properties.
pub(super) fn path(p: &crate::decision::Path) -> Value {
    let mut m = Map::new();
    m.insert("team_ids".into(), json!(p.teams));
    // Deprecated: the name before gRPC's `team_ids` was used here too; kept so
    // that existing callers keep working until it is removed.
    m.insert("teams".into(), json!(p.teams));
    if let Some(o) = p.link_client {
        m.insert("link_client_org_number".into(), json!(o.to_string()));
    }
    m.insert("link_roles".into(), json!(p.link_roles));
    Value::Object(m)
}

/// A search answer: `page` first, then the results.
pub(super) fn search_answer(next_token: &str, results: Vec<Value>) -> Value {
    json!({
        "page": {"next_token": next_token, "count": results.len()},
        "results": results,
    })
}
