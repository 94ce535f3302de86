//! A service that accepts only requests with a valid bearer token.
//!
//! ```sh
//! cargo run --example protected_service -- --issuer https://auth.example.com \
//!     --audience orders-api --require-scope orders:read --listen 127.0.0.1:3000
//! # or the whole setup from a file, or from S2S_* variables (flags override both):
//! cargo run --example protected_service -- --config service.toml
//! S2S_ISSUER_URL=https://auth.example.com S2S_AUDIENCE=orders-api \
//!     cargo run --example protected_service
//! ```
//!
//! `GET /whoami` answers the verified claims as JSON; `GET /healthz` needs no token. With
//! `--jwks-url URL` the keys come from that URL instead of the issuer's discovery metadata
//! (`--issuer` still names the `iss` the tokens must carry). It prints `listening on http://ADDR`
//! once it accepts connections.
//!
//! The file has `listen`, `require_scopes` and a `[verifier]` table with the keys of
//! [`s2s_auth::config::VerifierConfig`]; besides its variables (`S2S_ISSUER_URL`,
//! `S2S_AUDIENCE`, ...) the service reads `S2S_LISTEN` and `S2S_REQUIRE_SCOPES`:
//!
//! ```toml
//! listen = "127.0.0.1:3000"
//! require_scopes = ["orders:read"]
//!
//! [verifier]
//! audiences = ["orders-api"]
//!
//! [[verifier.issuer]]
//! id = "https://auth.example.com"
//! ```

use std::process::ExitCode;

const USAGE: &str = "usage: protected_service [--config FILE] [--issuer URL] [--jwks-url URL] \
[--audience AUD]... [--require-scope S]... [--listen ADDR] [--allow-insecure-http]
  (an issuer and an audience are required: by flag, file or S2S_ISSUER_URL / S2S_AUDIENCE)";

#[tokio::main]
async fn main() -> ExitCode {
    s2s_examples::init_tracing("info");
    let setup = match s2s_examples::setup::from_process(s2s_examples::setup::service, USAGE) {
        Ok(setup) => setup,
        Err(usage_error) => return usage_error,
    };
    let listener = match s2s_examples::setup::listen(&setup.listen).await {
        Ok(listener) => listener,
        Err(failure) => return failure,
    };
    let app = s2s_examples::protected_router(setup.verifier, setup.scopes);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
