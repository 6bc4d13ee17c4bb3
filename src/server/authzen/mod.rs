//! The OpenID AuthZEN Authorization API 1.0 over HTTP/1.1 and JSON, on a listener
//! of its own (`--authzen-listen`), with the same connection limits, TLS and
//! allow-list as the gRPC listener:
//!
//! - `POST /access/v1/evaluation` and `/access/v1/evaluations`: decided exactly as
//!   `Authorize` and `AuthorizeBatch` decide, recorded in the same decision log,
//!   under the same limits;
//! - `POST /access/v1/search/subject`, `/search/resource` and `/search/action`:
//!   the reverse queries, with their pages and tokens (off unless
//!   `--reverse-queries`);
//! - `GET /.well-known/authzen-configuration`: what this PDP offers.
//!
//! `wire.rs` reads and writes AuthZEN's JSON; this file routes, limits and
//! answers. A malformed request is a 400 naming the member, never a decision.

pub(crate) mod wire;

use super::accept::{ConnInfo, Listener};
use super::authorize::decide_and_log;
use super::call::{CallMeta, Vakt};
use super::error::CallError;
use super::reverse::{what_can_page, who_can_page};
use crate::decision::reverse::page_size;
use crate::decision::{decide, InvalidField, Query, RawRequest};
use crate::rules::snapshot::Snapshot;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::server::Connected as _;
use wire::{BadRequest, Entities};

const EVALUATION: &str = "/access/v1/evaluation";
const EVALUATIONS: &str = "/access/v1/evaluations";
const SEARCH_SUBJECT: &str = "/access/v1/search/subject";
const SEARCH_RESOURCE: &str = "/access/v1/search/resource";
const SEARCH_ACTION: &str = "/access/v1/search/action";
const CONFIGURATION: &str = "/.well-known/authzen-configuration";

/// How long a request's headers may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the AuthZEN API on `listeners` until `shutdown` completes. `base_url`
/// is the PDP's identifier in the metadata; without it, the address each
/// connection came in on.
pub async fn serve_authzen(
    listeners: Vec<Listener>,
    vakt: Arc<Vakt>,
    base_url: Option<String>,
    shutdown: impl Future<Output = ()> + Send,
) {
    use tokio_stream::StreamExt as _;
    let options = vakt.limits();
    let mut incoming =
        super::accept::incoming_counted(listeners, &options.accept_limits(), vakt.connections());
    let base_url = Arc::new(base_url);
    // hyper refuses (431) a header block that does not fit its read buffer, but
    // the buffer's fill depends on how the bytes arrive: one write of 100 KB may
    // be parsed whole. So the buffer only stops a flood, and `respond` measures
    // every block against the limit exactly. (hyper's floor is 8 KiB.)
    let max_header_bytes = options.max_header_bytes as usize;
    let read_buffer = (max_header_bytes + 8 * 1024).max(8 * 1024);
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            () = &mut shutdown => return,
            c = incoming.next() => match c {
                Some(Ok(c)) => c,
                Some(Err(_)) => continue,
                None => return,
            },
        };
        let info = conn.connect_info();
        // Connections hold the state weakly, as the admin listener does: a
        // keep-alive connection must not keep the decision log open at shutdown.
        let vakt = Arc::downgrade(&vakt);
        let base_url = base_url.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let vakt = vakt.upgrade();
                let info = info.clone();
                let base_url = base_url.clone();
                async move {
                    Ok::<_, Infallible>(match vakt {
                        Some(_) if header_block_len(&req) > max_header_bytes => {
                            header_block_too_large(max_header_bytes)
                        }
                        Some(vakt) => respond(&vakt, &info, base_url.as_deref(), req).await,
                        None => json_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &json!({"error": "stopping"}),
                        ),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(read_buffer)
                .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
                .await;
        });
    }
}

/// The bytes of a request's header block as sent: the request line, each header
/// line and the blank line that ends them (optional whitespace aside, which
/// hyper does not keep).
fn header_block_len(req: &Request<Incoming>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let request_line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    request_line + headers + 2
}

/// A request's body, at most `--max-message-bytes`, its bytes charged to the
/// request budget (`--max-buffered-request-bytes`, shared with the gRPC
/// listener) as they arrive and given back once the body is read whole.
async fn read_body(vakt: &Vakt, req: Request<Incoming>) -> Result<Bytes, Failure> {
    let options = vakt.limits();
    let limit = options.max_message_bytes;
    let headers = header_block_len(&req);
    let mut held = vakt
        .request_budget()
        .holder(options.max_buffered_request_bytes);
    let too_large = || {
        Failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: larger than {limit} bytes (--max-message-bytes)"),
        )
    };
    let mut body = req.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limit {
            return Err(too_large());
        }
        held.hold(headers + bytes.len() + data.len())
            .map_err(|refused| Failure(StatusCode::TOO_MANY_REQUESTS, refused))?;
        bytes.extend_from_slice(&data);
    }
    Ok(Bytes::from(bytes))
}

/// 431, as hyper answers a block past its buffer, with the limit named.
fn header_block_too_large(limit: usize) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        &json!({ "error": format!("the request's header block is larger than {limit} bytes (--max-header-bytes)") }),
    )
}

/// A failed request: its status and message.
struct Failure(StatusCode, String);

impl From<BadRequest> for Failure {
    fn from(b: BadRequest) -> Self {
        Failure(StatusCode::BAD_REQUEST, b.0)
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        // A field Vakt's check refuses is named as the AuthZEN member it came from.
        if let CallError::InvalidField(f) = e {
            return wire::invalid(f).into();
        }
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Failure(status, e.to_string())
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn respond(
    vakt: &Vakt,
    conn: &ConnInfo,
    base_url: Option<&str>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    conn.touch();
    let started = std::time::Instant::now();
    // Counted as the gRPC calls are, by endpoint and outcome (see server/metrics.rs).
    let counted = super::metrics::Method::authzen(req.uri().path());
    let request_id = req.headers().get("x-request-id").cloned();
    let metadata = req.uri().path() == CONFIGURATION;
    let limit = vakt.limits().request_timeout;
    let answered = tokio::time::timeout(limit, answer(vakt, conn, base_url, req))
        .await
        .unwrap_or_else(|_| {
            Err(Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the request took longer than {limit:?} (--request-timeout)"),
            ))
        });
    let mut response = match answered {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(Failure(status, message)) => {
            let mut r = json_response(status, &json!({ "error": message }));
            if status == StatusCode::METHOD_NOT_ALLOWED {
                let allow = if metadata { "GET" } else { "POST" };
                r.headers_mut()
                    .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
            }
            r
        }
    };
    if let Some(method) = counted {
        let code = super::metrics::code_of_http(response.status().as_u16());
        vakt.metrics().call(method, code, started.elapsed());
    }
    // Echoed on every answer, errors too, so the caller can match them up.
    if let Some(id) = request_id {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

async fn answer(
    vakt: &Vakt,
    conn: &ConnInfo,
    base_url: Option<&str>,
    req: Request<Incoming>,
) -> Result<Value, Failure> {
    let path = req.uri().path().to_owned();
    if path == CONFIGURATION {
        if req.method() != Method::GET {
            return Err(Failure(StatusCode::METHOD_NOT_ALLOWED, "GET only".into()));
        }
        return Ok(configuration(vakt, conn, base_url));
    }
    let known = [
        EVALUATION,
        EVALUATIONS,
        SEARCH_SUBJECT,
        SEARCH_RESOURCE,
        SEARCH_ACTION,
    ];
    if !known.contains(&path.as_str()) {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!(
                "not found: {path}; the AuthZEN endpoints are {}",
                known.join(", ")
            ),
        ));
    }
    if req.method() != Method::POST {
        return Err(Failure(StatusCode::METHOD_NOT_ALLOWED, "POST only".into()));
    }
    let json_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(Failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: must be application/json".into(),
        ));
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let meta = CallMeta::from_parts(Some(conn), conn.remote, header, &vakt.log());
    let body = read_body(vakt, req).await?;
    // Strictly: a member given twice is refused, so that no reader of the body
    // (a proxy, the log, a person) can see another request than the one decided.
    let body: Value = crate::json::parse_at(&body).map_err(|(at, e)| {
        let message = if at.is_empty() {
            format!("body: not JSON: {e}")
        } else {
            format!("{at}: given more than once; each member may be given once ({e})")
        };
        Failure(StatusCode::BAD_REQUEST, message)
    })?;
    let Value::Object(body) = body else {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "body: must be a JSON object".into(),
        ));
    };
    let _admitted = vakt.admit_peer(conn.peer_key()).map_err(Failure::from)?;
    match path.as_str() {
        EVALUATION => evaluation(vakt, Entities::of(&body), &meta).await,
        EVALUATIONS => evaluations(vakt, &body, &meta).await,
        SEARCH_SUBJECT => {
            vakt.reverse_allowed_for(conn.caller_identity().as_deref())?;
            logged("search_subject", conn, search_subject(vakt, &body).await)
        }
        SEARCH_RESOURCE => {
            vakt.reverse_allowed_for(conn.caller_identity().as_deref())?;
            logged("search_resource", conn, search_resource(vakt, &body).await)
        }
        _ => {
            vakt.reverse_allowed_for(conn.caller_identity().as_deref())?;
            logged("search_action", conn, search_action(vakt, &body).await)
        }
    }
}

/// A search answered is logged as the gRPC reverse queries are: who asked, and
/// how much they were told.
fn logged(
    call: &'static str,
    conn: &ConnInfo,
    answer: Result<Value, Failure>,
) -> Result<Value, Failure> {
    if let Ok(v) = &answer {
        tracing::info!(
            call,
            results = v["results"].as_array().map_or(0, Vec::len),
            identity = %crate::decision_log::redact::scrub(conn.identity.as_deref().unwrap_or("")),
            "reverse query"
        );
    }
    answer
}

/// The metadata: each endpoint as an absolute URL under the PDP's identifier.
///
/// That identifier is `--authzen-base-url`, or else the address the connection
/// came in on. Never the request's `Host`: whoever sends the request chooses it,
/// and a cache or a client that trusts the metadata would then be sent to a host
/// of the caller's choosing.
fn configuration(vakt: &Vakt, conn: &ConnInfo, base_url: Option<&str>) -> Value {
    let base = match base_url {
        Some(b) => b.trim_end_matches('/').to_owned(),
        None => {
            let scheme = if conn.tls { "https" } else { "http" };
            // On the Unix socket there is no address; `localhost` is what HTTP
            // clients over a socket put in their URLs.
            match conn.local {
                Some(addr) => format!("{scheme}://{addr}"),
                None => format!("{scheme}://localhost"),
            }
        }
    };
    let mut endpoints = vec![
        ("access_evaluation_endpoint", EVALUATION),
        ("access_evaluations_endpoint", EVALUATIONS),
    ];
    // Only what this PDP answers: the searches when reverse queries are on.
    if vakt.options().reverse_queries {
        endpoints.extend([
            ("search_subject_endpoint", SEARCH_SUBJECT),
            ("search_resource_endpoint", SEARCH_RESOURCE),
            ("search_action_endpoint", SEARCH_ACTION),
        ]);
    }
    let mut m = Map::new();
    m.insert("policy_decision_point".into(), json!(base));
    for (key, path) in endpoints {
        m.insert(key.into(), json!(format!("{base}{path}")));
    }
    Value::Object(m)
}

/// One evaluation, decided and logged as `Authorize` does.
async fn evaluation(vakt: &Vakt, e: Entities<'_>, meta: &CallMeta) -> Result<Value, Failure> {
    let raw = wire::evaluation(e)?;
    let (snap, stale) = vakt.snapshot_for(0).await;
    let q = Query::check(&snap, raw, "").map_err(wire::invalid)?;
    let (answer, receipt) = decide_and_log(vakt, &snap, &q, stale.as_deref(), meta, false);
    receipt.wait().await.map_err(CallError::from)?;
    Ok(wire::decision(&answer))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// A batch's items, and how they are evaluated (`options.evaluations_semantic`).
pub(crate) fn batch(body: &Map<String, Value>) -> Result<(&[Value], Semantic), BadRequest> {
    let items: &[Value] = match body.get("evaluations") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(_) => return Err(BadRequest("evaluations: must be an array".into())),
    };
    let semantic = match body
        .get("options")
        .map(|o| o.as_object().ok_or_else(|| BadRequest("options: must be an object".into())))
        .transpose()?
        .and_then(|o| o.get("evaluations_semantic"))
    {
        None | Some(Value::Null) => Semantic::ExecuteAll,
        Some(Value::String(s)) => match s.as_str() {
            "execute_all" => Semantic::ExecuteAll,
            "deny_on_first_deny" => Semantic::DenyOnFirstDeny,
            "permit_on_first_permit" => Semantic::PermitOnFirstPermit,
            other => {
                return Err(BadRequest(format!(
                    "options.evaluations_semantic: {other:?} is not execute_all, deny_on_first_deny or permit_on_first_permit"
                )))
            }
        },
        Some(_) => return Err(BadRequest("options.evaluations_semantic: must be a string".into())),
    };
    Ok((items, semantic))
}

/// Item `i` of a batch as Vakt's request: its members over the batch's.
pub(crate) fn item(
    i: usize,
    item: &Value,
    defaults: Entities<'_>,
) -> Result<RawRequest, BadRequest> {
    match item {
        Value::Object(m) => wire::evaluation(Entities::over(m, defaults)),
        _ => Err(BadRequest(format!("evaluations[{i}]: must be an object"))),
    }
}

/// A batch, on one snapshot, as `AuthorizeBatch`; without items it is one
/// evaluation. An item that is not well-formed is a deny with its error.
async fn evaluations(
    vakt: &Vakt,
    body: &Map<String, Value>,
    meta: &CallMeta,
) -> Result<Value, Failure> {
    let (items, semantic) = batch(body)?;
    let defaults = Entities::of(body);
    if items.is_empty() {
        return evaluation(vakt, defaults, meta).await;
    }
    let max = vakt.options().max_batch;
    if items.len() > max {
        return Err(CallError::BatchTooLarge {
            got: items.len(),
            max,
        }
        .into());
    }
    let (snap, stale) = vakt.snapshot_for(0).await;
    let mut out = Vec::with_capacity(items.len());
    let mut receipts = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let checked = item(i, it, defaults)
            .and_then(|raw| Query::check(&snap, raw, "").map_err(wire::invalid));
        let allowed = match checked {
            Ok(q) => {
                let (answer, receipt) =
                    decide_and_log(vakt, &snap, &q, stale.as_deref(), meta, true);
                receipts.push(receipt);
                out.push(wire::decision(&answer));
                answer.decision.allowed
            }
            Err(BadRequest(m)) => {
                out.push(wire::item_error(&m));
                false
            }
        };
        match semantic {
            Semantic::DenyOnFirstDeny if !allowed => break,
            Semantic::PermitOnFirstPermit if allowed => break,
            _ => {}
        }
    }
    // No answer, and above all no allow, before every record is written.
    for r in receipts {
        r.wait().await.map_err(CallError::from)?;
    }
    Ok(json!({ "evaluations": out }))
}

/// Subject search: WhoCan. Each result is an employee with the paths by which
/// they may act.
async fn search_subject(vakt: &Vakt, body: &Map<String, Value>) -> Result<Value, Failure> {
    let Some(raw) = wire::subject_search(body)? else {
        return Ok(wire::search_answer("", Vec::new()));
    };
    let (token, limit) = wire::page(body)?;
    let fp = super::cursor::fingerprint(&[&wire::query_text(body)]);
    let found = who_can_page(
        vakt,
        "authzen_subject",
        &fp,
        &token,
        0,
        raw,
        page_size(limit),
    )
    .await?;
    let (page, next) = (&found.page, &found.next_token);
    let results = page
        .items
        .iter()
        .map(|w| {
            json!({
                "type": wire::EMPLOYEE,
                "id": w.employee,
                "properties": {"paths": w.routes.iter().map(|r| {
                    let mut p = wire::path(&r.path);
                    p["system_user_id"] = json!(r.system_user);
                    p
                }).collect::<Vec<_>>()},
            })
        })
        .collect();
    Ok(wire::search_answer(next, results))
}

/// Resource search: WhatCan. Each result is a system user with the client and
/// package it may be used for, and the path.
async fn search_resource(vakt: &Vakt, body: &Map<String, Value>) -> Result<Value, Failure> {
    let Some(raw) = wire::resource_search(body)? else {
        return Ok(wire::search_answer("", Vec::new()));
    };
    let (token, limit) = wire::page(body)?;
    let fp = super::cursor::fingerprint(&[&wire::query_text(body)]);
    let found = what_can_page(
        vakt,
        "authzen_resource",
        &fp,
        &token,
        0,
        raw,
        page_size(limit),
    )
    .await?;
    let (page, next) = (&found.page, &found.next_token);
    let results = page
        .items
        .iter()
        .map(|w| {
            json!({
                "type": wire::SYSTEM_USER,
                "id": w.system_user,
                "properties": {
                    "client_org_number": w.client.to_string(),
                    "access_package": w.access_package,
                    "path": wire::path(&w.path),
                },
            })
        })
        .collect();
    Ok(wire::search_answer(next, results))
}

/// Action search: every action of the schema, with every package the system user
/// holds, that the employee may take on it for the client. A short answer, in one
/// page.
async fn search_action(vakt: &Vakt, body: &Map<String, Value>) -> Result<Value, Failure> {
    let Some(raw) = wire::action_search(body)? else {
        return Ok(wire::search_answer("", Vec::new()));
    };
    // Pages are accepted, but the answer is short and comes whole.
    let _ = wire::page(body)?;
    let (snap, stale) = vakt.snapshot_for(0).await;
    if let Some(why) = stale {
        return Err(CallError::DataStale(why).into());
    }
    let results = allowed_actions(&snap, &raw).map_err(wire::invalid)?;
    Ok(wire::search_answer("", results))
}

/// The actions, each with a package the request's system user holds, that its
/// employee may take for its client; an error when its context fits none.
pub(crate) fn allowed_actions(
    snap: &Snapshot,
    raw: &RawRequest,
) -> Result<Vec<Value>, InvalidField> {
    let packages: Vec<String> = snap
        .world
        .system_user(&raw.system_user_id)
        .map(|su| su.access_packages.iter().map(|p| p.to_string()).collect())
        .unwrap_or_default();
    let mut actions: Vec<&String> = snap.actions.keys().collect();
    actions.sort();
    let mut results = Vec::new();
    // An action whose context the caller's does not fit is not one they can take;
    // when it fits none, the request itself is at fault.
    let mut first_problem = None;
    let mut fitted = false;
    for action in actions {
        for package in &packages {
            let mut r = raw.clone();
            r.action = action.clone();
            r.access_package = package.clone();
            match Query::check(snap, r, "") {
                Ok(q) => {
                    fitted = true;
                    if decide(snap, &q).allowed {
                        results.push(
                            json!({"name": action, "properties": {"access_package": package}}),
                        );
                    }
                }
                Err(e) => {
                    first_problem.get_or_insert(e);
                }
            }
        }
    }
    match (fitted, first_problem) {
        (false, Some(e)) => Err(e),
        _ => Ok(results),
    }
}
