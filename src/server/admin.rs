//! The admin HTTP listener, apart from the gRPC port: `/metrics` in the
//! Prometheus text format, and `/healthz` and `/readyz` for probes that do not
//! speak gRPC.
//!
//! It starts before the first snapshot is loaded, so a probe sees "not ready"
//! while Vakt loads rather than a refused connection, and it holds the sidecar's
//! state only weakly, so it never keeps the decision log open at shutdown.

use super::call::Vakt;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::net::TcpListener;

/// What the admin listener reports on: set once the sidecar is serving.
#[derive(Default)]
pub struct AdminState {
    vakt: OnceLock<Weak<Vakt>>,
}

impl AdminState {
    /// The sidecar is loaded and serving.
    pub fn serving(&self, vakt: &Arc<Vakt>) {
        let _ = self.vakt.set(Arc::downgrade(vakt));
    }
}

/// Most admin connections served at once; scrapes and probes need a handful.
const MAX_CONNECTIONS: usize = 64;

/// How long a request's headers may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve_admin(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&req, &state)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(sock), service)
                .await;
            drop(permit);
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

fn respond(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
    }
    let vakt = state.vakt.get().and_then(Weak::upgrade);
    match (req.uri().path(), vakt) {
        // Live as long as the process can answer.
        ("/healthz", _) => text(StatusCode::OK, PLAIN, "ok\n".into()),
        ("/readyz", None) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            "not ready: loading\n".into(),
        ),
        ("/readyz", Some(v)) => {
            if v.log().durable_failing() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    "not ready: the durable decision log cannot write\n".into(),
                )
            } else {
                text(StatusCode::OK, PLAIN, "ready\n".into())
            }
        }
        ("/metrics", vakt) => {
            let body = match vakt {
                Some(v) => super::export::render(&v),
                None => "# HELP vakt_ready Whether Vakt has loaded and serves.\n# TYPE vakt_ready gauge\nvakt_ready 0\n".into(),
            };
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}
