//! Dropping the same event delivered twice on one subscription.
//!
//! A partner that published an event through gateway A, lost A before the reply and
//! published it again through gateway B has one event journalled twice: A's relay (when A
//! had relayed it, or relays it after a restart) and B's relay both produce it, with the
//! same `ce_source` and `ce_id` and each gateway's own `ce_sequence` and `ce_receivedat`.
//! Both records carry the same case as key, so they are on the same partition of a
//! delivery topic, in the order the gateways produced them.
//!
//! [`Dedup`] remembers, per partition, the `(ce_source, ce_id)` of what a subscription
//! delivered together with the record's `ce_receivedat`, and drops a record whose pair it
//! remembers. It forgets a pair once the partition has moved on by more than the window
//! (measured in `ce_receivedat`, the gateways' receive times, so replaying the same topic
//! drops the same records however fast it is read), and it never holds more than
//! [`MAX_REMEMBERED`] pairs per subscription (oldest forgotten first). So a duplicate is
//! dropped when both copies were received by their gateways at most the window apart;
//! one from a gateway that comes back with its backlog later than that is delivered again
//! (at least once, never lost). A new stream of the subscription starts with an empty
//! memory: what the previous stream delivered and acknowledged is behind the committed
//! offsets anyway.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

/// The most `(source, id)` pairs one subscription remembers, whatever the window: about
/// 100 bytes each, so a few MiB per open stream.
pub const MAX_REMEMBERED: usize = 50_000;

/// One remembered delivery.
type Pair = (String, String);

/// The duplicate filter of one subscription stream.
#[derive(Debug)]
pub struct Dedup {
    window_micros: i64,
    partitions: BTreeMap<i32, Remembered>,
    /// Pairs remembered over all partitions.
    len: usize,
}

#[derive(Debug, Default)]
struct Remembered {
    /// Newest `ce_receivedat` seen on the partition.
    newest: i64,
    seen: HashMap<Pair, i64>,
    /// In delivery order, for forgetting.
    order: VecDeque<(i64, Pair)>,
}

impl Remembered {
    /// Drops the oldest entry; true when it was still the pair's current one (a pair
    /// admitted again after its window has a newer entry further back).
    fn forget_front(&mut self) -> bool {
        match self.order.pop_front() {
            Some((at, pair)) if self.seen.get(&pair) == Some(&at) => {
                self.seen.remove(&pair);
                true
            }
            _ => false,
        }
    }
}

impl Dedup {
    /// A filter with `window` (zero: nothing is dropped).
    pub fn new(window: Duration) -> Self {
        Dedup {
            window_micros: i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
            partitions: BTreeMap::new(),
            len: 0,
        }
    }

    /// True when the record is new (deliver it, and it is remembered); false for a
    /// duplicate within the window.
    pub fn admit(&mut self, partition: i32, source: &str, id: &str, received_at_micros: i64) -> bool {
        if self.window_micros == 0 {
            return true;
        }
        let window = self.window_micros;
        let remembered = self.partitions.entry(partition).or_default();
        remembered.newest = remembered.newest.max(received_at_micros);
        // Forget what the partition has moved past.
        let horizon = remembered.newest.saturating_sub(window);
        while remembered.order.front().is_some_and(|(at, _)| *at < horizon) {
            if remembered.forget_front() {
                self.len -= 1;
            }
        }
        let pair = (source.to_owned(), id.to_owned());
        if let Some(first) = remembered.seen.get(&pair) {
            if received_at_micros.abs_diff(*first) <= window.unsigned_abs() {
                return false;
            }
        }
        if remembered.seen.insert(pair.clone(), received_at_micros).is_none() {
            self.len += 1;
        }
        remembered.order.push_back((received_at_micros, pair));
        while self.len > MAX_REMEMBERED {
            self.forget_oldest();
        }
        true
    }

    /// Forgets the oldest pair of the partition whose oldest is oldest.
    fn forget_oldest(&mut self) {
        let Some(partition) =
            self.partitions.iter().filter_map(|(p, r)| Some((*p, r.order.front()?.0))).min_by_key(|(_, at)| *at)
        else {
            return;
        };
        if self.partitions.get_mut(&partition.0).is_some_and(Remembered::forget_front) {
            self.len -= 1;
        }
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn the_same_event_twice_within_the_window_is_dropped() {
        let mut d = Dedup::new(Duration::from_secs(60));
        assert!(d.admit(0, "dvo", "t-1", 100 * S));
        assert!(d.admit(0, "dvo", "t-2", 101 * S));
        assert!(!d.admit(0, "dvo", "t-1", 130 * S), "re-published through another gateway 30 s later");
        assert!(d.admit(0, "kmar", "t-1", 130 * S), "another source's id is another event");
        // A copy received more than the window after the first is delivered again.
        assert!(d.admit(0, "dvo", "t-2", 200 * S));
        assert!(d.len() <= 3, "the partition moved on and forgot the old pairs: {}", d.len());
    }

    #[test]
    fn partitions_have_their_own_horizon() {
        let mut d = Dedup::new(Duration::from_secs(60));
        assert!(d.admit(0, "dvo", "a", 100 * S));
        // Partition 1 is far ahead (a backlog read unevenly); partition 0 still remembers.
        assert!(d.admit(1, "dvo", "b", 10_000 * S));
        assert!(!d.admit(0, "dvo", "a", 110 * S));
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = Dedup::new(Duration::from_secs(365 * 24 * 3600));
        for n in 0..(MAX_REMEMBERED + 10) {
            assert!(d.admit((n % 3) as i32, "dvo", &n.to_string(), n as i64));
        }
        assert_eq!(d.len(), MAX_REMEMBERED);
        assert!(d.admit(0, "dvo", "0", 0), "the oldest was forgotten");
        assert!(!d.admit(2, "dvo", &(MAX_REMEMBERED + 9).to_string(), 0), "the newest is remembered");
    }

    #[test]
    fn a_zero_window_drops_nothing() {
        let mut d = Dedup::new(Duration::ZERO);
        assert!(d.admit(0, "dvo", "a", 1));
        assert!(d.admit(0, "dvo", "a", 1));
        assert!(d.is_empty());
    }
}
