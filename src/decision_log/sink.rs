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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// Records queued and not yet taken by the writer (buffered sinks): a
    /// lingering writer is woken early once [`WAKE_AT`] have gathered.
    queued: AtomicUsize,
}

impl Wake {
    /// Counts a record of a buffered sink about to be queued (before it is, so
    /// that the writer never takes one not counted yet); wakes a lingering writer
    /// once a full batch has gathered.
    fn queued_one(&self) {
        if self.queued.fetch_add(1, Ordering::Relaxed) + 1 == WAKE_AT {
            self.wake();
        }
    }

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
                self.wake.queued_one();
                if self.tx.try_send(Pending { record, ack: None }).is_err() {
                    self.wake.queued.fetch_sub(1, Ordering::Relaxed);
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
    /// and, where asked, synced), so that durable calls may be answered. A failed
    /// delivery leaves nothing of the batch behind: the chain goes on from the last
    /// record delivered.
    fn deliver(&mut self, batch: &Batch, chain: &Chain) -> Result<(), String>;

    /// Called after each batch and at least every [`TICK`] while idle, with the
    /// head of the chain (every record of it delivered): for checkpoints and
    /// rotation.
    fn tick(&mut self, _chain: &Chain) {}

    /// Called once, when the log is closed and everything queued was handled.
    fn close(&mut self, chain: &Chain) {
        self.tick(chain);
    }
}

/// How long an idle writer sleeps before it calls [`Medium::tick`].
pub(crate) const TICK: Duration = Duration::from_millis(200);

/// How long a buffered sink's writer waits for more records after a batch before
/// it goes idle: records gather into batches without waking it one by one. Each
/// wake-up costs the writer a timer, a `write` and a pass through the scheduler,
/// and on two cores it can take the core a call was about to run on; at 1 ms the
/// writer woke about 1,000 times a second under load for batches of ten or so
/// records at concurrency 1 (2.2 µs of writer CPU per record), at 10 ms with
/// [`WAKE_AT`] about 120 times (1.1 µs) (BENCHMARKS.md, "The default log's
/// cost"). A buffered record may wait this long before it reaches the medium.
const LINGER: Duration = Duration::from_millis(10);

/// How many queued records wake a lingering buffered writer before its linger
/// ends, so that a burst is written in batches of about this many, well inside
/// the queue, whatever the rate.
const WAKE_AT: usize = 256;

/// Most records written in one batch.
const MAX_BATCH: usize = 4096;

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
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || write_loop(rx, medium, chain, delivery, &writer_stats, &writer_wake))?;
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

/// The writer loop: take everything queued, chain it, deliver it as one batch,
/// answer the waiting calls, then note any records lost since the last note. With
/// nothing queued it parks; submitters unpark it only once it has said it is idle.
///
/// For a file synced after every batch this is the group commit: the records
/// queued while one batch is written and synced are the next batch, written
/// with one write and made durable with one sync, however many there are. It
/// costs no hand-over between threads: under load the writer finds records
/// waiting each time a sync returns, so it neither parks nor is woken, and the
/// submitters make no system call (issue 27, BENCHMARKS.md: a separate sync
/// thread, written to while it synced, cost more server CPU per call and gave no
/// more throughput).
fn write_loop(
    rx: Receiver<Pending>,
    mut medium: impl Medium,
    mut chain: Chain,
    delivery: Delivery,
    stats: &SinkStats,
    wake: &Wake,
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
                if last_tick.elapsed() >= TICK {
                    medium.tick(&chain);
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
        batch.clear();
        let before = chain;
        let mut take = |p: Pending, batch: &mut Batch, chain: &mut Chain| {
            batch.push(chain, &p.record);
            acks.extend(p.ack);
        };
        take(first, &mut batch, &mut chain);
        // Everything queued meanwhile (while the last batch was written and
        // synced) goes into this batch: group commit.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => take(p, &mut batch, &mut chain),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        if delivery == Delivery::Buffered {
            wake.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        }
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
            note_dropped(&mut medium, &mut chain, &mut batch, stats);
        }
        medium.tick(&chain);
        last_tick = Instant::now();
    }
    note_dropped(&mut medium, &mut chain, &mut batch, stats);
    medium.close(&chain);
}

/// Writes a `decision_records_dropped` note when records were lost since the last
/// one.
fn note_dropped(medium: &mut impl Medium, chain: &mut Chain, batch: &mut Batch, stats: &SinkStats) {
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
    batch.clear();
    batch.push(chain, &note);
    if medium.deliver(batch, chain).is_ok() {
        stats.written.fetch_add(1, Ordering::Relaxed);
    } else {
        *chain = before;
        stats.unreported.fetch_add(lost, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    //! The durable group commit, and a buffered sink's count of what waits,
    //! against a medium in memory whose syncs the test holds and ends, one by
    //! one, with the result it chooses.

    use super::*;
    use std::sync::mpsc::{channel, Receiver as StdReceiver, Sender};
    use std::sync::Mutex;

    /// What the medium shares with the test.
    #[derive(Default)]
    struct Disk {
        /// Bytes written, as the medium holds them.
        bytes: Vec<u8>,
        /// How far the bytes are durable: set by each successful sync.
        durable: usize,
        /// Records in each write, in order.
        writes: Vec<usize>,
        syncs: usize,
    }

    /// Writes each batch, says a sync began, waits for the test's result and,
    /// on a failure, cuts the batch off again (as the file medium does).
    struct HeldMedium {
        disk: Arc<Mutex<Disk>>,
        began: Sender<()>,
        results: StdReceiver<Result<(), String>>,
    }

    impl Medium for HeldMedium {
        fn deliver(&mut self, batch: &Batch, _: &Chain) -> Result<(), String> {
            let start = {
                let mut disk = self.disk.lock().unwrap();
                let start = disk.bytes.len();
                disk.bytes.extend_from_slice(batch.bytes());
                disk.writes.push(batch.len());
                start
            };
            let _ = self.began.send(());
            let result = self
                .results
                .recv()
                .unwrap_or_else(|_| Err("the test ended".into()));
            let mut disk = self.disk.lock().unwrap();
            disk.syncs += 1;
            match result {
                Ok(()) => disk.durable = disk.bytes.len(),
                Err(_) => disk.bytes.truncate(start),
            }
            result
        }
    }

    struct Harness {
        queue: Option<SinkQueue>,
        thread: Option<std::thread::JoinHandle<()>>,
        disk: Arc<Mutex<Disk>>,
        began: StdReceiver<()>,
        results: Sender<Result<(), String>>,
    }

    type Waiting = oneshot::Receiver<Result<(), String>>;

    impl Harness {
        fn start() -> Self {
            Self::with(Delivery::Durable, 64)
        }

        fn with(delivery: Delivery, capacity: usize) -> Self {
            let disk = Arc::new(Mutex::new(Disk::default()));
            let (began_tx, began) = channel();
            let (results, results_rx) = channel();
            let medium = HeldMedium {
                disk: disk.clone(),
                began: began_tx,
                results: results_rx,
            };
            let (queue, thread) = start(
                "test-log".into(),
                medium,
                Chain::default(),
                delivery,
                capacity,
            )
            .unwrap();
            Self {
                queue: Some(queue),
                thread: Some(thread),
                disk,
                began,
                results,
            }
        }

        fn submit(&self, record: &str) -> Waiting {
            self.queue
                .as_ref()
                .unwrap()
                .submit(Arc::from(record))
                .expect("a durable sink returns what to wait for")
        }

        /// Waits for the next sync to begin.
        fn sync_began(&self) {
            self.began
                .recv_timeout(Duration::from_secs(10))
                .expect("a sync begins");
        }

        /// The call's answer; an Ok is checked against the medium: the record is
        /// within what a successful sync made durable.
        fn answer(&self, mut rx: Waiting, record: &str) -> Result<(), String> {
            let deadline = Instant::now() + Duration::from_secs(10);
            let answer = loop {
                match rx.try_recv() {
                    Ok(a) => break a,
                    Err(oneshot::error::TryRecvError::Empty) => {
                        assert!(Instant::now() < deadline, "no answer for {record}");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("{record}: {e}"),
                }
            };
            if answer.is_ok() {
                let disk = self.disk.lock().unwrap();
                let durable = String::from_utf8_lossy(&disk.bytes[..disk.durable]);
                let body = record.trim_start_matches('{');
                assert!(durable.contains(body), "{record} answered Ok, not durable");
            }
            answer
        }

        /// Closes the sink and returns what is on the medium.
        fn close(mut self) -> String {
            drop(self.queue.take());
            self.thread.take().unwrap().join().unwrap();
            let disk = self.disk.lock().unwrap();
            String::from_utf8(disk.bytes.clone()).unwrap()
        }
    }

    /// The lines a fresh chain makes of `records`.
    fn chained(records: &[String]) -> String {
        let mut chain = Chain::default();
        let mut out = String::new();
        for r in records {
            out.push_str(&chain.link(r));
            out.push('\n');
        }
        out
    }

    fn rec(i: usize) -> String {
        format!("{{\"n\":{i}}}")
    }

    fn is_waiting(rx: &mut Waiting) -> bool {
        matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }

    #[test]
    fn records_queued_during_a_sync_are_one_batch_answered_after_its_own_sync() {
        let h = Harness::start();
        let first = h.submit(&rec(0));
        h.sync_began();
        let mut rest: Vec<_> = (1..6).map(|i| (h.submit(&rec(i)), rec(i))).collect();
        // Nothing of them is written while the sync runs, nor answered.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(h.disk.lock().unwrap().writes, vec![1]);
        h.results.send(Ok(())).unwrap();
        assert_eq!(h.answer(first, &rec(0)), Ok(()));
        h.sync_began();
        // Written, not yet synced: still waiting.
        std::thread::sleep(Duration::from_millis(20));
        for (rx, r) in &mut rest {
            assert!(is_waiting(rx), "{r} answered before its sync");
        }
        h.results.send(Ok(())).unwrap();
        for (rx, r) in rest {
            assert_eq!(h.answer(rx, &r), Ok(()));
        }
        {
            let disk = h.disk.lock().unwrap();
            assert_eq!(disk.writes, vec![1, 5]);
            assert_eq!(disk.syncs, 2);
        }
        assert_eq!(h.close(), chained(&(0..6).map(rec).collect::<Vec<_>>()));
    }

    #[test]
    fn a_failed_sync_fails_exactly_its_batch_and_the_chain_goes_on_from_the_last_durable_record() {
        let h = Harness::start();
        let a = h.submit(&rec(0));
        h.sync_began();
        h.results.send(Ok(())).unwrap();
        assert_eq!(h.answer(a, &rec(0)), Ok(()));
        let b = h.submit(&rec(1));
        h.sync_began();
        let c = h.submit(&rec(2));
        let c2 = h.submit(&rec(3));
        std::thread::sleep(Duration::from_millis(20));
        let d = h.submit(&rec(4));
        h.results.send(Err("disk on fire".into())).unwrap();
        assert_eq!(h.answer(b, &rec(1)), Err("disk on fire".into()));
        // Queued during the failed sync: the next batch, which fails too.
        h.sync_began();
        h.results.send(Err("still on fire".into())).unwrap();
        assert_eq!(h.answer(c, &rec(2)), Err("still on fire".into()));
        assert_eq!(h.answer(c2, &rec(3)), Err("still on fire".into()));
        assert_eq!(h.answer(d, &rec(4)), Err("still on fire".into()));
        // The medium works again: the next record continues the chain from a.
        let e = h.submit(&rec(5));
        h.sync_began();
        h.results.send(Ok(())).unwrap();
        assert_eq!(h.answer(e, &rec(5)), Ok(()));
        assert_eq!(h.disk.lock().unwrap().writes, vec![1, 1, 3, 1]);
        assert_eq!(h.close(), chained(&[rec(0), rec(5)]));
    }

    #[test]
    fn a_full_queue_fails_the_call_at_once_and_nothing_else() {
        let h = Harness::start();
        let a = h.submit(&rec(0));
        h.sync_began();
        // The queue holds 64 records while the sync runs; the 65th is refused.
        let queued: Vec<_> = (1..=64).map(|i| (h.submit(&rec(i)), rec(i))).collect();
        let refused = h.submit(&rec(65));
        assert_eq!(
            h.answer(refused, &rec(65)),
            Err("the decision log queue is full".into())
        );
        h.results.send(Ok(())).unwrap();
        assert_eq!(h.answer(a, &rec(0)), Ok(()));
        h.sync_began();
        h.results.send(Ok(())).unwrap();
        for (rx, r) in queued {
            assert_eq!(h.answer(rx, &r), Ok(()));
        }
        assert_eq!(h.close(), chained(&(0..=64).map(rec).collect::<Vec<_>>()));
    }

    /// A buffered sink whose writer is held in a delivery: what is queued
    /// meanwhile, and dropped when the queue is full, is counted exactly, so that
    /// a lingering writer is woken at [`WAKE_AT`] queued records and not before
    /// or never.
    #[test]
    fn a_buffered_sink_counts_what_waits_for_its_writer() {
        let h = Harness::with(Delivery::Buffered, 8);
        let queue = h.queue.as_ref().unwrap();
        assert!(queue.submit(Arc::from(rec(0))).is_none());
        h.sync_began();
        // The writer is held; eight fit in the queue, two are dropped.
        for i in 1..=10 {
            queue.submit(Arc::from(rec(i)));
        }
        assert_eq!(queue.wake.queued.load(Ordering::Relaxed), 8);
        assert_eq!(queue.stats.dropped.load(Ordering::Relaxed), 2);
        h.results.send(Ok(())).unwrap();
        // First the note of the two dropped, written after the batch that
        // succeeded; the eight still wait.
        h.sync_began();
        assert_eq!(queue.wake.queued.load(Ordering::Relaxed), 8);
        h.results.send(Ok(())).unwrap();
        // Then the eight, one batch, and the count is back to nothing.
        h.sync_began();
        assert_eq!(queue.wake.queued.load(Ordering::Relaxed), 0);
        h.results.send(Ok(())).unwrap();
        let disk = h.disk.clone();
        let text = h.close();
        assert_eq!(disk.lock().unwrap().writes, vec![1, 1, 8]);
        assert!(text.contains("\"dropped\":2"), "{text}");
    }
}
