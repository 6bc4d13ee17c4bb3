//! TLS and mutual TLS on the TCP listener, through the real binary, with
//! certificates made here: an allowed client is served and named in its decision
//! records by its certificate's identity; a client outside the allow-list, one
//! without a certificate, one from another CA and a plaintext one are all refused
//! before any decision, and the refusal is logged; a rotated server certificate
//! serves new connections while an open one keeps working.

use crate::common;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate signed by `ca` for the given DNS names / IPs and SAN URIs:
/// (certificate PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str], uris: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    for u in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*u).try_into().unwrap()));
    }
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// `vakt serve`'s flags for mutual TLS: the server's certificate and key and
/// the client CA, written into `dir`, and `--tls-allow allow`; then `extra`.
fn mtls_args(
    dir: &Path,
    (cert, key): &(String, String),
    client_ca: &Ca,
    allow: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "--tls-cert".to_owned(),
        write(dir, "server.pem", cert),
        "--tls-key".to_owned(),
        write(dir, "server.key", key),
        "--tls-client-ca".to_owned(),
        write(dir, "clients.pem", &client_ca.pem),
        "--tls-allow".to_owned(),
        allow.to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

async fn connect(
    addr: &str,
    ca: &str,
    client: Option<&(String, String)>,
) -> Result<vakt::proto::authorizer_client::AuthorizerClient<tonic::transport::Channel>, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(vakt::proto::authorizer_client::AuthorizerClient::new(
        channel,
    ))
}

async fn ask(
    c: &mut vakt::proto::authorizer_client::AuthorizerClient<tonic::transport::Channel>,
) -> Result<vakt::proto::AuthorizeResponse, tonic::Status> {
    c.authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
        .await
        .map(|r| r.into_inner())
}

#[test]
fn mutual_tls_admits_only_the_allow_list_and_names_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let other_ca = ca("someone else's CA");
    let server = leaf(&server_ca, &["localhost", "127.0.0.1"], &[]);
    let allowed = leaf(&client_ca, &[], &["spiffe://vakt.test/ns/billing/sa/app"]);
    let outside = leaf(
        &client_ca,
        &["intruder.vakt.test"],
        &["spiffe://vakt.test/ns/other/sa/x"],
    );
    let foreign = leaf(&other_ca, &[], &["spiffe://vakt.test/ns/billing/sa/app"]);
    let log = dir.path().join("decisions.jsonl");
    let sink = format!("file:{}", log.display());
    let args = mtls_args(
        dir.path(),
        &server,
        &client_ca,
        "spiffe://vakt.test/ns/billing/*",
        &["--decision-log", &sink],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Spawned::start(&args, false);
    let addr = s.addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server_ca_pem = server_ca.pem.clone();
    rt.block_on(async move {
        let mut c = connect(&addr, &server_ca_pem, Some(&allowed))
            .await
            .unwrap();
        assert_eq!(
            ask(&mut c).await.unwrap().decision(),
            vakt::proto::Decision::Allow
        );
        // Each of these would be allowed if it got through; none gets a decision.
        for (what, client) in [
            ("outside the allow-list", Some(&outside)),
            ("from another CA", Some(&foreign)),
            ("without a certificate", None),
        ] {
            let answered = match connect(&addr, &server_ca_pem, client).await {
                Ok(mut c) => ask(&mut c).await.ok(),
                Err(_) => None,
            };
            assert!(answered.is_none(), "a client {what} was answered");
        }
        // Plaintext to the TLS port.
        let plain = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await;
        if let Ok(ch) = plain {
            let mut c = vakt::proto::authorizer_client::AuthorizerClient::new(ch);
            assert!(
                ask(&mut c).await.is_err(),
                "a plaintext client was answered"
            );
        }
    });
    drop(rt);
    let refusals = |diagnostics: &[String]| {
        diagnostics
            .iter()
            .filter(|l| l.contains("\"WARN\""))
            .filter(|l| l.contains("not on the allow-list") || l.contains("TLS handshake failed"))
            .count()
    };
    // A refused client may give up before its refusal is logged: wait for the lines.
    until(Duration::from_secs(5), "both refusals to be logged", || {
        refusals(&s.diagnostics()) >= 2
    });
    let diagnostics = s.diagnostics();
    s.stop();
    let refusals = refusals(&diagnostics);
    assert!(refusals >= 2, "refusals not logged: {diagnostics:#?}");
    assert!(diagnostics
        .iter()
        .any(|l| l.contains("not on the allow-list")
            && l.contains("spiffe://vakt.test/ns/other/sa/x")));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "only the allowed client was decided: {text}"
    );
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        record["caller"]["identity"], "spiffe://vakt.test/ns/billing/sa/app",
        "{record}"
    );
}

#[test]
fn a_rotated_certificate_serves_new_connections_and_keeps_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = ca("old CA");
    let new_ca = ca("new CA");
    let (cert, key) = leaf(&old_ca, &["localhost", "127.0.0.1"], &[]);
    let cert_path = write(dir.path(), "server.pem", &cert);
    let key_path = write(dir.path(), "server.key", &key);
    let s = Spawned::start(
        &[
            "--tls-cert",
            &cert_path,
            "--tls-key",
            &key_path,
            "--decision-log",
            "off",
        ],
        false,
    );
    let addr = s.addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (old_pem, new_pem) = (old_ca.pem.clone(), new_ca.pem.clone());
    let dir_path = dir.path().to_owned();
    rt.block_on(async move {
        let mut open = connect(&addr, &old_pem, None).await.unwrap();
        ask(&mut open).await.unwrap();
        // A stream of calls through the rotation, on the open connection and on
        // new ones from a client that trusts both CAs: none may fail.
        let both = format!("{old_pem}{new_pem}");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Calls the stream has made so far, for the wait after the rotation.
        let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stream = {
            let (stop, made, addr, mut open) =
                (stop.clone(), made.clone(), addr.clone(), open.clone());
            tokio::spawn(async move {
                let (mut calls, mut failures) = (0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Err(e) = ask(&mut open).await {
                        failures.push(format!("open connection: {e}"));
                    }
                    match connect(&addr, &both, None).await {
                        Ok(mut c) => {
                            if let Err(e) = ask(&mut c).await {
                                failures.push(format!("new connection: {e}"));
                            }
                        }
                        Err(e) => failures.push(format!("connecting: {e}")),
                    }
                    calls += 2;
                    made.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
                    // Deliberate pacing between rounds, not a wait.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (calls, failures)
            })
        };
        // Rotate: a certificate from a new CA, written as rotation tools do (a new
        // file renamed over the old).
        let (cert, key) = leaf(&new_ca, &["localhost", "127.0.0.1"], &[]);
        std::fs::write(dir_path.join("next.key"), key).unwrap();
        std::fs::rename(dir_path.join("next.key"), dir_path.join("server.key")).unwrap();
        std::fs::write(dir_path.join("next.pem"), cert).unwrap();
        std::fs::rename(dir_path.join("next.pem"), dir_path.join("server.pem")).unwrap();
        eventually_some(
            Duration::from_secs(20),
            "the new certificate to serve",
            || async {
                let mut c = connect(&addr, &new_pem, None).await.ok()?;
                ask(&mut c).await.ok()
            },
        )
        .await;
        // The connection made before the rotation still works, and no call of
        // the stream failed.
        ask(&mut open).await.unwrap();
        // Let the stream run on past the rotation: two more rounds, on the new
        // certificate, and at least ten calls in all.
        let target = (made.load(std::sync::atomic::Ordering::Relaxed) + 4).max(10);
        eventually(
            Duration::from_secs(20),
            "the call stream to run on after the rotation",
            || made.load(std::sync::atomic::Ordering::Relaxed) >= target,
        )
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (calls, failures) = stream.await.unwrap();
        assert!(calls >= 10, "only {calls} calls during the rotation");
        assert!(
            failures.is_empty(),
            "{} of {calls} calls failed: {failures:?}",
            failures.len()
        );
        // And a client that trusts only the old CA can no longer connect anew.
        let stale = match connect(&addr, &old_pem, None).await {
            Ok(mut c) => ask(&mut c).await.is_ok(),
            Err(_) => false,
        };
        assert!(!stale);
    });
    drop(rt);
    s.stop();
}

#[test]
fn bad_tls_settings_are_reported_together_with_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write(dir.path(), "junk.pem", "not a certificate");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "serve",
            "--tls-cert",
            &junk,
            "--tls-key",
            &junk,
            "--max-batch",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("junk.pem") && err.contains("--max-batch"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["serve", "--tls-allow", "spiffe://x/*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-allow"));
}

/// Under mutual TLS, reverse queries are answered only to identities on their
/// own allow-list; an identity the TLS allow-list admits for Authorize but the
/// reverse one does not is refused with PERMISSION_DENIED.
#[test]
fn reverse_queries_under_mutual_tls_need_their_own_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let server = leaf(&server_ca, &["localhost", "127.0.0.1"], &[]);
    let app = leaf(&client_ca, &[], &["spiffe://vakt.test/ns/billing/sa/app"]);
    let auditor = leaf(&client_ca, &[], &["spiffe://vakt.test/ns/audit/sa/review"]);
    let args = mtls_args(
        dir.path(),
        &server,
        &client_ca,
        "spiffe://vakt.test/ns/*",
        &[
            "--reverse-queries",
            "--reverse-queries-allow",
            "spiffe://vakt.test/ns/audit/*",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Spawned::start(&args, false);
    let addr = s.addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let who = vakt::proto::WhoCanRequest {
            client_org_number: "310015156".into(),
            access_package: REGNSKAP.into(),
            ..Default::default()
        };
        let mut c = connect(&addr, &server_ca.pem, Some(&app)).await.unwrap();
        assert_eq!(
            ask(&mut c).await.unwrap().decision(),
            vakt::proto::Decision::Allow
        );
        let e = c.who_can(who.clone()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("--reverse-queries-allow"), "{e:?}");
        let mut c = connect(&addr, &server_ca.pem, Some(&auditor))
            .await
            .unwrap();
        let r = c.who_can(who).await.unwrap().into_inner();
        assert!(r.employees.iter().any(|e| e.employee_id == "kari"), "{r:?}");
    });
    drop(rt);
    s.stop();
}

/// One HTTP/1.1 request over TLS, as the client whose certificate is `client`:
/// the response's status line and body, or why the connection failed.
async fn https_post(
    addr: &str,
    ca: &str,
    client: &(String, String),
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(client.0.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(client.1.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut response))
        .await
        .map_err(|_| "no answer within 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The AuthZEN listener speaks TLS with the gRPC listener's files and admits
/// only the clients its allow-list names; an admitted one is named in the
/// decision record, as over gRPC.
#[test]
fn the_authzen_api_uses_the_same_tls_and_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let server = leaf(&server_ca, &["localhost", "127.0.0.1"], &[]);
    let allowed = leaf(&client_ca, &[], &["spiffe://vakt.test/ns/billing/sa/app"]);
    let outside = leaf(&client_ca, &[], &["spiffe://vakt.test/ns/other/sa/x"]);
    let log = dir.path().join("decisions.jsonl");
    let sink = format!("file:{}", log.display());
    let args = mtls_args(
        dir.path(),
        &server,
        &client_ca,
        "spiffe://vakt.test/ns/billing/*",
        &["--authzen-listen", "127.0.0.1:0", "--decision-log", &sink],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Spawned::start(&args, false);
    let addr = authzen_addr(&s);
    let body = serde_json::json!({
        "subject": {"type": "employee", "id": "kari"},
        "action": {"name": "useSystemUser", "properties": {"access_package": REGNSKAP}},
        "resource": {"type": "system_user", "id": "tk-regnskap", "properties": {"client_org_number": "310015156"}},
    })
    .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (status, answer) = https_post(
            &addr,
            &server_ca.pem,
            &allowed,
            "/access/v1/evaluation",
            &body,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["decision"], true, "{v}");
        // The same request would be allowed; this client is never answered.
        let refused = https_post(
            &addr,
            &server_ca.pem,
            &outside,
            "/access/v1/evaluation",
            &body,
        )
        .await;
        assert!(
            refused.is_err(),
            "a client outside the allow-list was answered: {refused:?}"
        );
    });
    drop(rt);
    s.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        record["caller"]["identity"],
        "spiffe://vakt.test/ns/billing/sa/app"
    );
}

/// The Unix socket is no way around an allow-list: its callers are named
/// `unix:uid:N` and must be on --tls-allow when mutual TLS guards the calls, and
/// on --reverse-queries-allow to ask reverse queries.
#[test]
fn unix_socket_callers_meet_both_allow_lists_by_uid() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let server = leaf(&server_ca, &["localhost", "127.0.0.1"], &[]);
    // SAFETY: getuid has no preconditions.
    let me = format!("unix:uid:{}", unsafe { libc::getuid() });
    let sock = dir.path().join("vakt.sock");
    let who = vakt::proto::WhoCanRequest {
        client_org_number: "310015156".into(),
        access_package: REGNSKAP.into(),
        ..Default::default()
    };
    let start = |tls_allow: &str, reverse_allow: &str| {
        let args = mtls_args(
            dir.path(),
            &server,
            &client_ca,
            tls_allow,
            &[
                "--listen-unix",
                sock.to_str().unwrap(),
                "--reverse-queries",
                "--reverse-queries-allow",
                reverse_allow,
            ],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Spawned::start(&args, false)
    };
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Not on --tls-allow: refused before any call, and the refusal is logged.
    let s = start("spiffe://vakt.test/ns/*", "spiffe://vakt.test/ns/audit/*");
    let refused = rt.block_on(async {
        match unix_client(sock.clone()).await {
            Err(e) => e,
            Ok(mut c) => c
                .authorize(request("kari", "tk-regnskap", "310015156", REGNSKAP))
                .await
                .map(|r| format!("{:?}", r.into_inner().decision()))
                .unwrap_or_else(|e| format!("{e:?}")),
        }
    });
    assert!(!refused.contains("Allow"), "{refused}");
    // The client may see the refusal before the line is logged: wait for it.
    until(Duration::from_secs(5), "the refusal to be logged", || {
        s.diagnostics()
            .iter()
            .any(|l| l.contains("caller refused") && l.contains(&me))
    });
    s.stop();

    // On --tls-allow, not on --reverse-queries-allow: decisions yes, WhoCan no.
    let s = start(
        &format!("spiffe://vakt.test/ns/*,{me}"),
        "spiffe://vakt.test/ns/audit/*",
    );
    rt.block_on(async {
        let mut c = unix_client(sock.clone()).await.unwrap();
        assert_eq!(
            ask(&mut c).await.unwrap().decision(),
            vakt::proto::Decision::Allow
        );
        let e = c.who_can(who.clone()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains(&me), "{e:?}");
    });
    s.stop();

    // On both: WhoCan answers.
    let s = start(&format!("spiffe://vakt.test/ns/*,{me}"), &me);
    rt.block_on(async {
        let mut c = unix_client(sock.clone()).await.unwrap();
        let r = c.who_can(who.clone()).await.unwrap().into_inner();
        assert!(r.employees.iter().any(|e| e.employee_id == "kari"), "{r:?}");
    });
    s.stop();
}

/// A listener without caller identities (plain TCP, or AuthZEN without mutual
/// TLS) cannot meet --reverse-queries-allow: start is refused with exit 78,
/// naming both settings. Without the allow-list, the same start is accepted.
#[test]
fn a_reverse_query_allow_list_on_a_listener_without_identities_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vakt.sock");
    for (extra, flag) in [
        (vec![], "--listen"),
        (
            vec![
                "--listen",
                "off",
                "--listen-unix",
                sock.to_str().unwrap(),
                "--authzen-listen",
                "127.0.0.1:0",
            ],
            "--authzen-listen",
        ),
    ] {
        let mut args = vec![
            "serve",
            "--reverse-queries",
            "--reverse-queries-allow",
            "unix:uid:0",
        ];
        args.extend(extra.iter().copied());
        // Bounded: a sidecar that started anyway is killed, and the test fails.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_at_most(&mut child, Duration::from_secs(30));
        let _ = child.kill();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(78), "{args:?}: {err}");
        assert!(
            err.contains("--reverse-queries-allow") && err.contains(flag),
            "{err}"
        );
    }
    // The Unix socket alone has identities: accepted, and it serves.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "serve",
            "--listen",
            "off",
            "--listen-unix",
            sock.to_str().unwrap(),
            "--reverse-queries",
            "--reverse-queries-allow",
            "unix:uid:0",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answered = until_some(Duration::from_secs(30), "the Unix socket to answer", || {
        rt.block_on(async {
            let mut c = unix_client(sock.clone()).await.ok()?;
            ask(&mut c).await.ok()
        })
    });
    assert_eq!(answered.decision(), vakt::proto::Decision::Allow);
    signal(child.id() as i32, libc::SIGTERM);
    assert!(wait_at_most(&mut child, Duration::from_secs(30)).is_some_and(|s| s.success()));
}

/// A refused mutual-TLS client is logged by its address as it is written
/// (`127.0.0.1:45900`), not as a Rust `Option` (`Some(127.0.0.1:45900)`).
#[test]
fn a_refused_client_is_logged_by_its_plain_address() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let server = leaf(&server_ca, &["localhost", "127.0.0.1"], &[]);
    let outside = leaf(&client_ca, &[], &["spiffe://vakt.test/ns/other/sa/x"]);
    let args = mtls_args(
        dir.path(),
        &server,
        &client_ca,
        "spiffe://vakt.test/ns/billing/*",
        &[],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Spawned::start(&args, false);
    let addr = s.addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server_ca_pem = server_ca.pem.clone();
    let answered = rt.block_on(async move {
        match connect(&addr, &server_ca_pem, Some(&outside)).await {
            Ok(mut c) => ask(&mut c).await.ok(),
            Err(_) => None,
        }
    });
    drop(rt);
    assert!(
        answered.is_none(),
        "a client outside the allow-list was answered"
    );
    let refusal = until_some(Duration::from_secs(10), "the refusal to be logged", || {
        s.diagnostics()
            .into_iter()
            .find(|l| l.contains("not on the allow-list"))
    });
    s.stop();
    let v: serde_json::Value = serde_json::from_str(&refusal).unwrap();
    let peer = v["fields"]["peer"].as_str().unwrap_or_default().to_owned();
    let parsed: Result<std::net::SocketAddr, _> = peer.parse();
    assert!(
        parsed.is_ok_and(|a| a.ip().is_loopback()),
        "peer is not an address: {refusal}"
    );
}
