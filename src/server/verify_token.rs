//! `VerifyToken`: checks a presented system-user token against Maskinporten's
//! JWKS and names the decision that issued it.
//!
//! A token that is not good is an answer (`valid: false` with the reason), not
//! an error; only a sidecar that cannot check at all answers with one
//! (FAILED_PRECONDITION without `[maskinporten]`, UNAVAILABLE when Maskinporten's
//! keys are out of reach). Valid means: Maskinporten signed it, for the
//! configured issuer, unexpired; it is for the system user asked about; and
//! this sidecar handed it out on an ALLOW (the decision named, or else the
//! latest that did).

use super::call::Vakt;
use super::dispatch::{Call, Caller, Gate};
use super::error::CallError;
use super::issued::{Issue, TokenKey};
use super::metrics::Method;
use crate::decision::InvalidField;
use crate::maskinporten::VerifyError;
use crate::proto;
use std::time::UNIX_EPOCH;

/// Longest token accepted; Maskinporten's are about 1 KiB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest decision id accepted; Vakt's are 36-character UUIDs.
const MAX_DECISION_ID_BYTES: usize = 128;

impl Call for proto::VerifyTokenRequest {
    type Answer = proto::VerifyTokenResponse;
    const METHOD: Method = Method::VerifyToken;
    const GATE: Gate = Gate::Decision;

    async fn handle(self, vakt: &Vakt, _caller: &Caller) -> Result<Self::Answer, CallError> {
        let binding = vakt.binding().ok_or(CallError::NoMaskinporten)?;
        check(&self)?;
        let verified = match binding.maskinporten.verify_token(&self.access_token).await {
            Ok(v) => v,
            Err(VerifyError::Unavailable { reason }) => {
                return Err(CallError::TokenUnavailable(format!(
                    "Maskinporten's keys cannot be fetched, so no token can be checked: {reason}"
                )))
            }
            Err(e) => return Ok(invalid(e.to_string())),
        };
        let mut answer = proto::VerifyTokenResponse {
            system_user_ids: verified.system_user_ids.clone(),
            system_user_org: verified.system_user_org.clone().unwrap_or_default(),
            jti: verified.jti.clone().unwrap_or_default(),
            expires_at_unix: verified
                .expires_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            ..Default::default()
        };
        if !self.system_user_id.is_empty() && !verified.is_for_system_user(&self.system_user_id) {
            answer.reason = format!(
                "the token is for system user(s) [{}], not {}",
                verified.system_user_ids.join(", "),
                self.system_user_id
            );
            return Ok(answer);
        }
        let key = TokenKey::of(verified.jti.as_deref(), &self.access_token);
        let issued = vakt.issued();
        let (decision_id, issue) = if self.decision_id.is_empty() {
            match issued.latest_for(&key) {
                Some(found) => found,
                None => {
                    answer.reason =
                        "this sidecar handed out no such token, or its lifetime is over".into();
                    return Ok(answer);
                }
            }
        } else {
            match issued.by_decision(&self.decision_id) {
                Some(issue) if issue.token == key => (self.decision_id.clone(), issue),
                Some(_) => {
                    answer.reason = format!(
                        "decision {} handed out another token, not this one",
                        self.decision_id
                    );
                    return Ok(answer);
                }
                None => {
                    answer.reason = format!(
                        "decision {} handed out no token that is still valid (unknown to this sidecar, a deny, or its token's lifetime is over)",
                        self.decision_id
                    );
                    return Ok(answer);
                }
            }
        };
        // The decision must have allowed the system user asked about, not just
        // another one the same token also names.
        if !self.system_user_id.is_empty() && issue.system_user != self.system_user_id {
            answer.reason = format!(
                "decision {decision_id} allowed system user {}, not {}",
                issue.system_user, self.system_user_id
            );
            return Ok(answer);
        }
        fill(&mut answer, decision_id, issue);
        answer.valid = true;
        Ok(answer)
    }
}

/// The request's limits, each failure naming its field.
fn check(r: &proto::VerifyTokenRequest) -> Result<(), InvalidField> {
    let bad = |field: &str, message: String| InvalidField {
        field: field.into(),
        message,
    };
    if r.access_token.is_empty() {
        return Err(bad("access_token", "is empty".into()));
    }
    if r.access_token.len() > MAX_TOKEN_BYTES {
        return Err(bad(
            "access_token",
            format!(
                "is {} bytes, more than the {MAX_TOKEN_BYTES} a Maskinporten token can be",
                r.access_token.len()
            ),
        ));
    }
    if r.decision_id.len() > MAX_DECISION_ID_BYTES || r.decision_id.chars().any(char::is_control) {
        return Err(bad(
            "decision_id",
            format!("must be at most {MAX_DECISION_ID_BYTES} bytes without control characters"),
        ));
    }
    if !r.system_user_id.is_empty() {
        crate::ids::check_id(&r.system_user_id)
            .map_err(|e| bad("system_user_id", e.to_string()))?;
    }
    Ok(())
}

/// A token that is not Maskinporten's, or not good now.
fn invalid(reason: String) -> proto::VerifyTokenResponse {
    proto::VerifyTokenResponse {
        valid: false,
        reason,
        ..Default::default()
    }
}

/// The issuing decision's fields.
fn fill(answer: &mut proto::VerifyTokenResponse, decision_id: String, issue: Issue) {
    answer.decision_id = decision_id;
    answer.employee_id = issue.employee;
    answer.client_org_number = issue.client;
    answer.access_package = issue.package;
}
