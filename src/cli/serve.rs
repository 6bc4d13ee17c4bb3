//! `vakt serve`: the sidecar, wired together. Reads and checks every setting
//! (`settings.rs`), loads the source, opens the decision log, binds the
//! listeners (`listen.rs`), and serves until SIGTERM or Ctrl-C; SIGHUP reloads
//! the source and the settings (`reload.rs`).

pub(super) mod binding;
mod listen;
mod reload;
pub(super) mod settings;

pub(super) use settings::ServeArgs;

use super::telemetry;
use crate::decision_log::DecisionLog;
use crate::server::{self, Vakt};
use crate::source::Source;
use anyhow::Context as _;
use settings::Settings;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Checks the settings as `vakt serve` would (`vakt config check`): every
/// problem, the binding tables' among them, so that all of them are reported at
/// once.
pub(super) fn check_settings(args: &ServeArgs) -> Result<(), Vec<String>> {
    Settings::from(args.clone()).check_with_tables().map(drop)
}

pub(super) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Until the runtime's handlers are in place (`serve`), a SIGHUP must not kill
    // the process with its default action.
    // SAFETY: setting a signal's disposition to "ignore" has no preconditions.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    // A write past a file-size limit (RLIMIT_FSIZE) must fail with EFBIG, which the
    // decision log handles, rather than kill the process.
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let settings = Settings::from(args);
    let config_error = |problems: Vec<String>| {
        for p in problems {
            eprintln!("vakt: {p}");
        }
        Ok(ExitCode::from(super::config::EX_CONFIG))
    };
    let tables = match settings.check_with_tables() {
        Ok(t) => t,
        Err(problems) => return config_error(problems),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // Built in the runtime's context (a client may start tasks), before anything
    // listens: a binding that cannot be built is a bad configuration.
    let binding = match tables {
        None => None,
        Some(t) => {
            let _in_runtime = rt.enter();
            match binding::build(t, None) {
                Ok((built, _)) => Some(built),
                Err(problems) => return config_error(problems),
            }
        }
    };
    // Checked with the other settings above.
    let otlp = telemetry::Otlp::from_env(settings.fixed.otlp_endpoint.as_deref())
        .map_err(|e| anyhow::anyhow!(crate::url_secrets::mask_url(&e)))?;
    rt.block_on(async {
        let telemetry = telemetry::init(
            &settings.live.log_level,
            settings.fixed.log_format,
            &otlp,
            settings.fixed.otlp_metrics_interval,
        )
        .map_err(|e| {
            let mut message = settings.mask_urls(format!("{e:#}"));
            for (url, _) in otlp.traces.iter().chain(&otlp.metrics) {
                message = crate::url_secrets::mask_in(&message, url);
            }
            anyhow::anyhow!(message)
        })?;
        let served = serve(settings, binding, &telemetry).await;
        telemetry.shutdown();
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    settings: Settings,
    binding: Option<binding::Built>,
    telemetry: &telemetry::Telemetry,
) -> anyhow::Result<()> {
    // Handlers first: a SIGHUP or SIGTERM that arrives while a large world is still
    // loading must not kill the process with the signal's default action.
    let hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let fixed = &settings.fixed;
    // The admin listener first, so probes see "not ready" while the world loads.
    let admin_state = Arc::new(server::AdminState::default());
    let admin = match fixed.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --metrics-listen {addr}"))?;
            tracing::info!(address = %listener.local_addr()?, "admin listening");
            Some(tokio::spawn(server::serve_admin(
                listener,
                admin_state.clone(),
            )))
        }
        None => None,
    };
    tracing::info!("loading");
    let (source, snapshot) = Source::load(
        fixed.sources.paths(),
        fixed.sources.database().cloned(),
        fixed.data_settle,
        release_freed_memory,
    )
    .await?;
    let (log, writers) = DecisionLog::open(&settings.live.decision_log, &settings.log_options()?)
        .map_err(|e| {
        anyhow::anyhow!(settings.mask_urls(format!("{:#}", anyhow::Error::from(e))))
    })?;
    // Writers of sinks a SIGHUP opens join these, so a stop waits for all of them.
    let writers = Arc::new(std::sync::Mutex::new(writers));
    let counts = snapshot.world.counts();
    tracing::info!(
        revision = %snapshot.revision,
        data_sequence = snapshot.data.sequence,
        policies = snapshot.policies.set.policies().count(),
        entities = counts.entities(),
        client_links = counts.client_links,
        "snapshot loaded"
    );
    let default_max_staleness = source.default_max_staleness();
    let mut vakt = Vakt::new(snapshot, log)
        .with_data_source(source.kind())
        .with_limits(fixed.limits())
        .with_options(settings.live.options(default_max_staleness));
    if let Some(b) = &binding {
        tracing::info!(routes = b.routes(), "binding: Maskinporten client ready");
        vakt = vakt.with_binding(b.binding.clone());
    }
    let vakt = Arc::new(vakt);
    reload::load_shadow(&settings.live, fixed, &vakt);
    // The follower starts, and its watchers are registered, before the
    // "listening" line: a file opened for writing right after it (as a test or an
    // operator's script may do) is seen as open, not read half-written once it
    // has merely stayed the same for the settle interval.
    let follow = Follower::start(source.follow(
        vakt.snapshot().clone(),
        vakt.data().clone(),
        hangup,
        crate::source::Follow {
            rescan_interval: fixed.rescan_interval,
            poll_interval: fixed.poll_interval,
            settle: fixed.data_settle,
        },
        release_freed_memory,
    ))
    .context("starting the data follower's thread")?;
    let listeners = listen::Listeners::bind(&settings).await?;
    let tls_reload = listeners.follow_tls();
    // Ready before the "listening" line, so a probe that follows that line
    // (as tests and scripts do) never sees "not ready: loading".
    admin_state.serving(&vakt);
    if let Some((_, address, tls)) = &listeners.authzen {
        tracing::info!(%address, tls, "AuthZEN API listening");
    }
    if let Some((address, tls)) = listeners.tcp {
        tracing::info!(%address, tls, "listening");
    }
    if let Some(meter) = telemetry.meter() {
        server::register_otlp(&meter, Arc::downgrade(&vakt));
    }

    // The first SIGTERM (or Ctrl-C) stops accepting and lets calls in progress
    // finish; connections still open after the grace period (an idle client keeps
    // one open for ever) are closed. A second signal stops at once.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        shutdown_signal(&mut term).await;
        tracing::info!("stopping: no new calls; finishing those in progress");
        let _ = stopping_tx.send(true);
        shutdown_signal(&mut term).await;
        tracing::warn!("second stop signal: exiting at once");
        std::process::exit(1);
    });
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let authzen = listeners.authzen.map(|(listener, _, _)| {
        tokio::spawn(server::serve_authzen(
            vec![listener],
            vakt.clone(),
            fixed.authzen_base_url.clone(),
            stopped(stopping.clone()),
        ))
    });
    let (grace, unix_socket) = (fixed.shutdown_grace, fixed.listen_unix.clone());
    let settings_reload = tokio::spawn(reload::on_hangup(
        std::env::args_os().collect(),
        settings,
        Arc::downgrade(&vakt),
        reload::Targets {
            log_level: telemetry.log_level(),
            tls: listeners.tls,
            default_max_staleness,
            writers: writers.clone(),
            binding,
        },
    ));
    let serving = server::serve_on(listeners.grpc, vakt.clone(), stopped(stopping.clone()));
    tokio::select! {
        r = serving => r?,
        () = async {
            stopped(stopping).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "connections still open after the shutdown grace period; closing them");
        }
    }
    signals.abort();
    for task in [admin, tls_reload, Some(settings_reload), authzen]
        .into_iter()
        .flatten()
    {
        task.abort();
    }
    // The decision log's writers finish once every handle to it is gone, so stop
    // the follower (it holds the snapshot, not the log) and drop the state.
    follow.stop().await;
    drop(vakt);
    if let Some(path) = &unix_socket {
        let _ = std::fs::remove_file(path);
    }
    let writers = std::mem::take(&mut *writers.lock().unwrap_or_else(|e| e.into_inner()));
    writers.finish().await;
    tracing::info!("stopped");
    Ok(())
}

/// Hands the memory that building a snapshot used back to the system: the
/// allocator would otherwise keep it, and a world of a million entities is built
/// through about three times the memory it keeps.
fn release_freed_memory() {
    // SAFETY: mi_collect only frees memory the allocator no longer hands out; the
    // binary's global allocator is mimalloc (src/main.rs).
    unsafe { libmimalloc_sys::mi_collect(true) };
}

async fn shutdown_signal(term: &mut Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// The data follower, on a thread and a single-threaded runtime of its own: a
/// poll of the database (and its connection's I/O), a re-read file or a batch of
/// changes being applied then never holds a request worker, whose other calls
/// would wait behind it (issue 27, item 6). Snapshots reach the request path
/// through the lock-free handle as before.
struct Follower {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Follower {
    fn start(
        follow: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (first_poll, polled) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("vakt-follow".into())
            .spawn(move || {
                lower_priority();
                let mut follow = Box::pin(follow);
                let mut first_poll = Some(first_poll);
                // The first poll runs the follower up to its first wait, which
                // registers its file watchers; `start` returns after it.
                let follow = std::future::poll_fn(move |cx| {
                    let polled = follow.as_mut().poll(cx);
                    if let Some(tx) = first_poll.take() {
                        let _ = tx.send(());
                    }
                    polled
                });
                runtime.block_on(async move {
                    tokio::select! {
                        biased;
                        () = follow => {}
                        _ = stopped => {}
                    }
                });
            })?;
        // Bounded: a follower that never reaches its first wait must not hold
        // the start up for ever (it is then only later to see file events).
        let _ = polled.recv_timeout(std::time::Duration::from_secs(10));
        Ok(Self { stop, thread })
    }

    /// Stops following (the follower is dropped at its next await) and waits
    /// for the thread to end.
    ///
    /// (The thread's priority: see [`lower_priority`].)
    async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// The follower's thread runs at nice [`FOLLOWER_NICE`] (this thread only): its
/// work (a poll, a notification read, a batch applied) is small but comes often
/// under a stream of changes, and at the default priority each wake-up could
/// preempt a request worker in the middle of a call. With less weight the
/// scheduler lets the running call finish and runs the follower in the gaps; on
/// a machine with idle CPU it runs at once as before, and under full load it
/// still gets a share many times what following takes (about 1% of a core at
/// 1,000 changes a second). A failure (not permitted) leaves the default.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id changes nothing but its
    // scheduling weight; gettid has no preconditions.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, FOLLOWER_NICE);
    }
}

/// See [`lower_priority`].
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const FOLLOWER_NICE: libc::c_int = 10;
