//! The receipt time of each case's last event, for retention periods counted from it
//! ([`crate::RetentionPolicy::from_case_last_event`]). Kept in the tree `case_last`
//! (case -> Unix µs), brought up to date by each expiry pass from the events after the
//! position it covers (`meta` key [`FOLLOWED`]; without it, rebuilt from the retained
//! journal), so the writer does no work for it. Bounded: a case whose last event is older
//! than the longest such period is dropped, since every event of it under such a period
//! has expired already and the entry decides nothing; a new event of the case adds it
//! again. The gateway's own events (digests, readiness, erasure notices) are about a case,
//! not of it, and do not keep it alive.

use std::collections::HashMap;

use loket_domain::GATEWAY_SOURCE;

use crate::event::{decode_u64, seq_key};
use crate::store::Store;
use crate::Error;

/// Key in `meta`: the last sequence `case_last` covers.
const FOLLOWED: &[u8] = b"case_last_followed";
/// Events read at once.
const READ: u64 = 4096;

fn micros_of(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

/// Takes in the events from what `case_last` covers (at least `first`) up to `last`.
pub(crate) fn update(store: &Store, first: u64, last: u64) -> Result<(), Error> {
    let followed = store.meta.get(FOLLOWED)?.and_then(|v| decode_u64(&v)).unwrap_or(0);
    let mut next = (followed + 1).max(first);
    while next <= last {
        let count = (last - next + 1).min(READ);
        let mut latest: HashMap<String, i64> = HashMap::new();
        for event in store.read_range(next, count as usize)? {
            if event.source != GATEWAY_SOURCE && !event.subject.is_empty() {
                let at = latest.entry(event.subject).or_insert(event.received_at_micros);
                *at = (*at).max(event.received_at_micros);
            }
        }
        let mut batch = sled::Batch::default();
        for (case, at) in latest {
            if store.case_last.get(&case)?.and_then(|v| micros_of(&v)).is_none_or(|old| old < at) {
                batch.insert(case.as_bytes(), &at.to_be_bytes());
            }
        }
        store.case_last.apply_batch(batch)?;
        next += count;
        store.meta.insert(FOLLOWED, &seq_key(next - 1))?;
    }
    Ok(())
}

/// The receipt time of the case's last event, if known.
pub(crate) fn get(store: &Store, case: &str) -> Result<Option<i64>, Error> {
    Ok(store.case_last.get(case)?.and_then(|v| micros_of(&v)))
}

/// Drops the cases whose last event was received before `before`; returns how many.
pub(crate) fn prune(store: &Store, before: i64) -> Result<u64, Error> {
    let mut removed = 0;
    for item in store.case_last.iter() {
        let (case, at) = item?;
        if micros_of(&at).is_some_and(|at| at < before) {
            store.case_last.remove(case)?;
            removed += 1;
        }
    }
    Ok(removed)
}
