//! The hash chain over a sink's records and the checkpoints that publish its head.
//!
//! Every record line carries `seq` (1, 2, ... per log) and `prev_hash`, the SHA-256
//! of the previous record's line (64 zeros before the first). Editing, deleting,
//! inserting or reordering a record breaks the chain at the next record; cutting
//! records off either end is caught against a checkpoint (`checkpoint`), which
//! names the first and last record of a file and the hash of the last one.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first record of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The running head of a chain: how many records it holds and the last one's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chain {
    pub seq: u64,
    head: [u8; 32],
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Chain {
    /// A chain that continues after record `seq` whose line hashes to `head` (hex).
    pub fn at(seq: u64, head: &str) -> Result<Self, String> {
        if seq > MAX_SEQ {
            return Err(format!("seq {seq} is beyond any log's length"));
        }
        let mut h = [0u8; 32];
        hex::decode_to_slice(head, &mut h)
            .map_err(|_| format!("{head:?} is not a SHA-256 in hex"))?;
        Ok(Self { seq, head: h })
    }

    /// The hash of the last record (64 zeros for an empty chain), in hex.
    pub fn head(&self) -> String {
        hex::encode(self.head)
    }

    /// Links a record (a JSON object) into the chain: appends the line to write to
    /// `out`, with `seq` and `prev_hash` first and no newline, and advances the head.
    pub fn link_into(&mut self, out: &mut Vec<u8>, record_json: &str) {
        let start = out.len();
        let body = record_json.strip_prefix('{').unwrap_or(record_json);
        let sep = if body.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.seq + 1).as_bytes());
        out.extend_from_slice(b",\"prev_hash\":\"");
        let mut hex_head = [0u8; 64];
        // Encoding 32 bytes into 64 cannot fail.
        let _ = hex::encode_to_slice(self.head, &mut hex_head);
        out.extend_from_slice(&hex_head);
        out.push(b'"');
        out.extend_from_slice(sep.as_bytes());
        out.extend_from_slice(body.as_bytes());
        self.seq += 1;
        self.head = Sha256::digest(&out[start..]).into();
    }

    /// [`Chain::link_into`] as a new string.
    pub fn link(&mut self, record_json: &str) -> String {
        let mut out = Vec::with_capacity(record_json.len() + 100);
        self.link_into(&mut out, record_json);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The chain after the last complete record of an existing log (so a restarted
    /// Vakt continues it), or an error naming the line that is not a record.
    pub fn resume(text: &str) -> Result<Self, String> {
        let mut chain = Self::default();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let rec: Linked = crate::json::from_str(line)
                .map_err(|e| format!("line {}: not a chained decision record: {e}", i + 1))?;
            chain.seq = rec.seq;
            chain.head = Sha256::digest(line.as_bytes()).into();
        }
        Ok(chain)
    }
}

/// The highest seq a log may reach: far beyond any real log, and far enough below
/// `u64::MAX` that counting on from it never overflows.
pub(crate) const MAX_SEQ: u64 = u64::MAX / 2;

/// Longest record line Vakt reads back (a record holds at most one request's
/// fields, far less than this), so that no file can make a reader buffer
/// without bound.
pub(crate) const MAX_LINE: usize = 32 << 20;

/// The event of a record Vakt writes when it continues a log whose last records
/// no checkpoint covered: records `unattested_from` to `unattested_to` were on
/// file past the last signature, so no later signature vouches for them.
pub(crate) const UNATTESTED_EVENT: &str = "unattested_records";

/// The event of a record Vakt writes when the operator made it continue a log
/// that did not match its checkpoint; it names an unattested range too.
pub(crate) const MISMATCH_ACCEPTED_EVENT: &str = "checkpoint_mismatch_accepted";

/// The chain fields of a record line, and the fields of a note that says which
/// records no signature attests.
#[derive(Deserialize)]
pub(crate) struct Linked {
    pub seq: u64,
    pub prev_hash: String,
    #[serde(default)]
    pub decision_id: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub unattested_from: Option<u64>,
    #[serde(default)]
    pub unattested_to: Option<u64>,
}

impl Linked {
    /// The records this one says are unattested, when it is such a note (a range
    /// that does not end before the note itself is ignored: Vakt never writes one).
    pub fn unattested(&self) -> Option<(u64, u64)> {
        let event = self.event.as_deref()?;
        if event != UNATTESTED_EVENT && event != MISMATCH_ACCEPTED_EVENT {
            return None;
        }
        let (from, to) = (self.unattested_from?, self.unattested_to?);
        (from <= to && to < self.seq).then_some((from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_starts_with_its_place_in_the_chain() {
        let mut c = Chain::default();
        let first = c.link(r#"{"decision_id":"d1"}"#);
        assert_eq!(
            first,
            format!(r#"{{"seq":1,"prev_hash":"{GENESIS}","decision_id":"d1"}}"#)
        );
        assert_eq!(c.head(), sha256_hex(first.as_bytes()));
        let second = c.link("{}");
        assert_eq!(
            second,
            format!(
                r#"{{"seq":2,"prev_hash":"{}"}}"#,
                sha256_hex(first.as_bytes())
            )
        );
        assert_eq!(Chain::resume(&format!("{first}\n{second}\n")).unwrap(), c);
        assert_eq!(Chain::at(2, &c.head()).unwrap(), c);
        assert!(Chain::at(2, "zz").is_err());
    }
}
