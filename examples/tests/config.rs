//! One binary against several authorization servers by configuration alone: the examples'
//! setup code (what `protected_service` and `caller` run) reads a TOML file, `S2S_*` variables
//! or flags, against two real, in-process s2s-issuers ("dev" and "prod"), over real sockets.

use std::path::PathBuf;

use s2s_auth_testkit::TestIssuer;
use s2s_examples::setup::{self, CallReport};

const AUDIENCE: &str = "orders-api";

/// An authorization server (the testkit's, built from the real issuer) with one client
/// allowed `orders:read`.
struct Environment {
    issuer: TestIssuer,
    client_id: String,
    secret: String,
}

async fn environment() -> Environment {
    let issuer = TestIssuer::builder().audience(AUDIENCE).start().await;
    let account = issuer.account("billing", &["orders:read"]).await;
    Environment {
        client_id: account.client_id,
        secret: account.client_secret,
        issuer,
    }
}

/// A process environment made of `vars` only.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars.iter().map(|&(k, v)| (k.into(), v.into())).collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn args(list: &[&str]) -> impl Iterator<Item = String> {
    list.iter()
        .map(|s| (*s).to_owned())
        .collect::<Vec<_>>()
        .into_iter()
}

/// A file of this test's own directory.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("s2s-examples-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A process environment: the value of a variable, if set.
type Env = dyn Fn(&str) -> Option<String>;

/// Starts `protected_service` as set up by `args` and `env`; its `/whoami` URL.
async fn service(args: impl Iterator<Item = String>, env: &Env) -> String {
    let setup = setup::service(args, env).expect("the service's setup");
    let listener = tokio::net::TcpListener::bind(&setup.listen).await.unwrap();
    let url = format!("http://{}/whoami", listener.local_addr().unwrap());
    let app = s2s_examples::protected_router(setup.verifier, setup.scopes);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Runs `caller` as set up by `args` and `env`.
async fn call(args: impl Iterator<Item = String>, env: &Env) -> CallReport {
    let setup = setup::caller(args, env).expect("the caller's setup");
    setup::run_caller(setup).await.expect("the caller runs")
}

fn counts(report: &CallReport) -> Vec<(&str, usize)> {
    report
        .counts
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

#[tokio::test]
async fn one_binary_runs_against_dev_and_prod_by_configuration_alone() {
    let (dev, prod) = (environment().await, environment().await);

    // dev: the whole setup of both examples from TOML files; the secret from a file.
    let service_toml = file(
        "service.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nrequire_scopes = [\"orders:read\"]\n\n[verifier]\n\
             audiences = [\"{AUDIENCE}\"]\nrequire_at_jwt = true\n\n[[verifier.issuer]]\n\
             id = \"{}\"\n",
            dev.issuer.url()
        ),
    );
    let dev_service = service(args(&["--config", service_toml.to_str().unwrap()]), &no_env).await;
    let secret_file = file("dev-secret", &format!("{}\n", dev.secret));
    let caller_toml = file(
        "caller.toml",
        &format!(
            "target = \"{dev_service}\"\nrequests = 5\nconcurrency = 2\n\n[client]\n\
             issuer = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"{}\"\n\
             scopes = [\"orders:read\"]\n",
            dev.issuer.url(),
            dev.client_id,
            secret_file.display()
        ),
    );
    let report = call(args(&["--config", caller_toml.to_str().unwrap()]), &no_env).await;
    assert_eq!(counts(&report), [("200", 5)]);
    assert_eq!(report.tokens_fetched, 1);

    // prod: the same code with its whole setup from S2S_* variables.
    let prod_service = service(
        args(&[]),
        &env(&[
            ("S2S_ISSUER_URL", prod.issuer.url()),
            ("S2S_AUDIENCE", AUDIENCE),
            ("S2S_LISTEN", "127.0.0.1:0"),
            ("S2S_REQUIRE_SCOPES", "orders:read"),
        ]),
    )
    .await;
    let prod_caller = env(&[
        ("S2S_TOKEN_URL", &format!("{}/token", prod.issuer.url())),
        ("S2S_CLIENT_ID", &prod.client_id),
        ("S2S_CLIENT_SECRET", &prod.secret),
        ("S2S_SCOPES", "orders:read"),
        ("S2S_TARGET_URL", &prod_service),
        ("S2S_REQUESTS", "3"),
    ]);
    let report = call(args(&[]), &prod_caller).await;
    assert_eq!(counts(&report), [("200", 3)]);

    // Each service takes only its own environment's tokens: prod's caller at dev's service.
    let report = call(args(&[&dev_service]), &prod_caller).await;
    assert_eq!(counts(&report), [("401", 3)]);

    // Environment over file: dev's file, pointed at prod by one variable.
    let moved = service(
        args(&["--config", service_toml.to_str().unwrap()]),
        &env(&[("S2S_ISSUER_URL", prod.issuer.url())]),
    )
    .await;
    assert_eq!(
        counts(&call(args(&[&moved]), &prod_caller).await),
        [("200", 3)]
    );

    // Flags over environment: the old flags, as documented, win over S2S_ISSUER_URL.
    let flagged = service(
        args(&[
            "--issuer",
            dev.issuer.url(),
            "--audience",
            AUDIENCE,
            "--listen",
            "127.0.0.1:0",
        ]),
        &env(&[("S2S_ISSUER_URL", prod.issuer.url())]),
    )
    .await;
    assert_eq!(
        counts(&call(args(&[&flagged]), &prod_caller).await),
        [("401", 3)]
    );
    let dev_by_flags = [
        "--issuer",
        dev.issuer.url(),
        "--client-id",
        &dev.client_id,
        "--client-secret",
        &dev.secret,
        "--scope",
        "orders:read",
        "--requests",
        "2",
        &flagged,
    ];
    let report = call(args(&dev_by_flags), &prod_caller).await;
    assert_eq!(counts(&report), [("200", 2)]);
}

/// A caller of `env`'s issuer calling `target` `requests` times, set up by variables alone.
fn caller_of(env_: &Environment, target: &str) -> impl Fn(&str) -> Option<String> + use<> {
    env(&[
        ("S2S_ISSUER_URL", env_.issuer.url()),
        ("S2S_CLIENT_ID", &env_.client_id),
        ("S2S_CLIENT_SECRET", &env_.secret),
        ("S2S_TARGET_URL", target),
        ("S2S_REQUESTS", "2"),
    ])
}

#[tokio::test]
async fn each_issuer_of_the_file_has_its_own_audiences() {
    let (dev, prod) = (environment().await, environment().await);
    // Both issuers' tokens say `aud: orders-api`; only dev's issuer accepts that audience here.
    let two_issuers = format!(
        "listen = \"127.0.0.1:0\"\n[verifier]\naudiences = [\"{AUDIENCE}\"]\n\
         [[verifier.issuer]]\nid = \"{}\"\n\
         [[verifier.issuer]]\nid = \"{}\"\naudiences = [\"orders-prod-api\"]\n",
        dev.issuer.url(),
        prod.issuer.url()
    );
    let toml = file("two-issuers.toml", &two_issuers);
    let target = service(args(&["--config", toml.to_str().unwrap()]), &no_env).await;
    let dev_report = call(args(&[]), &caller_of(&dev, &target)).await;
    assert_eq!(counts(&dev_report), [("200", 2)]);
    let prod_report = call(args(&[]), &caller_of(&prod, &target)).await;
    assert_eq!(counts(&prod_report), [("401", 2)]);
}

#[test]
fn setup_errors_name_the_setting_and_never_show_the_secret() {
    let error =
        setup::service(args(&["--issuer", "https://auth.example.com"]), &no_env).unwrap_err();
    assert!(
        error.starts_with("issuer[0].audiences: no audience"),
        "{error}"
    );
    let error =
        setup::service(args(&["--config", "/nonexistent/service.toml"]), &no_env).unwrap_err();
    assert!(
        error.starts_with("cannot read /nonexistent/service.toml"),
        "{error}"
    );
    let bad = file("bad.toml", "listen = 3000\n");
    let error = setup::service(args(&["--config", bad.to_str().unwrap()]), &no_env).unwrap_err();
    assert!(error.contains("line 1, column 10"), "{error}");

    let inline = file(
        "inline.toml",
        "target = \"https://orders.example.com/\"\n[client]\ntoken_url = \"https://auth.example.com/token\"\n\
         client_id = \"billing\"\nclient_secret = \"hunter2\"\n",
    );
    let error = setup::caller(args(&["--config", inline.to_str().unwrap()]), &no_env).unwrap_err();
    assert!(
        error.starts_with("client_secret: secrets are not read"),
        "{error}"
    );
    assert!(!error.contains("hunter2"));
    let error = setup::caller(
        args(&[
            "--issuer",
            "https://a.example.com",
            "--token-url",
            "https://a.example.com/t",
        ]),
        &no_env,
    )
    .unwrap_err();
    assert_eq!(error, "give exactly one of --issuer and --token-url");
    let setup = setup::caller(
        args(&[
            "--token-url",
            "https://a.example.com/t",
            "--client-id",
            "c",
            "https://b.example.com/",
        ]),
        &env(&[("S2S_CLIENT_SECRET", "hunter2")]),
    )
    .unwrap();
    assert!(!format!("{setup:?}").contains("hunter2"));
}
