//! Instants as loket stores them: Unix microseconds, written as RFC 3339 where people or
//! other systems read them.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The current time in Unix microseconds.
pub fn now_micros() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// `micros` as RFC 3339 in UTC; `None` outside the years RFC 3339 can write (1 to 9999).
pub fn rfc3339(micros: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok()?;
    t.format(&Rfc3339).ok()
}

/// An RFC 3339 text as Unix microseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for micros in [0, 1_700_000_000_123_456, -62_135_596_800_000_000] {
            let text = rfc3339(micros).unwrap();
            assert_eq!(parse_rfc3339(&text), Some(micros), "{text}");
        }
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(rfc3339(i64::MAX), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
