//! A gRPC service that accepts only calls with a valid bearer token: the standard
//! `grpc.health.v1.Health` service (tonic-health) behind `VerifyLayer` + `RequireScopeLayer`,
//! so that any stock gRPC client can call it.
//!
//! ```sh
//! cargo run --example grpc_service -- --issuer https://auth.example.com \
//!     --audience orders-api --require-scope orders:read --listen 127.0.0.1:50051
//! # then, with a token of that issuer:
//! grpcurl -plaintext -H "authorization: Bearer $TOKEN" 127.0.0.1:50051 grpc.health.v1.Health/Check
//! ```
//!
//! The flags, the file and the `S2S_*` variables are those of `protected_service` (`--issuer`,
//! `--jwks-url`, `--audience`, `--require-scope`, `--listen`, `--allow-insecure-http`,
//! `--config`). It serves h2c (HTTP/2 without TLS; put it behind TLS or the gateway) and prints
//! `listening on http://ADDR` once it accepts connections. A call without a token is answered
//! UNAUTHENTICATED, one whose token lacks the scopes PERMISSION_DENIED, one that comes before
//! the issuer's keys are loaded UNAVAILABLE; each with the `www-authenticate` challenge in its
//! metadata.

use std::process::ExitCode;

const USAGE: &str = "usage: grpc_service [--config FILE] [--issuer URL] [--jwks-url URL] \
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
    if let Err(e) = s2s_examples::serve_grpc_health(listener, setup.verifier, setup.scopes).await {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
