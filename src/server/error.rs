//! Every way a call can fail, each mapped to a gRPC status in one place.
//! A denial is not here: it is a normal response.

use crate::decision::InvalidField;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A request field is malformed.
    #[error(transparent)]
    InvalidField(#[from] InvalidField),
    /// The batch holds more requests than the configured maximum.
    #[error("requests: a batch of {got} exceeds the maximum of {max}")]
    BatchTooLarge { got: usize, max: usize },
    /// Too many calls are in progress; this one is shed, not queued.
    #[error("overloaded: {max} calls are in progress ({limit}); try again")]
    Overloaded { max: usize, limit: &'static str },
    /// A page token that cannot be used.
    #[error(transparent)]
    Cursor(#[from] super::cursor::CursorError),
    /// Reverse queries are off (the default).
    #[error("reverse queries are off; start the sidecar with --reverse-queries to answer them")]
    ReverseOff,
    /// Under mutual TLS, the caller is not on the reverse-query allow-list.
    #[error("{0} is not on --reverse-queries-allow, so it may not ask reverse queries")]
    ReverseNotAllowed(String),
    /// The data may not be decided on (too old, or without the change asked for).
    #[error("the data may not be decided on: {0}")]
    DataStale(String),
    /// A failure inside the sidecar.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// A binding call (`AuthorizeWithToken`, `VerifyToken`) on a sidecar with no
    /// `[maskinporten]` in its configuration.
    #[error("no [maskinporten] is configured, so this sidecar hands out and checks no tokens")]
    NoMaskinporten,
    /// A scope that the request's access package may not carry.
    #[error("scopes: {0}")]
    ScopeNotAllowed(String),
    /// Maskinporten (or Altinn's token exchange) could not give the token an
    /// ALLOW needs, so the call fails closed.
    #[error("no token: {0}")]
    TokenUnavailable(String),
    /// Maskinporten refused the token request (its error and MP code).
    #[error("Maskinporten refused the token: {0}")]
    TokenRefused(String),
    /// The decision could not be recorded, so it is not answered (fail closed).
    #[error("the decision log cannot record decisions: {0}")]
    LogUnavailable(#[from] crate::decision_log::LogUnavailable),
}

impl CallError {
    /// The HTTP status of this failure, for the AuthZEN API.
    pub(super) fn http_status(&self) -> u16 {
        match self {
            CallError::InvalidField(_) | CallError::BatchTooLarge { .. } => 400,
            CallError::Cursor(_) => 400,
            CallError::Overloaded { .. } => 429,
            CallError::ReverseOff | CallError::ReverseNotAllowed(_) => 403,
            CallError::LogUnavailable(_) | CallError::DataStale(_) => 503,
            CallError::NoMaskinporten => 501,
            CallError::ScopeNotAllowed(_) => 403,
            CallError::TokenUnavailable(_) => 503,
            CallError::TokenRefused(_) => 502,
            CallError::Internal(_) => 500,
        }
    }
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Self {
        let code = match &e {
            CallError::InvalidField(_) | CallError::BatchTooLarge { .. } => Code::InvalidArgument,
            CallError::LogUnavailable(_) | CallError::DataStale(_) => Code::Unavailable,
            CallError::TokenUnavailable(_) => Code::Unavailable,
            CallError::NoMaskinporten | CallError::TokenRefused(_) => Code::FailedPrecondition,
            CallError::ScopeNotAllowed(_) => Code::PermissionDenied,
            CallError::Cursor(c) => match c {
                super::cursor::CursorError::Unknown | super::cursor::CursorError::OtherQuery => {
                    Code::InvalidArgument
                }
                super::cursor::CursorError::Expired { .. }
                | super::cursor::CursorError::WorldGone => Code::FailedPrecondition,
            },
            CallError::ReverseOff => Code::FailedPrecondition,
            CallError::ReverseNotAllowed(_) => Code::PermissionDenied,
            CallError::Internal(_) => Code::Internal,
            CallError::Overloaded { .. } => Code::ResourceExhausted,
        };
        Status::new(code, e.to_string())
    }
}
