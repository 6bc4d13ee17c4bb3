//! Secrets never reach a sink or the diagnostic log. Every shape of the corpus in
//! `tests/data/secrets/secrets.tsv` (drawn from secretlint's recommended preset and
//! detect-secrets, with the shapes of issue 22) is sent, alone and inside a longer
//! string, through every field of every call: over gRPC (Authorize,
//! AuthorizeBatch, ResolveSystemUser, WhoCan, WhatCan: each request field, context
//! values and names, the caller's service name and the trace context from the
//! metadata) and over AuthZEN (evaluation, evaluations, the three searches; each
//! member, the context, the headers). The real binary writes decisions to stdout, a
//! durable file and an OTLP collector, and diagnostics at debug level; no
//! distinctive part of any secret appears in any of them, while a benign control
//! value sent the same ways appears in each (so the check can fail). Ids, org
//! numbers, UUIDs, URNs and digests stay as they are, and a record whose field had
//! to be changed says which: an employee id shaped like a fødselsnummer too.

use crate::common;
use common::*;
use prost_types::value::Kind;
use serde_json::{json, Value};
use tonic::transport::Channel;
use vakt::proto::authorizer_client::AuthorizerClient;
use vakt::proto::{
    AuthorizeBatchRequest, AuthorizeRequest, ResolveSystemUserRequest, WhatCanRequest,
    WhoCanRequest,
};

/// A value sent the same ways as the secrets, that must be written.
const CONTROL: &str = "benign-control-4417";

/// A valid fødselsnummer (both check digits hold), sent as an employee id.
const FNR: &str = "15038713008";

/// One corpus shape: the value, and the parts of it that must never be written.
struct Shape {
    value: String,
    parts: Vec<String>,
}

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/secrets/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows of a corpus file, split at tabs (comments and blank lines left out).
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn corpus() -> Vec<Shape> {
    rows(&data("secrets.tsv"))
        .into_iter()
        .map(|r| {
            assert!(r.len() >= 4, "secrets.tsv: {r:?}");
            Shape {
                value: r[2].replace("\\n", "\n").replace("\\t", "\t"),
                parts: r[3..].to_vec(),
            }
        })
        .collect()
}

fn untouched() -> Vec<String> {
    rows(&data("untouched.tsv"))
        .into_iter()
        .map(|r| r[1].clone())
        .collect()
}

fn string(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn fields(pairs: Vec<(String, prost_types::Value)>) -> prost_types::Struct {
    prost_types::Struct {
        fields: pairs.into_iter().collect(),
    }
}

/// Contexts holding `v`: as a string attribute, nested in a set and a record (the
/// test schema declares `note`, `tags` and `detail`), and as an attribute name
/// (which the schema refuses).
fn contexts(v: &str) -> Vec<prost_types::Struct> {
    let tags = prost_types::Value {
        kind: Some(Kind::ListValue(prost_types::ListValue {
            values: vec![string(v), string("plain")],
        })),
    };
    let detail = prost_types::Value {
        kind: Some(Kind::StructValue(fields(vec![(
            "text".to_owned(),
            string(v),
        )]))),
    };
    vec![
        fields(vec![("note".to_owned(), string(v))]),
        fields(vec![
            ("tags".to_owned(), tags),
            ("detail".to_owned(), detail),
        ]),
        fields(vec![(v.to_owned(), string("x"))]),
    ]
}

/// `call` with `v` as the caller's service name and inside the trace context.
fn with_metadata<T>(call: T, v: &str) -> tonic::Request<T> {
    let mut call = tonic::Request::new(call);
    if let Ok(m) = v.parse() {
        call.metadata_mut().insert("x-vakt-caller", m);
    }
    if let Ok(m) = format!("00-{v}-00f067aa0ba902b7-01").parse() {
        call.metadata_mut().insert("traceparent", m);
    }
    call
}

/// Every gRPC call with `v` in each field in turn; how many were answered.
async fn grpc_calls(c: &mut AuthorizerClient<Channel>, v: &str) -> usize {
    let mut answered = 0;
    let base = || request("kari", "tk-regnskap", "310015156", REGNSKAP);
    let mut reqs: Vec<AuthorizeRequest> = (0..5)
        .map(|field| {
            let mut r = base();
            match field {
                0 => r.employee_id = v.into(),
                1 => r.system_user_id = v.into(),
                2 => r.client_org_number = v.into(),
                3 => r.access_package = v.into(),
                _ => r.action = v.into(),
            }
            r
        })
        .collect();
    for ctx in contexts(v) {
        let mut r = base();
        r.context = Some(ctx);
        reqs.push(r);
    }
    for r in &reqs {
        answered += usize::from(c.authorize(with_metadata(r.clone(), v)).await.is_ok());
        let resolve = ResolveSystemUserRequest {
            employee_id: r.employee_id.clone(),
            client_org_number: r.client_org_number.clone(),
            access_package: r.access_package.clone(),
            action: r.action.clone(),
            context: r.context.clone(),
            min_data_sequence: 0,
        };
        answered += usize::from(
            c.resolve_system_user(with_metadata(resolve, v))
                .await
                .is_ok(),
        );
    }
    let batch = AuthorizeBatchRequest {
        requests: reqs.clone(),
    };
    answered += usize::from(c.authorize_batch(with_metadata(batch, v)).await.is_ok());
    let who = || WhoCanRequest {
        client_org_number: "310015156".into(),
        access_package: REGNSKAP.into(),
        page_size: 5,
        ..Default::default()
    };
    for field in 0..8 {
        let mut q = who();
        match field {
            0 => q.client_org_number = v.into(),
            1 => q.access_package = v.into(),
            2 => q.system_user_id = v.into(),
            3 => q.action = v.into(),
            4..=6 => q.context = Some(contexts(v).swap_remove(field - 4)),
            _ => q.page_token = v.into(),
        }
        answered += usize::from(c.who_can(with_metadata(q, v)).await.is_ok());
    }
    let what = || WhatCanRequest {
        employee_id: "kari".into(),
        page_size: 5,
        ..Default::default()
    };
    for field in 0..9 {
        let mut q = what();
        match field {
            0 => q.employee_id = v.into(),
            1 => q.client_org_number = v.into(),
            2 => q.access_package = v.into(),
            3 => q.system_user_id = v.into(),
            4 => q.action = v.into(),
            5..=7 => q.context = Some(contexts(v).swap_remove(field - 5)),
            _ => q.page_token = v.into(),
        }
        answered += usize::from(c.what_can(with_metadata(q, v)).await.is_ok());
    }
    answered
}

/// An AuthZEN client: POSTs JSON with `v` in the caller and request-id headers.
struct AuthZen {
    agent: ureq::Agent,
    base: String,
}

impl AuthZen {
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

    /// The status, or 0 when the request could not be sent (a header value that
    /// HTTP cannot carry is left out first).
    fn post(&self, path: &str, body: &Value, v: &str) -> u16 {
        let header_ok = v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        let mut req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if header_ok {
            req = req.header("x-vakt-caller", v).header("X-Request-ID", v);
        }
        match req.send(body.to_string()) {
            Ok(mut r) => {
                let _ = r.body_mut().read_to_string();
                r.status().as_u16()
            }
            Err(_) => 0,
        }
    }
}

fn evaluation(employee: &str, su: &str, client: &str, action: &str, package: &str) -> Value {
    json!({
        "subject": {"type": "employee", "id": employee},
        "action": {"name": action, "properties": {"access_package": package}},
        "resource": {"type": "system_user", "id": su, "properties": {"client_org_number": client}},
    })
}

/// Every AuthZEN call with `v` in each member in turn; how many got a 200.
fn authzen_calls(http: &AuthZen, v: &str) -> usize {
    let ok = |status: u16| usize::from(status == 200);
    let (e, su, c, a, p) = (
        "kari",
        "tk-regnskap",
        "310015156",
        "useSystemUser",
        REGNSKAP,
    );
    let mut items = vec![
        evaluation(v, su, c, a, p),
        evaluation(e, v, c, a, p),
        evaluation(e, su, v, a, p),
        evaluation(e, su, c, v, p),
        evaluation(e, su, c, a, v),
    ];
    for ctx in [
        json!({"note": v}),
        json!({"tags": [v, "plain"], "detail": {"text": v}}),
        json!({ v: "x" }),
    ] {
        let mut with_context = evaluation(e, su, c, a, p);
        with_context["context"] = ctx;
        items.push(with_context);
    }
    let mut answered = 0;
    for item in &items {
        answered += ok(http.post("/access/v1/evaluation", item, v));
    }
    answered += ok(http.post("/access/v1/evaluations", &json!({"evaluations": items}), v));
    let searches = [
        (
            "/access/v1/search/subject",
            json!({
                "subject": {"type": "employee", "id": v},
                "action": {"name": "useSystemUser", "properties": {"access_package": p}},
                "resource": {"type": "organization", "id": c},
                "context": {"note": v},
            }),
        ),
        (
            "/access/v1/search/subject",
            json!({
                "subject": {"type": "employee", "id": "x"},
                "action": {"name": v, "properties": {"access_package": v}},
                "resource": {"type": "system_user", "id": v, "properties": {"client_org_number": v}},
                "page": {"token": v, "limit": 5},
            }),
        ),
        (
            "/access/v1/search/resource",
            json!({
                "subject": {"type": "employee", "id": v},
                "action": {"name": "useSystemUser"},
                "resource": {"type": "system_user", "properties": {"client_org_number": v}},
                "context": {"note": v},
            }),
        ),
        (
            "/access/v1/search/action",
            json!({
                "subject": {"type": "employee", "id": v},
                "resource": {"type": "system_user", "id": v, "properties": {"client_org_number": c}},
                "context": {"note": v},
            }),
        ),
    ];
    for (path, body) in &searches {
        answered += ok(http.post(path, body, v));
    }
    answered
}

/// The shipped schema, with string context attributes declared (`note`, `tags`,
/// `detail.text`) so that context values are decided on and recorded.
fn test_schema(dir: &std::path::Path) -> std::path::PathBuf {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/schema");
    let out = dir.join("schema");
    std::fs::create_dir(&out).unwrap();
    for entry in std::fs::read_dir(shipped).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), out.join(entry.file_name())).unwrap();
    }
    let path = out.join("vakt.cedarschema");
    let text = std::fs::read_to_string(&path).unwrap();
    let anchor = "    mfa?: Bool,\n";
    assert!(
        text.contains(anchor),
        "the shipped schema's context changed"
    );
    let declared = "    note?: String,\n    tags?: Set<String>,\n    detail?: { text: String },\n";
    std::fs::write(&path, text.replace(anchor, &format!("{anchor}{declared}"))).unwrap();
    out
}

#[test]
fn no_secret_of_the_corpus_reaches_any_sink_or_the_diagnostic_log() {
    let corpus = corpus();
    assert!(corpus.len() >= 60, "the corpus has {} shapes", corpus.len());
    let untouched = untouched();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("decisions.jsonl");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (receiver, otlp_url) = rt.block_on(otlp::start());
    let sinks = format!("stdout,file:{},otlp+durable:{otlp_url}", file.display());
    let schema = test_schema(dir.path());
    let s = Spawned::start(
        &[
            "--schema",
            schema.to_str().unwrap(),
            "--decision-log",
            &sinks,
            "--authzen-listen",
            "127.0.0.1:0",
            "--reverse-queries",
            "--log-level",
            "debug",
        ],
        true,
    );
    let http = AuthZen::new(&authzen_addr(&s));
    // Each secret alone and inside a longer string, and the control value.
    let mut values: Vec<String> = Vec::new();
    for shape in &corpus {
        values.push(shape.value.clone());
        values.push(format!("ref:{};", shape.value));
    }
    values.push(CONTROL.to_owned());
    let sent = values.clone();
    let untouched_sent = untouched.clone();
    let grpc_answered = s.with_client(|mut c| async move {
        let mut answered = 0;
        for v in &sent {
            answered += grpc_calls(&mut c, v).await;
        }
        // An employee id shaped like a fødselsnummer, marked to be found again.
        let mut r = request(FNR, "tk-regnskap", "310015156", REGNSKAP);
        r.context = Some(fields(vec![("note".to_owned(), string("fnr probe"))]));
        c.authorize(r).await.unwrap();
        // Values that must stay as they are, as employee ids.
        for v in &untouched_sent {
            let mut r = request(v, "tk-regnskap", "310015156", REGNSKAP);
            r.context = Some(fields(vec![("note".to_owned(), string("untouched"))]));
            c.authorize(r)
                .await
                .unwrap_or_else(|e| panic!("{v:?}: {e:?}"));
        }
        answered
    });
    let authzen_answered: usize = values.iter().map(|v| authzen_calls(&http, v)).sum();
    // One last call, made after every other has been answered: once its DEBUG
    // decision line has been read, so have the lines of all the calls before it.
    const LAST: &str = "secrets-last-call";
    s.with_client(|mut c| async move {
        c.authorize(request(LAST, "tk-regnskap", "310015156", REGNSKAP))
            .await
            .unwrap();
    });
    until(
        std::time::Duration::from_secs(10),
        "the last call's decision line",
        || s.diagnostics().iter().any(|l| l.contains(LAST)),
    );
    let diagnostics = s.diagnostics().join("\n");
    let stdout = s.stop();
    let file_text = std::fs::read_to_string(&file).unwrap();
    let otlp: String = receiver
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|r| format!("{r:?}\n"))
        .collect();

    // Enough was decided and answered that the checks below mean something.
    assert!(
        grpc_answered > 4 * corpus.len(),
        "only {grpc_answered} gRPC calls were answered"
    );
    assert!(
        authzen_answered > 4 * corpus.len(),
        "only {authzen_answered} AuthZEN calls were answered"
    );
    assert!(
        file_text.lines().count() > 10 * corpus.len(),
        "{} records",
        file_text.lines().count()
    );
    for (sink, text) in [
        ("stdout", &stdout),
        ("file", &file_text),
        ("otlp", &otlp),
        ("diagnostics", &diagnostics),
    ] {
        // The control value went the same ways, and is written.
        assert!(
            text.contains(CONTROL),
            "{sink} does not hold the control value"
        );
        for shape in &corpus {
            for part in &shape.parts {
                let line = text.lines().find(|l| l.contains(part.as_str()));
                assert!(
                    line.is_none(),
                    "{sink} holds {part:?} of the secret {:?}: {}",
                    shape.value,
                    line.unwrap_or_default()
                );
            }
        }
    }
    // The diagnostic lines that write request fields write the control value:
    // the DEBUG decision line and the INFO reverse-query line of WhatCan.
    let lines: Vec<Value> = diagnostics
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for message in ["decision", "reverse query"] {
        assert!(
            lines
                .iter()
                .any(|l| l["fields"]["message"] == message && l["fields"]["employee"] == CONTROL),
            "no {message:?} line with the control employee"
        );
    }
    assert!(
        lines.iter().any(
            |l| l["fields"]["message"] == "decision" && l["fields"]["employee"] == "[redacted]"
        ),
        "no decision line with a redacted employee"
    );

    let records: Vec<Value> = file_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Ordinary ids, org numbers, URNs, decision ids and digests stay as they are.
    assert!(records.iter().any(|r| r["employee_id"] == "kari"
        && r["client_org_number"] == "310015156"
        && r["access_package"] == REGNSKAP));
    for v in &untouched {
        let r = records
            .iter()
            .find(|r| r["employee_id"] == v.as_str() && r["context"]["note"] == "untouched")
            .unwrap_or_else(|| panic!("no record keeps the employee id {v:?}"));
        // Nothing was changed, the reasons that quote the id neither.
        assert!(r.get("redacted").is_none(), "{r}");
        let text = r.to_string();
        assert_eq!(
            text.matches("[redacted]").count(),
            v.matches("[redacted]").count() * text.matches(v.as_str()).count(),
            "{r}"
        );
    }
    let is_hex = |v: &Value, n: usize| {
        v.as_str()
            .is_some_and(|s| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    for r in &records {
        let id = r["decision_id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{r}");
        assert!(!r["revision"].to_string().contains("[redacted]"), "{r}");
        if let Some(h) = r.get("prev_hash") {
            assert!(is_hex(h, 64), "{r}");
        }
    }
    // An employee id shaped like a fødselsnummer is redacted, and the record says so.
    let fnr = records
        .iter()
        .find(|r| r["context"]["note"] == "fnr probe")
        .expect("the fødselsnummer request was recorded");
    assert_eq!(fnr["employee_id"], "[redacted]", "{fnr}");
    assert!(
        fnr["redacted"]
            .as_array()
            .is_some_and(|a| a.iter().any(|f| f == "employee_id")),
        "{fnr}"
    );
    // Every record that lists a changed field has it redacted.
    let changed: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("redacted").is_some())
        .collect();
    assert!(changed.len() > corpus.len(), "{} changed", changed.len());
    for r in &changed {
        for f in r["redacted"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            let value = if let Some(attr) = f.strip_prefix("context.") {
                r["context"][attr].to_string()
            } else {
                r[f].to_string()
            };
            assert!(
                value.contains("[redacted]"),
                "{f} is listed but not redacted: {r}"
            );
        }
    }
}
