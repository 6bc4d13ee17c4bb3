//! The decision log: one JSON record per decision, on its own stream (stdout by
//! default), apart from Vakt's diagnostic logging (stderr). It is the only place
//! that says which employee was behind a call Altinn saw as a system user's.
//!
//! Records are serialised on the request path and handed to a writer task through
//! a bounded queue, so a slow sink never blocks a decision; records that do not fit
//! are counted, and the count is written to the log once the pressure ends.

use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Who called, as far as the transport tells.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Caller {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The `x-vakt-caller` header, when the calling service sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// W3C trace context of the call, when it carried a `traceparent` header.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

impl Trace {
    /// Parses `traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
    pub fn from_traceparent(v: &str) -> Self {
        let parts: Vec<&str> = v.trim().split('-').collect();
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
        };
        match parts.as_slice() {
            [ver, trace, span, flags] if hex(ver, 2) || *ver == "00" => {
                if hex(trace, 32) && hex(span, 16) && flags.len() == 2 {
                    return Self {
                        trace_id: Some(trace.to_ascii_lowercase()),
                        span_id: Some(span.to_ascii_lowercase()),
                    };
                }
                Self::default()
            }
            _ => Self::default(),
        }
    }
}

/// One decision, as written to the log.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord<'a> {
    pub decision_id: &'a str,
    /// RFC 3339, UTC, microseconds.
    pub timestamp: String,
    /// "authorize" or "resolve_system_user".
    pub call: &'a str,
    pub employee_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_user_external_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_user_owner: Option<&'a str>,
    /// For resolve_system_user: the system users found usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usable_system_users: Option<Vec<&'a str>>,
    pub client_org_number: &'a str,
    pub access_package: &'a str,
    pub action: &'a str,
    /// "allow" or "deny".
    pub decision: &'a str,
    pub reasons: &'a [crate::decide::Reason],
    pub revision: &'a str,
    pub evaluation_us: u64,
    pub caller: &'a Caller,
    #[serde(flatten)]
    pub trace: &'a Trace,
}

/// RFC 3339 timestamp in UTC with microseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// Handle to the decision log; cheap to share.
pub struct DecisionLog {
    tx: Option<mpsc::Sender<String>>,
    dropped: Arc<AtomicU64>,
}

impl DecisionLog {
    /// A log that writes nothing (`--decision-log off`).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A log written to `out` by a background task, with room for `capacity` records.
    pub fn spawn(
        out: Box<dyn Write + Send>,
        capacity: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<String>(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::new(out);
            while let Some(line) = rx.blocking_recv() {
                let _ = writeln!(out, "{line}");
                // Drain what is queued before flushing: many records, one write.
                while let Ok(line) = rx.try_recv() {
                    let _ = writeln!(out, "{line}");
                }
                let lost = counter.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let note = serde_json::json!({
                        "timestamp": now_rfc3339(),
                        "event": "decision_records_dropped",
                        "dropped": lost,
                    });
                    let _ = writeln!(out, "{note}");
                }
                let _ = out.flush();
            }
            let _ = out.flush();
        });
        (
            Self {
                tx: Some(tx),
                dropped,
            },
            task,
        )
    }

    /// Queues one record; never blocks. A record that does not fit is counted.
    pub fn record(&self, rec: &DecisionRecord<'_>) {
        let Some(tx) = &self.tx else { return };
        let line = match serde_json::to_string(rec) {
            Ok(l) => l,
            Err(_) => return,
        };
        if tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped since the last note was written.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent() {
        let t = Trace::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            t.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(t.span_id.as_deref(), Some("00f067aa0ba902b7"));
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert!(Trace::from_traceparent(bad).trace_id.is_none(), "{bad}");
        }
    }

    #[test]
    fn timestamp_is_rfc3339_utc_micros() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2026-11-23T18:23:02.123456Z".len(), "{t}");
        assert!(t.ends_with('Z'));
    }
}
