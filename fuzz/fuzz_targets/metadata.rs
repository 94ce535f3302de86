//! Any bytes as authorization server metadata: parsed and checked, or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s2s_auth::discovery::ProviderMetadata;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = ProviderMetadata::from_json(data, "https://issuer.example") {
        let _ = meta.jwks_uri(false);
        let _ = meta.token_endpoint(false);
    }
});
