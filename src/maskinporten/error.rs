//! The errors the Maskinporten client gives: what a caller maps to a gRPC status,
//! never carrying a token or key material.

use std::fmt;

/// Why no token was handed out. Every variant fails closed: a caller that needs a
/// token answers no ALLOW without one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Maskinporten could not be reached or gave no usable answer in time
    /// (connection refused, timeout, a 5xx, an answer that is not its protocol).
    /// Callers answer gRPC `UNAVAILABLE` with the reason.
    /// Altinn's token exchange out of reach is one too; its reason then starts
    /// with "Altinn's token exchange".
    #[error("{}{reason}", if .reason.starts_with(ALTINN_EXCHANGE) { "" } else { "Maskinporten is unavailable: " })]
    Unavailable { reason: String },
    /// Maskinporten answered and refused the grant: its `error`, its
    /// `error_description`, and the MP code found in the description (`MP-012`).
    /// Altinn's token exchange refusing a Maskinporten token (HTTP 401 or 403)
    /// is one too: its `error` starts with `altinn:` ([`ALTINN_REFUSAL`]) and
    /// its description is Altinn's message.
    #[error("{} refused the token request: {error}{}{}", refused_by(.error), .mp_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(), if .error_description.is_empty() { String::new() } else { format!(": {}", .error_description) })]
    Refused {
        error: String,
        error_description: String,
        mp_code: Option<String>,
    },
    /// Vakt's own configuration cannot work (the metadata names another issuer, has
    /// no token endpoint, or points at plain http off loopback).
    #[error("the Maskinporten client is misconfigured: {reason}")]
    Misconfigured { reason: String },
    /// The caller asked for something that can never be granted (no scope, a
    /// malformed scope or external reference).
    #[error("invalid token request: {reason}")]
    InvalidRequest { reason: String },
}

/// The prefix of [`TokenError::Refused`]'s `error` when Altinn's token
/// exchange refused, not Maskinporten.
pub const ALTINN_REFUSAL: &str = "altinn:";

/// How reasons about Altinn's token exchange begin.
pub(crate) const ALTINN_EXCHANGE: &str = "Altinn's token exchange";

fn refused_by(error: &str) -> &'static str {
    if error.starts_with(ALTINN_REFUSAL) {
        ALTINN_EXCHANGE
    } else {
        "Maskinporten"
    }
}

impl TokenError {
    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
        }
    }
}

/// Why a presented token is not accepted as one of Maskinporten's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a signed JWT: {reason}")]
    Malformed { reason: String },
    #[error("the token's algorithm {alg} is not one Maskinporten signs with")]
    Algorithm { alg: String },
    #[error("the token names no key id (kid)")]
    NoKeyId,
    #[error("the token was signed with key {kid}, which Maskinporten's JWKS does not hold")]
    UnknownKey { kid: String },
    #[error("the token's signature does not hold: it was forged or changed")]
    BadSignature,
    #[error("the token was issued by {found:?}, not by the configured issuer")]
    WrongIssuer { found: String },
    #[error("the token has expired")]
    Expired,
    #[error("the token's claims are not Maskinporten's: {reason}")]
    Claims { reason: String },
    /// The JWKS could not be fetched, so no key can be trusted: fail closed.
    #[error("Maskinporten's keys are unavailable: {reason}")]
    Unavailable { reason: String },
}

/// One bad field of a [`MaskinportenConfig`](super::MaskinportenConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field's name as the configuration spells it (`key.key_file`).
    pub field: &'static str,
    pub message: String,
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<FieldProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the Maskinporten configuration has {} problem(s):",
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Finds an MP code (`MP-012`, `MP-303`) in an error description.
pub(crate) fn mp_code(description: &str) -> Option<String> {
    let b = description.as_bytes();
    (0..b.len().saturating_sub(3)).find_map(|i| {
        if &b[i..i + 3] != b"MP-" || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            return None;
        }
        let digits = b[i + 3..].iter().take_while(|c| c.is_ascii_digit()).count();
        (digits > 0).then(|| description[i..i + 3 + digits].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mp_codes_are_found_where_the_description_puts_them() {
        assert_eq!(
            mp_code("Invalid assertion (MP-012)").as_deref(),
            Some("MP-012")
        );
        assert_eq!(
            mp_code("MP-303: wrong systemuser_org").as_deref(),
            Some("MP-303")
        );
        assert_eq!(mp_code("no code here, XMP-12 is not one"), None);
        assert_eq!(mp_code("MP-"), None);
        assert_eq!(mp_code(""), None);
    }
}
