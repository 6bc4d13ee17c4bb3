//! `vakt serve`: the sidecar. Reads every setting, loads the snapshot, opens the
//! decision log, then serves until SIGTERM or Ctrl-C; SIGHUP reloads.

use super::args::SourceArgs;
use super::telemetry::{self, LogFormat};
use crate::decision_log::{DecisionLog, Fsync, LogOptions, Rotation, SinkSpec};
use crate::server::{self, Options, Vakt, DEFAULT_MAX_BATCH};
use crate::rules::snapshot::SnapshotHandle;
use crate::rules::snapshot::{Rules, Sources};
use crate::source::files::FileSource;
use crate::source::postgres::PostgresSource;
use crate::source::DataStatus;
use anyhow::Context as _;
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Read settings from this TOML file; its keys are these flags without their
    /// dashes (`max-in-flight = 2048`). Environment variables override it, and
    /// flags override both [default: none]
    #[arg(long, env = "VAKT_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    sources: SourceArgs,
    /// Also decide every request under the candidate policies in this directory
    /// (with the serving schema), and record each decision that differs in the
    /// decision log (shadow_decision, shadow_reasons); the answer is always the
    /// serving policies'. Read again on SIGHUP; if they do not load, shadow
    /// evaluation is off and an ERROR says why [default: off]
    #[arg(long, env = "VAKT_SHADOW_POLICIES", value_name = "DIR")]
    shadow_policies: Option<std::path::PathBuf>,
    /// TCP address to listen on, or `off` (with --listen-unix). A sidecar listens
    /// on loopback by default
    #[arg(long, env = "VAKT_LISTEN", value_name = "ADDRESS", default_value = "127.0.0.1:50051", value_parser = parse_listen)]
    listen: ListenAddr,
    /// Serve TLS on the TCP listener with this certificate chain (PEM); the files
    /// are read again when they change [default: plaintext]
    #[arg(long, env = "VAKT_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "VAKT_TLS_KEY", value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// Require client certificates that chain to these CA certificates (PEM):
    /// mutual TLS [default: no client certificates]
    #[arg(long, env = "VAKT_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<std::path::PathBuf>,
    /// Client identities allowed under mutual TLS, comma-separated: SAN URIs
    /// (SPIFFE IDs) or DNS names, exact or as a prefix ending in `*`; others are
    /// refused before any call, with a WARN. Unix-socket callers must be on it
    /// too, as `unix:uid:N` [default: any certificate the CA signed]
    #[arg(
        long,
        env = "VAKT_TLS_ALLOW",
        value_name = "IDENTITY",
        value_delimiter = ','
    )]
    tls_allow: Vec<String>,
    /// Answer the reverse queries (gRPC WhoCan and WhatCan, AuthZEN's search
    /// endpoints). They reveal the whole access graph, so they are off unless
    /// asked for [default: off]
    #[arg(long, env = "VAKT_REVERSE_QUERIES")]
    reverse_queries: bool,
    /// The callers that may ask reverse queries, comma-separated, exact or as a
    /// prefix ending in `*`: client certificate identities under mutual TLS, and
    /// `unix:uid:N` on the Unix socket; others get PERMISSION_DENIED. Every
    /// listener must then have caller identities [default: any caller]
    #[arg(
        long,
        env = "VAKT_REVERSE_QUERIES_ALLOW",
        value_name = "IDENTITY",
        value_delimiter = ','
    )]
    reverse_queries_allow: Vec<String>,
    /// How long the pages of one reverse-query answer may be read, from its first
    /// page; each answer keeps the world it began on for this long
    #[arg(long, env = "VAKT_REVERSE_PAGE_LIFETIME", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "60s")]
    reverse_page_lifetime: std::time::Duration,
    /// Serve the OpenID AuthZEN Authorization API 1.0 (HTTP/1.1, JSON) on this
    /// address: evaluations decided and logged as Authorize, and the searches
    /// (with --reverse-queries). It uses the TLS and allow-list settings of the
    /// gRPC listener [default: off]
    #[arg(long, env = "VAKT_AUTHZEN_LISTEN", value_name = "ADDRESS")]
    authzen_listen: Option<SocketAddr>,
    /// The PDP identifier the AuthZEN metadata names (an https URL, as callers
    /// reach this sidecar) [default: the address each connection came in on;
    /// never the request's Host]
    #[arg(long, env = "VAKT_AUTHZEN_BASE_URL", value_name = "URL")]
    authzen_base_url: Option<String>,
    /// Also listen on this Unix socket, for callers in the same pod; each decision
    /// record names the caller's uid and pid as the kernel reports them
    /// [default: none]
    #[arg(long, env = "VAKT_LISTEN_UNIX", value_name = "PATH")]
    listen_unix: Option<std::path::PathBuf>,
    /// Permissions of the Unix socket, in octal: who may connect
    #[arg(long, env = "VAKT_LISTEN_UNIX_MODE", value_name = "MODE", default_value = "660", value_parser = parse_mode)]
    listen_unix_mode: u32,
    /// Which diagnostics are written to stderr: a level (error, warn, info, debug,
    /// trace) or per-module directives such as `info,vakt::source=debug`
    #[arg(long, env = "VAKT_LOG", value_name = "FILTER", default_value = "info", value_parser = parse_filter)]
    log_level: String,
    /// How diagnostics are written: json (one object per line, for log
    /// collectors) or text (for people)
    #[arg(long, env = "VAKT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// Export traces (a span per call, continuing the caller's W3C trace context)
    /// and metrics over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317
    /// [default: OTEL_EXPORTER_OTLP_ENDPOINT (or its _TRACES_/_METRICS_ forms), else none]
    #[arg(long, env = "VAKT_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// How often metrics are exported over OTLP
    #[arg(long, env = "VAKT_OTLP_METRICS_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "60s")]
    otlp_metrics_interval: std::time::Duration,
    /// Address of the admin HTTP listener: /metrics (Prometheus text format),
    /// /healthz and /readyz [default: none]
    #[arg(long, env = "VAKT_METRICS_LISTEN", value_name = "ADDRESS")]
    metrics_listen: Option<SocketAddr>,
    /// Largest number of requests accepted in one AuthorizeBatch.
    #[arg(long, env = "VAKT_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// Largest request message in bytes; a larger one is cut off by the transport
    /// before it is decoded (status OUT_OF_RANGE)
    #[arg(long, env = "VAKT_MAX_MESSAGE_BYTES", value_name = "BYTES", default_value_t = crate::server::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Most calls in progress at once; past it a call is refused at once with
    /// RESOURCE_EXHAUSTED (health checks are not counted)
    #[arg(long, env = "VAKT_MAX_IN_FLIGHT", default_value_t = crate::server::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Most HTTP/2 streams one connection may have open at once
    #[arg(long, env = "VAKT_MAX_CONCURRENT_STREAMS", default_value_t = crate::server::DEFAULT_MAX_CONCURRENT_STREAMS)]
    max_concurrent_streams: u32,
    /// Most connections open at once; a new one past it is closed at once. Kept
    /// below the process's file-descriptor limit, so idle sockets can never lock
    /// callers out
    #[arg(long, env = "VAKT_MAX_CONNECTIONS", default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Most connections from one peer address (0: no limit of its own)
    #[arg(long, env = "VAKT_MAX_CONNECTIONS_PER_PEER", default_value_t = 0)]
    max_connections_per_peer: usize,
    /// Most calls in progress from one peer address, so one noisy caller cannot
    /// take every place (0: no limit of its own); refused with RESOURCE_EXHAUSTED
    #[arg(long, env = "VAKT_MAX_IN_FLIGHT_PER_PEER", default_value_t = 0)]
    max_in_flight_per_peer: usize,
    /// How long a new connection may take to send its first bytes before it is
    /// closed
    #[arg(long, env = "VAKT_HANDSHAKE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    handshake_timeout: std::time::Duration,
    /// Close a connection on which no call began for this long (0: never)
    #[arg(long, env = "VAKT_IDLE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5m")]
    idle_timeout: std::time::Duration,
    /// Largest header block of a call, in bytes
    #[arg(long, env = "VAKT_MAX_HEADER_BYTES", value_name = "BYTES", default_value_t = crate::server::DEFAULT_MAX_HEADER_BYTES)]
    max_header_bytes: u32,
    /// Most request bytes all calls together may hold while their messages are
    /// read (header blocks included); past it a call is refused with
    /// RESOURCE_EXHAUSTED, except one of at most 1 KiB. It also sizes the HTTP/2
    /// flow-control windows, so the bytes sent but not yet read stay within about
    /// as much again
    #[arg(long, env = "VAKT_MAX_BUFFERED_REQUEST_BYTES", value_name = "BYTES", default_value_t = crate::server::DEFAULT_MAX_BUFFERED_REQUEST_BYTES)]
    max_buffered_request_bytes: usize,
    /// Longest a call may take; a shorter client deadline (grpc-timeout) wins
    #[arg(long, env = "VAKT_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    request_timeout: std::time::Duration,
    /// On SIGTERM or Ctrl-C, how long in-flight calls may take to finish before the
    /// remaining connections (idle ones included) are closed; a second signal
    /// stops at once
    #[arg(long, env = "VAKT_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    shutdown_grace: std::time::Duration,
    /// Where decision records go, comma-separated or repeated: stdout (buffered),
    /// file:PATH (durable: a call is answered once its record is written),
    /// file+buffered:PATH, otlp:URL (buffered), otlp+durable:URL, or off.
    #[arg(
        long,
        env = "VAKT_DECISION_LOG",
        value_delimiter = ',',
        default_value = "stdout",
        value_name = "SINK"
    )]
    decision_log: Vec<SinkSpec>,
    /// Context attributes written as "[redacted]" in decision records [default: none]
    #[arg(
        long,
        env = "VAKT_DECISION_LOG_REDACT",
        value_delimiter = ',',
        value_name = "FIELD"
    )]
    decision_log_redact: Vec<String>,
    /// Sign decision log checkpoints with this Ed25519 private key (PKCS#8 PEM, as
    /// `vakt audit keygen` writes it; keep it readable only by Vakt's user)
    /// [default: checkpoints are not signed]
    #[arg(long, env = "VAKT_DECISION_LOG_SIGNING_KEY", value_name = "FILE")]
    decision_log_signing_key: Option<std::path::PathBuf>,
    /// Continue a decision log file that does not match its checkpoint (edited,
    /// cut, or its checkpoint replaced) instead of refusing to start; the log
    /// records that this was done
    #[arg(long, env = "VAKT_DECISION_LOG_ACCEPT_MISMATCH")]
    decision_log_accept_mismatch: bool,
    /// WARN when the file system of a decision log file has less free space than
    /// this many bytes (0: never)
    #[arg(long, env = "VAKT_DECISION_LOG_MIN_FREE_BYTES", value_name = "BYTES", default_value_t = crate::decision_log::DEFAULT_MIN_FREE_BYTES)]
    decision_log_min_free_bytes: u64,
    /// When a decision log file is fsynced.
    #[arg(long, env = "VAKT_DECISION_LOG_FSYNC", value_enum, default_value_t = Fsync::Always)]
    decision_log_fsync: Fsync,
    /// Rotate a decision log file once it holds this many bytes [default: never]
    #[arg(long, env = "VAKT_DECISION_LOG_ROTATE_BYTES", value_name = "BYTES")]
    decision_log_rotate_bytes: Option<u64>,
    /// Rotate a decision log file once it has been written to for this many seconds
    /// [default: never]
    #[arg(long, env = "VAKT_DECISION_LOG_ROTATE_SECS", value_name = "SECONDS")]
    decision_log_rotate_secs: Option<u64>,
    /// Deny every request with vakt:data-stale once the data was last confirmed
    /// current longer ago than this (e.g. 30s; 0 for no limit) [default: 10s for a
    /// database, no limit for files]
    #[arg(long, env = "VAKT_MAX_STALENESS", value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_staleness: Option<std::time::Duration>,
    /// How long a request that names a min_data_sequence waits for it
    #[arg(long, env = "VAKT_SEQUENCE_WAIT", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "2s")]
    sequence_wait: std::time::Duration,
    /// How often the policy, schema and data directories are read again even
    /// without a change event: a backstop for file systems that report none, and
    /// what confirms that file data is current
    #[arg(long, env = "VAKT_RESCAN_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5s")]
    rescan_interval: std::time::Duration,
    /// How long a policy, schema or data file written in place must stay
    /// unchanged (size, time and content, after its writer closed it) before it is
    /// read; a file renamed into place is read at once
    #[arg(long, env = "VAKT_DATA_SETTLE", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "200ms")]
    data_settle: std::time::Duration,
    /// How often the database is asked for changes without a notification: the
    /// heartbeat that confirms a quiet database is current
    #[arg(long, env = "VAKT_POLL_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1s")]
    poll_interval: std::time::Duration,
}

/// Checks the settings that can be wrong together: every problem, so that all of
/// them are reported at once.
/// The AuthZEN PDP identifier: an absolute http(s) URL with a host, and nothing
/// a client could misread (credentials, a query, a fragment).
fn check_base_url(url: &str) -> Result<(), &'static str> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| "is not a URL, e.g. https://vakt.example.org")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must begin with https:// (or http://)");
    }
    match uri.authority() {
        None => Err("names no host"),
        Some(a) if a.as_str().contains('@') => Err("must not carry credentials"),
        Some(_) if uri.query().is_some() || url.contains('#') => {
            Err("must not have a query or a fragment")
        }
        Some(_) => Ok(()),
    }
}

pub(super) fn check_settings(args: &ServeArgs) -> Result<(), Vec<String>> {
    let mut bad = Vec::new();
    if let Err(e) = args.sources.check_paths() {
        bad.push(e.to_string());
    }
    for (flag, value) in [
        ("--max-batch", args.max_batch),
        ("--max-in-flight", args.max_in_flight),
        (
            "--max-concurrent-streams",
            args.max_concurrent_streams as usize,
        ),
        ("--max-connections", args.max_connections),
        ("--max-message-bytes", args.max_message_bytes),
        ("--max-header-bytes", args.max_header_bytes as usize),
    ] {
        if value == 0 {
            bad.push(format!("{flag} must be at least 1"));
        }
    }
    // A request of the largest size holds its header block and its message with
    // the 5-byte gRPC prefix.
    let largest = args
        .max_message_bytes
        .saturating_add(args.max_header_bytes as usize)
        .saturating_add(5);
    if args.max_buffered_request_bytes < largest {
        bad.push(format!(
            "--max-buffered-request-bytes ({}) must be at least --max-message-bytes + --max-header-bytes + 5 ({largest}), or a request of the largest size could never be read",
            args.max_buffered_request_bytes
        ));
    }
    for (flag, value) in [
        ("--request-timeout", args.request_timeout),
        ("--handshake-timeout", args.handshake_timeout),
    ] {
        if value.is_zero() {
            bad.push(format!("{flag} must be longer than 0"));
        }
    }
    if !args.idle_timeout.is_zero() && args.idle_timeout <= args.request_timeout {
        bad.push(format!(
            "--idle-timeout ({:?}) must be longer than --request-timeout ({:?}), or 0 for none",
            args.idle_timeout, args.request_timeout
        ));
    }
    // An allow-list for reverse queries means something only where callers have
    // identities: a certificate under mutual TLS, or a uid on the Unix socket.
    if args.reverse_queries
        && !args.reverse_queries_allow.is_empty()
        && args.tls_client_ca.is_none()
    {
        for (flag, on) in [
            ("--listen", args.listen.0.is_some()),
            ("--authzen-listen", args.authzen_listen.is_some()),
        ] {
            if on {
                bad.push(format!(
                    "--reverse-queries-allow is set, but {flag} would answer reverse queries to callers without an identity (plain TCP, no --tls-client-ca): use mutual TLS there, or serve only the Unix socket (--listen off; callers are named unix:uid:N)"
                ));
            }
        }
    }
    if let Some(url) = &args.authzen_base_url {
        if let Err(why) = check_base_url(url) {
            bad.push(format!("--authzen-base-url: {why}"));
        }
    }
    if args.data_settle > std::time::Duration::from_secs(60) {
        bad.push(format!(
            "--data-settle ({:?}) must be at most 60s: a change waits this long before it is read",
            args.data_settle
        ));
    }
    if let Some(max) = args.max_staleness.filter(|m| !m.is_zero()) {
        if args.data_settle >= max {
            bad.push(format!(
                "--data-settle ({:?}) must be shorter than --max-staleness ({max:?}): every change would leave the data stale before it is read",
                args.data_settle
            ));
        }
    }
    if args.listen.0.is_none() && args.listen_unix.is_none() {
        bad.push("--listen off needs --listen-unix: Vakt must listen somewhere".into());
    }
    if let Some(path) = &args.listen_unix {
        match std::fs::symlink_metadata(path) {
            Ok(m) if !std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                bad.push(format!(
                    "--listen-unix {}: exists and is not a socket",
                    path.display()
                ))
            }
            _ => {}
        }
    }
    if let Some(nofile) = open_files_limit() {
        // Room for the decision log, data files, the database and the listener.
        let room = nofile.saturating_sub(64) as usize;
        if args.max_connections > room {
            bad.push(format!(
                "--max-connections {} is more than this process's file-descriptor limit ({nofile}) leaves room for ({room}); lower it or raise the limit (ulimit -n)",
                args.max_connections
            ));
        }
    }
    match tls_files(args) {
        Err(e) => bad.push(e),
        Ok(Some(files)) => {
            if let Err(e) = server::Tls::load(files) {
                bad.push(format!("TLS: {e}"));
            }
        }
        Ok(None) => {}
    }
    if let Some(key) = &args.decision_log_signing_key {
        if let Err(e) = crate::decision_log::checkpoint::Signer::read(key) {
            bad.push(format!("--decision-log-signing-key {e}"));
        }
    }
    if let Err(e) = telemetry::Otlp::from_env(args.otlp_endpoint.as_deref()) {
        bad.push(crate::url_secrets::mask_url(&e));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}

/// `message` with the credentials of every URL among the settings masked (the
/// OTLP endpoints of traces and of decision-log sinks): the libraries that open
/// them quote the URL they were given in their errors.
fn mask_urls(mut message: String, args: &ServeArgs) -> String {
    let sinks = args.decision_log.iter().map(ToString::to_string);
    for url in args.otlp_endpoint.iter().cloned().chain(sinks) {
        message = crate::url_secrets::mask_in(&message, &url);
    }
    message
}

/// How the decision log's sinks write, from the arguments.
fn log_options(args: &ServeArgs) -> anyhow::Result<LogOptions> {
    let signer = args
        .decision_log_signing_key
        .as_deref()
        .map(crate::decision_log::checkpoint::Signer::read)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--decision-log-signing-key {e}"))?;
    Ok(LogOptions {
        fsync: args.decision_log_fsync,
        rotation: Rotation {
            max_bytes: args.decision_log_rotate_bytes.filter(|b| *b > 0),
            max_age: args
                .decision_log_rotate_secs
                .filter(|s| *s > 0)
                .map(std::time::Duration::from_secs),
        },
        redact: args.decision_log_redact.clone(),
        signer: signer.map(Arc::new),
        accept_mismatch: args.decision_log_accept_mismatch,
        min_free_bytes: args.decision_log_min_free_bytes,
    })
}

/// The settings every call reads, from the arguments.
fn options_of(args: &ServeArgs, default_max_staleness: Option<std::time::Duration>) -> Options {
    Options {
        max_batch: args.max_batch,
        max_staleness: match args.max_staleness {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => default_max_staleness,
        },
        sequence_wait: args.sequence_wait,
        max_message_bytes: args.max_message_bytes,
        max_in_flight: args.max_in_flight,
        max_concurrent_streams: args.max_concurrent_streams,
        request_timeout: args.request_timeout,
        max_connections: args.max_connections,
        max_connections_per_peer: args.max_connections_per_peer,
        max_in_flight_per_peer: args.max_in_flight_per_peer,
        handshake_timeout: args.handshake_timeout,
        idle_timeout: Some(args.idle_timeout).filter(|d| !d.is_zero()),
        max_header_bytes: args.max_header_bytes,
        max_buffered_request_bytes: args.max_buffered_request_bytes,
        // The OTEL_* variables were checked at start and do not change.
        traces: telemetry::Otlp::from_env(args.otlp_endpoint.as_deref())
            .is_ok_and(|o| o.traces.is_some()),
        reverse_queries: args.reverse_queries,
        reverse_queries_allow: args.reverse_queries_allow.clone(),
        reverse_page_lifetime: args.reverse_page_lifetime,
    }
}

/// The settings that a SIGHUP changes at run time, by flag; any other that
/// changed is named in a WARN and waits for a restart.
const LIVE_SETTINGS: &[&str] = &[
    "decision-log",
    "decision-log-redact",
    "max-batch",
    "max-in-flight",
    "max-in-flight-per-peer",
    "max-staleness",
    "sequence-wait",
    "log-level",
    "tls-allow",
    "reverse-queries",
    "reverse-queries-allow",
    "reverse-page-lifetime",
    // Read again on every SIGHUP, changed or not.
    "shadow-policies",
    // Read again whenever they change, SIGHUP or not.
    "tls-cert",
    "tls-key",
    "tls-client-ca",
];

/// Each flag of `vakt serve` with its raw values.
type RawSettings = Vec<(String, Vec<String>)>;

/// Every setting of `vakt serve` as the command line, the environment and the
/// configuration file give it now: the arguments, and each flag's raw values.
fn read_settings(argv: &[std::ffi::OsString]) -> Result<(ServeArgs, RawSettings), Vec<String>> {
    use clap::{Args as _, FromArgMatches as _};
    let mut cmd = ServeArgs::augment_args(clap::Command::new("serve"));
    if let Some(path) = super::config::path_for_serve(argv) {
        let settings = super::config::read(&path, &cmd)?;
        cmd = super::config::apply_to_serve(cmd, settings);
    }
    let matches = cmd
        .clone()
        .try_get_matches_from(argv.iter().skip(1))
        .map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or_default().to_owned();
            vec![crate::url_secrets::mask_url(&first)]
        })?;
    let args = ServeArgs::from_arg_matches(&matches).map_err(|e| vec![e.to_string()])?;
    let raw = cmd
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            let values = matches
                .get_raw(a.get_id().as_str())
                .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            Some((long.to_owned(), values))
        })
        .collect();
    Ok((args, raw))
}

/// Re-reads the settings on SIGHUP: those that can change at run time take effect
/// for the next calls; any other that changed is named in a WARN. Settings that
/// fail their checks change nothing, with an ERROR naming every problem.
async fn reload_settings_on_hangup(
    argv: Vec<std::ffi::OsString>,
    mut current: RawSettings,
    vakt: std::sync::Weak<Vakt>,
    telemetry: telemetry::LogLevel,
    tls: Vec<Arc<server::Tls>>,
    default_max_staleness: Option<std::time::Duration>,
    writers: Arc<std::sync::Mutex<crate::decision_log::Writers>>,
) {
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangup.recv().await.is_some() {
        let (args, raw) = match read_settings(&argv) {
            Ok(r) => r,
            Err(problems) => {
                tracing::error!(problems = %problems.join("; "), "settings not reloaded: they have problems; the current ones stay");
                continue;
            }
        };
        if let Err(problems) = check_settings(&args) {
            tracing::error!(problems = %problems.join("; "), "settings not reloaded: they have problems; the current ones stay");
            continue;
        }
        let changed: Vec<&str> = raw
            .iter()
            .zip(&current)
            .filter(|(new, old)| new.1 != old.1)
            .map(|(new, _)| new.0.as_str())
            .collect();
        let Some(vakt) = vakt.upgrade() else { return };
        // New decision-log sinks are opened (those kept go on as they are) before
        // anything changes: if one cannot be opened, nothing does.
        let sinks_changed = changed
            .iter()
            .any(|c| *c == "decision-log" || *c == "decision-log-redact");
        if sinks_changed {
            let reopened = log_options(&args).map_err(|e| e.to_string()).and_then(|o| {
                vakt.log
                    .load()
                    .reopen(&args.decision_log, &o)
                    .map_err(|e| mask_urls(e.to_string(), &args))
            });
            match reopened {
                Ok((log, opened)) => {
                    vakt.log.store(Arc::new(log));
                    if let Ok(mut w) = writers.lock() {
                        w.extend(opened);
                    }
                }
                Err(e) => {
                    tracing::error!(problems = %e, "settings not reloaded: a decision-log sink cannot be opened; the current ones stay");
                    continue;
                }
            }
        }
        let needs_restart: Vec<&str> = changed
            .iter()
            .copied()
            .filter(|c| !LIVE_SETTINGS.contains(c))
            .collect();
        let mut options = options_of(&args, default_max_staleness);
        // What only a restart changes stays as it was, so the settings in force
        // are the ones serving.
        let running = vakt.options.load();
        options.max_message_bytes = running.max_message_bytes;
        options.max_concurrent_streams = running.max_concurrent_streams;
        options.request_timeout = running.request_timeout;
        options.max_connections = running.max_connections;
        options.max_connections_per_peer = running.max_connections_per_peer;
        options.handshake_timeout = running.handshake_timeout;
        options.idle_timeout = running.idle_timeout;
        options.max_header_bytes = running.max_header_bytes;
        options.max_buffered_request_bytes = running.max_buffered_request_bytes;
        options.traces = running.traces;
        drop(running);
        vakt.options.store(Arc::new(options));
        load_shadow(&args, &vakt);
        telemetry.set(&args.log_level);
        for tls in &tls {
            tls.set_allow(args.tls_allow.clone());
        }
        let live: Vec<&str> = changed
            .iter()
            .copied()
            .filter(|c| LIVE_SETTINGS.contains(c))
            .collect();
        if !needs_restart.is_empty() {
            tracing::warn!(settings = %needs_restart.join(", "), "changed settings take effect only after a restart");
        }
        tracing::info!(changed = %live.join(", "), "settings reloaded");
        // What needs a restart keeps its old value as "current", so it is named
        // again until the restart.
        for (new, old) in raw.into_iter().zip(current.iter_mut()) {
            if LIVE_SETTINGS.contains(&new.0.as_str()) {
                *old = new;
            }
        }
    }
}

/// Loads the candidate policies of `--shadow-policies` with the serving schema
/// and swaps them in whole; when they do not load, shadow evaluation is off and
/// an ERROR says why. The answers never depend on them.
fn load_shadow(args: &ServeArgs, vakt: &Vakt) {
    let Some(dir) = &args.shadow_policies else {
        if vakt.shadow.swap(None).is_some() {
            tracing::info!("shadow evaluation off");
        }
        return;
    };
    let paths = crate::rules::snapshot::SourcePaths {
        policies: Some(dir.clone()),
        data: None,
        ..args.sources.paths()
    };
    let built = if dir.is_dir() {
        Sources::read(&paths).and_then(|s| Rules::build(&s))
    } else {
        Err(crate::problem::Problems(vec![
            crate::problem::Problem::new(dir.display().to_string(), "", "no such directory"),
        ]))
    };
    match built {
        Ok(rules) => {
            tracing::info!(
                dir = %dir.display(),
                policies = rules.policies.set.policies().count(),
                rules_revision = %rules.rules_revision,
                "shadow evaluation on"
            );
            vakt.shadow.store(Some(Arc::new(server::Shadow {
                rules,
                dir: dir.clone(),
            })));
        }
        Err(problems) => {
            vakt.shadow.store(None);
            tracing::error!(dir = %dir.display(), %problems, "shadow policies not loaded; shadow evaluation is off");
        }
    }
}

/// The TLS settings, if TLS is on, or what is wrong with their combination.
fn tls_files(args: &ServeArgs) -> Result<Option<server::TlsFiles>, String> {
    match (&args.tls_cert, &args.tls_key) {
        (None, None) => {
            if args.tls_client_ca.is_some() || !args.tls_allow.is_empty() {
                return Err("--tls-client-ca and --tls-allow need --tls-cert and --tls-key".into());
            }
            Ok(None)
        }
        (Some(cert), Some(key)) => {
            if !args.tls_allow.is_empty() && args.tls_client_ca.is_none() {
                return Err(
                    "--tls-allow needs --tls-client-ca: identities come from client certificates"
                        .into(),
                );
            }
            Ok(Some(server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.tls_client_ca.clone(),
                allow: args.tls_allow.clone(),
            }))
        }
        _ => Err("--tls-cert and --tls-key go together".into()),
    }
}

/// How often the TLS files are looked at for rotation.
const TLS_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The soft limit on open files, when there is one.
fn open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// The TCP address to listen on, or none (`off`).
#[derive(Debug, Clone, Copy)]
pub(super) struct ListenAddr(Option<SocketAddr>);

/// `off`, or a TCP address.
fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    if s == "off" {
        return Ok(ListenAddr(None));
    }
    s.parse()
        .map(|a| ListenAddr(Some(a)))
        .map_err(|e| format!("{e}: expected an address such as 127.0.0.1:50051, or off"))
}

/// File permissions in octal, such as 660.
fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not a file mode in octal, such as 660"))
}

fn parse_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
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
    if let Err(problems) = check_settings(&args) {
        for p in problems {
            eprintln!("vakt: {p}");
        }
        return Ok(ExitCode::from(super::config::EX_CONFIG));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // Checked with the other settings above.
    let otlp = telemetry::Otlp::from_env(args.otlp_endpoint.as_deref())
        .map_err(|e| anyhow::anyhow!(crate::url_secrets::mask_url(&e)))?;
    rt.block_on(async {
        let telemetry = telemetry::init(
            &args.log_level,
            args.log_format,
            &otlp,
            args.otlp_metrics_interval,
        )
        .map_err(|e| {
            let mut message = mask_urls(format!("{e:#}"), &args);
            for (url, _) in otlp.traces.iter().chain(&otlp.metrics) {
                message = crate::url_secrets::mask_in(&message, url);
            }
            anyhow::anyhow!(message)
        })?;
        let served = serve(args, &telemetry).await;
        telemetry.shutdown();
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs, telemetry: &telemetry::Telemetry) -> anyhow::Result<()> {
    // Handlers first: a SIGHUP or SIGTERM that arrives while a large world is still
    // loading must not kill the process with the signal's default action.
    let hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // The admin listener first, so probes see "not ready" while the world loads.
    let admin_state = Arc::new(server::AdminState::default());
    let admin = match args.metrics_listen {
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
    let paths = args.sources.paths();
    let loaded = match args.sources.database() {
        None => load_files(paths, args.data_settle).await?,
        Some(db) => load_database(db.clone(), paths).await?,
    };
    let snapshot = loaded.snapshot;
    let (log, writers) = DecisionLog::open(&args.decision_log, &log_options(&args)?)
        .map_err(|e| anyhow::anyhow!(mask_urls(format!("{:#}", anyhow::Error::from(e)), &args)))?;
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
    let vakt = Arc::new(Vakt {
        snapshot: Arc::new(SnapshotHandle::new(snapshot)),
        log: arc_swap::ArcSwap::from_pointee(log),
        data: Arc::new(DataStatus::new(loaded.kind)),
        options: arc_swap::ArcSwap::from_pointee(options_of(&args, loaded.default_max_staleness)),
        in_flight: Default::default(),
        in_flight_per_peer: Default::default(),
        metrics: Default::default(),
        shadow: Default::default(),
        cursors: Default::default(),
        connections: Default::default(),
        request_budget: Default::default(),
    });
    load_shadow(&args, &vakt);
    let mut listeners = Vec::new();
    let mut tls_state: Vec<Arc<server::Tls>> = Vec::new();
    // The gRPC listener's TLS; its allow-list also guards the Unix socket.
    let grpc_tls = tls_files(&args)
        .map_err(anyhow::Error::msg)?
        .map(server::Tls::load)
        .transpose()?
        .map(Arc::new);
    if let Some(tls) = &grpc_tls {
        tls_state.push(tls.clone());
    }
    if let Some(path) = &args.listen_unix {
        listeners.push(server::Listener::Unix(
            bind_unix(path, args.listen_unix_mode)?,
            grpc_tls.clone(),
        ));
        tracing::info!(path = %path.display(), mode = format!("{:o}", args.listen_unix_mode), "listening on the unix socket");
    }
    let mut tcp_listening = None;
    if let Some(addr) = args.listen.0 {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let tls = grpc_tls.clone();
        tcp_listening = Some((listener.local_addr()?, tls.is_some()));
        listeners.push(match tls {
            None => server::Listener::Tcp(listener),
            Some(tls) => server::Listener::Tls(listener, tls),
        });
    }
    let mut authzen_listening = None;
    if let Some(addr) = args.authzen_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} (--authzen-listen)"))?;
        let tls = tls_files(&args)
            .map_err(anyhow::Error::msg)?
            .map(server::Tls::load_http1)
            .transpose()?
            .map(Arc::new);
        authzen_listening = Some((
            listener.local_addr()?,
            tls.is_some(),
            match tls {
                None => server::Listener::Tcp(listener),
                Some(tls) => {
                    tls_state.push(tls.clone());
                    server::Listener::Tls(listener, tls)
                }
            },
        ));
    }
    // Certificate rotation: each TLS listener reads its files again when they change.
    let tls_reload = (!tls_state.is_empty()).then(|| {
        let watched = tls_state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TLS_RELOAD_EVERY);
            loop {
                tick.tick().await;
                for tls in &watched {
                    tls.reload_if_changed();
                }
            }
        })
    });
    // Ready before the "listening" line, so a probe that follows that line
    // (as tests and scripts do) never sees "not ready: loading".
    admin_state.serving(&vakt);
    if let Some((address, tls, _)) = &authzen_listening {
        tracing::info!(%address, tls, "AuthZEN API listening");
    }
    if let Some((address, tls)) = tcp_listening {
        tracing::info!(%address, tls, "listening");
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let settings_now = read_settings(&argv).map(|(_, raw)| raw).unwrap_or_default();
    let settings_reload = tokio::spawn(reload_settings_on_hangup(
        argv,
        settings_now,
        Arc::downgrade(&vakt),
        telemetry.log_level(),
        tls_state,
        loaded.default_max_staleness,
        writers.clone(),
    ));
    if let Some(meter) = telemetry.meter() {
        server::register_otlp(&meter, Arc::downgrade(&vakt));
    }
    let follow = match loaded.source {
        Loaded::Files(source) => tokio::spawn(crate::source::files::follow(
            *source,
            vakt.snapshot.clone(),
            vakt.data.clone(),
            hangup,
            args.rescan_interval,
            args.data_settle,
            release_freed_memory,
        )),
        Loaded::Database(source) => tokio::spawn(crate::source::postgres::follow(
            *source,
            args.sources.paths(),
            vakt.snapshot.clone(),
            vakt.data.clone(),
            hangup,
            (args.poll_interval, args.data_settle),
            release_freed_memory,
        )),
    };
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
    let authzen = authzen_listening.map(|(_, _, listener)| {
        let mut stop = stopping.clone();
        tokio::spawn(server::serve_authzen(
            vec![listener],
            vakt.clone(),
            args.authzen_base_url.clone(),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    });
    let mut graceful = stopping.clone();
    let mut deadline = stopping;
    let serving = server::serve_on(listeners, vakt.clone(), async move {
        let _ = graceful.wait_for(|s| *s).await;
    });
    tokio::select! {
        r = serving => r?,
        () = async {
            let _ = deadline.wait_for(|s| *s).await;
            tokio::time::sleep(args.shutdown_grace).await;
        } => {
            tracing::warn!(grace = ?args.shutdown_grace, "connections still open after the shutdown grace period; closing them");
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
    follow.abort();
    let _ = follow.await;
    drop(vakt);
    if let Some(path) = &args.listen_unix {
        let _ = std::fs::remove_file(path);
    }
    let writers = std::mem::take(&mut *writers.lock().unwrap_or_else(|e| e.into_inner()));
    writers.finish().await;
    tracing::info!("stopped");
    Ok(())
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

/// The first snapshot, and the source to follow.
struct Start {
    snapshot: crate::rules::snapshot::Snapshot,
    source: Loaded,
    /// What the status call names the source.
    kind: &'static str,
    default_max_staleness: Option<std::time::Duration>,
}

enum Loaded {
    Files(Box<FileSource>),
    Database(Box<PostgresSource>),
}

/// How long a start waits for files that keep changing before it reads them as
/// they are.
const START_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

async fn load_files(
    paths: crate::rules::snapshot::SourcePaths,
    settle: std::time::Duration,
) -> anyhow::Result<Start> {
    let from_files = paths.policies.is_some() || paths.schema.is_some() || paths.data.is_some();
    // `Status.data_source` names where the data comes from: policies from files
    // over the built-in example world are still "built-in" data.
    let data_from_files = paths.data.is_some();
    let (source, snapshot) = tokio::task::spawn_blocking(move || {
        let loaded = if from_files {
            FileSource::load_settled(paths, settle, START_PATIENCE)
        } else {
            FileSource::load(paths)
        };
        release_freed_memory();
        loaded
    })
    .await?
    .map_err(|p| anyhow::anyhow!("{p}"))?;
    Ok(Start {
        snapshot,
        source: Loaded::Files(Box::new(source)),
        kind: if data_from_files { "files" } else { "built-in" },
        default_max_staleness: None,
    })
}

async fn load_database(
    db: crate::source::postgres::Database,
    paths: crate::rules::snapshot::SourcePaths,
) -> anyhow::Result<Start> {
    let rules =
        tokio::task::spawn_blocking(move || Sources::read(&paths).and_then(|s| Rules::build(&s)))
            .await?
            .map_err(|p| anyhow::anyhow!("{p}"))?;
    tracing::info!(database = %db, "reading the world from the database");
    let shown = db.to_string();
    let (source, snapshot) = PostgresSource::load(db, rules)
        .await
        .with_context(|| format!("reading the world from {shown}"))?;
    release_freed_memory();
    Ok(Start {
        snapshot,
        source: Loaded::Database(Box::new(source)),
        kind: "postgres",
        default_max_staleness: Some(crate::source::postgres::DEFAULT_MAX_STALENESS),
    })
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
