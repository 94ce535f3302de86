//! RFC 3339 dates on the wire (`"2023-09-01T10:15:00Z"`, UTC, whole seconds), Unix seconds in
//! the Rust API and the database. Serde helpers for the admin API's fields.

use serde::{Deserialize as _, Deserializer, Serializer};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// `unix` seconds as RFC 3339 in UTC; a time past year 9999 is shown as that year's end.
pub(crate) fn format(unix: u64) -> String {
    let t = i64::try_from(unix)
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .unwrap_or_else(|| {
            OffsetDateTime::from_unix_timestamp(253_402_300_799)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        });
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// An RFC 3339 date-time (any offset) as Unix seconds; fractions are dropped.
pub(crate) fn parse(text: &str) -> Result<u64, String> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
        format!(
            "`{}` is not an RFC 3339 date-time such as 2030-01-31T12:00:00Z",
            text.chars().take(64).collect::<String>().escape_debug()
        )
    })?;
    u64::try_from(t.unix_timestamp()).map_err(|_| "must be after 1970-01-01T00:00:00Z".into())
}

pub(crate) fn serialize<S: Serializer>(unix: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*unix))
}

pub(crate) fn serialize_opt<S: Serializer>(unix: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match unix {
        Some(t) => s.serialize_str(&format(*t)),
        None => s.serialize_none(),
    }
}

/// `"…"` → `Some(t)`, `null` → `None`.
pub(crate) fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| parse(&text).map_err(serde::de::Error::custom))
        .transpose()
}

/// For a PATCH: absent → `None` (with `#[serde(default)]`), `null` → `Some(None)` (clear),
/// `"…"` → `Some(Some(t))`.
pub(crate) fn deserialize_patch<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<u64>>, D::Error> {
    deserialize_opt(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_offsets() {
        assert_eq!(format(1_693_563_300), "2023-09-01T10:15:00Z");
        assert_eq!(parse("2023-09-01T10:15:00Z"), Ok(1_693_563_300));
        assert_eq!(parse("2023-09-01T12:15:00.5+02:00"), Ok(1_693_563_300));
        assert!(parse("2023-09-01").is_err());
        assert!(parse("1969-12-31T23:59:59Z").is_err());
        assert_eq!(format(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
