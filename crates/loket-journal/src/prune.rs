//! Pruning the id index to the dedup window: idempotency by (source, id) holds within
//! `JournalConfig::dedup_window`, so index entries of events received before it only cost
//! space (the writer ignores them, see `writer::idempotency::verify`).

use loket_domain::time::now_micros;

use crate::event::decode_u64;
use crate::{Error, Journal};

impl Journal {
    /// Removes the id index entries of events received before the dedup window; returns
    /// how many went. Safe beside the writer: an entry is removed only if it still points
    /// at the old event (compare-and-swap), and a stale or missing entry is never taken
    /// for a duplicate anyway. Runs in the caller's thread: call it from a background task.
    pub fn prune_ids(&self) -> Result<u64, Error> {
        let Some(window) = self.inner.dedup_window else { return Ok(0) };
        let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let cutoff = self.first_sequence_at_or_after(now_micros().saturating_sub(window))?;
        if cutoff <= 1 {
            return Ok(0);
        }
        let store = self.inner.shared.store()?;
        let mut removed = 0;
        for item in store.ids.iter() {
            let (key, value) = item?;
            if decode_u64(&value).is_some_and(|sequence| sequence < cutoff)
                && store.ids.compare_and_swap(&key, Some(&value), None as Option<&[u8]>)?.is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, below_sequence = cutoff, "journal: pruned the id index to the dedup window");
        }
        Ok(removed)
    }

    /// Entries in the id index (for metrics and tests; walks the tree).
    pub fn id_index_len(&self) -> Result<usize, Error> {
        Ok(self.inner.shared.store()?.ids.len())
    }
}
