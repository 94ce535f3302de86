//! The admin API's `Authorization: Bearer` check, read with s2s-auth's RFC 6750 parser: what it
//! accepts, and the one answer (401 `unauthorized` with a Bearer challenge) for everything else.

use s2s_issuer::IssuerConfig;

const ADMIN: &str = "admin-auth-test-token-0123456789";

#[tokio::test]
async fn only_one_well_formed_bearer_admin_token_opens_the_admin_api() {
    let mut config = IssuerConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.db = ":memory:".into();
    config.admin_token = Some(ADMIN.to_owned().into());
    let running = s2s_issuer::spawn(config).await.unwrap();
    let url = format!("{}/admin/service-accounts", running.url);
    let http = reqwest::Client::new();
    let status_with = |values: Vec<String>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let mut request = http.get(url);
            for value in values {
                request = request.header("authorization", value);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let cache = response.headers()["cache-control"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, challenge, cache, body)
        }
    };
    for accepted in [format!("Bearer {ADMIN}"), format!("bearer   {ADMIN}")] {
        let (status, _, cache, _) = status_with(vec![accepted.clone()]).await;
        assert_eq!(status, 200, "{accepted}");
        assert_eq!(cache, "no-store");
    }
    let refused = [
        vec![],
        vec![format!("Bearer\t{ADMIN}")],
        vec![format!("Bearer {ADMIN} x")],
        vec![format!("Basic {ADMIN}")],
        vec![format!("Bearer {ADMIN}x")],
        vec!["Bearer ".to_owned()],
        vec![ADMIN.to_owned()],
        vec![format!("Bearer {ADMIN}"), format!("Bearer {ADMIN}")],
    ];
    for values in refused {
        let (status, challenge, cache, body) = status_with(values.clone()).await;
        assert_eq!(status, 401, "{values:?}");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer realm=\"s2s-issuer-admin\""),
            "{values:?}"
        );
        assert_eq!(cache, "no-store");
        assert_eq!(
            body,
            serde_json::json!({
                "error": "unauthorized",
                "error_description": "a valid admin bearer token is required",
            }),
            "{values:?}"
        );
    }
    running.shutdown().await;
}
