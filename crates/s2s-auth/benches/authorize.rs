//! The warm path of `AuthorizeLayer` (a real `TokenManager` holding a token of the real issuer)
//! over a no-op service, against the bare service, in the same run (goal: under 100 ns added per
//! request).
//!
//! `cargo bench -p s2s-auth --bench authorize`

use std::{convert::Infallible, hint::black_box};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::{Request, Response};
use s2s_auth::{
    AuthorizeLayer,
    token::{ClientAuth, ClientCredentials, TokenManager, TokenSource},
};
use s2s_auth_testkit::TestIssuer;
use tower::{Service, ServiceBuilder, service_fn};

/// A manager holding a token of the real issuer (the test kit's, in-process), which must stay
/// up as long as the manager is used.
fn warm_manager(runtime: &tokio::runtime::Runtime) -> (TestIssuer, TokenManager) {
    runtime.block_on(async {
        let issuer = TestIssuer::start().await;
        let account = issuer.account("bench", &[]).await;
        let manager = TokenManager::new(ClientCredentials::new(
            issuer.token_url(),
            account.client_id,
            ClientAuth::SecretBasic(account.client_secret.into()),
        ))
        .unwrap();
        manager.token().await.expect("first token");
        (issuer, manager)
    })
}

fn authorize(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_issuer, manager) = warm_manager(&runtime);
    // Answers with the request it got (the layer needs an HTTP response to read refusals).
    let echo =
        service_fn(
            |request: Request<()>| async move { Ok::<_, Infallible>(Response::new(request)) },
        );
    let mut bare = echo;
    let mut layered = ServiceBuilder::new()
        .layer(
            AuthorizeLayer::new(manager)
                .allow_origin("http://orders.internal")
                .allow_insecure_http(),
        )
        .service(echo);
    // A request as a client builds it: a few headers already, so the map is allocated.
    let request = || {
        Request::get("http://orders.internal/orders/42")
            .header("accept", "application/json")
            .header("user-agent", "billing/1.4")
            .header("x-request-id", "9f1c2d4e")
            .body(())
            .unwrap()
    };
    let mut group = c.benchmark_group("authorize");
    group.bench_function("bare service", |b| {
        b.iter(|| {
            bare.call(black_box(request()))
                .now_or_never()
                .expect("ready")
        })
    });
    group.bench_function("AuthorizeLayer warm", |b| {
        b.iter(|| {
            layered
                .call(black_box(request()))
                .now_or_never()
                .expect("ready")
        })
    });
    group.finish();
}

criterion_group!(benches, authorize);
criterion_main!(benches);
