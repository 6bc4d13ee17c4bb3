//! Diagnostics and OpenTelemetry for `vakt serve`: the diagnostic log on stderr
//! (JSON or text), and with `--otlp-endpoint` traces and metrics exported over
//! OTLP/gRPC.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// How diagnostics are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// What has to be flushed at shutdown, and the handle that changes the log level.
#[derive(Default)]
pub(super) struct Telemetry {
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    metrics: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    level: LogLevel,
}

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Changes which diagnostics are written, at run time.
#[derive(Clone, Default)]
pub(super) struct LogLevel(Option<FilterHandle>);

impl LogLevel {
    /// Sets the filter (already checked when the settings were read).
    pub fn set(&self, level: &str) {
        if let (Some(h), Ok(f)) = (&self.0, tracing_subscriber::EnvFilter::try_new(level)) {
            let _ = h.reload(f);
        }
    }
}

impl Telemetry {
    /// The handle that changes the log level.
    pub fn log_level(&self) -> LogLevel {
        self.level.clone()
    }

    /// The meter to register Vakt's metrics with, when metrics are exported.
    pub fn meter(&self) -> Option<opentelemetry::metrics::Meter> {
        use opentelemetry::metrics::MeterProvider as _;
        self.metrics.as_ref().map(|p| p.meter("vakt"))
    }

    /// Sends what is buffered and stops the exporters.
    pub fn shutdown(self) {
        if let Some(p) = self.traces {
            let _ = p.shutdown();
        }
        if let Some(p) = self.metrics {
            let _ = p.shutdown();
        }
    }
}

fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name("vakt")
        .build()
}

/// Sets up the diagnostic log and, with an endpoint, the OTLP exporters. Must run
/// inside the Tokio runtime (the exporters' channels live on it).
pub(super) fn init(
    level: &str,
    format: LogFormat,
    otlp: Option<&str>,
    metrics_interval: Duration,
) -> anyhow::Result<Telemetry> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    // Diagnostics go to stderr; stdout carries decision records.
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
    };
    let mut telemetry = Telemetry {
        level: LogLevel(Some(handle)),
        ..Telemetry::default()
    };
    let otel = match otlp {
        None => None,
        Some(endpoint) => {
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let traces = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .with_resource(resource())
                .build();
            let tracer = traces.tracer("vakt");
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metrics)
                .with_interval(metrics_interval)
                .build();
            telemetry.metrics = Some(
                opentelemetry_sdk::metrics::SdkMeterProvider::builder()
                    .with_reader(reader)
                    .with_resource(resource())
                    .build(),
            );
            telemetry.traces = Some(traces);
            // Only the spans of calls go to the tracer, whatever the log level.
            let calls = tracing_subscriber::filter::Targets::new()
                .with_target(crate::server::CALL_SPAN_TARGET, tracing::Level::INFO);
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(calls),
            )
        }
    };
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(telemetry)
}
