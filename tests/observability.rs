//! The admin HTTP listener through the real binary: `/metrics` in the Prometheus
//! text format counts calls, decisions, denies by policy and decision-log records,
//! and `/healthz` and `/readyz` tell a probe the truth, including that a durable log
//! that cannot write makes Vakt not ready.

mod common;
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
    let mut ready = get(&admin, "/readyz");
    for _ in 0..50 {
        if ready.0 == 503 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        ready = get(&admin, "/readyz");
    }
    assert_eq!(ready.0, 503, "{ready:?}");
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
