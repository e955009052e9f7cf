//! `EventStatus`: who receives an event and, for consent-gated data, whether it is withheld
//! from each recipient or was released, replayed from the access index.

use std::collections::BTreeSet;

use loket_access::{redact, Step, SubscriberScan};
use loket_domain::time::now_micros;
use loket_journal::StoredEvent;

use super::{parse, Access, IndexedEvent};
use crate::proto::{EventStatusReply, RecipientStatus};
use crate::Error;

impl Access {
    /// Who receives `event` and, for consent-gated data, whether it is withheld or was
    /// released (as far as the index has come).
    pub fn status(&self, event: &StoredEvent) -> Result<EventStatusReply, Error> {
        let data = parse(event)?;
        let this = IndexedEvent::of(event, data);
        let mut entries = self.store.case(&event.subject)?;
        if !entries.iter().any(|e| e.sequence == event.sequence) {
            let at = entries.partition_point(|e| e.sequence < event.sequence);
            entries.insert(at, this.clone());
        }
        let mut gated = false;
        let mut recipients = Vec::new();
        for partner in self.policy.recipients_of(&event.event_type) {
            let mut scan = SubscriberScan::new(&partner, BTreeSet::from([event.event_type.clone()]));
            let mut status = RecipientStatus { partner: partner.clone(), ..Default::default() };
            if let Some(rule) = self.policy.subscription(&partner, &event.event_type) {
                let (seen, redacted) = redact(&this.data, rule);
                gated |= self.policy.is_medical(&event.event_type, &seen);
                status.redacted = redacted;
            }
            for entry in &entries {
                let (step, released) = scan.step(&self.policy, &entry.facts());
                if entry.sequence == event.sequence {
                    match step {
                        Step::Deliver { .. } | Step::Skip => status.state = "deliverable".into(),
                        Step::Withheld(reason) => {
                            status.state = "withheld".into();
                            status.reason_code = reason.code().into();
                            status.reason = reason.to_string();
                        }
                    }
                }
                if released.contains(&event.sequence) {
                    status.state = "released".into();
                    status.released_by = entry.sequence;
                }
            }
            if status.state == "withheld" {
                // Still withheld: say why as of now (later consents may name others).
                if let Err(reason) = scan.book().coverage(&event.subject, &partner, now_micros()) {
                    status.reason_code = reason.code().into();
                    status.reason = reason.to_string();
                }
            }
            recipients.push(status);
        }
        Ok(EventStatusReply {
            sequence: event.sequence,
            r#type: event.event_type.clone(),
            subject: event.subject.clone(),
            consent_gated: gated,
            recipients,
        })
    }
}
