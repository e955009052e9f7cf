//! The narrow interface between the relay and the who-may-see-what policy.

use loket_journal::StoredEvent;

/// What one subscribing partner gets of one stored event.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    /// Produce this payload to the partner's delivery topic; `redacted` lists the JSON
    /// pointers removed from it (carried in the `ce_redacted` header).
    Deliver { payload: Vec<u8>, redacted: Vec<String> },
    /// The partner may not see this event: nothing goes to its delivery topic.
    Skip,
}

/// Decides the per-partner view. The relay asks it for every (partner, event) pair, in
/// journal order, so an implementation must be deterministic for a given event: a relay
/// that re-produces after a crash must make the same records.
pub trait DeliveryPolicy: Send + Sync + 'static {
    /// Partners with a delivery topic.
    fn subscribers(&self) -> Vec<String>;
    /// `partner`'s view of `event`.
    fn view(&self, partner: &str, event: &StoredEvent) -> View;
}
