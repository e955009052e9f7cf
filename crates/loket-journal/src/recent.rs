//! The events most recently committed, as readers get them, kept in memory by the writer.
//!
//! The gateway's followers (the access indexer, the handover follower) and live
//! subscribers read each event just after the writer committed it; read back from sled,
//! every event was decoded and its payload decrypted again (about 15,000 instructions per
//! event and reader). The writer hands each committed batch's plain events over instead,
//! and a read that starts within them is answered from memory.
//!
//! What is kept is bounded in bytes; older events are read from sled as before. Anything
//! that changes stored events in place (erasure, retention) empties it and keeps it empty
//! for the duration of the change (without holding its lock, so readers on async threads
//! never wait for it), and a batch written before or during such a change is not taken:
//! no reader gets from here what is gone from disk.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::event::StoredEvent;

/// Bytes an event takes here beyond its payload (strings, the record itself).
const OVERHEAD: usize = 256;

pub(crate) struct Recent {
    budget: usize,
    state: Mutex<State>,
}

/// Which clearing of [`Recent`] a batch was written after: a batch sealed before an
/// erasure and handed over after it must not be kept (its key may be the destroyed one).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation(u64);

#[derive(Default)]
struct State {
    events: VecDeque<StoredEvent>,
    bytes: usize,
    /// Bumped as every change of stored events begins and ends.
    generation: u64,
    /// Changes of stored events under way.
    changes: usize,
}

/// Keeps [`Recent`] empty while stored events change; see [`Recent::hold_cleared`].
pub(crate) struct Cleared<'a>(&'a Recent);

impl Drop for Cleared<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.changes -= 1;
        state.generation += 1;
    }
}

fn size(event: &StoredEvent) -> usize {
    event.data.len() + event.id.len() + event.subject.len() + OVERHEAD
}

impl Recent {
    /// Keeps at most about `budget` bytes of events (0: none).
    pub fn new(budget: usize) -> Recent {
        Recent { budget, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Taken by the writer before it writes a batch, and handed back with it.
    pub fn generation(&self) -> Generation {
        Generation(self.state().generation)
    }

    /// Takes the plain events of a batch committed since `generation` was taken:
    /// consecutive, following what is kept. Dropped if it was cleared meanwhile.
    pub fn extend(&self, generation: Generation, batch: impl Iterator<Item = StoredEvent>) {
        if self.budget == 0 {
            return;
        }
        let mut state = self.state();
        if state.generation != generation.0 || state.changes > 0 {
            return;
        }
        for event in batch {
            // Not consecutive (kept events were cleared, or the writer reopened): start over.
            if state.events.back().is_some_and(|last| last.sequence + 1 != event.sequence) {
                state.events.clear();
                state.bytes = 0;
            }
            state.bytes += size(&event);
            state.events.push_back(event);
        }
        while state.bytes > self.budget {
            let Some(old) = state.events.pop_front() else { break };
            state.bytes -= size(&old);
        }
    }

    /// Of up to `max` events from `from` to `last`, those `keep` selects, and the sequence
    /// of the last one looked at; `None` unless `from` is among those kept.
    pub fn read_where(
        &self,
        from: u64,
        last: u64,
        max: usize,
        keep: impl Fn(&StoredEvent) -> bool,
    ) -> Option<(Vec<StoredEvent>, u64)> {
        let state = self.state();
        let first = state.events.front()?.sequence;
        if from < first || from > last {
            return None;
        }
        let skip = usize::try_from(from - first).ok()?;
        let count = usize::try_from(last - from + 1).unwrap_or(usize::MAX).min(max);
        let mut looked_at = None;
        let mut events = Vec::new();
        for event in state.events.iter().skip(skip).take(count) {
            looked_at = Some(event.sequence);
            if keep(event) {
                events.push(event.clone());
            }
        }
        // No answer would read as "nothing after `from`": let sled answer instead.
        Some((events, looked_at?))
    }

    /// Empties what is kept and keeps it empty until the guard is dropped: taken around a
    /// change of stored events. Batches whose generation was taken before the guard is
    /// dropped are not kept.
    pub fn hold_cleared(&self) -> Cleared<'_> {
        let mut state = self.state();
        state.events.clear();
        state.bytes = 0;
        state.generation += 1;
        state.changes += 1;
        Cleared(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64) -> StoredEvent {
        StoredEvent { sequence, data: vec![0; 100], ..Default::default() }
    }

    fn sequences(events: Option<Vec<StoredEvent>>) -> Option<Vec<u64>> {
        events.map(|e| e.iter().map(|e| e.sequence).collect())
    }

    impl Recent {
        fn read(&self, from: u64, last: u64, max: usize) -> Option<Vec<StoredEvent>> {
            self.read_where(from, last, max, |_| true).map(|(events, _)| events)
        }
    }

    #[test]
    fn a_filtered_read_says_how_far_it_looked() {
        let recent = Recent::new(1 << 20);
        recent.extend(recent.generation(), (1..=10).map(event));
        let (kept, looked_at) = recent.read_where(3, 10, 5, |e| e.sequence % 2 == 0).unwrap();
        assert_eq!((kept.iter().map(|e| e.sequence).collect::<Vec<_>>(), looked_at), (vec![4, 6], 7));
        let (kept, looked_at) = recent.read_where(9, 10, 5, |_| false).unwrap();
        assert_eq!((kept.len(), looked_at), (0, 10), "nothing kept, yet read up to last");
    }

    #[test]
    fn a_read_within_what_is_kept_is_answered_up_to_last_and_max() {
        let recent = Recent::new(1 << 20);
        recent.extend(recent.generation(), (1..=10).map(event));
        assert_eq!(sequences(recent.read(4, 10, 3)), Some(vec![4, 5, 6]));
        assert_eq!(sequences(recent.read(9, 10, 100)), Some(vec![9, 10]));
        assert_eq!(sequences(recent.read(9, 9, 100)), Some(vec![9]), "never above last");
        assert_eq!(recent.read(11, 10, 100).map(|e| e.len()), None);
        assert!(recent.read(0, 10, 100).is_none(), "before the first kept: sled answers");
    }

    #[test]
    fn the_oldest_go_past_the_budget_and_a_gap_starts_over() {
        let recent = Recent::new(3 * (100 + OVERHEAD));
        recent.extend(recent.generation(), (1..=5).map(event));
        assert!(recent.read(2, 5, 10).is_none());
        assert_eq!(sequences(recent.read(3, 5, 10)), Some(vec![3, 4, 5]));
        recent.extend(recent.generation(), [event(9)].into_iter());
        assert!(recent.read(5, 9, 10).is_none());
        assert_eq!(sequences(recent.read(9, 9, 10)), Some(vec![9]));
    }

    #[test]
    fn cleared_it_answers_nothing_and_keeps_no_batch_written_before() {
        let recent = Recent::new(1 << 20);
        recent.extend(recent.generation(), (1..=3).map(event));
        let before = recent.generation();
        let held = recent.hold_cleared();
        assert!(recent.read(1, 3, 10).is_none());
        let during = recent.generation();
        recent.extend(during, [event(4)].into_iter());
        assert!(recent.read(4, 4, 10).is_none(), "written during the change: not kept");
        drop(held);
        recent.extend(before, [event(4)].into_iter());
        recent.extend(during, [event(4)].into_iter());
        assert!(recent.read(4, 4, 10).is_none(), "written before the change ended: not kept");
        recent.extend(recent.generation(), [event(4)].into_iter());
        assert_eq!(sequences(recent.read(4, 4, 10)), Some(vec![4]));
        assert_eq!(Recent::new(0).read(1, 1, 1).map(|e| e.len()), None);
    }
}
