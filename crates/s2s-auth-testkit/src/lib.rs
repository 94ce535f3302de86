//! Test helpers for services that use `s2s-auth`: tokens for unit tests without sockets
//! ([`Minter`]), and the real authorization server in-process with faults on demand
//! ([`TestIssuer`]).
//!
//! Testing an axum handler behind `VerifyLayer`:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use s2s_auth::{VerifyLayer, extract::Claims};
//! use s2s_auth_testkit::Minter;
//! use serde_json::json;
//! use tower::ServiceExt as _;
//!
//! let minter = Minter::es256().audience("orders-api");
//! let app = Router::new()
//!     .route("/orders", get(|Claims(c): Claims| async move { c.sub.unwrap_or_default() }))
//!     .layer(VerifyLayer::new(minter.verifier()));
//! let token = minter.token(json!({ "sub": "billing" }));
//! let request = Request::get("/orders").header("authorization", format!("Bearer {token}"));
//! let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```
//!
//! With a socket, against the real issuer (`s2s-issuer`, in memory on `127.0.0.1:0`):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use s2s_auth_testkit::{Endpoint, Fault, TestIssuer};
//! use serde_json::json;
//!
//! let issuer = TestIssuer::start().await;
//! let account = issuer.account("billing", &["orders:read"]).await; // client id and secret
//! let token = issuer.token(json!({ "scope": "orders:read", "tenant": "eu" })); // any claims
//! issuer.rotate_keys().await; // the old key stays published until its tokens expire
//! issuer.set_fault(Endpoint::Token, Fault::RateLimited { retry_after: 1 });
//! issuer.fail_next(Endpoint::Jwks, Fault::Status(503), 1);
//! issuer.set_clock_skew(-120); // the issuer's clock two minutes behind
//! # let _ = (account, token);
//! # }
//! ```
//!
//! # Modules
//!
//! [`minter`] (tokens without sockets), [`issuer`] (the in-process issuer), [`faults`] (what
//! it can be made to do wrong), [`keys`] (keys generated at test time and tokens of any
//! shape, well-formed or hostile), [`server`] (any axum router on a loopback port, closed on
//! drop).
//!
//! [`Algorithm`] is `jsonwebtoken`'s, re-exported so that a test needs no `jsonwebtoken`
//! dependency of its own to pick a key type.

#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod faults;
pub mod issuer;
pub mod keys;
pub mod minter;
pub mod server;

pub use faults::{Endpoint, Fault};
pub use issuer::{TestAccount, TestIssuer, TestIssuerBuilder};
pub use jsonwebtoken::Algorithm;
pub use keys::TestKey;
pub use minter::Minter;
