//! `VerifyToken`: checks a presented system-user token against Maskinporten's
//! JWKS and names the decision that issued it.

use super::call::Vakt;
use super::dispatch::{Call, Caller, Gate};
use super::error::CallError;
use super::metrics::Method;
use crate::proto;

impl Call for proto::VerifyTokenRequest {
    type Answer = proto::VerifyTokenResponse;
    const METHOD: Method = Method::VerifyToken;
    const GATE: Gate = Gate::Decision;

    async fn handle(self, _vakt: &Vakt, _caller: &Caller) -> Result<Self::Answer, CallError> {
        Err(CallError::NoMaskinporten)
    }
}
