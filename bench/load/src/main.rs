//! Load harness for s2s-auth (issue 6). See BENCHMARKS.md at the repository root for what it
//! measures and how to read it.
//!
//! ```text
//! cargo run --release --manifest-path bench/load/Cargo.toml -- \
//!     [--duration-secs 5] [--rounds 4] [--connections 64] [--configs verify,handwritten] [--smoke]
//!     (`--only` is another name of `--configs`)
//! cargo run --release --manifest-path bench/load/Cargo.toml -- memory
//! ```
//!
//! One process serves every configuration (each on its own port, only one under load at a
//! time); for each run it starts the load generator, this same binary with `loadgen`, as a
//! child process.

mod configs;
mod cpu;
mod loadgen;
mod memory;
mod outbound;
mod report;
mod services;
mod tokens;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use clap::{Parser, Subcommand};
use jsonwebtoken::Algorithm;

use crate::{
    configs::{Auth, Config, Server, Tokens},
    report::{CacheDelta, Report, Sample, Setup},
    tokens::SigningKey,
};

#[derive(Parser, Debug)]
#[command(
    about = "Load harness: axum hello behind VerifyLayer, jwt-authorizer, a hand-written \
                   jsonwebtoken check, and no auth"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The load generator (started by the harness, one run at a time).
    #[command(hide = true)]
    Loadgen(loadgen::LoadgenArgs),
    /// Resident memory of the validated-token cache at its default bound.
    Memory(memory::MemoryArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Seconds of load before each measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Rounds over all configurations; each figure is the median across rounds.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Only the configurations whose id contains one of these (comma-separated); no-auth always
    /// runs. Ids: no-auth, verify-hot-es256, verify-cold-es256, verify-cold-nocache-es256,
    /// handwritten-{hot,cold}-es256, jwt-authorizer-{hot,cold}-es256, *-rs256, *-eddsa,
    /// gateway-hot-es256, nginx-proxy, issuer-*, oidc-provider-repeat-client,
    /// outbound-authorize-warm.
    #[arg(long, visible_alias = "only", value_delimiter = ',')]
    configs: Vec<String>,
    /// Upper bound of the cold request rate, to size the fresh-token list of each cold run
    /// (rate × (warm-up + duration) tokens are signed before the run).
    #[arg(long, default_value_t = 25_000)]
    cold_tokens_per_sec: usize,
    /// Distinct ES256 (and EdDSA) tokens in the pool cycled for verifiers without a cache.
    #[arg(long, default_value_t = 10_000)]
    pool: usize,
    /// Distinct RS256 tokens in the pool (RS256 signing is slow).
    #[arg(long, default_value_t = 2_000)]
    rsa_pool: usize,
    /// Tokio worker threads of the server and of the load generator (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write the report (default: BENCHMARKS.md at the repository root).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report only.
    #[arg(long)]
    no_write: bool,
    /// Skip the memory measurement.
    #[arg(long)]
    no_memory: bool,
    /// Calls of each service per round of the outbound warm-path timing (goal 6); it runs
    /// 2 × rounds + 1 rounds.
    #[arg(long, default_value_t = 1_000_000)]
    outbound_calls: usize,
    /// A few seconds per configuration, one round, small pools, nothing written: keeps the
    /// harness building and working (`.ci/run`). Fails on any answer other than 200.
    #[arg(long)]
    smoke: bool,
    /// Upper bound of the first-time-client rate of the issuer, to size the accounts created
    /// before each of its runs (rate × (warm-up + duration)).
    #[arg(long, default_value_t = 120)]
    new_clients_per_sec: usize,
}

impl RunArgs {
    fn smoke(mut self) -> RunArgs {
        self.duration_secs = self.duration_secs.min(2.0);
        self.warmup_secs = self.warmup_secs.min(0.5);
        self.rounds = 1;
        self.pool = self.pool.min(1_000);
        self.rsa_pool = self.rsa_pool.min(200);
        self.cold_tokens_per_sec = self.cold_tokens_per_sec.min(10_000);
        self.outbound_calls = self.outbound_calls.min(100_000);
        self.no_write = true;
        self
    }
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Loadgen(args)) => loadgen::main(args),
        Some(Command::Memory(args)) => memory::main(args),
        None => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = cli.run.threads {
                runtime.worker_threads(threads);
            }
            let runtime = runtime.enable_all().build().expect("tokio runtime");
            runtime.block_on(run(cli.run));
        }
    }
}

/// A configuration, its running server, and the token file of its non-fresh tokens.
struct Target {
    config: Config,
    server: Server,
    tokens: Option<PathBuf>,
}

async fn run(args: RunArgs) {
    let args = if args.smoke { args.smoke() } else { args };
    let selected = configs::select(&args.configs);
    let dir = std::env::temp_dir().join(format!("s2s-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // Keys, the JWKS endpoint, pre-generated tokens.
    let algs: Vec<Algorithm> = {
        let mut v: Vec<_> = selected.iter().filter_map(|c| c.alg).collect();
        v.sort_by_key(|a| format!("{a:?}"));
        v.dedup();
        v
    };
    let keys: BTreeMap<String, Arc<SigningKey>> = algs
        .iter()
        .map(|alg| (format!("{alg:?}"), Arc::new(SigningKey::generate(*alg))))
        .collect();
    let jwks_url = configs::serve_jwks(tokens::jwks(
        &keys.values().map(|k| k.as_ref()).collect::<Vec<_>>(),
    ))
    .await;
    eprintln!("JWKS at {jwks_url}");

    let mut token_bytes = BTreeMap::new();
    let mut hot_files = BTreeMap::new();
    let mut pool_files = BTreeMap::new();
    for (name, key) in &keys {
        let hot = key.token(u64::MAX);
        token_bytes.insert(name.clone(), hot.len());
        let path = dir.join(format!("hot-{name}.txt"));
        tokens::write_token_file(&path, &[hot]).expect("write hot token");
        hot_files.insert(name.clone(), path);
        if selected
            .iter()
            .any(|c| c.tokens == Tokens::Pool && c.alg == Some(key.alg))
        {
            let n = if key.alg == Algorithm::RS256 {
                args.rsa_pool
            } else {
                args.pool
            };
            eprintln!("signing a pool of {n} {name} tokens…");
            let pool = signed(key, n).await;
            let path = dir.join(format!("pool-{name}.txt"));
            tokens::write_token_file(&path, &pool).expect("write token pool");
            pool_files.insert(name.clone(), path);
        }
    }

    let mut targets: Vec<Target> = Vec::with_capacity(selected.len());
    for config in selected {
        let name = config.alg.map(|a| format!("{a:?}"));
        let key = name.as_ref().map(|n| keys[n].as_ref());
        // The proxies forward to the no-auth service, which always runs first.
        let upstream = targets
            .first()
            .map(|t| t.server.url.clone())
            .unwrap_or_default();
        let server = configs::start(&config, &jwks_url, key, &upstream, &dir).await;
        let tokens = match config.tokens {
            Tokens::None | Tokens::Fresh | Tokens::NewClients => None,
            Tokens::Hot => name.as_ref().map(|n| hot_files[n].clone()),
            Tokens::Pool => name.as_ref().map(|n| pool_files[n].clone()),
            Tokens::Client => {
                let path = dir.join(format!("client-{}.txt", config.id));
                let headers = server.headers.as_deref().expect("the client's credentials");
                tokens::write_header_file(&path, headers).expect("write the client file");
                Some(path)
            }
        };
        eprintln!("{:<28} {}", config.id, server.url);
        targets.push(Target {
            config,
            server,
            tokens,
        });
    }

    // Round-robin over the configurations; odd rounds in reverse, to cancel drift.
    let mut samples = Vec::new();
    for round in 0..args.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for i in order {
            let target = &targets[i];
            let fresh = (target.config.tokens == Tokens::Fresh).then(|| dir.join("fresh.txt"));
            if let Some(path) = &fresh {
                let key = &keys[&format!("{:?}", target.config.alg.expect("alg"))];
                let n = (args.cold_tokens_per_sec as f64 * (args.warmup_secs + args.duration_secs))
                    .ceil() as usize;
                eprintln!("signing {n} fresh tokens for {}…", target.config.id);
                let list = signed(key, n).await;
                tokens::write_token_file(path, &list).expect("write fresh tokens");
            }
            let new_clients =
                (target.config.tokens == Tokens::NewClients).then(|| dir.join("new-clients.txt"));
            if let Some(path) = &new_clients {
                let issuer = target.server.issuer.as_ref().expect("issuer");
                let n = (args.new_clients_per_sec as f64 * (args.warmup_secs + args.duration_secs))
                    .ceil() as usize;
                eprintln!("creating {n} accounts for {}…", target.config.id);
                let headers = issuer.basic_headers(n, 4).await;
                tokens::write_header_file(path, &headers).expect("write the clients file");
            }
            let before = target.server.verifier.as_ref().map(|v| v.metrics());
            let own_before = cpu::process_cpu_us();
            let pid = target.server.pid();
            let tree_before = pid.and_then(cpu::tree_cpu_us);
            let result = loadgen::spawn(
                &target.server.url,
                target.config.connections.unwrap_or(args.connections),
                args.duration_secs,
                args.warmup_secs,
                args.threads,
                fresh
                    .as_deref()
                    .or(new_clients.as_deref())
                    .or(target.tokens.as_deref()),
                target
                    .config
                    .auth
                    .token_endpoint()
                    .then_some(services::TOKEN_BODY),
            )
            .await;
            // CPU time per answered request (the generator is another process): this
            // process's, or the external server's processes'.
            let per_request =
                |us: f64| (result.requests_all > 0).then(|| us / result.requests_all as f64);
            let own = per_request(cpu::process_cpu_us() - own_before);
            let auth = target.config.auth;
            let (cpu_us_per_request, upstream_cpu_us_per_request) = if auth.in_process() {
                (own, None)
            } else {
                let tree = pid.and_then(cpu::tree_cpu_us).zip(tree_before);
                (
                    tree.and_then(|(after, before)| per_request(after - before)),
                    own.filter(|_| auth.upstream_in_process()),
                )
            };
            let cache = target.server.verifier.as_ref().zip(before).map(|(v, b)| {
                let a = v.metrics();
                CacheDelta {
                    hits: a.cache_hits - b.cache_hits,
                    misses: a.cache_misses - b.cache_misses,
                }
            });
            eprintln!(
                "round {}/{} {:<28} {:>8.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs{}{}{}{}",
                round + 1,
                args.rounds,
                target.config.id,
                result.rps,
                result.p50_us,
                result.p99_us,
                cpu_us_per_request.map_or(String::new(), |c| format!("  cpu {c:.1} µs/req")),
                upstream_cpu_us_per_request
                    .map_or(String::new(), |c| format!(" + upstream {c:.1}")),
                cache.map_or(String::new(), |c| format!(
                    "  cache {} hits / {} misses",
                    c.hits, c.misses
                )),
                if result.non_200.is_empty() && result.errors == 0 {
                    String::new()
                } else {
                    format!(
                        "  NON-200 {:?} ({:?}), errors {} ({:?})",
                        result.non_200,
                        result.first_non_200_body,
                        result.errors,
                        result.first_error
                    )
                },
            );
            for path in fresh.iter().chain(&new_clients) {
                let _ = std::fs::remove_file(path);
            }
            samples.push(Sample {
                config: target.config.id,
                result,
                cache,
                cpu_us_per_request,
                upstream_cpu_us_per_request,
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    // After the load runs: nothing else keeps the cores of this process busy meanwhile.
    let outbound = if configs::selected(&args.configs, outbound::ID) {
        Some(outbound::measure(args.outbound_calls, 2 * args.rounds + 1).await)
    } else {
        None
    };

    let memory = if args.no_memory {
        None
    } else {
        Some(memory::spawn().await)
    };

    let setup = Setup {
        command: command_line(),
        duration_secs: args.duration_secs,
        warmup_secs: args.warmup_secs,
        rounds: args.rounds,
        connections: args.connections,
        pool: args.pool,
        rsa_pool: args.rsa_pool,
        smoke: args.smoke,
        token_bytes,
        skipped: skipped(&targets),
    };
    let configs: Vec<Config> = targets.into_iter().map(|t| t.config).collect();
    let report = Report::new(&configs, &samples, setup, memory, outbound);
    println!("\n{}", report.tables());
    let problems = report.problems();
    for problem in &problems {
        println!("PROBLEM: {problem}");
    }
    if args.smoke {
        // The smoke run checks that every configuration answered, not the figures.
        if !problems.is_empty() {
            std::process::exit(1);
        }
        return;
    }
    if !args.no_write {
        let out = args.out.unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .nth(2)
                .expect("bench/load is two levels below the repository root")
                .join("BENCHMARKS.md")
        });
        write(&out, &report.markdown());
    }
}

/// Signs `n` tokens off the async runtime (the servers stay responsive, and idle).
async fn signed(key: &Arc<SigningKey>, n: usize) -> Vec<String> {
    let key = key.clone();
    tokio::task::spawn_blocking(move || key.tokens(n))
        .await
        .expect("signing task")
}

/// What the design wanted but this run does not measure, for the report.
fn skipped(targets: &[Target]) -> Vec<String> {
    let mut out = vec![
        "VerifyLayer cold with the cache on for RS256: a fresh RS256 token per request would \
         need ~1 ms of signing each before the run; RS256 is compared with `.token_cache(0)`."
            .to_owned(),
    ];
    if targets
        .iter()
        .any(|t| t.config.alg == Some(Algorithm::EdDSA))
    {
        out.push(
            "VerifyLayer cold with the cache on for EdDSA: its miss + insert path is that of \
             `verify-cold-es256`; EdDSA's cold rows compare the verification itself, cache off."
                .to_owned(),
        );
    }
    let ran = |auth: Auth| targets.iter().any(|t| t.config.auth == auth);
    if !ran(Auth::JwtAuthorizer) {
        out.push("jwt-authorizer: not selected in this run (--configs).".into());
    }
    out
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut command = "cargo run --release --manifest-path bench/load/Cargo.toml".to_owned();
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    command
}

fn write(path: &Path, markdown: &str) {
    match std::fs::write(path, markdown) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
