//! The Unix socket listener through the real binary: it is created with the
//! permissions asked for, replaces a stale socket but never another file, serves
//! gRPC, and each decision record names the caller's uid and pid as the kernel
//! reports them, beside the `x-vakt-caller` it only claimed.

use crate::common;
use common::*;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};

#[test]
fn callers_on_the_unix_socket_are_named_by_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vakt.sock");
    // A socket left behind by an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let log = dir.path().join("decisions.jsonl");
    let sink = format!("file:{}", log.display());
    let s = Spawned::start(
        &[
            "--listen-unix",
            sock.to_str().unwrap(),
            "--listen-unix-mode",
            "600",
            "--decision-log",
            &sink,
        ],
        false,
    );
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let path = sock.clone();
    rt.block_on(async move {
        let mut c = unix_client(path).await.unwrap();
        let mut req = tonic::Request::new(request("kari", "tk-regnskap", "310015156", REGNSKAP));
        req.metadata_mut()
            .insert("x-vakt-caller", "billing".parse().unwrap());
        let r = c.authorize(req).await.unwrap().into_inner();
        assert_eq!(r.decision(), vakt::proto::Decision::Allow);
    });
    drop(rt);
    s.stop();
    let record: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        record["caller"],
        serde_json::json!({"peer": "unix", "uid": uid, "pid": std::process::id(), "service": "billing"}),
        "{record}"
    );
    assert!(!sock.exists(), "the socket is removed at shutdown");
}

#[test]
fn a_file_that_is_not_a_socket_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("important.txt");
    std::fs::write(&path, "keep me").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "serve",
            "--listen",
            "off",
            "--listen-unix",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not a socket"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}
