//! The gateway's own answers: JSON bodies `{"error", "error_description"}`
//! ([`ErrorBody`]), never cached.

use std::fmt::Display;

use http::{Response, StatusCode};

use s2s_auth::oauth::{self, ErrorBody};

use crate::body::Plain;

/// A JSON answer of the gateway itself (not of an upstream, not an RFC 6750 rejection).
pub(crate) fn json_error<B: From<Plain>>(
    status: StatusCode,
    error: &'static str,
    description: impl Display,
) -> Response<B> {
    ErrorBody::new(error)
        .with_description(description.to_string())
        .to_response(status)
        .map(|b| Plain::full(b).into())
}

/// A JSON answer with `body`.
pub(crate) fn json<B: From<Plain>>(status: StatusCode, body: &serde_json::Value) -> Response<B> {
    oauth::json_response(status, body.to_string()).map(|b| Plain::full(b).into())
}
