//! `s2s-gateway`: run the verifying reverse proxy, or check its configuration.
//!
//! ```text
//! s2s-gateway --config gateway.toml          # run (SIGTERM / Ctrl-C: graceful shutdown)
//! s2s-gateway check --config gateway.toml    # check the file; each error with line:column
//! ```
//!
//! Logs go to stderr; `RUST_LOG` filters them (default `info`).

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use s2s_gateway::{Config, Gateway};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "s2s-gateway",
    version,
    about = "A reverse proxy that verifies bearer tokens before forwarding",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, env = "S2S_GATEWAY_CONFIG", required = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a configuration file and prints every error with its location; contacts nothing.
    Check {
        /// The configuration file (TOML).
        #[arg(long, env = "S2S_GATEWAY_CONFIG")]
        config: PathBuf,
    },
}

fn load(path: &PathBuf) -> Result<Config, ExitCode> {
    Config::from_file(path).map_err(|errors| {
        eprint!("{}", errors.render(&path.display().to_string()));
        let n = errors.errors().len();
        eprintln!(
            "{}: {n} error{}",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config }) => match load(&config) {
            Ok(c) => {
                let (routes, issuers, upstreams) = c.counts();
                println!(
                    "{}: ok ({routes} routes, {issuers} issuers, {upstreams} upstreams; listens on {})",
                    config.display(),
                    c.listen()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        None => {
            let path = cli.config.expect("clap requires --config");
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            tracing_subscriber::fmt()
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(target: "s2s_gateway", error = %e, "gateway failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Serves `config` on a multi-threaded runtime until a shutdown signal.
fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(serve(config))
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let addr = config.listen();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let gateway = Gateway::from_config(config).await?;
    gateway.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// SIGTERM (what orchestrators send) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(target: "s2s_gateway", error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(target: "s2s_gateway", "Ctrl-C: shutting down"),
        () = terminate => tracing::info!(target: "s2s_gateway", "SIGTERM: shutting down"),
    }
}
