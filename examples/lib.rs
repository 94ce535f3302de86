//! Pieces the examples share: logging, the protected service's router, the gRPC service, and
//! how the examples read their setup ([`setup`]).

pub mod setup;

use axum::{Json, Router, routing::get};
use s2s_auth::{RequireScopeLayer, StandardClaims, Verifier, VerifyLayer, extract::Claims};
use tonic::transport::{Server, server::TcpIncoming};

/// The protected service: `GET /whoami` answers the verified claims as JSON behind
/// [`VerifyLayer`] (and [`RequireScopeLayer`] when `required_scopes` is not empty); `GET /healthz`
/// answers without authentication.
pub fn protected_router(verifier: Verifier, required_scopes: Vec<String>) -> Router {
    let mut protected = Router::new().route("/whoami", get(whoami));
    if !required_scopes.is_empty() {
        protected = protected.route_layer(RequireScopeLayer::all(required_scopes));
    }
    Router::new()
        .merge(protected.layer(VerifyLayer::new(verifier)))
        .route("/healthz", get(|| async { "ok" }))
}

/// The gRPC service of `grpc_service`, served over h2c on `listener` until it fails: the
/// standard `grpc.health.v1.Health` (tonic-health, the overall health "" SERVING) behind
/// [`VerifyLayer`] and [`RequireScopeLayer`] (with no scopes, every verified token passes).
pub async fn serve_grpc_health(
    listener: tokio::net::TcpListener,
    verifier: Verifier,
    required_scopes: Vec<String>,
) -> Result<(), tonic::transport::Error> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let auth = tower::ServiceBuilder::new()
        .layer(VerifyLayer::new(verifier))
        .layer(RequireScopeLayer::all(required_scopes));
    Server::builder()
        .layer(auth)
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
}

async fn whoami(Claims(claims): Claims) -> Json<StandardClaims> {
    Json(claims)
}

/// Logs to stderr at `default_level`, or as `RUST_LOG` says.
pub fn init_tracing(default_level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .init();
}
