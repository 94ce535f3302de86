//! s2s-gateway in front of real third-party upstreams, which resolve paths and read headers the
//! way production servers do:
//!
//! * **Apache Tomcat** (Debian `tomcat10`): strips `;parameters` from every path segment, then
//!   resolves `..`, so `/docs/..;/orders/secret.txt` is `/orders/secret.txt` to it;
//! * **gunicorn** (PyPI) with `header_map = "dangerous"`: the WSGI environ is CGI-style, so
//!   `X_Auth_Subject` and `X-Auth-Subject` both become `HTTP_X_AUTH_SUBJECT` (joined with `,`
//!   when both arrive); it also trusts `X-Forwarded-Proto` from 127.0.0.1, as a server behind a
//!   local proxy is set up to;
//! * **nginx** (Debian `nginx`) serving files with `merge_slashes on` (its default), so
//!   `//orders/secret.txt` is `/orders/secret.txt` to it.
//!
//! Every trick is first sent straight to the upstream, which must answer it with the protected
//! content (so the case proves that the upstream really resolves it), then through the gateway,
//! which must answer 400 `invalid_request` without forwarding it: Tomcat's and nginx's access
//! logs must not show it (each request carries a unique `probe` query; a barrier request sent
//! afterwards, seen in the log, shows the log is current). A valid token reaches the protected
//! content on its plain path.
//!
//! Each server is a child process of this test binary (one instance per server, shared by the
//! tests of the file), on a free port of 127.0.0.1, with its own temporary directory holding its
//! configuration, content and logs. A small `sh` wrapper holds the server: when the wrapper's
//! stdin closes (the [`Process`] is dropped, or this test process ends however it ends) it stops
//! the server and removes the directory. Readiness is polled over HTTP, never waited for by time.
//!
//! Where the servers are found: `S2S_CATALINA_HOME` (default `/usr/share/tomcat10`, Debian's
//! layout; `java` on `PATH`), `S2S_NGINX` (default `nginx` on `PATH`, then `/usr/sbin/nginx`),
//! `S2S_GUNICORN` (default `upstreams-venv/bin/gunicorn` in the cargo target directory, where
//! `.ci/run` installs the pinned version, then `gunicorn` on `PATH`). A missing server fails the
//! tests that need it under `CI=true` and prints a loud `SKIPPED` banner otherwise.

use std::{
    ffi::OsString,
    fmt::Write as _,
    fs,
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use jsonwebtoken::Algorithm;
use s2s_gateway::{Config, Gateway};
use s2s_tests::{
    keys::{self, KeyServer, TestKey},
    peer::is_ci,
};
use serde_json::{Map, Value};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

const AUD: &str = "orders-api";
const TOMCAT_SECRET: &str = "TOMCAT-SECRET-ORDERS";
const NGINX_SECRET: &str = "NGINX-SECRET-ORDERS";

/// How long a server may take to answer its readiness probe (a JVM on a busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Bounded waits
// ---------------------------------------------------------------------------------------------

/// Awaits `future` for at most 10 s.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

/// Runs `"$@"` in the background and stops it when stdin closes. A server that exits by itself
/// makes the wrapper exit with its status and keeps the directory (its log tells why); a server
/// stopped on request has its directory removed.
const WRAPPER: &str = r#"
exec 3<&0
"$@" &
server=$!
(read -r _ <&3; : >"$S2S_UPSTREAM_DIR/.stopping"; kill "$server" 2>/dev/null) &
watcher=$!
wait "$server"
status=$?
if [ -e "$S2S_UPSTREAM_DIR/.stopping" ]; then rm -rf "$S2S_UPSTREAM_DIR"; else kill "$watcher" 2>/dev/null; fi
exit "$status"
"#;

/// A third-party server run by this test binary.
struct Process {
    name: &'static str,
    addr: SocketAddr,
    dir: PathBuf,
    wrapper: Child,
    /// Closing it stops the server.
    stop: Option<ChildStdin>,
}

impl Drop for Process {
    fn drop(&mut self) {
        drop(self.stop.take());
        let _ = self.wrapper.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Why a server cannot be used.
enum Unavailable {
    /// Not installed: skipped outside CI.
    Missing(String),
    /// Installed but it did not come up: always a failure.
    Broken(String),
}

/// What a server needs to start in `dir` on `port`.
struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
    /// A path answered 200 with a body containing `ready_body` once the server is up.
    ready_path: &'static str,
    ready_body: &'static str,
}

/// A new, empty directory for one server instance (0755: nginx's workers run as `nobody` when
/// the tests run as root).
fn fresh_dir(name: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    static N: AtomicUsize = AtomicUsize::new(0);
    loop {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("s2s-upstream-{name}-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// A blocking `GET path` (HTTP/1.0): the status and the body, or `None` when nothing answers.
fn probe(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

impl Process {
    /// Starts a server (`setup` writes its files into its directory and says how to run it on
    /// the port) and waits until it answers its readiness probe. A server that exits before it
    /// is ready (say, another process took the port meanwhile) is tried again on a new port, at
    /// most three times.
    fn start(
        name: &'static str,
        setup: impl Fn(&Path, u16) -> io::Result<Launch>,
    ) -> Result<Process, String> {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = fresh_dir(name).map_err(|e| format!("cannot create a directory: {e}"))?;
            let port = free_port();
            let launch = setup(&dir, port).map_err(|e| format!("cannot set up {name}: {e}"))?;
            let log = fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(WRAPPER)
                .arg("s2s-upstream")
                .arg(&launch.program)
                .args(&launch.args)
                .env("S2S_UPSTREAM_DIR", &dir)
                .envs(launch.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&dir)
                .stdin(Stdio::piped())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log);
            let mut wrapper = command
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", launch.program.display()))?;
            let stop = wrapper.stdin.take();
            let mut process = Process {
                name,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir,
                wrapper,
                stop,
            };
            match process.wait_ready(&launch) {
                Ok(()) => return Ok(process),
                Err((true, why)) => last = why,
                Err((false, why)) => return Err(why),
            }
        }
        Err(format!(
            "{name} exited three times before it was ready; last: {last}"
        ))
    }

    /// Polls the readiness probe. `Err((true, why))` when the server exited (worth a retry),
    /// `Err((false, why))` when it is still running but not ready in time.
    fn wait_ready(&mut self, launch: &Launch) -> Result<(), (bool, String)> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.wrapper.try_wait() {
                return Err((true, format!("exited ({status}):\n{}", self.log())));
            }
            match probe(self.addr, launch.ready_path) {
                Some((200, body)) if body.contains(launch.ready_body) => return Ok(()),
                // Up, but not ours or not serving the content: no point in waiting.
                Some((status, body)) if status != 503 && status != 404 => {
                    return Err((
                        false,
                        format!("GET {} answered {status}: {body}", launch.ready_path),
                    ));
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err((
                    false,
                    format!(
                        "not ready after {START_TIMEOUT:?} (GET {} on {}):\n{}",
                        launch.ready_path,
                        self.addr,
                        self.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("logs").join("access.log")).unwrap_or_default()
    }

    /// Which of `markers` the server's access log shows, once a barrier request sent now
    /// (straight to the server, after every request of the caller was answered) shows there.
    async fn logged(&self, barrier_path: &str, markers: &[String]) -> Vec<String> {
        let barrier = marker();
        let answer = raw(self.addr, "GET", &format!("{barrier_path}?{barrier}"), &[]).await;
        assert_eq!(answer.status, 200, "{}: barrier request", self.name);
        within("the barrier in the access log", async {
            while !self.access_log().contains(&barrier) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let log = self.access_log();
        markers
            .iter()
            .filter(|m| log.contains(m.as_str()))
            .cloned()
            .collect()
    }
}

/// A query unique in this process (fixed width, so no marker is part of another).
fn marker() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("probe=p{:08}", N.fetch_add(1, Ordering::SeqCst))
}

/// The server, started on first use; `None` (after a loud banner) when it is missing outside
/// CI. Missing in CI, or installed but broken: the test fails.
fn available(
    cell: &'static OnceLock<Result<Process, Unavailable>>,
    name: &str,
    start: fn() -> Result<Process, Unavailable>,
) -> Option<&'static Process> {
    match cell.get_or_init(start) {
        Ok(process) => Some(process),
        Err(Unavailable::Broken(why)) => panic!("{name} is installed but did not start: {why}"),
        Err(Unavailable::Missing(why)) if is_ci() => {
            panic!("{name} is missing (CI=true): {why}; `.ci/run` installs it")
        }
        Err(Unavailable::Missing(why)) => {
            // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
            let test = std::thread::current()
                .name()
                .unwrap_or("gateway_upstreams")
                .to_owned();
            let _ = writeln!(
                io::stderr().lock(),
                "\n\
                 ************************************************************************\n\
                 SKIPPED: {test}: needs {name}\n\
                 reason: {why}\n\
                 `.ci/run` installs it (see tests/gateway_upstreams.rs); with CI=true this fails\n\
                 ************************************************************************"
            );
            None
        }
    }
}

/// The server or, when it is missing outside CI, return from the test.
macro_rules! require {
    ($server:ident) => {
        match $server() {
            Some(process) => process,
            None => return,
        }
    };
}

/// `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The program named by `var`, else the first of `defaults` that exists.
fn find(var: &str, defaults: impl IntoIterator<Item = Option<PathBuf>>) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        return if path.exists() {
            Ok(path)
        } else {
            Err(format!("{var}={} does not exist", path.display()))
        };
    }
    defaults
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .ok_or_else(|| format!("not found ({var} unset)"))
}

fn broken(e: String) -> Unavailable {
    Unavailable::Broken(e)
}

// --- Tomcat ----------------------------------------------------------------------------------

fn tomcat() -> Option<&'static Process> {
    static TOMCAT: OnceLock<Result<Process, Unavailable>> = OnceLock::new();
    available(&TOMCAT, "Tomcat (Debian tomcat10)", start_tomcat)
}

/// A `ROOT` webapp of static files served by Tomcat's `DefaultServlet`: the public
/// `/docs/index.html` and the protected `/orders/secret.txt`; an access log of request lines.
fn start_tomcat() -> Result<Process, Unavailable> {
    let home = find(
        "S2S_CATALINA_HOME",
        [Some(PathBuf::from("/usr/share/tomcat10"))],
    )
    .map_err(Unavailable::Missing)?;
    let catalina = home.join("bin").join("catalina.sh");
    if !catalina.is_file() {
        return Err(Unavailable::Missing(format!(
            "{} not found",
            catalina.display()
        )));
    }
    if on_path("java").is_none() && std::env::var_os("JAVA_HOME").is_none() {
        return Err(Unavailable::Missing("no `java` on PATH".into()));
    }
    Process::start("tomcat", |dir, port| {
        for sub in ["conf", "logs", "temp", "work"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let root = dir.join("webapps").join("ROOT");
        fs::create_dir_all(root.join("docs"))?;
        fs::create_dir_all(root.join("orders"))?;
        fs::create_dir_all(root.join("WEB-INF"))?;
        fs::write(root.join("docs").join("index.html"), "public docs\n")?;
        fs::write(root.join("orders").join("secret.txt"), TOMCAT_SECRET)?;
        fs::write(
            root.join("WEB-INF").join("web.xml"),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">
  <servlet>
    <servlet-name>default</servlet-name>
    <servlet-class>org.apache.catalina.servlets.DefaultServlet</servlet-class>
  </servlet>
  <servlet-mapping>
    <servlet-name>default</servlet-name>
    <url-pattern>/</url-pattern>
  </servlet-mapping>
</web-app>
"#,
        )?;
        fs::write(
            dir.join("conf").join("server.xml"),
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000"
               maxThreads="8"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs"
               prefix="access" suffix=".log" rotatable="false" buffered="false"
               pattern="%r %s"/>
      </Host>
    </Engine>
  </Service>
</Server>
"#
            ),
        )?;
        Ok(Launch {
            program: catalina.clone(),
            args: vec!["run".into()],
            env: vec![
                ("CATALINA_HOME", home.clone().into()),
                ("CATALINA_BASE", dir.into()),
                (
                    "JAVA_OPTS",
                    "-Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1".into(),
                ),
            ],
            ready_path: "/docs/index.html",
            ready_body: "public docs",
        })
    })
    .map_err(broken)
}

// --- nginx -----------------------------------------------------------------------------------

fn nginx() -> Option<&'static Process> {
    static NGINX: OnceLock<Result<Process, Unavailable>> = OnceLock::new();
    available(&NGINX, "nginx (Debian nginx)", start_nginx)
}

/// nginx serving `html/` (`/index.html` public, `/orders/secret.txt` protected) with its default
/// `merge_slashes on`, written out anyway.
fn start_nginx() -> Result<Process, Unavailable> {
    let nginx = find(
        "S2S_NGINX",
        [on_path("nginx"), Some(PathBuf::from("/usr/sbin/nginx"))],
    )
    .map_err(Unavailable::Missing)?;
    Process::start("nginx", |dir, port| {
        for sub in ["html/orders", "html/x", "logs", "tmp"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        fs::write(dir.join("html").join("index.html"), "public nginx\n")?;
        fs::write(dir.join("html/orders/secret.txt"), NGINX_SECRET)?;
        let d = dir.display();
        fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off;\n\
                 pid {d}/nginx.pid;\n\
                 error_log {d}/logs/error.log;\n\
                 worker_processes 1;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n\
                 \x20 access_log {d}/logs/access.log;\n\
                 \x20 client_body_temp_path {d}/tmp/body;\n\
                 \x20 proxy_temp_path {d}/tmp/proxy;\n\
                 \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n\
                 \x20 uwsgi_temp_path {d}/tmp/uwsgi;\n\
                 \x20 scgi_temp_path {d}/tmp/scgi;\n\
                 \x20 server {{\n\
                 \x20   listen 127.0.0.1:{port};\n\
                 \x20   merge_slashes on;\n\
                 \x20   root {d}/html;\n\
                 \x20 }}\n\
                 }}\n"
            ),
        )?;
        let mut args: Vec<OsString> = vec!["-p".into(), dir.into(), "-c".into()];
        args.push(dir.join("nginx.conf").into());
        args.push("-e".into());
        args.push(dir.join("logs").join("error.log").into());
        Ok(Launch {
            program: nginx.clone(),
            args,
            env: vec![],
            ready_path: "/index.html",
            ready_body: "public nginx",
        })
    })
    .map_err(broken)
}

// --- gunicorn --------------------------------------------------------------------------------

fn gunicorn() -> Option<&'static Process> {
    static GUNICORN: OnceLock<Result<Process, Unavailable>> = OnceLock::new();
    available(&GUNICORN, "gunicorn (PyPI)", start_gunicorn)
}

/// `upstreams-venv/bin/gunicorn` in the target directory of this test binary
/// (`<target>/<profile>/deps/gateway_upstreams-…`).
fn venv_gunicorn() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join("upstreams-venv").join("bin").join("gunicorn"))
        .find(|p| p.is_file())
}

/// gunicorn with `tests/upstreams/echo_app.py`, mapping header names the CGI way
/// (`header_map = "dangerous"`: `X_Auth_Subject` and `X-Auth-Subject` are one variable) and
/// trusting forwarding headers from 127.0.0.1 (its default, spelt out).
fn start_gunicorn() -> Result<Process, Unavailable> {
    let gunicorn = find("S2S_GUNICORN", [venv_gunicorn(), on_path("gunicorn")])
        .map_err(Unavailable::Missing)?;
    let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("upstreams");
    Process::start("gunicorn", |_dir, port| {
        let args = [
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "2",
            "--header-map",
            "dangerous",
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--no-control-socket",
            "--chdir",
            &app_dir.display().to_string(),
            "echo_app:app",
        ];
        Ok(Launch {
            program: gunicorn.clone(),
            args: args.iter().map(OsString::from).collect(),
            // No __pycache__ in the source tree.
            env: vec![("PYTHONDONTWRITEBYTECODE", "1".into())],
            ready_path: "/ready",
            ready_body: "\"/ready\"",
        })
    })
    .map_err(broken)
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: the request target and header names go out byte for byte
// ---------------------------------------------------------------------------------------------

struct Answer {
    status: u16,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The echo app's view of the request headers (`HTTP_*` variables).
    fn environ(&self) -> Map<String, Value> {
        assert_eq!(self.status, 200, "{}", self.text());
        let mut echo = self.json();
        match echo["environ"].take() {
            Value::Object(map) => map,
            other => panic!("no environ in the echo: {other}"),
        }
    }

    /// Why this is not the gateway's refusal of a path (400 `invalid_request`, JSON), if not.
    fn not_refused(&self) -> Option<String> {
        let body: Option<Value> = serde_json::from_slice(&self.body).ok();
        let refused = self.status == 400
            && self.header("content-type") == Some("application/json")
            && body.as_ref().is_some_and(|b| {
                b["error"] == "invalid_request"
                    && b["error_description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty())
            });
        (!refused).then(|| {
            format!(
                "expected 400 invalid_request, got {}: {}",
                self.status,
                self.text()
            )
        })
    }

    /// Why this is neither the refusal of a path nor the 401 challenge of a protected route.
    fn not_refused_nor_challenged(&self) -> Option<String> {
        if self.status == 401 && self.header("www-authenticate").is_some() {
            return None;
        }
        self.not_refused()
            .map(|why| format!("{why} (or 401 with a challenge)"))
    }
}

/// `headers`, then `Authorization: authorization` when there is one.
fn with_authorization<'a>(
    mut headers: Vec<(&'a str, &'a str)>,
    authorization: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    headers
}

/// `method target` with `headers` (sent exactly as given) on a new connection.
async fn raw(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if method == "POST" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    let bytes = within(&format!("{method} {target} on {addr}"), async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await?;
        io::Result::Ok(bytes)
    })
    .await
    .unwrap_or_else(|e| panic!("{method} {target} on {addr}: {e}"));
    parse(&bytes).unwrap_or_else(|| {
        panic!(
            "{method} {target} on {addr}: not an HTTP answer: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

fn parse(bytes: &[u8]) -> Option<Answer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway, its issuer and tokens
// ---------------------------------------------------------------------------------------------

/// A gateway serving in-process on 127.0.0.1:0 in front of `upstream`, with a key server and a
/// signing key for its tokens.
struct Front {
    addr: SocketAddr,
    keys: KeyServer,
    key: TestKey,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Front {
    /// `GET path` through the gateway, with `Authorization: authorization` when given.
    async fn get(&self, path: &str, authorization: Option<&str>) -> Answer {
        raw(
            self.addr,
            "GET",
            path,
            &with_authorization(vec![], authorization),
        )
        .await
    }

    /// `GET path` without a token is served (200) and shows `text`.
    async fn assert_public(&self, path: &str, text: &str) {
        let public = self.get(path, None).await;
        assert_eq!(public.status, 200, "{path}: {}", public.text());
        assert!(public.text().contains(text), "{path}: {}", public.text());
    }

    /// `GET path` with `authorization` (or none) answers `status` (401: with a challenge) and
    /// shows nothing of `secret`.
    async fn assert_refused(
        &self,
        path: &str,
        authorization: Option<&str>,
        status: u16,
        secret: &str,
    ) {
        let refused = self.get(path, authorization).await;
        assert_eq!(refused.status, status, "{path}: {}", refused.text());
        if status == 401 {
            assert!(refused.header("www-authenticate").is_some(), "{path}");
        }
        assert!(!refused.text().contains(secret), "{path}");
    }

    /// `GET path` with `authorization` is exactly the protected file, `secret`.
    async fn assert_served(&self, path: &str, authorization: &str, secret: &str) {
        let allowed = self.get(path, Some(authorization)).await;
        assert_eq!(allowed.status, 200, "{path}: {}", allowed.text());
        assert_eq!(allowed.text(), secret, "{path}");
    }

    /// `routes` are `[[route]]` tables for the upstream `app`; `extra` goes before them
    /// (top-level keys, then any tables).
    async fn start(upstream: &Process, routes: &str, extra: &str) -> Front {
        let key = TestKey::generate(Algorithm::ES256, "k1");
        let keys = KeyServer::start().await;
        keys.set_keys(&[&key]);
        // The issuer and the upstream as inline tables (the same TOML as `[[issuer]]` and
        // `[upstreams.app]`), so that `extra` may add top-level keys after them.
        let config = format!(
            r#"
realm = "orders"
issuer = [{{ id = "{issuer}", jwks_url = "{jwks}", audiences = ["{AUD}"] }}]
upstreams.app.url = "http://{up}"
{extra}
{routes}
"#,
            issuer = keys.issuer(),
            jwks = keys.jwks_url(),
            up = upstream.addr,
        );
        let config = Config::from_toml_str(&config).unwrap_or_else(|e| panic!("{e}\n{config}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gateway = Gateway::from_config(config).await.unwrap();
        let task = tokio::spawn(gateway.serve(listener, std::future::pending()));
        Front {
            addr,
            keys,
            key,
            task,
        }
    }

    /// `Bearer` + a token with the standard claims (`sub` = `client_id` = `svc-orders`) and
    /// `scope`.
    fn bearer(&self, scope: &str) -> String {
        let mut claims = keys::claims(&self.keys.issuer(), AUD);
        claims["scope"] = scope.into();
        format!("Bearer {}", self.key.sign(&claims))
    }

    /// `Bearer` + a token with `scope` but neither `sub` nor `client_id`.
    fn bearer_without_identity(&self, scope: &str) -> String {
        let mut claims = keys::claims(&self.keys.issuer(), AUD);
        claims["scope"] = scope.into();
        let map = claims.as_object_mut().unwrap();
        map.remove("sub");
        map.remove("client_id");
        format!("Bearer {}", self.key.sign(&claims))
    }
}

/// Panics with every failure, one a line, if there are any.
fn assert_none(failures: &[String], what: &str) {
    assert!(
        failures.is_empty(),
        "{} of the {what} failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// How the gateway must answer a trick: `None` when `answer` is that, else why not.
type Refusal = fn(&Answer) -> Option<String>;

/// Each of `tricks` (paths that `upstream` resolves to its protected `secret`), sent with
/// `headers`: straight to the upstream it must serve the secret; through the gateway it must be
/// refused as `refusal` says and never reach the upstream (its access log does not show it).
/// Returns the failures.
async fn refused_tricks(
    upstream: &Process,
    gateway: SocketAddr,
    barrier_path: &str,
    secret: &str,
    tricks: &[&str],
    headers: &[(&str, &str)],
    refusal: Refusal,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut direct = Vec::new();
    let mut through = Vec::new();
    for trick in tricks {
        let m = marker();
        let answer = raw(upstream.addr, "GET", &format!("{trick}?{m}"), &[]).await;
        if answer.status != 200 || !answer.text().contains(secret) {
            failures.push(format!(
                "{trick}: {} itself does not resolve it to the protected file ({}), so the \
                 case proves nothing",
                upstream.name, answer.status
            ));
        }
        direct.push(m);

        let m = marker();
        let answer = raw(gateway, "GET", &format!("{trick}?{m}"), headers).await;
        if answer.text().contains(secret) {
            let token = headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
            failures.push(format!(
                "{trick}: {}the gateway answered {} with the protected content",
                if token { "" } else { "BYPASS, " },
                answer.status
            ));
        } else if let Some(why) = refusal(&answer) {
            failures.push(format!("{trick}: {why}"));
        }
        through.push((trick, m));
    }
    let markers: Vec<String> = direct
        .iter()
        .cloned()
        .chain(through.iter().map(|(_, m)| m.clone()))
        .collect();
    let logged = upstream.logged(barrier_path, &markers).await;
    for m in &direct {
        assert!(
            logged.contains(m),
            "{}'s access log does not show a direct request ({m}): the log check is blind",
            upstream.name
        );
    }
    for (trick, m) in &through {
        if logged.contains(m) {
            failures.push(format!(
                "{trick}: forwarded, {} saw it (access log)",
                upstream.name
            ));
        }
    }
    failures
}

// ---------------------------------------------------------------------------------------------
// Tomcat: path parameters
// ---------------------------------------------------------------------------------------------

/// The gateway's routes to the upstream `app`: `public` (a path prefix) served without a token,
/// `/orders` to tokens with `orders:read`.
fn routes(public: &str) -> String {
    format!(
        r#"
[[route]]
prefix = "{public}"
upstream = "app"
public = true

[[route]]
prefix = "/orders"
upstream = "app"
scopes.any_of = ["orders:read"]
"#
    )
}

/// Paths that Tomcat resolves to `/orders/secret.txt`: it removes `;parameters` from every
/// segment, decodes, merges `//`, then resolves `..`.
const TOMCAT_TRICKS: &[&str] = &[
    "/docs/..;/orders/secret.txt",
    "/docs/..;jsessionid=x/orders/secret.txt",
    "/docs;jsessionid=x/../orders/secret.txt",
    "/docs/%2e%2e;/orders/secret.txt",
    "/docs/%2E%2E;x=y/orders/secret.txt",
    "/docs/.%2e;/orders/secret.txt",
    "/docs/..;a=b;c=d/orders/secret.txt",
    "/docs/x/..;/..;/orders/secret.txt",
    "/docs//..;/orders/secret.txt",
    "/docs/;/../orders/secret.txt",
    "/orders;jsessionid=x/secret.txt",
    "/orders/secret.txt;jsessionid=x",
];

/// Without a token, no path-parameter trick reaches Tomcat's protected file through the
/// gateway, though Tomcat itself serves every one of them.
#[tokio::test]
async fn tomcat_path_parameter_tricks_never_reach_the_protected_file() {
    let tomcat = require!(tomcat);
    let front = Front::start(tomcat, &routes("/docs"), "").await;
    let failures = refused_tricks(
        tomcat,
        front.addr,
        "/docs/index.html",
        TOMCAT_SECRET,
        TOMCAT_TRICKS,
        &[],
        Answer::not_refused,
    )
    .await;
    assert_none(&failures, "Tomcat path-parameter tricks");
}

/// A path with segment parameters is refused by default even with a valid token, and even on
/// the public route: the gateway cannot know what such an upstream makes of it.
#[tokio::test]
async fn tomcat_path_parameters_are_refused_by_default_even_with_a_token() {
    let tomcat = require!(tomcat);
    let front = Front::start(tomcat, &routes("/docs"), "").await;
    let token = front.bearer("orders:read");
    let mut failures = refused_tricks(
        tomcat,
        front.addr,
        "/docs/index.html",
        TOMCAT_SECRET,
        TOMCAT_TRICKS,
        &[("Authorization", &token)],
        Answer::not_refused,
    )
    .await;
    let public = raw(front.addr, "GET", "/docs/index.html;jsessionid=abc", &[]).await;
    if let Some(why) = public.not_refused() {
        failures.push(format!("/docs/index.html;jsessionid=abc: {why}"));
    }
    assert_none(&failures, "paths with segment parameters");
}

/// The plain paths work: the public file without a token, the protected one with a token that
/// has the scope (and not with one that lacks it, nor without a token).
#[tokio::test]
async fn tomcat_serves_the_protected_file_with_a_valid_token_only() {
    let tomcat = require!(tomcat);
    let front = Front::start(tomcat, &routes("/docs"), "").await;

    front.assert_public("/docs/index.html", "public docs").await;
    front
        .assert_refused("/orders/secret.txt", None, 401, TOMCAT_SECRET)
        .await;
    let wrong_scope = front.bearer("billing:read");
    front
        .assert_refused("/orders/secret.txt", Some(&wrong_scope), 403, TOMCAT_SECRET)
        .await;

    let m = marker();
    let token = front.bearer("orders:read");
    front
        .assert_served(&format!("/orders/secret.txt?{m}"), &token, TOMCAT_SECRET)
        .await;
    assert_eq!(
        tomcat
            .logged("/docs/index.html", std::slice::from_ref(&m))
            .await,
        [m]
    );
}

/// With `allow_matrix_parameters`, routing decides on the path Tomcat resolves: `;jsessionid`
/// on a public file is served, `/orders;x/…` is the protected route (401 without a token, the
/// file with one), and a dot segment hidden by parameters (`/docs/..;/orders/…`) never reaches
/// the protected file without a token: refused, or routed to `/orders` and challenged.
#[tokio::test]
async fn tomcat_with_matrix_parameters_allowed_routes_on_the_path_tomcat_resolves() {
    let tomcat = require!(tomcat);
    let front = Front::start(
        tomcat,
        &routes("/docs"),
        "[paths]\nallow_matrix_parameters = true\n",
    )
    .await;
    let token = front.bearer("orders:read");

    front
        .assert_public("/docs/index.html;jsessionid=abc", "public docs")
        .await;
    for path in [
        "/orders;jsessionid=x/secret.txt",
        "/orders/secret.txt;jsessionid=x",
    ] {
        front.assert_refused(path, None, 401, TOMCAT_SECRET).await;
        front.assert_served(path, &token, TOMCAT_SECRET).await;
    }

    let dots: Vec<&str> = TOMCAT_TRICKS
        .iter()
        .copied()
        .filter(|t| t.starts_with("/docs"))
        .collect();
    let failures = refused_tricks(
        tomcat,
        front.addr,
        "/docs/index.html",
        TOMCAT_SECRET,
        &dots,
        &[],
        Answer::not_refused_nor_challenged,
    )
    .await;
    assert_none(&failures, "dot segments hidden by parameters");
}

// ---------------------------------------------------------------------------------------------
// nginx: merged slashes
// ---------------------------------------------------------------------------------------------

/// Paths that nginx (`merge_slashes on`) resolves to `/orders/secret.txt`.
const NGINX_TRICKS: &[&str] = &[
    "//orders/secret.txt",
    "///orders/secret.txt",
    "//orders//secret.txt",
    "//%6frders/secret.txt",
    "/x/..//orders/secret.txt",
    "/x//..//orders/secret.txt",
    "/.//orders/secret.txt",
    "/orders//secret.txt",
];

/// Without a token, no empty-segment trick reaches nginx's protected file through the public
/// catch-all route, though nginx itself serves every one of them.
#[tokio::test]
async fn nginx_empty_segment_tricks_never_reach_the_protected_prefix() {
    let nginx = require!(nginx);
    let front = Front::start(nginx, &routes("/"), "").await;
    let failures = refused_tricks(
        nginx,
        front.addr,
        "/index.html",
        NGINX_SECRET,
        NGINX_TRICKS,
        &[],
        Answer::not_refused,
    )
    .await;
    assert_none(&failures, "nginx empty-segment tricks");
}

/// Empty segments are refused with a valid token too; the plain path serves the file to a
/// token with the scope only.
#[tokio::test]
async fn nginx_serves_the_protected_prefix_with_a_valid_token_only() {
    let nginx = require!(nginx);
    let front = Front::start(nginx, &routes("/"), "").await;
    let token = front.bearer("orders:read");

    front.assert_public("/index.html", "public nginx").await;
    front
        .assert_refused("/orders/secret.txt", None, 401, NGINX_SECRET)
        .await;
    front
        .assert_served("/orders/secret.txt", &token, NGINX_SECRET)
        .await;

    let failures = refused_tricks(
        nginx,
        front.addr,
        "/index.html",
        NGINX_SECRET,
        &["//orders/secret.txt", "/orders//secret.txt"],
        &[("Authorization", &token)],
        Answer::not_refused,
    )
    .await;
    assert_none(&failures, "empty segments with a valid token");
}

// ---------------------------------------------------------------------------------------------
// gunicorn (WSGI): headers
// ---------------------------------------------------------------------------------------------

/// The WSGI variables of the identity headers.
const IDENTITY_VARS: [&str; 3] = [
    "HTTP_X_AUTH_SUBJECT",
    "HTTP_X_AUTH_CLIENT_ID",
    "HTTP_X_AUTH_SCOPES",
];

/// Client headers that a CGI-style stack reads as an identity header.
const IDENTITY_SPOOFS: &[(&str, &str)] = &[
    ("X-Auth-Subject", "admin"),
    ("X_Auth_Subject", "admin"),
    ("x_auth_subject", "admin"),
    ("X-Auth_Subject", "admin"),
    ("X_AUTH-SUBJECT", "admin"),
    ("X_Auth_Client_Id", "evil-client"),
    ("x-auth_client-id", "evil-client"),
    ("X_Auth_Scopes", "orders:admin"),
    ("X-Auth_Scopes", "orders:admin"),
];

fn var<'a>(environ: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    environ.get(name).and_then(Value::as_str)
}

/// The stack really maps underscores: `X_Auth_Subject` sent straight to gunicorn is the app's
/// `HTTP_X_AUTH_SUBJECT`, and joins a real `X-Auth-Subject`.
#[tokio::test]
async fn wsgi_maps_underscores_to_dashes() {
    let wsgi = require!(gunicorn);
    let environ = raw(wsgi.addr, "GET", "/x", &[("X_Auth_Subject", "admin")])
        .await
        .environ();
    assert_eq!(var(&environ, "HTTP_X_AUTH_SUBJECT"), Some("admin"));
    let environ = raw(
        wsgi.addr,
        "GET",
        "/x",
        &[
            ("X-Auth-Subject", "svc-orders"),
            ("X_Auth_Subject", "admin"),
        ],
    )
    .await
    .environ();
    assert_eq!(
        var(&environ, "HTTP_X_AUTH_SUBJECT"),
        Some("svc-orders,admin")
    );
}

/// No spelling of an identity header sent by the client reaches the app, on the public route
/// and on the protected one, whether or not the token carries the claim: the app sees exactly
/// the gateway's values.
#[tokio::test]
async fn wsgi_never_sees_a_client_identity_header_in_any_spelling() {
    let wsgi = require!(gunicorn);
    let front = Front::start(wsgi, &routes("/public"), "").await;
    let full = front.bearer("orders:read");
    let bare = front.bearer_without_identity("orders:read");
    // (case, path, authorization, the identity variables the app must see)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, [Option<&'a str>; 3]);
    let cases: [Case; 3] = [
        ("public route", "/public/echo", None, [None, None, None]),
        (
            "protected route, token with sub and client_id",
            "/orders/echo",
            Some(&full),
            [Some("svc-orders"), Some("svc-orders"), Some("orders:read")],
        ),
        (
            "protected route, token without sub and client_id",
            "/orders/echo",
            Some(&bare),
            [None, None, Some("orders:read")],
        ),
    ];
    let mut failures = Vec::new();
    for (case, path, authorization, expected) in &cases {
        for (name, value) in IDENTITY_SPOOFS {
            let headers = with_authorization(vec![(*name, *value)], *authorization);
            let environ = raw(front.addr, "GET", path, &headers).await.environ();
            for (var_name, want) in IDENTITY_VARS.iter().zip(expected) {
                let got = var(&environ, var_name);
                if got != *want {
                    failures.push(format!(
                        "{case}, `{name}: {value}`: the app saw {var_name}={got:?}, expected {want:?}"
                    ));
                }
            }
        }
    }
    assert_none(&failures, "identity header spellings");
}

/// Method-override headers never reach the app: what the gateway checked is what the app
/// runs.
#[tokio::test]
async fn wsgi_never_sees_method_override_headers() {
    let wsgi = require!(gunicorn);
    let front = Front::start(wsgi, &routes("/public"), "").await;
    let token = front.bearer("orders:read");
    let overrides = [
        ("X-HTTP-Method-Override", "HTTP_X_HTTP_METHOD_OVERRIDE"),
        ("X-HTTP-Method", "HTTP_X_HTTP_METHOD"),
        ("X-Method-Override", "HTTP_X_METHOD_OVERRIDE"),
    ];
    // The app does see them when they reach it.
    let environ = raw(wsgi.addr, "POST", "/x", &[(overrides[0].0, "DELETE")])
        .await
        .environ();
    assert_eq!(var(&environ, overrides[0].1), Some("DELETE"));

    let mut failures = Vec::new();
    for (path, authorization) in [
        ("/public/echo", None),
        ("/orders/echo", Some(token.as_str())),
    ] {
        for (name, var_name) in overrides {
            let headers = with_authorization(vec![(name, "DELETE")], authorization);
            let answer = raw(front.addr, "POST", path, &headers).await;
            assert_eq!(answer.json()["method"], "POST", "{path}");
            if let Some(got) = var(&answer.environ(), var_name) {
                failures.push(format!("{path}, `{name}`: the app saw {var_name}={got}"));
            }
        }
    }
    assert_none(&failures, "method-override headers");
}

/// Forwarding headers sent by a client that is not a trusted proxy never reach the app: it
/// sees the gateway's own view (the client is 127.0.0.1 over plain http), and gunicorn, which
/// trusts `X-Forwarded-Proto` from its local proxy, does not take the request for https.
#[tokio::test]
async fn wsgi_never_sees_forwarding_headers_from_an_untrusted_client() {
    let wsgi = require!(gunicorn);
    let front = Front::start(wsgi, &routes("/public"), "").await;
    let token = front.bearer("orders:read");
    let spoofed = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9;proto=https;host=evil.example"),
        ("X-Real-IP", "203.0.113.9"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
    ];
    // Straight to gunicorn, a forwarded proto from 127.0.0.1 is believed.
    let direct = raw(wsgi.addr, "GET", "/x", &[("X-Forwarded-Proto", "https")]).await;
    assert_eq!(direct.json()["scheme"], "https");

    let mut failures = Vec::new();
    for (path, authorization) in [
        ("/public/echo", None),
        ("/orders/echo", Some(token.as_str())),
    ] {
        let headers = with_authorization(spoofed.to_vec(), authorization);
        let answer = raw(front.addr, "GET", path, &headers).await;
        if answer.json()["scheme"] != "http" {
            failures.push(format!("{path}: the app took the request for https"));
        }
        let environ = answer.environ();
        for (var_name, value) in &environ {
            let value = value.as_str().unwrap_or_default();
            if value.contains("203.0.113.9")
                || value.contains("evil.example")
                || value.contains("https")
            {
                failures.push(format!("{path}: the app saw {var_name}={value}"));
            }
        }
        let xff = var(&environ, "HTTP_X_FORWARDED_FOR");
        if xff != Some("127.0.0.1") {
            failures.push(format!(
                "{path}: HTTP_X_FORWARDED_FOR={xff:?}, expected the gateway's view 127.0.0.1"
            ));
        }
    }
    assert_none(&failures, "client forwarding headers");
}

/// From a configured trusted proxy, forwarding headers in their own spelling are kept (the
/// lists with this hop appended): the refusals above are about the peer, not the headers. Other
/// spellings of them are still removed.
#[tokio::test]
async fn wsgi_sees_the_forwarding_headers_of_a_trusted_proxy() {
    let wsgi = require!(gunicorn);
    let front = Front::start(
        wsgi,
        &routes("/public"),
        r#"trusted_proxies = ["127.0.0.0/8"]"#,
    )
    .await;
    let answer = raw(
        front.addr,
        "GET",
        "/public/echo",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("Forwarded", "for=203.0.113.9;proto=https"),
            ("X-Forwarded-Proto", "https"),
            ("X_Forwarded_For", "198.51.100.7"),
        ],
    )
    .await;
    assert_eq!(answer.json()["scheme"], "https");
    let environ = answer.environ();
    let xff = var(&environ, "HTTP_X_FORWARDED_FOR").unwrap_or_default();
    assert!(
        xff.starts_with("203.0.113.9") && xff.ends_with("127.0.0.1") && !xff.contains("198.51"),
        "HTTP_X_FORWARDED_FOR={xff}"
    );
    let forwarded = var(&environ, "HTTP_FORWARDED").unwrap_or_default();
    assert!(
        forwarded.starts_with("for=203.0.113.9;proto=https") && forwarded.contains("for=127.0.0.1"),
        "HTTP_FORWARDED={forwarded}"
    );
    assert_eq!(var(&environ, "HTTP_X_FORWARDED_PROTO"), Some("https"));
}

/// The CGI mapping applies to every header the gateway manages, not only to identity headers:
/// `X_Forwarded_For`, `X_Real_IP`, `X_HTTP_Method_Override` and the like are the same variables
/// to the app, so none of them may pass either.
#[tokio::test]
async fn wsgi_never_sees_underscore_spellings_of_managed_headers() {
    let wsgi = require!(gunicorn);
    let front = Front::start(wsgi, &routes("/public"), "").await;
    let token = front.bearer("orders:read");
    let spoofed = [
        ("X_Forwarded_For", "203.0.113.9"),
        ("x_forwarded-for", "203.0.113.9"),
        ("X_Real_IP", "203.0.113.9"),
        ("X_Forwarded_Host", "evil.example"),
        ("X_Forwarded_Proto", "https"),
        ("X_HTTP_Method_Override", "DELETE"),
        ("X_HTTP_Method", "DELETE"),
        ("X_Method_Override", "DELETE"),
    ];
    let mut failures = Vec::new();
    for (path, authorization) in [
        ("/public/echo", None),
        ("/orders/echo", Some(token.as_str())),
    ] {
        for (name, value) in spoofed {
            let headers = with_authorization(vec![(name, value)], authorization);
            let answer = raw(front.addr, "POST", path, &headers).await;
            let scheme = answer.json()["scheme"].clone();
            for (var_name, seen) in &answer.environ() {
                let seen = seen.as_str().unwrap_or_default();
                if seen.contains(value) {
                    failures.push(format!(
                        "{path}, `{name}: {value}`: the app saw {var_name}={seen}"
                    ));
                }
            }
            if scheme != "http" {
                failures.push(format!("{path}, `{name}`: the app saw scheme {scheme}"));
            }
        }
    }
    assert_none(&failures, "underscore spellings of managed headers");
}
