//! Every way a call can fail, each mapped to a gRPC status in one place.
//! A denial is not here: it is a normal response.

use crate::decide::InvalidField;
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
    /// The decision could not be recorded, so it is not answered (fail closed).
    #[error("the decision log cannot record decisions: {0}")]
    LogUnavailable(#[from] crate::decision_log::LogUnavailable),
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Self {
        let code = match &e {
            CallError::InvalidField(_) | CallError::BatchTooLarge { .. } => Code::InvalidArgument,
            CallError::LogUnavailable(_) => Code::Unavailable,
            CallError::Overloaded { .. } => Code::ResourceExhausted,
        };
        Status::new(code, e.to_string())
    }
}
