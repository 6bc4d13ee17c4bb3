//! The stdout sink: chained records as JSON lines on standard output, where a
//! container runtime's log driver collects them. Always buffered.

use super::chain::Chain;
use super::sink::{Batch, Medium};
use std::io::Write;

/// Any writer taking whole batches; standard output in production.
pub(crate) struct Stream {
    out: Box<dyn Write + Send>,
    /// Whether the writer thread was made a batch thread (on its first delivery).
    yielding: bool,
}

impl Stream {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            yielding: false,
        }
    }
}

impl Medium for Stream {
    fn deliver(&mut self, batch: &Batch, _chain: &Chain) -> Result<(), String> {
        if !std::mem::replace(&mut self.yielding, true) {
            yield_to_calls();
        }
        self.out
            .write_all(batch.bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| format!("stdout: {e}"))
    }
}

/// Makes the calling thread (the sink's writer: deliveries run on it) a batch
/// thread for the scheduler. Under load the writer wakes every millisecond to
/// take what gathered; as a normal thread each wake-up may preempt the thread
/// answering a call, which then waits for the batch to be hashed and written (on
/// two cores, a visible share of one-at-a-time calls). A batch thread does not
/// preempt on waking: it runs on a free core or at the next scheduler tick, and
/// still gets its fair share of a busy machine, so nothing piles up. A buffered
/// sink can wait; a durable one, whose calls wait for it, is left as it is.
fn yield_to_calls() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler only reads `param`; pid 0 is this thread.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "the stdout log's writer keeps its scheduling"
            );
        }
    }
}
