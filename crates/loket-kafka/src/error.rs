use rdkafka::error::KafkaError;

/// Everything that can go wrong between loket and Kafka.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `[kafka]` setting could not be used (a secret file that cannot be read).
    #[error("{0}")]
    Config(String),
    /// A client could not be created from its configuration.
    #[error("kafka client setup failed: {0}")]
    Client(#[source] KafkaError),
    /// A topic could not be created.
    #[error("cannot create topic {topic:?}: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// What the broker or client said.
        reason: String,
    },
    /// The broker did not take a record (after librdkafka's own retries).
    #[error("kafka did not confirm a record for sequence {sequence}: {reason}")]
    Delivery {
        /// The journal sequence of the event.
        sequence: u64,
        /// What the delivery report said.
        reason: KafkaError,
    },
    /// Reading from a delivery topic failed.
    #[error("reading from kafka failed: {0}")]
    Consume(#[source] KafkaError),
    /// Committing a consumer group's offsets failed.
    #[error("committing consumer offsets failed: {0}")]
    Commit(#[source] KafkaError),
    /// A record on a topic is not a loket CloudEvent.
    #[error("record at {topic}/{partition}@{offset} is not a loket CloudEvent: {reason}")]
    Malformed {
        /// Topic of the record.
        topic: String,
        /// Partition of the record.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// What is missing or wrong.
        reason: String,
    },
    /// The delivery policy could not make the partners' views of an event.
    #[error("cannot make the delivery-topic views of sequence {sequence}: {source}")]
    View {
        /// The journal sequence of the event.
        sequence: u64,
        /// What the policy said.
        source: crate::ViewError,
    },
    /// The delivery policy could not rebuild its state before a journal position.
    #[error("cannot prepare the delivery-topic views from sequence {next}: {source}")]
    Rewind {
        /// The journal position the relay reads next.
        next: u64,
        /// What the policy said.
        source: crate::ViewError,
    },
    /// The journal failed while the relay read it or moved its cursor.
    #[error("journal failure in the kafka relay: {0}")]
    Journal(#[from] loket_journal::Error),
}
