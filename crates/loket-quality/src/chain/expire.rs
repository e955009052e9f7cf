//! What the handover state keeps of a case goes when the case's events go: under
//! retention (an event removed from the journal or its payload purged) and by erasure.
//! The timeline entry of an event, the handovers it triggered (outcomes and the
//! dashboard's lines), its slot in the case state and its entry in the `chain-sequences`
//! value of its step are removed; a step value left with some entries is rewritten
//! without the others; a case left without events loses its state and its pseudonym. The
//! figures per day hold no case and go by age alone ([`ChainStore::expire_days`]).
//!
//! Every removal runs under the store's `epoch` lock and bumps it, so the follower never
//! commits a step prepared on a state removed meanwhile (it prepares it again), and
//! forgets the states it changes from those held in memory.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::case::TimelineEntry;
use super::codec::{decode, encode};
use super::store::{case_key, chunk_key, day_key, state_key, ChainStore};
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
        // The steps that start before `first_retained` (the last of them may keep some
        // events), and the step of each purged event: the last one starting at or before it.
        let mut chunks = BTreeSet::new();
        for key in self.sequences.range(..first_retained.to_be_bytes()).keys() {
            chunks.insert(sequence_of(&key?)?);
        }
        for sequence in purged.iter().filter(|s| **s >= first_retained) {
            if let Some(key) = self.sequences.range(..=sequence.to_be_bytes()).keys().next_back() {
                chunks.insert(sequence_of(&key?)?);
            }
        }
        let removed = self.remove_events(&chunks, |s, _| s < first_retained || purged.contains(&s))?;
        self.sequences.flush()?;
        Ok(removed)
    }

    /// Erasure by case: drops the case's state, its history and its pseudonym's mapping,
    /// so nothing derived from its events is kept under the V-number. Returns whether it
    /// had a state.
    pub fn erase_case(&self, case: &str) -> Result<bool, Error> {
        let mut epoch = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        *epoch += 1;
        let had = self.state.contains_key(state_key(case))?;
        let prefix = case_key(case);
        // Its timeline values are keyed by the steps that hold its events.
        let mut chunks = BTreeSet::new();
        for key in self.timeline.scan_prefix(&prefix).keys() {
            chunks.insert(sequence_of(&key?[prefix.len()..])?);
        }
        self.remove_events(&chunks, |_, c| c == case)?;
        // Whatever is left under the case's prefix (none when the index is complete).
        for tree in [&self.timeline, &self.outcomes] {
            for key in tree.scan_prefix(&prefix).keys() {
                tree.remove(key?)?;
            }
        }
        self.state.remove(state_key(case))?;
        self.states().forget(case);
        self.pseudonyms.remove(self.pseudonym(case).as_bytes())?;
        self.state.flush()?;
        Ok(had)
    }

    /// Drops the figures of days before `day` (they name no case; only their age counts).
    pub fn expire_days(&self, day: i32) -> Result<u64, Error> {
        let mut removed = 0;
        for key in self.state.range(day_key(i32::MIN, "")..day_key(day, "")).keys() {
            self.state.remove(key?)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes the events of the steps `chunks` for which `is_gone(sequence, case)`: their entries
    /// in the step's index and timeline values, their handovers, then their state slots,
    /// and the cases left without events. The caller holds `epoch`.
    fn remove_events(&self, chunks: &BTreeSet<u64>, is_gone: impl Fn(u64, &str) -> bool) -> Result<Removed, Error> {
        let mut removed = Removed::default();
        let mut touched = BTreeSet::new();
        for first in chunks {
            let Some(value) = self.sequences.get(first.to_be_bytes())? else { continue };
            let index: Vec<(u64, String)> = decode("chain sequence index", &value)?;
            let (gone, kept): (Vec<_>, Vec<_>) = index.into_iter().partition(|(s, c)| is_gone(*s, c));
            if gone.is_empty() {
                continue;
            }
            rewrite(&self.sequences, &first.to_be_bytes(), &kept)?;
            let mut by_case: BTreeMap<&str, HashSet<u64>> = BTreeMap::new();
            for (sequence, case) in &gone {
                by_case.entry(case).or_default().insert(*sequence);
                // Outcomes are keyed case | trigger sequence | kind, lines trigger sequence | kind.
                let mut key = case_key(case);
                key.extend_from_slice(&sequence.to_be_bytes());
                for k in self.outcomes.scan_prefix(&key).keys() {
                    self.outcomes.remove(k?)?;
                    removed.handovers += 1;
                }
                for k in self.handovers.scan_prefix(sequence.to_be_bytes()).keys() {
                    self.handovers.remove(k?)?;
                }
            }
            for (case, sequences) in by_case {
                let key = chunk_key(case, *first);
                let Some(value) = self.timeline.get(&key)? else { continue };
                let mut entries: Vec<TimelineEntry> = decode("timeline value", &value)?;
                let before = entries.len();
                entries.retain(|e| !sequences.contains(&e.sequence));
                removed.events += (before - entries.len()) as u64;
                rewrite(&self.timeline, &key, &entries)?;
                touched.insert(case.to_owned());
            }
        }
        for case in &touched {
            // Whatever happens to its stored state below, the held one is no longer it.
            self.states().forget(case);
            let Some(mut state) = self.state(case)? else { continue };
            if self.timeline.scan_prefix(case_key(case)).next().is_none() {
                self.state.remove(state_key(case))?;
                self.pseudonyms.remove(self.pseudonym(case).as_bytes())?;
                removed.cases += 1;
                continue;
            }
            let before = state.latest.len();
            state.latest.retain(|l| !is_gone(l.sequence, case));
            if state.latest.len() != before {
                self.state.insert(state_key(case), encode(&state)?)?;
            }
        }
        Ok(removed)
    }
}

/// Writes what is left of a step value, or removes it when nothing is.
fn rewrite<T: serde::Serialize>(tree: &sled::Tree, key: &[u8], left: &[T]) -> Result<(), Error> {
    if left.is_empty() {
        tree.remove(key)?;
    } else {
        tree.insert(key, encode(left)?)?;
    }
    Ok(())
}

fn sequence_of(bytes: &[u8]) -> Result<u64, Error> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| super::store::corrupt("chain sequence key", "not 8 bytes"))?))
}

#[cfg(test)]
mod tests {
    use loket_journal::StoredEvent;
    use serde_json::{json, Value};

    use super::*;
    use crate::aggregate::Filter;
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
        let types =
            ["transport-status", "baggage", "physical-features", "medical-file-transfer", "medical-transfer-consent"];
        HandoverSet::embedded(&types).unwrap()
    }

    /// A chain store in a new database, with the handovers of every type.
    fn fresh_store() -> (tempfile::TempDir, HandoverSet, ChainStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let set = every_type();
        let store = ChainStore::open(&db, &set).unwrap();
        (dir, set, store)
    }

    #[test]
    fn a_step_taken_in_parts_writes_a_case_once_and_keeps_emitted_from_the_old_layout() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        // Layout 5: `emitted` in chain-meta, states in a tree of their own.
        let meta = db.open_tree("chain-meta").unwrap();
        meta.insert("emitted", &7u64.to_be_bytes()).unwrap();
        meta.insert("followed", &9u64.to_be_bytes()).unwrap();
        db.open_tree("chain-cases").unwrap().insert("A", "old").unwrap();
        let set = every_type();
        let store = ChainStore::open(&db, &set).unwrap();
        assert_eq!((store.emitted().unwrap(), store.followed().unwrap()), (7, 0));
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"chain-cases"), "the old tree is dropped");
        assert!(meta.get("followed").unwrap().is_none() && meta.get("emitted").unwrap().is_none());

        let bag = json!({"instructionVersion": "2018-05"});
        let mut step = store.prepare(&set, &[event(1, "A", "dji", "baggage", bag.clone())]).unwrap();
        store.extend(&set, &mut step, &[event(2, "B", "dji", "baggage", bag)]).unwrap();
        store.extend(&set, &mut step, &[event(3, "A", "dvo", "transport-status", departure())]).unwrap();
        assert_eq!((step.up_to, step.outcomes.len()), (3, 1));
        assert!(store.commit(step).unwrap());
        assert_eq!((store.followed().unwrap(), store.emitted().unwrap()), (3, 7));
        assert_eq!((store.timeline.len(), store.sequences.len()), (2, 1), "one value per case and one per step");
        assert_eq!(sequences(&store, "A"), Some((vec![1, 3], vec![3])));
        let a = store.state("A").unwrap().unwrap();
        assert_eq!(a.latest.iter().map(|l| l.sequence).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(store.report(&Filter::default()).unwrap().days.len(), 1);

        // A step taken again after retention shortened it left a value that overlaps the next.
        let overlapping =
            [TimelineEntry { sequence: 3, received_at_micros: 3, event_type: "x".into(), source: "dvo".into() }];
        store.timeline.insert(chunk_key("A", 3), encode(&overlapping[..]).unwrap()).unwrap();
        assert_eq!(sequences(&store, "A"), Some((vec![1, 3], vec![3])), "each event once");
    }

    #[test]
    fn expired_events_leave_the_case_state_and_a_stale_step_is_prepared_again() {
        let (_dir, set, store) = fresh_store();
        let bag = json!({"instructionVersion": "2018-05"});
        let first = [
            event(1, "A", "dji", "baggage", bag.clone()),
            event(2, "B", "dji", "baggage", bag),
            event(3, "A", "dvo", "transport-status", departure()),
        ];
        assert!(store.commit(store.prepare(&set, &first).unwrap()).unwrap());
        assert_eq!(sequences(&store, "A"), Some((vec![1, 3], vec![3])));
        assert_eq!((store.timeline.len(), store.sequences.len()), (2, 1), "one value per case and one per step");
        let later = [event(4, "A", "dtv", "physical-features", json!({"photoReference": "p"}))];
        let stale = store.prepare(&set, &later).unwrap();

        // 1 from the front, 2 purged in place: B has nothing left, A keeps 3 and its handover.
        let removed = store.expire(2, &HashSet::from([2])).unwrap();
        assert_eq!(removed, Removed { events: 2, handovers: 0, cases: 1 });
        let index: Vec<(u64, String)> =
            decode("index", &store.sequences.get(1u64.to_be_bytes()).unwrap().unwrap()).unwrap();
        assert_eq!(index, [(3, "A".to_owned())], "the step's index value is rewritten without the expired events");
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
        assert!(store.report(&Filter::default()).unwrap().days.is_empty());
        assert!(store.erase_case("A").unwrap());
        assert_eq!((sequences(&store, "A"), store.sequences.len()), (None, 0));
    }

    #[test]
    fn a_removed_case_or_slot_never_comes_back_from_the_states_held_in_memory() {
        let (_dir, set, store) = fresh_store();
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
        let later =
            [event(4, "A", "dvo", "transport-status", departure()), event(5, "B", "dtv", "physical-features", photo)];
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
