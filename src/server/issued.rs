//! The tokens this sidecar handed out on ALLOW, kept for their lifetime so that
//! `VerifyToken` can name the decision behind a presented token.
//!
//! One entry per decision id. The token cache hands one token to many
//! decisions, so several entries may share a token. The store is bounded:
//! when full, expired entries go first, then the oldest. Every operation is a
//! short critical section under one mutex (the binding calls use it, not
//! `Authorize`), with no scan: entries are indexed by expiry and by age.

use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// How many decisions are remembered by default. Tokens live about 120 s, so
/// this covers some 830 token-issuing decisions a second before the oldest are
/// forgotten early.
pub(super) const DEFAULT_CAPACITY: usize = 100_000;

/// What identifies one token: its `jti`, or the SHA-256 of the token when it
/// has none (an opaque token). The token itself is never kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TokenKey(Arc<str>);

impl TokenKey {
    /// The key of a token with this `jti` (if any) and text.
    pub(super) fn of(jti: Option<&str>, token: &str) -> Self {
        match jti {
            Some(j) if !j.is_empty() => Self(format!("jti:{j}").into()),
            _ => Self(format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes()))).into()),
        }
    }
}

/// One decision that handed out a token: what `VerifyToken` reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Issue {
    pub(super) token: TokenKey,
    pub(super) system_user: String,
    pub(super) employee: String,
    pub(super) client: String,
    pub(super) package: String,
    /// The token's expiry: the entry is forgotten then.
    pub(super) expires_at: SystemTime,
}

/// The tokens handed out, by decision id.
pub(super) struct Issued {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Counts insertions: an entry's age, oldest first.
    next_seq: u64,
    /// The decision id is one shared text in all four maps, not four copies.
    by_decision: HashMap<Arc<str>, Entry>,
    /// Decision ids by (expiry, age): the expired ones are at the front.
    by_expiry: BTreeMap<(SystemTime, u64), Arc<str>>,
    /// Decision ids by age.
    by_age: BTreeMap<u64, Arc<str>>,
    /// The latest decision that handed out each token (its age and id). A
    /// token's entries all share its expiry and older ones go first, so the
    /// latest is always the last of them to go.
    latest: HashMap<TokenKey, (u64, Arc<str>)>,
}

struct Entry {
    seq: u64,
    issue: Issue,
}

impl Default for Issued {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl Issued {
    /// A store that remembers at most `capacity` decisions (at least one).
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    /// Remembers that `decision_id` handed out the token `issue` names. An
    /// already expired issue is not kept.
    pub(super) fn note(&self, decision_id: &str, issue: Issue) {
        let now = SystemTime::now();
        if issue.expires_at <= now {
            return;
        }
        let mut inner = self.lock();
        inner.drop_expired(now);
        if inner.by_decision.contains_key(decision_id) {
            // Decision ids are unique; a repeat replaces the first.
            inner.remove(decision_id);
        }
        while inner.by_decision.len() >= self.capacity {
            let Some((_, oldest)) = inner.by_age.first_key_value() else {
                break;
            };
            let oldest = oldest.clone();
            inner.remove(&oldest);
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let id: Arc<str> = decision_id.into();
        inner.by_expiry.insert((issue.expires_at, seq), id.clone());
        inner.by_age.insert(seq, id.clone());
        inner.latest.insert(issue.token.clone(), (seq, id.clone()));
        inner.by_decision.insert(id, Entry { seq, issue });
    }

    /// What `decision_id` handed out, while its token lives.
    pub(super) fn by_decision(&self, decision_id: &str) -> Option<Issue> {
        let now = SystemTime::now();
        let inner = self.lock();
        let e = inner.by_decision.get(decision_id)?;
        (e.issue.expires_at > now).then(|| e.issue.clone())
    }

    /// The latest decision that handed out `token`, while the token lives.
    pub(super) fn latest_for(&self, token: &TokenKey) -> Option<(String, Issue)> {
        let now = SystemTime::now();
        let inner = self.lock();
        let (_, id) = inner.latest.get(token)?;
        let e = inner.by_decision.get(id)?;
        (e.issue.expires_at > now).then(|| (id.to_string(), e.issue.clone()))
    }

    /// How many decisions are remembered (expired ones included until they
    /// are dropped).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_decision.len()
    }

    /// The lock; a panic elsewhere while it was held leaves consistent maps
    /// (each change is completed before the next), so a poisoned lock is used.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    /// Forgets every entry whose token has expired.
    fn drop_expired(&mut self, now: SystemTime) {
        while let Some(((at, _), id)) = self.by_expiry.first_key_value() {
            if *at > now {
                break;
            }
            let id = id.clone();
            self.remove(&id);
        }
    }

    fn remove(&mut self, decision_id: &str) {
        let Some(e) = self.by_decision.remove(decision_id) else {
            return;
        };
        self.by_expiry.remove(&(e.issue.expires_at, e.seq));
        self.by_age.remove(&e.seq);
        if self
            .latest
            .get(&e.issue.token)
            .is_some_and(|(seq, _)| *seq == e.seq)
        {
            self.latest.remove(&e.issue.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn issue(jti: &str, secs: u64) -> Issue {
        Issue {
            token: TokenKey::of(Some(jti), "unused"),
            system_user: "su".into(),
            employee: "kari".into(),
            client: "310015156".into(),
            package: "urn:altinn:accesspackage:a-ordning".into(),
            expires_at: SystemTime::now() + Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_token_without_jti_is_known_by_its_hash_and_never_kept() {
        let k = TokenKey::of(None, "eyJsecret.body.sig");
        assert!(k.0.starts_with("sha256:"));
        assert!(!k.0.contains("secret"));
        assert_eq!(k, TokenKey::of(Some(""), "eyJsecret.body.sig"));
        assert_ne!(k, TokenKey::of(None, "eyJsecret.body.sih"));
        assert_eq!(&*TokenKey::of(Some("j1"), "x").0, "jti:j1");
    }

    #[test]
    fn several_decisions_share_a_token_and_the_latest_is_named() {
        let s = Issued::default();
        s.note("d1", issue("j1", 60));
        s.note("d2", issue("j1", 60));
        s.note("d3", issue("j2", 60));
        assert_eq!(
            s.by_decision("d1").unwrap().token,
            TokenKey::of(Some("j1"), "")
        );
        let (id, _) = s.latest_for(&TokenKey::of(Some("j1"), "")).unwrap();
        assert_eq!(id, "d2");
        assert_eq!(s.latest_for(&TokenKey::of(Some("j2"), "")).unwrap().0, "d3");
        assert!(s.latest_for(&TokenKey::of(Some("j9"), "")).is_none());
        assert!(s.by_decision("d9").is_none());
    }

    #[test]
    fn the_store_is_bounded_dropping_expired_then_oldest() {
        let s = Issued::with_capacity(3);
        s.note("old", issue("j1", 60));
        // Expires at once: already expired when noted, so never kept.
        s.note("gone", issue("j0", 0));
        assert_eq!(s.len(), 1);
        s.note("mid", issue("j2", 60));
        s.note("new", issue("j3", 60));
        s.note("newer", issue("j4", 60));
        assert_eq!(s.len(), 3);
        assert!(s.by_decision("old").is_none(), "the oldest went");
        assert!(s.latest_for(&TokenKey::of(Some("j1"), "")).is_none());
        for id in ["mid", "new", "newer"] {
            assert!(s.by_decision(id).is_some(), "{id}");
        }
    }

    #[test]
    fn an_expired_entry_goes_before_an_older_live_one() {
        let s = Issued::with_capacity(2);
        s.note("live", issue("j1", 60));
        s.note("short", issue("j2", 1));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(s.by_decision("short").is_none(), "expired is not answered");
        s.note("next", issue("j3", 60));
        assert!(
            s.by_decision("live").is_some(),
            "the expired one went, not the oldest"
        );
        assert!(s.by_decision("next").is_some());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn many_notes_stay_within_capacity() {
        let s = Issued::with_capacity(100);
        for i in 0..10_000 {
            s.note(&format!("d{i}"), issue(&format!("j{}", i % 7), 60));
        }
        assert_eq!(s.len(), 100);
        let inner = s.lock();
        assert_eq!(inner.by_age.len(), 100);
        assert_eq!(inner.by_expiry.len(), 100);
        assert!(inner.latest.len() <= 7);
    }
}
