//! The gateway's counters, served at `[health] metrics` (default `/metrics`) in the Prometheus
//! text format.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use s2s_gateway::{Config, Gateway};
//!
//! let gateway = Gateway::from_config(Config::from_file("gateway.toml")?).await?;
//! // What `GET /metrics` answers, e.g. `s2s_gateway_requests_total{outcome="refused",...} 3`.
//! let text = gateway.render_metrics();
//! # let _ = text;
//! # Ok(()) }
//! ```
//!
//! | name | type | labels | what |
//! |------|------|--------|------|
//! | `s2s_gateway_requests_total` | counter | `outcome`, `code` | every request, by how it ended: `forwarded` (the upstream answered), `rate_limited` (the upstream answered 429), `refused` (by the token checks; `code` the `AUTH_1xx` code, `reason` the [`Reason`]), `gateway_error` (502, 504: the upstream could not answer), `invalid` (the gateway's own 400, 404, 405, 413), `own` (health and metrics paths) |
//! | `s2s_gateway_refused_total` | counter | `reason`, `code` | refusals by the token checks, by [`Reason`] and its `AUTH_1xx` code |
//! | `s2s_gateway_upstream_responses_total` | counter | `class` | upstream answers by status class (`1xx` … `5xx`) |
//! | `s2s_gateway_upstream_duration_seconds` | histogram | — | time from forwarding to the upstream's response head |
//! | `s2s_auth_*` | | | the verifier's own counters (see s2s-auth's README) |
//!
//! Every label value comes from a fixed set: no path, client, subject or token. The recorder is
//! the gateway's own (no global recorder is installed, no listener opened): several gateways in
//! one process keep their counters apart.

use std::{sync::Arc, time::Duration};

use ::metrics::{Counter, Histogram};
use http::{HeaderValue, Response, StatusCode, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use s2s_auth::Reason;

use crate::{Body, body::Plain};

/// Buckets of the duration histograms, in seconds: 1 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes (samples
/// wait in memory until then).
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How a request ended, for `s2s_gateway_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Forwarded,
    RateLimited,
    GatewayError,
    Invalid,
    Own,
}

const OUTCOMES: [(Outcome, &str); 5] = [
    (Outcome::Forwarded, "forwarded"),
    (Outcome::RateLimited, "rate_limited"),
    (Outcome::GatewayError, "gateway_error"),
    (Outcome::Invalid, "invalid"),
    (Outcome::Own, "own"),
];

/// The gateway's recorder and every handle it records with (taken once: recording is an
/// atomic add).
pub(crate) struct Metrics {
    handle: PrometheusHandle,
    outcomes: [Counter; OUTCOMES.len()],
    /// `requests_total{outcome="refused"}` and `refused_total`, per reason.
    refused: Box<[(Counter, Counter)]>,
    /// Per status class, 1xx to 5xx.
    upstream_classes: [Counter; 5],
    upstream_seconds: Histogram,
}

impl Metrics {
    /// A recorder of the gateway's own, and `build` (the verifier's construction) run with it,
    /// so that s2s-auth's counters land in it too.
    pub(crate) fn new<T>(build: impl FnOnce() -> T) -> (Arc<Metrics>, T) {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            let requests = |outcome: &'static str, code: &'static str| ::metrics::counter!("s2s_gateway_requests_total", "outcome" => outcome, "code" => code);
            let metrics = Metrics {
                handle,
                outcomes: OUTCOMES.map(|(_, name)| requests(name, "none")),
                refused: Reason::ALL.iter().map(|&reason| {
                    let code = reason.code().map_or("none", |c| c.as_str());
                    (
                        requests("refused", code),
                        ::metrics::counter!(
                            "s2s_gateway_refused_total",
                            "reason" => reason.as_str(),
                            "code" => code
                        ),
                    )
                }).collect(),
                upstream_classes: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
                    ::metrics::counter!("s2s_gateway_upstream_responses_total", "class" => class)
                }),
                upstream_seconds: ::metrics::histogram!("s2s_gateway_upstream_duration_seconds"),
            };
            (Arc::new(metrics), build())
        })
    }

    /// A refusal of the token checks.
    pub(crate) fn refused(&self, reason: Reason) {
        // `Reason::ALL` is in declaration order: a reason's index is its discriminant.
        let (request, refused) = &self.refused[reason as usize];
        request.increment(1);
        refused.increment(1);
    }

    /// A request that was not refused, by how it ended.
    pub(crate) fn request(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].increment(1);
    }

    /// An answer of the upstream, after `elapsed`.
    pub(crate) fn upstream(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.upstream_classes[class].increment(1);
        self.upstream_seconds.record(elapsed.as_secs_f64());
    }

    /// Folds histogram samples into buckets (the exporter's upkeep; run every
    /// [`UPKEEP_INTERVAL`]).
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }

    /// The answer of the metrics path.
    pub(crate) fn response(&self) -> Response<Body> {
        let mut response = Response::new(Body::from(Plain::full(self.render().into())));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// How an answer of the gateway itself ended (`routed`: for a route's prefix), by its status.
pub(crate) fn outcome<B>(response: &Response<B>, routed: bool) -> Outcome {
    let status = response.status();
    if status.is_server_error() && routed {
        Outcome::GatewayError
    } else if status.is_client_error() {
        Outcome::Invalid
    } else {
        Outcome::Own
    }
}
