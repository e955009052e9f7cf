//! How a stored event leaves the gateway. Every subscriber-facing delivery is built here,
//! from the subscriber's view of it (`loket_access::SubscriberScan`: entitlement,
//! redaction, consent), never from the stored payload directly.

use loket_journal::StoredEvent;

use crate::intake::SPEC_VERSION;
use crate::proto::{CloudEvent, Delivery};
use crate::timestamp::from_micros;

/// `event` with `data` as the subscriber may see it.
pub(crate) fn to_delivery(event: StoredEvent, view: View) -> Delivery {
    Delivery {
        position: view.position,
        redacted: view.redacted,
        released: view.released,
        sequence: event.sequence,
        completeness: event.completeness,
        missing_expected: event.missing_expected,
        received_at: Some(from_micros(event.received_at_micros)),
        event: Some(CloudEvent {
            id: event.id,
            source: event.source,
            r#type: event.event_type,
            subject: event.subject,
            time: event.time_micros.map(from_micros),
            dataschema: event.dataschema,
            datacontenttype: event.datacontenttype,
            data: view.data,
            specversion: SPEC_VERSION.to_owned(),
        }),
    }
}

/// One subscriber's view of a stored event.
pub(crate) struct View {
    /// The redacted payload.
    pub data: Vec<u8>,
    pub redacted: Vec<String>,
    pub released: bool,
    /// The scan position a client acknowledges (see `Delivery.position`).
    pub position: u64,
}
