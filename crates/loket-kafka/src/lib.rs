//! loket's Kafka fan-out.
//!
//! The [`relay`] reads the journal in sequence order from a persisted cursor and produces
//! what the [`DeliveryPolicy`]'s views give for every stored event, as CloudEvents Kafka
//! binary-mode records ([`record`]): to the delivery topic of every subscribing partner,
//! with that partner's view, and to the canonical topic of the event's type with the view
//! of the configured canonical reader (none without one). Nothing is produced but a view.
//! Every record carries an authentication tag ([`auth`]). The cursor moves only on
//! delivery reports, so the journal is the store in store-and-forward: with the broker
//! down the gateway keeps accepting, and the relay drains its backlog when the broker is
//! back. [`subscriber`] reads a partner's delivery topic through a consumer group,
//! delivering only records whose tag verifies, each event once within a window
//! ([`dedup`]). Every client is configured by [`KafkaSettings::client_config`] ([`client`]:
//! TLS, SASL, passed-through librdkafka properties).

pub mod auth;
pub mod client;
mod config;
pub mod dedup;
mod error;
pub mod record;
pub mod relay;
pub mod subscriber;
pub mod topics;
mod view;

pub use auth::{RecordKey, TagProblem};
pub use client::{Sasl, SaslMechanism, Secret, Security, SecurityProtocol};
pub use config::{AckMode, KafkaConfig, PropertyValue, Window, ENV_SASL_PASSWORD};
pub use error::Error;
pub use record::CloudEventRecord;
pub use relay::{Relay, RelayHandle, RelayStatus};
pub use subscriber::{KafkaSubscription, RecordChecks, Refusal, RefusalHook, StartAt};
pub use topics::Topics;
pub use view::{DeliveryPolicy, Target, ViewError, ViewRecord};

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
    /// TLS, SASL and passed-through librdkafka properties of every client.
    pub security: Security,
}
