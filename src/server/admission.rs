//! Which calls are let in: the limits on calls in progress (in all and per
//! peer), and who may ask reverse queries.

use super::accept::{ConnInfo, PeerKey};
use super::error::CallError;
use super::options::Options;
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

impl Admission {
    /// Admits a call from `key` (the peer address, or the user on the Unix
    /// socket), whatever protocol it came by, or refuses it at once when
    /// `max_in_flight` calls are in progress: under overload, shedding keeps the
    /// admitted calls fast and memory bounded, where a queue would grow without end.
    /// With `--max-in-flight-per-peer`, a peer address past its own limit is refused
    /// the same way, so one noisy caller cannot take every place.
    pub(super) fn admit(
        &self,
        options: &Options,
        key: Option<PeerKey>,
    ) -> Result<Admitted<'_>, CallError> {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut admitted = Admitted {
            total: &self.in_flight,
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
                let bucket = self.per_peer.bucket(key);
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
}

/// The peer a gRPC call came from: its connection's key, else its address.
pub(super) fn peer_key_of<T>(req: &Request<T>) -> Option<PeerKey> {
    req.extensions()
        .get::<ConnInfo>()
        .and_then(|c| c.peer_key())
        .or_else(|| req.remote_addr().map(|a| PeerKey::Ip(a.ip())))
}

/// The mutual-TLS identity a gRPC call came with, if any.
pub(super) fn identity_of<T>(req: &Request<T>) -> Option<String> {
    req.extensions()
        .get::<ConnInfo>()
        .and_then(|c| c.caller_identity())
}

/// Whether a caller with this mutual-TLS identity may ask a reverse query: they
/// are on, and with an allow-list the identity is on it.
pub(super) fn reverse_allowed(options: &Options, identity: Option<&str>) -> Result<(), CallError> {
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
