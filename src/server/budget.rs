//! The global budget for request bytes held at once
//! (`--max-buffered-request-bytes`), charged by a wrapper around every gRPC
//! service's request body and by the AuthZEN listener as it reads a body, and the
//! deadline for a request message that stops arriving halfway.
//!
//! Why a budget of our own: tonic reads a request's DATA frames as they arrive and
//! keeps them until the whole message is there (it reserves the length the
//! message's prefix declares as soon as it reads the prefix). Reading the frames
//! gives their bytes back to the HTTP/2 flow-control window, so the window does not
//! bound what tonic holds: many streams that each send all but the last byte of a
//! large message would hold gigabytes.
//!
//! What is charged for a request: its header block (before the call begins), and
//! the largest message its body has declared so far (prefix and all), because
//! that is what tonic holds and reserves. A message is charged when its prefix
//! arrives, before its bytes do; the charge is given back when the body is dropped
//! (for a unary call, once the message is decoded, before the handler runs).
//!
//! Past the budget a call is refused at once with `RESOURCE_EXHAUSTED` naming the
//! flag, never queued: a queue would let stalled streams hold up every caller, and
//! a refused stream is reset, so its bytes and window are freed at once. A request
//! of at most [`TINY`] bytes in all (a health check, a typical Authorize) is never
//! refused: it is counted, and may go past the budget by at most that much per open
//! stream, so a flood of large bodies cannot stop probes or ordinary calls.
//!
//! A message whose bytes stop coming is ended with `DEADLINE_EXCEEDED` once
//! `--request-timeout` has passed since its first byte (for unary calls tonic's
//! own call timeout, counted from the headers, usually ends it first; this also
//! covers streaming requests, whose call timeout ends with the response headers).

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::body::Body;
use tonic::codegen::{http, Bytes};
use tonic::Status;

/// A request of at most this many bytes (header block and largest message) is
/// never refused for the budget.
pub(super) const TINY: usize = 1024;

/// The length of a gRPC message prefix: a compression flag and a 4-byte length.
const PREFIX: usize = 5;

/// What HPACK counts for each header field besides its name and value (RFC 7541
/// §4.1), so a block of many short fields is not charged as nothing.
const FIELD_OVERHEAD: usize = 32;

/// The bytes held by requests in progress on every listener. One per sidecar
/// (`Vakt::request_budget`); the limit comes with each charge, from the settings.
#[derive(Default)]
pub struct Budget {
    used: AtomicUsize,
    refused: AtomicU64,
}

/// Why a request was refused for the budget.
pub(super) fn refusal(limit: usize) -> String {
    format!(
        "request refused: the server holds as many request bytes as \
         --max-buffered-request-bytes allows ({limit}); try again"
    )
}

impl Budget {
    /// A charge for one request outside the gRPC services, given back when
    /// dropped.
    pub(super) fn holder(&self, limit: usize) -> Held<'_> {
        Held {
            budget: self,
            limit,
            held: 0,
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `more` bytes, so that a request holds `total`; false when that would
    /// go past the limit and the request is not tiny.
    fn charge(&self, more: usize, total: usize, limit: usize) -> bool {
        if total <= TINY {
            self.used.fetch_add(more, Ordering::Relaxed);
            return true;
        }
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(more).filter(|u| *u <= limit)
            });
        if taken.is_err() {
            // The first refusal and every 1000th are logged, so a flood does not
            // flood the log too.
            let n = self.refused.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1000) {
                tracing::warn!(
                    limit,
                    wanted = more,
                    refused = n + 1,
                    "request refused: --max-buffered-request-bytes reached"
                );
            }
        }
        taken.is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// What one request holds of the budget (an AuthZEN body as it is read).
pub(super) struct Held<'a> {
    budget: &'a Budget,
    limit: usize,
    held: usize,
}

impl Held<'_> {
    /// Raises the charge to `total`, if it holds less; the refusal names the flag.
    pub(super) fn hold(&mut self, total: usize) -> Result<(), String> {
        if total > self.held {
            let more = total - self.held;
            if !self.budget.charge(more, total, self.limit) {
                return Err(refusal(self.limit));
            }
            self.held = total;
        }
        Ok(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

/// What every charged body shares.
struct Rules {
    budget: Arc<Budget>,
    limit: usize,
    /// Messages declared longer are refused by tonic from their prefix, so they
    /// are not charged beyond the prefix.
    max_message: usize,
    /// How long a message may take from its first byte to its last.
    message_timeout: Duration,
}

/// A gRPC service whose request bodies are charged to the budget.
#[derive(Clone)]
pub(super) struct Budgeted<S> {
    inner: S,
    rules: Arc<Rules>,
}

/// Wraps services so that their request bodies are charged to one budget.
#[derive(Clone)]
pub(super) struct Charging(Arc<Rules>);

impl Charging {
    pub(super) fn new(
        budget: Arc<Budget>,
        limit: usize,
        max_message: usize,
        message_timeout: Duration,
    ) -> Self {
        Self(Arc::new(Rules {
            budget,
            limit,
            max_message,
            message_timeout,
        }))
    }

    pub(super) fn wrap<S>(&self, inner: S) -> Budgeted<S> {
        Budgeted {
            inner,
            rules: self.0.clone(),
        }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Budgeted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tonic::codegen::Service<http::Request<Body>> for Budgeted<S>
where
    S: tonic::codegen::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Unpin,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let headers = req.uri().path().len()
            + req
                .headers()
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + FIELD_OVERHEAD)
                .sum::<usize>();
        // The header block is charged before the call begins: a stream that
        // sends large headers and then nothing must not hold them uncounted.
        let mut charged = Charged::new(self.rules.clone(), headers);
        if let Err(refused) = charged.hold(headers) {
            return Answer::Refused(Some(refused.into_http()));
        }
        Answer::Called(self.inner.call(req.map(|body| {
            charged.inner = body;
            Body::new(charged)
        })))
    }
}

/// A call's answer: the service's, or a refusal made before it was called.
pub(super) enum Answer<F> {
    Called(F),
    Refused(Option<http::Response<Body>>),
}

impl<F, E> std::future::Future for Answer<F>
where
    F: std::future::Future<Output = Result<http::Response<Body>, E>> + Unpin,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Called(f) => Pin::new(f).poll(cx),
            Answer::Refused(r) => Poll::Ready(Ok(r
                .take()
                .unwrap_or_else(|| Status::internal("a refusal was polled twice").into_http()))),
        }
    }
}

/// A request body whose bytes are charged to the budget while it lives.
struct Charged {
    inner: Body,
    rules: Arc<Rules>,
    /// The header block's size, charged before the call and with each message.
    headers: usize,
    /// Bytes charged for this request.
    held: usize,
    /// The prefix of the next message, as far as it has come.
    prefix: [u8; PREFIX],
    prefix_len: usize,
    /// Bytes of the current message still to come after its prefix.
    remaining: usize,
    /// When the message now arriving sent its first byte.
    message_started: Option<Instant>,
    /// Set while the body waits for the rest of a message.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Charged {
    /// Charges nothing yet; the body is set once the header block is charged.
    fn new(rules: Arc<Rules>, headers: usize) -> Self {
        Self {
            inner: Body::empty(),
            rules,
            headers,
            held: 0,
            prefix: [0; PREFIX],
            prefix_len: 0,
            remaining: 0,
            message_started: None,
            deadline: None,
        }
    }

    /// Follows the message framing through `data`, charging each message when its
    /// prefix is complete.
    fn account(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                if self.remaining == 0 {
                    self.message_done();
                }
                continue;
            }
            if self.prefix_len == 0 {
                self.message_started = Some(Instant::now());
            }
            let n = (PREFIX - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len < PREFIX {
                continue;
            }
            self.prefix_len = 0;
            let len = u32::from_be_bytes([
                self.prefix[1],
                self.prefix[2],
                self.prefix[3],
                self.prefix[4],
            ]) as usize;
            self.remaining = len;
            let message = if len > self.rules.max_message {
                PREFIX
            } else {
                PREFIX + len
            };
            self.hold(self.headers + message)?;
            if self.remaining == 0 {
                self.message_done();
            }
        }
        Ok(())
    }

    /// Raises this request's charge to `total`, if it holds less.
    fn hold(&mut self, total: usize) -> Result<(), Status> {
        if total <= self.held {
            return Ok(());
        }
        let more = total - self.held;
        if !self.rules.budget.charge(more, total, self.rules.limit) {
            return Err(Status::resource_exhausted(refusal(self.rules.limit)));
        }
        self.held = total;
        Ok(())
    }

    fn message_done(&mut self) {
        self.message_started = None;
        self.deadline = None;
    }

    /// Whether the message now arriving has run past its time; when not yet, a
    /// timer wakes the reader when it would.
    fn late(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(started) = self.message_started else {
            return false;
        };
        let timeout = self.rules.message_timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until((started + timeout).into())));
        deadline.as_mut().poll(cx).is_ready()
    }
}

impl HttpBody for Charged {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(refused) = this.account(data) {
                        return Poll::Ready(Some(Err(refused)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if this.late(cx) {
                    this.message_done();
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "request message not received in full within --request-timeout ({}) \
                         of its first byte",
                        humantime::format_duration(this.rules.message_timeout)
                    )))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        self.rules.budget.release(self.held);
    }
}

/// The HTTP/2 flow-control window Vakt gives each connection (and each stream):
/// what a peer may send that the server has not read yet. Its share of the budget,
/// so the bytes HTTP/2 holds unread on every connection together are at most
/// about the budget again; at least the protocol's default (64 KiB), at most 4 MiB
/// per connection and 1 MiB per stream.
pub(super) fn windows(budget: usize, max_connections: usize) -> (u32, u32) {
    const MIN: usize = 65_535;
    let share = (budget / max_connections.max(1)).clamp(MIN, 4 << 20);
    let stream = share.min(1 << 20);
    (stream as u32, share as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_requests_pass_a_full_budget_and_large_ones_do_not() {
        let b = Budget::default();
        assert!(b.charge(9_000, 9_000, 10_000));
        assert!(!b.charge(2_000, 2_000, 10_000), "past the limit");
        assert!(b.charge(900, 900, 10_000), "tiny: counted past the limit");
        assert_eq!(b.used(), 9_900);
        b.release(9_000);
        assert!(b.charge(2_000, 2_000, 10_000));
        {
            let mut held = b.holder(10_000);
            held.hold(5_000).unwrap();
            assert!(held
                .hold(20_000)
                .unwrap_err()
                .contains("--max-buffered-request-bytes"));
            assert_eq!(b.used(), 2_900 + 5_000);
        }
        assert_eq!(b.used(), 2_900, "given back when dropped");
    }

    #[test]
    fn windows_share_the_budget_between_connections() {
        assert_eq!(windows(64 << 20, 900), (74_565, 74_565));
        assert_eq!(windows(16 << 20, 900), (65_535, 65_535));
        assert_eq!(windows(64 << 20, 16), (1 << 20, 4 << 20));
    }
}
