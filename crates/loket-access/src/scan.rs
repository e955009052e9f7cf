//! A subscriber's stream as a deterministic function of the journal, read in order.
//!
//! Each stored event is judged when the scan reaches it. Medical data without covering
//! consent is withheld (remembered per case); when the scan reaches a consent that covers
//! the subscriber, the withheld events of that case are released right there, before the
//! next journal event. Because nothing depends on wall-clock time or on what happened to
//! be delivered before, a scan restarted from any journal position (with the state of the
//! prefix replayed) produces exactly the same stream: acking stays cumulative and a
//! restart loses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use loket_domain::Envelope;
use serde_json::Value;

use crate::consent::{ConsentBook, Uncovered, CONSENT_TYPE};
use crate::policy::{FieldRule, Policy, Verdict};

/// What the scan needs of one stored event.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts<'a> {
    pub sequence: u64,
    pub event_type: &'a str,
    /// The publishing partner.
    pub source: &'a str,
    /// The case (V-number).
    pub subject: &'a str,
    /// When the gateway received it, Unix µs.
    pub received_at_micros: i64,
    pub data: &'a Value,
}

impl<'a> EventFacts<'a> {
    /// The facts of a stored event whose payload reads as `data`.
    pub fn of(event: &'a impl Envelope, data: &'a Value) -> Self {
        EventFacts {
            sequence: event.sequence(),
            event_type: event.event_type(),
            source: event.source(),
            subject: event.subject(),
            received_at_micros: event.received_at_micros(),
            data,
        }
    }
}

/// What to do with the event just scanned.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Deliver {
        data: Value,
        redacted: Vec<String>,
    },
    /// Withheld for lack of consent; delivered later if a covering consent arrives.
    Withheld(Uncovered),
    /// Medical data addressed to another partner: never for this subscriber.
    NotAddressed,
    /// Not for this subscriber (type not requested or not entitled).
    Skip,
}

/// How much of an event the scan needs to see, so that the common case costs no parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Not for this subscriber, and not a consent: skip it unread.
    Skip,
    /// Delivered exactly as stored: every field granted, never medical, not a consent.
    Verbatim,
    /// Parse it and [`SubscriberScan::step`].
    Inspect,
}

/// One subscriber's scan state: the consent book and the withheld events per case.
#[derive(Debug, Clone)]
pub struct SubscriberScan {
    partner: String,
    /// Requested types; empty means every type the partner may receive.
    types: BTreeSet<String>,
    book: ConsentBook,
    /// Per case, the withheld events and the consent form each names (if any): only that
    /// form can release it.
    pending: BTreeMap<String, BTreeMap<u64, Option<String>>>,
    /// Whether the subscriber receives a type that may carry medical data, so that
    /// consents matter to it (worked out on first use; the policy does not change).
    gated: OnceLock<bool>,
}

impl SubscriberScan {
    pub fn new(partner: impl Into<String>, types: BTreeSet<String>) -> Self {
        Self {
            partner: partner.into(),
            types,
            book: ConsentBook::default(),
            pending: BTreeMap::new(),
            gated: OnceLock::new(),
        }
    }

    pub fn partner(&self) -> &str {
        &self.partner
    }

    pub fn book(&self) -> &ConsentBook {
        &self.book
    }

    /// What the scan needs of the next event of `event_type`. For `Skip` and `Verbatim`
    /// [`SubscriberScan::step`] would change no state, so the caller may skip it.
    pub fn need(&self, policy: &Policy, event_type: &str) -> Need {
        if event_type == CONSENT_TYPE && self.gated(policy) {
            // Consents feed the book even when the subscriber does not receive them.
            return Need::Inspect;
        }
        if !self.wants(event_type) {
            return Need::Skip;
        }
        match policy.subscription(&self.partner, event_type) {
            None => Need::Skip,
            Some(FieldRule::All) if !policy.may_be_medical(event_type) => Need::Verbatim,
            Some(_) => Need::Inspect,
        }
    }

    fn wants(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.contains(event_type)
    }

    /// Whether consents matter to this subscriber: it receives a type that may be medical.
    /// When not, nothing before a position changes its scan, which then starts fresh.
    pub fn gated(&self, policy: &Policy) -> bool {
        *self.gated.get_or_init(|| {
            policy.subscribable(&self.partner).iter().any(|t| self.wants(t) && policy.may_be_medical(t))
        })
    }

    /// Scans the next event (in journal order). Returns its fate and the sequences of
    /// earlier withheld events that it releases (when it is a covering consent), in order;
    /// deliver those with [`SubscriberScan::release`] right after it.
    pub fn step(&mut self, policy: &Policy, event: &EventFacts<'_>) -> (Step, Vec<u64>) {
        let step = if self.wants(event.event_type) {
            match policy.view(&self.partner, event, &self.book, event.received_at_micros) {
                Verdict::Deliver { data, redacted } => Step::Deliver { data, redacted },
                Verdict::Withhold(reason) => {
                    let named = event.data.get("consentId").and_then(Value::as_str).map(str::to_owned);
                    self.pending.entry(event.subject.to_owned()).or_default().insert(event.sequence, named);
                    Step::Withheld(reason)
                }
                Verdict::NotAddressed => Step::NotAddressed,
                Verdict::NotEntitled => Step::Skip,
            }
        } else {
            Step::Skip
        };
        let mut released = Vec::new();
        // A subscriber without medical types needs no consents: its book stays empty.
        if event.event_type == CONSENT_TYPE && self.gated(policy) && policy.record_consent(&mut self.book, event) {
            let form = event.data.get("consentId").and_then(Value::as_str);
            if let Some(waiting) = self.pending.get_mut(event.subject) {
                // The consent releases the withheld events that name it (or name none) and
                // that it now covers; the others keep waiting for their own form.
                let book = &self.book;
                let at = event.received_at_micros;
                waiting.retain(|sequence, named| {
                    let freed = (named.is_none() || named.as_deref() == form)
                        && book.coverage(event.subject, named.as_deref(), &self.partner, at).is_ok();
                    if freed {
                        released.push(*sequence);
                    }
                    !freed
                });
                if waiting.is_empty() {
                    self.pending.remove(event.subject);
                }
            }
        }
        (step, released)
    }

    /// A released event as the subscriber sees it, judged at the releasing consent's
    /// receive time `at`.
    pub fn release(&self, policy: &Policy, event: &EventFacts<'_>, at: i64) -> Verdict {
        policy.view(&self.partner, event, &self.book, at)
    }

    /// Whether the event `sequence` of `case` is withheld now.
    pub fn is_withheld(&self, case: &str, sequence: u64) -> bool {
        self.pending.get(case).is_some_and(|s| s.contains_key(&sequence))
    }

    /// Every withheld (case, sequence).
    pub fn withheld(&self) -> impl Iterator<Item = (&str, u64)> {
        self.pending.iter().flat_map(|(case, seqs)| seqs.keys().map(move |s| (case.as_str(), *s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccessConfig, PartnerConfig};
    use serde_json::json;

    fn policy() -> Policy {
        let partners: BTreeMap<String, PartnerConfig> = serde_json::from_value(json!({
            "dji": {"subscribe": {"medical-file-transfer": {}, "medical-transfer-consent": {}}},
            "kmar": {"subscribe": {"medical-file-transfer": {}}}
        }))
        .unwrap();
        let schemas = |t: &str| match t {
            "medical-file-transfer" | "medical-transfer-consent" => vec![json!({"properties": {}})],
            _ => vec![],
        };
        let access =
            AccessConfig { auditors: vec![], consent_registrars: vec!["dji".into()], ..AccessConfig::default() };
        Policy::compile(&access, &partners, &schemas).unwrap()
    }

    const DAY: i64 = 24 * 3600 * 1_000_000;
    const T0: i64 = 1_710_000_000_000_000; // 2024-03-09T16:00:00Z

    fn consent(recipients: &[&str], withdrawn: bool) -> Value {
        let mut v = json!({"vNumber": "c1", "consentId": "f", "given": true,
            "recipients": recipients.iter().map(|p| json!({"partner": p, "role": "r"})).collect::<Vec<_>>(),
            "signedAt": "2024-03-09T16:00:00Z", "validUntil": "2024-03-19T16:00:00Z"});
        if withdrawn {
            v["withdrawnAt"] = json!("2024-03-11T16:00:00Z");
        }
        v
    }

    #[test]
    fn withheld_then_released_by_a_covering_consent_only() {
        let policy = policy();
        let mut scan = SubscriberScan::new("dji", BTreeSet::new());
        let med = json!({"vNumber": "c1", "consentId": "g", "toCareProfessional": {"partner": "dji", "role": "r"}});
        // Medical files come from kmar (dji would get its own at once), consents from dji.
        let ev = |seq, t, subject, at, data| EventFacts {
            sequence: seq,
            event_type: t,
            source: if t == CONSENT_TYPE { "dji" } else { "kmar" },
            subject,
            received_at_micros: at,
            data,
        };
        let (s, r) = scan.step(&policy, &ev(1, "medical-file-transfer", "c1", T0, &med));
        assert_eq!((s, r), (Step::Withheld(Uncovered::NoConsent), vec![]));
        assert!(scan.is_withheld("c1", 1));
        // A consent for another recipient, or for another case, releases nothing.
        let kmar_only = consent(&["kmar"], false);
        let (_, r) = scan.step(&policy, &ev(2, "medical-transfer-consent", "c1", T0 + DAY, &kmar_only));
        assert!(r.is_empty());
        let other_case = consent(&["dji"], false);
        let (_, r) = scan.step(&policy, &ev(3, "medical-transfer-consent", "c2", T0 + DAY, &other_case));
        assert!(r.is_empty());
        let covering = json!({"vNumber": "c1", "consentId": "g", "given": true,
            "recipients": [{"partner": "dji", "role": "r"}], "signedAt": "2024-03-09T16:00:00Z"});
        let (s, r) = scan.step(&policy, &ev(4, "medical-transfer-consent", "c1", T0 + DAY, &covering));
        assert!(matches!(s, Step::Deliver { .. }));
        assert_eq!(r, vec![1]);
        assert!(matches!(
            scan.release(&policy, &ev(1, "medical-file-transfer", "c1", T0, &med), T0 + DAY),
            Verdict::Deliver { .. }
        ));
        let (s, _) = scan.step(&policy, &ev(5, "medical-file-transfer", "c1", T0 + 2 * DAY, &med));
        assert!(matches!(s, Step::Deliver { .. }));
    }

    #[test]
    fn only_plain_fully_granted_types_bypass_the_scan() {
        let partners: BTreeMap<String, PartnerConfig> = serde_json::from_value(json!({
            "dji": {"subscribe": {"medical-file-transfer": {}, "baggage": {}, "transport-status": {"deny": ["/x"]}}}
        }))
        .unwrap();
        let schemas = |_: &str| vec![json!({"properties": {"x": {}}})];
        let access = AccessConfig { auditors: vec![], consent_registrars: vec![], ..AccessConfig::default() };
        let policy = Policy::compile(&access, &partners, &schemas).unwrap();
        let all = SubscriberScan::new("dji", BTreeSet::new());
        assert_eq!(all.need(&policy, "baggage"), Need::Verbatim);
        assert_eq!(all.need(&policy, "transport-status"), Need::Inspect);
        assert_eq!(all.need(&policy, "medical-file-transfer"), Need::Inspect);
        assert_eq!(all.need(&policy, CONSENT_TYPE), Need::Inspect, "consents feed the book even when not granted");
        assert_eq!(all.need(&policy, "physical-features"), Need::Skip);
        let only = SubscriberScan::new("dji", BTreeSet::from(["transport-status".to_owned()]));
        assert_eq!(only.need(&policy, "baggage"), Need::Skip);
        // Without a medical type among what it receives, consents and medical events are
        // nothing to the subscriber: skipped unread.
        assert_eq!(only.need(&policy, CONSENT_TYPE), Need::Skip);
        assert_eq!(only.need(&policy, "medical-file-transfer"), Need::Skip);
    }

    #[test]
    fn withdrawal_and_expiry_stop_later_deliveries() {
        let policy = policy();
        let mut scan = SubscriberScan::new("kmar", BTreeSet::new());
        let med = json!({"vNumber": "c1", "consentId": "f", "toCareProfessional": {"partner": "kmar", "role": "r"}});
        let ev = |seq, t, at, data| EventFacts {
            sequence: seq,
            event_type: t,
            source: "dji",
            subject: "c1",
            received_at_micros: at,
            data,
        };
        let given = consent(&["kmar"], false);
        let withdrawn = consent(&["kmar"], true);
        scan.step(&policy, &ev(1, "medical-transfer-consent", T0, &given));
        assert!(matches!(scan.step(&policy, &ev(2, "medical-file-transfer", T0 + DAY, &med)).0, Step::Deliver { .. }));
        // The withdrawal (withdrawnAt = T0 + 2 days) is published at T0 + 2 days.
        let (_, released) = scan.step(&policy, &ev(3, "medical-transfer-consent", T0 + 2 * DAY, &withdrawn));
        assert!(released.is_empty());
        assert_eq!(
            scan.step(&policy, &ev(4, "medical-file-transfer", T0 + 3 * DAY, &med)).0,
            Step::Withheld(Uncovered::Withdrawn)
        );
        let mut fresh = SubscriberScan::new("kmar", BTreeSet::new());
        fresh.step(&policy, &ev(1, "medical-transfer-consent", T0, &given));
        assert_eq!(
            fresh.step(&policy, &ev(2, "medical-file-transfer", T0 + 11 * DAY, &med)).0,
            Step::Withheld(Uncovered::Expired)
        );
        assert_eq!(scan.withheld().collect::<Vec<_>>(), vec![("c1", 4)]);
        assert_eq!(fresh.withheld().collect::<Vec<_>>(), vec![("c1", 2)]);
    }

    #[test]
    fn a_withheld_file_waits_for_the_form_it_names_and_goes_only_to_its_addressee() {
        let policy = policy();
        let ev = |seq, t, source, at, data| EventFacts {
            sequence: seq,
            event_type: t,
            source,
            subject: "c1",
            received_at_micros: at,
            data,
        };
        let to_kmar =
            json!({"vNumber": "c1", "consentId": "x", "toCareProfessional": {"partner": "kmar", "role": "r"}});
        let mut kmar = SubscriberScan::new("kmar", BTreeSet::new());
        let mut dji = SubscriberScan::new("dji", BTreeSet::new());
        let file = ev(1, "medical-file-transfer", "dji", T0, &to_kmar);
        assert_eq!(kmar.step(&policy, &file).0, Step::Withheld(Uncovered::NoConsent));
        assert_eq!(
            dji.step(&policy, &file).0,
            Step::Deliver { data: to_kmar.clone(), redacted: vec![] },
            "its publisher"
        );
        // Another form covering kmar does not release a file that names "x".
        let mut other = consent(&["kmar"], false);
        other["consentId"] = json!("y");
        assert!(kmar.step(&policy, &ev(2, CONSENT_TYPE, "dji", T0 + DAY, &other)).1.is_empty());
        let mut x = consent(&["kmar", "dji"], false);
        x["consentId"] = json!("x");
        assert_eq!(kmar.step(&policy, &ev(3, CONSENT_TYPE, "dji", T0 + DAY, &x)).1, vec![1]);
        // dji is covered by x too, but a file for kmar is never dji's (published by another).
        let mut dji_other = SubscriberScan::new("dji", BTreeSet::new());
        dji_other.step(&policy, &ev(3, CONSENT_TYPE, "dji", T0 + DAY, &x));
        let file = ev(4, "medical-file-transfer", "gza", T0 + DAY, &to_kmar);
        assert_eq!(dji_other.step(&policy, &file).0, Step::NotAddressed);
        assert!(!dji_other.is_withheld("c1", 4));
    }
}
