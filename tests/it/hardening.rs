//! Input limits and overload, through the real binary: an oversized request is cut
//! off by the transport, a context past its limits is refused naming the limit,
//! calls past --max-in-flight are shed at once while health checks answer, and
//! SIGTERM with an idle connection open exits within the grace period.

use crate::common;
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
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        false,
    );
    let url = s.url();
    let admin = admin_addr(&s);
    s.with_client(|c| async move {
        // One call holds the only place: it waits for a data sequence that never
        // comes.
        let mut waiting = c.clone();
        let held = tokio::spawn(async move {
            let mut req = request("kari", "tk-regnskap", "310015156", REGNSKAP);
            req.min_data_sequence = 1 << 40;
            waiting.authorize(req).await
        });
        eventually(
            Duration::from_secs(5),
            "the held call to be in flight",
            || sample(&get(&admin, "/metrics").1, "vakt_requests_in_flight") == Some(1.0),
        )
        .await;
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

/// Reads from `sock` until the server closes it; false if it is still open after
/// `limit`.
async fn closed_within(sock: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[test]
fn connections_past_the_cap_are_closed_at_once_and_freed_places_are_reused() {
    let s = Spawned::start(
        &[
            "--decision-log",
            "off",
            "--max-connections",
            "3",
            "--handshake-timeout",
            "60s",
        ],
        false,
    );
    let addr = s.addr.clone();
    s.with_client(|held| async move {
        // The client made by with_client holds one place; two silent sockets take
        // the rest.
        let _held = held;
        let mut silent = Vec::new();
        for _ in 0..2 {
            silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        }
        // Kept as a pause: the server shows no count of open connections, and a
        // silent socket must stay silent. It gives the accept loop time to take
        // the two before the extra one (it accepts in order anyway).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_secs(5)).await,
            "a connection past --max-connections was kept open"
        );
        // Silent sockets within the cap stay open (their deadline is a minute).
        assert!(!closed_within(&mut silent[0], Duration::from_millis(300)).await);
        // Once they go, their places are free again.
        drop(silent);
        // A new client is served once the server has seen them close; until then it
        // is turned away, so try again until a deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let r = loop {
            let attempt = async {
                let mut c = vakt::proto::authorizer_client::AuthorizerClient::connect(format!(
                    "http://{addr}"
                ))
                .await
                .map_err(|e| e.to_string())?;
                c.authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
                    .await
                    .map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(r) => break r.into_inner(),
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "a freed place was not reused: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert_eq!(r.decision(), Decision::Allow);
    });
    s.stop();
}

#[test]
fn a_connection_that_sends_nothing_or_stays_idle_is_closed() {
    let s = Spawned::start(
        &[
            "--decision-log",
            "off",
            "--handshake-timeout",
            "300ms",
            "--request-timeout",
            "200ms",
            "--idle-timeout",
            "600ms",
        ],
        false,
    );
    let addr = s.addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        use tokio::io::AsyncWriteExt as _;
        let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(5)).await,
            "a connection that sent nothing was kept open past --handshake-timeout"
        );
        // An HTTP/2 connection that opens properly and then makes no call.
        let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
        idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        // It outlives the handshake deadline, then goes at the idle timeout.
        assert!(!closed_within(&mut idle, Duration::from_millis(400)).await);
        assert!(
            closed_within(&mut idle, Duration::from_secs(5)).await,
            "an idle connection was kept open past --idle-timeout"
        );
    });
    s.stop();
}

/// A client whose connections come from `source` (a loopback address of its own).
async fn client_from(
    source: &str,
    addr: &str,
) -> vakt::proto::authorizer_client::AuthorizerClient<tonic::transport::Channel> {
    let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(
            move |_: tonic::transport::Uri| async move {
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(source)?;
                let stream = sock.connect(target).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            },
        ))
        .await
        .unwrap();
    vakt::proto::authorizer_client::AuthorizerClient::new(channel)
}

#[test]
fn one_noisy_peer_cannot_take_every_place() {
    let s = Spawned::start(
        &[
            "--decision-log",
            "off",
            "--max-in-flight-per-peer",
            "1",
            "--sequence-wait",
            "3s",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        false,
    );
    let addr = s.addr.clone();
    let admin = admin_addr(&s);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let noisy = client_from("127.0.0.1", &addr).await;
        let mut holder = noisy.clone();
        // The noisy peer's one place is held by a call that waits for data.
        let held = tokio::spawn(async move {
            let mut req = request("kari", "tk-regnskap", "310015156", REGNSKAP);
            req.min_data_sequence = 1 << 40;
            holder.authorize(req).await
        });
        eventually(
            Duration::from_secs(5),
            "the held call to be in flight",
            || sample(&get(&admin, "/metrics").1, "vakt_requests_in_flight") == Some(1.0),
        )
        .await;
        let err = noisy
            .clone()
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(
            err.message().contains("--max-in-flight-per-peer"),
            "{err:?}"
        );
        // Another peer is served meanwhile.
        let mut quiet = client_from("127.0.0.2", &addr).await;
        let r = quiet
            .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.decision(), Decision::Allow);
        let _ = held.await;
    });
    s.stop();
}

#[test]
fn a_client_deadline_is_honoured() {
    let s = Spawned::start(&["--decision-log", "off", "--sequence-wait", "5s"], false);
    s.with_client(|mut c| async move {
        // Would wait 5 s for a data sequence that never comes; the caller gives
        // it 300 ms.
        let mut req = tonic::Request::new(request("kari", "tk-regnskap", "310015156", REGNSKAP));
        req.get_mut().min_data_sequence = 1 << 40;
        req.set_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = c.authorize(req).await.unwrap_err();
        assert!(
            matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the call ran past its deadline: {:?}",
            started.elapsed()
        );
    });
    s.stop();
}
