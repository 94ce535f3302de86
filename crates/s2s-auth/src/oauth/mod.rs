//! The OAuth 2.0 wire types: the one definition of what travels between a client and a token
//! endpoint, and of the error bodies every part of the workspace answers with.
//!
//! The client ([`ClientCredentials`](crate::token::ClientCredentials)) writes a
//! [`TokenRequest`] and reads a [`TokenAnswer`] or an [`ErrorBody`]; the issuer (`s2s-issuer`)
//! reads the request and writes the answers; the gateway, the RFC 6750
//! [`Responder`](crate::Responder) and the test servers write error bodies. Both
//! [`Dialect`]s are here: RFC 6749 (a form, a snake_case answer) and the Auth Service JSON
//! dialect (a JSON body, a camelCase answer); error bodies are the same in both.
//!
//! ```
//! use s2s_auth::{Code, oauth::{Dialect, ErrorBody, TokenAnswer, TokenRequest}};
//!
//! // The client writes…
//! let (content_type, body) = TokenRequest::client_credentials()
//!     .scope("orders:read")
//!     .client_secret_post("billing", "s3cret".to_owned())
//!     .encode(Dialect::Json);
//! assert_eq!(content_type, "application/json");
//!
//! // …the server reads, and answers with a token or an error.
//! let request: TokenRequest = serde_json::from_slice(&body).unwrap();
//! assert_eq!(request.requested_scope(), Some("orders:read"));
//! let ok = TokenAnswer::bearer("eyJ…").expires_in(300).scope("orders:read");
//! assert_eq!(ok.to_response(Dialect::Json).status(), 200);
//! let refused = ErrorBody::new("invalid_client")
//!     .with_description("invalid client credentials")
//!     .with_code(Code::InvalidClient);
//! assert_eq!(refused.to_response(http::StatusCode::UNAUTHORIZED).status(), 401);
//! ```

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

mod answer;
mod client_auth;
mod dialect;
mod error_body;
mod request;

pub use answer::TokenAnswer;
pub(crate) use answer::parse_success;
pub use client_auth::{client_secret_basic, parse_client_secret_basic};
pub use dialect::Dialect;
pub use error_body::ErrorBody;
pub(crate) use error_body::parse_error;
pub use request::{CLIENT_CREDENTIALS, JWT_BEARER_ASSERTION, TokenRequest};

/// A JSON answer that no cache keeps: `status`, `Content-Type: application/json`,
/// `Cache-Control: no-store` (RFC 6749 §5.1). [`TokenAnswer`] and [`ErrorBody`] answer with it;
/// a server's other JSON answers may too.
///
/// ```
/// let response = s2s_auth::oauth::json_response(http::StatusCode::OK, r#"{"status":"ok"}"#);
/// assert_eq!(response.headers()["cache-control"], "no-store");
/// ```
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
