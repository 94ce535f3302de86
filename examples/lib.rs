//! Pieces the examples share: logging, the protected service's router, and how both examples
//! read their setup ([`setup`]).

pub mod setup;

use axum::{Json, Router, routing::get};
use s2s_auth::{RequireScopeLayer, StandardClaims, Verifier, VerifyLayer, extract::Claims};

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
