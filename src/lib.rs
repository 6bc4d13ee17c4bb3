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
//! From the edge inwards (each module imports only modules further down the list):
//!
//! - [`fuzz`]: the fuzz targets' entry points (`fuzz/`): arbitrary bytes as each
//!   input Vakt reads, the configuration file through [`cli`].
//! - `main.rs` / [`cli`]: the `vakt` command, one file per subcommand; the only
//!   place that uses `anyhow`.
//! - [`server`]: the gRPC service, one file per call behind one dispatcher, and the
//!   mapping of every failure to a gRPC status; the listeners (TCP, TLS, a Unix
//!   socket) and their limits; the admin HTTP listener, metrics and traces.
//! - [`suite`], [`replay`]: policy test suites and decision-log replay, for security
//!   teams and CI; both decide through [`decide`], like the server.
//! - [`verify`]: proving properties of the policies with Cedar's symbolic compiler
//!   and the cvc5 solver; counterexamples become data files and are replayed
//!   through [`decide`].
//! - [`review`]: the access review of one organisation, from the reverse
//!   queries, the grants and a verified decision log; CSV, JSON or HTML.
//! - [`reverse`]: the reverse questions (who can act for a client, what can an
//!   employee do), answered by asking [`decide`] about every candidate.
//! - [`gen`]: generated worlds of accounting firms, for benchmarks and trials.
//! - [`reference`](mod@reference): Cedar's own authorizer over the same world, the yardstick the
//!   engine is tested and measured against; never on the serving path.
//! - [`decision_log`]: the audit trail of decisions: records, sinks (stdout, file,
//!   OTLP), the hash chain and checkpoints, rotation, `audit verify`.
//! - `metrics`: lock-free counters and histograms, and the Prometheus text format.
//! - [`decide`]: the hot path. Checks a request, looks up what it needs, derives the
//!   facts Cedar cannot express, evaluates (`engine`), explains. No I/O, no locks.
//! - [`source`]: where the data comes from (files that are watched) and how fresh
//!   it is.
//! - [`snapshot`]: schema, policies, packages and world as one immutable value with
//!   the revision that names them, swapped whole on reload.
//! - [`world`]: the data: compact records in persistent maps, the data files and
//!   their checks, and the records read as Cedar entities.
//! - `policy`: loading and strictly validating the schema and the policy files.
//! - `engine`: policy evaluation: each condition prepared once per snapshot and
//!   evaluated by Vakt's own interpreter over the records in place.
//! - `packages`, `model`, [`ids`], [`embedded`], [`problem`], `json`: the access
//!   package list, the Cedar names Vakt uses, identifier checks, the built-in
//!   defaults, input files with the problems found in them, and JSON read strictly
//!   (a member given twice is an error).
//! - `url_secrets`: credentials in URLs and connection strings, masked before
//!   anything is shown.
//! - [`proto`]: the generated gRPC types.

pub mod cli;
pub mod decide;
pub mod decision_log;
pub mod embedded;
pub(crate) mod engine;
#[doc(hidden)]
pub mod fuzz;
pub mod gen;
pub mod ids;
pub(crate) mod json;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod packages;
pub(crate) mod policy;
pub mod problem;
pub mod reference;
pub mod replay;
pub mod reverse;
pub mod review;
pub mod server;
pub mod snapshot;
pub mod source;
pub mod suite;
pub(crate) mod url_secrets;
pub mod verify;
pub mod world;

/// Generated gRPC types for `vakt.v1`.
pub mod proto {
    tonic::include_proto!("vakt.v1");
    /// The encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vakt_descriptor.bin"));
}
