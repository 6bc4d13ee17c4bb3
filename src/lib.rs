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
//! - `main.rs` / [`cli`]: the `vakt` command (serve, validate, check, test, fmt,
//!   replay); the only place that uses `anyhow`.
//! - [`suite`], [`replay`]: policy test suites and decision-log replay, for
//!   security teams and CI; both decide through [`decide`], like the server.
//! - [`server`]: the gRPC service, one file per call behind one dispatcher, and
//!   the mapping of every failure to a gRPC status.
//! - [`decide`]: the hot path. Checks a request, looks up what it needs, builds a
//!   small Cedar slice ([`slice`]), evaluates ([`engine`]), explains. No I/O, no locks.
//! - [`engine`]: Cedar evaluation with each policy's condition compiled once per
//!   snapshot and only the policies that can apply to the action evaluated.
//! - [`slice`]: records' Cedar values, computed at load, and the per-request
//!   entities and context assembled from them.
//! - [`snapshot`]: schema + policies + packages + world as one immutable value,
//!   swapped whole on reload.
//! - [`policy`]: loading and strictly validating the schema and policy files.
//! - [`world`]: the data files (Altinn-shaped JSON/YAML) and the indexed records.
//! - [`decision_log`]: the audit trail of decisions, on its own stream.
//! - [`model`], [`ids`], [`packages`], [`problem`], [`embedded`]: the Cedar names,
//!   identifier checks, the access package list, error reports, built-in defaults.

pub mod cli;
pub mod decide;
pub mod decision_log;
pub mod embedded;
pub mod engine;
pub mod ids;
pub mod model;
pub mod packages;
pub mod policy;
pub mod problem;
pub mod reference;
pub mod replay;
pub mod server;
pub mod snapshot;
pub mod suite;
pub mod world;

/// Generated gRPC types for `vakt.v1`.
pub mod proto {
    tonic::include_proto!("vakt.v1");
    /// The encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vakt_descriptor.bin"));
}
