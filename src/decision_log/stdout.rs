//! The stdout sink: chained records as JSON lines on standard output, where a
//! container runtime's log driver collects them. Always buffered.

use super::chain::Chain;
use super::sink::{Batch, Medium};
use std::io::Write;

/// Any writer taking whole batches; standard output in production.
pub(crate) struct Stream(pub Box<dyn Write + Send>);

impl Medium for Stream {
    fn deliver(&mut self, batch: &Batch, _chain: &Chain) -> Result<(), String> {
        self.0
            .write_all(batch.bytes())
            .and_then(|()| self.0.flush())
            .map_err(|e| format!("stdout: {e}"))
    }
}
