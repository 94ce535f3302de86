//! The protected app of every suite: axum routes behind `VerifyLayer` (and `RequireScope`), on
//! `127.0.0.1:0`.
//!
//! ```no_run
//! # async fn run(verifier: s2s_auth::Verifier) {
//! use axum::{Router, routing::get};
//! use s2s_auth::VerifyLayer;
//!
//! let routes = Router::new().route("/orders", get(|| async { "orders" }));
//! let app = s2s_tests::app::protected_app(routes, VerifyLayer::new(verifier), &["orders:read"]).await;
//! let orders = format!("{}/orders", app.url());
//! # }
//! ```

use axum::Router;
use s2s_auth::{RequireScopeLayer, VerifyLayer};
use s2s_auth_testkit::server::Server;

/// `routes` behind `verify`, each requiring every scope of `scopes` (no scope check when it is
/// empty; routes may carry `RequireScope` layers of their own). Merge routes outside the layer
/// into the result before serving it.
pub fn protected_router(routes: Router, verify: VerifyLayer, scopes: &[&str]) -> Router {
    let routes = if scopes.is_empty() {
        routes
    } else {
        routes.route_layer(RequireScopeLayer::all(scopes.iter().copied()))
    };
    routes.layer(verify)
}

/// [`protected_router`] served on `127.0.0.1:0` until the [`Server`] is dropped.
pub async fn protected_app(routes: Router, verify: VerifyLayer, scopes: &[&str]) -> Server {
    Server::start(protected_router(routes, verify, scopes)).await
}
