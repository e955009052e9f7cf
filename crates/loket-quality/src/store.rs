//! The figures on disk: their own sled database (`<data_dir>/quality`), separate from the
//! journal so that it can be dropped and rebuilt without touching a stored event.
//!
//! Trees: `accepted` (bucket key → [`Bucket`]), `rejected` (bucket key → [`Rejections`]),
//! `meta` (`clean` → the journal's last sequence when the gateway closed cleanly).
//!
//! The figures are updated after the journal acknowledged an event; a crash between the
//! two, or sled losing its last unflushed writes, would leave them behind the journal. So
//! the gateway removes the `clean` mark when it opens the store and writes it on close: a
//! store without the mark, or with another sequence than the journal's, is rebuilt at
//! start-up. A rebuild recounts the accepted events from the journal; rejections were
//! never stored there and are kept as counted. The gateway rebuilds in the background
//! ([`QualityStore::begin_rebuild`], then [`QualityStore::count_until`]) while it counts
//! new events as usual: the recount and the live counts are added up.
//!
//! Because of that, accepted events are first added up in memory and written to sled as
//! one read-modify-write per bucket (a handful of partner × type buckets a day) when a
//! second has passed or many events are waiting, before every report and at close: a
//! sled update per event cost more than the rest of the quality work together.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use loket_journal::Journal;
use loket_schema::Registry;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aggregate::{Accepted, Bucket, BucketKey, Filter, Rejections, Report};
use crate::rules::{RuleSet, Severity};
use crate::Error;

const CLEAN: &[u8] = b"clean";
/// Events read from the journal at once during a rebuild.
const REBUILD_CHUNK: usize = 1024;

/// Accepted events added up in memory and not yet written (see the module doc).
const PENDING_EVENTS: u64 = 4096;
const PENDING_AGE: Duration = Duration::from_secs(1);

pub struct QualityStore {
    db: sled::Db,
    accepted: sled::Tree,
    rejected: sled::Tree,
    meta: sled::Tree,
    pending: Mutex<Pending>,
    /// Held while pending counts are written, so a report waits for counts in transit.
    writing: Mutex<()>,
    /// Set from [`QualityStore::begin_rebuild`] until its recount is added: the figures
    /// then lack the recounted events, so the gateway's reports wait for it.
    rebuilding: AtomicBool,
}

struct Pending {
    buckets: BTreeMap<BucketKey, Bucket>,
    events: u64,
    since: Instant,
}

impl Pending {
    fn new() -> Self {
        Pending { buckets: BTreeMap::new(), events: 0, since: Instant::now() }
    }
}

/// `day (i32, big-endian, sign bit flipped so bytes sort like numbers) | partner | 0 | type`.
fn encode_key(key: &BucketKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + key.partner.len() + key.event_type.len());
    out.extend_from_slice(&((key.day as u32) ^ 0x8000_0000).to_be_bytes());
    out.extend_from_slice(key.partner.as_bytes());
    out.push(0);
    out.extend_from_slice(key.event_type.as_bytes());
    out
}

fn decode_key(bytes: &[u8]) -> Option<BucketKey> {
    let day = (u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) ^ 0x8000_0000) as i32;
    let rest = std::str::from_utf8(&bytes[4..]).ok()?;
    let (partner, event_type) = rest.split_once('\0')?;
    Some(BucketKey { day, partner: partner.to_owned(), event_type: event_type.to_owned() })
}

fn corrupt(key: &[u8], reason: impl ToString) -> Error {
    Error::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason: reason.to_string() }
}

impl QualityStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<QualityStore, Error> {
        let db = open_db(dir)?;
        Ok(QualityStore {
            accepted: db.open_tree("accepted")?,
            rejected: db.open_tree("rejected")?,
            meta: db.open_tree("meta")?,
            db,
            pending: Mutex::new(Pending::new()),
            writing: Mutex::new(()),
            rebuilding: AtomicBool::new(false),
        })
    }

    /// The journal sequence recorded at the last clean close, and removes the mark (so that
    /// a crash from now on leaves none).
    pub fn take_clean_mark(&self) -> Result<Option<u64>, Error> {
        let mark = self.meta.remove(CLEAN)?;
        self.db.flush()?;
        Ok(mark.and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?))))
    }

    /// Flushes and records that the figures cover the journal up to `journal_last`; not
    /// while a rebuild is unfinished, so the next start rebuilds again.
    pub fn close_clean(&self, journal_last: u64) -> Result<(), Error> {
        self.write_pending()?;
        self.db.flush()?;
        if self.is_rebuilding() {
            return Ok(());
        }
        self.meta.insert(CLEAN, &journal_last.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Counts an accepted event (in memory first; see the module doc).
    pub fn record_accepted(&self, event: &Accepted<'_>) -> Result<(), Error> {
        let due = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.buckets.entry(event.key()).or_default().add(event);
            pending.events += 1;
            pending.events >= PENDING_EVENTS || pending.since.elapsed() >= PENDING_AGE
        };
        if due {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes the counts added up in memory into the trees.
    fn write_pending(&self) -> Result<(), Error> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let pending = std::mem::replace(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()), Pending::new());
        for (key, delta) in &pending.buckets {
            update::<Bucket>(&self.accepted, &encode_key(key), |b| b.merge(delta))?;
        }
        Ok(())
    }

    /// A refused publish of `event_type` by `partner`, of `kind` (the ErrorInfo reason),
    /// naming the `reject` rules it failed.
    pub fn record_rejected(&self, key: &BucketKey, kind: &str, rules: &[String]) -> Result<(), Error> {
        update::<Rejections>(&self.rejected, &encode_key(key), |r| r.add(kind, rules))
    }

    /// A publish answered as a duplicate of a stored event (uniqueness).
    pub fn record_duplicate(&self, key: &BucketKey) -> Result<(), Error> {
        update::<Rejections>(&self.rejected, &encode_key(key), |r| r.duplicates += 1)
    }

    /// Drops the buckets (accepted and refused) of days before `day`. They hold no
    /// personal data, but a bucket per day × partner × type must not add up forever
    /// (`[retention] quality`). Returns the buckets removed.
    pub fn expire_days(&self, day: i32) -> Result<u64, Error> {
        // A recount in progress would add the dropped days back; the next pass drops them.
        if self.is_rebuilding() {
            return Ok(0);
        }
        // Counts still in memory first, or an old day would be written back after this.
        self.write_pending()?;
        // Not between a pending write's read and its compare-and-swap.
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let end = ((day as u32) ^ 0x8000_0000).to_be_bytes();
        let mut removed = 0;
        for tree in [&self.accepted, &self.rejected] {
            for key in tree.range(..end).keys() {
                tree.remove(key?)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The database, for the handover state kept beside the figures ([`crate::chain::ChainStore`]).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Every bucket of accepted events.
    pub fn accepted(&self) -> Result<BTreeMap<BucketKey, Bucket>, Error> {
        self.write_pending()?;
        read_all(&self.accepted)
    }

    /// Every bucket of rejections.
    pub fn rejected(&self) -> Result<BTreeMap<BucketKey, Rejections>, Error> {
        read_all(&self.rejected)
    }

    pub fn report(&self, filter: &Filter) -> Result<Report, Error> {
        Ok(Report::build(&self.accepted()?, &self.rejected()?, filter))
    }

    /// Recounts the accepted events' figures from the journal (rules evaluated as they are
    /// now); rejections stay as counted. Returns the number of events read.
    pub fn rebuild(&self, journal: &Journal, registry: &Registry, rules: &RuleSet) -> Result<u64, Error> {
        let last = journal.last_sequence();
        self.begin_rebuild()?;
        self.count_until(journal, registry, rules, last, &|| false)
    }

    /// Starts a rebuild that [`QualityStore::count_until`] finishes, possibly in the
    /// background: the accepted figures are cleared, and events counted from now on (all
    /// after the journal's last sequence now) are added as usual, beside the recount.
    pub fn begin_rebuild(&self) -> Result<(), Error> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Pending::new();
        self.accepted.clear()?;
        self.rebuilding.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Whether a rebuild's recount is not yet added.
    pub fn is_rebuilding(&self) -> bool {
        self.rebuilding.load(Ordering::SeqCst)
    }

    /// Counts the journal's accepted events up to `last` and adds them to the figures,
    /// ending the rebuild. Returns the number of events read, or stops early (the rebuild
    /// unfinished) when `stop` says so.
    pub fn count_until(
        &self,
        journal: &Journal,
        registry: &Registry,
        rules: &RuleSet,
        last: u64,
        stop: &dyn Fn() -> bool,
    ) -> Result<u64, Error> {
        let mut buckets: BTreeMap<BucketKey, Bucket> = BTreeMap::new();
        let mut next = 1;
        let mut read = 0;
        while next <= last {
            if stop() {
                return Ok(read);
            }
            let chunk = journal.read_from(next, REBUILD_CHUNK)?;
            let Some(end) = chunk.last().map(|e| e.sequence) else { break };
            for event in chunk.iter().filter(|e| e.sequence <= last) {
                read += 1;
                if event.source == loket_domain::GATEWAY_SOURCE {
                    continue;
                }
                // Events of a schema the registry no longer has keep no field figures.
                let expected = registry
                    .resolve(&event.event_type, Some(&event.dataschema))
                    .map(|s| s.expected().to_vec())
                    .unwrap_or_default();
                let flagged: Vec<String> = match serde_json::from_slice(&event.data) {
                    Ok(data) => rules
                        .evaluate(&event.event_type, &data)
                        .into_iter()
                        .filter(|f| f.severity == Severity::Flag)
                        .map(|f| f.name)
                        .collect(),
                    Err(e) => {
                        tracing::warn!(sequence = event.sequence, error = %e, "stored event data is not JSON");
                        Vec::new()
                    }
                };
                let accepted = Accepted {
                    received_at_micros: event.received_at_micros,
                    partner: &event.source,
                    event_type: &event.event_type,
                    expected: &expected,
                    missing: &event.missing_expected,
                    completeness: event.completeness,
                    flagged: &flagged,
                    time_micros: event.time_micros,
                };
                buckets.entry(accepted.key()).or_default().add(&accepted);
            }
            next = end + 1;
        }
        {
            let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            for (key, bucket) in &buckets {
                update::<Bucket>(&self.accepted, &encode_key(key), |b| b.merge(bucket))?;
            }
        }
        self.db.flush()?;
        self.rebuilding.store(false, Ordering::SeqCst);
        Ok(read)
    }
}

fn update<T: Serialize + DeserializeOwned + Default>(
    tree: &sled::Tree,
    key: &[u8],
    change: impl Fn(&mut T),
) -> Result<(), Error> {
    // Compare-and-swap loop: concurrent publishes of one bucket each add their own event.
    loop {
        let old = tree.get(key)?;
        let mut value: T = match &old {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?,
            None => T::default(),
        };
        change(&mut value);
        let new = serde_json::to_vec(&value).map_err(|e| corrupt(key, e))?;
        if tree.compare_and_swap(key, old, Some(new))?.is_ok() {
            return Ok(());
        }
    }
}

fn read_all<T: DeserializeOwned>(tree: &sled::Tree) -> Result<BTreeMap<BucketKey, T>, Error> {
    let mut out = BTreeMap::new();
    for item in tree.iter() {
        let (k, v) = item?;
        let key = decode_key(&k).ok_or_else(|| corrupt(&k, "malformed key"))?;
        out.insert(key, serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))?);
    }
    Ok(out)
}

/// Opens the database, waiting briefly for a store closed just before (a restart in the
/// same process: see [`loket_journal::open_sled`]).
fn open_db(dir: &Path) -> Result<sled::Db, Error> {
    Ok(loket_journal::open_sled(&sled::Config::new().path(dir).cache_capacity(16 * 1024 * 1024))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_day() {
        let a = BucketKey { day: -3, partner: "dvo".into(), event_type: "baggage".into() };
        let b = BucketKey { day: 2, partner: "coa".into(), event_type: "transport-status".into() };
        assert_eq!(decode_key(&encode_key(&a)), Some(a.clone()));
        assert!(encode_key(&a) < encode_key(&b));
    }

    #[test]
    fn days_before_the_period_are_dropped_with_counts_still_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = QualityStore::open(dir.path()).unwrap();
        let at_day = |day: i64| Accepted {
            received_at_micros: day * crate::aggregate::DAY_MICROS,
            partner: "dvo",
            event_type: "baggage",
            expected: &[],
            missing: &[],
            completeness: 1.0,
            flagged: &[],
            time_micros: None,
        };
        store.record_accepted(&at_day(1)).unwrap();
        store.record_accepted(&at_day(10)).unwrap();
        store.record_rejected(&at_day(1).key(), "SCHEMA_VIOLATION", &[]).unwrap();
        store.record_rejected(&at_day(10).key(), "SCHEMA_VIOLATION", &[]).unwrap();
        assert_eq!(store.expire_days(10).unwrap(), 2, "day 1's accepted and refused buckets");
        let days = |m: Vec<BucketKey>| m.into_iter().map(|k| k.day).collect::<Vec<_>>();
        assert_eq!(days(store.accepted().unwrap().into_keys().collect()), [10]);
        assert_eq!(days(store.rejected().unwrap().into_keys().collect()), [10]);
        assert_eq!(store.expire_days(10).unwrap(), 0);
    }

    #[test]
    fn figures_survive_reopening_and_the_clean_mark_is_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let expected = vec!["/a".to_owned()];
        {
            let store = QualityStore::open(dir.path()).unwrap();
            assert_eq!(store.take_clean_mark().unwrap(), None);
            let e = Accepted {
                received_at_micros: 1,
                partner: "dvo",
                event_type: "baggage",
                expected: &expected,
                missing: &[],
                completeness: 1.0,
                flagged: &[],
                time_micros: None,
            };
            store.record_accepted(&e).unwrap();
            store.record_accepted(&e).unwrap();
            assert_eq!(store.report(&Filter::default()).unwrap().types[0].events, 2, "counts in memory are reported");
            store.record_accepted(&e).unwrap();
            store.record_rejected(&e.key(), "SCHEMA_VIOLATION", &[]).unwrap();
            store.close_clean(3).unwrap();
        }
        let store = QualityStore::open(dir.path()).unwrap();
        assert_eq!(store.take_clean_mark().unwrap(), Some(3));
        assert_eq!(store.take_clean_mark().unwrap(), None);
        let report = store.report(&Filter::default()).unwrap();
        assert_eq!(report.types[0].events, 3, "and written at close");
        assert_eq!(report.types[0].rejected, 1);
        assert_eq!(report.fields[0].filled, 3);
    }
}
