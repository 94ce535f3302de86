//! The seed's own clients against `s2s-issuer`: the Node.js and the Python `ServiceAuthClient`
//! of `shared/seeds/001_8dd6d015215acef5.txt`, copied verbatim into `tests/seed_clients/`, run
//! with the real packages they import (npm: `axios`, `jsonwebtoken`, `jwks-rsa`, pinned by
//! `package-lock.json`; PyPI: `requests`, `PyJWT`, `cryptography`, pinned by
//! `requirements.txt`, in a venv) against an issuer served as the seed's Auth Service
//! (`http://127.0.0.1:PORT/auth`, `iss` `auth-service`, audience `api`) and a service behind
//! `VerifyLayer` that takes its keys from the JWKS URL.
//!
//! Each client, as its seed listing writes it: the account made with the seed's `curl` body,
//! a token obtained and cached (the second call makes no request), the seed's `validateToken`
//! accepts it (and refuses a tampered one), the service accepts the call; a wrong secret gets
//! AUTH_101, an unallowed scope AUTH_102, a disabled account AUTH_103, a source address outside
//! `allowedIps` AUTH_104.
//!
//! The first test of a run installs the packages (`npm ci`; `python3 -m venv` + `pip install`)
//! into `tests/seed_clients/node_modules` and `tests/seed_clients/.venv` (gitignored), again
//! only when the lockfile or requirements change. Without node (20+) or python3 (3.9+ with
//! venv) the tests fail when `CI=true` and are skipped loudly otherwise.

mod seed_support;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::Duration,
};

use s2s_tests::{
    peer::{is_ci, run},
    venv::{install_once, python_venv, version},
};
use seed_support::{SEED_AUDIENCE, SEED_ISS, SeedIssuer, seed_account_request, workflow_service};
use serde_json::{Value, json};

const SEED_FILE: &str = "001_8dd6d015215acef5.txt";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seed_clients")
}

/// A seed client's runtime.
#[derive(Clone, Copy, Debug)]
enum Lang {
    Node,
    Python,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Node => "Node.js",
            Lang::Python => "Python",
        }
    }

    /// Installs the client's packages once per process; the program that runs its driver.
    fn ready(self) -> &'static Result<PathBuf, String> {
        static NODE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        match self {
            Lang::Node => NODE.get_or_init(install_node),
            Lang::Python => PYTHON.get_or_init(install_python),
        }
    }
}

/// The runtime's program, or `None` after a loud skip (outside CI); panics under `CI=true`.
fn runtime(lang: Lang) -> Option<PathBuf> {
    match lang.ready() {
        Ok(program) => Some(program.clone()),
        Err(reason) if is_ci() => panic!(
            "the seed's {} client needs its runtime (CI=true): {reason}",
            lang.name()
        ),
        Err(reason) => {
            // Straight to stderr: libtest captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n************************************************************************\n\
                 SKIPPED: the seed's {} client test\n\
                 reason: {reason}\n\
                 install Node.js 20+ with npm and Python 3.9+ with venv; with CI=true this fails\n\
                 ************************************************************************",
                lang.name()
            );
            None
        }
    }
}

fn install_node() -> Result<PathBuf, String> {
    let dir = clients_dir();
    let node = run("node", &["--version"], &dir)?;
    if version(&node).is_none_or(|(major, _)| major < 20) {
        return Err(format!(
            "node {node} is too old: the clients need Node.js 20+"
        ));
    }
    run("npm", &["--version"], &dir)?;
    let lock = std::fs::read(dir.join("package-lock.json"))
        .map_err(|e| format!("cannot read tests/seed_clients/package-lock.json: {e}"))?;
    install_once(
        &dir.join("node_modules").join(".s2s-installed-lock.json"),
        &lock,
        || {
            eprintln!("seed clients: npm ci in {}", dir.display());
            run(
                "npm",
                &["ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                &dir,
            )
            .map(drop)
        },
    )?;
    Ok(PathBuf::from("node"))
}

fn install_python() -> Result<PathBuf, String> {
    python_venv(&clients_dir())
}

/// Runs the client's driver with `args`; the JSON line it printed.
async fn drive(lang: Lang, program: &Path, args: Value) -> Value {
    let script = match lang {
        Lang::Node => "driver.js",
        Lang::Python => "driver.py",
    };
    let child = tokio::process::Command::new(program)
        .arg(script)
        .arg(args.to_string())
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("the {} driver did not finish within 60 s", lang.name()))
        .unwrap_or_else(|e| panic!("cannot run the {} driver: {e}", lang.name()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "the {} driver printed no JSON ({}):\n{stdout}\n{}",
            lang.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The error a seed client threw: its HTTP status and the issuer's `code`.
fn assert_refused(result: &Value, status: u16, error: &str, code: &str) {
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["status"], status, "{result}");
    assert_eq!(result["body"]["error"], error, "{result}");
    assert_eq!(result["body"]["code"], code, "{result}");
    assert!(
        result["body"]["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{result}"
    );
}

async fn the_seed_client_works_unchanged(lang: Lang) {
    let Some(program) = runtime(lang) else {
        return;
    };
    let issuer = SeedIssuer::seed().await;
    let (service, _service_task) = workflow_service(SEED_ISS, &issuer.jwks_url()).await;
    let scopes = json!(["workflow:read", "validation:write"]);

    // The seed's request as it stands: only 10.0.1.0/24 and 10.0.2.0/24 may ask.
    let fenced = issuer.create(seed_account_request()).await.body;
    // The same from this machine's address.
    let mut local_request = seed_account_request();
    local_request["name"] = "validation-service-local".into();
    local_request["allowedIps"] = json!(["127.0.0.1/32"]);
    let local = issuer.create(local_request).await.body;
    // What the driver runs (`op`: the whole flow, or one token request) as `account`.
    let client_args = |op: &str, account: &Value, secret: &Value, scopes: &Value| {
        json!({
            "op": op,
            "authServiceUrl": issuer.url,
            "clientId": account["clientId"],
            "clientSecret": secret,
            "scopes": scopes,
            "serviceUrl": format!("{service}/workflow-service/workflows/active"),
        })
    };
    let flow = client_args("flow", &local, &local["clientSecret"], &scopes);
    let result = drive(lang, &program, flow).await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["sameToken"], true, "{result}");
    assert_eq!(
        result["tokenRequests"], 1,
        "the second call is cached: {result}"
    );
    let validation = &result["validation"];
    assert_eq!(validation["valid"], true, "{result}");
    assert_eq!(validation["payload"]["iss"], SEED_ISS);
    assert_eq!(validation["payload"]["aud"], SEED_AUDIENCE);
    assert_eq!(validation["payload"]["sub"], local["clientId"]);
    assert_eq!(
        validation["payload"]["scope"],
        "workflow:read validation:write"
    );
    assert_eq!(result["tampered"]["valid"], false, "{result}");
    assert_eq!(result["workflows"]["count"], 2, "{result}");
    assert_eq!(result["workflows"]["workflows"][0]["id"], "wf_123");
    assert_eq!(result["workflows"]["caller"], local["clientId"], "{result}");

    let token = client_args("token", &local, &json!("cs_wrong_secret"), &scopes);
    let result = drive(lang, &program, token).await;
    assert_refused(&result, 401, "invalid_client", "AUTH_101");

    let token = client_args(
        "token",
        &local,
        &local["clientSecret"],
        &json!(["admin:write"]),
    );
    let result = drive(lang, &program, token).await;
    assert_refused(&result, 400, "invalid_scope", "AUTH_102");

    let token = client_args("token", &fenced, &fenced["clientSecret"], &scopes);
    let result = drive(lang, &program, token).await;
    assert_refused(&result, 403, "unauthorized_client", "AUTH_104");

    let svc = local["serviceAccountId"].as_str().unwrap();
    let disabled = issuer.account_action(svc, "disable").await;
    assert_eq!(disabled.body["status"], "DISABLED", "{}", disabled.body);
    let token = client_args("token", &local, &local["clientSecret"], &scopes);
    let result = drive(lang, &program, token).await;
    assert_refused(&result, 401, "unauthorized_client", "AUTH_103");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_node_client_works_unchanged() {
    the_seed_client_works_unchanged(Lang::Node).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_python_client_works_unchanged() {
    the_seed_client_works_unchanged(Lang::Python).await;
}

/// The seed document, found in a `shared/seeds/` beside the repository (or beside a worktree's
/// parent).
fn seed_text() -> Option<String> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .skip(1)
        .take(4)
        .map(|dir| dir.join("shared").join("seeds").join(SEED_FILE))
        .find_map(|path| std::fs::read_to_string(path).ok())
}

/// The code between `start` and `end` in `text`, trailing whitespace trimmed.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no `{start}`"));
    let len = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("no `{end}`"));
    text[from..from + len].trim_end()
}

/// The clients under test are the seed's code, byte for byte: the imports and the class of
/// each listing (only the listings' example `main()` is left out).
#[test]
fn the_clients_are_the_seeds_code() {
    let Some(seed) = seed_text() else {
        assert!(
            !is_ci(),
            "shared/seeds/{SEED_FILE} is not beside the repository (CI=true)"
        );
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED: the_clients_are_the_seeds_code (no shared/seeds/{SEED_FILE} beside the repository)"
        );
        return;
    };
    for (file, listing, start, end) in [
        (
            "service_auth_client.js",
            "Node.js",
            "const axios = require('axios');",
            "// Example usage\nasync function main()",
        ),
        (
            "service_auth_client.py",
            "Python",
            "import time\nimport requests",
            "# Example usage\ndef main():",
        ),
    ] {
        let code = between(&seed, start, end);
        assert!(code.contains("class ServiceAuthClient"), "{listing}");
        let ours = std::fs::read_to_string(clients_dir().join(file)).unwrap();
        assert!(
            ours.contains(code),
            "tests/seed_clients/{file} differs from the seed's {listing} listing"
        );
    }
}
