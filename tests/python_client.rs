//! The gRPC contract outside Rust: a Python client, generated from `proto/` with
//! grpcio-tools, calls the real server for an allow, a deny, a batch, a system-user
//! resolution and a bad request (`tests/python/client.py`).

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

/// The Python with grpcio and grpcio-tools: `VAKT_PYTHON`, or the virtual
/// environment `scripts/test` makes in `target/python`.
fn python() -> PathBuf {
    let p = std::env::var_os("VAKT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/python/bin/python"
            ))
        });
    let ok = Command::new(&p)
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} has no grpcio and grpcio-tools: run scripts/test (it makes target/python), or set VAKT_PYTHON to a Python with `pip install grpcio grpcio-tools`",
        p.display()
    );
    p
}

#[test]
fn a_python_client_generated_from_the_proto_gets_the_same_answers() {
    let py = python();
    let stubs = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(&py)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(format!("{root}/proto"))
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .arg(format!("{root}/proto/vakt/v1/authorization.proto"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
