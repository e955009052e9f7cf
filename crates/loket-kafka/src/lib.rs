//! loket's Kafka fan-out.
//!
//! The [`relay`] reads the journal in sequence order from a persisted cursor and produces
//! every stored event, as a CloudEvents Kafka binary-mode record ([`record`]), to its
//! canonical topic (one per event type) and to the delivery topic of every subscribing
//! partner, with that partner's view ([`DeliveryPolicy`]). The cursor moves only on delivery
//! reports, so the journal is the store in store-and-forward: with the broker down the
//! gateway keeps accepting, and the relay drains its backlog when the broker is back.
//! [`subscriber`] reads a partner's delivery topic through a consumer group.

mod config;
mod error;
pub mod record;
pub mod relay;
pub mod subscriber;
pub mod topics;
mod view;

pub use config::{AckMode, KafkaConfig};
pub use error::Error;
pub use record::CloudEventRecord;
pub use relay::{Relay, RelayHandle, RelayStatus};
pub use subscriber::{KafkaSubscription, StartAt};
pub use topics::Topics;
pub use view::{DeliveryPolicy, PartnerRecord, ViewError};

/// How to reach the cluster and lay out the topics.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic names: see [`Topics`].
    pub topics: Topics,
    /// Partitions of topics loket creates.
    pub partitions: i32,
    /// Replication factor of topics loket creates.
    pub replication: i32,
}
