//! axum extractors (feature `axum`): [`Claims`], `Option<Claims>`, [`Scopes`], [`BearerToken`]
//! and [`Required`] scopes, reading what [`VerifyLayer`](crate::VerifyLayer) verified.
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use s2s_auth::{Scopes, extract::{Claims, Required, ScopeRequirement}};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct MyClaims {
//!     sub: String,
//!     tenant: Option<String>,
//! }
//!
//! struct OrdersRead;
//! impl ScopeRequirement for OrdersRead {
//!     const SCOPES: &'static [&'static str] = &["orders:read"];
//! }
//!
//! async fn whoami(Claims(claims): Claims<MyClaims>, scopes: Scopes) -> String {
//!     format!("{} ({:?}) with {} scopes", claims.sub, claims.tenant, scopes.len())
//! }
//!
//! async fn orders(_: Required<OrdersRead>, claims: Option<Claims>) -> &'static str {
//!     "orders"
//! }
//!
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/orders", get(orders));
//! // ... then `.layer(VerifyLayer::new(verifier))`.
//! ```
//!
//! Every rejection answers per RFC 6750 (see [`Rejection`]). A handler that asks for claims on
//! a route without `VerifyLayer` gets a 500 whose description says to add the layer: that is a
//! server bug, not the client's.

use std::{
    any::{Any, TypeId},
    marker::PhantomData,
};

use axum_core::{
    body::Body,
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::{
    bearer::BearerToken,
    claims::{Match, ScopePolicy, Scopes, StandardClaims, Verified},
    layer::verify::{LayerResponder, PassedWithoutToken},
    rejection::{Reason, Rejection},
};

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.to_response().map(Body::from)
    }
}

/// The verified token of the request, or why there is none, answered as the request's
/// `VerifyLayer` answers.
fn verified(parts: &Parts) -> Result<&Verified, Rejection> {
    verified_or_why(parts).map_err(|r| with_layer_responder(r, parts))
}

fn with_layer_responder(rejection: Rejection, parts: &Parts) -> Rejection {
    let layer = parts.extensions.get::<LayerResponder>();
    rejection.with_responder(layer.map(|l| &l.0))
}

fn verified_or_why(parts: &Parts) -> Result<&Verified, Rejection> {
    match parts.extensions.get::<Verified>() {
        Some(v) => Ok(v),
        None if parts.extensions.get::<PassedWithoutToken>().is_some() => Err(Rejection::new(
            Reason::MissingToken,
            "this endpoint requires a bearer token: send `Authorization: Bearer <token>`",
        )),
        None => Err(missing_layer()),
    }
}

fn missing_layer() -> Rejection {
    tracing::error!(
        target: "s2s_auth::verify",
        "a handler asked for token claims on a route without VerifyLayer; add \
         `.layer(VerifyLayer::new(verifier))` to the router"
    );
    Rejection::new(
        Reason::MissingLayer,
        "server misconfiguration: this route reads token claims but has no VerifyLayer; \
         add `.layer(VerifyLayer::new(verifier))` to it",
    )
}

/// The claims of the verified token, as `T` (default [`StandardClaims`]).
///
/// `Option<Claims<T>>` is `None` for a request that passed an optional `VerifyLayer` without a
/// token. Claims that do not deserialize into `T` are refused with 401 `invalid_token`.
#[derive(Clone, Debug)]
pub struct Claims<T = StandardClaims>(pub T);

impl<T: DeserializeOwned + 'static> Claims<T> {
    fn from_verified(verified: &Verified) -> Result<Self, Rejection> {
        // The standard claims are parsed already: hand them over instead of parsing again.
        if TypeId::of::<T>() == TypeId::of::<StandardClaims>() {
            let boxed: Box<dyn Any> = Box::new(verified.standard().clone());
            if let Ok(t) = boxed.downcast::<T>() {
                return Ok(Claims(*t));
            }
        }
        verified.claims::<T>().map(Claims).map_err(|e| {
            // Which claim this handler expects is for the log, not the caller.
            let detail = format!("the token's claims do not have the shape this endpoint expects: {e}");
            tracing::debug!(target: "s2s_auth::verify", reason = %Reason::MissingClaim, detail, "token rejected");
            Rejection::summarized(Reason::MissingClaim, detail)
        })
    }
}

impl<S, T> FromRequestParts<S> for Claims<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        Claims::from_verified(verified(parts)?).map_err(|r| with_layer_responder(r, parts))
    }
}

impl<S, T> OptionalFromRequestParts<S> for Claims<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Rejection> {
        match verified(parts) {
            Ok(v) => Claims::from_verified(v)
                .map(Some)
                .map_err(|r| with_layer_responder(r, parts)),
            Err(r) if r.reason() == Reason::MissingToken => Ok(None),
            Err(r) => Err(r),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scopes {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        Ok(verified(parts)?.scopes().clone())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Verified {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        verified(parts).cloned()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        verified(parts)?;
        parts
            .extensions
            .get::<BearerToken>()
            .cloned()
            .ok_or_else(missing_layer)
    }
}

/// Scopes a handler requires, for the [`Required`] extractor.
pub trait ScopeRequirement: Send + Sync + 'static {
    /// The scopes.
    const SCOPES: &'static [&'static str];
    /// Whether all are needed (the default) or any one.
    const MATCH: Match = Match::All;
}

/// An extractor that refuses the request (403 `insufficient_scope`) unless the token has the
/// scopes of `R`. See the [module docs](self).
pub struct Required<R>(PhantomData<fn() -> R>);

impl<R> std::fmt::Debug for Required<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Required")
    }
}

impl<S: Send + Sync, R: ScopeRequirement> FromRequestParts<S> for Required<R> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        let scopes = verified(parts)?.scopes();
        let granted = match R::MATCH {
            Match::All => scopes.contains_all(R::SCOPES),
            Match::Any => scopes.contains_any(R::SCOPES),
        };
        if granted {
            return Ok(Required(PhantomData));
        }
        ScopePolicy::new(R::SCOPES.iter().copied(), R::MATCH)
            .check(scopes)
            .map(|()| Required(PhantomData))
            .map_err(|r| with_layer_responder(r, parts))
    }
}
