//! The services measured beside the hello configurations (issue 14): the issuer's token
//! endpoint and panva's `oidc-provider` 8 (installed with npm into the target directory),
//! and the gateway and nginx as reverse proxies to the same hello upstream.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use s2s_issuer::{
    IssuerConfig,
    accounts::{CreatedAccount, NewAccount},
};
use secrecy::ExposeSecret as _;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

use crate::tokens::{AUDIENCE, ISSUER};

/// The scope every token request asks for and every protected route requires.
pub const SCOPE: &str = "orders:read";

/// The body of every token request (`client_secret_basic` carries the client).
pub const TOKEN_BODY: &str = "grant_type=client_credentials&scope=orders%3Aread";

/// The `oidc-provider` major version compared against.
const OIDC_PROVIDER: &str = "oidc-provider@8";

/// Accounts created so far (their names must be unique).
static ACCOUNTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A running `s2s-issuer` with the product's defaults (argon2id at 19 MiB, two passes), rate
/// limits off (one load generator is one address and one client), in-memory SQLite.
pub struct IssuerService {
    pub running: s2s_issuer::Running,
}

impl IssuerService {
    pub async fn start() -> IssuerService {
        let mut config = IssuerConfig::default();
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.db = ":memory:".into();
        config.default_audience = Some(AUDIENCE.into());
        config.rate_limit.per_client = None;
        config.rate_limit.per_ip = None;
        config.rate_limit.failures_per_ip = None;
        config.rate_limit.failures_per_client_ip = None;
        let running = s2s_issuer::spawn(config).await.expect("start the issuer");
        IssuerService { running }
    }

    pub fn url(&self) -> &str {
        &self.running.url
    }

    /// `Authorization: Basic …` values of `n` new accounts, created `parallel` at a time (each
    /// creation hashes its secret with argon2id).
    pub async fn basic_headers(&self, n: usize, parallel: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            if tasks.len() >= parallel.max(1) {
                out.push(
                    tasks
                        .join_next()
                        .await
                        .expect("a task")
                        .expect("account task"),
                );
            }
            let issuer = self.running.issuer.clone();
            tasks.spawn(async move {
                let created = create_account(&issuer).await;
                basic(
                    &created.account.client_id,
                    created.client_secret.expose_secret(),
                )
            });
        }
        while let Some(done) = tasks.join_next().await {
            out.push(done.expect("account task"));
        }
        out
    }

    /// A new account (granted [`SCOPE`]) and its secret.
    pub async fn account(&self) -> CreatedAccount {
        create_account(&self.running.issuer).await
    }
}

async fn create_account(issuer: &s2s_issuer::Issuer) -> CreatedAccount {
    let i = ACCOUNTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("load-{}-{i}", std::process::id());
    issuer
        .accounts()
        .create(NewAccount::new(name).scope(SCOPE))
        .await
        .expect("create an account")
}

/// One token request with `basic`, answered 200: a repeat client's first secret check
/// (argon2id) happens before the run, not in 64 concurrent first requests.
pub async fn request_token(url: &str, basic: &str) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let authority = url.strip_prefix("http://").expect("http URL");
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect to the issuer");
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: {authority}\r\nAuthorization: {basic}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TOKEN_BODY}",
        TOKEN_BODY.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "token request: {answer}"
    );
}

/// `Basic base64(id:secret)` (neither needs form-encoding: hex and base64url).
pub fn basic(client_id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")))
}

/// A child process killed when dropped.
pub struct ChildGuard {
    child: Child,
    /// Asked to stop with SIGTERM first, and waited for: nginx's master then ends its workers,
    /// which outlive a killed master (and would keep running after the harness).
    terminate_first: bool,
}

impl ChildGuard {
    fn new(child: Child) -> ChildGuard {
        ChildGuard {
            child,
            terminate_first: false,
        }
    }

    /// Its process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.terminate_first
            && let Some(pid) = self.pid().and_then(|pid| libc::pid_t::try_from(pid).ok())
        {
            // SAFETY: kill(2) on our own child's pid, which it keeps until it is waited for.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // `kill_on_drop` ends the child itself if it is still there.
    }
}

/// The client of the `oidc-provider` instance.
const OIDC_CLIENT_ID: &str = "load-client";
const OIDC_CLIENT_SECRET: &str = "load-client-secret-0123456789abcdef0123456789abcdef";

/// The Basic header of the `oidc-provider` client.
pub fn oidc_basic() -> String {
    basic(OIDC_CLIENT_ID, OIDC_CLIENT_SECRET)
}

/// `oidc-provider` 8 on 127.0.0.1 (a free port), with one `client_secret_basic` client of the
/// client credentials grant and ES256 JWT access tokens for the bench audience (its
/// `resourceIndicators` feature). Installed with npm under `dir` the first time.
pub async fn start_oidc_provider(dir: &Path) -> (String, ChildGuard) {
    std::fs::create_dir_all(dir).expect("oidc-provider dir");
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        eprintln!("installing {OIDC_PROVIDER} into {}…", dir.display());
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg("--prefix")
            .arg(dir)
            .arg(OIDC_PROVIDER)
            .stdin(Stdio::null())
            .status()
            .await
            .expect("run npm (node and npm are needed for the oidc-provider comparison)");
        assert!(status.success(), "npm install {OIDC_PROVIDER} failed");
    }
    let script = dir.join("server.mjs");
    std::fs::write(&script, oidc_provider_script()).expect("write server.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(dir)
        .env("NODE_ENV", "production")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    // Its first line on stdout is the port it bound.
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    let read = reader.read_line(&mut line);
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("oidc-provider did not start within 30 s")
        .expect("read the port of oidc-provider");
    let port: u16 = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("oidc-provider said {line:?}"));
    (format!("http://127.0.0.1:{port}"), ChildGuard::new(child))
}

fn oidc_provider_script() -> String {
    format!(
        r#"import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const {{ privateKey }} = crypto.generateKeyPairSync('ec', {{ namedCurve: 'P-256' }});
const jwk = {{ ...privateKey.export({{ format: 'jwk' }}), kid: 'load-es256', alg: 'ES256', use: 'sig' }};
const provider = new Provider('{issuer}', {{
  clients: [{{
    client_id: '{client_id}',
    client_secret: '{client_secret}',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
    scope: '{scope}',
  }}],
  jwks: {{ keys: [jwk] }},
  scopes: ['{scope}'],
  features: {{
    devInteractions: {{ enabled: false }},
    clientCredentials: {{ enabled: true }},
    resourceIndicators: {{
      enabled: true,
      defaultResource: () => '{audience}',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({{
        scope: '{scope}',
        audience: '{audience}',
        accessTokenTTL: 3600,
        accessTokenFormat: 'jwt',
        jwt: {{ sign: {{ alg: 'ES256' }} }},
      }}),
    }},
  }},
}});
const server = http.createServer(provider.callback());
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => console.log(`listening ${{server.address().port}}`));
"#,
        issuer = ISSUER,
        client_id = OIDC_CLIENT_ID,
        client_secret = OIDC_CLIENT_SECRET,
        scope = SCOPE,
        audience = AUDIENCE,
    )
}

/// The s2s-gateway in front of `upstream`: one route, `/`, requiring [`SCOPE`], the bench
/// issuer's keys from `jwks_url`. Returns its URL once its keys are loaded.
pub async fn start_gateway(upstream: &str, jwks_url: &str) -> String {
    let config = s2s_gateway::Config::from_toml_str(&format!(
        r#"
listen = "127.0.0.1:0"

[[issuer]]
id = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks_url = "{jwks_url}"

[upstreams.hello]
url = "{upstream}"

[[route]]
prefix = "/"
upstream = "hello"
scopes.all_of = ["{SCOPE}"]
"#
    ))
    .unwrap_or_else(|e| panic!("gateway configuration: {e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let gateway = s2s_gateway::Gateway::from_config(config)
        .await
        .expect("start the gateway");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gateway.is_ready() {
        assert!(Instant::now() < deadline, "the gateway's keys did not load");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::spawn(async move {
        gateway
            .serve(listener, std::future::pending())
            .await
            .expect("gateway")
    });
    url
}

/// Debian's nginx as a plain reverse proxy to `upstream` (no authentication): as many workers
/// as cores, keep-alive connections to the upstream, no access log. Runs from its own prefix
/// under `dir`; returns its URL once it accepts connections.
pub async fn start_nginx(upstream: &str, dir: &Path) -> (String, ChildGuard) {
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|n| Path::new(n).exists() || which(n))
        .expect("nginx is needed for the gateway comparison (apt-get install nginx)");
    std::fs::create_dir_all(dir.join("logs")).expect("nginx dir");
    let port = free_port();
    let upstream = upstream.strip_prefix("http://").expect("http upstream");
    let d = dir.display();
    let conf = format!(
        r#"worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream hello {{
        server {upstream};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        # The load generator keeps its connections for the whole run (nginx closes them
        # after 1,000 requests by default).
        keepalive_requests 100000000;
        location / {{
            proxy_pass http://hello;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("logs/error.log"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start nginx");
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&address).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {address}: see {}",
            dir.join("logs/error.log").display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut guard = ChildGuard::new(child);
    guard.terminate_first = true;
    (format!("http://{address}"), guard)
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// A port free a moment ago (nginx binds it itself).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Where `oidc-provider` is installed: beside this binary's target directory, so that it
/// survives runs and stays out of the repository.
pub fn oidc_provider_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    // target/release/s2s-load → target/oidc-provider-8
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join("oidc-provider-8")
}
