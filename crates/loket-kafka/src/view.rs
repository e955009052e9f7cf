//! The narrow interface between the relay and the who-may-see-what policy.

use std::future::Future;
use std::pin::Pin;

use loket_journal::StoredEvent;

use crate::record::CloudEventRecord;
use crate::Topics;

/// Why a policy could not produce its views (it reads the journal and its own index).
pub type ViewError = Box<dyn std::error::Error + Send + Sync>;

/// Where a view's records go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The canonical topic of the record's type: the view of the configured reader
    /// (`[kafka] canonical_view`), never more.
    Canonical,
    /// A partner's delivery topic.
    Delivery(String),
}

impl Target {
    /// The topic a record of the (short) `event_type` with this target goes to.
    pub fn topic(&self, topics: &Topics, event_type: &str) -> String {
        match self {
            Target::Canonical => topics.canonical(event_type),
            Target::Delivery(partner) => topics.delivery(partner),
        }
    }
}

/// One record of a view: a partner's delivery topic or the canonical topics.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRecord {
    pub target: Target,
    /// The event's short type (as stored), which names its canonical topic; the record
    /// carries the profile's reverse-DNS name.
    pub event_type: String,
    /// The view of the event: the event as that reader may see it, or an earlier withheld
    /// event that the event releases (`released` set, its own id and sequence).
    pub record: CloudEventRecord,
}

/// Decides what each delivery topic and the canonical topics get. Nothing reaches Kafka
/// but through a view: the relay produces exactly the records this gives. The relay feeds
/// it every stored event in journal order, so a policy may keep state across events
/// (consents seen, events withheld). Because the relay re-produces everything after its
/// cursor when it restarts or a batch fails, it calls [`DeliveryPolicy::rewind`] first,
/// and the records of an event must be a function of the journal up to that event: the
/// re-produced records are then the same ones, with the same ids.
pub trait DeliveryPolicy: Send + Sync + 'static {
    /// Where the policy's views go: the partners with a delivery topic and, when there is
    /// a canonical view, [`Target::Canonical`].
    fn targets(&self) -> Vec<Target>;

    /// Makes the policy's state that of a relay about to read journal position `next`.
    fn rewind(&mut self, next: u64) -> Pin<Box<dyn Future<Output = Result<(), ViewError>> + Send + '_>>;

    /// The records of `event` (the next one in journal order), in the order each target
    /// must receive them.
    fn records(&mut self, event: &StoredEvent) -> Result<Vec<ViewRecord>, ViewError>;
}
