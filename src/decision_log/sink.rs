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

    /// Called after each delivery and at least every [`TICK`] while idle, with the
    /// chain's head: for checkpoints and rotation.
    fn tick(&mut self, _chain: &Chain) {}

    /// Called once, when the log is closed and everything queued was handled.
    fn close(&mut self, chain: &Chain) {
        self.tick(chain);
    }
}

/// How long an idle writer sleeps before it calls [`Medium::tick`].
pub(crate) const TICK: Duration = Duration::from_millis(200);

/// How long a buffered sink's writer waits for more records after a batch before
/// it goes idle: records gather into batches without waking it one by one.
const LINGER: Duration = Duration::from_millis(1);

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
        .spawn(move || run(rx, medium, chain, delivery, &writer_stats, &writer_wake))?;
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
fn run(
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
        let result = medium.deliver(&batch, &chain);
        let n = batch.len() as u64;
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

/// Writes a `decision_records_dropped` note when records were lost since the last one.
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
