//! The AuthZEN Authorization API through the real binary and a real HTTP client
//! (ureq): every evaluation is the gRPC decision (decision and reasons) and is
//! recorded in the decision log the same way; batches follow the evaluation
//! semantics; the searches answer as WhoCan and WhatCan, page by page; the
//! metadata names the endpoints; and malformed requests get a 400 naming the
//! member, never a decision.

use crate::common;
use common::*;
use serde_json::{json, Value};

struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    fn new(addr: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        Self {
            agent,
            base: format!("http://{addr}"),
        }
    }

    /// POST a body with a content type: (status, JSON answer, X-Request-ID).
    fn post_raw(&self, path: &str, content_type: &str, body: &str) -> (u16, Value, Option<String>) {
        let mut r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", content_type)
            .header("X-Request-ID", "req-42")
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        let id = r
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = r.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        (status, v, id)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, v, _) = self.post_raw(path, "application/json", &body.to_string());
        (s, v)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }
}

/// Vakt's request in AuthZEN's shapes.
fn evaluation(employee: &str, su: &str, client: &str, package: &str) -> Value {
    json!({
        "subject": {"type": "employee", "id": employee},
        "action": {"name": "useSystemUser", "properties": {"access_package": package}},
        "resource": {"type": "system_user", "id": su, "properties": {"client_org_number": client}},
    })
}

const CASES: [(&str, &str, &str, &str); 6] = [
    ("kari", "tk-regnskap", "310015156", REGNSKAP),
    ("ola", "tk-regnskap", "310015156", REGNSKAP),
    ("ola", "tk-sykefravaer", "310017175", SYKEFRAVAER),
    ("per", "tk-regnskap", "310015156", REGNSKAP),
    ("randi", "rr-regnskap", "310021210", REGNSKAP),
    ("kari", "rr-regnskap", "310021210", REGNSKAP),
];

fn start(dir: &std::path::Path, extra: &[&str]) -> (Spawned, Http, std::path::PathBuf) {
    let log = dir.join("decisions.jsonl");
    let sink = format!("file:{}", log.display());
    let mut args = vec!["--authzen-listen", "127.0.0.1:0", "--decision-log", &sink];
    args.extend_from_slice(extra);
    let s = Spawned::start(&args, false);
    let http = Http::new(&authzen_addr(&s));
    (s, http, log)
}

#[test]
fn evaluations_are_the_grpc_decisions_and_are_logged_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http, log) = start(dir.path(), &[]);
    let grpc: Vec<(bool, Vec<String>)> = s.with_client(|mut c| async move {
        let mut out = Vec::new();
        for (e, su, client, p) in CASES {
            let r = c
                .authorize(request(e, su, client, p))
                .await
                .unwrap()
                .into_inner();
            out.push((
                r.decision == vakt::proto::Decision::Allow as i32,
                r.reasons.into_iter().map(|x| x.policy_id).collect(),
            ));
        }
        out
    });
    assert!(grpc.iter().any(|g| g.0) && grpc.iter().any(|g| !g.0));
    let mut ids = Vec::new();
    for ((e, su, client, p), want) in CASES.iter().zip(&grpc) {
        let (status, v) = http.post("/access/v1/evaluation", &evaluation(e, su, client, p));
        assert_eq!(status, 200, "{v}");
        let reasons: Vec<String> = v["context"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["policy_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            (v["decision"].as_bool().unwrap(), reasons),
            want.clone(),
            "{e} {su} {client}"
        );
        ids.push(v["context"]["decision_id"].as_str().unwrap().to_owned());
    }
    // A batch: the same decisions, in order.
    let items: Vec<Value> = CASES
        .iter()
        .map(|(e, su, c, p)| evaluation(e, su, c, p))
        .collect();
    let (status, v) = http.post("/access/v1/evaluations", &json!({"evaluations": items}));
    assert_eq!(status, 200, "{v}");
    let got: Vec<bool> = v["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_bool().unwrap())
        .collect();
    assert_eq!(got, grpc.iter().map(|g| g.0).collect::<Vec<_>>());
    assert!(v.get("decision").is_none());
    s.stop();
    // Every AuthZEN decision is in the log as an authorize record, like gRPC's,
    // and the chain verifies.
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), CASES.len() * 3, "{text}");
    for id in &ids {
        let r = records
            .iter()
            .find(|r| r["decision_id"] == *id)
            .expect("logged");
        assert_eq!(r["call"], "authorize");
    }
    for (g, a) in records[..CASES.len()]
        .iter()
        .zip(&records[CASES.len()..2 * CASES.len()])
    {
        for k in [
            "employee_id",
            "system_user_id",
            "client_org_number",
            "access_package",
            "action",
            "decision",
            "reasons",
            "path",
        ] {
            assert_eq!(g[k], a[k], "{k}");
        }
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["audit", "verify", log.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn batches_follow_the_evaluation_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http, _) = start(dir.path(), &[]);
    let allow = evaluation("kari", "tk-regnskap", "310015156", REGNSKAP);
    let deny = evaluation("ola", "tk-sykefravaer", "310017175", SYKEFRAVAER);
    let batch = |semantic: Option<&str>| {
        let mut b = json!({"evaluations": [allow, deny, allow]});
        if let Some(s) = semantic {
            b["options"] = json!({"evaluations_semantic": s, "another_option": 1});
        }
        let (status, v) = http.post("/access/v1/evaluations", &b);
        assert_eq!(status, 200, "{v}");
        v["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["decision"].as_bool().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(batch(None), [true, false, true]);
    assert_eq!(batch(Some("execute_all")), [true, false, true]);
    assert_eq!(batch(Some("deny_on_first_deny")), [true, false]);
    assert_eq!(batch(Some("permit_on_first_permit")), [true]);
    // Defaults, replaced whole by what an item gives; an item left incomplete is
    // a deny with its error, the rest are decided.
    let (status, v) = http.post(
        "/access/v1/evaluations",
        &json!({
            "subject": {"type": "employee", "id": "kari"},
            "action": {"name": "useSystemUser", "properties": {"access_package": REGNSKAP}},
            "evaluations": [
                {"resource": {"type": "system_user", "id": "tk-regnskap", "properties": {"client_org_number": "310015156"}}},
                {},
                {"subject": {"type": "employee", "id": "ola"}, "resource": {"type": "system_user", "id": "tk-regnskap", "properties": {"client_org_number": "310017175"}}},
            ],
        }),
    );
    assert_eq!(status, 200, "{v}");
    let e = v["evaluations"].as_array().unwrap();
    assert_eq!(e[0]["decision"], true);
    assert_eq!(e[1]["decision"], false);
    assert!(
        e[1]["context"]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("resource"),
        "{v}"
    );
    assert_eq!(e[2]["decision"], false);
    // No items: the single evaluation's shape.
    let mut single = allow.clone();
    single["evaluations"] = json!([]);
    let (status, v) = http.post("/access/v1/evaluations", &single);
    assert_eq!((status, &v["decision"]), (200, &json!(true)), "{v}");
    assert!(v.get("evaluations").is_none());
    let (status, v) = http.post(
        "/access/v1/evaluations",
        &json!({"evaluations": [allow], "options": {"evaluations_semantic": "bogus"}}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("evaluations_semantic"));
    s.stop();
}

#[test]
fn malformed_requests_get_a_400_naming_the_member_and_never_an_allow() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http, log) = start(dir.path(), &[]);
    let good = evaluation("kari", "tk-regnskap", "310015156", REGNSKAP);
    let mut cases: Vec<(String, &str)> = vec![
        ("{\"subject\":".into(), "body"),
        ("[]".into(), "body"),
        ("".into(), "body"),
    ];
    let mut without = |f: &dyn Fn(&mut Value), member: &'static str| {
        let mut v = good.clone();
        f(&mut v);
        cases.push((v.to_string(), member));
    };
    without(
        &|v| {
            v.as_object_mut().unwrap().remove("subject");
        },
        "subject",
    );
    without(
        &|v| {
            v["subject"].as_object_mut().unwrap().remove("id");
        },
        "subject.id",
    );
    without(&|v| v["subject"]["type"] = json!("user"), "subject.type");
    without(&|v| v["action"]["name"] = json!(123), "action.name");
    without(
        &|v| {
            v["action"].as_object_mut().unwrap().remove("properties");
        },
        "action.properties.access_package",
    );
    without(
        &|v| {
            v["resource"]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("client_org_number");
        },
        "resource.properties.client_org_number",
    );
    without(
        &|v| v["resource"]["properties"]["client_org_number"] = json!("123"),
        "resource.properties.client_org_number",
    );
    without(
        &|v| v["action"]["properties"]["access_package"] = json!("urn:altinn:accesspackage:nope"),
        "action.properties.access_package",
    );
    without(
        &|v| v["action"]["name"] = json!("deleteEverything"),
        "action.name",
    );
    without(&|v| v["context"] = json!("yes"), "context");
    // A member given twice: serde_json alone would keep the last (kari, who is
    // allowed, after per); it is refused, naming the member, at any depth.
    let good_text = good.to_string();
    let twice = good_text.replacen(r#""id":"kari""#, r#""id":"per","id":"kari""#, 1);
    assert_ne!(twice, good_text);
    cases.push((twice, "subject.id"));
    let mut with_context = good.clone();
    with_context["context"] = json!({"authenticated": true});
    let text = with_context.to_string();
    let twice = text.replacen(
        r#""authenticated":true"#,
        r#""authenticated":false,"authenticated":true"#,
        1,
    );
    assert_ne!(twice, text);
    cases.push((twice, "context.authenticated"));
    for (body, member) in &cases {
        let (status, v, id) = http.post_raw("/access/v1/evaluation", "application/json", body);
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap().starts_with(member),
            "{body}: {v}"
        );
        assert!(v.get("decision").is_none());
        assert_eq!(id.as_deref(), Some("req-42"));
    }
    // Unknown members are ignored; a charset parameter is accepted.
    let mut extra = good.clone();
    extra["futureField"] = json!({"nested": true});
    let (status, v, _) = http.post_raw(
        "/access/v1/evaluation",
        "application/json; charset=utf-8",
        &extra.to_string(),
    );
    assert_eq!((status, &v["decision"]), (200, &json!(true)), "{v}");
    let (status, _, _) = http.post_raw("/access/v1/evaluation", "text/plain", &good.to_string());
    assert_eq!(status, 415);
    let (status, _) = http.get("/access/v1/evaluation");
    assert_eq!(status, 405);
    let (status, v) = http.post("/access/v1/search/subject", &json!({}));
    assert_eq!(status, 403, "search is off without --reverse-queries: {v}");
    s.stop();
    // Only the two well-formed requests were decided.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn searches_answer_as_the_reverse_queries_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http, _) = start(dir.path(), &["--reverse-queries"]);
    let (grpc_who, grpc_what) = s.with_client(|mut c| async move {
        let who = c
            .who_can(vakt::proto::WhoCanRequest {
                client_org_number: "310015156".into(),
                access_package: REGNSKAP.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let what = c
            .what_can(vakt::proto::WhatCanRequest {
                employee_id: "kari".into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        (who, what)
    });
    // Subject search, one per page.
    let mut got = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let (status, v) = http.post(
            "/access/v1/search/subject",
            &json!({
                "subject": {"type": "employee", "id": "ignored"},
                "action": {"name": "useSystemUser", "properties": {"access_package": REGNSKAP}},
                "resource": {"type": "organization", "id": "310015156"},
                "page": {"limit": 1, "token": token},
            }),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v.as_object().unwrap().keys().next().unwrap(), "page");
        for r in v["results"].as_array().unwrap() {
            assert_eq!(r["type"], "employee");
            got.push(r["id"].as_str().unwrap().to_owned());
        }
        token = v["page"]["next_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    let want: Vec<String> = grpc_who
        .employees
        .iter()
        .map(|e| e.employee_id.clone())
        .collect();
    assert!(want.len() >= 3, "{want:?}");
    assert_eq!(got, want);
    // Resource search.
    let (status, v) = http.post(
        "/access/v1/search/resource",
        &json!({
            "subject": {"type": "employee", "id": "kari"},
            "action": {"name": "useSystemUser"},
            "resource": {"type": "system_user"},
        }),
    );
    assert_eq!(status, 200, "{v}");
    let got: Vec<(String, String, String)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["properties"]["client_org_number"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                r["properties"]["access_package"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = grpc_what
        .grants
        .iter()
        .map(|g| {
            (
                g.system_user_id.clone(),
                g.client_org_number.clone(),
                g.access_package.clone(),
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // Action search: what Kari may do through tk-regnskap for the client.
    let (status, v) = http.post(
        "/access/v1/search/action",
        &json!({
            "subject": {"type": "employee", "id": "kari"},
            "resource": {"type": "system_user", "id": "tk-regnskap", "properties": {"client_org_number": "310015156"}},
        }),
    );
    assert_eq!(status, 200, "{v}");
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "useSystemUser" && a["properties"]["access_package"] == REGNSKAP),
        "{v}"
    );
    // Types that are not Vakt's find nothing; a token for another query is refused.
    let (status, v) = http.post(
        "/access/v1/search/resource",
        &json!({"subject": {"type": "spaceship", "id": "x"}, "action": {"name": "useSystemUser"}, "resource": {"type": "system_user"}}),
    );
    assert_eq!((status, v["results"].as_array().unwrap().len()), (200, 0));
    // Metadata.
    let (status, v) = http.get("/.well-known/authzen-configuration");
    assert_eq!(status, 200);
    let base = v["policy_decision_point"].as_str().unwrap().to_owned();
    assert_eq!(
        v["access_evaluation_endpoint"],
        format!("{base}/access/v1/evaluation")
    );
    assert_eq!(
        v["search_subject_endpoint"],
        format!("{base}/access/v1/search/subject")
    );
    s.stop();
}

/// `--max-connections` counts the gRPC and AuthZEN listeners together: with a
/// gRPC connection open and a limit of one, an AuthZEN caller is turned away,
/// and served once the gRPC connection is gone.
#[test]
fn the_connection_limit_counts_both_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http, _) = start(dir.path(), &["--max-connections", "1"]);
    let body = evaluation("kari", "tk-regnskap", "310015156", REGNSKAP).to_string();
    let mut grpc = std::net::TcpStream::connect(&s.addr).unwrap();
    // The gRPC connection is counted once accepted, before it is served: wait for
    // the server's first HTTP/2 frame on it, which proves it was counted.
    {
        use std::io::{Read as _, Write as _};
        grpc.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .unwrap();
        grpc.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut frame_head = [0u8; 9];
        grpc.read_exact(&mut frame_head)
            .expect("the gRPC connection was not served within 10 s");
    }
    let refused = http
        .agent
        .post(&format!("{}/access/v1/evaluation", http.base))
        .header("Content-Type", "application/json")
        .send(&body);
    assert!(
        refused.is_err(),
        "served past --max-connections: {refused:?}"
    );
    drop(grpc);
    let mut served = false;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Ok(r) = http
            .agent
            .post(&format!("{}/access/v1/evaluation", http.base))
            .header("Content-Type", "application/json")
            .send(&body)
        {
            assert_eq!(r.status().as_u16(), 200);
            served = true;
            break;
        }
    }
    assert!(served, "not served after the gRPC connection closed");
    s.stop();
}

/// Sends `head` (a request with no body) in the given pieces over one raw
/// connection; returns the status code of the answer. The answer is read as it
/// comes, while pieces are still being written: a refusal closes the connection,
/// and writing on after it would reset it.
fn raw_status(addr: &str, head: &[u8], piece: usize) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    let mut r = c.try_clone().unwrap();
    r.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    for part in head.chunks(piece) {
        if c.write_all(part).is_err() {
            break;
        }
        if piece < head.len() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    let line = reader.join().unwrap();
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"))
}

/// A metadata request whose header block is exactly `len` bytes on the wire.
fn head_of_len(len: usize) -> Vec<u8> {
    let bare = "GET /.well-known/authzen-configuration HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n";
    let pad = "a".repeat(len - bare.len());
    let head = format!(
        "GET /.well-known/authzen-configuration HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n"
    );
    assert_eq!(head.len(), len);
    head.into_bytes()
}

/// The header limit is `--max-header-bytes`, exactly, however the block arrives:
/// a block of the limit is served, one byte more is 431 whether it comes in one
/// write or in pieces, and so is a block of 100 KB in one write (which hyper's
/// read buffer alone let through).
#[test]
fn the_header_limit_holds_exactly_whatever_the_write_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _http, _) = start(dir.path(), &["--max-header-bytes", "20000"]);
    let addr = authzen_addr(&s);
    assert_eq!(raw_status(&addr, &head_of_len(20_000), usize::MAX), 200);
    assert_eq!(raw_status(&addr, &head_of_len(20_000), 997), 200);
    assert_eq!(raw_status(&addr, &head_of_len(20_001), usize::MAX), 431);
    assert_eq!(raw_status(&addr, &head_of_len(20_001), 997), 431);
    assert_eq!(raw_status(&addr, &head_of_len(100_000), usize::MAX), 431);
    assert_eq!(raw_status(&addr, &head_of_len(100_000), 4096), 431);
    s.stop();
}

/// Without `--authzen-base-url` the metadata names the address the connection
/// came in on, never a `Host` the caller chose; a base URL that is not a plain
/// http(s) URL is refused at start.
#[test]
fn the_metadata_never_takes_its_urls_from_the_host_header() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http, _) = start(dir.path(), &[]);
    let addr = authzen_addr(&s);
    let mut r = http
        .agent
        .get(&format!("{}/.well-known/authzen-configuration", http.base))
        .header("Host", "evil.example")
        .call()
        .unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["policy_decision_point"], format!("http://{addr}"), "{v}");
    assert!(!v.to_string().contains("evil"), "{v}");
    s.stop();

    let (s, http, _) = start(
        dir.path(),
        &["--authzen-base-url", "https://vakt.example.org/"],
    );
    let (_, v) = http.get("/.well-known/authzen-configuration");
    assert_eq!(v["policy_decision_point"], "https://vakt.example.org");
    s.stop();

    for bad in [
        "vakt.example.org",
        "ftp://vakt.example.org",
        "https://user:pw@vakt.example.org",
        "https://vakt.example.org/?x=1",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args([
                "serve",
                "--authzen-listen",
                "127.0.0.1:0",
                "--authzen-base-url",
                bad,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{bad}: {err}");
        assert!(err.contains("--authzen-base-url"), "{bad}: {err}");
        assert!(!err.contains("pw@"), "{bad}: {err}");
    }
}

/// AuthZEN bodies are charged to the gRPC listener's budget
/// (`--max-buffered-request-bytes`): with two large bodies stalled halfway, a
/// third is refused with 429 naming the flag, and once they are gone it is read.
#[test]
fn stalled_bodies_are_charged_to_the_request_budget() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let (s, http, _) = start(
        dir.path(),
        &[
            "--max-message-bytes",
            "100000",
            "--max-buffered-request-bytes",
            "200000",
        ],
    );
    let addr = authzen_addr(&s);
    let stalled_head = "POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 90000\r\n\r\n";
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(stalled_head.as_bytes()).unwrap();
        c.write_all(&[b' '; 80_000]).unwrap();
        stalled.push(c);
    }
    // A JSON body of 90 KB: spaces, then a request.
    let body = format!(
        "{}{}",
        " ".repeat(90_000 - 200),
        evaluation("kari", "tk-regnskap", "310015156", REGNSKAP)
    );
    let mut refused = None;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (status, v, _) = http.post_raw("/access/v1/evaluation", "application/json", &body);
        if status == 429 {
            refused = Some(v);
            break;
        }
    }
    let refused = refused.expect("a third large body was read past the budget");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("--max-buffered-request-bytes"),
        "{refused}"
    );
    drop(stalled);
    let mut decided = None;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (status, v, _) = http.post_raw("/access/v1/evaluation", "application/json", &body);
        if status == 200 {
            decided = Some(v);
            break;
        }
    }
    assert_eq!(
        decided.expect("not read once the stalled bodies were gone")["decision"],
        true
    );
    s.stop();
}

/// A path's teams are `team_ids`, as gRPC's `AccessPath` names them, in both
/// searches; the deprecated `teams` still carries the same list.
#[test]
fn search_paths_name_their_teams_team_ids_as_grpc_does() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http, _) = start(dir.path(), &["--reverse-queries"]);
    let grpc = s.with_client(|mut c| async move {
        c.who_can(vakt::proto::WhoCanRequest {
            client_org_number: "310015156".into(),
            access_package: REGNSKAP.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
    });
    let want: Vec<(String, String, Vec<String>)> = grpc
        .employees
        .iter()
        .flat_map(|e| {
            e.paths.iter().map(|p| {
                (
                    e.employee_id.clone(),
                    p.system_user_id.clone(),
                    p.team_ids.clone(),
                )
            })
        })
        .collect();
    assert!(want.iter().any(|(_, _, t)| !t.is_empty()), "{want:?}");
    let (status, v) = http.post(
        "/access/v1/search/subject",
        &json!({
            "subject": {"type": "employee", "id": "ignored"},
            "action": {"name": "useSystemUser", "properties": {"access_package": REGNSKAP}},
            "resource": {"type": "organization", "id": "310015156"},
            "page": {"limit": 1000},
        }),
    );
    assert_eq!(status, 200, "{v}");
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    let mut got = Vec::new();
    for r in v["results"].as_array().unwrap() {
        for p in r["properties"]["paths"].as_array().unwrap() {
            assert_eq!(p["teams"], p["team_ids"], "the deprecated name: {p}");
            got.push((
                r["id"].as_str().unwrap().to_owned(),
                p["system_user_id"].as_str().unwrap().to_owned(),
                strs(&p["team_ids"]),
            ));
        }
    }
    assert_eq!(got, want);
    let (status, v) = http.post(
        "/access/v1/search/resource",
        &json!({
            "subject": {"type": "employee", "id": "kari"},
            "action": {"name": "useSystemUser"},
            "resource": {"type": "system_user"},
        }),
    );
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{v}");
    for r in results {
        let p = &r["properties"]["path"];
        assert!(!strs(&p["team_ids"]).is_empty(), "{r}");
        assert_eq!(p["teams"], p["team_ids"], "{r}");
    }
    s.stop();
}
