//! loket's durable, embedded event journal, on sled.
//!
//! Every accepted event gets a gateway-wide sequence number (1, 2, 3, … dense) and is
//! flushed to disk before its [`Journal::submit`] future resolves, so the gateway can ack
//! the publisher then and never lose what it acked. One writer thread does all writes and
//! commits in groups: everything queued while the previous fsync ran goes into the next
//! one. Appends are idempotent by (source, id). Subscription cursors live beside the events.
//!
//! Layout: sled trees `events` (u64 BE first sequence → a chunk of a few KiB of
//! consecutive prost [`StoredEvent`]s, all from one batch), `ids` ((source, id) →
//! sequence), `cursors` ((partner, name) → acked sequence) and `meta`. Crash consistency
//! is argued at `Store::recover` (src/store.rs), chunking at `CHUNK_TARGET_BYTES`
//! (src/writer.rs).

pub mod audit;
mod case_last;
pub mod chain;
mod cursors;
mod erase;
mod event;
pub mod export;
mod keys;
mod prune;
mod recent;
pub mod retention;
mod store;
mod writer;

#[cfg(test)]
mod bounded_tests;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

pub use cursors::CursorInfo;
pub use event::{Appended, NewEvent, NewRejection, StoredEvent, StoredRejection, Violation};
pub use retention::{ExpireOutcome, PurgeRecord, Retained, RetentionPolicy};
pub use store::open_sled;

use event::decode_u64;
use store::{missing, FaultHook, NoFaults, Store, StoreConfig};
use writer::{Msg, Writer};

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The (source, id) was used before for an event with different content.
    /// (The field is `publisher`, not `source`: thiserror would take a field named
    /// `source` for the error's cause.)
    #[error("event id {id:?} from {publisher:?} was already used for different content (sequence {sequence})")]
    Conflict {
        /// The event's `source`.
        publisher: String,
        /// The event's `id`.
        id: String,
        /// Sequence of the original event.
        sequence: u64,
    },
    /// The subscription cursor does not exist.
    #[error("no subscription {name:?} for partner {partner:?}")]
    NotFound {
        /// The partner owning the cursor.
        partner: String,
        /// The subscription name.
        name: String,
    },
    /// sled failed (IO error, disk full, …). For a submit: nothing of the event was kept.
    #[error("journal storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// A stored record could not be decoded, or recovery found acknowledged data missing.
    #[error("journal entry {sequence} is unreadable: {reason}")]
    Corrupt {
        /// The sequence concerned.
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The journal was closed.
    #[error("journal is closed")]
    Closed,
}

/// How to open a [`Journal`].
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Directory of the sled database (created if needed).
    pub dir: PathBuf,
    /// sled page-cache cap in bytes (sled defaults to 1 GB; we cap it, e.g. 64 MiB, to keep RSS low)
    pub cache_capacity_bytes: u64,
    /// most events written per group commit
    pub max_batch: usize,
    /// Most payload bytes a rejection keeps (its full size and SHA-256 are kept beside).
    pub rejection_payload_bytes: usize,
    /// How long (source, id) identifies an event: a resend within it is a duplicate,
    /// after it a new event; the id index is pruned to it ([`Journal::prune_ids`]).
    /// `None`: forever.
    pub dedup_window: Option<Duration>,
    /// Bytes of just-committed events kept in memory for readers that follow the writer
    /// (see `recent.rs`); 0: none.
    pub recent_bytes: usize,
}

/// Default of [`JournalConfig::rejection_payload_bytes`].
pub const DEFAULT_REJECTION_PAYLOAD_BYTES: usize = 4 << 10;
/// Default of [`JournalConfig::recent_bytes`]: about a second of a busy gateway's events.
pub const DEFAULT_RECENT_BYTES: usize = 8 << 20;
/// Default of [`JournalConfig::dedup_window`]: seven days.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: PathBuf::new(),
            cache_capacity_bytes: 64 << 20,
            max_batch: 4096,
            rejection_payload_bytes: DEFAULT_REJECTION_PAYLOAD_BYTES,
            dedup_window: Some(DEFAULT_DEDUP_WINDOW),
            recent_bytes: DEFAULT_RECENT_BYTES,
        }
    }
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Group commits done (each one sled flush, or none when a batch held only duplicates).
    pub batches: u64,
    /// New events stored.
    pub events: u64,
    /// Times the writer reopened sled to get past a storage error.
    pub reopens: u64,
}

/// State shared by the handles and the writer thread.
pub(crate) struct Shared {
    /// `None` only while the writer reopens sled after a storage error.
    store: RwLock<Option<Arc<Store>>>,
    /// Highest flushed sequence.
    last: AtomicU64,
    /// Highest flushed rejection number.
    last_rejection: AtomicU64,
    /// First sequence still in the journal (retention removes from the front).
    first_retained: AtomicU64,
    /// The per-case data keys payloads are sealed with.
    keys: Arc<keys::KeyStore>,
    watch: watch::Sender<u64>,
    batches: AtomicU64,
    events: AtomicU64,
    reopens: AtomicU64,
    /// Submits and rejections sent to the writer and not yet taken by it: read by the
    /// gateway's load shedding on every publish, so one atomic rather than a channel query.
    queued: AtomicUsize,
    /// The events just committed, for readers that follow the writer.
    recent: recent::Recent,
}

impl Shared {
    /// `event` as readers get it (see [`keys::KeyStore::open_event`]).
    pub(crate) fn open_event(&self, event: StoredEvent) -> Result<StoredEvent, Error> {
        self.keys.open_event(event)
    }

    pub(crate) fn open_rejection(&self, r: StoredRejection) -> Result<StoredRejection, Error> {
        self.keys.open_rejection(r)
    }

    fn store(&self) -> Result<Arc<Store>, Error> {
        let slot = self.store.read().unwrap_or_else(|e| e.into_inner());
        slot.clone().ok_or_else(|| {
            Error::Storage(sled::Error::Io(std::io::Error::other(
                "journal storage is unavailable (reopening after an error)",
            )))
        })
    }
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<Result<(), Error>>>>,
    /// See [`JournalConfig::dedup_window`].
    dedup_window: Option<Duration>,
    /// Held by retention and erasure: one purge record at a time.
    purging: Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Without an explicit close, still drain and flush rather than drop acked-to-be work.
        let handle = self.writer.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = self.tx.send(Msg::Shutdown);
            let _ = handle.join();
        }
    }
}

/// The durable event journal. Cheap to clone: all clones share one writer.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl Journal {
    /// Opens (creating if needed) and starts the single writer thread. Recovers a consistent state after a crash (kill -9 at any point).
    pub fn open(config: &JournalConfig) -> Result<Journal, Error> {
        Journal::open_with(config, Arc::new(NoFaults))
    }

    pub(crate) fn open_with(config: &JournalConfig, faults: Arc<dyn FaultHook>) -> Result<Journal, Error> {
        let store_config = StoreConfig { dir: config.dir.clone(), cache_capacity_bytes: config.cache_capacity_bytes };
        // A journal closed a moment ago may still hold its lock in sled's IO threads.
        let store = Store::open_retrying(&store_config)?;
        let recovered = store.recover()?;
        let retained = retention::Retained::load(&store)?;
        let (watch, _) = watch::channel(recovered.last);
        let shared = Arc::new(Shared {
            store: RwLock::new(Some(Arc::new(store))),
            last: AtomicU64::new(recovered.last),
            last_rejection: AtomicU64::new(recovered.last_rejection),
            first_retained: AtomicU64::new(retained.first_sequence),
            keys: Arc::new(keys::KeyStore::open(&config.dir)?),
            watch,
            batches: AtomicU64::new(0),
            events: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            recent: recent::Recent::new(config.recent_bytes),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(shared.clone(), rx, store_config, faults, config, &recovered);
        let handle = std::thread::Builder::new()
            .name("loket-journal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Storage(sled::Error::Io(e)))?;
        let journal = Journal {
            inner: Arc::new(Inner {
                shared,
                tx,
                closed: AtomicBool::new(false),
                writer: Mutex::new(Some(handle)),
                dedup_window: config.dedup_window,
                purging: Mutex::new(()),
            }),
        };
        journal.finish_erasures()?;
        Ok(journal)
    }

    /// Enqueues the event for the writer *before returning* (so the caller fixes the order of its events synchronously: two submits from one task are sequenced in call order), and returns a future that resolves once the event is durable (flushed) or known to be a duplicate/conflict. Must not block the async runtime.
    ///
    /// The queue is unbounded: callers bound their own in-flight submits (the gateway's
    /// per-stream windows), so that the journal never has to block a runtime thread.
    /// Dropping the future does not withdraw the event.
    pub fn submit(&self, event: NewEvent) -> impl Future<Output = Result<Appended, Error>> + Send + 'static {
        let queued = if self.inner.closed.load(Ordering::Acquire) {
            None
        } else {
            let (reply, rx) = oneshot::channel();
            self.inner.shared.queued.fetch_add(1, Ordering::Relaxed);
            self.inner.tx.send(Msg::Submit(event, reply)).ok().map(|()| rx)
        };
        async move {
            match queued {
                // A dropped reply means the writer stopped before taking the event.
                Some(rx) => rx.await.unwrap_or(Err(Error::Closed)),
                None => Err(Error::Closed),
            }
        }
    }

    /// Journals a refused publish in the rejection log (never delivered to subscribers).
    /// Like [`Journal::submit`] it is enqueued before returning and goes through the same
    /// group commit, so it is chained in order with accepted events; the future resolves
    /// with its rejection number once durable. Callers answer the publisher without
    /// waiting for it: a rejection's durability must not delay anybody's reply.
    pub fn reject(&self, rejection: NewRejection) -> impl Future<Output = Result<u64, Error>> + Send + 'static {
        let queued = if self.inner.closed.load(Ordering::Acquire) {
            None
        } else {
            let (reply, rx) = oneshot::channel();
            self.inner.shared.queued.fetch_add(1, Ordering::Relaxed);
            self.inner.tx.send(Msg::Reject(rejection, reply)).ok().map(|()| rx)
        };
        async move {
            match queued {
                Some(rx) => rx.await.unwrap_or(Err(Error::Closed)),
                None => Err(Error::Closed),
            }
        }
    }

    /// Submits and rejections waiting for the writer (not yet in a batch): what load
    /// shedding compares with its high-water mark.
    pub fn queue_depth(&self) -> usize {
        self.inner.shared.queued.load(Ordering::Relaxed)
    }

    /// Highest durable rejection number, 0 when none.
    pub fn last_rejection(&self) -> u64 {
        self.inner.shared.last_rejection.load(Ordering::Acquire)
    }

    /// Durable rejections numbered >= from, in order, at most max of them.
    pub fn read_rejections_from(&self, from: u64, max: usize) -> Result<Vec<StoredRejection>, Error> {
        let last = self.last_rejection();
        if max == 0 {
            return Ok(Vec::new());
        }
        let shared = &self.inner.shared;
        shared.store()?.read_rejections(from.max(1), last, max)?.into_iter().map(|r| shared.open_rejection(r)).collect()
    }

    /// Highest durable (flushed) sequence, 0 when empty.
    pub fn last_sequence(&self) -> u64 {
        self.inner.shared.last.load(Ordering::Acquire)
    }

    /// Wakes whenever last_sequence grows (value = last durable sequence).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.shared.watch.subscribe()
    }

    /// Durable events with sequence >= from, in order, at most max of them (never one above last_sequence()).
    /// A `from` before the retained range reads from its start ([`Journal::first_retained`]).
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<StoredEvent>, Error> {
        Ok(self.read_where(from, max, |_| true)?.0)
    }

    /// Like [`Journal::read_from`], but only the events `keep` selects are returned, and
    /// only their payloads decrypted; with the sequence of the last event read (`None`:
    /// nothing after `from`), where the next read starts after. `keep` sees an event
    /// before its payload is opened: a follower that needs a few types does not pay for
    /// the others.
    pub fn read_where(
        &self,
        from: u64,
        max: usize,
        keep: impl Fn(&StoredEvent) -> bool,
    ) -> Result<(Vec<StoredEvent>, Option<u64>), Error> {
        loop {
            let first = self.first_retained();
            let last = self.last_sequence();
            let from = from.max(first);
            if from > last || max == 0 {
                return Ok((Vec::new(), None));
            }
            if let Some((events, read)) = self.inner.shared.recent.read_where(from, last, max, &keep) {
                return Ok((events, Some(read)));
            }
            let count = (last - from + 1).min(max as u64) as usize;
            match self.inner.shared.store()?.read_range(from, count) {
                // Retention removed the front while this read was on its way: read again
                // from the new start.
                Err(Error::Corrupt { .. }) if self.first_retained() > first => continue,
                Err(e) => return Err(e),
                Ok(events) => {
                    let read = events.last().map(|e| e.sequence);
                    let kept = events.into_iter().filter(|e| keep(e)).map(|e| self.inner.shared.open_event(e));
                    return Ok((kept.collect::<Result<_, _>>()?, read));
                }
            }
        }
    }

    /// The durable event with this sequence, if any.
    pub fn get(&self, sequence: u64) -> Result<Option<StoredEvent>, Error> {
        if sequence < self.first_retained() || sequence > self.last_sequence() {
            return Ok(None);
        }
        let event = self.inner.shared.store()?.read_event(sequence)?;
        event.map(|e| self.inner.shared.open_event(e)).transpose()
    }

    /// The durable event a publisher stored under `id`, if any. The id index is only a
    /// hint, so a hit is checked against the stored event.
    pub fn find(&self, source: &str, id: &str) -> Result<Option<StoredEvent>, Error> {
        let store = self.inner.shared.store()?;
        let mut key = Vec::new();
        event::id_key_into(&mut key, source, id);
        let Some(value) = store.ids.get(&key)? else { return Ok(None) };
        let Some(sequence) = decode_u64(&value).filter(|s| *s >= 1 && *s <= self.last_sequence()) else {
            return Ok(None);
        };
        let event = store.read_event(sequence)?.filter(|e| e.source == source && e.id == id);
        event.map(|e| self.inner.shared.open_event(e)).transpose()
    }

    /// Sequence of the first event received at or after `micros` (Unix µs); last_sequence()+1 when none. received_at is kept non-decreasing by the writer, so binary search over the dense sequence works (no extra index).
    pub fn first_sequence_at_or_after(&self, micros: i64) -> Result<u64, Error> {
        let store = self.inner.shared.store()?;
        let (mut lo, mut hi) = (self.first_retained(), self.last_sequence() + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let event = store.read_event(mid)?.ok_or_else(|| missing(mid))?;
            if event.received_at_micros >= micros {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// Stops the writer after draining what was submitted, flushes everything.
    ///
    /// Submits after (or racing with) close resolve to [`Error::Closed`]. Reads keep
    /// working until the last handle is dropped, which releases the directory.
    pub fn close(&self) -> Result<(), Error> {
        self.inner.closed.store(true, Ordering::Release);
        let handle = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = self.inner.tx.send(Msg::Shutdown);
            match handle.join() {
                Ok(result) => result?,
                Err(_) => {
                    return Err(Error::Storage(sled::Error::ReportableBug("journal writer thread panicked".into())))
                }
            }
        }
        // Cursor acks made after the writer stopped.
        self.inner.shared.store()?.db.flush()?;
        Ok(())
    }

    /// Bytes on disk (sled size_on_disk), for metrics and the benchmark.
    pub fn size_on_disk(&self) -> Result<u64, Error> {
        Ok(self.inner.shared.store()?.db.size_on_disk()?)
    }

    /// Counters since open (not part of the durable state).
    pub fn stats(&self) -> JournalStats {
        let shared = &self.inner.shared;
        JournalStats {
            batches: shared.batches.load(Ordering::Relaxed),
            events: shared.events.load(Ordering::Relaxed),
            reopens: shared.reopens.load(Ordering::Relaxed),
        }
    }
}
