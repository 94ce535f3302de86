//! The `s2s-gateway` binary as an operator runs it: `check` on good and bad files, and a real
//! process stopped with SIGTERM while a request is in flight. The upstream is a hyper server
//! in this test that holds the request until the test releases it ([`Notify`]); every wait is
//! bounded, none sleeps for a race.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, StatusCode, body::Bytes};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    sync::{Notify, mpsc},
};

const BIN: &str = env!("CARGO_BIN_EXE_s2s-gateway");

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("s2s-gateway-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A configuration file of `tests/configs`.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name)
}

/// `s2s-gateway check --config path`: the exit code, stdout and stderr.
fn check(path: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// `check` refuses the file at `path` (exit code 2) and prints each `(LINE:COLUMN, message)` of
/// `errors` as `PATH:LINE:COLUMN: error: message`; returns stderr.
#[track_caller]
fn assert_refused(path: &Path, errors: &[(&str, &str)]) -> String {
    let (code, _, stderr) = check(path);
    assert_eq!(code, Some(2), "{stderr}");
    let name = path.display();
    for (location, message) in errors {
        assert!(
            stderr.contains(&format!("{name}:{location}: error: {message}")),
            "{location} {message}:\n{stderr}"
        );
    }
    stderr
}

#[test]
fn check_prints_every_error_with_its_location() {
    let path = fixture("bad.toml");
    let stderr = assert_refused(
        &path,
        &[
            ("1:10", "`localhost` is not a socket address"),
            ("8:12", "unknown upstream `ap`; known: `app`"),
            ("9:19", "`get` is not an HTTP method"),
        ],
    );
    // A route needs a token, and no issuer is configured: reported without a location.
    let name = path.display();
    assert!(
        stderr.contains(&format!("{name}: error: routes require tokens")),
        "{stderr}"
    );
    assert!(stderr.contains("4 errors"), "{stderr}");
    // The source line and a caret under the value.
    assert!(
        stderr.contains("8 | upstream = \"ap\"\n  |            ^^^^\n"),
        "{stderr}"
    );
}

#[test]
fn check_locates_errors_in_the_hardening_keys() {
    assert_refused(
        &fixture("hardening.toml"),
        &[
            ("1:20", "`10.0.0.0/33` is not a CIDR block"),
            (
                "1:46",
                "`10.0.0.1/8` has address bits set beyond its prefix length: write `10.0.0.0/8`",
            ),
            (
                "14:14",
                "audience `billing-api` is not among any [[issuer]]'s audiences",
            ),
            (
                "17:10",
                "`/docs;x` is not a usable path prefix: path segment parameters",
            ),
            (
                "20:13",
                "a public route requires no token, so it cannot require audiences",
            ),
        ],
    );
    // Wrong types stop the parse, located like any other.
    for (text, location, message) in [
        (
            "trusted_proxies = \"10.0.0.0/8\"\n",
            "1:19",
            "invalid type: string",
        ),
        (
            "[paths]\ncase_insensitive = \"yes\"\n",
            "2:20",
            "invalid type: string",
        ),
        (
            "[paths]\nallow_matrix = true\n",
            "2:1",
            "unknown field `allow_matrix`",
        ),
        ("require_at_jwt = 1\n", "1:18", "invalid type: integer"),
    ] {
        let file = TempFile::new("types", text);
        assert_refused(&file.0, &[(location, message)]);
    }
}

#[test]
fn check_accepts_a_good_file_and_a_syntax_error_is_located() {
    let (code, stdout, stderr) = check(&fixture("good.toml"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("ok (1 routes, 1 issuers, 1 upstreams; listens on 127.0.0.1:8080)"),
        "{stdout}"
    );
    let syntax = TempFile::new("syntax", "[[route]]\nprefix = \"/\"\nupstream = app\n");
    assert_refused(&syntax.0, &[("3:12", "")]);
    // A file that is not there.
    let (code, _, stderr) = check(Path::new("/nonexistent/gateway.toml"));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot read"), "{stderr}");
}

/// An upstream whose every request waits for `release`, signalling `arrived` first.
async fn holding_upstream() -> (SocketAddr, Arc<Notify>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (a, r) = (arrived.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (a, r) = (a.clone(), r.clone());
            let service =
                hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let (a, r) = (a.clone(), r.clone());
                    async move {
                        a.notify_one();
                        r.notified().await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, arrived, release)
}

#[tokio::test]
async fn sigterm_stops_accepting_and_finishes_the_requests_in_flight() {
    let (upstream, arrived, release) = holding_upstream().await;
    let config = TempFile::new(
        "sigterm",
        &format!(
            r#"listen = "127.0.0.1:0"

[upstreams.app]
url = "http://{upstream}"

[[route]]
prefix = "/"
upstream = "app"
public = true
"#
        ),
    );
    let mut child = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&config.0)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read the log as it comes (the pipe must never fill); hand each line to the test.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let addr: SocketAddr = within("the listening line", async {
        loop {
            let line = rx
                .recv()
                .await
                .expect("the gateway exited before listening");
            log.push(line.clone());
            if line.contains("listening")
                && let Some(addr) = line.split("addr=").nth(1)
            {
                break addr.trim().parse().unwrap();
            }
        }
    })
    .await;

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(format!("http://{addr}/work"))
        .body(Empty::new())
        .unwrap();
    let in_flight = tokio::spawn(client.request(request));
    within("the request at the upstream", arrived.notified()).await;

    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    within("new connections refused", async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the gateway exited with a request in flight"
    );

    release.notify_one();
    let response = within("the in-flight answer", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "done");
    let status = within("the gateway to exit", child.wait()).await.unwrap();
    assert!(status.success(), "{status}");
    // The child has exited: its log ends.
    within("the end of the log", async {
        while let Some(line) = rx.recv().await {
            log.push(line);
        }
    })
    .await;
    let log = log.join("\n");
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("status=200"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}
