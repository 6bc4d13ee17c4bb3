//! `AuthorizeWithToken`: one decision that, on ALLOW only, hands out the system
//! user's Maskinporten token.

use super::call::Vakt;
use super::dispatch::{Call, Caller, Gate};
use super::error::CallError;
use super::metrics::Method;
use crate::proto;

impl Call for proto::AuthorizeWithTokenRequest {
    type Answer = proto::AuthorizeWithTokenResponse;
    const METHOD: Method = Method::AuthorizeWithToken;
    const GATE: Gate = Gate::Decision;

    async fn handle(self, _vakt: &Vakt, _caller: &Caller) -> Result<Self::Answer, CallError> {
        Err(CallError::NoMaskinporten)
    }
}
