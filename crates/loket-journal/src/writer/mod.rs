//! The single writer thread: sequencing, idempotency, group commit, failure repair.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loket_domain::time::now_micros;
use prost::Message;
use tokio::sync::oneshot;

use crate::chain::Tip;
use crate::event::{decode_u64, id_key_into, seq_key, Appended, NewEvent, NewRejection, StoredEvent, StoredRejection};
use crate::store::{FaultHook, Store, StoreConfig, FLUSHED_MARK};
use crate::{Error, Shared};

mod idempotency;
mod repair;

use idempotency::{conflict_rejection, verify};

/// A batch's events are stored in chunks of consecutive events, one sled value each,
/// rather than one value per event: sled 0.34 spends most of its time per insert (node
/// copies, log reservation, epoch reclamation), so ~4 KiB chunks cut the events tree's
/// share of the writer's work several times over. Chunks stay small because sled splits
/// leaves by item count (16), not size, and writes nodes over ~128 KiB (a quarter of a
/// segment) as separate blob files; 16 chunks of ≤ 8 KiB keep a leaf under that.
const CHUNK_TARGET_BYTES: usize = 4 << 10;
const CHUNK_MAX_BYTES: usize = 8 << 10;

pub(crate) type Reply = oneshot::Sender<Result<Appended, Error>>;
/// Resolves with the rejection's number once it is durable.
pub(crate) type RejectReply = oneshot::Sender<Result<u64, Error>>;

// Boxing the event would cost an allocation per submit; the channel holds messages inline
// either way, and `Shutdown` is sent once.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Submit(NewEvent, Reply),
    Reject(NewRejection, RejectReply),
    Shutdown,
}

/// A rejection queued in the current batch, before the event at `before` (so that the
/// chain keeps the order in which the writer received them).
struct QueuedRejection {
    before: usize,
    rejection: NewRejection,
    reply: Option<RejectReply>,
}

enum Outcome {
    /// Index into `Writer::written`.
    New(usize),
    /// Same (source, id) and content as `written[i]`, earlier in this batch.
    DuplicateInBatch(usize),
    Duplicate(Appended),
    Conflict {
        publisher: String,
        id: String,
        sequence: u64,
    },
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    store_config: StoreConfig,
    faults: Arc<dyn FaultHook>,
    max_batch: usize,
    /// See [`crate::JournalConfig::rejection_payload_bytes`].
    rejection_payload_bytes: usize,
    /// See [`crate::JournalConfig::dedup_window`], in µs.
    dedup_window_micros: Option<i64>,
    /// Highest flushed sequence; the next batch starts above it.
    committed: u64,
    /// Highest flushed rejection number.
    rejections_committed: u64,
    /// The flushed end of the hash chain.
    tip: Tip,
    /// Value of the flushed mark last written into `meta`.
    mark_written: u64,
    last_received_at: i64,
    /// A batch failed and its in-memory leftovers may still be in sled.
    needs_repair: bool,
    last_reopen: Option<Instant>,
    /// Index entries claimed by failed batches: (key, sequence). Their events may never
    /// have been written, so the cleanup cannot find them through the events tree.
    orphan_claims: Vec<(Vec<u8>, u64)>,
    // Buffers reused across batches so the steady state allocates only what sled keeps.
    events: Vec<NewEvent>,
    replies: Vec<Reply>,
    rejections: Vec<QueuedRejection>,
    /// Rejections written by the current batch (and their replies, sent after the flush).
    written_rejections: Vec<(u64, Option<RejectReply>)>,
    /// Chain tip and rejection number after the current batch, committed once it is flushed.
    staged_tip: Tip,
    staged_rejections: u64,
    outcomes: Vec<Outcome>,
    written: Vec<StoredEvent>,
    encode_buf: Vec<u8>,
    /// One event's record as stored (payload sealed).
    record_buf: Vec<u8>,
    key_buf: Vec<u8>,
    keys: Arc<crate::keys::KeyStore>,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        rx: Receiver<Msg>,
        store_config: StoreConfig,
        faults: Arc<dyn FaultHook>,
        config: &crate::JournalConfig,
        recovered: &crate::store::Recovered,
    ) -> Writer {
        let committed = recovered.last;
        let max_batch = config.max_batch.max(1);
        let keys = shared.keys.clone();
        Writer {
            shared,
            rx,
            store_config,
            faults,
            max_batch,
            rejection_payload_bytes: config.rejection_payload_bytes,
            dedup_window_micros: config.dedup_window.map(|w| i64::try_from(w.as_micros()).unwrap_or(i64::MAX)),
            committed,
            rejections_committed: recovered.last_rejection,
            tip: recovered.tip,
            mark_written: committed,
            last_received_at: recovered.last_received_at,
            needs_repair: false,
            last_reopen: None,
            orphan_claims: Vec::new(),
            events: Vec::with_capacity(max_batch),
            replies: Vec::with_capacity(max_batch),
            rejections: Vec::new(),
            written_rejections: Vec::new(),
            staged_tip: recovered.tip,
            staged_rejections: recovered.last_rejection,
            outcomes: Vec::with_capacity(max_batch),
            written: Vec::with_capacity(max_batch),
            encode_buf: Vec::with_capacity(CHUNK_MAX_BYTES),
            record_buf: Vec::with_capacity(CHUNK_MAX_BYTES),
            key_buf: Vec::with_capacity(256),
            keys,
        }
    }

    /// Runs until `Shutdown` (or every sender is gone); the result is that of the final flush.
    pub fn run(mut self) -> Result<(), Error> {
        let mut stopping = false;
        while !stopping {
            // Block for the first message, then take whatever queued up meanwhile: while one
            // batch is being flushed the next one accumulates, which is the group commit.
            let first = self.rx.recv();
            if matches!(first, Ok(Msg::Submit(..) | Msg::Reject(..))) {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            }
            match first {
                Ok(Msg::Submit(event, reply)) => {
                    self.events.push(event);
                    self.replies.push(reply);
                }
                Ok(Msg::Reject(rejection, reply)) => self.queue_rejection(rejection, reply),
                Ok(Msg::Shutdown) | Err(_) => stopping = true,
            }
            while !stopping && self.events.len() < self.max_batch {
                let next = self.rx.try_recv();
                if matches!(next, Ok(Msg::Submit(..) | Msg::Reject(..))) {
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                }
                match next {
                    Ok(Msg::Submit(event, reply)) => {
                        self.events.push(event);
                        self.replies.push(reply);
                    }
                    Ok(Msg::Reject(rejection, reply)) => self.queue_rejection(rejection, reply),
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => stopping = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if !self.events.is_empty() || !self.rejections.is_empty() {
                self.commit_batch();
            }
        }
        self.finish()
    }

    fn queue_rejection(&mut self, rejection: NewRejection, reply: RejectReply) {
        self.rejections.push(QueuedRejection { before: self.events.len(), rejection, reply: Some(reply) });
    }

    fn finish(&mut self) -> Result<(), Error> {
        if self.needs_repair {
            self.repair()?;
        }
        let store = self.shared.store()?;
        if self.mark_written != self.committed {
            self.faults.before_write()?;
            store.meta.insert(FLUSHED_MARK, &seq_key(self.committed))?;
            self.mark_written = self.committed;
        }
        self.faults.before_write()?;
        store.db.flush()?;
        Ok(())
    }

    fn commit_batch(&mut self) {
        if self.needs_repair {
            if let Err(e) = self.repair() {
                tracing::warn!(error = %e, "journal: repair failed, rejecting batch");
                self.fail_batch(&e);
                return;
            }
        }
        let now = now_micros();
        let received_at = self.last_received_at.max(now);
        let base = self.committed + 1;
        let generation = self.shared.recent.generation();
        match self.write_batch(base, received_at) {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, batch = self.replies.len(), "journal: batch failed");
                self.needs_repair = true;
                self.staged_tip = self.tip;
                self.staged_rejections = self.rejections_committed;
                for stored in &self.written {
                    let mut key = Vec::new();
                    id_key_into(&mut key, &stored.source, &stored.id);
                    self.orphan_claims.push((key, stored.sequence));
                }
                self.fail_batch(&e);
                // Clean up right away, so that readers and the id index never see the
                // leftovers; if it fails now, it is retried before the next batch.
                if let Err(e) = self.repair() {
                    tracing::warn!(error = %e, "journal: repair after failed batch failed");
                }
                return;
            }
        }
        let new = self.written.len() as u64;
        self.tip = self.staged_tip;
        self.rejections_committed = self.staged_rejections;
        self.last_received_at = received_at;
        // The answers first: the batch's events then go to the readers without a copy.
        let written = &self.written;
        let results: Vec<Result<Appended, Error>> = self
            .outcomes
            .drain(..)
            .map(|outcome| match outcome {
                Outcome::New(i) => Ok(written[i].appended(false)),
                Outcome::DuplicateInBatch(i) => Ok(written[i].appended(true)),
                Outcome::Duplicate(appended) => Ok(appended),
                Outcome::Conflict { publisher, id, sequence } => Err(Error::Conflict { publisher, id, sequence }),
            })
            .collect();
        if new > 0 {
            self.shared.recent.extend(generation, self.written.drain(..));
            self.committed += new;
            self.shared.last.store(self.committed, Ordering::Release);
            self.shared.watch.send_replace(self.committed);
        }
        self.shared.last_rejection.store(self.rejections_committed, Ordering::Release);
        for (number, reply) in self.written_rejections.drain(..) {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(number));
            }
        }
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared.events.fetch_add(new, Ordering::Relaxed);
        for (result, reply) in results.into_iter().zip(self.replies.drain(..)) {
            // The submitter may have dropped its future; the event is stored regardless.
            let _ = reply.send(result);
        }
        self.written.clear();
    }

    /// Writes the batch into sled and flushes. Nothing of it is visible to readers until
    /// `committed` moves, which only happens after this returns Ok.
    fn write_batch(&mut self, base: u64, received_at: i64) -> Result<(), Error> {
        let store = self.shared.store()?;
        let mut next = base;
        self.outcomes.clear();
        self.written.clear();
        if self.mark_written != self.committed {
            // Lets recovery scan only the unflushed tail (see `Store::recover`).
            self.faults.before_write()?;
            store.meta.insert(FLUSHED_MARK, &seq_key(self.committed))?;
            self.mark_written = self.committed;
        }
        let mut chunk_first = next;
        self.encode_buf.clear();
        self.written_rejections.clear();
        self.staged_tip = self.tip;
        self.staged_rejections = self.rejections_committed;
        let mut rejections = std::mem::take(&mut self.rejections);
        let mut pending_rejections = rejections.drain(..).peekable();
        let mut events = std::mem::take(&mut self.events);
        for (index, event) in events.drain(..).enumerate() {
            while let Some(q) = pending_rejections.next_if(|q| q.before <= index) {
                self.write_rejection(&store, q.rejection, q.reply, received_at)?;
            }
            id_key_into(&mut self.key_buf, &event.source, &event.id);
            let claim = seq_key(next);
            // Claim the id with one compare-and-swap instead of a get and an insert: the
            // index is the writer's most expensive tree (random keys), and the common case
            // is a new id. The entry briefly points at an event not yet written; that is
            // safe because index hits are always verified (see `verify`).
            self.faults.before_write()?;
            let swapped = store.ids.compare_and_swap(&self.key_buf[..], None::<&[u8]>, Some(&claim[..]))?;
            if let Err(existing) = swapped {
                let hit = existing.current.as_deref().and_then(decode_u64);
                if let Some(hit) = hit {
                    // An original received before the window opened no longer makes this
                    // a duplicate: the id is taken over by the new event.
                    let window_start = self.dedup_window_micros.map(|w| received_at.saturating_sub(w));
                    if let Some(outcome) = verify(&self.shared, hit, &event, base, next, &self.written, window_start)? {
                        if let Outcome::Conflict { sequence, .. } = &outcome {
                            // A conflicting publish is refused here, so it is journaled
                            // here: the gateway never sees it as a rejection of its own.
                            let rejection = conflict_rejection(event, *sequence);
                            self.write_rejection(&store, rejection, None, received_at)?;
                        }
                        self.outcomes.push(outcome);
                        continue;
                    }
                }
                // A stale entry (its event lost or truncated): take it over.
                self.faults.before_write()?;
                store.ids.insert(&self.key_buf[..], &claim[..])?;
            }
            let mut stored = StoredEvent::from_new(event, next, received_at);
            self.staged_tip.prepare_event(&mut stored);
            // In `written` before the next fallible step: a failed batch's cleanup finds
            // its index claims there.
            self.outcomes.push(Outcome::New(self.written.len()));
            self.written.push(stored);
            let stored = self.written.last_mut().expect("pushed above");
            // The chain hashes the plain record; the stored one carries the payload sealed
            // with its case's key (crypto-shredding, see `keys.rs`), so erasing the case
            // leaves the hash checkable from an export but no readable payload on disk.
            self.staged_tip.hash_event(stored, &mut self.record_buf);
            self.record_buf.clear();
            if stored.subject.is_empty() {
                stored.encode_length_delimited(&mut self.record_buf).expect("a Vec grows");
            } else {
                let (slot, sealed) = self.keys.seal(&stored.subject, &stored.data)?;
                let plain = std::mem::replace(&mut stored.data, sealed);
                stored.key = slot;
                stored.encode_length_delimited(&mut self.record_buf).expect("a Vec grows");
                stored.data = plain;
                stored.key = 0;
            }
            if next > chunk_first && self.encode_buf.len() + self.record_buf.len() > CHUNK_MAX_BYTES {
                self.faults.before_write()?;
                store.events.insert(seq_key(chunk_first), &self.encode_buf[..])?;
                self.encode_buf.clear();
                chunk_first = next;
            }
            self.encode_buf.extend_from_slice(&self.record_buf);
            next += 1;
            if self.encode_buf.len() >= CHUNK_TARGET_BYTES {
                self.faults.before_write()?;
                store.events.insert(seq_key(chunk_first), &self.encode_buf[..])?;
                self.encode_buf.clear();
                chunk_first = next;
            }
        }
        for q in pending_rejections {
            self.write_rejection(&store, q.rejection, q.reply, received_at)?;
        }
        // Hand the (now empty) buffers back so their capacity is reused.
        self.events = events;
        self.rejections = rejections;
        if next > chunk_first {
            self.faults.before_write()?;
            store.events.insert(seq_key(chunk_first), &self.encode_buf[..])?;
        }
        if next > base || !self.written_rejections.is_empty() {
            // New case keys first: no flushed entry may use a key a crash could lose.
            self.keys.sync()?;
            // One fsync for the whole batch: all its submitters share it.
            self.faults.before_write()?;
            store.db.flush()?;
        }
        Ok(())
    }

    /// Chains and writes one rejection; it becomes durable with the batch's flush.
    fn write_rejection(
        &mut self,
        store: &Store,
        rejection: NewRejection,
        reply: Option<RejectReply>,
        received_at: i64,
    ) -> Result<(), Error> {
        let number = self.staged_rejections + 1;
        let mut stored = StoredRejection::from_new(rejection, number, received_at, self.rejection_payload_bytes);
        self.staged_tip.link_rejection(&mut stored);
        // Hashed plain, stored sealed with the case (subject as sent) key, like events.
        self.keys.seal_rejection(&mut stored)?;
        // Listed before the write, so that a failure still answers the reply.
        self.written_rejections.push((number, reply));
        self.faults.before_write()?;
        store.rejections.insert(seq_key(number), stored.encode_to_vec())?;
        self.staged_rejections = number;
        Ok(())
    }
}
