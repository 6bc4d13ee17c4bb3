//! The offline tools, for security teams and CI: policy test suites (`suite`),
//! decision-log replay (`replay`), proofs over the policies (`verify`), the access
//! review (`review`), generated worlds (`gen`) and the Altinn sync's pure part
//! (`sync`). Each decides through [`crate::decision`], like the server.

pub mod gen;
pub mod replay;
pub mod review;
pub mod suite;
pub mod sync;
pub mod verify;
