//! The admin API under `/admin`, guarded by `Authorization: Bearer <admin token>`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use s2s_issuer::IssuerConfig;
//!
//! let mut config = IssuerConfig::default();
//! config.listen = "127.0.0.1:0".parse()?;
//! config.db = ":memory:".into();
//! // Without an admin token the admin API is not served at all.
//! config.admin_token = Some(std::env::var("S2S_ISSUER_ADMIN_TOKEN")?.into());
//! let running = s2s_issuer::spawn(config).await?;
//! // curl -X POST {url}/admin/service-accounts -H "Authorization: Bearer $S2S_ISSUER_ADMIN_TOKEN" \
//! //      -H 'Content-Type: application/json' \
//! //      -d '{"name":"billing","scopes":["orders:read"],"allowedIps":["10.0.0.0/8"]}'
//! println!("{}/admin/service-accounts", running.url);
//! # Ok(()) }
//! ```
//!
//! The service-account resource is the seed's Auth Service API (field names as it spells them,
//! dates in RFC 3339 UTC); `{id}` is the `serviceAccountId` (`svc_…`) or the `clientId`:
//!
//! | request | answer |
//! |---|---|
//! | `POST /admin/service-accounts` `{name, description?, scopes[], allowedIps[], audiences[]?, expiresAt?}` | 201 `{serviceAccountId, name, status, clientId, clientSecret, scopes, createdAt, expiresAt, message, …}` (the secret shown once) |
//! | `GET /admin/service-accounts?limit=&cursor=` | 200 `{accounts, nextCursor}` |
//! | `GET /admin/service-accounts/{id}` | 200, the account |
//! | `PATCH /admin/service-accounts/{id}` `{name?, description?, scopes?, allowedIps?, audiences?, status?, expiresAt?}` | 200, the account |
//! | `POST /admin/service-accounts/{id}/rotate-secret` `{gracePeriodSeconds?}` | 200, the account with the new `clientSecret` and a `message` |
//! | `POST /admin/service-accounts/{id}/disable`, `…/enable` | 200, the account |
//! | `DELETE /admin/service-accounts/{id}` | 204 |
//! | `GET /admin/keys` | 200 `{keys: [{kid, alg, active, createdAt, activateAt?, retireAt?}]}` |
//! | `POST /admin/keys/rotate` | 200 `{kid, activatesAt, previousKid, previousRetireAt}` (on PostgreSQL the new key signs from `activatesAt`, see [`keys`](crate::keys)) |
//!
//! `/admin/accounts…` is the same resource under its former name (deprecated; answers carry
//! `Deprecation: true` and a `Link` to the new path).
//!
//! Errors are `{"error", "error_description"}` (plus `"field"` for validation errors): 400
//! `invalid_request` (the description names the field), 401 `unauthorized` (missing or wrong
//! admin token), 404 `not_found`, 409 `conflict` (a name in use), 415 for a body that is not
//! JSON, 503 `temporarily_unavailable` with `Retry-After` while the database is unreachable
//! (nothing is changed; every change is one statement or one transaction, never half-applied). Every answer carries `Cache-Control: no-store`. The admin token is read with
//! [`BearerToken::from_headers`](s2s_auth::BearerToken::from_headers): exactly one
//! `Authorization` header, `Bearer` (any case), spaces, then the token in RFC 6750's `token68`
//! characters (letters, digits, `-._~+/`, trailing `=`); it is compared in constant time
//! (SHA-256 of both sides, then `subtle`).

use axum::{
    Json, Router,
    body::Bytes,
    extract::{OriginalUri, Path, RawQuery, Request, State},
    http::{
        HeaderMap, HeaderName, HeaderValue, StatusCode, Uri,
        header::{CACHE_CONTROL, CONTENT_TYPE, LINK, LOCATION},
    },
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use s2s_auth::{BearerToken, oauth::ErrorBody};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::{
    Error, Issuer,
    accounts::{Account, AccountUpdate, DEFAULT_PAGE, NewAccount},
};

/// The service-account resource's path, and its deprecated former one.
const RESOURCE: &str = "/service-accounts";
const LEGACY_RESOURCE: &str = "/accounts";

/// The admin routes (nested under `/admin` by [`Issuer::router`]).
pub(crate) fn router(issuer: Issuer) -> Router<Issuer> {
    let accounts = || {
        Router::new()
            .route("/", post(create).get(list))
            .route("/{id}", get(get_one).patch(update).delete(delete))
            .route("/{id}/rotate-secret", post(rotate_secret))
            .route("/{id}/disable", post(disable))
            .route("/{id}/enable", post(enable))
    };
    Router::new()
        .nest(RESOURCE, accounts())
        .nest(
            LEGACY_RESOURCE,
            accounts().layer(middleware::from_fn(deprecated)),
        )
        .route("/keys", get(keys))
        .route("/keys/rotate", post(rotate_keys))
        .layer(middleware::from_fn_with_state(issuer, require_admin))
}

/// Marks answers of the former `/admin/accounts` paths (RFC 9745) and links the same request's
/// path under the new resource (RFC 8288 `successor-version`).
async fn deprecated(request: Request, next: Next) -> Response {
    let successor = request
        .extensions()
        .get::<OriginalUri>()
        .map(|OriginalUri(uri)| {
            let legacy = format!("/admin{LEGACY_RESOURCE}");
            uri.path()
                .replacen(&legacy, &format!("/admin{RESOURCE}"), 1)
        });
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("deprecation"),
        HeaderValue::from_static("true"),
    );
    if let Some(link) = successor
        .and_then(|p| HeaderValue::try_from(format!("<{p}>; rel=\"successor-version\"")).ok())
    {
        headers.insert(LINK, link);
    }
    response
}

/// An admin API error: a status and the shared error body (`error`, `error_description`,
/// `field`).
struct AdminError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<u64>,
}

impl AdminError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        AdminError {
            status,
            body: ErrorBody::new(error).with_description(description.into()),
            retry_after: None,
        }
    }

    /// 503 while the database is unreachable: nothing was changed, retry later.
    fn unavailable() -> Self {
        AdminError {
            retry_after: Some(crate::sync::RETRY_AFTER_SECS),
            ..AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the database is unreachable: nothing was changed; retry when /readyz answers \
                 200 (tokens are still issued for known accounts)",
            )
        }
    }

    fn bad_request(description: impl Into<String>) -> Self {
        AdminError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// The error is about `field`.
    fn field(mut self, field: impl Into<String>) -> Self {
        self.body = self.body.with_field(field.into());
        self
    }
}

impl From<Error> for AdminError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { ref field, .. } => {
                let field = field.clone();
                AdminError::bad_request(e.to_string()).field(field)
            }
            Error::NotFound(_) => {
                AdminError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            Error::Conflict(_) => AdminError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            ref unavailable if unavailable.is_unavailable() => {
                tracing::warn!(error = %e, "admin API: the database is unreachable");
                AdminError::unavailable()
            }
            other => {
                tracing::error!(error = %other, "admin API failure");
                AdminError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the issuer could not complete the request",
                )
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut response =
            crate::error::answer(self.status, &self.body, "Bearer realm=\"s2s-issuer-admin\"");
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Checks the admin bearer token; refuses every request with 503 while the database is known
/// to be unreachable (nothing half-done, no wait for a connection); counts the changes made;
/// adds `Cache-Control: no-store` to every answer.
async fn require_admin(State(issuer): State<Issuer>, request: Request, next: Next) -> Response {
    let mut response = if !authorized(&issuer, request.headers()) {
        AdminError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin bearer token is required",
        )
        .into_response()
    } else if !issuer.database_up() {
        AdminError::unavailable().into_response()
    } else {
        let write = request.method() != axum::http::Method::GET;
        let response = next.run(request).await;
        if write && response.status().is_success() {
            issuer.inner.metrics.admin_change();
        }
        response
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn authorized(issuer: &Issuer, headers: &HeaderMap) -> bool {
    let Some(expected) = &issuer.inner.admin_token_digest else {
        return false;
    };
    // One `Bearer <token>` header, as RFC 6750 spells it; anything else is no admin token.
    let Ok(Some(presented)) = BearerToken::from_headers(headers) else {
        return false;
    };
    let presented = presented.as_str();
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    bool::from(digest.ct_eq(expected))
}

/// Parses a JSON body (`None` when empty and `optional`); errors name the field.
fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    optional: bool,
) -> Result<Option<T>, AdminError> {
    if optional && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|v| v.eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(AdminError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "the body must be application/json",
        ));
    }
    Json::<T>::from_bytes(body)
        .map(|Json(v)| Some(v))
        .map_err(|rejection| AdminError::bad_request(rejection.body_text()))
}

/// An account with its new secret, and the seed's reminder that it is shown once.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WithSecret<'a> {
    #[serde(flatten)]
    account: &'a Account,
    client_secret: &'a str,
    message: &'static str,
}

async fn create(
    State(issuer): State<Issuer>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let new: NewAccount = json_body(&headers, &body, false)?
        .ok_or_else(|| AdminError::bad_request("a JSON body is required"))?;
    let created = issuer.accounts().create(new).await?;
    let mut response = (
        StatusCode::CREATED,
        Json(WithSecret {
            account: &created.account,
            client_secret: created.client_secret.expose_secret(),
            message: "Service account created successfully. Save the client secret as it won't be shown again.",
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::try_from(location(&uri, &created.account)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// The new account's URL path: by `serviceAccountId` under the seed's resource, by `clientId`
/// under the former one (as it always was).
fn location(uri: &Uri, account: &Account) -> String {
    let collection = uri.path().trim_end_matches('/');
    let id = if collection.ends_with(RESOURCE) {
        &account.service_account_id
    } else {
        &account.client_id
    };
    format!("{collection}/{id}")
}

async fn list(
    State(issuer): State<Issuer>,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    let mut limit = DEFAULT_PAGE;
    let mut cursor = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "limit" => {
                limit = value.parse().map_err(|_| {
                    AdminError::bad_request(format!("invalid `limit`: `{value}` is not a number"))
                        .field("limit")
                })?;
            }
            "cursor" => cursor = Some(value.into_owned()),
            other => {
                return Err(AdminError::bad_request(format!(
                    "unknown query parameter `{other}`; expected `limit` or `cursor`"
                ))
                .field(other));
            }
        }
    }
    let page = issuer.accounts().list(limit, cursor.as_deref()).await?;
    Ok(Json(page).into_response())
}

async fn get_one(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    match issuer.accounts().get(&id).await? {
        Some(account) => Ok(Json(account).into_response()),
        None => Err(Error::NotFound(id).into()),
    }
}

async fn update(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let update: AccountUpdate = json_body(&headers, &body, false)?
        .ok_or_else(|| AdminError::bad_request("a JSON body is required"))?;
    let account = issuer.accounts().update(&id, update).await?;
    Ok(Json(account).into_response())
}

async fn disable(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    Ok(Json(issuer.accounts().disable(&id).await?).into_response())
}

async fn enable(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    Ok(Json(issuer.accounts().enable(&id).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateSecret {
    #[serde(default)]
    grace_period_seconds: u64,
}

async fn rotate_secret(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let request: RotateSecret = json_body(&headers, &body, true)?.unwrap_or_default();
    let rotated = issuer
        .accounts()
        .rotate_secret(
            &id,
            std::time::Duration::from_secs(request.grace_period_seconds),
        )
        .await?;
    Ok(Json(WithSecret {
        account: &rotated.account,
        client_secret: rotated.client_secret.expose_secret(),
        message: "Client secret rotated successfully. Save the client secret as it won't be shown again.",
    })
    .into_response())
}

async fn delete(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    issuer.accounts().delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn keys(State(issuer): State<Issuer>) -> Result<Response, AdminError> {
    Ok(Json(json!({ "keys": issuer.signing_keys().await? })).into_response())
}

async fn rotate_keys(State(issuer): State<Issuer>) -> Result<Response, AdminError> {
    Ok(Json(issuer.rotate_signing_key().await?).into_response())
}
