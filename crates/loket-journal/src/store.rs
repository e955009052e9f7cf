//! The sled side: the trees, opening, and the recovery/truncation that keep the
//! journal's invariants whatever sled recovered.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use prost::Message;

use crate::chain::{to_array, Tip};
use crate::event::{decode_u64, id_key_into, seq_key, StoredEvent, StoredRejection};
use crate::Error;

/// Key in the `meta` tree: a sequence known to have been flushed (see [`Store::recover`]).
pub(crate) const FLUSHED_MARK: &[u8] = b"flushed";

pub(crate) struct StoreConfig {
    pub dir: PathBuf,
    pub cache_capacity_bytes: u64,
}

/// One open sled database and its trees.
pub(crate) struct Store {
    pub db: sled::Db,
    /// first sequence of a chunk (u64 BE) -> consecutive length-delimited prost
    /// StoredEvents (see [`Frames`]); a few KiB per chunk, written by one batch
    pub events: sled::Tree,
    /// len(source) u32 BE ++ source ++ id -> sequence (u64 BE). A hint only: every hit is
    /// checked against the stored event before it is believed (see `writer::verify`).
    pub ids: sled::Tree,
    /// len(partner) u32 BE ++ partner ++ name -> acked sequence (u64 BE)
    pub cursors: sled::Tree,
    /// the same keys as `cursors` -> when the cursor was last used (opened or acknowledged),
    /// Unix µs (i64 BE), for expiring unused named subscriptions
    pub cursor_used: sled::Tree,
    /// rejection number (u64 BE) -> one prost StoredRejection. One insert each: rejections
    /// are few compared with accepted events.
    pub rejections: sled::Tree,
    /// purge number (u64 BE) -> one prost `retention::PurgeRecord`: what left the journal.
    pub purges: sled::Tree,
    /// case (V-number) -> the receipt time of its last partner event, Unix µs (i64 BE), for
    /// periods counted from it (`case_last.rs`)
    pub case_last: sled::Tree,
    pub meta: sled::Tree,
}

/// What [`Store::recover`] found.
pub(crate) struct Recovered {
    pub last: u64,
    pub last_received_at: i64,
    pub last_rejection: u64,
    pub tip: Tip,
}

/// Opens a sled database, waiting briefly for one closed just before: sled 0.34 releases
/// its file lock from a background thread after the database is dropped, so a reopen right
/// after a close (a restart in the same process, `audit verify` of a journal just closed)
/// can find the lock still held, the longer the busier the machine.
pub fn open_sled(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let mut attempts = 0;
    loop {
        match config.open() {
            // sled reports the held lock as an `Other` I/O error naming it.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") && attempts < 150 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Store {
    pub fn open(config: &StoreConfig) -> Result<Store, sled::Error> {
        let db = open_sled(
            &sled::Config::new()
                .path(&config.dir)
                .cache_capacity(config.cache_capacity_bytes)
                // The writer flushes every batch itself; the background flush is what bounds
                // the loss window of cursor acks (the API promises ~1 s).
                .flush_every_ms(Some(500)),
        )?;
        Ok(Store {
            events: db.open_tree("events")?,
            ids: db.open_tree("ids")?,
            cursors: db.open_tree("cursors")?,
            cursor_used: db.open_tree("cursor_used")?,
            rejections: db.open_tree("rejections")?,
            purges: db.open_tree("purges")?,
            case_last: db.open_tree("case_last")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// Opens, retrying for a short while: after the previous `Db` of the same directory was
    /// dropped, sled's background IO threads may still hold the file (and its lock) a moment.
    pub fn open_retrying(config: &StoreConfig) -> Result<Store, sled::Error> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match Store::open(config) {
                Ok(store) => return Ok(store),
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "journal reopen failed, retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn decode(sequence: u64, bytes: &[u8]) -> Result<StoredEvent, Error> {
        let event = StoredEvent::decode(bytes).map_err(|e| Error::Corrupt { sequence, reason: e.to_string() })?;
        if event.sequence != sequence {
            return Err(Error::Corrupt { sequence, reason: format!("record carries sequence {}", event.sequence) });
        }
        Ok(event)
    }

    /// The chunk holding `sequence`, if one starts at or below it: (first sequence, bytes).
    fn chunk_at(&self, sequence: u64) -> Result<Option<(u64, sled::IVec)>, Error> {
        match self.events.range(..=seq_key(sequence)).next_back() {
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((chunk_first(&key)?, value)))
            }
            None => Ok(None),
        }
    }

    pub fn read_event(&self, sequence: u64) -> Result<Option<StoredEvent>, Error> {
        let Some((first, chunk)) = self.chunk_at(sequence)? else {
            return Ok(None);
        };
        for frame in Frames::new(first, &chunk) {
            let (seq, bytes) = frame?;
            if seq == sequence {
                return Store::decode(seq, bytes).map(Some);
            }
        }
        Ok(None)
    }

    pub fn decode_rejection(number: u64, bytes: &[u8]) -> Result<StoredRejection, Error> {
        let r = StoredRejection::decode(bytes)
            .map_err(|e| Error::Corrupt { sequence: number, reason: format!("rejection record: {e}") })?;
        if r.number != number {
            return Err(Error::Corrupt {
                sequence: number,
                reason: format!("rejection record carries number {}", r.number),
            });
        }
        Ok(r)
    }

    /// Up to `max` rejections from number `from` on, up to and including `last`.
    pub fn read_rejections(&self, from: u64, last: u64, max: usize) -> Result<Vec<StoredRejection>, Error> {
        let mut out = Vec::new();
        if from > last {
            return Ok(out);
        }
        for item in self.rejections.range(seq_key(from)..=seq_key(last)) {
            let (key, value) = item?;
            let number = chunk_first(&key)?;
            out.push(Store::decode_rejection(number, &value)?);
            if out.len() == max {
                break;
            }
        }
        Ok(out)
    }

    /// Removes rejections numbered above `last` (a failed batch's, or an unflushed tail).
    pub fn truncate_rejections_above(&self, last: u64, faults: &dyn FaultHook) -> Result<usize, Error> {
        let mut doomed = Vec::new();
        for item in self.rejections.range(seq_key(last.saturating_add(1))..) {
            doomed.push(item?.0);
        }
        for key in &doomed {
            faults.before_write()?;
            self.rejections.remove(key)?;
        }
        Ok(doomed.len())
    }

    /// The chain tip and last rejection, given that the events end at `last`.
    ///
    /// Rejections are written in the same batches as events and flushed with them, so the
    /// prefix argument of [`Store::recover`] covers them too: what survives is every entry
    /// up to some point of the write order. The chain positions of the rejections after
    /// the last event must therefore continue it densely; any that do not (left over above
    /// a truncated gap) are unacknowledged and removed with the same rule as events.
    fn recover_rejections(&self, last: u64) -> Result<(u64, Tip), Error> {
        let mut tip = match last {
            0 => Tip::default(),
            _ => {
                let event = self.read_event(last)?.ok_or_else(|| missing(last))?;
                Tip { position: event.chain, hash: to_array(&event.hash).unwrap_or_default() }
            }
        };
        // The rejections above the event tip, found from the end backwards.
        let mut tail = Vec::new();
        let mut last_rejection = 0;
        for item in self.rejections.iter().rev() {
            let (key, value) = item?;
            let number = chunk_first(&key)?;
            let r = Store::decode_rejection(number, &value)?;
            if r.chain <= tip.position {
                last_rejection = number;
                break;
            }
            tail.push(r);
        }
        tail.reverse();
        for r in &tail {
            if r.chain != tip.position + 1 || r.number != last_rejection + 1 {
                break;
            }
            tip = Tip { position: r.chain, hash: to_array(&r.hash).unwrap_or_default() };
            last_rejection = r.number;
        }
        let dropped = self.truncate_rejections_above(last_rejection, &NoFaults)?;
        if dropped > 0 {
            tracing::warn!(last_rejection, dropped, "journal: removed unacknowledged rejections above a gap");
        }
        Ok((last_rejection, tip))
    }

    /// `count` events from `from` on, which the caller knows to be committed.
    pub fn read_range(&self, from: u64, count: usize) -> Result<Vec<StoredEvent>, Error> {
        let mut out = Vec::with_capacity(count);
        let start = match self.chunk_at(from)? {
            Some((first, _)) => first,
            None => return Err(missing(from)),
        };
        let mut expected = start;
        'chunks: for item in self.events.range(seq_key(start)..) {
            let (key, chunk) = item?;
            let first = chunk_first(&key)?;
            if first != expected {
                return Err(missing(expected));
            }
            for frame in Frames::new(first, &chunk) {
                let (seq, bytes) = frame?;
                expected = seq + 1;
                if seq >= from {
                    out.push(Store::decode(seq, bytes)?);
                    if out.len() == count {
                        break 'chunks;
                    }
                }
            }
        }
        if out.len() != count {
            return Err(missing(expected));
        }
        Ok(out)
    }

    /// Establishes the journal's invariants on a freshly opened database and returns the
    /// last sequence.
    ///
    /// Why this is enough after a kill -9 at any point:
    /// - sled 0.34 keeps one log for all trees of a `Db`, and its recovery replays the log
    ///   only up to the last contiguous message (`check_contiguity_in_unstable_tail` in
    ///   `pagecache/iterator.rs`: a later segment whose predecessor was torn is dropped), so
    ///   what comes back is a prefix of the writes, across trees. `flush()` guarantees that
    ///   every write before it is in that prefix. The single writer inserts each batch's
    ///   chunks in ascending sequence order and acks only after the flush, so every acked
    ///   event is present and the events tree is dense. Each chunk is one sled insert, so
    ///   it comes back whole or not at all.
    /// - We do not *rely* on the cross-tree prefix for the id index: an index hit is always
    ///   verified against the stored event (same source and id at a committed sequence), so a
    ///   stale entry whose event was lost can never produce `duplicate = true`.
    /// - We still verify density instead of trusting it: the writer records in `meta` the
    ///   last flushed sequence at the start of each batch, so only the unflushed tail above
    ///   it (about two batches) has to be scanned here; anything above a gap is unacked by
    ///   construction and is removed, so sequences stay dense. A flushed event that is
    ///   missing means sled lost acknowledged data, which we report as `Corrupt` rather than
    ///   paper over.
    pub fn recover(&self) -> Result<Recovered, Error> {
        let mark = match self.meta.get(FLUSHED_MARK)? {
            Some(v) => decode_u64(&v)
                .ok_or_else(|| Error::Corrupt { sequence: 0, reason: "flushed mark is not a u64".into() })?,
            None => 0,
        };
        // Retention removes chunks from the front only after recording where the journal
        // then starts; a crash in between leaves chunks below it, removed here.
        let retained = crate::retention::Retained::load(self)?;
        for item in self.events.range(..seq_key(retained.first_sequence)) {
            self.events.remove(item?.0)?;
        }
        if let Some((first, _)) = self.events.first()? {
            let first = chunk_first(&first)?;
            if first != retained.first_sequence {
                return Err(Error::Corrupt {
                    sequence: first,
                    reason: format!("the journal does not start at sequence {}", retained.first_sequence),
                });
            }
        }
        // Scan from the chunk holding the mark (chunks end at batch ends, so normally the
        // mark is its last event).
        let start = if mark < retained.first_sequence {
            retained.first_sequence
        } else {
            match self.chunk_at(mark)? {
                Some((first, chunk)) if Frames::new(first, &chunk).count() as u64 > mark - first => first,
                _ => {
                    return Err(Error::Corrupt {
                        sequence: mark,
                        reason: "an event that was flushed is missing after recovery".into(),
                    })
                }
            }
        };
        let mut last = start - 1;
        let mut last_received_at = 0;
        for item in self.events.range(seq_key(start)..) {
            let (key, chunk) = item?;
            if chunk_first(&key)? != last + 1 {
                break;
            }
            for frame in Frames::new(last + 1, &chunk) {
                let (seq, bytes) = frame?;
                let event = Store::decode(seq, bytes)?;
                last_received_at = last_received_at.max(event.received_at_micros);
                last = seq;
            }
        }
        if last < mark {
            return Err(Error::Corrupt {
                sequence: last + 1,
                reason: "an event that was flushed is missing after recovery".into(),
            });
        }
        let truncated = self.truncate_above(last, &NoFaults)?;
        if truncated > 0 {
            tracing::warn!(last, truncated, "journal: removed unacknowledged chunks above a gap");
        }
        let (last_rejection, tip) = self.recover_rejections(last)?;
        if let Some(r) = self.read_rejections(last_rejection, last_rejection, 1)?.first() {
            last_received_at = last_received_at.max(r.received_at_micros);
        }
        self.meta.insert(FLUSHED_MARK, &seq_key(last))?;
        self.db.flush()?;
        Ok(Recovered { last, last_received_at, last_rejection, tip })
    }

    /// Removes every chunk starting above `last` and the index entries that point at its
    /// events. Used at open (tail above a gap) and after a failed batch (its leftovers).
    /// `last` is always a chunk end there: chunks never span two batches.
    pub fn truncate_above(&self, last: u64, faults: &dyn FaultHook) -> Result<usize, Error> {
        let mut doomed = Vec::new();
        for item in self.events.range(seq_key(last.saturating_add(1))..) {
            let (key, value) = item?;
            doomed.push((key, value));
        }
        let mut id_key = Vec::new();
        for (key, chunk) in &doomed {
            // An undecodable leftover still has to go; its index entries (if any) are only
            // hints that fail verification once the sequences are reused.
            if let Ok(first) = chunk_first(key) {
                for (seq, bytes) in Frames::new(first, chunk).map_while(Result::ok) {
                    if let Ok(event) = Store::decode(seq, bytes) {
                        id_key_into(&mut id_key, &event.source, &event.id);
                        if self.ids.get(&id_key)?.as_deref() == Some(&seq_key(seq)[..]) {
                            faults.before_write()?;
                            self.ids.remove(&id_key)?;
                        }
                    }
                }
            }
            faults.before_write()?;
            self.events.remove(key)?;
        }
        Ok(doomed.len())
    }
}

pub(crate) fn chunk_first(key: &[u8]) -> Result<u64, Error> {
    decode_u64(key).ok_or_else(|| Error::Corrupt { sequence: 0, reason: format!("events key {key:?} is not a u64") })
}

pub(crate) fn missing(sequence: u64) -> Error {
    Error::Corrupt { sequence, reason: "durable event missing".into() }
}

/// The events of one chunk: a sled value holding consecutive events as length-delimited
/// prost records, the first one's sequence being the key. Yields (sequence, record bytes)
/// without decoding the records.
pub(crate) struct Frames<'a> {
    next_sequence: u64,
    rest: &'a [u8],
}

impl<'a> Frames<'a> {
    pub fn new(first: u64, chunk: &'a [u8]) -> Self {
        Frames { next_sequence: first, rest: chunk }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(u64, &'a [u8]), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let sequence = self.next_sequence;
        let corrupt = |reason: &str| Error::Corrupt { sequence, reason: reason.into() };
        let mut rest = self.rest;
        let frame = match prost::decode_length_delimiter(&mut rest) {
            Ok(len) if len <= rest.len() => {
                let (frame, after) = rest.split_at(len);
                self.rest = after;
                Ok((sequence, frame))
            }
            Ok(_) => Err(corrupt("chunk record runs past the chunk")),
            Err(_) => Err(corrupt("bad record length in chunk")),
        };
        if frame.is_err() {
            self.rest = &[];
        }
        self.next_sequence += 1;
        Some(frame)
    }
}

/// Lets tests make the writer's storage writes fail (disk full, IO error) without a real
/// full disk. Production code uses [`NoFaults`], which the optimiser erases.
pub(crate) trait FaultHook: Send + Sync {
    fn before_write(&self) -> Result<(), sled::Error>;
}

pub(crate) struct NoFaults;

impl FaultHook for NoFaults {
    #[inline(always)]
    fn before_write(&self) -> Result<(), sled::Error> {
        Ok(())
    }
}
