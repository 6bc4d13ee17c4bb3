//! `ResolveSystemUser`: which system users may this employee use for this client
//! and package, i.e. which system user's token the end-user system should fetch.

use super::call::{new_decision_id, Vakt};
use super::convert;
use super::dispatch::{Call, Caller, Gate};
use super::error::CallError;
use super::metrics::Method;
use crate::decision::{resolve, Query, Resolution};
use crate::decision_log::{now_rfc3339, DecisionRecord, Receipt};
use crate::proto;
use std::time::Instant;

impl Call for proto::ResolveSystemUserRequest {
    type Answer = proto::ResolveSystemUserResponse;
    const METHOD: Method = Method::ResolveSystemUser;
    const GATE: Gate = Gate::Decision;

    async fn handle(self, vakt: &Vakt, caller: &Caller) -> Result<Self::Answer, CallError> {
        let meta = &caller.meta;
        let (snap, stale) = vakt.snapshot_for(self.min_data_sequence).await;
        let rq = Query::check_resolve(&snap, self.into())?;
        let started = Instant::now();
        let found = match stale {
            Some(why) => Resolution::data_stale(&why),
            None => resolve(&snap, &rq),
        };
        let evaluation_us = started.elapsed().as_micros() as u64;
        let decision_id = new_decision_id();
        let decision_log = vakt.log();
        let receipt = if !decision_log.is_enabled() {
            Receipt::none()
        } else {
            decision_log.submit(&DecisionRecord {
                decision_id: &decision_id,
                timestamp: now_rfc3339(),
                call: "resolve_system_user",
                employee_id: &rq.employee,
                system_user_id: None,
                system_user_external_ref: None,
                system_user_owner: None,
                usable_system_users: Some(found.usable.iter().map(|s| s.id.as_str()).collect()),
                client_org_number: &rq.client,
                access_package: &rq.access_package,
                action: &rq.action_id,
                decision: if found.usable.is_empty() {
                    "deny"
                } else {
                    "allow"
                },
                reasons: &found.reasons,
                revision: &snap.revision,
                data_sequence: snap.data.sequence,
                evaluation_us,
                context: rq.context.json.as_ref(),
                caller: &meta.caller,
                trace: &meta.trace,
                shadow: None,
                path: None,
                token: None,
                envoy: None,
            })
        };
        receipt.wait().await?;
        Ok(proto::ResolveSystemUserResponse {
            system_users: found
                .usable
                .iter()
                .map(|s| proto::SystemUserChoice {
                    id: s.id.to_string(),
                    external_ref: s.external_ref.to_string(),
                    system_id: s.system_id.to_string(),
                    user_type: s.user_type.as_str().to_owned(),
                    integration_title: s.integration_title.to_string(),
                })
                .collect(),
            reasons: convert::reasons(found.reasons),
            decision_id,
            revision: snap.revision.clone(),
            data_sequence: snap.data.sequence,
        })
    }
}
