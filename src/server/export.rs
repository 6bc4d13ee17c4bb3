//! Exporting the metrics: the one table of every metric (its Prometheus name and
//! help, its OpenTelemetry name, unit and description, and how its values are
//! read), the Prometheus text for `/metrics` and the instruments an OpenTelemetry
//! meter reads for OTLP, both made from that table. Values are read from the
//! calls' counters (`metrics`) and, at the moment they are read, the data's and
//! the decision log's state.

use super::call::Vakt;
use super::metrics::{CODES, METHODS};
use crate::metrics::{
    Exposition, Histogram, ProcessStats, BUILD_COMMIT, BUILD_DATE, BUILD_VERSION,
};
use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;
use std::sync::atomic::Ordering;
use std::sync::Weak;

/// The directions of a shadow flip: the served decision, then the candidate's.
const SHADOW_DIRECTIONS: [&str; 2] = ["allow_to_deny", "deny_to_allow"];

/// One metric, as both exporters show it. A new metric is one more entry in
/// [`METRICS`].
struct Metric {
    /// The Prometheus family's name, type and HELP text.
    prometheus: &'static str,
    kind: Kind,
    help: &'static str,
    /// The OpenTelemetry instrument, when the metric is sent by OTLP too.
    otlp: Option<Otlp>,
    read: Read,
}

/// A Prometheus family's type.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metric's OpenTelemetry instrument: its name (OpenTelemetry's own for the
/// process's figures), its kind and value type, unit and description.
struct Otlp {
    name: &'static str,
    instrument: Instrument,
    unit: Option<&'static str>,
    description: &'static str,
}

/// The observable instruments the metrics use, by value type.
#[derive(Clone, Copy)]
enum Instrument {
    U64Counter,
    F64Counter,
    I64UpDownCounter,
    U64Gauge,
    I64Gauge,
    F64Gauge,
}

/// How a metric's values are read.
#[derive(Clone, Copy)]
enum Read {
    /// Samples from the sidecar's state.
    Sidecar(fn(&Vakt, &mut Out)),
    /// Histograms from the sidecar's state (Prometheus only).
    Histograms(fn(&Vakt, HistogramOut)),
    /// One of the process's figures, when the system tells it; without it the
    /// Prometheus family is left out whole.
    Process(fn(&ProcessStats) -> Option<Value>),
    /// Samples that need no state (the build).
    Fixed(fn(&mut Out)),
}

/// A sample's labels, as name and value pairs.
type Labels<'a> = &'a [(&'a str, &'a str)];

/// Where a reader of histograms puts them.
type HistogramOut<'a> = &'a mut dyn FnMut(Labels, &Histogram);

/// A sample's value, in the type it is counted in; each exporter converts it to
/// its own.
#[derive(Clone, Copy)]
enum Value {
    U64(u64),
    F64(f64),
}

impl Value {
    fn f64(self) -> f64 {
        match self {
            Value::U64(n) => n as f64,
            Value::F64(v) => v,
        }
    }

    fn u64(self) -> u64 {
        match self {
            Value::U64(n) => n,
            Value::F64(v) => v as u64,
        }
    }

    fn i64(self) -> i64 {
        match self {
            Value::U64(n) => n as i64,
            Value::F64(v) => v as i64,
        }
    }
}

/// Where a reader puts its samples.
struct Out<'a> {
    /// Whether the samples are for Prometheus, which also shows some series
    /// while they are zero (see `vakt_requests_total`).
    prometheus: bool,
    emit: &'a mut dyn FnMut(Labels, Value),
}

impl Out<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: Value) {
        (self.emit)(labels, value)
    }
}

fn load(n: &std::sync::atomic::AtomicU64) -> Value {
    Value::U64(n.load(Ordering::Relaxed))
}

/// Every metric, in the order `/metrics` shows them.
const METRICS: &[Metric] = &[
    Metric {
        prometheus: "vakt_requests_total",
        kind: Kind::Counter,
        help: "gRPC and AuthZEN calls by method (gRPC method, or AuthZEN path) and status code (AuthZEN's HTTP status as its gRPC counterpart).",
        otlp: Some(Otlp {
            name: "vakt.requests",
            instrument: Instrument::U64Counter,
            unit: None,
            description: "gRPC and AuthZEN calls by method and status code",
        }),
        read: Read::Sidecar(|v, out| {
            for (method, name) in METHODS {
                for (code, code_name) in CODES.iter().enumerate() {
                    let n = v.metrics().calls[method as usize][code].load(Ordering::Relaxed);
                    // Prometheus shows every method's OK series from the start, so
                    // that rates over it begin at zero; OTLP sends what was seen.
                    if n > 0 || (code == 0 && out.prometheus) {
                        out.sample(&[("method", name), ("code", code_name)], Value::U64(n));
                    }
                }
            }
        }),
    },
    Metric {
        prometheus: "vakt_request_duration_seconds",
        kind: Kind::Histogram,
        help: "Time from a call's arrival in Vakt's handler to its answer, by method.",
        otlp: None,
        read: Read::Histograms(|v, out| {
            for (method, name) in METHODS {
                out(&[("method", name)], &v.metrics().latency[method as usize]);
            }
        }),
    },
    Metric {
        prometheus: "vakt_decisions_total",
        kind: Kind::Counter,
        help: "Decisions answered, by method and decision.",
        otlp: Some(Otlp {
            name: "vakt.decisions",
            instrument: Instrument::U64Counter,
            unit: None,
            description: "Decisions answered, by method and decision",
        }),
        read: Read::Sidecar(|v, out| {
            for (i, name) in ["Authorize", "AuthorizeBatch"].iter().enumerate() {
                for (j, decision) in ["allow", "deny"].iter().enumerate() {
                    out.sample(
                        &[("method", name), ("decision", decision)],
                        load(&v.metrics().decisions[i][j]),
                    );
                }
            }
        }),
    },
    Metric {
        prometheus: "vakt_denies_total",
        kind: Kind::Counter,
        help: "Denies by the policy that denied (a deny with several reasons counts for each).",
        otlp: Some(Otlp {
            name: "vakt.denies",
            instrument: Instrument::U64Counter,
            unit: None,
            description: "Denies by the policy that denied",
        }),
        read: Read::Sidecar(|v, out| {
            for (policy, n) in v.metrics().denies_by_policy.snapshot() {
                out.sample(&[("policy_id", &policy)], Value::U64(n));
            }
        }),
    },
    Metric {
        prometheus: "vakt_requests_in_flight",
        kind: Kind::Gauge,
        help: "Calls in progress (health checks not counted).",
        otlp: Some(Otlp {
            name: "vakt.requests.in_flight",
            instrument: Instrument::I64Gauge,
            unit: None,
            description: "Calls in progress",
        }),
        read: Read::Sidecar(|v, out| {
            out.sample(&[], Value::U64(v.admission().in_flight.load(Ordering::Relaxed) as u64))
        }),
    },
    Metric {
        prometheus: "vakt_requests_shed_total",
        kind: Kind::Counter,
        help: "Calls refused with RESOURCE_EXHAUSTED because too many were in progress.",
        otlp: Some(Otlp {
            name: "vakt.requests.shed",
            instrument: Instrument::U64Counter,
            unit: None,
            description: "Calls refused with RESOURCE_EXHAUSTED",
        }),
        read: Read::Sidecar(|v, out| out.sample(&[], load(&v.metrics().shed))),
    },
    Metric {
        prometheus: "vakt_shadow_decisions_total",
        kind: Kind::Counter,
        help: "Decisions also made under the candidate policies (--shadow-policies).",
        otlp: None,
        read: Read::Sidecar(|v, out| out.sample(&[], load(&v.metrics().shadow_decisions))),
    },
    Metric {
        prometheus: "vakt_shadow_flips_total",
        kind: Kind::Counter,
        help: "Shadow decisions that differ from the answer, by direction (served to candidate).",
        otlp: Some(Otlp {
            name: "vakt.shadow.flips",
            instrument: Instrument::U64Counter,
            unit: None,
            description: "Shadow decisions that differ from the answer, by direction",
        }),
        read: Read::Sidecar(|v, out| {
            for (i, direction) in SHADOW_DIRECTIONS.iter().enumerate() {
                out.sample(
                    &[("direction", direction)],
                    load(&v.metrics().shadow_flips[i]),
                );
            }
        }),
    },
    Metric {
        prometheus: "vakt_policy_info",
        kind: Kind::Gauge,
        help: "The policy revision served (always 1; the revisions are labels).",
        otlp: None,
        read: Read::Sidecar(|v, out| {
            let snap = v.snapshot().load();
            out.sample(
                &[
                    ("revision", &snap.revision),
                    ("rules_revision", &snap.rules_revision),
                ],
                Value::F64(1.0),
            );
        }),
    },
    Metric {
        prometheus: "vakt_data_sequence",
        kind: Kind::Gauge,
        help: "The data sequence of the world served.",
        otlp: Some(Otlp {
            name: "vakt.data.sequence",
            instrument: Instrument::U64Gauge,
            unit: None,
            description: "The data sequence served",
        }),
        read: Read::Sidecar(|v, out| out.sample(&[], Value::U64(v.snapshot().load().data.sequence))),
    },
    Metric {
        prometheus: "vakt_data_age_seconds",
        kind: Kind::Gauge,
        help: "Time since the data was last confirmed current.",
        otlp: Some(Otlp {
            name: "vakt.data.age",
            instrument: Instrument::F64Gauge,
            unit: Some("s"),
            description: "Time since the data was last confirmed current",
        }),
        read: Read::Sidecar(|v, out| out.sample(&[], Value::F64(v.data().age().as_secs_f64()))),
    },
    Metric {
        prometheus: "vakt_data_last_sync_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the data was last synced from Altinn (its sync stamp), in seconds since the Unix epoch; 0 when it carries none.",
        otlp: Some(Otlp {
            name: "vakt.data.last_sync",
            instrument: Instrument::F64Gauge,
            unit: Some("s"),
            description: "When the data was last synced from Altinn, in seconds since the Unix epoch (0: never)",
        }),
        read: Read::Sidecar(|v, out| {
            let synced_at = v.snapshot().load().synced_at;
            let (unix, _) = super::status::sync_times(synced_at, std::time::SystemTime::now());
            out.sample(&[], Value::F64(unix))
        }),
    },
    Metric {
        prometheus: "vakt_data_sync_age_seconds",
        kind: Kind::Gauge,
        help: "Time since the data was last synced from Altinn; no sample when it carries no sync stamp.",
        otlp: Some(Otlp {
            name: "vakt.data.sync_age",
            instrument: Instrument::F64Gauge,
            unit: Some("s"),
            description: "Time since the data was last synced from Altinn",
        }),
        read: Read::Sidecar(|v, out| {
            let synced_at = v.snapshot().load().synced_at;
            if synced_at.is_some() {
                let (_, age) = super::status::sync_times(synced_at, std::time::SystemTime::now());
                out.sample(&[], Value::F64(age))
            }
        }),
    },
    Metric {
        prometheus: "vakt_data_sync_state",
        kind: Kind::Gauge,
        help: "The data source's state: 1 for the current one.",
        otlp: None,
        read: Read::Sidecar(|v, out| {
            let state = v.data().state().as_str();
            for s in crate::source::SyncState::ALL {
                let name = s.as_str();
                let on = if name == state { 1.0 } else { 0.0 };
                out.sample(&[("state", name)], Value::F64(on));
            }
        }),
    },
    Metric {
        prometheus: "vakt_data_changes_applied_total",
        kind: Kind::Counter,
        help: "Data changes applied since start.",
        otlp: None,
        read: Read::Sidecar(|v, out| out.sample(&[], Value::U64(v.data().changes_applied()))),
    },
    Metric {
        prometheus: "vakt_reload_failures_total",
        kind: Kind::Counter,
        help: "Reloads of policies, schema or data refused (the last good snapshot kept serving).",
        otlp: Some(Otlp {
            name: "vakt.reload.failures",
            instrument: Instrument::U64Counter,
            unit: None,
            description: "Reloads refused",
        }),
        read: Read::Sidecar(|v, out| out.sample(&[], Value::U64(v.data().reload_failures()))),
    },
    Metric {
        prometheus: "vakt_data_sync_failures_total",
        kind: Kind::Counter,
        help: "Times following the data source failed (lost connection, a refused change).",
        otlp: Some(Otlp {
            name: "vakt.data_sync.failures",
            instrument: Instrument::U64Counter,
            unit: None,
            description: "Failures to follow the data source",
        }),
        read: Read::Sidecar(|v, out| out.sample(&[], Value::U64(v.data().sync_failures()))),
    },
    Metric {
        prometheus: "vakt_decision_log_records_total",
        kind: Kind::Counter,
        help: "Decision records by sink and outcome: written, dropped (a buffered sink) or failed (a durable sink; the call failed).",
        otlp: Some(Otlp {
            name: "vakt.decision_log.records",
            instrument: Instrument::U64Counter,
            unit: None,
            description: "Decision records by sink and outcome",
        }),
        read: Read::Sidecar(|v, out| {
            let decision_log = v.log();
            for (sink, stats, _) in decision_log.sinks() {
                for (outcome, n) in [
                    ("written", &stats.written),
                    ("dropped", &stats.dropped),
                    ("failed", &stats.failed),
                ] {
                    out.sample(&[("sink", sink), ("outcome", outcome)], load(n));
                }
            }
        }),
    },
    Metric {
        prometheus: "vakt_decision_log_fsync_duration_seconds",
        kind: Kind::Histogram,
        help: "Time a durable file sink's fsync took, per group of records.",
        otlp: None,
        read: Read::Histograms(|v, out| {
            let decision_log = v.log();
            for (sink, _, fsync) in decision_log.sinks() {
                if let Some(h) = fsync {
                    out(&[("sink", sink)], h);
                }
            }
        }),
    },
    Metric {
        prometheus: "vakt_build_info",
        kind: Kind::Gauge,
        help: "The build (always 1; version, commit and build date are labels).",
        otlp: Some(Otlp {
            name: "vakt.build_info",
            instrument: Instrument::U64Gauge,
            unit: None,
            description: "The build: always 1; version, commit and build date are attributes",
        }),
        read: Read::Fixed(|out| {
            out.sample(
                &[
                    ("version", BUILD_VERSION),
                    ("commit", BUILD_COMMIT),
                    ("build_date", BUILD_DATE),
                ],
                Value::U64(1),
            )
        }),
    },
    // The process's figures, under the names Prometheus's client libraries and
    // OpenTelemetry's semantic conventions give them.
    Metric {
        prometheus: "process_cpu_seconds_total",
        kind: Kind::Counter,
        help: "Total user and system CPU time spent in seconds.",
        otlp: Some(Otlp {
            name: "process.cpu.time",
            instrument: Instrument::F64Counter,
            unit: Some("s"),
            description: "User and system CPU time spent",
        }),
        read: Read::Process(|p| p.cpu_seconds.map(Value::F64)),
    },
    Metric {
        prometheus: "process_resident_memory_bytes",
        kind: Kind::Gauge,
        help: "Resident memory size in bytes.",
        otlp: Some(Otlp {
            name: "process.memory.usage",
            instrument: Instrument::I64UpDownCounter,
            unit: Some("By"),
            description: "Resident memory",
        }),
        read: Read::Process(|p| p.resident_bytes.map(Value::U64)),
    },
    Metric {
        prometheus: "process_open_fds",
        kind: Kind::Gauge,
        help: "Number of open file descriptors.",
        otlp: Some(Otlp {
            name: "process.unix.file_descriptor.count",
            instrument: Instrument::I64UpDownCounter,
            unit: None,
            description: "Open file descriptors",
        }),
        read: Read::Process(|p| p.open_fds.map(Value::U64)),
    },
    Metric {
        prometheus: "process_max_fds",
        kind: Kind::Gauge,
        help: "Maximum number of open file descriptors.",
        otlp: Some(Otlp {
            name: "process.unix.file_descriptor.limit",
            instrument: Instrument::U64Gauge,
            unit: None,
            description: "The limit on open file descriptors (soft)",
        }),
        read: Read::Process(|p| p.max_fds.map(Value::U64)),
    },
    Metric {
        prometheus: "process_start_time_seconds",
        kind: Kind::Gauge,
        help: "Start time of the process since unix epoch in seconds.",
        otlp: Some(Otlp {
            name: "process.start_time",
            instrument: Instrument::F64Gauge,
            unit: Some("s"),
            description: "When the process started, in seconds since 1970",
        }),
        read: Read::Process(|p| p.start_time_seconds.map(Value::F64)),
    },
];

/// Registers every metric of [`METRICS`] that has an OpenTelemetry instrument
/// with `meter`, read from the same state when the exporter collects. The
/// sidecar's metrics are read for as long as it lives; the build's and the
/// process's need no sidecar (each callback reads /proc when the exporter
/// collects).
pub fn register_otlp(meter: &Meter, vakt: Weak<Vakt>) {
    for metric in METRICS {
        if let Some(otlp) = &metric.otlp {
            register(meter, &vakt, otlp, metric.read);
        }
    }
}

/// The samples `read` gives now, each passed to `emit`, for OTLP.
fn observe(read: Read, vakt: &Weak<Vakt>, emit: &mut dyn FnMut(Labels, Value)) {
    let mut out = Out {
        prometheus: false,
        emit,
    };
    match read {
        Read::Sidecar(r) => {
            if let Some(v) = vakt.upgrade() {
                r(&v, &mut out);
            }
        }
        Read::Process(r) => {
            if let Some(value) = r(&ProcessStats::read()) {
                out.sample(&[], value);
            }
        }
        Read::Fixed(r) => r(&mut out),
        Read::Histograms(_) => {}
    }
}

fn attributes(labels: &[(&str, &str)]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string()))
        .collect()
}

/// Registers one observable instrument as `otlp` describes it, filled by `read`.
fn register(meter: &Meter, vakt: &Weak<Vakt>, otlp: &Otlp, read: Read) {
    // The builders differ in type by instrument, so the same steps are spelt out
    // for each; `$convert` turns a value into the instrument's type.
    macro_rules! build {
        ($builder:ident, $convert:ident) => {{
            let vakt = vakt.clone();
            let mut b = meter.$builder(otlp.name).with_description(otlp.description);
            if let Some(unit) = otlp.unit {
                b = b.with_unit(unit);
            }
            let _ = b
                .with_callback(move |o| {
                    observe(read, &vakt, &mut |labels, value| {
                        o.observe(value.$convert(), &attributes(labels))
                    })
                })
                .build();
        }};
    }
    match otlp.instrument {
        Instrument::U64Counter => build!(u64_observable_counter, u64),
        Instrument::F64Counter => build!(f64_observable_counter, f64),
        Instrument::I64UpDownCounter => build!(i64_observable_up_down_counter, i64),
        Instrument::U64Gauge => build!(u64_observable_gauge, u64),
        Instrument::I64Gauge => build!(i64_observable_gauge, i64),
        Instrument::F64Gauge => build!(f64_observable_gauge, f64),
    }
}

/// Every metric of [`METRICS`], in the Prometheus text format.
pub fn render(vakt: &Vakt) -> String {
    let mut e = Exposition::default();
    // Read once, so the figures shown together were read together.
    let process = ProcessStats::read();
    for metric in METRICS {
        let (name, kind, help) = (metric.prometheus, metric.kind.as_str(), metric.help);
        match metric.read {
            Read::Sidecar(r) => {
                e.family(name, kind, help);
                r(
                    vakt,
                    &mut Out {
                        prometheus: true,
                        emit: &mut |labels, value| e.sample(name, labels, value.f64()),
                    },
                );
            }
            Read::Fixed(r) => {
                e.family(name, kind, help);
                r(&mut Out {
                    prometheus: true,
                    emit: &mut |labels, value| e.sample(name, labels, value.f64()),
                });
            }
            Read::Histograms(r) => {
                e.family(name, kind, help);
                r(vakt, &mut |labels, h| e.histogram(name, labels, h));
            }
            Read::Process(r) => {
                if let Some(value) = r(&process) {
                    e.family(name, kind, help);
                    e.sample(name, &[], value.f64());
                }
            }
        }
    }
    e.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::{DecisionLog, LogOptions};
    use crate::rules::snapshot::{Snapshot, Sources};
    use std::time::Duration;

    /// The text `render` gave for `fixed_state` before the metrics were listed in
    /// one table (with `steady`'s placeholders); the table must not change a byte
    /// of it.
    const GOLDEN: &str = include_str!("export_golden.prom");

    /// The OTLP instruments `register_otlp` made for `fixed_state` before the table,
    /// as `otlp_lines` lists them.
    const OTLP_GOLDEN: &str = include_str!("export_golden.otlp");

    /// A sidecar with every counter moved, a file sink, a failed reload and a
    /// failed sync, so each family has samples.
    fn fixed_state(dir: &std::path::Path) -> Vakt {
        let snap = Snapshot::build(&Sources::embedded()).expect("the embedded default loads");
        let spec = format!("file:{}", dir.join("decisions.log").display())
            .parse()
            .expect("a file sink spec");
        let (log, _writers) =
            DecisionLog::open(&[spec], &LogOptions::default()).expect("the sink opens");
        let vakt = Vakt::new(snap, log);
        let m = vakt.metrics();
        m.call(
            super::super::metrics::Method::Authorize,
            tonic::Code::Ok,
            Duration::from_millis(3),
        );
        m.call(
            super::super::metrics::Method::AuthzenEvaluation,
            tonic::Code::ResourceExhausted,
            Duration::from_micros(40),
        );
        m.decision(false, true, &[]);
        m.decision(true, false, &[]);
        m.denies_by_policy.add("policy0");
        m.shadow(true, true);
        m.shadow(false, false);
        vakt.admission().in_flight.store(2, Ordering::Relaxed);
        vakt.data().applied();
        vakt.data()
            .fail(crate::source::SyncState::ReloadFailed, "bad".to_owned());
        vakt.data()
            .fail(crate::source::SyncState::Reconnecting, "lost".to_owned());
        vakt
    }

    /// The rendered text with what moves by itself (the data's age, the process's
    /// figures) replaced by `V`, and what differs from build to build or run to run
    /// (the build's labels, the policy revisions, the sink's temporary path) by a
    /// fixed word.
    fn steady(vakt: &Vakt, text: &str, dir: &std::path::Path) -> String {
        let snap = vakt.snapshot().load();
        let text = text
            .replace(
                &format!(
                    "version=\"{BUILD_VERSION}\",commit=\"{BUILD_COMMIT}\",build_date=\"{BUILD_DATE}\""
                ),
                "BUILD",
            )
            .replace(
                &format!(
                    "revision=\"{}\",rules_revision=\"{}\"",
                    snap.revision, snap.rules_revision
                ),
                "REVISIONS",
            )
            .replace(&dir.display().to_string(), "DIR");
        text.lines()
            .map(|l| {
                if l.starts_with("vakt_data_age_seconds ") || l.starts_with("process_") {
                    format!("{} V\n", l.split(' ').next().unwrap_or_default())
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    }

    #[test]
    fn prometheus_text_is_unchanged() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let vakt = fixed_state(dir.path());
        let text = steady(&vakt, &render(&vakt), dir.path());
        if text != GOLDEN {
            eprintln!("----\n{text}----");
        }
        assert_eq!(text, GOLDEN);
    }

    /// An exporter that keeps, as text, what `describe` makes of the last export.
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for Capture {
        fn export(
            &self,
            rm: &opentelemetry_sdk::metrics::data::ResourceMetrics,
        ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send
        {
            *self.0.lock().expect("not poisoned") = describe(rm);
            std::future::ready(Ok(()))
        }
        fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
        fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
            opentelemetry_sdk::metrics::Temporality::Cumulative
        }
    }

    /// One line per instrument (name, unit, description, value type and kind) and
    /// one per data point (attributes and value; `V` for the figures that move by
    /// themselves), sorted, since the SDK keeps data points in no fixed order.
    fn describe(rm: &opentelemetry_sdk::metrics::data::ResourceMetrics) -> Vec<String> {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        fn points<T: std::fmt::Display + Copy>(
            out: &mut Vec<String>,
            name: &str,
            moving: bool,
            data: &MetricData<T>,
        ) -> &'static str {
            // The SDK keeps attributes in no fixed order either.
            let mut add = |mut attrs: Vec<String>, v: T| {
                attrs.sort();
                let v = if moving {
                    "V".to_owned()
                } else {
                    v.to_string()
                };
                out.push(format!("{name} {{{}}} {v}", attrs.join(",")));
            };
            let kv = |a: &opentelemetry::KeyValue| format!("{}={}", a.key, a.value);
            match data {
                MetricData::Gauge(g) => {
                    for p in g.data_points() {
                        add(p.attributes().map(kv).collect(), p.value());
                    }
                    "gauge"
                }
                MetricData::Sum(s) => {
                    for p in s.data_points() {
                        add(p.attributes().map(kv).collect(), p.value());
                    }
                    if s.is_monotonic() {
                        "sum monotonic"
                    } else {
                        "sum"
                    }
                }
                MetricData::Histogram(_) => "histogram",
                MetricData::ExponentialHistogram(_) => "exponential histogram",
            }
        }
        let mut out = Vec::new();
        for scope in rm.scope_metrics() {
            for m in scope.metrics() {
                let name = m.name();
                let moving = name.starts_with("process.") || name == "vakt.data.age";
                let (ty, kind) = match m.data() {
                    AggregatedMetrics::U64(d) => ("u64", points(&mut out, name, moving, d)),
                    AggregatedMetrics::I64(d) => ("i64", points(&mut out, name, moving, d)),
                    AggregatedMetrics::F64(d) => ("f64", points(&mut out, name, moving, d)),
                };
                out.push(format!(
                    "{name} unit={:?} description={:?} {ty} {kind}",
                    m.unit(),
                    m.description()
                ));
            }
        }
        out.sort();
        out
    }

    /// What `register_otlp` registers for `vakt`, collected once, as `describe`
    /// lists it, with the build's labels and the sink's path as fixed words.
    fn otlp_lines(vakt: &std::sync::Arc<Vakt>, dir: &std::path::Path) -> String {
        use opentelemetry::metrics::MeterProvider as _;
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader =
            opentelemetry_sdk::metrics::PeriodicReader::builder(Capture(got.clone())).build();
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(reader)
            .build();
        register_otlp(&provider.meter("vakt"), std::sync::Arc::downgrade(vakt));
        provider.force_flush().expect("the reader collects");
        let lines = got.lock().expect("not poisoned").clone();
        let _ = provider.shutdown();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        text.replace(&format!("version={BUILD_VERSION}"), "version=VERSION")
            .replace(BUILD_COMMIT, "COMMIT")
            .replace(BUILD_DATE, "DATE")
            .replace(&dir.display().to_string(), "DIR")
    }

    #[test]
    fn otlp_instruments_are_unchanged() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let vakt = std::sync::Arc::new(fixed_state(dir.path()));
        let text = otlp_lines(&vakt, dir.path());
        if text != OTLP_GOLDEN {
            eprintln!("----\n{text}----");
        }
        assert_eq!(text, OTLP_GOLDEN);
    }
}
