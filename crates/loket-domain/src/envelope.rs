//! The names and values of the event envelope that every crate agrees on.

/// The CloudEvents version loket speaks.
pub const SPEC_VERSION: &str = "1.0";

/// The one `datacontenttype` of event payloads.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// The `source` of the events the gateway publishes itself.
pub const GATEWAY_SOURCE: &str = "loket";

/// The event type of the gateway's quality digests; partners may not publish it.
pub const DIGEST_TYPE: &str = "quality-digest";

/// The event type of the gateway's handover-readiness findings; partners may not publish it.
pub const HANDOVER_TYPE: &str = "handover-readiness";

/// The event type of the gateway's notice that a case was erased (its payload lists the
/// erased sequences); subscribers get it as tombstones; partners may not publish it.
pub const ERASURE_TYPE: &str = "case-erasure";

/// Every event type only the gateway publishes (source [`GATEWAY_SOURCE`]).
pub const GATEWAY_TYPES: &[&str] = &[DIGEST_TYPE, HANDOVER_TYPE, ERASURE_TYPE];

/// What a subscriber's view needs of a stored event besides its payload: where it is in
/// the journal, what it is, which case, and when the gateway took it.
pub trait Envelope {
    /// Gateway-wide sequence.
    fn sequence(&self) -> u64;
    /// Event type.
    fn event_type(&self) -> &str;
    /// The publishing partner.
    fn source(&self) -> &str;
    /// The case (V-number).
    fn subject(&self) -> &str;
    /// When the gateway received it, Unix µs.
    fn received_at_micros(&self) -> i64;
}

/// Implements [`Envelope`] for a struct with the fields `sequence: u64`, `event_type:
/// String`, `source: String`, `subject: String` and `received_at_micros: i64`.
#[macro_export]
macro_rules! impl_envelope {
    ($t:ty) => {
        impl $crate::Envelope for $t {
            fn sequence(&self) -> u64 {
                self.sequence
            }
            fn event_type(&self) -> &str {
                &self.event_type
            }
            fn source(&self) -> &str {
                &self.source
            }
            fn subject(&self) -> &str {
                &self.subject
            }
            fn received_at_micros(&self) -> i64 {
                self.received_at_micros
            }
        }
    };
}
