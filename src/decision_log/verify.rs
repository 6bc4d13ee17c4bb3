//! `vakt audit verify`: checking a decision log's hash chain, across rotated files,
//! against its checkpoints and, with the public key, their signatures; and saying
//! for each range of records whether a checkpoint attests it.
//!
//! Files are streamed a line at a time (a line is bounded, a file is not), so
//! memory does not grow with the log.

use super::chain::{sha256_hex, Linked, GENESIS, MAX_LINE, MAX_SEQ};
use super::checkpoint::{Checkpoint, PublicKey};
use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;

/// What `verify` found wrong, first problem only, as an auditor reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("{file}:{line}: not a chained decision record: {message}")]
    Unreadable {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}:{line}: record seq {seq} (decision {decision}) does not follow the record before it: a record was edited, inserted, deleted or reordered here")]
    Chain {
        file: String,
        line: usize,
        seq: u64,
        decision: String,
    },
    #[error("{file}:{line}: expected record seq {expected}, found seq {found} (decision {decision}): records are missing or reordered")]
    Sequence {
        file: String,
        line: usize,
        expected: u64,
        found: u64,
        decision: String,
    },
    #[error("{file}: the records given begin at seq {found}, not at the log's first record (seq 1): records were cut from its head, or the older rotated files were not given; to check only from seq {found} on, pass --from-seq {found}")]
    HeadCut { file: String, found: u64 },
    #[error("{file}: the records given begin at seq {found}, but --from-seq says {expected}")]
    FromSeq {
        file: String,
        found: u64,
        expected: u64,
    },
    #[error("{file}: the file begins at record seq {found} but the checkpoint beside it says record seq {expected}: records were cut from its head, or the file was replaced")]
    FileHead {
        file: String,
        found: u64,
        expected: u64,
    },
    #[error("{file}: its first record (seq {seq}) is not the one the checkpoint beside it names: the file was replaced or its head edited")]
    FirstRecord { file: String, seq: u64 },
    #[error("the log holds records up to seq {have} but the checkpoint of {at} names record seq {records}: the tail was truncated")]
    Truncated { have: u64, records: u64, at: String },
    #[error("record seq {records} does not match the head hash of the checkpoint of {at}: the log was changed at or before that record, or the checkpoint was replaced")]
    CheckpointMismatch { records: u64, at: String },
    #[error("the checkpoint of {at} (record seq {records}) does not verify: {why}: it was forged or replaced")]
    CheckpointSignature {
        records: u64,
        at: String,
        why: String,
    },
    #[error("the checkpoint beside the log names record seq {current}, but a checkpoint of {at} names record seq {newer}: the checkpoint was rolled back")]
    RolledBack {
        current: u64,
        newer: u64,
        at: String,
    },
    #[error("records seq {from} to {to} follow the last signed checkpoint (record seq {signed}): they were appended after it, or written in the moment before a crash or a failed checkpoint")]
    UnsignedTail { from: u64, to: u64, signed: u64 },
    #[error("no checkpoint was given (the one beside the log is missing), so no signature covers {what}: the log was emptied or replaced, or its checkpoint deleted")]
    NoCheckpoint { what: String },
    #[error("records seq {from} to {to} are not attested by any signature: when Vakt continued the log they followed its last checkpoint, as its record seq {note} says (written just before a crash, or added by someone else){more}")]
    Unattested {
        from: u64,
        to: u64,
        note: u64,
        more: String,
    },
}

/// Whether a checkpoint attests a range of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attestation {
    /// A checkpoint covers them (signed by the key, when one was given).
    Covered,
    /// A checkpoint covers them, but a record of Vakt's (seq `note`) says they were
    /// on file past the last checkpoint when Vakt continued the log: no signature
    /// vouches for them.
    Unattested { note: u64 },
    /// After the newest checkpoint given: none covers them.
    AfterNewest,
}

/// Records `from` to `to` and whether a checkpoint attests them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: u64,
    pub to: u64,
    pub attestation: Attestation,
}

/// The outcome of a clean verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// The chain head: the hash of the last record (64 zeros when there is none).
    pub head: String,
    /// The seq of the first and the last record checked (0 when there is none).
    pub first: u64,
    pub last: u64,
    /// Files read.
    pub files: usize,
    /// Checkpoints the log was checked against.
    pub checkpoints: usize,
    /// Records after the newest checkpoint (only without a key; with one they are
    /// an error).
    pub unsigned_tail: u64,
    /// The records checked, in ranges, each with whether a checkpoint attests it.
    pub ranges: Vec<Range>,
}

/// What a log is checked against besides its own chain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Against<'a> {
    /// The checkpoint published beside the log's current (last) file.
    pub current: Option<&'a Checkpoint>,
    /// Copies of checkpoints kept elsewhere, such as Vakt's diagnostic log.
    pub copies: &'a [Checkpoint],
    /// When given, every checkpoint must carry this key's signature and every
    /// record must be covered by one.
    pub key: Option<&'a PublicKey>,
}

/// Verifies the chain through `files` (in order: rotated files continue one chain),
/// from the log's first record, and against the checkpoints in `against`.
pub fn verify(files: &[(String, String)], against: &Against<'_>) -> Result<Verified, Broken> {
    let mut v = Verifier::new(against, None)?;
    for (file, text) in files {
        v.start_file(file);
        for (i, line) in text.lines().enumerate() {
            v.line(i + 1, line)?;
        }
    }
    v.finish()
}

/// [`verify`] over files read a line at a time; `from_seq` lets the records begin
/// after the log's first one. The outer error is a file that cannot be read; a
/// log that does not verify comes with its ranges of records and what attests
/// each, when it was read that far.
pub fn verify_files(
    files: &[&Path],
    against: &Against<'_>,
    from_seq: Option<u64>,
) -> Result<Result<Verified, (Broken, Vec<Range>)>, String> {
    let mut v = match Verifier::new(against, from_seq) {
        Ok(v) => v,
        Err(b) => return Ok(Err((b, Vec::new()))),
    };
    for path in files {
        let shown = path.display().to_string();
        v.start_file(&shown);
        let read = for_each_line(path, |n, line| match std::str::from_utf8(line) {
            Ok(line) => v.line(n, line),
            Err(_) => Err(Broken::Unreadable {
                file: shown.clone(),
                line: n,
                message: "not UTF-8".into(),
            }),
        })?;
        if let Err(b) = read {
            return Ok(Err((b, Vec::new())));
        }
    }
    Ok(v.finish_report())
}

/// Opens `path` for reading only when it is a regular file once symbolic links
/// are followed: a FIFO or device is refused before it is opened (and the open
/// does not block, should one be swapped in meanwhile). Errors name the file.
pub(crate) fn open_regular(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let shown = path.display();
    let regular = |m: &std::fs::Metadata| {
        if m.is_file() {
            Ok(())
        } else {
            Err(format!(
                "{shown}: is {}, not a regular file",
                if m.is_dir() {
                    "a directory"
                } else {
                    "a special file (FIFO, socket or device)"
                }
            ))
        }
    };
    regular(&std::fs::metadata(path).map_err(|e| format!("{shown}: cannot read: {e}"))?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    regular(
        &file
            .metadata()
            .map_err(|e| format!("{shown}: cannot read: {e}"))?,
    )?;
    Ok(file)
}

/// Calls `f` with each line of a regular file (numbered from 1, without its
/// newline), stopping at the first error `f` returns. A line longer than
/// [`MAX_LINE`] is an error naming the file and line; so is a file that cannot be
/// read (the outer error).
pub(crate) fn for_each_line<E>(
    path: &Path,
    mut f: impl FnMut(usize, &[u8]) -> Result<(), E>,
) -> Result<Result<(), E>, String> {
    let shown = path.display();
    let mut reader = std::io::BufReader::with_capacity(64 << 10, open_regular(path)?);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        let available = reader
            .fill_buf()
            .map_err(|e| format!("{shown}: cannot read: {e}"))?;
        if available.is_empty() {
            if !line.is_empty() {
                n += 1;
                if let Err(e) = f(n, &line) {
                    return Ok(Err(e));
                }
            }
            return Ok(Ok(()));
        }
        let (take, end) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        line.extend_from_slice(&available[..take - usize::from(end)]);
        reader.consume(take);
        if line.len() > MAX_LINE {
            return Err(format!(
                "{shown}:{}: a line longer than {MAX_LINE} bytes: not a decision log",
                n + 1
            ));
        }
        if end {
            n += 1;
            if let Err(e) = f(n, &line) {
                return Ok(Err(e));
            }
            line.clear();
        }
    }
}

/// The check of one log, fed a line at a time.
pub struct Verifier<'a> {
    against: Against<'a>,
    all: Vec<&'a Checkpoint>,
    from_seq: Option<u64>,
    /// The hash of each record a checkpoint names, as the pass meets it.
    pinned: HashMap<u64, Option<String>>,
    /// The seq and hash of the last record read.
    chain: Option<(u64, String)>,
    /// The first record's seq and prev_hash.
    first: Option<(u64, String)>,
    /// The file being read, and its first record's seq and hash.
    file: String,
    file_first: Option<(u64, String)>,
    files: usize,
    records: u64,
    /// Notes of unattested records: (the note's seq, first, last).
    notes: Vec<(u64, u64, u64)>,
}

impl<'a> Verifier<'a> {
    /// Checks the checkpoints' signatures (with a key) and that the one beside the
    /// log is not older than a copy.
    pub fn new(against: &Against<'a>, from_seq: Option<u64>) -> Result<Self, Broken> {
        let all: Vec<&Checkpoint> = against.current.into_iter().chain(against.copies).collect();
        if let Some(key) = against.key {
            for cp in &all {
                cp.verify_signature(key)
                    .map_err(|e| Broken::CheckpointSignature {
                        records: cp.last_seq,
                        at: cp.timestamp.clone(),
                        why: e.to_string(),
                    })?;
            }
        }
        if let Some(current) = against.current {
            if let Some(newer) = against
                .copies
                .iter()
                .find(|c| c.last_seq > current.last_seq)
            {
                return Err(Broken::RolledBack {
                    current: current.last_seq,
                    newer: newer.last_seq,
                    at: newer.timestamp.clone(),
                });
            }
        }
        Ok(Self {
            pinned: all.iter().map(|c| (c.last_seq, None)).collect(),
            against: *against,
            all,
            from_seq,
            chain: None,
            first: None,
            file: String::new(),
            file_first: None,
            files: 0,
            records: 0,
            notes: Vec::new(),
        })
    }

    /// The next file begins.
    pub fn start_file(&mut self, file: &str) {
        self.file = file.to_owned();
        self.file_first = None;
        self.files += 1;
    }

    /// The next line of the current file, numbered `n` from 1.
    pub fn line(&mut self, n: usize, line: &str) -> Result<(), Broken> {
        if line.is_empty() {
            return Ok(());
        }
        let file = &self.file;
        let rec: Linked = crate::json::from_str(line).map_err(|e| Broken::Unreadable {
            file: file.clone(),
            line: n,
            message: e.to_string(),
        })?;
        if rec.seq > MAX_SEQ {
            return Err(Broken::Unreadable {
                file: file.clone(),
                line: n,
                message: format!("seq {} is beyond any log's length", rec.seq),
            });
        }
        let decision = || rec.decision_id.clone().unwrap_or_else(|| "-".into());
        match &self.chain {
            None => {
                match self.from_seq {
                    Some(expected) if rec.seq != expected => {
                        return Err(Broken::FromSeq {
                            file: file.clone(),
                            found: rec.seq,
                            expected,
                        })
                    }
                    None if rec.seq != 1 => {
                        return Err(Broken::HeadCut {
                            file: file.clone(),
                            found: rec.seq,
                        })
                    }
                    _ => {}
                }
                if (rec.seq == 1) != (rec.prev_hash == GENESIS) {
                    return Err(Broken::Chain {
                        file: file.clone(),
                        line: n,
                        seq: rec.seq,
                        decision: decision(),
                    });
                }
                self.first = Some((rec.seq, rec.prev_hash.clone()));
            }
            Some((seq, head)) => {
                if rec.seq != seq + 1 {
                    return Err(Broken::Sequence {
                        file: file.clone(),
                        line: n,
                        expected: seq + 1,
                        found: rec.seq,
                        decision: decision(),
                    });
                }
                if &rec.prev_hash != head {
                    return Err(Broken::Chain {
                        file: file.clone(),
                        line: n,
                        seq: rec.seq,
                        decision: decision(),
                    });
                }
            }
        }
        let head = sha256_hex(line.as_bytes());
        if self.file_first.is_none() {
            self.file_first = Some((rec.seq, head.clone()));
        }
        if let Some(slot) = self.pinned.get_mut(&rec.seq) {
            *slot = Some(head.clone());
        }
        if let Some((from, to)) = rec.unattested() {
            self.notes.push((rec.seq, from, to));
        }
        self.records += 1;
        self.chain = Some((rec.seq, head));
        Ok(())
    }

    /// The checks that need the whole log: its tail and head against the
    /// checkpoints, and what they attest.
    fn checks(self) -> Result<Verified, Broken> {
        let all = &self.all;
        let first = self.first.as_ref().map(|(s, _)| *s);
        let (last, head) = self.chain.clone().unwrap_or_else(|| {
            (
                self.from_seq.map_or(0, |s| s.saturating_sub(1)),
                GENESIS.to_owned(),
            )
        });
        if all.is_empty() && (self.against.key.is_some() || self.records == 0) {
            return Err(Broken::NoCheckpoint {
                what: match first {
                    Some(f) => format!("records seq {f} to {last}"),
                    None => "the log, which holds no record".into(),
                },
            });
        }
        if let Some(cp) = self.against.current {
            if let Some((found, hash)) = &self.file_first {
                if cp.first_seq != 0 && cp.first_seq <= cp.last_seq && cp.first_seq != *found {
                    return Err(Broken::FileHead {
                        file: self.file.clone(),
                        found: *found,
                        expected: cp.first_seq,
                    });
                }
                if cp.first_seq == *found && cp.first_hash.as_ref().is_some_and(|h| h != hash) {
                    return Err(Broken::FirstRecord {
                        file: self.file.clone(),
                        seq: *found,
                    });
                }
            }
        }
        for cp in all {
            if last < cp.last_seq {
                return Err(Broken::Truncated {
                    have: last,
                    records: cp.last_seq,
                    at: cp.timestamp.clone(),
                });
            }
            let holds = match (&self.pinned[&cp.last_seq], &self.first) {
                (Some(h), _) => *h == cp.head,
                // The record just before the first one given: what that one follows.
                (None, Some((seq, prev))) if *seq == cp.last_seq.saturating_add(1) => {
                    *prev == cp.head
                }
                // Earlier than the records given (--from-seq).
                (None, Some((seq, _))) if *seq > cp.last_seq.saturating_add(1) => true,
                // A checkpoint of an empty log.
                (None, _) => cp.last_seq == 0 && cp.head == GENESIS,
            };
            if !holds {
                return Err(Broken::CheckpointMismatch {
                    records: cp.last_seq,
                    at: cp.timestamp.clone(),
                });
            }
        }
        let ranges = first.map_or_else(Vec::new, |f| ranges(f, last, all, &self.notes));
        let unsigned_tail = ranges
            .last()
            .filter(|r| r.attestation == Attestation::AfterNewest)
            .map_or(0, |r| r.to - r.from + 1);
        Ok(Verified {
            records: self.records,
            head,
            first: first.unwrap_or(0),
            last,
            files: self.files,
            checkpoints: all.len(),
            unsigned_tail,
            ranges,
        })
    }

    /// The checks of [`Verifier::finish`]; on failure, the ranges of records and
    /// what attests each, when the records were read that far.
    pub fn finish_report(self) -> Result<Verified, (Broken, Vec<Range>)> {
        let keyed = self.against.key.is_some();
        let v = self.checks().map_err(|b| (b, Vec::new()))?;
        if keyed {
            signed_throughout(&v).map_err(|b| (b, v.ranges.clone()))?;
        }
        Ok(v)
    }

    /// Everything [`Verifier::finish`] checks.
    pub fn finish(self) -> Result<Verified, Broken> {
        self.finish_report().map_err(|(b, _)| b)
    }
}

/// With a key: no record after the newest checkpoint, and none a checkpoint
/// covers without attesting it.
fn signed_throughout(v: &Verified) -> Result<(), Broken> {
    if v.unsigned_tail > 0 {
        return Err(Broken::UnsignedTail {
            from: v.last - v.unsigned_tail + 1,
            to: v.last,
            signed: v.last - v.unsigned_tail,
        });
    }
    let mut unattested = v.ranges.iter().filter_map(|r| match r.attestation {
        Attestation::Unattested { note } => Some((r.from, r.to, note)),
        _ => None,
    });
    if let Some((from, to, note)) = unattested.next() {
        let more = unattested.count();
        return Err(Broken::Unattested {
            from,
            to,
            note,
            more: if more == 0 {
                String::new()
            } else {
                format!("; {more} more such ranges follow")
            },
        });
    }
    Ok(())
}

/// Records `first` to `last` in ranges of one attestation each. A record is
/// attested by the first checkpoint at or after it, unless a note of Vakt's at
/// or before that checkpoint says it was on file past the last checkpoint when
/// Vakt continued the log: then no checkpoint vouches for it, since Vakt wrote
/// the note before it signed again.
fn ranges(first: u64, last: u64, cps: &[&Checkpoint], notes: &[(u64, u64, u64)]) -> Vec<Range> {
    let mut covered: Vec<u64> = cps.iter().map(|c| c.last_seq).collect();
    covered.sort_unstable();
    covered.dedup();
    let at = |r: u64| match covered.get(covered.partition_point(|c| *c < r)) {
        None => Attestation::AfterNewest,
        Some(c) => notes
            .iter()
            .find(|(note, from, to)| *from <= r && r <= *to && note <= c)
            .map_or(Attestation::Covered, |(note, _, _)| {
                Attestation::Unattested { note: *note }
            }),
    };
    // Attestation changes only at these records.
    let mut starts: Vec<u64> = covered
        .iter()
        .map(|c| c.saturating_add(1))
        .chain(notes.iter().flat_map(|(_, from, to)| [*from, to + 1]))
        .filter(|s| *s > first && *s <= last)
        .chain([first])
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let mut out: Vec<Range> = Vec::new();
    for (i, from) in starts.iter().enumerate() {
        let to = starts.get(i + 1).map_or(last, |next| next - 1);
        let attestation = at(*from);
        match out.last_mut() {
            Some(prev) if prev.attestation == attestation => prev.to = to,
            _ => out.push(Range {
                from: *from,
                to,
                attestation,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::chain::Chain;
    use crate::decision_log::checkpoint::Checkpoint;

    fn log(n: usize) -> (Vec<String>, Chain) {
        let mut c = Chain::default();
        let lines = (0..n)
            .map(|i| {
                c.link(&format!(
                    "{{\"decision_id\":\"d{i}\",\"decision\":\"allow\"}}"
                ))
            })
            .collect();
        (lines, c)
    }

    fn check(lines: &[String], cp: Option<&Checkpoint>) -> Result<Verified, Broken> {
        verify(
            &[("log".into(), lines.join("\n") + "\n")],
            &Against {
                current: cp,
                ..Against::default()
            },
        )
    }

    #[test]
    fn an_untouched_log_verifies_and_resumes() {
        let (lines, c) = log(5);
        let v = check(&lines, None).unwrap();
        assert_eq!((v.records, v.head.clone()), (5, c.head()));
        assert_eq!(Chain::resume(&lines.join("\n")).unwrap(), c);
        assert!(lines[0].starts_with(&format!(
            "{{\"seq\":1,\"prev_hash\":\"{GENESIS}\",\"decision_id\""
        )));
    }

    #[test]
    fn edits_deletions_insertions_and_reordering_are_caught() {
        let (lines, _) = log(5);
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("allow", "deny");
        assert!(matches!(
            check(&edited, None),
            Err(Broken::Chain { line: 4, .. })
        ));

        let mut deleted = lines.clone();
        deleted.remove(2);
        assert!(matches!(
            check(&deleted, None),
            Err(Broken::Sequence {
                line: 3,
                expected: 3,
                found: 4,
                ..
            })
        ));

        let mut inserted = lines.clone();
        inserted.insert(2, lines[1].clone());
        assert!(matches!(
            check(&inserted, None),
            Err(Broken::Sequence { line: 3, .. })
        ));

        let mut reordered = lines.clone();
        reordered.swap(1, 2);
        assert!(matches!(
            check(&reordered, None),
            Err(Broken::Sequence { line: 2, .. })
        ));
    }

    #[test]
    fn a_truncated_tail_is_caught_against_a_checkpoint() {
        let (lines, c) = log(5);
        let cp = Checkpoint::of(&c, 1, GENESIS);
        assert!(check(&lines, Some(&cp)).is_ok());
        assert!(matches!(
            check(&lines[..4], Some(&cp)),
            Err(Broken::Truncated {
                have: 4,
                records: 5,
                ..
            })
        ));
        // Without the checkpoint, a cut tail is invisible: that is what it is for.
        assert!(check(&lines[..4], None).is_ok());
        let mut last_edited = lines.clone();
        last_edited[4] = last_edited[4].replace("allow", "deny");
        assert!(matches!(
            check(&last_edited, Some(&cp)),
            Err(Broken::CheckpointMismatch { records: 5, .. })
        ));
    }

    #[test]
    fn a_set_must_begin_the_log_unless_from_seq_says_where() {
        let (lines, c) = log(5);
        let mut cp = Checkpoint::of(&c, 3, GENESIS);
        cp.first_hash = Some(sha256_hex(lines[2].as_bytes()));
        let files = [("cur".to_owned(), lines[2..].join("\n") + "\n")];
        let against = Against {
            current: Some(&cp),
            ..Against::default()
        };
        // The checkpoint beside the file vouches for where it begins, but the log
        // begins at seq 1.
        assert!(matches!(
            verify(&files, &against),
            Err(Broken::HeadCut { found: 3, .. })
        ));
        let from = |n| {
            let mut v = Verifier::new(&against, Some(n)).unwrap();
            v.start_file("cur");
            for (i, l) in lines[2..].iter().enumerate() {
                v.line(i + 1, l)?;
            }
            v.finish()
        };
        let v = from(3).unwrap();
        assert_eq!((v.records, v.first, v.last), (3, 3, 5));
        assert!(matches!(
            from(2),
            Err(Broken::FromSeq {
                found: 3,
                expected: 2,
                ..
            })
        ));
        // A current file whose first record is not the one the checkpoint names.
        cp.first_hash = Some(sha256_hex(b"another"));
        let against = Against {
            current: Some(&cp),
            ..Against::default()
        };
        let mut v = Verifier::new(&against, Some(3)).unwrap();
        v.start_file("cur");
        for (i, l) in lines[2..].iter().enumerate() {
            v.line(i + 1, l).unwrap();
        }
        assert!(matches!(
            v.finish(),
            Err(Broken::FirstRecord { seq: 3, .. })
        ));
    }

    #[test]
    fn ranges_say_what_attests_each_record() {
        let cp = |n: u64| {
            let mut c = Chain::default();
            c.seq = n;
            Checkpoint::of(&c, 1, GENESIS)
        };
        let (c4, c9) = (cp(4), cp(9));
        let cps = [&c4, &c9];
        // Records 5 and 6 were past checkpoint 4 when Vakt continued the log; it
        // said so in record 7, before checkpoint 9 covered them.
        let r = ranges(1, 11, &cps, &[(7, 5, 6)]);
        let want = [
            (1, 4, Attestation::Covered),
            (5, 6, Attestation::Unattested { note: 7 }),
            (7, 9, Attestation::Covered),
            (10, 11, Attestation::AfterNewest),
        ];
        assert_eq!(
            r.iter()
                .map(|r| (r.from, r.to, r.attestation))
                .collect::<Vec<_>>(),
            want
        );
        // A checkpoint made before the note (a copy of a genuine one) still
        // attests what it covered.
        let c5 = cp(5);
        let r = ranges(1, 9, &[&c4, &c5, &c9], &[(7, 5, 6)]);
        assert_eq!(
            r.iter()
                .map(|r| (r.from, r.to, r.attestation))
                .collect::<Vec<_>>(),
            [
                (1, 5, Attestation::Covered),
                (6, 6, Attestation::Unattested { note: 7 }),
                (7, 9, Attestation::Covered),
            ]
        );
    }

    #[test]
    fn no_checkpoint_and_no_record_is_not_a_verified_log() {
        let empty = [("log".to_owned(), String::new())];
        assert!(matches!(
            verify(&empty, &Against::default()),
            Err(Broken::NoCheckpoint { .. })
        ));
    }
}
