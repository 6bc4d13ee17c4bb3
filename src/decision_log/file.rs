//! The file sink: chained records appended to a file, one write (and at most one
//! fsync) per batch, rotated between batches, with the chain head checkpointed
//! beside it.

use super::chain::{checkpoint_path, write_checkpoint, Chain, Checkpoint};
use super::rotation::{rotated_path, Rotation};
use super::sink::{Batch, Medium};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// When the file sink calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Fsync {
    /// After every batch, before any of its calls is answered.
    #[default]
    Always,
    /// Never; written records survive a crash of Vakt but not of the machine.
    Never,
}

/// How often, at most, the checkpoint is rewritten while records keep coming. It
/// is also written once the sink falls idle, so it never trails the log by more
/// than about this plus one writer tick.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

pub(crate) struct FileMedium {
    path: PathBuf,
    file: File,
    fsync: Fsync,
    rotation: Rotation,
    /// Bytes in the current file.
    bytes: u64,
    opened: Instant,
    checkpoint: PathBuf,
    /// The seq the checkpoint file holds, and when it was written.
    checkpointed: u64,
    last_checkpoint: Instant,
}

impl FileMedium {
    /// Opens `path` for appending and reads the chain to continue: the records
    /// already in it or, for a file emptied by rotation, its checkpoint.
    pub fn open(path: &Path, fsync: Fsync, rotation: Rotation) -> Result<(Self, Chain), String> {
        let shown = path.display();
        // A device such as /dev/null has no chain to continue.
        let existing = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {
                std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?
            }
            _ => String::new(),
        };
        let mut chain = Chain::resume(&existing).map_err(|e| format!("{shown}: {e}"))?;
        let checkpoint = checkpoint_path(path);
        if existing.trim().is_empty() {
            if let Ok(text) = std::fs::read_to_string(&checkpoint) {
                let cp: Checkpoint = serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not a checkpoint: {e}", checkpoint.display()))?;
                chain = Chain::at(cp.records, &cp.head)
                    .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{shown}: cannot open for writing: {e}"))?;
        Ok((
            Self {
                path: path.to_owned(),
                file,
                fsync,
                rotation,
                bytes: existing.len() as u64,
                opened: Instant::now(),
                checkpoint,
                checkpointed: chain.seq,
                last_checkpoint: Instant::now(),
            },
            chain,
        ))
    }

    fn write_checkpoint(&mut self, chain: &Chain) {
        write_checkpoint(&self.checkpoint, chain);
        self.checkpointed = chain.seq;
        self.last_checkpoint = Instant::now();
    }

    /// Renames the file to `<path>.<last seq>` and starts a new one; on failure keeps
    /// appending to the handle it has, so nothing is lost.
    fn rotate(&mut self, chain: &Chain) {
        let rotated = rotated_path(&self.path, chain.seq);
        let reopened = std::fs::rename(&self.path, &rotated).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        });
        match reopened {
            Ok(f) => {
                self.file = f;
                self.bytes = 0;
                self.opened = Instant::now();
                // The new file starts empty: its checkpoint carries the chain.
                self.write_checkpoint(chain);
                tracing::info!(file = %rotated.display(), records = chain.seq, "decision log rotated");
            }
            Err(e) => {
                tracing::error!(error = %e, file = %self.path.display(), "decision log rotation failed")
            }
        }
    }
}

impl Medium for FileMedium {
    fn deliver(&mut self, batch: &Batch, _chain: &Chain) -> Result<(), String> {
        // One write for the whole batch: a killed process leaves whole lines.
        let result = self
            .file
            .write_all(batch.bytes())
            .and_then(|()| self.file.flush())
            .and_then(|()| match self.fsync {
                Fsync::Always => self.file.sync_data(),
                Fsync::Never => Ok(()),
            });
        match result {
            Ok(()) => {
                self.bytes += batch.bytes().len() as u64;
                Ok(())
            }
            Err(e) => {
                // A short write must not leave part of a record behind: cut the file
                // back to the last whole record.
                if self.file.metadata().is_ok_and(|m| m.is_file()) {
                    let _ = self.file.set_len(self.bytes);
                }
                tracing::error!(error = %e, file = %self.path.display(), records = batch.len(), "decision log write failed");
                Err(format!("{}: {e}", self.path.display()))
            }
        }
    }

    fn tick(&mut self, chain: &Chain) {
        if self.rotation.due(self.bytes, self.opened) {
            self.rotate(chain);
        }
        if chain.seq != self.checkpointed && self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            self.write_checkpoint(chain);
        }
    }

    fn close(&mut self, chain: &Chain) {
        if chain.seq != self.checkpointed {
            self.write_checkpoint(chain);
        }
    }
}
