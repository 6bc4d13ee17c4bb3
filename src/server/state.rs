//! The state every call shares ([`Vakt`]): the snapshot, the decision log, the
//! data's status, the settings, and what the calls count; built by
//! [`Vakt::new`] alone.

use super::options::{Limits, Options};
use crate::decision_log::DecisionLog;
use crate::rules::snapshot::{Snapshot, SnapshotHandle};
use crate::source::DataStatus;
use std::sync::Arc;

/// The state every call shares.
pub struct Vakt {
    snapshot: Arc<SnapshotHandle>,
    /// The decision log, swapped whole when a SIGHUP changes its sinks.
    log: arc_swap::ArcSwap<DecisionLog>,
    data: Arc<DataStatus>,
    /// The per-call settings, swapped whole when a SIGHUP changes them; each call
    /// reads them once, without a lock.
    options: arc_swap::ArcSwap<Options>,
    /// The transport's limits, fixed for the life of the server.
    limits: Limits,
    /// Calls in progress, in all and per peer, for load shedding.
    admission: super::admission::Admission,
    /// What the calls record, for `/metrics`.
    metrics: super::metrics::ServerMetrics,
    /// A candidate policy set every request is also decided under
    /// (`--shadow-policies`); its decision is recorded, never answered.
    shadow: arc_swap::ArcSwapOption<Shadow>,
    /// The worlds kept for reverse queries read in pages.
    cursors: super::cursor::Cursors,
    /// Connections open on every listener, for `--max-connections`.
    connections: super::accept::Connections,
    /// Request bytes held on every listener, for `--max-buffered-request-bytes`.
    request_budget: Arc<super::budget::Budget>,
    /// The Maskinporten client, the scopes per package, Envoy's routes and the
    /// token exchange (`[maskinporten]`, `[envoy]`, `[[route]]`); none when the
    /// configuration has no `[maskinporten]`. Swapped whole on SIGHUP.
    binding: arc_swap::ArcSwapOption<super::binding::Binding>,
    /// The tokens handed out on ALLOW, by `jti`, kept for their lifetime so
    /// `VerifyToken` can name the decision behind a token.
    issued: super::issued::Issued,
}

/// Candidate policies compiled with the serving schema, for shadow evaluation.
pub struct Shadow {
    pub rules: Arc<crate::rules::snapshot::Rules>,
    /// Where they came from, for the log.
    pub dir: std::path::PathBuf,
}

impl Vakt {
    /// A sidecar serving `snapshot` with default settings, its data named
    /// `built-in`; the `with_…` methods set the rest before it serves.
    pub fn new(snapshot: Snapshot, log: DecisionLog) -> Self {
        Self {
            snapshot: Arc::new(SnapshotHandle::new(snapshot)),
            log: arc_swap::ArcSwap::from_pointee(log),
            data: Arc::new(DataStatus::new("built-in")),
            options: arc_swap::ArcSwap::from_pointee(Options::default()),
            limits: Limits::default(),
            admission: Default::default(),
            metrics: Default::default(),
            shadow: Default::default(),
            cursors: Default::default(),
            connections: Default::default(),
            request_budget: Default::default(),
            binding: Default::default(),
            issued: Default::default(),
        }
    }

    /// The same, binding: it hands out Maskinporten tokens on ALLOW and, with
    /// routes configured, answers Envoy's Check.
    pub fn with_binding(self, binding: super::binding::Binding) -> Self {
        self.binding.store(Some(Arc::new(binding)));
        self
    }

    /// The binding settings as they are now.
    pub fn binding(&self) -> Option<Arc<super::binding::Binding>> {
        self.binding.load_full()
    }

    /// Swaps in new binding settings whole (a SIGHUP); none turns binding off.
    pub fn set_binding(&self, binding: Option<super::binding::Binding>) {
        self.binding.store(binding.map(Arc::new));
    }

    pub(super) fn issued(&self) -> &super::issued::Issued {
        &self.issued
    }

    /// The same, its data named by where it comes from (`files`, `postgres`) in
    /// the status call.
    pub fn with_data_source(mut self, source: &'static str) -> Self {
        self.data = Arc::new(DataStatus::new(source));
        self
    }

    /// The same, with these per-call settings.
    pub fn with_options(self, options: Options) -> Self {
        self.options.store(Arc::new(options));
        self
    }

    /// The same, with these transport limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The snapshot calls decide on; a source swaps new ones in.
    pub fn snapshot(&self) -> &Arc<SnapshotHandle> {
        &self.snapshot
    }

    /// How the data stands; the source keeps it current.
    pub fn data(&self) -> &Arc<DataStatus> {
        &self.data
    }

    /// The decision log as it is now.
    pub fn log(&self) -> arc_swap::Guard<Arc<DecisionLog>> {
        self.log.load()
    }

    /// Swaps in a decision log (a SIGHUP that changed its sinks).
    pub fn set_log(&self, log: DecisionLog) {
        self.log.store(Arc::new(log));
    }

    /// The per-call settings as they are now.
    pub fn options(&self) -> arc_swap::Guard<Arc<Options>> {
        self.options.load()
    }

    /// Swaps in new per-call settings whole; the next calls read them.
    pub fn set_options(&self, options: Options) {
        self.options.store(Arc::new(options));
    }

    /// The transport's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The candidate policies of `--shadow-policies`, when they are on.
    pub fn shadow(&self) -> Option<Arc<Shadow>> {
        self.shadow.load_full()
    }

    /// Swaps the candidate policies (none: shadow evaluation off); gives the
    /// ones they replace.
    pub fn set_shadow(&self, shadow: Option<Shadow>) -> Option<Arc<Shadow>> {
        self.shadow.swap(shadow.map(Arc::new))
    }

    pub(super) fn admission(&self) -> &super::admission::Admission {
        &self.admission
    }

    /// Admits a gRPC call, or refuses it at once (see [`Admission::admit`]).
    ///
    /// [`Admission::admit`]: super::admission::Admission::admit
    pub(super) fn admit<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<super::admission::Admitted<'_>, super::error::CallError> {
        super::call::note_call(req);
        self.admit_peer(super::admission::peer_key_of(req))
    }

    /// Admits a call from `key`, whatever protocol it came by.
    pub(super) fn admit_peer(
        &self,
        key: Option<super::accept::PeerKey>,
    ) -> Result<super::admission::Admitted<'_>, super::error::CallError> {
        self.admission.admit(&self.options(), key)
    }

    /// Whether this gRPC call may ask a reverse query; gives the caller's
    /// identity, for the query's log line.
    pub(super) fn reverse_allowed<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<Option<String>, super::error::CallError> {
        let identity = super::admission::identity_of(req);
        self.reverse_allowed_for(identity.as_deref())?;
        Ok(identity)
    }

    /// Whether a caller with this mutual-TLS identity may ask a reverse query.
    pub(super) fn reverse_allowed_for(
        &self,
        identity: Option<&str>,
    ) -> Result<(), super::error::CallError> {
        super::admission::reverse_allowed(&self.options(), identity)
    }

    pub(super) fn metrics(&self) -> &super::metrics::ServerMetrics {
        &self.metrics
    }

    pub(super) fn cursors(&self) -> &super::cursor::Cursors {
        &self.cursors
    }

    pub(super) fn connections(&self) -> &super::accept::Connections {
        &self.connections
    }

    pub(super) fn request_budget(&self) -> &Arc<super::budget::Budget> {
        &self.request_budget
    }

    /// The snapshot to decide on, and why its data may not be decided on: too old
    /// (`--max-staleness`), synced from Altinn too long ago (`--max-sync-age`), or without the change the call asked for, after waiting
    /// for it a short while.
    pub(super) async fn snapshot_for(&self, min_sequence: u64) -> (Arc<Snapshot>, Option<String>) {
        let options = self.options.load();
        let mut snap = self.snapshot.load();
        if min_sequence > 0 && !snap.data.covers(min_sequence) {
            let mut swapped = self.snapshot.subscribe();
            let deadline = tokio::time::Instant::now() + options.sequence_wait;
            while !snap.data.covers(min_sequence) {
                // A swap may have landed between the load and the subscription.
                snap = self.snapshot.load();
                if snap.data.covers(min_sequence) {
                    break;
                }
                match tokio::time::timeout_at(deadline, swapped.changed()).await {
                    Ok(Ok(())) => snap = self.snapshot.load(),
                    _ => {
                        return (
                            snap.clone(),
                            Some(format!(
                                "the data does not hold change {min_sequence} yet (it holds up to data sequence {}, waited {:?})",
                                snap.data.sequence, options.sequence_wait
                            )),
                        )
                    }
                }
            }
        }
        if let Some(max) = options.max_staleness {
            let age = self.data.age();
            if age > max {
                return (
                    snap,
                    Some(format!(
                        "the data was last confirmed current {:.1} s ago, more than the {:.1} s allowed ({})",
                        age.as_secs_f64(),
                        max.as_secs_f64(),
                        self.data.state().as_str()
                    )),
                );
            }
        }
        if let Some(max) = options.max_sync_age {
            if let Some(why) = sync_too_old(snap.synced_at, max, std::time::SystemTime::now()) {
                return (snap, Some(why));
            }
        }
        (snap, None)
    }
}

/// How far ahead of this sidecar's clock a sync stamp may be (clocks differ a
/// little); one further ahead would keep the data fresh for as long, so it is
/// refused.
const SYNC_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// Why data last synced at `synced_at` may not be decided on under
/// `--max-sync-age` `max`, at `now`: synced too long ago, never synced (no stamp:
/// fail closed), or stamped in the future.
pub(crate) fn sync_too_old(
    synced_at: Option<std::time::SystemTime>,
    max: std::time::Duration,
    now: std::time::SystemTime,
) -> Option<String> {
    let Some(at) = synced_at else {
        return Some(format!(
            "the data carries no time of a last sync from Altinn (never synced), and --max-sync-age is {:.1} s",
            max.as_secs_f64()
        ));
    };
    match now.duration_since(at) {
        Ok(age) if age > max => Some(format!(
            "the data was last synced from Altinn {:.1} s ago, more than the {:.1} s --max-sync-age allows",
            age.as_secs_f64(),
            max.as_secs_f64()
        )),
        Ok(_) => None,
        Err(ahead) if ahead.duration() > SYNC_CLOCK_SKEW => Some(format!(
            "the data's last sync from Altinn is stamped {:.1} s in the future",
            ahead.duration().as_secs_f64()
        )),
        Err(_) => None,
    }
}

#[cfg(test)]
mod sync_age_tests {
    use super::sync_too_old;
    use std::time::{Duration, SystemTime};

    #[test]
    fn data_synced_too_long_ago_never_or_in_the_future_is_not_decided_on() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let max = Duration::from_secs(600);
        assert_eq!(
            sync_too_old(Some(now - Duration::from_secs(599)), max, now),
            None
        );
        let old = sync_too_old(Some(now - Duration::from_secs(601)), max, now).unwrap();
        assert!(old.contains("601.0 s ago"), "{old}");
        assert!(sync_too_old(None, max, now)
            .unwrap()
            .contains("never synced"));
        assert_eq!(
            sync_too_old(Some(now + Duration::from_secs(60)), max, now),
            None
        );
        let ahead = sync_too_old(Some(now + Duration::from_secs(3600)), max, now).unwrap();
        assert!(ahead.contains("in the future"), "{ahead}");
    }
}
