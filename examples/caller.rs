//! A calling service: gets client-credentials tokens and calls a URL through the reqwest
//! middleware, then prints a count per status and how many tokens it fetched.
//!
//! ```sh
//! S2S_CLIENT_SECRET=… cargo run --example caller -- --issuer https://auth.example.com \
//!     --client-id billing --scope orders:read --requests 100 --concurrency 8 \
//!     https://orders.example.com/whoami
//! ```

use std::{collections::BTreeMap, process::ExitCode, sync::Arc};

use jsonwebtoken::Algorithm;
use s2s_auth::{
    fetch::HttpOptions,
    reqwest::AuthorizeMiddleware,
    token::{ClientAuth, ClientCredentials, TokenManager, TokenSource},
};

const USAGE: &str = "usage: caller (--issuer URL | --token-url URL) --client-id ID \
[--client-secret S | env S2S_CLIENT_SECRET] [--auth basic|post|private-key-jwt --key FILE \
[--key-alg ES256|RS256|EdDSA|…] [--kid KID]] [--scope S]... [--audience A] [--resource R]... \
[--requests N] [--concurrency C] [--allow-insecure-http] TARGET_URL";

struct Args {
    grant: ClientCredentials,
    /// Whether the token may go to a plain http target that is not loopback.
    allow_insecure_http: bool,
    target: String,
    requests: usize,
    concurrency: usize,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut flags: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut allow_insecure_http = false;
    let mut target = None;
    const WITH_VALUE: [&str; 13] = [
        "--issuer",
        "--token-url",
        "--client-id",
        "--client-secret",
        "--auth",
        "--key",
        "--key-alg",
        "--kid",
        "--scope",
        "--audience",
        "--resource",
        "--requests",
        "--concurrency",
    ];
    while let Some(arg) = args.next() {
        if arg == "--allow-insecure-http" {
            allow_insecure_http = true;
        } else if let Some(flag) = WITH_VALUE.iter().find(|f| **f == arg) {
            let value = args.next().ok_or(format!("{arg} needs a value"))?;
            flags.entry(flag).or_default().push(value);
        } else if arg.starts_with("--") {
            return Err(format!("unknown flag `{arg}`"));
        } else if target.replace(arg).is_some() {
            return Err("only one TARGET_URL".into());
        }
    }
    let one = |name: &str| flags.get(name).and_then(|v| v.last()).cloned();
    let number = |name: &str, default: usize| match one(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("{name} needs a positive number, not `{v}`")),
    };
    let client_id = one("--client-id").ok_or("--client-id is required")?;
    let mut grant = match (one("--issuer"), one("--token-url")) {
        (Some(issuer), None) => ClientCredentials::discover(issuer, client_id),
        (None, Some(url)) => ClientCredentials::new(url, client_id),
        _ => return Err("give exactly one of --issuer and --token-url".into()),
    };
    let secret = || {
        one("--client-secret")
            .or_else(|| std::env::var("S2S_CLIENT_SECRET").ok())
            .ok_or("a client secret is required: --client-secret or env S2S_CLIENT_SECRET")
    };
    let auth = match one("--auth").as_deref().unwrap_or("basic") {
        "basic" => ClientAuth::SecretBasic(secret()?.into()),
        "post" => ClientAuth::SecretPost(secret()?.into()),
        "private-key-jwt" => {
            let path = one("--key").ok_or("--auth private-key-jwt needs --key FILE (a PEM)")?;
            let pem = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let alg_name = one("--key-alg").unwrap_or_else(|| "ES256".into());
            let alg: Algorithm = alg_name
                .parse()
                .map_err(|_| format!("unknown --key-alg `{alg_name}`"))?;
            ClientAuth::private_key_pem(alg, &pem, one("--kid")).map_err(|e| e.to_string())?
        }
        other => {
            return Err(format!(
                "--auth must be basic, post or private-key-jwt, not `{other}`"
            ));
        }
    };
    grant = grant.auth(auth).http(HttpOptions {
        allow_insecure_http,
        ..HttpOptions::default()
    });
    for scope in flags.get("--scope").into_iter().flatten() {
        grant = grant.scope(scope);
    }
    for resource in flags.get("--resource").into_iter().flatten() {
        grant = grant.resource(resource);
    }
    if let Some(audience) = one("--audience") {
        grant = grant.audience(audience);
    }
    Ok(Args {
        grant,
        allow_insecure_http,
        target: target.ok_or("TARGET_URL is required")?,
        requests: number("--requests", 1)?,
        concurrency: number("--concurrency", 1)?,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    s2s_examples::init_tracing("warn");
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let tokens = match TokenManager::new(args.grant) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Fetch the first token up front, so that a refused client is reported once, clearly.
    if let Err(e) = tokens.token().await {
        eprintln!("error: could not get a token: {e}");
        if let Some(oauth) = e.oauth_error() {
            eprintln!("  OAuth error: {oauth}");
        }
        return ExitCode::FAILURE;
    }
    // The token goes to the target's origin and nowhere else.
    let origin = match reqwest::Url::parse(&args.target) {
        Ok(url) => url.origin().ascii_serialization(),
        Err(e) => {
            eprintln!(
                "error: TARGET_URL `{}` is not a URL: {e}\n{USAGE}",
                args.target
            );
            return ExitCode::from(2);
        }
    };
    let mut middleware = AuthorizeMiddleware::new(tokens.clone()).allow_origin(origin);
    if args.allow_insecure_http {
        middleware = middleware.allow_insecure_http();
    }
    if let Err(e) = middleware.check() {
        eprintln!("error: {e}\n{USAGE}");
        return ExitCode::from(2);
    }
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..args.requests {
        let (client, target, semaphore) = (client.clone(), args.target.clone(), semaphore.clone());
        calls.spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore open");
            match client.get(&target).send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(e) => format!("error ({e})"),
            }
        });
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(outcome) = calls.join_next().await {
        *counts.entry(outcome.expect("call task")).or_default() += 1;
    }
    for (status, count) in &counts {
        println!("{status}: {count}");
    }
    let m = tokens.metrics();
    println!("tokens fetched: {}", m.fetches - m.failures);
    if counts.keys().all(|s| s.starts_with('2')) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
