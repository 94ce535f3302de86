//! Helpers shared by the end-to-end suites.

pub mod gateway;
pub mod keys;
pub mod peer;
pub mod time;
pub mod token_server;
