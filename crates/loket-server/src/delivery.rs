//! How a stored event leaves the gateway. Every subscriber-facing delivery is built here,
//! so a per-subscriber view (entitlements, redaction) has exactly one place to apply.

use loket_journal::StoredEvent;

use crate::intake::SPEC_VERSION;
use crate::proto::{CloudEvent, Delivery};
use crate::timestamp::from_micros;

pub(crate) fn to_delivery(event: StoredEvent) -> Delivery {
    Delivery {
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
            data: event.data,
            specversion: SPEC_VERSION.to_owned(),
        }),
    }
}
