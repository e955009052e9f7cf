//! A named subscription in Kafka mode: one consumer group per (partner, subscription) on
//! the partner's delivery topic, so any gateway of a cluster can serve it and a reconnect
//! through another gateway resumes at the group's committed offsets.
//!
//! Only records a gateway produced are delivered: a record whose authentication tag does
//! not verify with the cluster's record key ([`crate::auth`]), or that is not a loket
//! CloudEvent, is skipped, counted ([`REFUSED_METRIC`] by reason), logged and handed to the
//! caller's [`RefusalHook`] (the gateway writes it to its denial log). A record with the
//! same `ce_source`/`ce_id` as one delivered shortly before is skipped as a duplicate
//! ([`crate::dedup`], counted in [`DUPLICATES_METRIC`]). Skipped records are committed with
//! the next acknowledgement, so they are not read again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::auth::RecordKey;
use crate::client::Observed;
use crate::dedup::Dedup;
use crate::record::CloudEventRecord;
use crate::{Error, KafkaSettings};

/// Counter of records a Kafka-mode subscription refused, by `reason` (`missing-tag`,
/// `unreadable-tag`, `wrong-tag`, `malformed`).
pub const REFUSED_METRIC: &str = "loket_kafka_records_refused_total";
/// Counter of duplicate records a Kafka-mode subscription dropped.
pub const DUPLICATES_METRIC: &str = "loket_kafka_duplicates_dropped_total";

/// Where a consumer group without committed offsets starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
}

/// A record on a delivery topic that the subscription did not deliver because it cannot
/// be trusted. What the record claims (`id`, `source`, …) is as read from its headers,
/// unverified, empty when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The subscribing partner (the delivery topic's owner).
    pub partner: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `missing-tag`, `unreadable-tag`, `wrong-tag` or `malformed`.
    pub reason_code: &'static str,
    /// What was wrong, in words.
    pub reason: String,
    pub claimed_id: String,
    pub claimed_source: String,
    pub claimed_type: String,
    pub claimed_subject: String,
    /// `ce_sequence` when it is a number, else 0.
    pub claimed_sequence: u64,
}

/// Called for every refused record (on the subscription's task: it should not block).
pub type RefusalHook = Arc<dyn Fn(&Refusal) + Send + Sync>;

/// What a subscription checks before it delivers a record.
#[derive(Clone)]
pub struct RecordChecks {
    /// The cluster's record key.
    pub key: RecordKey,
    /// See [`crate::dedup`]; zero delivers duplicates too.
    pub dedup_window: Duration,
    /// Told about every refused record.
    pub on_refused: RefusalHook,
}

/// One record read from the topic, remembered until acknowledged.
#[derive(Debug, Clone, Copy)]
struct Read {
    partition: i32,
    offset: i64,
    /// The delivered record's sequence; `None` for a skipped record.
    sequence: Option<u64>,
}

pub struct KafkaSubscription {
    consumer: Arc<StreamConsumer<Observed>>,
    topic: String,
    partner: String,
    checks: RecordChecks,
    dedup: Dedup,
    /// Read and not yet committed, in reading order.
    read: VecDeque<Read>,
    /// Connection failures since the last record.
    transient_errors: u32,
}

impl KafkaSubscription {
    /// Joins the group `<prefix><partner>.<name>` on the partner's delivery topic.
    pub fn open(
        settings: &KafkaSettings,
        partner: &str,
        name: &str,
        start: StartAt,
        checks: RecordChecks,
    ) -> Result<Self, Error> {
        let consumer: StreamConsumer<Observed> = settings
            .client_config()
            .set("group.id", settings.topics.group(partner, name))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match start {
                    StartAt::Earliest => "earliest",
                    StartAt::Latest => "latest",
                },
            )
            .create_with_context(Observed::default())
            .map_err(Error::Client)?;
        let topic = settings.topics.delivery(partner);
        consumer.subscribe(&[&topic]).map_err(Error::Consume)?;
        Ok(KafkaSubscription {
            transient_errors: 0,
            consumer: Arc::new(consumer),
            topic,
            partner: partner.to_owned(),
            dedup: Dedup::new(checks.dedup_window),
            checks,
            read: VecDeque::new(),
        })
    }

    /// The next record of the delivery topic that a gateway produced and that is not a
    /// duplicate (waits for one).
    pub async fn next(&mut self) -> Result<CloudEventRecord, Error> {
        loop {
            let message = match self.consumer.recv().await {
                Ok(message) => message,
                // A dropped connection is librdkafka's to restore (it reconnects with
                // backoff): the stream waits for it rather than ending. Anything else, an
                // authentication or authorisation failure say, ends the stream.
                Err(e) if transient(&e) && self.transient_errors < TRANSIENT_ERRORS_TOLERATED => {
                    self.transient_errors += 1;
                    tracing::warn!(partner = %self.partner, error = %e, "kafka connection lost; waiting for librdkafka to reconnect");
                    tokio::time::sleep(TRANSIENT_BACKOFF).await;
                    continue;
                }
                Err(e) => return Err(Error::Consume(e)),
            };
            self.transient_errors = 0;
            let (partition, offset) = (message.partition(), message.offset());
            let checked = match self.checks.key.verify(&message) {
                Ok(()) => CloudEventRecord::from_message(&message).map_err(|e| ("malformed", e.to_string())),
                Err(problem) => Err((problem.code(), problem.to_string())),
            };
            let record = match checked {
                Ok(record) => record,
                Err((code, reason)) => {
                    self.refuse(&message, code, reason);
                    self.read.push_back(Read { partition, offset, sequence: None });
                    continue;
                }
            };
            // A tombstone shares its event's id: it is never a duplicate of the event.
            let fresh =
                record.tombstone || self.dedup.admit(partition, &record.source, &record.id, record.received_at_micros);
            if !fresh {
                metrics::counter!(DUPLICATES_METRIC).increment(1);
                tracing::debug!(
                    partner = %self.partner, source = %record.source, id = %record.id, sequence = record.sequence,
                    "duplicate record skipped (published again, or produced again after a gateway crash)"
                );
                self.read.push_back(Read { partition, offset, sequence: None });
                continue;
            }
            self.read.push_back(Read { partition, offset, sequence: Some(record.sequence) });
            return Ok(record);
        }
    }

    fn refuse(&self, message: &BorrowedMessage<'_>, code: &'static str, reason: String) {
        let header = |name: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let refusal = Refusal {
            partner: self.partner.clone(),
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            reason_code: code,
            reason,
            claimed_id: header("ce_id"),
            claimed_source: header("ce_source"),
            claimed_type: header("ce_type"),
            claimed_subject: header("ce_subject"),
            claimed_sequence: header("ce_sequence").parse().unwrap_or(0),
        };
        metrics::counter!(REFUSED_METRIC, "reason" => code).increment(1);
        tracing::warn!(
            partner = %refusal.partner, topic = %refusal.topic, partition = refusal.partition,
            offset = refusal.offset, reason = %refusal.reason, claimed_source = %refusal.claimed_source,
            claimed_id = %refusal.claimed_id, "kafka record refused: not delivered"
        );
        (self.checks.on_refused)(&refusal);
    }

    /// Acknowledges everything read on this stream up to and including the first
    /// unacknowledged delivery with `sequence` (a gateway sequence need not be unique on a
    /// topic fed by several gateways; the first match never acknowledges too much), with
    /// the skipped records among them. Returns false when no delivery has that sequence.
    pub async fn ack(&mut self, sequence: u64) -> Result<bool, Error> {
        let Some(upto) = self.read.iter().position(|d| d.sequence == Some(sequence)) else {
            return Ok(false);
        };
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for d in self.read.drain(..=upto) {
            let entry = next.entry(d.partition).or_insert(0);
            *entry = (*entry).max(d.offset + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next {
            offsets.add_partition_offset(&self.topic, partition, Offset::Offset(offset)).map_err(Error::Commit)?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|_| Error::Commit(rdkafka::error::KafkaError::Canceled))?
            .map_err(Error::Commit)?;
        Ok(true)
    }

    /// Leaves the group without blocking the runtime (closing a consumer waits for the
    /// broker).
    pub fn close(self) {
        let consumer = self.consumer;
        tokio::task::spawn_blocking(move || drop(consumer));
    }
}

/// Consecutive connection failures a subscription waits through before it reports them.
const TRANSIENT_ERRORS_TOLERATED: u32 = 20;
const TRANSIENT_BACKOFF: Duration = Duration::from_millis(250);

/// A lost connection librdkafka restores by itself.
fn transient(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
    )
}
