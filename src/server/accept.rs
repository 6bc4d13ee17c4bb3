//! Accepting connections under limits, on TCP and on a Unix socket: a cap on
//! connections in all and per peer (address, or user on the Unix socket), a
//! deadline for a new connection's first bytes, an idle timeout, and `TCP_NODELAY`
//! on every TCP socket. On the Unix socket the kernel tells who connected
//! (`SO_PEERCRED`): that is the caller's verified identity.
//!
//! Each limit closes a socket the server would otherwise hold for ever: an attacker
//! who opens connections and sends nothing, or a client that keeps a connection it
//! never uses, would otherwise use up the process's file descriptors and lock out
//! every other caller. Accepting runs in a task of its own, so a socket that is slow
//! to send its first bytes never holds up the next one.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;

/// The limits connections are accepted under.
#[derive(Debug, Clone)]
pub struct AcceptLimits {
    pub max_connections: usize,
    /// 0: no limit of its own.
    pub max_connections_per_peer: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Option<Duration>,
}

/// Who is at the other end of a Unix socket, as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixPeer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// What a call knows about its connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address, on TCP.
    pub remote: Option<SocketAddr>,
    /// The address the connection came in on, on TCP (the listener's own, or the
    /// interface's when it listens on all of them).
    pub local: Option<SocketAddr>,
    /// The peer's credentials, on the Unix socket.
    pub unix: Option<UnixPeer>,
    /// The client certificate's identity, under mutual TLS.
    pub identity: Option<String>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// When a call last began on the connection, in ms since `epoch`.
    last_call: Arc<AtomicU64>,
    epoch: Instant,
}

/// What per-peer limits count by: the address on TCP, the user on a Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    Ip(IpAddr),
    Uid(u32),
}

impl std::fmt::Display for PeerKey {
    /// As the log names a peer: its address, or `unix:uid:N`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Uid(uid) => f.write_str(&unix_identity(*uid)),
        }
    }
}

/// How a Unix-socket caller is named on the allow-lists: by the uid the kernel
/// gives for the peer (`unix:uid:1000`).
pub fn unix_identity(uid: u32) -> String {
    format!("unix:uid:{uid}")
}

impl ConnInfo {
    /// Who the caller is, for the allow-lists: the client certificate's identity
    /// under mutual TLS, or `unix:uid:N` on the Unix socket; `None` on plain TCP,
    /// where no caller can be told from another.
    pub fn caller_identity(&self) -> Option<String> {
        self.identity
            .clone()
            .or_else(|| self.unix.map(|u| unix_identity(u.uid)))
    }

    /// The peer as the log names it: `127.0.0.1:45900`, or `unix:uid:1000` on the
    /// Unix socket (not `Some(…)`: an operator greps for the address).
    fn shown_peer(&self) -> String {
        match (&self.remote, &self.unix) {
            (Some(a), _) => a.to_string(),
            (None, Some(u)) => unix_identity(u.uid),
            (None, None) => "unknown".to_owned(),
        }
    }

    pub fn peer_key(&self) -> Option<PeerKey> {
        match (&self.remote, &self.unix) {
            (Some(a), _) => Some(PeerKey::Ip(a.ip())),
            (None, Some(u)) => Some(PeerKey::Uid(u.uid)),
            (None, None) => None,
        }
    }

    /// Notes that a call began: the connection is not idle.
    pub fn touch(&self) {
        self.last_call
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Connection counts, in all and per peer address.
#[derive(Default)]
struct Counts {
    total: AtomicUsize,
    per_peer: Mutex<HashMap<PeerKey, usize>>,
}

/// A connection's place in the counts; given back when the connection closes.
struct Slot {
    counts: Arc<Counts>,
    peer: PeerKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
        let mut per_peer = self
            .counts
            .per_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&self.peer);
            }
        }
    }
}

impl Counts {
    /// Takes a place for a connection from `peer`, or says which cap is reached.
    fn admit(self: &Arc<Self>, peer: PeerKey, o: &AcceptLimits) -> Result<Slot, &'static str> {
        if self.total.fetch_add(1, Ordering::Relaxed) >= o.max_connections {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("--max-connections");
        }
        let mut per_peer = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        let n = per_peer.entry(peer).or_insert(0);
        if o.max_connections_per_peer > 0 && *n >= o.max_connections_per_peer {
            drop(per_peer);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("--max-connections-per-peer");
        }
        *n += 1;
        Ok(Slot {
            counts: self.clone(),
            peer,
        })
    }
}

/// A TCP, TLS or Unix socket.
enum Socket {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Unix(UnixStream),
}

/// An accepted connection: the socket, its place in the counts, and its idle timer.
pub struct Conn {
    inner: Socket,
    info: ConnInfo,
    _slot: Slot,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    /// On gRPC (HTTP/2) connections: watches what the server writes for refusals.
    frames: Option<FrameWatch>,
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl Conn {
    /// Whether the connection has been idle too long: no call began within the idle
    /// timeout. (Calls end within `--request-timeout`, shorter than it.) When not
    /// yet, the timer is set for the moment it would be.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((limit, sleep)) = &mut self.idle else {
            return false;
        };
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            let last = Duration::from_millis(self.info.last_call.load(Ordering::Relaxed));
            let due = self.info.epoch + last + *limit;
            if Instant::now() >= due {
                return true;
            }
            sleep.as_mut().reset(due.into());
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.idle_expired(cx) {
            // End of stream: the server closes the connection; a client reconnects
            // on its next call.
            return Poll::Ready(Ok(()));
        }
        match &mut self.inner {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = match &mut self.inner {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = written {
            self.watch_written(&[&buf[..n]]);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = match &mut self.inner {
            Socket::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        };
        if let Poll::Ready(Ok(mut n)) = written {
            let mut sent = Vec::with_capacity(bufs.len());
            for b in bufs {
                if n == 0 {
                    break;
                }
                let part = &b[..n.min(b.len())];
                n -= part.len();
                sent.push(part);
            }
            self.watch_written(&sent);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Socket::Tcp(s) => s.is_write_vectored(),
            Socket::Tls(s) => s.is_write_vectored(),
            Socket::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Conn {
    /// Passes bytes the server has written to the connection's [`FrameWatch`], and
    /// logs the refusals among them.
    fn watch_written(&mut self, parts: &[&[u8]]) {
        let Some(watch) = &mut self.frames else {
            return;
        };
        for part in parts {
            watch.feed(part, |refusal| log_refusal(&self.info, refusal));
        }
    }
}

/// A call or connection the HTTP/2 layer (`h2`, under hyper and tonic) refused
/// itself: a malformed header block, a stream over the limit, a flow-control or
/// framing error. Such a refusal never reaches tonic or Vakt's services, so it is
/// seen here, in the frames the server writes: a `RST_STREAM` or `GOAWAY` with an
/// error code. Only their fixed-size fields are read; header blocks (HPACK) are
/// not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `RST_STREAM`: one call refused.
    Stream { stream: u32, code: u32 },
    /// `GOAWAY` with an error: the connection refused, after `last_stream`.
    Connection { last_stream: u32, code: u32 },
}

/// HTTP/2 error codes that end a stream or connection without refusing anything:
/// NO_ERROR (a response sent before the request body was read, a graceful
/// shutdown) and CANCEL (a call whose handler was dropped, after it reached Vakt).
const NO_ERROR: u32 = 0x0;
const CANCEL: u32 = 0x8;

/// A parser for the frame headers in the bytes the server writes on one HTTP/2
/// connection (which, unlike the client's, begin with a frame: the server's
/// SETTINGS). Writes split frames anywhere, so it keeps its place between them.
#[derive(Debug, Default)]
struct FrameWatch {
    /// The 9-byte frame header being read, and how much of it has been.
    head: [u8; 9],
    head_len: usize,
    /// Payload bytes of the current frame not yet passed.
    payload_left: usize,
    /// The current frame's type and stream, once its header is read.
    kind: u8,
    stream: u32,
    /// The payload's first bytes, for RST_STREAM (4: the code) and GOAWAY (8: last
    /// stream and code).
    body: [u8; 8],
    body_len: usize,
    body_want: usize,
}

const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;

impl FrameWatch {
    fn feed(&mut self, mut bytes: &[u8], mut refused: impl FnMut(Refusal)) {
        while !bytes.is_empty() {
            if self.head_len < self.head.len() {
                let n = (self.head.len() - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                self.head_len += n;
                bytes = &bytes[n..];
                if self.head_len < self.head.len() {
                    return;
                }
                let h = self.head;
                self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                self.kind = h[3];
                self.stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                self.body_len = 0;
                self.body_want = match self.kind {
                    RST_STREAM => 4,
                    GOAWAY => 8,
                    _ => 0,
                }
                .min(self.payload_left);
            } else {
                let n = self.payload_left.min(bytes.len());
                let keep = (self.body_want - self.body_len).min(n);
                self.body[self.body_len..self.body_len + keep].copy_from_slice(&bytes[..keep]);
                self.body_len += keep;
                self.payload_left -= n;
                bytes = &bytes[n..];
            }
            if self.head_len == self.head.len() && self.payload_left == 0 {
                if let Some(r) = self.refusal() {
                    refused(r);
                }
                self.head_len = 0;
            }
        }
    }

    /// The refusal the frame just read makes, if it is one.
    fn refusal(&self) -> Option<Refusal> {
        let b = self.body;
        let r = match (self.kind, self.body_len) {
            (RST_STREAM, 4) => Refusal::Stream {
                stream: self.stream,
                code: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            },
            (GOAWAY, 8) => Refusal::Connection {
                last_stream: u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff,
                code: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            },
            _ => return None,
        };
        match r {
            Refusal::Stream { code, .. } if code == NO_ERROR || code == CANCEL => None,
            Refusal::Connection { code, .. } if code == NO_ERROR => None,
            r => Some(r),
        }
    }
}

/// An HTTP/2 error code's name (RFC 9113, section 7).
fn http2_code_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "unknown",
    }
}

/// The least time between two refusal WARNs: a client that sends malformed
/// requests in a loop must not flood the log. The next WARN counts the ones not
/// logged in between.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// When a refusal was last logged, and how many have not been since.
static REFUSALS_LOGGED: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));

fn log_refusal(info: &ConnInfo, refusal: Refusal) {
    let unlogged = {
        let mut logged = REFUSALS_LOGGED.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if logged.0.is_some_and(|at| now < at + REFUSAL_LOG_EVERY) {
            logged.1 += 1;
            return;
        }
        let unlogged = logged.1;
        *logged = (Some(now), 0);
        unlogged
    };
    let peer = info.remote.map(|a| a.to_string());
    let uid = info.unix.map(|u| u.uid);
    let pid = info.unix.and_then(|u| u.pid);
    // h2 says which header it found malformed only in its own debug log.
    let detail = "--log-level warn,h2=debug logs what the HTTP/2 layer found wrong";
    match refusal {
        Refusal::Stream { stream, code } => tracing::warn!(
            reason = http2_code_name(code),
            code,
            stream,
            peer,
            uid,
            pid,
            unlogged,
            detail,
            "call refused by the HTTP/2 layer before it reached Vakt"
        ),
        Refusal::Connection { last_stream, code } => tracing::warn!(
            reason = http2_code_name(code),
            code,
            last_stream,
            peer,
            uid,
            pid,
            unlogged,
            detail,
            "connection closed with an error by the HTTP/2 layer"
        ),
    }
}

/// The connections the server takes: accepted, counted, and handed on once they
/// have sent their first bytes. Dropping it stops accepting.
pub struct Incoming {
    rx: mpsc::Receiver<Conn>,
    task: tokio::task::JoinHandle<()>,
    /// Whether its connections speak HTTP/2, whose refusals are watched for.
    http2: bool,
}

impl Incoming {
    /// Marks the connections as HTTP/2 (gRPC): a call or connection the HTTP/2
    /// layer refuses is logged with why (a WARN, at most one a second).
    pub fn http2(mut self) -> Self {
        self.http2 = true;
        self
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = std::io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let http2 = self.http2;
        self.rx.poll_recv(cx).map(|c| {
            c.map(|mut c| {
                if http2 {
                    c.frames = Some(FrameWatch::default());
                }
                Ok(c)
            })
        })
    }
}

/// Where connections come from.
pub enum Listener {
    Tcp(TcpListener),
    /// TCP with TLS (and, with a client CA, mutual TLS and its allow-list).
    Tls(TcpListener, Arc<super::tls::Tls>),
    /// A Unix socket. Its callers are named `unix:uid:N`; when mutual TLS guards
    /// the calls with an allow-list, they must be on it too, or the socket would
    /// be a way around it.
    Unix(UnixListener, Option<Arc<super::tls::Tls>>),
}

/// Connections from `listener` under the limits in `o`, counted on their own.
pub fn incoming(listener: TcpListener, o: &AcceptLimits) -> Incoming {
    incoming_counted(vec![Listener::Tcp(listener)], o, &Connections::default())
}

/// The connections a sidecar holds, counted across all its listeners (gRPC and
/// AuthZEN), so `--max-connections` bounds them together.
#[derive(Clone, Default)]
pub struct Connections(Arc<Counts>);

/// Connections from every listener, under one set of limits, counted in
/// `connections` with any other listener's.
pub fn incoming_counted(
    listeners: Vec<Listener>,
    o: &AcceptLimits,
    connections: &Connections,
) -> Incoming {
    let (tx, rx) = mpsc::channel(64);
    let counts = connections.0.clone();
    let epoch = Instant::now();
    let tasks: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(l, o.clone(), counts.clone(), epoch, tx.clone())))
        .collect();
    let task = tokio::spawn(async move {
        // Holds the accept loops; aborting it (dropping Incoming) stops them.
        struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
        impl Drop for AbortAll {
            fn drop(&mut self) {
                for t in &self.0 {
                    t.abort();
                }
            }
        }
        let _all = AbortAll(tasks);
        std::future::pending::<()>().await;
    });
    Incoming {
        rx,
        task,
        http2: false,
    }
}

/// How long to wait before accepting again after accept itself failed (out of file
/// descriptors, typically), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One accepted socket with what is known of its peer.
async fn accept_one(listener: &Listener) -> std::io::Result<(Socket, ConnInfoParts)> {
    match listener {
        Listener::Tcp(l) | Listener::Tls(l, _) => {
            let (sock, peer) = l.accept().await?;
            let _ = sock.set_nodelay(true);
            let local = sock.local_addr().ok();
            Ok((
                Socket::Tcp(sock),
                ConnInfoParts {
                    remote: Some(peer),
                    local,
                    unix: None,
                },
            ))
        }
        Listener::Unix(l, _) => {
            let (sock, _) = l.accept().await?;
            // The kernel's word for who connected; a socket without it is refused.
            let cred = sock.peer_cred()?;
            let unix = UnixPeer {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
            };
            Ok((
                Socket::Unix(sock),
                ConnInfoParts {
                    remote: None,
                    local: None,
                    unix: Some(unix),
                },
            ))
        }
    }
}

struct ConnInfoParts {
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    unix: Option<UnixPeer>,
}

async fn accept_loop(
    listener: Listener,
    o: AcceptLimits,
    counts: Arc<Counts>,
    epoch: Instant,
    tx: mpsc::Sender<Conn>,
) {
    let refused = AtomicU64::new(0);
    loop {
        let (sock, parts) = match accept_one(&listener).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if let (Listener::Unix(_, Some(tls)), Some(peer)) = (&listener, parts.unix) {
            let id = unix_identity(peer.uid);
            if !tls.admits(&id) {
                tracing::warn!(caller = %id, pid = ?peer.pid, "caller refused: its uid is not on the allow-list (--tls-allow)");
                continue;
            }
        }
        let info = ConnInfo {
            remote: parts.remote,
            local: parts.local,
            unix: parts.unix,
            identity: None,
            tls: false,
            last_call: Arc::new(AtomicU64::new(epoch.elapsed().as_millis() as u64)),
            epoch,
        };
        let Some(key) = info.peer_key() else { continue };
        let slot = match counts.admit(key, &o) {
            Ok(s) => s,
            Err(limit) => {
                // Closed at once. Logged for the first and then every 1000th, so a
                // flood does not flood the log too.
                let n = refused.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(1000) {
                    tracing::warn!(peer = %key, limit, refused = n + 1, "connection refused: too many connections");
                }
                continue;
            }
        };
        let idle = o.idle_timeout.map(|d| (d, Box::pin(tokio::time::sleep(d))));
        let mut conn = Conn {
            inner: sock,
            info,
            _slot: slot,
            idle,
            frames: None,
        };
        let tx = tx.clone();
        let first_bytes = o.handshake_timeout;
        if let Listener::Tls(_, tls) = &listener {
            let tls = tls.clone();
            tokio::spawn(async move {
                // The handshake, client certificate included, within the deadline
                // for a connection's first bytes; then the allow-list, before any
                // call can be made.
                let Socket::Tcp(tcp) = conn.inner else { return };
                let accepted = tokio::time::timeout(first_bytes, tls.acceptor().accept(tcp)).await;
                let stream = match accepted {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %conn.info.shown_peer(), error = %e, "TLS handshake failed; connection refused");
                        return;
                    }
                    Err(_) => return,
                };
                match tls.admit(stream.get_ref().1.peer_certificates()) {
                    Ok(identity) => {
                        conn.info.identity = identity;
                        conn.info.tls = true;
                    }
                    Err(presented) => {
                        tracing::warn!(peer = %conn.info.shown_peer(), presented = %crate::decision_log::redact::scrub(&presented), "caller refused: its client certificate is not on the allow-list");
                        return;
                    }
                }
                conn.inner = Socket::Tls(Box::new(stream));
                let _ = tx.send(conn).await;
            });
            continue;
        }
        tokio::spawn(async move {
            // A connection that sends nothing is closed after the deadline, and
            // never reaches the server.
            let mut probe = [0u8; 1];
            let peeked = match &conn.inner {
                Socket::Tcp(s) => tokio::time::timeout(first_bytes, s.peek(&mut probe)).await,
                Socket::Unix(s) => tokio::time::timeout(first_bytes, s.readable())
                    .await
                    .map(|r| r.map(|()| 1)),
                Socket::Tls(_) => return,
            };
            if let Ok(Ok(n)) = peeked {
                if n > 0 {
                    let _ = tx.send(conn).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// What a server might write: its SETTINGS, a response's DATA, a stream reset
    /// after a response (NO_ERROR), a refused stream, and a GOAWAY with an error.
    fn written() -> Vec<u8> {
        [
            frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]),
            frame(0x0, 1, 1, &[9; 40]),
            frame(RST_STREAM, 0, 1, &NO_ERROR.to_be_bytes()),
            frame(RST_STREAM, 0, 3, &CANCEL.to_be_bytes()),
            frame(RST_STREAM, 0, 5, &1u32.to_be_bytes()),
            frame(GOAWAY, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 0xb, b'x', b'y']),
            frame(GOAWAY, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 0]),
        ]
        .concat()
    }

    #[test]
    fn refusals_are_found_however_the_writes_split_the_frames() {
        let want = [
            Refusal::Stream { stream: 5, code: 1 },
            Refusal::Connection {
                last_stream: 5,
                code: 0xb,
            },
        ];
        let bytes = written();
        for chunk in [1, 2, 5, 9, 10, 17, bytes.len()] {
            let mut watch = FrameWatch::default();
            let mut found = Vec::new();
            for part in bytes.chunks(chunk) {
                watch.feed(part, |r| found.push(r));
            }
            assert_eq!(found, want, "in writes of {chunk} bytes");
        }
        assert_eq!(http2_code_name(1), "PROTOCOL_ERROR");
    }
}
