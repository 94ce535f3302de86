//! The gateway's own answers: JSON bodies `{"error", "error_description"}`
//! ([`ErrorBody`]), never cached.

use std::fmt::Display;

use http::{HeaderValue, Response, StatusCode, header};

use s2s_auth::oauth::ErrorBody;

use crate::{Body, proxy::full};

/// A JSON answer of the gateway itself (not of an upstream, not an RFC 6750 rejection).
pub(crate) fn json_error(
    status: StatusCode,
    error: &'static str,
    description: impl Display,
) -> Response<Body> {
    ErrorBody::new(error)
        .with_description(description.to_string())
        .to_response(status)
        .map(full)
}

/// A JSON answer with `body`.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
