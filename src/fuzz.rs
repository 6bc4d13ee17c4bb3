//! Entry points for the fuzz targets in `fuzz/` and their regression tests
//! (tests/it/fuzz_regressions.rs): each takes arbitrary bytes as one of Vakt's inputs
//! and must return without panicking, whatever they hold.

use crate::decision::{decide, Query, RawRequest};
use crate::problem::SourceFile;
use crate::rules::snapshot::{Rules, Snapshot, Sources};
use std::sync::{Arc, OnceLock};

/// The embedded default, built once per process.
fn default_snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| Snapshot::build(&Sources::embedded()).expect("the embedded default loads"))
}

fn default_rules() -> &'static Arc<Rules> {
    static RULES: OnceLock<Arc<Rules>> = OnceLock::new();
    RULES.get_or_init(|| Rules::build(&Sources::embedded()).expect("the embedded default loads"))
}

/// Decides a checked request; an unchecked one is never decided.
fn check_and_decide(raw: RawRequest) {
    let snap = default_snapshot();
    if let Ok(q) = Query::check(snap, raw, "") {
        let _ = decide(snap, &q);
    }
}

/// A request as it arrives on the wire, decided against the embedded default: a
/// gRPC message (Authorize, AuthorizeBatch, ResolveSystemUser, WhoCan, WhatCan)
/// decoded, converted and checked; and an AuthZEN JSON body read as each of its
/// endpoints reads one.
pub fn request(data: &[u8]) {
    use prost::Message as _;
    authzen_body(default_snapshot(), data);
    if let Ok(r) = crate::proto::AuthorizeRequest::decode(data) {
        check_and_decide(r.into());
    }
    if let Ok(b) = crate::proto::AuthorizeBatchRequest::decode(data) {
        for r in b.requests.into_iter().take(64) {
            check_and_decide(r.into());
        }
    }
    if let Ok(r) = crate::proto::ResolveSystemUserRequest::decode(data) {
        let snap = default_snapshot();
        if let Ok(q) = Query::check_resolve(snap, r.into()) {
            let _ = crate::decision::resolve(snap, &q);
        }
    }
    // The reverse queries' fields, converted as Authorize's are.
    let raw = |employee_id, system_user_id, client_org_number, access_package, action, context| {
        RawRequest::from(crate::proto::AuthorizeRequest {
            employee_id,
            system_user_id,
            client_org_number,
            access_package,
            action,
            context,
            min_data_sequence: 0,
        })
    };
    if let Ok(r) = crate::proto::WhoCanRequest::decode(data) {
        let snap = default_snapshot();
        let raw = raw(
            String::new(),
            r.system_user_id,
            r.client_org_number,
            r.access_package,
            r.action,
            r.context,
        );
        if let Ok(q) = crate::decision::reverse::who_can_query(snap, raw) {
            let size = crate::decision::reverse::page_size(r.page_size);
            let _ = crate::decision::reverse::who_can(snap, &q, Some(r.page_token.as_str()), size);
        }
    }
    if let Ok(r) = crate::proto::WhatCanRequest::decode(data) {
        let snap = default_snapshot();
        let raw = raw(
            r.employee_id,
            r.system_user_id,
            r.client_org_number,
            r.access_package,
            r.action,
            r.context,
        );
        if let Ok(q) = crate::decision::reverse::what_can_query(snap, raw) {
            let _ = crate::decision::reverse::what_can(
                snap,
                &q,
                None,
                crate::decision::reverse::page_size(r.page_size),
            );
        }
    }
}

/// A data file, as `world.json` and as `world.yaml`, loaded with the embedded
/// policies and schema.
pub fn data_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for name in ["world.json", "world.yaml", crate::world::CEDAR_FILE] {
        let sources = Sources {
            data: vec![SourceFile {
                name: name.into(),
                text: text.into(),
            }],
            ..Sources::embedded()
        };
        let _ = Snapshot::build(&sources);
    }
}

/// A policy file added to the embedded policies, and a schema file in place of
/// the embedded schema.
pub fn policy_or_schema(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut with_policy = Sources::embedded();
    with_policy.policies.push(SourceFile {
        name: "fuzz.cedar".into(),
        text: text.into(),
    });
    let _ = Rules::build(&with_policy);
    let schema = Sources {
        schema: vec![SourceFile {
            name: "fuzz.cedarschema".into(),
            text: text.into(),
        }],
        ..Sources::embedded()
    };
    let _ = Rules::build(&schema);
    let schema_json = Sources {
        schema: vec![SourceFile {
            name: "fuzz.cedarschema.json".into(),
            text: text.into(),
        }],
        ..Sources::embedded()
    };
    let _ = Rules::build(&schema_json);
}

/// A decision log as `vakt audit verify`, `vakt replay` and `vakt shadow report`
/// read it, and a checkpoint file.
pub fn decision_log(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = [("decisions.jsonl".to_owned(), text.to_owned())];
    let _ = crate::decision_log::verify::verify(&files, &Default::default());
    if let Ok(cps) = crate::decision_log::checkpoint::Checkpoint::parse_all(text) {
        let against = crate::decision_log::verify::Against {
            current: cps.last(),
            copies: &cps,
            key: None,
        };
        let _ = crate::decision_log::verify::verify(&files, &against);
    }
    let _ = crate::tools::replay::replay("decisions.jsonl", text, default_snapshot());
    let _ = crate::tools::replay::shadow_report("decisions.jsonl", text);
}

/// A `vakt serve` configuration file, and a `vakt verify` properties file.
pub fn config_or_properties(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::cli::check_config_text(text);
    let _ =
        crate::tools::verify::Properties::parse("properties.toml", text, &default_rules().schema);
}

/// A body read as each AuthZEN endpoint reads it, and what it asks decided or
/// searched against `snap`, with nothing served or logged. Whatever the bytes, it
/// returns.
fn authzen_body(snap: &Snapshot, body: &[u8]) {
    use crate::decision::reverse::{page_size, what_can, what_can_query, who_can, who_can_query};
    use crate::server::authzen::{allowed_actions, batch, item, wire};
    let Ok(serde_json::Value::Object(body)) = crate::json::parse(body) else {
        return;
    };
    let decide_raw = |raw| {
        if let Ok(q) = Query::check(snap, raw, "") {
            let _ = decide(snap, &q);
        }
    };
    let defaults = wire::Entities::of(&body);
    if let Ok(raw) = wire::evaluation(defaults) {
        decide_raw(raw);
    }
    // Bounded as the batch endpoint's limit bounds it, so one input stays fast.
    if let Ok((items, _)) = batch(&body) {
        for (i, it) in items.iter().enumerate().take(64) {
            if let Ok(raw) = item(i, it, defaults) {
                decide_raw(raw);
            }
        }
    }
    let size = page_size(wire::page(&body).map_or(0, |(_, limit)| limit));
    let _ = wire::query_text(&body);
    if let Ok(Some(raw)) = wire::subject_search(&body) {
        if let Ok(q) = who_can_query(snap, raw) {
            let _ = who_can(snap, &q, None, size);
        }
    }
    if let Ok(Some(raw)) = wire::resource_search(&body) {
        if let Ok(q) = what_can_query(snap, raw) {
            let _ = what_can(snap, &q, None, size);
        }
    }
    if let Ok(Some(raw)) = wire::action_search(&body) {
        let _ = allowed_actions(snap, &raw);
    }
}
