//! What every call shares: the sidecar's state, what the transport tells about a
//! call, and decision ids.

use crate::decision_log::{Caller, DecisionLog, Trace};
use crate::snapshot::SnapshotHandle;
use tonic::Request;

/// Default maximum number of requests in one AuthorizeBatch.
pub const DEFAULT_MAX_BATCH: usize = 1000;

/// The state every call shares.
pub struct Vakt {
    pub snapshot: SnapshotHandle,
    pub log: DecisionLog,
    pub max_batch: usize,
}

/// What the transport tells about a call, for the decision log.
#[derive(Default)]
pub(crate) struct CallMeta {
    pub caller: Caller,
    pub trace: Trace,
}

impl CallMeta {
    /// What the call's transport and headers tell; nothing when no decision log
    /// would record it.
    pub(super) fn of<T>(req: &Request<T>, log: &DecisionLog) -> Self {
        if !log.is_enabled() {
            return Self::default();
        }
        let header = |name: &str| {
            req.metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            caller: Caller {
                peer: req.remote_addr().map(|a| a.to_string()),
                service: header("x-vakt-caller").filter(|s| crate::ids::check_id(s).is_ok()),
            },
            trace: header("traceparent")
                .map(|v| Trace::from_traceparent(&v))
                .unwrap_or_default(),
        }
    }
}

/// A new decision id: a UUIDv7, so ids sort by time.
pub(crate) fn new_decision_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
