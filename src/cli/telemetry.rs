//! Diagnostics and OpenTelemetry for `vakt serve`: the diagnostic log on stderr
//! (JSON or text), and with `--otlp-endpoint` traces and metrics exported over
//! OTLP/gRPC.
//!
//! The OpenTelemetry environment variables are honoured as the specification
//! says, after Vakt's own settings: the endpoint is `--otlp-endpoint`, else
//! `VAKT_OTLP_ENDPOINT`, else the configuration file's `otlp-endpoint`, else
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`
//! for each signal, else `OTEL_EXPORTER_OTLP_ENDPOINT`; with none, nothing is
//! exported. The resource is `OTEL_RESOURCE_ATTRIBUTES` (percent-decoded), named
//! by `OTEL_SERVICE_NAME`, else that list's `service.name`, else "vakt".

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

/// Where each signal is exported to, and what the resource says.
#[derive(Debug, PartialEq)]
pub(super) struct Otlp {
    /// The traces' endpoint and where it came from (a flag, or a variable's name).
    pub traces: Option<(String, &'static str)>,
    pub metrics: Option<(String, &'static str)>,
    service_name: String,
    attributes: Vec<(String, String)>,
    /// What was set but could not be used, to log once the log is set up.
    warnings: Vec<String>,
}

const OTEL_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const OTEL_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const OTEL_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";

impl Otlp {
    /// The settings from Vakt's own endpoint (`--otlp-endpoint`, its variable or
    /// the file, already resolved by clap) and the `OTEL_*` variables `env` gives.
    /// A refusal names the variable: only OTLP over gRPC is built in, so an
    /// endpoint from `OTEL_*` with another `OTEL_EXPORTER_OTLP_*PROTOCOL` would
    /// be sent to a port that speaks something else.
    pub fn resolve(
        vakt_endpoint: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        // The specification: an empty variable is as if it were not set.
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let signal = |specific: &'static str, kind: &str| -> Result<_, String> {
            if let Some(e) = vakt_endpoint {
                return Ok(Some((e.to_owned(), "--otlp-endpoint")));
            }
            let Some((endpoint, from)) = var(specific)
                .map(|e| (e, specific))
                .or_else(|| var(OTEL_ENDPOINT).map(|e| (e, OTEL_ENDPOINT)))
            else {
                return Ok(None);
            };
            let protocol_var = format!("OTEL_EXPORTER_OTLP_{kind}_PROTOCOL");
            let protocol = var(&protocol_var)
                .map(|p| (p, protocol_var.as_str()))
                .or_else(|| {
                    var("OTEL_EXPORTER_OTLP_PROTOCOL").map(|p| (p, "OTEL_EXPORTER_OTLP_PROTOCOL"))
                });
            if let Some((p, name)) = protocol.filter(|(p, _)| p.trim() != "grpc") {
                return Err(format!(
                    "{name}={p}: Vakt exports OTLP over gRPC only; set it to grpc, or unset it, for the endpoint in {from}"
                ));
            }
            Ok(Some((endpoint.trim().to_owned(), from)))
        };
        let traces = signal(OTEL_TRACES_ENDPOINT, "TRACES")?;
        let metrics = signal(OTEL_METRICS_ENDPOINT, "METRICS")?;
        let mut warnings = Vec::new();
        let attributes = match var("OTEL_RESOURCE_ATTRIBUTES").map(|v| resource_attributes(&v)) {
            None => Vec::new(),
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                // As the specification says: the whole value is discarded.
                warnings.push(format!("OTEL_RESOURCE_ATTRIBUTES ignored: {e}"));
                Vec::new()
            }
        };
        let service_name = var("OTEL_SERVICE_NAME")
            .or_else(|| {
                attributes
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "vakt".to_owned());
        Ok(Self {
            traces,
            metrics,
            service_name,
            attributes,
            warnings,
        })
    }

    /// [`Otlp::resolve`] from this process's environment.
    pub fn from_env(vakt_endpoint: Option<&str>) -> Result<Self, String> {
        Self::resolve(vakt_endpoint, |name| std::env::var(name).ok())
    }

    fn resource(&self) -> opentelemetry_sdk::Resource {
        use opentelemetry::KeyValue;
        let attributes = self
            .attributes
            .iter()
            .filter(|(k, _)| k != "service.name")
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()));
        opentelemetry_sdk::Resource::builder_empty()
            .with_detector(Box::new(
                opentelemetry_sdk::resource::TelemetryResourceDetector,
            ))
            .with_attribute(KeyValue::new(
                "service.version",
                crate::metrics::BUILD_VERSION,
            ))
            .with_attributes(attributes)
            .with_service_name(self.service_name.clone())
            .build()
    }
}

/// For `vakt config show`: a setting Vakt's own flag, variable and file leave
/// unset but an `OTEL_*` variable sets, with the variable it came from
/// (credentials masked).
pub(super) fn shown_from_otel(long: &str) -> Option<String> {
    if long != "otlp-endpoint" {
        return None;
    }
    let otlp = match Otlp::from_env(None) {
        Ok(o) => o,
        Err(e) => {
            let e = crate::url_secrets::mask_url(&e);
            return Some(format!("# {long} = (not set; refused: {e})\n"));
        }
    };
    let shown = |(url, from): &(String, &str)| {
        let url = toml::Value::String(crate::url_secrets::mask_url(url));
        format!("{url}  # {from}")
    };
    match (&otlp.traces, &otlp.metrics) {
        (None, None) => None,
        (Some(t), Some(m)) if t == m => Some(format!("{long} = {}\n", shown(t))),
        (t, m) => {
            let or_none = |s: &Option<(String, &str)>| s.as_ref().map_or("none".into(), shown);
            Some(format!(
                "# {long}: traces = {}\n# {long}: metrics = {}\n",
                or_none(t),
                or_none(m)
            ))
        }
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas, each key and
/// value percent-decoded (the W3C Baggage format, as the specification says).
fn resource_attributes(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, pair) in text.split(',').enumerate() {
        if pair.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("entry {}: {pair:?} is not key=value", i + 1));
        };
        let key = percent_decode(k.trim()).map_err(|e| format!("entry {}: {e}", i + 1))?;
        if key.is_empty() {
            return Err(format!("entry {}: the key is empty", i + 1));
        }
        let value = percent_decode(v.trim()).map_err(|e| format!("entry {}: {e}", i + 1))?;
        out.push((key, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{s:?}: a % is not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?}: not UTF-8 once decoded"))
}

/// Sets up the diagnostic log and, with an endpoint, the OTLP exporters. Must run
/// inside the Tokio runtime (the exporters' channels live on it).
pub(super) fn init(
    level: &str,
    format: LogFormat,
    otlp: &Otlp,
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
    if let Some((endpoint, _)) = &otlp.metrics {
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
                .with_resource(otlp.resource())
                .build(),
        );
    }
    let otel = match &otlp.traces {
        None => None,
        Some((endpoint, _)) => {
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let traces = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .with_resource(otlp.resource())
                .build();
            let tracer = traces.tracer("vakt");
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
    for problem in &otlp.warnings {
        tracing::warn!(%problem, "an OpenTelemetry variable was not used");
    }
    for (signal, to) in [("traces", &otlp.traces), ("metrics", &otlp.metrics)] {
        if let Some((endpoint, from)) = to {
            let endpoint = crate::url_secrets::mask_url(endpoint);
            tracing::info!(signal, %endpoint, from, "exporting over OTLP");
        }
    }
    Ok(telemetry)
}
