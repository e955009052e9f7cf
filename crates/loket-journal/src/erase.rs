//! Erasure by case: the case's key is destroyed (see `keys.rs`), so every payload sealed
//! with it, in the journal and in any store that sealed through [`Journal::seal`], is
//! unreadable from then on, while the records, their hashes and the chain stay. A purge
//! record says who erased which entries, when and why.

use loket_domain::{ERASURE_TYPE, GATEWAY_SOURCE};
use prost::Message;

use crate::event::seq_key;
use crate::keys::Opened;
use crate::retention::{read_purges, PurgeRecord};
use crate::store::{chunk_first, Frames, Store};
use crate::{Error, Journal};

impl Journal {
    /// Erases every payload of `case` (the events' `subject`). Returns the purge record,
    /// which lists the entries; `None` when the journal holds nothing of the case.
    ///
    /// Reads the whole retained journal to list the entries: erasure is rare, and the
    /// record must name them. Runs on the caller's thread (a blocking task).
    pub fn erase_case(&self, case: &str, actor: &str, reason: &str, now: i64) -> Result<Option<PurgeRecord>, Error> {
        let _one_at_a_time = self.inner.purging.lock().unwrap_or_else(|e| e.into_inner());
        let store = self.inner.shared.store()?;
        let keys = &self.inner.shared.keys;
        let last = self.last_sequence();
        let mut sequences = Vec::new();
        for item in store.events.range(seq_key(self.first_retained())..=seq_key(last)) {
            let (key, chunk) = item?;
            for frame in Frames::new(chunk_first(&key)?, &chunk) {
                let (seq, bytes) = frame?;
                if seq > last {
                    break;
                }
                let event = Store::decode(seq, bytes)?;
                // The gateway's notices of earlier erasures carry no payload of the case.
                let notice = event.source == GATEWAY_SOURCE && event.event_type == ERASURE_TYPE;
                if event.subject == case && event.purged_by == 0 && keys.is_live(event.key) && !notice {
                    sequences.push(seq);
                }
            }
        }
        let mut rejections = Vec::new();
        for item in store.rejections.iter() {
            let (key, value) = item?;
            let r = Store::decode_rejection(chunk_first(&key)?, &value)?;
            if r.subject == case && keys.is_live(r.key) {
                rejections.push(r.number);
            }
        }
        let Some(key_slot) = keys.current_slot(case).filter(|_| !sequences.is_empty() || !rejections.is_empty()) else {
            return Ok(None);
        };
        let record = PurgeRecord {
            number: read_purges(&store)?.last().map_or(1, |p| p.number + 1),
            at_micros: now,
            kind: "erased".into(),
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            events_below: 0,
            rejections_below: 0,
            stripped: sequences,
            case: case.to_owned(),
            rejections,
            key_slot,
        };
        // Readers get nothing of the case from memory from here on: not the events
        // listed, nor any written meanwhile under the key about to go.
        let _recent_cleared = self.inner.shared.recent.hold_cleared();
        // The record first, so that an erased key always has its record.
        store.purges.insert(seq_key(record.number), record.encode_to_vec())?;
        store.db.flush()?;
        keys.erase(key_slot, record.number)?;
        // Nothing of the case is left for a period counted from its last event.
        store.case_last.remove(case.as_bytes())?;
        tracing::info!(
            purge = record.number,
            events = record.stripped.len(),
            actor,
            "journal: case erased (its key destroyed)"
        );
        Ok(Some(record))
    }

    /// Destroys the keys of erasure records whose key is still live: a crash came between
    /// the record and the key (see [`Journal::erase_case`]). Run at open.
    pub(crate) fn finish_erasures(&self) -> Result<(), Error> {
        let store = self.inner.shared.store()?;
        for record in read_purges(&store)?.into_iter().filter(|r| r.key_slot != 0) {
            if self.inner.shared.keys.is_live(record.key_slot) {
                tracing::warn!(
                    purge = record.number,
                    "journal: finishing an erasure interrupted before its key was destroyed"
                );
                self.inner.shared.keys.erase(record.key_slot, record.number)?;
            }
        }
        Ok(())
    }

    /// `plain` sealed with `case`'s key (made durable now if new), for other stores that
    /// keep a copy of the case's payloads: erasing the case makes their copies unreadable.
    pub fn seal(&self, case: &str, plain: &[u8]) -> Result<Vec<u8>, Error> {
        let keys = &self.inner.shared.keys;
        let (slot, sealed) = keys.seal(case, plain)?;
        keys.sync()?;
        let mut out = Vec::with_capacity(4 + sealed.len());
        out.extend_from_slice(&slot.to_be_bytes());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// What [`Journal::seal`] sealed; `None` when the case was erased.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let Some((slot, rest)) = sealed.split_first_chunk::<4>() else {
            return Err(Error::Corrupt { sequence: 0, reason: "sealed value too short".into() });
        };
        Ok(match self.inner.shared.keys.open_sealed(u32::from_be_bytes(*slot), rest)? {
            Opened::Plain(plain) => Some(plain),
            Opened::Erased(_) => None,
        })
    }
}
