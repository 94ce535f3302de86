//! The adversarial corpus: one row per attack or malformed credential, each sent over real HTTP
//! to a service behind `VerifyLayer` and `RequireScopeLayer` (one verifier in strict RFC 9068 mode,
//! one with the defaults), each answered with the expected status, JSON `code` and
//! `WWW-Authenticate` challenge; never a panic, never a 5xx. No answer tells the caller how the
//! service is configured (its audiences, key server, key ids, algorithms).
//!
//! A row says how to build the request (headers and query) from the [`Ctx`] (keys, issuer,
//! a watched server that must never be contacted) and what must come back. The key server
//! failing (at a cold start, and for longer than the keys may be used) has rows of its own.
//!
//! The gateway's corpus (paths, spelled-out headers, forwarding, method override, route
//! audiences) is in [`gateway`], the issuer's (lockout, unknown ids, forwarded addresses) in
//! [`issuer`].

#[path = "adversarial/gateway.rs"]
mod gateway;
#[path = "adversarial/issuer.rs"]
mod issuer;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::Request,
    routing::{any, get},
};
use jsonwebtoken::Algorithm;
use reqwest::{
    StatusCode,
    header::{RETRY_AFTER, WWW_AUTHENTICATE},
};
use s2s_auth::{Issuer, Verifier, VerifyLayer};
use s2s_auth_testkit::server::Server;
use s2s_tests::{
    app::protected_app,
    keys::{self, Behavior, KeyServer, TestKey},
    time::clock_held,
};
use serde_json::{Value, json};

const AUDIENCE: &str = "orders-api";

/// Everything a row may use to build its request.
struct Ctx {
    issuer: String,
    es: TestKey,
    rsa: TestKey,
    ed: TestKey,
    /// A key of the attacker's, published nowhere we trust.
    evil: TestKey,
    /// A server the attacker points `jku`/`x5u` at; it must see no request.
    watched: String,
}

impl Ctx {
    fn claims(&self) -> Value {
        keys::claims(&self.issuer, AUDIENCE)
    }

    fn with(&self, changes: Value) -> Value {
        let mut claims = self.claims();
        for (k, v) in changes.as_object().expect("an object of changes") {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    fn good(&self) -> String {
        self.es.sign(&self.claims())
    }

    fn header(&self, key: &TestKey, extra: Value) -> Value {
        let mut header = json!({"alg": keys::alg_name(key.alg), "typ": "at+jwt", "kid": key.kid});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                header.as_object_mut().unwrap().remove(k);
            } else {
                header[k] = v.clone();
            }
        }
        header
    }
}

/// What a row sends.
enum Send {
    /// `Authorization: Bearer <token>`.
    Token(String),
    /// These `Authorization` header values, as they are.
    Headers(Vec<String>),
    /// No `Authorization` header; this query string.
    Query(String),
}

/// What a row expects.
#[derive(Clone, Copy)]
enum Expect {
    Ok,
    /// 401 without an `error` attribute (no bearer credentials).
    Challenge,
    /// 401 `invalid_token` with this code.
    Invalid(&'static str),
    /// 401 `invalid_token` with this code from the strict verifier (`require_at_jwt`); accepted
    /// by the default one.
    StrictOnly(&'static str),
    /// 403 `insufficient_scope`.
    Scope,
    /// 503 `temporarily_unavailable` with `Retry-After`, no challenge and no code.
    Unavailable,
}

type Build = fn(&Ctx) -> Send;

/// Raw ECDSA `r || s` to the DER `SEQUENCE { INTEGER r, INTEGER s }` some signers emit.
fn der_signature(raw: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| {
        let b = &b[b.iter().take_while(|x| **x == 0).count()..];
        let mut v = vec![0x02];
        let pad = b.first().is_some_and(|x| x & 0x80 != 0);
        v.push((b.len() + usize::from(pad)) as u8);
        if pad {
            v.push(0);
        }
        v.extend_from_slice(b);
        v
    };
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [int(r), int(s)].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

fn replace_segment(token: &str, index: usize, segment: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = segment;
    parts.join(".")
}

#[rustfmt::skip]
fn corpus() -> Vec<(&'static str, Build, Expect)> {
    use Expect::*;
    use Send::*;
    vec![
        // Controls.
        ("valid ES256", |c| Token(c.good()), Ok),
        ("valid RS256", |c| Token(c.rsa.sign(&c.claims())), Ok),
        ("valid EdDSA", |c| Token(c.ed.sign(&c.claims())), Ok),
        ("lowercase bearer scheme", |c| Headers(vec![format!("bearer {}", c.good())]), Ok),
        ("BEARER and two spaces", |c| Headers(vec![format!("BEARER  {}", c.good())]), Ok),
        ("aud array with the audience and others", |c| Token(c.es.sign(&c.with(json!({"aud": ["billing", AUDIENCE, "audit"]})))), Ok),
        ("exp as a fraction in the future (RFC 7519 NumericDate)", |c| Token(c.es.sign(&c.with(json!({"exp": keys::now() as f64 + 300.5})))), Ok),
        ("jku to the attacker, signed by our key (header ignored)", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"jku": format!("{}/jwks", c.watched)})), &c.claims())), Ok),
        // Missing or other credentials.
        ("no Authorization header", |_| Headers(vec![]), Challenge),
        ("Basic instead of Bearer", |_| Headers(vec!["Basic dXNlcjpwYXNz".into()]), Challenge),
        ("token in the query string only", |c| Query(format!("access_token={}", c.good())), Challenge),
        ("Digest scheme", |_| Headers(vec!["Digest username=\"x\"".into()]), Challenge),
        // Malformed credentials.
        ("empty token after Bearer", |_| Headers(vec!["Bearer ".into()]), Invalid("AUTH_105")),
        ("tab after Bearer", |c| Headers(vec![format!("Bearer\t{}", c.good())]), Invalid("AUTH_105")),
        ("space inside the token", |c| Headers(vec![format!("Bearer {} x", c.good())]), Invalid("AUTH_105")),
        ("two Authorization headers", |c| Headers(vec![format!("Bearer {}", c.good()), format!("Bearer {}", c.good())]), Invalid("AUTH_105")),
        ("not a JWT", |_| Token("hello".into()), Invalid("AUTH_105")),
        ("non-base64 segments", |_| Token("e30.e30.!!!".into()), Invalid("AUTH_105")),
        ("header is not JSON", |c| Token(replace_segment(&c.good(), 0, &keys::b64(b"not json"))), Invalid("AUTH_105")),
        ("header is a JSON array", |c| Token(replace_segment(&c.good(), 0, &keys::b64(b"[\"ES256\"]"))), Invalid("AUTH_105")),
        ("five segments (JWE)", |_| Token(format!("{}.a.b.c.d", keys::b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#))), Invalid("AUTH_105")),
        ("token over the size limit (20 KB)", |c| Token(c.es.sign(&c.with(json!({"pad": "x".repeat(20_000)})))), Invalid("AUTH_105")),
        // Algorithm attacks.
        ("alg none, no signature", |c| Token(keys::unsigned_token(&json!({"alg": "none", "kid": c.es.kid}).to_string(), &c.claims().to_string(), b"")), Invalid("AUTH_105")),
        ("alg None (mixed case)", |c| Token(keys::unsigned_token(&json!({"alg": "None"}).to_string(), &c.claims().to_string(), b"")), Invalid("AUTH_105")),
        ("HS256 signed with the RSA public key", |c| Token(keys::hs256_token(c.rsa.public_pem().as_bytes(), &c.rsa.kid, &c.claims())), Invalid("AUTH_105")),
        ("alg differs from the JWK's alg (PS256 on an RS256 key)", |c| Token(keys::TestKey::generate(Algorithm::PS256, &c.rsa.kid).sign(&c.claims())), Invalid("AUTH_105")),
        ("ES384 header on a P-256 key", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"alg": "ES384"})), &c.claims())), Invalid("AUTH_105")),
        ("ES256 signature in DER instead of raw", |c| {
            use base64::Engine as _;
            let good = c.good();
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(good.rsplit('.').next().unwrap()).unwrap();
            Token(replace_segment(&good, 2, &keys::b64(&der_signature(&raw))))
        }, Invalid("AUTH_105")),
        ("unknown crit header", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"crit": ["exp-ext"], "exp-ext": 1})), &c.claims())), Invalid("AUTH_105")),
        // Keys the attacker brings or names.
        ("jku to the attacker's JWKS with the attacker's kid", |c| Token(c.evil.sign_with_header(&c.header(&c.evil, json!({"jku": format!("{}/jwks", c.watched)})), &c.claims())), Invalid("AUTH_105")),
        ("x5u to the attacker", |c| Token(c.evil.sign_with_header(&c.header(&c.evil, json!({"x5u": format!("{}/cert.pem", c.watched)})), &c.claims())), Invalid("AUTH_105")),
        ("embedded jwk of the attacker", |c| Token(c.evil.sign_with_header(&c.header(&c.evil, json!({"jwk": c.evil.jwk()})), &c.claims())), Invalid("AUTH_105")),
        ("x5c chain of the attacker, our kid", |c| Token(c.evil.sign_with_header(&c.header(&c.es, json!({"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]})), &c.claims())), Invalid("AUTH_105")),
        ("attacker's key under our kid", |c| Token(TestKey::generate(Algorithm::ES256, &c.es.kid).sign(&c.claims())), Invalid("AUTH_105")),
        ("kid with path traversal", |c| Token(c.evil.sign_with_header(&c.header(&c.evil, json!({"kid": "../../../../etc/passwd"})), &c.claims())), Invalid("AUTH_105")),
        ("kid with SQL", |c| Token(c.evil.sign_with_header(&c.header(&c.evil, json!({"kid": "x' OR '1'='1"})), &c.claims())), Invalid("AUTH_105")),
        ("kid of 10 KB", |c| Token(c.evil.sign_with_header(&c.header(&c.evil, json!({"kid": "k".repeat(10_240)})), &c.claims())), Invalid("AUTH_105")),
        ("kid of a weak RSA key in the JWKS", |c| Token(keys::TestKey::generate(Algorithm::RS256, "weak").sign(&c.claims())), Invalid("AUTH_105")),
        // Tampering.
        ("tampered payload", |c| { let good = c.good(); Token(replace_segment(&good, 1, &keys::b64(c.with(json!({"scope": "orders:read orders:admin"})).to_string().as_bytes()))) }, Invalid("AUTH_105")),
        ("tampered signature", |c| { let mut t = c.good(); let last = t.pop().unwrap(); t.push(if last == 'A' { 'B' } else { 'A' }); Token(t) }, Invalid("AUTH_105")),
        ("signature of another token", |c| { let other = c.es.sign(&c.with(json!({"sub": "other"}))); Token(replace_segment(&c.good(), 2, other.rsplit('.').next().unwrap())) }, Invalid("AUTH_105")),
        ("duplicate alg in the header", |c| Token(c.es.sign_raw(&format!(r#"{{"alg":"ES256","alg":"none","kid":"{}"}}"#, c.es.kid), &c.claims().to_string())), Invalid("AUTH_105")),
        ("duplicate aud in the payload", |c| { let claims = c.claims().to_string(); let dup = claims.replacen('{', r#"{"aud":"billing","#, 1); Token(c.es.sign_raw(&c.header(&c.es, json!({})).to_string(), &dup)) }, Invalid("AUTH_105")),
        ("payload is a JSON array", |c| { let cl = c.claims(); Token(c.es.sign_raw(&c.header(&c.es, json!({})).to_string(), &json!([cl["iss"], cl["sub"], cl["aud"], cl["exp"]]).to_string())) }, Invalid("AUTH_105")),
        // Claims.
        ("expired", |c| Token(c.es.sign(&c.with(json!({"exp": keys::now() - 3600})))), Invalid("AUTH_105")),
        ("nbf in the future", |c| Token(c.es.sign(&c.with(json!({"nbf": keys::now() + 3600})))), Invalid("AUTH_105")),
        ("nbf after exp", |c| Token(c.es.sign(&c.with(json!({"nbf": keys::now() + 600, "exp": keys::now() + 300})))), Invalid("AUTH_105")),
        ("missing exp", |c| Token(c.es.sign(&c.with(json!({"exp": null})))), Invalid("AUTH_105")),
        ("exp as a string", |c| Token(c.es.sign(&c.with(json!({"exp": (keys::now() + 300).to_string()})))), Invalid("AUTH_105")),
        ("exp as a huge number", |c| Token(c.es.sign(&c.with(json!({"exp": 1e300})))), Invalid("AUTH_105")),
        ("exp negative", |c| Token(c.es.sign(&c.with(json!({"exp": -1})))), Invalid("AUTH_105")),
        ("wrong iss", |c| Token(c.es.sign(&c.with(json!({"iss": "https://evil.example"})))), Invalid("AUTH_105")),
        ("iss with a trailing slash", |c| Token(c.es.sign(&c.with(json!({"iss": format!("{}/", c.issuer)})))), Invalid("AUTH_105")),
        ("iss with a Unicode look-alike", |c| Token(c.es.sign(&c.with(json!({"iss": c.issuer.replace("http", "httр")})))), Invalid("AUTH_105")),
        ("iss missing", |c| Token(c.es.sign(&c.with(json!({"iss": null})))), Invalid("AUTH_105")),
        ("wrong aud", |c| Token(c.es.sign(&c.with(json!({"aud": "billing"})))), Invalid("AUTH_107")),
        ("aud array without the audience", |c| Token(c.es.sign(&c.with(json!({"aud": ["billing", "audit"]})))), Invalid("AUTH_107")),
        ("aud missing", |c| Token(c.es.sign(&c.with(json!({"aud": null})))), Invalid("AUTH_107")),
        ("aud with a different case", |c| Token(c.es.sign(&c.with(json!({"aud": AUDIENCE.to_uppercase()})))), Invalid("AUTH_107")),
        // Explicit typing: other kinds of JWT the same issuer may sign are never access tokens.
        ("typ JWT", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": "JWT"})), &c.claims())), StrictOnly("AUTH_105")),
        ("typ application/jwt", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": "application/jwt"})), &c.claims())), StrictOnly("AUTH_105")),
        ("no typ", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": null})), &c.claims())), StrictOnly("AUTH_105")),
        ("typ application/AT+JWT", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": "application/AT+JWT"})), &c.claims())), Ok),
        ("typ id_token", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": "id_token"})), &c.claims())), Invalid("AUTH_105")),
        ("typ JWT-ID", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": "JWT-ID"})), &c.claims())), Invalid("AUTH_105")),
        ("typ secevent+jwt (RFC 8417)", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": "secevent+jwt"})), &c.claims())), Invalid("AUTH_105")),
        ("typ dpop+jwt (RFC 9449)", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": "dpop+jwt"})), &c.claims())), Invalid("AUTH_105")),
        ("typ logout+jwt", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": "logout+jwt"})), &c.claims())), Invalid("AUTH_105")),
        ("typ at+jwt with a parameter", |c| Token(c.es.sign_with_header(&c.header(&c.es, json!({"typ": "application/at+jwt; v=1"})), &c.claims())), Invalid("AUTH_105")),
        // Scopes.
        ("valid token without the route's scope", |c| Token(c.es.sign(&c.with(json!({"scope": "orders:write"})))), Scope),
        ("scope smuggled in with a different separator", |c| Token(c.es.sign(&c.with(json!({"scope": "orders:write,orders:read"})))), Scope),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_corpus_gets_its_answer() {
    let server = KeyServer::start().await;
    let ctx = Ctx {
        issuer: server.issuer(),
        es: TestKey::generate(Algorithm::ES256, "es-1"),
        rsa: TestKey::generate(Algorithm::RS256, "rsa-1"),
        ed: TestKey::generate(Algorithm::EdDSA, "ed-1"),
        evil: TestKey::generate(Algorithm::ES256, "evil-1"),
        watched: String::new(),
    };
    server.set_jwks(keys::jwks(&[
        ctx.es.jwk(),
        ctx.rsa.jwk(),
        ctx.ed.jwk(),
        keys::weak_rsa_jwk(1024, "weak"),
    ]));

    // The server the attacker points at: it counts what it is asked, and must be asked nothing.
    let watched_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hits = watched_hits.clone();
    let watched = Router::new().fallback(any(move |_: Request| {
        hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { axum::Json(json!({"keys": []})) }
    }));
    let watched = Server::start(watched).await;
    let ctx = Ctx {
        watched: watched.url(),
        ..ctx
    };

    let http = reqwest::Client::new();
    let rows = corpus();
    assert!(rows.len() >= 40, "the corpus has {} rows", rows.len());
    let secrets = secrets(&server, &["es-1", "rsa-1", "ed-1", "RS512"]);
    let mut failures = Vec::new();
    for strict in [true, false] {
        let (_app, base) = serve(verifier(&server).require_at_jwt(strict)).await;
        for (name, build, expect) in &rows {
            let expect = match (*expect, strict) {
                (Expect::StrictOnly(code), true) => Expect::Invalid(code),
                (Expect::StrictOnly(_), false) => Expect::Ok,
                (expect, _) => expect,
            };
            let answer = send(&http, &base, build(&ctx)).await;
            if let Some(problem) = check(expect, &answer, &secrets) {
                failures.push(format!(
                    "{name} (strict {strict}): {problem} (got {answer:?})"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(
        watched_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "jku/x5u/jwk must never be followed"
    );
    // The corpus caused key refetches only within the cooldown: per verifier, the first load
    // and one for the first unknown kid.
    assert!(server.jwks_hits() <= 4, "{} fetches", server.jwks_hits());
}

/// The key server failing, as a caller sees it: 503 `temporarily_unavailable`, and nothing of
/// the key server's address or answer.
#[tokio::test(start_paused = true)]
async fn unavailable_and_too_stale_keys_get_503_without_internals() {
    let http = reqwest::Client::new();
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let mut failures = Vec::new();
    let mut row = |name: &str, expect: Expect, answer: &Answer, secrets: &[String]| {
        if let Some(problem) = check(expect, answer, secrets) {
            failures.push(format!("{name}: {problem} (got {answer:?})"));
        }
    };

    // A cold start with the key server down.
    let server = KeyServer::start().await;
    server.set_keys(&[&key]);
    server.set_behavior(Behavior::Status(503));
    let (_app, base) = serve(verifier(&server)).await;
    let token = Send::Token(key.sign(&keys::claims(&server.issuer(), AUDIENCE)));
    let answer = clock_held(send(&http, &base, token)).await;
    row(
        "key server down at a cold start",
        Expect::Unavailable,
        &answer,
        &secrets(&server, &[]),
    );

    // Keys fetched once, then the key server down for longer than the keys may be used.
    let server = KeyServer::start().await;
    server.set_keys(&[&key]);
    server.set_cache_control(Some("max-age=60"));
    let (_app, base) = serve(verifier(&server).max_stale(Duration::from_secs(3600))).await;
    let token = || Send::Token(key.sign(&keys::claims(&server.issuer(), AUDIENCE)));
    let answer = clock_held(send(&http, &base, token())).await;
    row("keys fetched", Expect::Ok, &answer, &[]);
    server.set_behavior(Behavior::Status(503));
    tokio::time::advance(Duration::from_secs(60 + 3600 - 1)).await;
    let answer = clock_held(send(&http, &base, token())).await;
    row(
        "key server down, keys within max_stale",
        Expect::Ok,
        &answer,
        &[],
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    let answer = clock_held(send(&http, &base, token())).await;
    row(
        "key server down, keys past max_stale",
        Expect::Unavailable,
        &answer,
        &secrets(&server, &[]),
    );

    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Fails naming every failing row of a corpus of `rows`.
#[track_caller]
fn assert_rows_pass(failures: &[String], rows: usize) {
    assert!(
        failures.is_empty(),
        "{} of {rows} rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A verifier of the key server's issuer for [`AUDIENCE`].
fn verifier(server: &KeyServer) -> s2s_auth::VerifierBuilder {
    Verifier::builder()
        .issuer(Issuer::jwks(server.issuer(), server.jwks_url()))
        .audience(AUDIENCE)
}

/// Serves `GET /orders` (scope `orders:read`) behind `VerifyLayer`; the server and the URL.
async fn serve(verifier: s2s_auth::VerifierBuilder) -> (Server, String) {
    let routes = Router::new().route("/orders", get(|| async { "orders" }));
    let verify = VerifyLayer::new(verifier.build().unwrap()).realm("orders");
    let app = protected_app(routes, verify, &["orders:read"]).await;
    let base = format!("{}/orders", app.url());
    (app, base)
}

/// What the service answered.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    retry_after: bool,
    body: Value,
    text: String,
}

async fn send(http: &reqwest::Client, base: &str, what: Send) -> Answer {
    let mut request = http.get(base);
    match what {
        Send::Token(token) => request = request.bearer_auth(token),
        Send::Headers(values) => {
            for value in values {
                request = request.header("authorization", value);
            }
        }
        Send::Query(query) => request = http.get(format!("{base}?{query}")),
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let retry_after = response.headers().contains_key(RETRY_AFTER);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        retry_after,
        body,
        text,
    }
}

/// What no answer may tell the caller: the audience, the key server's address (host and port)
/// and path, what it answered (the test server's error body says `injected`), and `also`.
fn secrets(server: &KeyServer, also: &[&str]) -> Vec<String> {
    let authority = server.url().trim_start_matches("http://").to_owned();
    [AUDIENCE, &authority, "jwks", "injected"]
        .iter()
        .chain(also)
        .map(|s| s.to_string())
        .collect()
}

/// `None` when the answer is the expected one, else what is wrong. A refusal's text must not
/// contain any of `secrets`.
fn check(expect: Expect, answer: &Answer, secrets: &[String]) -> Option<String> {
    let Answer {
        status,
        challenge,
        retry_after,
        body,
        text,
    } = answer;
    let (want_status, error, code) = match expect {
        Expect::Ok => return (*status != 200 || text != "orders").then(|| "expected 200".into()),
        Expect::Challenge => (401, None, "AUTH_105"),
        Expect::Invalid(code) | Expect::StrictOnly(code) => (401, Some("invalid_token"), code),
        Expect::Scope => (403, Some("insufficient_scope"), "AUTH_102"),
        Expect::Unavailable => {
            return if *status != 503 || body["error"] != "temporarily_unavailable" {
                Some("expected 503 temporarily_unavailable".into())
            } else if body.get("code").is_some() || challenge.is_some() {
                Some("expected neither a code nor a challenge".into())
            } else if !retry_after {
                Some("expected Retry-After".into())
            } else {
                leak(text, secrets)
            };
        }
    };
    if let Some(leak) = leak(text, secrets).or_else(|| leak(challenge.as_deref()?, secrets)) {
        return Some(leak);
    }
    let challenge = challenge.as_deref().unwrap_or_default();
    if *status != want_status {
        Some(format!("expected {want_status}"))
    } else if body["code"] != code {
        Some(format!("expected code {code}"))
    } else if let Some(error) = error {
        let in_challenge = challenge.contains(&format!("error=\"{error}\""));
        (!in_challenge || body["error"] != error)
            .then(|| format!("expected error {error} in the challenge and the body"))
    } else {
        (challenge != r#"Bearer realm="orders""#).then(|| "expected a bare challenge".into())
    }
}

/// `Some` when `text` contains one of `secrets`.
fn leak(text: &str, secrets: &[String]) -> Option<String> {
    secrets
        .iter()
        .find(|s| text.contains(s.as_str()))
        .map(|s| format!("tells the caller `{s}`"))
}
