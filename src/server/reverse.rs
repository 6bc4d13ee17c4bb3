//! `WhoCan` and `WhatCan`: the reverse queries, read in pages. The first page
//! takes the current world and keeps it; later pages resume on that world from
//! their token (`cursor.rs`). A page is found once (`who_can_page`,
//! `what_can_page`) for both protocols: the calls here answer it over gRPC,
//! AuthZEN's searches as JSON.

use super::call::Vakt;
use super::convert;
use super::cursor::{fingerprint, now_ms, CursorError, Resume};
use super::dispatch::{Call, Caller, Gate};
use super::error::CallError;
use super::metrics::Method;
use crate::decision::reverse::{
    page_size, what_can, what_can_query, who_can, who_can_query, Page, What, Who,
};
use crate::decision::{Path, Query, RawRequest};
use crate::proto;
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
fn what_key(w: &What) -> Vec<String> {
    let (su, client, package) = w.key();
    vec![su.to_string(), client.to_string(), package.to_string()]
}

/// The first page takes the current world (refused when it may not be decided
/// on); a later one the world its token names.
async fn start(
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
            .cursors()
            .resume(token, call, fp, vakt.options().reverse_page_lifetime)?;
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
    vakt.cursors()
        .keep(&snap, vakt.options().reverse_page_lifetime);
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

/// One page of a reverse query's answer, as both protocols answer it: the world
/// it was read from, the checked query, the page, and the token for the next.
pub(super) struct Found<T> {
    pub(super) start: Start,
    pub(super) query: Query,
    pub(super) page: Page<T>,
    pub(super) next_token: String,
}

/// A page of WhoCan: the employees who may act for the query's client with its
/// package. `call` and `fp` name the query its page tokens belong to.
pub(super) async fn who_can_page(
    vakt: &Vakt,
    call: &'static str,
    fp: &str,
    token: &str,
    min_data_sequence: u64,
    raw: RawRequest,
    limit: usize,
) -> Result<Found<Who>, CallError> {
    let s = start(vakt, call, fp, token, min_data_sequence).await?;
    let q = who_can_query(&s.snap, raw)?;
    let snap = s.snap.clone();
    let after = s.after.first().cloned();
    // Deciding a page of candidates takes milliseconds: off the async workers.
    let (q, page) = tokio::task::spawn_blocking(move || {
        let page = who_can(&snap, &q, after.as_deref(), limit);
        (q, page)
    })
    .await
    .map_err(|_| CallError::Internal("the reverse query stopped"))?;
    let next_token = next_token(vakt, call, fp, &s, &page, |w| vec![w.employee.to_string()]);
    Ok(Found {
        start: s,
        query: q,
        page,
        next_token,
    })
}

/// A page of WhatCan: what the query's employee may do, by system user, client
/// and package.
pub(super) async fn what_can_page(
    vakt: &Vakt,
    call: &'static str,
    fp: &str,
    token: &str,
    min_data_sequence: u64,
    raw: RawRequest,
    limit: usize,
) -> Result<Found<What>, CallError> {
    let s = start(vakt, call, fp, token, min_data_sequence).await?;
    let q = what_can_query(&s.snap, raw)?;
    let after = s.what_after()?;
    let snap = s.snap.clone();
    let (q, page) = tokio::task::spawn_blocking(move || {
        let page = what_can(&snap, &q, after.as_ref(), limit);
        (q, page)
    })
    .await
    .map_err(|_| CallError::Internal("the reverse query stopped"))?;
    let next_token = next_token(vakt, call, fp, &s, &page, what_key);
    Ok(Found {
        start: s,
        query: q,
        page,
        next_token,
    })
}

impl Call for proto::WhoCanRequest {
    type Answer = proto::WhoCanResponse;
    const METHOD: Method = Method::WhoCan;
    const GATE: Gate = Gate::Reverse;

    async fn handle(self, vakt: &Vakt, caller: &Caller) -> Result<Self::Answer, CallError> {
        let fp = fingerprint(&[
            &self.client_org_number,
            &self.access_package,
            &self.system_user_id,
            &self.action,
            &context_text(&self.context),
        ]);
        let raw = RawRequest {
            employee_id: String::new(),
            system_user_id: self.system_user_id,
            client_org_number: self.client_org_number,
            access_package: self.access_package,
            action: self.action,
            context: self.context.map(convert::struct_to_json),
        };
        let found = who_can_page(
            vakt,
            "who_can",
            &fp,
            &self.page_token,
            self.min_data_sequence,
            raw,
            page_size(self.page_size),
        )
        .await?;
        let (q, page) = (&found.query, &found.page);
        // Request fields are written as the decision log writes them: scrubbed.
        tracing::info!(
            call = "who_can",
            client = %crate::decision_log::redact::scrub(&q.client),
            access_package = %crate::decision_log::redact::scrub(&q.access_package),
            results = page.items.len(),
            identity = %crate::decision_log::redact::scrub(caller.identity.as_deref().unwrap_or("")),
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
            next_page_token: found.next_token,
            revision: found.start.snap.revision.clone(),
            data_sequence: found.start.snap.data.sequence,
        })
    }
}

impl Call for proto::WhatCanRequest {
    type Answer = proto::WhatCanResponse;
    const METHOD: Method = Method::WhatCan;
    const GATE: Gate = Gate::Reverse;

    async fn handle(self, vakt: &Vakt, caller: &Caller) -> Result<Self::Answer, CallError> {
        let fp = fingerprint(&[
            &self.employee_id,
            &self.client_org_number,
            &self.access_package,
            &self.system_user_id,
            &self.action,
            &context_text(&self.context),
        ]);
        let raw = RawRequest {
            employee_id: self.employee_id,
            system_user_id: self.system_user_id,
            client_org_number: self.client_org_number,
            access_package: self.access_package,
            action: self.action,
            context: self.context.map(convert::struct_to_json),
        };
        let found = what_can_page(
            vakt,
            "what_can",
            &fp,
            &self.page_token,
            self.min_data_sequence,
            raw,
            page_size(self.page_size),
        )
        .await?;
        let (q, page) = (&found.query, &found.page);
        tracing::info!(
            call = "what_can",
            employee = %crate::decision_log::redact::scrub(&q.employee),
            results = page.items.len(),
            identity = %crate::decision_log::redact::scrub(caller.identity.as_deref().unwrap_or("")),
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
            next_page_token: found.next_token,
            revision: found.start.snap.revision.clone(),
            data_sequence: found.start.snap.data.sequence,
        })
    }
}

/// The token for the next page when more may follow, resuming after the last
/// item (or where this page began, when it found none).
fn next_token<T>(
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
    vakt.cursors()
        .issue(call, fp, &s.snap.revision, s.began_ms, after)
}
