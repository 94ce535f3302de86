//! Any bytes as a JWK set: parsed into keys or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = s2s_auth::KeySet::from_jwks(data) {
        let _ = keys.kids().count();
    }
});
