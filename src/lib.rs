//! Vakt: a policy-as-code authorization sidecar for employees acting through
//! Altinn system users.
//!
//! Before every Altinn call, the end-user system asks Vakt: may employee E use
//! system user S to act for client C with access package P? Vakt answers from Cedar
//! policies over a world of employees, teams, system users and organisations,
//! fail-closed, with reasons, and records each decision.
//!
//! # Layout
//!
//! From the edge inwards (each module imports only modules further down the list;
//! `docs/architecture.md` draws the request path through them):
//!
//! - [`fuzz`]: the fuzz targets' entry points (`fuzz/`): arbitrary bytes as each
//!   input Vakt reads, the configuration file through [`cli`].
//! - `main.rs` / [`cli`]: the `vakt` command, one file per subcommand; the only
//!   place that uses `anyhow`.
//! - [`server`]: the gRPC service, one file per call behind one dispatcher, and the
//!   mapping of every failure to a gRPC status; AuthZEN; Envoy's ext_authz Check
//!   (`server/envoy`: the route table, path normalisation, the answer); the
//!   listeners (TCP, TLS, a Unix socket) and their limits; the admin HTTP listener,
//!   metrics and traces.
//! - [`altinn`]: the client for Altinn's vendor APIs (system users, authorized
//!   parties, client-delegation lists), every page or nothing, with tokens from
//!   [`maskinporten`]; `vakt altinn sync` builds on it.
//! - [`maskinporten`]: the Maskinporten client, sole holder of its key: signed JWT
//!   grants for system-user and vendor tokens, the token cache, Altinn's token
//!   exchange, and checks of presented tokens against Maskinporten's JWKS (it
//!   shares the key-file permission rule of [`decision_log`]); and the identity
//!   provider whose JWTs name the employee behind an Envoy Check.
//! - [`tools`]: the offline tools for security teams and CI: policy test suites,
//!   decision-log replay, proofs with Cedar's symbolic compiler and cvc5, the access
//!   review, generated worlds, and the pure part of `vakt altinn sync` (Altinn's
//!   answers as world records, the diff, the mass-removal guard). Each decides
//!   through [`decision`], like the server.
//! - [`decision_log`]: the audit trail of decisions: records, sinks (stdout, file,
//!   OTLP), the hash chain and checkpoints, rotation, `audit verify`.
//! - `metrics`: lock-free counters and histograms the request path updates.
//! - [`decision`]: the hot path. Checks a request, looks up what it needs, derives
//!   the facts Cedar cannot express, evaluates (`engine`), explains; the reverse
//!   questions (who can act for a client, what can an employee do) ask it about
//!   every candidate; `reference` is Cedar's own authorizer over the same world,
//!   the yardstick the engine is tested against, never on the serving path. No
//!   I/O, no locks.
//! - [`source`]: where the data comes from (built in, watched files, PostgreSQL)
//!   and how fresh it is, including when it was last synced from Altinn
//!   (`sync_stamp`).
//! - [`rules`]: the schema and policy files, the access packages, the Cedar names
//!   Vakt uses, the built-in defaults, and the snapshot that holds them with the
//!   world as one immutable value, swapped whole on reload.
//! - [`world`]: the data: compact records in persistent maps, the data files and
//!   their checks, and the records read as Cedar entities.
//! - [`ids`], [`problem`], `json`, `url_secrets`: identifier checks, input files
//!   with the problems found in them, JSON read strictly (a member given twice is
//!   an error), and credentials in URLs masked before anything is shown.
//! - [`proto`]: the generated gRPC types.

pub mod altinn;
pub mod cli;
pub mod decision;
pub mod decision_log;
#[doc(hidden)]
pub mod fuzz;
pub mod ids;
pub(crate) mod json;
pub mod maskinporten;
pub(crate) mod metrics;
pub mod problem;
pub mod rules;
pub mod server;
pub mod source;
pub mod tools;
pub(crate) mod url_secrets;
pub mod world;

/// Generated gRPC types for `vakt.v1`.
pub mod proto {
    tonic::include_proto!("vakt.v1");
    /// The encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vakt_descriptor.bin"));
}
