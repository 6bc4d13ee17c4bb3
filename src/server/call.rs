//! What every call shares: the sidecar's state, what the transport tells about a
//! call, and decision ids.

use crate::decision_log::{Caller, DecisionLog, Trace};
use crate::rules::snapshot::{Snapshot, SnapshotHandle};
use crate::source::DataStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::Request;

/// Default maximum number of requests in one AuthorizeBatch.
pub const DEFAULT_MAX_BATCH: usize = 1000;

/// How long a call that asks for a data sequence the sidecar has not applied yet
/// waits for it before it is denied with `vakt:data-stale`.
pub const DEFAULT_SEQUENCE_WAIT: Duration = Duration::from_secs(2);

/// What the operator sets for every call.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest number of requests accepted in one AuthorizeBatch.
    pub max_batch: usize,
    /// Past this data age every decision is a deny with `vakt:data-stale`.
    pub max_staleness: Option<Duration>,
    /// How long a call waits for the data sequence it asks for.
    pub sequence_wait: Duration,
    /// Largest request message, in bytes: a larger one is cut off by the transport
    /// before it is decoded.
    pub max_message_bytes: usize,
    /// Most calls in progress at once; past it a call is refused at once with
    /// RESOURCE_EXHAUSTED (load shedding, never a queue). Health checks are not
    /// counted.
    pub max_in_flight: usize,
    /// Most HTTP/2 streams one connection may have open.
    pub max_concurrent_streams: u32,
    /// Longest a call may take; a shorter client deadline (`grpc-timeout`) wins.
    pub request_timeout: Duration,
    /// Most connections open at once; past it a new one is closed at once.
    pub max_connections: usize,
    /// Most connections from one peer address (0: no limit of its own).
    pub max_connections_per_peer: usize,
    /// Most calls in progress from one peer address (0: no limit of its own).
    pub max_in_flight_per_peer: usize,
    /// How long a new connection may take to send its first bytes.
    pub handshake_timeout: Duration,
    /// A connection on which no call began for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// Largest header block of a call, in bytes.
    pub max_header_bytes: u32,
    /// Most request bytes held at once by all calls together (header blocks and
    /// messages being read); past it a call is refused with RESOURCE_EXHAUSTED.
    /// It also sizes the HTTP/2 windows (`budget::windows`).
    pub max_buffered_request_bytes: usize,
    /// Whether each call gets a span (exported over OTLP).
    pub traces: bool,
    /// Whether WhoCan and WhatCan are answered (off by default: they reveal the
    /// whole access graph).
    pub reverse_queries: bool,
    /// Under mutual TLS, the client identities that may ask reverse queries
    /// (exact, or a prefix ending in `*`); none may when it is empty.
    pub reverse_queries_allow: Vec<String>,
    /// How long the pages of one reverse-query answer may be read.
    pub reverse_page_lifetime: Duration,
}

impl Options {
    /// The limits connections are accepted under.
    pub fn accept_limits(&self) -> super::accept::AcceptLimits {
        super::accept::AcceptLimits {
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// A request is a few hundred bytes and a batch of 1,000 a few hundred KB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Enough for 60,000 calls/s on one connection at 0.5 ms a call; few enough that
/// under a flood the excess waits in the client rather than as tasks in the
/// server, where it would delay health checks (BENCHMARKS.md, "Overload").
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 32;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Below the 1,024 file descriptors a process may have by default, with room for
/// the decision log, data files and database connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 900;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_HEADER_BYTES: u32 = 16 * 1024;
/// Below the 256 MiB memory limit of the shipped Kubernetes manifests, with room
/// for the world, the HTTP/2 windows (as much again) and small requests (README,
/// "Limits").
pub const DEFAULT_MAX_BUFFERED_REQUEST_BYTES: usize = 64 << 20;

impl Default for Options {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_staleness: None,
            sequence_wait: DEFAULT_SEQUENCE_WAIT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: 0,
            max_in_flight_per_peer: 0,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_buffered_request_bytes: DEFAULT_MAX_BUFFERED_REQUEST_BYTES,
            traces: false,
            reverse_queries: false,
            reverse_queries_allow: Vec::new(),
            reverse_page_lifetime: super::cursor::DEFAULT_PAGE_LIFETIME,
        }
    }
}

/// The state every call shares.
pub struct Vakt {
    pub snapshot: Arc<SnapshotHandle>,
    /// The decision log, swapped whole when a SIGHUP changes its sinks.
    pub log: arc_swap::ArcSwap<DecisionLog>,
    pub data: Arc<DataStatus>,
    /// The settings, swapped whole when a SIGHUP changes those that can change
    /// at run time; each call reads them once, without a lock.
    pub options: arc_swap::ArcSwap<Options>,
    /// Calls in progress, for load shedding.
    pub in_flight: AtomicUsize,
    /// Calls in progress per peer address, in buckets by the address's hash.
    pub in_flight_per_peer: PeerBuckets,
    /// What the calls record, for `/metrics`.
    pub metrics: super::metrics::ServerMetrics,
    /// A candidate policy set every request is also decided under
    /// (`--shadow-policies`); its decision is recorded, never answered.
    pub shadow: arc_swap::ArcSwapOption<Shadow>,
    /// The worlds kept for reverse queries read in pages.
    pub cursors: super::cursor::Cursors,
    /// Connections open on every listener, for `--max-connections`.
    pub connections: super::accept::Connections,
    /// Request bytes held on every listener, for `--max-buffered-request-bytes`.
    pub request_budget: Arc<super::budget::Budget>,
}

/// Candidate policies compiled with the serving schema, for shadow evaluation.
pub struct Shadow {
    pub rules: Arc<crate::rules::snapshot::Rules>,
    /// Where they came from, for the log.
    pub dir: std::path::PathBuf,
}

/// Counters of calls in progress per peer address. A fixed array, so counting
/// takes no lock and no memory grows with the number of peers; two addresses that
/// share a bucket share its limit, which with 4,096 buckets is rare.
pub struct PeerBuckets(Box<[AtomicUsize]>);

const PEER_BUCKETS: usize = 4096;

impl Default for PeerBuckets {
    fn default() -> Self {
        Self((0..PEER_BUCKETS).map(|_| AtomicUsize::new(0)).collect())
    }
}

impl PeerBuckets {
    fn bucket(&self, peer: super::accept::PeerKey) -> &AtomicUsize {
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
    /// A sidecar serving `snapshot` from the built-in data, with default options.
    pub fn new(snapshot: Snapshot, log: DecisionLog) -> Self {
        Self {
            snapshot: Arc::new(SnapshotHandle::new(snapshot)),
            log: arc_swap::ArcSwap::from_pointee(log),
            data: Arc::new(DataStatus::new("built-in")),
            options: arc_swap::ArcSwap::from_pointee(Options::default()),
            in_flight: Default::default(),
            in_flight_per_peer: Default::default(),
            metrics: Default::default(),
            shadow: Default::default(),
            cursors: Default::default(),
            connections: Default::default(),
            request_budget: Default::default(),
        }
    }

    /// Admits a call, or refuses it at once when `max_in_flight` calls are in
    /// progress: under overload, shedding keeps the admitted calls fast and memory
    /// bounded, where a queue would grow without end.
    /// With `--max-in-flight-per-peer`, a peer address past its own limit is refused
    /// the same way, so one noisy caller cannot take every place.
    pub(super) fn admit<T>(
        &self,
        req: &Request<T>,
    ) -> Result<Admitted<'_>, super::error::CallError> {
        note_call(req);
        let key = req
            .extensions()
            .get::<super::accept::ConnInfo>()
            .and_then(|c| c.peer_key())
            .or_else(|| {
                req.remote_addr()
                    .map(|a| super::accept::PeerKey::Ip(a.ip()))
            });
        self.admit_peer(key)
    }

    /// [`Vakt::admit`] for a call from `key` (the peer address, or the user on the
    /// Unix socket), whatever protocol it came by.
    pub(super) fn admit_peer(
        &self,
        key: Option<super::accept::PeerKey>,
    ) -> Result<Admitted<'_>, super::error::CallError> {
        let options = self.options.load();
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut admitted = Admitted {
            total: &self.in_flight,
            peer: None,
        };
        if before >= options.max_in_flight {
            return Err(super::error::CallError::Overloaded {
                max: options.max_in_flight,
                limit: "--max-in-flight",
            });
        }
        let per_peer = options.max_in_flight_per_peer;
        if per_peer > 0 {
            if let Some(key) = key {
                let bucket = self.in_flight_per_peer.bucket(key);
                let before = bucket.fetch_add(1, Ordering::Relaxed);
                admitted.peer = Some(bucket);
                if before >= per_peer {
                    return Err(super::error::CallError::Overloaded {
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
    pub(super) fn reverse_allowed<T>(
        &self,
        req: &Request<T>,
    ) -> Result<Option<String>, super::error::CallError> {
        let identity = req
            .extensions()
            .get::<super::accept::ConnInfo>()
            .and_then(|c| c.caller_identity());
        self.reverse_allowed_for(identity.as_deref())?;
        Ok(identity)
    }

    /// [`Vakt::reverse_allowed`] for a caller with this mutual-TLS identity.
    pub(super) fn reverse_allowed_for(
        &self,
        identity: Option<&str>,
    ) -> Result<(), super::error::CallError> {
        let options = self.options.load();
        if !options.reverse_queries {
            return Err(super::error::CallError::ReverseOff);
        }
        let allow = &options.reverse_queries_allow;
        if allow.is_empty() {
            return Ok(());
        }
        // With an allow-list, a caller without an identity (plain TCP) is never
        // on it; start refuses such listeners, and this holds if one slips by.
        match identity {
            Some(id) if allow.iter().any(|a| super::tls::allows(a, id)) => Ok(()),
            Some(id) => Err(super::error::CallError::ReverseNotAllowed(format!(
                "identity {id:?}"
            ))),
            None => Err(super::error::CallError::ReverseNotAllowed(
                "a caller without an identity (plain TCP)".to_owned(),
            )),
        }
    }

    /// Ends a call: counts it by method and status, with its duration, and turns
    /// its failure into the status answered.
    pub(super) fn finish<T>(
        &self,
        method: super::metrics::Method,
        started: std::time::Instant,
        answer: Result<T, super::error::CallError>,
        span: &tracing::Span,
    ) -> Result<tonic::Response<T>, tonic::Status> {
        let answer = answer.map_err(tonic::Status::from);
        let code = match &answer {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.metrics.call(method, code, started.elapsed());
        if !span.is_none() {
            span.record("rpc.grpc.status_code", code as i64);
            if code != tonic::Code::Ok {
                span.record("otel.status_code", "ERROR");
            }
        }
        answer.map(tonic::Response::new)
    }

    /// The call's span when traces are exported (none otherwise, at no cost),
    /// continuing the W3C trace context the caller sent in `traceparent`.
    pub(super) fn call_span<T>(
        &self,
        req: &Request<T>,
        method: super::metrics::Method,
    ) -> tracing::Span {
        if !self.options.load().traces {
            return tracing::Span::none();
        }
        use opentelemetry::propagation::TextMapPropagator as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let name = method.name();
        let span = tracing::info_span!(
            target: "vakt::call",
            "call",
            otel.name = format!("vakt.v1.Authorizer/{name}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = "vakt.v1.Authorizer",
            rpc.method = name,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&Metadata(req.metadata()));
        let _ = span.set_parent(parent);
        span
    }

    /// The snapshot to decide on, and why its data may not be decided on: too old
    /// (`--max-staleness`), or without the change the call asked for, after waiting
    /// for it a short while.
    pub(super) async fn snapshot_for(&self, min_sequence: u64) -> (Arc<Snapshot>, Option<String>) {
        let options = self.options.load();
        let mut snap = self.snapshot.load();
        if min_sequence > 0 && !snap.data.covers(min_sequence) {
            let mut swapped = self.snapshot.subscribe();
            let deadline = tokio::time::Instant::now() + options.sequence_wait;
            while !snap.data.covers(min_sequence) {
                // A swap may have landed between the load and the subscription.
                snap = self.snapshot.load();
                if snap.data.covers(min_sequence) {
                    break;
                }
                match tokio::time::timeout_at(deadline, swapped.changed()).await {
                    Ok(Ok(())) => snap = self.snapshot.load(),
                    _ => {
                        return (
                            snap.clone(),
                            Some(format!(
                                "the data does not hold change {min_sequence} yet (it holds up to data sequence {}, waited {:?})",
                                snap.data.sequence, options.sequence_wait
                            )),
                        )
                    }
                }
            }
        }
        if let Some(max) = options.max_staleness {
            let age = self.data.age();
            if age > max {
                return (
                    snap,
                    Some(format!(
                        "the data was last confirmed current {:.1} s ago, more than the {:.1} s allowed ({})",
                        age.as_secs_f64(),
                        max.as_secs_f64(),
                        self.data.state().as_str()
                    )),
                );
            }
        }
        (snap, None)
    }
}

/// What the transport tells about a call, for the decision log.
#[derive(Default)]
pub(crate) struct CallMeta {
    pub caller: Caller,
    pub trace: Trace,
}

impl CallMeta {
    /// What the call's transport and headers tell; nothing when no decision log
    /// would record it.
    pub(super) fn of<T>(req: &Request<T>, log: &DecisionLog) -> Self {
        let header = |name: &str| {
            req.metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self::from_parts(
            req.extensions().get::<super::accept::ConnInfo>(),
            peer_of(req),
            header,
            log,
        )
    }

    /// What the connection and the headers (by name) tell, whatever the protocol.
    pub(super) fn from_parts(
        conn: Option<&super::accept::ConnInfo>,
        peer: Option<std::net::SocketAddr>,
        header: impl Fn(&str) -> Option<String>,
        log: &DecisionLog,
    ) -> Self {
        if !log.is_enabled() {
            return Self::default();
        }
        Self {
            caller: {
                let unix = conn.and_then(|c| c.unix);
                let identity = conn.and_then(|c| c.identity.clone());
                Caller {
                    identity,
                    peer: match unix {
                        Some(_) => Some("unix".to_owned()),
                        None => peer.map(|a| a.to_string()),
                    },
                    uid: unix.map(|u| u.uid),
                    pid: unix.and_then(|u| u.pid),
                    service: header("x-vakt-caller").filter(|s| crate::ids::check_id(s).is_ok()),
                }
            },
            trace: header("traceparent")
                .map(|v| Trace::from_traceparent(&v))
                .unwrap_or_default(),
        }
    }
}

/// Notes on the call's connection that a call began, for the idle timeout. (Health
/// checks do not count: a connection used only for them is closed when idle, and
/// the prober opens a new one.)
pub(super) fn note_call<T>(req: &Request<T>) {
    if let Some(conn) = req.extensions().get::<super::accept::ConnInfo>() {
        conn.touch();
    }
}

/// The peer address of a call: from Vakt's own listener, or tonic's.
fn peer_of<T>(req: &Request<T>) -> Option<std::net::SocketAddr> {
    req.extensions()
        .get::<super::accept::ConnInfo>()
        .and_then(|c| c.remote)
        .or_else(|| req.remote_addr())
}

/// gRPC metadata as OpenTelemetry's propagators read it.
struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl opentelemetry::propagation::Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// A new decision id: a UUIDv7, so ids sort by time.
pub(crate) fn new_decision_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
