//! The log lines of a whole test binary, for checks that no secret reaches a log.

use std::{
    io,
    sync::{Arc, Mutex, OnceLock},
};

/// Every log line of this test binary, captured by a global `tracing-subscriber` that the first
/// caller installs: call it before any event is recorded (the outbound helpers'
/// `token_server` does), so that no callsite is registered without it. (A scoped `set_default`
/// subscriber would miss events now and then: a callsite that another test's thread registers
/// while the scoped one is being set up can cache "never interested".)
pub fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only global subscriber");
        logs
    })
}

/// Captured log lines (a `tracing-subscriber` fmt writer).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// All lines so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
