//! The admin HTTP listener through the real binary: `/metrics` in the Prometheus
//! text format counts calls, decisions, denies by policy and decision-log records,
//! and `/healthz` and `/readyz` tell a probe the truth, including that a durable log
//! that cannot write makes Vakt not ready.

use crate::common;
use common::*;

#[test]
fn metrics_count_calls_decisions_denies_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let sink = format!("file:{}", log.display());
    let s = Spawned::start(
        &["--metrics-listen", "127.0.0.1:0", "--decision-log", &sink],
        false,
    );
    let admin = admin_addr(&s);
    assert_eq!(get(&admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(&admin, "/readyz"), (200, "ready\n".into()));
    assert_eq!(get(&admin, "/nothing").0, 404);
    s.with_client(|mut c| async move {
        for e in ["kari", "per", "kari"] {
            c.authorize(request(e, "tk-regnskap", "310015156", REGNSKAP))
                .await
                .unwrap();
        }
        // A malformed request: INVALID_ARGUMENT.
        let _ = c
            .authorize(request("kari", "tk-regnskap", "12", REGNSKAP))
            .await
            .unwrap_err();
    });
    let (status, scrape) = get(&admin, "/metrics");
    assert_eq!(status, 200);
    let want = [
        (r#"vakt_requests_total{method="Authorize",code="OK"}"#, 3.0),
        (
            r#"vakt_requests_total{method="Authorize",code="INVALID_ARGUMENT"}"#,
            1.0,
        ),
        (
            r#"vakt_decisions_total{method="Authorize",decision="allow"}"#,
            2.0,
        ),
        (
            r#"vakt_decisions_total{method="Authorize",decision="deny"}"#,
            1.0,
        ),
        (
            r#"vakt_denies_total{policy_id="employee-deactivated"}"#,
            1.0,
        ),
        (
            &format!(r#"vakt_decision_log_records_total{{sink="{sink}",outcome="written"}}"#),
            3.0,
        ),
        (
            &format!(r#"vakt_decision_log_records_total{{sink="{sink}",outcome="failed"}}"#),
            0.0,
        ),
        (
            r#"vakt_request_duration_seconds_count{method="Authorize"}"#,
            4.0,
        ),
        (r#"vakt_data_sync_state{state="live"}"#, 1.0),
        ("vakt_requests_in_flight", 0.0),
        ("vakt_requests_shed_total", 0.0),
        ("vakt_data_sequence", 1.0),
    ];
    for (series, value) in want {
        assert_eq!(
            sample(&scrape, series),
            Some(value),
            "{series} in\n{scrape}"
        );
    }
    assert!(
        scrape.contains("vakt_policy_info{revision=\"")
            && scrape.contains("# TYPE vakt_request_duration_seconds histogram"),
        "{scrape}"
    );
    let fsyncs = sample(
        &scrape,
        &format!(r#"vakt_decision_log_fsync_duration_seconds_count{{sink="{sink}"}}"#),
    )
    .unwrap();
    assert!((1.0..=3.0).contains(&fsyncs), "{fsyncs}");
    s.stop();
}

#[test]
fn readyz_says_not_ready_while_the_durable_log_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let sink = format!("file:{}", log.display());
    let s = Spawned::start(
        &["--metrics-listen", "127.0.0.1:0", "--decision-log", &sink],
        false,
    );
    let admin = admin_addr(&s);
    assert_eq!(get(&admin, "/readyz").0, 200);
    // The log's file system runs out of room: a file-size limit of what it holds.
    s.with_client(|mut c| async move {
        c.authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap();
    });
    let size = std::fs::metadata(&log).unwrap().len();
    let lim = libc::rlimit {
        rlim_cur: size,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit reads `lim` and writes nothing.
    assert_eq!(
        unsafe { libc::prlimit(s.pid(), libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) },
        0
    );
    s.with_client(|mut c| async move {
        let err = c
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
    });
    let ready = until_some(
        std::time::Duration::from_secs(5),
        "/readyz to answer 503",
        || Some(get(&admin, "/readyz")).filter(|r| r.0 == 503),
    );
    assert!(ready.1.contains("decision log"), "{ready:?}");
    // Live all the same.
    assert_eq!(get(&admin, "/healthz").0, 200);
    let (_, scrape) = get(&admin, "/metrics");
    assert_eq!(
        sample(
            &scrape,
            &format!(r#"vakt_decision_log_records_total{{sink="{sink}",outcome="failed"}}"#)
        ),
        Some(1.0),
        "{scrape}"
    );
    s.stop();
}

#[test]
fn traces_continue_the_callers_trace_and_metrics_are_exported_over_otlp() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (receiver, url) = rt.block_on(common::otlp::traces_and_metrics::start());
    let s = Spawned::start(
        &[
            "--otlp-endpoint",
            &url,
            "--otlp-metrics-interval",
            "200ms",
            "--decision-log",
            "off",
        ],
        false,
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    s.with_client(|mut c| async move {
        let mut req = tonic::Request::new(request("kari", "tk-regnskap", "310015156", REGNSKAP));
        req.metadata_mut().insert(
            "traceparent",
            format!("00-{trace_id}-{parent}-01").parse().unwrap(),
        );
        c.authorize(req).await.unwrap();
    });
    rt.block_on(eventually(
        std::time::Duration::from_secs(15),
        "the call's span and the requests metric at the receiver",
        || {
            let spans = receiver.spans.lock().unwrap();
            let metrics = receiver.metrics.lock().unwrap();
            spans
                .iter()
                .any(|sp| sp.name == "vakt.v1.Authorizer/Authorize")
                && metrics.iter().any(|m| m.name == "vakt.requests")
        },
    ));
    let span = receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .find(|sp| sp.name == "vakt.v1.Authorizer/Authorize")
        .cloned()
        .unwrap();
    assert_eq!(hex::encode(&span.trace_id), trace_id, "{span:?}");
    assert_eq!(hex::encode(&span.parent_span_id), parent, "{span:?}");
    let attr = |k: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    assert_eq!(
        attr("rpc.method"),
        Some(Any::StringValue("Authorize".into()))
    );
    assert_eq!(attr("rpc.grpc.status_code"), Some(Any::IntValue(0)));
    s.stop();
}

/// A plain HTTP/1.1 POST of a JSON body: the status.
fn post_json(addr: &str, path: &str, body: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "POST {path} HTTP/1.1\r\nHost: vakt\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response).unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn metrics_name_the_build_and_the_process_figures() {
    let before = now_seconds();
    let s = Spawned::start(
        &["--metrics-listen", "127.0.0.1:0", "--decision-log", "off"],
        false,
    );
    let after = now_seconds();
    let admin = admin_addr(&s);
    let (status, scrape) = get(&admin, "/metrics");
    assert_eq!(status, 200);
    // The same version, commit and date as `vakt --version` says.
    let version = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let (commit, date) = version
        .trim_end()
        .split_once("(commit ")
        .and_then(|(_, r)| r.strip_suffix(')')?.split_once(", built "))
        .unwrap_or_else(|| panic!("{version:?}"));
    let build = format!(
        r#"vakt_build_info{{version="{}",commit="{commit}",build_date="{date}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&scrape, &build), Some(1.0), "{build} in\n{scrape}");
    assert!(
        scrape.contains("# TYPE vakt_build_info gauge\n"),
        "{scrape}"
    );

    // The process's figures, against what /proc says of the child from outside.
    let figure =
        |name: &str| sample(&scrape, name).unwrap_or_else(|| panic!("no {name} in\n{scrape}"));
    assert!(scrape.contains("# TYPE process_cpu_seconds_total counter\n"));
    let cpu = figure("process_cpu_seconds_total");
    assert!(cpu > 0.0 && cpu < 600.0, "{cpu}");
    let rss = figure("process_resident_memory_bytes");
    let status_file = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let rss_now: f64 = status_file
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap()
        * 1024.0;
    assert!(
        rss > 4e6 && (rss - rss_now).abs() < rss_now / 2.0,
        "{rss} against {rss_now} now"
    );
    let fds = figure("process_open_fds");
    let fds_now = std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
        .unwrap()
        .count() as f64;
    // Listeners, the runtime's epoll and the scrape's own connection.
    assert!(
        fds >= 5.0 && (fds - fds_now).abs() <= 4.0,
        "{fds} against {fds_now}"
    );
    let max = figure("process_max_fds");
    let soft = {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: prlimit writes the child's limit into `lim` and reads nothing.
        assert_eq!(
            unsafe { libc::prlimit(s.pid(), libc::RLIMIT_NOFILE, std::ptr::null(), &mut lim) },
            0
        );
        lim.rlim_cur as f64
    };
    assert_eq!(max, soft);
    let started = figure("process_start_time_seconds");
    // Clock ticks are 10 ms; the start falls between spawning and listening.
    assert!(
        started >= before - 1.0 && started <= after + 1.0,
        "{started} not in {before}..{after}"
    );
    s.stop();
}

#[test]
fn authzen_calls_are_counted_with_the_grpc_calls() {
    let s = Spawned::start(
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--authzen-listen",
            "127.0.0.1:0",
            "--decision-log",
            "off",
        ],
        false,
    );
    let admin = admin_addr(&s);
    let authzen = authzen_addr(&s);
    let evaluation = serde_json::json!({
        "subject": {"type": "employee", "id": "kari"},
        "action": {"name": "useSystemUser", "properties": {"access_package": REGNSKAP}},
        "resource": {"type": "system_user", "id": "tk-regnskap", "properties": {"client_org_number": "310015156"}},
    })
    .to_string();
    assert_eq!(
        post_json(&authzen, "/access/v1/evaluation", &evaluation),
        200
    );
    assert_eq!(
        post_json(&authzen, "/access/v1/evaluation", &evaluation),
        200
    );
    // A malformed body, and a batch: each counted under its own endpoint.
    assert_eq!(
        post_json(&authzen, "/access/v1/evaluation", "{\"subject\": 7}"),
        400
    );
    let batch = format!(r#"{{"evaluations": [{evaluation}]}}"#);
    assert_eq!(post_json(&authzen, "/access/v1/evaluations", &batch), 200);
    // Not calls: the metadata document and an unknown path.
    assert_eq!(get(&authzen, "/.well-known/authzen-configuration").0, 200);
    assert_eq!(post_json(&authzen, "/access/v1/nothing", "{}"), 404);
    s.with_client(|mut c| async move {
        c.authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap();
    });
    let (_, scrape) = get(&admin, "/metrics");
    let want = [
        (
            r#"vakt_requests_total{method="access/v1/evaluation",code="OK"}"#,
            2.0,
        ),
        (
            r#"vakt_requests_total{method="access/v1/evaluation",code="INVALID_ARGUMENT"}"#,
            1.0,
        ),
        (
            r#"vakt_requests_total{method="access/v1/evaluations",code="OK"}"#,
            1.0,
        ),
        (
            r#"vakt_requests_total{method="access/v1/search/subject",code="OK"}"#,
            0.0,
        ),
        (
            r#"vakt_request_duration_seconds_count{method="access/v1/evaluation"}"#,
            3.0,
        ),
        (
            r#"vakt_request_duration_seconds_count{method="access/v1/evaluations"}"#,
            1.0,
        ),
        // The gRPC series keep their labels.
        (r#"vakt_requests_total{method="Authorize",code="OK"}"#, 1.0),
        (
            r#"vakt_request_duration_seconds_count{method="Authorize"}"#,
            1.0,
        ),
    ];
    for (series, value) in want {
        assert_eq!(
            sample(&scrape, series),
            Some(value),
            "{series} in\n{scrape}"
        );
    }
    assert!(
        !scrape.contains("nothing") && !scrape.contains("well-known"),
        "{scrape}"
    );
    s.stop();
}

/// An OTLP collector that keeps each export's resource and what it carried.
mod collector {
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
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use std::sync::{Arc, Mutex};

    /// Per export: the resource's attributes as strings, and the names of the
    /// spans or metrics.
    pub type Exports = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<String>)>>>;

    #[derive(Clone, Default)]
    pub struct Collector {
        pub spans: Exports,
        pub metrics: Exports,
    }

    fn attributes(r: Option<Resource>) -> Vec<(String, String)> {
        r.map(|r| r.attributes)
            .unwrap_or_default()
            .into_iter()
            .map(|kv| {
                let v = match kv.value.and_then(|v| v.value) {
                    Some(Any::StringValue(s)) => s,
                    other => format!("{other:?}"),
                };
                (kv.key, v)
            })
            .collect()
    }

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            req: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            for rs in req.into_inner().resource_spans {
                let names = rs
                    .scope_spans
                    .into_iter()
                    .flat_map(|s| s.spans)
                    .map(|s| s.name)
                    .collect();
                self.spans
                    .lock()
                    .unwrap()
                    .push((attributes(rs.resource), names));
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    #[tonic::async_trait]
    impl MetricsService for Collector {
        async fn export(
            &self,
            req: tonic::Request<ExportMetricsServiceRequest>,
        ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
            for rm in req.into_inner().resource_metrics {
                let names = rm
                    .scope_metrics
                    .into_iter()
                    .flat_map(|s| s.metrics)
                    .map(|m| m.name)
                    .collect();
                self.metrics
                    .lock()
                    .unwrap()
                    .push((attributes(rm.resource), names));
            }
            Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
        }
    }

    pub async fn start() -> (Collector, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = Collector::default();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(c.clone()))
                .add_service(MetricsServiceServer::new(c.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (c, format!("http://{addr}"))
    }

    impl Collector {
        /// Whether any export carried `name`.
        pub fn got(exports: &Exports, name: &str) -> bool {
            exports
                .lock()
                .unwrap()
                .iter()
                .any(|(_, names)| names.iter().any(|n| n == name))
        }
    }
}

/// The OpenTelemetry variables a collector's operator sets choose where each
/// signal goes and name the resource, as the specification says.
#[test]
fn otel_variables_choose_the_endpoints_and_name_the_resource() {
    use collector::Collector;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (for_traces, traces_url) = rt.block_on(collector::start());
    let (for_metrics, metrics_url) = rt.block_on(collector::start());
    let s = Spawned::start_with(
        &["--otlp-metrics-interval", "200ms", "--decision-log", "off"],
        false,
        |c| {
            c.env_remove("VAKT_OTLP_ENDPOINT")
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", &traces_url)
                .env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &metrics_url)
                .env("OTEL_SERVICE_NAME", "payroll-authz")
                .env(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=not-this, deployment.environment=test%2Cstaging,team=%C3%B8st",
                );
        },
    );
    s.with_client(|mut c| async move {
        c.authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap();
    });
    rt.block_on(eventually(
        std::time::Duration::from_secs(15),
        "the span at one collector and the metrics at the other",
        || {
            Collector::got(&for_traces.spans, "vakt.v1.Authorizer/Authorize")
                && Collector::got(&for_metrics.metrics, "vakt.requests")
        },
    ));
    for name in [
        "vakt.build_info",
        "process.cpu.time",
        "process.memory.usage",
        "process.unix.file_descriptor.count",
        "process.unix.file_descriptor.limit",
        "process.start_time",
    ] {
        assert!(Collector::got(&for_metrics.metrics, name), "no {name}");
    }
    // Each signal only where its variable sent it.
    assert!(for_traces.metrics.lock().unwrap().is_empty());
    assert!(for_metrics.spans.lock().unwrap().is_empty());
    for exports in [&for_traces.spans, &for_metrics.metrics] {
        let (resource, _) = exports.lock().unwrap()[0].clone();
        let attr = |k: &str| {
            resource
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(attr("service.name"), Some("payroll-authz"), "{resource:?}");
        assert_eq!(
            attr("deployment.environment"),
            Some("test,staging"),
            "{resource:?}"
        );
        assert_eq!(attr("team"), Some("øst"), "{resource:?}");
        assert_eq!(
            attr("service.version"),
            Some(env!("CARGO_PKG_VERSION")),
            "{resource:?}"
        );
    }
    s.stop();
}

/// Flags come first, then `VAKT_*`, then `OTEL_*`; `vakt config show` says which
/// one set the endpoint, credentials masked; an `OTEL_*` endpoint for another
/// protocol than gRPC is refused, naming the variable.
#[test]
fn vakts_own_settings_come_before_the_otel_variables() {
    use collector::Collector;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (collector, url) = rt.block_on(collector::start());
    // Nothing listens on port 9: an export sent there would never arrive.
    let nowhere = "http://127.0.0.1:9";
    let s = Spawned::start_with(
        &[
            "--otlp-endpoint",
            &url,
            "--otlp-metrics-interval",
            "200ms",
            "--decision-log",
            "off",
        ],
        false,
        |c| {
            c.env("VAKT_OTLP_ENDPOINT", nowhere)
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", nowhere)
                .env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", nowhere)
                .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", nowhere);
        },
    );
    rt.block_on(eventually(
        std::time::Duration::from_secs(15),
        "metrics at the flag's collector",
        || Collector::got(&collector.metrics, "vakt.decisions"),
    ));
    s.stop();

    let show = |env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"));
        c.args(["config", "show"]).env_remove("VAKT_CONFIG");
        for v in [
            "VAKT_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            c.env_remove(v);
        }
        let out = c.envs(env.iter().copied()).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.contains("otlp-endpoint"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let otel = "http://collector:s3cr3t-pass@otel.example:4317";
    assert_eq!(
        show(&[("OTEL_EXPORTER_OTLP_ENDPOINT", otel)]),
        r#"otlp-endpoint = "http://collector:****@otel.example:4317"  # OTEL_EXPORTER_OTLP_ENDPOINT"#
    );
    assert_eq!(
        show(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otel),
            ("VAKT_OTLP_ENDPOINT", "http://vakt-collector:4317"),
        ]),
        r#"otlp-endpoint = "http://vakt-collector:4317"  # VAKT_OTLP_ENDPOINT"#
    );
    assert_eq!(
        show(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4317"),
        ]),
        "# otlp-endpoint: traces = \"http://a:4317\"  # OTEL_EXPORTER_OTLP_ENDPOINT\n\
         # otlp-endpoint: metrics = \"http://m:4317\"  # OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    );
    assert_eq!(show(&[]), "# otlp-endpoint = (not set)");

    // OTLP over HTTP is not built in: refused at start, not sent to the wrong port.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["serve", "--listen", "127.0.0.1:0", "--decision-log", "off"])
        .env_remove("VAKT_OTLP_ENDPOINT")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otel)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_at_most(&mut child, std::time::Duration::from_secs(30));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("vakt serve started with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
            && stderr.contains("gRPC only")
            && !stderr.contains("s3cr3t"),
        "{stderr}"
    );
}
