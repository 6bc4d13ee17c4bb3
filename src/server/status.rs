//! `Status`: what the sidecar decides on and how fresh its data is.

use super::call::Vakt;
use super::dispatch::{Call, Caller, Gate};
use super::error::CallError;
use super::metrics::Method;
use crate::proto;
use std::time::{SystemTime, UNIX_EPOCH};

impl Call for proto::StatusRequest {
    type Answer = proto::StatusResponse;
    const METHOD: Method = Method::Status;
    const GATE: Gate = Gate::Open;

    async fn handle(self, vakt: &Vakt, _: &Caller) -> Result<Self::Answer, CallError> {
        Ok(status(vakt))
    }
}

fn status(vakt: &Vakt) -> proto::StatusResponse {
    let snap = vakt.snapshot().load();
    let c = snap.world.counts();
    let data = vakt.data();
    let options = vakt.options();
    let (last_sync_unix, sync_age_seconds) = sync_times(snap.synced_at, SystemTime::now());
    proto::StatusResponse {
        revision: snap.revision.clone(),
        rules_revision: snap.rules_revision.clone(),
        data_sequence: snap.data.sequence,
        data_age_seconds: data.age().as_secs_f64(),
        sync_state: data.state().as_str().to_owned(),
        last_error: data.last_error().unwrap_or_default(),
        data_source: data.source.to_owned(),
        changes_applied: data.changes_applied(),
        max_staleness_seconds: options.max_staleness.map_or(0.0, |d| d.as_secs_f64()),
        last_sync_unix,
        sync_age_seconds,
        max_sync_age_seconds: options.max_sync_age.map_or(0.0, |d| d.as_secs_f64()),
        organizations: c.organizations as u64,
        system_users: c.system_users as u64,
        client_links: c.client_links as u64,
        teams: c.teams as u64,
        employees: c.employees as u64,
    }
}

/// When the data was last synced, in seconds since the epoch, and how long ago
/// (never negative: a stamp slightly ahead of this clock is 0 s old); both 0
/// without a stamp.
pub(crate) fn sync_times(synced_at: Option<SystemTime>, now: SystemTime) -> (f64, f64) {
    let Some(at) = synced_at else {
        return (0.0, 0.0);
    };
    let unix = at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let age = now.duration_since(at).map_or(0.0, |d| d.as_secs_f64());
    (unix, age)
}
