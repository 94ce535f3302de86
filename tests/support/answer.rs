//! What an HTTP service answered, read whole: status, headers and the body as JSON; and for
//! the issuer's suites, a clock that stands still until a test moves it and a cheap secret
//! hash.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use reqwest::{StatusCode, header::HeaderMap};
use s2s_issuer::{Clock, config::SecretHashConfig};
use serde_json::Value;

/// An answer: status, headers, JSON body (`Null` when empty, a JSON string when not JSON).
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON.
    pub body: Value,
}

impl Answer {
    /// Reads `response` whole.
    pub async fn of(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// The header's value, `""` when absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// An OAuth error body (RFC 6749 §5.2) with this status and `error`, a non-empty
    /// `error_description`, and this `code` (or none); `case` names the check when it fails.
    #[track_caller]
    pub fn assert_oauth_error(&self, case: &str, status: u16, error: &str, code: Option<&str>) {
        let body = &self.body;
        let text = |member: &str| body.get(member).map(|v| v.as_str().unwrap_or("(not text)"));
        let got = (self.status.as_u16(), text("error"), text("code"));
        assert_eq!(got, (status, Some(error), code), "{case}: {body}");
        let description = text("error_description").unwrap_or_default();
        assert!(
            !description.is_empty(),
            "{case}: no error_description: {body}"
        );
    }
}

/// `GET url` with `Authorization: Bearer token`, read whole.
pub async fn get_bearer(http: &reqwest::Client, url: &str, token: &str) -> Answer {
    Answer::of(http.get(url).bearer_auth(token).send().await.unwrap()).await
}

/// An argon2 cost that keeps a debug build's test run short (the OWASP default costs about
/// 0.6 s per verification unoptimised).
pub fn cheap_secret_hash() -> SecretHashConfig {
    SecretHashConfig {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
        ..SecretHashConfig::default()
    }
}

/// A clock for the issuer (`IssuerConfig::clock`) that stands still until the test moves it.
#[derive(Clone)]
pub struct ManualClock {
    start: SystemTime,
    offset: Arc<AtomicU64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// Now, standing still.
    pub fn new() -> Self {
        ManualClock {
            start: SystemTime::now(),
            offset: Arc::default(),
        }
    }

    /// The time it shows.
    pub fn now(&self) -> SystemTime {
        self.start + Duration::from_secs(self.offset.load(Ordering::SeqCst))
    }

    /// The issuer's [`Clock`] reading this one.
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Clock::from_fn(move || me.now())
    }

    /// The time it shows, in seconds since the Unix epoch.
    pub fn unix_now(&self) -> u64 {
        self.clock().unix_now()
    }

    /// Moves it `secs` seconds forward.
    pub fn advance(&self, secs: u64) {
        self.offset.fetch_add(secs, Ordering::SeqCst);
    }
}
