//! A controllable OAuth 2.0 token endpoint ([`TokenServer`]) and a protected resource that
//! checks bearer tokens ([`ResourceServer`]), for the outbound suites.
//!
//! ```no_run
//! use s2s_tests::token_server::{ExpiresIn, Reply, ResourceServer, Speaks, TokenServer};
//!
//! # async fn demo() {
//! let tokens = TokenServer::start().await;
//! let api = ResourceServer::start(&tokens).await;
//! tokens.set_expires_in(ExpiresIn::Seconds(600));
//! // … point a `ClientCredentials` grant at `tokens.token_url()`, call `api.url()` …
//! tokens.set_reply(Reply::Status(503)); // an outage
//! tokens.set_reply(Reply::oauth("invalid_client")); // the client was deleted
//! tokens.set_dialect(Speaks::JsonOnly); // an Auth Service that takes only its JSON body
//! assert_eq!(tokens.requests(), 0);
//! # }
//! ```
//!
//! Dialects ([`Speaks`]): by default the endpoint speaks RFC 6749 only (a form body, answered
//! `access_token` / `expires_in`; any other body is refused with 400 `invalid_request`, as an
//! RFC 6749 server finds no `grant_type` in it); [`Speaks::JsonOnly`] is the Auth Service JSON
//! dialect only (`{"grantType", "clientId", "clientSecret", "scope"}` answered `accessToken` /
//! `expiresIn`; a form is refused with 415); [`Speaks::Both`] answers each request in its own
//! dialect, as `s2s-issuer` does. Error replies are written alike in every dialect.
//!
//! Both are real HTTP/1.1 servers on `127.0.0.1:0` (the kit's `Server`) on the test's runtime, so a
//! paused tokio clock is the clock they see too ([`TokenRequest::at`]). The token endpoint counts
//! every request on arrival, records its headers and form body, and can hold requests at a gate
//! ([`TokenServer::hold`] / [`TokenServer::release`]) so that a test decides when they are
//! answered. The resource server accepts exactly one token, the latest the token server issued
//! (until [`TokenServer::revoke_issued`]), and answers anything else with 401
//! `WWW-Authenticate: Bearer error="invalid_token"`. Dropping either closes its listener and
//! every open connection.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use s2s_auth::oauth::{self, Dialect, ErrorBody, TokenAnswer};
use s2s_auth_testkit::server::Server;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::watch, time::Instant};

use crate::keys::{self, TestKey};

/// The path of the token endpoint.
pub const TOKEN_PATH: &str = "/token";

/// What `expires_in` the token endpoint sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpiresIn {
    /// A JSON number of seconds.
    Seconds(u64),
    /// A JSON string (some servers send `"3600"`).
    Text(String),
    /// No `expires_in` member at all.
    Omitted,
}

/// Which request bodies the token endpoint takes, and so how it answers. See the
/// [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Speaks {
    /// RFC 6749 only: `application/x-www-form-urlencoded`; anything else gets 400
    /// `invalid_request`.
    #[default]
    FormOnly,
    /// The Auth Service JSON dialect only: `application/json`; anything else gets 415.
    JsonOnly,
    /// Both, each request answered in its own dialect.
    Both,
}

/// What the issued access tokens look like.
#[derive(Clone, Debug)]
pub enum TokenFormat {
    /// `at-<n>-<32 random hex digits>`, `n` counting from 1.
    Opaque,
    /// A JWT signed by `key`: the claims of [`keys::claims`] (issuer = the server's URL, audience
    /// `orders-api`) with `exp` = now (the system clock) + `lifetime`.
    Jwt {
        /// The signing key.
        key: TestKey,
        /// `exp` - now.
        lifetime: Duration,
    },
}

/// How the token endpoint answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// 200 with a token response (RFC 6749 §5.1) shaped by [`TokenServer::set_expires_in`],
    /// [`TokenServer::set_token_type`], [`TokenServer::set_format`] and
    /// [`TokenServer::set_scope`].
    Token,
    /// This status with the `text/plain` body `injected failure`.
    Status(u16),
    /// This status with an HTML error page whose title and text name the status.
    Html(u16),
    /// 429 with `Retry-After: <retry_after>` and a `text/plain` body.
    RateLimited {
        /// Seconds.
        retry_after: u64,
    },
    /// An OAuth error response (RFC 6749 §5.2), `application/json`.
    OAuth {
        /// The status.
        status: u16,
        /// `error`.
        error: String,
        /// `error_description`, when some.
        description: Option<String>,
        /// A stable `code` member (e.g. `AUTH_101`), when some.
        code: Option<String>,
    },
    /// Exactly this status, content type and body.
    Raw {
        /// The status.
        status: u16,
        /// The `Content-Type`.
        content_type: String,
        /// The body.
        body: String,
    },
}

impl Reply {
    /// `{"error": error}` with the status RFC 6749 §5.2 gives it: 401 for `invalid_client`,
    /// 400 otherwise.
    pub fn oauth(error: &str) -> Reply {
        Reply::OAuth {
            status: if error == "invalid_client" { 401 } else { 400 },
            error: error.to_owned(),
            description: None,
            code: None,
        }
    }

    /// [`Reply::Raw`] of these parts.
    pub fn raw(status: u16, content_type: &str, body: impl Into<String>) -> Reply {
        Reply::Raw {
            status,
            content_type: content_type.to_owned(),
            body: body.into(),
        }
    }

    /// A 200 `application/json` answer with this body, as it is (a token response or not).
    pub fn json(body: impl Into<String>) -> Reply {
        Reply::raw(200, "application/json", body)
    }
}

/// One request the token endpoint received.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// When it arrived (tokio clock: paused time when the test paused it).
    pub at: Instant,
    /// The method.
    pub method: Method,
    /// All headers, as received.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: String,
    /// The body decoded as `application/x-www-form-urlencoded`, in order (whatever the
    /// `Content-Type`).
    pub form: Vec<(String, String)>,
    /// The body as JSON, when it is JSON (whatever the `Content-Type`).
    pub json: Option<Value>,
    /// The status answered (`None` while the request is held or being answered).
    pub status: Option<StatusCode>,
    /// The access token issued, when one was.
    pub token: Option<String>,
}

impl TokenRequest {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a form parameter, in order.
    pub fn form_values(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of a form parameter.
    ///
    /// # Panics
    ///
    /// When the parameter is absent or repeated.
    pub fn form_value(&self, name: &str) -> &str {
        match self.form_values(name)[..] {
            [one] => one,
            ref other => panic!("form parameter `{name}`: expected one value, got {other:?}"),
        }
    }
}

/// A real token endpoint on `127.0.0.1:0`: `POST /token` and the discovery document
/// `/.well-known/openid-configuration`. See the [module docs](self).
pub struct TokenServer {
    url: String,
    state: Arc<TokenState>,
    _server: Server,
}

struct TokenState {
    url: String,
    reply: Mutex<Reply>,
    speaks: Mutex<Speaks>,
    retry_after: Mutex<Option<u64>>,
    expires_in: Mutex<ExpiresIn>,
    token_type: Mutex<String>,
    format: Mutex<TokenFormat>,
    scope: Mutex<Option<String>>,
    /// Open (true) lets token requests be answered; closed holds them.
    gate: watch::Sender<bool>,
    requests: AtomicUsize,
    discovery_hits: AtomicUsize,
    log: Mutex<Vec<TokenRequest>>,
    issued: Mutex<Vec<String>>,
    /// Tokens issued before this index are refused by the resource server.
    revoked: AtomicUsize,
}

impl TokenState {
    /// The token the resource server accepts: the latest issued, unless revoked.
    fn accepted_token(&self) -> Option<String> {
        let issued = self.issued.lock().unwrap();
        (issued.len() > self.revoked.load(Ordering::SeqCst))
            .then(|| issued.last().cloned())
            .flatten()
    }
}

impl fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenServer")
            .field("url", &self.url)
            .field("reply", &*self.state.reply.lock().unwrap())
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// Binds `127.0.0.1:0` and serves on the current runtime: opaque Bearer tokens with
    /// `expires_in: 3600`, the requested `scope` echoed, the gate open.
    pub async fn start() -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(TokenState {
            url: url.clone(),
            reply: Mutex::new(Reply::Token),
            speaks: Mutex::new(Speaks::default()),
            retry_after: Mutex::new(None),
            expires_in: Mutex::new(ExpiresIn::Seconds(3600)),
            token_type: Mutex::new("Bearer".to_owned()),
            format: Mutex::new(TokenFormat::Opaque),
            scope: Mutex::new(None),
            gate: watch::Sender::new(true),
            requests: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            revoked: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route(TOKEN_PATH, any(token_handler))
            .route("/.well-known/openid-configuration", get(metadata_handler))
            .with_state(state.clone());
        TokenServer {
            url,
            state,
            _server: Server::on(listener, router),
        }
    }

    /// `http://127.0.0.1:PORT`: also the issuer identifier of the discovery document.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// [`TokenServer::url`] + [`TOKEN_PATH`].
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.url)
    }

    /// How token requests are answered from now on.
    pub fn set_reply(&self, reply: Reply) {
        *self.state.reply.lock().unwrap() = reply;
    }

    /// Which request bodies are taken from now on (default [`Speaks::FormOnly`]).
    pub fn set_dialect(&self, speaks: Speaks) {
        *self.state.speaks.lock().unwrap() = speaks;
    }

    /// Adds `Retry-After: <seconds>` to every answer that is not a token from now on (`None`,
    /// the default: only [`Reply::RateLimited`] has one).
    pub fn set_retry_after(&self, seconds: Option<u64>) {
        *self.state.retry_after.lock().unwrap() = seconds;
    }

    /// The `expires_in` of token responses (`expiresIn` in the JSON dialect).
    pub fn set_expires_in(&self, expires_in: ExpiresIn) {
        *self.state.expires_in.lock().unwrap() = expires_in;
    }

    /// The `token_type` of token responses (default `Bearer`).
    pub fn set_token_type(&self, token_type: &str) {
        *self.state.token_type.lock().unwrap() = token_type.to_owned();
    }

    /// The format of issued tokens.
    pub fn set_format(&self, format: TokenFormat) {
        *self.state.format.lock().unwrap() = format;
    }

    /// The `scope` of token responses; `None` (the default) echoes the requested `scope`, if any.
    pub fn set_scope(&self, scope: Option<&str>) {
        *self.state.scope.lock().unwrap() = scope.map(str::to_owned);
    }

    /// Holds token requests (after counting and recording them) until [`TokenServer::release`].
    pub fn hold(&self) {
        self.state.gate.send_replace(false);
    }

    /// Answers the held token requests, and the next ones at once.
    pub fn release(&self) {
        self.state.gate.send_replace(true);
    }

    /// Makes the resource server refuse every token issued so far (as if the authorization
    /// server had rotated its keys); the next issued token is accepted again.
    pub fn revoke_issued(&self) {
        let issued = self.state.issued.lock().unwrap().len();
        self.state.revoked.store(issued, Ordering::SeqCst);
    }

    /// Requests to [`TOKEN_PATH`], counted on arrival (held ones included).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests to the discovery document.
    pub fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    /// Every token request so far, in order of arrival.
    pub fn recorded(&self) -> Vec<TokenRequest> {
        self.state.log.lock().unwrap().clone()
    }

    /// Token requests answered so far.
    pub fn answered(&self) -> usize {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.status.is_some())
            .count()
    }

    /// The access tokens issued so far, in order.
    pub fn issued(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }

    /// The latest access token issued.
    pub fn latest_token(&self) -> Option<String> {
        self.state.issued.lock().unwrap().last().cloned()
    }
}

async fn token_handler(
    State(state): State<Arc<TokenState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let body = String::from_utf8_lossy(&body).into_owned();
    let form = url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect::<Vec<_>>();
    let json = serde_json::from_str::<Value>(&body).ok();
    let dialect = Dialect::from_headers(&headers);
    let is_json = dialect == Some(Dialect::Json);
    let is_form = dialect == Some(Dialect::Form);
    let index = {
        let mut log = state.log.lock().unwrap();
        log.push(TokenRequest {
            at: Instant::now(),
            method,
            headers,
            body,
            form: form.clone(),
            json: json.clone(),
            status: None,
            token: None,
        });
        log.len() - 1
    };
    let mut gate = state.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;

    let speaks = *state.speaks.lock().unwrap();
    let refusal = match speaks {
        Speaks::FormOnly | Speaks::Both if is_form => None,
        Speaks::JsonOnly | Speaks::Both if is_json => None,
        Speaks::FormOnly => Some((
            StatusCode::BAD_REQUEST,
            "the grant_type parameter is missing: send an application/x-www-form-urlencoded body",
        )),
        Speaks::JsonOnly | Speaks::Both => Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the Content-Type must be application/json",
        )),
    };
    // A JSON request is answered in the JSON dialect (its scope read from the JSON body).
    let json_answer = refusal.is_none() && is_json;
    let reply = match refusal {
        Some((code, description)) => Reply::OAuth {
            status: code.as_u16(),
            error: "invalid_request".into(),
            description: Some(description.into()),
            code: None,
        },
        None => state.reply.lock().unwrap().clone(),
    };
    let (response, token) = match reply {
        Reply::Token => {
            let request = {
                let log = state.log.lock().unwrap();
                let body = log[index].body.as_bytes();
                if json_answer {
                    serde_json::from_slice::<oauth::TokenRequest>(body).ok()
                } else {
                    oauth::TokenRequest::from_form(body).ok()
                }
            };
            let requested = request
                .as_ref()
                .and_then(|r| r.requested_scope())
                .map(str::to_owned);
            let (response, token) = issue(&state, requested, json_answer);
            (response, Some(token))
        }
        Reply::Status(code) => (
            text(
                status(code),
                "text/plain; charset=utf-8",
                "injected failure",
            ),
            None,
        ),
        Reply::Html(code) => {
            let status = status(code);
            let page = format!(
                "<!DOCTYPE html>\n<html><head><title>{status}</title>\n<style>body {{ font: 14px \
                 sans-serif }}</style></head>\n<body><h1>{status}</h1>\n<p>The token service \
                 crashed while handling your request. Request id 7f3a9c.</p>\n{}</body></html>\n",
                "<p>padding</p>\n".repeat(50)
            );
            (text(status, "text/html; charset=utf-8", &page), None)
        }
        Reply::RateLimited { retry_after } => {
            let mut r = text(
                StatusCode::TOO_MANY_REQUESTS,
                "text/plain; charset=utf-8",
                "rate limit exceeded",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            (r, None)
        }
        Reply::OAuth {
            status: code,
            error,
            description,
            code: stable,
        } => {
            let mut body = ErrorBody::new(error);
            if let Some(d) = description {
                body = body.with_description(d);
            }
            if let Some(c) = stable {
                body = body.with_code_str(c);
            }
            let mut r = body.to_response(status(code)).map(Body::from);
            if code == 401 {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"token\""),
                );
            }
            (r, None)
        }
        Reply::Raw {
            status: code,
            content_type,
            body,
        } => (text(status(code), &content_type, &body), None),
    };
    let mut response = response;
    if let (None, Some(seconds)) = (&token, *state.retry_after.lock().unwrap()) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    let mut log = state.log.lock().unwrap();
    log[index].status = Some(response.status());
    log[index].token = token;
    response
}

/// Issues a token per the server's settings and records it, answered with RFC 6749's member
/// names, or the JSON dialect's (`accessToken`, `tokenType`, `expiresIn`).
fn issue(state: &TokenState, requested_scope: Option<String>, json: bool) -> (Response, String) {
    let mut issued = state.issued.lock().unwrap();
    let n = issued.len() + 1;
    let token = match &*state.format.lock().unwrap() {
        TokenFormat::Opaque => {
            let mut random = [0u8; 16];
            aws_lc_rs::rand::fill(&mut random).expect("random token");
            let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
            format!("at-{n}-{hex}")
        }
        TokenFormat::Jwt { key, lifetime } => {
            let mut claims = keys::claims(&state.url, "orders-api");
            claims["exp"] = (keys::now() + lifetime.as_secs()).into();
            key.sign(&claims)
        }
    };
    issued.push(token.clone());
    let dialect = if json { Dialect::Json } else { Dialect::Form };
    let token_type = state.token_type.lock().unwrap().clone();
    let scope = state.scope.lock().unwrap().clone().or(requested_scope);
    // A well-formed answer is the shared one; the server's odd settings are written by hand.
    let expires_in = state.expires_in.lock().unwrap().clone();
    if let ("Bearer", ExpiresIn::Seconds(_) | ExpiresIn::Omitted) =
        (token_type.as_str(), &expires_in)
    {
        let mut answer = TokenAnswer::bearer(token.as_str());
        if let ExpiresIn::Seconds(s) = expires_in {
            answer = answer.expires_in(s);
        }
        if let Some(scope) = scope {
            answer = answer.scope(scope);
        }
        return (answer.to_response(dialect).map(Body::from), token);
    }
    let [access_token, token_type_name, expires_in_name] = if json {
        ["accessToken", "tokenType", "expiresIn"]
    } else {
        ["access_token", "token_type", "expires_in"]
    };
    let mut body = json!({
        access_token: token,
        token_type_name: token_type,
    });
    match expires_in {
        ExpiresIn::Seconds(s) => body[expires_in_name] = s.into(),
        ExpiresIn::Text(s) => body[expires_in_name] = s.into(),
        ExpiresIn::Omitted => {}
    }
    if let Some(scope) = scope {
        body["scope"] = scope.into();
    }
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (response, token)
}

async fn metadata_handler(State(state): State<Arc<TokenState>>) -> Json<Value> {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "issuer": state.url,
        "token_endpoint": format!("{}{TOKEN_PATH}", state.url),
        "jwks_uri": format!("{}/jwks.json", state.url),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt"],
    }))
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("a valid status code")
}

fn text(status: StatusCode, content_type: &str, body: &str) -> Response {
    let mut r = (status, body.to_owned()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("a valid content type"),
    );
    r
}

/// A protected resource on `127.0.0.1:0`: every path answers 200 `{"ok": true}` to
/// `Authorization: Bearer <the token server's accepted token>` (or a token added with
/// [`ResourceServer::also_accept`]), and 401 with
/// `WWW-Authenticate: Bearer realm="api", error="invalid_token"` to any other token (or the
/// challenge of [`ResourceServer::set_challenge`]; plain `Bearer realm="api"` when there is no
/// `Authorization` header).
pub struct ResourceServer {
    url: String,
    state: Arc<ResourceState>,
    _server: Server,
}

struct ResourceState {
    tokens: Arc<TokenState>,
    also_accept: Mutex<Vec<String>>,
    calls: AtomicUsize,
    accepted: AtomicUsize,
    /// The number of refused requests so far.
    rejected: watch::Sender<usize>,
    hold_rejections_until: AtomicUsize,
    challenge: Mutex<Option<String>>,
    authorizations: Mutex<Vec<Option<String>>>,
}

impl fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceServer")
            .field("url", &self.url)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl ResourceServer {
    /// Binds `127.0.0.1:0` and serves on the current runtime, accepting the tokens `tokens`
    /// issues (the latest one only).
    pub async fn start(tokens: &TokenServer) -> ResourceServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(ResourceState {
            tokens: tokens.state.clone(),
            also_accept: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            rejected: watch::Sender::new(0),
            hold_rejections_until: AtomicUsize::new(0),
            challenge: Mutex::new(None),
            authorizations: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .fallback(resource_handler)
            .with_state(state.clone());
        ResourceServer {
            url,
            state,
            _server: Server::on(listener, router),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Accepts `token` too, whatever the token server issued.
    pub fn also_accept(&self, token: &str) {
        self.state
            .also_accept
            .lock()
            .unwrap()
            .push(token.to_owned());
    }

    /// Refused requests wait until `n` requests have been refused, then all are answered (so
    /// that `n` concurrent callers are all refused before any of them can react).
    pub fn hold_rejections_until(&self, n: usize) {
        self.state.hold_rejections_until.store(n, Ordering::SeqCst);
    }

    /// The `WWW-Authenticate` value of 401 answers to a refused token from now on (default
    /// `Bearer realm="api", error="invalid_token", …`), e.g. one without `invalid_token`.
    pub fn set_challenge(&self, challenge: &str) {
        *self.state.challenge.lock().unwrap() = Some(challenge.to_owned());
    }

    /// Requests received.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Requests answered 200.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Requests refused with 401.
    pub fn rejected(&self) -> usize {
        *self.state.rejected.borrow()
    }

    /// The `Authorization` header of each request, in order of arrival (`None`: absent).
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.state.authorizations.lock().unwrap().clone()
    }
}

async fn resource_handler(State(state): State<Arc<ResourceState>>, headers: HeaderMap) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    state
        .authorizations
        .lock()
        .unwrap()
        .push(authorization.clone());
    let token = authorization
        .as_deref()
        .and_then(|v| v.strip_prefix("Bearer "));
    let accepted = token.is_some_and(|t| {
        state.tokens.accepted_token().as_deref() == Some(t)
            || state.also_accept.lock().unwrap().iter().any(|a| a == t)
    });
    if accepted {
        state.accepted.fetch_add(1, Ordering::SeqCst);
        return Json(json!({ "ok": true })).into_response();
    }
    let mut refused = 0;
    state.rejected.send_modify(|n| {
        *n += 1;
        refused = *n;
    });
    let threshold = state.hold_rejections_until.load(Ordering::SeqCst);
    if refused < threshold {
        let mut rejected = state.rejected.subscribe();
        let _ = rejected.wait_for(|n| *n >= threshold).await;
    }
    let challenge = match (&authorization, state.challenge.lock().unwrap().clone()) {
        (None, _) => "Bearer realm=\"api\"".to_owned(),
        (Some(_), Some(challenge)) => challenge,
        (Some(_), None) => {
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the \
                            access token is not accepted\""
                .to_owned()
        }
    };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "invalid_token" })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).expect("a valid challenge"),
    );
    response
}
