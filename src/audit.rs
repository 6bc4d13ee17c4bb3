//! Tamper evidence for the decision log: a hash chain over the records, checkpoints
//! of its head, and `vakt audit verify`.
//!
//! Every record line carries `seq` (1, 2, ... per log) and `prev_hash`, the SHA-256
//! of the previous record's line (64 zeros before the first). Editing, deleting,
//! inserting or reordering a record breaks the chain at the next record; cutting
//! records off the end is caught against a checkpoint, which records how many
//! records the log had and the hash of the last one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first record of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The running head of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub seq: u64,
    pub head: String,
}

impl Default for Chain {
    fn default() -> Self {
        Self {
            seq: 0,
            head: GENESIS.to_owned(),
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Chain {
    /// Links a record (a JSON object) into the chain: returns the line to write,
    /// with `seq` and `prev_hash` first, and advances the head.
    pub fn link(&mut self, record_json: &str) -> String {
        let body = record_json.strip_prefix('{').unwrap_or(record_json);
        let sep = if body.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        let line = format!(
            "{{\"seq\":{},\"prev_hash\":\"{}\"{sep}{body}",
            self.seq + 1,
            self.head
        );
        self.seq += 1;
        self.head = sha256_hex(line.as_bytes());
        line
    }

    /// The chain after the last complete record of an existing log (so a restarted
    /// Vakt continues it), or an error naming the line that is not a record.
    pub fn resume(text: &str) -> Result<Self, String> {
        let mut chain = Self::default();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let rec: Linked = serde_json::from_str(line)
                .map_err(|e| format!("line {}: not a chained decision record: {e}", i + 1))?;
            chain.seq = rec.seq;
            chain.head = sha256_hex(line.as_bytes());
        }
        Ok(chain)
    }
}

#[derive(Deserialize)]
struct Linked {
    seq: u64,
    prev_hash: String,
    #[serde(default)]
    decision_id: Option<String>,
}

/// A published chain head: how many records the log had, and the last one's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub records: u64,
    pub head: String,
    pub timestamp: String,
}

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
    let mut chain: Option<Chain> = None;
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
                Some(c) => {
                    if rec.seq != c.seq + 1 {
                        return Err(Broken::Sequence {
                            file: file.clone(),
                            line: n,
                            expected: c.seq + 1,
                            found: rec.seq,
                            decision,
                        });
                    }
                    if rec.prev_hash != c.head {
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
            chain = Some(Chain { seq: rec.seq, head });
        }
    }
    let chain = chain.unwrap_or_default();
    if let Some(cp) = checkpoint {
        if chain.seq < cp.records {
            return Err(Broken::Truncated {
                have: chain.seq,
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
    Ok(Verified {
        records: chain.seq,
        head: chain.head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!((v.records, v.head.clone()), (5, c.head.clone()));
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
            head: c.head.clone(),
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
