//! The sidecar's listeners, bound from the settings before it serves: the gRPC
//! listeners (TCP, TLS, a Unix socket), the AuthZEN one, and the TLS state that
//! follows certificate rotation.

use super::settings::Settings;
use crate::server::{self, Listener};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// Every listener, bound.
pub(super) struct Listeners {
    /// The gRPC listeners: the Unix socket, then TCP (plain or TLS).
    pub(super) grpc: Vec<Listener>,
    /// Where TCP gRPC listens, and whether with TLS.
    pub(super) tcp: Option<(SocketAddr, bool)>,
    /// The AuthZEN listener, where it listens, and whether with TLS.
    pub(super) authzen: Option<(Listener, SocketAddr, bool)>,
    /// Each TLS listener's state: read again when its files change, and its
    /// allow-list set on SIGHUP.
    pub(super) tls: Vec<Arc<server::Tls>>,
}

/// How often the TLS files are looked at for rotation.
const TLS_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Listeners {
    /// Binds every listener the settings name.
    pub(super) async fn bind(settings: &Settings) -> anyhow::Result<Self> {
        let fixed = &settings.fixed;
        let mut grpc = Vec::new();
        let mut tls_state: Vec<Arc<server::Tls>> = Vec::new();
        // The gRPC listener's TLS; its allow-list also guards the Unix socket.
        let grpc_tls = settings
            .tls_files()
            .map_err(anyhow::Error::msg)?
            .map(server::Tls::load)
            .transpose()?
            .map(Arc::new);
        if let Some(tls) = &grpc_tls {
            tls_state.push(tls.clone());
        }
        if let Some(path) = &fixed.listen_unix {
            grpc.push(Listener::Unix(
                bind_unix(path, fixed.listen_unix_mode)?,
                grpc_tls.clone(),
            ));
            tracing::info!(path = %path.display(), mode = format!("{:o}", fixed.listen_unix_mode), "listening on the unix socket");
        }
        let mut tcp = None;
        if let Some(addr) = fixed.listen.0 {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            tcp = Some((listener.local_addr()?, grpc_tls.is_some()));
            grpc.push(match grpc_tls {
                None => Listener::Tcp(listener),
                Some(tls) => Listener::Tls(listener, tls),
            });
        }
        let mut authzen = None;
        if let Some(addr) = fixed.authzen_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr} (--authzen-listen)"))?;
            let tls = settings
                .tls_files()
                .map_err(anyhow::Error::msg)?
                .map(server::Tls::load_http1)
                .transpose()?
                .map(Arc::new);
            let address = listener.local_addr()?;
            let on_tls = tls.is_some();
            let listener = match tls {
                None => Listener::Tcp(listener),
                Some(tls) => {
                    tls_state.push(tls.clone());
                    Listener::Tls(listener, tls)
                }
            };
            authzen = Some((listener, address, on_tls));
        }
        Ok(Self {
            grpc,
            tcp,
            authzen,
            tls: tls_state,
        })
    }

    /// Certificate rotation: each TLS listener reads its files again when they
    /// change, until the task is dropped. None without TLS.
    pub(super) fn follow_tls(&self) -> Option<tokio::task::JoinHandle<()>> {
        let watched = self.tls.clone();
        (!watched.is_empty()).then(|| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(TLS_RELOAD_EVERY);
                loop {
                    tick.tick().await;
                    for tls in &watched {
                        tls.reload_if_changed();
                    }
                }
            })
        })
    }
}

/// Binds the Unix socket: a socket left by an earlier run is replaced (never any
/// other file), and the permissions are set before anyone can connect.
fn bind_unix(path: &std::path::Path, mode: u32) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)
                .with_context(|| format!("removing the old socket {}", path.display()))?;
        }
    }
    // Bound with no permissions at all, then opened up to `mode`: no one can
    // connect in between.
    // SAFETY: umask only sets the process's file-creation mask.
    let old = unsafe { libc::umask(0o777) };
    let bound = tokio::net::UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("binding --listen-unix {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the permissions of {}", path.display()))?;
    Ok(listener)
}
