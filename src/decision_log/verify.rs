//! `vakt audit verify`: checking a decision log's hash chain, across rotated files,
//! against its checkpoints and, with the public key, their signatures.

use super::chain::{sha256_hex, Linked, GENESIS};
use super::checkpoint::{Checkpoint, PublicKey};
use std::collections::HashMap;

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
    #[error("{file}: the log begins at record seq {found}, not {expected}: records were cut from its head (or older rotated files were not given)")]
    HeadCut {
        file: String,
        found: u64,
        expected: u64,
    },
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
    #[error("records seq {from} to {to} follow the last signed checkpoint (record seq {signed}): they were appended after it, or written in the second before a crash and not yet checked by a restart")]
    UnsignedTail { from: u64, to: u64, signed: u64 },
}

/// The outcome of a clean verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub head: String,
    /// The seq of the first record given.
    pub first: u64,
    /// Checkpoints the log was checked against.
    pub checkpoints: usize,
    /// Records after the newest checkpoint (only without a key; with one they are
    /// an error).
    pub unsigned_tail: u64,
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
/// and against the checkpoints in `against`.
pub fn verify(files: &[(String, String)], against: &Against<'_>) -> Result<Verified, Broken> {
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
    // The hash of each record a checkpoint names, as the pass below meets it.
    let mut pinned: HashMap<u64, Option<String>> = all.iter().map(|c| (c.last_seq, None)).collect();
    // The seq and hash of the last record read, and the first record's seq and
    // prev_hash.
    let mut chain: Option<(u64, String)> = None;
    let mut first: Option<(u64, String)> = None;
    let mut last_file_first = None;
    for (file_index, (file, text)) in files.iter().enumerate() {
        let is_last_file = file_index + 1 == files.len();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.is_empty() {
                continue;
            }
            let rec: Linked = crate::json::from_str(line).map_err(|e| Broken::Unreadable {
                file: file.clone(),
                line: n,
                message: e.to_string(),
            })?;
            let decision = rec.decision_id.clone().unwrap_or_else(|| "-".into());
            if is_last_file && last_file_first.is_none() {
                last_file_first = Some((file.clone(), rec.seq));
            }
            match &chain {
                None if rec.prev_hash == GENESIS && rec.seq != 1 => {
                    return Err(Broken::Sequence {
                        file: file.clone(),
                        line: n,
                        expected: 1,
                        found: rec.seq,
                        decision,
                    })
                }
                None => first = Some((rec.seq, rec.prev_hash.clone())),
                Some((seq, head)) => {
                    if rec.seq != seq + 1 {
                        return Err(Broken::Sequence {
                            file: file.clone(),
                            line: n,
                            expected: seq + 1,
                            found: rec.seq,
                            decision,
                        });
                    }
                    if &rec.prev_hash != head {
                        return Err(Broken::Chain {
                            file: file.clone(),
                            line: n,
                            seq: rec.seq,
                            decision,
                        });
                    }
                }
            }
            let head = sha256_hex(line.as_bytes());
            if let Some(slot) = pinned.get_mut(&rec.seq) {
                *slot = Some(head.clone());
            }
            chain = Some((rec.seq, head));
        }
    }
    let (records, head) = chain.unwrap_or_else(|| (0, GENESIS.to_owned()));
    // The log must begin at its genesis, or where the checkpoint beside it says
    // its current file begins when only that file is given.
    if let Some((first_seq, _)) = &first {
        let vouched =
            against.current.is_some_and(|c| c.first_seq == *first_seq) && files.len() == 1;
        if *first_seq != 1 && !vouched {
            return Err(Broken::HeadCut {
                file: files[0].0.clone(),
                found: *first_seq,
                expected: 1,
            });
        }
    }
    if let (Some(cp), Some((file, found))) = (against.current, &last_file_first) {
        if cp.first_seq != 0 && cp.first_seq <= cp.last_seq && cp.first_seq != *found {
            return Err(Broken::HeadCut {
                file: file.clone(),
                found: *found,
                expected: cp.first_seq,
            });
        }
    }
    for cp in &all {
        if records < cp.last_seq {
            return Err(Broken::Truncated {
                have: records,
                records: cp.last_seq,
                at: cp.timestamp.clone(),
            });
        }
        let holds = match (&pinned[&cp.last_seq], &first) {
            (Some(h), _) => *h == cp.head,
            // The record just before the first one given: what that one follows.
            (None, Some((seq, prev))) if *seq == cp.last_seq + 1 => *prev == cp.head,
            // Earlier than the files given (older rotated files left out).
            (None, Some((seq, _))) if *seq > cp.last_seq + 1 => true,
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
    let newest = all.iter().map(|c| c.last_seq).max();
    let unsigned_tail = match newest {
        Some(n) => records - n,
        // With a key, a log without any checkpoint is covered by no signature.
        None if against.key.is_some() => records - first.as_ref().map_or(records, |(s, _)| s - 1),
        None => 0,
    };
    if against.key.is_some() && unsigned_tail > 0 {
        return Err(Broken::UnsignedTail {
            from: records - unsigned_tail + 1,
            to: records,
            signed: records - unsigned_tail,
        });
    }
    Ok(Verified {
        records,
        head,
        first: first.map_or(0, |(s, _)| s),
        checkpoints: all.len(),
        unsigned_tail,
    })
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
}
