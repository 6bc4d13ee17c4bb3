//! The decision log: one JSON record per decision, on streams of its own, apart from
//! Vakt's diagnostics. It is the only place that says which employee was behind a
//! call Altinn saw as a system user's.
//!
//! # Layout
//!
//! - [`record`]: the record and its serialisation, secrets scrubbed on the way out
//!   ([`redact`], which every request field a diagnostic writes goes through too).
//! - `sink`: the one sink interface: a bounded queue, a writer thread, durable or
//!   buffered delivery, and the shared submit path.
//! - The media a sink writes to: `stdout`, `file` (with [`rotation`] and
//!   checkpoints) and `otlp`.
//! - [`chain`]: the hash chain; [`checkpoint`]: signed checkpoints of its head and
//!   their keys; `tail`: checking a log against its checkpoint when Vakt continues
//!   it; [`verify`]: checking a whole log, for `vakt audit verify`.

pub mod chain;
pub mod checkpoint;
mod file;
mod otlp;
pub mod record;
pub mod redact;
pub mod rotation;
mod sink;
mod stdout;
mod tail;
pub mod verify;

pub use file::Fsync;
pub use record::{now_rfc3339, Caller, DecisionRecord, EnvoyNote, TokenNote, Trace};
use redact::Redactor;
pub use rotation::Rotation;
pub use sink::{Delivery, SinkStats};

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// Where decision records go: one `--decision-log` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// Standard output, buffered.
    Stdout,
    /// A file, durable (`file:PATH`) or buffered (`file+buffered:PATH`).
    File { path: PathBuf, delivery: Delivery },
    /// An OTLP/gRPC logs collector, buffered (`otlp:URL`) or durable
    /// (`otlp+durable:URL`).
    Otlp {
        endpoint: String,
        delivery: Delivery,
    },
    /// No record is written.
    Off,
}

/// The forms `--decision-log` accepts, for error messages and help.
pub const SINK_FORMS: &str =
    "stdout, file:PATH, file+buffered:PATH, otlp:URL, otlp+durable:URL or off";

impl FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let nonempty = |rest: &str| {
            if rest.is_empty() {
                Err(format!("{s:?} names no destination after the colon"))
            } else {
                Ok(rest.to_owned())
            }
        };
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        Ok(match kind {
            "stdout" if rest.is_empty() => Self::Stdout,
            "off" if rest.is_empty() => Self::Off,
            "file" => Self::File {
                path: nonempty(rest)?.into(),
                delivery: Delivery::Durable,
            },
            "file+buffered" => Self::File {
                path: nonempty(rest)?.into(),
                delivery: Delivery::Buffered,
            },
            "otlp" => Self::Otlp {
                endpoint: nonempty(rest)?,
                delivery: Delivery::Buffered,
            },
            "otlp+durable" => Self::Otlp {
                endpoint: nonempty(rest)?,
                delivery: Delivery::Durable,
            },
            _ => return Err(format!("{s:?}: expected {SINK_FORMS}")),
        })
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => write!(f, "stdout"),
            Self::Off => write!(f, "off"),
            Self::File { path, delivery } => {
                let kind = match delivery {
                    Delivery::Durable => "file",
                    Delivery::Buffered => "file+buffered",
                };
                write!(f, "{kind}:{}", path.display())
            }
            Self::Otlp { endpoint, delivery } => {
                let kind = match delivery {
                    Delivery::Durable => "otlp+durable",
                    Delivery::Buffered => "otlp",
                };
                // Shown with its credentials masked: this is how logs and
                // errors name the sink.
                write!(f, "{kind}:{}", crate::url_secrets::mask_url(endpoint))
            }
        }
    }
}

/// How the sinks of a log write.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// When a file sink fsyncs.
    pub fsync: Fsync,
    /// When a file sink rotates.
    pub rotation: Rotation,
    /// Context attributes never written as they are.
    pub redact: Vec<String>,
    /// Signs every checkpoint of a file sink.
    pub signer: Option<Arc<checkpoint::Signer>>,
    /// Continue a file log that does not match its checkpoint (recorded in it).
    pub accept_mismatch: bool,
    /// WARN when a file log's file system has less free space than this (0: never).
    pub min_free_bytes: u64,
}

/// The free space below which a file sink WARNs, by default.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 1 << 30;

thread_local! {
    /// The buffer a request thread serialises its records into.
    static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(1024));
}

/// The most a request thread's record buffer keeps between records.
const LINE_KEPT: usize = 64 << 10;

/// Records each sink's queue can hold before a buffered sink drops and a durable one
/// fails calls.
const QUEUE_CAPACITY: usize = 65_536;

/// A sink that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("--decision-log {spec}: {message}")]
pub struct OpenError {
    pub spec: String,
    pub message: String,
}

/// Why a decision could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LogUnavailable(pub String);

/// Handle to the decision log: every record goes to every sink. The sinks' writers
/// run until the last handle is dropped; then [`Writers::finish`] waits for them.
#[derive(Default)]
pub struct DecisionLog {
    sinks: Vec<Arc<Sink>>,
    redactor: Redactor,
}

/// One sink: its name (as `--decision-log` gives it), its queue, and for a file its
/// fsync times.
struct Sink {
    spec: SinkSpec,
    name: String,
    queue: sink::SinkQueue,
    fsync: Option<Arc<crate::metrics::Histogram>>,
}

/// The writer threads of a decision log.
#[derive(Default)]
#[must_use = "wait for the writers to finish after dropping the log"]
pub struct Writers(Vec<std::thread::JoinHandle<()>>);

impl Writers {
    /// Takes on the writers of sinks opened later.
    pub fn extend(&mut self, more: Writers) {
        self.0.extend(more.0);
    }

    /// Waits for every writer to write what was queued and close its medium.
    pub async fn finish(self) {
        let threads = self.0;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Records submitted to durable sinks; wait for it before answering the call.
#[must_use]
pub struct Receipt(Vec<tokio::sync::oneshot::Receiver<Result<(), String>>>);

impl Receipt {
    /// The receipt of a record no durable sink takes.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// Ok once every durable sink has the record.
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

impl DecisionLog {
    /// A log that writes nothing (`--decision-log off`).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Opens every sink named; none is started unless all can be.
    pub fn open(specs: &[SinkSpec], opts: &LogOptions) -> Result<(Self, Writers), OpenError> {
        Self::default().reopen(specs, opts)
    }

    /// A log with the sinks `specs` names: those this log already has are kept as
    /// they are (their queues, writers and chains go on), the others are opened.
    /// Sinks this log has and `specs` does not close once the last handle to this
    /// log is dropped. Returns the new log and the writers of the sinks it opened.
    pub fn reopen(
        &self,
        specs: &[SinkSpec],
        opts: &LogOptions,
    ) -> Result<(Self, Writers), OpenError> {
        let mut log = Self {
            sinks: Vec::new(),
            redactor: Redactor::new(opts.redact.iter().cloned()),
        };
        let mut writers = Writers::default();
        for spec in specs {
            if let Some(kept) = self.sinks.iter().find(|s| &s.spec == spec) {
                log.sinks.push(kept.clone());
                continue;
            }
            let fail = |message: String| OpenError {
                spec: spec.to_string(),
                message,
            };
            let name = spec.to_string();
            let mut fsync = None;
            let started = match spec {
                SinkSpec::Off => continue,
                SinkSpec::Stdout => sink::start(
                    "vakt-log-stdout".into(),
                    stdout::Stream::new(Box::new(std::io::stdout())),
                    chain::Chain::default(),
                    Delivery::Buffered,
                    QUEUE_CAPACITY,
                ),
                SinkSpec::File { path, delivery } => {
                    let times = Arc::new(crate::metrics::Histogram::default());
                    fsync = Some(times.clone());
                    let (medium, chain) = file::FileMedium::open(
                        path,
                        file::FileOptions {
                            fsync: opts.fsync,
                            rotation: opts.rotation,
                            signer: opts.signer.clone(),
                            accept_mismatch: opts.accept_mismatch,
                            min_free_bytes: opts.min_free_bytes,
                            fsync_times: times,
                        },
                    )
                    .map_err(fail)?;
                    sink::start(
                        "vakt-log-file".into(),
                        medium,
                        chain,
                        *delivery,
                        QUEUE_CAPACITY,
                    )
                }
                SinkSpec::Otlp { endpoint, delivery } => {
                    let medium = otlp::Collector::new(endpoint).map_err(fail)?;
                    sink::start(
                        "vakt-log-otlp".into(),
                        medium,
                        chain::Chain::default(),
                        *delivery,
                        QUEUE_CAPACITY,
                    )
                }
            };
            let (queue, thread) =
                started.map_err(|e| fail(format!("cannot start its writer: {e}")))?;
            log.sinks.push(Arc::new(Sink {
                spec: spec.clone(),
                name,
                queue,
                fsync,
            }));
            writers.0.push(thread);
        }
        Ok((log, writers))
    }

    /// Whether any sink takes records; when none does, callers need not build one.
    pub fn is_enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Hands one record to every sink without waiting; wait on the receipt before
    /// answering the call.
    pub fn submit(&self, rec: &DecisionRecord<'_>) -> Receipt {
        if self.sinks.is_empty() {
            return Receipt(Vec::new());
        }
        // Serialised into this thread's buffer, kept from record to record, then
        // copied once into the shared record the sinks' writers take.
        let record: Arc<str> = LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            rec.write_json(&self.redactor, &mut line);
            let record = Arc::from(line.as_str());
            // A record with a large context leaves no large buffer behind.
            if line.capacity() > LINE_KEPT {
                *line = String::with_capacity(1024);
            }
            record
        });
        Receipt(
            self.sinks
                .iter()
                .filter_map(|s| s.queue.submit(record.clone()))
                .collect(),
        )
    }

    /// Each sink by name with its counters.
    pub fn stats(&self) -> impl Iterator<Item = (&str, &SinkStats)> {
        self.sinks
            .iter()
            .map(|s| (s.name.as_str(), &*s.queue.stats))
    }

    /// Each sink by name with its counters and, for a file, its fsync times.
    pub fn sinks(
        &self,
    ) -> impl Iterator<Item = (&str, &SinkStats, Option<&crate::metrics::Histogram>)> {
        self.sinks
            .iter()
            .map(|s| (s.name.as_str(), &*s.queue.stats, s.fsync.as_deref()))
    }

    /// Whether a durable sink's last delivery failed: calls fail until one succeeds,
    /// and the health service says the decision service is not serving.
    pub fn durable_failing(&self) -> bool {
        self.sinks.iter().any(|s| {
            s.queue.is_durable()
                && s.queue
                    .stats
                    .failing
                    .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Records lost by buffered sinks, in all.
    pub fn dropped(&self) -> u64 {
        self.stats()
            .map(|(_, s)| s.dropped.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_specs_parse_and_print_back() {
        for s in [
            "stdout",
            "off",
            "file:/var/log/d.jsonl",
            "file+buffered:d.jsonl",
            "otlp:http://127.0.0.1:4317",
            "otlp+durable:http://c:4317",
        ] {
            let spec: SinkSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "file:a:b".parse::<SinkSpec>().unwrap(),
            SinkSpec::File {
                path: "a:b".into(),
                delivery: Delivery::Durable
            }
        );
        for bad in ["", "stdout:x", "file:", "files:x", "otlp"] {
            let e = bad.parse::<SinkSpec>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
