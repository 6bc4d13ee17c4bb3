//! The token cache: one entry per key (party and scopes for Maskinporten's
//! tokens; the Maskinporten token for Altinn's), bounded, each entry refreshed
//! before expiry by exactly one fetch while concurrent callers wait for it.

use super::error::TokenError;
use super::grant::Party;
use super::types::Token;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Who the token is for and its scopes, sorted and space-joined.
pub(crate) type Key = (Party, String);

pub(crate) struct TokenCache<K = Key> {
    map: Mutex<Map<K>>,
    capacity: usize,
    refresh_before: Duration,
}

struct Map<K> {
    entries: HashMap<K, Arc<Entry>>,
    next_seq: u64,
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
    token: Option<Token>,
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
    pub async fn get_or_fetch<F, Fut>(&self, key: &K, fetch: F) -> Result<Token, TokenError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, TokenError>>,
    {
        let arrived = Instant::now();
        let entry = self.entry(key);
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
        let result = fetch().await;
        match &result {
            Ok(t) => {
                state.token = Some(t.clone());
                state.failed = None;
            }
            Err(e) => {
                // A token near expiry is not kept past a failed refresh: what
                // is handed out always has `refresh_before` left or is new.
                state.token = None;
                state.failed = Some((Instant::now(), e.clone()));
            }
        }
        result
    }

    fn entry(&self, key: &K) -> Arc<Entry> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is
        // still a map.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.entries.get(key) {
            return e.clone();
        }
        if map.entries.len() >= self.capacity {
            let oldest = map
                .entries
                .iter()
                .min_by_key(|(_, e)| e.seq)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.entries.remove(&k);
            }
        }
        map.next_seq += 1;
        let entry = Arc::new(Entry {
            seq: map.next_seq,
            state: tokio::sync::Mutex::default(),
        });
        map.entries.insert(key.clone(), entry.clone());
        entry
    }
}
