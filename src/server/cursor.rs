//! Page tokens for the reverse queries: which world an answer is read from, where
//! its next page resumes, and for how long.
//!
//! A token names the revision of the world the first page was decided on, when
//! that page was asked for, the query it belongs to and the last key answered. It
//! is authenticated with HMAC-SHA-256 under a key that lives only in this
//! process, so a token cannot be forged or carried to another sidecar. (A hash of
//! key and body would not do: SHA-256 of a secret prefix can be extended to a
//! longer body without the key.) The world itself stays here, kept for
//! its lifetime (60 s by default) after the query began: successive worlds share every
//! unchanged record, so keeping one costs only what changed since.

use crate::rules::snapshot::Snapshot;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the pages of one answer may be read, from its first page, by
/// default (`--reverse-page-lifetime`).
pub const DEFAULT_PAGE_LIFETIME: Duration = Duration::from_secs(60);
/// Most worlds kept for open answers; past it the oldest is let go and its tokens
/// are refused as expired.
const MAX_KEPT_WORLDS: usize = 32;

/// Why a page token is refused.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("page_token: is not a token this sidecar issued")]
    Unknown,
    #[error("page_token: belongs to another query; send the same request fields with it")]
    OtherQuery,
    #[error("page_token: expired: the query began {age_ms} ms ago, and its pages may be read for {lifetime_ms} ms (--reverse-page-lifetime); start the query again")]
    Expired { age_ms: u64, lifetime_ms: u64 },
    #[error("page_token: expired: the world its answer is read from is no longer kept; start the query again")]
    WorldGone,
}

/// The worlds kept for open answers, and the key tokens are signed with.
pub struct Cursors {
    key: [u8; 32],
    kept: Mutex<Vec<Kept>>,
}

struct Kept {
    revision: String,
    snap: Arc<Snapshot>,
    until: Instant,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    /// The call ("who_can" or "what_can").
    c: String,
    /// The query's fingerprint.
    q: String,
    /// The revision of the world.
    r: String,
    /// When the first page was asked for, in ms since the Unix epoch.
    t: u64,
    /// The last key answered.
    a: Vec<String>,
}

/// Where a later page resumes.
pub struct Resume {
    pub snap: Arc<Snapshot>,
    pub after: Vec<String>,
    pub began_ms: u64,
}

impl Default for Cursors {
    fn default() -> Self {
        let mut key = [0u8; 32];
        // Without randomness tokens would be forgeable; a process that cannot get
        // any cannot do much else either.
        getrandom::fill(&mut key).expect("the operating system provides random bytes");
        Self {
            key,
            kept: Mutex::new(Vec::new()),
        }
    }
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fingerprint of the request fields that define an answer.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

impl Cursors {
    /// HMAC-SHA-256 of `body`, truncated to 128 bits (RFC 2104 allows truncation
    /// to half the hash; 128 bits cannot be guessed within a token's lifetime).
    fn mac(&self, body: &[u8]) -> [u8; 16] {
        let mut h =
            <Hmac<Sha256>>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        h.update(body);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().into_bytes()[..16]);
        out
    }

    /// Keeps `snap` for an answer that begins now, for `lifetime`.
    pub fn keep(&self, snap: &Arc<Snapshot>, lifetime: Duration) {
        let now = Instant::now();
        let until = now + lifetime;
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|k| k.until > now);
        if let Some(k) = kept.iter_mut().find(|k| k.revision == snap.revision) {
            k.until = until;
            return;
        }
        if kept.len() >= MAX_KEPT_WORLDS {
            kept.sort_by_key(|k| k.until);
            kept.remove(0);
        }
        kept.push(Kept {
            revision: snap.revision.clone(),
            snap: snap.clone(),
            until,
        });
    }

    /// A token for the page after `after`, of the answer to query `fp` that
    /// began at `began_ms` on `revision`.
    pub fn issue(
        &self,
        call: &str,
        fp: &str,
        revision: &str,
        began_ms: u64,
        after: Vec<String>,
    ) -> String {
        let body = serde_json::to_vec(&Token {
            c: call.to_owned(),
            q: fp.to_owned(),
            r: revision.to_owned(),
            t: began_ms,
            a: after,
        })
        .unwrap_or_default();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}", b64.encode(&body), b64.encode(self.mac(&body)))
    }

    /// The world and position a token resumes at, for query `fp` of `call`.
    pub fn resume(
        &self,
        token: &str,
        call: &str,
        fp: &str,
        lifetime: Duration,
    ) -> Result<Resume, CursorError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (body, mac) = token.split_once('.').ok_or(CursorError::Unknown)?;
        let body = b64.decode(body).map_err(|_| CursorError::Unknown)?;
        let mac = b64.decode(mac).map_err(|_| CursorError::Unknown)?;
        // Compared in constant time, so a forger learns nothing from how long a
        // refusal takes.
        let mut check =
            <Hmac<Sha256>>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        check.update(&body);
        // A shorter tag would be easier to guess: only the full 16 bytes count.
        if mac.len() != 16 || check.verify_truncated_left(&mac).is_err() {
            return Err(CursorError::Unknown);
        }
        let t: Token = serde_json::from_slice(&body).map_err(|_| CursorError::Unknown)?;
        if t.c != call || t.q != fp {
            return Err(CursorError::OtherQuery);
        }
        let age = now_ms().saturating_sub(t.t);
        let lifetime_ms = lifetime.as_millis() as u64;
        if age > lifetime_ms {
            return Err(CursorError::Expired {
                age_ms: age,
                lifetime_ms,
            });
        }
        let now = Instant::now();
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let snap = kept
            .iter()
            .find(|k| k.revision == t.r && k.until > now)
            .map(|k| k.snap.clone())
            .ok_or(CursorError::WorldGone)?;
        Ok(Resume {
            snap,
            after: t.a,
            began_ms: t.t,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HMAC written out from RFC 2104, apart from the `hmac` crate: the tag must
    /// be this, not a hash of key and body (which could be length-extended).
    fn rfc2104(key: &[u8; 32], body: &[u8]) -> [u8; 16] {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(key);
        let pad = |byte: u8| block.map(|b| b ^ byte);
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(body)
            .finalize();
        let outer = Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&outer[..16]);
        out
    }

    #[test]
    fn tokens_are_authenticated_with_hmac_sha256() {
        let c = Cursors::default();
        let body = br#"{"c":"who_can","q":"abc","r":"rev","t":1,"a":["x"]}"#;
        assert_eq!(c.mac(body), rfc2104(&c.key, body));
    }

    #[test]
    fn a_tag_cut_short_or_changed_is_refused() {
        let c = Cursors::default();
        let token = c.issue("who_can", "fp", "rev", now_ms(), vec!["k".into()]);
        let (body, tag) = token.split_once('.').unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let tag = b64.decode(tag).unwrap();
        let short = format!("{body}.{}", b64.encode(&tag[..4]));
        let mut flipped = tag.clone();
        flipped[15] ^= 1;
        let flipped = format!("{body}.{}", b64.encode(&flipped));
        for forged in [short, flipped] {
            let refused = c.resume(&forged, "who_can", "fp", DEFAULT_PAGE_LIFETIME);
            assert!(matches!(refused, Err(CursorError::Unknown)), "{forged}");
        }
        // The genuine token passes the tag check (its world was never kept).
        let genuine = c.resume(&token, "who_can", "fp", DEFAULT_PAGE_LIFETIME);
        assert!(matches!(genuine, Err(CursorError::WorldGone)));
    }
}
