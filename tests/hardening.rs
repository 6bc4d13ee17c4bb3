//! Input limits and overload, through the real binary: an oversized request is cut
//! off by the transport, a context past its limits is refused naming the limit,
//! calls past --max-in-flight are shed at once while health checks answer, and
//! SIGTERM with an idle connection open exits within the grace period.

mod common;
use common::*;
use prost_types::value::Kind;
use std::time::Duration;
use tonic::Code;
use vakt::proto::Decision;

fn list(n: usize) -> Kind {
    Kind::ListValue(prost_types::ListValue {
        values: (0..n)
            .map(|i| prost_types::Value {
                kind: Some(Kind::StringValue(format!("v{i}"))),
            })
            .collect(),
    })
}

#[test]
fn an_oversized_request_is_cut_off_by_the_transport() {
    let s = Spawned::start(
        &["--decision-log", "off", "--max-message-bytes", "65536"],
        false,
    );
    s.with_client(|mut c| async move {
        // 100 KB of context: past the 64 KiB limit.
        let mut big = request("kari", "tk-regnskap", "310015156", REGNSKAP);
        big.context = Some(context(&[("note", Kind::StringValue("x".repeat(100_000)))]));
        let err = c.authorize(big).await.unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
        assert!(err.message().contains("too large"), "{err:?}");
        // The connection serves the next call.
        let ok = c
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.decision(), Decision::Allow);
    });
    s.stop();
}

#[test]
fn a_context_past_its_limits_is_refused_naming_the_limit() {
    let s = Spawned::start(&["--decision-log", "off"], false);
    s.with_client(|mut c| async move {
        let mut nested = Kind::StringValue("deep".into());
        for _ in 0..12 {
            nested = Kind::ListValue(prost_types::ListValue {
                values: vec![prost_types::Value { kind: Some(nested) }],
            });
        }
        for (kind, want) in [
            (list(5_000), "more than 1000 values"),
            (nested, "more than 8 deep"),
            (
                Kind::StringValue("y".repeat(5_000)),
                "a string of 5000 bytes",
            ),
        ] {
            // Allowed without the context, so a refusal is the limit's doing.
            let mut req = request("kari", "tk-regnskap", "310015156", REGNSKAP);
            req.context = Some(context(&[("tags", kind)]));
            let err = c.authorize(req).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            assert!(err.message().starts_with("context:"), "{err:?}");
            assert!(err.message().contains(want), "{want}: {err:?}");
        }
    });
    s.stop();
}

#[test]
fn calls_past_max_in_flight_are_shed_at_once_and_health_answers() {
    let s = Spawned::start(
        &[
            "--decision-log",
            "off",
            "--max-in-flight",
            "1",
            "--sequence-wait",
            "3s",
        ],
        false,
    );
    let url = s.url();
    s.with_client(|c| async move {
        // One call holds the only place: it waits for a data sequence that never
        // comes.
        let mut waiting = c.clone();
        let held = tokio::spawn(async move {
            let mut req = request("kari", "tk-regnskap", "310015156", REGNSKAP);
            req.min_data_sequence = 1 << 40;
            waiting.authorize(req).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut other = c.clone();
        let started = std::time::Instant::now();
        let err = other
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(err.message().contains("--max-in-flight"), "{err:?}");
        // Shed at once, not queued behind the waiting call.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Health checks are not counted.
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let h = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(h.status, 1, "SERVING");
        // The held call ends as a deny (its data never came), then calls pass again.
        let r = held.await.unwrap().unwrap().into_inner();
        assert_eq!(policy_ids(&r), ["vakt:data-stale"]);
        let ok = other
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.decision(), Decision::Allow);
    });
    s.stop();
}

#[test]
fn sigterm_with_an_idle_connection_open_exits_within_the_grace_period() {
    let s = Spawned::start(&["--decision-log", "off", "--shutdown-grace", "1s"], false);
    // An idle HTTP/2 connection (a client that made one call and stays connected),
    // and a TCP connection that never sends anything.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = s.url();
    let addr = s.addr.clone();
    let _idle = rt.block_on(async move {
        let mut c = vakt::proto::authorizer_client::AuthorizerClient::connect(url)
            .await
            .unwrap();
        c.authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap();
        let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        (c, silent)
    });
    let status = s.stop_within(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "did not exit cleanly within the grace period: {status:?}"
    );
}
