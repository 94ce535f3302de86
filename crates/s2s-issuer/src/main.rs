//! `s2s-issuer`: serve the authorization server, or manage service accounts in its database.
//!
//! ```text
//! s2s-issuer serve [--config FILE] [--db PATH|:memory:] [--listen ADDR] [--issuer URL]
//!                  [--token-issuer ISS] [--default-audience AUD] [--token-lifetime SECS]
//!                  [--admin-token-file FILE] [--trusted-proxy CIDR]...
//! s2s-issuer accounts [--config FILE] [--db PATH] create --name N --scope S... [--allowed-ip CIDR]...
//!                                                 [--audience AUD]... [--description TEXT]
//! s2s-issuer accounts [--config FILE] [--db PATH] list
//! s2s-issuer accounts [--config FILE] [--db PATH] disable SERVICE_ACCOUNT_ID|CLIENT_ID
//! s2s-issuer accounts [--config FILE] [--db PATH] enable SERVICE_ACCOUNT_ID|CLIENT_ID
//! s2s-issuer keys [--config FILE] [--db PATH] rotate
//! ```
//!
//! The admin token comes from `admin_token` / `admin_token_file` in the config file,
//! `--admin-token-file`, or the `S2S_ISSUER_ADMIN_TOKEN` environment variable (never a flag:
//! command lines are visible to other users). Logs go to stderr (`RUST_LOG`, default `info`);
//! the audit log is the target `s2s_issuer::audit`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use s2s_issuer::{Error, Issuer, IssuerConfig, accounts::NewAccount};
use secrecy::{ExposeSecret as _, SecretString};

/// A client-credentials authorization server: service accounts, token endpoint, JWKS.
#[derive(Parser)]
#[command(name = "s2s-issuer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the token endpoint, JWKS, metadata and (with an admin token) the admin API.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Listen address, e.g. 127.0.0.1:8080 (port 0 picks a free one).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The issuer URL; its path is served as the base path (e.g. http://HOST/auth);
        /// default http://{listen address}.
        #[arg(long)]
        issuer: Option<String>,
        /// The tokens' `iss` claim when it is not the issuer URL (e.g. auth-service).
        #[arg(long, value_name = "ISS")]
        token_issuer: Option<String>,
        /// The `aud` of tokens whose request names none; default the issuer URL.
        #[arg(long)]
        default_audience: Option<String>,
        /// Access-token lifetime in seconds (default 1800).
        #[arg(long, value_name = "SECS")]
        token_lifetime: Option<u64>,
        /// A file holding the admin token (or set S2S_ISSUER_ADMIN_TOKEN).
        #[arg(long, value_name = "FILE")]
        admin_token_file: Option<PathBuf>,
        /// The JWKS's Cache-Control max-age in seconds (default 300).
        #[arg(long, value_name = "SECS")]
        jwks_max_age_secs: Option<u64>,
        /// A file holding the key-encryption key of the stored signing keys, base64 of 32
        /// bytes (or set S2S_ISSUER_KEY_ENCRYPTION_KEY); required with a postgres:// database.
        #[arg(long, value_name = "FILE")]
        key_encryption_key_file: Option<PathBuf>,
        /// A proxy in front of the issuer, as a CIDR or an address (repeat); replaces the
        /// file's `trusted_proxies`. Only from these is X-Forwarded-For read.
        #[arg(long = "trusted-proxy", value_name = "CIDR")]
        trusted_proxies: Vec<String>,
    },
    /// Manage service accounts directly in the database (for bootstrap).
    Accounts {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Manage signing keys directly in the database.
    Keys {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Args)]
struct Common {
    /// A TOML configuration file (see the crate docs for its fields).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The SQLite database file, :memory:, or a postgres:// URL (serve only).
    #[arg(long, value_name = "PATH", global = true)]
    db: Option<String>,
}

#[derive(Subcommand)]
enum AccountAction {
    /// Create an account; prints its client id and secret (shown this once).
    Create {
        /// A unique name.
        #[arg(long)]
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// A scope it may be granted (repeat, or separate with spaces).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A network it may ask from, as a CIDR (repeat); none allows any address.
        #[arg(long = "allowed-ip", value_name = "CIDR")]
        allowed_ips: Vec<String>,
        /// An audience it may request besides the default (repeat).
        #[arg(long = "audience", value_name = "AUD")]
        audiences: Vec<String>,
    },
    /// List accounts.
    List,
    /// Disable an account: its token requests are refused at once.
    Disable {
        /// The account's service account id (svc_…) or client id.
        client_id: String,
    },
    /// Enable a disabled account.
    Enable {
        /// The account's service account id (svc_…) or client id.
        client_id: String,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Generate a new signing key (the old one stays published until its tokens expire).
    Rotate,
    /// List the published signing keys.
    List,
}

fn load_config(common: &Common) -> Result<IssuerConfig, Error> {
    let mut config = match &common.config {
        Some(path) => IssuerConfig::from_file(path)?,
        None => IssuerConfig::default(),
    };
    if let Some(db) = &common.db {
        config.db = db.clone();
    }
    Ok(config)
}

/// Opens the database of `common` for the account and key commands (no server).
async fn open_offline(common: &Common) -> Result<Issuer, Error> {
    let mut config = load_config(common)?;
    if config.db.trim() == ":memory:" {
        return Err(Error::Config {
            field: "db".into(),
            message: "the accounts and keys commands need a database file, not :memory:".into(),
        });
    }
    if config.issuer.is_none() {
        config.issuer = Some(format!("http://{}", config.listen));
    }
    // The admin API is not served here; its token is not needed.
    config.admin_token = None;
    config.admin_token_file = None;
    Issuer::open(config).await
}

fn split_scopes(scopes: Vec<String>) -> Vec<String> {
    scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect()
}

async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Serve {
            common,
            listen,
            issuer,
            token_issuer,
            default_audience,
            token_lifetime,
            admin_token_file,
            jwks_max_age_secs,
            key_encryption_key_file,
            trusted_proxies,
        } => {
            let mut config = load_config(&common)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if issuer.is_some() {
                config.issuer = issuer;
            }
            if token_issuer.is_some() {
                config.token_issuer = token_issuer;
            }
            if default_audience.is_some() {
                config.default_audience = default_audience;
            }
            if let Some(secs) = token_lifetime {
                config.token_lifetime_secs = secs;
            }
            if admin_token_file.is_some() {
                config.admin_token_file = admin_token_file;
            }
            if let Some(secs) = jwks_max_age_secs {
                config.jwks_max_age_secs = secs;
            }
            if key_encryption_key_file.is_some() {
                config.key_encryption_key_file = key_encryption_key_file;
            }
            if !trusted_proxies.is_empty() {
                config.trusted_proxies = trusted_proxies;
            }
            if config.admin_token.is_none() && config.admin_token_file.is_none() {
                config.admin_token = std::env::var("S2S_ISSUER_ADMIN_TOKEN")
                    .ok()
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| SecretString::from(t.trim().to_owned()));
            }
            config.validate()?;
            let db = config.db.clone();
            let running = s2s_issuer::spawn(config).await?;
            if !running.issuer.admin_enabled() {
                tracing::warn!(
                    "no admin token (admin_token, admin_token_file or S2S_ISSUER_ADMIN_TOKEN): the admin API is off"
                );
            }
            tracing::info!(
                issuer = running.url,
                listen = %running.addr,
                db,
                admin_api = running.issuer.admin_enabled(),
                "s2s-issuer serving"
            );
            println!(
                "s2s-issuer listening on {} (issuer {})",
                running.addr, running.url
            );
            shutdown_signal().await;
            tracing::info!("shutting down");
            running.shutdown().await;
            Ok(())
        }
        Command::Accounts { common, action } => {
            let issuer = open_offline(&common).await?;
            let result = accounts(&issuer, action).await;
            issuer.close().await;
            result
        }
        Command::Keys { common, action } => {
            let issuer = open_offline(&common).await?;
            let result = async {
                if let KeyAction::Rotate = action {
                    let rotation = issuer.rotate_signing_key().await?;
                    println!(
                        "new signing key {} (signs from {}, Unix time)",
                        rotation.kid, rotation.activates_at
                    );
                }
                for key in issuer.signing_keys().await? {
                    match key.retire_at {
                        None => println!("{}  {}  active", key.kid, key.alg),
                        Some(t) => {
                            println!("{}  {}  published until {t} (Unix time)", key.kid, key.alg)
                        }
                    }
                }
                Ok(())
            }
            .await;
            issuer.close().await;
            result
        }
    }
}

async fn accounts(issuer: &Issuer, action: AccountAction) -> Result<(), Error> {
    match action {
        AccountAction::Create {
            name,
            description,
            scopes,
            allowed_ips,
            audiences,
        } => {
            let created = issuer
                .accounts()
                .create(NewAccount {
                    name,
                    description,
                    scopes: split_scopes(scopes),
                    allowed_ips,
                    audiences,
                    expires_at: None,
                })
                .await?;
            println!("service_account_id: {}", created.account.service_account_id);
            println!("client_id:     {}", created.account.client_id);
            println!("client_secret: {}", created.client_secret.expose_secret());
            eprintln!("The secret is shown this once and stored only as a hash: keep it now.");
        }
        AccountAction::List => {
            let mut cursor: Option<String> = None;
            println!("CLIENT_ID                         STATUS    NAME  SCOPES  ALLOWED_IPS");
            loop {
                let page = issuer.accounts().list(500, cursor.as_deref()).await?;
                for a in &page.accounts {
                    let nets: Vec<String> = a.allowed_ips.iter().map(ToString::to_string).collect();
                    println!(
                        "{}  {:<8}  {}  {}  {}",
                        a.client_id,
                        a.status.as_str(),
                        a.name,
                        if a.scopes.is_empty() {
                            "-".into()
                        } else {
                            a.scopes.join(",")
                        },
                        if nets.is_empty() {
                            "any".into()
                        } else {
                            nets.join(",")
                        },
                    );
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        AccountAction::Disable { client_id } => {
            issuer.accounts().disable(&client_id).await?;
            println!("{client_id} disabled");
        }
        AccountAction::Enable { client_id } => {
            issuer.accounts().enable(&client_id).await?;
            println!("{client_id} enabled");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    let outcome = tokio::runtime::Runtime::new()
        .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                Error::Config { .. } | Error::Invalid { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
