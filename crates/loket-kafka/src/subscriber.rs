//! A named subscription in Kafka mode: one consumer group per (partner, subscription) on
//! the partner's delivery topic, so any gateway of a cluster can serve it and a reconnect
//! through another gateway resumes at the group's committed offsets.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::record::CloudEventRecord;
use crate::{Error, KafkaSettings};

/// Where a consumer group without committed offsets starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
}

/// One delivered record, remembered until acknowledged.
#[derive(Debug, Clone, Copy)]
struct Delivered {
    partition: i32,
    offset: i64,
    sequence: u64,
}

pub struct KafkaSubscription {
    consumer: Arc<StreamConsumer>,
    topic: String,
    /// Delivered and not yet committed, in delivery order.
    delivered: VecDeque<Delivered>,
}

impl KafkaSubscription {
    /// Joins the group `<prefix><partner>.<name>` on the partner's delivery topic.
    pub fn open(settings: &KafkaSettings, partner: &str, name: &str, start: StartAt) -> Result<Self, Error> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
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
            .create()
            .map_err(Error::Client)?;
        let topic = settings.topics.delivery(partner);
        consumer.subscribe(&[&topic]).map_err(Error::Consume)?;
        Ok(KafkaSubscription { consumer: Arc::new(consumer), topic, delivered: VecDeque::new() })
    }

    /// The next record of the delivery topic (waits for one).
    pub async fn next(&mut self) -> Result<CloudEventRecord, Error> {
        let message = self.consumer.recv().await.map_err(Error::Consume)?;
        let partition = rdkafka::Message::partition(&message);
        let offset = rdkafka::Message::offset(&message);
        let record = CloudEventRecord::from_message(&message)?;
        self.delivered.push_back(Delivered { partition, offset, sequence: record.sequence });
        Ok(record)
    }

    /// Acknowledges everything delivered on this stream up to and including the first
    /// unacknowledged delivery with `sequence` (a gateway sequence need not be unique on a
    /// topic fed by several gateways; the first match never acknowledges too much).
    /// Returns false when no delivery has that sequence.
    pub async fn ack(&mut self, sequence: u64) -> Result<bool, Error> {
        let Some(upto) = self.delivered.iter().position(|d| d.sequence == sequence) else {
            return Ok(false);
        };
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for d in self.delivered.drain(..=upto) {
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
