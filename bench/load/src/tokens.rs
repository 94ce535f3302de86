//! Signing keys (generated at start-up with aws-lc-rs), realistic access tokens, and the token
//! files the load generator reads.

use std::{
    fs,
    io::{self, Write as _},
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    thread,
};

use aws_lc_rs::{
    encoding::{AsDer, Pkcs8V1Der},
    rand::SystemRandom,
    rsa::KeySize,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};

/// The `iss` of every token, and the issuer every verifier accepts.
pub const ISSUER: &str = "https://auth.example.com/realms/services";
/// The audience every verifier requires (the tokens carry it and one more).
pub const AUDIENCE: &str = "https://orders.internal.example.com";

/// A signing key and its public JWK.
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    /// A fresh ES256 (P-256), RS256 (RSA 2048) or EdDSA (Ed25519) key.
    pub fn generate(alg: Algorithm) -> SigningKey {
        let kid = format!("load-{alg:?}-2024-rotation-7f3c9a1e").to_lowercase();
        if alg == Algorithm::EdDSA {
            return SigningKey::ed25519(kid);
        }
        let encoding = match alg {
            Algorithm::ES256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .expect("generate P-256 key");
                EncodingKey::from_ec_der(pkcs8.as_ref())
            }
            Algorithm::RS256 => {
                let pair =
                    aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).expect("generate RSA key");
                let der = AsDer::<Pkcs8V1Der>::as_der(&pair).expect("RSA PKCS#8");
                let pem = format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    STANDARD.encode(der.as_ref())
                );
                EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA PKCS#8 PEM")
            }
            other => panic!("no load-test key for {other:?}"),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("public JWK");
        jwk.common.key_id = Some(kid.clone());
        SigningKey {
            alg,
            kid,
            encoding,
            jwk: serde_json::to_value(jwk).expect("JWK as JSON"),
        }
    }

    /// An Ed25519 key. Its JWK is built here: jsonwebtoken's `Jwk::from_encoding_key` only
    /// takes a 48-byte PKCS#8 v1 document, and aws-lc-rs generates v2 (with the public key).
    fn ed25519(kid: String) -> SigningKey {
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 PKCS#8");
        let jwk = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            "alg": "EdDSA",
            "kid": kid,
        });
        SigningKey {
            alg: Algorithm::EdDSA,
            kid,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk,
        }
    }

    /// The public JWK (`kty`, `kid`, `alg`, and the key's parameters).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// One token, valid for an hour, shaped like those of real authorization servers (about
    /// 900 bytes for ES256): header `{alg, typ: at+jwt, kid}`, the registered claims, scopes,
    /// and the extra claims Keycloak-like servers add. `serial` makes the `jti` unique.
    pub fn token(&self, serial: u64) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        let claims = json!({
            "iss": ISSUER,
            "sub": "service-account-billing-worker",
            "aud": [AUDIENCE, "https://audit.internal.example.com"],
            "exp": now + 3600, "nbf": now, "iat": now,
            "jti": format!("5f1c2d4e-9a8b-4c3d-{:04x}-{:012x}", process_salt(), serial),
            "client_id": "billing-worker", "azp": "billing-worker",
            "scope": "orders:read orders:write invoices:read customers:read audit:write",
            "acr": "1", "typ": "Bearer",
            "session_state": "b5c7f0e2-4d3a-4b1c-9e8f-7a6b5c4d3e2f",
            "resource_access": { "orders": { "roles": ["reader", "writer"] } },
        });
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign token")
    }

    /// `count` distinct tokens, signed on every core.
    pub fn tokens(&self, count: usize) -> Vec<String> {
        let threads = thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = count.div_ceil(threads).max(1);
        let mut out = Vec::with_capacity(count);
        thread::scope(|scope| {
            let workers: Vec<_> = (0..count)
                .step_by(chunk)
                .map(|start| {
                    let end = (start + chunk).min(count);
                    scope.spawn(move || {
                        (start..end)
                            .map(|_| self.token(next_serial()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for worker in workers {
                out.extend(worker.join().expect("signing thread"));
            }
        });
        out
    }
}

/// A JWKS document holding these keys.
pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// Writes `tokens` as `Authorization` header values, one per line (the load generator's format).
pub fn write_token_file(path: &Path, tokens: &[String]) -> io::Result<()> {
    let headers: Vec<String> = tokens.iter().map(|t| format!("Bearer {t}")).collect();
    write_header_file(path, &headers)
}

/// Writes whole `Authorization` header values (`Basic …`), one per line.
pub fn write_header_file(path: &Path, headers: &[String]) -> io::Result<()> {
    let mut out = io::BufWriter::new(fs::File::create(path)?);
    for header in headers {
        writeln!(out, "{header}")?;
    }
    out.flush()
}

/// A serial unique within this process, for `jti`.
fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// Distinguishes the `jti`s of different runs of the harness.
fn process_salt() -> u16 {
    std::process::id() as u16
}
