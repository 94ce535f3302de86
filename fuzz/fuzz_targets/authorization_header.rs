//! Any bytes as one or two `Authorization` headers: a token, none, or a rejection whose answer
//! can be built, never a panic.
#![no_main]

use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use s2s_auth::{BearerToken, Responder};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for part in data.splitn(2, |b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(AUTHORIZATION, value);
        }
    }
    match BearerToken::from_headers(&headers) {
        Ok(Some(token)) => assert!(!token.as_str().is_empty()),
        Ok(None) => {}
        Err(rejection) => {
            let _ = Responder::default().respond(&rejection);
        }
    }
});
