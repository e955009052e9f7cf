//! The views on the Kafka delivery topics, and records read back from them.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use loket_access::SubscriberScan;
use loket_domain::time::now_micros;
use loket_domain::SPEC_VERSION;
use loket_journal::StoredEvent;
use loket_kafka::{CloudEventRecord, DeliveryPolicy, Target, ViewError, ViewRecord};
use tokio_util::sync::CancellationToken;

use super::{Digests, Reading, Viewer};
use crate::processing::{span_of, Processing};
use crate::proto::timestamp::from_micros;
use crate::proto::{extensions, CloudEvent, Delivery};
use crate::trace::{next_hop, relay_hop};
use crate::Error;

/// A record read from a partner's delivery topic, as a gRPC delivery: the record's
/// attributes are already in the profile's names, so they pass as they are, and the
/// delivery is a hop of the trace after the record's. Kafka-mode subscriptions acknowledge
/// by sequence, so that is the position too.
pub(crate) fn from_kafka(record: CloudEventRecord) -> Delivery {
    let span = tracing::info_span!("delivery", sequence = record.sequence, id = %record.id, kafka = true);
    let traceparent = next_hop(&record.traceparent, &span);
    let extensions =
        extensions(record.extensions, record.sequence, record.received_at_micros, traceparent, record.tracestate);
    Delivery {
        sequence: record.sequence,
        position: record.sequence,
        completeness: record.completeness,
        missing_expected: record.missing_expected,
        received_at: Some(from_micros(record.received_at_micros)),
        redacted: record.redacted,
        released: record.released,
        first_retained: 0,
        tombstone: record.tombstone,
        event: Some(CloudEvent {
            id: record.id,
            source: record.source,
            r#type: record.event_type,
            subject: record.subject,
            time: record.time_micros.map(from_micros),
            dataschema: record.dataschema,
            datacontenttype: record.content_type,
            data: record.data,
            specversion: SPEC_VERSION.to_owned(),
            extensions,
        }),
    }
}

/// The views on the Kafka delivery topics: one topic per partner the policy lets receive
/// anything, carrying what that partner's journal-read subscription would get (the same
/// [`Viewer`]): redacted, consent-gated (medical) events withheld until a consent covers
/// the partner and then produced right after that consent, marked released, and its
/// quality digests.
///
/// The canonical topics carry the view of one configured partner (`[kafka]
/// canonical_view`) in the same way: a scan of that partner; without one there are none.
///
/// Each view has a [`SubscriberScan`] that the relay moves along the journal; on a rewind
/// it is rebuilt from the access index, so records re-produced after a crash or a failed
/// batch are the same ones.
pub(crate) struct PartnerViews {
    viewer: Viewer,
    /// One per partner with a delivery topic, and one for the canonical view.
    scans: Vec<(Target, SubscriberScan)>,
    /// Ends a rewind that waits for the access index.
    shutdown: CancellationToken,
}

impl PartnerViews {
    pub fn new(
        viewer: Viewer,
        event_types: &[String],
        canonical_view: Option<&str>,
        shutdown: CancellationToken,
    ) -> Self {
        let access = &viewer.access;
        let partners: BTreeSet<String> = event_types.iter().flat_map(|t| access.policy.recipients_of(t)).collect();
        let views = partners.into_iter().map(|p| (Target::Delivery(p.clone()), p));
        let canonical = canonical_view.map(|p| (Target::Canonical, p.to_owned()));
        let scans = views.chain(canonical).map(|(t, p)| (t, SubscriberScan::new(p, BTreeSet::new()))).collect();
        Self { viewer, scans, shutdown }
    }
}

impl DeliveryPolicy for PartnerViews {
    fn targets(&self) -> Vec<Target> {
        self.scans.iter().map(|(t, _)| t.clone()).collect()
    }

    fn rewind(&mut self, next: u64) -> Pin<Box<dyn Future<Output = Result<(), ViewError>> + Send + '_>> {
        Box::pin(async move {
            let access = &self.viewer.access;
            if !access.indexed_up_to(next.saturating_sub(1), &self.shutdown).await {
                return Err(Error::ShuttingDown.into());
            }
            let fresh = self.scans.iter().map(|(_, s)| SubscriberScan::new(s.partner(), BTreeSet::new())).collect();
            let rebuilt = access.scans_before(fresh, next)?;
            self.scans = self.scans.drain(..).map(|(t, _)| t).zip(rebuilt).collect();
            Ok(())
        })
    }

    fn records(&mut self, event: &StoredEvent) -> Result<Vec<ViewRecord>, ViewError> {
        let mut out = Vec::new();
        let mut reading = Reading::new(event);
        for (target, scan) in &mut self.scans {
            // A partner's quality digests are its own; the canonical view carries none.
            let digests = if *target == Target::Canonical { Digests::Skip } else { Digests::Include };
            for viewed in self.viewer.view(scan, digests, &mut reading)? {
                let started_micros = now_micros();
                let access = &self.viewer.access;
                let profile = &access.profile;
                let reader = match &*target {
                    Target::Delivery(partner) => partner.as_str(),
                    Target::Canonical => "canonical",
                };
                let event = &viewed.event;
                let traceparent = relay_hop(&event.traceparent, reader, &event.id, event.sequence);
                access.processing.record(Processing {
                    operation: "delivery",
                    channel: "kafka",
                    partner: reader,
                    event_type: &event.event_type,
                    event_id: &event.id,
                    sequence: event.sequence,
                    subject: &event.subject,
                    traceparent: &traceparent,
                    parent_span: span_of(&event.traceparent),
                    started_micros,
                });
                let record = CloudEventRecord::new(event, event.data.clone(), viewed.redacted, profile, traceparent);
                let record = if viewed.released { record.released() } else { record };
                let record = if viewed.tombstone { record.tombstone() } else { record };
                let event_type = viewed.event.event_type.clone();
                out.push(ViewRecord { target: target.clone(), record, event_type });
            }
        }
        Ok(out)
    }
}
