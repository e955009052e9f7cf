//! The follower's values per step (case states, timeline and sequence index values) in a
//! compact binary form, postcard: no field names, variable-length integers. sled keeps
//! many small values poorly (every value has its own page fragment), so fewer and smaller
//! values are most of what keeps the quality database small. The values written per
//! handover or per day (outcomes, the dashboard's lines, the day figures) stay JSON.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::corrupt;
use crate::Error;

pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    postcard::to_allocvec(value).map_err(|e| corrupt("a chain record", e))
}

/// `what` names the record in the error.
pub(super) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    postcard::from_bytes(bytes).map_err(|e| corrupt(what, e))
}

/// A JSON object as its JSON text: postcard describes no types of its own, and a JSON
/// value needs a format that does (the payload members a case state keeps).
pub mod json_text {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::{Map, Value};

    pub fn serialize<S: Serializer>(value: &Map<String, Value>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&serde_json::to_string(value).map_err(S::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Map<String, Value>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        serde_json::from_str(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::chain::case::{CaseState, LatestEvent, TimelineEntry};

    #[test]
    fn a_case_state_and_a_timeline_value_come_back_as_they_went_and_smaller_than_json() {
        let data = json!({"status": {"code": "departed", "at": [1, -2, 3.5]}, "forced": true, "note": null});
        let state = CaseState {
            latest: vec![LatestEvent {
                sequence: 1_000_123,
                event_type: "transport-status".into(),
                source: "dvo".into(),
                received_at_micros: 1_700_000_000_000_000,
                at_micros: -5,
                data: data.as_object().unwrap().clone(),
            }],
        };
        let bytes = encode(&state).unwrap();
        assert_eq!(decode::<CaseState>("state", &bytes).unwrap(), state);
        assert!(bytes.len() < serde_json::to_vec(&state).unwrap().len());

        let timeline = vec![
            TimelineEntry { sequence: 7, received_at_micros: 9, event_type: "baggage".into(), source: "dji".into() },
            TimelineEntry { sequence: 9, received_at_micros: 10, event_type: "baggage".into(), source: "coa".into() },
        ];
        let bytes = encode(&timeline.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(decode::<Vec<TimelineEntry>>("timeline", &bytes).unwrap(), timeline);
        assert!(decode::<Vec<TimelineEntry>>("timeline", &bytes[..bytes.len() - 1]).is_err(), "cut short");
    }
}
