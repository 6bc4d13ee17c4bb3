//! The one wrapper every gRPC call runs in: its span, its admission, its timing
//! and count, and its failure turned into a status. Each call's body is a
//! [`Call`], implemented by its request message in a file of its own
//! (`authorize.rs`, `batch.rs`, `resolve.rs`, `reverse.rs`, `status.rs`).

use super::call::{note_call, CallMeta};
use super::error::CallError;
use super::metrics::Method;
use super::state::Vakt;
use std::future::Future;
use std::time::Instant;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

/// How a call is let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// A decision: admitted under the in-flight limits, with what the transport
    /// tells about the caller for the decision log.
    Decision,
    /// A reverse query: asked only when they are on and the caller may ask them
    /// (checked before admission, so a refused one takes no place), then
    /// admitted.
    Reverse,
    /// Always answered, neither admitted nor traced: an operator must be able to
    /// look at an overloaded sidecar.
    Open,
}

/// What the wrapper tells a call's body about its caller.
#[derive(Default)]
pub(super) struct Caller {
    /// For the decision log; empty unless the call is a decision and a log
    /// records it.
    pub(super) meta: CallMeta,
    /// The caller's mutual-TLS identity, for a reverse query's log line.
    pub(super) identity: Option<String>,
}

/// One call of the service, implemented by its request message.
pub(super) trait Call: Send + Sized + 'static {
    /// The response message.
    type Answer: Send;
    /// What the call is counted and traced as.
    const METHOD: Method;
    /// How the call is let in.
    const GATE: Gate;

    /// Answers the request; a failure becomes the status answered.
    fn handle(
        self,
        vakt: &Vakt,
        caller: &Caller,
    ) -> impl Future<Output = Result<Self::Answer, CallError>> + Send;
}

/// Runs one call: in its span (when traces are exported), admitted as its gate
/// says, then counted by method and status with its duration.
pub(super) async fn run<C: Call>(
    vakt: &Vakt,
    req: Request<C>,
) -> Result<Response<C::Answer>, Status> {
    let started = Instant::now();
    if C::GATE == Gate::Open {
        note_call(&req);
        let answer = req.into_inner().handle(vakt, &Caller::default()).await;
        return vakt.finish(C::METHOD, started, answer, &tracing::Span::none());
    }
    let span = vakt.call_span(&req, C::METHOD);
    let answer = async {
        let identity = match C::GATE {
            Gate::Reverse => vakt.reverse_allowed(&req)?,
            Gate::Decision | Gate::Open => None,
        };
        let _admitted = vakt.admit(&req)?;
        let meta = match C::GATE {
            Gate::Decision => CallMeta::of(&req, &vakt.log()),
            Gate::Reverse | Gate::Open => CallMeta::default(),
        };
        req.into_inner()
            .handle(vakt, &Caller { meta, identity })
            .await
    }
    .instrument(span.clone())
    .await;
    vakt.finish(C::METHOD, started, answer, &span)
}
