//! The views on the Kafka delivery topics, and records read back from them.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use loket_access::SubscriberScan;
use loket_journal::StoredEvent;
use loket_kafka::{CloudEventRecord, DeliveryPolicy, PartnerRecord, ViewError};
use tokio_util::sync::CancellationToken;

use super::{Digests, Reading, Viewed, Viewer};
use crate::proto::Delivery;
use crate::Error;

/// A record read from a partner's delivery topic, as a gRPC delivery. `time` is the
/// record's `ce_time`: the publisher's time, or when the event was stored. Kafka-mode
/// subscriptions acknowledge by sequence, so that is the position too.
pub(crate) fn from_kafka(record: CloudEventRecord) -> Delivery {
    let event = StoredEvent {
        sequence: record.sequence,
        received_at_micros: record.received_at_micros,
        source: record.source,
        id: record.id,
        event_type: record.event_type,
        subject: record.subject,
        time_micros: Some(record.time_micros),
        dataschema: record.dataschema,
        datacontenttype: record.content_type,
        data: record.data,
        completeness: record.completeness,
        missing_expected: record.missing_expected,
        ..StoredEvent::default()
    };
    Delivery::from(Viewed { event, redacted: record.redacted, released: record.released, position: record.sequence })
}

/// The views on the Kafka delivery topics: one topic per partner the policy lets receive
/// anything, carrying what that partner's journal-read subscription would get (the same
/// [`Viewer`]): redacted, consent-gated (medical) events withheld until a consent covers
/// the partner and then produced right after that consent, marked released, and its
/// quality digests.
///
/// Each partner has a [`SubscriberScan`] that the relay moves along the journal; on a
/// rewind it is rebuilt from the access index, so records re-produced after a crash or a
/// failed batch are the same ones.
pub(crate) struct PartnerViews {
    viewer: Viewer,
    /// One per partner with a delivery topic.
    scans: Vec<SubscriberScan>,
    /// Ends a rewind that waits for the access index.
    shutdown: CancellationToken,
}

impl PartnerViews {
    pub fn new(viewer: Viewer, event_types: &[String], shutdown: CancellationToken) -> Self {
        let access = &viewer.access;
        let partners: BTreeSet<String> = event_types.iter().flat_map(|t| access.policy.recipients_of(t)).collect();
        let scans = partners.into_iter().map(|p| SubscriberScan::new(p, BTreeSet::new())).collect();
        Self { viewer, scans, shutdown }
    }
}

impl DeliveryPolicy for PartnerViews {
    fn subscribers(&self) -> Vec<String> {
        self.scans.iter().map(|s| s.partner().to_owned()).collect()
    }

    fn rewind(&mut self, next: u64) -> Pin<Box<dyn Future<Output = Result<(), ViewError>> + Send + '_>> {
        Box::pin(async move {
            let access = &self.viewer.access;
            if !access.indexed_up_to(next.saturating_sub(1), &self.shutdown).await {
                return Err(Error::ShuttingDown.into());
            }
            let fresh = self.scans.iter().map(|s| SubscriberScan::new(s.partner(), BTreeSet::new())).collect();
            self.scans = access.scans_before(fresh, next)?;
            Ok(())
        })
    }

    fn records(&mut self, event: &StoredEvent) -> Result<Vec<PartnerRecord>, ViewError> {
        let mut out = Vec::new();
        let mut reading = Reading::new(event);
        for scan in &mut self.scans {
            for viewed in self.viewer.view(scan, Digests::Include, &mut reading)? {
                let record = CloudEventRecord::new(&viewed.event, viewed.event.data.clone(), viewed.redacted);
                let record = if viewed.released { record.released() } else { record };
                out.push(PartnerRecord { partner: scan.partner().to_owned(), record });
            }
        }
        Ok(out)
    }
}
