//! Opening an existing log file to continue it: a torn last line from a crash is
//! cut off, and the file is checked against its checkpoint, reading only the file's
//! first line and the tail after the checkpoint, so memory does not grow with the
//! log.

use super::chain::{sha256_hex, Chain, Linked, GENESIS, MAX_LINE};
use super::checkpoint::{Checkpoint, PublicKey, SignatureError};
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::time::Duration;

/// How far past its checkpoint a log may run: records written in the moment
/// before a crash, which no checkpoint covered yet. A checkpoint is written at most
/// about a second after a record; this leaves room for a slow disk.
pub(crate) const ALLOWED_RUN: Duration = Duration::from_secs(5);

/// Most bytes read back from the end of a file to find the checkpoint's record.
const MAX_TAIL_BYTES: u64 = 256 << 20;

/// Bytes read at a time.
const CHUNK: u64 = 64 << 10;

/// Where an existing file leaves the chain.
#[derive(Debug)]
pub(crate) struct Continued {
    pub chain: Chain,
    /// The seq of the file's first record (the next seq while it is empty).
    pub first_seq: u64,
    /// The hash of the file's first record's line, unless the file is empty.
    pub first_hash: Option<String>,
}

/// A log that does not match its checkpoint: edited, cut, or the checkpoint
/// replaced.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Mismatch(pub String);

/// A file that could not be read or repaired at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unreadable(pub String);

/// Cuts a torn last line (one without its newline: a write cut short by a crash)
/// back to the last whole record, with a WARN naming what was cut.
pub(crate) fn repair_torn_tail(file: &mut File, shown: &str) -> Result<(), Unreadable> {
    let io = |e: std::io::Error| Unreadable(format!("{shown}: {e}"));
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
    file.read_exact(&mut last).map_err(io)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline, reading backwards.
    let mut end = len;
    let mut keep = 0;
    'search: while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        file.read_exact(&mut buf).map_err(io)?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break 'search;
        }
        end = start;
        if len - end > MAX_TAIL_BYTES {
            return Err(Unreadable(format!(
                "{shown}: the last {} bytes hold no line end; not a decision log",
                len - end
            )));
        }
    }
    let mut cut = vec![0u8; (len - keep).min(200) as usize];
    file.seek(SeekFrom::Start(keep)).map_err(io)?;
    file.read_exact(&mut cut).map_err(io)?;
    let fragment = String::from_utf8_lossy(&cut);
    let seq = fragment
        .strip_prefix("{\"seq\":")
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse::<u64>().ok());
    file.set_len(keep).map_err(io)?;
    file.sync_data().map_err(io)?;
    tracing::warn!(
        file = shown,
        bytes_cut = len - keep,
        record_seq = seq,
        "decision log ended in a partial record (a write cut short by a crash); cut it off"
    );
    Ok(())
}

/// The first line of a non-empty file.
fn first_line(file: &mut File, shown: &str) -> Result<String, Unreadable> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Unreadable(format!("{shown}: {e}")))?;
    let mut line = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Unreadable(format!("{shown}: {e}")))?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&buf[..i]);
            break;
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > MAX_LINE {
            return Err(Unreadable(format!(
                "{shown}: line 1 is longer than {MAX_LINE} bytes"
            )));
        }
    }
    String::from_utf8(line).map_err(|_| Unreadable(format!("{shown}: line 1 is not UTF-8")))
}

/// The whole lines at the end of the file, oldest first, back to and including the
/// first one for which `enough` holds (or to the start of the file).
fn tail_lines(
    file: &mut File,
    shown: &str,
    mut enough: impl FnMut(&Linked) -> bool,
) -> Result<Vec<(String, Linked)>, Mismatch> {
    let io = |e: std::io::Error| Mismatch(format!("{shown}: {e}"));
    let len = file.metadata().map_err(io)?.len();
    let mut pos = len;
    let mut partial: Vec<u8> = Vec::new();
    let mut newest_first: Vec<(String, Linked)> = Vec::new();
    while pos > 0 {
        if len - pos > MAX_TAIL_BYTES {
            return Err(Mismatch(format!(
                "{shown}: the checkpoint's record is not within the last {MAX_TAIL_BYTES} bytes"
            )));
        }
        let start = pos.saturating_sub(CHUNK);
        let mut data = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        file.read_exact(&mut data).map_err(io)?;
        data.extend_from_slice(&partial);
        pos = start;
        // Unless at the start of the file, what precedes the first newline is
        // part of a line not read whole yet.
        let whole_from = if pos == 0 {
            0
        } else {
            match data.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None => {
                    partial = data;
                    continue;
                }
            }
        };
        partial = data[..whole_from].to_vec();
        let whole = &data[whole_from..];
        for raw in whole.split(|b| *b == b'\n').rev() {
            if raw.is_empty() {
                continue;
            }
            let line = String::from_utf8(raw.to_vec())
                .map_err(|_| Mismatch(format!("{shown}: a line near the end is not UTF-8")))?;
            let rec: Linked = crate::json::from_str(&line).map_err(|e| {
                Mismatch(format!(
                    "{shown}: a line near the end is not a chained decision record: {e}"
                ))
            })?;
            let done = enough(&rec);
            newest_first.push((line, rec));
            if done {
                newest_first.reverse();
                return Ok(newest_first);
            }
        }
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// Reads where an existing file leaves the chain and checks it against its
/// checkpoint: the checkpoint's record must be in the file with the checkpoint's
/// head hash (or, right after rotation, be what the file's first record follows),
/// the file must begin where the checkpoint says, the records after it must chain
/// and be written within [`ALLOWED_RUN`] of it, and, with `key`, the checkpoint must
/// carry its signature.
pub(crate) fn check(
    file: &mut File,
    shown: &str,
    cp: Option<&Checkpoint>,
    key: Option<&PublicKey>,
) -> Result<Result<Continued, Mismatch>, Unreadable> {
    repair_torn_tail(file, shown)?;
    let len = file
        .metadata()
        .map_err(|e| Unreadable(format!("{shown}: {e}")))?
        .len();
    if let (Some(cp), Some(key)) = (cp, key) {
        match cp.verify_signature(key) {
            Ok(()) => {}
            Err(SignatureError::Unsigned) => tracing::warn!(
                file = shown,
                "the decision log's checkpoint is not signed (written before a signing key was configured)"
            ),
            Err(e) => {
                return Ok(Err(Mismatch(format!(
                    "its checkpoint does not verify with the signing key: {e}"
                ))))
            }
        }
    }
    if len == 0 {
        return Ok(match cp {
            None => Ok(Continued {
                chain: Chain::default(),
                first_seq: 1,
                first_hash: None,
            }),
            // The file was emptied by rotation; the checkpoint carries the chain.
            Some(cp) if cp.first_seq == 0 || cp.first_seq > cp.last_seq => {
                Chain::at(cp.last_seq, &cp.head)
                    .map(|chain| Continued {
                        first_seq: chain.seq.saturating_add(1),
                        first_hash: None,
                        chain,
                    })
                    .map_err(|e| Mismatch(format!("its checkpoint: {e}")))
            }
            Some(cp) => Err(Mismatch(format!(
                "the file is empty but its checkpoint covers records {} to {}: the records were deleted",
                cp.first_seq, cp.last_seq
            ))),
        });
    }
    let first_text = first_line(file, shown)?;
    let first_hash = sha256_hex(first_text.as_bytes());
    let first: Linked = match crate::json::from_str(&first_text) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Err(Mismatch(format!(
                "line 1 is not a chained decision record: {e}"
            ))))
        }
    };
    let target = cp.map(|c| c.last_seq);
    let tail = match tail_lines(file, shown, |r| target.is_none_or(|t| r.seq <= t)) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let Some((last_line, last)) = tail.last() else {
        return Ok(Err(Mismatch("the file holds no record".into())));
    };
    let chain = Chain::at(last.seq, &sha256_hex(last_line.as_bytes()))
        .map_err(|e| Unreadable(format!("{shown}: {e}")))?;
    let continued = Continued {
        chain,
        first_seq: first.seq,
        first_hash: Some(first_hash.clone()),
    };
    let Some(cp) = cp else {
        tracing::warn!(
            file = shown,
            "the decision log has no checkpoint to check it against; continuing from its last record"
        );
        return Ok(Ok(continued));
    };
    Ok(against(cp, first.seq, &first_hash, &tail).map(|()| continued))
}

/// The checks of [`check`] once the lines are read.
fn against(
    cp: &Checkpoint,
    first_seq: u64,
    first_hash: &str,
    tail: &[(String, Linked)],
) -> Result<(), Mismatch> {
    if cp.first_seq != 0 && cp.first_seq <= cp.last_seq && first_seq != cp.first_seq {
        return Err(Mismatch(format!(
            "the file begins at record {first_seq} but its checkpoint says record {}: records were cut from its head, or the file was replaced",
            cp.first_seq
        )));
    }
    if cp.first_seq == first_seq && cp.first_hash.as_deref().is_some_and(|h| h != first_hash) {
        return Err(Mismatch(format!(
            "the file's first record {first_seq} is not the one its checkpoint names: the file was replaced or its head edited"
        )));
    }
    // The records from the checkpoint's on must chain.
    for pair in tail.windows(2) {
        let ((prev_line, prev), (_, next)) = (&pair[0], &pair[1]);
        if prev.seq.checked_add(1) != Some(next.seq)
            || next.prev_hash != sha256_hex(prev_line.as_bytes())
        {
            return Err(Mismatch(format!(
                "record {} does not follow record {} near the end of the file: the log was edited",
                next.seq, prev.seq
            )));
        }
    }
    let (_, newest) = &tail[tail.len() - 1];
    if newest.seq < cp.last_seq {
        return Err(Mismatch(format!(
            "the file ends at record {} but its checkpoint names record {}: its tail was cut",
            newest.seq, cp.last_seq
        )));
    }
    let (oldest_line, oldest) = &tail[0];
    let pinned = if oldest.seq == cp.last_seq {
        sha256_hex(oldest_line.as_bytes()) == cp.head
    } else if oldest.seq == cp.last_seq.saturating_add(1) {
        // Right after rotation the checkpoint's record is in the rotated file.
        oldest.prev_hash == cp.head || (cp.last_seq == 0 && oldest.prev_hash == GENESIS)
    } else {
        false
    };
    if !pinned {
        return Err(Mismatch(format!(
            "record {} does not have the checkpoint's head hash: the log was changed at or before it, or the checkpoint was replaced",
            cp.last_seq
        )));
    }
    let after = tail.iter().filter(|(_, r)| r.seq > cp.last_seq);
    let limit = humantime::parse_rfc3339(&cp.timestamp)
        .ok()
        .map(|t| t + ALLOWED_RUN);
    let late = after
        .filter_map(|(_, r)| {
            r.timestamp
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
        })
        .filter(|t| limit.is_some_and(|l| *t > l))
        .count();
    if late > 0 {
        return Err(Mismatch(format!(
            "{late} records after the checkpoint's record {} were written more than {} s after it: records were appended, or an older checkpoint was put back",
            cp.last_seq,
            ALLOWED_RUN.as_secs()
        )));
    }
    Ok(())
}
