//! The outbound token manager end to end, over real HTTP on 127.0.0.1: a [`TokenServer`] the
//! tests control issues tokens (and counts and records every request), and `TokenManager` caches
//! them: concurrent cold callers share one request (single flight), the token is refreshed ahead
//! of expiry in the background, outages and refusals keep serving the held token with jittered
//! back-off, a forced refresh replaces only the token a caller was given, and shared managers
//! are one per grant.
//!
//! Time: the tests about refresh schedules, outages and back-off run on a paused tokio clock that
//! stands still while bytes move ([`ClockHold`]) and moves only with `advance`, one second at a
//! time, so "no caller waits" is checked at every second of several token lifetimes. Nothing
//! sleeps to wait for a race: waits poll a condition under a real-time deadline
//! ([`wait_until`]), and concurrent callers are known to be queued because each has been polled
//! and found pending.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::http::StatusCode;
use futures_util::FutureExt as _;
use jsonwebtoken::Algorithm;
use s2s_auth::{
    Code, Error, ErrorKind,
    token::{BearerToken, ClientAuth, ClientCredentials, TokenManager, TokenSource},
};
use s2s_tests::{
    keys::TestKey,
    outbound::{SECRET, assert_asks_again_only_after, grant, manager, token_server},
    time::{ClockHold, wait_until},
    token_server::{ExpiresIn, Reply, TokenFormat, TokenRequest, TokenServer},
};
use tokio::time::{Instant, advance};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Lets whatever a clock step woke (a due refresh) run, then waits until every request that
/// reached the token endpoint has been answered and taken in by the manager.
async fn settle(server: &TokenServer, tokens: &TokenManager) {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    wait_until("the token requests in flight are answered", || {
        tokens.metrics().fetches == server.requests() as u64
    })
    .await;
}

/// One second of paused time, then [`settle`].
async fn tick(server: &TokenServer, tokens: &TokenManager) {
    advance(Duration::from_secs(1)).await;
    settle(server, tokens).await;
}

/// A token now, from memory: panics when the caller would have to wait.
fn token_without_waiting(tokens: &TokenManager, at: u64) -> BearerToken {
    tokens
        .token()
        .now_or_never()
        .unwrap_or_else(|| panic!("at t = {at} s a caller had to wait for the token endpoint"))
        .unwrap_or_else(|e| panic!("at t = {at} s a caller got an error: {e}"))
}

/// Whole seconds from `start` to each recorded request that `keep` selects.
fn seconds_of(
    requests: &[TokenRequest],
    start: Instant,
    keep: impl Fn(&TokenRequest) -> bool,
) -> Vec<u64> {
    requests
        .iter()
        .filter(|r| keep(r))
        .map(|r| (r.at - start).as_secs())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Single flight
// ---------------------------------------------------------------------------------------------

/// 1,000 tasks call `token()` on a cold manager while the token endpoint holds the one request it
/// got; each caller is counted once it has been polled and found pending, so all are known to be
/// queued before the endpoint answers.
async fn thousand_cold_callers(
    reply: Reply,
) -> (TokenServer, TokenManager, Vec<Result<BearerToken, Error>>) {
    let server = token_server().await;
    server.set_reply(reply);
    server.hold();
    let tokens = manager(&server);
    let waiting = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let tokens = tokens.clone();
            let waiting = waiting.clone();
            tokio::spawn(async move {
                let mut call = pin!(tokens.token());
                let mut counted = false;
                poll_fn(|cx| {
                    let poll = call.as_mut().poll(cx);
                    if poll.is_pending() && !counted {
                        counted = true;
                        waiting.fetch_add(1, Ordering::SeqCst);
                    }
                    poll
                })
                .await
            })
        })
        .collect();
    wait_until("all 1,000 callers wait for a token", || {
        waiting.load(Ordering::SeqCst) == 1000
    })
    .await;
    wait_until("the token request arrived", || server.requests() >= 1).await;
    assert_eq!(server.requests(), 1, "callers sent parallel token requests");
    server.release();
    let mut outcomes = Vec::new();
    for caller in callers {
        outcomes.push(caller.await.expect("caller task"));
    }
    (server, tokens, outcomes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_cold_callers_share_one_token_request() {
    let (server, tokens, outcomes) = thousand_cold_callers(Reply::Token).await;
    let issued = server.latest_token().expect("a token was issued");
    for outcome in outcomes {
        assert_eq!(
            outcome.expect("every caller gets the token").as_str(),
            issued
        );
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(server.issued().len(), 1);
    let metrics = tokens.metrics();
    assert_eq!(metrics.fetches, 1);
    assert_eq!(metrics.failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_cold_callers_share_one_failed_token_request() {
    let (server, tokens, outcomes) = thousand_cold_callers(Reply::Status(503)).await;
    for outcome in outcomes {
        let err = outcome.expect_err("no token: the endpoint is down");
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE), "{err}");
    }
    assert_eq!(
        server.requests(),
        1,
        "the failure was shared, not retried per caller"
    );
    assert_eq!(tokens.metrics().failures, 1);
}

// ---------------------------------------------------------------------------------------------
// Refresh ahead of expiry (paused time)
// ---------------------------------------------------------------------------------------------

/// `expires_in` of these tests. With the default policy the refresh is due 75% into the life
/// minus up to 5% jitter (420..=450 s) and the token is served until 10 s before it expires
/// (590 s).
const LIFETIME: u64 = 600;
const REFRESH: std::ops::RangeInclusive<u64> = 420..=450;
const USABLE: u64 = 590;

/// The clock held (see [`ClockHold`]), a token server whose tokens live [`LIFETIME`] seconds,
/// and a manager of its grant.
async fn held_scene() -> (ClockHold, TokenServer, TokenManager) {
    let clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Seconds(LIFETIME));
    let tokens = manager(&server);
    (clock, server, tokens)
}

#[tokio::test(start_paused = true)]
async fn background_refresh_runs_before_expiry_and_no_caller_ever_waits() {
    let (_clock, server, tokens) = held_scene().await;
    let start = Instant::now();
    let first = tokens.token().await.expect("warm-up token");
    assert_eq!(server.requests(), 1);

    let mut served = vec![first.as_str().to_owned()];
    for at in 1..=10 * LIFETIME {
        tick(&server, &tokens).await;
        let token = token_without_waiting(&tokens, at);
        if served.last().map(String::as_str) != Some(token.as_str()) {
            served.push(token.as_str().to_owned());
        }
    }

    let requests = server.recorded();
    let times = seconds_of(&requests, start, |_| true);
    // One request per token: each next one 70..75% into the life of the one before (a one
    // second step of tolerance for a request that left at the end of a step).
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (REFRESH.start() - 1..=REFRESH.end() + 1).contains(&gap),
            "a refresh {gap} s after the token before it (lifetime {LIFETIME} s): {times:?}"
        );
    }
    let last = *times.last().unwrap();
    assert!(
        10 * LIFETIME - last <= REFRESH.end() + 1,
        "the last token was not refreshed in time: {times:?}"
    );
    assert!((14..=15).contains(&times.len()), "{times:?}");
    assert!(requests.iter().all(|r| r.status == Some(StatusCode::OK)));
    // Every token issued was served, in order: each new one as soon as it came.
    assert_eq!(served, server.issued());
    let metrics = tokens.metrics();
    assert_eq!(metrics.fetches, times.len() as u64);
    assert_eq!(metrics.failures, 0);
    assert!(metrics.warm_hits >= 10 * LIFETIME, "{metrics:?}");
}

/// A forced refresh that brings a token of a much shorter life: the background refresh follows
/// the new token's schedule, not the old one's, so no caller ever waits.
#[tokio::test(start_paused = true)]
async fn a_forced_refresh_with_a_shorter_life_is_refreshed_on_its_own_schedule() {
    let (_clock, server, tokens) = held_scene().await;
    let long = tokens.token().await.expect("first token");
    // Let the background task schedule on the long-lived token.
    tick(&server, &tokens).await;
    // A callee refuses it; the token that replaces it lives 60 s (refresh due 27..30 s in,
    // usable until 54 s), while the old schedule said ~420 s.
    server.set_expires_in(ExpiresIn::Seconds(60));
    tokens.invalidate(&long);
    let short = tokens.token().await.expect("forced refresh");
    assert_eq!(server.requests(), 2);
    for at in 2..=59 {
        tick(&server, &tokens).await;
        token_without_waiting(&tokens, at);
    }
    assert!(
        server.requests() >= 3,
        "no background refresh of the short token"
    );
    let held = tokens.current().expect("a token");
    assert_ne!(held.as_str(), short.as_str());
    assert_eq!(tokens.metrics().forced_refreshes, 1);
}

#[tokio::test(start_paused = true)]
async fn an_outage_longer_than_the_refresh_window_fails_no_call() {
    // The endpoint answers 503 from t = 100 s to t = 540 s: 440 s, longer than the whole window
    // from the due refresh to the token's end (140..=170 s), shorter than its 600 s life.
    const DOWN: u64 = 100;
    const UP: u64 = 540;
    let (_clock, server, tokens) = held_scene().await;
    let start = Instant::now();
    let first = tokens.token().await.expect("warm-up token");

    for at in 1..=2 * LIFETIME {
        if at == DOWN {
            server.set_reply(Reply::Status(503));
        }
        if at == UP {
            server.set_reply(Reply::Token);
        }
        tick(&server, &tokens).await;
        let token = token_without_waiting(&tokens, at);
        if at < UP {
            assert!(token.same_as(&first), "a new token during the outage");
        }
    }

    let requests = server.recorded();
    let failed = seconds_of(&requests, start, |r| {
        r.status == Some(StatusCode::SERVICE_UNAVAILABLE)
    });
    let ok = seconds_of(&requests, start, |r| r.status == Some(StatusCode::OK));
    assert!(
        failed.len() >= 5,
        "the refresh was not retried through the outage: {failed:?}"
    );
    assert!(
        REFRESH.contains(&failed[0]),
        "the first refresh attempt at {} s: {failed:?}",
        failed[0]
    );
    assert!(failed.iter().all(|t| (DOWN..UP).contains(t)));
    // Exponential, jittered, bounded back-off: 0.5..1 s first, doubling, at most 30 s.
    let gaps: Vec<u64> = failed.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(gaps[0] <= 2, "first retry after {} s: {failed:?}", gaps[0]);
    assert!(
        gaps.iter().all(|g| *g <= 31),
        "back-off above 30 s: {failed:?}"
    );
    assert!(
        gaps.iter().max().unwrap() >= &15,
        "back-off did not grow: {failed:?}"
    );
    assert!(failed.len() <= 16, "too many retries: {failed:?}");
    // Recovered before the held token ran out, then back on schedule.
    assert_eq!(ok[0], 0);
    assert!(
        (UP..USABLE).contains(&ok[1]),
        "the token was replaced at {} s: {ok:?}",
        ok[1]
    );
    let metrics = tokens.metrics();
    assert_eq!(metrics.failures, failed.len() as u64);
    assert_eq!(metrics.fetches, requests.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_keeps_serving_the_held_token_then_reports_what_to_fix() {
    let (_clock, server, tokens) = held_scene().await;
    let first = tokens.token().await.expect("warm-up token");
    server.set_reply(Reply::oauth("invalid_client")); // e.g. the client's secret was rotated

    for at in 1..USABLE {
        tick(&server, &tokens).await;
        assert!(token_without_waiting(&tokens, at).same_as(&first));
    }
    assert!(tokens.metrics().failures >= 1, "no refresh was attempted");
    tick(&server, &tokens).await;
    assert!(tokens.current().is_none(), "a token served past its end");
    let err = tokens.token().await.expect_err("no valid token left");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.code(), Some(Code::InvalidClient), "{err}");
}

#[tokio::test(start_paused = true)]
async fn without_expires_in_a_jwt_lives_until_its_exp() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Omitted);
    server.set_format(TokenFormat::Jwt {
        key: TestKey::generate(Algorithm::ES256, "as-1"),
        lifetime: Duration::from_secs(LIFETIME),
    });
    let tokens = manager(&server);
    let first = tokens.token().await.expect("warm-up token");
    // Scheduled on the JWT's 600 s, not on the 60 s default for tokens of unknown lifetime.
    for at in 1..REFRESH.start() - 2 {
        tick(&server, &tokens).await;
        assert!(token_without_waiting(&tokens, at).same_as(&first));
    }
    assert_eq!(server.requests(), 1);
    for _ in REFRESH.start() - 2..=REFRESH.end() + 1 {
        tick(&server, &tokens).await;
    }
    assert_eq!(
        server.requests(),
        2,
        "the JWT was not refreshed before its exp"
    );
}

#[tokio::test(start_paused = true)]
async fn without_expires_in_an_opaque_token_gets_the_short_default_lifetime() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Omitted);
    let tokens = manager(&server);
    tokens.token().await.expect("warm-up token");
    // Default 60 s: refreshed at 27..=30 s.
    for at in 1..=26 {
        tick(&server, &tokens).await;
        token_without_waiting(&tokens, at);
    }
    assert_eq!(server.requests(), 1);
    for at in 27..=31 {
        tick(&server, &tokens).await;
        token_without_waiting(&tokens, at);
    }
    assert_eq!(server.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_cold_fetch_is_shared_for_the_retry_interval() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_reply(Reply::Status(503));
    let tokens = manager(&server);
    let err = tokens.token().await.expect_err("the endpoint is down");
    assert!(err.is_transient(), "{err}");
    let again = tokens
        .token()
        .await
        .expect_err("still within the retry interval");
    assert_eq!(again.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(server.requests(), 1, "retried at once");
    server.set_reply(Reply::Token);
    advance(Duration::from_secs(1)).await;
    tokens.token().await.expect("retried after the interval");
    assert_eq!(server.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_refresh_waits_as_long_as_retry_after_says() {
    let (_clock, server, tokens) = held_scene().await;
    let start = Instant::now();
    let first = tokens.token().await.expect("warm-up token");
    server.set_reply(Reply::RateLimited { retry_after: 20 });
    for at in 1..USABLE {
        tick(&server, &tokens).await;
        assert!(token_without_waiting(&tokens, at).same_as(&first));
    }
    let limited = seconds_of(&server.recorded(), start, |r| {
        r.status == Some(StatusCode::TOO_MANY_REQUESTS)
    });
    assert!(REFRESH.contains(&limited[0]), "{limited:?}");
    assert!(limited.len() >= 4, "not retried: {limited:?}");
    for gap in limited.windows(2).map(|p| p[1] - p[0]) {
        assert!(
            (20..=31).contains(&gap),
            "retried {gap} s after `429 Retry-After: 20`: {limited:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_cold_fetch_is_not_retried_before_retry_after() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_reply(Reply::RateLimited { retry_after: 5 });
    let tokens = manager(&server);
    let err = tokens.token().await.expect_err("rate limited");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    assert_asks_again_only_after(&server, &tokens, 5, |again| {
        assert_eq!(again.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Forced refresh
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalidate_forces_one_refresh_and_only_for_the_cached_token() {
    let server = token_server().await;
    let tokens = manager(&server);
    let first = tokens.token().await.expect("token");
    tokens.invalidate(&first);
    assert!(tokens.current().is_none());
    let second = tokens.token().await.expect("new token");
    assert!(!second.same_as(&first));
    assert_eq!(server.requests(), 2);
    // A late 401 for the token already replaced changes nothing.
    tokens.invalidate(&first);
    // Equal text is not the cached instance: only the token a caller was given counts.
    tokens.invalidate(&BearerToken::new(second.as_str()).unwrap());
    assert!(tokens.current().is_some_and(|t| t.same_as(&second)));
    assert!(tokens.token().await.unwrap().same_as(&second));
    assert_eq!(server.requests(), 2);
    assert_eq!(tokens.metrics().forced_refreshes, 1);
}

// ---------------------------------------------------------------------------------------------
// One manager per grant
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn shared_managers_are_one_per_endpoint_client_scopes_and_audience() {
    let server = token_server().await;
    let both = |g: ClientCredentials| g.scope("orders:read").scope("orders:write");
    let a = TokenManager::shared(both(grant(&server))).unwrap();
    // The same scope set in another order is the same grant.
    let b =
        TokenManager::shared(grant(&server).scope("orders:write").scope("orders:read")).unwrap();
    let ta = a.token().await.unwrap();
    let tb = b.token().await.unwrap();
    assert!(ta.same_as(&tb));
    assert_eq!(server.requests(), 1);
    assert_eq!(b.metrics().fetches, 1);

    let fewer_scopes = TokenManager::shared(grant(&server).scope("orders:read")).unwrap();
    let other_audience =
        TokenManager::shared(both(grant(&server)).audience("https://billing.example.com")).unwrap();
    let other_client = TokenManager::shared(both(ClientCredentials::new(
        server.token_url(),
        "other-client",
        ClientAuth::SecretBasic(SECRET.into()),
    )))
    .unwrap();
    for (i, other) in [fewer_scopes, other_audience, other_client]
        .iter()
        .enumerate()
    {
        assert!(
            other.current().is_none(),
            "case {i} shares the cached token"
        );
        assert!(!other.token().await.unwrap().same_as(&ta));
        assert_eq!(server.requests(), 2 + i);
    }

    // Once every handle is gone, the next one starts afresh.
    drop((a, b, ta, tb));
    let c = TokenManager::shared(both(grant(&server))).unwrap();
    assert!(c.current().is_none());
    assert_eq!(c.metrics().fetches, 0);
}
