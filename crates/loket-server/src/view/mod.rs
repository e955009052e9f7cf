//! What a subscriber gets of a stored event: the one view, used by the journal-read gRPC
//! subscription (`subscribe/`) and by the Kafka delivery topics ([`PartnerViews`]), so the
//! two cannot drift. It applies the subscriber's `SubscriberScan` (entitlement, redaction,
//! consent; `loket-access`), records redactions in the denial log, fetches the withheld
//! events a consent releases, and shows a quality digest only to its partner and the
//! quality readers. A delivery's completeness and missing expected fields describe what
//! the subscriber may see (`Policy::visible_completeness`), never the fields hidden from it.

mod kafka;
mod tombstones;

use std::collections::HashMap;
use std::sync::Arc;

use loket_access::{EventFacts, Need, Step, SubscriberScan, Verdict};
use loket_domain::time::now_micros;
use loket_domain::{Profile, TraceParent};
use loket_journal::{Journal, StoredEvent};
use loket_schema::Registry;
use serde_json::Value;

pub(crate) use kafka::{from_kafka, PartnerViews};
pub(crate) use tombstones::ErasureNotice;

use crate::access::{parse, Access, DenialRecord};
use crate::processing::{Processing, Recorder};
use crate::proto::timestamp::from_micros;
use crate::proto::{CloudEvent, Delivery};
use crate::quality::is_digest;
use crate::trace::continue_trace;
use crate::Error;

/// A stored event as one subscriber may see it.
pub(crate) struct Viewed {
    /// The stored event, its `data` replaced by the subscriber's view of the payload.
    pub event: StoredEvent,
    /// The fields removed from the payload.
    pub redacted: Vec<String>,
    /// Delivered late, when a consent released it.
    pub released: bool,
    /// The scan position a client acknowledges (see `Delivery.position`).
    pub position: u64,
    /// The event was erased: only its attributes are delivered (see `tombstones.rs`).
    pub tombstone: bool,
}

impl Viewed {
    /// The gRPC delivery to `partner`, its processing record pushed to `recorder`. The
    /// stored traceparent is read once, for the delivery's hop and the record's parent span.
    pub fn delivered_to(self, partner: &str, profile: &Profile, recorder: &mut Recorder) -> Delivery {
        let started_micros = now_micros();
        let e = &self.event;
        let span = tracing::info_span!("delivery", sequence = e.sequence, id = %e.id);
        let parent = TraceParent::parse(&e.traceparent);
        let hop = continue_trace(&span, parent).to_string();
        recorder.push(Processing {
            operation: "delivery",
            channel: "grpc",
            partner,
            event_type: &e.event_type,
            event_id: &e.id,
            sequence: e.sequence,
            subject: &e.subject,
            traceparent: &hop,
            parent_span: parent.map(|p| p.span_id_hex()).unwrap_or_default(),
            started_micros,
        });
        self.delivery_in(profile, hop)
    }

    /// The gRPC delivery, in the profile's names, with the hop `traceparent`.
    fn delivery_in(self, profile: &Profile, traceparent: String) -> Delivery {
        let Viewed { mut event, redacted, released, position, tombstone } = self;
        let data = std::mem::take(&mut event.data);
        Delivery {
            position,
            redacted,
            released,
            sequence: event.sequence,
            completeness: event.completeness,
            missing_expected: std::mem::take(&mut event.missing_expected),
            received_at: Some(from_micros(event.received_at_micros)),
            event: Some(CloudEvent::stored(event, data, profile, traceparent)),
            first_retained: 0,
            tombstone,
        }
    }
}

/// Which quality digests a subscriber takes besides the types it subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digests {
    /// None: the subscription names types, not the digest type.
    Skip,
    /// Those it may read, among everything else.
    Include,
    /// Only digests: the subscription names nothing but the digest type.
    Only,
}

/// One journal event as the views read it: parsed once, and the originals it releases read
/// once, however many subscribers look at it.
pub(crate) struct Reading<'e> {
    event: &'e StoredEvent,
    data: Option<Value>,
    originals: HashMap<u64, (StoredEvent, Value)>,
}

impl<'e> Reading<'e> {
    pub fn new(event: &'e StoredEvent) -> Self {
        Reading { event, data: None, originals: HashMap::new() }
    }

    fn data(&mut self) -> Result<&Value, Error> {
        let data = match self.data.take() {
            Some(data) => data,
            None => parse(self.event)?,
        };
        Ok(self.data.insert(data))
    }

    /// The withheld event `sequence`, `None` when its payload was purged.
    fn original(&mut self, journal: &Journal, sequence: u64) -> Result<Option<&(StoredEvent, Value)>, Error> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.originals.entry(sequence) {
            let original = journal
                .get(sequence)?
                .ok_or_else(|| Error::Access(format!("withheld event {sequence} is missing from the journal")))?;
            if original.purged_by != 0 {
                return Ok(None);
            }
            let data = parse(&original)?;
            slot.insert((original, data));
        }
        Ok(self.originals.get(&sequence))
    }
}

/// What the view reads besides the event: the policy and denial log, the journal for
/// released originals, and the schemas for the expected fields a subscriber sees.
#[derive(Clone)]
pub(crate) struct Viewer {
    pub access: Access,
    pub journal: Journal,
    pub registry: Arc<Registry>,
}

impl Viewer {
    /// The deliveries one journal event makes for the subscriber of `scan`: the event itself
    /// (unless skipped or withheld), then the withheld events it releases. All but the last
    /// carry the position before it, so a client that acks a delivery's position never
    /// skips one of the group.
    pub fn view(
        &self,
        scan: &mut SubscriberScan,
        digests: Digests,
        reading: &mut Reading,
    ) -> Result<Vec<Viewed>, Error> {
        let event = reading.event;
        let policy = &self.access.policy;
        // Expired or erased: its payload is gone, and so is the event for subscribers.
        if event.purged_by != 0 {
            return Ok(Vec::new());
        }
        if tombstones::is_notice(event) {
            return self.tombstones(scan, event);
        }
        if is_digest(event) {
            // Digests come from the gateway itself and are about one partner: they bypass
            // the partner grants and go to that partner and the quality readers.
            let visible = digests != Digests::Skip && policy.may_read_digest(scan.partner(), &event.subject);
            return Ok(if visible { vec![whole(event)] } else { Vec::new() });
        }
        if digests == Digests::Only {
            return Ok(Vec::new());
        }
        match scan.need(policy, &event.event_type) {
            Need::Skip => return Ok(Vec::new()),
            Need::Verbatim => return Ok(vec![whole(event)]),
            Need::Inspect => {}
        }
        let (step, released) = scan.step(policy, &EventFacts::of(event, reading.data()?));
        let mut group = Vec::new();
        if let Step::Deliver { data, redacted } = step {
            group.push(self.viewed(scan.partner(), event, &data, redacted, false)?);
        }
        for sequence in released {
            // A withheld event that expired (or was erased) before its consent came is not
            // released: it is no longer there to release.
            if sequence < self.journal.first_retained() {
                continue;
            }
            let Some((original, data)) = reading.original(&self.journal, sequence)? else { continue };
            let facts = EventFacts::of(original, data);
            if let Verdict::Deliver { data, redacted } = scan.release(policy, &facts, event.received_at_micros) {
                group.push(self.viewed(scan.partner(), original, &data, redacted, true)?);
            }
        }
        let last = group.len().saturating_sub(1);
        for (i, viewed) in group.iter_mut().enumerate() {
            viewed.position = if i == last { event.sequence } else { event.sequence - 1 };
        }
        Ok(group)
    }

    /// `event` with the redacted payload `data`; a redaction is recorded once per event and
    /// partner.
    fn viewed(
        &self,
        partner: &str,
        event: &StoredEvent,
        data: &Value,
        redacted: Vec<String>,
        released: bool,
    ) -> Result<Viewed, Error> {
        if !redacted.is_empty() {
            self.access.store.redaction(&DenialRecord {
                at_micros: now_micros(),
                kind: "redacted".into(),
                reason_code: "FIELDS_NOT_GRANTED".into(),
                reason: format!("the policy does not grant {partner} these fields of {}", event.event_type),
                fields: redacted.clone(),
                ..DenialRecord::about(partner, event)
            })?;
        }
        let data = serde_json::to_vec(data).map_err(|e| Error::Access(e.to_string()))?;
        let (completeness, missing_expected) = match self.registry.resolve(&event.event_type, Some(&event.dataschema)) {
            Ok(schema) => self.access.policy.visible_completeness(
                partner,
                &event.event_type,
                schema.expected(),
                &event.missing_expected,
            ),
            // A schema no longer loaded: its expected fields are unknown, so nothing is
            // said about them (0 and none, rather than figures about hidden fields).
            Err(_) => (0.0, Vec::new()),
        };
        let event = StoredEvent { data, completeness, missing_expected, ..event.clone() };
        Ok(Viewed { event, redacted, released, position: 0, tombstone: false })
    }
}

/// The event as stored, for a subscriber that sees all of it.
fn whole(event: &StoredEvent) -> Viewed {
    Viewed { event: event.clone(), redacted: Vec::new(), released: false, position: event.sequence, tombstone: false }
}

#[cfg(test)]
mod tests;
