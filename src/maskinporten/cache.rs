//! The token cache: one entry per key (party and scopes for Maskinporten's
//! tokens; the Maskinporten token for Altinn's), bounded, each entry refreshed
//! before expiry by exactly one fetch while concurrent callers wait for it.
//! A hit hands out the entry's `Arc<Token>` (a reference count, not a copy of
//! the 1 KB token and its fields).

use super::error::TokenError;
use super::types::Token;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Who the token is for and its scopes, sorted and space-joined, as one text
/// (`super::key_text`): a hit looks it up as a `&str`.
pub(crate) type Key = String;

pub(crate) struct TokenCache<K = Key> {
    map: Mutex<Map<K>>,
    capacity: usize,
    refresh_before: Duration,
}

struct Map<K> {
    entries: HashMap<K, Slot>,
    next_seq: u64,
}

/// One key's place in the map: its entry, and the token a caller may take
/// without waiting on the entry (a copy of the entry's own, kept while it has
/// more than `refresh_before` left). A hit is one short lock of the map: no
/// wait on the entry's fetch lock, no copy of the token.
struct Slot {
    entry: Arc<Entry>,
    fresh: Option<Arc<Token>>,
}

impl<K> Default for Map<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            next_seq: 0,
        }
    }
}

struct Entry {
    /// Insertion order: the smallest goes first when the cache is full.
    seq: u64,
    /// Held across a fetch, so a second caller for the same key waits for the
    /// first one's answer instead of asking Maskinporten again.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    token: Option<Arc<Token>>,
    /// The last fetch's failure and when it ended: callers that were already
    /// waiting for that fetch get its error rather than queueing a fetch each.
    failed: Option<(Instant, TokenError)>,
}

impl<K: Hash + Eq + Clone> TokenCache<K> {
    pub fn new(capacity: usize, refresh_before: Duration) -> Self {
        Self {
            map: Mutex::default(),
            capacity: capacity.max(1),
            refresh_before,
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.entries.len()).unwrap_or(0)
    }

    /// The cached token for `key` if it has more than `refresh_before` left,
    /// else the result of `fetch`, run once however many callers wait for it.
    /// `key` is borrowed and copied only when it enters the map, so a hit
    /// allocates nothing for it.
    pub async fn get_or_fetch<Q, F, Fut>(&self, key: &Q, fetch: F) -> Result<Arc<Token>, TokenError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, TokenError>>,
    {
        let entry = match self.fresh_or_entry(key) {
            Ok(hit) => return Ok(hit),
            Err(entry) => entry,
        };
        let arrived = Instant::now();
        let mut state = entry.state.lock().await;
        if let Some(t) = &state.token {
            if t.expires_at > SystemTime::now() + self.refresh_before {
                return Ok(t.clone());
            }
        }
        if let Some((ended, e)) = &state.failed {
            if *ended >= arrived {
                return Err(e.clone());
            }
        }
        match fetch().await {
            Ok(t) => {
                let t = Arc::new(t);
                state.token = Some(t.clone());
                state.failed = None;
                self.set_fresh(key, &entry, Some(t.clone()));
                Ok(t)
            }
            Err(e) => {
                // A token near expiry is not kept past a failed refresh: what
                // is handed out always has `refresh_before` left or is new.
                state.token = None;
                state.failed = Some((Instant::now(), e.clone()));
                self.set_fresh(key, &entry, None);
                Err(e)
            }
        }
    }

    /// The fresh token for `key` (the hit), else its entry, made if new.
    fn fresh_or_entry<Q>(&self, key: &Q) -> Result<Arc<Token>, Arc<Entry>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let due = SystemTime::now() + self.refresh_before;
        // A poisoned lock only means a panic elsewhere mid-insert; the map is
        // still a map.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.entries.get(key) {
            return match &slot.fresh {
                Some(t) if t.expires_at > due => Ok(t.clone()),
                _ => Err(slot.entry.clone()),
            };
        }
        if map.entries.len() >= self.capacity {
            let oldest = map
                .entries
                .iter()
                .min_by_key(|(_, s)| s.entry.seq)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.entries.remove::<K>(&k);
            }
        }
        map.next_seq += 1;
        let entry = Arc::new(Entry {
            seq: map.next_seq,
            state: tokio::sync::Mutex::default(),
        });
        let slot = Slot {
            entry: entry.clone(),
            fresh: None,
        };
        map.entries.insert(key.to_owned(), slot);
        Err(entry)
    }

    /// What a fetch for `entry` left: the token callers may take without
    /// waiting, or none. Left alone if the key has since been evicted (and
    /// perhaps made again, with another entry).
    fn set_fresh<Q>(&self, key: &Q, entry: &Arc<Entry>, token: Option<Arc<Token>>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.entries.get_mut(key) {
            if Arc::ptr_eq(&slot.entry, entry) {
                slot.fresh = token;
            }
        }
    }
}
