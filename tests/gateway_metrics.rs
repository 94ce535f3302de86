//! The gateway's `/metrics`, scraped over real HTTP and read by a real Prometheus text-format
//! parser (`prometheus-parse`): the counters move with the requests of the test world
//! (a [`KeyServer`](s2s_tests::keys::KeyServer), an upstream, the gateway in-process).

use hyper::StatusCode;
use prometheus_parse::{Sample, Scrape, Value};
use s2s_tests::gateway::*;

/// `GET /metrics`, parsed.
async fn scrape(gateway: &Running) -> Scrape {
    let answer = gateway.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    let content_type = answer.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = std::str::from_utf8(&answer.body).unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The sample `name` whose labels include every one of `labels`.
fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// A counter's value (0 when the series was never written).
fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels).map(|s| &s.value) {
        Some(Value::Counter(v)) | Some(Value::Untyped(v)) => *v,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
        None => 0.0,
    }
}

#[tokio::test]
async fn the_gateway_counters_move_with_its_requests() {
    let (world, gateway) = World::with_gateway("", "").await;
    let before = scrape(&gateway).await;
    assert_eq!(
        counter(
            &before,
            "s2s_gateway_requests_total",
            &[("outcome", "forwarded")]
        ),
        0.0
    );

    // Two forwarded (one public, one with a token), one refused for its scope, one without a
    // token, one bad token, one unreachable upstream, one unknown path.
    let ok = gateway.get("/public/a").await;
    assert_eq!(ok.status, StatusCode::OK);
    let ok = gateway
        .authorized(
            hyper::Method::GET,
            "/orders/1",
            &world.bearer("orders:read"),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let scope = gateway
        .authorized(hyper::Method::GET, "/admin/x", &world.bearer("orders:read"))
        .await;
    assert_eq!(scope.status, StatusCode::FORBIDDEN);
    assert_eq!(
        gateway.get("/orders/1").await.status,
        StatusCode::UNAUTHORIZED
    );
    let bad = gateway
        .authorized(hyper::Method::GET, "/orders/1", "Bearer not.a.jwt")
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gateway.get("/down/x").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gateway.get("/nowhere").await.status, StatusCode::NOT_FOUND);
    world.assert_forwarded(2, "two requests reach the upstream");

    let after = scrape(&gateway).await;
    let requests = |labels: &[(&str, &str)]| counter(&after, "s2s_gateway_requests_total", labels);
    assert_eq!(requests(&[("outcome", "forwarded")]), 2.0);
    assert_eq!(
        requests(&[("outcome", "refused"), ("code", "AUTH_102")]),
        1.0
    );
    assert_eq!(
        requests(&[("outcome", "refused"), ("code", "AUTH_105")]),
        2.0
    );
    assert_eq!(requests(&[("outcome", "gateway_error")]), 1.0);
    assert_eq!(requests(&[("outcome", "invalid")]), 1.0);
    // The first scrape itself.
    assert_eq!(requests(&[("outcome", "own")]), 1.0);
    let refused =
        |reason: &str| counter(&after, "s2s_gateway_refused_total", &[("reason", reason)]);
    assert_eq!(refused("insufficient_scope"), 1.0);
    assert_eq!(refused("missing_token"), 1.0);
    assert_eq!(refused("malformed"), 1.0);
    assert_eq!(
        counter(
            &after,
            "s2s_gateway_upstream_responses_total",
            &[("class", "2xx")]
        ),
        2.0
    );
    // The upstream latency histogram (buckets, not a summary): two observations, in the
    // `+Inf` bucket at least.
    match sample(&after, "s2s_gateway_upstream_duration_seconds", &[]).map(|s| &s.value) {
        Some(Value::Histogram(buckets)) => {
            let inf = buckets.iter().find(|b| b.less_than == f64::INFINITY);
            assert_eq!(inf.map(|b| b.count), Some(2.0), "{buckets:?}");
            assert!(buckets.len() > 10, "{buckets:?}");
        }
        other => panic!("no upstream latency histogram: {other:?}"),
    }
    // s2s-auth's own counters, through the same recorder: the verified token and the refusals
    // of the verifier (the scope refusal is RequireScope's, after a verified token).
    assert_eq!(
        counter(
            &after,
            "s2s_auth_verifications_total",
            &[("outcome", "verified")]
        ),
        2.0
    );
    assert_eq!(
        counter(
            &after,
            "s2s_auth_verifications_total",
            &[("outcome", "rejected"), ("reason", "malformed")]
        ),
        1.0
    );
    assert_eq!(
        counter(&after, "s2s_auth_jwks_fetches_total", &[("result", "ok")]),
        1.0
    );
    // Never a path, a token or a subject in a label.
    for s in &after.samples {
        for (_, value) in s.labels.iter() {
            assert!(
                !value.contains('/') && !value.contains("svc-orders"),
                "{s:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_metrics_path_is_configurable_and_reserved() {
    let world = World::new().await;
    let gateway = world
        .gateway("", "[health]\nmetrics = \"/-/metrics\"\n")
        .await;
    let answer = gateway.get("/-/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    let text = std::str::from_utf8(&answer.body).unwrap();
    assert!(text.contains("s2s_gateway_requests_total"), "{text}");
    let post = gateway.call(hyper::Method::POST, "/-/metrics", &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);

    let taken = world.config(
        "",
        "[[route]]\nprefix = \"/metrics\"\nupstream = \"app\"\npublic = true\n",
    );
    let error = s2s_gateway::Config::from_toml_str(&taken)
        .unwrap_err()
        .to_string();
    assert!(error.contains("answered by the gateway itself"), "{error}");
}
