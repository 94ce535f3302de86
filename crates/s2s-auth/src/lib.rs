#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

/// `impl Debug` for a struct that shows only the fields named (the rest may hold secrets or are
/// internals) and ends in `..`: `debug_fields!(Type: field, other_field);`.
macro_rules! debug_fields {
    ($ty:ident: $($field:ident),+ $(,)?) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))+
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use debug_fields;

pub mod algorithm;
pub mod bearer;
pub mod claims;
#[cfg(feature = "config")]
pub mod config;
mod destination;
pub mod discovery;
pub mod error;
#[cfg(feature = "axum")]
pub mod extract;
pub mod fetch;
#[cfg(feature = "tonic")]
pub mod grpc;
pub mod keys;
pub mod layer;
mod metrics;
#[cfg(feature = "reqwest")]
pub mod middleware;
pub mod oauth;
mod refresh;
pub mod rejection;
mod time;
pub mod token;
pub mod verify;

pub use algorithm::Algorithm;
pub use bearer::BearerToken;
pub use claims::{ScopePolicy, Scopes, StandardClaims, Verified};
pub use error::{Code, Error, ErrorKind};
pub use keys::{KeyCacheOptions, KeySet};
pub use layer::{AuthorizeLayer, RequireScope, RequireScopeLayer, VerifyLayer};
pub use metrics::MetricsSnapshot;
pub use rejection::{Reason, Rejection, Responder};
pub use verify::{Issuer, Verifier, VerifierBuilder};
