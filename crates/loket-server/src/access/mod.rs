//! Who may see what, at the gateway: the compiled [`Policy`] (pure rules in
//! `loket-access`), the access store (consent index and denial log, `store.rs`) and the
//! indexer that keeps the index up with the journal.

mod store;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use loket_access::{redact, EventFacts, Policy, Step, SubscriberScan, Verdict, CONSENT_TYPE};
use loket_journal::{Journal, StoredEvent};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(crate) use store::{AccessStore, DenialRecord, IndexedEvent};

use crate::config::Config;
use crate::proto::{EventStatusReply, RecipientStatus};
use crate::timestamp::now_micros;
use crate::Error;

/// Journal events the indexer reads per step.
const INDEX_CHUNK: usize = 1024;

/// The gateway's access state; cheap to clone.
#[derive(Clone)]
pub(crate) struct Access {
    pub policy: Arc<Policy>,
    pub store: AccessStore,
    indexed: Arc<watch::Sender<u64>>,
    rules: Arc<String>,
}

impl Access {
    pub fn open(config: &Config, policy: Policy) -> Result<Self, Error> {
        let store = AccessStore::open(&config.access_dir(), 8 * 1024 * 1024)?;
        let rules = format!("{:?}|{:?}", config.access.medical_types, config.access.medical_fields);
        let indexed = store.indexed(&rules)?;
        let (tx, _) = watch::channel(indexed);
        Ok(Self { policy: Arc::new(policy), store, indexed: Arc::new(tx), rules: Arc::new(rules) })
    }

    /// Waits until the index covers the journal up to `sequence`; false on shutdown.
    pub async fn indexed_up_to(&self, sequence: u64, shutdown: &CancellationToken) -> bool {
        let mut rx = self.indexed.subscribe();
        tokio::select! {
            done = rx.wait_for(|v| *v >= sequence) => done.is_ok(),
            () = shutdown.cancelled() => false,
        }
    }

    /// A subscriber's scan state just before journal position `next`: the consent state and
    /// the events withheld from it (the index must cover `next - 1`).
    pub fn scan_before(&self, partner: &str, types: BTreeSet<String>, next: u64) -> Result<SubscriberScan, Error> {
        let mut scans = self.scans_before(vec![SubscriberScan::new(partner, types)], next)?;
        Ok(scans.remove(0))
    }

    /// [`Access::scan_before`] for several fresh scans, in one pass over the index.
    pub fn scans_before(&self, mut scans: Vec<SubscriberScan>, next: u64) -> Result<Vec<SubscriberScan>, Error> {
        // Only scans that receive medical types carry state; the others start fresh
        // anywhere, without reading the index.
        let mut gated: Vec<&mut SubscriberScan> = scans.iter_mut().filter(|s| s.gated(&self.policy)).collect();
        if gated.is_empty() {
            return Ok(scans);
        }
        for entry in self.store.all() {
            let entry = entry?;
            if entry.sequence < next {
                for scan in &mut gated {
                    scan.step(&self.policy, &facts(&entry));
                }
            }
        }
        Ok(scans)
    }

    /// Who receives `event` and, for consent-gated data, whether it is withheld or was
    /// released (as far as the index has come).
    pub fn status(&self, event: &StoredEvent) -> Result<EventStatusReply, Error> {
        let data = parse(event)?;
        let this = IndexedEvent {
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            subject: event.subject.clone(),
            received_at_micros: event.received_at_micros,
            data,
        };
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
                let (step, released) = scan.step(&self.policy, &facts(entry));
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

    /// Follows the journal, indexing consents and possibly-medical events by case and
    /// recording, once per event and recipient, that medical data is withheld.
    pub async fn run_indexer(self, journal: Journal, shutdown: CancellationToken) {
        let mut book = loket_access::ConsentBook::default();
        for entry in self.store.all() {
            match entry {
                Ok(e) if e.event_type == CONSENT_TYPE => book.record(&e.subject, &e.data),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "access index unreadable; consent state may be incomplete"),
            }
        }
        let mut durable = journal.watch();
        loop {
            durable.borrow_and_update();
            let next = *self.indexed.borrow() + 1;
            let step = journal.read_from(next, INDEX_CHUNK).map_err(Error::from).and_then(|batch| {
                if batch.is_empty() {
                    return Ok(false);
                }
                self.index_batch(&batch, &mut book)?;
                Ok(true)
            });
            match step {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, rules = %self.rules, "access indexer failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn index_batch(&self, batch: &[StoredEvent], book: &mut loket_access::ConsentBook) -> Result<(), Error> {
        let mut entries = Vec::new();
        let mut withholdings = Vec::new();
        for event in batch {
            let consent = event.event_type == CONSENT_TYPE;
            let medical = self.policy.may_be_medical(&event.event_type);
            if !consent && !medical {
                continue;
            }
            let entry = IndexedEvent {
                sequence: event.sequence,
                event_type: event.event_type.clone(),
                subject: event.subject.clone(),
                received_at_micros: event.received_at_micros,
                data: parse(event)?,
            };
            if medical {
                for partner in self.policy.recipients_of(&event.event_type) {
                    let verdict = self.policy.view(
                        &partner,
                        &entry.event_type,
                        &entry.subject,
                        &entry.data,
                        book,
                        entry.received_at_micros,
                    );
                    if let Verdict::Withhold(reason) = verdict {
                        withholdings.push(DenialRecord {
                            at_micros: event.received_at_micros,
                            kind: "withheld".into(),
                            reason_code: reason.code().into(),
                            reason: reason.to_string(),
                            ..DenialRecord::about(&partner, event)
                        });
                    }
                }
            }
            if consent {
                book.record(&entry.subject, &entry.data);
            }
            entries.push(entry);
        }
        let last = batch.last().map_or(0, |e| e.sequence);
        self.store.index(&entries, &withholdings, last)?;
        self.indexed.send_replace(last);
        Ok(())
    }
}

impl DenialRecord {
    /// A record about `event` concerning `partner`; the caller fills in kind and reason.
    pub fn about(partner: &str, event: &StoredEvent) -> Self {
        Self {
            partner: partner.to_owned(),
            event_type: event.event_type.clone(),
            event_id: event.id.clone(),
            source: event.source.clone(),
            subject: event.subject.clone(),
            sequence: event.sequence,
            ..Default::default()
        }
    }
}

pub(crate) fn parse(event: &StoredEvent) -> Result<Value, Error> {
    serde_json::from_slice(&event.data)
        .map_err(|e| Error::Access(format!("stored event {} is not JSON: {e}", event.sequence)))
}

pub(crate) fn facts(entry: &IndexedEvent) -> EventFacts<'_> {
    EventFacts {
        sequence: entry.sequence,
        event_type: &entry.event_type,
        subject: &entry.subject,
        received_at_micros: entry.received_at_micros,
        data: &entry.data,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_shipped_policy_fits_the_built_in_schemas() {
        let config = Config::parse("", "defaults", &HashMap::new()).unwrap();
        let registry = loket_schema::Registry::embedded().unwrap();
        let policy = Policy::compile(&config.access, &config.partner_policies().unwrap(), &|t: &str| {
            registry.schemas().filter(|s| s.event_type() == t).map(|s| s.document().clone()).collect()
        })
        .unwrap();
        assert!(policy.subscribable("quality").is_empty());
        assert!(policy.is_auditor("quality"));
        assert!(!policy.may_publish("quality", "baggage"));
        assert!(policy.may_be_medical("medical-file-transfer"));
    }
}
