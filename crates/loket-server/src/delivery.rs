//! How a stored event leaves the gateway. Every subscriber-facing delivery is built here,
//! from the subscriber's view of it: the journal-read subscription through
//! `loket_access::SubscriberScan` (entitlement, redaction, consent) and [`to_delivery`], the
//! Kafka delivery topics through [`PartnerViews`] (the relay's [`DeliveryPolicy`]), and
//! Kafka-mode subscriptions through [`from_kafka`], which passes on what the delivery topic
//! already holds. Never from the stored payload directly.

use std::collections::BTreeSet;
use std::sync::Arc;

use loket_access::{redact, FieldRule, Policy};
use loket_journal::StoredEvent;
use loket_kafka::{CloudEventRecord, DeliveryPolicy, View as TopicView};

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

/// A record read from a partner's delivery topic, as a gRPC delivery. `time` is the
/// record's `ce_time`: the publisher's time, or when the event was stored. Kafka-mode
/// subscriptions acknowledge by sequence, so that is the position too.
pub(crate) fn from_kafka(record: CloudEventRecord) -> Delivery {
    Delivery {
        position: record.sequence,
        redacted: record.redacted,
        released: false,
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

/// The views on the Kafka delivery topics: one topic per partner the policy lets receive
/// anything, carrying what that partner may see, redacted as for a gRPC subscriber.
///
/// Consent-gated (medical) events are not fanned out to delivery topics: a relayed record
/// cannot be withheld and released later, so medical data reaches recipients only through
/// the journal-read gRPC subscription, which applies consent. Views are a pure function of
/// the stored event, as the relay requires (it re-produces them after a crash).
pub(crate) struct PartnerViews {
    pub policy: Arc<Policy>,
    pub partners: Vec<String>,
}

impl PartnerViews {
    pub fn new(policy: Arc<Policy>, event_types: &[String]) -> Self {
        let partners: BTreeSet<String> = event_types.iter().flat_map(|t| policy.recipients_of(t)).collect();
        Self { policy, partners: partners.into_iter().collect() }
    }
}

impl DeliveryPolicy for PartnerViews {
    fn subscribers(&self) -> Vec<String> {
        self.partners.clone()
    }

    fn view(&self, partner: &str, event: &StoredEvent) -> TopicView {
        let Some(rule) = self.policy.subscription(partner, &event.event_type) else { return TopicView::Skip };
        if !self.policy.may_be_medical(&event.event_type) && *rule == FieldRule::All {
            return TopicView::Deliver { payload: event.data.clone(), redacted: Vec::new() };
        }
        let Ok(data) = serde_json::from_slice::<serde_json::Value>(&event.data) else { return TopicView::Skip };
        let (seen, redacted) = redact(&data, rule);
        if self.policy.is_medical(&event.event_type, &seen) {
            return TopicView::Skip;
        }
        match serde_json::to_vec(&seen) {
            Ok(payload) => TopicView::Deliver { payload, redacted },
            Err(_) => TopicView::Skip,
        }
    }
}
