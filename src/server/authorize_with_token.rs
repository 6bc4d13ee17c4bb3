//! `AuthorizeWithToken`: one decision that, on ALLOW only, hands out the system
//! user's Maskinporten token.
//!
//! Reads straight down: check the request and the scopes → decide → on DENY
//! record and answer (Maskinporten is not asked) → on ALLOW get the token for
//! the decided system user's owner → record naming the token's `jti` and
//! expiry → answer with the token. A token that cannot be had turns the ALLOW
//! into an error, with a deny record of the attempt: never an ALLOW without a
//! token, never a token without a record.

use super::authorize::{decide_only, record, Decided, Extra};
use super::call::Vakt;
use super::dispatch::{Call, Caller, Gate};
use super::error::CallError;
use super::issued::{Issue, TokenKey};
use super::metrics::Method;
use crate::decision::{Decision, InvalidField, Query, Reason};
use crate::decision_log::TokenNote;
use crate::maskinporten::{OrgNumber, Scope, Token, TokenError};
use crate::proto;
use crate::rules::snapshot::Snapshot;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Most scopes one request may ask for.
const MAX_SCOPES: usize = 32;
/// The policy id of the deny recorded when Maskinporten could not give the token.
const TOKEN_UNAVAILABLE: &str = "vakt:token-unavailable";
/// The policy id of the deny recorded when Maskinporten refused the token.
const TOKEN_REFUSED: &str = "vakt:token-refused";
/// What the decision log calls this call.
const CALL: &str = "authorize_with_token";

impl Call for proto::AuthorizeWithTokenRequest {
    type Answer = proto::AuthorizeWithTokenResponse;
    const METHOD: Method = Method::AuthorizeWithToken;
    const GATE: Gate = Gate::Decision;

    async fn handle(self, vakt: &Vakt, caller: &Caller) -> Result<Self::Answer, CallError> {
        let request = self.request.ok_or_else(|| InvalidField {
            field: "request".into(),
            message: "is missing: give the decision asked for, as in Authorize".into(),
        })?;
        let (snap, stale) = vakt.snapshot_for(request.min_data_sequence).await;
        let query = Query::check(&snap, request.into(), "request.")?;
        let scopes = parse_scopes(&self.scopes)?;
        let binding = vakt.binding().ok_or(CallError::NoMaskinporten)?;
        // Before deciding: a scope the package may not carry is the caller's
        // mistake whatever the decision, and no record is owed for it.
        if let Some(why) = binding.scope_not_allowed(&query.access_package, &scopes) {
            return Err(CallError::ScopeNotAllowed(why));
        }
        let mut decided = decide_only(vakt, &snap, &query, stale.as_deref(), false);
        if !decided.decision.allowed {
            // A deny asks Maskinporten nothing.
            let extra = Extra {
                call: CALL,
                token: None,
                envoy: None,
            };
            record(vakt, &snap, &query, &decided, &caller.meta, &extra)
                .wait()
                .await?;
            return Ok(decided.into_answer(&snap).into());
        }
        let token = match token_for(&binding.maskinporten, &snap, &query, &scopes).await {
            Ok(t) => t,
            Err(failure) => {
                return Err(fail(vakt, &snap, &query, &mut decided, caller, failure).await)
            }
        };
        let extra = Extra {
            call: CALL,
            token: Some(TokenNote {
                kind: "maskinporten",
                jti: token.jti.as_deref(),
                expires_at: token.expires_at,
                scope: &token.scope,
            }),
            envoy: None,
        };
        // No token leaves without its record.
        record(vakt, &snap, &query, &decided, &caller.meta, &extra)
            .wait()
            .await?;
        let bearer = token.access_token.expose();
        vakt.issued().note(
            &decided.decision_id,
            Issue {
                token: TokenKey::of(token.jti.as_deref(), bearer),
                system_user: query.system_user.clone(),
                employee: query.employee.clone(),
                client: query.client.clone(),
                package: query.access_package.clone(),
                expires_at: token.expires_at,
            },
        );
        tracing::debug!(
            decision_id = %decided.decision_id,
            jti = token.jti.as_deref().unwrap_or("-"),
            "token handed out"
        );
        let mut answer: proto::AuthorizeWithTokenResponse = decided.into_answer(&snap).into();
        answer.access_token = bearer.to_owned();
        answer.expires_at_unix = token
            .expires_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        answer.token_type = "Bearer".into();
        answer.scopes = token
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(answer)
    }
}

/// The scopes asked for: 1 to [`MAX_SCOPES`], each an RFC 6749 scope token.
fn parse_scopes(raw: &[String]) -> Result<Vec<Scope>, InvalidField> {
    if raw.is_empty() || raw.len() > MAX_SCOPES {
        return Err(InvalidField {
            field: "scopes".into(),
            message: format!(
                "{} given: ask for 1 to {MAX_SCOPES} scopes (Maskinporten requires one)",
                raw.len()
            ),
        });
    }
    raw.iter()
        .enumerate()
        .map(|(i, s)| {
            Scope::parse(s).map_err(|message| InvalidField {
                field: format!("scopes[{i}]"),
                message,
            })
        })
        .collect()
}

/// Why an allowed decision got no token.
enum Failure {
    /// Maskinporten (or Vakt's way to it) could not give one: UNAVAILABLE.
    Unavailable(String),
    /// Maskinporten refused, with its error and MP code: FAILED_PRECONDITION.
    Refused(String),
}

/// The token for the decided system user: asked for its owner and externalRef,
/// and accepted only if Maskinporten says it is for that very system user.
async fn token_for(
    mp: &crate::maskinporten::Maskinporten,
    snap: &Snapshot,
    q: &Query,
    scopes: &[Scope],
) -> Result<Arc<Token>, Failure> {
    let su = snap.world.system_user(&q.system_user).ok_or_else(|| {
        Failure::Unavailable(format!(
            "system user {} is not in the data the decision was made on",
            q.system_user
        ))
    })?;
    let owner = OrgNumber::parse(&su.owner.digits()).map_err(|e| {
        Failure::Unavailable(format!(
            "the owner {} of system user {} is not an org number Maskinporten takes: {e}",
            su.owner, q.system_user
        ))
    })?;
    // Without an externalRef Maskinporten takes the owner's org number, as
    // Altinn does when a system user is made without one.
    let external_ref = Some(&*su.external_ref).filter(|r| !r.is_empty());
    let token = mp
        .shared_system_user_token(&owner, scopes, external_ref)
        .await
        .map_err(|e| match e {
            TokenError::Refused {
                error,
                error_description,
                mp_code,
            } => Failure::Refused(match mp_code {
                Some(code) => format!("{error} ({code}): {error_description}"),
                None => format!("{error}: {error_description}"),
            }),
            other => Failure::Unavailable(other.to_string()),
        })?;
    if !token.system_user_ids.contains(&q.system_user) {
        // The data's owner and externalRef name another system user than
        // Altinn's: the token is not the decided system user's, so it is not
        // handed out.
        return Err(Failure::Unavailable(format!(
            "Maskinporten's token for owner {owner} (externalRef {}) is for system user(s) [{}], not {}: the data is out of step with Altinn",
            external_ref.unwrap_or(owner.as_str()),
            token.system_user_ids.join(", "),
            q.system_user
        )));
    }
    Ok(token)
}

/// Records the allowed decision as the deny it became for want of a token (the
/// audit trail of the attempt), and gives the error to answer.
async fn fail(
    vakt: &Vakt,
    snap: &Snapshot,
    q: &Query,
    decided: &mut Decided,
    caller: &Caller,
    failure: Failure,
) -> CallError {
    let (policy_id, why) = match &failure {
        Failure::Unavailable(why) => (TOKEN_UNAVAILABLE, why),
        Failure::Refused(why) => (TOKEN_REFUSED, why),
    };
    tracing::warn!(
        decision_id = %decided.decision_id,
        reason = %why,
        "allowed, but no token: denied"
    );
    decided.decision = Decision {
        allowed: false,
        reasons: vec![Reason {
            policy_id: policy_id.into(),
            message: format!("allowed, but no token could be had, so the request is denied: {why}"),
        }],
        path: None,
    };
    let extra = Extra {
        call: CALL,
        token: None,
        envoy: None,
    };
    // The token error is what the caller needs; a record that cannot be
    // written is logged, and the call fails either way.
    if let Err(e) = record(vakt, snap, q, decided, &caller.meta, &extra)
        .wait()
        .await
    {
        tracing::warn!(decision_id = %decided.decision_id, error = %e, "the deny for a missing token was not recorded");
    }
    let id = &decided.decision_id;
    match failure {
        Failure::Unavailable(why) => CallError::TokenUnavailable(format!("{why} (decision {id})")),
        Failure::Refused(why) => CallError::TokenRefused(format!("{why} (decision {id})")),
    }
}
