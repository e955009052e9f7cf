//! Expiry under `[retention]`: what leaves the journal, and the record that says so.
//!
//! Two ways an entry goes, both leaving the hash chain checkable:
//! - **From the front.** Whole chunks whose events have all expired, and the rejections
//!   before them, are deleted, so the journal starts later. The removed entries form a
//!   prefix of the chain (see [`Journal::expire`] for why), and the retained state in
//!   `meta` keeps the position and hash of the last one removed (the checkpoint):
//!   `audit verify` starts its walk there, so every retained entry is still proven.
//! - **In place.** An expired event inside a chunk that must stay (a neighbour of another
//!   type is kept longer) loses its payload: `data` is emptied and `purged_by` names the
//!   purge record, while `hash` and `prev_hash` stay, so the links through it still hold
//!   (its own content can no longer be recomputed, which the audit reports).
//!
//! Every pass that removes something writes a [`PurgeRecord`] (tree `purges`) first.
//! Runs on the caller's thread, never on the writer's: chunks at or below the committed
//! sequence are never written by the writer again, so the two do not meet.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message;

use crate::case_last;
use crate::event::{decode_u64, id_key_into, seq_key, StoredEvent};
use crate::store::{chunk_first, Frames, Store};
use crate::{Error, Journal};

/// Key in `meta`: the [`Retained`] state.
pub(crate) const RETAINED: &[u8] = b"retained";

/// How long entries are kept, by kind. `None`: forever.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionPolicy {
    /// Event types without a period of their own.
    pub default: Option<Duration>,
    /// Per event type.
    pub types: HashMap<String, Duration>,
    /// The rejection log.
    pub rejections: Option<Duration>,
    /// Event types whose period counts from their case's last event, not their own
    /// receipt: such an event expires only once its case has had no event for the period.
    pub from_case_last_event: HashSet<String>,
}

impl RetentionPolicy {
    fn period(&self, event_type: &str) -> Option<Duration> {
        self.types.get(event_type).copied().or(self.default)
    }

    /// The shortest period of any event type: no event younger than it can have expired.
    fn shortest(&self) -> Option<Duration> {
        self.types.values().copied().chain(self.default).min()
    }

    /// The longest period counted from a case's last event (`None`: no type has one).
    fn longest_from_case(&self) -> Option<Duration> {
        self.from_case_last_event.iter().filter_map(|t| self.period(t)).max()
    }

    /// Whether `event` has expired at `now`; `case_last` is the receipt time of its case's
    /// last event, when known (read only for types counted from it).
    pub fn expired(&self, event: &StoredEvent, now: i64, case_last: impl FnOnce() -> Option<i64>) -> bool {
        let Some(period) = self.period(&event.event_type) else { return false };
        let from = if self.from_case_last_event.contains(&event.event_type) {
            // Never earlier than the event itself: the table may not know a case yet.
            case_last().map_or(event.received_at_micros, |last| last.max(event.received_at_micros))
        } else {
            event.received_at_micros
        };
        from.saturating_add(micros(period)) < now
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Why entries were removed, by whom, and which: kept in the journal's `purges` tree,
/// listed by `audit verify`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PurgeRecord {
    /// Dense from 1.
    #[prost(uint64, tag = "1")]
    pub number: u64,
    /// When (Unix µs).
    #[prost(int64, tag = "2")]
    pub at_micros: i64,
    /// "expired" (retention) or "erased" (an erasure by case).
    #[prost(string, tag = "3")]
    pub kind: String,
    /// Who: "retention" for the gateway's own compaction, else the auditor.
    #[prost(string, tag = "4")]
    pub actor: String,
    /// Why, in words.
    #[prost(string, tag = "5")]
    pub reason: String,
    /// Events below this sequence were removed from the front (0: none by this record).
    #[prost(uint64, tag = "6")]
    pub events_below: u64,
    /// Rejections below this number were removed from the front (0: none by this record).
    #[prost(uint64, tag = "7")]
    pub rejections_below: u64,
    /// Events whose payload was removed in place.
    #[prost(uint64, repeated, tag = "8")]
    pub stripped: Vec<u64>,
    /// The case, for an erasure.
    #[prost(string, tag = "9")]
    pub case: String,
    /// Rejections whose payload excerpt was erased with the case.
    #[prost(uint64, repeated, tag = "10")]
    pub rejections: Vec<u64>,
    /// The key slot an erasure destroys (0: none), so that opening the journal finishes
    /// an erasure a crash interrupted between its record and the key.
    #[prost(uint32, tag = "11")]
    pub key_slot: u32,
}

/// The retained part of the journal, in `meta`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Retained {
    /// First sequence still in the journal (1 when nothing was removed from the front).
    pub first_sequence: u64,
    /// First rejection number still in the journal.
    pub first_rejection: u64,
    /// Chain position of the last entry removed from the front (0: none).
    pub checkpoint_position: u64,
    /// Its hash (the `prev_hash` the first retained entry must carry).
    pub checkpoint_hash: [u8; 32],
    /// The purge record that removed it.
    pub purge: u64,
}

impl Retained {
    pub(crate) const NONE: Retained = Retained {
        first_sequence: 1,
        first_rejection: 1,
        checkpoint_position: 0,
        checkpoint_hash: crate::chain::GENESIS,
        purge: 0,
    };

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for n in [self.first_sequence, self.first_rejection, self.checkpoint_position, self.purge] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&self.checkpoint_hash);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Retained> {
        if bytes.len() != 64 {
            return None;
        }
        let n = |i: usize| decode_u64(&bytes[i * 8..i * 8 + 8]);
        Some(Retained {
            first_sequence: n(0)?,
            first_rejection: n(1)?,
            checkpoint_position: n(2)?,
            purge: n(3)?,
            checkpoint_hash: bytes[32..].try_into().ok()?,
        })
    }

    /// The retained state stored in `store` ([`Retained::NONE`] before any removal).
    pub(crate) fn load(store: &Store) -> Result<Retained, Error> {
        match store.meta.get(RETAINED)? {
            None => Ok(Retained::NONE),
            Some(v) => Retained::decode(&v)
                .ok_or_else(|| Error::Corrupt { sequence: 0, reason: "retained state is malformed".into() }),
        }
    }
}

/// What one [`Journal::expire`] pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpireOutcome {
    /// The record written, when anything was removed.
    pub record: Option<PurgeRecord>,
    /// Events removed from the front.
    pub events_removed: u64,
    /// Rejections removed from the front.
    pub rejections_removed: u64,
    /// Payloads removed in place.
    pub stripped: u64,
}

/// A chunk read for expiry: its key, its events, and which have expired.
struct ScannedChunk {
    first: u64,
    events: Vec<StoredEvent>,
    expired: Vec<bool>,
}

impl ScannedChunk {
    fn all_expired(&self) -> bool {
        self.expired.iter().all(|e| *e)
    }
}

impl Journal {
    /// First sequence still in the journal.
    pub fn first_retained(&self) -> u64 {
        self.inner.shared.first_retained.load(Ordering::Acquire)
    }

    /// Every purge record, oldest first.
    pub fn purges(&self) -> Result<Vec<PurgeRecord>, Error> {
        read_purges(&*self.inner.shared.store()?)
    }

    /// Removes what expired under `policy` as of `now` (Unix µs). Whole chunks go from the
    /// front, other expired events lose their payload in place; see the module doc.
    ///
    /// Why the front removal keeps the chain checkable: it removes exactly the entries at
    /// chain positions below a cut, in both logs. The cut is the lowest of (a) the first
    /// position of the first chunk that is not wholly expired, (b) the first rejection
    /// that has not expired, and (c) the first event of the first chunk kept; the last
    /// chunk is always kept, so the writer's recovery finds the chain's tip.
    pub fn expire(&self, policy: &RetentionPolicy, now: i64) -> Result<ExpireOutcome, Error> {
        let _one_at_a_time = self.inner.purging.lock().unwrap_or_else(|e| e.into_inner());
        let store = self.inner.shared.store()?;
        let last = self.last_sequence();
        let last_rejection = self.last_rejection();
        let retained = Retained::load(&store)?;
        let mut outcome = ExpireOutcome::default();
        if let Some(longest) = policy.longest_from_case() {
            case_last::update(&store, retained.first_sequence, last)?;
            case_last::prune(&store, now.saturating_sub(micros(longest)))?;
        }
        let case_last = |case: &str| case_last::get(&store, case);
        // No event type with a period: no chunk is scanned, only rejections may go.
        let horizon = policy.shortest().map_or(i64::MIN, |p| now.saturating_sub(micros(p)));
        // Chunks that may hold an expired event: received_at never decreases, so the scan
        // stops at the first chunk whose first event is younger than the shortest period.
        let mut chunks = Vec::new();
        let mut next_kept: Option<StoredEvent> = None;
        for item in store.events.range(seq_key(retained.first_sequence)..=seq_key(last)) {
            let (key, value) = item?;
            let first = chunk_first(&key)?;
            let mut events = Vec::new();
            for frame in Frames::new(first, &value) {
                let (seq, bytes) = frame?;
                if seq <= last {
                    events.push(Store::decode(seq, bytes)?);
                }
            }
            let Some(head) = events.first() else { continue };
            if head.received_at_micros >= horizon {
                next_kept = Some(head.clone());
                break;
            }
            let mut expired = Vec::with_capacity(events.len());
            for e in &events {
                let last =
                    if policy.from_case_last_event.contains(&e.event_type) { case_last(&e.subject)? } else { None };
                expired.push(policy.expired(e, now, || last));
            }
            chunks.push(ScannedChunk { first, events, expired });
        }
        let last_chunk = store.events.last()?.map(|(k, _)| chunk_first(&k)).transpose()?;
        // (a): the first chunk that must stay.
        let front = chunks.iter().take_while(|c| c.all_expired() && Some(c.first) != last_chunk).count();
        if let Some(c) = chunks.get(front) {
            next_kept = Some(c.events[0].clone());
        }
        // (b); the last rejection always stays, so recovery keeps the numbering.
        let rejection_period = policy.rejections.map(micros);
        let mut rejection_limit = None;
        let mut rejections = Vec::new();
        for item in store.rejections.range(seq_key(retained.first_rejection)..=seq_key(last_rejection)) {
            let (key, value) = item?;
            let r = Store::decode_rejection(chunk_first(&key)?, &value)?;
            let expired = rejection_period.is_some_and(|p| r.received_at_micros.saturating_add(p) < now);
            if expired && r.number != last_rejection {
                rejections.push((r.number, r.chain));
            } else {
                rejection_limit = Some(r);
                break;
            }
        }
        let mut cut = [next_kept.as_ref().map(|e| e.chain), rejection_limit.as_ref().map(|r| r.chain)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(0);
        let removable: Vec<&ScannedChunk> =
            chunks[..front].iter().take_while(|c| c.events.last().is_some_and(|e| e.chain < cut)).collect();
        // (c)
        if let Some(c) = chunks.get(removable.len()) {
            if c.events[0].chain < cut {
                cut = c.events[0].chain;
                next_kept = Some(c.events[0].clone());
            }
        }
        let doomed_rejections: Vec<u64> =
            rejections.iter().filter(|(_, chain)| *chain < cut).map(|(n, _)| *n).collect();
        let strip: Vec<&ScannedChunk> = chunks[removable.len()..]
            .iter()
            .filter(|c| c.events.iter().zip(&c.expired).any(|(e, x)| *x && e.purged_by == 0))
            .collect();
        if removable.is_empty() && doomed_rejections.is_empty() && strip.is_empty() {
            return Ok(outcome);
        }
        let number = read_purges(&store)?.last().map_or(1, |p| p.number + 1);
        let events_below = removable.last().map_or(0, |c| c.first + c.events.len() as u64);
        let rejections_below = doomed_rejections.last().map_or(0, |n| n + 1);
        let mut record = PurgeRecord {
            number,
            at_micros: now,
            kind: "expired".into(),
            actor: "retention".into(),
            reason: "retention period passed".into(),
            events_below,
            rejections_below,
            stripped: Vec::new(),
            case: String::new(),
            rejections: Vec::new(),
            key_slot: 0,
        };
        // Readers get nothing from memory while stored events change (see `recent.rs`).
        let _recent_cleared = self.inner.shared.recent.hold_cleared();
        // Payloads in place first: they only lose what has expired anyway, and the record
        // naming them is written right after, before anything is removed.
        for chunk in strip {
            let mut events = chunk.events.clone();
            for (event, expired) in events.iter_mut().zip(&chunk.expired) {
                if *expired && event.purged_by == 0 {
                    event.data = Vec::new();
                    event.key = 0;
                    event.purged_by = number;
                    record.stripped.push(event.sequence);
                }
            }
            rewrite_chunk(&store, chunk.first, &events)?;
        }
        let mut next_retained = retained;
        if !removable.is_empty() || !doomed_rejections.is_empty() {
            // The entry at the cut is the first kept event or the first kept rejection; its
            // prev_hash is the hash of the last entry removed.
            let at_cut = match (&next_kept, &rejection_limit) {
                (Some(e), _) if e.chain == cut => Some(&e.prev_hash),
                (_, Some(r)) if r.chain == cut => Some(&r.prev_hash),
                _ => None,
            };
            let checkpoint_hash = at_cut
                .and_then(|h| crate::chain::to_array(h))
                .ok_or_else(|| Error::Corrupt { sequence: 0, reason: format!("no entry at chain position {cut}") })?;
            next_retained = Retained {
                first_sequence: if events_below > 0 { events_below } else { retained.first_sequence },
                first_rejection: if rejections_below > 0 { rejections_below } else { retained.first_rejection },
                checkpoint_position: cut - 1,
                checkpoint_hash,
                purge: number,
            };
        }
        store.purges.insert(seq_key(number), record.encode_to_vec())?;
        store.meta.insert(RETAINED, next_retained.encode())?;
        store.db.flush()?;
        self.inner.shared.first_retained.store(next_retained.first_sequence, Ordering::Release);
        // Now unreachable for readers: remove the bytes.
        let mut id_key = Vec::new();
        for chunk in &removable {
            for event in &chunk.events {
                id_key_into(&mut id_key, &event.source, &event.id);
                let claim = seq_key(event.sequence);
                store.ids.compare_and_swap(&id_key, Some(&claim[..]), None as Option<&[u8]>)?.ok();
            }
            store.events.remove(seq_key(chunk.first))?;
            outcome.events_removed += chunk.events.len() as u64;
        }
        for n in &doomed_rejections {
            store.rejections.remove(seq_key(*n))?;
        }
        store.db.flush()?;
        outcome.rejections_removed = doomed_rejections.len() as u64;
        outcome.stripped = record.stripped.len() as u64;
        outcome.record = Some(record);
        Ok(outcome)
    }
}

fn rewrite_chunk(store: &Store, first: u64, events: &[StoredEvent]) -> Result<(), Error> {
    let mut buf = Vec::new();
    for event in events {
        event
            .encode_length_delimited(&mut buf)
            .map_err(|e| Error::Corrupt { sequence: first, reason: e.to_string() })?;
    }
    store.events.insert(seq_key(first), buf)?;
    Ok(())
}

pub(crate) fn read_purges(store: &Store) -> Result<Vec<PurgeRecord>, Error> {
    let mut out = Vec::new();
    for item in store.purges.iter() {
        let (key, value) = item?;
        let number = chunk_first(&key)?;
        out.push(
            PurgeRecord::decode(&value[..])
                .map_err(|e| Error::Corrupt { sequence: number, reason: format!("purge record: {e}") })?,
        );
    }
    Ok(out)
}
