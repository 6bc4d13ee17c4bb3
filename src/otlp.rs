//! The OpenTelemetry sink of the decision log: records exported as OTLP log records
//! over gRPC, in batches, each record's chained JSON line as the body and its key
//! fields as attributes.

use crate::audit::Chain;
use opentelemetry_proto::tonic::collector::logs::v1::{
    logs_service_client::LogsServiceClient, ExportLogsServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

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
pub fn export_request(lines: &[String]) -> ExportLogsServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let records = lines
        .iter()
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

/// Exports what is queued, as batches, until every sender is gone; acknowledges
/// each record with the export's outcome.
pub async fn run(
    endpoint: String,
    mut rx: tokio::sync::mpsc::Receiver<crate::decision_log::Pending>,
) {
    let mut client: Option<LogsServiceClient<tonic::transport::Channel>> = None;
    let mut chain = Chain::default();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let before = chain.clone();
        let lines: Vec<String> = batch.iter().map(|p| chain.link(&p.record)).collect();
        if client.is_none() {
            client = LogsServiceClient::connect(endpoint.clone()).await.ok();
        }
        let result = match client.as_mut() {
            None => Err(format!("{endpoint}: cannot connect")),
            Some(c) => c
                .export(export_request(&lines))
                .await
                .map(|_| ())
                .map_err(|s| format!("{endpoint}: {}", s.message())),
        };
        if result.is_err() {
            // Not delivered: the chain goes on from the last record that was, and
            // the next batch connects afresh.
            chain = before;
            client = None;
            tracing::warn!(endpoint = %endpoint, records = batch.len(), "decision log export failed");
        }
        for p in batch {
            let _ = p.ack.send(result.clone());
        }
    }
}
