//! Secrets never reach a sink: a corpus of secret shapes, alone and inside longer
//! strings, sent through every input field of every call and through the headers,
//! to the real binary writing to stdout, a durable file and an OTLP collector; none
//! of them appears in any sink or in the diagnostic log, ordinary ids stay as they
//! are, and each record whose field had to be changed says which.

mod common;
use common::*;
use prost_types::value::Kind;
use vakt::proto::{AuthorizeBatchRequest, ResolveSystemUserRequest};

/// Each secret, and the part of it that must never be written.
fn corpus() -> Vec<(String, String)> {
    let jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJrYXJpIiwiYXVkIjoiYWx0aW5uIn0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU";
    let body = |s: &str| s.to_owned();
    let mut c: Vec<(String, String)> = vec![
        (jwt.into(), body("eyJzdWIiOiJrYXJpIiwiYXVkIjoiYWx0aW5uIn0")),
        (format!("kari.{jwt}"), body("c2lnbmF0dXJlLWJ5dGVzLWhlcmU")),
        (format!("id=42;jwt={jwt};x"), body("c2lnbmF0dXJlLWJ5dGVzLWhlcmU")),
        (format!("Bearer {jwt}"), body("c2lnbmF0dXJlLWJ5dGVzLWhlcmU")),
        ("Bearer abcdef0123456789opaque".into(), body("abcdef0123456789opaque")),
        ("bearer lowercase0123456789tok".into(), body("lowercase0123456789tok")),
        ("Authorization: Bearer zzTopSecret987".into(), body("zzTopSecret987")),
        ("Basic a2FyaTpodW50ZXIy".into(), body("a2FyaTpodW50ZXIy")),
        ("ghp_0123456789abcdefghijABCDEFGHIJklmnop".into(), body("0123456789abcdefghijABCDEFGHIJ")),
        ("gho_abcdefghijklmnopqrstuvwxyz012345".into(), body("abcdefghijklmnopqrstuvwxyz")),
        ("ghs_ZYXWVUTSRQPONMLKJIHGFEDCBA9876".into(), body("ZYXWVUTSRQPONMLKJIHGFEDCBA")),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz".into(), body("11ABCDEFG0123456789_abcdef")),
        ("glpat-xYz0123456789abcdEF".into(), body("xYz0123456789abcdEF")),
        ("sk_live_51HqzAbCdEfGhIjKlMnOp".into(), body("51HqzAbCdEfGhIjKlMnOp")),
        ("sk_test_4eC39HqLyjWDarjtT1zdp7dc".into(), body("4eC39HqLyjWDarjtT1zdp7dc")),
        ("rk_live_0123456789abcdefABCDEF".into(), body("0123456789abcdefABCDEF")),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(), body("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKl".into(), body("1234567890123-AbCdEfGhIjKl")),
        ("xoxp-123456789012-1234567890123-ZyXwVuTsRq".into(), body("1234567890123-ZyXwVuTsRq")),
        ("xapp-1-A0123456789-0123456789-abcdef".into(), body("A0123456789-0123456789-abcdef")),
        ("npm_abcdefghijklmnopqrstuvwxyz0123456789".into(), body("abcdefghijklmnopqrstuvwxyz0123")),
        ("pypi-AgEIcHlwaS5vcmcCJGFiY2RlZjAxMjM0NTY3ODk".into(), body("AgEIcHlwaS5vcmcCJGFiY2RlZjAx")),
        ("AIzaSyA-0123456789abcdefghijklmnopqrs".into(), body("SyA-0123456789abcdefghijklmnopqrs")),
        ("AKIAIOSFODNN7EXAMPLE".into(), body("IOSFODNN7EXAMPLE")),
        ("ASIAY34FZKBOKMUTVV7A".into(), body("Y34FZKBOKMUTVV7A")),
        ("key=AKIAIOSFODNN7EXAMPL2,x".into(), body("IOSFODNN7EXAMPL2")),
        ("password=hunter2hunter2".into(), body("hunter2hunter2")),
        ("user:kari password: 'correct-horse'".into(), body("correct-horse")),
        ("token=tok_0123456789abcdef".into(), body("tok_0123456789abcdef")),
        ("api_key=AbC123dEf456".into(), body("AbC123dEf456")),
        ("apikey: QWxhZGRpbjpvcGVu".into(), body("QWxhZGRpbjpvcGVu")),
        ("client_secret=s3cr3tValue99".into(), body("s3cr3tValue99")),
        ("shpat_0123456789abcdef0123456789abcdef".into(), body("0123456789abcdef0123456789")),
        ("dop_v1_0123456789abcdef0123456789abcdef".into(), body("0123456789abcdef01234567")),
        ("hvs.CAESIJ0123456789abcdefghijklmnop".into(), body("CAESIJ0123456789abcdefghij")),
        ("sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz012345".into(), body("AbCdEfGhIjKlMnOpQrStUvWxYz")),
        ("sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx".into(), body("api03-AbCdEfGhIjKlMnOpQrStUvWx")),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----".into(),
            body("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmU -----END OPENSSH PRIVATE KEY-----".into(),
            body("b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"),
        ),
    ];
    c.dedup();
    c
}

fn string(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

#[test]
fn no_secret_of_the_corpus_reaches_any_sink() {
    let corpus = corpus();
    assert!(corpus.len() >= 30, "the corpus has {} shapes", corpus.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("decisions.jsonl");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (receiver, otlp_url) = rt.block_on(otlp::start());
    let sinks = format!("stdout,file:{},otlp+durable:{otlp_url}", file.display());
    let s = Spawned::start(&["--decision-log", &sinks], true);
    let secrets: Vec<String> = corpus.iter().map(|(s, _)| s.clone()).collect();
    let answered = s.with_client(|mut c| async move {
        let mut answered = 0;
        for secret in &secrets {
            let base = || request("kari", "tk-regnskap", "310015156", REGNSKAP);
            let mut reqs = Vec::new();
            for field in 0..5 {
                let mut r = base();
                match field {
                    0 => r.employee_id = secret.clone(),
                    1 => r.system_user_id = secret.clone(),
                    2 => r.client_org_number = secret.clone(),
                    3 => r.access_package = secret.clone(),
                    _ => r.action = secret.clone(),
                }
                reqs.push(r);
            }
            // Through the context: as a value, as an attribute name, nested.
            let mut r = base();
            r.context = Some(prost_types::Struct {
                fields: [
                    ("note".to_owned(), string(secret)),
                    (secret.clone(), string("x")),
                ]
                .into_iter()
                .collect(),
            });
            reqs.push(r);
            for r in &reqs {
                // Headers too: the claimed caller and the trace context.
                let mut call = tonic::Request::new(r.clone());
                if let Ok(v) = secret.parse() {
                    call.metadata_mut().insert("x-vakt-caller", v);
                }
                if let Ok(v) = format!("00-{secret}-00f067aa0ba902b7-01").parse() {
                    call.metadata_mut().insert("traceparent", v);
                }
                if c.authorize(call).await.is_ok() {
                    answered += 1;
                }
            }
            if c.authorize_batch(AuthorizeBatchRequest {
                requests: reqs.clone(),
            })
            .await
            .is_ok()
            {
                answered += 1;
            }
            for r in &reqs {
                let resolve = ResolveSystemUserRequest {
                    employee_id: r.employee_id.clone(),
                    client_org_number: r.client_org_number.clone(),
                    access_package: r.access_package.clone(),
                    action: r.action.clone(),
                    context: r.context.clone(),
                    min_data_sequence: 0,
                };
                if c.resolve_system_user(resolve).await.is_ok() {
                    answered += 1;
                }
            }
        }
        answered
    });
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
    // Enough records were written that the check means something: every id-field
    // secret that passes the id checks (employee, system user) is decided and
    // recorded.
    assert!(
        answered > corpus.len(),
        "only {answered} calls were answered"
    );
    assert!(file_text.lines().count() > corpus.len(), "{file_text}");
    for (sink, text) in [
        ("stdout", &stdout),
        ("file", &file_text),
        ("otlp", &otlp),
        ("diagnostics", &diagnostics),
    ] {
        for (secret, part) in &corpus {
            assert!(
                !text.contains(part.as_str()),
                "{sink} holds {part:?} of the secret {secret:?}"
            );
        }
    }
    // Ordinary ids stay as they are, and records say which fields were changed.
    let records: Vec<serde_json::Value> = file_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.iter().any(|r| r["employee_id"] == "kari"
        && r["client_org_number"] == "310015156"
        && r["access_package"] == REGNSKAP));
    let changed: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r.get("redacted").is_some())
        .collect();
    assert!(!changed.is_empty());
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
    assert!(records.iter().any(|r| r["redacted"]
        .as_array()
        .is_some_and(|a| a.iter().any(|f| f == "employee_id"))));
}
