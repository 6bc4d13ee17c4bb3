//! Authorize throughput through the real gRPC server with the durable file
//! decision log (group commit, fsync) against no decision log, in the same run:
//! rounds alternate between the two servers so machine noise hits both alike.
//!
//! Run: `cargo bench --bench log_throughput`

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use vakt::decision_log::{DecisionLog, LogOptions, SinkSpec};
use vakt::proto::authorizer_client::AuthorizerClient;
use vakt::proto::AuthorizeRequest;
use vakt::server::{serve, Vakt};
use vakt::snapshot::{Snapshot, SnapshotHandle, Sources};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: usize = 32;
const CALLS_PER_CLIENT: usize = 200;
const ROUNDS: usize = 6;

async fn start(log: DecisionLog) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let vakt = Arc::new(Vakt {
        snapshot: SnapshotHandle::new(Snapshot::build(&Sources::embedded()).unwrap()),
        log,
        max_batch: 1000,
    });
    tokio::spawn(serve(listener, vakt, std::future::pending()));
    format!("http://{addr}")
}

/// Calls per second for one round: CLIENTS concurrent callers, each on its own
/// connection, CALLS_PER_CLIENT calls each (allows and denies mixed).
async fn round(addr: &str) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let addr = addr.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = AuthorizerClient::connect(addr).await.unwrap();
            for i in 0..CALLS_PER_CLIENT {
                let employee = if (c + i) % 4 == 0 { "per" } else { "kari" };
                client
                    .authorize(AuthorizeRequest {
                        employee_id: employee.into(),
                        system_user_id: "tk-regnskap".into(),
                        client_org_number: "310015156".into(),
                        access_package: "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (CLIENTS * CALLS_PER_CLIENT) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    rt.block_on(async {
        let none = start(DecisionLog::disabled()).await;
        let spec = SinkSpec::File {
            path: path.clone(),
            delivery: vakt::decision_log::Delivery::Durable,
        };
        let (log, _writers) = DecisionLog::open(&[spec], &LogOptions::default()).unwrap();
        let durable = start(log).await;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        round(&none).await; // warm-up
        round(&durable).await;
        for _ in 0..ROUNDS {
            a.push(round(&none).await);
            b.push(round(&durable).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let records = std::fs::read_to_string(&path).unwrap().lines().count();
        let (a, b) = (median(a), median(b));
        println!("{CLIENTS} concurrent clients, {CALLS_PER_CLIENT} Authorize calls each, {ROUNDS} interleaved rounds (median)");
        println!("no decision log:                       {a:>8.0} calls/s");
        println!("durable file log (fsync, group commit): {b:>8.0} calls/s ({records} records written)");
        println!("ratio durable/none: {:.2}", b / a);
    });
}
