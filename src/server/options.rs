//! What the operator sets for the server: the per-call [`Options`] a SIGHUP may
//! swap, the transport and connection [`Limits`] fixed at start, and their
//! defaults.

use std::time::Duration;

/// Default maximum number of requests in one AuthorizeBatch.
pub const DEFAULT_MAX_BATCH: usize = 1000;

/// How long a call that asks for a data sequence the sidecar has not applied yet
/// waits for it before it is denied with `vakt:data-stale`.
pub const DEFAULT_SEQUENCE_WAIT: Duration = Duration::from_secs(2);

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
/// for the world, the HTTP/2 windows (as much again) and small requests
/// (docs/operations.md, "Limits").
pub const DEFAULT_MAX_BUFFERED_REQUEST_BYTES: usize = 64 << 20;

/// What every call reads, once, without a lock: swapped whole when a SIGHUP
/// changes the settings that can change at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Largest number of requests accepted in one AuthorizeBatch.
    pub max_batch: usize,
    /// Past this data age every decision is a deny with `vakt:data-stale`.
    pub max_staleness: Option<Duration>,
    /// Past this age of the last sync from Altinn (the sync stamp written with
    /// the data) every decision is a deny with `vakt:data-stale`; data without a
    /// stamp is denied too (fail closed).
    pub max_sync_age: Option<Duration>,
    /// How long a call waits for the data sequence it asks for.
    pub sequence_wait: Duration,
    /// Most calls in progress at once; past it a call is refused at once with
    /// RESOURCE_EXHAUSTED (load shedding, never a queue). Health checks are not
    /// counted.
    pub max_in_flight: usize,
    /// Most calls in progress from one peer address (0: no limit of its own).
    pub max_in_flight_per_peer: usize,
    /// Whether WhoCan and WhatCan are answered (off by default: they reveal the
    /// whole access graph).
    pub reverse_queries: bool,
    /// Under mutual TLS, the client identities that may ask reverse queries
    /// (exact, or a prefix ending in `*`); none may when it is empty.
    pub reverse_queries_allow: Vec<String>,
    /// How long the pages of one reverse-query answer may be read.
    pub reverse_page_lifetime: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_staleness: None,
            max_sync_age: None,
            sequence_wait: DEFAULT_SEQUENCE_WAIT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_per_peer: 0,
            reverse_queries: false,
            reverse_queries_allow: Vec::new(),
            reverse_page_lifetime: super::cursor::DEFAULT_PAGE_LIFETIME,
        }
    }
}

/// What the transport and the listeners are built with: fixed at start, since a
/// running listener cannot take new ones (a change waits for a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request message, in bytes: a larger one is cut off by the transport
    /// before it is decoded.
    pub max_message_bytes: usize,
    /// Most HTTP/2 streams one connection may have open.
    pub max_concurrent_streams: u32,
    /// Longest a call may take; a shorter client deadline (`grpc-timeout`) wins.
    pub request_timeout: Duration,
    /// Most connections open at once; past it a new one is closed at once.
    pub max_connections: usize,
    /// Most connections from one peer address (0: no limit of its own).
    pub max_connections_per_peer: usize,
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: 0,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_buffered_request_bytes: DEFAULT_MAX_BUFFERED_REQUEST_BYTES,
            traces: false,
        }
    }
}

impl Limits {
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
