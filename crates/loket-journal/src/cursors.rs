//! Durable subscription cursors, keyed by (partner, name): the last acknowledged sequence,
//! and beside it (tree `cursor_used`) when the cursor was last used, so that named
//! subscriptions nobody opens or acknowledges any more can be listed and expired.

use loket_domain::time::now_micros;

use crate::event::{cursor_key, decode_u64, seq_key};
use crate::{Error, Journal};

/// One named subscription's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorInfo {
    pub name: String,
    /// Last acknowledged sequence.
    pub acked: u64,
    /// When it was last opened or acknowledged (Unix µs); `None` for a cursor written
    /// before use times were kept.
    pub last_used_micros: Option<i64>,
}

fn decode_cursor(bytes: &[u8]) -> Result<u64, Error> {
    decode_u64(bytes).ok_or_else(|| Error::Corrupt { sequence: 0, reason: "cursor value is not a u64".into() })
}

/// The (partner, name) of a cursor key (length-prefixed partner, then the name).
fn split_key(key: &[u8]) -> Option<(String, String)> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let partner = key.get(4..4 + len)?;
    let name = key.get(4 + len..)?;
    Some((String::from_utf8(partner.to_vec()).ok()?, String::from_utf8(name.to_vec()).ok()?))
}

fn partner_prefix(partner: &str) -> Vec<u8> {
    cursor_key(partner, "")
}

impl Journal {
    /// The cursor of (partner, name): the last acknowledged sequence.
    pub fn cursor(&self, partner: &str, name: &str) -> Result<Option<u64>, Error> {
        let store = self.inner.shared.store()?;
        let value = store.cursors.get(cursor_key(partner, name))?;
        value.map(|v| decode_cursor(&v)).transpose()
    }

    /// Creates the cursor at `acked` if absent; returns the cursor now in force.
    ///
    /// Like [`Journal::ack`], made durable by the next flush (≤ ~0.5 s), not synchronously.
    pub fn create_cursor(&self, partner: &str, name: &str, acked: u64) -> Result<u64, Error> {
        let store = self.inner.shared.store()?;
        let key = cursor_key(partner, name);
        let in_force = match store.cursors.compare_and_swap(&key, None as Option<&[u8]>, Some(&seq_key(acked)[..]))? {
            Ok(()) => acked,
            Err(current) => match current.current {
                Some(v) => decode_cursor(&v)?,
                // Deleted meanwhile (`delete_cursor` racing with this open).
                None => return Err(Error::NotFound { partner: partner.into(), name: name.into() }),
            },
        };
        self.touch_cursor(partner, name)?;
        Ok(in_force)
    }

    /// Moves the cursor forward to `acked` (never backwards: a lower value leaves it as is); NotFound if absent; returns the cursor now in force. Need not flush synchronously (redelivery after a crash is allowed: at-least-once) but must be flushed within ~1 s and on close.
    ///
    /// sled's background flusher runs every 500 ms, and the writer's batch flushes cover
    /// cursors too (one log for all trees).
    pub fn ack(&self, partner: &str, name: &str, acked: u64) -> Result<u64, Error> {
        let store = self.inner.shared.store()?;
        let key = cursor_key(partner, name);
        loop {
            let Some(current) = store.cursors.get(&key)? else {
                return Err(Error::NotFound { partner: partner.into(), name: name.into() });
            };
            let value = decode_cursor(&current)?;
            if acked <= value {
                self.touch_cursor(partner, name)?;
                return Ok(value);
            }
            // Compare-and-swap so that concurrent acks can only move it forward.
            let swapped = store.cursors.compare_and_swap(&key, Some(&current), Some(&seq_key(acked)[..]))?;
            if swapped.is_ok() {
                self.touch_cursor(partner, name)?;
                return Ok(acked);
            }
        }
    }

    /// Records that (partner, name) is in use now (a subscription opened or acknowledged).
    pub fn touch_cursor(&self, partner: &str, name: &str) -> Result<(), Error> {
        let store = self.inner.shared.store()?;
        store.cursor_used.insert(cursor_key(partner, name), &now_micros().to_be_bytes())?;
        Ok(())
    }

    /// A partner's named subscriptions, by name.
    pub fn cursors_of(&self, partner: &str) -> Result<Vec<CursorInfo>, Error> {
        let store = self.inner.shared.store()?;
        let mut out = Vec::new();
        for entry in store.cursors.scan_prefix(partner_prefix(partner)) {
            let (key, value) = entry?;
            let Some((owner, name)) = split_key(&key) else { continue };
            if owner != partner {
                continue;
            }
            let last_used_micros =
                store.cursor_used.get(&key)?.and_then(|v| Some(i64::from_be_bytes(v.as_ref().try_into().ok()?)));
            out.push(CursorInfo { name, acked: decode_cursor(&value)?, last_used_micros });
        }
        Ok(out)
    }

    /// Removes a named subscription's cursor; whether there was one.
    pub fn delete_cursor(&self, partner: &str, name: &str) -> Result<bool, Error> {
        let store = self.inner.shared.store()?;
        let key = cursor_key(partner, name);
        let existed = store.cursors.remove(&key)?.is_some();
        store.cursor_used.remove(&key)?;
        Ok(existed)
    }

    /// Every (partner, name) whose cursor was last used before `before_micros` (or never
    /// recorded as used: such a cursor gets a use time now, so it expires one period
    /// later rather than at once). Internal cursors (partner starting with `@`, e.g. the
    /// Kafka relay's) are never listed.
    pub fn unused_cursors(&self, before_micros: i64) -> Result<Vec<(String, String)>, Error> {
        let store = self.inner.shared.store()?;
        let mut out = Vec::new();
        for entry in store.cursors.iter() {
            let (key, _) = entry?;
            let Some((partner, name)) = split_key(&key) else { continue };
            if partner.starts_with('@') {
                continue;
            }
            match store.cursor_used.get(&key)?.and_then(|v| Some(i64::from_be_bytes(v.as_ref().try_into().ok()?))) {
                Some(used) if used < before_micros => out.push((partner, name)),
                Some(_) => {}
                None => self.touch_cursor(&partner, &name)?,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Journal, JournalConfig};

    #[test]
    fn cursors_are_listed_per_partner_deleted_and_found_unused() {
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig {
            dir: dir.path().join("j"),
            cache_capacity_bytes: 1 << 20,
            max_batch: 16,
            ..JournalConfig::default()
        };
        let journal = Journal::open(&config).unwrap();
        journal.create_cursor("ab", "c", 1).unwrap();
        journal.create_cursor("a", "bc", 2).unwrap();
        journal.create_cursor("a", "x", 3).unwrap();
        journal.create_cursor("@kafka", "relay", 4).unwrap();
        let names: Vec<(String, u64)> =
            journal.cursors_of("a").unwrap().into_iter().map(|c| (c.name, c.acked)).collect();
        assert_eq!(names, vec![("bc".to_owned(), 2), ("x".to_owned(), 3)], "not ab's, whose key shares a prefix");
        assert!(journal.cursors_of("a").unwrap().iter().all(|c| c.last_used_micros.is_some()));

        // Everything is unused before a time in the future; internal cursors never are.
        let mut unused = journal.unused_cursors(i64::MAX).unwrap();
        unused.sort();
        let expected: Vec<(String, String)> =
            [("a", "bc"), ("a", "x"), ("ab", "c")].iter().map(|(p, n)| ((*p).to_owned(), (*n).to_owned())).collect();
        assert_eq!(unused, expected);
        assert!(journal.unused_cursors(0).unwrap().is_empty(), "all used since 1970");

        assert!(journal.delete_cursor("a", "x").unwrap());
        assert!(!journal.delete_cursor("a", "x").unwrap(), "gone");
        assert_eq!(journal.cursor("a", "x").unwrap(), None);
        assert_eq!(journal.cursors_of("a").unwrap().len(), 1);
        assert_eq!(journal.queue_depth(), 0, "nothing waits for the writer");
        journal.close().unwrap();
    }
}
