#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod bearer;
pub mod discovery;
pub mod error;
pub mod fetch;

pub use bearer::BearerToken;
pub use error::{Code, Error, ErrorKind};
