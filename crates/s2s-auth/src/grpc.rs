//! Feature `tonic`: the verified token in tonic handlers, refusals as [`tonic::Status`].
//!
//! Put [`VerifyLayer`](crate::VerifyLayer) (and [`RequireScopeLayer`](crate::RequireScopeLayer))
//! on the tonic server; they answer refused gRPC calls with gRPC statuses (see
//! [`rejection`](crate::rejection#grpc)) and hand the claims of the others to the handlers:
//!
//! ```
//! use s2s_auth::{RequireScopeLayer, grpc};
//! use tonic::{Request, Response, Status};
//!
//! async fn cancel_order(request: Request<()>) -> Result<Response<()>, Status> {
//!     let verified = grpc::verified(&request)?;
//!     // A check of one method, where the layer guards the whole service.
//!     RequireScopeLayer::all(["orders:cancel"]).check(verified.scopes())?;
//!     tracing::info!(sub = ?verified.standard().sub, "order cancelled");
//!     Ok(Response::new(()))
//! }
//! # fn stack(verifier: s2s_auth::Verifier) {
//! // Server::builder().layer(tower::ServiceBuilder::new()
//! //     .layer(VerifyLayer::new(verifier))
//! //     .layer(RequireScopeLayer::any(["orders:read"])))
//! # let _ = verifier; }
//! ```
//!
//! A [`Rejection`] becomes the [`Status`] a refused call gets from the layers: its code
//! ([`Reason::grpc_status`]), its description as the message, the `WWW-Authenticate` challenge
//! in the metadata.

use http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use tonic::{Code, Status, metadata::MetadataMap};

use crate::{
    claims::Verified,
    layer::verify::PassedWithoutToken,
    rejection::{Reason, Rejection, Responder},
};

/// The verified token of a call that passed [`VerifyLayer`](crate::VerifyLayer).
///
/// UNAUTHENTICATED for a call that passed an optional layer without a token; INTERNAL (and an
/// error in the log) when the service has no `VerifyLayer` at all.
pub fn verified<T>(request: &tonic::Request<T>) -> Result<&Verified, Status> {
    let extensions = request.extensions();
    match extensions.get::<Verified>() {
        Some(verified) => Ok(verified),
        None if extensions.get::<PassedWithoutToken>().is_some() => {
            Err(Rejection::new(Reason::MissingToken, Reason::MissingToken.summary()).into())
        }
        None => {
            tracing::error!(
                target: "s2s_auth::verify",
                "a tonic handler asked for token claims but the server has no VerifyLayer; \
                 add it with `Server::builder().layer(VerifyLayer::new(verifier))`"
            );
            Err(Rejection::new(Reason::MissingLayer, Reason::MissingLayer.summary()).into())
        }
    }
}

/// The claims of the call's verified token as `C`; UNAUTHENTICATED (`invalid_token`) when they
/// do not have that shape (the specifics go to the log, not to the caller).
pub fn claims<C: DeserializeOwned, T>(request: &tonic::Request<T>) -> Result<C, Status> {
    verified(request)?.claims::<C>().map_err(|e| {
        let detail = format!("the token's claims do not have the shape this method expects: {e}");
        tracing::debug!(target: "s2s_auth::verify", reason = %Reason::MissingClaim, detail, "token rejected");
        Rejection::summarized(Reason::MissingClaim, detail).into()
    })
}

impl From<Rejection> for Status {
    fn from(rejection: Rejection) -> Status {
        Status::from(&rejection)
    }
}

impl From<&Rejection> for Status {
    /// The code and message of [`Responder::respond_grpc`]'s answer, its `WWW-Authenticate`
    /// and `Retry-After` as metadata.
    fn from(rejection: &Rejection) -> Status {
        let (parts, _) = Responder::default().respond_grpc(rejection).into_parts();
        let mut metadata = HeaderMap::new();
        for name in [header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
            if let Some(value) = parts.headers.get(&name) {
                metadata.insert(name, value.clone());
            }
        }
        Status::with_metadata(
            Code::from(i32::from(rejection.reason().grpc_status())),
            rejection.description(),
            MetadataMap::from_headers(metadata),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::claims::{StandardClaims, VerifiedInner};

    fn verified_request(payload: &str) -> tonic::Request<()> {
        let claims: StandardClaims = serde_json::from_str(payload).unwrap();
        let verified = Verified(Arc::new(VerifiedInner {
            claims,
            payload: payload.as_bytes().into(),
            kid: None,
            alg: jsonwebtoken::Algorithm::ES256,
        }));
        let mut request = tonic::Request::new(());
        request.extensions_mut().insert(verified);
        request
    }

    #[test]
    fn handlers_read_the_claims() {
        let request = verified_request(r#"{"iss":"i","sub":"billing","exp":1,"tenant":"t1"}"#);
        assert_eq!(
            verified(&request).unwrap().standard().sub.as_deref(),
            Some("billing")
        );
        #[derive(serde::Deserialize)]
        struct Tenant {
            tenant: String,
        }
        assert_eq!(claims::<Tenant, _>(&request).unwrap().tenant, "t1");
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Region {
            region: String,
        }
        let status = claims::<Region, _>(&request).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), Reason::MissingClaim.summary());
        assert!(!status.message().contains("region"), "{status:?}");
    }

    #[test]
    fn no_token_and_no_layer_are_told_apart() {
        let mut passed = tonic::Request::new(());
        passed.extensions_mut().insert(PassedWithoutToken);
        assert_eq!(verified(&passed).unwrap_err().code(), Code::Unauthenticated);
        let bare = tonic::Request::new(());
        assert_eq!(verified(&bare).unwrap_err().code(), Code::Internal);
    }

    #[test]
    fn rejections_become_statuses_with_the_challenge() {
        let status = Status::from(Rejection::insufficient_scope(
            "orders:cancel".into(),
            "requires orders:cancel".into(),
        ));
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "requires orders:cancel");
        let challenge = status.metadata().get("www-authenticate").unwrap();
        assert!(
            challenge
                .to_str()
                .unwrap()
                .contains(r#"error="insufficient_scope", error_description="requires orders:cancel", scope="orders:cancel""#),
            "{challenge:?}"
        );
        let status = Status::from(Rejection::new(Reason::KeysUnavailable, "50% later é"));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "50% later é");
    }
}
