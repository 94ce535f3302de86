//! s2s-gateway end to end, over real HTTP on 127.0.0.1: a [`KeyServer`] publishes the keys, an
//! [`Upstream`] (a hyper server that records and counts what reaches it) stands for the
//! protected service, the gateway runs in-process on its own port, and a hyper client calls it.
//!
//! Nothing sleeps to wait for a race: the upstream and the tests hand each other [`Notify`]
//! signals, and waits are bounded ([`within`], [`wait_until`]). The 100 MB streaming tests prove
//! "no buffering" by construction: the sender stops half-way until the receiver has seen bytes,
//! which a buffering proxy would never deliver.

use std::convert::Infallible;

use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Frame},
    header,
};
use jsonwebtoken::Algorithm;
use s2s_auth::{Issuer, RequireScopeLayer, Verifier, VerifyLayer};
use s2s_gateway::Config;
use s2s_tests::{
    gateway::*,
    keys::{self, Behavior, KeyServer, TestKey},
    logs::Logs,
};
use serde_json::{Value, json};
use tower::{Layer as _, ServiceExt as _};

/// The answer s2s-auth's own `VerifyLayer` (+ `RequireScopeLayer`) gives to the same request, from a
/// verifier of its own over the same key server.
async fn reference(
    keys: &KeyServer,
    scope: Option<RequireScopeLayer>,
    authorization: Option<&str>,
) -> Answer {
    let verifier = Verifier::builder()
        .issuer(Issuer::jwks(keys.issuer(), keys.jwks_url()))
        .audience(AUD)
        .build()
        .unwrap();
    let handler = tower::service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"handler"))))
    });
    let mut request = Request::builder().uri("/x");
    if let Some(a) = authorization {
        request = request.header(header::AUTHORIZATION, a);
    }
    let request = request.body(()).unwrap();
    let verify = VerifyLayer::new(verifier).realm(REALM);
    let response = match scope {
        Some(scope) => {
            let r = verify
                .layer(scope.layer(handler))
                .oneshot(request)
                .await
                .unwrap();
            r.map(|b| b.boxed_unsync())
        }
        None => verify
            .layer(handler)
            .oneshot(request)
            .await
            .unwrap()
            .map(|b| b.boxed_unsync()),
    };
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// The gateway's answer is the reference's: status, challenge, content type, caching, body.
fn assert_same_answer(gateway: &Answer, reference: &Answer, case: &str) {
    assert_eq!(gateway.status, reference.status, "{case}");
    for name in [
        header::WWW_AUTHENTICATE,
        header::CONTENT_TYPE,
        header::CACHE_CONTROL,
        header::RETRY_AFTER,
    ] {
        assert_eq!(
            gateway.headers.get(&name),
            reference.headers.get(&name),
            "{case}: {name}"
        );
    }
    assert_eq!(gateway.body, reference.body, "{case}: body");
}

/// The gateway's audience refusal is the reference's but for the description, which names no
/// audience (an unauthenticated caller learns the reason, not the configuration).
fn assert_same_refusal(gateway: &Answer, reference: &Answer, case: &str) {
    assert_eq!(gateway.status, reference.status, "{case}");
    let challenge = |a: &Answer| {
        let c = a.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        c.split(", error_description").next().unwrap().to_owned()
    };
    assert_eq!(challenge(gateway), challenge(reference), "{case}");
    let (got, want) = (gateway.json(), reference.json());
    assert_eq!(got["error"], want["error"], "{case}");
    assert_eq!(got["code"], want["code"], "{case}");
    let description = got["error_description"].as_str().unwrap();
    assert!(
        !description.contains("-api"),
        "{case}: the refusal lists audiences: {description}"
    );
}

fn assert_gateway_error(answer: &Answer, status: StatusCode, error: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    let body = answer.json();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

/// Each of `paths` is refused 400 `invalid_request` by the gateway itself.
async fn assert_paths_refused(gateway: &Running, paths: &[&str]) {
    for path in paths {
        let got = gateway.get(path).await;
        assert_gateway_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

// ---------------------------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_token_is_forwarded_with_identity_and_forwarding_headers() {
    let (world, gateway) = World::with_gateway("", "").await;
    let token = world.token("orders:read orders:write");
    let host = gateway.addr.to_string();
    let answer = gateway
        .call(
            Method::GET,
            "/orders/42?expand=lines&x=%20y",
            &[
                ("authorization", &bearer(&token)),
                ("x-custom", "kept"),
                ("x-forwarded-for", "203.0.113.7"),
                ("forwarded", "for=203.0.113.7"),
                // Hop-by-hop: the fixed ones and those `Connection` names.
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "secret"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("upgrade", "websocket"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let echo = answer.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["target"], "/orders/42?expand=lines&x=%20y");
    assert_eq!(header(&echo, "x-auth-subject"), Some("svc-orders"));
    assert_eq!(header(&echo, "x-auth-client-id"), Some("svc-orders"));
    assert_eq!(
        header(&echo, "x-auth-scopes"),
        Some("orders:read orders:write")
    );
    assert_eq!(
        header(&echo, "authorization"),
        Some(bearer(&token).as_str())
    );
    assert_eq!(header(&echo, "x-custom"), Some("kept"));
    assert_eq!(
        header(&echo, "host"),
        Some(world.upstream.addr.to_string().as_str())
    );
    // The client is no trusted proxy: its forwarding headers are replaced by the gateway's.
    assert_eq!(header(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        header(&echo, "forwarded"),
        Some(format!("for=127.0.0.1;proto=http;host=\"{host}\"").as_str())
    );
    for hop in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert_eq!(header(&echo, hop), None, "{hop} was forwarded: {echo}");
    }
    // The connection header the upstream received is its own hop's (hyper's keep-alive), not
    // the client's list.
    assert!(
        header(&echo, "connection").is_none_or(|c| !c.contains("x-hop")),
        "{echo}"
    );
    // The answer comes back without the upstream's hop-by-hop headers.
    assert_eq!(answer.headers["x-upstream"], "yes");
    for hop in ["x-upstream-hop", "keep-alive", "proxy-authenticate"] {
        assert!(
            answer.headers.get(hop).is_none(),
            "{hop} came back: {:?}",
            answer.headers
        );
    }
    world.assert_forwarded(1, "requests forwarded");
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let (world, gateway) = World::with_gateway("", "").await;
    let spoofed = [
        ("x-auth-subject", "admin"),
        ("X-Auth-Subject", "root"),
        ("x-auth-client-id", "billing"),
        ("x-auth-scopes", "orders:admin"),
    ];
    // A protected route: the verified values replace the client's.
    let token = world.token("orders:read");
    let mut headers = vec![("authorization", bearer(&token))];
    headers.extend(spoofed.iter().map(|(k, v)| (*k, v.to_string())));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let echo = gateway.call(Method::GET, "/orders", &headers).await.json();
    assert_eq!(header(&echo, "x-auth-subject"), Some("svc-orders"));
    assert_eq!(header(&echo, "x-auth-client-id"), Some("svc-orders"));
    assert_eq!(header(&echo, "x-auth-scopes"), Some("orders:read"));
    // The spoofed admin scope did not open the admin route either.
    let admin = gateway.call(Method::GET, "/admin", &headers).await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN);
    // A public route: none at all.
    let echo = gateway
        .call(Method::GET, "/public/page", &spoofed)
        .await
        .json();
    for (name, _) in spoofed {
        assert_eq!(header(&echo, &name.to_ascii_lowercase()), None, "{echo}");
    }
}

#[tokio::test]
async fn identity_header_names_are_configurable_and_authorization_can_be_stripped() {
    let world = World::new().await;
    let gateway = start(&world.config(
        "strip_authorization = true",
        "[identity_headers]\nsubject = \"X-Caller\"\nclient_id = \"X-Caller-Client\"\nscopes = \"X-Caller-Scopes\"\n",
    ))
    .await;
    let token = world.token("orders:read");
    let answer = gateway
        .call(
            Method::GET,
            "/orders",
            &[("authorization", &bearer(&token)), ("x-caller", "spoofed")],
        )
        .await;
    let echo = answer.json();
    assert_eq!(header(&echo, "x-caller"), Some("svc-orders"));
    assert_eq!(header(&echo, "x-caller-client"), Some("svc-orders"));
    assert_eq!(header(&echo, "x-caller-scopes"), Some("orders:read"));
    assert_eq!(header(&echo, "authorization"), None);
    assert_eq!(header(&echo, "x-auth-subject"), None);
}

#[tokio::test]
async fn identity_comes_from_sub_client_id_or_azp_and_the_scopes() {
    let (world, gateway) = World::with_gateway("", "").await;
    // No client_id: azp (as Entra ID and others send it) names the client.
    let mut claims = keys::claims(&world.keys.issuer(), AUD);
    claims["client_id"] = Value::Null;
    claims["azp"] = "billing-client".into();
    claims["scope"] = "orders:read".into();
    let token = bearer(&world.key.sign(&claims));
    let echo = gateway.authorized(Method::GET, "/any", &token).await.json();
    assert_eq!(header(&echo, "x-auth-client-id"), Some("billing-client"));
    // No sub, no scope: those headers are absent, not empty (and not the client's).
    let mut claims = keys::claims(&world.keys.issuer(), AUD);
    claims.as_object_mut().unwrap().remove("sub");
    claims.as_object_mut().unwrap().remove("scope");
    let token = bearer(&world.key.sign(&claims));
    let echo = gateway
        .call(
            Method::GET,
            "/any",
            &[("authorization", &token), ("x-auth-subject", "spoofed")],
        )
        .await
        .json();
    assert_eq!(header(&echo, "x-auth-subject"), None);
    assert_eq!(header(&echo, "x-auth-scopes"), None);
    assert_eq!(header(&echo, "x-auth-client-id"), Some("svc-orders"));
    // A subject no header can carry refuses the token instead of dropping the header.
    let mut claims = keys::claims(&world.keys.issuer(), AUD);
    claims["sub"] = "svc\r\nx-auth-scopes: orders:admin".into();
    let token = bearer(&world.key.sign(&claims));
    let got = gateway.authorized(Method::GET, "/any", &token).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(got.json()["code"], "AUTH_105");
    world.assert_forwarded(2, "requests forwarded");
}

#[tokio::test]
async fn each_token_on_one_connection_gets_its_own_identity() {
    let (world, gateway) = World::with_gateway("", "").await;
    let token = |sub: &str, scope: &str| {
        let mut claims = keys::claims(&world.keys.issuer(), AUD);
        claims["sub"] = sub.into();
        claims["client_id"] = format!("{sub}-client").into();
        claims["scope"] = scope.into();
        bearer(&world.key.sign(&claims))
    };
    let (alice, bob) = (token("alice", "orders:read"), token("bob", "orders:write"));
    let stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    // One connection throughout: a token, another, the first again, and none.
    for (authorization, identity) in [
        (Some(&alice), Some(("alice", "alice-client", "orders:read"))),
        (Some(&bob), Some(("bob", "bob-client", "orders:write"))),
        (Some(&alice), Some(("alice", "alice-client", "orders:read"))),
        (None, None),
    ] {
        let mut request = Request::get("/any").header(header::HOST, "gateway");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization.as_str());
        }
        sender.ready().await.unwrap();
        let response = within(
            "the gateway's answer",
            sender.send_request(request.body(empty()).unwrap()),
        )
        .await
        .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let Some((sub, client_id, scopes)) = identity else {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            continue;
        };
        assert_eq!(status, StatusCode::OK);
        let echo: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(header(&echo, "x-auth-subject"), Some(sub));
        assert_eq!(header(&echo, "x-auth-client-id"), Some(client_id));
        assert_eq!(header(&echo, "x-auth-scopes"), Some(scopes));
    }
    world.assert_forwarded(3, "requests forwarded");
}

#[tokio::test]
async fn a_public_route_needs_no_token() {
    let (world, gateway) = World::with_gateway("", "").await;
    let answer = gateway.call(Method::POST, "/public/form?a=1", &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let echo = answer.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["target"], "/public/form?a=1");
    assert_eq!(header(&echo, "x-auth-subject"), None);
    // A token is not looked at on a public route, valid or not.
    let answer = gateway
        .authorized(Method::GET, "/public", "Bearer junk")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    world.assert_forwarded(2, "requests forwarded");
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rejections_are_the_verify_layers_own() {
    let (world, gateway) = World::with_gateway("", "").await;
    let other_key = TestKey::generate(Algorithm::ES256, "k1");
    let mut wrong_aud = keys::claims(&world.keys.issuer(), "billing-api");
    wrong_aud["scope"] = "orders:read".into();
    let unknown_issuer = keys::claims("https://elsewhere.example", AUD);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("basic credentials", Some("Basic Zm9vOmJhcg==".into())),
        ("not a JWT", Some("Bearer not-a-jwt".into())),
        ("wrong audience", Some(bearer(&world.key.sign(&wrong_aud)))),
        (
            "unknown issuer",
            Some(bearer(&world.key.sign(&unknown_issuer))),
        ),
        (
            "forged signature",
            Some(bearer(
                &other_key.sign(&keys::claims(&world.keys.issuer(), AUD)),
            )),
        ),
    ];
    for (case, authorization) in &cases {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let got = gateway.call(Method::GET, "/any/thing", &headers).await;
        let want = reference(&world.keys, None, authorization.as_deref()).await;
        assert!(want.status.is_client_error(), "{case}: {}", want.status);
        assert_same_answer(&got, &want, case);
    }
    // Expired: the description counts seconds, so compare what does not move.
    let mut expired = keys::claims(&world.keys.issuer(), AUD);
    expired["exp"] = (keys::now() - 3600).into();
    let got = gateway
        .call(
            Method::GET,
            "/any",
            &[("authorization", &bearer(&world.key.sign(&expired)))],
        )
        .await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(got.json()["code"], "AUTH_105");
    assert!(
        got.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with(&format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\""
            )),
        "{:?}",
        got.headers
    );
    world.assert_forwarded(0, "a refused request reached the upstream");
}

#[tokio::test]
async fn each_route_requires_its_scopes() {
    let (world, gateway) = World::with_gateway("", "").await;
    let reader = world.bearer("orders:read");
    let writer = world.bearer("orders:write");
    let ok = |a: &Answer| a.status == StatusCode::OK;
    // GET /orders: any of orders:read, orders:admin.
    assert!(ok(&gateway
        .authorized(Method::GET, "/orders", &reader)
        .await));
    let got = gateway.authorized(Method::GET, "/orders/1", &writer).await;
    let want = reference(
        &world.keys,
        Some(RequireScopeLayer::any(["orders:read", "orders:admin"])),
        Some(&writer),
    )
    .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_same_answer(&got, &want, "GET /orders with orders:write");
    // POST /orders: all of orders:write.
    assert!(ok(&gateway
        .authorized(Method::POST, "/orders", &writer)
        .await));
    let got = gateway.authorized(Method::POST, "/orders", &reader).await;
    let want = reference(
        &world.keys,
        Some(RequireScopeLayer::all(["orders:write"])),
        Some(&reader),
    )
    .await;
    assert_same_answer(&got, &want, "POST /orders with orders:read");
    let challenge = got.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"orders:write\""), "{challenge}");
    assert_eq!(got.json()["code"], "AUTH_102");
    // /admin: orders:admin, which neither has.
    let got = gateway
        .authorized(Method::DELETE, "/admin/x", &writer)
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    // /any: any valid token.
    assert!(ok(&gateway.authorized(Method::PUT, "/any", &writer).await));
    world.assert_forwarded(3, "requests forwarded");
}

#[tokio::test]
async fn unknown_routes_and_ambiguous_paths_never_reach_an_upstream() {
    let (world, gateway) = World::with_gateway("", "").await;
    let admin = world.bearer("orders:admin orders:read orders:write");
    let reader = world.bearer("orders:read");
    for (method, path, auth) in [
        (Method::GET, "/nowhere", None),
        (Method::GET, "/nowhere", Some(&admin)),
        (Method::GET, "/", Some(&admin)),
        (Method::GET, "/ordersx", Some(&admin)),
        (Method::GET, "/publicity", None),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let got = gateway.call(method.clone(), path, &headers).await;
        assert_gateway_error(&got, StatusCode::NOT_FOUND, "not_found");
    }
    // A method the route does not list: 405 with the methods of that prefix, never a fallback.
    let got = gateway.authorized(Method::PUT, "/orders/1", &admin).await;
    assert_gateway_error(&got, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(got.headers[header::ALLOW], "GET, HEAD, POST");
    // Paths an upstream could resolve into another route: refused.
    assert_paths_refused(
        &gateway,
        &[
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public%2F..%2Fadmin",
            "/public/./x",
        ],
    )
    .await;
    world.assert_forwarded(0, "requests forwarded");
    // Escaped letters are the same path: /%61dmin is /admin and needs its scope.
    let got = gateway.authorized(Method::GET, "/%61dmin", &reader).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    let got = gateway
        .authorized(Method::GET, "/%61dmin/%7e", &admin)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["target"], "/admin/~");
}

#[tokio::test]
async fn each_issuer_is_held_to_its_own_audiences() {
    let world = World::new().await;
    let billing_key = TestKey::generate(Algorithm::ES256, "b1");
    let billing = KeyServer::start().await;
    billing.set_keys(&[&billing_key]);
    let gateway = start(&world.config(
        "",
        &format!(
            "[[issuer]]\nid = \"{}\"\njwks_url = \"{}\"\naudiences = [\"billing-api\"]\n",
            billing.issuer(),
            billing.jwks_url()
        ),
    ))
    .await;
    // The billing issuer's token for billing-api passes; for orders-api (an audience of the
    // other issuer) it does not.
    let mut claims = keys::claims(&billing.issuer(), "billing-api");
    claims["sub"] = "svc-billing".into();
    let ok = gateway
        .call(
            Method::GET,
            "/any",
            &[("authorization", &bearer(&billing_key.sign(&claims)))],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(header(&ok.json(), "x-auth-subject"), Some("svc-billing"));
    let token = bearer(&billing_key.sign(&keys::claims(&billing.issuer(), AUD)));
    let got = gateway.authorized(Method::GET, "/any", &token).await;
    // The answer of a VerifyLayer that accepts only billing-api for that issuer.
    let only_billing = Verifier::builder()
        .issuer(Issuer::jwks(billing.issuer(), billing.jwks_url()))
        .audience("billing-api")
        .build()
        .unwrap();
    let want = VerifyLayer::new(only_billing)
        .realm(REALM)
        .layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }))
        .oneshot(
            Request::builder()
                .header("authorization", &token)
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = want.into_parts();
    let want = Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    };
    assert_same_refusal(&got, &want, "billing token for orders-api");
    assert_eq!(got.json()["code"], "AUTH_107");
    world.assert_forwarded(1, "requests forwarded");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let world = World::new().await;
    let gateway = start(&world.config("", "").replace("209715200", "1000")).await;
    // Declared too large: refused before the upstream is contacted.
    let request = Request::post("/upload")
        .body(full(vec![b'a'; 2000]))
        .unwrap();
    let got = send(gateway.addr, request).await;
    assert_gateway_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    world.assert_forwarded(0, "requests forwarded");
    // Streamed (chunked) past the limit: cut off and answered 413.
    let chunks = stream::iter(
        (0..4).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from_static(&CHUNK[..600])))),
    );
    let request = Request::post("/upload")
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap();
    let got = send(gateway.addr, request).await;
    assert_gateway_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Within the limit: forwarded.
    let request = Request::post("/upload")
        .body(full(vec![b'a'; 1000]))
        .unwrap();
    let got = send(gateway.addr, request).await;
    assert_eq!(got.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Hardening: paths, spelled-out headers, forwarding, method override, audiences, typ
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn segment_parameters_and_empty_segments_are_refused_and_never_forwarded() {
    let (world, gateway) = World::with_gateway("", CATCH_ALL).await;
    for (path, says) in [
        // Tomcat, Jetty and Spring: `/public/..;/orders` is `/orders`.
        ("/public/..;/orders", "segment parameters"),
        ("/public/..;x=1/admin/x", "segment parameters"),
        ("/public;jsessionid=AB/../admin", "segment parameters"),
        ("/orders;jsessionid=AB", "segment parameters"),
        ("/public/..%3B/orders", "%3B"),
        // nginx and CPython merge slashes: `//orders` is `/orders` behind the public `/`.
        ("//orders", "empty path segments"),
        ("//admin/x", "empty path segments"),
        ("/public//x", "empty path segments"),
        // C-based servers and file APIs stop at a decoded NUL: `/orders%00` is `/orders`.
        ("/orders%00", "control characters"),
        ("/admin%00.html", "control characters"),
        ("/public/x%0D%0Ay", "control characters"),
        // A framework decoding again after the server reads `%252e%252e` as `..`.
        ("/public/%252e%252e/admin", "double-encoded"),
        ("/public/..%252Fadmin", "double-encoded"),
    ] {
        let got = gateway.get(path).await;
        assert_gateway_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
        let description = got.json()["error_description"].as_str().unwrap().to_owned();
        assert!(description.contains(says), "{path}: {description}");
    }
    world.assert_forwarded(0, "a refused path was forwarded");
    // A trailing slash is no empty segment.
    let got = gateway.get("/public/").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["target"], "/public/");
}

#[tokio::test]
async fn matrix_parameters_route_on_the_path_the_upstream_resolves() {
    let world = World::new().await;
    let gateway = start(&world.config(
        "",
        &format!(
            "{CATCH_ALL}[[route]]\nprefix = \"/strip\"\nupstream = \"app\"\npublic = true\nstrip_prefix = true\n\
             [paths]\nallow_matrix_parameters = true\n"
        ),
    ))
    .await;
    // What Tomcat resolves `/public/..;/orders` to is what is routed: the protected /orders.
    for path in [
        "/public/..;/orders",
        "/public;x=1/..;y/orders/1",
        "/x/../admin",
    ] {
        let got = gateway.get(path).await;
        assert_eq!(
            got.status,
            StatusCode::UNAUTHORIZED,
            "{path}: {:?}",
            got.body
        );
    }
    let reader = world.bearer("orders:read");
    let got = gateway
        .authorized(Method::GET, "/admin/..;/public/..;/admin", &reader)
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{:?}", got.body);
    world.assert_forwarded(0, "requests forwarded");
    // The upstream receives the path that was routed, each segment with its parameters.
    for (path, target) in [
        ("/public/..;/orders", "/orders"),
        ("/orders;jsessionid=AB/1?q=1", "/orders;jsessionid=AB/1?q=1"),
        ("/public/x/..;v=2/y;v=3", "/public/y;v=3"),
    ] {
        let got = gateway.authorized(Method::GET, path, &reader).await;
        assert_eq!(got.status, StatusCode::OK, "{path}: {:?}", got.body);
        assert_eq!(got.json()["target"], target, "{path}");
    }
    let got = gateway.get("/strip;a=1/x;b=2").await;
    assert_eq!(got.json()["target"], "/x;b=2");
    // Still refused: climbing above the root, empty segments, an encoded `;`.
    assert_paths_refused(
        &gateway,
        &[
            "/..;/orders",
            "//orders",
            "/public/;x/orders",
            "/public/..%3B/orders",
        ],
    )
    .await;
    world.assert_forwarded(4, "requests forwarded");
}

#[tokio::test]
async fn case_insensitive_routes_match_any_case() {
    let world = World::new().await;
    // Case-sensitive (the default): `/ORDERS` is no route of /orders, so the public catch-all
    // takes it, and an IIS upstream would serve its /orders.
    let strict = world.gateway("", CATCH_ALL).await;
    let got = strict.get("/ORDERS").await;
    assert_eq!(got.status, StatusCode::OK);
    world.assert_forwarded(1, "requests forwarded");
    let gateway = start(&world.config(
        "",
        &format!("{CATCH_ALL}[paths]\ncase_insensitive = true\n"),
    ))
    .await;
    for path in ["/ORDERS", "/Orders/1", "/%41dmin/x"] {
        let got = gateway.get(path).await;
        assert_eq!(
            got.status,
            StatusCode::UNAUTHORIZED,
            "{path}: {:?}",
            got.body
        );
    }
    let reader = world.bearer("orders:read");
    let got = gateway.authorized(Method::GET, "/ADMIN", &reader).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    let got = gateway.authorized(Method::PUT, "/oRdErS", &reader).await;
    assert_gateway_error(&got, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    // Windows drops trailing dots and spaces, reads `admin::$DATA` as `admin`, `ADMIN~1` as the
    // short name of `admin…`, and folds `ı` (%C4%B1) to `I` and `ſ` (%C5%BF) to `S`: IIS
    // would serve /admin/x for these, which the public catch-all would otherwise forward.
    assert_paths_refused(
        &gateway,
        &[
            "/admin./x",
            "/admin%20/x",
            "/orders.",
            "/admin::$DATA",
            "/ADMIN~1/x",
            "/adm%C4%B1n/x",
            "/ord%C5%BFers",
        ],
    )
    .await;
    world.assert_forwarded(1, "requests forwarded");
    // The path is forwarded as the client wrote it.
    let got = gateway.authorized(Method::GET, "/Orders/1", &reader).await;
    assert_eq!(got.json()["target"], "/Orders/1");
}

#[tokio::test]
async fn identity_header_variants_are_removed_whatever_their_spelling() {
    let (world, gateway) = World::with_gateway("", "").await;
    // CGI-style stacks read every one of these as X-Auth-Subject and the like.
    let spoofed = [
        ("X_Auth_Subject", "admin"),
        ("x_auth_subject", "admin"),
        ("X-Auth_Client-Id", "billing"),
        ("X_AUTH_SCOPES", "orders:admin"),
        ("x-auth-scopes", "orders:admin"),
    ];
    let is_identity = |name: &str| {
        let folded = name.replace('_', "-");
        ["x-auth-subject", "x-auth-client-id", "x-auth-scopes"].contains(&folded.as_str())
    };
    // A token without sub and scope: no identity value replaces the spoofed ones.
    let mut claims = keys::claims(&world.keys.issuer(), AUD);
    claims.as_object_mut().unwrap().remove("sub");
    claims.as_object_mut().unwrap().remove("scope");
    let token = bearer(&world.key.sign(&claims));
    let mut headers = vec![("authorization", token.as_str())];
    headers.extend(spoofed);
    let echo = gateway.call(Method::GET, "/any", &headers).await.json();
    let names = header_names(&echo);
    let identity: Vec<&String> = names.iter().filter(|n| is_identity(n)).collect();
    assert_eq!(identity, ["x-auth-client-id"], "{echo}");
    assert_eq!(header(&echo, "x-auth-client-id"), Some("svc-orders"));
    // A public route: none at all.
    let echo = gateway.call(Method::GET, "/public", &spoofed).await.json();
    let names = header_names(&echo);
    assert!(!names.iter().any(|n| is_identity(n)), "{echo}");
    // Configured names are matched the same way.
    let custom = start(&world.config("", "[identity_headers]\nsubject = \"X-Caller\"\n")).await;
    let echo = custom
        .call(Method::GET, "/public", &[("x_caller", "admin")])
        .await
        .json();
    assert!(
        !header_names(&echo).iter().any(|n| n == "x_caller"),
        "{echo}"
    );
}

const FORWARDING: [(&str, &str); 8] = [
    ("x-forwarded-for", "203.0.113.7"),
    ("forwarded", "for=203.0.113.7;proto=https"),
    ("x-real-ip", "203.0.113.7"),
    ("x-forwarded-host", "shop.example"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-prefix", "/shop"),
    ("x-forwarded-port", "443"),
    ("x_forwarded_for", "198.51.100.9"),
];

#[tokio::test]
async fn forwarding_headers_are_the_gateways_own_unless_the_peer_is_a_trusted_proxy() {
    let world = World::new().await;
    // Not trusted: no list, or a list without the peer (127.0.0.1).
    for top in [
        "",
        "trusted_proxies = [\"10.0.0.0/8\", \"::1/128\", \"192.0.2.1\"]",
    ] {
        let gateway = start(&world.config(top, "")).await;
        let host = gateway.addr.to_string();
        let echo = gateway
            .call(Method::GET, "/public", &FORWARDING)
            .await
            .json();
        assert_eq!(header(&echo, "x-forwarded-for"), Some("127.0.0.1"), "{top}");
        assert_eq!(
            header(&echo, "forwarded"),
            Some(format!("for=127.0.0.1;proto=http;host=\"{host}\"").as_str())
        );
        assert_eq!(header(&echo, "x-real-ip"), Some("127.0.0.1"));
        assert_eq!(header(&echo, "x-forwarded-host"), Some(host.as_str()));
        assert_eq!(header(&echo, "x-forwarded-proto"), Some("http"));
        for removed in ["x_forwarded_for", "x-forwarded-prefix", "x-forwarded-port"] {
            assert_eq!(header(&echo, removed), None, "{echo}");
        }
    }
    // Trusted: kept, and the lists get this hop appended; a variant spelling is still removed.
    let gateway = start(&world.config("trusted_proxies = [\"127.0.0.0/8\"]", "")).await;
    let host = gateway.addr.to_string();
    let echo = gateway
        .call(Method::GET, "/public", &FORWARDING)
        .await
        .json();
    assert_eq!(
        header(&echo, "x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(
        header(&echo, "forwarded"),
        Some(
            format!("for=203.0.113.7;proto=https, for=127.0.0.1;proto=http;host=\"{host}\"")
                .as_str()
        )
    );
    assert_eq!(header(&echo, "x-real-ip"), Some("203.0.113.7"));
    assert_eq!(header(&echo, "x-forwarded-host"), Some("shop.example"));
    assert_eq!(header(&echo, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&echo, "x-forwarded-prefix"), Some("/shop"));
    assert_eq!(header(&echo, "x_forwarded_for"), None, "{echo}");
}

/// Client-address and scheme headers under other names than the five the gateway sets:
/// Rack reads `X-Forwarded-Ssl`/`-Scheme`, gunicorn (trusting loopback by default)
/// `X-Forwarded-Protocol`/`-Ssl`, Spring `X-Forwarded-Ssl`, IIS `Front-End-Https`, Rails and
/// PHP apps `Client-IP` and the CDN headers.
const CLIENT_CLAIMS: [(&str, &str); 14] = [
    ("x-forwarded-ssl", "on"),
    ("x-forwarded-scheme", "https"),
    ("x-forwarded-protocol", "ssl"),
    ("x-forwarded-server", "shop.example"),
    ("x-forwarded", "for=203.0.113.7"),
    ("forwarded-for", "203.0.113.7"),
    ("front-end-https", "on"),
    ("x-url-scheme", "https"),
    ("client-ip", "203.0.113.7"),
    ("x_client_ip", "203.0.113.7"),
    ("true-client-ip", "203.0.113.7"),
    ("x-cluster-client-ip", "203.0.113.7"),
    ("cf-connecting-ip", "203.0.113.7"),
    ("fastly-client-ip", "203.0.113.7"),
];

#[tokio::test]
async fn client_address_and_scheme_headers_of_every_name_are_removed_unless_trusted() {
    let (world, gateway) = World::with_gateway("", "").await;
    let writer = world.bearer("orders:write");
    let mut sent = CLIENT_CLAIMS.to_vec();
    sent.push(("authorization", writer.as_str()));
    for path in ["/public", "/orders/1"] {
        let echo = gateway.call(Method::POST, path, &sent).await.json();
        let names = header_names(&echo);
        for (name, _) in CLIENT_CLAIMS {
            assert!(!names.iter().any(|n| n == name), "{path}: {name}: {echo}");
        }
    }
    // A trusted proxy's are kept, in their own spelling.
    let gateway = start(&world.config("trusted_proxies = [\"127.0.0.1\"]", "")).await;
    let echo = gateway
        .call(Method::GET, "/public", &CLIENT_CLAIMS)
        .await
        .json();
    assert_eq!(header(&echo, "x-forwarded-ssl"), Some("on"), "{echo}");
    assert_eq!(header(&echo, "true-client-ip"), Some("203.0.113.7"));
    assert_eq!(header(&echo, "x_client_ip"), None, "{echo}");
}

#[tokio::test]
async fn a_request_with_two_host_headers_is_refused() {
    let world = World::new().await;
    for top in ["", "preserve_host = true"] {
        let gateway = start(&world.config(top, "")).await;
        let two = [("host", "shop.example"), ("host", "admin.internal")];
        let got = gateway.call(Method::GET, "/public", &two).await;
        assert_gateway_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
        let description = got.json()["error_description"].as_str().unwrap().to_owned();
        assert!(description.contains("one Host"), "{top}: {description}");
        // One is forwarded as it came with preserve_host.
        let got = gateway.call(Method::GET, "/public", &two[..1]).await;
        assert_eq!(got.status, StatusCode::OK, "{top}");
    }
    world.assert_forwarded(2, "a refused request was forwarded");
}

#[tokio::test]
async fn method_override_headers_never_reach_the_upstream() {
    let (world, gateway) = World::with_gateway("", "").await;
    let writer = world.bearer("orders:write");
    // POST /orders is allowed with orders:write; DELETE is not routed at all.
    let overrides = [
        ("authorization", writer.as_str()),
        ("x-http-method-override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x_http_method_override", "DELETE"),
        ("X_Method_Override", "DELETE"),
        // The URL overrides of Symfony and IIS modules: /orders/1 routed, /admin served.
        ("X-Original-URL", "/admin"),
        ("x_rewrite_url", "/admin"),
    ];
    for path in ["/orders/1", "/public/form"] {
        let got = gateway.call(Method::POST, path, &overrides).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        let echo = got.json();
        assert_eq!(echo["method"], "POST");
        let names = header_names(&echo);
        assert!(
            !names.iter().any(|n| {
                let n = n.replace('_', "-");
                n.contains("method") || n.ends_with("-url")
            }),
            "{path}: {echo}"
        );
    }
}

#[tokio::test]
async fn a_route_accepts_only_its_audiences() {
    let world = World::new().await;
    let other_key = TestKey::generate(Algorithm::ES256, "o1");
    let other = KeyServer::start().await;
    other.set_keys(&[&other_key]);
    let tables = format!(
        "[[route]]\nprefix = \"/billing\"\nupstream = \"app\"\naudiences = [\"billing-api\"]\n\
         [[route]]\nprefix = \"/shop\"\nupstream = \"app\"\naudiences = [\"orders-api\"]\n\
         [[issuer]]\nid = \"{}\"\njwks_url = \"{}\"\naudiences = [\"billing-api\"]\n",
        other.issuer(),
        other.jwks_url()
    );
    let text = world.config("", &tables).replacen(
        &format!("audiences = [\"{AUD}\"]"),
        &format!("audiences = [\"{AUD}\", \"billing-api\"]"),
        1,
    );
    let gateway = start(&text).await;
    let token = |key: &TestKey, iss: &str, aud: Value| {
        let mut claims = keys::claims(iss, AUD);
        claims["aud"] = aud;
        bearer(&key.sign(&claims))
    };
    let issuer = world.keys.issuer();
    let billing = token(&world.key, &issuer, json!("billing-api"));
    let orders = token(&world.key, &issuer, json!("orders-api"));
    let both = token(&world.key, &issuer, json!(["billing-api", "orders-api"]));
    // The other issuer's token names orders-api, which is not one of that issuer's.
    let foreign = token(
        &other_key,
        &other.issuer(),
        json!(["billing-api", "orders-api"]),
    );
    for (path, token, status) in [
        ("/billing/1", &billing, StatusCode::OK),
        ("/shop/1", &billing, StatusCode::UNAUTHORIZED),
        ("/shop/1", &orders, StatusCode::OK),
        ("/billing/1", &orders, StatusCode::UNAUTHORIZED),
        ("/billing/1", &both, StatusCode::OK),
        ("/shop/1", &both, StatusCode::OK),
        ("/billing/1", &foreign, StatusCode::OK),
        ("/shop/1", &foreign, StatusCode::UNAUTHORIZED),
        // No route audiences: any of the issuer's.
        ("/any", &billing, StatusCode::OK),
        ("/any", &orders, StatusCode::OK),
    ] {
        let got = gateway.authorized(Method::GET, path, token).await;
        assert_eq!(got.status, status, "{path}: {:?}", got.body);
        if status == StatusCode::UNAUTHORIZED {
            let body = got.json();
            assert_eq!(body["code"], "AUTH_107", "{body}");
            let challenge = got.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
            let description = body["error_description"].as_str().unwrap();
            assert!(!description.contains("-api"), "{description}");
        }
    }
    world.assert_forwarded(7, "requests forwarded");
}

#[tokio::test]
async fn require_at_jwt_refuses_tokens_not_typed_at_jwt() {
    let world = World::new().await;
    let claims = keys::claims(&world.keys.issuer(), AUD);
    let typed = |typ: &str| {
        let header = json!({ "alg": "ES256", "typ": typ, "kid": "k1" });
        bearer(&world.key.sign_with_header(&header, &claims))
    };
    let (jwt, at_jwt) = (typed("JWT"), typed("at+jwt"));
    let lenient = world.gateway("", "").await;
    let got = lenient.authorized(Method::GET, "/any", &jwt).await;
    assert_eq!(got.status, StatusCode::OK);
    let strict = world.gateway("require_at_jwt = true", "").await;
    let got = strict.authorized(Method::GET, "/any", &jwt).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{:?}", got.body);
    let challenge = got.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let got = strict.authorized(Method::GET, "/any", &at_jwt).await;
    assert_eq!(got.status, StatusCode::OK);
    world.assert_forwarded(2, "requests forwarded");
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/// Peak resident memory of this process (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_streams_through_without_buffering() {
    let (world, gateway) = World::with_gateway("", "").await;
    let state = world.upstream.state.clone();
    let before = peak_rss();
    // Half-way, the client stops sending until the upstream has received bytes: a gateway
    // that buffered the body would never forward any, and the body would fail.
    let body = halting_100_mb(state, |s| &s.upload_started, "the upstream");
    let request = Request::post("/upload").body(body).unwrap();
    let got = send(gateway.addr, request).await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(got.json()["bytes"], 100 * MB);
    let growth = peak_rss().saturating_sub(before);
    assert!(growth < 20 * MB, "peak memory grew by {} MB", growth / MB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_download_streams_through_without_buffering() {
    let (world, gateway) = World::with_gateway("", "").await;
    let before = peak_rss();
    let uri = format!("http://{}/download", gateway.addr);
    let response = within(
        "the response head",
        client().request(Request::get(uri).body(empty()).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        (100 * MB).to_string()
    );
    let mut body = response.into_body();
    let mut received = 0u64;
    within("the 100 MB body", async {
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("the body streams to its end");
            if let Some(data) = frame.data_ref() {
                if received == 0 {
                    world.upstream.state.download_seen.notify_one();
                }
                received += data.len() as u64;
            }
        }
    })
    .await;
    assert_eq!(received, 100 * MB);
    let growth = peak_rss().saturating_sub(before);
    assert!(growth < 20 * MB, "peak memory grew by {} MB", growth / MB);
}

// ---------------------------------------------------------------------------------------------
// Upstream failures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_upstream_that_is_down_is_502() {
    let (_world, gateway) = World::with_gateway("", "").await;
    let got = gateway.get("/down/x").await;
    assert_gateway_error(&got, StatusCode::BAD_GATEWAY, "bad_gateway");
    let description = got.json()["error_description"].as_str().unwrap().to_owned();
    assert!(description.contains("`down`"), "{description}");
    assert!(
        !description.contains("127.0.0.1"),
        "addresses stay inside: {description}"
    );
}

#[tokio::test]
async fn a_slow_upstream_is_504() {
    let world = World::new().await;
    let gateway = start(&world.config("", "[timeouts]\nrequest = \"300ms\"\n")).await;
    let got = gateway.get("/slow").await;
    assert_gateway_error(&got, StatusCode::GATEWAY_TIMEOUT, "gateway_timeout");
    // It did reach the upstream, which never answered.
    world.assert_forwarded(1, "requests forwarded");
    within(
        "the upstream's arrival",
        world.upstream.state.arrived.notified(),
    )
    .await;
    world.upstream.state.release.notify_one();
}

/// An upstream answering `ok` that counts the connections it accepts; without `keep_alive`
/// it closes each after one answer (`Connection: close`).
async fn counting_upstream(
    keep_alive: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let service = hyper::service::service_fn(|_: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, accepted, task)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_replaced_once_closed() {
    let keys = KeyServer::start().await;
    let route = "[[route]]\nprefix = \"/public\"\nupstream = \"app\"\npublic = true\n";
    // One connection for requests one after the other; a new one for each when the upstream
    // closes them.
    for (keep_alive, connections) in [(true, 1), (false, 5)] {
        let (upstream, accepted, task) = counting_upstream(keep_alive).await;
        let gateway = start(&issuer_config(&keys, upstream, "", route)).await;
        for request in 0..5 {
            let got = gateway.get("/public/x").await;
            assert_eq!(got.status, StatusCode::OK, "request {request}");
            assert_eq!(got.body, "ok");
        }
        let accepted = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(accepted, connections, "keep-alive {keep_alive}");
        task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Health and shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn readiness_waits_for_the_key_sets_liveness_does_not() {
    let world = World::new().await;
    world.keys.set_behavior(Behavior::Status(500));
    let gateway = world.gateway("", "").await;
    // The loader tried (and failed) at least once: not ready.
    wait_until("a key fetch", || async { world.keys.jwks_hits() > 0 }).await;
    let live = gateway.get("/healthz").await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.json()["status"], "ok");
    let ready = gateway.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["status"], "not_ready");
    // Once the key server answers, readiness follows without any request needing a token.
    world.keys.set_behavior(Behavior::Normal);
    wait_until("readiness", || async {
        gateway.get("/readyz").await.status == StatusCode::OK
    })
    .await;
    let post = gateway.call(Method::POST, "/healthz", &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    world.assert_forwarded(0, "requests forwarded");
}

#[tokio::test]
async fn shutdown_refuses_new_connections_and_finishes_requests_in_flight() {
    let world = World::new().await;
    let mut gateway = world.gateway("", "").await;
    let addr = gateway.addr;
    let in_flight = tokio::spawn(async move { call(addr, Method::GET, "/hold", &[]).await });
    within(
        "the request at the upstream",
        world.upstream.state.arrived.notified(),
    )
    .await;
    gateway.shutdown.take().unwrap().send(()).unwrap();
    wait_until("new connections refused", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        !gateway.task.is_finished(),
        "the gateway stopped with a request in flight"
    );
    world.upstream.state.release.notify_one();
    let answer = within("the in-flight answer", in_flight).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "released");
    within("the gateway to stop", &mut gateway.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_drain_timeout_bounds_the_shutdown() {
    let world = World::new().await;
    let mut gateway = start(&world.config("", "[timeouts]\ndrain = \"200ms\"\n")).await;
    let addr = gateway.addr;
    let in_flight = tokio::spawn(async move {
        let request = Request::get(format!("http://{addr}/hold"))
            .body(empty())
            .unwrap();
        client().request(request).await
    });
    within(
        "the request at the upstream",
        world.upstream.state.arrived.notified(),
    )
    .await;
    gateway.shutdown.take().unwrap().send(()).unwrap();
    // The upstream never answers: the gateway stops anyway, cutting the connection.
    within("the gateway to stop", &mut gateway.task)
        .await
        .unwrap()
        .unwrap();
    let cut = within("the cut request", in_flight).await.unwrap();
    assert!(
        cut.is_err(),
        "the held request was answered: {:?}",
        cut.map(|r| r.status())
    );
}

// ---------------------------------------------------------------------------------------------
// Access log and configuration
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn one_access_line_per_request_with_subject_and_never_the_token() {
    // A global subscriber (a scoped one misses events whose callsites other test threads
    // registered first); the lines of this test are told apart by their paths.
    static CAPTURED: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    let captured = CAPTURED
        .get_or_init(|| {
            let captured = Logs::default();
            let writer = captured.clone();
            tracing_subscriber::fmt()
                .with_env_filter("s2s_gateway::access=info")
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            captured
        })
        .clone();
    let (world, gateway) = World::with_gateway("", "").await;
    let token = world.token("orders:read");
    let ok = gateway
        .authorized(Method::GET, "/orders/log-7?secret=query", &bearer(&token))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let refused = gateway
        .authorized(Method::POST, "/orders/log-8", &bearer(&token))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    gateway.get("/nowhere/log-9").await;
    let log = captured.text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("/log-")).collect();
    assert_eq!(lines.len(), 3, "{log}");
    for (line, want) in lines.iter().zip([
        [
            "method=GET",
            "path=/orders/log-7",
            "route=/orders",
            "status=200",
            "subject=svc-orders",
        ],
        [
            "method=POST",
            "path=/orders/log-8",
            "route=/orders",
            "status=403",
            "subject=svc-orders",
        ],
        [
            "method=GET",
            "path=/nowhere/log-9",
            "route=-",
            "status=404",
            "subject=-",
        ],
    ]) {
        for field in want {
            assert!(line.contains(field), "{field} missing: {line}");
        }
        assert!(line.contains("latency_us="), "{line}");
    }
    assert!(!log.contains(&token), "the token was logged: {log}");
    assert!(!log.contains(token.rsplit('.').next().unwrap()), "{log}");
    assert!(!log.contains("secret=query"), "the query was logged: {log}");
}

#[test]
fn configuration_errors_are_all_reported_with_their_locations() {
    // Beside the binary's test configurations, in s2s-gateway/tests/configs.
    let text = include_str!("../crates/s2s-gateway/tests/configs/errors.toml");
    let errors = Config::from_toml_str(text).unwrap_err();
    let found: Vec<(usize, usize)> = errors
        .errors()
        .iter()
        .map(|e| {
            let l = e.location().expect("located");
            (l.line, l.column)
        })
        .collect();
    assert_eq!(
        found,
        vec![(1, 10), (4, 6), (8, 7), (12, 12), (16, 11)],
        "{errors}"
    );
    let rendered = errors.render("gateway.toml");
    assert!(
        rendered.contains("gateway.toml:12:12: error: unknown upstream `ap`; known: `app`"),
        "{rendered}"
    );
    assert!(
        rendered.contains("12 | upstream = \"ap\"\n   |            ^^^^"),
        "{rendered}"
    );
    // A syntax error stops the parse, located too.
    let errors = Config::from_toml_str("[[route]]\nprefix = /orders\n").unwrap_err();
    assert_eq!(errors.errors().len(), 1);
    assert_eq!(
        errors.errors()[0].location().map(|l| l.line),
        Some(2),
        "{errors}"
    );
}
