//! Signing keys generated at test time, and tokens signed with them, well-formed or not.
//!
//! ```
//! use s2s_auth_testkit::{Algorithm, keys::{self, TestKey}};
//!
//! let key = TestKey::generate(Algorithm::ES256, "k1");
//! let token = key.sign(&keys::claims("https://issuer.test", "orders-api"));
//! assert_eq!(token.split('.').count(), 3);
//! assert_eq!(key.jwk()["kid"], "k1");
//! ```
//!
//! [`TestKey`] makes RSA 2048 and P-256 keys with the issuer's own generator
//! ([`s2s_issuer::keys::generate_private_key`]), P-384 and Ed25519 keys with aws-lc-rs; nothing
//! is checked in. It signs whatever a test asks for: well-formed tokens, hand-written headers,
//! raw (even invalid or duplicate-key) JSON. [`weak_rsa_jwk`] publishes an RSA key below 2048
//! bits that a verifier must skip; [`hs256_token`] and [`unsigned_token`] build the classic
//! attacks.

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    encoding::{AsDer, PublicKeyX509Der},
    signature::{self as lc, KeyPair as _},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use s2s_issuer::{
    SigningAlg,
    keys::{generate_private_key, pem},
};
use serde_json::{Value, json};

/// A signing key generated at test time, with its public JWK and PEM.
#[derive(Clone)]
pub struct TestKey {
    /// The key id, published as the JWK's `kid` and put in the headers [`TestKey::sign`] writes.
    pub kid: String,
    /// The algorithm this key signs with (and the JWK's `alg`).
    pub alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
    public_pem: String,
    private_pem: String,
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No private key: only the public half (the JWK) is shown.
        let TestKey { kid, alg, jwk, .. } = self;
        f.debug_struct("TestKey")
            .field("kid", kid)
            .field("alg", alg)
            .field("jwk", jwk)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// Generates a fresh key for `alg`: RS256/RS384/RS512/PS256/PS384/PS512 (RSA 2048), ES256
    /// (P-256), ES384 (P-384), EdDSA (Ed25519).
    ///
    /// # Panics
    ///
    /// On any other algorithm (HMAC has no public key; use [`hs256_token`]).
    pub fn generate(alg: Algorithm, kid: &str) -> TestKey {
        use Algorithm::*;
        match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => rsa_key(alg, kid),
            ES256 => {
                let pkcs8 = generate_private_key(SigningAlg::ES256).expect("generate P-256 key");
                let signing = &lc::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pair = lc::EcdsaKeyPair::from_pkcs8(signing, &pkcs8).expect("P-256 PKCS#8");
                ec_key(alg, &pair, pkcs8, "P-256", kid)
            }
            ES384 => {
                let signing = &lc::ECDSA_P384_SHA384_FIXED_SIGNING;
                let pair = lc::EcdsaKeyPair::generate(signing).expect("generate P-384 key");
                let pkcs8 = pair.to_pkcs8v1().expect("P-384 PKCS#8").as_ref().to_vec();
                ec_key(alg, &pair, pkcs8, "P-384", kid)
            }
            EdDSA => {
                let pair = lc::Ed25519KeyPair::generate().expect("generate Ed25519 key");
                let pkcs8 = pair.to_pkcs8().expect("Ed25519 PKCS#8").as_ref().to_vec();
                let public = pair.public_key();
                let jwk = json!({
                    "kty": "OKP",
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                    "crv": "Ed25519",
                    "x": b64(public.as_ref()),
                });
                let key = EncodingKey::from_ed_der(&pkcs8);
                TestKey::new(alg, kid, key, jwk, &public_spki(public), &pkcs8)
            }
            other => panic!("TestKey::generate: unsupported algorithm {other:?}"),
        }
    }

    fn new(
        alg: Algorithm,
        kid: &str,
        key: EncodingKey,
        jwk: Value,
        spki: &[u8],
        pkcs8: &[u8],
    ) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            alg,
            key,
            jwk,
            public_pem: pem("PUBLIC KEY", spki),
            private_pem: pem("PRIVATE KEY", pkcs8),
        }
    }

    /// Public JWK as JSON: `kty`, `kid`, `use: "sig"`, `alg`, and `n`/`e` or `crv`/`x`/`y` or
    /// `crv`/`x`.
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// Same JWK without the `alg` member.
    pub fn jwk_without_alg(&self) -> Value {
        let mut jwk = self.jwk.clone();
        jwk.as_object_mut().expect("JWK is an object").remove("alg");
        jwk
    }

    /// `{"keys": [this key's JWK]}`.
    pub fn jwks(&self) -> Value {
        jwks(&[self.jwk()])
    }

    /// Public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`, 64-column lines, trailing newline).
    pub fn public_pem(&self) -> String {
        self.public_pem.clone()
    }

    /// Private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), e.g. for a `private_key_jwt`
    /// client under test.
    pub fn private_pem(&self) -> String {
        self.private_pem.clone()
    }

    /// Signs `claims` with header `{alg, typ: "at+jwt", kid}`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": alg_name(self.alg), "typ": "at+jwt", "kid": self.kid });
        self.sign_with_header(&header, claims)
    }

    /// Signs with a caller-given header JSON object (`alg` and `kid` NOT filled in
    /// automatically: whatever the JSON says is encoded verbatim as the header segment),
    /// producing a real signature of this key's alg over `header.payload`. Lets tests craft
    /// `crit`/`jku`/`typ`/alg-mismatch cases.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let header = serde_json::to_string(header).expect("serialize header");
        let claims = serde_json::to_string(claims).expect("serialize claims");
        self.sign_raw(&header, &claims)
    }

    /// Signs raw header and payload byte strings (already JSON text, encoded base64url by this
    /// fn), e.g. to test duplicate JSON keys. The signature uses this key's alg whatever the
    /// header says.
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        let input = format!(
            "{}.{}",
            b64(header_json.as_bytes()),
            b64(payload_json.as_bytes())
        );
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.alg)
            .unwrap_or_else(|e| panic!("sign with {:?}: {e}", self.alg));
        format!("{input}.{signature}")
    }
}

fn rsa_key(alg: Algorithm, kid: &str) -> TestKey {
    let pkcs8 = generate_private_key(SigningAlg::RS256).expect("generate RSA key");
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8).expect("RSA PKCS#8");
    let key = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", &pkcs8).as_bytes())
        .expect("jsonwebtoken reads the RSA PKCS#8 key");
    let public = pair.public_key();
    let jwk = rsa_jwk(
        alg,
        kid,
        public.modulus().big_endian_without_leading_zero(),
        public.exponent().big_endian_without_leading_zero(),
    );
    TestKey::new(alg, kid, key, jwk, &public_spki(public), &pkcs8)
}

fn rsa_jwk(alg: Algorithm, kid: &str, n: &[u8], e: &[u8]) -> Value {
    json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": alg_name(alg),
        "n": b64(n),
        "e": b64(e),
    })
}

/// An RS256 public JWK (`kid`, `use: "sig"`, `e` = AQAB) whose modulus is a random odd number
/// of exactly `bits` bits. There is no private key: it stands for an RSA key too short to trust,
/// which a verifier must skip when it loads the set, so a token naming its `kid` is refused
/// whatever its signature.
///
/// # Panics
///
/// Below 2 bits.
pub fn weak_rsa_jwk(bits: usize, kid: &str) -> Value {
    assert!(bits >= 2, "weak_rsa_jwk: {bits} bits");
    let mut n = vec![0u8; bits.div_ceil(8)];
    aws_lc_rs::rand::fill(&mut n).expect("random modulus");
    // Bit `bits - 1` is the highest: clear those above it in the first byte, then set it.
    let top = (bits - 1) % 8;
    n[0] &= ((1u16 << (top + 1)) - 1) as u8;
    n[0] |= 1 << top;
    *n.last_mut().expect("at least one byte") |= 1;
    rsa_jwk(Algorithm::RS256, kid, &n, &[1, 0, 1])
}

fn ec_key(
    alg: Algorithm,
    pair: &lc::EcdsaKeyPair,
    pkcs8: Vec<u8>,
    crv: &str,
    kid: &str,
) -> TestKey {
    let public = pair.public_key();
    // Uncompressed point: 0x04 || x || y.
    let point = public.as_ref();
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    let jwk = json!({
        "kty": "EC",
        "kid": kid,
        "use": "sig",
        "alg": alg_name(alg),
        "crv": crv,
        "x": b64(x),
        "y": b64(y),
    });
    let key = EncodingKey::from_ec_der(&pkcs8);
    TestKey::new(alg, kid, key, jwk, &public_spki(public), &pkcs8)
}

fn public_spki<K: AsDer<PublicKeyX509Der<'static>>>(public: &K) -> Vec<u8> {
    public.as_der().expect("SPKI DER").as_ref().to_vec()
}

pub(crate) fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("Algorithm serializes to a string")
}

/// base64url (no padding) of `bytes`.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact token from raw segments: header JSON text, payload JSON text, signature bytes
/// (each base64url-encoded here). Pass an empty signature for `alg: none` shapes.
pub fn unsigned_token(header_json: &str, payload_json: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header_json.as_bytes()),
        b64(payload_json.as_bytes()),
        b64(signature)
    )
}

/// HS256 token whose HMAC secret is the given bytes (for the "HS256 signed with the RSA public
/// key as secret" attack: pass `key.public_pem().as_bytes()`), header
/// `{alg: "HS256", typ: "at+jwt", kid}` (the same header [`TestKey::sign`] writes, so only the
/// algorithm differs from a legitimate token).
pub fn hs256_token(secret: &[u8], kid: &str, claims: &Value) -> String {
    let header = json!({ "alg": "HS256", "typ": "at+jwt", "kid": kid });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .expect("HS256 sign");
    format!("{input}.{signature}")
}

/// JWKS JSON `{"keys": [...]}` from JWK values.
pub fn jwks(jwks: &[Value]) -> Value {
    json!({ "keys": jwks })
}

/// Current unix time in seconds (from [`SystemTime`]).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A random `jti`: 32 hex digits.
pub fn jti() -> String {
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).expect("random jti");
    jti.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard valid claims: `iss`, `aud`, `sub: "svc-orders"`, `client_id: "svc-orders"`,
/// `scope: "orders:read orders:write"`, `iat` = `nbf` = now, `exp` = now + 300, random `jti`.
pub fn claims(iss: &str, aud: &str) -> Value {
    let now = now();
    json!({
        "iss": iss,
        "aud": aud,
        "sub": "svc-orders",
        "client_id": "svc-orders",
        "scope": "orders:read orders:write",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": jti(),
    })
}

/// The defaults of a minted token, valid for 300 s from `now`: `iss`, `aud`, `sub` =
/// `client_id` = `test-client`, `iat` = `nbf` = `now`, `exp` = `now` + 300, a random `jti`.
pub fn token_claims(iss: &str, aud: &str, now: u64) -> Value {
    json!({
        "iss": iss,
        "aud": aud,
        "sub": "test-client",
        "client_id": "test-client",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": jti(),
    })
}

/// `claims` over `defaults`: every member of `claims` replaces the default's, and a `null`
/// member removes it (to test a token without `exp`, say).
///
/// # Panics
///
/// When either is not a JSON object.
pub fn merge(mut defaults: Value, claims: Value) -> Value {
    let target = defaults
        .as_object_mut()
        .expect("default claims are an object");
    let Value::Object(claims) = claims else {
        panic!("claims must be a JSON object, got {claims}");
    };
    for (name, value) in claims {
        if value.is_null() {
            target.remove(&name);
        } else {
            target.insert(name, value);
        }
    }
    defaults
}
