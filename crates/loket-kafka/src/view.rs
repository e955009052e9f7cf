//! The narrow interface between the relay and the who-may-see-what policy.

use std::future::Future;
use std::pin::Pin;

use loket_journal::StoredEvent;

use crate::record::CloudEventRecord;

/// Why a policy could not produce its views (it reads the journal and its own index).
pub type ViewError = Box<dyn std::error::Error + Send + Sync>;

/// One record for a partner's delivery topic.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerRecord {
    pub partner: String,
    /// The partner's view: the event itself, or an earlier withheld event that the event
    /// releases (`released` set, its own id and sequence).
    pub record: CloudEventRecord,
}

/// Decides what each subscribing partner's delivery topic gets. The relay feeds it every
/// stored event in journal order, so a policy may keep state across events (consents seen,
/// events withheld). Because the relay re-produces everything after its cursor when it
/// restarts or a batch fails, it calls [`DeliveryPolicy::rewind`] first, and the records
/// of an event must be a function of the journal up to that event: the re-produced records
/// are then the same ones, with the same ids.
pub trait DeliveryPolicy: Send + Sync + 'static {
    /// Partners with a delivery topic.
    fn subscribers(&self) -> Vec<String>;

    /// Makes the policy's state that of a relay about to read journal position `next`.
    fn rewind(&mut self, next: u64) -> Pin<Box<dyn Future<Output = Result<(), ViewError>> + Send + '_>>;

    /// The delivery-topic records of `event` (the next one in journal order), in the order
    /// each partner must receive them.
    fn records(&mut self, event: &StoredEvent) -> Result<Vec<PartnerRecord>, ViewError>;
}
