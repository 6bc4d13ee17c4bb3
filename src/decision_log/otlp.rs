//! The OTLP sink: records exported as OpenTelemetry log records over gRPC, one
//! export per batch, each record's chained JSON line as the body and its key fields
//! as attributes. Connecting and exporting are bounded by timeouts, so a collector
//! that hangs fails the batch instead of stalling the sink.

use super::chain::Chain;
use super::sink::{Batch, Medium};
use opentelemetry_proto::tonic::collector::logs::v1::{
    logs_service_client::LogsServiceClient, ExportLogsServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::time::Duration;

/// Attributes copied from the record onto the log record, for querying in a backend.
const ATTRIBUTES: [&str; 7] = [
    "decision_id",
    "decision",
    "employee_id",
    "system_user_id",
    "client_org_number",
    "access_package",
    "revision",
];

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    })
}

/// One export request for a batch of chained record lines.
fn export_request<'a>(lines: impl Iterator<Item = &'a str>) -> ExportLogsServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let records = lines
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let attributes = ATTRIBUTES
                .iter()
                .filter_map(|k| {
                    v.get(*k).and_then(|x| x.as_str()).map(|x| KeyValue {
                        key: (*k).to_owned(),
                        value: string(x),
                        ..Default::default()
                    })
                })
                .collect();
            LogRecord {
                time_unix_nano: now,
                observed_time_unix_nano: now,
                severity_number: 9, // INFO
                severity_text: "INFO".into(),
                body: string(line),
                attributes,
                event_name: "vakt.decision".into(),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: string("vakt"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "vakt.decisions".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// How long connecting to the collector may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// An OTLP/gRPC logs collector, reached from the sink's own thread through a small
/// runtime of its own.
pub(crate) struct Collector {
    endpoint: String,
    /// The endpoint as errors name it: its credentials masked.
    shown: String,
    runtime: tokio::runtime::Runtime,
    client: Option<LogsServiceClient<tonic::transport::Channel>>,
}

impl Collector {
    /// Checks the endpoint (e.g. `http://127.0.0.1:4317`); connects on first use.
    pub fn new(endpoint: &str) -> Result<Self, String> {
        let shown = crate::url_secrets::mask_url(endpoint);
        tonic::transport::Endpoint::from_shared(endpoint.to_owned()).map_err(|e| {
            crate::url_secrets::mask_in(&format!("{shown:?} is not a URL: {e}"), endpoint)
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the OTLP exporter: {e}"))?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            shown,
            runtime,
            client: None,
        })
    }

    async fn connect(
        endpoint: &str,
        shown: &str,
    ) -> Result<LogsServiceClient<tonic::transport::Channel>, String> {
        // The transport's own errors may quote the URL: masked like the rest.
        let masked = |e: String| crate::url_secrets::mask_in(&e, endpoint);
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| masked(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(EXPORT_TIMEOUT)
            .connect()
            .await
            .map_err(|e| masked(format!("{shown}: cannot connect: {e}")))?;
        Ok(LogsServiceClient::new(channel))
    }
}

impl Medium for Collector {
    fn deliver(&mut self, batch: &Batch, _chain: &Chain) -> Result<(), String> {
        let request = export_request(batch.lines());
        let (endpoint, shown) = (&self.endpoint, &self.shown);
        let client = &mut self.client;
        let result = self.runtime.block_on(async {
            if client.is_none() {
                *client = Some(Self::connect(endpoint, shown).await?);
            }
            let c = client.as_mut().expect("connected above");
            tokio::time::timeout(EXPORT_TIMEOUT, c.export(request))
                .await
                .map_err(|_| format!("{shown}: export timed out"))?
                .map(|_| ())
                .map_err(|s| {
                    crate::url_secrets::mask_in(&format!("{shown}: {}", s.message()), endpoint)
                })
        });
        if result.is_err() {
            // The next batch connects afresh.
            self.client = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The collector's errors (a URL that does not parse, a refused connection)
    /// name the endpoint with its credentials masked.
    #[test]
    fn errors_never_show_the_endpoint_credentials() {
        let bad = "http://vakt:hunter2@[::1";
        let Err(e) = Collector::new(bad) else {
            panic!("{bad} taken as a URL");
        };
        assert!(!e.contains("hunter2"), "{e}");
        // Port 1 on loopback: nothing listens there.
        let url = "http://vakt:hunter2@127.0.0.1:1/?token=s3cr3t";
        let c = Collector::new(url).unwrap();
        let Err(e) = c
            .runtime
            .block_on(Collector::connect(&c.endpoint, &c.shown))
        else {
            panic!("connected to port 1, where nothing listens");
        };
        assert!(e.contains("cannot connect"), "{e}");
        assert!(!e.contains("hunter2") && !e.contains("s3cr3t"), "{e}");
    }
}
