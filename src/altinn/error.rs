//! Why a read from Altinn failed: out of reach, refused, or answered something
//! Vakt cannot use. Never carries a token; a whole read fails with its first
//! failure, naming the call and page.

use crate::maskinporten::TokenError;

/// A failed read. Every variant fails the whole read: a caller keeps what it
/// had (fail closed), never a part of a list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AltinnError {
    /// Altinn (or Maskinporten, for the token) could not be reached or was
    /// overloaded: a connection failure, a timeout, a 5xx, a 429. Worth
    /// retrying later.
    #[error("Altinn is unavailable: {call}: {reason}")]
    Unavailable { call: String, reason: String },
    /// Altinn (401/403, with its problem text), Maskinporten or Altinn's token
    /// exchange refused: a wrong vendor, a missing scope, a customer's
    /// approval missing or withdrawn. Retrying will not help.
    #[error("Altinn refused {call}: {message}")]
    Refused {
        call: String,
        /// Altinn's HTTP status; `None` when the token was refused.
        status: Option<u16>,
        message: String,
    },
    /// Altinn answered something Vakt cannot use: not its shape, a field that
    /// fails its check, a `next` link to another host, too many pages, a loop.
    /// `reason` names the field (`data[3].reporteeOrgNo`) or the link.
    #[error("Altinn's answer to {call} is invalid: {reason}")]
    Invalid { call: String, reason: String },
    /// The request can never work as asked (a bad base URL, system id or party
    /// UUID, an unusable Maskinporten configuration).
    #[error("the Altinn client is misconfigured: {reason}")]
    Misconfigured { reason: String },
}

impl AltinnError {
    /// The kind, for metrics and logs: `unavailable`, `refused`, `invalid`,
    /// `misconfigured`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::Refused { .. } => "refused",
            Self::Invalid { .. } => "invalid",
            Self::Misconfigured { .. } => "misconfigured",
        }
    }

    /// A failure to get a token for `call`, in these terms.
    pub(crate) fn token(call: &str, e: TokenError) -> Self {
        let call = call.to_owned();
        match e {
            TokenError::Unavailable { .. } => Self::Unavailable {
                call,
                reason: e.to_string(),
            },
            TokenError::Refused { .. } => Self::Refused {
                call,
                status: None,
                message: e.to_string(),
            },
            TokenError::Misconfigured { .. } | TokenError::InvalidRequest { .. } => {
                Self::Misconfigured {
                    reason: format!("{call}: {e}"),
                }
            }
        }
    }
}
