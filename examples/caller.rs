//! A calling service: gets client-credentials tokens and calls a URL through the reqwest
//! middleware, then prints a count per status and how many tokens it fetched.
//!
//! ```sh
//! S2S_CLIENT_SECRET=… cargo run --example caller -- --issuer https://auth.example.com \
//!     --client-id billing --scope orders:read --requests 100 --concurrency 8 \
//!     https://orders.example.com/whoami
//! # or the whole setup from a file, or from S2S_* variables (flags override both):
//! cargo run --example caller -- --config caller.toml
//! # any number of callers sharing one token through Redis (also `redis_url` in the file, or
//! # S2S_REDIS_URL):
//! cargo run --example caller -- --redis-url redis://127.0.0.1:6379 …
//! ```
//!
//! The file has `target`, `requests`, `concurrency`, `redis_url` and a `[client]` table with the
//! keys of [`s2s_auth::config::ClientConfig`] (never the secret itself: `client_secret_env`,
//! `client_secret_file` or `S2S_CLIENT_SECRET`); besides its variables the caller reads
//! `S2S_TARGET_URL`, `S2S_REQUESTS`, `S2S_CONCURRENCY` and `S2S_REDIS_URL`. The token goes to the
//! `destinations` of `[client]` (`S2S_DESTINATIONS`), or, when none are set, to the target's
//! origin only. With a Redis URL, callers share one token (see `s2s_auth::token::RedisCache`).
//!
//! ```toml
//! target = "https://orders.example.com/whoami"
//! requests = 100
//!
//! [client]
//! issuer = "https://auth.example.com"
//! client_id = "billing"
//! client_secret_file = "/run/secrets/billing"
//! scopes = ["orders:read"]
//! ```

use std::process::ExitCode;

const USAGE: &str = "usage: caller [--config FILE] (--issuer URL | --token-url URL) --client-id ID \
[--client-secret S | env S2S_CLIENT_SECRET] [--auth basic|post|private-key-jwt --key FILE \
[--key-alg ES256|RS256|EdDSA|…] [--kid KID]] [--scope S]... [--audience A] [--resource R]... \
[--requests N] [--concurrency C] [--redis-url URL] [--allow-insecure-http] TARGET_URL";

#[tokio::main]
async fn main() -> ExitCode {
    s2s_examples::init_tracing("warn");
    let outcome = match s2s_examples::setup::from_process(s2s_examples::setup::caller, USAGE) {
        Ok(setup) => s2s_examples::setup::run_caller(setup).await,
        Err(usage_error) => return usage_error,
    };
    let report = match outcome {
        Ok(report) => report,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    for (status, count) in &report.counts {
        println!("{status}: {count}");
    }
    println!("tokens fetched: {}", report.tokens_fetched);
    println!("tokens from the shared cache: {}", report.tokens_shared);
    if report.counts.keys().all(|s| s.starts_with('2')) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
