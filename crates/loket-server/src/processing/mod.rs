//! The processing log (Logboek dataverwerkingen): one record per processing of a data
//! subject's personal data (a publish accepted, each delivery to a subscriber over gRPC
//! or to its Kafka topic, each exported entry) with the W3C trace and span ids of that
//! processing, the span it continued, its status, start and end, the processing activity
//! (`[processing] activities`, per event type), the partner, and the case's V-number as a
//! keyed pseudonym. Recording only queues the record; a writer thread stores them in
//! batches (`store.rs`), so the request path pays for a keyed hash and a channel send.
//! Auditors list one subject's records by V-number (`ListProcessing`).

mod expire;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use loket_access::Pseudonymiser;
use loket_domain::time::now_micros;
use loket_domain::{CaseId, TraceParent};

use crate::proto::timestamp::from_micros;
use crate::proto::ProcessingRecord;
use crate::Error;
use store::{Message, Stored};

/// The pseudonym domain of the processing log's subjects.
const SUBJECT_DOMAIN: &str = "processing-subject";

/// The processing log; cheap to clone. Disabled, it records nothing and lists nothing.
#[derive(Clone)]
pub(crate) struct ProcessingLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    db: sled::Db,
    pseudonyms: Pseudonymiser,
    activities: BTreeMap<String, String>,
    tx: Mutex<Option<Sender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The writer thread, to wake it for a flush or the close (records do not wake it).
    waker: std::thread::Thread,
}

/// What one processing was, before it is pseudonymised and queued.
pub(crate) struct Processing<'a> {
    /// `publish`, `delivery`, `export` or `erasure`.
    pub operation: &'static str,
    /// `grpc`, `kafka` or `export`.
    pub channel: &'static str,
    pub partner: &'a str,
    /// The short event type.
    pub event_type: &'a str,
    pub event_id: &'a str,
    pub sequence: u64,
    /// The case (V-number); events about no case (quality digests) are not recorded.
    pub subject: &'a str,
    /// The processing's own traceparent, and the span it continued (hex, may be empty).
    pub traceparent: &'a str,
    pub parent_span: String,
    pub started_micros: i64,
}

impl ProcessingLog {
    /// A log that records nothing.
    pub fn disabled() -> Self {
        ProcessingLog { inner: None }
    }

    /// Opens `dir` and starts its writer.
    pub fn open(dir: &std::path::Path, activities: BTreeMap<String, String>) -> Result<Self, Error> {
        let (db, key) = store::open(dir)?;
        let (tx, writer) = store::writer(db.clone());
        let waker = writer.thread().clone();
        let inner = Inner {
            db,
            pseudonyms: Pseudonymiser::new(&key),
            activities,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            waker,
        };
        Ok(ProcessingLog { inner: Some(Arc::new(inner)) })
    }

    /// Queues the record of `p`, ended now.
    pub fn record(&self, p: Processing) {
        let Some(inner) = &self.inner else { return };
        if p.subject.parse::<CaseId>().is_err() {
            return;
        }
        let subject = inner.pseudonyms.digest(SUBJECT_DOMAIN, p.subject);
        inner.send(vec![inner.stored(p, subject)]);
    }

    /// A recorder for a stream of deliveries (see [`Recorder`]).
    pub fn recorder(&self) -> Recorder {
        Recorder { log: self.clone(), pending: Vec::new(), pseudonyms: HashMap::new() }
    }

    /// Every processing of the case's data, once what was recorded before is durable.
    pub async fn list(&self, case: &str) -> Result<Vec<ProcessingRecord>, Error> {
        if case.parse::<CaseId>().is_err() {
            return Err(Error::InvalidCase(case.to_owned()));
        }
        let Some(inner) = self.inner.clone() else { return Ok(Vec::new()) };
        let subject = inner.pseudonyms.digest(SUBJECT_DOMAIN, case);
        tokio::task::spawn_blocking(move || {
            inner.flush()?;
            Ok(store::records(&inner.db, &subject)?.into_iter().map(ProcessingRecord::from).collect())
        })
        .await
        .map_err(|e| Error::TaskFailed(e.to_string()))?
    }

    /// Writes what is queued and stops the writer (at gateway shutdown).
    pub fn close(&self) -> Result<(), Error> {
        let Some(inner) = &self.inner else { return Ok(()) };
        inner.tx.lock().expect("processing sender lock").take();
        inner.waker.unpark();
        if let Some(writer) = inner.writer.lock().expect("processing writer lock").take() {
            writer.join().map_err(|_| Error::Processing("the writer thread panicked".into()))?;
        }
        Ok(())
    }
}

impl Inner {
    /// The record of `p`, ended now, about the pseudonym `subject`.
    fn stored(&self, p: Processing, subject: String) -> Stored {
        let (trace_id, span_id) = match TraceParent::parse(p.traceparent) {
            Some(t) => (t.trace_id_hex(), t.span_id_hex()),
            None => (String::new(), String::new()),
        };
        Stored {
            operation: p.operation.to_owned(),
            channel: p.channel.to_owned(),
            activity: self.activities.get(p.event_type).cloned().unwrap_or_else(|| p.event_type.to_owned()),
            partner: p.partner.to_owned(),
            event_type: p.event_type.to_owned(),
            event_id: p.event_id.to_owned(),
            sequence: p.sequence,
            trace_id,
            span_id,
            parent_span_id: p.parent_span,
            status: "ok".to_owned(),
            started_micros: p.started_micros,
            ended_micros: now_micros(),
            subject,
        }
    }

    fn send(&self, records: Vec<Stored>) {
        if let Some(tx) = self.tx.lock().expect("processing sender lock").as_ref() {
            let _ = tx.send(Message::Records(records));
        }
    }

    fn flush(&self) -> Result<(), Error> {
        let (reply, done) = std::sync::mpsc::sync_channel(1);
        let sent = self.tx.lock().expect("processing sender lock").as_ref().map(|tx| tx.send(Message::Flush(reply)));
        self.waker.unpark();
        match sent {
            Some(Ok(())) => done.recv().map_err(|e| Error::Processing(e.to_string()))?.map_err(Error::Processing),
            _ => Err(Error::ShuttingDown),
        }
    }
}

/// Records one subscriber stream's deliveries: the records of one journal read go to the
/// writer together (one channel message, not one per delivery), and a case's pseudonym is
/// computed once while it is among the recent ones (a case's events come close together;
/// the keyed hash was most of a record's cost). Whatever was pushed and not sent goes
/// when the recorder is dropped.
pub(crate) struct Recorder {
    log: ProcessingLog,
    pending: Vec<Stored>,
    /// V-number → pseudonym, forgotten all at once when full.
    pseudonyms: HashMap<String, String>,
}

/// Pseudonyms a [`Recorder`] keeps.
const RECENT_PSEUDONYMS: usize = 4096;

impl Recorder {
    /// Adds the record of `p`, ended now; [`Recorder::send`] queues it.
    pub fn push(&mut self, p: Processing) {
        let Some(inner) = &self.log.inner else { return };
        if p.subject.parse::<CaseId>().is_err() {
            return;
        }
        let subject = match self.pseudonyms.get(p.subject) {
            Some(pseudonym) => pseudonym.clone(),
            None => {
                if self.pseudonyms.len() >= RECENT_PSEUDONYMS {
                    self.pseudonyms.clear();
                }
                let pseudonym = inner.pseudonyms.digest(SUBJECT_DOMAIN, p.subject);
                self.pseudonyms.insert(p.subject.to_owned(), pseudonym.clone());
                pseudonym
            }
        };
        self.pending.push(inner.stored(p, subject));
    }

    /// Queues the records pushed so far.
    pub fn send(&mut self) {
        if let Some(inner) = self.log.inner.as_ref().filter(|_| !self.pending.is_empty()) {
            inner.send(std::mem::take(&mut self.pending));
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.send();
    }
}

/// The span id a traceparent names (empty when there is none).
pub(crate) fn span_of(traceparent: &str) -> String {
    TraceParent::parse(traceparent).map(|t| t.span_id_hex()).unwrap_or_default()
}

impl From<Stored> for ProcessingRecord {
    fn from(s: Stored) -> Self {
        ProcessingRecord {
            operation: s.operation,
            channel: s.channel,
            activity: s.activity,
            partner: s.partner,
            event_type: s.event_type,
            event_id: s.event_id,
            sequence: s.sequence,
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            status: s.status,
            started_at: Some(from_micros(s.started_micros)),
            ended_at: Some(from_micros(s.ended_micros)),
            subject: s.subject,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery<'a>(subject: &'a str, sequence: u64, traceparent: &'a str) -> Processing<'a> {
        Processing {
            operation: "delivery",
            channel: "grpc",
            partner: "dtv",
            event_type: "baggage",
            event_id: "e",
            sequence,
            subject,
            traceparent,
            parent_span: String::new(),
            started_micros: 1,
        }
    }

    #[tokio::test]
    async fn a_recorder_stores_what_record_stores_and_sends_the_rest_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let log = ProcessingLog::open(dir.path(), BTreeMap::new()).unwrap();
        let hop = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        log.record(delivery("1234567890", 1, hop));
        let mut recorder = log.recorder();
        recorder.push(delivery("1234567890", 2, hop));
        recorder.push(delivery("not a case", 3, hop));
        recorder.send();
        // Cached pseudonym, and pushed without a send: the drop sends it.
        recorder.push(delivery("1234567890", 4, ""));
        recorder.push(delivery("2234567890", 5, hop));
        drop(recorder);
        let first = log.list("1234567890").await.unwrap();
        assert_eq!(first.iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![1, 2, 4]);
        assert!(first.iter().all(|r| r.subject == first[0].subject && r.subject.len() == 64));
        assert_eq!(
            (first[1].trace_id.as_str(), first[1].span_id.as_str()),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        );
        assert_eq!(first[2].trace_id, "");
        let other = log.list("2234567890").await.unwrap();
        assert_eq!(other.len(), 1);
        assert_ne!(other[0].subject, first[0].subject);
        log.close().unwrap();
    }
}
