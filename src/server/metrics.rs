//! The server's metrics: what the calls record as they go. `export` renders them
//! with the rest of the sidecar's state.

use crate::metrics::{Histogram, Labelled};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The calls, as metric labels: the gRPC methods by name, and the AuthZEN
/// endpoints by path without the leading slash (`access/v1/evaluation`), so the
/// `method` label alone tells the protocol.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Method {
    Authorize = 0,
    AuthorizeBatch = 1,
    ResolveSystemUser = 2,
    Status = 3,
    WhoCan = 4,
    WhatCan = 5,
    AuthzenEvaluation = 6,
    AuthzenEvaluations = 7,
    AuthzenSearchSubject = 8,
    AuthzenSearchResource = 9,
    AuthzenSearchAction = 10,
    AuthorizeWithToken = 11,
    VerifyToken = 12,
    /// Envoy's `envoy.service.auth.v3.Authorization/Check`.
    EnvoyCheck = 13,
}

/// How many [`Method`]s there are.
const N_METHODS: usize = 14;

impl Method {
    pub(crate) fn name(self) -> &'static str {
        METHODS[self as usize].1
    }

    /// The AuthZEN endpoint at `path`, if it is one (the metadata document is
    /// not a call, and unknown paths are not counted, so the labels stay few).
    pub(crate) fn authzen(path: &str) -> Option<Method> {
        let path = path.strip_prefix('/')?;
        METHODS[Method::AuthzenEvaluation as usize..=Method::AuthzenSearchAction as usize]
            .iter()
            .find(|(_, name)| *name == path)
            .map(|(m, _)| *m)
    }
}

pub(super) const METHODS: [(Method, &str); N_METHODS] = [
    (Method::Authorize, "Authorize"),
    (Method::AuthorizeBatch, "AuthorizeBatch"),
    (Method::ResolveSystemUser, "ResolveSystemUser"),
    (Method::Status, "Status"),
    (Method::WhoCan, "WhoCan"),
    (Method::WhatCan, "WhatCan"),
    (Method::AuthzenEvaluation, "access/v1/evaluation"),
    (Method::AuthzenEvaluations, "access/v1/evaluations"),
    (Method::AuthzenSearchSubject, "access/v1/search/subject"),
    (Method::AuthzenSearchResource, "access/v1/search/resource"),
    (Method::AuthzenSearchAction, "access/v1/search/action"),
    (Method::AuthorizeWithToken, "AuthorizeWithToken"),
    (Method::VerifyToken, "VerifyToken"),
    (
        Method::EnvoyCheck,
        "envoy.service.auth.v3.Authorization/Check",
    ),
];

/// An AuthZEN answer's HTTP status as the gRPC status code the same failure
/// gets on the gRPC listener, so that one `code` label means one thing
/// (`code!="OK"` counts the failures of both). What has no counterpart is
/// UNKNOWN.
pub(crate) fn code_of_http(status: u16) -> tonic::Code {
    use tonic::Code;
    match status {
        200..=299 => Code::Ok,
        400 | 415 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 => Code::Unimplemented,
        // tonic's answer to a message over its size limit.
        413 | 431 => Code::OutOfRange,
        429 => Code::ResourceExhausted,
        500 => Code::Internal,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

/// gRPC status codes 0..=16, by name.
pub(super) const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// What the calls record.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub(super) calls: [[AtomicU64; 17]; N_METHODS],
    pub(super) latency: [Histogram; N_METHODS],
    /// Decisions by method (Authorize, AuthorizeBatch) and outcome (allow, deny).
    pub(super) decisions: [[AtomicU64; 2]; 2],
    pub(super) denies_by_policy: Labelled,
    pub(super) shed: AtomicU64,
    /// Shadow evaluation: decisions made under the candidate policies, and those
    /// that differ from the answer, by direction (allow→deny, deny→allow).
    pub(super) shadow_decisions: AtomicU64,
    pub(super) shadow_flips: [AtomicU64; 2],
}

impl ServerMetrics {
    /// One call ended with `code` after `took`.
    pub(crate) fn call(&self, m: Method, code: tonic::Code, took: Duration) {
        let c = (code as usize).min(16);
        self.calls[m as usize][c].fetch_add(1, Ordering::Relaxed);
        self.latency[m as usize].observe(took);
        if code == tonic::Code::ResourceExhausted {
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One shadow decision; `flip` when it differs from the served one, which
    /// `served_allowed` was.
    pub(crate) fn shadow(&self, served_allowed: bool, flip: bool) {
        self.shadow_decisions.fetch_add(1, Ordering::Relaxed);
        if flip {
            self.shadow_flips[usize::from(!served_allowed)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One decision of an Authorize or AuthorizeBatch call; a deny counts each
    /// policy that denied it.
    pub(crate) fn decision(&self, batch: bool, allowed: bool, reasons: &[crate::decision::Reason]) {
        self.decisions[usize::from(batch)][usize::from(!allowed)].fetch_add(1, Ordering::Relaxed);
        if !allowed {
            for r in reasons {
                self.denies_by_policy.add(&r.policy_id);
            }
        }
    }
}
