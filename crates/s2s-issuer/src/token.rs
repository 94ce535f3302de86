//! The token endpoint, `POST /token`: the client credentials grant (RFC 6749 §4.4).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use s2s_issuer::{IssuerConfig, accounts::NewAccount};
//! use secrecy::ExposeSecret as _;
//!
//! let mut config = IssuerConfig::default();
//! config.listen = "127.0.0.1:0".parse()?;
//! config.db = ":memory:".into();
//! let running = s2s_issuer::spawn(config).await?;
//! let created = running
//!     .issuer
//!     .accounts()
//!     .create(NewAccount::new("billing").scope("orders:read"))
//!     .await?;
//! // POST {url}/token with
//! //   Authorization: Basic base64(urlencode(client_id) ":" urlencode(client_secret))
//! //   Content-Type: application/x-www-form-urlencoded
//! //   grant_type=client_credentials&scope=orders:read
//! println!("{}/token {} {}", running.url, created.account.client_id, created.client_secret.expose_secret());
//! # Ok(()) }
//! ```
//!
//! Requests: `application/x-www-form-urlencoded` with `client_secret_basic` (HTTP Basic, id and
//! secret each form-urlencoded, RFC 6749 §2.3.1) or `client_secret_post` (`client_id` and
//! `client_secret` in the form); or `application/json` with `grantType`, `clientId`,
//! `clientSecret`, `scope`. Optional `scope` (space-delimited; all of the account's scopes when
//! absent) and `audience` / `resource` (RFC 8707; one of the account's `audiences` or the
//! default audience).
//!
//! Answers, all with `Cache-Control: no-store`: `200` in the request's dialect
//! ([`Dialect`]): `{"access_token","token_type":"Bearer","expires_in","scope"}` for
//! a form, `{"accessToken","expiresIn","tokenType":"Bearer","scope"}` for JSON; or, in both, an
//! RFC 6749 §5.2 error `{"error","error_description","code"}`:
//!
//! | case | status | error | code |
//! |---|---|---|---|
//! | malformed body, missing field, wrong content type, two auth methods | 400 | `invalid_request` | |
//! | `grant_type` other than `client_credentials` | 400 | `unsupported_grant_type` | |
//! | unknown client, wrong or missing secret | 401 (+ `WWW-Authenticate: Basic`) | `invalid_client` | AUTH_101 |
//! | a scope the account does not have | 400 | `invalid_scope` | AUTH_102 |
//! | disabled account, or past its `expiresAt` | 401 | `unauthorized_client` | AUTH_103 |
//! | source IP outside `allowedIps` | 403 | `unauthorized_client` | AUTH_104 |
//! | rate limited (see below) | 429 (+ `Retry-After`) | `rate_limited` | AUTH_106 |
//! | an audience the account may not request | 400 | `invalid_target` | AUTH_107 |
//! | the queue of secret checks is full | 503 (+ `Retry-After: 1`) | `temporarily_unavailable` | |
//!
//! The checks run in this order: rate limit per source address, body, grant type, client
//! authentication format, then the secret: a (client id, secret) pair that verified before and
//! whose hash the account still holds passes at once; otherwise one failure is reserved in the
//! failure budgets of the address and of the (client id, address) pair (429 when either is
//! spent, before any hash work), the check waits in a bounded queue (503 when full) and runs
//! argon2id twice whatever the outcome; a match gives the reserved failure back. Then the rate
//! limit per client id (charged only now, so wrong secrets sent under a client's id never spend
//! its budget), status, IP, scope, audience. An unknown client, a wrong secret and a wrong
//! secret during a rotation grace period get the same answer after the same work; status, IP
//! and scope are only revealed to a caller that proved the secret.
//!
//! The source address is the socket's peer, or, when the peer is one of `trusted_proxies`, the
//! right-most `X-Forwarded-For` entry that is not a trusted proxy. IPv6 addresses share their
//! /64's rate-limit buckets.

use std::net::{IpAddr, SocketAddr};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA, RETRY_AFTER},
    },
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use ipnet::IpNet;
use s2s_auth::{
    Code,
    oauth::{Dialect, ErrorBody, TokenAnswer, TokenRequest, parse_client_secret_basic},
};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde_json::json;

use crate::{Issuer, accounts::canonical_ip, accounts::is_scope_token, audit, secret::Checked};

/// The largest token request body accepted.
const MAX_BODY: usize = 16 * 1024;
/// Longer client ids and secrets are refused without a lookup.
const MAX_CLIENT_ID: usize = 256;
const MAX_SECRET: usize = 1024;

/// A refusal: a status and the shared error body (`error`, `error_description`, `code`).
#[derive(Debug)]
struct TokenError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<u64>,
}

impl TokenError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        TokenError {
            status,
            body: ErrorBody::new(error).with_description(description.into()),
            retry_after: None,
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        TokenError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client(description: impl Into<String>) -> Self {
        TokenError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
            .code(Code::InvalidClient)
    }

    fn code(mut self, code: Code) -> Self {
        self.body = self.body.with_code(code);
        self
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        // Every 401 names the scheme (RFC 6749 §5.2, RFC 9110 §15.5.2).
        let mut response = crate::error::answer(
            self.status,
            &self.body,
            "Basic realm=\"s2s-issuer\", charset=\"UTF-8\"",
        );
        let headers = response.headers_mut();
        no_store(headers);
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::try_from(secs.to_string())
        {
            headers.insert(RETRY_AFTER, v);
        }
        response
    }
}

/// At most `max` characters of `s`, escaped, to quote in a description.
fn quoted(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), as some proxies write it.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(canonical_ip)
}

/// The client's address. `peer` is the socket's peer; when it is in `trusted_proxies`, the
/// `X-Forwarded-For` entries (all such headers, in order) are read from the right, skipping
/// trusted proxies, and the first other address is the client. An entry that is not an address
/// ends the walk at the last trusted hop (no client can name itself through garbage); a chain
/// of trusted proxies only yields its left-most entry. Without a trusted peer the header is
/// ignored.
pub(crate) fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted_proxies: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.map(canonical_ip);
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let Some(mut client) = peer.filter(trusted) else {
        return peer;
    };
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|entry| !entry.trim().is_empty())
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = forwarded_address(entry) else {
            break;
        };
        client = ip;
        if !trusted(&ip) {
            break;
        }
    }
    Some(client)
}

fn source_ip(request: &Request, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    client_address(peer, request.headers(), trusted_proxies)
}

/// The access token's claims (RFC 9068).
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    client_id: &'a str,
    aud: serde_json::Value,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
}

/// `POST /token`.
pub(crate) async fn handler(State(issuer): State<Issuer>, request: Request) -> Response {
    let ip = source_ip(&request, &issuer.inner.trusted_proxies);
    let mut client_id: Option<String> = None;
    match issue(&issuer, request, ip, &mut client_id).await {
        Ok(response) => response,
        Err(refusal) => {
            issuer.inner.metrics.refused(
                refusal.body.code_str(),
                refusal.status == StatusCode::TOO_MANY_REQUESTS,
            );
            audit::refused(
                client_id.as_deref(),
                ip,
                refusal.body.error().unwrap_or_default(),
                refusal.body.code_str(),
                refusal.body.description().unwrap_or_default(),
            );
            refusal.into_response()
        }
    }
}

async fn issue(
    issuer: &Issuer,
    request: Request,
    ip: Option<IpAddr>,
    client_id_out: &mut Option<String>,
) -> Result<Response, TokenError> {
    let inner = &issuer.inner;
    let rate_limited = |limited: crate::ratelimit::Limited| {
        TokenError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many token requests from this {}", limited.what),
        )
        .code(Code::RateLimited)
        .retry_after(limited.retry_after_secs())
    };
    inner.limits.check_ip(ip).map_err(rate_limited)?;

    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        TokenError::invalid_request(format!(
            "the body is unreadable or larger than {MAX_BODY} bytes"
        ))
    })?;
    let dialect = Dialect::from_headers(&parts.headers).ok_or_else(|| {
        TokenError::invalid_request(
            "the Content-Type must be application/x-www-form-urlencoded (or application/json)",
        )
    })?;
    // axum reads the JSON dialect for its error texts; every other dialect is a form.
    let mut params = match dialect {
        Dialect::Json => Json::<TokenRequest>::from_bytes(&body)
            .map(|Json(request)| request)
            .map_err(|rejection| TokenError::invalid_request(rejection.body_text()))?,
        _ => TokenRequest::from_form(&body)
            .map_err(|e| TokenError::invalid_request(e.message().to_owned()))?,
    };

    match params.grant_type() {
        None | Some("") => return Err(TokenError::invalid_request("`grant_type` is missing")),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(TokenError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!(
                    "`{}` is not supported; use client_credentials",
                    quoted(other, 64)
                ),
            ));
        }
    }

    // Client authentication: Basic or the body, never both.
    let authorization = parts.headers.get(AUTHORIZATION);
    let (client_id, secret) = if let Some(value) = authorization {
        let (id, secret) = parse_client_secret_basic(value)
            .map_err(|e| TokenError::invalid_client(e.message().to_owned()))?;
        if params.client_secret().is_some() || params.has_client_assertion() {
            return Err(TokenError::invalid_request(
                "more than one client authentication method (RFC 6749 §2.3)",
            ));
        }
        if params.client_id().is_some_and(|body_id| body_id != id) {
            return Err(TokenError::invalid_request(
                "`client_id` differs from the Basic credentials",
            ));
        }
        (id, secret)
    } else {
        if params.has_client_assertion() {
            *client_id_out = params.take_client_id();
            return Err(TokenError::invalid_client(
                "private_key_jwt client authentication is not supported here",
            ));
        }
        match (params.take_client_id(), params.take_client_secret()) {
            (Some(id), Some(secret)) => (id, secret),
            (id, _) => {
                *client_id_out = id;
                return Err(TokenError::invalid_client(
                    "client authentication is required: HTTP Basic, or client_id and client_secret",
                ));
            }
        }
    };
    *client_id_out = Some(client_id.clone());
    let presented = secret.expose_secret();
    if client_id.is_empty()
        || client_id.len() > MAX_CLIENT_ID
        || presented.is_empty()
        || presented.len() > MAX_SECRET
    {
        return Err(TokenError::invalid_client("invalid client credentials"));
    }

    let server_error = |e: crate::Error| {
        tracing::error!(error = %e, "token endpoint failure");
        TokenError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the issuer could not complete the request",
        )
    };
    let credentials = inner
        .accounts
        .credentials(&client_id)
        .await
        .map_err(server_error)?;
    let accepted: Vec<&str> = credentials
        .as_ref()
        .map(|c| c.accepted_hashes().collect())
        .unwrap_or_default();
    let hasher = &inner.accounts.hasher;
    let verified = hasher.remembered(&client_id, presented, &accepted) || {
        let reservation = inner
            .limits
            .reserve_failure(&client_id, ip)
            .map_err(rate_limited)?;
        match hasher
            .check(&client_id, presented, &accepted)
            .await
            .map_err(server_error)?
        {
            Checked::Verified => {
                reservation.give_back();
                true
            }
            Checked::Refused => false,
            Checked::Busy => {
                reservation.give_back();
                return Err(TokenError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the issuer is busy checking other secrets; try again shortly",
                )
                .retry_after(1));
            }
        }
    };
    drop(secret);
    let Some(credentials) = credentials.as_ref().filter(|_| verified) else {
        return Err(TokenError::invalid_client("invalid client credentials"));
    };
    let (account, from_memory) = (credentials.account(), credentials.from_memory);
    // Charged only now: only a caller holding the secret spends the client's budget.
    inner
        .limits
        .check_client(&account.client_id)
        .map_err(rate_limited)?;

    if account.status == crate::accounts::Status::Disabled {
        return Err(TokenError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "the service account is disabled",
        )
        .code(Code::AccountDisabled));
    }
    if account.is_expired(inner.clock.unix_now()) {
        return Err(TokenError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "the service account has expired",
        )
        .code(Code::AccountDisabled));
    }
    let ip_allowed = account.allowed_ips.is_empty() || ip.is_some_and(|ip| account.allows_ip(ip));
    if !ip_allowed {
        return Err(TokenError::new(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            "the source IP address is not allowed for this service account",
        )
        .code(Code::IpNotAllowed));
    }

    // Scope: the requested ones if all are granted; all of them when none is requested.
    let granted: Vec<&str> = match params.requested_scope().map(str::trim) {
        None | Some("") => account.scopes.iter().map(String::as_str).collect(),
        Some(requested) => {
            let mut granted: Vec<&str> = Vec::new();
            let mut missing: Vec<&str> = Vec::new();
            for scope in requested.split(' ').filter(|s| !s.is_empty()) {
                if !is_scope_token(scope) {
                    return Err(TokenError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "the scope parameter is malformed (RFC 6749 §3.3)",
                    )
                    .code(Code::InsufficientScope));
                }
                if account.scopes.iter().any(|s| s == scope) {
                    if !granted.contains(&scope) {
                        granted.push(scope);
                    }
                } else if !missing.contains(&scope) {
                    missing.push(scope);
                }
            }
            if !missing.is_empty() {
                return Err(TokenError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("the service account is not granted: {}", missing.join(" ")),
                )
                .code(Code::InsufficientScope));
            }
            granted
        }
    };
    let scope = granted.join(" ");

    // Audience: the default one, or those requested when the account may ask for them.
    let default_audience = &inner.default_audience;
    let mut audiences: Vec<&str> = Vec::new();
    for aud in params.targets() {
        if aud != default_audience && !account.audiences.iter().any(|a| a == aud) {
            return Err(TokenError::new(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                format!(
                    "the service account may not request the audience `{}`",
                    quoted(aud, 200)
                ),
            )
            .code(Code::InvalidAudience));
        }
        if !audiences.contains(&aud) {
            audiences.push(aud);
        }
    }
    let aud = match audiences.as_slice() {
        [] => json!(default_audience),
        [one] => json!(one),
        many => json!(many),
    };

    let now = inner.clock.unix_now();
    let exp = now.saturating_add(inner.token_lifetime);
    let jti: [u8; 16] = rand::random();
    let jti = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti);
    let claims = AccessClaims {
        iss: &inner.token_iss,
        sub: &account.client_id,
        client_id: &account.client_id,
        aud,
        exp,
        iat: now,
        nbf: now,
        jti,
        scope: &scope,
    };
    // The signing key is chosen by time: no database round trip here (clean-ups run in the
    // background, see `sync`).
    let (token, kid) = inner.keys.sign(&claims).map_err(server_error)?;
    inner.metrics.issued(from_memory);
    if from_memory {
        inner.health.issued_from_memory();
    }
    audit::issued(&audit::Issued {
        client_id: &account.client_id,
        source_ip: ip,
        scope: &scope,
        aud: &match &claims.aud {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        kid: &kid,
        jti: &claims.jti,
        exp,
    });
    let mut response = TokenAnswer::bearer(token)
        .expires_in(inner.token_lifetime)
        .scope(scope.as_str())
        .to_response(dialect)
        .map(Body::from);
    no_store(response.headers_mut());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_the_right_most_untrusted_forwarded_entry() {
        let nets: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::1/128".parse().unwrap(),
        ];
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let proxy = ip("10.0.0.2");
        let at =
            |peer, values: &[&str], nets: &[IpNet]| client_address(peer, &headers(values), nets);
        // Without the list, or from an untrusted peer, the header is ignored.
        assert_eq!(at(proxy, &["192.0.2.7"], &[]), proxy);
        assert_eq!(at(ip("192.0.2.1"), &["10.9.9.9"], &nets), ip("192.0.2.1"));
        // Trusted hops are skipped from the right; a client's own entries to the left are not read.
        assert_eq!(
            at(proxy, &["6.6.6.6, 192.0.2.7, 10.1.1.1"], &nets),
            ip("192.0.2.7")
        );
        assert_eq!(
            at(proxy, &["6.6.6.6", "192.0.2.7:4711", "10.1.1.1"], &nets),
            ip("192.0.2.7")
        );
        assert_eq!(
            at(proxy, &["[2001:db8::7]:1, 2001:db8::1"], &nets),
            ip("2001:db8::7")
        );
        assert_eq!(at(proxy, &["::ffff:192.0.2.9"], &nets), ip("192.0.2.9"));
        // Garbage ends the walk at the last trusted hop; only trusted hops: the left-most.
        assert_eq!(
            at(proxy, &["192.0.2.7, garbage, 10.1.1.1"], &nets),
            ip("10.1.1.1")
        );
        assert_eq!(at(proxy, &["nonsense"], &nets), proxy);
        assert_eq!(at(proxy, &["192.0.2.7, ,"], &nets), ip("192.0.2.7"));
        assert_eq!(at(proxy, &["10.3.3.3, 10.1.1.1"], &nets), ip("10.3.3.3"));
        assert_eq!(at(proxy, &[], &nets), proxy);
        assert_eq!(at(None, &["192.0.2.7"], &nets), None);
    }
}
