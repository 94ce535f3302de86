//! s2s-auth's counters through the `metrics` facade (feature `metrics`), read from a real
//! recorder (metrics-util's `DebuggingRecorder`) after real requests: an axum app behind
//! `VerifyLayer` with keys from a [`KeyServer`], and a `TokenManager` against a
//! [`TokenServer`](s2s_tests::token_server::TokenServer).
//!
//! The verifier test records into a recorder of its own (`metrics::with_local_recorder` around
//! the build: the handles are taken then); the token test installs the process's global
//! recorder, which no other test here reads.

use std::time::Duration;

use axum::{Router, routing::get};
use jsonwebtoken::Algorithm;
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};
use reqwest::{StatusCode, header::AUTHORIZATION};
use s2s_auth::{Issuer, Reason, Verifier, token::TokenSource};
use s2s_tests::{
    app::protected_app,
    keys::{self, Behavior, KeyServer, TestKey},
    outbound::{manager, token_server},
    time::{ClockHold, wait_until},
    token_server::{ExpiresIn, Reply},
};
use tokio::time::advance;

const AUD: &str = "orders-api";

/// What a recorder held at one moment. (A snapshot drains the histograms' samples: one per
/// checkpoint.)
struct Seen(Vec<Series>);

/// One series: its kind, name, labels (sorted) and value.
type Series = (MetricKind, String, Vec<(String, String)>, DebugValue);

fn read(snapshotter: &Snapshotter) -> Seen {
    Seen(
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let (kind, key) = CompositeKey::into_parts(key);
                let mut labels: Vec<_> = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                (kind, key.name().to_owned(), labels, value)
            })
            .collect(),
    )
}

impl Seen {
    fn find(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        wanted.sort();
        self.0
            .iter()
            .find(|(k, n, l, _)| *k == kind && n == name && *l == wanted)
            .map(|(.., value)| value)
    }

    /// The counter `name` with exactly `labels` (0 when never registered).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(MetricKind::Counter, name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name}: {other:?}"),
        }
    }

    /// The samples of the histogram `name` with exactly `labels`.
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.find(MetricKind::Histogram, name, labels) {
            Some(DebugValue::Histogram(samples)) => samples.len(),
            None => 0,
            Some(other) => panic!("{name}: {other:?}"),
        }
    }
}

async fn call(url: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(url)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn verifications_cache_lookups_and_key_fetches_reach_the_recorder() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let verifier = metrics::with_local_recorder(&recorder, || {
        Verifier::builder()
            .issuer(Issuer::jwks(server.issuer(), server.jwks_url()))
            .audience(AUD)
            .build()
            .unwrap()
    });
    let routes = Router::new().route("/orders", get(|| async { "orders" }));
    let app = protected_app(routes, s2s_auth::VerifyLayer::new(verifier.clone()), &[]).await;
    let url = format!("{}/orders", app.url());

    // The same token three times: a miss, a miss that admits it, a hit.
    let token = key.sign(&keys::claims(&server.issuer(), AUD));
    for _ in 0..3 {
        assert_eq!(call(&url, &token).await, StatusCode::OK);
    }
    let mut expired = keys::claims(&server.issuer(), AUD);
    expired["exp"] = (keys::now() - 3600).into();
    expired["nbf"] = (keys::now() - 7200).into();
    assert_eq!(
        call(&url, &key.sign(&expired)).await,
        StatusCode::UNAUTHORIZED
    );
    // A kid the set does not have, while the key server fails: one failed fetch.
    server.set_behavior(Behavior::Status(500));
    let other = TestKey::generate(Algorithm::ES256, "k2");
    let unknown = other.sign(&keys::claims(&server.issuer(), AUD));
    assert_eq!(call(&url, &unknown).await, StatusCode::UNAUTHORIZED);

    let seen = read(&snapshotter);
    let verifications = "s2s_auth_verifications_total";
    assert_eq!(
        seen.counter(
            verifications,
            &[("outcome", "verified"), ("reason", "none")]
        ),
        3
    );
    assert_eq!(
        seen.counter(
            verifications,
            &[("outcome", "rejected"), ("reason", "expired")]
        ),
        1
    );
    assert_eq!(
        seen.counter(
            verifications,
            &[("outcome", "rejected"), ("reason", "unknown_key")]
        ),
        1
    );
    let lookups = "s2s_auth_token_cache_lookups_total";
    assert_eq!(seen.counter(lookups, &[("result", "hit")]), 1);
    // The two misses of the good token and the expired one's (a token that waits for a key
    // fetch and is refused after it is looked up, not counted, as `cache_misses` says).
    assert_eq!(seen.counter(lookups, &[("result", "miss")]), 3);
    let fetches = "s2s_auth_jwks_fetches_total";
    assert_eq!(seen.counter(fetches, &[("result", "ok")]), 1);
    assert_eq!(seen.counter(fetches, &[("result", "error")]), 1);
    let seconds = "s2s_auth_jwks_fetch_duration_seconds";
    assert_eq!(seen.histogram(seconds, &[("result", "ok")]), 1);
    assert_eq!(seen.histogram(seconds, &[("result", "error")]), 1);

    // The facade and the snapshot API count alike.
    let snapshot = verifier.metrics();
    assert_eq!(snapshot.verified, 3);
    assert_eq!(snapshot.rejected(Reason::Expired), 1);
    assert_eq!(snapshot.cache_hits, 1);
    assert_eq!(snapshot.cache_misses, 3);
    assert_eq!(
        (snapshot.jwks_fetches, snapshot.jwks_fetch_failures),
        (2, 1)
    );

    // Labels come from fixed sets: never the token, its kid or its issuer.
    for (_, name, labels, _) in &seen.0 {
        for (_, value) in labels {
            assert!(
                !value.contains("k2") && !value.contains("127.0.0.1") && !value.contains('.'),
                "{name}: {value}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn token_fetches_and_refresh_failures_reach_the_global_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only global recorder of this test binary");
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Seconds(60));
    let tokens = manager(&server);
    tokens.token().await.expect("a token");
    let fetches = "s2s_auth_token_fetches_total";
    let seen = read(&snapshotter);
    assert_eq!(seen.counter(fetches, &[("result", "ok")]), 1);
    assert_eq!(
        seen.histogram("s2s_auth_token_fetch_duration_seconds", &[("result", "ok")]),
        1
    );

    // The endpoint fails; the background refresh (due before the 60 s are over) fails too.
    server.set_reply(Reply::Status(503));
    for _ in 0..60 {
        if tokens.metrics().failures > 0 {
            break;
        }
        advance(Duration::from_secs(1)).await;
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        wait_until("the refresh in flight is answered", || {
            tokens.metrics().fetches == server.requests() as u64
        })
        .await;
    }
    assert!(tokens.metrics().failures > 0, "no refresh was attempted");
    let failures = tokens.metrics().failures;
    let seen = read(&snapshotter);
    assert_eq!(seen.counter(fetches, &[("result", "error")]), failures);
    assert_eq!(
        seen.counter("s2s_auth_token_refresh_failures_total", &[]),
        failures
    );
}
