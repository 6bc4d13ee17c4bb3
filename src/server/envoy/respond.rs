//! The `CheckResponse` for an outcome: on ALLOW the system user's token in
//! `authorization` (replacing the application's) and Vakt's headers removed; on
//! DENY a 403 whose JSON body carries the reasons and the decision id; in shadow
//! mode a would-be deny let through and marked as such.

use super::{DecisionInput, Denied, Reason};
use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, BoolValue, Struct, Value};
use envoy_types::pb::google::rpc;

/// What was decided for one Check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// Vakt could not decide or could not get the token (Maskinporten down):
    /// denied with 503, so Envoy's client may retry.
    Unavailable,
}

/// A decided Check, ready to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub decision_id: String,
    /// Shadow mode: a Deny or Unavailable is let through and marked.
    pub shadow: bool,
    pub route: Option<String>,
    /// Vakt's headers on the request, removed whenever it goes on.
    pub vakt_headers: Vec<String>,
}

impl Outcome {
    /// The outcome of a decision on `input`.
    pub fn decided(
        input: &DecisionInput,
        verdict: Verdict,
        reasons: Vec<Reason>,
        decision_id: String,
        shadow: bool,
    ) -> Self {
        Self {
            verdict,
            reasons,
            decision_id,
            shadow,
            route: Some(input.route.clone()),
            vakt_headers: input.vakt_headers.clone(),
        }
    }

    /// The outcome of a request denied before deciding.
    pub fn denied(denied: &Denied, decision_id: String, shadow: bool) -> Self {
        Self {
            verdict: Verdict::Deny,
            reasons: vec![denied.reason.clone()],
            decision_id,
            shadow,
            route: denied.route.clone(),
            vakt_headers: denied.vakt_headers.clone(),
        }
    }
}

/// The answer Envoy gets. `token` is the bearer token to inject: needed for an
/// ALLOW (an ALLOW without one, or with one that is not a single header-safe
/// word, is answered as Unavailable: fail closed); used for a shadow deny when
/// there is one, else the request goes on with the application's own header.
pub fn respond(outcome: &Outcome, token: Option<&str>) -> CheckResponse {
    respond_owned(outcome.clone(), token)
}

/// [`respond`] taking the outcome by value: its decision id, route and Vakt's
/// headers move into the answer instead of being copied (Check's own path).
pub fn respond_owned(mut outcome: Outcome, token: Option<&str>) -> CheckResponse {
    let token = token.filter(|t| is_token(t));
    match (outcome.verdict, token, outcome.shadow) {
        (Verdict::Allow, Some(t), _) => ok(outcome, Some(t), "ALLOW"),
        (Verdict::Allow, None, false) => {
            outcome.verdict = Verdict::Unavailable;
            outcome.reasons = vec![Reason::new(
                "vakt:envoy-no-token",
                "allowed, but no usable system-user token was at hand",
            )];
            denied(outcome)
        }
        (Verdict::Allow, None, true) => ok(outcome, None, "ALLOW"),
        (Verdict::Deny | Verdict::Unavailable, t, true) => ok(outcome, t, "SHADOW_DENY"),
        (Verdict::Deny | Verdict::Unavailable, _, false) => denied(outcome),
    }
}

/// A token fit for `authorization: Bearer <token>`: the RFC 6750 b64token
/// characters, so nothing in it can end or split the header.
pub fn is_token(t: &str) -> bool {
    // Every byte is looked at (no early exit) in blocks, which the compiler
    // turns into vector compares: a 1 KB token is a few dozen steps, not a
    // thousand branches.
    fn fits(b: u8) -> bool {
        b.is_ascii_alphanumeric() | matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
    }
    let b = t.as_bytes();
    let mut blocks = b.chunks_exact(32);
    let whole = blocks
        .by_ref()
        .all(|block| block.iter().fold(true, |ok, &c| ok & fits(c)));
    !b.is_empty() && whole && blocks.remainder().iter().all(|&c| fits(c))
}

// `append` is deprecated, and still what every Envoy reads first.
#[allow(deprecated)]
fn header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        // `append: false` replaces the header in every Envoy version (ext_authz
        // reads it before `append_action` when set); the action says the same
        // for readers that only know the newer field.
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

fn ok(outcome: Outcome, token: Option<&str>, decision: &str) -> CheckResponse {
    let headers = token
        .map(|t| {
            let mut bearer = String::with_capacity(7 + t.len());
            bearer.push_str("Bearer ");
            bearer.push_str(t);
            vec![header("authorization", bearer)]
        })
        .unwrap_or_default();
    let dynamic_metadata = Some(metadata(
        decision,
        outcome.decision_id,
        outcome.shadow,
        outcome.route,
    ));
    let ok = OkHttpResponse {
        headers,
        headers_to_remove: outcome.vakt_headers,
        ..Default::default()
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: tonic::Code::Ok as i32,
            message: String::new(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::OkResponse(ok)),
        dynamic_metadata,
    }
}

/// The 403 (or 503) body: the decision, the reasons and the decision id, in
/// that order.
#[derive(serde::Serialize)]
struct DeniedBody<'a> {
    decision: &'a str,
    reasons: Vec<BodyReason<'a>>,
    decision_id: &'a str,
}

#[derive(serde::Serialize)]
struct BodyReason<'a> {
    policy_id: &'a str,
    message: &'a str,
}

fn denied(outcome: Outcome) -> CheckResponse {
    let (code, http, decision) = match outcome.verdict {
        Verdict::Unavailable => (
            tonic::Code::Unavailable,
            HttpStatusCode::ServiceUnavailable,
            "UNAVAILABLE",
        ),
        _ => (
            tonic::Code::PermissionDenied,
            HttpStatusCode::Forbidden,
            "DENY",
        ),
    };
    // Written straight from the outcome (no JSON tree built first).
    let body = serde_json::to_string(&DeniedBody {
        decision,
        reasons: outcome
            .reasons
            .iter()
            .map(|r| BodyReason {
                policy_id: &r.policy_id,
                message: &r.message,
            })
            .collect(),
        decision_id: &outcome.decision_id,
    })
    .unwrap_or_default();
    let first = outcome
        .reasons
        .into_iter()
        .next()
        .map(|r| r.message)
        .unwrap_or_default();
    let id_header = header("x-vakt-decision-id", outcome.decision_id.clone());
    CheckResponse {
        status: Some(rpc::Status {
            code: code as i32,
            message: first,
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http as i32 }),
            headers: vec![header("content-type", "application/json".into()), id_header],
            body,
        })),
        dynamic_metadata: Some(metadata(
            decision,
            outcome.decision_id,
            outcome.shadow,
            outcome.route,
        )),
    }
}

/// What Envoy's access log can show (`%DYNAMIC_METADATA(envoy.filters.http.ext_authz:...)%`).
fn metadata(decision: &str, decision_id: String, shadow: bool, route: Option<String>) -> Struct {
    let s = |v: String| Value {
        kind: Some(Kind::StringValue(v)),
    };
    // Sized for its four fields at once, not grown twice.
    let mut fields = std::collections::HashMap::with_capacity(4);
    fields.insert("vakt_decision".to_owned(), s(decision.to_owned()));
    fields.insert("vakt_decision_id".to_owned(), s(decision_id));
    fields.insert(
        "vakt_shadow".to_owned(),
        Value {
            kind: Some(Kind::BoolValue(shadow)),
        },
    );
    if let Some(r) = route {
        fields.insert("vakt_route".to_owned(), s(r));
    }
    Struct { fields }
}
