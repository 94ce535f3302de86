//! Medians across rounds, ratios, goals, and BENCHMARKS.md.

use std::{collections::BTreeMap, fmt::Write as _, time::SystemTime};

use crate::{
    configs::{Config, ISSUER_REPEAT, NGINX, NO_AUTH, OIDC_PROVIDER, Tokens},
    loadgen::LoadResult,
    memory::MemoryResult,
    outbound::OutboundResult,
};

/// The validated-token cache counters of one run (VerifyLayer configurations only).
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheDelta {
    pub hits: u64,
    pub misses: u64,
}

/// One run of one configuration.
#[derive(Clone, Debug)]
pub struct Sample {
    pub config: &'static str,
    pub result: LoadResult,
    pub cache: Option<CacheDelta>,
    /// The server's CPU time per request: this process's, or the external server's process
    /// tree's (nginx, oidc-provider).
    pub cpu_us_per_request: Option<f64>,
    /// For nginx: this process's CPU time per request during its run, which is the hello
    /// upstream it proxies to (the gateway serves it in its own process, so its figure holds it).
    pub upstream_cpu_us_per_request: Option<f64>,
}

/// How the run was set up, for the document.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The command line that ran the benchmark.
    pub command: String,
    /// Measured seconds per run.
    pub duration_secs: f64,
    /// Seconds of load before each measurement.
    pub warmup_secs: f64,
    /// Rounds over all configurations; each figure is the median across rounds.
    pub rounds: usize,
    /// Concurrent keep-alive connections of the load generator.
    pub connections: usize,
    /// Token length in bytes, per algorithm name.
    pub token_bytes: BTreeMap<String, usize>,
    /// Distinct ES256 (and EdDSA) tokens in the pool cycled for verifiers without a cache.
    pub pool: usize,
    /// Distinct RS256 tokens in that pool.
    pub rsa_pool: usize,
    /// Configurations left out, with why.
    pub skipped: Vec<String>,
    /// A `--smoke` run.
    pub smoke: bool,
}

/// A configuration's medians across rounds.
#[derive(Clone, Debug)]
struct Row {
    config: Config,
    rounds: usize,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    non_200: BTreeMap<u16, u64>,
    errors: u64,
    hit_rate: Option<f64>,
    wrapped: bool,
    cpu_us: Option<f64>,
    /// nginx: the hello upstream's CPU time per request in the same runs.
    upstream_cpu_us: Option<f64>,
}

impl Row {
    /// CPU time per request with the upstream's (nginx's plus the hello service's; the
    /// gateway's figure already holds its upstream, served in the same process).
    fn cpu_with_upstream_us(&self) -> Option<f64> {
        Some(self.cpu_us? + self.upstream_cpu_us.unwrap_or(0.0))
    }
}

/// The comparisons reported besides "× no-auth": (subject, reference).
const COMPARISONS: &[(&str, &str)] = &[
    ("verify-hot-es256", "handwritten-hot-es256"),
    ("verify-hot-es256", "jwt-authorizer-hot-es256"),
    ("verify-cold-es256", "handwritten-cold-es256"),
    ("verify-cold-es256", "jwt-authorizer-cold-es256"),
    ("verify-cold-nocache-es256", "handwritten-cold-es256"),
    ("verify-cold-nocache-es256", "jwt-authorizer-cold-es256"),
    ("verify-cold-nocache-rs256", "handwritten-cold-rs256"),
    ("verify-cold-nocache-rs256", "jwt-authorizer-cold-rs256"),
    ("verify-cold-nocache-eddsa", "handwritten-cold-eddsa"),
    ("verify-cold-nocache-eddsa", "jwt-authorizer-cold-eddsa"),
    ("gateway-hot-es256", NGINX),
    (ISSUER_REPEAT, OIDC_PROVIDER),
    ("issuer-first-time", ISSUER_REPEAT),
    ("issuer-first-time", OIDC_PROVIDER),
];

/// What a goal compares.
#[derive(Clone, Copy)]
enum Measure {
    /// Throughput ratio subject ÷ reference, at least the bound.
    Throughput,
    /// p99 ratio, at most the bound.
    P99,
    /// Server CPU time per request ratio, at most the bound.
    Cpu,
    /// Latency the subject adds over no-auth at p50 (or p99) ÷ what the reference adds, at
    /// most the bound.
    AddedP50,
    AddedP99,
}

/// A goal of issue 14, checked on the medians.
struct Goal {
    what: &'static str,
    subject: &'static str,
    reference: &'static str,
    measure: Measure,
    bound: f64,
}

const GOALS: &[Goal] = &[
    Goal {
        what: "1. hot path (VerifyLayer + RequireScope) ≥ 0.97× no-auth throughput",
        subject: "verify-hot-es256",
        reference: NO_AUTH,
        measure: Measure::Throughput,
        bound: 0.97,
    },
    Goal {
        what: "1. hot path p99 ≤ 1.10× no-auth",
        subject: "verify-hot-es256",
        reference: NO_AUTH,
        measure: Measure::P99,
        bound: 1.10,
    },
    Goal {
        what: "1. hot path server CPU per request ≤ 1.05× no-auth",
        subject: "verify-hot-es256",
        reference: NO_AUTH,
        measure: Measure::Cpu,
        bound: 1.05,
    },
    Goal {
        what: "2. cold ≥ 0.97× hand-written jsonwebtoken + aws-lc-rs, ES256",
        subject: "verify-cold-nocache-es256",
        reference: "handwritten-cold-es256",
        measure: Measure::Throughput,
        bound: 0.97,
    },
    Goal {
        what: "2. cold, cache on (miss + insert), ≥ 0.97× hand-written, ES256",
        subject: "verify-cold-es256",
        reference: "handwritten-cold-es256",
        measure: Measure::Throughput,
        bound: 0.97,
    },
    Goal {
        what: "2. cold ≥ 0.97× hand-written, RS256",
        subject: "verify-cold-nocache-rs256",
        reference: "handwritten-cold-rs256",
        measure: Measure::Throughput,
        bound: 0.97,
    },
    Goal {
        what: "2. cold ≥ 0.97× hand-written, EdDSA (Ed25519)",
        subject: "verify-cold-nocache-eddsa",
        reference: "handwritten-cold-eddsa",
        measure: Measure::Throughput,
        bound: 0.97,
    },
    Goal {
        what: "3. issuer, repeat client, tokens/s ≥ 5× oidc-provider 8",
        subject: ISSUER_REPEAT,
        reference: OIDC_PROVIDER,
        measure: Measure::Throughput,
        bound: 5.0,
    },
    Goal {
        what: "4. gateway (with verification) throughput ≥ nginx proxying (without)",
        subject: "gateway-hot-es256",
        reference: NGINX,
        measure: Measure::Throughput,
        bound: 1.0,
    },
    Goal {
        what: "4. gateway latency added at p50 ≤ nginx's",
        subject: "gateway-hot-es256",
        reference: NGINX,
        measure: Measure::AddedP50,
        bound: 1.0,
    },
    Goal {
        what: "4. gateway latency added at p99 ≤ nginx's",
        subject: "gateway-hot-es256",
        reference: NGINX,
        measure: Measure::AddedP99,
        bound: 1.0,
    },
];

/// Memory goal: at most 1.5 KiB per entry of the validated-token cache at its default bound.
const MEMORY_GOAL_BYTES_PER_ENTRY: f64 = 1536.0;

/// Outbound goal: `AuthorizeLayer`'s warm path adds less than this per request.
const OUTBOUND_GOAL_NS: f64 = 100.0;

pub struct Report {
    rows: Vec<Row>,
    setup: Setup,
    memory: Option<MemoryResult>,
    outbound: Option<OutboundResult>,
}

impl Report {
    pub fn new(
        configs: &[Config],
        samples: &[Sample],
        setup: Setup,
        memory: Option<MemoryResult>,
        outbound: Option<OutboundResult>,
    ) -> Report {
        let rows = configs
            .iter()
            .filter_map(|config| {
                let runs: Vec<&Sample> = samples.iter().filter(|s| s.config == config.id).collect();
                if runs.is_empty() {
                    return None;
                }
                let med =
                    |f: fn(&LoadResult) -> f64| median(runs.iter().map(|s| f(&s.result)).collect());
                let mut non_200 = BTreeMap::new();
                for s in &runs {
                    for (status, n) in &s.result.non_200 {
                        *non_200.entry(*status).or_default() += n;
                    }
                }
                let cache =
                    runs.iter()
                        .filter_map(|s| s.cache)
                        .fold(None, |acc: Option<CacheDelta>, c| {
                            let a = acc.unwrap_or_default();
                            Some(CacheDelta {
                                hits: a.hits + c.hits,
                                misses: a.misses + c.misses,
                            })
                        });
                Some(Row {
                    config: config.clone(),
                    rounds: runs.len(),
                    rps: med(|r| r.rps),
                    p50_us: med(|r| r.p50_us),
                    p99_us: med(|r| r.p99_us),
                    non_200,
                    errors: runs.iter().map(|s| s.result.errors).sum(),
                    hit_rate: cache.map(|c| c.hits as f64 / (c.hits + c.misses).max(1) as f64),
                    wrapped: runs.iter().any(|s| s.result.tokens_wrapped()),
                    cpu_us: median_of(runs.iter().map(|s| s.cpu_us_per_request)),
                    upstream_cpu_us: median_of(runs.iter().map(|s| s.upstream_cpu_us_per_request)),
                })
            })
            .collect();
        Report {
            rows,
            setup,
            memory,
            outbound,
        }
    }

    fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.config.id == id)
    }

    /// Problems a reader must know about: non-200 answers, transport errors, token lists that
    /// ran out (a "fresh" run then reused tokens; not a problem of a smoke run).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for row in &self.rows {
            if !row.non_200.is_empty() {
                out.push(format!(
                    "{}: answers other than 200: {:?}",
                    row.config.id, row.non_200
                ));
            }
            if row.errors > 0 {
                out.push(format!(
                    "{}: {} transport errors",
                    row.config.id, row.errors
                ));
            }
            // A smoke run checks that each configuration answers, with lists kept short on
            // purpose; only a measurement must not reuse its fresh tokens.
            if row.wrapped
                && !self.setup.smoke
                && matches!(row.config.tokens, Tokens::Fresh | Tokens::NewClients)
            {
                out.push(format!(
                    "{}: the fresh-token (or new-client) list ran out and was reused (raise \
                     --cold-tokens-per-sec or --new-clients-per-sec)",
                    row.config.id
                ));
            }
        }
        out
    }

    /// The tables: results, comparisons, goals (markdown, also what is printed).
    pub fn tables(&self) -> String {
        let mut out = String::new();
        let base = self.row(NO_AUTH);
        out.push_str(
            "| configuration | req/s | p50 µs | p99 µs | × no-auth req/s | p99 × no-auth | \
             server CPU µs/req | cache hits | non-200 |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for row in &self.rows {
            let (rps_ratio, p99_ratio) = base.map_or((f64::NAN, f64::NAN), |b| {
                (row.rps / b.rps, row.p99_us / b.p99_us)
            });
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
                row.config.id,
                row.rps,
                row.p50_us,
                row.p99_us,
                rps_ratio,
                p99_ratio,
                match (row.cpu_us, row.upstream_cpu_us) {
                    (Some(c), Some(u)) => format!("{c:.2} (+ {u:.2} upstream)"),
                    (Some(c), None) => format!("{c:.2}"),
                    (None, _) => "–".into(),
                },
                row.hit_rate
                    .map_or("–".into(), |h| format!("{:.1} %", h * 100.0)),
                row.non_200.values().sum::<u64>() + row.errors,
            );
        }

        let comparisons: Vec<_> = COMPARISONS
            .iter()
            .filter_map(|(a, b)| Some((self.row(a)?, self.row(b)?)))
            .collect();
        if !comparisons.is_empty() {
            out.push_str(
                "\n| comparison | req/s ratio | p99 ratio | server CPU/req ratio |\n\
                 |---|--:|--:|--:|\n",
            );
            for (a, b) in comparisons {
                let cpu = a
                    .cpu_with_upstream_us()
                    .zip(b.cpu_with_upstream_us())
                    .map_or("–".into(), |(a, b)| format!("{:.2}", a / b));
                let _ = writeln!(
                    out,
                    "| {} ÷ {} | {:.2} | {:.2} | {cpu} |",
                    a.config.id,
                    b.config.id,
                    a.rps / b.rps,
                    a.p99_us / b.p99_us
                );
            }
        }

        out.push_str("\n| goal (issue 14) | measured | bound | met |\n|---|--:|--:|:-:|\n");
        for goal in GOALS {
            let measured = self.goal_value(goal);
            let (bound, met) = match goal.measure {
                Measure::Throughput => (
                    format!("≥ {:.2}×", goal.bound),
                    measured.map(|v| v >= goal.bound),
                ),
                _ => (
                    format!("≤ {:.2}×", goal.bound),
                    measured.map(|v| v <= goal.bound),
                ),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {bound} | {} |",
                goal.what,
                measured.map_or("not run".into(), |v| format!("{v:.2}×")),
                match met {
                    Some(true) => "met",
                    Some(false) => "not met",
                    None => "–",
                }
            );
        }
        if let Some(m) = &self.memory {
            let _ = writeln!(
                out,
                "| 5. validated-token cache ≤ 1.5 KiB per entry at its default bound | {:.0} B ({:.2} KiB) | ≤ 1536 B | {} |",
                m.bytes_per_entry,
                m.bytes_per_entry / 1024.0,
                if m.bytes_per_entry <= MEMORY_GOAL_BYTES_PER_ENTRY {
                    "met"
                } else {
                    "not met"
                }
            );
        }
        if let Some(o) = &self.outbound {
            let _ = writeln!(
                out,
                "| 6. outbound warm path < 100 ns added (AuthorizeLayer over a ready service) | \
                 {:.1} ns | < {OUTBOUND_GOAL_NS:.0} ns | {} |",
                o.added_ns,
                if o.added_ns < OUTBOUND_GOAL_NS {
                    "met"
                } else {
                    "not met"
                }
            );
        }
        if let (Some(first), Some(repeat)) =
            (self.row("issuer-first-time"), self.row(ISSUER_REPEAT))
        {
            let _ = writeln!(
                out,
                "\nIssuer, first-time client (argon2id on every request): {:.0} tokens/s, {:.3}× \
                 the repeat client{}.",
                first.rps,
                first.rps / repeat.rps,
                self.row(OIDC_PROVIDER).map_or(String::new(), |o| format!(
                    ", {:.2}× oidc-provider's repeat client",
                    first.rps / o.rps
                ))
            );
        }
        if let (Some(g), Some(n), Some(b)) = (self.row("gateway-hot-es256"), self.row(NGINX), base)
        {
            let _ = writeln!(
                out,
                "\nLatency added over the no-auth service reached directly: gateway {:.0} µs at p50, \
                 {:.0} µs at p99; nginx {:.0} µs at p50, {:.0} µs at p99.",
                g.p50_us - b.p50_us,
                g.p99_us - b.p99_us,
                n.p50_us - b.p50_us,
                n.p99_us - b.p99_us,
            );
            if let (Some(gc), Some(nc), Some(uc), Some(bc)) =
                (g.cpu_us, n.cpu_us, n.upstream_cpu_us, b.cpu_us)
            {
                let _ = writeln!(
                    out,
                    "\nServer CPU per request, the hello upstream included: gateway {gc:.2} µs (one \
                     process: gateway and upstream), nginx {:.2} µs ({nc:.2} µs its processes, \
                     {uc:.2} µs the upstream during its runs): {:.2}×. Less the upstream's own \
                     cost (the no-auth row, {bc:.2} µs), proxying alone: gateway ≈ {:.2} µs, \
                     nginx {nc:.2} µs.",
                    nc + uc,
                    gc / (nc + uc),
                    gc - bc,
                );
            }
        }
        out
    }

    /// The measured ratio of `goal`, when both rows ran.
    fn goal_value(&self, goal: &Goal) -> Option<f64> {
        let (a, b) = (self.row(goal.subject)?, self.row(goal.reference)?);
        let base = self.row(NO_AUTH)?;
        Some(match goal.measure {
            Measure::Throughput => a.rps / b.rps,
            Measure::P99 => a.p99_us / b.p99_us,
            Measure::Cpu => a.cpu_us? / b.cpu_us?,
            Measure::AddedP50 => (a.p50_us - base.p50_us) / (b.p50_us - base.p50_us),
            Measure::AddedP99 => (a.p99_us - base.p99_us) / (b.p99_us - base.p99_us),
        })
    }

    /// The whole BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let s = &self.setup;
        let mut out = String::from("# Benchmarks\n\n");
        out.push_str(
            "Load harness of issues 6 and 14: an axum 0.8 hello service (GET / → \"hello\") behind each \
             kind of authentication, served the same way (one tokio multi-thread runtime, \
             `axum::serve`, HTTP/1.1, `TCP_NODELAY`), driven by a Rust load generator in a \
             separate process (hyper 1 client, one keep-alive connection per task, requests \
             back to back). Generator and server share the machine's cores, as wrk would. \
             Source: [`bench/load`](bench/load); criterion micro-benchmarks are in \
             `crates/s2s-auth/benches`.\n\n",
        );
        if s.smoke || s.duration_secs < 5.0 || s.rounds < 3 {
            let _ = writeln!(
                out,
                "> **Short run** ({} s × {} round(s)): a smoke test of the harness, not a \
                 measurement. Re-run with the defaults (5 s × 4 rounds) on an idle machine \
                 before reading anything into the numbers.\n",
                s.duration_secs, s.rounds
            );
        }
        out.push_str("## Machine and versions\n\n");
        let _ = writeln!(out, "- date: {} (UTC)", today());
        let _ = writeln!(
            out,
            "- CPU: {} × {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model()
        );
        let _ = writeln!(out, "- memory: {}", mem_total());
        let _ = writeln!(out, "- kernel: {}", kernel());
        let _ = writeln!(out, "- {}", env!("LOAD_RUSTC_VERSION"));
        let _ = writeln!(
            out,
            "- crates (bench/load/Cargo.lock): {}",
            crate_versions()
        );
        let _ = writeln!(
            out,
            "- tokens: {} (header `{{alg, typ: at+jwt, kid}}`, registered claims, scopes and \
             Keycloak-like extras)",
            s.token_bytes
                .iter()
                .map(|(alg, n)| format!("{alg} {n} bytes"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            out,
            "\nCommand: `{}`\n\n{} connections, {} s warm-up then {} s measured per run, {} \
             round(s) alternating over the configurations (odd rounds in reverse order); each \
             figure is the median over the rounds.\n",
            s.command, s.connections, s.warmup_secs, s.duration_secs, s.rounds
        );
        out.push_str("## Results\n\n");
        out.push_str(&self.tables());
        let problems = self.problems();
        if !problems.is_empty() {
            out.push_str("\n**Problems in this run:**\n\n");
            for p in problems {
                let _ = writeln!(out, "- {p}");
            }
        }
        if !s.skipped.is_empty() {
            out.push_str("\nNot measured:\n\n");
            for p in &s.skipped {
                let _ = writeln!(out, "- {p}");
            }
        }
        if let Some(m) = &self.memory {
            let _ = writeln!(
                out,
                "\n## Validated-token cache memory\n\n`s2s-load memory`: a `Verifier` whose cache \
                 is filled with {} distinct ES256 tokens of {:.0} bytes (its default bound, \
                 `DEFAULT_TOKEN_CACHE_ENTRIES`); `VmRSS` grew from {} KiB to {} KiB: **{:.1} MiB, \
                 {:.0} bytes per entry** (an entry holds the SHA-256 digest of the token, not \
                 the token, with its claims and decoded payload). A second pass over the same tokens hit the cache {} times \
                 of {}.",
                m.entries,
                m.token_bytes_avg,
                m.rss_before_kib,
                m.rss_after_kib,
                m.growth_bytes as f64 / (1024.0 * 1024.0),
                m.bytes_per_entry,
                m.hits_second_pass,
                m.entries
            );
        }
        if let Some(o) = &self.outbound {
            let _ = writeln!(
                out,
                "\n## Outbound warm path\n\n`AuthorizeLayer` with a warm `TokenManager` (a \
                 token of an s2s-issuer started for it, `client_secret_basic`) over a ready \
                 `service_fn` answering 200, against that service alone, in this process, timed in \
                 the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): {} calls of each per round (`poll_ready`, a GET with three headers built as a \
                 client does, `call`, the future polled once and ready), {} rounds alternating \
                 which goes first. Medians: bare {:.1} ns, through `AuthorizeLayer` {:.1} ns per \
                 call; **{:.1} ns added per request** (median of the rounds' differences). \
                 Compare with `cargo bench -p s2s-auth --bench authorize` (criterion, same \
                 request).",
                o.calls, o.rounds, o.bare_ns, o.authorize_ns, o.added_ns
            );
        }
        out.push_str("\n## How to read\n\n");
        out.push_str(
            "- **req/s** is answered requests per second in the measured window; **p50/p99** \
             the latency of single requests as the generator saw them (connect excluded). \
             **× no-auth** divides by the baseline of the same run, which cancels most of the \
             machine's speed; alternating rounds cancel drift. The generator shares the cores \
             with the server, so absolute req/s understate a dedicated server; the ratios are \
             what the goals are about.\n\
             - **cache hits** is the validated-token cache's hit rate during the runs (VerifyLayer \
             only): ~100 % for hot, ~0 % for cold proves each ran the path it claims to.\n\
             - **non-200** counts answers other than 200 plus transport errors; anything but 0 \
             makes the row meaningless.\n\
             - Hot: one token repeated on every connection (a service-to-service caller reuses \
             its token for its lifetime). Cold: a token never seen before on every request \
             (`verify-cold-es256`), or a pool of distinct tokens cycled for verifiers without a \
             cache, for which every request is a full verification anyway.\n",
        );
        let _ = writeln!(
            out,
            "- Pools: {} ES256 tokens (as many EdDSA), {} RS256 tokens (RS256 signing is too slow to sign a \
             fresh token per request, so RS256 is compared with the cache off).\n\
             - jwt-authorizer 0.15 (its latest release) depends on axum 0.7 and jsonwebtoken 9 \
             (ring); its tower `AuthorizationLayer` is mounted on the axum 0.8 router through \
             a response adapter (`bench/load/src/configs.rs`, `Adapted`), which only wraps \
             the response type. It runs in JWKS mode (`from_jwks_url`) against the same \
             endpoint and keys as VerifyLayer, checking iss, aud, exp and nbf.\n\
             - The hand-written check is an `axum::middleware::from_fn_with_state` calling \
             `jsonwebtoken::decode` (11, aws-lc-rs) with a `DecodingKey` from the JWK and a \
             `Validation` for the same alg, iss, aud, exp and nbf.\n\
             - VerifyLayer rows run with `RequireScopeLayer::all([\"orders:read\"])` on the route, \
             as a protected service does. **server CPU µs/req** is the user + system time of \
             the harness process (every server but nginx and oidc-provider runs in it; the load \
             generator is a separate process) over the run, warm-up included, divided by the \
             requests answered in it. For nginx and oidc-provider it is that of their processes \
             instead (`/proc/<pid>/stat` of nginx's master and workers, of the node process, \
             with their reaped children; 10 ms ticks). The gateway's figure includes the hello \
             upstream (it runs in the same process); nginx's does not, and the `(+ … upstream)` \
             beside it is the harness process's CPU during nginx's runs, i.e. the same \
             upstream: the CPU ratio of gateway ÷ nginx in the comparisons adds it to nginx's.\n\
             - Gateway and nginx forward to the `no-auth` service of the same run (its own row is \
             the direct baseline); nginx (Debian's `/usr/sbin/nginx`, `worker_processes auto`, \
             upstream keep-alive, no access log) checks nothing, the gateway verifies the token \
             and the scope and adds identity headers. \"Latency added\" is each one's p50/p99 \
             minus the direct service's.\n\
             - Token endpoints: `POST /token` with `client_secret_basic` and \
             `grant_type=client_credentials&scope=orders:read`, ES256-signed JWT access tokens \
             from both. s2s-issuer runs with the product's argon2id cost and in-memory SQLite, \
             rate limits off; oidc-provider 8 (installed with npm into the target directory) \
             with one client and its `resourceIndicators` feature issuing JWT access tokens, \
             `NODE_ENV=production`, one Node.js process (its usual deployment).",
            s.pool, s.rsa_pool
        );
        out.push_str("\nConfigurations:\n\n");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "- `{}` ({} round(s)): {}",
                row.config.id, row.rounds, row.config.about
            );
        }
        // Figures of other suites, written by hand: kept across regenerations.
        out.push('\n');
        out.push_str(OTHER_SUITES);
        out
    }
}

/// The hand-written section "Figures from other suites", appended verbatim to BENCHMARKS.md.
const OTHER_SUITES: &str = include_str!("../other-suites.md");

/// The median of figures every run has, or `None`.
fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.collect::<Option<Vec<f64>>>().map(median)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The value of the first line of `/proc/{file}` that starts with `key` (what follows it, trimmed
/// of white space and a `:`).
fn proc_value(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{file}")).ok()?;
    let rest = text.lines().find_map(|l| l.strip_prefix(key))?;
    Some(rest.trim_start().trim_start_matches(':').trim().to_owned())
}

fn cpu_model() -> String {
    proc_value("cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into())
}

fn mem_total() -> String {
    proc_value("meminfo", "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.1} GiB", kib / (1024.0 * 1024.0)),
        )
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| format!("Linux {}", s.trim()))
}

/// Versions of the crates that matter, from this harness's lock file.
fn crate_versions() -> String {
    const NAMES: &[&str] = &[
        "s2s-auth",
        "axum",
        "hyper",
        "tokio",
        "jsonwebtoken",
        "aws-lc-rs",
        "ring",
        "moka",
        "jwt-authorizer",
    ];
    let lock = include_str!("../Cargo.lock");
    let mut found: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"'));
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take())
            && NAMES.contains(&n)
        {
            found.entry(n).or_default().push(v.trim_matches('"'));
        }
    }
    NAMES
        .iter()
        .filter_map(|n| found.get(n).map(|v| format!("{n} {}", v.join(" + "))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Today's date (UTC), `YYYY-MM-DD`.
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::{OTHER_SUITES, Report, Setup, civil_from_days, median};

    #[test]
    fn regeneration_keeps_the_figures_of_other_suites() {
        let setup = Setup {
            command: String::new(),
            duration_secs: 5.0,
            warmup_secs: 1.0,
            rounds: 4,
            connections: 64,
            token_bytes: Default::default(),
            pool: 1,
            rsa_pool: 1,
            skipped: Vec::new(),
            smoke: false,
        };
        let markdown = Report::new(&[], &[], setup, None, None).markdown();
        assert!(OTHER_SUITES.starts_with("## Figures from other suites"));
        assert!(markdown.ends_with(&format!("\n\n{OTHER_SUITES}")));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
