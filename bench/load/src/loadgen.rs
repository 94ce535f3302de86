//! The load generator, a separate process (`s2s-load loadgen`): N HTTP/1.1 keep-alive
//! connections, each sending GET / back to back for the duration, recording every latency.
//! It prints one JSON line, a [`LoadResult`], on stdout. The parent starts it with [`spawn`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, StatusCode,
    client::conn::http1,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue},
};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::{
    net::TcpStream,
    sync::{Barrier, watch},
};

/// `s2s-load loadgen`: not meant to be run by hand.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// Base URL of the service, `http://127.0.0.1:port`.
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// `Authorization` header values, one per line: one line repeats one token, more lines are
    /// handed out in turn across all connections. Without it, no header is sent.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Sends `POST /token` with this `application/x-www-form-urlencoded` body instead of
    /// `GET /`.
    #[arg(long)]
    pub token_form: Option<String>,
}

/// What one run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// Requests answered in the measured window (any status).
    pub requests: u64,
    /// Requests answered in all, warm-up included (what the server's CPU time is divided by).
    #[serde(default)]
    pub requests_all: u64,
    /// The measured window, in seconds (after the warm-up).
    pub seconds: f64,
    /// `requests` per second of the window.
    pub rps: f64,
    /// Latency percentiles (nearest rank) and the maximum, in microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Answers other than 200, by status (warm-up included): must stay empty.
    pub non_200: BTreeMap<u16, u64>,
    /// The body of the first of them, to say why.
    pub first_non_200_body: Option<String>,
    /// Transport errors (each followed by a new connection).
    pub errors: u64,
    /// The first of them, as text.
    pub first_error: Option<String>,
    /// Tokens handed out (warm-up included), and how many distinct ones there were.
    pub tokens_sent: u64,
    pub tokens_distinct: u64,
}

impl LoadResult {
    /// Whether a token list ran out and was reused from its start.
    pub fn tokens_wrapped(&self) -> bool {
        self.tokens_distinct > 1 && self.tokens_sent > self.tokens_distinct
    }
}

/// Runs the load generator (the `loadgen` subcommand) and prints its result.
pub fn main(args: LoadgenArgs) {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(run(args));
    println!(
        "{}",
        serde_json::to_string(&result).expect("result as JSON")
    );
}

/// The tokens to send, shared by every connection.
struct TokenSource {
    values: Vec<HeaderValue>,
    next: AtomicUsize,
}

impl TokenSource {
    fn load(path: &PathBuf) -> TokenSource {
        let file = Bytes::from(std::fs::read(path).expect("read the token file"));
        let mut values = Vec::new();
        let mut start = 0;
        // Slices of one buffer: no copy per token.
        for (i, b) in file.iter().enumerate() {
            if *b == b'\n' {
                if i > start {
                    values.push(
                        HeaderValue::from_maybe_shared(file.slice(start..i))
                            .expect("a header value per line"),
                    );
                }
                start = i + 1;
            }
        }
        assert!(!values.is_empty(), "no token in {}", path.display());
        TokenSource {
            values,
            next: AtomicUsize::new(0),
        }
    }

    fn next(&self) -> HeaderValue {
        if self.values.len() == 1 {
            return self.values[0].clone();
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.values[i % self.values.len()].clone()
    }

    fn sent(&self) -> u64 {
        self.next.load(Ordering::Relaxed) as u64
    }
}

/// What one connection saw.
#[derive(Default)]
struct ConnStats {
    latencies_ns: Vec<u64>,
    requests: u64,
    requests_all: u64,
    non_200: BTreeMap<u16, u64>,
    first_non_200_body: Option<String>,
    errors: u64,
    first_error: Option<String>,
}

async fn run(args: LoadgenArgs) -> LoadResult {
    let tokens = args.tokens.as_ref().map(|p| Arc::new(TokenSource::load(p)));
    let authority = args
        .url
        .strip_prefix("http://")
        .expect("an http:// URL")
        .trim_end_matches('/')
        .to_owned();
    let host = HeaderValue::from_str(&authority).expect("host header");
    let form = args.token_form.clone().map(Bytes::from);
    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let duration = Duration::from_secs_f64(args.duration_secs);
    // Connections are opened first; the clock starts when all are up.
    let connected = Arc::new(Barrier::new(args.connections + 1));
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (authority, host, tokens) = (authority.clone(), host.clone(), tokens.clone());
        let form = form.clone();
        let (connected, mut start, stop) = (connected.clone(), start_rx.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&authority).await.expect("connect");
            connected.wait().await;
            let started = *start.wait_for(Option::is_some).await.expect("start");
            let measure_from = started.expect("start time") + warmup;
            let mut stats = ConnStats {
                latencies_ns: Vec::with_capacity(16 * 1024),
                ..ConnStats::default()
            };
            while !stop.load(Ordering::Relaxed) {
                let mut request = match &form {
                    None => Request::get("/"),
                    Some(_) => Request::post("/token").header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    ),
                }
                .header(HOST, host.clone());
                if let Some(tokens) = &tokens {
                    request = request.header(AUTHORIZATION, tokens.next());
                }
                let body = form.clone().unwrap_or_default();
                let request = request.body(Full::new(body)).expect("request");
                let sent = Instant::now();
                let answer = async {
                    sender.ready().await?;
                    let response = sender.send_request(request).await?;
                    let status = response.status();
                    let body = response.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>((status, body))
                }
                .await;
                let done = Instant::now();
                match answer {
                    Ok((status, body)) => {
                        stats.requests_all += 1;
                        if sent >= measure_from {
                            stats.requests += 1;
                            stats.latencies_ns.push((done - sent).as_nanos() as u64);
                        }
                        if status != StatusCode::OK {
                            *stats.non_200.entry(status.as_u16()).or_default() += 1;
                            stats.first_non_200_body.get_or_insert_with(|| {
                                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
                            });
                        }
                    }
                    Err(e) => {
                        stats.errors += 1;
                        stats.first_error.get_or_insert_with(|| e.to_string());
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match connect(&authority).await {
                            Ok(s) => sender = s,
                            Err(e) => {
                                stats.first_error.get_or_insert_with(|| e.to_string());
                                break;
                            }
                        }
                    }
                }
            }
            stats
        }));
    }
    connected.wait().await;
    let started = Instant::now();
    start_tx.send_replace(Some(started));
    tokio::time::sleep_until((started + warmup + duration).into()).await;
    stop.store(true, Ordering::Relaxed);

    let mut all = ConnStats::default();
    for task in tasks {
        let s = task.await.expect("connection task");
        all.latencies_ns.extend(s.latencies_ns);
        all.requests += s.requests;
        all.requests_all += s.requests_all;
        for (status, n) in s.non_200 {
            *all.non_200.entry(status).or_default() += n;
        }
        all.first_non_200_body = all.first_non_200_body.or(s.first_non_200_body);
        all.errors += s.errors;
        all.first_error = all.first_error.or(s.first_error);
    }
    all.latencies_ns.sort_unstable();
    let pct = |p: f64| percentile_us(&all.latencies_ns, p);
    let seconds = duration.as_secs_f64();
    LoadResult {
        requests: all.requests,
        requests_all: all.requests_all,
        seconds,
        rps: all.requests as f64 / seconds,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        max_us: all.latencies_ns.last().map_or(0.0, |n| *n as f64 / 1e3),
        non_200: all.non_200,
        first_non_200_body: all.first_non_200_body,
        errors: all.errors,
        first_error: all.first_error,
        tokens_sent: tokens.as_ref().map_or(0, |t| t.sent()),
        tokens_distinct: tokens.as_ref().map_or(0, |t| t.values.len() as u64),
    }
}

/// A keep-alive HTTP/1.1 connection (`TCP_NODELAY`), its driver spawned.
async fn connect(
    authority: &str,
) -> Result<http1::SendRequest<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds.
fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns[rank - 1] as f64 / 1e3
}

/// Runs the load generator as a child process against `url` and returns what it measured.
pub async fn spawn(
    url: &str,
    connections: usize,
    duration_secs: f64,
    warmup_secs: f64,
    threads: Option<usize>,
    tokens: Option<&std::path::Path>,
    token_form: Option<&str>,
) -> LoadResult {
    let mut command = tokio::process::Command::new(std::env::current_exe().expect("own path"));
    command
        .arg("loadgen")
        .args(["--url", url])
        .args(["--connections", &connections.to_string()])
        .args(["--duration-secs", &duration_secs.to_string()])
        .args(["--warmup-secs", &warmup_secs.to_string()])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    if let Some(threads) = threads {
        command.args(["--threads", &threads.to_string()]);
    }
    if let Some(tokens) = tokens {
        command.arg("--tokens").arg(tokens);
    }
    if let Some(form) = token_form {
        command.args(["--token-form", form]);
    }
    let output = command.output().await.expect("run the load generator");
    assert!(
        output.status.success(),
        "the load generator failed: {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("load generator output {line:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::percentile_us;

    #[test]
    fn nearest_rank() {
        let ns: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&ns, 0.50), 50.0);
        assert_eq!(percentile_us(&ns, 0.99), 99.0);
        assert_eq!(percentile_us(&ns, 1.0), 100.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
