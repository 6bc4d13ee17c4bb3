//! A real OTLP/gRPC logs receiver for tests of the OTLP decision-log sink.
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use std::sync::{Arc, Mutex};

/// A real OTLP/gRPC logs receiver on 127.0.0.1:0 that keeps what it is sent.
#[derive(Clone, Default)]
pub struct Receiver(pub Arc<Mutex<Vec<LogRecord>>>);

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rl in req.into_inner().resource_logs {
            for sl in rl.scope_logs {
                got.extend(sl.log_records);
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

pub async fn start() -> (Receiver, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = Receiver::default();
    let svc = LogsServiceServer::new(r.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (r, format!("http://{addr}"))
}

/// A real OTLP/gRPC receiver of traces and metrics on 127.0.0.1:0 that keeps what
/// it is sent.
pub mod traces_and_metrics {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
        MetricsService, MetricsServiceServer,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::metrics::v1::Metric;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Receiver {
        pub spans: Arc<Mutex<Vec<Span>>>,
        pub metrics: Arc<Mutex<Vec<Metric>>>,
    }

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            req: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let mut got = self.spans.lock().unwrap();
            for rs in req.into_inner().resource_spans {
                for ss in rs.scope_spans {
                    got.extend(ss.spans);
                }
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    #[tonic::async_trait]
    impl MetricsService for Receiver {
        async fn export(
            &self,
            req: tonic::Request<ExportMetricsServiceRequest>,
        ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
            let mut got = self.metrics.lock().unwrap();
            for rm in req.into_inner().resource_metrics {
                for sm in rm.scope_metrics {
                    got.extend(sm.metrics);
                }
            }
            Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
        }
    }

    pub async fn start() -> (Receiver, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = Receiver::default();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(r.clone()))
                .add_service(MetricsServiceServer::new(r.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (r, format!("http://{addr}"))
    }
}
