//! Shared by `seed_api.rs` and `seed_clients.rs`: an `s2s-issuer` served as the seed's Auth
//! Service (`http://127.0.0.1:PORT/auth`, audience `api`), and a service behind `VerifyLayer`
//! that answers the seed's `GET /workflow-service/workflows/active`.
#![allow(dead_code)] // each suite uses its own part

use axum::{Extension, Json, Router, routing::get};
use reqwest::{Method, StatusCode};
use s2s_auth::{Verified, Verifier, VerifyLayer};
use s2s_auth_testkit::server::Server;
use s2s_issuer::{Issuer, IssuerConfig};
use s2s_tests::app::protected_app;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

pub const ADMIN: &str = "seed-admin-token-0123456789abcdef";
/// The seed's `validateToken` checks `iss == "auth-service"` and `aud == "api"`.
pub const SEED_ISS: &str = "auth-service";
pub const SEED_AUDIENCE: &str = "api";
pub const BASE_PATH: &str = "/auth";

/// The seed's account request, exactly as its `curl` sends it.
pub fn seed_account_request() -> Value {
    json!({
        "name": "validation-service",
        "description": "Service account for the Validation Service",
        "scopes": ["workflow:read", "validation:write"],
        "allowedIps": ["10.0.1.0/24", "10.0.2.0/24"]
    })
}

use s2s_tests::answer::cheap_secret_hash;
#[allow(unused_imports)] // not every suite uses both
pub use s2s_tests::answer::{Answer, ManualClock, get_bearer};

/// The seed's error answers.
pub trait SeedAnswer {
    /// An error answer with `error`, a non-empty `error_description` and the code.
    fn assert_error(&self, status: u16, error: &str, code: Option<&str>);
}

impl SeedAnswer for Answer {
    #[track_caller]
    fn assert_error(&self, status: u16, error: &str, code: Option<&str>) {
        self.assert_oauth_error("", status, error, code);
    }
}

/// An issuer serving on a free port of 127.0.0.1 with the issuer URL
/// `http://127.0.0.1:PORT{base_path}`.
pub struct SeedIssuer {
    pub issuer: Issuer,
    /// The issuer URL, e.g. `http://127.0.0.1:40123/auth`.
    pub url: String,
    /// `http://127.0.0.1:40123`.
    pub origin: String,
    pub http: reqwest::Client,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for SeedIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A cheap argon2 cost: a debug build's test stays short.
pub fn config(base_path: &str, adjust: impl FnOnce(&mut IssuerConfig)) -> IssuerConfig {
    let mut config = IssuerConfig::default();
    config.db = ":memory:".into();
    config.admin_token = Some(ADMIN.into());
    config.secret_hash = cheap_secret_hash();
    config.issuer = Some(base_path.to_owned()); // completed by `SeedIssuer::start`
    adjust(&mut config);
    config
}

impl SeedIssuer {
    /// The seed's Auth Service: base path `/auth`, `iss` `auth-service`, audience `api`.
    pub async fn seed() -> SeedIssuer {
        SeedIssuer::start(config(BASE_PATH, |c| {
            c.token_issuer = Some(SEED_ISS.into());
            c.default_audience = Some(SEED_AUDIENCE.into());
        }))
        .await
    }

    /// Binds a free port, then opens the issuer with `http://127.0.0.1:PORT` + the path in
    /// `config.issuer` as its URL (no port race: the listener is bound first).
    pub async fn start(mut config: IssuerConfig) -> SeedIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let path = config.issuer.take().unwrap_or_default();
        let url = format!("{origin}{path}");
        config.issuer = Some(url.clone());
        let issuer = Issuer::open(config).await.expect("the issuer opens");
        let task = tokio::spawn(s2s_issuer::serve(listener, issuer.clone()));
        SeedIssuer {
            issuer,
            url,
            origin,
            http: reqwest::Client::new(),
            task,
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// `POST /admin/service-accounts/{svc}/{action}` (`disable`, `enable`).
    pub async fn account_action(&self, svc: &str, action: &str) -> Answer {
        let path = format!("/service-accounts/{svc}/{action}");
        self.admin(Method::POST, &path, None).await
    }

    /// An admin request to `{url}/admin{path}`.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}/admin{path}", self.url))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::of(request.send().await.unwrap()).await
    }

    /// [`SeedIssuer::admin`] with `GET` and no body.
    pub async fn admin_get(&self, path: &str) -> Answer {
        self.admin(Method::GET, path, None).await
    }

    /// Creates an account through `POST /admin/service-accounts`; the 201 answer.
    pub async fn create(&self, body: Value) -> Answer {
        let answer = self
            .admin(Method::POST, "/service-accounts", Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer
    }

    /// A JSON-dialect token request (the seed's).
    pub async fn token_json(&self, body: Value) -> Answer {
        let response = self
            .http
            .post(format!("{}/token", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        Answer::of(response).await
    }

    /// A form-dialect token request (RFC 6749, `client_secret_post`).
    pub async fn token_form(&self, form: &[(&str, &str)]) -> Answer {
        let response = self
            .http
            .post(format!("{}/token", self.url))
            .form(form)
            .send()
            .await
            .unwrap();
        Answer::of(response).await
    }

    pub async fn get(&self, url: &str) -> Answer {
        Answer::of(self.http.get(url).send().await.unwrap()).await
    }
}

/// A service behind `VerifyLayer` that trusts `iss` with the keys at `jwks_url` for audience
/// `api`, serving the seed's `GET /workflow-service/workflows/active`; its base URL and the
/// server (serving until dropped).
pub async fn workflow_service(iss: &str, jwks_url: &str) -> (String, Server) {
    let verifier = Verifier::builder()
        .issuer(s2s_auth::Issuer::jwks(iss, jwks_url))
        .audience(SEED_AUDIENCE)
        .build()
        .expect("the verifier builds");
    let routes = Router::new().route(
        "/workflow-service/workflows/active",
        get(|Extension(v): Extension<Verified>| async move {
            Json(json!({
                "workflows": [
                    {"id": "wf_123", "name": "Purchase Approval", "status": "ACTIVE", "version": "1.0.0"},
                    {"id": "wf_456", "name": "Employee Onboarding", "status": "ACTIVE", "version": "2.1.0"}
                ],
                "count": 2,
                "totalCount": 2,
                "caller": v.standard().sub,
            }))
        }),
    );
    let app = protected_app(routes, VerifyLayer::new(verifier), &[]).await;
    (app.url(), app)
}
