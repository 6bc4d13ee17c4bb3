//! What makes a decision binding rather than advice: the Maskinporten client
//! that Vakt alone holds, the scopes each access package's tokens may carry,
//! Envoy's route table for Check, and Altinn's token exchange. Read from the
//! configuration file's `[maskinporten]`, `[envoy]` and `[[route]]` tables and
//! swapped whole on SIGHUP, like the other live settings.

use crate::maskinporten::{Maskinporten, Scope};
use std::collections::HashMap;
use std::sync::Arc;

/// The binding settings a sidecar serves with.
#[derive(Clone)]
pub struct Binding {
    /// The Maskinporten client; its token cache lives as long as the client.
    pub maskinporten: Maskinporten,
    /// Access package URN → the scopes a token handed out for it may carry
    /// (`[maskinporten.scopes]`). A package that is not here gets no token.
    pub scopes: HashMap<String, Vec<Scope>>,
    /// Envoy's Check, when `[envoy]` or `[[route]]` is configured.
    pub envoy: Option<EnvoyBinding>,
    /// Altinn's token exchange (`GET …/authentication/api/v1/exchange/maskinporten`),
    /// for routes whose token is `altinn`.
    pub altinn_exchange: Option<url::Url>,
}

/// Envoy's Check as configured.
#[derive(Clone)]
pub struct EnvoyBinding {
    pub config: super::envoy::EnvoyConfig,
    /// Reads the employee from the identity provider's JWT when the
    /// configuration names `employee_jwt_header`.
    pub verifier: Option<Arc<dyn super::envoy::EmployeeVerifier>>,
}

impl Binding {
    /// Binding with this client, no scopes allowed, no Check and no exchange.
    pub fn new(maskinporten: Maskinporten) -> Self {
        Self {
            maskinporten,
            scopes: HashMap::new(),
            envoy: None,
            altinn_exchange: None,
        }
    }

    /// The first of `asked` that `package` may not carry, with the scopes it may.
    pub fn scope_not_allowed(&self, package: &str, asked: &[Scope]) -> Option<String> {
        let allowed = self.scopes.get(package).map(Vec::as_slice).unwrap_or(&[]);
        let bad = asked.iter().find(|s| !allowed.contains(s))?;
        Some(if allowed.is_empty() {
            format!(
                "{} is not allowed: [maskinporten.scopes] allows no scope for {package}",
                bad.as_str()
            )
        } else {
            let list: Vec<&str> = allowed.iter().map(Scope::as_str).collect();
            format!(
                "{} is not allowed for {package} (allowed: {})",
                bad.as_str(),
                list.join(", ")
            )
        })
    }
}

/// The identity provider's verifier is what Check asks for the employee when
/// `[envoy] employee_jwt_header` is set.
impl super::envoy::EmployeeVerifier for crate::maskinporten::IdentityProvider {
    fn employee(&self, jwt: &str) -> Result<String, String> {
        crate::maskinporten::IdentityProvider::employee(self, jwt)
    }
}
