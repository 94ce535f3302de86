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

use s2s_auth::{RequireScopeLayer, VerifyLayer};
use tonic::transport::{Server, server::TcpIncoming};
use tower::ServiceBuilder;

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
    let listener = match tokio::net::TcpListener::bind(&setup.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", setup.listen);
            return ExitCode::FAILURE;
        }
    };
    // The overall health ("") is SERVING from the start.
    let (_reporter, health) = tonic_health::server::health_reporter();
    let auth = ServiceBuilder::new()
        .layer(VerifyLayer::new(setup.verifier))
        // No scope given: all of none, every verified token passes.
        .layer(RequireScopeLayer::all(setup.scopes));
    println!(
        "listening on http://{}",
        listener.local_addr().expect("bound")
    );
    let served = Server::builder()
        .layer(auth)
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await;
    if let Err(e) = served {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
