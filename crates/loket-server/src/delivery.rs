//! How a stored event leaves the gateway. Every subscriber-facing delivery is built here,
//! from the subscriber's view of it: the journal-read subscription through
//! `loket_access::SubscriberScan` (entitlement, redaction, consent) and [`to_delivery`], the
//! Kafka delivery topics through [`PartnerViews`] (the relay's [`DeliveryPolicy`]), and
//! Kafka-mode subscriptions through [`from_kafka`], which passes on what the delivery topic
//! already holds. Never from the stored payload directly.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;

use loket_access::{EventFacts, Need, Step, SubscriberScan, Verdict};
use loket_journal::{Journal, StoredEvent};
use loket_kafka::{CloudEventRecord, DeliveryPolicy, Target, ViewError, ViewRecord};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::access::{parse, Access};
use crate::intake::SPEC_VERSION;
use crate::proto::{CloudEvent, Delivery};
use crate::timestamp::from_micros;
use crate::Error;

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
        released: record.released,
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
/// anything, carrying what that partner may see, exactly as its journal-read subscription
/// would: redacted, and with consent-gated (medical) events withheld until a consent covers
/// the partner, then produced right after that consent, marked released.
///
/// The canonical topics carry the view of one configured partner (`[kafka]
/// canonical_view`) in the same way: a scan of that partner; without one there are none.
///
/// Each view has a [`SubscriberScan`] that the relay moves along the journal; on a
/// rewind it is rebuilt from the access index, so records re-produced after a crash or a
/// failed batch are the same ones.
pub(crate) struct PartnerViews {
    access: Access,
    journal: Journal,
    /// One per partner with a delivery topic, and one for the canonical view.
    scans: Vec<(Target, SubscriberScan)>,
    /// Ends a rewind that waits for the access index.
    shutdown: CancellationToken,
}

impl PartnerViews {
    pub fn new(
        access: Access,
        journal: Journal,
        event_types: &[String],
        canonical_view: Option<&str>,
        shutdown: CancellationToken,
    ) -> Self {
        let partners: BTreeSet<String> = event_types.iter().flat_map(|t| access.policy.recipients_of(t)).collect();
        let views = partners.into_iter().map(|p| (Target::Delivery(p.clone()), p));
        let canonical = canonical_view.map(|p| (Target::Canonical, p.to_owned()));
        let scans = views.chain(canonical).map(|(t, p)| (t, SubscriberScan::new(p, BTreeSet::new()))).collect();
        Self { access, journal, scans, shutdown }
    }

    /// A partner's view of `event` (already judged deliverable) as a record.
    fn record(event: &StoredEvent, data: &Value, redacted: Vec<String>) -> Result<CloudEventRecord, ViewError> {
        Ok(CloudEventRecord::new(event, serde_json::to_vec(data)?, redacted))
    }
}

impl DeliveryPolicy for PartnerViews {
    fn targets(&self) -> Vec<Target> {
        self.scans.iter().map(|(t, _)| t.clone()).collect()
    }

    fn rewind(&mut self, next: u64) -> Pin<Box<dyn Future<Output = Result<(), ViewError>> + Send + '_>> {
        Box::pin(async move {
            if !self.access.indexed_up_to(next.saturating_sub(1), &self.shutdown).await {
                return Err(Error::ShuttingDown.into());
            }
            let fresh = self.scans.iter().map(|(_, s)| SubscriberScan::new(s.partner(), BTreeSet::new())).collect();
            let rebuilt = self.access.scans_before(fresh, next)?;
            self.scans = self.scans.drain(..).map(|(t, _)| t).zip(rebuilt).collect();
            Ok(())
        })
    }

    fn records(&mut self, event: &StoredEvent) -> Result<Vec<ViewRecord>, ViewError> {
        let policy = self.access.policy.clone();
        let mut out = Vec::new();
        // Parsed once for all partners, and only when a partner's scan must look inside.
        let mut data: Option<Value> = None;
        // Released originals, read once however many partners they are released to.
        let mut originals: HashMap<u64, (StoredEvent, Value)> = HashMap::new();
        for (target, scan) in &mut self.scans {
            match scan.need(&policy, &event.event_type) {
                Need::Skip => continue,
                Need::Verbatim => {
                    let record = CloudEventRecord::new(event, event.data.clone(), Vec::new());
                    out.push(ViewRecord { target: target.clone(), record });
                    continue;
                }
                Need::Inspect => {}
            }
            if data.is_none() {
                data = Some(parse(event)?);
            }
            let Some(data) = &data else { continue };
            let facts = EventFacts {
                sequence: event.sequence,
                event_type: &event.event_type,
                subject: &event.subject,
                received_at_micros: event.received_at_micros,
                data,
            };
            let (step, released) = scan.step(&policy, &facts);
            if let Step::Deliver { data, redacted } = step {
                out.push(ViewRecord { target: target.clone(), record: Self::record(event, &data, redacted)? });
            }
            for sequence in released {
                if let std::collections::hash_map::Entry::Vacant(slot) = originals.entry(sequence) {
                    let original = self.journal.get(sequence)?.ok_or_else(|| {
                        Error::Access(format!("withheld event {sequence} is missing from the journal"))
                    })?;
                    let data = parse(&original)?;
                    slot.insert((original, data));
                }
                let (original, data) = &originals[&sequence];
                let facts = EventFacts {
                    sequence,
                    event_type: &original.event_type,
                    subject: &original.subject,
                    received_at_micros: original.received_at_micros,
                    data,
                };
                if let Verdict::Deliver { data, redacted } = scan.release(&policy, &facts, event.received_at_micros) {
                    let record = Self::record(original, &data, redacted)?.released();
                    out.push(ViewRecord { target: target.clone(), record });
                }
            }
        }
        Ok(out)
    }
}
