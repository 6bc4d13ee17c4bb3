//! TLS on the TCP listener, with rustls: the server's certificate, and with a
//! client CA mutual TLS, where each client certificate's identity (a SAN URI such
//! as a SPIFFE ID, or a DNS name) must be on the allow-list. The files are read
//! again when they change, and the new configuration serves new connections while
//! those already open keep theirs.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where the TLS settings come from.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// CA certificates client certificates must chain to; set, clients must
    /// present one (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Client identities allowed: exact SAN URIs or DNS names, or prefixes ending
    /// in `*` (`spiffe://example.org/ns/billing/*`). Empty: any client certificate
    /// the CA signed.
    pub allow: Vec<String>,
}

/// A TLS file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TlsError {
    pub file: String,
    pub message: String,
}

fn fail(file: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError {
        file: file.display().to_string(),
        message: message.to_string(),
    }
}

/// The TLS state of a listener: the configuration new connections get.
pub struct Tls {
    files: TlsFiles,
    config: ArcSwap<rustls::ServerConfig>,
    /// When each file was last seen changed, to notice rotation.
    stamps: Mutex<Vec<Option<SystemTime>>>,
    /// The allow-list, which a SIGHUP may change.
    allow: ArcSwap<Vec<String>>,
    /// The application protocols offered: HTTP/2 for gRPC, HTTP/1.1 for AuthZEN.
    alpn: Vec<Vec<u8>>,
}

impl Tls {
    /// Reads every file and builds the configuration; every problem is an error
    /// naming the file.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        Self::load_with(files, vec![b"h2".to_vec()])
    }

    /// [`Tls::load`] for an HTTP/1.1 listener (the AuthZEN API).
    pub fn load_http1(files: TlsFiles) -> Result<Self, TlsError> {
        Self::load_with(files, vec![b"http/1.1".to_vec()])
    }

    fn load_with(files: TlsFiles, alpn: Vec<Vec<u8>>) -> Result<Self, TlsError> {
        let config = build(&files, &alpn)?;
        let stamps = Mutex::new(stamps(&files));
        Ok(Self {
            allow: ArcSwap::from_pointee(files.allow.clone()),
            files,
            config: ArcSwap::from_pointee(config),
            stamps,
            alpn,
        })
    }

    /// A new allow-list, for the connections from now on.
    pub fn set_allow(&self, allow: Vec<String>) {
        self.allow.store(Arc::new(allow));
    }

    /// The acceptor for a new connection, with the current configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// Reads the files again if any changed. A new configuration that fails keeps
    /// the old one serving, with an ERROR.
    pub fn reload_if_changed(&self) {
        let now = stamps(&self.files);
        {
            let Ok(mut seen) = self.stamps.lock() else {
                return;
            };
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match build(&self.files, &self.alpn) {
            Ok(c) => {
                self.config.store(Arc::new(c));
                tracing::info!(cert = %self.files.cert.display(), "TLS files changed; new connections use them");
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS files changed but cannot be used; the previous ones keep serving")
            }
        }
    }

    /// Whether the allow-list admits a caller known by `name` in another way (a
    /// Unix-socket caller's `unix:uid:N`). Without mutual TLS or without an
    /// allow-list, every caller is admitted, as every certificate the CA signed is.
    pub fn admits(&self, name: &str) -> bool {
        let allow = self.allow.load();
        self.files.client_ca.is_none() || allow.is_empty() || allow.iter().any(|a| allows(a, name))
    }

    /// The client's identity if the allow-list admits it: the first of its
    /// certificate's SAN URIs and DNS names, or, without an allow-list, the first
    /// of them at all. `Err` names what the certificate holds, for the log.
    pub fn admit(&self, chain: Option<&[CertificateDer<'_>]>) -> Result<Option<String>, String> {
        if self.files.client_ca.is_none() {
            return Ok(None);
        }
        let Some(leaf) = chain.and_then(|c| c.first()) else {
            return Err("no client certificate".into());
        };
        let names = identities(leaf);
        let allow = self.allow.load();
        if allow.is_empty() {
            return Ok(names.into_iter().next());
        }
        names
            .iter()
            .find(|n| allow.iter().any(|a| allows(a, n)))
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                if names.is_empty() {
                    "a certificate without SAN URIs or DNS names".into()
                } else {
                    names.join(", ")
                }
            })
    }
}

/// Whether allow-list entry `a` admits identity `n`.
pub(super) fn allows(a: &str, n: &str) -> bool {
    match a.strip_suffix('*') {
        Some(prefix) => n.starts_with(prefix),
        None => a == n,
    }
}

/// The SAN URIs, then the DNS names, of a certificate.
fn identities(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(u) => uris.push((*u).to_owned()),
            GeneralName::DNSName(d) => dns.push((*d).to_owned()),
            _ => {}
        }
    }
    uris.extend(dns);
    uris
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

/// A PEM file's text: a regular file (after symbolic links, as a Kubernetes
/// Secret mount has them) of at most 1 MiB, so a FIFO or a device named as a key
/// is refused at once instead of hanging or filling memory.
fn read(file: &Path) -> Result<String, TlsError> {
    crate::problem::read_file(file, crate::problem::MAX_SMALL_FILE_BYTES).map_err(|m| fail(file, m))
}

fn build(files: &TlsFiles, alpn: &[Vec<u8>]) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&files.cert, e))?;
    if chain.is_empty() {
        return Err(fail(&files.cert, "holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(read(&files.key)?.as_bytes())
        .map_err(|e| fail(&files.key, format!("no PEM private key: {e}")))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(read(ca)?.as_bytes()) {
                roots
                    .add(cert.map_err(|e| fail(ca, e))?)
                    .map_err(|e| fail(ca, e))?;
            }
            if roots.is_empty() {
                return Err(fail(ca, "holds no PEM certificate"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| fail(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| fail(&files.key, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_entries_match_exactly_or_by_prefix() {
        assert!(allows("spiffe://e.org/app", "spiffe://e.org/app"));
        assert!(!allows("spiffe://e.org/app", "spiffe://e.org/app2"));
        assert!(allows("spiffe://e.org/ns/*", "spiffe://e.org/ns/billing"));
        assert!(!allows("spiffe://e.org/ns/*", "spiffe://e.org/other"));
    }
}
