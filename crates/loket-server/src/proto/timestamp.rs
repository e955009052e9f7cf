//! Conversions between protobuf timestamps and the journal's Unix microseconds.

use prost_types::Timestamp;

/// Earliest and latest instants loket accepts: years 1 to 9999, as RFC 3339 can write them.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

pub fn to_micros(ts: &Timestamp) -> Option<i64> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    Some(ts.seconds * 1_000_000 + i64::from(ts.nanos / 1_000))
}

pub fn from_micros(micros: i64) -> Timestamp {
    Timestamp { seconds: micros.div_euclid(1_000_000), nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_out_of_range() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -62_135_596_800_000_000] {
            assert_eq!(to_micros(&from_micros(micros)), Some(micros));
        }
        assert_eq!(to_micros(&Timestamp { seconds: 0, nanos: -1 }), None);
        assert_eq!(to_micros(&Timestamp { seconds: 0, nanos: 1_000_000_000 }), None);
        assert_eq!(to_micros(&Timestamp { seconds: i64::MAX, nanos: 0 }), None);
    }
}
