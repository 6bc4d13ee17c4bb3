//! Shared test harness: starts the real Vakt server on 127.0.0.1:0 and connects a
//! real tonic client to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use vakt::decision_log::DecisionLog;
use vakt::proto::authorizer_client::AuthorizerClient;
use vakt::proto::{AuthorizeRequest, AuthorizeResponse, Decision};
use vakt::server::{serve, Vakt};
use vakt::snapshot::{Snapshot, SnapshotHandle, SourcePaths, Sources};

pub const REGNSKAP: &str = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";
pub const REVISOR: &str = "urn:altinn:accesspackage:ansvarlig-revisor";
pub const SYKEFRAVAER: &str = "urn:altinn:accesspackage:sykefravaer";
pub const AORDNING: &str = "urn:altinn:accesspackage:a-ordning";
pub const SKATT: &str = "urn:altinn:accesspackage:skatt-naering";
pub const MVA: &str = "urn:altinn:accesspackage:merverdiavgift";
pub const FORRETNINGSFORER: &str = "urn:altinn:accesspackage:forretningsforer-eiendom";

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: AuthorizerClient<Channel>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The embedded default: shipped policies, schema and example world.
pub fn default_snapshot() -> Snapshot {
    Snapshot::build(&Sources::embedded()).expect("embedded default loads")
}

/// A snapshot from directories; unset ones come from the embedded default.
pub fn snapshot_from(
    policies: Option<&Path>,
    schema: Option<&Path>,
    data: Option<&Path>,
) -> Snapshot {
    let paths = SourcePaths {
        policies: policies.map(Path::to_path_buf),
        schema: schema.map(Path::to_path_buf),
        data: data.map(Path::to_path_buf),
    };
    Snapshot::build(&Sources::read(&paths).expect("sources read")).expect("snapshot builds")
}

pub async fn start(snapshot: Snapshot) -> TestServer {
    start_with(snapshot, DecisionLog::disabled(), 100).await
}

pub async fn start_with(snapshot: Snapshot, log: DecisionLog, max_batch: usize) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let vakt = Arc::new(Vakt {
        snapshot: SnapshotHandle::new(snapshot),
        log,
        max_batch,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(listener, vakt, async {
            let _ = stopped.await;
        })
        .await
        .expect("server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("client connects");
    TestServer {
        addr,
        client: AuthorizerClient::new(channel.clone()),
        channel,
        stop: Some(stop),
    }
}

pub fn request(employee: &str, system_user: &str, client: &str, package: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        employee_id: employee.into(),
        system_user_id: system_user.into(),
        client_org_number: client.into(),
        access_package: package.into(),
        ..Default::default()
    }
}

impl TestServer {
    pub async fn ask(
        &mut self,
        employee: &str,
        system_user: &str,
        client: &str,
        package: &str,
    ) -> AuthorizeResponse {
        self.client
            .authorize(request(employee, system_user, client, package))
            .await
            .unwrap_or_else(|s| {
                panic!("Authorize({employee}, {system_user}, {client}) failed: {s:?}")
            })
            .into_inner()
    }
}

pub fn policy_ids(r: &AuthorizeResponse) -> Vec<&str> {
    r.reasons.iter().map(|r| r.policy_id.as_str()).collect()
}

/// Asserts an allow.
#[track_caller]
pub fn assert_allow(r: &AuthorizeResponse) {
    assert_eq!(r.decision(), Decision::Allow, "expected ALLOW, got {r:#?}");
    assert_eq!(policy_ids(r), ["use-system-user"], "{r:#?}");
}

/// Asserts a deny whose reasons are exactly `ids`.
#[track_caller]
pub fn assert_deny(r: &AuthorizeResponse, ids: &[&str]) {
    assert_eq!(r.decision(), Decision::Deny, "expected DENY, got {r:#?}");
    let mut got = policy_ids(r);
    got.sort();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(got, want, "{r:#?}");
    assert!(r.reasons.iter().all(|x| !x.message.is_empty()));
}

/// A google.protobuf.Struct of caller context attributes.
pub fn context(pairs: &[(&str, prost_types::value::Kind)]) -> prost_types::Struct {
    prost_types::Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    prost_types::Value {
                        kind: Some(v.clone()),
                    },
                )
            })
            .collect(),
    }
}

/// Starts the `vakt` binary with `serve --listen 127.0.0.1:0` and `args`, waits for
/// its "listening" line, and returns it with its address. Its stdout (the decision
/// log) is piped when `capture_stdout`; its diagnostics keep being drained.
pub fn spawn_server(args: &[&str], capture_stdout: bool) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["fields"]["message"] == "listening" {
            break v["fields"]["address"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining diagnostics so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    (child, addr)
}
