//! `[timeouts]` and `[limits]`: how long the gateway waits and how much it takes.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Errors;

/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time an upstream has to answer (until its response head).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound of the graceful shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit of request bodies.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default time a client has, from connecting, to send its first request head (the HTTP/2
/// preface and settings included), and an HTTP/1.1 client for each request head.
pub(super) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client connection may stay without a request in flight (nginx's
/// `http2_idle_timeout`).
pub(super) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Default number of client connections served at once; more are closed as they come.
pub(super) const DEFAULT_MAX_CONNECTIONS: usize = 1024;

text_table! {
    /// `[timeouts]` as written.
    RawTimeouts { connect, request, drain, header_read, idle }
}

/// `[limits]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_body_bytes: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
}

/// The checked `[timeouts]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// TCP connect to the upstream.
    pub(crate) connect: Duration,
    /// From forwarding until the upstream's response head.
    pub(crate) request: Duration,
    /// How long in-flight requests may still finish on shutdown.
    pub(crate) drain: Duration,
    /// From accepting a connection until its first request head; each HTTP/1.1 request head.
    pub(crate) header_read: Duration,
    /// How long a client connection may stay without a request in flight.
    pub(crate) idle: Duration,
}

/// Checks `[timeouts]`: each a positive duration.
pub(super) fn timeouts(raw: &RawTimeouts, errors: &mut Errors<'_>) -> Timeouts {
    Timeouts {
        connect: duration(raw.connect.as_ref(), DEFAULT_CONNECT_TIMEOUT, errors),
        request: duration(raw.request.as_ref(), DEFAULT_REQUEST_TIMEOUT, errors),
        drain: duration(raw.drain.as_ref(), DEFAULT_DRAIN_TIMEOUT, errors),
        header_read: duration(
            raw.header_read.as_ref(),
            DEFAULT_HEADER_READ_TIMEOUT,
            errors,
        ),
        idle: duration(raw.idle.as_ref(), DEFAULT_IDLE_TIMEOUT, errors),
    }
}

/// Checks `[limits] max_connections`: a positive number.
pub(super) fn max_connections(raw: &RawLimits, errors: &mut Errors<'_>) -> usize {
    let Some(v) = &raw.max_connections else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    match usize::try_from(*v.get_ref()) {
        Ok(n) if n > 0 => n,
        _ => {
            errors.at(
                v.span(),
                "the connection limit must be a positive number of connections",
            );
            DEFAULT_MAX_CONNECTIONS
        }
    }
}

/// Checks `[limits] max_body_bytes`: a positive number.
pub(super) fn max_body_bytes(raw: &RawLimits, errors: &mut Errors<'_>) -> u64 {
    let Some(v) = &raw.max_body_bytes else {
        return DEFAULT_MAX_BODY_BYTES;
    };
    match u64::try_from(*v.get_ref()) {
        Ok(n) if n > 0 => n,
        _ => {
            errors.at(
                v.span(),
                "the body limit must be a positive number of bytes",
            );
            DEFAULT_MAX_BODY_BYTES
        }
    }
}

fn duration(
    value: Option<&Spanned<String>>,
    default: Duration,
    errors: &mut Errors<'_>,
) -> Duration {
    let Some(v) = value else {
        return default;
    };
    match parse_duration(v.get_ref()) {
        Some(d) if !d.is_zero() => d,
        _ => {
            errors.at(
                v.span(),
                format!(
                    "`{}` is not a duration: write e.g. \"250ms\", \"5s\" or \"2m\"",
                    v.get_ref()
                ),
            );
            default
        }
    }
}

/// `250ms`, `5s`, `2m`, `1h`.
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{PUBLIC, errors_of, public_with};
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1.5s"), None);
    }

    #[test]
    fn defaults_and_values() {
        let c = public_with("");
        assert_eq!(c.timeouts.connect, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.timeouts.request, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(c.drain_timeout(), DEFAULT_DRAIN_TIMEOUT);
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.timeouts.header_read, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(c.timeouts.idle, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
        let c = public_with(
            "[timeouts]\nconnect = \"250ms\"\nrequest = \"2m\"\ndrain = \"1s\"\n\
             header_read = \"2s\"\nidle = \"1m\"\n\
             [limits]\nmax_body_bytes = 1\nmax_connections = 3\n",
        );
        assert_eq!(c.timeouts.header_read, Duration::from_secs(2));
        assert_eq!(c.timeouts.idle, Duration::from_secs(60));
        assert_eq!(c.max_connections, 3);
        assert_eq!(c.timeouts.connect, Duration::from_millis(250));
        assert_eq!(c.timeouts.request, Duration::from_secs(120));
        assert_eq!(c.drain_timeout(), Duration::from_secs(1));
        assert_eq!(c.max_body_bytes, 1);
    }

    #[test]
    fn zero_and_negative_are_refused() {
        let e = errors_of(&format!(
            "{PUBLIC}[timeouts]\nconnect = \"0s\"\n[limits]\nmax_body_bytes = -1\nmax_connections = 0\n"
        ));
        let found: Vec<(usize, usize)> = e.iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(found, [(8, 11), (10, 18), (11, 19)], "{e:#?}");
        assert!(e[0].2.contains("is not a duration"), "{e:#?}");
        assert!(e[1].2.contains("positive number of bytes"), "{e:#?}");
        assert!(e[2].2.contains("positive number of connections"), "{e:#?}");
    }
}
