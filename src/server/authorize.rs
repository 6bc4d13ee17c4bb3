//! `Authorize`: one decision. Reads straight down: load snapshot → check →
//! decide → log → respond. The decision is an [`Answer`], which gRPC
//! (`convert.rs`) and AuthZEN (`authzen/wire.rs`) each turn into their response
//! once.

use super::call::{new_decision_id, CallMeta, Vakt};
use super::dispatch::{Call, Caller, Gate};
use super::error::CallError;
use super::metrics::Method;
use crate::decision::{decide, decide_under, decide_without_path, Decision, Query};
use crate::decision_log::{now_rfc3339, DecisionRecord, Receipt};
use crate::proto;
use crate::rules::snapshot::Snapshot;
use std::time::Instant;

impl Call for proto::AuthorizeRequest {
    type Answer = proto::AuthorizeResponse;
    const METHOD: Method = Method::Authorize;
    const GATE: Gate = Gate::Decision;

    async fn handle(self, vakt: &Vakt, caller: &Caller) -> Result<Self::Answer, CallError> {
        let (snap, stale) = vakt.snapshot_for(self.min_data_sequence).await;
        let query = Query::check(&snap, self.into(), "")?;
        let (answer, receipt) =
            decide_and_log(vakt, &snap, &query, stale.as_deref(), &caller.meta, false);
        // No answer, and above all no ALLOW, without a record.
        receipt.wait().await?;
        Ok(answer.into())
    }
}

/// One decision as the call answers it, whichever protocol asked: the decision
/// (allowed, its reasons by policy id, the path of an allow), the id that finds
/// its record in the decision log, and the data it was made on.
pub(super) struct Answer<'s> {
    pub(super) decision: Decision,
    pub(super) decision_id: String,
    pub(super) revision: &'s str,
    pub(super) data_sequence: u64,
}

/// Decides one checked query and submits its record; shared with AuthorizeBatch
/// and AuthZEN's evaluations. When the data may not be decided on (`stale` says
/// why), the decision is a deny. The caller waits on the receipt before
/// answering.
pub(super) fn decide_and_log<'s>(
    vakt: &Vakt,
    snap: &'s Snapshot,
    q: &Query,
    stale: Option<&str>,
    meta: &CallMeta,
    batch: bool,
) -> (Answer<'s>, Receipt) {
    let decided = decide_only(vakt, snap, q, stale, batch);
    let receipt = record(vakt, snap, q, &decided, meta, &Extra::AUTHORIZE);
    (decided.into_answer(snap), receipt)
}

/// A decision made but not yet recorded: the binding calls fetch a token
/// between the two, so the record can name it.
pub(super) struct Decided {
    pub(super) decision: Decision,
    /// The candidate policies' decision, when `--shadow-policies` decides otherwise.
    shadow: Option<Decision>,
    pub(super) decision_id: String,
    evaluation_us: u64,
    /// Counted as a batch member.
    batch: bool,
}

impl Decided {
    /// The answer the caller gets.
    pub(super) fn into_answer(self, snap: &Snapshot) -> Answer<'_> {
        Answer {
            decision: self.decision,
            decision_id: self.decision_id,
            revision: &snap.revision,
            data_sequence: snap.data.sequence,
        }
    }
}

/// What a record says beyond the decision: which call made it, the token it
/// handed out, the outgoing request Envoy asked about.
pub(super) struct Extra<'a> {
    pub(super) call: &'static str,
    pub(super) token: Option<crate::decision_log::TokenNote<'a>>,
    pub(super) envoy: Option<crate::decision_log::EnvoyNote<'a>>,
}

impl Extra<'_> {
    pub(super) const AUTHORIZE: Extra<'static> = Extra {
        call: "authorize",
        token: None,
        envoy: None,
    };
}

/// Decides one checked query (a deny when `stale` says the data may not be
/// decided on) and runs the shadow policies; counts and records nothing.
pub(super) fn decide_only(
    vakt: &Vakt,
    snap: &Snapshot,
    q: &Query,
    stale: Option<&str>,
    batch: bool,
) -> Decided {
    let started = Instant::now();
    let decision = match stale {
        Some(why) => Decision::data_stale(why),
        // The path of an allow is read only by the decision log: not built
        // when no sink records it.
        None if vakt.log().is_enabled() => decide(snap, q),
        None => decide_without_path(snap, q),
    };
    let elapsed = started.elapsed();
    // Shadow evaluation: the candidate policies decide too, on the same world;
    // only a difference is recorded, and the answer is always the served one.
    let shadow = match (stale, vakt.shadow().as_deref()) {
        (None, Some(shadow)) => {
            let candidate = decide_under(&shadow.rules, &snap.world, q);
            let flip = candidate.allowed != decision.allowed;
            vakt.metrics().shadow(decision.allowed, flip);
            flip.then_some(candidate)
        }
        _ => None,
    };
    Decided {
        decision,
        shadow,
        decision_id: new_decision_id(),
        evaluation_us: elapsed.as_micros() as u64,
        batch,
    }
}

/// Counts a decision and submits its record; the caller waits on the receipt before
/// answering (no answer, and above all no ALLOW, without a record).
pub(super) fn record(
    vakt: &Vakt,
    snap: &Snapshot,
    q: &Query,
    decided: &Decided,
    meta: &CallMeta,
    extra: &Extra<'_>,
) -> Receipt {
    let d = &decided.decision;
    let decision_id = &*decided.decision_id;
    // Counted as recorded: a binding call's ALLOW that got no token is a deny.
    vakt.metrics()
        .decision(decided.batch, d.allowed, &d.reasons);
    let decision_log = vakt.log();
    if !decision_log.is_enabled() {
        return Receipt::none();
    }
    let su = snap.world.system_user(&q.system_user);
    let owner = su.map(|s| s.owner.digits());
    let receipt = decision_log.submit(&DecisionRecord {
        decision_id,
        timestamp: now_rfc3339(),
        call: extra.call,
        employee_id: &q.employee,
        system_user_id: Some(&q.system_user),
        system_user_external_ref: su.map(|s| &*s.external_ref),
        system_user_owner: owner.as_deref(),
        usable_system_users: None,
        client_org_number: &q.client,
        access_package: &q.access_package,
        action: &q.action_id,
        decision: if d.allowed { "allow" } else { "deny" },
        reasons: &d.reasons,
        revision: &snap.revision,
        data_sequence: snap.data.sequence,
        evaluation_us: decided.evaluation_us,
        context: q.context.json.as_ref(),
        caller: &meta.caller,
        trace: &meta.trace,
        shadow: decided
            .shadow
            .as_ref()
            .map(|s| (if s.allowed { "allow" } else { "deny" }, &s.reasons[..])),
        path: d.path.as_ref(),
        token: extra.token,
        envoy: extra.envoy,
    });
    // Request fields are written as the decision log writes them: scrubbed.
    tracing::debug!(
        decision_id,
        employee = %crate::decision_log::redact::scrub(&q.employee),
        system_user = %crate::decision_log::redact::scrub(&q.system_user),
        client = %crate::decision_log::redact::scrub(&q.client),
        allowed = d.allowed,
        "decision"
    );
    receipt
}
