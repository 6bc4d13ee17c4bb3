//! The server's metrics: what the calls record as they go. `export` renders them
//! with the rest of the sidecar's state.

use crate::metrics::{Histogram, Labelled};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The calls, as metric labels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Method {
    Authorize = 0,
    AuthorizeBatch = 1,
    ResolveSystemUser = 2,
    Status = 3,
    WhoCan = 4,
    WhatCan = 5,
}

impl Method {
    pub(crate) fn name(self) -> &'static str {
        METHODS[self as usize].1
    }
}

pub(super) const METHODS: [(Method, &str); 6] = [
    (Method::Authorize, "Authorize"),
    (Method::AuthorizeBatch, "AuthorizeBatch"),
    (Method::ResolveSystemUser, "ResolveSystemUser"),
    (Method::Status, "Status"),
    (Method::WhoCan, "WhoCan"),
    (Method::WhatCan, "WhatCan"),
];

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
    pub(super) calls: [[AtomicU64; 17]; 6],
    pub(super) latency: [Histogram; 6],
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
    pub(crate) fn decision(&self, batch: bool, allowed: bool, reasons: &[crate::decide::Reason]) {
        self.decisions[usize::from(batch)][usize::from(!allowed)].fetch_add(1, Ordering::Relaxed);
        if !allowed {
            for r in reasons {
                self.denies_by_policy.add(&r.policy_id);
            }
        }
    }
}
