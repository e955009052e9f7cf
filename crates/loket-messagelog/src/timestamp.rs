//! Protobuf timestamps as RFC 3339 text, the form of every time in a message log and on
//! the command line.

use prost_types::Timestamp;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The timestamp as RFC 3339; empty when it is outside what RFC 3339 can write.
pub fn rfc3339(ts: &Timestamp) -> String {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(Timestamp { seconds: t.unix_timestamp(), nanos: t.nanosecond() as i32 })
}
