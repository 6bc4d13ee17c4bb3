//! The file sink: chained records appended to a file, one write per batch and,
//! with fsync, one sync per batch before any of its calls is answered (the records
//! queued meanwhile form the next batch); rotated between batches, with the
//! durable chain head checkpointed beside it.

use super::chain::{sha256_hex, Chain, GENESIS, MISMATCH_ACCEPTED_EVENT, UNATTESTED_EVENT};
use super::checkpoint::{checkpoint_path, publish, Checkpoint, Signer};
use super::rotation::{rotated_path, Rotation};
use super::sink::{Batch, Medium};
use super::tail;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// How a file sink checks and signs its log.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileOptions {
    pub fsync: Fsync,
    pub rotation: Rotation,
    /// Signs every checkpoint; without it checkpoints are unsigned.
    pub signer: Option<Arc<Signer>>,
    /// Continue a log that does not match its checkpoint, recording that it did.
    pub accept_mismatch: bool,
    /// WARN when the log's file system has less free space than this.
    pub min_free_bytes: u64,
    /// Where each fsync's duration is recorded.
    pub fsync_times: Arc<crate::metrics::Histogram>,
}

/// How often the free space on the log's file system is looked at.
const FREE_SPACE_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct FileMedium {
    path: PathBuf,
    file: File,
    opts: FileOptions,
    /// False for a device such as /dev/null: nothing to checkpoint or rotate.
    regular: bool,
    /// Bytes in the current file.
    bytes: u64,
    opened: Instant,
    /// The seq of the current file's first record (the next one while it is empty).
    first_seq: u64,
    /// The hash of the current file's first record's line, once it has one.
    first_hash: Option<String>,
    checkpoint: PathBuf,
    /// The seq the checkpoint file holds, and when it was written.
    checkpointed: u64,
    last_checkpoint: Instant,
    /// The hash of the last checkpoint written, which the next one names.
    prev_checkpoint: String,
    /// When free space was last looked at, and whether it was low then.
    free_checked: Instant,
    low_on_space: bool,
}

impl FileMedium {
    /// Opens `path` for appending and finds the chain to continue: from the file's
    /// tail, checked against its checkpoint, or, for a file emptied by rotation,
    /// from the checkpoint. A log that does not match its checkpoint is refused
    /// unless the operator accepts it, and either way that is logged; accepted,
    /// the log itself records it. A fresh checkpoint is written at once, so records
    /// written just before a crash are signed only after they were checked.
    pub fn open(path: &Path, opts: FileOptions) -> Result<(Self, Chain), String> {
        let shown = path.display().to_string();
        let checkpoint = checkpoint_path(path);
        let cp = match std::fs::symlink_metadata(&checkpoint) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            _ => {
                let text = super::checkpoint::read_small(&checkpoint)?;
                Some(
                    crate::json::from_str::<Checkpoint>(&text)
                        .map_err(|e| format!("{}: not a checkpoint: {e}", checkpoint.display()))?,
                )
            }
        };
        // A FIFO would block the open (and every write); a device such as
        // /dev/null or /dev/full is the one kind of special file a log may be.
        if let Ok(m) = std::fs::metadata(path) {
            use std::os::unix::fs::FileTypeExt as _;
            let t = m.file_type();
            if t.is_dir() || t.is_fifo() || t.is_socket() {
                return Err(format!(
                    "{shown}: is a directory, FIFO or socket, not a regular file or a device"
                ));
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{shown}: cannot open for writing: {e}"))?;
        // A device such as /dev/null has no chain to continue.
        let is_file = file.metadata().is_ok_and(|m| m.is_file());
        let public = opts.signer.as_ref().map(|s| s.public());
        let continued = if is_file {
            tail::check(&mut file, &shown, cp.as_ref(), public.as_ref())
                .map_err(|e| e.to_string())?
        } else {
            Ok(tail::Continued {
                chain: Chain::default(),
                first_seq: 1,
                first_hash: None,
            })
        };
        let mut note = None;
        let continued = match continued {
            Ok(c) => c,
            Err(mismatch) if opts.accept_mismatch => {
                tracing::error!(
                    file = %shown,
                    problem = %mismatch,
                    "decision log does not match its checkpoint; continuing it as the operator asked (--decision-log-accept-mismatch)"
                );
                note = Some(mismatch.0);
                tail::check(&mut file, &shown, None, None)
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("{shown}: {e}"))?
            }
            Err(mismatch) => {
                tracing::error!(
                    file = %shown,
                    problem = %mismatch,
                    "decision log does not match its checkpoint; refusing to continue it"
                );
                return Err(format!(
                    "{shown}: does not match its checkpoint {}: {mismatch}. Check it with `vakt audit verify`; to continue it anyway, pass --decision-log-accept-mismatch (recorded in the log)",
                    checkpoint.display()
                ));
            }
        };
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut medium = Self {
            path: path.to_owned(),
            file,
            opts,
            regular: is_file,
            bytes,
            opened: Instant::now(),
            first_seq: continued.first_seq,
            first_hash: continued.first_hash,
            checkpoint,
            checkpointed: u64::MAX,
            last_checkpoint: Instant::now(),
            prev_checkpoint: cp
                .as_ref()
                .map_or_else(|| GENESIS.to_owned(), Checkpoint::hash),
            free_checked: Instant::now() - FREE_SPACE_EVERY,
            low_on_space: false,
        };
        let mut chain = continued.chain;
        // Records on file that no checkpoint covered were never signed, and the
        // checkpoint written below must not come to vouch for them: someone who
        // can write the log could have added them. A record in the chain says so
        // (and `vakt audit verify` reports them as unattested). After an accepted
        // mismatch that is the whole file.
        let unattested_from = match (&note, &cp) {
            (None, Some(cp)) => cp.last_seq.saturating_add(1),
            _ => continued.first_seq,
        };
        let unattested =
            (is_file && unattested_from <= chain.seq).then_some((unattested_from, chain.seq));
        if let Some(problem) = note {
            medium.record_accepted_mismatch(&mut chain, &problem, cp.as_ref(), unattested)?;
        } else if let Some((from, to)) = unattested {
            tracing::warn!(
                file = %shown,
                from_seq = from,
                to_seq = to,
                "decision log records follow its last checkpoint (written just before a crash, or added by someone else); recorded in the log as unattested"
            );
            medium.append_note(
                &mut chain,
                serde_json::json!({
                    "timestamp": super::record::now_rfc3339(),
                    "event": UNATTESTED_EVENT,
                    "unattested_from": from,
                    "unattested_to": to,
                    "reason": if cp.is_some() {
                        "these records followed the last checkpoint when Vakt continued the log: no signature covered them"
                    } else {
                        "the log had no checkpoint when Vakt continued it: no signature covered these records"
                    },
                    "checkpoint": cp,
                }),
            )?;
        }
        if is_file {
            medium.write_checkpoint(&chain);
        }
        Ok((medium, chain))
    }

    /// Writes a record saying the log was continued although it did not match its
    /// checkpoint, so the override is part of the chain an auditor verifies; the
    /// records of the file are named unattested, since no valid checkpoint
    /// covered them.
    fn record_accepted_mismatch(
        &mut self,
        chain: &mut Chain,
        problem: &str,
        cp: Option<&Checkpoint>,
        unattested: Option<(u64, u64)>,
    ) -> Result<(), String> {
        let mut note = serde_json::json!({
            "timestamp": super::record::now_rfc3339(),
            "event": MISMATCH_ACCEPTED_EVENT,
            "problem": problem,
            "checkpoint": cp,
        });
        if let Some((from, to)) = unattested {
            note["unattested_from"] = from.into();
            note["unattested_to"] = to.into();
        }
        self.append_note(chain, note)
    }

    /// Links a note of Vakt's own into the chain and writes it at once, synced.
    fn append_note(&mut self, chain: &mut Chain, note: serde_json::Value) -> Result<(), String> {
        let mut line = chain.link(&note.to_string());
        line.push('\n');
        (&self.file)
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        if self.bytes == 0 {
            self.first_seq = chain.seq;
            self.first_hash = Some(sha256_hex(line.trim_end().as_bytes()));
        }
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// Writes a checkpoint of `chain`, which must be durable: a checkpoint never
    /// names a record a crash could still take from the file.
    fn write_checkpoint(&mut self, chain: &Chain) {
        let mut cp = Checkpoint::of(chain, self.first_seq, &self.prev_checkpoint);
        // The file's first record is named once it is durable (it is written, and
        // its hash known, a sync earlier).
        if chain.seq >= self.first_seq {
            cp.first_hash = self.first_hash.clone();
        }
        if let Some(signer) = &self.opts.signer {
            cp = cp.sign(signer);
        }
        if publish(&self.checkpoint, &cp).is_ok() {
            self.prev_checkpoint = cp.hash();
            self.checkpointed = chain.seq;
        }
        self.last_checkpoint = Instant::now();
    }

    /// Renames the file to `<path>.<last seq>` and starts a new one; on failure keeps
    /// appending to the handle it has, so nothing is lost. Called only when every
    /// record written is durable, `chain` being the last.
    fn rotate(&mut self, chain: &Chain) {
        let rotated = rotated_path(&self.path, chain.seq);
        let reopened = std::fs::rename(&self.path, &rotated).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)
        });
        match reopened {
            Ok(f) => {
                self.file = f;
                self.bytes = 0;
                self.opened = Instant::now();
                self.first_seq = chain.seq.saturating_add(1);
                self.first_hash = None;
                // The new file starts empty: its checkpoint carries the chain.
                self.write_checkpoint(chain);
                tracing::info!(file = %rotated.display(), last_seq = chain.seq, "decision log rotated");
            }
            Err(e) => {
                tracing::error!(error = %e, file = %self.path.display(), "decision log rotation failed")
            }
        }
    }

    /// WARNs once free space on the log's file system falls below the threshold,
    /// and again each time it falls below after recovering.
    /// Cuts a regular file back to `len` bytes and syncs it; what went wrong,
    /// if anything. A device is left as it is.
    fn cut_to(&mut self, len: u64) -> Option<String> {
        if !self.regular {
            return None;
        }
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| e.to_string())
            .err()
    }

    fn check_free_space(&mut self) {
        if self.opts.min_free_bytes == 0 || self.free_checked.elapsed() < FREE_SPACE_EVERY {
            return;
        }
        self.free_checked = Instant::now();
        let Some(free) = free_bytes(&self.path) else {
            return;
        };
        let low = free < self.opts.min_free_bytes;
        if low && !self.low_on_space {
            tracing::warn!(
                file = %self.path.display(),
                free_bytes = free,
                min_free_bytes = self.opts.min_free_bytes,
                "the decision log's file system is running out of space; durable calls will fail when it is full"
            );
        }
        self.low_on_space = low;
    }
}

/// Free bytes for unprivileged writers on the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

impl FileMedium {
    /// Syncs the file, timing the sync.
    fn sync_now(&self) -> Result<(), String> {
        let started = Instant::now();
        let synced = self.file.sync_data();
        self.opts.fsync_times.observe(started.elapsed());
        synced.map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Appends the batch with one write; a failed write leaves nothing of it.
    fn write(&mut self, batch: &Batch) -> Result<(), String> {
        // One write for the whole batch: a killed process leaves whole lines.
        match (&self.file).write_all(batch.bytes()) {
            Ok(()) => {
                if self.bytes == 0 {
                    self.first_hash = batch.lines().next().map(|l| sha256_hex(l.as_bytes()));
                }
                self.bytes += batch.bytes().len() as u64;
                Ok(())
            }
            Err(e) => {
                // A short write (a full disk, a file-size limit, an I/O error) must
                // not leave part of a record behind: cut the file back to the last
                // whole record, so the log stays whole and the next write continues
                // the chain from there.
                let cut = self.cut_to(self.bytes);
                tracing::error!(
                    error = %e,
                    file = %self.path.display(),
                    records = batch.len(),
                    kept_bytes = self.bytes,
                    cut_failed = cut,
                    "decision log write failed; the file was cut back to its last whole record and calls fail until a write succeeds"
                );
                Err(format!("{}: {e}", self.path.display()))
            }
        }
    }

    /// What was written from `mark` on was never made durable (its sync failed):
    /// cuts it off, so that the file ends with its last durable record, as the
    /// chain does.
    fn cut_back(&mut self, mark: u64) {
        // Records whose sync failed may or may not be on the disk: cut them off,
        // so the log ends with its last durable record, as the chain does.
        let cut = self.cut_to(mark);
        tracing::error!(
            file = %self.path.display(),
            dropped_bytes = self.bytes.saturating_sub(mark),
            kept_bytes = mark,
            cut_failed = cut,
            "decision log sync failed; the file was cut back to its last durable record and calls fail until a sync succeeds"
        );
        self.bytes = mark;
        if mark == 0 {
            self.first_hash = None;
        }
    }
}

impl Medium for FileMedium {
    /// Writes the batch and, with fsync, syncs it before any of its calls is
    /// answered; the records queued meanwhile are the next batch (group commit).
    fn deliver(&mut self, batch: &Batch, _chain: &Chain) -> Result<(), String> {
        let start = self.bytes;
        self.write(batch)?;
        if self.opts.fsync == Fsync::Always {
            if let Err(e) = self.sync_now() {
                self.cut_back(start);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Every record written is durable here (each batch was synced before this),
    /// so the checkpoint names the chain's head and rotation may happen at once.
    fn tick(&mut self, chain: &Chain) {
        if !self.regular {
            return;
        }
        self.check_free_space();
        if self.opts.rotation.due(self.bytes, self.opened) {
            self.rotate(chain);
        }
        if chain.seq != self.checkpointed && self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            self.write_checkpoint(chain);
        }
    }

    fn close(&mut self, chain: &Chain) {
        // The final checkpoint: a clean stop leaves every record signed.
        if self.regular && chain.seq != self.checkpointed {
            self.write_checkpoint(chain);
        }
    }
}
