//! The whole story in one process, on 127.0.0.1:
//!
//! 1. `s2s-issuer`, the authorization server, starts in-process with in-memory storage; two
//!    service accounts are created through its admin API, as the seed's Auth Service API
//!    creates them (`POST /admin/service-accounts` with `name`, `description`, `scopes`,
//!    `allowedIps`; the answer's `serviceAccountId`, `clientId`, `clientSecret`): `orders`
//!    (granted `inventory:read`) and `reporting` (not).
//! 2. The inventory service verifies bearer tokens against the issuer's keys (found through
//!    discovery) with `VerifyLayer`, and requires `inventory:read` with `RequireScopeLayer`.
//! 3. The orders service calls it through the reqwest middleware: one token, fetched once and
//!    reused for every call.
//! 4. Then: `reporting` is refused (403, AUTH_102); a forged token is refused (401, AUTH_105);
//!    the issuer rotates its signing key in the middle of traffic, and no call fails.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Exits with 0 when every answer is the expected one.

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use axum::{Json, Router, routing::get};
use s2s_auth::{
    Issuer, RequireScopeLayer, Verifier, VerifyLayer,
    extract::Claims,
    middleware::AuthorizeMiddleware,
    token::{ClientAuth, ClientCredentials, TokenManager, TokenSource},
};
use s2s_auth_testkit::{Algorithm, Minter, TestKey};
use s2s_issuer::IssuerConfig;
use serde_json::{Value, json};

const AUDIENCE: &str = "inventory-api";
const CALLS: usize = 20;
const ROTATION_TRAFFIC: usize = 400;
const NEWCOMER_CALLS: usize = 50;

#[tokio::main]
async fn main() -> ExitCode {
    s2s_examples::init_tracing("warn");
    let mut story = Story::default();

    // 1. The authorization server and two service accounts, made through its admin API.
    let admin_token = random_token();
    let mut config = IssuerConfig::default();
    config.listen = "127.0.0.1:0".parse().expect("an address");
    config.db = ":memory:".into();
    config.default_audience = Some(AUDIENCE.into());
    config.admin_token = Some(admin_token.clone().into());
    let issuer = s2s_issuer::spawn(config).await.expect("the issuer starts");
    let account = |name: &str, service: &str, scope: &str| {
        let body = json!({
            "name": name,
            "description": format!("Service account for the {service} Service"),
            "scopes": [scope],
            "allowedIps": ["127.0.0.1/32"]
        });
        create_service_account(&issuer.url, &admin_token, body)
    };
    let orders = account("orders", "Orders", "inventory:read").await;
    let reporting = account("reporting", "Reporting", "reports:read").await;
    println!(
        "issuer      {}  (service accounts: orders {}, reporting {})",
        issuer.url, orders.service_account_id, reporting.service_account_id
    );

    // 2. The inventory service.
    let verifier = Verifier::builder()
        .issuer(Issuer::discover(&issuer.url))
        .audience(AUDIENCE)
        .require_at_jwt(true)
        .build()
        .expect("verifier configuration");
    let inventory = Router::new()
        .route("/items", get(items))
        .route_layer(RequireScopeLayer::all(["inventory:read"]))
        .layer(VerifyLayer::new(verifier.clone()).realm("inventory"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let inventory_origin = format!("http://{}", listener.local_addr().expect("bound"));
    let items_url = format!("{inventory_origin}/items");
    tokio::spawn(async move { axum::serve(listener, inventory).await });
    println!("inventory   {items_url}  (VerifyLayer + RequireScopeLayer inventory:read)\n");

    // 3. The orders service: client credentials, one cached token, the reqwest middleware.
    let client = |id: &str, secret: &str| {
        let tokens = TokenManager::new(ClientCredentials::discover(
            &issuer.url,
            id,
            ClientAuth::SecretBasic(secret.into()),
        ))
        .expect("grant configuration");
        let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            // The token is for the inventory service and goes nowhere else.
            .with(AuthorizeMiddleware::new(tokens.clone()).allow_origin(&inventory_origin))
            .build();
        (tokens, http)
    };
    let (orders_tokens, orders_http) = client(&orders.client_id, &orders.client_secret);
    let mut ok = 0;
    for _ in 0..CALLS {
        let response = orders_http.get(&items_url).send().await.expect("call");
        ok += usize::from(response.status() == 200);
    }
    story.check(
        &format!(
            "orders calls inventory {CALLS} times: {ok} × 200 with {} token fetched",
            orders_tokens.metrics().fetches
        ),
        ok == CALLS && orders_tokens.metrics().fetches == 1,
    );

    // 4a. An account without the scope.
    let (_, reporting_http) = client(&reporting.client_id, &reporting.client_secret);
    let (status, body) = answer(
        reporting_http
            .get(&items_url)
            .send()
            .await
            .expect("an answer"),
    )
    .await;
    story.check(
        &format!(
            "reporting (no inventory:read) is refused: {status} {}",
            body["code"]
        ),
        status == 403 && body["code"] == "AUTH_102",
    );

    // 4b. A token signed by someone else's key, naming the issuer's key.
    let kid = issuer.issuer.signing_keys().await.expect("keys")[0]
        .kid
        .clone();
    let forged = forge(&issuer.url, &kid);
    let http = reqwest::Client::new();
    let (status, body) = answer(
        http.get(&items_url)
            .bearer_auth(forged)
            .send()
            .await
            .expect("an answer"),
    )
    .await;
    story.check(
        &format!("a forged token is refused: {status} {}", body["code"]),
        status == 401 && body["code"] == "AUTH_105",
    );

    // 4c. Key rotation in the middle of traffic: 8 callers share 400 calls; halfway, the
    // issuer rotates, and a new caller (whose token the new key signs) makes 50 more.
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let traffic = |http: reqwest_middleware::ClientWithMiddleware, budget: Arc<AtomicUsize>| {
        let (failed, url) = (failed.clone(), items_url.clone());
        async move {
            while budget.fetch_add(1, Ordering::SeqCst) < ROTATION_TRAFFIC {
                let ok = http.get(&url).send().await.is_ok_and(|r| r.status() == 200);
                failed.fetch_add(usize::from(!ok), Ordering::SeqCst);
            }
        }
    };
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        callers.spawn(traffic(orders_http.clone(), sent.clone()));
    }
    while sent.load(Ordering::SeqCst) < ROTATION_TRAFFIC / 2 {
        tokio::task::yield_now().await;
    }
    let rotation = issuer.issuer.rotate_signing_key().await.expect("rotate");
    let (new_tokens, new_http) = client(&orders.client_id, &orders.client_secret);
    let new_kid = header_kid(new_tokens.token().await.expect("a token").as_str());
    let newcomer_budget = Arc::new(AtomicUsize::new(ROTATION_TRAFFIC - NEWCOMER_CALLS));
    callers.spawn(traffic(new_http, newcomer_budget));
    while callers.join_next().await.is_some() {}
    let failed = failed.load(Ordering::SeqCst);
    story.check(
        &format!(
            "signing key rotated mid-traffic: {} calls, {failed} failed; the new caller's \
             token is signed by the new key ({})",
            ROTATION_TRAFFIC + NEWCOMER_CALLS,
            short(&new_kid),
        ),
        failed == 0 && new_kid == rotation.kid && rotation.previous_kid.is_some(),
    );

    let m = verifier.metrics();
    println!(
        "\ninventory verified {} tokens ({} from its cache), refused {}, fetched keys {} times",
        m.verified,
        m.cache_hits,
        m.rejected_total(),
        m.jwks_fetches
    );
    issuer.shutdown().await;
    story.end()
}

/// What the admin API's 201 answer tells about a new service account.
struct ServiceAccount {
    service_account_id: String,
    client_id: String,
    client_secret: String,
}

/// `POST {issuer}/admin/service-accounts` with the seed's fields; the secret is in this answer
/// only.
async fn create_service_account(issuer: &str, admin_token: &str, body: Value) -> ServiceAccount {
    let response = reqwest::Client::new()
        .post(format!("{issuer}/admin/service-accounts"))
        .bearer_auth(admin_token)
        .json(&body)
        .send()
        .await
        .expect("the admin API answers");
    let (status, body) = answer(response).await;
    assert_eq!(status, 201, "the service account is created: {body}");
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    ServiceAccount {
        service_account_id: field("serviceAccountId"),
        client_id: field("clientId"),
        client_secret: field("clientSecret"),
    }
}

/// A fresh admin token for this run (256 random bits, hex).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn items(Claims(claims): Claims) -> Json<Value> {
    Json(json!({ "items": ["bolts", "nuts"], "for": claims.client_id }))
}

/// The status and JSON body of an answer.
async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A well-formed token for the issuer, signed by a key that is not the issuer's but names the
/// issuer's key id.
fn forge(issuer: &str, kid: &str) -> String {
    Minter::with_key(TestKey::generate(Algorithm::ES256, kid))
        .issuer(issuer)
        .audience(AUDIENCE)
        .token(json!({ "sub": "intruder", "client_id": "intruder", "scope": "inventory:read" }))
}

fn short(kid: &str) -> &str {
    &kid[..kid.len().min(8)]
}

fn header_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|h| h.kid)
        .unwrap_or_default()
}

/// The printed story, and whether every step went as expected.
#[derive(Default)]
struct Story {
    failed: bool,
}

impl Story {
    fn check(&mut self, line: &str, ok: bool) {
        println!("{} {line}", if ok { "ok " } else { "BAD" });
        self.failed |= !ok;
    }

    fn end(self) -> ExitCode {
        if self.failed {
            println!("some steps did not go as expected");
            ExitCode::FAILURE
        } else {
            println!("every step went as expected");
            ExitCode::SUCCESS
        }
    }
}
