//! How a stored event leaves the gateway. Every subscriber-facing delivery is built here,
//! so a per-subscriber view (entitlements, redaction) has exactly one place to apply: the
//! journal-read subscription ([`to_delivery`]), the Kafka delivery topics
//! ([`PartnerViews`], the relay's [`DeliveryPolicy`]) and Kafka-mode subscriptions
//! ([`from_kafka`], which passes on what the delivery topic already holds).

use loket_journal::StoredEvent;
use loket_kafka::{CloudEventRecord, DeliveryPolicy, View};

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

/// A record read from a partner's delivery topic, as a gRPC delivery. `time` is the
/// record's `ce_time`: the publisher's time, or when the event was stored.
pub(crate) fn from_kafka(record: CloudEventRecord) -> Delivery {
    Delivery {
        sequence: record.sequence,
        completeness: record.completeness,
        missing_expected: record.missing_expected,
        received_at: Some(from_micros(record.received_at_micros)),
        event: Some(CloudEvent {
            id: record.id,
            source: record.source,
            r#type: record.event_type,
            subject: record.subject,
            time: Some(from_micros(record.time_micros)),
            dataschema: record.dataschema,
            datacontenttype: record.content_type,
            data: record.data,
            specversion: SPEC_VERSION.to_owned(),
        }),
    }
}

/// The views on the Kafka delivery topics: the partners of `[kafka] delivery_partners`,
/// each receiving every event in full.
///
/// This is the plug for the who-may-see-what policy (entitlements, redaction, consent
/// gating): `view` returns [`View::Skip`] for what a partner may not see and
/// [`View::Deliver`] with the redacted payload and the removed JSON pointers otherwise.
pub(crate) struct PartnerViews {
    pub partners: Vec<String>,
}

impl DeliveryPolicy for PartnerViews {
    fn subscribers(&self) -> Vec<String> {
        self.partners.clone()
    }

    fn view(&self, _partner: &str, event: &StoredEvent) -> View {
        View::Deliver { payload: event.data.clone(), redacted: Vec::new() }
    }
}
