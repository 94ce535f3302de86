//! Redis for the shared-token-cache suites: the shared server (`S2S_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), a key prefix per test, and a [`RedisServer`] of a test's own that
//! it may kill and restart (never the shared one).
//!
//! ```no_run
//! use s2s_tests::redis::{RedisServer, redis_url, test_prefix};
//!
//! # async fn demo() {
//! let Some(url) = redis_url().await else { return }; // not in CI, no Redis: SKIPPED, loudly
//! let prefix = test_prefix("my_test"); // keys of this test only
//! let mut own = RedisServer::start().await.expect("redis-server");
//! own.kill();
//! own.restart().await;
//! # let _ = (url, prefix); }
//! ```
//!
//! Under `CI=true` a missing server (or `redis-server` binary) fails the test with what to
//! install; elsewhere a `SKIPPED` banner goes straight to stderr and the test returns early.

use std::{
    io::Write as _,
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::peer::is_ci;

/// What to install when Redis is missing.
const NEED_REDIS: &str = "the shared token cache suite needs Redis 7 (Debian: apt-get install \
                          redis-server; it listens on 127.0.0.1:6379), or S2S_TEST_REDIS_URL";

/// The shared test server's URL: `S2S_TEST_REDIS_URL`, else `redis://127.0.0.1:6379`.
pub fn shared_url() -> String {
    std::env::var("S2S_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The shared server's URL when it answers `PING`; else fails under CI, or skips loudly.
pub async fn redis_url() -> Option<String> {
    let url = shared_url();
    match ping(&url).await {
        Ok(()) => Some(url),
        Err(reason) => unavailable(&format!("no Redis at {url}: {reason}")),
    }
}

/// A prefix no other test (or run) uses: `s2s-test:<test>:<pid>:<nanos>:`.
pub fn test_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("s2s-test:{test}:{}:{nanos}:", std::process::id())
}

/// A connection to the server at `url`, for a test to read (or spoil) keys itself.
pub async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// Reads `key` every 10 ms until it is a string that `done` accepts, and answers it; fails
/// after 10 s (what the cache writes off its callers' path lands within milliseconds).
pub async fn wait_for_value(url: &str, key: &str, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut conn = connect(url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // An error (a key of another type) is "not yet", like an absent key.
        let value: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(key).query_async(&mut conn).await;
        if let Ok(Some(value)) = value
            && done(&value)
        {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the value of {key}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The keys under `prefix` on the server at `url`, with their values.
pub async fn entries(url: &str, prefix: &str) -> Vec<(String, String)> {
    let mut conn = connect(url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    let mut out = Vec::new();
    for key in keys {
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        out.extend(value.map(|v| (key, v)));
    }
    out.sort();
    out
}

/// Deletes the keys under `prefix`.
pub async fn clean(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("a Redis URL");
    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> =
                redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }
}

async fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    }
}

/// Fails (CI) or prints the SKIPPED banner and returns `None`.
fn unavailable<T>(reason: &str) -> Option<T> {
    if is_ci() {
        panic!("{NEED_REDIS} (CI=true): {reason}");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("redis test")
        .to_owned();
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n************************************************************************\n\
         SKIPPED: {test}\nreason: {reason}\n{NEED_REDIS}; with CI=true this fails\n\
         ************************************************************************"
    );
    None
}

/// A `redis-server` of the test's own on a free port of 127.0.0.1, no persistence; killed when
/// dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one (`S2S_REDIS_SERVER`, else `redis-server` on the `PATH`), ready to answer; `None`
    /// when there is no binary (and not CI: then it fails).
    pub async fn start() -> Option<RedisServer> {
        // A free port: bound, then released for the server.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer { port, child: None };
        match server.spawn() {
            Ok(()) => {}
            Err(reason) => return unavailable(&reason),
        }
        server.wait_ready().await;
        Some(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for it to end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty), ready to answer.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().expect("redis-server starts again");
        self.wait_ready().await;
    }

    fn spawn(&mut self) -> Result<(), String> {
        let binary = std::env::var("S2S_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run `{binary}`: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ping(&self.url()).await {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("redis-server on port {} did not start: {e}", self.port)
                }
                Err(_) => {
                    if let Some(status) = self
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten())
                    {
                        panic!("redis-server on port {} exited: {status}", self.port);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
