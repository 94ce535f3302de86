#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod bearer;
pub mod claims;
pub mod discovery;
pub mod error;
pub mod fetch;
pub mod jwks;
mod metrics;
pub mod rejection;
pub mod verify;

pub use bearer::BearerToken;
pub use claims::{Scopes, StandardClaims, Verified};
pub use error::{Code, Error, ErrorKind};
pub use jwks::{KeyCache, KeyCacheOptions, KeySet};
pub use metrics::MetricsSnapshot;
pub use rejection::{Reason, Rejection, Responder};
pub use verify::{Issuer, Verifier, VerifierBuilder};
