//! The gateway's corpus (issue 11, findings 1–5): one row per request an attacker sends
//! through the real s2s-gateway to a real echo upstream ([`Upstream`]), each with the answer it
//! must get (status, JSON `error` and `code`, `WWW-Authenticate` or none) and what the upstream
//! then received: nothing for a refusal; for a forwarded request, the method, target and
//! headers it saw.
//!
//! Header values may name a token (`$reader`, `$writer`, `$admin`, `$nosub`, `$billing`,
//! `$orders`); expected values may name the gateway's address (`$host`).

use hyper::{Method, StatusCode, header};
use s2s_tests::{
    gateway::{AUD, Answer, CATCH_ALL, REALM, Running, World, call, start},
    keys,
};
use serde_json::Value;

/// Which gateway a row is sent to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Gw {
    /// The defaults: `;` refused, case-sensitive routes, no trusted proxies.
    Default,
    /// `[paths] allow_matrix_parameters = true` (an upstream that needs matrix parameters).
    Matrix,
    /// `[paths] case_insensitive = true` (an IIS or ASP.NET upstream).
    NoCase,
}

/// What the upstream must have seen of a forwarded request.
#[derive(Clone, Copy, Debug)]
enum Seen {
    /// This method.
    Verb(&'static str),
    /// This request target.
    Target(&'static str),
    /// No header whose name, with `_` read as `-` and case folded, is this one.
    No(&'static str),
    /// Exactly one such header, with this value.
    Only(&'static str, &'static str),
}

/// What a row expects.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 400 `invalid_request` (no `code`, no challenge) whose description says this; nothing
    /// forwarded.
    Bad(&'static str),
    /// 401 `AUTH_105` with the bare challenge `Bearer realm="orders"`; nothing forwarded.
    Challenge,
    /// 401 `invalid_token` in the body and the challenge, with this code; nothing forwarded.
    Invalid(&'static str),
    /// 403 `insufficient_scope`, `AUTH_102`, in the body and the challenge; nothing forwarded.
    Scope,
    /// 200 from the upstream, no challenge, one request forwarded that saw all of these.
    Passes(&'static [Seen]),
}

type Row = (
    &'static str,
    Gw,
    Method,
    &'static str,
    &'static [(&'static str, &'static str)],
    Expect,
);

/// The identity headers (the gateway's default names).
const SUBJECT: &str = "x-auth-subject";
const CLIENT: &str = "x-auth-client-id";
const SCOPES: &str = "x-auth-scopes";

#[rustfmt::skip]
fn corpus() -> Vec<Row> {
    use Expect::*;
    use Gw::*;
    use Seen::*;
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    vec![
        // 1. Segment parameters: Tomcat, Jetty and Spring strip `;…` from each segment, then
        // resolve `..`: `/public/..;/orders` is their `/orders`.
        ("..; out of a public route", Default, GET, "/public/..;/orders", &[], Bad("segment parameters")),
        ("..;param out of a public route", Default, GET, "/public/..;x=1/admin/x", &[], Bad("segment parameters")),
        ("jsessionid on a public segment, then ..", Default, GET, "/public;jsessionid=AB/../admin", &[], Bad("segment parameters")),
        ("jsessionid on a protected route", Default, GET, "/orders;jsessionid=AB", &[("authorization", "$reader")], Bad("segment parameters")),
        ("bare ; segment", Default, GET, "/public/;/orders", &[], Bad("segment parameters")),
        ("..%3B (encoded ;)", Default, GET, "/public/..%3B/orders", &[], Bad("%3B")),
        ("..%3b (encoded ;, lower case)", Default, GET, "/public/..%3b/admin", &[], Bad("%3B")),
        ("%3B inside a protected prefix", Default, GET, "/orders%3Bx/1", &[], Bad("%3B")),
        ("%2e%2e; (encoded dots, raw ;)", Default, GET, "/public/%2e%2e;/orders", &[], Bad("segment parameters")),
        (".%2e; (mixed dots)", Default, GET, "/public/.%2E;/orders", &[], Bad("segment parameters")),
        ("%2e%2e%3B (all encoded)", Default, GET, "/public/%2e%2e%3B/admin", &[], Bad("%3B")),
        ("%2e%2e%3b under the catch-all", Default, GET, "/%2e%2e%3b/admin", &[], Bad("%3B")),
        // (`..`, `%2e%2e` and `%2F` were refused before issue 11: tests/gateway.rs has them.)
        // Empty segments: nginx, CPython's http.server and many frameworks merge slashes, so
        // `//orders` behind the public catch-all `/` is their `/orders`.
        ("leading //", Default, GET, "//orders", &[], Bad("empty path segments")),
        ("leading // to admin", Default, GET, "//admin/x", &[("authorization", "$reader")], Bad("empty path segments")),
        ("/// run", Default, GET, "///orders/1", &[], Bad("empty path segments")),
        ("empty segment inside a protected route", Default, GET, "/orders//1", &[("authorization", "$reader")], Bad("empty path segments")),
        ("empty segment inside a public route", Default, GET, "/public//x", &[], Bad("empty path segments")),
        // Matrix parameters allowed: routing decides on the path the upstream resolves.
        ("matrix: ..; resolves into /orders, needs a token", Matrix, GET, "/public/..;/orders", &[], Challenge),
        ("matrix: ..;x=1 resolves into /admin, needs its scope", Matrix, GET, "/public/..;x=1/admin", &[("authorization", "$reader")], Scope),
        ("matrix: params on every segment into /orders", Matrix, GET, "/public;a=1/x;b=2/..;c/..;d/orders/1", &[], Challenge),
        ("matrix: forwarded as resolved", Matrix, GET, "/public/..;/orders", &[("authorization", "$reader")], Passes(&[Target("/orders")])),
        ("matrix: %3B before ..", Matrix, GET, "/public/x%3B/../admin", &[], Bad("%3B")),
        ("matrix: climbing above the root", Matrix, GET, "/..;/orders", &[], Bad("")),
        ("matrix: %3B still refused", Matrix, GET, "/public/..%3B/orders", &[], Bad("%3B")),
        ("matrix: empty segments still refused", Matrix, GET, "//orders", &[], Bad("empty path segments")),
        // Case-insensitive upstreams (IIS): routes match any case; Windows drops trailing dots.
        ("no case: /ORDERS needs a token", NoCase, GET, "/ORDERS", &[], Challenge),
        ("no case: /Admin needs its scope", NoCase, GET, "/Admin/x", &[("authorization", "$reader")], Scope),
        ("no case: %41dmin needs its scope", NoCase, GET, "/%41DMIN", &[("authorization", "$reader")], Scope),
        ("no case: ..; in another case", NoCase, GET, "/PUBLIC/..;/orders", &[], Bad("segment parameters")),
        ("no case: trailing dot", NoCase, GET, "/admin./x", &[], Bad("")),
        ("no case: trailing space", NoCase, GET, "/admin%20/x", &[], Bad("")),
        ("no case: a dot, then a space", NoCase, GET, "/admin.%20/x", &[], Bad("")),
        ("no case: dotless i (U+0131) folds to I", NoCase, GET, "/adm%C4%B1n/x", &[], Bad("")),
        ("no case: long s (U+017F) folds to S", NoCase, GET, "/%C5%BFhop/1", &[], Bad("")),
        ("no case: an NTFS stream name", NoCase, GET, "/admin::$INDEX_ALLOCATION/x", &[], Bad("")),
        ("no case: an NTFS stream with one colon", NoCase, GET, "/admin:$I30:$INDEX_ALLOCATION/x", &[], Bad("")),
        // 2. Identity headers spelled with underscores or in other cases, with and without the
        // claim in the token, on protected and public routes.
        ("X_Auth_Subject, token with sub", Default, GET, "/any", &[("authorization", "$reader"), ("X_Auth_Subject", "admin")], Passes(&[Only(SUBJECT, "svc-orders")])),
        ("X_Auth_Subject, token without sub", Default, GET, "/any", &[("authorization", "$nosub"), ("X_Auth_Subject", "admin")], Passes(&[No(SUBJECT)])),
        ("x_auth_subject, public route", Default, GET, "/public", &[("x_auth_subject", "admin")], Passes(&[No(SUBJECT)])),
        ("X_AUTH_SCOPES, token with scope", Default, GET, "/any", &[("authorization", "$reader"), ("X_AUTH_SCOPES", "orders:admin")], Passes(&[Only(SCOPES, "orders:read")])),
        ("X-Auth_Scopes, token without scope", Default, GET, "/any", &[("authorization", "$nosub"), ("X-Auth_Scopes", "orders:admin")], Passes(&[No(SCOPES)])),
        ("X-Auth_Client-Id, public route", Default, GET, "/public", &[("X-Auth_Client-Id", "billing")], Passes(&[No(CLIENT)])),
        ("x_auth_client_id, token with client_id", Default, GET, "/any", &[("authorization", "$reader"), ("x_auth_client_id", "billing")], Passes(&[Only(CLIENT, "svc-orders")])),
        ("all three, underscored, on a matrix gateway", Matrix, GET, "/public", &[("X_AUTH_SUBJECT", "a"), ("X_AUTH_CLIENT_ID", "b"), ("X_AUTH_SCOPES", "c")], Passes(&[No(SUBJECT), No(CLIENT), No(SCOPES)])),
        // 3. Forwarding headers from a peer that is no trusted proxy: the gateway's own view.
        ("X-Forwarded-For from the client", Default, GET, "/public", &[("x-forwarded-for", "203.0.113.7")], Passes(&[Only("x-forwarded-for", "127.0.0.1")])),
        ("X_Forwarded_For from the client", Default, GET, "/public", &[("X_Forwarded_For", "203.0.113.7")], Passes(&[Only("x-forwarded-for", "127.0.0.1")])),
        ("X-Forwarded_For (mixed spelling) from the client", Default, GET, "/public", &[("X-Forwarded_For", "203.0.113.7")], Passes(&[Only("x-forwarded-for", "127.0.0.1")])),
        ("Forwarded from the client", Default, GET, "/public", &[("forwarded", "for=203.0.113.7;proto=https")], Passes(&[Only("forwarded", "for=127.0.0.1;proto=http;host=\"$host\"")])),
        ("X-Real-IP from the client", Default, GET, "/public", &[("x-real-ip", "203.0.113.7")], Passes(&[Only("x-real-ip", "127.0.0.1")])),
        ("client-address and scheme headers of other names", Default, GET, "/public", &[("X-Client-IP", "203.0.113.7"), ("True-Client-IP", "203.0.113.7"), ("CF-Connecting-IP", "203.0.113.7"), ("Fastly-Client-IP", "203.0.113.7"), ("X-Cluster-Client-IP", "203.0.113.7"), ("X-Forwarded", "for=203.0.113.7"), ("Forwarded-For", "203.0.113.7"), ("X-Forwarded-Server", "evil"), ("X-Forwarded-Scheme", "https"), ("X-Original-Forwarded-For", "203.0.113.7")], Passes(&[No("x-client-ip"), No("true-client-ip"), No("cf-connecting-ip"), No("fastly-client-ip"), No("x-cluster-client-ip"), No("x-forwarded"), No("forwarded-for"), No("x-forwarded-server"), No("x-forwarded-scheme"), No("x-original-forwarded-for")])),
        ("x_real_ip from the client", Default, GET, "/public", &[("x_real_ip", "203.0.113.7")], Passes(&[Only("x-real-ip", "127.0.0.1")])),
        ("X-Forwarded-Host from the client", Default, GET, "/public", &[("x-forwarded-host", "shop.example")], Passes(&[Only("x-forwarded-host", "$host")])),
        ("X-Forwarded-Proto from the client", Default, GET, "/any", &[("authorization", "$reader"), ("x-forwarded-proto", "https")], Passes(&[Only("x-forwarded-proto", "http")])),
        ("X-Forwarded-Prefix from the client", Default, GET, "/public", &[("x-forwarded-prefix", "/shop")], Passes(&[No("x-forwarded-prefix")])),
        ("X-Forwarded-Port from the client", Default, GET, "/public", &[("x-forwarded-port", "443")], Passes(&[No("x-forwarded-port")])),
        // 4. Method override: checked as POST, so forwarded as POST and nothing else.
        ("X-HTTP-Method-Override", Default, POST, "/orders/1", &[("authorization", "$writer"), ("X-HTTP-Method-Override", "DELETE")], Passes(&[Verb("POST"), No("x-http-method-override")])),
        ("X-HTTP-Method", Default, POST, "/orders/1", &[("authorization", "$writer"), ("X-HTTP-Method", "DELETE")], Passes(&[Verb("POST"), No("x-http-method")])),
        ("X-Method-Override", Default, POST, "/orders/1", &[("authorization", "$writer"), ("X-Method-Override", "PUT")], Passes(&[Verb("POST"), No("x-method-override")])),
        ("x_http_method_override", Default, POST, "/orders/1", &[("authorization", "$writer"), ("x_http_method_override", "DELETE")], Passes(&[Verb("POST"), No("x-http-method-override")])),
        ("X-HTTP-Method-Override on a public route", Default, POST, "/public/form", &[("X-HTTP-Method-Override", "DELETE")], Passes(&[Verb("POST"), No("x-http-method-override")])),
        ("X_HTTP_Method on a matrix gateway", Matrix, POST, "/public", &[("X_HTTP_Method", "DELETE")], Passes(&[Verb("POST"), No("x-http-method")])),
        ("X-Original-URL and X-Rewrite-URL (URL overrides)", Default, POST, "/orders/1", &[("authorization", "$writer"), ("X-Original-URL", "/admin"), ("x_rewrite_url", "/admin")], Passes(&[Target("/orders/1"), No("x-original-url"), No("x-rewrite-url")])),
        // 5. Route audiences: one issuer's token for billing-api cannot pass /shop.
        ("billing-api token on an orders-api route", Default, GET, "/shop/1", &[("authorization", "$billing")], Invalid("AUTH_107")),
        ("orders-api token on a billing-api route", Default, GET, "/billing/1", &[("authorization", "$orders")], Invalid("AUTH_107")),
        // The control: a route still takes its own audience.
        ("billing-api token on a billing-api route", Default, GET, "/billing/1", &[("authorization", "$billing")], Passes(&[Target("/billing/1")])),
    ]
}

/// The gateway configuration of `gw`: the gateway suite's routes, a public catch-all `/`, and
/// `/billing` and `/shop` limited to one audience each of an issuer that has both.
fn config(world: &World, gw: Gw) -> String {
    let paths = match gw {
        Gw::Default => "",
        Gw::Matrix => "[paths]\nallow_matrix_parameters = true\n",
        Gw::NoCase => "[paths]\ncase_insensitive = true\n",
    };
    let tables = format!(
        "{CATCH_ALL}\
         [[route]]\nprefix = \"/billing\"\nupstream = \"app\"\naudiences = [\"billing-api\"]\n\
         [[route]]\nprefix = \"/shop\"\nupstream = \"app\"\naudiences = [\"{AUD}\"]\n{paths}"
    );
    world.config("", &tables).replacen(
        &format!("audiences = [\"{AUD}\"]"),
        &format!("audiences = [\"{AUD}\", \"billing-api\"]"),
        1,
    )
}

/// The token `$name` stands for.
fn token(world: &World, name: &str) -> String {
    let mut claims = keys::claims(&world.keys.issuer(), AUD);
    let scope = match name {
        "$reader" | "$orders" => "orders:read",
        "$writer" => "orders:write",
        "$admin" => "orders:admin orders:read orders:write",
        "$billing" => {
            claims["aud"] = "billing-api".into();
            "orders:read"
        }
        "$nosub" => {
            let claims = claims.as_object_mut().unwrap();
            claims.remove("sub");
            claims.remove("scope");
            return format!("Bearer {}", world.key.sign(&Value::from(claims.clone())));
        }
        other => panic!("no token {other}"),
    };
    claims["scope"] = scope.into();
    format!("Bearer {}", world.key.sign(&claims))
}

#[tokio::test]
async fn every_gateway_row_gets_its_answer_and_the_upstream_sees_only_what_it_should() {
    let world = World::new().await;
    let mut gateways: Vec<(Gw, Running)> = Vec::new();
    for gw in [Gw::Default, Gw::Matrix, Gw::NoCase] {
        gateways.push((gw, start(&config(&world, gw)).await));
    }
    let rows = corpus();
    let mut failures = Vec::new();
    for (name, gw, method, path, headers, expect) in &rows {
        let gateway = &gateways.iter().find(|(g, _)| g == gw).unwrap().1;
        let host = gateway.addr.to_string();
        let headers: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| {
                let v = if v.starts_with('$') {
                    token(&world, v)
                } else {
                    v.to_string()
                };
                (*k, v)
            })
            .collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let before = world.upstream.requests();
        let answer = call(gateway.addr, method.clone(), path, &headers).await;
        let forwarded = world.upstream.requests() - before;
        if let Some(problem) = check(*expect, &answer, forwarded, &host) {
            let body = String::from_utf8_lossy(&answer.body);
            failures.push(format!(
                "{name} ({gw:?} {method} {path}): {problem}; got {} {body}",
                answer.status
            ));
        }
    }
    super::assert_rows_pass(&failures, rows.len());
}

/// `None` when the answer and what reached the upstream (`forwarded` requests) are as expected.
fn check(expect: Expect, answer: &Answer, forwarded: usize, host: &str) -> Option<String> {
    let challenge = answer
        .headers
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap_or("<binary>").to_owned());
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let refusal = |status: StatusCode, error: Option<&str>, code: Option<&str>| {
        if answer.status != status {
            return Some(format!("expected {status}"));
        }
        if forwarded != 0 {
            return Some(format!("{forwarded} request(s) reached the upstream"));
        }
        if let Some(error) = error.filter(|e| body["error"] != *e) {
            return Some(format!("expected error {error}"));
        }
        match code {
            Some(code) if body["code"] != code => Some(format!("expected code {code}")),
            None if body.get("code").is_some() => Some("expected no code".into()),
            _ => None,
        }
    };
    let bearer = |error: &str| {
        let want = format!("Bearer realm=\"{REALM}\", error=\"{error}\"");
        let ok = challenge.as_deref().is_some_and(|c| c.starts_with(&want));
        (!ok).then(|| format!("expected the challenge {want}…"))
    };
    match expect {
        Expect::Bad(says) => refusal(StatusCode::BAD_REQUEST, Some("invalid_request"), None)
            .or_else(|| challenge.is_some().then(|| "expected no challenge".into()))
            .or_else(|| {
                let description = body["error_description"].as_str().unwrap_or_default();
                (description.is_empty() || !description.contains(says))
                    .then(|| format!("expected a description saying `{says}`"))
            }),
        Expect::Challenge => {
            refusal(StatusCode::UNAUTHORIZED, None, Some("AUTH_105")).or_else(|| {
                let want = format!("Bearer realm=\"{REALM}\"");
                (challenge.as_deref() != Some(want.as_str()))
                    .then(|| format!("expected the bare challenge {want}"))
            })
        }
        Expect::Invalid(code) => {
            refusal(StatusCode::UNAUTHORIZED, Some("invalid_token"), Some(code))
                .or_else(|| bearer("invalid_token"))
        }
        Expect::Scope => refusal(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            Some("AUTH_102"),
        )
        .or_else(|| bearer("insufficient_scope")),
        Expect::Passes(seen) => {
            if answer.status != StatusCode::OK || answer.headers.get("x-upstream").is_none() {
                return Some("expected the upstream's 200".into());
            }
            if challenge.is_some() {
                return Some("expected no challenge".into());
            }
            if forwarded != 1 {
                return Some(format!("{forwarded} requests reached the upstream, not 1"));
            }
            seen.iter().find_map(|s| saw(&body, *s, host))
        }
    }
}

/// `None` when the upstream's echo shows `seen`.
fn saw(echo: &Value, seen: Seen, host: &str) -> Option<String> {
    let named = |name: &str| -> Vec<(String, Vec<Value>)> {
        let headers = echo["headers"].as_object().cloned().unwrap_or_default();
        headers
            .into_iter()
            .filter(|(n, _)| n.replace('_', "-").eq_ignore_ascii_case(name))
            .map(|(n, v)| (n, v.as_array().cloned().unwrap_or_default()))
            .collect()
    };
    match seen {
        Seen::Verb(m) => (echo["method"] != m).then(|| format!("upstream saw {}", echo["method"])),
        Seen::Target(t) => {
            (echo["target"] != t).then(|| format!("upstream saw {}", echo["target"]))
        }
        Seen::No(name) => {
            let found = named(name);
            (!found.is_empty()).then(|| format!("upstream saw {found:?}"))
        }
        Seen::Only(name, value) => {
            let value = value.replace("$host", host);
            let found = named(name);
            let ok = matches!(found.as_slice(), [(n, v)] if n == name && v == &[Value::from(value.as_str())]);
            (!ok).then(|| format!("upstream should see only {name}: {value}, saw {found:?}"))
        }
    }
}
