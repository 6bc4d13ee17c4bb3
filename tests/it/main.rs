//! The integration tests: one test crate, so the whole crate is linked once, not once per
//! file. Each module is one area; `common` holds the helpers they share (starting the
//! server, waiting with a deadline, running the binary, throwaway PostgreSQL clusters).
//! Run one area with `cargo test --test it postgres::`.

mod altinn_client;
mod altinn_shapes;
mod altinn_sync;
mod authzen;
mod binding;
mod cli;
mod client_examples;
mod common;
mod config;
mod decision_log;
mod deploy;
mod duplicate_members;
mod engine_equivalence;
mod envoy;
mod envoy_check;
mod file_changes;
mod file_inputs;
mod fuzz_regressions;
mod half_written;
mod hardening;
mod idp;
mod live_files;
mod loading;
mod maskinporten;
mod observability;
mod policy_suites;
mod postgres;
mod properties;
mod protocol;
mod python_client;
mod readme;
mod record_checks;
mod request_budget;
mod resolve;
mod reverse;
mod review;
mod rules;
mod scenarios;
mod schemas;
mod secrets;
mod shadow;
mod socket_clients;
mod streamed_loading;
mod sync_freshness;
mod tamper;
mod tls;
mod unix_socket;
mod verify;
