//! Exporting the metrics: the Prometheus text for `/metrics`, and the instruments
//! an OpenTelemetry meter reads for OTLP. Both read the calls' counters
//! (`metrics`) and, at the moment they are read, the data's and the decision log's
//! state.

use super::call::Vakt;
use super::metrics::{CODES, METHODS};
use crate::metrics::{Exposition, ProcessStats, BUILD_COMMIT, BUILD_DATE, BUILD_VERSION};
use opentelemetry::metrics::{AsyncInstrument, Meter};
use opentelemetry::KeyValue;
use std::sync::atomic::Ordering;
use std::sync::Weak;

/// The directions of a shadow flip: the served decision, then the candidate's.
const SHADOW_DIRECTIONS: [&str; 2] = ["allow_to_deny", "deny_to_allow"];

/// Registers the metrics with an OpenTelemetry meter, read from the same
/// counters when the exporter collects: `vakt.requests` (method, code),
/// `vakt.decisions` (method, decision), `vakt.denies` (policy_id),
/// `vakt.requests.in_flight`, `vakt.requests.shed`, `vakt.shadow.flips`
/// (direction), `vakt.data.sequence`,
/// `vakt.data.age` (s), `vakt.reload.failures`, `vakt.data_sync.failures`,
/// `vakt.decision_log.records` (sink, outcome), `vakt.build_info` (version,
/// commit, build_date) and the process's figures under OpenTelemetry's
/// names: `process.cpu.time` (s), `process.memory.usage` (By),
/// `process.unix.file_descriptor.count`, `process.unix.file_descriptor.limit` and
/// `process.start_time` (s since 1970).
pub fn register_otlp(meter: &Meter, vakt: Weak<Vakt>) {
    register_process(meter);
    counter(
        meter,
        &vakt,
        "vakt.requests",
        "gRPC and AuthZEN calls by method and status code",
        |v, o| {
            for (method, name) in METHODS {
                for (code, code_name) in CODES.iter().enumerate() {
                    let n = v.metrics.calls[method as usize][code].load(Ordering::Relaxed);
                    if n > 0 {
                        o.observe(
                            n,
                            &[
                                KeyValue::new("method", name),
                                KeyValue::new("code", *code_name),
                            ],
                        );
                    }
                }
            }
        },
    );
    counter(
        meter,
        &vakt,
        "vakt.decisions",
        "Decisions answered, by method and decision",
        |v, o| {
            for (i, name) in ["Authorize", "AuthorizeBatch"].iter().enumerate() {
                for (j, decision) in ["allow", "deny"].iter().enumerate() {
                    let n = v.metrics.decisions[i][j].load(Ordering::Relaxed);
                    o.observe(
                        n,
                        &[
                            KeyValue::new("method", *name),
                            KeyValue::new("decision", *decision),
                        ],
                    );
                }
            }
        },
    );
    counter(
        meter,
        &vakt,
        "vakt.denies",
        "Denies by the policy that denied",
        |v, o| {
            for (policy, n) in v.metrics.denies_by_policy.snapshot() {
                o.observe(n, &[KeyValue::new("policy_id", policy)]);
            }
        },
    );
    counter(
        meter,
        &vakt,
        "vakt.requests.shed",
        "Calls refused with RESOURCE_EXHAUSTED",
        |v, o| o.observe(v.metrics.shed.load(Ordering::Relaxed), &[]),
    );
    counter(
        meter,
        &vakt,
        "vakt.shadow.flips",
        "Shadow decisions that differ from the answer, by direction",
        |v, o| {
            for (i, direction) in SHADOW_DIRECTIONS.iter().enumerate() {
                o.observe(
                    v.metrics.shadow_flips[i].load(Ordering::Relaxed),
                    &[KeyValue::new("direction", *direction)],
                );
            }
        },
    );
    counter(
        meter,
        &vakt,
        "vakt.reload.failures",
        "Reloads refused",
        |v, o| o.observe(v.data.reload_failures(), &[]),
    );
    counter(
        meter,
        &vakt,
        "vakt.data_sync.failures",
        "Failures to follow the data source",
        |v, o| o.observe(v.data.sync_failures(), &[]),
    );
    counter(
        meter,
        &vakt,
        "vakt.decision_log.records",
        "Decision records by sink and outcome",
        |v, o| {
            let decision_log = v.log.load();
            for (sink, stats, _) in decision_log.sinks() {
                for (outcome, n) in [
                    ("written", &stats.written),
                    ("dropped", &stats.dropped),
                    ("failed", &stats.failed),
                ] {
                    let labels = [
                        KeyValue::new("sink", sink.to_owned()),
                        KeyValue::new("outcome", outcome),
                    ];
                    o.observe(n.load(Ordering::Relaxed), &labels);
                }
            }
        },
    );
    let v = vakt.clone();
    let _ = meter
        .i64_observable_gauge("vakt.requests.in_flight")
        .with_description("Calls in progress")
        .with_callback(move |o| {
            if let Some(vakt) = v.upgrade() {
                o.observe(vakt.in_flight.load(Ordering::Relaxed) as i64, &[]);
            }
        })
        .build();
    let v = vakt.clone();
    let _ = meter
        .u64_observable_gauge("vakt.data.sequence")
        .with_description("The data sequence served")
        .with_callback(move |o| {
            if let Some(vakt) = v.upgrade() {
                o.observe(vakt.snapshot.load().data.sequence, &[]);
            }
        })
        .build();
    let _ = meter
        .f64_observable_gauge("vakt.data.age")
        .with_unit("s")
        .with_description("Time since the data was last confirmed current")
        .with_callback(move |o| {
            if let Some(vakt) = vakt.upgrade() {
                o.observe(vakt.data.age().as_secs_f64(), &[]);
            }
        })
        .build();
}

/// The build and the process's figures, for OTLP. Each callback reads /proc
/// when the exporter collects.
fn register_process(meter: &Meter) {
    let _ = meter
        .u64_observable_gauge("vakt.build_info")
        .with_description("The build: always 1; version, commit and build date are attributes")
        .with_callback(|o| o.observe(1, &build_labels()))
        .build();
    let _ = meter
        .f64_observable_counter("process.cpu.time")
        .with_unit("s")
        .with_description("User and system CPU time spent")
        .with_callback(|o| {
            if let Some(v) = ProcessStats::read().cpu_seconds {
                o.observe(v, &[]);
            }
        })
        .build();
    let _ = meter
        .i64_observable_up_down_counter("process.memory.usage")
        .with_unit("By")
        .with_description("Resident memory")
        .with_callback(|o| {
            if let Some(v) = ProcessStats::read().resident_bytes {
                o.observe(v as i64, &[]);
            }
        })
        .build();
    let _ = meter
        .i64_observable_up_down_counter("process.unix.file_descriptor.count")
        .with_description("Open file descriptors")
        .with_callback(|o| {
            if let Some(v) = ProcessStats::read().open_fds {
                o.observe(v as i64, &[]);
            }
        })
        .build();
    let _ = meter
        .u64_observable_gauge("process.unix.file_descriptor.limit")
        .with_description("The limit on open file descriptors (soft)")
        .with_callback(|o| {
            if let Some(v) = ProcessStats::read().max_fds {
                o.observe(v, &[]);
            }
        })
        .build();
    let _ = meter
        .f64_observable_gauge("process.start_time")
        .with_unit("s")
        .with_description("When the process started, in seconds since 1970")
        .with_callback(|o| {
            if let Some(v) = ProcessStats::read().start_time_seconds {
                o.observe(v, &[]);
            }
        })
        .build();
}

fn build_labels() -> [KeyValue; 3] {
    [
        KeyValue::new("version", BUILD_VERSION),
        KeyValue::new("commit", BUILD_COMMIT),
        KeyValue::new("build_date", BUILD_DATE),
    ]
}

/// Registers an observable counter that `read` fills from the sidecar's state,
/// for as long as the sidecar lives.
fn counter(
    meter: &Meter,
    vakt: &Weak<Vakt>,
    name: &'static str,
    description: &'static str,
    read: impl Fn(&Vakt, &dyn AsyncInstrument<u64>) + Send + Sync + 'static,
) {
    let vakt = vakt.clone();
    let _ = meter
        .u64_observable_counter(name)
        .with_description(description)
        .with_callback(move |o| {
            if let Some(v) = vakt.upgrade() {
                read(&v, o);
            }
        })
        .build();
}

/// Every metric, in the Prometheus text format.
pub fn render(vakt: &Vakt) -> String {
    let m = &vakt.metrics;
    let mut e = Exposition::default();
    e.family(
        "vakt_requests_total",
        "counter",
        "gRPC and AuthZEN calls by method (gRPC method, or AuthZEN path) and status code (AuthZEN's HTTP status as its gRPC counterpart).",
    );
    for (method, name) in METHODS {
        for (code, code_name) in CODES.iter().enumerate() {
            let n = m.calls[method as usize][code].load(Ordering::Relaxed);
            if n > 0 || code == 0 {
                e.sample(
                    "vakt_requests_total",
                    &[("method", name), ("code", code_name)],
                    n as f64,
                );
            }
        }
    }
    e.family(
        "vakt_request_duration_seconds",
        "histogram",
        "Time from a call's arrival in Vakt's handler to its answer, by method.",
    );
    for (method, name) in METHODS {
        e.histogram(
            "vakt_request_duration_seconds",
            &[("method", name)],
            &m.latency[method as usize],
        );
    }
    e.family(
        "vakt_decisions_total",
        "counter",
        "Decisions answered, by method and decision.",
    );
    for (i, name) in ["Authorize", "AuthorizeBatch"].iter().enumerate() {
        for (j, decision) in ["allow", "deny"].iter().enumerate() {
            e.sample(
                "vakt_decisions_total",
                &[("method", name), ("decision", decision)],
                m.decisions[i][j].load(Ordering::Relaxed) as f64,
            );
        }
    }
    e.family(
        "vakt_denies_total",
        "counter",
        "Denies by the policy that denied (a deny with several reasons counts for each).",
    );
    for (policy, n) in m.denies_by_policy.snapshot() {
        e.sample("vakt_denies_total", &[("policy_id", &policy)], n as f64);
    }
    e.family(
        "vakt_requests_in_flight",
        "gauge",
        "Calls in progress (health checks not counted).",
    );
    e.sample(
        "vakt_requests_in_flight",
        &[],
        vakt.in_flight.load(Ordering::Relaxed) as f64,
    );
    e.family(
        "vakt_requests_shed_total",
        "counter",
        "Calls refused with RESOURCE_EXHAUSTED because too many were in progress.",
    );
    e.sample(
        "vakt_requests_shed_total",
        &[],
        m.shed.load(Ordering::Relaxed) as f64,
    );

    e.family(
        "vakt_shadow_decisions_total",
        "counter",
        "Decisions also made under the candidate policies (--shadow-policies).",
    );
    e.sample(
        "vakt_shadow_decisions_total",
        &[],
        m.shadow_decisions.load(Ordering::Relaxed) as f64,
    );
    e.family(
        "vakt_shadow_flips_total",
        "counter",
        "Shadow decisions that differ from the answer, by direction (served to candidate).",
    );
    for (i, direction) in SHADOW_DIRECTIONS.iter().enumerate() {
        e.sample(
            "vakt_shadow_flips_total",
            &[("direction", direction)],
            m.shadow_flips[i].load(Ordering::Relaxed) as f64,
        );
    }

    let snap = vakt.snapshot.load();
    e.family(
        "vakt_policy_info",
        "gauge",
        "The policy revision served (always 1; the revisions are labels).",
    );
    e.sample(
        "vakt_policy_info",
        &[
            ("revision", &snap.revision),
            ("rules_revision", &snap.rules_revision),
        ],
        1.0,
    );
    e.family(
        "vakt_data_sequence",
        "gauge",
        "The data sequence of the world served.",
    );
    e.sample("vakt_data_sequence", &[], snap.data.sequence as f64);
    let data = &vakt.data;
    e.family(
        "vakt_data_age_seconds",
        "gauge",
        "Time since the data was last confirmed current.",
    );
    e.sample("vakt_data_age_seconds", &[], data.age().as_secs_f64());
    e.family(
        "vakt_data_sync_state",
        "gauge",
        "The data source's state: 1 for the current one.",
    );
    let state = data.state().as_str();
    for s in crate::source::SyncState::ALL {
        let name = s.as_str();
        e.sample(
            "vakt_data_sync_state",
            &[("state", name)],
            if name == state { 1.0 } else { 0.0 },
        );
    }
    e.family(
        "vakt_data_changes_applied_total",
        "counter",
        "Data changes applied since start.",
    );
    e.sample(
        "vakt_data_changes_applied_total",
        &[],
        data.changes_applied() as f64,
    );
    e.family(
        "vakt_reload_failures_total",
        "counter",
        "Reloads of policies, schema or data refused (the last good snapshot kept serving).",
    );
    e.sample(
        "vakt_reload_failures_total",
        &[],
        data.reload_failures() as f64,
    );
    e.family(
        "vakt_data_sync_failures_total",
        "counter",
        "Times following the data source failed (lost connection, a refused change).",
    );
    e.sample(
        "vakt_data_sync_failures_total",
        &[],
        data.sync_failures() as f64,
    );

    e.family(
        "vakt_decision_log_records_total",
        "counter",
        "Decision records by sink and outcome: written, dropped (a buffered sink) or failed (a durable sink; the call failed).",
    );
    let decision_log = vakt.log.load();
    for (sink, stats, _) in decision_log.sinks() {
        for (outcome, n) in [
            ("written", &stats.written),
            ("dropped", &stats.dropped),
            ("failed", &stats.failed),
        ] {
            e.sample(
                "vakt_decision_log_records_total",
                &[("sink", sink), ("outcome", outcome)],
                n.load(Ordering::Relaxed) as f64,
            );
        }
    }
    e.family(
        "vakt_decision_log_fsync_duration_seconds",
        "histogram",
        "Time a durable file sink's fsync took, per group of records.",
    );
    for (sink, _, fsync) in decision_log.sinks() {
        if let Some(h) = fsync {
            e.histogram(
                "vakt_decision_log_fsync_duration_seconds",
                &[("sink", sink)],
                h,
            );
        }
    }
    render_process(&mut e);
    e.into_string()
}

/// The build, and the process's figures under the names Prometheus's client
/// libraries give them.
fn render_process(e: &mut Exposition) {
    e.family(
        "vakt_build_info",
        "gauge",
        "The build (always 1; version, commit and build date are labels).",
    );
    e.sample(
        "vakt_build_info",
        &[
            ("version", BUILD_VERSION),
            ("commit", BUILD_COMMIT),
            ("build_date", BUILD_DATE),
        ],
        1.0,
    );
    let p = ProcessStats::read();
    let figures = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes.map(|v| v as f64),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            p.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            p.max_fds.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in figures {
        if let Some(v) = value {
            e.family(name, kind, help);
            e.sample(name, &[], v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::{DecisionLog, LogOptions};
    use crate::snapshot::{Snapshot, Sources};
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
        let m = &vakt.metrics;
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
        vakt.in_flight.store(2, Ordering::Relaxed);
        vakt.data.applied();
        vakt.data
            .fail(crate::source::SyncState::ReloadFailed, "bad".to_owned());
        vakt.data
            .fail(crate::source::SyncState::Reconnecting, "lost".to_owned());
        vakt
    }

    /// The rendered text with what moves by itself (the data's age, the process's
    /// figures) replaced by `V`, and what differs from build to build or run to run
    /// (the build's labels, the policy revisions, the sink's temporary path) by a
    /// fixed word.
    fn steady(vakt: &Vakt, text: &str, dir: &std::path::Path) -> String {
        let snap = vakt.snapshot.load();
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
