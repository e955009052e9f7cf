//! The case states the handover follower keeps in memory between steps, in front of
//! `chain-state`: a step then reads from sled (and decodes) only the cases it does not
//! hold. The follower is the only writer of the states, so what is held equals what is
//! stored, as long as every removal ([`super::expire`]) forgets the cases it changes.
//!
//! A step takes the states it changes out ([`StateCache::take`]) and the commit puts the
//! new ones back, so a step that is refused or fails leaves nothing behind that is not on
//! disk. Bounded by bytes (an estimate from the stored size), least recently committed
//! out first.

use std::collections::{BTreeMap, HashMap};

use super::case::CaseState;

/// What a held state is counted as, beyond its stored size: the key twice (map and
/// order), the entry and the allocations of its strings and members.
const OVERHEAD: usize = 96;

pub(super) struct StateCache {
    limit: usize,
    bytes: usize,
    /// Bumped at every [`StateCache::put`]: the entry's place in `order`.
    tick: u64,
    entries: HashMap<String, Entry>,
    /// Last commit → case, least recent first.
    order: BTreeMap<u64, String>,
}

struct Entry {
    state: CaseState,
    bytes: usize,
    tick: u64,
}

impl StateCache {
    pub fn new(limit: usize) -> StateCache {
        StateCache { limit, bytes: 0, tick: 0, entries: HashMap::new(), order: BTreeMap::new() }
    }

    /// Takes `case`'s state out, if held.
    pub fn take(&mut self, case: &str) -> Option<CaseState> {
        let entry = self.entries.remove(case)?;
        self.order.remove(&entry.tick);
        self.bytes -= entry.bytes;
        Some(entry.state)
    }

    /// Holds `state` (as stored in `stored` bytes), dropping the least recent states while
    /// over the bound; a state larger than the bound is not held.
    pub fn put(&mut self, case: String, state: CaseState, stored: usize) {
        self.take(&case);
        let bytes = stored + 2 * case.len() + OVERHEAD;
        if bytes > self.limit {
            return;
        }
        self.tick += 1;
        self.order.insert(self.tick, case.clone());
        self.entries.insert(case, Entry { state, bytes, tick: self.tick });
        self.bytes += bytes;
        while self.bytes > self.limit {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.bytes -= gone.bytes;
            }
        }
    }

    /// Drops `case`'s state: its stored state changed or went.
    pub fn forget(&mut self, case: &str) {
        self.take(case);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    #[cfg(test)]
    pub fn holds(&self, case: &str) -> bool {
        self.entries.contains_key(case)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(sequence: u64) -> CaseState {
        let mut state = CaseState::default();
        let data = serde_json::json!({});
        state.observe(
            &super::super::Observed {
                sequence,
                received_at_micros: 0,
                time_micros: None,
                event_type: "baggage",
                source: "dji",
                data: &data,
            },
            &Default::default(),
        );
        state
    }

    #[test]
    fn stays_within_its_bytes_dropping_the_least_recent_and_hands_a_state_out_once() {
        let one = 100 + 2 + OVERHEAD;
        let mut cache = StateCache::new(3 * one);
        for (i, case) in ["A", "B", "C"].into_iter().enumerate() {
            cache.put(case.to_owned(), state(i as u64), 100);
        }
        assert_eq!(cache.bytes, 3 * one);
        // B committed again: A is now the least recent and goes for D.
        cache.put("B".to_owned(), state(7), 100);
        cache.put("D".to_owned(), state(8), 100);
        assert!(!cache.holds("A") && cache.holds("B") && cache.holds("C") && cache.holds("D"));
        assert_eq!(cache.bytes, 3 * one);
        assert_eq!(cache.take("B").unwrap().latest[0].sequence, 7);
        assert!(cache.take("B").is_none(), "taken out by the step that changes it");
        cache.forget("C");
        assert!(!cache.holds("C"));
        cache.put("E".to_owned(), state(9), 10 * one);
        assert!(!cache.holds("E"), "larger than the bound");
        assert_eq!(cache.bytes, one);
        cache.clear();
        assert_eq!((cache.bytes, cache.entries.len(), cache.order.len()), (0, 0, 0));
    }
}
