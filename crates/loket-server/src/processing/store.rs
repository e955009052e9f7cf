//! The processing log on disk: a sled database `<data_dir>/processing`, written by one
//! thread in batches so that no request waits for it. Records are keyed by the data
//! subject's pseudonym (32 bytes) and a number in write order, so one subject's records
//! are one range scan; the V-number itself is never written. The pseudonym key is random
//! per gateway and kept in the database.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Error;

/// A batch is written at least this often, and at once when this many records wait.
const BATCH_INTERVAL: Duration = Duration::from_millis(100);
const BATCH_RECORDS: usize = 4096;

const KEY: &[u8] = b"key";

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
    Record(Box<Stored>),
    /// Answered once everything sent before it is durable.
    Flush(SyncSender<Result<(), String>>),
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Processing(e.to_string())
}

/// Opens the database; returns it with its pseudonym key.
pub(crate) fn open(dir: &std::path::Path) -> Result<(sled::Db, Vec<u8>), Error> {
    let db = sled::Config::new().path(dir).cache_capacity(4 << 20).open().map_err(storage)?;
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

fn write_batches(db: &sled::Db, rx: &Receiver<Message>) {
    let mut pending: Vec<Stored> = Vec::new();
    let mut waiting: Vec<SyncSender<Result<(), String>>> = Vec::new();
    let mut since = Instant::now();
    loop {
        let open = match rx.recv_timeout(BATCH_INTERVAL.saturating_sub(since.elapsed())) {
            Ok(Message::Record(r)) => {
                pending.push(*r);
                true
            }
            Ok(Message::Flush(reply)) => {
                waiting.push(reply);
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        let due = !open || !waiting.is_empty() || pending.len() >= BATCH_RECORDS || since.elapsed() >= BATCH_INTERVAL;
        if due {
            let result = write(db, std::mem::take(&mut pending)).map_err(|e| e.to_string());
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

fn write(db: &sled::Db, records: Vec<Stored>) -> Result<(), Error> {
    if records.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for record in &records {
        let mut key = hex_bytes(&record.subject);
        key.extend_from_slice(&db.generate_id().map_err(storage)?.to_be_bytes());
        batch.insert(key, serde_json::to_vec(record).map_err(storage)?);
    }
    db.apply_batch(batch).map_err(storage)?;
    db.flush().map_err(storage)?;
    Ok(())
}

/// Every record of the subject with pseudonym `subject`, in write order.
pub(crate) fn records(db: &sled::Db, subject: &str) -> Result<Vec<Stored>, Error> {
    db.scan_prefix(hex_bytes(subject))
        .values()
        .map(|v| serde_json::from_slice(&v.map_err(storage)?).map_err(storage))
        .collect()
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect()
}
