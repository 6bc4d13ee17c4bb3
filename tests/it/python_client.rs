//! The gRPC contract outside Rust: a Python client, generated from `proto/` with
//! grpcio-tools, calls the real server for an allow, a deny, a batch, a system-user
//! resolution and a bad request (`tests/python/client.py`).

use crate::common;
use common::*;
use std::process::Command;

#[test]
fn a_python_client_generated_from_the_proto_gets_the_same_answers() {
    let py = python();
    let stubs = python_stubs(&py);
    let root = env!("CARGO_MANIFEST_DIR");
    let s = Spawned::start(&["--decision-log", "off"], false);
    let out = Command::new(&py)
        .arg(format!("{root}/tests/python/client.py"))
        .arg(stubs.path())
        .arg(&s.addr)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.stop();
}
