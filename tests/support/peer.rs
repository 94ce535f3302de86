//! The interop peer: panva's `oidc-provider` (a third-party, OpenID-certified authorization
//! server) run as a child process from `tests/interop/peer.mjs`.
//!
//! ```no_run
//! use s2s_tests::peer::{self, Peer};
//!
//! if !peer::node_available() {
//!     return; // not in CI and no node: skipped, loudly
//! }
//! let peer = Peer::start();
//! println!("issuer {}", peer.issuer());
//! ```
//!
//! [`node_available`] decides what happens on a machine without Node.js: with `CI=true` the test
//! fails with a message saying what to install; otherwise it prints a loud `SKIPPED` banner to
//! stderr and the test returns early. The first call installs the pinned packages with `npm ci`
//! into `tests/interop/node_modules` (gitignored), only when they are missing or stale.
//!
//! Every [`Peer`] has its own state directory (generated signing keys, the `private_key_jwt`
//! client's key) and is killed when dropped. The peer prints one `peer-event {json}` line per
//! token, JWKS or discovery request; [`Peer::events`] returns them, exactly, after a
//! [`Peer::sync`] barrier.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc, Condvar, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Oldest Node.js major the peer supports.
pub const MIN_NODE_MAJOR: u32 = 20;

/// How long the peer may take to print `listening on …`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory of the peer: `package.json`, lockfile, `peer.mjs`, `peer.config.json`.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// Whether this run is CI (`CI` set to anything but empty, `0` or `false`).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The message of a CI failure when node or npm is missing.
pub const NEED_NODE: &str =
    "interop suite needs node and npm; install Node.js 20+ or unset CI to skip";

/// Checks that node (>= 20) and npm work and that the peer's packages are installed (running
/// `npm ci` once per process when they are missing or older than the lockfile).
///
/// Returns `true` when the test can run. When it cannot: with `CI=true` it panics with
/// [`NEED_NODE`] and the reason; otherwise it prints a loud `SKIPPED` banner with the reason
/// and the test's name (the current thread's, as libtest names it) straight to stderr, past
/// libtest's capture, and returns `false`, so the caller returns early.
pub fn node_available() -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    match READY.get_or_init(|| check_node().and_then(|()| npm_ci())) {
        Ok(()) => true,
        Err(reason) if is_ci() => panic!("{NEED_NODE} (CI=true): {reason}"),
        Err(reason) => {
            // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
            static BANNER: OnceLock<()> = OnceLock::new();
            let mut stderr = std::io::stderr().lock();
            BANNER.get_or_init(|| {
                let _ = writeln!(
                    stderr,
                    "\n\
                     ************************************************************************\n\
                     SKIPPED: interop suite needs node+npm\n\
                     reason: {reason}\n\
                     install Node.js {MIN_NODE_MAJOR}+ and npm to run it; with CI=true this fails\n\
                     ************************************************************************"
                );
            });
            let test = thread::current()
                .name()
                .unwrap_or("interop test")
                .to_owned();
            let _ = writeln!(stderr, "SKIPPED: {test} (interop suite needs node+npm)");
            false
        }
    }
}

/// Runs `program args` in `dir`: its trimmed stdout, or what failed with both outputs.
pub fn run(program: &str, args: &[&str], dir: &Path) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn check_node() -> Result<(), String> {
    let dir = interop_dir();
    let version = run("node", &["--version"], &dir)?;
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| format!("cannot parse `node --version` output `{version}`"))?;
    if major < MIN_NODE_MAJOR {
        return Err(format!(
            "node {version} is too old: the peer needs Node.js {MIN_NODE_MAJOR}+"
        ));
    }
    run("npm", &["--version"], &dir)?;
    Ok(())
}

/// Runs `npm ci` unless `node_modules` was installed from the current lockfile (a copy of the
/// lockfile is kept in `node_modules/.s2s-installed-lock.json` as the stamp).
fn npm_ci() -> Result<(), String> {
    let dir = interop_dir();
    let lock = fs::read(dir.join("package-lock.json"))
        .map_err(|e| format!("cannot read tests/interop/package-lock.json: {e}"))?;
    let stamp = dir.join("node_modules").join(".s2s-installed-lock.json");
    if fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        return Ok(());
    }
    eprintln!(
        "interop: installing the peer's packages (npm ci in {})",
        dir.display()
    );
    run(
        "npm",
        &["ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        &dir,
    )?;
    fs::write(&stamp, &lock).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// A client of `peer.config.json`.
#[derive(Clone, Debug)]
pub struct PeerClient {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`, for the `client_secret_*` methods.
    pub client_secret: Option<String>,
    /// `token_endpoint_auth_method`.
    pub auth_method: String,
    /// The scopes the client may request.
    pub scope: String,
}

/// `peer.config.json`, the configuration the peer runs with.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Every scope the server knows.
    pub scopes: Vec<String>,
    /// The resource (audience) of tokens requested without `resource`.
    pub default_resource: String,
    /// The resources: identifier → JSON definition (`scope`, `alg`, `ttl`, `extraAudiences`).
    pub resources: serde_json::Map<String, Value>,
    /// The registered clients.
    pub clients: Vec<PeerClient>,
}

impl PeerConfig {
    /// Reads `tests/interop/peer.config.json`.
    pub fn load() -> PeerConfig {
        let path = interop_dir().join("peer.config.json");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        let string = |v: &Value, key: &str| -> String {
            v[key]
                .as_str()
                .unwrap_or_else(|| panic!("peer.config.json: missing string `{key}`"))
                .to_owned()
        };
        PeerConfig {
            scopes: json["scopes"]
                .as_array()
                .expect("peer.config.json: `scopes` array")
                .iter()
                .map(|s| s.as_str().expect("scope string").to_owned())
                .collect(),
            default_resource: string(&json, "defaultResource"),
            resources: json["resources"]
                .as_object()
                .expect("peer.config.json: `resources` object")
                .clone(),
            clients: json["clients"]
                .as_array()
                .expect("peer.config.json: `clients` array")
                .iter()
                .map(|c| PeerClient {
                    client_id: string(c, "client_id"),
                    client_secret: c["client_secret"].as_str().map(str::to_owned),
                    auth_method: string(c, "token_endpoint_auth_method"),
                    scope: string(c, "scope"),
                })
                .collect(),
        }
    }

    /// The client registered with `auth_method` (`client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`).
    pub fn client(&self, auth_method: &str) -> &PeerClient {
        self.clients
            .iter()
            .find(|c| c.auth_method == auth_method)
            .unwrap_or_else(|| panic!("peer.config.json has no {auth_method} client"))
    }
}

/// What the peer printed, shared with the threads that read its output.
#[derive(Default)]
struct Output {
    events: Vec<Value>,
    markers: Vec<u64>,
    stderr: String,
}

#[derive(Default)]
struct Shared {
    output: Mutex<Output>,
    changed: Condvar,
}

/// A running `oidc-provider`, killed on drop.
pub struct Peer {
    child: Child,
    _stdin: ChildStdin,
    issuer: String,
    port: u16,
    state: StateDir,
    shared: Arc<Shared>,
    config: PeerConfig,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("issuer", &self.issuer)
            .field("state", &self.state.0)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Starts a peer on a free loopback port with freshly generated keys (an ES256 and an
    /// RS256 signing key, and the `private_key_jwt` client's key). Call [`node_available`] first.
    pub fn start() -> Peer {
        let state = StateDir::new();
        let (child, stdin, issuer, shared) = spawn(&state.0, 0, false);
        let port = port_of(&issuer);
        Peer {
            child,
            _stdin: stdin,
            issuer,
            port,
            state,
            shared,
            config: PeerConfig::load(),
        }
    }

    /// Stops the peer and starts it again on the same port (so the issuer is unchanged) with a
    /// new ES256 and a new RS256 key in front of its JWKS; the old keys stay published. Events
    /// recorded so far are kept.
    pub fn restart_rotated(&mut self) {
        self.sync();
        self.stop();
        let (child, stdin, issuer, shared) = spawn(&self.state.0, self.port, true);
        assert_eq!(
            issuer, self.issuer,
            "the restarted peer must keep its issuer"
        );
        // Carry the history over so counts span the restart.
        {
            let old = self.shared.output.lock().unwrap();
            let mut new = shared.output.lock().unwrap();
            let mut events = old.events.clone();
            events.append(&mut new.events);
            new.events = events;
            new.stderr = format!("{}{}", old.stderr, new.stderr);
        }
        self.child = child;
        self._stdin = stdin;
        self.shared = shared;
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The issuer, `http://127.0.0.1:PORT` (no trailing slash, as the metadata says).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The peer's configuration (`peer.config.json`).
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// The PKCS#8 PEM private key (P-256, ES256) of the `private_key_jwt` client.
    pub fn client_key_pem(&self) -> String {
        fs::read_to_string(self.client_key_path()).expect("client key written by the peer")
    }

    /// Where the `private_key_jwt` client's PEM key is.
    pub fn client_key_path(&self) -> PathBuf {
        self.state.0.join("client-key.pem")
    }

    /// The `kid`s of the signing keys, in JWKS order (the first of each algorithm signs).
    pub fn signing_kids(&self) -> Vec<String> {
        let text = fs::read_to_string(self.state.0.join("signing-keys.json"))
            .expect("signing keys written by the peer");
        let json: Value = serde_json::from_str(&text).expect("signing keys are JSON");
        json["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect()
    }

    /// Waits until every request the peer answered before this call has been recorded.
    pub fn sync(&self) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to peer");
        write!(
            stream,
            "GET /__peer/marker?n={id} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        )
        .expect("write marker request");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(
            response.starts_with("HTTP/1.1 204") || response.starts_with("HTTP/1.0 204"),
            "marker request failed: {response}"
        );
        let deadline = Instant::now() + START_TIMEOUT;
        let mut output = self.shared.output.lock().unwrap();
        while !output.markers.contains(&id) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "peer did not print marker {id}");
            output = self.shared.changed.wait_timeout(output, left).unwrap().0;
        }
    }

    /// Every `peer-event` recorded so far (call [`Peer::sync`] first for an exact answer), e.g.
    /// `{"route":"token","status":200,"client_id":"…","auth":"client_secret_basic",…}`.
    pub fn events(&self) -> Vec<Value> {
        self.shared.output.lock().unwrap().events.clone()
    }

    /// How many requests reached `route` (`token`, `jwks`, `discovery`), after a [`Peer::sync`].
    pub fn count(&self, route: &str) -> usize {
        self.sync();
        self.events().iter().filter(|e| e["route"] == route).count()
    }

    /// Everything the peer wrote to stderr (warnings included).
    pub fn stderr(&self) -> String {
        self.shared.output.lock().unwrap().stderr.clone()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn port_of(issuer: &str) -> u16 {
    issuer
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in issuer `{issuer}`"))
}

fn spawn(state: &Path, port: u16, rotate: bool) -> (Child, ChildStdin, String, Arc<Shared>) {
    let dir = interop_dir();
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .arg("peer.mjs")
        .arg("--state")
        .arg(state)
        .arg("--port")
        .arg(port.to_string())
        .env("NODE_ENV", "test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if rotate {
        command.arg("--rotate");
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `node peer.mjs` in {}: {e}", dir.display()));
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let shared = Arc::new(Shared::default());

    let (ready_tx, ready_rx) = mpsc::channel::<String>();
    let out_shared = Arc::clone(&shared);
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(issuer) = line.strip_prefix("listening on ") {
                let _ = ready_tx.send(issuer.to_owned());
            } else if let Some(json) = line.strip_prefix("peer-event ") {
                let event = serde_json::from_str(json).expect("peer-event is JSON");
                out_shared.output.lock().unwrap().events.push(event);
            } else if let Some(id) = line.strip_prefix("peer-marker ") {
                let id = id.parse().expect("marker id");
                out_shared.output.lock().unwrap().markers.push(id);
            }
            out_shared.changed.notify_all();
        }
    });
    let err_shared = Arc::clone(&shared);
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            eprint!("peer stderr: {line}");
            err_shared.output.lock().unwrap().stderr.push_str(&line);
            err_shared.changed.notify_all();
            line.clear();
        }
    });

    match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(issuer) => (child, stdin, issuer, shared),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            // Give the stderr reader a moment to drain what the dead process wrote.
            let stderr = {
                let deadline = Instant::now() + Duration::from_secs(2);
                let mut output = shared.output.lock().unwrap();
                while output.stderr.is_empty() && Instant::now() < deadline {
                    output = shared
                        .changed
                        .wait_timeout(output, Duration::from_millis(100))
                        .unwrap()
                        .0;
                }
                output.stderr.clone()
            };
            panic!(
                "the interop peer did not print `listening on …` within {START_TIMEOUT:?} \
                 (exit: {status:?}); stderr:\n{stderr}"
            );
        }
    }
}

/// A private temporary directory, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> StateDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "s2s-interop-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        StateDir(path)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
