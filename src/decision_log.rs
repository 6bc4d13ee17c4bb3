//! The decision log: one JSON record per decision, on its own stream (stdout by
//! default), apart from Vakt's diagnostic logging (stderr). It is the only place
//! that says which employee was behind a call Altinn saw as a system user's.
//!
//! Sinks: stdout (buffered: a bounded queue that never blocks a decision; records
//! that do not fit are counted, and the count is written once the pressure ends)
//! and files (durable: the call is answered only after its record is written and
//! flushed, and fails with UNAVAILABLE when it cannot be). Every sink chains its
//! records with SHA-256 (see [`crate::audit`]). Token-shaped values are never written.

use crate::audit::{Chain, Checkpoint};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
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
    /// The caller's context attributes; fields named in `--decision-log-redact` are
    /// written as "[redacted]".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub caller: &'a Caller,
    #[serde(flatten)]
    pub trace: &'a Trace,
}

/// RFC 3339 timestamp in UTC with microseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// Why a decision could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LogUnavailable(pub String);

/// Token-shaped text (a JWT, an `Authorization` header value, a PEM key) is never
/// written, whichever field it arrives in.
pub fn looks_like_secret(s: &str) -> bool {
    let jwt = |w: &str| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() >= 3
            && parts[0].starts_with("eyJ")
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
            })
    };
    let lower = s.trim().to_ascii_lowercase();
    lower.starts_with("bearer ")
        || lower.starts_with("basic ")
        || s.contains("-----BEGIN")
        || s.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == ';')
            .any(jwt)
}

fn scrub(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if looks_like_secret(s) => *s = "[redacted]".into(),
        serde_json::Value::Array(a) => a.iter_mut().for_each(scrub),
        serde_json::Value::Object(o) => o.values_mut().for_each(scrub),
        _ => {}
    }
}

/// One record waiting for a sink, with the caller's acknowledgement.
pub struct Pending {
    pub(crate) record: String,
    pub(crate) ack: tokio::sync::oneshot::Sender<Result<(), String>>,
}

enum Sink {
    /// Never blocks the request path; overflow is counted and reported.
    Buffered {
        tx: mpsc::Sender<String>,
        dropped: Arc<AtomicU64>,
    },
    /// The call is answered only after the record is written and flushed.
    Durable {
        tx: std::sync::mpsc::SyncSender<Pending>,
        /// False for a buffered file: the call does not wait, and records lost to a
        /// full queue or a failed write are counted.
        durable: bool,
        dropped: Arc<AtomicU64>,
    },
    /// OpenTelemetry logs over OTLP/gRPC; durable (the call waits for the export)
    /// or buffered (a bounded queue; what does not fit or fails is counted).
    Otlp {
        tx: tokio::sync::mpsc::Sender<Pending>,
        durable: bool,
        dropped: Arc<AtomicU64>,
    },
}

/// Handle to the decision log: every record goes to every sink. Cheap to share.
#[derive(Default)]
pub struct DecisionLog {
    sinks: Vec<Sink>,
    /// Context attributes never written as they are.
    redact: Vec<String>,
}

/// Records submitted to durable sinks; wait for it before answering the call.
#[must_use]
pub struct Receipt(Vec<tokio::sync::oneshot::Receiver<Result<(), String>>>);

impl Receipt {
    /// Ok once every durable sink has written the record.
    pub async fn wait(self) -> Result<(), LogUnavailable> {
        for rx in self.0 {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(LogUnavailable(e)),
                Err(_) => return Err(LogUnavailable("the decision log writer stopped".into())),
            }
        }
        Ok(())
    }
}

/// The writer threads of a decision log; join them after the log is dropped.
#[derive(Default)]
pub struct Writers(
    Vec<std::thread::JoinHandle<()>>,
    Vec<tokio::task::JoinHandle<()>>,
);

impl Writers {
    /// Waits for every writer to finish what was queued.
    pub async fn finish(self) {
        for t in self.1 {
            let _ = t.await;
        }
        let threads = self.0;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// When the durable file sink calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// After every group commit, before any of its calls is answered.
    Always,
    /// Never; written records survive a crash of Vakt but not of the machine.
    Never,
}

impl DecisionLog {
    /// A log that writes nothing (`--decision-log off`).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Names context attributes whose values are written as "[redacted]".
    pub fn redact_context_fields(&mut self, names: impl IntoIterator<Item = String>) {
        self.redact.extend(names);
    }

    /// Adds a buffered sink writing JSON lines to `out` (stdout), with room for
    /// `capacity` records. Records that do not fit are counted, and the count is
    /// written to the log once the queue has room again.
    pub fn add_buffered(
        &mut self,
        out: Box<dyn Write + Send>,
        capacity: usize,
        writers: &mut Writers,
    ) {
        let (tx, mut rx) = mpsc::channel::<String>(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        writers.0.push(std::thread::spawn(move || {
            let mut out = std::io::BufWriter::new(out);
            let mut chain = Chain::default();
            while let Some(rec) = rx.blocking_recv() {
                let _ = writeln!(out, "{}", chain.link(&rec));
                // Drain what is queued before flushing: many records, one write.
                while let Ok(rec) = rx.try_recv() {
                    let _ = writeln!(out, "{}", chain.link(&rec));
                }
                let lost = counter.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let note = serde_json::json!({
                        "timestamp": now_rfc3339(),
                        "event": "decision_records_dropped",
                        "dropped": lost,
                    });
                    let _ = writeln!(out, "{}", chain.link(&note.to_string()));
                }
                let _ = out.flush();
            }
            let _ = out.flush();
        }));
        self.sinks.push(Sink::Buffered { tx, dropped });
    }

    /// Adds a durable sink appending to the file at `path`, continuing the hash
    /// chain already in it. Concurrent calls share writes: the writer takes every
    /// record queued, writes them with one system call, flushes (and fsyncs), then
    /// acknowledges them all. A checkpoint of the chain head is kept in
    /// `<path>.checkpoint` and logged.
    pub fn add_durable_file(
        &mut self,
        path: &Path,
        opts: FileSink,
        writers: &mut Writers,
    ) -> Result<(), String> {
        let FileSink {
            fsync,
            rotate_bytes,
            rotate_after,
            durable,
        } = opts;
        // Continue the chain of a log file that exists (a device such as /dev/null
        // has no chain to continue); a file that is empty because it was just
        // rotated continues from its checkpoint.
        let existing = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?,
            _ => String::new(),
        };
        let mut chain = Chain::resume(&existing).map_err(|e| format!("{}: {e}", path.display()))?;
        if existing.trim().is_empty() {
            if let Ok(text) = std::fs::read_to_string(checkpoint_path(path)) {
                let cp: Checkpoint = serde_json::from_str(&text).map_err(|e| {
                    format!("{}: not a checkpoint: {e}", checkpoint_path(path).display())
                })?;
                chain = Chain {
                    seq: cp.records,
                    head: cp.head,
                };
            }
        }
        let mut written = existing.len() as u64;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: cannot open for writing: {e}", path.display()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(65_536);
        let dropped = Arc::new(AtomicU64::new(0));
        let lost = dropped.clone();
        let path = path.to_owned();
        let checkpoint_path = checkpoint_path(&path);
        writers.0.push(std::thread::spawn(move || {
            let mut last_checkpoint = std::time::Instant::now();
            let mut opened = std::time::Instant::now();
            let mut checkpointed = chain.seq;
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while let Ok(p) = rx.try_recv() {
                    batch.push(p);
                }
                let before = chain.clone();
                let mut buf = String::new();
                for p in &batch {
                    buf.push_str(&chain.link(&p.record));
                    buf.push('\n');
                }
                // One write for the whole group: a killed process leaves whole lines.
                let result = file
                    .write_all(buf.as_bytes())
                    .and_then(|()| file.flush())
                    .and_then(|()| {
                        if fsync == Fsync::Always {
                            file.sync_data()
                        } else {
                            Ok(())
                        }
                    })
                    .map_err(|e| format!("{}: {e}", path.display()));
                if result.is_err() {
                    // Nothing of this group counts as written; the chain goes on from
                    // the last record that was.
                    chain = before;
                    if !durable {
                        lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                } else {
                    written += buf.len() as u64;
                    // A buffered file notes, once it can write again, how many records
                    // it lost.
                    let n = lost.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        let note = serde_json::json!({
                            "timestamp": now_rfc3339(),
                            "event": "decision_records_dropped",
                            "dropped": n,
                        });
                        let line = chain.link(&note.to_string()) + "\n";
                        if file.write_all(line.as_bytes()).is_ok() {
                            written += line.len() as u64;
                        } else {
                            lost.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                }
                for p in batch {
                    let _ = p.ack.send(result.clone());
                }
                // Rotate between groups, so no record is ever split across files.
                let full = rotate_bytes.is_some_and(|max| written >= max);
                let old = rotate_after.is_some_and(|age| opened.elapsed() >= age);
                if result.is_ok() && (full || old) {
                    let rotated = rotated_path(&path, chain.seq);
                    let reopened = std::fs::rename(&path, &rotated).and_then(|()| {
                        std::fs::OpenOptions::new().create(true).append(true).open(&path)
                    });
                    match reopened {
                        Ok(f) => {
                            file = f;
                            written = 0;
                            opened = std::time::Instant::now();
                            // The new file starts empty: its checkpoint carries the chain.
                            write_checkpoint(&checkpoint_path, &chain);
                            checkpointed = chain.seq;
                            tracing::info!(file = %rotated.display(), records = chain.seq, "decision log rotated");
                        }
                        // Keep appending to the handle we have: nothing is lost.
                        Err(e) => tracing::error!(error = %e, file = %path.display(), "decision log rotation failed"),
                    }
                }
                if chain.seq != checkpointed
                    && last_checkpoint.elapsed() >= std::time::Duration::from_secs(1)
                {
                    write_checkpoint(&checkpoint_path, &chain);
                    checkpointed = chain.seq;
                    last_checkpoint = std::time::Instant::now();
                }
            }
            if chain.seq != checkpointed {
                write_checkpoint(&checkpoint_path, &chain);
            }
        }));
        self.sinks.push(Sink::Durable {
            tx,
            durable,
            dropped,
        });
        Ok(())
    }

    /// Adds an OpenTelemetry logs sink exporting to `endpoint` (e.g.
    /// `http://127.0.0.1:4317`), durable or buffered. Must be called inside a tokio
    /// runtime.
    pub fn add_otlp(&mut self, endpoint: &str, durable: bool, writers: &mut Writers) {
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        writers
            .1
            .push(tokio::spawn(crate::otlp::run(endpoint.to_owned(), rx)));
        self.sinks.push(Sink::Otlp {
            tx,
            durable,
            dropped: Arc::new(AtomicU64::new(0)),
        });
    }

    /// Hands one record to every sink without waiting; wait on the receipt before
    /// answering the call.
    pub fn submit(&self, rec: &DecisionRecord<'_>) -> Receipt {
        if self.sinks.is_empty() {
            return Receipt(Vec::new());
        }
        let line = match serde_json::to_value(rec) {
            Ok(mut v) => {
                if let Some(ctx) = v.get_mut("context").and_then(|c| c.as_object_mut()) {
                    for name in &self.redact {
                        if let Some(x) = ctx.get_mut(name) {
                            *x = "[redacted]".into();
                        }
                    }
                }
                scrub(&mut v);
                v.to_string()
            }
            Err(e) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(Err(format!("cannot serialise the record: {e}")));
                return Receipt(vec![rx]);
            }
        };
        let mut waits = Vec::new();
        for sink in &self.sinks {
            match sink {
                Sink::Buffered { tx, dropped } => {
                    if tx.try_send(line.clone()).is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Sink::Otlp {
                    tx,
                    durable,
                    dropped,
                } => {
                    let (ack, rx) = tokio::sync::oneshot::channel();
                    let pending = Pending {
                        record: line.clone(),
                        ack,
                    };
                    match tx.try_send(pending) {
                        Ok(()) if *durable => waits.push(rx),
                        Ok(()) => {
                            // Buffered: count what the exporter could not deliver.
                            let dropped = dropped.clone();
                            tokio::spawn(async move {
                                if !matches!(rx.await, Ok(Ok(()))) {
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                }
                            });
                        }
                        Err(e) if *durable => {
                            let p = match e {
                                mpsc::error::TrySendError::Full(p)
                                | mpsc::error::TrySendError::Closed(p) => p,
                            };
                            let _ = p.ack.send(Err("the OTLP export queue is full".into()));
                            waits.push(rx);
                        }
                        Err(_) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Sink::Durable {
                    tx,
                    durable,
                    dropped,
                } => {
                    let (ack, rx) = tokio::sync::oneshot::channel();
                    let pending = Pending {
                        record: line.clone(),
                        ack,
                    };
                    match tx.try_send(pending) {
                        Ok(()) if *durable => waits.push(rx),
                        Ok(()) => {}
                        // Durable and the queue is full (or the writer is gone): fail
                        // the call rather than block or answer unrecorded.
                        Err(e) if *durable => {
                            let p = match e {
                                std::sync::mpsc::TrySendError::Full(p)
                                | std::sync::mpsc::TrySendError::Disconnected(p) => p,
                            };
                            let _ = p
                                .ack
                                .send(Err("the decision log queue is full or stopped".into()));
                            waits.push(rx);
                        }
                        Err(_) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        Receipt(waits)
    }

    /// Records dropped by buffered sinks since their last note was written.
    pub fn dropped(&self) -> u64 {
        self.sinks
            .iter()
            .map(|s| match s {
                Sink::Buffered { dropped, .. } => dropped.load(Ordering::Relaxed),
                Sink::Otlp { dropped, .. } => dropped.load(Ordering::Relaxed),
                Sink::Durable { dropped, .. } => dropped.load(Ordering::Relaxed),
            })
            .sum()
    }
}

/// How a durable file sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSink {
    pub fsync: Fsync,
    /// Rotate once the file holds this many bytes.
    pub rotate_bytes: Option<u64>,
    /// Rotate once the file has been written to for this long.
    pub rotate_after: Option<std::time::Duration>,
    /// Durable (the default): a call waits for its record. Buffered: it does not.
    pub durable: bool,
}

impl Default for FileSink {
    fn default() -> Self {
        Self {
            fsync: Fsync::Always,
            rotate_bytes: None,
            rotate_after: None,
            durable: true,
        }
    }
}

/// `<log>.<seq of its last record, 12 digits>`: a rotated log file. The names sort
/// in chain order, so `vakt audit verify log.* log` checks the whole chain.
pub fn rotated_path(log: &Path, last_seq: u64) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{last_seq:012}"));
    PathBuf::from(name)
}

/// `<log>.checkpoint`: where the chain head of a log file is published.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

/// Writes the checkpoint atomically (temporary file, then rename) and logs it.
fn write_checkpoint(path: &Path, chain: &Chain) {
    let cp = Checkpoint {
        records: chain.seq,
        head: chain.head.clone(),
        timestamp: now_rfc3339(),
    };
    let tmp = path.with_extension("checkpoint.tmp");
    let written = serde_json::to_string(&cp)
        .map_err(std::io::Error::other)
        .and_then(|t| std::fs::write(&tmp, t + "\n"))
        .and_then(|()| std::fs::rename(&tmp, path));
    match written {
        Ok(()) => {
            tracing::info!(records = cp.records, head = %cp.head, file = %path.display(), "decision log checkpoint")
        }
        Err(e) => {
            tracing::error!(error = %e, file = %path.display(), "decision log checkpoint failed")
        }
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

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn token_shaped_values_are_recognised() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJrYXJpIn0.c2lnbmF0dXJl";
        for s in [
            jwt,
            "Bearer abc",
            "bearer eyJ",
            "-----BEGIN PRIVATE KEY-----",
            &format!("kari {jwt}"),
        ] {
            assert!(looks_like_secret(s), "{s}");
        }
        for s in [
            "kari",
            "tk-regnskap",
            "310015156",
            "urn:altinn:accesspackage:a-ordning",
            "01a209d4-7b0c-7347-bd2d-e94ff3ea883c",
            "a.b.c",
        ] {
            assert!(!looks_like_secret(s), "{s}");
        }
    }
}
