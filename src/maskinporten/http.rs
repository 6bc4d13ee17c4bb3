//! The HTTP client for Maskinporten, Altinn's token exchange and the identity
//! provider's JWKS: one request per connection (tokens and keys are cached, so
//! requests are rare), HTTPS with the built-in roots plus an optional extra CA,
//! plain http only to loopback, every answer bounded in size and time.

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

/// The largest answer read: metadata, a JWKS or a token answer are a few KB.
const MAX_BODY: usize = 256 * 1024;
const JSON: &str = "application/json";
/// In the reason given when an answer is larger than the caller reads.
pub(crate) const TOO_LARGE: &str = "at most";

/// Whether `url`'s host is this machine: only there is plain http allowed.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// An answer: its status and body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(crate) struct HttpClient {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl HttpClient {
    /// A client trusting webpki-roots (Mozilla's set, built in: the same in every
    /// image) and the `extra_roots` (DER).
    pub fn new(
        extra_roots: &[Vec<u8>],
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for der in extra_roots {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| format!("extra_ca_file: a certificate is not a usable CA: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            connect_timeout,
            request_timeout,
        })
    }

    pub async fn get(&self, url: &Url) -> Result<Answer, String> {
        self.send(url, hyper::Method::GET, None, None, JSON, MAX_BODY)
            .await
    }

    pub async fn post_form(&self, url: &Url, form: String) -> Result<Answer, String> {
        self.send(url, hyper::Method::POST, Some(form), None, JSON, MAX_BODY)
            .await
    }

    /// A GET with `authorization: Bearer <bearer>`, accepting plain text or
    /// JSON (Altinn's token exchange answers either).
    pub async fn get_bearer(&self, url: &Url, bearer: &str) -> Result<Answer, String> {
        self.send(
            url,
            hyper::Method::GET,
            None,
            Some(bearer),
            "text/plain, application/json",
            MAX_BODY,
        )
        .await
    }

    /// A GET of JSON with `authorization: Bearer <bearer>`, reading at most
    /// `max_body` bytes (Altinn's lists are larger than a token answer).
    /// Redirects are not followed: the token goes to `url` alone.
    pub async fn get_json_bearer(
        &self,
        url: &Url,
        bearer: &str,
        max_body: usize,
    ) -> Result<Answer, String> {
        self.send(url, hyper::Method::GET, None, Some(bearer), JSON, max_body)
            .await
    }

    /// One exchange, bounded by the request timeout as a whole. Errors are
    /// reasons for `Unavailable`; none quotes the request body (the grant) or
    /// the bearer token.
    async fn send(
        &self,
        url: &Url,
        method: hyper::Method,
        form: Option<String>,
        bearer: Option<&str>,
        accept: &'static str,
        max_body: usize,
    ) -> Result<Answer, String> {
        let shown = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.path()
        );
        match tokio::time::timeout(
            self.request_timeout,
            self.exchange(url, method, form, bearer, accept, max_body),
        )
        .await
        {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(format!("{shown}: {e}")),
            Err(_) => Err(format!(
                "{shown}: no answer within {:?}",
                self.request_timeout
            )),
        }
    }

    async fn exchange(
        &self,
        url: &Url,
        method: hyper::Method,
        form: Option<String>,
        bearer: Option<&str>,
        accept: &'static str,
        max_body: usize,
    ) -> Result<Answer, String> {
        let https = match url.scheme() {
            "https" => true,
            "http" if is_loopback(url) => false,
            "http" => return Err("plain http is refused off loopback".into()),
            s => return Err(format!("scheme {s:?} is not http(s)")),
        };
        let host = url.host_str().ok_or("no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("no port")?;
        let connect_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((connect_host.as_str(), port)),
        )
        .await
        .map_err(|_| format!("no connection within {:?}", self.connect_timeout))?
        .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if https {
            let name = match connect_host.parse::<IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
                Err(_) => rustls::pki_types::ServerName::try_from(connect_host.clone())
                    .map_err(|e| format!("host {connect_host:?}: {e}"))?,
            };
            Box::new(
                self.tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?,
            )
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        // The connection is driven here and dropped with the exchange: nothing
        // outlives the request timeout.
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let _abort = AbortOnDrop(driver);
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, accept)
            .header(
                hyper::header::USER_AGENT,
                concat!("vakt/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(b) = bearer {
            let mut value = hyper::header::HeaderValue::try_from(format!("Bearer {b}"))
                .map_err(|_| "the bearer token cannot be sent in a header".to_owned())?;
            value.set_sensitive(true);
            req = req.header(hyper::header::AUTHORIZATION, value);
        }
        if form.is_some() {
            req = req.header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        let req = req
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(|e| format!("HTTP: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| format!("answer body: {e} ({TOO_LARGE} {max_body} bytes are read)"))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
