//! `s2s-issuer` speaks the seed's Auth Service API (`shared/seeds/001_*`), field by field, over
//! real HTTP on 127.0.0.1: the service-account resource under `/auth/admin/service-accounts`,
//! the token endpoint's JSON and form dialects with the seed's error codes, everything served
//! under the issuer URL's path (discovery included), a configurable `iss`, the JWKS shape, and
//! accounts past their `expiresAt`.
//!
//! Time moves through an injected clock, never by sleeping.

mod seed_support;

use reqwest::{Method, StatusCode};
use s2s_auth::Verifier;
use s2s_issuer::config::Bucket;
use seed_support::{
    BASE_PATH, ManualClock, SEED_AUDIENCE, SEED_ISS, SeedAnswer as _, SeedIssuer, config,
    get_bearer, seed_account_request, workflow_service,
};
use serde_json::{Value, json};

const CREATED_MESSAGE: &str =
    "Service account created successfully. Save the client secret as it won't be shown again.";

fn is_service_account_id(id: &str) -> bool {
    id.strip_prefix("svc_")
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        && !id.bytes().any(|b| b.is_ascii_uppercase())
}

/// `2023-09-01T10:15:00Z`: an RFC 3339 UTC date-time in whole seconds.
fn is_rfc3339_utc(value: &Value) -> bool {
    let Some(s) = value.as_str() else {
        return false;
    };
    let b = s.as_bytes();
    b.len() == 20
        && s.ends_with('Z')
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19].contains(&i) || c.is_ascii_digit())
}

fn keys(body: &Value) -> Vec<String> {
    let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// The account answer carries every field of the seed's, spelled as it spells them, at the
/// seed's path; the rest of the resource (list, get, patch, rotate, disable, enable, delete)
/// lives under `/admin/service-accounts/{serviceAccountId}`; the former `/admin/accounts` paths
/// still work, marked deprecated.
#[tokio::test]
async fn service_accounts_as_the_seed_shows_them() {
    let server = SeedIssuer::seed().await;
    let before = server.issuer.accounts().get("svc_0000000000000000").await;
    assert!(matches!(before, Ok(None)));

    let created = server.create(seed_account_request()).await;
    let body = &created.body;
    // The seed's fields, each with the seed's type.
    for field in [
        "serviceAccountId",
        "name",
        "status",
        "clientId",
        "clientSecret",
        "scopes",
        "createdAt",
        "expiresAt",
        "message",
    ] {
        assert!(body.get(field).is_some(), "no `{field}` in {body}");
    }
    let svc = body["serviceAccountId"].as_str().unwrap().to_owned();
    assert!(is_service_account_id(&svc), "{svc}");
    assert_eq!(body["name"], "validation-service");
    assert_eq!(body["status"], "ACTIVE");
    assert_eq!(body["scopes"], json!(["workflow:read", "validation:write"]));
    assert_eq!(body["allowedIps"], json!(["10.0.1.0/24", "10.0.2.0/24"]));
    assert!(is_rfc3339_utc(&body["createdAt"]), "{body}");
    assert_eq!(body["expiresAt"], Value::Null);
    assert_eq!(body["message"], CREATED_MESSAGE);
    let client_id = body["clientId"].as_str().unwrap().to_owned();
    let secret = body["clientSecret"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        format!("{BASE_PATH}/admin/service-accounts/{svc}")
    );

    // Get by serviceAccountId: the same account, without the secret or the message.
    let got = server.admin_get(&format!("/service-accounts/{svc}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let mut expected = body.clone();
    let object = expected.as_object_mut().unwrap();
    object.remove("clientSecret");
    object.remove("message");
    assert_eq!(got.body, expected);
    assert!(!got.body.to_string().contains(&secret));

    // The list is paginated.
    server.create(json!({"name": "second"})).await;
    let page = server.admin_get("/service-accounts?limit=1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["accounts"][0]["serviceAccountId"], svc.as_str());
    let cursor = page.body["nextCursor"].as_str().unwrap().to_owned();
    let next = format!("/service-accounts?limit=1&cursor={cursor}");
    let page = server.admin_get(&next).await;
    assert_eq!(page.body["accounts"][0]["name"], "second");
    assert_eq!(page.body["nextCursor"], Value::Null);

    // PATCH: an expiry with an offset comes back in UTC; `null` clears it.
    let account = format!("/service-accounts/{svc}");
    let patch = |body: Value| server.admin(Method::PATCH, &account, Some(body));
    let patched =
        patch(json!({"expiresAt": "2099-01-01T02:00:00+02:00", "description": "d"})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["expiresAt"], "2099-01-01T00:00:00Z");
    assert_eq!(patched.body["description"], "d");
    assert!(is_rfc3339_utc(&patched.body["updatedAt"]));
    let kept = patch(json!({"description": "d"})).await;
    assert_eq!(
        kept.body["expiresAt"], "2099-01-01T00:00:00Z",
        "absent keeps it"
    );
    let patched = patch(json!({"expiresAt": null})).await;
    assert_eq!(patched.body["expiresAt"], Value::Null);
    assert_eq!(patched.body["description"], "d", "other fields kept");
    let bad = patch(json!({"expiresAt": "tomorrow"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body["error_description"]
            .as_str()
            .unwrap()
            .contains("RFC 3339"),
        "{}",
        bad.body
    );

    // Disable and enable.
    let disabled = server.account_action(&svc, "disable").await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert_eq!(disabled.body["status"], "DISABLED");
    let enabled = server.account_action(&svc, "enable").await;
    assert_eq!(enabled.body["status"], "ACTIVE");

    // Secret rotation: a new secret, shown once, with the seed's reminder.
    let rotate = format!("/service-accounts/{svc}/rotate-secret");
    let rotated = server.admin(Method::POST, &rotate, None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = rotated.body["clientSecret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert!(
        rotated.body["message"]
            .as_str()
            .unwrap()
            .contains("Save the client secret as it won't be shown again."),
        "{}",
        rotated.body
    );
    assert!(is_rfc3339_utc(&rotated.body["secretRotatedAt"]));

    // The former paths: the same resource by client id, marked deprecated.
    let legacy = server.admin_get(&format!("/accounts/{client_id}")).await;
    assert_eq!(legacy.status, StatusCode::OK, "{}", legacy.body);
    assert_eq!(legacy.body["serviceAccountId"], svc.as_str());
    assert_eq!(legacy.header("deprecation"), "true");
    assert_eq!(
        legacy.header("link"),
        format!("<{BASE_PATH}/admin/service-accounts/{client_id}>; rel=\"successor-version\"")
    );
    let current = server
        .admin_get(&format!("/service-accounts/{client_id}"))
        .await;
    assert_eq!(current.body["serviceAccountId"], svc.as_str());
    assert_eq!(current.header("deprecation"), "");

    // Delete.
    let deleted = server
        .admin(Method::DELETE, &format!("/service-accounts/{svc}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = server.admin_get(&format!("/service-accounts/{svc}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
    assert!(
        gone.body["error_description"]
            .as_str()
            .unwrap()
            .contains(&svc)
    );

    // A service account id is no credential: the token endpoint knows only client ids.
    let created = server.create(json!({"name": "third"})).await;
    let third_svc = created.body["serviceAccountId"].as_str().unwrap();
    let third_secret = created.body["clientSecret"].as_str().unwrap();
    server
        .token_json(json!({
            "grantType": "client_credentials", "clientId": third_svc, "clientSecret": third_secret
        }))
        .await
        .assert_error(401, "invalid_client", Some("AUTH_101"));
}

/// An account with an `expiresAt` in the past is refused at creation; one that reaches it gets
/// no more tokens (401 `unauthorized_client`, AUTH_103, in both dialects) until the expiry is
/// moved or cleared.
#[tokio::test]
async fn accounts_past_expires_at_get_no_tokens() {
    let clock = ManualClock::new();
    let server = SeedIssuer::start(config(BASE_PATH, |c| c.clock = clock.clock())).await;
    let past = server
        .admin(
            Method::POST,
            "/service-accounts",
            Some(json!({"name": "late", "expiresAt": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(past.status, StatusCode::BAD_REQUEST, "{}", past.body);
    assert_eq!(past.body["field"], "expiresAt");

    let in_a_minute = time_in(&clock, 60);
    let created = server
        .create(json!({"name": "temp", "scopes": ["a"], "expiresAt": in_a_minute}))
        .await;
    assert_eq!(created.body["expiresAt"], in_a_minute.as_str());
    let svc = created.body["serviceAccountId"].as_str().unwrap();
    let id = created.body["clientId"].as_str().unwrap();
    let secret = created.body["clientSecret"].as_str().unwrap();
    let json_request =
        json!({"grantType": "client_credentials", "clientId": id, "clientSecret": secret});
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
    ];
    assert_eq!(server.token_json(json_request.clone()).await.status, 200);

    clock.advance(60);
    server.token_json(json_request.clone()).await.assert_error(
        401,
        "unauthorized_client",
        Some("AUTH_103"),
    );
    let refused = server.token_form(&form).await;
    refused.assert_error(401, "unauthorized_client", Some("AUTH_103"));
    assert!(
        refused.body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    let cleared = server
        .admin(
            Method::PATCH,
            &format!("/service-accounts/{svc}"),
            Some(json!({"expiresAt": null})),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert_eq!(server.token_form(&form).await.status, 200);
}

/// RFC 3339 for the clock's `now + secs`, computed here (civil-from-days) rather than by the
/// issuer's own formatting, so the test checks it.
fn time_in(clock: &ManualClock, secs: u64) -> String {
    let t = clock.unix_now() + secs;
    let (days, rem) = (t / 86_400, t % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The token endpoint answers each dialect in its own words, and refuses in both with
/// `error`, `error_description` and the seed's code at the seed's status.
#[tokio::test]
async fn the_token_endpoint_speaks_both_dialects() {
    let server = SeedIssuer::start(config(BASE_PATH, |c| {
        c.default_audience = Some(SEED_AUDIENCE.into());
        c.rate_limit.per_client = Some(Bucket {
            burst: 30,
            per_second: 1,
        });
    }))
    .await;
    let created = server
        .create(json!({"name": "caller", "scopes": ["workflow:read", "validation:write"]}))
        .await;
    let id = created.body["clientId"].as_str().unwrap().to_owned();
    let secret = created.body["clientSecret"].as_str().unwrap().to_owned();

    // The seed's request and answer.
    let answer = server
        .token_json(json!({
            "grantType": "client_credentials", "clientId": id, "clientSecret": secret,
            "scope": "workflow:read validation:write"
        }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        keys(&answer.body),
        ["accessToken", "expiresIn", "scope", "tokenType"]
    );
    assert_eq!(answer.body["expiresIn"], 1800, "the seed's lifetime");
    assert_eq!(answer.body["tokenType"], "Bearer");
    assert_eq!(answer.body["scope"], "workflow:read validation:write");
    assert_eq!(answer.header("cache-control"), "no-store");
    assert_eq!(
        answer.body["accessToken"]
            .as_str()
            .unwrap()
            .split('.')
            .count(),
        3
    );

    // RFC 6749's request and answer.
    let form = |extra: &[(&'static str, &'static str)]| {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", id.clone()),
            ("client_secret", secret.clone()),
        ];
        for &(k, v) in extra {
            match form.iter_mut().find(|(name, _)| *name == k) {
                Some(field) => field.1 = v.to_owned(),
                None => form.push((k, v.to_owned())),
            }
        }
        form
    };
    let send_form = |form: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server.token_form(&pairs).await
        }
    };
    let answer = send_form(form(&[("scope", "workflow:read")])).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        keys(&answer.body),
        ["access_token", "expires_in", "scope", "token_type"]
    );
    assert_eq!(answer.body["expires_in"], 1800);
    assert_eq!(answer.body["token_type"], "Bearer");

    // Errors, the same in both dialects.
    let json_with = |patch: Value| {
        let mut body =
            json!({"grantType": "client_credentials", "clientId": id, "clientSecret": secret});
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    // (case, JSON members and form fields over the good request's, status, error, code)
    #[rustfmt::skip]
    let cases = [
        ("a wrong secret", ("clientSecret", "client_secret", "wrong"), 401, "invalid_client", "AUTH_101"),
        ("a scope not granted", ("scope", "scope", "admin:all"), 400, "invalid_scope", "AUTH_102"),
        ("an audience not allowed", ("audience", "audience", "elsewhere"), 400, "invalid_target", "AUTH_107"),
    ];
    for (case, (member, field, value), status, error, code) in cases {
        let answer = server.token_json(json_with(json!({ member: value }))).await;
        answer.assert_oauth_error(&format!("JSON, {case}"), status, error, Some(code));
        let answer = send_form(form(&[(field, value)])).await;
        answer.assert_oauth_error(&format!("form, {case}"), status, error, Some(code));
    }

    let fenced = server
        .create(json!({"name": "fenced", "allowedIps": ["10.0.1.0/24"]}))
        .await;
    let (fid, fsecret) = (
        fenced.body["clientId"].as_str().unwrap(),
        fenced.body["clientSecret"].as_str().unwrap(),
    );
    server
        .token_json(
            json!({"grantType": "client_credentials", "clientId": fid, "clientSecret": fsecret}),
        )
        .await
        .assert_error(403, "unauthorized_client", Some("AUTH_104"));
    server
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", fid),
            ("client_secret", fsecret),
        ])
        .await
        .assert_error(403, "unauthorized_client", Some("AUTH_104"));

    let svc = created.body["serviceAccountId"].as_str().unwrap();
    server.account_action(svc, "disable").await;
    server.token_json(json_with(json!({}))).await.assert_error(
        401,
        "unauthorized_client",
        Some("AUTH_103"),
    );
    send_form(form(&[]))
        .await
        .assert_error(401, "unauthorized_client", Some("AUTH_103"));

    server
        .token_json(json_with(json!({"grantType": "password"})))
        .await
        .assert_error(400, "unsupported_grant_type", None);

    // Rate limited: 429 with Retry-After and AUTH_106, in both dialects (the bucket of 30
    // per client id is spent by now or within these requests).
    let mut json_429 = None;
    let mut form_429 = None;
    for _ in 0..40 {
        if json_429.is_none() {
            let a = server.token_json(json_with(json!({}))).await;
            if a.status == StatusCode::TOO_MANY_REQUESTS {
                json_429 = Some(a);
            }
        }
        if form_429.is_none() {
            let a = send_form(form(&[])).await;
            if a.status == StatusCode::TOO_MANY_REQUESTS {
                form_429 = Some(a);
            }
        }
    }
    for answer in [json_429, form_429] {
        let answer = answer.expect("the per-client limit is reached");
        answer.assert_error(429, "rate_limited", Some("AUTH_106"));
        assert!(answer.header("retry-after").parse::<u64>().unwrap() >= 1);
    }
}

/// With the issuer URL `http://127.0.0.1:PORT/auth` every endpoint lives under `/auth`; the
/// metadata is at `/auth/.well-known/openid-configuration` and, per RFC 8414 §3, at
/// `/.well-known/oauth-authorization-server/auth`, naming `/auth` endpoints; s2s-auth's
/// discovery finds it and verifies the tokens.
#[tokio::test]
async fn everything_is_served_under_the_issuer_path() {
    let server = SeedIssuer::start(config(BASE_PATH, |c| {
        c.default_audience = Some(SEED_AUDIENCE.into());
    }))
    .await;
    let origin = &server.origin;
    let url = &server.url;
    assert_eq!(*url, format!("{origin}/auth"));

    for metadata_url in [
        format!("{url}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server/auth"),
    ] {
        let metadata = server.get(&metadata_url).await;
        assert_eq!(metadata.status, StatusCode::OK, "{metadata_url}");
        assert_eq!(metadata.body["issuer"], url.as_str());
        assert_eq!(metadata.body["token_endpoint"], format!("{url}/token"));
        assert_eq!(
            metadata.body["jwks_uri"],
            format!("{url}/.well-known/jwks.json")
        );
    }
    assert_eq!(server.get(&server.jwks_url()).await.status, StatusCode::OK);
    for outside in [
        "/token",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/admin/service-accounts",
    ] {
        let answer = server.get(&format!("{origin}{outside}")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{outside}");
    }

    let created = server.create(json!({"name": "c", "scopes": ["s"]})).await;
    let token = server
        .token_json(json!({
            "grantType": "client_credentials",
            "clientId": created.body["clientId"], "clientSecret": created.body["clientSecret"]
        }))
        .await;
    let token = token.body["accessToken"].as_str().unwrap();
    let verifier = Verifier::builder()
        .issuer(s2s_auth::Issuer::discover(url.as_str()))
        .audience(SEED_AUDIENCE)
        .build()
        .unwrap();
    let verified = verifier
        .verify(token)
        .await
        .expect("verified via discovery");
    assert_eq!(verified.standard().iss, url.as_str());
}

/// `token_issuer = "auth-service"`: the tokens' `iss` is the plain name the seed's validators
/// check, the metadata still names the issuer URL (RFC 8414 §2), and a verifier configured
/// with that `iss` and the JWKS URL accepts the tokens; one expecting the URL refuses them.
#[tokio::test]
async fn the_iss_claim_may_be_a_plain_name() {
    let server = SeedIssuer::seed().await;
    assert_eq!(server.issuer.token_issuer(), SEED_ISS);
    let metadata = server
        .get(&format!("{}/.well-known/openid-configuration", server.url))
        .await;
    assert_eq!(metadata.body["issuer"], server.url.as_str());

    let created = server
        .create(json!({"name": "named", "scopes": ["workflow:read"]}))
        .await;
    let answer = server
        .token_json(json!({
            "grantType": "client_credentials",
            "clientId": created.body["clientId"], "clientSecret": created.body["clientSecret"]
        }))
        .await;
    let token = answer.body["accessToken"].as_str().unwrap().to_owned();

    let (service, _task) = workflow_service(SEED_ISS, &server.jwks_url()).await;
    let workflows = format!("{service}/workflow-service/workflows/active");
    let ok = get_bearer(&server.http, &workflows, &token).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["caller"], created.body["clientId"]);
    assert_eq!(ok.body["count"], 2);

    let (strict, _task) = workflow_service(&server.url, &server.jwks_url()).await;
    let strict_workflows = format!("{strict}/workflow-service/workflows/active");
    let refused = get_bearer(&server.http, &strict_workflows, &token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
}

/// The JWKS is the seed's: EC P-256 keys with `kid`, `x`, `y`, `use: "sig"`, `alg: "ES256"`,
/// two of them during a rotation.
#[tokio::test]
async fn the_jwks_has_the_seeds_shape() {
    let server = SeedIssuer::seed().await;
    let check = |jwks: &Value, count: usize| {
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), count, "{jwks}");
        for key in keys {
            assert_eq!(key["kty"], "EC", "{key}");
            assert_eq!(key["crv"], "P-256", "{key}");
            assert_eq!(key["use"], "sig", "{key}");
            assert_eq!(key["alg"], "ES256", "{key}");
            for field in ["kid", "x", "y"] {
                assert!(key[field].as_str().is_some_and(|v| !v.is_empty()), "{key}");
            }
            assert!(key.get("d").is_none(), "{key}");
        }
    };
    check(&server.get(&server.jwks_url()).await.body, 1);
    server.issuer.rotate_signing_key().await.unwrap();
    let jwks = server.get(&server.jwks_url()).await.body;
    check(&jwks, 2);
    assert_ne!(jwks["keys"][0]["kid"], jwks["keys"][1]["kid"]);
}
