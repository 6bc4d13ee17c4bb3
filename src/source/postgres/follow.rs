//! The follower task: polls at every wake-up and heartbeat, swaps each new
//! snapshot in, reconnects with backoff, and rebuilds when policies or schema
//! change.

use super::{connect, Connection, DbError, Polled, PostgresSource};
use crate::rules::snapshot::{Rules, Snapshot, SnapshotHandle, SourcePaths, Sources};
use crate::source::{DataStatus, SyncState};
use std::sync::Arc;
use std::time::Duration;

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The least time between two polls. Under a stream of commits, each of which
/// wakes the follower, the changes of this window are read and applied together:
/// fewer, larger polls cost the database and the request threads less, and a
/// revocation waits at most this much longer.
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Follows the database until the task is dropped: polls at every notification
/// and every `every` (the heartbeat that keeps a quiet database current), reads
/// the policies and schema in `rules` again when they change (once whole: unchanged
/// for `settle` after their writer closed them) or on SIGHUP, and
/// keeps `status` current. `rebuilt` runs after a whole world was read again.
pub async fn follow(
    mut source: PostgresSource,
    rules: SourcePaths,
    snapshots: Arc<SnapshotHandle>,
    status: Arc<DataStatus>,
    mut hangup: tokio::signal::unix::Signal,
    (every, settle): (Duration, Duration),
    rebuilt: fn(),
) {
    // Policy and schema files are read only when whole, as with file data
    // (`source::settle`).
    let writers = Arc::new(crate::source::settle::Writers::default());
    let (watcher, mut rule_events) =
        crate::source::watch(&rules.dirs(), Some(writers.clone()), None);
    let mut rule_files = crate::source::settle::RuleFiles::new(
        settle,
        watcher.is_some().then_some(writers),
        &crate::source::files::rule_states(&rules),
    );
    // When rule files that are not whole yet are to be looked at again.
    let mut rules_due: Option<tokio::time::Instant> = None;
    let mut rules_waiting = false;
    let mut pending_force = false;
    let mut backoff = FIRST_BACKOFF;
    let mut conn: Option<Connection> = None;
    // The last failure logged, so a condition that lasts is logged once.
    let mut logged: Option<String> = None;
    let mut rules_failed = false;
    let mut last_poll = tokio::time::Instant::now();
    let mut retired = Retired::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(c) = conn.as_mut() else {
            match connect(source.database()).await {
                Ok(c) => {
                    let fresh = match source.same_cluster(&c.client).await {
                        Ok(same) => !same,
                        Err(_) => true,
                    };
                    conn = Some(c);
                    backoff = FIRST_BACKOFF;
                    tracing::info!(database = %source.database(), "connected to the database; catching up");
                    if fresh {
                        let c = conn.as_mut().map(|c| &mut c.client);
                        if let Some(client) = c {
                            let rules = snapshots.load().rules().clone();
                            match source.reload(client, rules).await {
                                Ok(s) => {
                                    swap(&snapshots, &mut retired, &status, s, "the database is another cluster now (a restore or failover): read again whole");
                                    retired.drain().await;
                                    rebuilt();
                                }
                                Err(e) => {
                                    if !refused(&status, &mut logged, &e) {
                                        failed(&status, &mut logged, &e);
                                        conn = None;
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    failed(&status, &mut logged, &e);
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        let wake = c.wake.clone();
        let (mut reload_rules, mut force) = (false, false);
        // While the policies or schema on disk fail to load, the data may stay
        // current, but the state says the reload failed.
        let keep_failed = |status: &DataStatus, rules_failed: bool| {
            if rules_failed {
                status.set_state(SyncState::ReloadFailed);
            }
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tick.tick() => {}
            Some(()) = rule_events.recv() => {
                tokio::time::sleep(crate::source::DEBOUNCE).await;
                while rule_events.try_recv().is_ok() {}
                reload_rules = true;
            }
            () = async { tokio::time::sleep_until(rules_due.unwrap_or_else(tokio::time::Instant::now)).await }, if rules_due.is_some() => {
                reload_rules = true;
            }
            Some(()) = hangup.recv() => {
                tracing::info!("SIGHUP: reading the policies, schema and the whole world again");
                (reload_rules, force) = (true, true);
            }
        }
        retired.sweep();
        let Some(c) = conn.as_mut() else { continue };
        if c.client.is_closed() {
            failed(&status, &mut logged, &DbError::Closed);
            conn = None;
            continue;
        }
        // A SIGHUP (force) or a rule file's change waits, like any change, until
        // the files are whole; the database keeps being followed meanwhile.
        if reload_rules || rules_waiting {
            let states = {
                let rules = rules.clone();
                tokio::task::spawn_blocking(move || crate::source::files::rule_states(&rules))
                    .await
                    .unwrap_or_default()
            };
            match rule_files.whole(&states) {
                Ok(()) => {
                    rules_due = None;
                    force |= rules_waiting && pending_force;
                    reload_rules = true;
                    rules_waiting = false;
                    rule_files.accept(&states);
                }
                Err(due) => {
                    if !rules_waiting {
                        tracing::info!(
                            "policy or schema files changed; waiting until they are whole"
                        );
                    }
                    pending_force |= force;
                    rules_due = due.map(tokio::time::Instant::from_std);
                    rules_waiting = true;
                    reload_rules = false;
                }
            }
        }
        if reload_rules {
            pending_force = false;
            let current = snapshots.load();
            let built = {
                let rules = rules.clone();
                let seen = rule_files.read_hashes();
                tokio::task::spawn_blocking(move || {
                    let sources = Sources::read(&SourcePaths {
                        data: None,
                        ..rules.clone()
                    })?;
                    // What was read must be what was seen whole: a write that began
                    // since is waited for, never built half-done.
                    if !crate::source::files::read_as_seen(&rules, &sources, &seen) {
                        return Ok(None);
                    }
                    Rules::build(&sources).map(Some)
                })
                .await
            };
            match built {
                Ok(Ok(None)) => {
                    rules_waiting = true;
                    rules_due = Some(tokio::time::Instant::now());
                    continue;
                }
                Ok(Ok(Some(new))) if force || new.rules_revision != current.rules_revision => {
                    match source.reload(&mut c.client, new).await {
                        Ok(s) => {
                            swap(&snapshots, &mut retired, &status, s, "policies or schema changed: rebuilt with the whole world read again");
                            retired.drain().await;
                            rebuilt();
                        }
                        Err(e) => {
                            if !refused(&status, &mut logged, &e) {
                                failed(&status, &mut logged, &e);
                                conn = None;
                            }
                        }
                    }
                    rules_failed = false;
                    continue;
                }
                Ok(Ok(Some(_))) => rules_failed = false,
                Ok(Err(problems)) => {
                    rules_failed = true;
                    let text = problems.to_string();
                    if logged.as_deref() != Some(text.as_str()) {
                        tracing::error!(problems = %text, "reload failed; keeping the last good snapshot");
                    }
                    status.fail(SyncState::ReloadFailed, text.clone());
                    logged = Some(text);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload task failed");
                    continue;
                }
            }
        }
        tokio::time::sleep_until(last_poll + BATCH_WINDOW).await;
        last_poll = tokio::time::Instant::now();
        let current = snapshots.load();
        match source.poll(c, &current).await {
            Ok(Polled::Quiet) => {
                if let Some(s) = source.moved(&current) {
                    retired.store(&snapshots, s);
                }
                if logged.take().is_some() {
                    tracing::info!("the database is followed again");
                }
                status.set_state(SyncState::Live);
                status.confirm();
                keep_failed(&status, rules_failed);
            }
            Ok(Polled::Applied(s, records)) => {
                tracing::info!(
                    revision = %s.revision,
                    data_sequence = s.data.sequence,
                    records,
                    "data changed; applied"
                );
                retired.store(&snapshots, s);
                status.applied();
                keep_failed(&status, rules_failed);
                logged = None;
            }
            Ok(Polled::Reloaded(s, why)) => {
                swap(&snapshots, &mut retired, &status, s, why);
                logged = None;
                retired.drain().await;
                rebuilt();
            }
            Ok(Polled::Refused {
                problems,
                newest_xid,
            }) => {
                let text = problems.join("\n");
                if logged.as_deref() != Some(text.as_str()) {
                    tracing::error!(
                        transaction = newest_xid.as_deref().unwrap_or(""),
                        problems = %text,
                        "a change in the database fails Vakt's checks; following stopped at it, the last good world keeps serving"
                    );
                }
                status.fail(
                    SyncState::Stopped,
                    format!(
                        "change stopped at transaction {}: {text}",
                        newest_xid.as_deref().unwrap_or("?")
                    ),
                );
                logged = Some(text);
            }
            Err(e) => {
                if !refused(&status, &mut logged, &e) {
                    failed(&status, &mut logged, &e);
                    conn = None;
                }
            }
        }
    }
}

fn swap(
    snapshots: &SnapshotHandle,
    retired: &mut Retired,
    status: &DataStatus,
    s: Snapshot,
    why: &str,
) {
    tracing::info!(
        revision = %s.revision,
        data_sequence = s.data.sequence,
        reason = why,
        "snapshot rebuilt"
    );
    retired.store(snapshots, s);
    status.applied();
}

/// Snapshots swapped out, kept until no call holds them, so that the follower's
/// thread drops them. A call holds the snapshot it decides on (a clone of the
/// `Arc`); without this, the call that finished last after a swap would drop the
/// old snapshot on a request worker, freeing every part of the old world the new
/// one no longer shares (the paths a batch of changes copied; after a whole
/// read, the whole world) while other calls wait behind it.
#[derive(Default)]
struct Retired(Vec<Arc<Snapshot>>);

impl Retired {
    /// Serves `s`, keeping the snapshot it replaces.
    fn store(&mut self, snapshots: &SnapshotHandle, s: Snapshot) {
        let old = snapshots.load();
        snapshots.store(s);
        self.0.push(old);
        self.sweep();
    }

    /// Drops, here, the kept snapshots no call holds any more. Once swapped out a
    /// snapshot gains no holders (the handle settles every load in progress
    /// before a store returns), so one held only here stays so.
    fn sweep(&mut self) {
        self.0.retain(|s| Arc::strong_count(s) > 1);
    }

    /// Waits (briefly) until every kept snapshot is dropped: after a whole
    /// read, before the freed memory is handed back to the system. Calls hold
    /// a snapshot for the length of one decision.
    async fn drain(&mut self) {
        for _ in 0..100 {
            self.sweep();
            if self.0.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The world read again whole fails Vakt's checks: as for a change that fails
/// them, following stops there (the connection is fine, so no reconnecting), the
/// last good world keeps serving, and an ERROR and the status say why. Returns
/// whether `e` was such a failure.
///
/// A feed that cannot be followed (a feed trigger disabled or missing) stops it
/// the same way: its changes could not be trusted to be complete.
fn refused(status: &DataStatus, logged: &mut Option<String>, e: &DbError) -> bool {
    let text = match e {
        DbError::Data(problems) => problems.join("\n"),
        DbError::FeedUnsafe(_) => e.to_string(),
        _ => return false,
    };
    if logged.as_deref() != Some(text.as_str()) {
        if let DbError::FeedUnsafe(why) = e {
            tracing::error!(
                problem = %why,
                "the change feed cannot be followed; following stopped, the last good world keeps serving until --max-staleness"
            );
        } else {
            tracing::error!(
                problems = %text,
                "the world in the database fails Vakt's checks; following stopped, the last good world keeps serving"
            );
        }
    }
    let shown = match e {
        DbError::FeedUnsafe(_) => text.clone(),
        _ => format!("the world read again whole fails Vakt's checks: {text}"),
    };
    status.fail(SyncState::Stopped, shown);
    *logged = Some(text);
    true
}

/// The connection is lost or unusable: the last snapshot keeps serving, and the
/// data ages towards `--max-staleness`.
fn failed(status: &DataStatus, logged: &mut Option<String>, e: &DbError) {
    let text = e.to_string();
    if logged.as_deref() != Some(text.as_str()) {
        tracing::warn!(error = %text, "database unavailable; deciding on the last data while reconnecting");
    }
    status.fail(SyncState::Reconnecting, text.clone());
    *logged = Some(text);
}

/// A wait of 75% to 125% of `d`, so replicas that lost the database together do
/// not all come back at the same instant.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.75 + f64::from(nanos % 1000) / 2000.0)
}
