//! What the handover state keeps of a case goes when the case's events go: under
//! retention (an event removed from the journal or its payload purged) and by erasure.
//! The timeline entry of an event, the handovers it triggered (outcomes and the
//! dashboard's lines), its slot in the case state and its `chain-sequences` entry are
//! removed; a case left without events loses its state and its pseudonym. The figures per
//! day hold no case and go by age alone ([`ChainStore::expire_days`]).
//!
//! Every removal runs under the store's `epoch` lock and bumps it, so the follower never
//! commits a chunk prepared on a state removed meanwhile (it prepares it again).

use std::collections::{BTreeSet, HashSet};

use super::codec::encode;
use super::store::{case_key, corrupt, day_key, ChainStore};
use crate::Error;

/// What one removal dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Timeline entries (one per event).
    pub events: u64,
    /// Handover outcomes, with their dashboard lines.
    pub handovers: u64,
    /// Cases left without any event: state and pseudonym dropped.
    pub cases: u64,
}

impl ChainStore {
    /// Drops what the events no longer in the journal left here: those below
    /// `first_retained` and those whose payload was purged (`purged`).
    pub fn expire(&self, first_retained: u64, purged: &HashSet<u64>) -> Result<Removed, Error> {
        let mut epoch = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        *epoch += 1;
        let mut gone = Vec::new();
        for item in self.sequences.range(..first_retained.to_be_bytes()) {
            let (k, v) = item?;
            gone.push((sequence_of(&k)?, String::from_utf8_lossy(&v).into_owned()));
        }
        // Purged in place: already-handled ones have no index entry left.
        for sequence in purged.iter().filter(|s| **s >= first_retained) {
            if let Some(v) = self.sequences.get(sequence.to_be_bytes())? {
                gone.push((*sequence, String::from_utf8_lossy(&v).into_owned()));
            }
        }
        let removed = self.remove_events(&gone, |s| s < first_retained || purged.contains(&s))?;
        self.sequences.flush()?;
        Ok(removed)
    }

    /// Erasure by case: drops the case's state, its history and its pseudonym's mapping,
    /// so nothing derived from its events is kept under the V-number. Returns whether it
    /// had a state.
    pub fn erase_case(&self, case: &str) -> Result<bool, Error> {
        let mut epoch = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        *epoch += 1;
        let had = self.cases.contains_key(case)?;
        let prefix = case_key(case);
        let mut gone = Vec::new();
        for key in self.timeline.scan_prefix(&prefix).keys() {
            let key = key?;
            gone.push((sequence_of(&key[prefix.len()..])?, case.to_owned()));
        }
        self.remove_events(&gone, |_| true)?;
        // Whatever is left under the case's prefix (none when the index is complete).
        for tree in [&self.timeline, &self.outcomes] {
            for key in tree.scan_prefix(&prefix).keys() {
                tree.remove(key?)?;
            }
        }
        self.cases.remove(case)?;
        self.states().forget(case);
        self.pseudonyms.remove(self.pseudonym(case).as_bytes())?;
        self.cases.flush()?;
        Ok(had)
    }

    /// Drops the figures of days before `day` (they name no case; only their age counts).
    pub fn expire_days(&self, day: i32) -> Result<u64, Error> {
        let mut removed = 0;
        for key in self.days.range(..day_key(day, "")).keys() {
            self.days.remove(key?)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes each `(sequence, case)` event's entries, then the state slots for which
    /// `is_gone(sequence)`, and the cases left without events. The caller holds `epoch`.
    fn remove_events(&self, gone: &[(u64, String)], is_gone: impl Fn(u64) -> bool) -> Result<Removed, Error> {
        let mut removed = Removed::default();
        let mut touched = BTreeSet::new();
        for (sequence, case) in gone {
            let mut key = case_key(case);
            key.extend_from_slice(&sequence.to_be_bytes());
            removed.events += u64::from(self.timeline.remove(&key)?.is_some());
            // Outcomes are keyed case | trigger sequence | kind, lines trigger sequence | kind.
            for k in self.outcomes.scan_prefix(&key).keys() {
                self.outcomes.remove(k?)?;
                removed.handovers += 1;
            }
            for k in self.handovers.scan_prefix(sequence.to_be_bytes()).keys() {
                self.handovers.remove(k?)?;
            }
            self.sequences.remove(sequence.to_be_bytes())?;
            touched.insert(case.as_str());
        }
        for case in touched {
            // Whatever happens to its stored state below, the held one is no longer it.
            self.states().forget(case);
            let Some(mut state) = self.state(case)? else { continue };
            if self.timeline.scan_prefix(case_key(case)).next().is_none() {
                self.cases.remove(case)?;
                self.pseudonyms.remove(self.pseudonym(case).as_bytes())?;
                removed.cases += 1;
                continue;
            }
            let before = state.latest.len();
            state.latest.retain(|l| !is_gone(l.sequence));
            if state.latest.len() != before {
                self.cases.insert(case, encode(&state)?)?;
            }
        }
        Ok(removed)
    }
}

fn sequence_of(bytes: &[u8]) -> Result<u64, Error> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| corrupt("chain sequence key", "not 8 bytes"))?))
}

#[cfg(test)]
mod tests {
    use loket_journal::StoredEvent;
    use serde_json::{json, Value};

    use super::*;
    use crate::chain::HandoverSet;

    fn event(sequence: u64, case: &str, source: &str, event_type: &str, data: Value) -> StoredEvent {
        StoredEvent {
            sequence,
            subject: case.to_owned(),
            source: source.to_owned(),
            event_type: event_type.to_owned(),
            received_at_micros: sequence as i64,
            data: serde_json::to_vec(&data).unwrap(),
            ..StoredEvent::default()
        }
    }

    fn departure() -> Value {
        json!({"status": "departed", "toLocation": "Schiphol", "departureKind": "forced"})
    }

    fn sequences(store: &ChainStore, case: &str) -> Option<(Vec<u64>, Vec<u64>)> {
        let history = store.case(&store.pseudonym(case)).unwrap()?;
        Some((
            history.timeline.iter().map(|t| t.sequence).collect(),
            history.handovers.iter().map(|h| h.trigger_sequence).collect(),
        ))
    }

    fn every_type() -> HandoverSet {
        let types = ["transport-status", "baggage", "physical-features", "medical-file-transfer", "medical-transfer-consent"];
        HandoverSet::embedded(&types).unwrap()
    }

    #[test]
    fn expired_events_leave_the_case_state_and_a_stale_step_is_prepared_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let set = every_type();
        let store = ChainStore::open(&db, &set).unwrap();
        let bag = json!({"instructionVersion": "2018-05"});
        let first = [
            event(1, "A", "dji", "baggage", bag.clone()),
            event(2, "B", "dji", "baggage", bag),
            event(3, "A", "dvo", "transport-status", departure()),
        ];
        assert!(store.commit(store.prepare(&set, &first).unwrap()).unwrap());
        assert_eq!(sequences(&store, "A"), Some((vec![1, 3], vec![3])));
        let later = [event(4, "A", "dtv", "physical-features", json!({"photoReference": "p"}))];
        let stale = store.prepare(&set, &later).unwrap();

        // 1 from the front, 2 purged in place: B has nothing left, A keeps 3 and its handover.
        let removed = store.expire(2, &HashSet::from([2])).unwrap();
        assert_eq!(removed, Removed { events: 2, handovers: 0, cases: 1 });
        assert_eq!(sequences(&store, "B"), None);
        assert!(store.state("B").unwrap().is_none());
        assert!(store.state("A").unwrap().unwrap().latest("baggage", "dji").is_none(), "its slot went with event 1");
        assert!(!store.commit(stale).unwrap(), "prepared on the state before the removal");
        assert!(store.commit(store.prepare(&set, &later).unwrap()).unwrap());
        assert_eq!(sequences(&store, "A"), Some((vec![3, 4], vec![3])));
        assert!(store.state("A").unwrap().unwrap().latest("baggage", "dji").is_none(), "not written back");

        // The trigger expires: the handover goes from the case and the dashboard's list.
        assert_eq!(store.recent(10, false).unwrap().len(), 1);
        let removed = store.expire(4, &HashSet::new()).unwrap();
        assert_eq!(removed, Removed { events: 1, handovers: 1, cases: 0 });
        assert_eq!(sequences(&store, "A"), Some((vec![4], vec![])));
        assert!(store.recent(10, false).unwrap().is_empty());
        assert_eq!(store.expire(4, &HashSet::new()).unwrap(), Removed::default(), "nothing twice");
        // The day's figures stay until the day is past the quality period (day 0 here).
        assert_eq!(store.expire_days(0).unwrap(), 0);
        assert_eq!(store.expire_days(1).unwrap(), 1);
        assert_eq!(store.days.len(), 0);
        assert!(store.erase_case("A").unwrap());
        assert_eq!((sequences(&store, "A"), store.sequences.len()), (None, 0));
    }
    #[test]
    fn a_removed_case_or_slot_never_comes_back_from_the_states_held_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let set = every_type();
        let store = ChainStore::open(&db, &set).unwrap();
        let bag = json!({"instructionVersion": "2018-05"});
        let photo = json!({"photoReference": "p"});
        let first = [
            event(1, "A", "dji", "baggage", bag.clone()),
            event(2, "B", "dji", "baggage", bag.clone()),
            event(3, "A", "dtv", "physical-features", photo.clone()),
        ];
        assert!(store.commit(store.prepare(&set, &first).unwrap()).unwrap());
        assert!(store.states().holds("A") && store.states().holds("B"), "held after the commit");

        // Retention: A loses its baggage slot, B everything.
        store.expire(2, &HashSet::from([2])).unwrap();
        let later = [event(4, "A", "dvo", "transport-status", departure()), event(5, "B", "dtv", "physical-features", photo)];
        assert!(store.commit(store.prepare(&set, &later).unwrap()).unwrap());
        let a = store.state("A").unwrap().unwrap();
        assert!(a.latest("baggage", "dji").is_none(), "the expired slot is not written back: {a:?}");
        assert_eq!(a.latest.len(), 2);
        let b = store.state("B").unwrap().unwrap();
        assert_eq!(b.latest.iter().map(|l| l.sequence).collect::<Vec<_>>(), [5], "B starts over: {b:?}");
        assert_eq!(sequences(&store, "B"), Some((vec![5], vec![])));

        // Erasure: A starts over too.
        assert!(store.erase_case("A").unwrap());
        assert!(!store.states().holds("A"));
        assert!(store.commit(store.prepare(&set, &[event(6, "A", "dji", "baggage", bag)]).unwrap()).unwrap());
        let a = store.state("A").unwrap().unwrap();
        assert_eq!(a.latest.iter().map(|l| l.sequence).collect::<Vec<_>>(), [6], "{a:?}");
        assert_eq!(sequences(&store, "A"), Some((vec![6], vec![])));
    }
}
