//! The `s2s-issuer` binary: configuration errors name the field; the `accounts` commands work on
//! the database; `serve` answers on 127.0.0.1; an account acknowledged with 201 survives
//! `kill -9` of the server.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::{Duration, SystemTime},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

#[path = "support/eventually.rs"]
mod eventually;

use eventually::{CHANGE_BOUND, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_s2s-issuer");
const ADMIN: &str = "cli-test-admin-token-0123456789";

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "s2s-issuer-cli-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("S2S_ISSUER_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `accounts create` output: (client id, secret).
fn created(output: &Output) -> (String, String) {
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    (field("client_id:"), field("client_secret:"))
}

/// Starts `serve` with the admin token [`ADMIN`] and waits for its "listening on" line:
/// (child, base URL).
async fn serve(db: &Path, extra: &[&str]) -> (Child, String) {
    serve_with_admin(db, extra, Some(ADMIN)).await
}

/// Starts `serve` with `admin_token` (none: not even from the environment) and waits for its
/// "listening on" line: (child, base URL).
async fn serve_with_admin(db: &Path, extra: &[&str], admin_token: Option<&str>) -> (Child, String) {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .arg("--db")
        .arg(db)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    match admin_token {
        Some(token) => command.env("S2S_ISSUER_ADMIN_TOKEN", token),
        None => command.env_remove("S2S_ISSUER_ADMIN_TOKEN"),
    };
    let mut child = command
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the server starts within a minute")
        .unwrap()
        .expect("a first line");
    let url = line
        .split("(issuer ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (child, url)
}

/// The issuer's published JWK set.
async fn jwks(http: &reqwest::Client, url: &str) -> Value {
    http.get(format!("{url}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn token(http: &reqwest::Client, url: &str, id: &str, secret: &str) -> reqwest::StatusCode {
    http.post(format!("{url}/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn invalid_configuration_is_refused_naming_the_field() {
    let dir = TempDir::new("config");
    for (toml, field) in [
        ("token_lifetime = 0\n", "token_lifetime"),
        ("colour = \"red\"\n", "colour"),
        ("issuer = \"not a url\"\n", "issuer"),
        (
            "[rate_limit.per_ip]\nburst = 0\nper_second = 1\n",
            "rate_limit.per_ip",
        ),
        ("admin_token = \"short\"\n", "admin_token"),
        // A token the admin API's RFC 6750 parser cannot read would lock the operator out.
        (
            "admin_token = \"0123456789abcdef!\"\n",
            "RFC 6750 token characters",
        ),
        // The removed key is refused, saying what replaces it.
        ("trust_forwarded_for = true\n", "trusted_proxies = ["),
        (
            "trusted_proxies = [\"10.0.0.0/33\"]\n",
            "trusted_proxies[0]",
        ),
    ] {
        let file = dir.path("issuer.toml");
        std::fs::write(&file, toml).unwrap();
        let output = run(&[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--db",
            ":memory:",
        ])
        .await;
        assert_eq!(output.status.code(), Some(2), "{toml}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(field), "{toml} → {stderr}");
    }
    let missing = dir.path("missing.toml");
    let output = run(&["serve", "--config", missing.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("missing.toml"));
    // Flags are checked too.
    let output = run(&["serve", "--listen", "nowhere"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--listen"));
    let output = run(&["serve", "--db", ":memory:", "--token-lifetime", "0"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("token_lifetime"));
    let output = run(&[
        "serve",
        "--db",
        ":memory:",
        "--trusted-proxy",
        "proxy.local",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("trusted_proxies[0]"));
}

#[tokio::test]
async fn accounts_commands_work_on_the_database_and_serve_uses_it() {
    let dir = TempDir::new("accounts");
    let db = dir.path("issuer.db");
    let db_arg = db.to_str().unwrap();
    let (id, secret) = created(
        &run(&[
            "accounts",
            "--db",
            db_arg,
            "create",
            "--name",
            "billing",
            "--scope",
            "orders:read",
            "--scope",
            "orders:write",
            "--allowed-ip",
            "127.0.0.1/32",
        ])
        .await,
    );
    assert_eq!(id.len(), 32);
    assert_eq!(secret.len(), 43);
    let bad = run(&[
        "accounts",
        "--db",
        db_arg,
        "create",
        "--name",
        "x",
        "--allowed-ip",
        "10.0.0.0/99",
    ])
    .await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("allowedIps[0]"),
        "{}",
        text(&bad.stderr)
    );
    let duplicate = run(&["accounts", "--db", db_arg, "create", "--name", "billing"]).await;
    assert!(!duplicate.status.success());
    assert!(text(&duplicate.stderr).contains("billing"));

    let list = run(&["accounts", "--db", db_arg, "list"]).await;
    assert!(list.status.success());
    let listed = text(&list.stdout);
    let row = listed.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(
        row.contains("ACTIVE") && row.contains("orders:read,orders:write"),
        "{row}"
    );
    assert!(row.contains("127.0.0.1/32"));
    assert!(!listed.contains(&secret), "list never shows secrets");

    // The served issuer knows the account.
    let (mut server, url) = serve(&db, &[]).await;
    let http = reqwest::Client::new();
    assert_eq!(token(&http, &url, &id, &secret).await, 200);

    // Disabled from the CLI while the server runs: refused within the bound.
    let disabled = run(&["accounts", "--db", db_arg, "disable", &id]).await;
    assert!(disabled.status.success(), "{}", text(&disabled.stderr));
    let list = text(&run(&["accounts", "--db", db_arg, "list"]).await.stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("DISABLED"))
    );
    eventually(
        CHANGE_BOUND,
        "the server refuses the disabled account",
        || async { token(&http, &url, &id, &secret).await == 401 },
    )
    .await;
    let enabled = run(&["accounts", "--db", db_arg, "enable", &id]).await;
    assert!(enabled.status.success());
    eventually(
        CHANGE_BOUND,
        "the server serves the enabled account",
        || async { token(&http, &url, &id, &secret).await == 200 },
    )
    .await;
    let unknown = run(&["accounts", "--db", db_arg, "disable", "nobody"]).await;
    assert!(!unknown.status.success());
    server.kill().await.unwrap();

    // Keys: rotation from the CLI.
    let keys = run(&["keys", "--db", db_arg, "rotate"]).await;
    assert!(keys.status.success(), "{}", text(&keys.stderr));
    let keys = text(&keys.stdout);
    assert!(
        keys.contains("active") && keys.contains("published until"),
        "{keys}"
    );

    let memory = run(&["accounts", "--db", ":memory:", "list"]).await;
    assert_eq!(memory.status.code(), Some(2));
}

#[tokio::test]
async fn an_acknowledged_account_survives_kill_9() {
    let dir = TempDir::new("durable");
    let db = dir.path("issuer.db");
    let (mut server, url) = serve(&db, &[]).await;
    let http = reqwest::Client::new();
    let jwks_before = jwks(&http, &url).await;
    let response = http
        .post(format!("{url}/admin/accounts"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "durable", "scopes": ["a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    // SIGKILL right after the 201: no shutdown, no checkpoint.
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    let (mut server, url) = serve(&db, &[]).await;
    let id = body["clientId"].as_str().unwrap();
    let secret = body["clientSecret"].as_str().unwrap();
    assert_eq!(token(&http, &url, id, secret).await, 200);
    let jwks_after = jwks(&http, &url).await;
    assert_eq!(jwks_after, jwks_before, "the signing key survived too");
    server.kill().await.unwrap();
}

#[tokio::test]
async fn serve_without_an_admin_token_serves_tokens_but_no_admin_api() {
    let dir = TempDir::new("noadmin");
    let db = dir.path("issuer.db");
    let (mut child, url) = serve_with_admin(&db, &[], None).await;
    let http = reqwest::Client::new();
    let admin = http
        .get(format!("{url}/admin/accounts"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 404);
    let metadata = http
        .get(format!("{url}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200);
    child.kill().await.unwrap();
}
