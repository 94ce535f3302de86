//! The library's [`Error`], and the error answers of its HTTP endpoints.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header::WWW_AUTHENTICATE},
    response::Response,
};
use s2s_auth::oauth::ErrorBody;

/// What went wrong opening the issuer or managing accounts and keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid; `field` names it.
    #[error("invalid configuration: `{field}`: {message}")]
    Config {
        /// The field, dotted for nested tables (`rate_limit.per_ip`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// An argument (an account's name, scopes, CIDRs, …) is invalid; `field` names it.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// The field, in the admin API's JSON spelling (`allowedIps[1]`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No service account has this service account id or client id.
    #[error("no service account `{0}`")]
    NotFound(String),
    /// The change conflicts with stored data (e.g. a name already in use).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed.
    #[error("storage error: {0}")]
    Storage(#[from] sqlx::Error),
    /// The database schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A signing key could not be generated, loaded or used.
    #[error("signing key error: {0}")]
    Key(String),
    /// A background task (hashing) failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether the database could not be reached (rather than refusing the request): the
    /// caller may retry later, the change was not made.
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            Error::Storage(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // PostgreSQL's connection exceptions (08…) and shutdowns (57P0…).
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
                _ => false,
            },
            _ => false,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error answer of the issuer: `body` with `status`, never cached, and on a 401 the
/// `challenge` of the endpoint's scheme (RFC 9110 §15.5.2).
pub(crate) fn answer(status: StatusCode, body: &ErrorBody, challenge: &'static str) -> Response {
    let mut response = body.to_response(status).map(Body::from);
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}
