//! What the token endpoint answers, over real HTTP on 127.0.0.1 against a [`TokenServer`] the
//! tests control: OAuth errors classified with their stable codes and what to fix, HTML error
//! pages, rate limiting with `Retry-After`, and the token response's `token_type` and
//! `expires_in`.
//!
//! [`TokenServer`]: s2s_tests::token_server::TokenServer

use std::time::Duration;

use axum::http::StatusCode;
use jsonwebtoken::Algorithm;
use s2s_auth::{Code, ErrorKind, token::TokenSource};
use s2s_tests::{
    keys::TestKey,
    outbound::{CLIENT_ID, SECRET, grant, manager, token_server},
    token_server::{ExpiresIn, Reply, TokenFormat},
};

// ---------------------------------------------------------------------------------------------
// Errors of the token endpoint
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_client_is_a_permanent_error_that_says_what_to_fix() {
    let server = token_server().await;
    server.set_reply(Reply::OAuth {
        status: 401,
        error: "invalid_client".into(),
        description: Some("client authentication failed".into()),
        code: None,
    });
    let tokens = manager(&server);
    let err = tokens.token().await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.is_transient());
    assert_eq!(err.code(), Some(Code::InvalidClient));
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    let text = err.to_string();
    assert!(text.starts_with("AUTH_101: "), "{text}");
    for what in [
        "invalid_client",
        "client authentication failed",
        CLIENT_ID,
        "secret",
    ] {
        assert!(text.contains(what), "`{what}` missing from: {text}");
    }
    assert!(!text.contains(SECRET), "{text}");
    assert_eq!(server.requests(), 1);
    assert_eq!(tokens.metrics().failures, 1);
}

#[tokio::test]
async fn oauth_errors_are_classified_with_their_stable_codes() {
    let server = token_server().await;
    let cases = [
        (
            Reply::oauth("invalid_scope"),
            ErrorKind::Config,
            Some(Code::InsufficientScope),
            "scope",
        ),
        (
            Reply::OAuth {
                status: 401,
                error: "unauthorized_client".into(),
                description: Some("service account disabled".into()),
                code: Some("AUTH_103".into()),
            },
            ErrorKind::Config,
            Some(Code::AccountDisabled),
            "service account disabled",
        ),
        (
            Reply::OAuth {
                status: 403,
                error: "unauthorized_client".into(),
                description: None,
                code: Some("AUTH_104".into()),
            },
            ErrorKind::Config,
            Some(Code::IpNotAllowed),
            "unauthorized_client",
        ),
        (
            Reply::oauth("unsupported_grant_type"),
            ErrorKind::Config,
            None,
            "unsupported_grant_type",
        ),
        (
            Reply::OAuth {
                status: 503,
                error: "temporarily_unavailable".into(),
                description: None,
                code: None,
            },
            ErrorKind::Transient,
            None,
            "temporarily_unavailable",
        ),
    ];
    for (reply, kind, code, says) in cases {
        server.set_reply(reply.clone());
        let err = grant(&server).fetch().await.expect_err("refused");
        assert_eq!(err.kind(), kind, "{reply:?}: {err}");
        assert_eq!(err.code(), code, "{reply:?}: {err}");
        assert!(err.to_string().contains(says), "{reply:?}: {err}");
    }
}

#[tokio::test]
async fn an_html_error_page_gives_the_status_and_a_short_excerpt() {
    let server = token_server().await;
    server.set_reply(Reply::Html(500));
    let tokens = manager(&server);
    let err = tokens.token().await.expect_err("500");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    let message = err.message();
    assert!(message.contains("500 Internal Server Error"), "{message}");
    // The excerpt: the page's text, not its markup, and short.
    assert!(
        message.matches("Internal Server Error").count() >= 2,
        "no excerpt of the page: {message}"
    );
    assert!(
        !message.contains('<') && !message.contains('>'),
        "{message}"
    );
    assert!(
        message.chars().count() < 300,
        "{} chars: {message}",
        message.len()
    );
    assert!(!message.contains("padding padding padding"), "{message}");

    server.set_reply(Reply::Status(503));
    let err = grant(&server).fetch().await.expect_err("503");
    assert!(err.is_transient());
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(err.message().contains("injected failure"), "{err}");

    // A client error that is not OAuth JSON is not worth retrying.
    server.set_reply(Reply::Html(404));
    let err = grant(&server).fetch().await.expect_err("404");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("404 Not Found"), "{err}");
}

#[tokio::test]
async fn rate_limiting_is_transient_with_retry_after() {
    let server = token_server().await;
    server.set_reply(Reply::RateLimited { retry_after: 7 });
    let err = grant(&server).fetch().await.expect_err("429");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.message().contains("429"), "{err}");

    server.set_reply(Reply::OAuth {
        status: 429,
        error: "rate_limited".into(),
        description: None,
        code: Some("AUTH_106".into()),
    });
    let err = grant(&server).fetch().await.expect_err("429");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.code(), Some(Code::RateLimited));
}

// ---------------------------------------------------------------------------------------------
// The token response
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_type_is_case_insensitive_and_only_bearer_is_accepted() {
    let server = token_server().await;
    for token_type in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        server.set_token_type(token_type);
        let token = manager(&server)
            .token()
            .await
            .unwrap_or_else(|e| panic!("token_type `{token_type}` refused: {e}"));
        assert_eq!(token.as_str(), server.latest_token().unwrap());
    }
    for token_type in ["DPoP", "mac", "N_A"] {
        server.set_token_type(token_type);
        let tokens = manager(&server);
        let err = tokens
            .token()
            .await
            .expect_err("only Bearer tokens can be sent");
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains(token_type), "{err}");
        assert!(err.message().contains("Bearer"), "{err}");
        assert!(!err.to_string().contains(&server.latest_token().unwrap()));
    }
}

#[tokio::test]
async fn expires_in_as_number_string_or_from_the_jwt_exp() {
    let server = token_server().await;
    let cases = [
        (
            ExpiresIn::Seconds(3600),
            TokenFormat::Opaque,
            Some(3600..=3600),
        ),
        (
            ExpiresIn::Text("3600".into()),
            TokenFormat::Opaque,
            Some(3600..=3600),
        ),
        (ExpiresIn::Omitted, TokenFormat::Opaque, None),
        (
            ExpiresIn::Omitted,
            TokenFormat::Jwt {
                key: TestKey::generate(Algorithm::ES256, "as-1"),
                lifetime: Duration::from_secs(300),
            },
            Some(298..=300),
        ),
        // `expires_in`, when given, wins over the JWT's `exp`.
        (
            ExpiresIn::Seconds(120),
            TokenFormat::Jwt {
                key: TestKey::generate(Algorithm::ES256, "as-1"),
                lifetime: Duration::from_secs(300),
            },
            Some(120..=120),
        ),
    ];
    for (expires_in, format, expected) in cases {
        server.set_expires_in(expires_in.clone());
        server.set_format(format.clone());
        let response = grant(&server).fetch().await.expect("token");
        let secs = response.expires_in.map(|d| d.as_secs());
        match expected {
            Some(range) => assert!(
                secs.is_some_and(|s| range.contains(&s)),
                "{expires_in:?} {format:?}: {secs:?}"
            ),
            None => assert_eq!(secs, None, "{expires_in:?} {format:?}"),
        }
    }
}
