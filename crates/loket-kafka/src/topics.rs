//! Topic names and creation.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use crate::client::Observed;
use crate::{Error, KafkaSettings};

/// Topic names: `<prefix>events.<type>` (canonical: the configured canonical reader's view,
/// see [`crate::Target`]) and `<prefix>delivery.<partner>` (one partner's view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Prepended to every topic name, e.g. `loket.`.
    pub prefix: String,
}

impl Topics {
    /// The canonical topic of an event type.
    pub fn canonical(&self, event_type: &str) -> String {
        format!("{}events.{event_type}", self.prefix)
    }

    /// A partner's delivery topic.
    pub fn delivery(&self, partner: &str) -> String {
        format!("{}delivery.{partner}", self.prefix)
    }

    /// Consumer group of a partner's named subscription.
    pub fn group(&self, partner: &str, subscription: &str) -> String {
        format!("{}{partner}.{subscription}", self.prefix)
    }
}

/// Creates the topics that do not exist yet (Tansu, like many managed clusters, does not
/// create topics on first use). A failure names what the client last reported, e.g. why
/// it could not connect.
pub async fn ensure_topics(settings: &KafkaSettings, names: &[String]) -> Result<(), Error> {
    let context = Observed::default();
    let admin: AdminClient<Observed> = settings
        .client_config()
        .set("socket.timeout.ms", "10000")
        .create_with_context(context.clone())
        .map_err(Error::Client)?;
    let reason = |what: String| match context.last_error() {
        Some(client) => format!("{what}; the client reported: {client}"),
        None => what,
    };
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, settings.partitions, TopicReplication::Fixed(settings.replication)))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| Error::CreateTopic { topic: names.join(","), reason: reason(e.to_string()) })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(Error::CreateTopic { topic, reason: reason(code.to_string()) }),
        }
    }
    Ok(())
}
