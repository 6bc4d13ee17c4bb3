//! One call as it passes through: what its transport and headers tell (for the
//! decision log), its span, how it ends (counted, turned into a status), and
//! decision ids.

use crate::decision_log::{Caller, DecisionLog, Trace};
use tonic::Request;

pub(crate) use super::state::Vakt;

impl Vakt {
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
        self.metrics().call(method, code, started.elapsed());
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
        if !self.limits().traces {
            return tracing::Span::none();
        }
        use opentelemetry::propagation::TextMapPropagator as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        // Envoy's Check is a call of Envoy's service, not Vakt's.
        let (service, name) = match method {
            super::metrics::Method::EnvoyCheck => ("envoy.service.auth.v3.Authorization", "Check"),
            _ => ("vakt.v1.Authorizer", method.name()),
        };
        let span = tracing::info_span!(
            target: "vakt::call",
            "call",
            otel.name = format!("{service}/{name}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = name,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&Metadata(req.metadata()));
        let _ = span.set_parent(parent);
        span
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
            let metadata = req.metadata();
            // The two headers read on every call are looked up by key, not
            // parsed from their names each time.
            let value = match name {
                "x-vakt-caller" => metadata.get(&HEADER_KEYS.0),
                "traceparent" => metadata.get(&HEADER_KEYS.1),
                _ => metadata.get(name),
            };
            value.and_then(|v| v.to_str().ok()).map(str::to_owned)
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
                        None => peer.map(peer_text),
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

/// The keys of the `x-vakt-caller` and `traceparent` headers.
static HEADER_KEYS: std::sync::LazyLock<(
    tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
    tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
)> = std::sync::LazyLock::new(|| {
    (
        tonic::metadata::MetadataKey::from_static("x-vakt-caller"),
        tonic::metadata::MetadataKey::from_static("traceparent"),
    )
});

/// A peer address as text. A connection's calls come from one address, so each
/// thread keeps the last one it formatted.
fn peer_text(a: std::net::SocketAddr) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::SocketAddr, String)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.try_with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((at, text)) if *at == a => text.clone(),
            _ => {
                let text = a.to_string();
                *last = Some((a, text.clone()));
                text
            }
        }
    })
    .unwrap_or_else(|_| a.to_string())
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
