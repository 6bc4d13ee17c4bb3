//! Envoy's `envoy.service.auth.v3.Authorization/Check` on the real server.

use super::state::Vakt;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The Check service over the sidecar's state.
pub(super) struct EnvoyCheck(Arc<Vakt>);

/// The Check service, ready to add to the server.
pub(super) fn service(vakt: Arc<Vakt>) -> AuthorizationServer<EnvoyCheck> {
    AuthorizationServer::new(EnvoyCheck(vakt))
}

#[tonic::async_trait]
impl Authorization for EnvoyCheck {
    async fn check(&self, _req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let _ = &self.0;
        Err(Status::unimplemented("not yet"))
    }
}
