//! What `protected_service` and `caller` are told to do, from a TOML file (`--config FILE`),
//! `S2S_*` environment variables and flags, each over the one before: flags over environment
//! over file. Flags are the same settings under their old names, mapped onto the environment
//! names of [`s2s_auth::config`], so each setting is read by one piece of code whatever it
//! came from.

use std::collections::BTreeMap;

use s2s_auth::{
    Verifier,
    config::{ClientConfig, VerifierConfig},
    token::ClientCredentials,
};
use serde::Deserialize;

/// How a setting is looked up: a flag's value, else the environment's.
type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Reads an example's setup with `read` from the process's arguments and environment; on an
/// error, prints it with `usage` and answers exit code 2 (a usage error).
pub fn from_process<T>(
    read: impl FnOnce(std::iter::Skip<std::env::Args>, &Lookup<'_>) -> Result<T, String>,
    usage: &str,
) -> Result<T, std::process::ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    read(std::env::args().skip(1), &env).map_err(|message| {
        eprintln!("error: {message}\n{usage}");
        std::process::ExitCode::from(2)
    })
}

/// Binds `address` and prints `listening on http://ADDR` (what scripts and tests wait for, and
/// connections made from then on wait in the backlog); on an error, prints it and answers a
/// failure.
pub async fn listen(address: &str) -> Result<tokio::net::TcpListener, std::process::ExitCode> {
    match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => {
            match listener.local_addr() {
                Ok(bound) => println!("listening on http://{bound}"),
                Err(e) => eprintln!("warning: the bound address is unknown: {e}"),
            }
            Ok(listener)
        }
        Err(e) => {
            eprintln!("error: cannot listen on {address}: {e}");
            Err(std::process::ExitCode::FAILURE)
        }
    }
}

/// Flags given, by the `S2S_*` name they stand for; repeated flags are joined with commas.
#[derive(Default)]
struct Flags {
    values: BTreeMap<&'static str, Vec<String>>,
    config: Option<String>,
    positional: Vec<String>,
}

impl Flags {
    /// [`Flags::parse`] with the one switch both examples take, `--allow-insecure-http`.
    fn parse_example(
        args: impl Iterator<Item = String>,
        with_value: &[(&str, &'static str)],
    ) -> Result<Flags, String> {
        let switches = [("--allow-insecure-http", "S2S_ALLOW_INSECURE_HTTP")];
        Flags::parse(args, with_value, &switches)
    }

    /// Reads `args`: `--config FILE`, the flags of `with_value` (flag, `S2S_*` name), the flags
    /// of `switches` (set to `true`) and positional arguments.
    fn parse(
        mut args: impl Iterator<Item = String>,
        with_value: &[(&str, &'static str)],
        switches: &[(&str, &'static str)],
    ) -> Result<Flags, String> {
        let mut flags = Flags::default();
        while let Some(arg) = args.next() {
            if let Some((_, name)) = switches.iter().find(|(f, _)| *f == arg) {
                flags.values.entry(name).or_default().push("true".into());
            } else if arg == "--config" {
                flags.config = Some(args.next().ok_or("--config needs a FILE")?);
            } else if let Some((_, name)) = with_value.iter().find(|(f, _)| *f == arg) {
                let value = args.next().ok_or(format!("{arg} needs a value"))?;
                flags.values.entry(name).or_default().push(value);
            } else if arg.starts_with("--") {
                return Err(format!("unknown flag `{arg}`"));
            } else {
                flags.positional.push(arg);
            }
        }
        Ok(flags)
    }

    /// A flag's value, else `env`'s. Settings of one `group` that together name one thing
    /// (an issuer and its JWKS URL; an issuer or a token URL) come from one layer: when a flag
    /// gives any of them, the environment gives none.
    fn over<'a>(
        &'a self,
        env: &'a Lookup<'a>,
        group: &'a [&'a str],
    ) -> impl Fn(&str) -> Option<String> + 'a {
        let flags_name_it = group.iter().any(|n| self.values.contains_key(n));
        move |name| match self.values.get(name) {
            Some(values) => Some(values.join(",")),
            None if flags_name_it && group.contains(&name) => None,
            None => env(name),
        }
    }

    /// The `--config` file's text, if one was given.
    fn file<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, String> {
        let Some(path) = &self.config else {
            return Ok(T::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        toml::from_str(&text).map_err(|e| format!("{path}: {e}"))
    }
}

/// The protected service's configuration file: its own keys and a `[verifier]` table (see
/// [`s2s_auth::config`]).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    listen: Option<String>,
    #[serde(default)]
    require_scopes: Vec<String>,
    #[serde(default)]
    verifier: VerifierConfig,
}

/// What `protected_service` runs.
#[derive(Debug)]
pub struct Service {
    /// The verifier (keys not loaded yet).
    pub verifier: Verifier,
    /// Scopes every request to `/whoami` needs.
    pub scopes: Vec<String>,
    /// Where to listen.
    pub listen: String,
}

/// `protected_service`'s flags, by the variable each stands for.
const SERVICE_FLAGS: [(&str, &str); 5] = [
    ("--issuer", "S2S_ISSUER_URL"),
    ("--jwks-url", "S2S_JWKS_URL"),
    ("--audience", "S2S_AUDIENCE"),
    ("--require-scope", "S2S_REQUIRE_SCOPES"),
    ("--listen", "S2S_LISTEN"),
];

/// Reads `protected_service`'s setup from `args` (and the file they name) and `env`.
pub fn service(args: impl Iterator<Item = String>, env: &Lookup<'_>) -> Result<Service, String> {
    let flags = Flags::parse_example(args, &SERVICE_FLAGS)?;
    if let Some(extra) = flags.positional.first() {
        return Err(format!("unknown argument `{extra}`"));
    }
    let file: ServiceFile = flags.file()?;
    let lookup = flags.over(env, &["S2S_ISSUER_URL", "S2S_JWKS_URL"]);
    let verifier = file
        .verifier
        .with_env_from(&lookup)
        .and_then(|config| config.build())
        .map_err(|e| e.to_string())?;
    let scopes = match lookup("S2S_REQUIRE_SCOPES") {
        Some(list) => split_list(&list),
        None => file.require_scopes,
    };
    Ok(Service {
        verifier,
        scopes,
        listen: lookup("S2S_LISTEN")
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:3000".into()),
    })
}

/// The caller's configuration file: its own keys and a `[client]` table (see
/// [`s2s_auth::config`]).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerFile {
    target: Option<String>,
    requests: Option<usize>,
    concurrency: Option<usize>,
    redis_url: Option<String>,
    #[serde(default)]
    client: ClientConfig,
}

/// What `caller` runs.
#[derive(Debug)]
pub struct Caller {
    /// The grant.
    pub grant: ClientCredentials,
    /// The client configuration (destinations, https policy).
    pub client: ClientConfig,
    /// The URL to call.
    pub target: String,
    /// How many calls.
    pub requests: usize,
    /// How many at a time.
    pub concurrency: usize,
    /// The Redis server whose shared token cache the caller uses, if any.
    pub redis_url: Option<String>,
}

/// `caller`'s flags, by the variable each stands for.
const CALLER_FLAGS: [(&str, &str); 14] = [
    ("--issuer", "S2S_ISSUER_URL"),
    ("--token-url", "S2S_TOKEN_URL"),
    ("--client-id", "S2S_CLIENT_ID"),
    ("--client-secret", "S2S_CLIENT_SECRET"),
    ("--auth", "S2S_CLIENT_AUTH"),
    ("--key", "S2S_CLIENT_KEY_FILE"),
    ("--key-alg", "S2S_CLIENT_KEY_ALG"),
    ("--kid", "S2S_CLIENT_KEY_ID"),
    ("--scope", "S2S_SCOPES"),
    ("--audience", "S2S_TOKEN_AUDIENCE"),
    ("--resource", "S2S_TOKEN_RESOURCE"),
    ("--requests", "S2S_REQUESTS"),
    ("--concurrency", "S2S_CONCURRENCY"),
    ("--redis-url", "S2S_REDIS_URL"),
];

/// Reads `caller`'s setup from `args` (and the file they name) and `env`.
pub fn caller(args: impl Iterator<Item = String>, env: &Lookup<'_>) -> Result<Caller, String> {
    let flags = Flags::parse_example(args, &CALLER_FLAGS)?;
    for single in [
        "S2S_CLIENT_ID",
        "S2S_ISSUER_URL",
        "S2S_TOKEN_URL",
        "S2S_TOKEN_AUDIENCE",
        "S2S_REDIS_URL",
    ] {
        if flags.values.get(single).is_some_and(|v| v.len() > 1) {
            let (flag, _) = CALLER_FLAGS.iter().find(|(_, n)| *n == single).unwrap();
            return Err(format!("{flag} is given more than once"));
        }
    }
    if flags.values.contains_key("S2S_ISSUER_URL") && flags.values.contains_key("S2S_TOKEN_URL") {
        return Err("give exactly one of --issuer and --token-url".into());
    }
    if flags.positional.len() > 1 {
        return Err("only one TARGET_URL".into());
    }
    let file: CallerFile = flags.file()?;
    let lookup = flags.over(env, &["S2S_ISSUER_URL", "S2S_TOKEN_URL"]);
    let client = file
        .client
        .with_env_from(&lookup)
        .map_err(|e| e.to_string())?;
    let grant = client.grant().map_err(|e| e.to_string())?;
    let number = |name: &str, flag: &str, from_file: Option<usize>| match lookup(name) {
        None => Ok(from_file.unwrap_or(1)),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("{flag} needs a positive number, not `{v}`")),
    };
    let target = flags
        .positional
        .first()
        .cloned()
        .or_else(|| env("S2S_TARGET_URL"))
        .or(file.target)
        .ok_or("TARGET_URL is required (or `target` in the file, or S2S_TARGET_URL)")?;
    Ok(Caller {
        grant,
        requests: number("S2S_REQUESTS", "--requests", file.requests)?,
        concurrency: number("S2S_CONCURRENCY", "--concurrency", file.concurrency)?,
        redis_url: lookup("S2S_REDIS_URL").or(file.redis_url),
        client,
        target,
    })
}

fn split_list(list: &str) -> Vec<String> {
    list.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(Into::into)
        .collect()
}

/// What a caller run did: a count per status (or `error (…)`), and how many tokens it got.
#[derive(Debug)]
pub struct CallReport {
    /// Answers by status code.
    pub counts: BTreeMap<String, usize>,
    /// Tokens fetched successfully.
    pub tokens_fetched: u64,
    /// Tokens taken from the shared cache (with a Redis URL).
    pub tokens_shared: u64,
}

/// Gets the first token (so that a refused client is reported once, clearly), then calls the
/// target `requests` times, `concurrency` at a time. The token goes to the configured
/// `destinations` only, or, when none are configured, to the target's origin.
pub async fn run_caller(setup: Caller) -> Result<CallReport, String> {
    use s2s_auth::token::{TokenManager, TokenSource};
    use std::sync::Arc;

    let mut tokens = TokenManager::new(setup.grant).map_err(|e| e.to_string())?;
    if let Some(url) = &setup.redis_url {
        let cache = s2s_auth::token::RedisCache::open(url).map_err(|e| e.to_string())?;
        tokens = tokens.with_shared_cache(cache);
    }
    if let Err(e) = tokens.token().await {
        let mut message = format!("could not get a token: {e}");
        if let Some(oauth) = e.oauth_error() {
            message.push_str(&format!("\n  OAuth error: {oauth}"));
        }
        return Err(message);
    }
    let mut middleware = setup.client.authorize_middleware(tokens.clone());
    if setup.client.destinations().is_empty() {
        let origin = reqwest::Url::parse(&setup.target)
            .map_err(|e| format!("TARGET_URL `{}` is not a URL: {e}", setup.target))?
            .origin()
            .ascii_serialization();
        middleware = middleware.allow_origin(origin);
    }
    middleware.check().map_err(|e| e.to_string())?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(setup.concurrency));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..setup.requests {
        let (client, target, semaphore) = (client.clone(), setup.target.clone(), semaphore.clone());
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
    let m = tokens.metrics();
    Ok(CallReport {
        counts,
        tokens_fetched: m.fetches - m.failures,
        tokens_shared: m.shared_hits,
    })
}
