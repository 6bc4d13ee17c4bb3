//! Which calls are let in: the limits on calls in progress (in all and per
//! peer), and who may ask reverse queries.

use super::accept::{ConnInfo, PeerKey};
use super::error::CallError;
use super::state::Vakt;
use std::sync::atomic::{AtomicUsize, Ordering};
use tonic::Request;

/// Calls in progress, counted for load shedding.
#[derive(Default)]
pub(crate) struct Admission {
    /// Calls in progress in all.
    pub(super) in_flight: AtomicUsize,
    /// Calls in progress per peer address, in buckets by the address's hash.
    per_peer: PeerBuckets,
}

/// Counters of calls in progress per peer address. A fixed array, so counting
/// takes no lock and no memory grows with the number of peers; two addresses that
/// share a bucket share its limit, which with 4,096 buckets is rare.
struct PeerBuckets(Box<[AtomicUsize]>);

const PEER_BUCKETS: usize = 4096;

impl Default for PeerBuckets {
    fn default() -> Self {
        Self((0..PEER_BUCKETS).map(|_| AtomicUsize::new(0)).collect())
    }
}

impl PeerBuckets {
    fn bucket(&self, peer: PeerKey) -> &AtomicUsize {
        use std::hash::BuildHasher as _;
        let h = foldhash::fast::FixedState::with_seed(0x7661_6b74).hash_one(peer);
        &self.0[(h as usize) % self.0.len()]
    }
}

/// A call's place among those in progress; given back when the call ends.
pub(super) struct Admitted<'a> {
    total: &'a AtomicUsize,
    peer: Option<&'a AtomicUsize>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(p) = self.peer {
            p.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Vakt {
    /// Admits a call, or refuses it at once when `max_in_flight` calls are in
    /// progress: under overload, shedding keeps the admitted calls fast and memory
    /// bounded, where a queue would grow without end.
    /// With `--max-in-flight-per-peer`, a peer address past its own limit is refused
    /// the same way, so one noisy caller cannot take every place.
    pub(super) fn admit<T>(&self, req: &Request<T>) -> Result<Admitted<'_>, CallError> {
        super::call::note_call(req);
        let key = req
            .extensions()
            .get::<ConnInfo>()
            .and_then(|c| c.peer_key())
            .or_else(|| req.remote_addr().map(|a| PeerKey::Ip(a.ip())));
        self.admit_peer(key)
    }

    /// [`Vakt::admit`] for a call from `key` (the peer address, or the user on the
    /// Unix socket), whatever protocol it came by.
    pub(super) fn admit_peer(&self, key: Option<PeerKey>) -> Result<Admitted<'_>, CallError> {
        let options = self.options();
        let counts = self.admission();
        let before = counts.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut admitted = Admitted {
            total: &counts.in_flight,
            peer: None,
        };
        if before >= options.max_in_flight {
            return Err(CallError::Overloaded {
                max: options.max_in_flight,
                limit: "--max-in-flight",
            });
        }
        let per_peer = options.max_in_flight_per_peer;
        if per_peer > 0 {
            if let Some(key) = key {
                let bucket = counts.per_peer.bucket(key);
                let before = bucket.fetch_add(1, Ordering::Relaxed);
                admitted.peer = Some(bucket);
                if before >= per_peer {
                    return Err(CallError::Overloaded {
                        max: per_peer,
                        limit: "--max-in-flight-per-peer",
                    });
                }
            }
        }
        Ok(admitted)
    }

    /// Whether this call may ask a reverse query: they are on, and under mutual
    /// TLS the caller's identity is on their own allow-list. Gives that identity,
    /// for the query's log line.
    pub(super) fn reverse_allowed<T>(&self, req: &Request<T>) -> Result<Option<String>, CallError> {
        let identity = req
            .extensions()
            .get::<ConnInfo>()
            .and_then(|c| c.caller_identity());
        self.reverse_allowed_for(identity.as_deref())?;
        Ok(identity)
    }

    /// [`Vakt::reverse_allowed`] for a caller with this mutual-TLS identity.
    pub(super) fn reverse_allowed_for(&self, identity: Option<&str>) -> Result<(), CallError> {
        let options = self.options();
        if !options.reverse_queries {
            return Err(CallError::ReverseOff);
        }
        let allow = &options.reverse_queries_allow;
        if allow.is_empty() {
            return Ok(());
        }
        // With an allow-list, a caller without an identity (plain TCP) is never
        // on it; start refuses such listeners, and this holds if one slips by.
        match identity {
            Some(id) if allow.iter().any(|a| super::tls::allows(a, id)) => Ok(()),
            Some(id) => Err(CallError::ReverseNotAllowed(format!("identity {id:?}"))),
            None => Err(CallError::ReverseNotAllowed(
                "a caller without an identity (plain TCP)".to_owned(),
            )),
        }
    }
}
