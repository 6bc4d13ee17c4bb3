//! `WhoCan` and `WhatCan`: the reverse queries, read in pages. The first page
//! takes the current world and keeps it; later pages resume on that world from
//! their token (`cursor.rs`).

use super::call::Vakt;
use super::convert;
use super::cursor::{fingerprint, now_ms, CursorError, Resume};
use super::error::CallError;
use crate::decision::{Path, RawRequest};
use crate::proto;
use crate::decision::reverse::{page_size, what_can, what_can_query, who_can, who_can_query, Page};
use crate::rules::snapshot::Snapshot;
use crate::world::OrgNo;
use std::sync::Arc;

/// The world an answer's page is read from, and where it resumes.
pub(super) struct Start {
    pub(super) snap: Arc<Snapshot>,
    pub(super) after: Vec<String>,
    pub(super) began_ms: u64,
}

impl Start {
    /// Where a WhatCan page resumes: after the (system user, client, package) its
    /// token names.
    pub(super) fn what_after(
        &self,
    ) -> Result<Option<(crate::world::Id, OrgNo, smol_str::SmolStr)>, CursorError> {
        match self.after.as_slice() {
            [] => Ok(None),
            [su, client, package] => Ok(Some((
                su.into(),
                OrgNo::parse(client).map_err(|_| CursorError::Unknown)?,
                package.into(),
            ))),
            _ => Err(CursorError::Unknown),
        }
    }
}

/// A WhatCan result's key, as a page token carries it.
pub(super) fn what_key(w: &crate::decision::reverse::What) -> Vec<String> {
    let (su, client, package) = w.key();
    vec![su.to_string(), client.to_string(), package.to_string()]
}

/// The first page takes the current world (refused when it may not be decided
/// on); a later one the world its token names.
pub(super) async fn start(
    vakt: &Vakt,
    call: &str,
    fp: &str,
    token: &str,
    min_data_sequence: u64,
) -> Result<Start, CallError> {
    if !token.is_empty() {
        let Resume {
            snap,
            after,
            began_ms,
        } = vakt
            .cursors
            .resume(token, call, fp, vakt.options.load().reverse_page_lifetime)?;
        return Ok(Start {
            snap,
            after,
            began_ms,
        });
    }
    let (snap, stale) = vakt.snapshot_for(min_data_sequence).await;
    if let Some(why) = stale {
        return Err(CallError::DataStale(why));
    }
    vakt.cursors
        .keep(&snap, vakt.options.load().reverse_page_lifetime);
    Ok(Start {
        snap,
        after: Vec::new(),
        began_ms: now_ms(),
    })
}

fn context_text(c: &Option<prost_types::Struct>) -> String {
    c.clone()
        .map(|s| serde_json::Value::Object(convert::struct_to_json(s)).to_string())
        .unwrap_or_default()
}

fn access_path(su: &str, p: &Path) -> proto::AccessPath {
    proto::AccessPath {
        system_user_id: su.to_owned(),
        team_ids: p.teams.iter().map(|t| t.to_string()).collect(),
        link_client_org_number: p.link_client.map(|o| o.to_string()).unwrap_or_default(),
        link_roles: p.link_roles.iter().map(|r| r.to_string()).collect(),
    }
}

pub(super) async fn handle_who_can(
    vakt: &Vakt,
    req: proto::WhoCanRequest,
    identity: Option<&str>,
) -> Result<proto::WhoCanResponse, CallError> {
    let fp = fingerprint(&[
        &req.client_org_number,
        &req.access_package,
        &req.system_user_id,
        &req.action,
        &context_text(&req.context),
    ]);
    let s = start(vakt, "who_can", &fp, &req.page_token, req.min_data_sequence).await?;
    let raw = RawRequest {
        employee_id: String::new(),
        system_user_id: req.system_user_id,
        client_org_number: req.client_org_number,
        access_package: req.access_package,
        action: req.action,
        context: req.context.map(convert::struct_to_json),
    };
    let q = who_can_query(&s.snap, raw)?;
    let limit = page_size(req.page_size);
    let snap = s.snap.clone();
    let after = s.after.first().cloned();
    let qc = q.clone();
    // Deciding a page of candidates takes milliseconds: off the async workers.
    let page = tokio::task::spawn_blocking(move || who_can(&snap, &qc, after.as_deref(), limit))
        .await
        .map_err(|_| CallError::Internal("the reverse query stopped"))?;
    let next = next_token(vakt, "who_can", &fp, &s, &page, |w| {
        vec![w.employee.to_string()]
    });
    // Request fields are written as the decision log writes them: scrubbed.
    tracing::info!(
        call = "who_can",
        client = %crate::decision_log::redact::scrub(&q.client),
        access_package = %crate::decision_log::redact::scrub(&q.access_package),
        results = page.items.len(),
        identity = %crate::decision_log::redact::scrub(identity.unwrap_or("")),
        "reverse query"
    );
    Ok(proto::WhoCanResponse {
        employees: page
            .items
            .iter()
            .map(|w| proto::WhoCanEntry {
                employee_id: w.employee.to_string(),
                paths: w
                    .routes
                    .iter()
                    .map(|r| access_path(&r.system_user, &r.path))
                    .collect(),
            })
            .collect(),
        next_page_token: next,
        revision: s.snap.revision.clone(),
        data_sequence: s.snap.data.sequence,
    })
}

pub(super) async fn handle_what_can(
    vakt: &Vakt,
    req: proto::WhatCanRequest,
    identity: Option<&str>,
) -> Result<proto::WhatCanResponse, CallError> {
    let fp = fingerprint(&[
        &req.employee_id,
        &req.client_org_number,
        &req.access_package,
        &req.system_user_id,
        &req.action,
        &context_text(&req.context),
    ]);
    let s = start(
        vakt,
        "what_can",
        &fp,
        &req.page_token,
        req.min_data_sequence,
    )
    .await?;
    let raw = RawRequest {
        employee_id: req.employee_id,
        system_user_id: req.system_user_id,
        client_org_number: req.client_org_number,
        access_package: req.access_package,
        action: req.action,
        context: req.context.map(convert::struct_to_json),
    };
    let q = what_can_query(&s.snap, raw)?;
    let after = s.what_after()?;
    let limit = page_size(req.page_size);
    let snap = s.snap.clone();
    let qc = q.clone();
    let page = tokio::task::spawn_blocking(move || what_can(&snap, &qc, after.as_ref(), limit))
        .await
        .map_err(|_| CallError::Internal("the reverse query stopped"))?;
    let next = next_token(vakt, "what_can", &fp, &s, &page, what_key);
    tracing::info!(
        call = "what_can",
        employee = %crate::decision_log::redact::scrub(&q.employee),
        results = page.items.len(),
        identity = %crate::decision_log::redact::scrub(identity.unwrap_or("")),
        "reverse query"
    );
    Ok(proto::WhatCanResponse {
        grants: page
            .items
            .iter()
            .map(|w| proto::WhatCanEntry {
                system_user_id: w.system_user.to_string(),
                client_org_number: w.client.to_string(),
                access_package: w.access_package.to_string(),
                path: Some(access_path(&w.system_user, &w.path)),
            })
            .collect(),
        next_page_token: next,
        revision: s.snap.revision.clone(),
        data_sequence: s.snap.data.sequence,
    })
}

/// The token for the next page when more may follow, resuming after the last
/// item (or where this page began, when it found none).
pub(super) fn next_token<T>(
    vakt: &Vakt,
    call: &str,
    fp: &str,
    s: &Start,
    page: &Page<T>,
    key: impl Fn(&T) -> Vec<String>,
) -> String {
    if !page.more {
        return String::new();
    }
    let after = page.items.last().map_or_else(|| s.after.clone(), key);
    vakt.cursors
        .issue(call, fp, &s.snap.revision, s.began_ms, after)
}
