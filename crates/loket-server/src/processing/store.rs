//! The processing log on disk: a sled database `<data_dir>/processing`, written by one
//! thread in batches so that no request waits for it. The V-number itself is never
//! written, only its pseudonym; the pseudonym key is random per gateway and kept in the
//! database.
//!
//! A batch is stored as one value (tree `batches`, keyed by its number in write order), and
//! beside it the sorted 8-byte prefixes of the pseudonyms it holds (tree `subjects`, same
//! key). A replay delivers hundreds of thousands of events, each a record: one sled value
//! per record under a random pseudonym key made sled's index the processing log's main
//! cost, where one value per batch is appended. Listing a subject reads the prefix lists
//! and decodes only the batches that may hold it.
//!
//! A batch value is JSON compressed with zstd (`encode`/`decode`; values of gateways
//! before compression are plain JSON and still read). Uncompressed, a batch of a busy
//! second is hundreds of kilobytes, and sled 0.34 keeps at least one page per cache shard
//! (256 of them) and counts a page against its cache only after enough accesses to its
//! shard: a log that is written and hardly read kept ~85 MB of batches resident after
//! 200,000 deliveries whatever its cache size. Compressed (the records repeat their field
//! names and most values) a batch is about a tenth of that.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Error;

/// A batch is written this often (at once when a flush asks): what arrives within it, a
/// few thousand records at the gateway's full rate.
const BATCH_INTERVAL: Duration = Duration::from_millis(100);

const KEY: &[u8] = b"key";
const BATCHES: &str = "batches";
const SUBJECTS: &str = "subjects";
/// Bytes of a pseudonym kept in a batch's subject list: enough to skip nearly every batch
/// that does not hold the subject.
const PREFIX: usize = 8;

/// One processing, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub operation: String,
    pub channel: String,
    pub activity: String,
    pub partner: String,
    pub event_type: String,
    pub event_id: String,
    pub sequence: u64,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub status: String,
    pub started_micros: i64,
    pub ended_micros: i64,
    /// The pseudonym, hex.
    pub subject: String,
}

pub(crate) enum Message {
    /// One processing, or the deliveries of one journal read together (one send).
    Records(Vec<Stored>),
    /// Answered once everything sent before it is durable.
    Flush(SyncSender<Result<(), String>>),
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Processing(e.to_string())
}

/// Opens the database; returns it with its pseudonym key.
pub(crate) fn open(dir: &std::path::Path) -> Result<(sled::Db, Vec<u8>), Error> {
    let db = loket_journal::open_sled(&sled::Config::new().path(dir).cache_capacity(4 << 20)).map_err(storage)?;
    let meta = db.open_tree("meta").map_err(storage)?;
    let key = match meta.get(KEY).map_err(storage)? {
        Some(k) => k.to_vec(),
        None => {
            // Random per gateway: a pseudonym cannot be recomputed from a V-number elsewhere.
            let key = [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat();
            meta.insert(KEY, key.as_slice()).map_err(storage)?;
            db.flush().map_err(storage)?;
            key
        }
    };
    Ok((db, key))
}

/// Starts the writer thread; it ends, after a last batch, when every sender is gone.
pub(crate) fn writer(db: sled::Db) -> (Sender<Message>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("processing-log".into())
        .spawn(move || write_batches(&db, &rx))
        .expect("a thread can be started");
    (tx, handle)
}

/// Sleeps until a batch is due and then takes what the channel holds: a record does not
/// wake this thread, which cost a futex wake and a context switch per published event
/// (BENCHMARKS.md, issue 16). A flush and the close wake it ([`std::thread::Thread::unpark`]).
fn write_batches(db: &sled::Db, rx: &Receiver<Message>) {
    let mut pending: Vec<Stored> = Vec::new();
    let mut encoder = Encoder::default();
    let mut waiting: Vec<SyncSender<Result<(), String>>> = Vec::new();
    let mut since = Instant::now();
    loop {
        std::thread::park_timeout(BATCH_INTERVAL.saturating_sub(since.elapsed()));
        let mut open = true;
        loop {
            match rx.try_recv() {
                Ok(Message::Records(mut records)) => pending.append(&mut records),
                Ok(Message::Flush(reply)) => waiting.push(reply),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let due = !open || !waiting.is_empty() || since.elapsed() >= BATCH_INTERVAL;
        if due {
            let result = write(db, &pending, &mut encoder).map_err(|e| e.to_string());
            pending.clear();
            if let Err(e) = &result {
                tracing::error!(error = %e, "processing log batch not written");
            }
            for reply in waiting.drain(..) {
                let _ = reply.send(result.clone());
            }
            since = Instant::now();
        }
        if !open {
            return;
        }
    }
}

fn write(db: &sled::Db, records: &[Stored], encoder: &mut Encoder) -> Result<(), Error> {
    if records.is_empty() {
        return Ok(());
    }
    let key = db.generate_id().map_err(storage)?.to_be_bytes();
    let batch = encoder.encode(records)?;
    let (batches, subjects) = (db.open_tree(BATCHES).map_err(storage)?, db.open_tree(SUBJECTS).map_err(storage)?);
    // The batch first: a subject list never names a batch that is not there.
    batches.insert(key, batch).map_err(storage)?;
    subjects.insert(key, subject_list(records)).map_err(storage)?;
    db.flush().map_err(storage)?;
    Ok(())
}

/// Every record of the subject with pseudonym `subject`, in write order.
pub(crate) fn records(db: &sled::Db, subject: &str) -> Result<Vec<Stored>, Error> {
    let Some(wanted) = prefix(subject) else { return Ok(Vec::new()) };
    let (batches, subjects) = (db.open_tree(BATCHES).map_err(storage)?, db.open_tree(SUBJECTS).map_err(storage)?);
    // Records written one value each, under the pseudonym, by gateways before batches.
    let mut out: Vec<Stored> = match hex::decode(subject) {
        Ok(key) => db
            .scan_prefix(key)
            .values()
            .map(|v| serde_json::from_slice(&v.map_err(storage)?).map_err(storage))
            .collect::<Result<_, _>>()?,
        Err(_) => Vec::new(),
    };
    for entry in subjects.iter() {
        let (key, list) = entry.map_err(storage)?;
        let holds = list.chunks_exact(PREFIX).collect::<Vec<_>>().binary_search(&wanted.as_slice()).is_ok();
        if !holds {
            continue;
        }
        let Some(batch) = batches.get(&key).map_err(storage)? else { continue };
        let batch = decode(&batch)?;
        out.extend(batch.into_iter().filter(|r| r.subject == subject));
    }
    Ok(out)
}

/// Removes the records that ended before `before` (Unix µs); returns how many. A batch
/// that keeps some records is written again with them alone.
pub(crate) fn expire(db: &sled::Db, before: i64) -> Result<u64, Error> {
    #[derive(Deserialize)]
    struct Ended {
        ended_micros: i64,
    }
    let mut removed = 0;
    // Records of gateways before batches, one value each.
    for item in db.iter() {
        let (key, value) = item.map_err(storage)?;
        let ended: Ended = serde_json::from_slice(&value).map_err(storage)?;
        if ended.ended_micros < before {
            db.remove(key).map_err(storage)?;
            removed += 1;
        }
    }
    let (batches, subjects) = (db.open_tree(BATCHES).map_err(storage)?, db.open_tree(SUBJECTS).map_err(storage)?);
    for item in batches.iter() {
        let (key, value) = item.map_err(storage)?;
        let records = decode(&value)?;
        let total = records.len();
        let kept: Vec<Stored> = records.into_iter().filter(|r| r.ended_micros >= before).collect();
        removed += (total - kept.len()) as u64;
        if kept.len() == total {
            // Later batches ended later still.
            break;
        }
        // The subject list first: it never names a batch that is not there.
        if kept.is_empty() {
            subjects.remove(&key).map_err(storage)?;
            batches.remove(&key).map_err(storage)?;
        } else {
            subjects.insert(&key, subject_list(&kept)).map_err(storage)?;
            batches.insert(&key, encode(&kept)?).map_err(storage)?;
        }
    }
    db.flush().map_err(storage)?;
    Ok(removed)
}

/// zstd's fastest level: the writer thread compresses every batch, and the records
/// compress well at any level.
const ZSTD_LEVEL: i32 = 1;
/// How every zstd frame begins; a plain JSON batch begins with `[`.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn encode(records: &[Stored]) -> Result<Vec<u8>, Error> {
    Encoder::default().encode(records).map(<[u8]>::to_vec)
}

/// Encodes batches into buffers and a zstd context kept from one batch to the next: a
/// JSON buffer grown by doubling and a zstd context made afresh for every batch were most
/// of the writer's cost during a replay (the kernel zeroing their new pages), more than
/// the encoding itself.
#[derive(Default)]
struct Encoder {
    json: Vec<u8>,
    out: Vec<u8>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl Encoder {
    fn encode(&mut self, records: &[Stored]) -> Result<&[u8], Error> {
        self.json.clear();
        serde_json::to_writer(&mut self.json, records).map_err(storage)?;
        let zstd = match &mut self.zstd {
            Some(zstd) => zstd,
            None => self.zstd.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(storage)?),
        };
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(self.json.len()));
        zstd.compress_to_buffer(self.json.as_slice(), &mut self.out).map_err(storage)?;
        Ok(&self.out)
    }
}

fn decode(value: &[u8]) -> Result<Vec<Stored>, Error> {
    if value.starts_with(&ZSTD_MAGIC) {
        let json = zstd::stream::decode_all(value).map_err(storage)?;
        serde_json::from_slice(&json).map_err(storage)
    } else {
        serde_json::from_slice(value).map_err(storage)
    }
}

/// The sorted, distinct prefixes of the records' subjects.
fn subject_list(records: &[Stored]) -> Vec<u8> {
    let mut prefixes: Vec<[u8; PREFIX]> = records.iter().filter_map(|r| prefix(&r.subject)).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    prefixes.concat()
}

/// The first bytes of a pseudonym (hex), as the subject lists keep them.
fn prefix(hex: &str) -> Option<[u8; PREFIX]> {
    let bytes = hex::decode(hex.get(..2 * PREFIX)?).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(subject: &str, sequence: u64) -> Stored {
        Stored {
            operation: "delivery".into(),
            channel: "grpc".into(),
            activity: "a".into(),
            partner: "dji".into(),
            event_type: "baggage".into(),
            event_id: format!("e{sequence}"),
            sequence,
            trace_id: String::new(),
            span_id: String::new(),
            parent_span_id: String::new(),
            status: "ok".into(),
            started_micros: 1,
            ended_micros: 2,
            subject: subject.into(),
        }
    }

    #[test]
    fn a_subject_is_found_in_every_batch_that_holds_it_and_only_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open(dir.path()).unwrap();
        let (a, b) = ("aa".repeat(32), "ab".repeat(32));
        // Same 8-byte prefix, another subject: the list lets the batch through, the filter not.
        let c = format!("{}{}", "aa".repeat(8), "cc".repeat(24));
        let encoder = &mut Encoder::default();
        write(&db, &[record(&a, 1), record(&b, 2)], encoder).unwrap();
        write(&db, &[record(&b, 3)], encoder).unwrap();
        write(&db, &[record(&c, 4), record(&a, 5)], encoder).unwrap();
        let found: Vec<u64> = records(&db, &a).unwrap().iter().map(|r| r.sequence).collect();
        assert_eq!(found, vec![1, 5]);
        let found: Vec<u64> = records(&db, &b).unwrap().iter().map(|r| r.sequence).collect();
        assert_eq!(found, vec![2, 3]);
        assert!(records(&db, &"ff".repeat(32)).unwrap().is_empty());
        assert!(records(&db, "not hex").unwrap().is_empty());
    }

    #[test]
    fn batches_are_stored_compressed_and_plain_ones_of_older_gateways_still_read_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open(dir.path()).unwrap();
        let a = "aa".repeat(32);
        let many: Vec<Stored> = (1..=500).map(|s| record(&a, s)).collect();
        write(&db, &many, &mut Encoder::default()).unwrap();
        let batches = db.open_tree(BATCHES).unwrap();
        let (_, stored) = batches.iter().next().unwrap().unwrap();
        let plain = serde_json::to_vec(&many).unwrap();
        assert!(stored.starts_with(&ZSTD_MAGIC));
        assert!(stored.len() * 5 < plain.len(), "{} bytes compressed of {}", stored.len(), plain.len());

        // A batch as gateways before compression wrote it.
        let mut old = record(&a, 501);
        old.ended_micros = 10;
        let key = db.generate_id().unwrap().to_be_bytes();
        batches.insert(key, serde_json::to_vec(&vec![old]).unwrap()).unwrap();
        db.open_tree(SUBJECTS).unwrap().insert(key, subject_list(&[record(&a, 501)])).unwrap();
        assert_eq!(records(&db, &a).unwrap().len(), 501);
        assert_eq!(expire(&db, 5).unwrap(), 500, "the compressed batch ended at 2");
        assert_eq!(records(&db, &a).unwrap().iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![501]);
    }

    #[test]
    fn one_encoder_writes_batches_of_any_size_after_one_another_each_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open(dir.path()).unwrap();
        let encoder = &mut Encoder::default();
        let sizes = [3000, 2, 700];
        let mut next = 1;
        for size in sizes {
            let subject = format!("{size:064}");
            let batch: Vec<Stored> = (next..next + size).map(|s| record(&subject, s)).collect();
            next += size;
            write(&db, &batch, encoder).unwrap();
        }
        let stored: Vec<Vec<Stored>> =
            db.open_tree(BATCHES).unwrap().iter().values().map(|v| decode(&v.unwrap()).unwrap()).collect();
        assert_eq!(stored.iter().map(Vec::len).collect::<Vec<_>>(), sizes.map(|s| s as usize));
        // The small batch after the large one holds its own two records, nothing left over.
        assert_eq!(stored[1].iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![3001, 3002]);
        assert_eq!(records(&db, &format!("{:064}", 700)).unwrap().len(), 700);
    }
}
