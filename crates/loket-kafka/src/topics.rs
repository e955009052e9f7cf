//! Topic names and creation.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::client::diagnose;
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

/// How long a failed topic creation probes the cluster for the reason.
const DIAGNOSE_WAIT: Duration = Duration::from_secs(5);

/// Creates the topics that do not exist yet (Tansu, like many managed clusters, does not
/// create topics on first use). When the cluster does not answer, the error says why a
/// client cannot reach it (a refused certificate or login, naming the broker).
pub async fn ensure_topics(settings: &KafkaSettings, names: &[String]) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> =
        settings.client_config().set("socket.timeout.ms", "10000").create().map_err(Error::Client)?;
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, settings.partitions, TopicReplication::Fixed(settings.replication)))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = match admin.create_topics(&new, &options).await {
        Ok(results) => results,
        Err(e) => {
            let probe = settings.clone();
            let cause = match tokio::task::spawn_blocking(move || diagnose(&probe, DIAGNOSE_WAIT)).await {
                Ok(cause) => cause,
                Err(join) => Some(format!("(the diagnosis did not finish: {join})")),
            };
            let reason = match cause {
                Some(cause) => format!("{e}; a client of these settings reports: {cause}"),
                None => e.to_string(),
            };
            return Err(Error::CreateTopic { topic: names.join(","), reason });
        }
    };
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(Error::CreateTopic { topic, reason: code.to_string() }),
        }
    }
    Ok(())
}
