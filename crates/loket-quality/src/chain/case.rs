//! The state of one case as handovers see it, derived from the journal: the latest event
//! of each type per partner (with only the payload members some expectation reads), the
//! timeline of every event (what, from whom, when: no payload) and the handovers evaluated
//! so far. Pure: [`super::store`] keeps it.

use std::collections::BTreeSet;

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
    /// Only the members some expectation reads.
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseState {
    /// One per (type, partner), in the order first seen.
    pub latest: Vec<LatestEvent>,
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
        self.timeline.push(TimelineEntry {
            sequence: event.sequence,
            received_at_micros: event.received_at_micros,
            event_type: event.event_type.to_owned(),
            source: event.source.to_owned(),
        });
    }

    /// The latest event of `event_type` from `partner`.
    pub fn latest(&self, event_type: &str, partner: &str) -> Option<&LatestEvent> {
        self.latest.iter().find(|l| l.event_type == event_type && l.source == partner)
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
        assert_eq!(state.timeline.iter().map(|t| t.sequence).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
