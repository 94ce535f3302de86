//! Multi-tenant issuers (issuer templates) end to end: a real JWKS server on 127.0.0.1 that
//! counts its requests, an axum app behind `VerifyLayer`, reqwest calling it.
//!
//! The tenants' key sets are all served by one [`KeyServer`] (`/jwks.json?tenant=…`, the query
//! ignored by the server), so its request counter is the number of fetches of every tenant.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use jsonwebtoken::Algorithm;
use reqwest::{StatusCode, header::AUTHORIZATION};
use s2s_auth::{
    Issuer, Reason, Verifier, VerifierBuilder, VerifyLayer, config::VerifierConfig,
    verify::TenantPolicy,
};
use s2s_auth_testkit::server::Server;
use s2s_tests::{
    app::protected_app,
    keys::{self, KeyServer, TestKey},
};
use serde_json::json;

const AUD: &str = "api://orders";
const TENANT_A: &str = "4f6a1c2e-0000-4000-8000-00000000000a";
const TENANT_B: &str = "4f6a1c2e-0000-4000-8000-00000000000b";

/// The issuer template of `server`: `http://127.0.0.1:PORT/{tenantid}/v2.0`.
fn template(server: &KeyServer) -> String {
    format!("{}/{{tenantid}}/v2.0", server.url())
}

fn tenant_issuer(server: &KeyServer, tenant: &str) -> String {
    format!("{}/{tenant}/v2.0", server.url())
}

/// A verifier of the template, tenants A and B allowed, their keys at the JWKS URL template.
fn verifier(server: &KeyServer, policy: TenantPolicy) -> VerifierBuilder {
    Verifier::builder().audience(AUD).issuer(
        Issuer::template(template(server), policy)
            .jwks_template(format!("{}?tenant={{tenantid}}", server.jwks_url())),
    )
}

/// A token of `tenant` (`iss` with it) whose `tid` is `tid`.
fn token(key: &TestKey, server: &KeyServer, tenant: &str, tid: Option<&str>) -> String {
    let mut claims = keys::claims(&tenant_issuer(server, tenant), AUD);
    if let Some(tid) = tid {
        claims["tid"] = json!(tid);
    }
    key.sign(&claims)
}

async fn call(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn tenants_verify_with_a_key_cache_each_created_on_first_use() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(&server, TenantPolicy::allow([TENANT_A, TENANT_B]))
        .build()
        .unwrap();
    assert_eq!(
        verifier.tenants_held(),
        0,
        "nothing is created before a token"
    );
    let routes = Router::new().route("/orders", get(|| async { "orders" }));
    let app = protected_app(routes, VerifyLayer::new(verifier.clone()), &[]).await;
    let url = format!("{}/orders", app.url());

    for _ in 0..2 {
        let response = call(&url, &token(&key, &server, TENANT_A, Some(TENANT_A))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.jwks_hits(), 1, "tenant A's keys fetched once");
    assert_eq!(verifier.tenants_held(), 1);

    let response = call(&url, &token(&key, &server, TENANT_B, Some(TENANT_B))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.jwks_hits(), 2, "tenant B has a key cache of its own");
    let metrics = verifier.metrics();
    assert_eq!(metrics.tenant_key_caches, 2);
    assert_eq!(metrics.verified, 3);
    assert_eq!(metrics.jwks_fetches, 2);
}

/// Without a JWKS URL template, each tenant's keys come from its own discovery metadata
/// (Entra ID's `https://login.microsoftonline.com/{tid}/v2.0/.well-known/openid-configuration`),
/// whose `issuer` must be the tenant's. A real server answers it per tenant, counting requests.
#[tokio::test]
async fn without_a_jwks_template_each_tenant_is_discovered() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let keys = KeyServer::serving(&[&key]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let metadata = {
        let (base, jwks) = (base.clone(), keys.jwks_url());
        move |State(hits): State<Arc<AtomicUsize>>, Path(tenant): Path<String>| async move {
            hits.fetch_add(1, Ordering::SeqCst);
            Json(json!({ "issuer": format!("{base}/{tenant}/v2.0"), "jwks_uri": jwks }))
        }
    };
    let router = Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(metadata),
        )
        .with_state(hits.clone());
    let _discovery = Server::on(listener, router);
    let verifier = Verifier::builder()
        .audience(AUD)
        .issuer(Issuer::template(
            format!("{base}/{{tenantid}}/v2.0"),
            TenantPolicy::allow([TENANT_A, TENANT_B]),
        ))
        .build()
        .unwrap();
    let token = |tenant: &str| {
        let mut claims = keys::claims(&format!("{base}/{tenant}/v2.0"), AUD);
        claims["tid"] = json!(tenant);
        key.sign(&claims)
    };
    verifier.verify(&token(TENANT_A)).await.unwrap();
    verifier.verify(&token(TENANT_A)).await.unwrap();
    verifier.verify(&token(TENANT_B)).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one discovery per tenant");
    assert_eq!(keys.jwks_hits(), 2);
    let outsider = token("4f6a1c2e-0000-4000-8000-00000000000c");
    assert_eq!(
        verifier.verify(&outsider).await.unwrap_err().reason(),
        Reason::UnknownIssuer
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_tenant_claim_must_name_the_tenant_of_iss() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(&server, TenantPolicy::allow([TENANT_A, TENANT_B]))
        .build()
        .unwrap();
    let routes = Router::new().route("/orders", get(|| async { "orders" }));
    let app = protected_app(routes, VerifyLayer::new(verifier.clone()), &[]).await;
    let url = format!("{}/orders", app.url());

    for (tid, says) in [
        (Some(TENANT_B), "names tenant"),
        (None, "no `tid` claim"),
        (Some(""), "names tenant"),
    ] {
        let token = token(&key, &server, TENANT_A, tid);
        let response = call(&url, &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{tid:?}");
        let rejection = verifier.verify(&token).await.unwrap_err();
        assert_eq!(rejection.reason(), Reason::UnknownIssuer);
        let detail = rejection.detail().unwrap_or_default();
        assert!(detail.contains(says), "{tid:?}: {detail}");
    }
    assert_eq!(server.requests(), 0, "refused before any fetch");
    assert_eq!(verifier.tenants_held(), 0);
}

#[tokio::test]
async fn a_storm_of_unknown_tenants_costs_no_fetch_and_no_key_cache() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(&server, TenantPolicy::allow([TENANT_A]))
        .build()
        .unwrap();
    // Signed by a key the JWKS server really serves, so only the tenant check refuses them;
    // every fourth one names an allowed tenant in `iss` and another in `tid`.
    let tokens: Vec<String> = (0..10_000)
        .map(|i| {
            let random = keys::jti();
            if i % 4 == 0 {
                token(&key, &server, TENANT_A, Some(&random))
            } else {
                token(&key, &server, &random, Some(&random))
            }
        })
        .collect();
    let started = Instant::now();
    for token in &tokens {
        let rejection = verifier.verify(token).await.unwrap_err();
        assert_eq!(rejection.reason(), Reason::UnknownIssuer);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "tenant storm: 10000 tokens of unknown tenants refused in {elapsed:?} \
         ({:.1} µs each), {} requests to the key server, {} tenant key caches",
        elapsed.as_secs_f64() * 1e6 / 10_000.0,
        server.requests(),
        verifier.tenants_held()
    );
    assert_eq!(server.requests(), 0, "no fetch");
    assert_eq!(verifier.tenants_held(), 0, "no key cache");
    let metrics = verifier.metrics();
    assert_eq!(metrics.rejected(Reason::UnknownIssuer), 10_000);
    assert_eq!(metrics.jwks_fetches, 0);

    // The allowed tenant is served all along.
    verifier
        .verify(&token(&key, &server, TENANT_A, Some(TENANT_A)))
        .await
        .unwrap();
    assert_eq!(server.jwks_hits(), 1);
    assert_eq!(verifier.tenants_held(), 1);
}

#[tokio::test]
async fn tenant_key_caches_are_bounded_least_recently_used_first() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(
        &server,
        TenantPolicy::predicate(|tenant| tenant.starts_with("team-")),
    )
    .max_tenants(2)
    .token_cache(0)
    .build()
    .unwrap();
    for tenant in ["team-1", "team-2", "team-3", "team-4"] {
        verifier
            .verify(&token(&key, &server, tenant, Some(tenant)))
            .await
            .unwrap();
        assert!(verifier.tenants_held() <= 2, "{tenant}");
    }
    assert_eq!(server.jwks_hits(), 4);
    assert_eq!(verifier.tenants_held(), 2);
    // The last one is still held: no fetch. The first was dropped: fetched again.
    let last = token(&key, &server, "team-4", Some("team-4"));
    verifier.verify(&last).await.unwrap();
    assert_eq!(server.jwks_hits(), 4);
    let first = token(&key, &server, "team-1", Some("team-1"));
    verifier.verify(&first).await.unwrap();
    assert_eq!(server.jwks_hits(), 5);
    // The predicate is asked before anything else.
    let outsider = token(&key, &server, "other-1", Some("other-1"));
    let rejection = verifier.verify(&outsider).await.unwrap_err();
    assert_eq!(rejection.reason(), Reason::UnknownIssuer);
    assert_eq!(server.jwks_hits(), 5);
}

#[tokio::test]
async fn a_template_from_the_configuration_file_and_environment() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let toml = format!(
        r#"
        audiences = ["{AUD}"]
        max_tenants = 10

        [[issuer]]
        id = "{template}"
        jwks_url = "{jwks}?tenant={{tenantid}}"
        tenants = ["{TENANT_A}"]
        "#,
        template = template(&server),
        jwks = server.jwks_url(),
    );
    let config = VerifierConfig::from_toml_str(&toml).unwrap();
    let verifier = config.build().unwrap();
    verifier
        .verify(&token(&key, &server, TENANT_A, Some(TENANT_A)))
        .await
        .unwrap();
    let b = token(&key, &server, TENANT_B, Some(TENANT_B));
    assert_eq!(
        verifier.verify(&b).await.unwrap_err().reason(),
        Reason::UnknownIssuer
    );
    // The deployment adds tenant B.
    let verifier = config
        .with_env_from(|name| {
            (name == "S2S_ISSUER_TENANTS").then(|| format!("{TENANT_A}, {TENANT_B}"))
        })
        .unwrap()
        .build()
        .unwrap();
    verifier.verify(&b).await.unwrap();

    // Auth0 style: the tenant is the domain, no claim names it.
    let toml = format!(
        r#"
        audiences = ["{AUD}"]
        [[issuer]]
        id = "{template}"
        jwks_url = "{jwks}?tenant={{tenantid}}"
        tenants = ["acme"]
        tenant_claim = false
        "#,
        template = template(&server),
        jwks = server.jwks_url(),
    );
    let verifier = VerifierConfig::from_toml_str(&toml)
        .unwrap()
        .build()
        .unwrap();
    verifier
        .verify(&token(&key, &server, "acme", None))
        .await
        .unwrap();
}

#[test]
fn templates_are_checked_when_built() {
    let build = |issuer: Issuer| {
        Verifier::builder()
            .audience(AUD)
            .issuer(issuer)
            .build()
            .unwrap_err()
            .to_string()
    };
    let all = || TenantPolicy::allow(["t"]);
    for (issuer, says) in [
        (
            Issuer::template("https://login.example.com/v2.0", all()),
            "must hold `{tenantid}` exactly once",
        ),
        (
            Issuer::template("https://login.example.com/{tenantid}/{tenantid}", all()),
            "exactly once",
        ),
        (
            Issuer::template("http://login.example.com/{tenantid}/v2.0", all()),
            "https",
        ),
        (
            Issuer::template(
                "https://login.example.com/{tenantid}/v2.0",
                TenantPolicy::allow(Vec::<String>::new()),
            ),
            "allows no tenant",
        ),
        (
            Issuer::template("https://login.example.com/{tenantid}/v2.0", all())
                .jwks_template("https://login.example.com/keys"),
            "JWKS URL template",
        ),
    ] {
        let error = build(issuer);
        assert!(error.contains(says), "{error}");
    }
    let error = VerifierConfig::from_toml_str(
        "audiences = [\"a\"]\n[[issuer]]\nid = \"https://login.example.com/{tenantid}/v2.0\"\n",
    )
    .unwrap()
    .build()
    .unwrap_err()
    .to_string();
    assert!(error.starts_with("issuer[0].tenants:"), "{error}");
}

/// A token naming `tenant` in `iss` and `tid`, signed by a key the key server does not serve
/// (what an attacker can make without any secret): its signature cannot be checked before
/// the tenant's keys are fetched.
fn forged(server: &KeyServer, tenant: &str) -> String {
    let attacker = TestKey::generate(Algorithm::ES256, &keys::jti());
    token(&attacker, server, tenant, Some(tenant))
}

/// More tenants are allowed (a predicate) than fit; forged tokens cycle over them. The fetch
/// limit (5 at once, then one an hour) bounds the key server's requests, refuses the rest
/// with 503 + `Retry-After` without creating key caches, and the real tenant held all along
/// keeps verifying.
#[tokio::test]
async fn forged_tokens_cycling_over_allowed_tenants_fetch_at_most_the_limit() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(
        &server,
        TenantPolicy::predicate(|tenant| tenant.starts_with("team-")),
    )
    .max_tenants(8)
    .tenant_fetch_limit(5, Duration::from_secs(3600))
    .token_cache(0)
    .build()
    .unwrap();
    let real = token(&key, &server, "team-real", Some("team-real"));
    verifier.verify(&real).await.unwrap();
    assert_eq!(server.jwks_hits(), 1);

    let started = Instant::now();
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..2 {
        for i in 0..50 {
            let rejection = verifier
                .verify(&forged(&server, &format!("team-{i}")))
                .await
                .unwrap_err();
            if rejection.reason() == Reason::KeysUnavailable {
                assert!(
                    rejection.retry_after().is_some(),
                    "{round}/{i}: {rejection}"
                );
            }
            *reasons.entry(rejection.reason().to_string()).or_default() += 1;
        }
    }
    eprintln!(
        "tenant fetch limit: 100 forged tokens over 50 tenants -> {} key set requests in \
         {:?}; refusals {reasons:?}",
        server.jwks_hits() - 1,
        started.elapsed()
    );
    // The real tenant's fetch and 4 forged tenants' first fetches: the burst of 5. Neither the
    // 46 other tenants nor the unknown kids of the 4 fetched ones got another (one per hour).
    assert_eq!(server.jwks_hits(), 5);
    assert_eq!(reasons.values().sum::<usize>(), 100);
    assert!(
        reasons[&Reason::KeysUnavailable.to_string()] >= 96,
        "{reasons:?}"
    );
    assert_eq!(
        verifier.tenants_held(),
        5,
        "no key cache made without budget"
    );

    // Over HTTP: 503 with Retry-After for a forged token; the real tenant is still served from
    // the keys it holds.
    let routes = Router::new().route("/orders", get(|| async { "orders" }));
    let app = protected_app(routes, VerifyLayer::new(verifier.clone()), &[]).await;
    let url = format!("{}/orders", app.url());
    let response = call(&url, &forged(&server, "team-99")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let response = call(&url, &real).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.jwks_hits(), 5);
}

/// A tenant's unknown-kid cooldown is not reset when its key cache is evicted and created
/// again: the next forged kid after that costs no fetch.
#[tokio::test]
async fn a_tenants_unknown_kid_cooldown_survives_its_eviction() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(
        &server,
        TenantPolicy::predicate(|tenant| tenant.starts_with("team-")),
    )
    .max_tenants(1)
    .token_cache(0)
    .build()
    .unwrap();
    let real = |tenant: &str| token(&key, &server, tenant, Some(tenant));
    verifier.verify(&real("team-a")).await.unwrap();
    assert_eq!(server.jwks_hits(), 1);
    // An unknown kid: one refetch, then team-a's cooldown (30 s by default) runs.
    let rejection = verifier
        .verify(&forged(&server, "team-a"))
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), Reason::UnknownKey);
    assert_eq!(server.jwks_hits(), 2);
    // team-b takes the only place: team-a's keys are dropped.
    verifier.verify(&real("team-b")).await.unwrap();
    assert_eq!(server.jwks_hits(), 3);
    assert_eq!(verifier.tenants_held(), 1);
    // team-a again: a new key cache, whose first keys must be fetched...
    verifier
        .verify(&forged(&server, "team-a"))
        .await
        .unwrap_err();
    assert_eq!(server.jwks_hits(), 4);
    // ...but its cooldown is the old one: a made-up kid is refused without fetching.
    let rejection = verifier
        .verify(&forged(&server, "team-a"))
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), Reason::UnknownKey);
    assert_eq!(server.jwks_hits(), 4, "the cooldown survived the eviction");
    verifier.verify(&real("team-a")).await.unwrap();
    assert_eq!(server.jwks_hits(), 4);
}

#[test]
fn max_tenants_must_hold_every_allowed_tenant() {
    let template = |tenants: &[&str]| {
        Issuer::template(
            "https://login.example.com/{tenantid}/v2.0",
            TenantPolicy::allow(tenants.iter().copied()),
        )
    };
    let build = |builder: VerifierBuilder| builder.audience(AUD).build().map(|_| ());
    let error = build(Verifier::builder().issuer(template(&["a"])).max_tenants(0))
        .unwrap_err()
        .to_string();
    assert!(error.contains("max_tenants is 0"), "{error}");
    let error = build(
        Verifier::builder()
            .issuer(template(&["a", "b", "c"]))
            .max_tenants(2),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("allow 3 tenants but max_tenants is 2: raise max_tenants to at least 3"),
        "{error}"
    );
    // Every template's list counts.
    let other = Issuer::template(
        "https://other.example.com/{tenantid}",
        TenantPolicy::allow(["a", "b"]),
    );
    let error = build(
        Verifier::builder()
            .issuer(template(&["a", "b"]))
            .issuer(other.clone())
            .max_tenants(3),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("allow 4 tenants"), "{error}");
    build(
        Verifier::builder()
            .issuer(template(&["a", "b"]))
            .issuer(other)
            .max_tenants(4),
    )
    .unwrap();
    let error = build(
        Verifier::builder()
            .issuer(template(&["a"]))
            .tenant_fetch_limit(0, Duration::from_secs(1)),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("burst above 0"), "{error}");
    let error = build(
        Verifier::builder()
            .issuer(template(&["a"]))
            .tenant_fetch_limit(5, Duration::ZERO),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("interval above 0"), "{error}");

    // The same from a configuration file and the environment.
    let config = |extra: &str| {
        VerifierConfig::from_toml_str(&format!(
            "audiences = [\"a\"]\n{extra}\n[[issuer]]\n\
             id = \"https://login.example.com/{{tenantid}}/v2.0\"\ntenants = [\"a\", \"b\"]\n"
        ))
        .unwrap()
    };
    let error = config("max_tenants = 0").build().unwrap_err().to_string();
    assert!(error.contains("max_tenants is 0"), "{error}");
    let error = config("max_tenants = 1").build().unwrap_err().to_string();
    assert!(error.contains("allow 2 tenants"), "{error}");
    config("max_tenants = 2").build().unwrap();
}
