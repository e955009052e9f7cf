//! The `[kafka]` section of the gateway configuration, as written in TOML.

use serde::Deserialize;

use crate::{KafkaSettings, Topics};

/// When a publish is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// After the event is flushed to the local journal.
    #[default]
    Journal,
    /// After the relay has the broker's delivery report for the event's records.
    Kafka,
}

/// `[kafka]`: fan-out over Kafka. Absent from the configuration: no Kafka (the embedded
/// default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, "host:port[,host:port…]".
    pub brokers: String,
    /// Prepended to every topic and consumer group name: topics are
    /// `<prefix>events.<type>` and `<prefix>delivery.<partner>`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Partitions of the topics loket creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topics loket creates.
    #[serde(default = "default_replication")]
    pub replication: i32,
    /// "journal" (ack after the local flush) or "kafka" (ack after the broker confirmed).
    #[serde(default)]
    pub ack: AckMode,
    /// With `ack = "kafka"`: how long a publish waits for the broker before it fails with
    /// UNAVAILABLE (the event stays stored and is relayed later; publishing it again
    /// waits again).
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
}

fn default_topic_prefix() -> String {
    "loket.".to_owned()
}
fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    1
}
fn default_ack_timeout_ms() -> u64 {
    30_000
}

impl KafkaConfig {
    /// Every problem of this section, named by key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self
            .brokers
            .split(',')
            .any(|b| b.trim().rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()))
        {
            problems.push(format!("kafka.brokers: {:?} is not a list like host:9092,host2:9092", self.brokers));
        }
        // Kafka topic names: letters, digits, '.', '_', '-'.
        if !self.topic_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            problems.push(format!(
                "kafka.topic_prefix: {:?} may only hold letters, digits, '.', '_' and '-'",
                self.topic_prefix
            ));
        }
        if self.partitions < 1 {
            problems.push("kafka.partitions: must be at least 1".to_owned());
        }
        if self.replication < 1 {
            problems.push("kafka.replication: must be at least 1".to_owned());
        }
        if self.ack_timeout_ms == 0 {
            problems.push("kafka.ack_timeout_ms: must be greater than 0".to_owned());
        }
        problems
    }

    /// The client settings this section describes.
    pub fn settings(&self) -> KafkaSettings {
        KafkaSettings {
            brokers: self.brokers.clone(),
            topics: Topics { prefix: self.topic_prefix.clone() },
            partitions: self.partitions,
            replication: self.replication,
        }
    }
}
