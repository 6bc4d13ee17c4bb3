//! The gRPC server: the `vakt.v1.Authorizer` service with health checking and
//! server reflection. The caller hands in the listener and the shutdown signal,
//! so tests can bind 127.0.0.1:0 and stop the server when they are done.
//!
//! One file per call (authorize, batch, resolve, status, and the reverse queries
//! in `reverse.rs` with their page tokens in `cursor.rs`) behind one dispatcher
//! (`dispatch.rs`: one wrapper admits, traces, times and counts
//! every call). What every call shares is `state.rs` (the `Vakt` state, built by
//! `Vakt::new` alone) with its settings in `options.rs`; `admission.rs` lets
//! calls in, `call.rs` follows one call through; every failure is a
//! `CallError`, mapped to a status in `error.rs`. Around them: `accept.rs` takes
//! connections (TCP, TLS from `tls.rs`, a Unix socket) under their limits;
//! `budget.rs` bounds the request bytes all calls hold at once;
//! `metrics.rs` holds what calls count and `export.rs` renders it (Prometheus,
//! OTLP); `admin.rs` is the HTTP listener for `/metrics` and the probes;
//! `authzen/` is the OpenID AuthZEN API over HTTP, deciding through the same
//! calls.

mod accept;
mod admin;
mod admission;
mod authorize;
mod authorize_with_token;
pub(crate) mod authzen;
mod batch;
mod binding;
mod budget;
mod call;
mod convert;
mod cursor;
mod dispatch;
pub mod envoy;
mod envoy_check;
mod error;
mod export;
mod issued;
mod metrics;
mod options;
mod resolve;
mod reverse;
mod state;
mod status;
mod tls;
mod verify_token;

pub use accept::{incoming, AcceptLimits, Connections, Listener};
pub use admin::{serve_admin, AdminState};
pub use authzen::serve_authzen;
pub use binding::{Binding, EnvoyBinding};
pub use export::{register_otlp, render as render_metrics};
pub use metrics::ServerMetrics;
pub use options::{
    Limits, Options, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BUFFERED_REQUEST_BYTES, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_SEQUENCE_WAIT,
};
pub use state::{Shadow, Vakt};

/// The target of the span each call gets when traces are exported, so the
/// exporter can take those spans and nothing else.
pub const CALL_SPAN_TARGET: &str = "vakt::call";
pub use tls::{Tls, TlsError, TlsFiles};

use crate::proto::{self, authorizer_server::AuthorizerServer};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

struct Service(Arc<Vakt>);

// Each call is a `dispatch::Call` in its own file; `dispatch::run` wraps them all.
#[tonic::async_trait]
impl proto::authorizer_server::Authorizer for Service {
    async fn authorize(
        &self,
        req: Request<proto::AuthorizeRequest>,
    ) -> Result<Response<proto::AuthorizeResponse>, Status> {
        dispatch::run(&self.0, req).await
    }

    async fn authorize_batch(
        &self,
        req: Request<proto::AuthorizeBatchRequest>,
    ) -> Result<Response<proto::AuthorizeBatchResponse>, Status> {
        dispatch::run(&self.0, req).await
    }

    async fn resolve_system_user(
        &self,
        req: Request<proto::ResolveSystemUserRequest>,
    ) -> Result<Response<proto::ResolveSystemUserResponse>, Status> {
        dispatch::run(&self.0, req).await
    }

    async fn who_can(
        &self,
        req: Request<proto::WhoCanRequest>,
    ) -> Result<Response<proto::WhoCanResponse>, Status> {
        dispatch::run(&self.0, req).await
    }

    async fn what_can(
        &self,
        req: Request<proto::WhatCanRequest>,
    ) -> Result<Response<proto::WhatCanResponse>, Status> {
        dispatch::run(&self.0, req).await
    }

    async fn authorize_with_token(
        &self,
        req: Request<proto::AuthorizeWithTokenRequest>,
    ) -> Result<Response<proto::AuthorizeWithTokenResponse>, Status> {
        dispatch::run(&self.0, req).await
    }

    async fn verify_token(
        &self,
        req: Request<proto::VerifyTokenRequest>,
    ) -> Result<Response<proto::VerifyTokenResponse>, Status> {
        dispatch::run(&self.0, req).await
    }

    async fn status(
        &self,
        req: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        dispatch::run(&self.0, req).await
    }
}

/// The transport settings every Vakt listener uses, chosen with the load benchmark
/// (BENCHMARKS.md, "gRPC load against a floor"):
///
/// - `TCP_NODELAY` on every accepted socket: a response is a few hundred bytes, and
///   without it each one waits for Nagle and the peer's delayed ACK (about 40 ms).
/// - HTTP/2 flow-control windows that share `max_buffered_request_bytes` between
///   the connections (`budget::windows`: 72 KiB each with the defaults, at most
///   1 MiB per stream and 4 MiB per connection), so what peers may send that is not
///   read yet is bounded in all, like what is read; no adaptive window (its BDP
///   pings buy nothing on loopback or in a pod, and it would grow the windows).
/// - HTTP/2 keepalive pings every 30 s, and a peer that does not answer one within
///   10 s is dropped, so dead connections do not pile up.
/// - At most `max_concurrent_streams` streams per connection, and a time limit per
///   call (`request_timeout`; a shorter client deadline wins).
/// - Header blocks of at most `max_header_bytes`, and a connection that keeps
///   opening and resetting streams (the HTTP/2 "rapid reset" attack) is closed.
///
/// Connections themselves are limited where they are accepted ([`incoming`]).
pub fn transport(o: &Limits) -> tonic::transport::Server {
    let (stream_window, connection_window) =
        budget::windows(o.max_buffered_request_bytes, o.max_connections);
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(o.max_concurrent_streams))
        .http2_max_header_list_size(o.max_header_bytes)
        .http2_max_pending_accept_reset_streams(Some(64))
        .timeout(o.request_timeout)
        .initial_stream_window_size(stream_window)
        .initial_connection_window_size(connection_window)
        .http2_adaptive_window(Some(false))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
}

/// Serves until `shutdown` completes, then finishes in-flight calls and returns.
pub async fn serve(
    listener: TcpListener,
    vakt: Arc<Vakt>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_on(vec![Listener::Tcp(listener)], vakt, shutdown).await
}

/// [`serve`] on several listeners (TCP and a Unix socket) at once.
pub async fn serve_on(
    listeners: Vec<Listener>,
    vakt: Arc<Vakt>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthorizerServer<Service>>()
        .await;
    // It holds the state weakly: when the server future is dropped (shutdown past
    // its grace period), the decision log must still close once the caller lets go.
    let health = tokio::spawn(report_log_health(health_reporter, Arc::downgrade(&vakt)));
    // Reflection in both versions: grpcurl and tonic speak v1; Python's
    // reflection client, Evans and Postman still speak v1alpha. Each lists the
    // other as well, so either version shows everything that is served.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor set is valid");
    let reflection_v1alpha = reflection_builder()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptor set is valid");
    let o = vakt.limits().clone();
    let connections = vakt.connections().clone();
    let request_budget = vakt.request_budget().clone();
    // A request larger than the limit is refused from its length prefix, before
    // its body is read or decoded; the same limit for every service, so the
    // budget knows the most any message can hold.
    let vakt_for_envoy = vakt.clone();
    let authorizer =
        AuthorizerServer::new(Service(vakt)).max_decoding_message_size(o.max_message_bytes);
    // Envoy's ext_authz Check is always served; without routes configured it
    // denies every request (fail closed), saying why.
    let envoy_check =
        envoy_check::service(vakt_for_envoy).max_decoding_message_size(o.max_message_bytes);
    let health_service = health_service.max_decoding_message_size(o.max_message_bytes);
    let reflection = reflection.max_decoding_message_size(o.max_message_bytes);
    let reflection_v1alpha = reflection_v1alpha.max_decoding_message_size(o.max_message_bytes);
    // Every service's request bodies are charged to one budget.
    let charging = budget::Charging::new(
        request_budget,
        o.max_buffered_request_bytes,
        o.max_message_bytes,
        o.request_timeout,
    );
    let served = transport(&o)
        .add_service(charging.wrap(health_service))
        .add_service(charging.wrap(reflection))
        .add_service(charging.wrap(reflection_v1alpha))
        .add_service(charging.wrap(authorizer))
        .add_service(charging.wrap(envoy_check))
        .serve_with_incoming_shutdown(
            accept::incoming_counted(listeners, &o.accept_limits(), &connections).http2(),
            shutdown,
        )
        .await;
    health.abort();
    served
}

/// How often the health service looks at the decision log.
const HEALTH_EVERY: Duration = Duration::from_millis(100);

/// Keeps the health service truthful about the decision log: while a durable sink
/// cannot write, every decision call fails, so the decision service (and the server
/// as a whole, for probes that ask about "") is NOT_SERVING until a write succeeds.
async fn report_log_health(
    reporter: tonic_health::server::HealthReporter,
    vakt: std::sync::Weak<Vakt>,
) {
    use tonic_health::ServingStatus;
    let name = <AuthorizerServer<Service> as tonic::server::NamedService>::NAME;
    let mut failing = false;
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    loop {
        tick.tick().await;
        let Some(vakt) = vakt.upgrade() else { return };
        let now = vakt.log().durable_failing();
        drop(vakt);
        if now == failing {
            continue;
        }
        failing = now;
        let status = if failing {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        };
        for service in ["", name] {
            reporter.set_service_status(service, status).await;
        }
    }
}
