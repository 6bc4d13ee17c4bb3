//! `vakt serve`'s settings: its flags (each also a `VAKT_…` variable and a key of
//! the configuration file), read and checked once into typed [`Settings`], split
//! into the [`Fixed`] ones (a change waits for a restart) and the [`Live`] ones (a
//! SIGHUP swaps them whole).
//!
//! Which settings changed is found by comparing the typed values field by field
//! (`Changes`, written by `settings!` in `cli/changes.rs`), named by their flags: no list of names
//! is kept by hand. Every flag is taken apart in [`Settings::from`], so a new
//! flag that is in neither group does not compile.

use super::super::args::SourceArgs;
use super::super::changes::settings;
use super::super::telemetry::LogFormat;
use crate::decision_log::{Fsync, LogOptions, Rotation, SinkSpec};
use crate::server::DEFAULT_MAX_BATCH;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Clone)]
pub(in crate::cli) struct ServeArgs {
    /// Read settings from this TOML file; its keys are these flags without their
    /// dashes (`max-in-flight = 2048`), and its tables ([maskinporten], [altinn],
    /// [envoy], [[route]], [identity_provider]) make decisions binding (see
    /// docs/maskinporten.md). Environment variables override its keys, and flags
    /// override both [default: none]
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
    /// Deny every request with vakt:data-stale once the data was last synced
    /// from Altinn (`vakt altinn sync`'s stamp, written with the data) longer ago
    /// than this (e.g. 15m; 0 for no limit). With a limit, data that carries no
    /// stamp is denied as well [default: no limit]
    #[arg(long, env = "VAKT_MAX_SYNC_AGE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_sync_age: Option<std::time::Duration>,
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

settings! {
    /// What a running sidecar cannot change: its sources, listeners, transport
    /// limits, how its file sinks write, and how it is observed. A SIGHUP that
    /// changes one names it in a WARN; it keeps its value until a restart.
    #[derive(Clone)]
    pub(super) struct Fixed {
        @group pub(super) sources: SourceArgs,
        pub(super) listen: ListenAddr,
        pub(super) tls_cert: Option<PathBuf>,
        pub(super) tls_key: Option<PathBuf>,
        pub(super) tls_client_ca: Option<PathBuf>,
        pub(super) authzen_listen: Option<SocketAddr>,
        pub(super) authzen_base_url: Option<String>,
        pub(super) listen_unix: Option<PathBuf>,
        pub(super) listen_unix_mode: u32,
        pub(super) log_format: LogFormat,
        pub(super) otlp_endpoint: Option<String>,
        pub(super) otlp_metrics_interval: Duration,
        pub(super) metrics_listen: Option<SocketAddr>,
        pub(super) max_message_bytes: usize,
        pub(super) max_concurrent_streams: u32,
        pub(super) max_connections: usize,
        pub(super) max_connections_per_peer: usize,
        pub(super) handshake_timeout: Duration,
        pub(super) idle_timeout: Duration,
        pub(super) max_header_bytes: u32,
        pub(super) max_buffered_request_bytes: usize,
        pub(super) request_timeout: Duration,
        pub(super) shutdown_grace: Duration,
        pub(super) decision_log_signing_key: Option<PathBuf>,
        pub(super) decision_log_accept_mismatch: bool,
        pub(super) decision_log_min_free_bytes: u64,
        pub(super) decision_log_fsync: Fsync,
        pub(super) decision_log_rotate_bytes: Option<u64>,
        pub(super) decision_log_rotate_secs: Option<u64>,
        pub(super) rescan_interval: Duration,
        pub(super) data_settle: Duration,
        pub(super) poll_interval: Duration,
    }
}

settings! {
    /// What a SIGHUP changes while the sidecar serves: swapped whole, for the
    /// next calls.
    #[derive(Clone)]
    pub(super) struct Live {
        /// Read again on every SIGHUP, changed or not.
        pub(super) shadow_policies: Option<PathBuf>,
        pub(super) tls_allow: Vec<String>,
        pub(super) reverse_queries: bool,
        pub(super) reverse_queries_allow: Vec<String>,
        pub(super) reverse_page_lifetime: Duration,
        pub(super) log_level: String,
        pub(super) max_batch: usize,
        pub(super) max_in_flight: usize,
        pub(super) max_in_flight_per_peer: usize,
        pub(super) decision_log: Vec<SinkSpec>,
        pub(super) decision_log_redact: Vec<String>,
        pub(super) max_staleness: Option<Duration>,
        pub(super) max_sync_age: Option<Duration>,
        pub(super) sequence_wait: Duration,
    }
}

/// Every setting of `vakt serve`, read and checked once.
#[derive(Clone)]
pub(super) struct Settings {
    pub(super) fixed: Fixed,
    pub(super) live: Live,
    /// The configuration file (`--config`, `VAKT_CONFIG`): its binding tables
    /// (`[maskinporten]`, `[envoy]`, `[[route]]`, …) are read from it, live.
    pub(super) file: Option<PathBuf>,
}

impl From<ServeArgs> for Settings {
    fn from(args: ServeArgs) -> Self {
        // Taken apart whole: a flag must land in `Fixed` or `Live`.
        let ServeArgs {
            config,
            sources,
            shadow_policies,
            listen,
            tls_cert,
            tls_key,
            tls_client_ca,
            tls_allow,
            reverse_queries,
            reverse_queries_allow,
            reverse_page_lifetime,
            authzen_listen,
            authzen_base_url,
            listen_unix,
            listen_unix_mode,
            log_level,
            log_format,
            otlp_endpoint,
            otlp_metrics_interval,
            metrics_listen,
            max_batch,
            max_message_bytes,
            max_in_flight,
            max_concurrent_streams,
            max_connections,
            max_connections_per_peer,
            max_in_flight_per_peer,
            handshake_timeout,
            idle_timeout,
            max_header_bytes,
            max_buffered_request_bytes,
            request_timeout,
            shutdown_grace,
            decision_log,
            decision_log_redact,
            decision_log_signing_key,
            decision_log_accept_mismatch,
            decision_log_min_free_bytes,
            decision_log_fsync,
            decision_log_rotate_bytes,
            decision_log_rotate_secs,
            max_staleness,
            max_sync_age,
            sequence_wait,
            rescan_interval,
            data_settle,
            poll_interval,
        } = args;
        Self {
            fixed: Fixed {
                sources,
                listen,
                tls_cert,
                tls_key,
                tls_client_ca,
                authzen_listen,
                authzen_base_url,
                listen_unix,
                listen_unix_mode,
                log_format,
                otlp_endpoint,
                otlp_metrics_interval,
                metrics_listen,
                max_message_bytes,
                max_concurrent_streams,
                max_connections,
                max_connections_per_peer,
                handshake_timeout,
                idle_timeout,
                max_header_bytes,
                max_buffered_request_bytes,
                request_timeout,
                shutdown_grace,
                decision_log_signing_key,
                decision_log_accept_mismatch,
                decision_log_min_free_bytes,
                decision_log_fsync,
                decision_log_rotate_bytes,
                decision_log_rotate_secs,
                rescan_interval,
                data_settle,
                poll_interval,
            },
            live: Live {
                shadow_policies,
                tls_allow,
                reverse_queries,
                reverse_queries_allow,
                reverse_page_lifetime,
                log_level,
                max_batch,
                max_in_flight,
                max_in_flight_per_peer,
                decision_log,
                decision_log_redact,
                max_staleness,
                max_sync_age,
                sequence_wait,
            },
            file: config,
        }
    }
}

impl Live {
    /// The per-call settings; `--max-staleness` unset takes the source's default.
    pub(super) fn options(
        &self,
        default_max_staleness: Option<Duration>,
    ) -> crate::server::Options {
        crate::server::Options {
            max_batch: self.max_batch,
            max_staleness: match self.max_staleness {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => default_max_staleness,
            },
            max_sync_age: self.max_sync_age.filter(|d| !d.is_zero()),
            sequence_wait: self.sequence_wait,
            max_in_flight: self.max_in_flight,
            max_in_flight_per_peer: self.max_in_flight_per_peer,
            reverse_queries: self.reverse_queries,
            reverse_queries_allow: self.reverse_queries_allow.clone(),
            reverse_page_lifetime: self.reverse_page_lifetime,
        }
    }
}

impl Fixed {
    /// The transport's limits.
    pub(super) fn limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            max_message_bytes: self.max_message_bytes,
            max_concurrent_streams: self.max_concurrent_streams,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: Some(self.idle_timeout).filter(|d| !d.is_zero()),
            max_header_bytes: self.max_header_bytes,
            max_buffered_request_bytes: self.max_buffered_request_bytes,
            // The OTEL_* variables were checked at start and do not change.
            traces: super::super::telemetry::Otlp::from_env(self.otlp_endpoint.as_deref())
                .is_ok_and(|o| o.traces.is_some()),
        }
    }
}

impl Settings {
    /// Every setting as the command line `argv`, the environment and the
    /// configuration file give it now, checked: the settings, or every problem.
    pub(super) fn read(argv: &[std::ffi::OsString]) -> Result<Self, Vec<String>> {
        use clap::{Args as _, FromArgMatches as _};
        let mut cmd = ServeArgs::augment_args(clap::Command::new("serve"));
        if let Some(path) = super::super::config::path_for_serve(argv) {
            let settings = super::super::config::read(&path, &cmd)?;
            cmd = super::super::config::apply_to_serve(cmd, settings);
        }
        let matches = cmd.try_get_matches_from(argv.iter().skip(1)).map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or_default().to_owned();
            vec![crate::url_secrets::mask_url(&first)]
        })?;
        let args = ServeArgs::from_arg_matches(&matches).map_err(|e| vec![e.to_string()])?;
        let settings = Self::from(args);
        settings.check()?;
        Ok(settings)
    }

    /// [`check`](Self::check) and the configuration file's binding tables
    /// (their packages against the schema's list): every problem at once, or the
    /// tables.
    pub(super) fn check_with_tables(&self) -> Result<Option<super::binding::Tables>, Vec<String>> {
        let mut bad = self.check().err().unwrap_or_default();
        match super::binding::read(self.file.as_deref(), self.fixed.sources.paths()) {
            Ok(tables) if bad.is_empty() => return Ok(tables),
            Ok(_) => {}
            Err(p) => bad.extend(p),
        }
        Err(bad)
    }

    /// Checks the settings that can be wrong together: every problem, so that
    /// all of them are reported at once.
    pub(super) fn check(&self) -> Result<(), Vec<String>> {
        let (f, l) = (&self.fixed, &self.live);
        let mut bad = Vec::new();
        if let Err(e) = f.sources.check_paths() {
            bad.push(e.to_string());
        }
        for (flag, value) in [
            ("--max-batch", l.max_batch),
            ("--max-in-flight", l.max_in_flight),
            (
                "--max-concurrent-streams",
                f.max_concurrent_streams as usize,
            ),
            ("--max-connections", f.max_connections),
            ("--max-message-bytes", f.max_message_bytes),
            ("--max-header-bytes", f.max_header_bytes as usize),
        ] {
            if value == 0 {
                bad.push(format!("{flag} must be at least 1"));
            }
        }
        // A request of the largest size holds its header block and its message with
        // the 5-byte gRPC prefix.
        let largest = f
            .max_message_bytes
            .saturating_add(f.max_header_bytes as usize)
            .saturating_add(5);
        if f.max_buffered_request_bytes < largest {
            bad.push(format!(
            "--max-buffered-request-bytes ({}) must be at least --max-message-bytes + --max-header-bytes + 5 ({largest}), or a request of the largest size could never be read",
            f.max_buffered_request_bytes
        ));
        }
        for (flag, value) in [
            ("--request-timeout", f.request_timeout),
            ("--handshake-timeout", f.handshake_timeout),
        ] {
            if value.is_zero() {
                bad.push(format!("{flag} must be longer than 0"));
            }
        }
        if !f.idle_timeout.is_zero() && f.idle_timeout <= f.request_timeout {
            bad.push(format!(
                "--idle-timeout ({:?}) must be longer than --request-timeout ({:?}), or 0 for none",
                f.idle_timeout, f.request_timeout
            ));
        }
        // An allow-list for reverse queries means something only where callers have
        // identities: a certificate under mutual TLS, or a uid on the Unix socket.
        if l.reverse_queries && !l.reverse_queries_allow.is_empty() && f.tls_client_ca.is_none() {
            for (flag, on) in [
                ("--listen", f.listen.0.is_some()),
                ("--authzen-listen", f.authzen_listen.is_some()),
            ] {
                if on {
                    bad.push(format!(
                    "--reverse-queries-allow is set, but {flag} would answer reverse queries to callers without an identity (plain TCP, no --tls-client-ca): use mutual TLS there, or serve only the Unix socket (--listen off; callers are named unix:uid:N)"
                ));
                }
            }
        }
        if let Some(url) = &f.authzen_base_url {
            if let Err(why) = check_base_url(url) {
                bad.push(format!("--authzen-base-url: {why}"));
            }
        }
        if f.data_settle > std::time::Duration::from_secs(60) {
            bad.push(format!(
            "--data-settle ({:?}) must be at most 60s: a change waits this long before it is read",
            f.data_settle
        ));
        }
        if let Some(max) = l.max_staleness.filter(|m| !m.is_zero()) {
            if f.data_settle >= max {
                bad.push(format!(
                "--data-settle ({:?}) must be shorter than --max-staleness ({max:?}): every change would leave the data stale before it is read",
                f.data_settle
            ));
            }
        }
        if f.listen.0.is_none() && f.listen_unix.is_none() {
            bad.push("--listen off needs --listen-unix: Vakt must listen somewhere".into());
        }
        if let Some(path) = &f.listen_unix {
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
            if f.max_connections > room {
                bad.push(format!(
                "--max-connections {} is more than this process's file-descriptor limit ({nofile}) leaves room for ({room}); lower it or raise the limit (ulimit -n)",
                f.max_connections
            ));
            }
        }
        match self.tls_files() {
            Err(e) => bad.push(e),
            Ok(Some(files)) => {
                if let Err(e) = crate::server::Tls::load(files) {
                    bad.push(format!("TLS: {e}"));
                }
            }
            Ok(None) => {}
        }
        if let Some(key) = &f.decision_log_signing_key {
            if let Err(e) = crate::decision_log::checkpoint::Signer::read(key) {
                bad.push(format!("--decision-log-signing-key {e}"));
            }
        }
        if let Err(e) = super::super::telemetry::Otlp::from_env(f.otlp_endpoint.as_deref()) {
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
    pub(super) fn mask_urls(&self, mut message: String) -> String {
        let (f, l) = (&self.fixed, &self.live);
        let sinks = l.decision_log.iter().map(ToString::to_string);
        for url in f.otlp_endpoint.iter().cloned().chain(sinks) {
            message = crate::url_secrets::mask_in(&message, &url);
        }
        message
    }

    /// How the decision log's sinks write.
    pub(super) fn log_options(&self) -> anyhow::Result<LogOptions> {
        let (f, l) = (&self.fixed, &self.live);
        let signer = f
            .decision_log_signing_key
            .as_deref()
            .map(crate::decision_log::checkpoint::Signer::read)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--decision-log-signing-key {e}"))?;
        Ok(LogOptions {
            fsync: f.decision_log_fsync,
            rotation: Rotation {
                max_bytes: f.decision_log_rotate_bytes.filter(|b| *b > 0),
                max_age: f
                    .decision_log_rotate_secs
                    .filter(|s| *s > 0)
                    .map(std::time::Duration::from_secs),
            },
            redact: l.decision_log_redact.clone(),
            signer: signer.map(Arc::new),
            accept_mismatch: f.decision_log_accept_mismatch,
            min_free_bytes: f.decision_log_min_free_bytes,
        })
    }

    /// The TLS settings, if TLS is on, or what is wrong with their combination.
    pub(super) fn tls_files(&self) -> Result<Option<crate::server::TlsFiles>, String> {
        let (f, l) = (&self.fixed, &self.live);
        match (&f.tls_cert, &f.tls_key) {
            (None, None) => {
                if f.tls_client_ca.is_some() || !l.tls_allow.is_empty() {
                    return Err(
                        "--tls-client-ca and --tls-allow need --tls-cert and --tls-key".into(),
                    );
                }
                Ok(None)
            }
            (Some(cert), Some(key)) => {
                if !l.tls_allow.is_empty() && f.tls_client_ca.is_none() {
                    return Err(
                    "--tls-allow needs --tls-client-ca: identities come from client certificates"
                        .into(),
                );
                }
                Ok(Some(crate::server::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: f.tls_client_ca.clone(),
                    allow: l.tls_allow.clone(),
                }))
            }
            _ => Err("--tls-cert and --tls-key go together".into()),
        }
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq)]
pub(in crate::cli) struct ListenAddr(pub(super) Option<SocketAddr>);

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
