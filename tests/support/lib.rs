//! Helpers shared by the end-to-end suites.

pub mod answer;
pub mod app;
pub mod gateway;
pub mod keys;
pub mod logs;
pub mod outbound;
pub mod peer;
pub mod redis;
pub mod time;
pub mod token_server;
pub mod venv;
