//! The state of one case as handovers see it, derived from the journal: the latest event
//! of each type per partner, with only the payload members some expectation reads. Its
//! size is bounded by types × partners, whatever the length of the case, because the
//! follower reads and writes it at every event of the case. What grows with the case (the
//! timeline, the handovers evaluated) is [`CaseHistory`], kept append-only beside it.
//! Pure: [`super::store`] keeps both.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::evaluate::HandoverOutcome;

/// A journal event as the case state takes it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub sequence: u64,
    pub received_at_micros: i64,
    /// The event's own `time`, when it has one.
    pub time_micros: Option<i64>,
    pub event_type: &'a str,
    pub source: &'a str,
    pub data: &'a Value,
}

impl Observed<'_> {
    /// When it happened: its own `time`, else when the gateway received it. Freshness is
    /// judged on this, so a replayed log keeps the gaps of the original timeline.
    pub fn at_micros(&self) -> i64 {
        self.time_micros.unwrap_or(self.received_at_micros)
    }
}

/// The latest event of one type from one partner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestEvent {
    pub sequence: u64,
    pub event_type: String,
    pub source: String,
    pub received_at_micros: i64,
    /// [`Observed::at_micros`].
    pub at_micros: i64,
    /// Only the members some expectation reads; stored as JSON text (postcard has no JSON value).
    #[serde(with = "super::codec::json_text")]
    pub data: Map<String, Value>,
}

/// One line of a case's timeline: no payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub sequence: u64,
    pub received_at_micros: i64,
    pub event_type: String,
    pub source: String,
}

impl TimelineEntry {
    pub fn of(event: &Observed<'_>) -> TimelineEntry {
        TimelineEntry {
            sequence: event.sequence,
            received_at_micros: event.received_at_micros,
            event_type: event.event_type.to_owned(),
            source: event.source.to_owned(),
        }
    }
}

/// What the handovers evaluate on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseState {
    /// One per (type, partner), in the order first seen.
    pub latest: Vec<LatestEvent>,
}

/// A case as the dashboard shows it: every event (no payload) and every handover, in
/// journal order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseHistory {
    pub timeline: Vec<TimelineEntry>,
    pub handovers: Vec<HandoverOutcome>,
}

impl CaseState {
    /// Takes `event` in (after any handover it triggers was evaluated on the state before it).
    pub fn observe(&mut self, event: &Observed<'_>, members: &BTreeSet<String>) {
        let data: Map<String, Value> = match event.data {
            Value::Object(object) => members.iter().filter_map(|m| Some((m.clone(), object.get(m)?.clone()))).collect(),
            _ => Map::new(),
        };
        let latest = LatestEvent {
            sequence: event.sequence,
            event_type: event.event_type.to_owned(),
            source: event.source.to_owned(),
            received_at_micros: event.received_at_micros,
            at_micros: event.at_micros(),
            data,
        };
        match self.latest.iter_mut().find(|l| l.event_type == event.event_type && l.source == event.source) {
            Some(slot) => *slot = latest,
            None => self.latest.push(latest),
        }
    }

    /// The latest event of `event_type` from `partner`.
    pub fn latest(&self, event_type: &str, partner: &str) -> Option<&LatestEvent> {
        self.latest.iter().find(|l| l.event_type == event_type && l.source == partner)
    }
}

/// The members `wanted` of a JSON object payload, as an object; the other members are
/// skipped without being built. The follower reads every event of the journal and the
/// expectations read a handful of members, so building the whole payload was most of its
/// cost per event.
pub fn members_of(payload: &[u8], wanted: &BTreeSet<String>) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = Wanted(wanted).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

struct Wanted<'a>(&'a BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for Wanted<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Wanted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.0.contains(&key) {
                out.insert(key, map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_the_latest_per_type_and_partner_with_only_the_members_read() {
        let members: BTreeSet<String> = ["photoReference".to_owned()].into();
        let mut state = CaseState::default();
        let first = json!({"vNumber": "1", "photoReference": "p1", "height": 180});
        let second = json!({"vNumber": "1", "height": 181});
        for (sequence, source, data) in [(1, "dtv", &first), (2, "kmar", &first), (3, "dtv", &second)] {
            let e = Observed {
                sequence,
                received_at_micros: sequence as i64,
                time_micros: None,
                event_type: "physical-features",
                source,
                data,
            };
            state.observe(&e, &members);
        }
        assert_eq!(state.latest.len(), 2);
        let dtv = state.latest("physical-features", "dtv").unwrap();
        assert_eq!((dtv.sequence, dtv.data.len()), (3, 0), "the later event without a photo replaces the earlier");
        assert_eq!(
            state.latest("physical-features", "kmar").unwrap().data,
            *json!({"photoReference": "p1"}).as_object().unwrap()
        );
    }

    #[test]
    fn reads_only_the_wanted_members_of_a_payload() {
        let wanted: BTreeSet<String> = ["status".to_owned(), "risk\"Level".to_owned()].into();
        let payload =
            br#"{"vNumber":"1","status":{"code":"departed","at":[1,2]},"notes":"a \"quoted\" text","risk\"Level":3}"#;
        assert_eq!(
            members_of(payload, &wanted).unwrap(),
            json!({"status": {"code": "departed", "at": [1, 2]}, "risk\"Level": 3})
        );
        assert_eq!(members_of(b"{}", &wanted).unwrap(), json!({}));
        assert!(members_of(b"[1]", &wanted).is_err(), "not an object");
        assert!(members_of(br#"{"status": 1} trailing"#, &wanted).is_err());
    }
}
