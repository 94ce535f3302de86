//! What the benches share: the issuer, audience and key id, and a token shaped like those of
//! real authorization servers.

use jsonwebtoken::Algorithm;
use s2s_auth_testkit::TestKey;
use serde_json::json;

pub const ISSUER: &str = "https://auth.example.com/realms/services";
pub const AUDIENCE: &str = "https://orders.internal.example.com";
pub const KID: &str = "2024-rotation-key-7f3c9a1e";

/// A fresh signing key (its public JWK is `key.jwk()`).
pub fn signing_key(alg: Algorithm) -> TestKey {
    TestKey::generate(alg, KID)
}

/// A token shaped like those of real authorization servers (about 800 bytes for ES256), header
/// `{alg, typ: "at+jwt", kid}`.
pub fn token(key: &TestKey) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": ISSUER, "sub": "service-account-billing-worker",
        "aud": [AUDIENCE, "https://audit.internal.example.com"],
        "exp": now + 3600, "nbf": now, "iat": now,
        "jti": "5f1c2d4e-9a8b-4c3d-8e7f-6a5b4c3d2e1f",
        "client_id": "billing-worker", "azp": "billing-worker",
        "scope": "orders:read orders:write invoices:read customers:read audit:write",
        "tenant": "eu-central-1", "environment": "production",
        "acr": "1", "typ": "Bearer", "session_state": "b5c7f0e2-4d3a-4b1c-9e8f-7a6b5c4d3e2f",
        "resource_access": { "orders": { "roles": ["reader", "writer"] } },
    });
    key.sign(&claims)
}
