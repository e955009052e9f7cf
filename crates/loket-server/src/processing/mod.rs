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

use std::collections::BTreeMap;
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
        let inner = Inner {
            db,
            pseudonyms: Pseudonymiser::new(&key),
            activities,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        };
        Ok(ProcessingLog { inner: Some(Arc::new(inner)) })
    }

    /// Queues the record of `p`, ended now.
    pub fn record(&self, p: Processing) {
        let Some(inner) = &self.inner else { return };
        if p.subject.parse::<CaseId>().is_err() {
            return;
        }
        let (trace_id, span_id) = match TraceParent::parse(p.traceparent) {
            Some(t) => (t.trace_id_hex(), t.span_id_hex()),
            None => (String::new(), String::new()),
        };
        let record = Stored {
            operation: p.operation.to_owned(),
            channel: p.channel.to_owned(),
            activity: inner.activities.get(p.event_type).cloned().unwrap_or_else(|| p.event_type.to_owned()),
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
            subject: inner.pseudonyms.digest("processing-subject", p.subject),
        };
        if let Some(tx) = inner.tx.lock().expect("processing sender lock").as_ref() {
            let _ = tx.send(Message::Record(Box::new(record)));
        }
    }

    /// Every processing of the case's data, once what was recorded before is durable.
    pub async fn list(&self, case: &str) -> Result<Vec<ProcessingRecord>, Error> {
        if case.parse::<CaseId>().is_err() {
            return Err(Error::InvalidCase(case.to_owned()));
        }
        let Some(inner) = self.inner.clone() else { return Ok(Vec::new()) };
        let subject = inner.pseudonyms.digest("processing-subject", case);
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
        if let Some(writer) = inner.writer.lock().expect("processing writer lock").take() {
            writer.join().map_err(|_| Error::Processing("the writer thread panicked".into()))?;
        }
        Ok(())
    }
}

impl Inner {
    fn flush(&self) -> Result<(), Error> {
        let (reply, done) = std::sync::mpsc::sync_channel(1);
        let sent = self.tx.lock().expect("processing sender lock").as_ref().map(|tx| tx.send(Message::Flush(reply)));
        match sent {
            Some(Ok(())) => done.recv().map_err(|e| Error::Processing(e.to_string()))?.map_err(Error::Processing),
            _ => Err(Error::ShuttingDown),
        }
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
