//! A service that accepts only requests with a valid bearer token.
//!
//! ```sh
//! cargo run --example protected_service -- --issuer https://auth.example.com \
//!     --audience orders-api --require-scope orders:read --listen 127.0.0.1:3000
//! ```
//!
//! `GET /whoami` answers the verified claims as JSON; `GET /healthz` needs no token. With
//! `--jwks-url URL` the keys come from that URL instead of the issuer's discovery metadata
//! (`--issuer` still names the `iss` the tokens must carry). It prints `listening on http://ADDR`
//! once it accepts connections.

use std::process::ExitCode;

use s2s_auth::{Issuer, Verifier, fetch::HttpOptions};

const USAGE: &str = "usage: protected_service --issuer URL [--jwks-url URL] --audience AUD \
[--require-scope S]... [--listen ADDR] [--allow-insecure-http]";

struct Args {
    issuer: String,
    jwks_url: Option<String>,
    audiences: Vec<String>,
    scopes: Vec<String>,
    listen: String,
    allow_insecure_http: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut issuer, mut jwks_url, mut listen) = (None, None, None);
    let (mut audiences, mut scopes, mut allow_insecure_http) = (Vec::new(), Vec::new(), false);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--issuer" => issuer = Some(value()?),
            "--jwks-url" => jwks_url = Some(value()?),
            "--audience" => audiences.push(value()?),
            "--require-scope" => scopes.push(value()?),
            "--listen" => listen = Some(value()?),
            "--allow-insecure-http" => allow_insecure_http = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let issuer = issuer.ok_or("--issuer is required (the `iss` tokens carry)")?;
    if audiences.is_empty() {
        return Err("--audience is required (this service's identifier in `aud`)".into());
    }
    Ok(Args {
        issuer,
        jwks_url,
        audiences,
        scopes,
        listen: listen.unwrap_or_else(|| "127.0.0.1:3000".into()),
        allow_insecure_http,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    s2s_examples::init_tracing("info");
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let issuer = match &args.jwks_url {
        Some(url) => Issuer::jwks(&args.issuer, url),
        None => Issuer::discover(&args.issuer),
    };
    let mut builder = Verifier::builder().issuer(issuer).http(HttpOptions {
        allow_insecure_http: args.allow_insecure_http,
        ..HttpOptions::default()
    });
    for audience in &args.audiences {
        builder = builder.audience(audience);
    }
    let verifier = match builder.build() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let app = s2s_examples::protected_router(verifier, args.scopes);
    println!(
        "listening on http://{}",
        listener.local_addr().expect("bound")
    );
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
