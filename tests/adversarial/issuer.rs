//! The issuer's corpus (issue 11, findings 6–8): token requests an attacker sends to a real
//! s2s-issuer, from their own loopback addresses, each with the answer it must get (status,
//! `error`, `code`, the `Basic` challenge or none, `Retry-After`).
//!
//! The rows run in order against one issuer, since the point is what earlier requests do to
//! later ones: wrong secrets under a victim's id spend the attacker's failure budget, never the
//! victim's; a flood of unknown ids is cut off per address while the victim is still served;
//! `X-Forwarded-For` from a peer that is no trusted proxy names nothing.

use std::net::IpAddr;

use reqwest::StatusCode;
use s2s_issuer::{
    IssuerConfig,
    config::{Bucket, SecretHashConfig},
};
use serde_json::{Value, json};

const ADMIN: &str = "test-admin-token-0123456789abcdef";

/// Where a request comes from (its source address): 127.0.0.1 is the one trusted proxy.
#[derive(Clone, Copy, Debug)]
enum Peer {
    Proxy,
    Attacker,
    Victim,
    Scanner,
}

impl Peer {
    fn ip(self) -> IpAddr {
        let last = match self {
            Peer::Proxy => 1,
            Peer::Attacker => 2,
            Peer::Victim => 3,
            Peer::Scanner => 4,
        };
        IpAddr::from([127, 0, 0, last])
    }
}

/// Whose id and which secret.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// The victim's id and secret.
    Victim,
    /// The victim's id with a guessed secret.
    VictimWrongSecret,
    /// An id nobody has (a new one each time).
    Unknown,
    /// The account that may ask only from 10.0.0.0/8, with its secret.
    Fenced,
}

/// What a row expects.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 200 with an access token.
    Token,
    /// 401 `invalid_client`, `AUTH_101`, `WWW-Authenticate: Basic realm="s2s-issuer"`.
    BadClient,
    /// 429 `rate_limited`, `AUTH_106`, `Retry-After`, no challenge.
    Limited,
    /// 403 `unauthorized_client`, `AUTH_104` (not from an allowed address), no challenge.
    NotFromHere,
}

/// The failures one (client id, address) may have at once, and one address.
const FAILURES_PER_CLIENT_IP: u32 = 3;
const FAILURES_PER_IP: u32 = 6;

/// (name, from, who, `X-Forwarded-For`, times, expect)
type Row = (&'static str, Peer, Who, Option<&'static str>, u32, Expect);

#[rustfmt::skip]
fn corpus() -> Vec<Row> {
    use Expect::*;
    vec![
        ("wrong secrets under the victim's id", Peer::Attacker, Who::VictimWrongSecret, None, FAILURES_PER_CLIENT_IP, BadClient),
        ("one more: the attacker's own budget is spent", Peer::Attacker, Who::VictimWrongSecret, None, 1, Limited),
        ("the same, naming another address from an untrusted peer", Peer::Attacker, Who::VictimWrongSecret, Some("198.51.100.1"), 1, Limited),
        ("the victim, right secret, from its own address", Peer::Victim, Who::Victim, None, 3, Token),
        ("unknown ids: the same answer as a wrong secret", Peer::Scanner, Who::Unknown, None, FAILURES_PER_IP, BadClient),
        ("unknown ids past the address's failure budget", Peer::Scanner, Who::Unknown, None, 2, Limited),
        ("unknown ids naming another address from an untrusted peer", Peer::Scanner, Who::Unknown, Some("198.51.100.2"), 1, Limited),
        ("the victim, served through the flood", Peer::Victim, Who::Victim, None, 1, Token),
        ("a fenced client: an untrusted peer names an allowed address", Peer::Attacker, Who::Fenced, Some("10.1.2.3"), 1, NotFromHere),
        ("a fenced client through the trusted proxy (control)", Peer::Proxy, Who::Fenced, Some("10.1.2.3"), 1, Token),
    ]
}

fn config() -> IssuerConfig {
    let mut config = IssuerConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.db = ":memory:".into();
    config.admin_token = Some(ADMIN.into());
    config.default_audience = Some("orders-api".into());
    config.secret_hash = SecretHashConfig {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
        ..SecretHashConfig::default()
    };
    // The victim's own budget is small enough that the attacker's requests above would spend
    // it if they were charged to it.
    config.rate_limit.per_client = Some(Bucket {
        burst: 5,
        per_second: 1,
    });
    config.rate_limit.per_ip = None;
    config.rate_limit.failures_per_client_ip = Some(Bucket {
        burst: FAILURES_PER_CLIENT_IP,
        per_second: 1,
    });
    config.rate_limit.failures_per_ip = Some(Bucket {
        burst: FAILURES_PER_IP,
        per_second: 1,
    });
    config.trusted_proxies = vec!["127.0.0.1/32".into()];
    config
}

#[tokio::test]
async fn every_issuer_row_gets_its_answer() {
    let running = s2s_issuer::spawn(config())
        .await
        .expect("the issuer starts");
    let admin = reqwest::Client::new();
    let create = |body: Value| {
        let request = admin
            .post(format!("{}/admin/accounts", running.url))
            .bearer_auth(ADMIN)
            .json(&body);
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            let field = |k: &str| {
                answer[k]
                    .as_str()
                    .unwrap_or_else(|| panic!("{answer}"))
                    .to_owned()
            };
            (field("clientId"), field("clientSecret"))
        }
    };
    let victim = create(json!({"name": "victim", "scopes": ["a"]})).await;
    let fenced =
        create(json!({"name": "fenced", "scopes": ["a"], "allowedIps": ["10.0.0.0/8"]})).await;

    let rows = corpus();
    let mut failures = Vec::new();
    let mut unknown = 0;
    for (name, from, who, xff, times, expect) in &rows {
        let http = reqwest::Client::builder()
            .local_address(from.ip())
            .build()
            .unwrap();
        for i in 0..*times {
            let (id, secret) = match who {
                Who::Victim => victim.clone(),
                Who::VictimWrongSecret => (victim.0.clone(), format!("guess-{i}")),
                Who::Unknown => {
                    unknown += 1;
                    (format!("ghost-{unknown}"), "guess".to_owned())
                }
                Who::Fenced => fenced.clone(),
            };
            let mut request = http
                .post(format!("{}/token", running.url))
                .basic_auth(&id, Some(&secret))
                .form(&[("grant_type", "client_credentials")]);
            if let Some(xff) = xff {
                request = request.header("x-forwarded-for", *xff);
            }
            let response = request.send().await.expect("the issuer answers");
            if let Some(problem) = check(*expect, response).await {
                failures.push(format!("{name} (#{}): {problem}", i + 1));
                break;
            }
        }
    }
    super::assert_rows_pass(&failures, rows.len());
}

/// `None` when `response` is what `expect` says.
async fn check(expect: Expect, response: reqwest::Response) -> Option<String> {
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("<binary>").to_owned())
    };
    let (challenge, retry_after) = (header("www-authenticate"), header("retry-after"));
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let (want, error, code, want_challenge) = match expect {
        Expect::Token => {
            return (status != StatusCode::OK || !body["access_token"].is_string())
                .then(|| format!("expected a token, got {status} {body}"));
        }
        Expect::BadClient => (
            401,
            "invalid_client",
            "AUTH_101",
            Some("Basic realm=\"s2s-issuer\""),
        ),
        Expect::Limited => (429, "rate_limited", "AUTH_106", None),
        Expect::NotFromHere => (403, "unauthorized_client", "AUTH_104", None),
    };
    let got = format!("got {status} {body} (challenge {challenge:?})");
    if status.as_u16() != want || body["error"] != error || body["code"] != code {
        return Some(format!("expected {want} {error} {code}, {got}"));
    }
    let challenge_ok = match want_challenge {
        Some(prefix) => challenge.as_deref().is_some_and(|c| c.starts_with(prefix)),
        None => challenge.is_none(),
    };
    if !challenge_ok {
        return Some(format!("expected the challenge {want_challenge:?}, {got}"));
    }
    let retry_ok = retry_after
        .as_deref()
        .and_then(|r| r.parse::<u64>().ok())
        .is_some_and(|r| (1..=60).contains(&r));
    if matches!(expect, Expect::Limited) != retry_ok {
        return Some(format!("Retry-After {retry_after:?}, {got}"));
    }
    None
}
