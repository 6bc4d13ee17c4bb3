//! The Unix socket with every gRPC stack's default settings: Python's grpcio and
//! Node's grpc-js call the real server over the socket and over TCP; raw HTTP/2
//! requests carry the `:authority` grpcio (the socket path, percent-encoded) and
//! grpc-java (the path as it is) send, which the `h2` crate refuses unpatched;
//! `Cargo.lock` must keep resolving `h2` to the patched copy in `vendor/h2`; and a
//! call the HTTP/2 layer still refuses is logged with why.

use crate::common;
use common::*;
use prost::Message as _;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A server on TCP (127.0.0.1:0) and on a Unix socket in `dir`.
fn serve_on_socket(dir: &Path) -> (Spawned, PathBuf) {
    let sock = dir.join("vakt.sock");
    let s = Spawned::start(
        &[
            "--listen-unix",
            sock.to_str().unwrap(),
            "--decision-log",
            "off",
        ],
        false,
    );
    (s, sock)
}

// ----- Raw HTTP/2, for the `:authority` no Rust client sends -----

/// An HPACK integer with an `n`-bit prefix, the prefix's high bits `flags`.
fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// An HPACK string literal, not Huffman-coded.
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A header field "without indexing", named by its index in HPACK's static table.
fn hpack_indexed_name(out: &mut Vec<u8>, index: usize, value: &[u8]) {
    hpack_int(out, 0, 4, index);
    hpack_str(out, value);
}

/// The header block of a gRPC Authorize call; without `:scheme` when `scheme` is
/// false (a malformed request, which HTTP/2 refuses).
fn request_headers(authority: &[u8], scheme: bool) -> Vec<u8> {
    let mut h = vec![0x83]; // :method POST (static index 3)
    if scheme {
        h.push(0x86); // :scheme http (static index 6)
    }
    hpack_indexed_name(&mut h, 4, b"/vakt.v1.Authorizer/Authorize"); // :path
    hpack_indexed_name(&mut h, 1, authority); // :authority
    hpack_indexed_name(&mut h, 31, b"application/grpc"); // content-type
    h.push(0); // te: trailers (a name of its own)
    hpack_str(&mut h, b"te");
    hpack_str(&mut h, b"trailers");
    h
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One Authorize call (kari for Tønsberg Regnskap, allowed in the example world)
/// over a new connection to `sock`, written frame by frame with this header
/// block: the answer, or how the server refused it.
fn raw_authorize(sock: &Path, headers: &[u8]) -> Result<vakt::proto::AuthorizeResponse, String> {
    const DATA: u8 = 0x0;
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const GOAWAY: u8 = 0x7;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    const ACK: u8 = 0x1;

    let mut c = UnixStream::connect(sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let message = request("kari", "tk-regnskap", "310015156", REGNSKAP).encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_HEADERS, 1, headers));
    out.extend(frame(DATA, END_STREAM, 1, &body));
    c.write_all(&out).unwrap();

    let mut answer = Vec::new();
    loop {
        let mut head = [0u8; 9];
        c.read_exact(&mut head)
            .map_err(|e| format!("reading a frame: {e}"))?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        c.read_exact(&mut payload)
            .map_err(|e| format!("reading a frame: {e}"))?;
        match kind {
            SETTINGS if flags & ACK == 0 => c.write_all(&frame(SETTINGS, ACK, 0, &[])).unwrap(),
            PING if flags & ACK == 0 => c.write_all(&frame(PING, ACK, 0, &payload)).unwrap(),
            RST_STREAM if stream == 1 => {
                return Err(format!(
                    "RST_STREAM, code {}",
                    u32::from_be_bytes(payload[..4].try_into().unwrap())
                ))
            }
            GOAWAY => {
                return Err(format!(
                    "GOAWAY, code {}",
                    u32::from_be_bytes(payload[4..8].try_into().unwrap())
                ))
            }
            DATA if stream == 1 => answer.extend_from_slice(&payload),
            _ => {}
        }
        if stream == 1 && flags & END_STREAM != 0 && (kind == HEADERS || kind == DATA) {
            break;
        }
    }
    // The trailers (HPACK) are not decoded: a message is the answer, and without
    // one the status is an error.
    if answer.len() < 5 {
        return Err("no message in the answer: the call failed".into());
    }
    vakt::proto::AuthorizeResponse::decode(&answer[5..]).map_err(|e| e.to_string())
}

/// grpcio (1.57 and later) sends the socket path percent-encoded as `:authority`,
/// grpc-java the path as it is: neither is a URI authority, and unpatched `h2`
/// reset the stream (PROTOCOL_ERROR) before the call reached Vakt. Each is answered
/// now, like `localhost` (what grpc-go and grpc-js send).
#[test]
fn authorities_that_name_the_socket_path_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (s, sock) = serve_on_socket(dir.path());
    let percent_encoded = sock.to_str().unwrap().replace('/', "%2F");
    for authority in ["localhost", &percent_encoded, sock.to_str().unwrap()] {
        let answer = raw_authorize(&sock, &request_headers(authority.as_bytes(), true))
            .unwrap_or_else(|e| panic!(":authority {authority:?}: {e}"));
        assert_allow(&answer);
    }
    s.stop();
}

/// A request the HTTP/2 layer refuses (no `:scheme`) never reaches tonic; it is
/// logged with the reason, where before the server said nothing. A correct call
/// before it logs no such line.
#[test]
fn a_call_refused_by_http2_is_logged_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let (s, sock) = serve_on_socket(dir.path());
    let refusals = |s: &Spawned| -> Vec<serde_json::Value> {
        s.diagnostics()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["fields"]["message"] == "call refused by the HTTP/2 layer before it reached Vakt"
            })
            .collect()
    };
    assert_allow(&raw_authorize(&sock, &request_headers(b"localhost", true)).unwrap());
    let refused = raw_authorize(&sock, &request_headers(b"localhost", false));
    assert_eq!(refused.unwrap_err(), "RST_STREAM, code 1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(eventually(
        Duration::from_secs(10),
        "the refusal is logged",
        || !refusals(&s).is_empty(),
    ));
    let logged = refusals(&s);
    assert_eq!(logged.len(), 1, "{logged:?}");
    let line = &logged[0];
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["fields"]["reason"], "PROTOCOL_ERROR", "{line}");
    assert_eq!(line["fields"]["stream"], 1, "{line}");
    // SAFETY: getuid has no preconditions.
    assert_eq!(line["fields"]["uid"], unsafe { libc::getuid() }, "{line}");
    s.stop();
}

/// `cargo update` must not silently drop the patch: `Cargo.lock` resolves `h2` to
/// the path in `[patch.crates-io]` (a path package has no `source`), and that
/// copy is the patched one, of the version the lock names.
#[test]
fn cargo_lock_resolves_h2_to_the_vendored_copy() {
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(format!("{ROOT}/Cargo.lock")).unwrap()).unwrap();
    let h2: Vec<_> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str() == Some("h2"))
        .collect();
    assert_eq!(h2.len(), 1, "one h2 in Cargo.lock: {h2:?}");
    assert!(
        h2[0].get("source").is_none(),
        "Cargo.lock takes h2 from {} instead of vendor/h2: is [patch.crates-io] in Cargo.toml, for the version tonic wants? (vendor/h2/VAKT-PATCH.md)",
        h2[0]["source"]
    );
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap()).unwrap();
    assert_eq!(
        manifest["patch"]["crates-io"]["h2"]["path"].as_str(),
        Some("vendor/h2")
    );
    let vendored: toml::Value =
        toml::from_str(&std::fs::read_to_string(format!("{ROOT}/vendor/h2/Cargo.toml")).unwrap())
            .unwrap();
    assert_eq!(vendored["package"]["version"], h2[0]["version"]);
    let server = std::fs::read_to_string(format!("{ROOT}/vendor/h2/src/server.rs")).unwrap();
    assert!(
        server.contains("VAKT PATCH"),
        "vendor/h2 is not the patched copy"
    );
}

// ----- Python (grpcio) and Node (grpc-js), with their default settings -----

/// Runs a client program with `args`; it must print only `ok`.
fn run_client(what: &str, program: &Path, args: &[&std::ffi::OsStr]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tests/python/client.py` (an allow, a deny, a batch, a resolution and a bad
/// field) with grpcio's defaults, over TCP and over the Unix socket: grpcio
/// sends the socket path, percent-encoded, as `:authority`.
#[test]
fn grpcio_with_its_defaults_over_the_unix_socket_and_tcp() {
    let py = python();
    let stubs = python_stubs(&py);
    let dir = tempfile::tempdir().unwrap();
    let (s, sock) = serve_on_socket(dir.path());
    let client = PathBuf::from(format!("{ROOT}/tests/python/client.py"));
    for target in [s.addr.clone(), format!("unix://{}", sock.display())] {
        run_client(
            &format!("grpcio on {target}"),
            &py,
            &[
                client.as_os_str(),
                stubs.path().as_os_str(),
                target.as_ref(),
            ],
        );
    }
    s.stop();
}

/// `tests/node/client.js` (an allow, a deny and a bad field) with grpc-js's
/// defaults, over TCP and over the Unix socket.
#[test]
fn grpc_js_with_its_defaults_over_the_unix_socket_and_tcp() {
    let node_dir = PathBuf::from(format!("{ROOT}/tests/node"));
    assert!(
        node_dir.join("node_modules/@grpc/grpc-js").is_dir()
            && node_dir.join("node_modules/@grpc/proto-loader").is_dir(),
        "tests/node has no node_modules: run scripts/test (it runs `npm ci --prefix tests/node`), or run that yourself"
    );
    let node = PathBuf::from("node");
    let dir = tempfile::tempdir().unwrap();
    let (s, sock) = serve_on_socket(dir.path());
    let client = node_dir.join("client.js");
    let proto = PathBuf::from(format!("{ROOT}/proto"));
    for target in [s.addr.clone(), format!("unix://{}", sock.display())] {
        run_client(
            &format!("grpc-js on {target}"),
            &node,
            &[client.as_os_str(), proto.as_os_str(), target.as_ref()],
        );
    }
    s.stop();
}
