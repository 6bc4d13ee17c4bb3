//! `vakt audit verify`: checking a decision log's hash chain, across rotated files,
//! and against a checkpoint.

use super::chain::{sha256_hex, Checkpoint, Linked, GENESIS};

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
    #[error("the log holds {have} records but the checkpoint of {at} records {records}: the tail was truncated")]
    Truncated { have: u64, records: u64, at: String },
    #[error("record seq {records} does not match the checkpoint's head: the log was changed at or before that record")]
    CheckpointMismatch { records: u64 },
}

/// The outcome of a clean verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub head: String,
}

/// Verifies the chain through `files` (in order: rotated files continue one chain),
/// and, if given, against a checkpoint.
pub fn verify(
    files: &[(String, String)],
    checkpoint: Option<&Checkpoint>,
) -> Result<Verified, Broken> {
    // The seq and hash of the last record read.
    let mut chain: Option<(u64, String)> = None;
    let mut head_at_checkpoint = None;
    for (file, text) in files {
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.is_empty() {
                continue;
            }
            let rec: Linked = serde_json::from_str(line).map_err(|e| Broken::Unreadable {
                file: file.clone(),
                line: n,
                message: e.to_string(),
            })?;
            let decision = rec.decision_id.clone().unwrap_or_else(|| "-".into());
            match &chain {
                // The first record of the first file: the genesis, or a later record
                // when older rotated files are not given.
                None if rec.prev_hash == GENESIS && rec.seq != 1 => {
                    return Err(Broken::Sequence {
                        file: file.clone(),
                        line: n,
                        expected: 1,
                        found: rec.seq,
                        decision,
                    })
                }
                None => {}
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
            if checkpoint.is_some_and(|cp| cp.records == rec.seq) {
                head_at_checkpoint = Some(head.clone());
            }
            chain = Some((rec.seq, head));
        }
    }
    let (records, head) = chain.unwrap_or_else(|| (0, GENESIS.to_owned()));
    if let Some(cp) = checkpoint {
        if records < cp.records {
            return Err(Broken::Truncated {
                have: records,
                records: cp.records,
                at: cp.timestamp.clone(),
            });
        }
        if head_at_checkpoint.as_deref() != Some(cp.head.as_str()) {
            return Err(Broken::CheckpointMismatch {
                records: cp.records,
            });
        }
    }
    Ok(Verified { records, head })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::chain::Chain;

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
        verify(&[("log".into(), lines.join("\n") + "\n")], cp)
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
        let cp = Checkpoint {
            records: 5,
            head: c.head(),
            timestamp: "t".into(),
        };
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
            Err(Broken::CheckpointMismatch { records: 5 })
        ));
    }
}
