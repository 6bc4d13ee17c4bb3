//! The one sink interface: a bounded queue in front of a writer thread that chains
//! records and hands them to its medium (stdout, a file, an OTLP collector) in
//! batches.
//!
//! Every sink is either durable (the call waits until its record is on the medium,
//! and fails when it cannot be) or buffered (the call never waits; a record that
//! does not fit in the queue, or that the medium refuses, is counted, and the count
//! is written as a note once the medium takes records again). Both kinds share the
//! submit path and the writer loop below; only the medium differs.

use super::chain::Chain;
use super::record::now_rfc3339;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Whether a call waits for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The call is answered only once its record is on the medium.
    Durable,
    /// The call never waits; what cannot be delivered is counted and noted.
    Buffered,
}

/// The outcome a durable call waits for.
pub(crate) type Ack = oneshot::Sender<Result<(), String>>;

/// One record on its way to a sink.
pub(crate) struct Pending {
    /// The record's JSON, shared by every sink it goes to.
    record: Arc<str>,
    /// Set for a durable sink: the writer reports whether the record was delivered.
    ack: Option<Ack>,
}

/// Counters every sink keeps; read for the dropped-record note and for metrics.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Records delivered to the medium.
    pub written: AtomicU64,
    /// Records lost by a buffered sink (queue full or a failed delivery), in all.
    pub dropped: AtomicU64,
    /// Records a durable sink could not deliver (their calls failed).
    pub failed: AtomicU64,
    /// Whether the last delivery failed.
    pub failing: AtomicBool,
    /// Dropped records not yet reported in a note.
    unreported: AtomicU64,
}

impl SinkStats {
    fn drop_records(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.unreported.fetch_add(n, Ordering::Relaxed);
    }
}

/// How submitters wake the writer: only when it has gone idle, so that under load
/// a record costs no system call on the request path.
#[derive(Default)]
struct Wake {
    idle: AtomicBool,
    writer: OnceLock<Thread>,
}

impl Wake {
    fn wake_if_idle(&self) {
        if self.idle.load(Ordering::SeqCst) {
            self.idle.store(false, Ordering::SeqCst);
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }
}

/// The request side of a sink: where records are submitted.
pub(crate) struct SinkQueue {
    tx: SyncSender<Pending>,
    delivery: Delivery,
    wake: Arc<Wake>,
    pub stats: Arc<SinkStats>,
}

impl Drop for SinkQueue {
    /// The writer notices the closed queue at once instead of at its next tick.
    fn drop(&mut self) {
        self.wake.wake();
    }
}

impl SinkQueue {
    pub fn is_durable(&self) -> bool {
        self.delivery == Delivery::Durable
    }

    /// Queues a record without ever blocking. For a durable sink, returns what the
    /// call must wait for; a full or stopped queue fails it at once.
    pub fn submit(&self, record: Arc<str>) -> Option<oneshot::Receiver<Result<(), String>>> {
        match self.delivery {
            Delivery::Buffered => {
                if self.tx.try_send(Pending { record, ack: None }).is_err() {
                    self.stats.drop_records(1);
                }
                self.wake.wake_if_idle();
                None
            }
            Delivery::Durable => {
                let (ack, rx) = oneshot::channel();
                if let Err(e) = self.tx.try_send(Pending {
                    record,
                    ack: Some(ack),
                }) {
                    let (p, why) = match e {
                        TrySendError::Full(p) => (p, "the decision log queue is full"),
                        TrySendError::Disconnected(p) => (p, "the decision log writer stopped"),
                    };
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    if let Some(ack) = p.ack {
                        let _ = ack.send(Err(why.into()));
                    }
                }
                self.wake.wake_if_idle();
                Some(rx)
            }
        }
    }
}

/// A batch of chained lines, each ending in a newline, in one reused buffer.
#[derive(Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    fn push(&mut self, chain: &mut Chain, record: &str) {
        chain.link_into(&mut self.bytes, record);
        self.bytes.push(b'\n');
        self.ends.push(self.bytes.len());
    }

    /// Every line, newline included, as one buffer: one write for the whole batch.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each line without its newline.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = &self.bytes[start..end - 1];
            start = end;
            std::str::from_utf8(line).unwrap_or_default()
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Where a sink's records end up.
pub(crate) trait Medium: Send + 'static {
    /// Puts a batch on the medium; Ok only when all of it is there (written, flushed
    /// and, where asked, synced), so that durable calls may be answered.
    fn deliver(&mut self, batch: &Batch, chain: &Chain) -> Result<(), String>;

    /// For a medium that makes its writes durable in a separate, slow step (a file
    /// synced after every batch): that step. The sink then pipelines: the writer
    /// writes each batch with [`Medium::write`] and goes on with the next while a
    /// sync thread runs the step, and calls are answered only once a sync that
    /// began after their batch was written has succeeded. None (the default): the
    /// medium does everything in [`Medium::deliver`].
    fn syncer(&mut self) -> Option<Arc<dyn Syncer>> {
        None
    }

    /// With a syncer: writes the batch without making it durable. A failed write
    /// leaves nothing of the batch behind.
    fn write(&mut self, batch: &Batch, chain: &Chain) -> Result<(), String> {
        self.deliver(batch, chain)
    }

    /// With a syncer: where the next write begins (for [`Medium::cut_back`]).
    fn mark(&self) -> u64 {
        0
    }

    /// With a syncer: what was written from `mark` on was never made durable (a
    /// sync failed): cut it off, so that the medium ends with its last durable
    /// record and the chain continues from there.
    fn cut_back(&mut self, _mark: u64) {}

    /// Whether the next [`Medium::tick`] wants every write durable first (a file
    /// about to be rotated); the sink then waits for the syncs in flight.
    fn wants_settled(&self) -> bool {
        false
    }

    /// Called after each batch and at least every [`TICK`] while idle, with the
    /// head of the chain as far as it is durable, and whether every record written
    /// is (nothing in flight): for checkpoints and rotation.
    fn tick(&mut self, _durable: &Chain, _settled: bool) {}

    /// Called once, when the log is closed and everything queued was handled.
    fn close(&mut self, chain: &Chain) {
        self.tick(chain, true);
    }
}

/// The slow step of a pipelined medium: makes everything written to it before the
/// call durable.
pub(crate) trait Syncer: Send + Sync + 'static {
    fn sync(&self) -> Result<(), String>;
}

/// How long an idle writer sleeps before it calls [`Medium::tick`].
pub(crate) const TICK: Duration = Duration::from_millis(200);

/// How long a buffered sink's writer waits for more records after a batch before
/// it goes idle: records gather into batches without waking it one by one.
const LINGER: Duration = Duration::from_millis(1);

/// Most records written in one batch.
const MAX_BATCH: usize = 4096;

/// Syncs of a pipelined medium that may run at once, each on a thread of its own.
/// One: the batches written while a sync runs are synced together by the next,
/// as soon as it ends (group commit). With two, a second sync started on every
/// batch written while one ran, each covering a record or two, and durable
/// throughput fell (issue 27, BENCHMARKS.md).
const SYNCS_IN_FLIGHT: usize = 1;

/// Starts a sink: its queue (room for `capacity` records) and its writer thread,
/// which continues `chain` and runs until every queue handle is dropped.
pub(crate) fn start(
    name: String,
    medium: impl Medium,
    chain: Chain,
    delivery: Delivery,
    capacity: usize,
) -> std::io::Result<(SinkQueue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    let stats = Arc::new(SinkStats::default());
    let wake = Arc::new(Wake::default());
    let (writer_stats, writer_wake) = (stats.clone(), wake.clone());
    let sync_name = format!("{name}-sync");
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        run(
            rx,
            medium,
            chain,
            delivery,
            &writer_stats,
            &writer_wake,
            &sync_name,
        )
    })?;
    let _ = wake.writer.set(thread.thread().clone());
    Ok((
        SinkQueue {
            tx,
            delivery,
            wake,
            stats,
        },
        thread,
    ))
}

/// One batch of a pipelined medium, written and waiting for a sync.
struct InFlight {
    /// Its number: batches are numbered in the order they were written.
    id: u64,
    acks: Vec<Ack>,
    /// Decision records in it.
    records: u64,
    /// For a `decision_records_dropped` note: the records it reports.
    note: u64,
    /// The medium's mark where it begins, and the chain before and after it.
    start: u64,
    before: Chain,
    after: Chain,
}

/// A sync that failed: what the writer must cut back to.
struct Failure {
    error: String,
    /// The medium's mark and the chain where the first batch not made durable
    /// begins.
    mark: u64,
    chain: Chain,
}

#[derive(Default)]
struct PipeState {
    /// Batches written and not yet answered, in order.
    written: std::collections::VecDeque<InFlight>,
    /// The id the next batch gets.
    next_id: u64,
    /// Batches below this id are covered by a sync that has begun.
    covered: u64,
    /// The syncs begun and not yet resolved, in the order they began: the id
    /// below which each covers, and its result once it has one.
    syncs: std::collections::VecDeque<(u64, Option<Result<(), String>>)>,
    /// The chain as far as it is durable.
    durable: Chain,
    /// Set when a sync failed, until the writer has cut back.
    failed: Option<Failure>,
    closed: bool,
}

/// The hand-over between a pipelined sink's writer and its sync threads.
struct Pipe {
    state: std::sync::Mutex<PipeState>,
    /// The sync threads wait here for batches to sync.
    work: std::sync::Condvar,
    /// The writer waits here for the syncs in flight to end.
    done: std::sync::Condvar,
    /// Whether `state.failed` is set: read by the writer before each batch.
    failing: AtomicBool,
}

impl Pipe {
    fn new(durable: Chain) -> Self {
        Self {
            state: std::sync::Mutex::new(PipeState {
                durable,
                ..PipeState::default()
            }),
            work: std::sync::Condvar::new(),
            done: std::sync::Condvar::new(),
            failing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        // Nothing panics while holding it; a poisoned lock still holds whole state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands a written batch to the sync threads. While a failed sync is not yet
    /// cut back, the batch follows records that will be cut off: it is returned,
    /// to be failed.
    fn push(&self, mut batch: InFlight) -> Option<(InFlight, String)> {
        let mut st = self.lock();
        if let Some(f) = &st.failed {
            return Some((batch, f.error.clone()));
        }
        batch.id = st.next_id;
        st.next_id += 1;
        st.written.push_back(batch);
        drop(st);
        self.work.notify_one();
        None
    }

    /// After a failed sync: cuts the medium back to its last durable record and
    /// continues the chain from there. Nothing is in flight then: the failed sync
    /// failed every batch written, and none is taken until this is done.
    fn recover(&self, medium: &mut impl Medium, chain: &mut Chain) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut st = self.lock();
        if let Some(f) = st.failed.take() {
            medium.cut_back(f.mark);
            *chain = f.chain;
            st.durable = f.chain;
            self.failing.store(false, Ordering::Release);
        }
    }

    /// Waits until nothing is in flight, then recovers from a failed sync if one
    /// failed: afterwards every record written is durable and `chain` is the
    /// durable chain.
    fn settle(&self, medium: &mut impl Medium, chain: &mut Chain) {
        let mut st = self.lock();
        while !st.written.is_empty() || !st.syncs.is_empty() {
            st = self
                .done
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        drop(st);
        self.recover(medium, chain);
    }

    fn durable(&self) -> Chain {
        self.lock().durable
    }

    /// Lets the sync threads end once nothing is left to sync.
    fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }
}

/// A sync thread: syncs everything written and not yet covered, then resolves the
/// syncs that have ended, in the order they began. A batch is answered Ok only
/// when its sync and every sync begun before it succeeded (a later sync's success
/// says nothing of pages whose write-back failed under an earlier one); a failed
/// sync fails its batches and every batch written after them, which follow them
/// in the chain.
fn sync_thread(
    pipe: &Pipe,
    syncer: &dyn Syncer,
    delivery: Delivery,
    stats: &SinkStats,
    wake: &Wake,
) {
    let mut answered: Vec<InFlight> = Vec::new();
    loop {
        let mut st = pipe.lock();
        while st.failed.is_some() || st.covered == st.next_id {
            if st.closed {
                return;
            }
            st = pipe
                .work
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let upto = st.next_id;
        st.covered = upto;
        st.syncs.push_back((upto, None));
        drop(st);
        let result = syncer.sync();
        let mut st = pipe.lock();
        if let Some(s) = st.syncs.iter_mut().find(|s| s.0 == upto && s.1.is_none()) {
            s.1 = Some(result);
        }
        let mut outcome: Option<Result<(), String>> = None;
        while st.syncs.front().is_some_and(|s| s.1.is_some()) {
            let Some((upto, Some(result))) = st.syncs.pop_front() else {
                break;
            };
            match result {
                Ok(()) => {
                    while st.written.front().is_some_and(|b| b.id < upto) {
                        if let Some(b) = st.written.pop_front() {
                            st.durable = b.after;
                            answered.push(b);
                        }
                    }
                    if outcome.is_none() {
                        outcome = Some(Ok(()));
                    }
                }
                // A sync that began before a failed one was cut back covers
                // nothing written since: its failure concerns records cut off.
                Err(_) if st.written.front().is_none_or(|b| b.id >= upto) => {}
                Err(e) => {
                    if let Some(first) = st.written.front() {
                        st.failed = Some(Failure {
                            error: e.clone(),
                            mark: first.start,
                            chain: first.before,
                        });
                        pipe.failing.store(true, Ordering::Release);
                    }
                    // Everything written follows the records this sync failed.
                    let rest: Vec<InFlight> = st.written.drain(..).collect();
                    st.covered = st.next_id;
                    let ok: Vec<InFlight> = std::mem::take(&mut answered);
                    answer(ok, &Ok(()), delivery, stats);
                    answered = rest;
                    outcome = Some(Err(e));
                    // Later syncs are left to end; their batches are failed already.
                }
            }
        }
        let nothing_in_flight = st.written.is_empty() && st.syncs.is_empty();
        drop(st);
        if nothing_in_flight {
            pipe.done.notify_all();
        }
        if let Some(result) = outcome {
            let failed = result.is_err();
            let records: u64 = answered.iter().map(|b| b.records).sum();
            let was_failing = stats.failing.swap(failed, Ordering::Relaxed);
            match &result {
                Ok(()) if was_failing => {
                    tracing::info!(records, "decision log delivery works again");
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, records, "decision log delivery failed");
                }
            }
            answer(std::mem::take(&mut answered), &result, delivery, stats);
            if failed {
                // The writer cuts back at once, even when idle.
                wake.wake();
            }
        }
    }
}

/// Answers the calls waiting for `batches` and counts them.
fn answer(
    batches: Vec<InFlight>,
    result: &Result<(), String>,
    delivery: Delivery,
    stats: &SinkStats,
) {
    for b in batches {
        match result {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(b.records + u64::from(b.note > 0), Ordering::Relaxed);
            }
            // A note that did not reach the medium is written again later.
            Err(_) if b.note > 0 => {
                stats.unreported.fetch_add(b.note, Ordering::Relaxed);
            }
            Err(_) => match delivery {
                Delivery::Durable => {
                    stats.failed.fetch_add(b.records, Ordering::Relaxed);
                }
                Delivery::Buffered => stats.drop_records(b.records),
            },
        }
        for ack in b.acks {
            let _ = ack.send(result.clone());
        }
    }
}

/// The writer thread: starts the sync threads of a pipelined medium, then runs
/// [`write_loop`]; returns once they have ended.
fn run(
    rx: Receiver<Pending>,
    mut medium: impl Medium,
    chain: Chain,
    delivery: Delivery,
    stats: &SinkStats,
    wake: &Wake,
    sync_name: &str,
) {
    let Some(syncer) = medium.syncer() else {
        return write_loop(rx, medium, chain, delivery, stats, wake, None);
    };
    let pipe = Pipe::new(chain);
    std::thread::scope(|s| {
        let mut started = 0;
        for _ in 0..SYNCS_IN_FLIGHT {
            let (pipe, syncer) = (&pipe, &*syncer);
            let spawned = std::thread::Builder::new()
                .name(sync_name.to_owned())
                .spawn_scoped(s, move || sync_thread(pipe, syncer, delivery, stats, wake));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!(error = %e, "cannot start a decision log sync thread"),
            }
        }
        if started == 0 {
            // Without a sync thread the medium delivers and syncs each batch itself.
            pipe.close();
            return write_loop(rx, medium, chain, delivery, stats, wake, None);
        }
        write_loop(rx, medium, chain, delivery, stats, wake, Some(&pipe));
        pipe.close();
    });
}

/// The writer loop: take everything queued, chain it, deliver it as one batch,
/// answer the waiting calls, then note any records lost since the last note. With
/// nothing queued it parks; submitters unpark it only once it has said it is idle.
///
/// With a pipe (a medium that syncs as a separate step), the batch is only
/// written here; the sync threads make it durable and answer its calls, while
/// this loop goes on writing the records that arrive meanwhile.
fn write_loop(
    rx: Receiver<Pending>,
    mut medium: impl Medium,
    mut chain: Chain,
    delivery: Delivery,
    stats: &SinkStats,
    wake: &Wake,
    pipe: Option<&Pipe>,
) {
    let mut batch = Batch::default();
    let mut acks: Vec<Ack> = Vec::new();
    let mut lingered = false;
    let mut last_tick = Instant::now();
    loop {
        let first = match rx.try_recv() {
            Ok(p) => p,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                if let Some(pipe) = pipe {
                    pipe.recover(&mut medium, &mut chain);
                }
                if last_tick.elapsed() >= TICK {
                    tick(&mut medium, &mut chain, pipe);
                    last_tick = Instant::now();
                }
                if delivery == Delivery::Buffered && !lingered {
                    // Let more records gather, without anyone waking us for them.
                    lingered = true;
                    std::thread::park_timeout(LINGER);
                    continue;
                }
                // Say we are idle, then look once more: a record sent before the
                // flag was set is seen here, one sent after it unparks us.
                wake.idle.store(true, Ordering::SeqCst);
                match rx.try_recv() {
                    Ok(p) => {
                        wake.idle.store(false, Ordering::SeqCst);
                        p
                    }
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        std::thread::park_timeout(TICK);
                        wake.idle.store(false, Ordering::SeqCst);
                        lingered = false;
                        continue;
                    }
                }
            }
        };
        lingered = false;
        if let Some(pipe) = pipe {
            pipe.recover(&mut medium, &mut chain);
        }
        batch.clear();
        let before = chain;
        let start = medium.mark();
        let mut take = |p: Pending, batch: &mut Batch, chain: &mut Chain| {
            batch.push(chain, &p.record);
            acks.extend(p.ack);
        };
        take(first, &mut batch, &mut chain);
        // Everything queued meanwhile (while the last batch was written, and
        // without a pipe synced) goes into this batch: group commit.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => take(p, &mut batch, &mut chain),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        if let Some(pipe) = pipe {
            let written = InFlight {
                id: 0,
                acks: std::mem::take(&mut acks),
                records: n,
                note: 0,
                start,
                before,
                after: chain,
            };
            match medium.write(&batch, &chain) {
                Ok(()) => {
                    if let Some((rejected, e)) = pipe.push(written) {
                        answer(vec![rejected], &Err(e), delivery, stats);
                    }
                }
                Err(e) => {
                    // Nothing of this batch was written: the chain goes on from
                    // the last record that was.
                    chain = before;
                    stats.failing.store(true, Ordering::Relaxed);
                    tracing::warn!(error = %e, records = n, "decision log delivery failed");
                    answer(vec![written], &Err(e), delivery, stats);
                }
            }
            note_dropped(&mut medium, &mut chain, &mut batch, stats, Some(pipe));
        } else {
            let result = medium.deliver(&batch, &chain);
            let was_failing = stats.failing.swap(result.is_err(), Ordering::Relaxed);
            if was_failing && result.is_ok() {
                tracing::info!(records = n, "decision log delivery works again");
            }
            match &result {
                Ok(()) => {
                    stats.written.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    // Nothing of this batch counts as written: the chain goes on from the
                    // last record that was.
                    chain = before;
                    tracing::warn!(error = %e, records = n, "decision log delivery failed");
                    match delivery {
                        Delivery::Durable => {
                            stats.failed.fetch_add(n, Ordering::Relaxed);
                        }
                        Delivery::Buffered => stats.drop_records(n),
                    }
                }
            }
            for ack in acks.drain(..) {
                let _ = ack.send(result.clone());
            }
            if result.is_ok() {
                note_dropped(&mut medium, &mut chain, &mut batch, stats, None);
            }
        }
        tick(&mut medium, &mut chain, pipe);
        last_tick = Instant::now();
    }
    if let Some(pipe) = pipe {
        pipe.settle(&mut medium, &mut chain);
        note_dropped(&mut medium, &mut chain, &mut batch, stats, Some(pipe));
        pipe.settle(&mut medium, &mut chain);
    } else {
        note_dropped(&mut medium, &mut chain, &mut batch, stats, None);
    }
    medium.close(&chain);
}

/// Ticks the medium with the durable chain; a medium that wants every write
/// durable first (to rotate) gets it, after the syncs in flight end.
fn tick(medium: &mut impl Medium, chain: &mut Chain, pipe: Option<&Pipe>) {
    let Some(pipe) = pipe else {
        return medium.tick(chain, true);
    };
    if medium.wants_settled() {
        pipe.settle(medium, chain);
        return medium.tick(chain, true);
    }
    let durable = pipe.durable();
    medium.tick(&durable, durable == *chain);
}

/// Writes a `decision_records_dropped` note when records were lost since the last
/// one; with a pipe, the note is counted once its sync succeeds.
fn note_dropped(
    medium: &mut impl Medium,
    chain: &mut Chain,
    batch: &mut Batch,
    stats: &SinkStats,
    pipe: Option<&Pipe>,
) {
    let lost = stats.unreported.swap(0, Ordering::Relaxed);
    if lost == 0 {
        return;
    }
    let note = serde_json::json!({
        "timestamp": now_rfc3339(),
        "event": "decision_records_dropped",
        "dropped": lost,
    })
    .to_string();
    let before = *chain;
    let start = medium.mark();
    batch.clear();
    batch.push(chain, &note);
    let Some(pipe) = pipe else {
        if medium.deliver(batch, chain).is_ok() {
            stats.written.fetch_add(1, Ordering::Relaxed);
        } else {
            *chain = before;
            stats.unreported.fetch_add(lost, Ordering::Relaxed);
        }
        return;
    };
    if medium.write(batch, chain).is_err() {
        *chain = before;
        stats.unreported.fetch_add(lost, Ordering::Relaxed);
        return;
    }
    let written = InFlight {
        id: 0,
        acks: Vec::new(),
        records: 0,
        note: lost,
        start,
        before,
        after: *chain,
    };
    if let Some((rejected, e)) = pipe.push(written) {
        answer(vec![rejected], &Err(e), Delivery::Buffered, stats);
    }
}
