//! `EventStatus`: who receives an event and, for consent-gated data, per recipient which of
//! the medical rules held (addressee, named consent, coverage) and whether the event is
//! withheld from it, was released, or is never its; replayed from the access index.

use std::collections::BTreeSet;

use loket_access::{redact, MedicalChecks, Step, SubscriberScan};
use loket_domain::time::now_micros;
use loket_journal::StoredEvent;

use super::{parse, Access, IndexedEvent};
use crate::proto::{EventStatusReply, MedicalCheck, RecipientStatus};
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
        let policy = &self.policy;
        let mut gated = false;
        let mut recipients = Vec::new();
        for partner in policy.recipients_of(&event.event_type) {
            let mut scan = SubscriberScan::new(&partner, BTreeSet::from([event.event_type.clone()]));
            let mut status = RecipientStatus { partner: partner.clone(), ..Default::default() };
            let mut medical = false;
            if let Some(rule) = policy.subscription(&partner, &event.event_type) {
                let (seen, redacted) = redact(&this.data, rule);
                medical = policy.is_medical(&event.event_type, &seen);
                status.redacted = redacted;
            }
            gated |= medical;
            let mut checks = None;
            for entry in &entries {
                if entry.sequence == event.sequence && medical {
                    // As the rules stood when the gateway received the event.
                    checks =
                        Some(policy.medical_checks(&partner, &this.facts(), scan.book(), entry.received_at_micros));
                }
                let (step, released) = scan.step(policy, &entry.facts());
                if entry.sequence == event.sequence {
                    match step {
                        Step::Deliver { .. } | Step::Skip => status.state = "deliverable".into(),
                        Step::Withheld(reason) => {
                            status.state = "withheld".into();
                            status.reason_code = reason.code().into();
                            status.reason = reason.to_string();
                        }
                        Step::NotAddressed => {
                            status.state = "not-addressed".into();
                            status.reason_code = "NOT_ADDRESSEE".into();
                            status.reason = "the medical data is addressed to another partner".into();
                        }
                    }
                }
                if released.contains(&event.sequence) {
                    status.state = "released".into();
                    status.released_by = entry.sequence;
                    checks =
                        Some(policy.medical_checks(&partner, &this.facts(), scan.book(), entry.received_at_micros));
                }
            }
            if status.state == "withheld" {
                // Still withheld: say why as of now (later consents may name others).
                let now = policy.medical_checks(&partner, &this.facts(), scan.book(), now_micros());
                if let Err(reason) = now.coverage {
                    status.reason_code = reason.code().into();
                    status.reason = reason.to_string();
                }
                checks = Some(now);
            }
            if medical && partner == event.source {
                status.state = "publisher".into();
                status.reason_code.clear();
                status.reason = "the publisher always receives its own event".into();
            }
            status.checks = checks.map(|c| report(&c)).unwrap_or_default();
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

/// The checks as `EventStatus` reports them.
fn report(checks: &MedicalChecks) -> Vec<MedicalCheck> {
    let check = |check: &str, held: bool, detail: String| MedicalCheck { check: check.to_owned(), held, detail };
    let named =
        checks.consent_id.as_deref().map_or_else(|| "any consent of the case".to_owned(), |id| format!("consent {id}"));
    vec![
        check(
            "addressee",
            checks.addressed,
            match &checks.addressee {
                Some(a) => format!("addressed to {a}"),
                None => "no addressee named".to_owned(),
            },
        ),
        check(
            "named-consent",
            checks.consent_on_record,
            format!("{named} {}", if checks.consent_on_record { "is on record" } else { "is not on record" }),
        ),
        check(
            "coverage",
            checks.coverage.is_ok(),
            match checks.coverage {
                Ok(()) => format!("{named} covers the recipient"),
                Err(reason) => format!("{named}: {} ({reason})", reason.code()),
            },
        ),
    ]
}
