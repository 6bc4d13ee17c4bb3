//! The tokens this sidecar handed out on ALLOW, kept for their lifetime so that
//! `VerifyToken` can name the decision behind a presented token.

/// The tokens handed out, by `jti`.
#[derive(Default)]
pub(super) struct Issued {}
