//! The compiled access policy: deny by default, checked against the schemas once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use loket_domain::{PartnerId, DIGEST_TYPE};

use crate::config::{AccessConfig, FieldsConfig, PartnerConfig, Roles};
use crate::consent::{ConsentBook, Uncovered, CONSENT_TYPE};
use crate::pointer::Pointer;
use crate::redact::redact;
use crate::scan::EventFacts;

/// Where a medical file names its addressee: the partner of its receiving care
/// professional.
const ADDRESSEE: &str = "/toCareProfessional/partner";
/// Where medical data names the consent form it travels under.
const NAMED_CONSENT: &str = "/consentId";

/// Which fields of a type a subscriber sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRule {
    All,
    Allow(Vec<Pointer>),
    Deny(Vec<Pointer>),
}

#[derive(Debug, Clone, Default)]
struct Grants {
    publish: BTreeSet<String>,
    subscribe: BTreeMap<String, FieldRule>,
}

/// What one subscriber gets of one stored event.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Deliver `data`; `redacted` names the fields removed from it.
    Deliver { data: Value, redacted: Vec<String> },
    /// Medical data without covering consent: kept back, not dropped.
    Withhold(Uncovered),
    /// Medical data addressed to another partner (or to none): never for this subscriber,
    /// whatever consent exists.
    NotAddressed,
    /// The subscriber may not receive this type at all.
    NotEntitled,
}

/// The checks a medical event passes or fails for one recipient, as `EventStatus`
/// reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MedicalChecks {
    /// The partner the data is addressed to (`toCareProfessional.partner`), when named.
    pub addressee: Option<String>,
    /// Whether the recipient is that addressee (or no addressee is needed).
    pub addressed: bool,
    /// The consent form the data names (`consentId`), when named.
    pub consent_id: Option<String>,
    /// Whether that form (or, when none is named, some form) is on record for the case.
    pub consent_on_record: bool,
    /// Whether the consent covers the recipient at the moment judged.
    pub coverage: Result<(), Uncovered>,
}

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeRefusal {
    /// The partner may receive no type at all.
    NoGrants,
    /// These requested types are not granted.
    NotGranted(Vec<String>),
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    partners: BTreeMap<String, Grants>,
    identities: HashMap<String, String>,
    oins: HashMap<String, String>,
    auditors: BTreeSet<String>,
    consent_registrars: BTreeSet<String>,
    testers: BTreeSet<String>,
    exporters: BTreeSet<String>,
    quality_readers: BTreeSet<String>,
    medical_types: BTreeSet<String>,
    medical_fields: BTreeMap<String, Vec<Pointer>>,
}

impl Policy {
    /// Checks the configuration against the schemas (`schemas(type)` gives every version's
    /// JSON Schema document, empty for an unknown type) and returns every problem at once,
    /// each naming the partner, type and pointer concerned.
    pub fn compile(
        access: &AccessConfig,
        partners: &BTreeMap<String, PartnerConfig>,
        schemas: &dyn Fn(&str) -> Vec<Value>,
    ) -> Result<Policy, Vec<String>> {
        Self::compile_with_roles(access, partners, &Roles::default(), schemas)
    }

    /// [`Policy::compile`] with the roles other sections grant (export, quality reading),
    /// each checked to name a partner.
    pub fn compile_with_roles(
        access: &AccessConfig,
        partners: &BTreeMap<String, PartnerConfig>,
        roles: &Roles,
        schemas: &dyn Fn(&str) -> Vec<Value>,
    ) -> Result<Policy, Vec<String>> {
        let mut problems = Vec::new();
        let mut policy = Policy::default();
        let known_type = |t: &str, at: &str, problems: &mut Vec<String>| -> Vec<Value> {
            let docs = schemas(t);
            if docs.is_empty() {
                problems.push(format!("{at}: unknown event type {t:?}"));
            }
            docs
        };
        let check_pointers = |list: &[String], docs: &[Value], at: &str, t: &str, problems: &mut Vec<String>| {
            let mut out = Vec::new();
            for text in list {
                match Pointer::parse(text) {
                    Err(e) => problems.push(format!("{at}: {e}")),
                    Ok(p) if !docs.is_empty() && !docs.iter().any(|d| p.exists_in_schema(d)) => {
                        problems.push(format!("{at}: pointer {text} does not exist in the schema of {t}"))
                    }
                    Ok(p) => out.push(p),
                }
            }
            out
        };

        for t in &access.medical_types {
            known_type(t, "access.medical_types", &mut problems);
            policy.medical_types.insert(t.clone());
        }
        for (t, list) in &access.medical_fields {
            let at = format!("access.medical_fields.{t}");
            let docs = known_type(t, &at, &mut problems);
            policy.medical_fields.insert(t.clone(), check_pointers(list, &docs, &at, t, &mut problems));
        }
        let mut role = |holders: &[String], key: &str, into: &mut BTreeSet<String>| {
            for a in holders {
                if !partners.contains_key(a) {
                    problems.push(format!("{key}: {a:?} is not a partner in [partners]"));
                }
                into.insert(a.clone());
            }
        };
        role(&access.auditors, "access.auditors", &mut policy.auditors);
        role(&access.consent_registrars, "access.consent_registrars", &mut policy.consent_registrars);
        role(&roles.exporters, "export.auditors", &mut policy.exporters);
        role(&roles.testers, "export.testers", &mut policy.testers);
        role(&roles.quality_readers, "quality.readers", &mut policy.quality_readers);
        for both in policy.exporters.intersection(&policy.testers) {
            problems.push(format!("export.testers: {both:?} is an export auditor too; name it in one list"));
        }

        for (id, partner) in partners {
            if id.parse::<PartnerId>().is_err() {
                problems.push(format!("partners.{id}: a partner id is 1 to 32 lowercase letters, digits or '-'"));
            }
            let identity = partner.identity.clone().unwrap_or_else(|| id.clone());
            if let Some(other) = policy.identities.insert(identity.clone(), id.clone()) {
                problems
                    .push(format!("partners.{id}.identity: {identity:?} is already the identity of partner {other}"));
            }
            if let Some(oin) = &partner.oin {
                if !is_oin(oin) {
                    problems.push(format!("partners.{id}.oin: {oin:?} is not an OIN (20 digits)"));
                } else if let Some(other) = policy.oins.insert(oin.clone(), id.clone()) {
                    problems.push(format!("partners.{id}.oin: {oin:?} is already the OIN of partner {other}"));
                }
            }
            let mut grants = Grants::default();
            for t in &partner.publish {
                known_type(t, &format!("partners.{id}.publish"), &mut problems);
                if !grants.publish.insert(t.clone()) {
                    problems.push(format!("partners.{id}.publish: {t:?} is listed twice"));
                }
            }
            for (t, fields) in &partner.subscribe {
                let at = format!("partners.{id}.subscribe.{t}");
                let docs = known_type(t, &at, &mut problems);
                let rule = match fields {
                    FieldsConfig { allow: Some(_), deny: Some(_) } => {
                        problems.push(format!("{at}: give allow or deny, not both"));
                        FieldRule::Allow(Vec::new())
                    }
                    FieldsConfig { allow: Some(list), deny: None } => {
                        FieldRule::Allow(check_pointers(list, &docs, &at, t, &mut problems))
                    }
                    FieldsConfig { allow: None, deny: Some(list) } => {
                        FieldRule::Deny(check_pointers(list, &docs, &at, t, &mut problems))
                    }
                    FieldsConfig { allow: None, deny: None } => FieldRule::All,
                };
                grants.subscribe.insert(t.clone(), rule);
            }
            policy.partners.insert(id.clone(), grants);
        }
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(problems)
        }
    }

    /// The partner a certificate identity (subject common name) belongs to.
    pub fn partner_for_identity(&self, identity: &str) -> Option<&str> {
        self.identities.get(identity).map(String::as_str)
    }

    /// The partner with OIN `oin` (`[partners.<id>] oin`).
    pub fn partner_for_oin(&self, oin: &str) -> Option<&str> {
        self.oins.get(oin).map(String::as_str)
    }

    /// May publish consent forms (`[access] consent_registrars`).
    pub fn is_consent_registrar(&self, partner: &str) -> bool {
        self.consent_registrars.contains(partner)
    }

    /// Records a consent event in `book` when a consent registrar published it (the form
    /// then belongs to it, see [`ConsentBook::record`]); returns whether it was taken.
    /// Every consent book is fed through here, so a form from anyone else never counts.
    pub fn record_consent(&self, book: &mut ConsentBook, event: &EventFacts<'_>) -> bool {
        event.event_type == CONSENT_TYPE
            && self.is_consent_registrar(event.source)
            && book.record(event.subject, event.source, event.data)
    }

    pub fn is_partner(&self, partner: &str) -> bool {
        self.partners.contains_key(partner)
    }

    pub fn may_publish(&self, partner: &str, event_type: &str) -> bool {
        self.partners.get(partner).is_some_and(|g| g.publish.contains(event_type))
    }

    /// The field rule for `partner` receiving `event_type`, `None` when not entitled.
    pub fn subscription(&self, partner: &str, event_type: &str) -> Option<&FieldRule> {
        self.partners.get(partner)?.subscribe.get(event_type)
    }

    /// The types `partner` may receive.
    pub fn subscribable(&self, partner: &str) -> Vec<String> {
        self.partners.get(partner).map(|g| g.subscribe.keys().cloned().collect()).unwrap_or_default()
    }

    /// The partners entitled to receive `event_type`.
    pub fn recipients_of(&self, event_type: &str) -> Vec<String> {
        self.partners.iter().filter(|(_, g)| g.subscribe.contains_key(event_type)).map(|(p, _)| p.clone()).collect()
    }

    /// Reads every partner's recorded denials.
    pub fn is_auditor(&self, partner: &str) -> bool {
        self.auditors.contains(partner)
    }

    /// May export the whole message log, as stored.
    pub fn may_export(&self, partner: &str) -> bool {
        self.exporters.contains(partner)
    }

    /// May export the message log pseudonymised (an integration tester).
    pub fn may_export_pseudonymised(&self, partner: &str) -> bool {
        self.testers.contains(partner)
    }

    /// Reads every partner's quality figures; the others read their own.
    pub fn reads_all_quality(&self, partner: &str) -> bool {
        self.quality_readers.contains(partner)
    }

    /// A quality digest is about one partner (its subject): only that partner and the
    /// quality readers receive it, whatever their subscriptions grant.
    pub fn may_read_digest(&self, partner: &str, subject: &str) -> bool {
        partner == subject || self.reads_all_quality(partner)
    }

    /// Whether `partner` may subscribe to `types` (none: everything it may receive). The
    /// digest type needs no grant: a partner's own digests are about itself.
    pub fn check_subscription(&self, partner: &str, types: &[String]) -> Result<(), SubscribeRefusal> {
        let granted = self.partners.get(partner).map(|g| &g.subscribe);
        if types.is_empty() && granted.is_none_or(BTreeMap::is_empty) {
            return Err(SubscribeRefusal::NoGrants);
        }
        let refused: Vec<String> = types
            .iter()
            .filter(|t| t.as_str() != DIGEST_TYPE && !granted.is_some_and(|g| g.contains_key(t.as_str())))
            .cloned()
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(SubscribeRefusal::NotGranted(refused))
        }
    }

    /// Whether events of `event_type` may carry medical data (so their consent state
    /// matters): a medical type, or a type with medical fields.
    pub fn may_be_medical(&self, event_type: &str) -> bool {
        self.medical_types.contains(event_type) || self.medical_fields.contains_key(event_type)
    }

    /// Whether `data` (as a subscriber sees it) is medical data.
    pub fn is_medical(&self, event_type: &str, data: &Value) -> bool {
        self.medical_types.contains(event_type)
            || self.medical_fields.get(event_type).is_some_and(|ps| ps.iter().any(|p| p.present_in(data)))
    }

    /// One stored event as `partner` may see it, with consent judged at `at` (Unix µs: the
    /// event's receive time, or the releasing consent's). Medical data goes only to the
    /// partner it is addressed to (a medical type must name one), under the consent it
    /// names, while that consent covers the partner; its publisher always gets it back.
    pub fn view(&self, partner: &str, event: &EventFacts<'_>, book: &ConsentBook, at: i64) -> Verdict {
        let Some(rule) = self.subscription(partner, event.event_type) else { return Verdict::NotEntitled };
        let (data, redacted) = redact(event.data, rule);
        if event.source != partner && self.is_medical(event.event_type, &data) {
            let checks = self.medical_checks(partner, event, book, at);
            if !checks.addressed {
                return Verdict::NotAddressed;
            }
            if let Err(reason) = checks.coverage {
                return Verdict::Withhold(reason);
            }
        }
        Verdict::Deliver { data, redacted }
    }

    /// What the medical rules find for `partner` and `event` at `at`, each check on its
    /// own (the addressee and named consent are read from the stored payload, never from a
    /// subscriber's redacted view of it).
    pub fn medical_checks(&self, partner: &str, event: &EventFacts<'_>, book: &ConsentBook, at: i64) -> MedicalChecks {
        let text = |pointer: &str| event.data.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        let addressee = text(ADDRESSEE);
        let consent_id = text(NAMED_CONSENT);
        // A medical type is a file for one care professional: without an addressee it is
        // for nobody. Medical fields in another type bind to an addressee when it names one.
        let addressed = match &addressee {
            Some(a) => a == partner,
            None => !self.medical_types.contains(event.event_type),
        };
        let coverage = book.coverage(event.subject, consent_id.as_deref(), partner, at);
        let consent_on_record = !matches!(coverage, Err(Uncovered::NoConsent | Uncovered::NamedConsentMissing));
        MedicalChecks { addressee, addressed, consent_id, consent_on_record, coverage }
    }

    /// The completeness metadata of an event as `partner` may see it: of the schema's
    /// `expected` fields only those its field rule for `event_type` shows count, so a
    /// subscriber never learns whether a field hidden from it was filled. Returns the score
    /// over the visible expected fields (1.0 when none is visible) and the visible missing
    /// ones.
    pub fn visible_completeness(
        &self,
        partner: &str,
        event_type: &str,
        expected: &[String],
        missing: &[String],
    ) -> (f64, Vec<String>) {
        let shown = |p: &String| self.subscription(partner, event_type).is_some_and(|rule| rule.shows(p));
        let visible = expected.iter().filter(|p| shown(p)).count();
        let missing: Vec<String> = missing.iter().filter(|p| shown(p)).cloned().collect();
        let score = if visible == 0 { 1.0 } else { (visible - missing.len()) as f64 / visible as f64 };
        (score, missing)
    }
}

impl FieldRule {
    /// Whether a subscriber under this rule sees the whole field at `pointer` (so that its
    /// absence tells it nothing it could not see itself).
    pub fn shows(&self, pointer: &str) -> bool {
        let under = |p: &Pointer| pointer == p.as_str() || pointer.starts_with(&format!("{}/", p.as_str()));
        match self {
            FieldRule::All => true,
            FieldRule::Allow(list) => pointer == "/vNumber" || list.iter().any(under),
            FieldRule::Deny(list) => !list.iter().any(|p| under(p) || p.as_str().starts_with(&format!("{pointer}/"))),
        }
    }
}

/// An OIN: exactly 20 digits.
pub fn is_oin(text: &str) -> bool {
    text.len() == 20 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas(t: &str) -> Vec<Value> {
        match t {
            "transport-status" => vec![json!({"properties": {"vNumber": {}, "status": {},
                "riskAssessment": {"properties": {"level": {}}}}})],
            "medical-file-transfer" => vec![json!({"properties": {"vNumber": {}, "fitToFly": {}}})],
            "medical-transfer-consent" => vec![json!({"properties": {"vNumber": {}, "consentId": {}}})],
            _ => vec![],
        }
    }

    /// A stored event of case "1" published by "src".
    fn facts<'a>(event_type: &'a str, data: &'a Value) -> EventFacts<'a> {
        EventFacts { sequence: 1, event_type, source: "src", subject: "1", received_at_micros: 0, data }
    }

    fn parse(text: &str) -> (AccessConfig, BTreeMap<String, PartnerConfig>) {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default)]
            access: AccessConfig,
            #[serde(default)]
            partners: BTreeMap<String, PartnerConfig>,
        }
        let t: T = serde_json::from_str(text).unwrap();
        (t.access, t.partners)
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_partner_type_and_pointer() {
        let (access, partners) = parse(
            r#"{"access": {"auditors": ["nobody"], "medical_types": ["x-ray"], "consent_registrars": ["dvo", "gza"]},
                "partners": {
                  "dvo": {"publish": ["luggage"], "subscribe": {"transport-status": {"deny": ["/riskAssessment/score", "status"]}}},
                  "coa": {"identity": "dvo", "oin": "123", "subscribe": {"transport-status": {"allow": ["/nope"], "deny": []}, "parcels": {}}}
                }}"#,
        );
        let problems = Policy::compile(&access, &partners, &schemas).unwrap_err();
        let all = problems.join("\n");
        for needle in [
            "access.auditors: \"nobody\"",
            "access.medical_types: unknown event type \"x-ray\"",
            "partners.dvo.publish: unknown event type \"luggage\"",
            "partners.dvo.subscribe.transport-status: pointer /riskAssessment/score does not exist in the schema of transport-status",
            "partners.dvo.subscribe.transport-status: \"status\" is not a JSON pointer",
            "partners.coa.subscribe.transport-status: give allow or deny, not both",
            "partners.coa.subscribe.parcels: unknown event type \"parcels\"",
            "partners.dvo.identity: \"dvo\" is already the identity of partner coa",
            "access.consent_registrars: \"gza\" is not a partner in [partners]",
            "partners.coa.oin: \"123\" is not an OIN (20 digits)",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert_eq!(problems.len(), 10, "{all}");
    }

    #[test]
    fn deny_by_default_and_views() {
        let (access, partners) = parse(
            r#"{"access": {"auditors": [], "consent_registrars": []}, "partners": {
                  "dvo": {"publish": ["transport-status"], "subscribe": {"transport-status": {"allow": ["/status"]}}},
                  "dji": {"subscribe": {"medical-file-transfer": {}}},
                  "ind": {}
                }}"#,
        );
        let policy = Policy::compile(&access, &partners, &schemas).unwrap();
        assert!(policy.may_publish("dvo", "transport-status"));
        assert!(!policy.may_publish("dji", "transport-status"));
        assert!(!policy.may_publish("stranger", "transport-status"));
        assert!(policy.subscribable("ind").is_empty());
        let book = ConsentBook::default();
        let ts = json!({"vNumber": "1", "status": "planned", "riskAssessment": {"level": "low"}});
        assert_eq!(
            policy.view("dvo", &facts("transport-status", &ts), &book, 0),
            Verdict::Deliver {
                data: json!({"vNumber": "1", "status": "planned"}),
                redacted: vec!["/riskAssessment".into()]
            }
        );
        assert_eq!(policy.view("ind", &facts("transport-status", &ts), &book, 0), Verdict::NotEntitled);
        let med = json!({"vNumber": "1", "fitToFly": "fit", "consentId": "c",
                         "toCareProfessional": {"partner": "dji", "role": "r"}});
        assert_eq!(
            policy.view("dji", &facts("medical-file-transfer", &med), &book, 0),
            Verdict::Withhold(Uncovered::NoConsent)
        );
    }

    #[test]
    fn medical_fields_gate_only_subscribers_who_would_see_them() {
        let (access, partners) = parse(
            r#"{"access": {"auditors": [], "consent_registrars": [], "medical_types": [], "medical_fields": {"transport-status": ["/riskAssessment/level"]}},
                "partners": {
                  "a": {"subscribe": {"transport-status": {}}},
                  "b": {"subscribe": {"transport-status": {"deny": ["/riskAssessment"]}}}
                }}"#,
        );
        let policy = Policy::compile(&access, &partners, &schemas).unwrap();
        let ts = json!({"vNumber": "1", "status": "planned", "riskAssessment": {"level": "low"}});
        let book = ConsentBook::default();
        assert_eq!(
            policy.view("a", &facts("transport-status", &ts), &book, 0),
            Verdict::Withhold(Uncovered::NoConsent)
        );
        assert!(matches!(policy.view("b", &facts("transport-status", &ts), &book, 0), Verdict::Deliver { .. }));
    }

    #[test]
    fn medical_files_go_only_to_their_addressee_under_the_consent_they_name() {
        let (access, partners) = parse(
            r#"{"access": {"auditors": [], "consent_registrars": ["gza", "dji"]}, "partners": {
                  "gza": {"publish": ["medical-file-transfer"], "subscribe": {"medical-file-transfer": {}}},
                  "dji": {"subscribe": {"medical-file-transfer": {}}},
                  "kmar": {"subscribe": {"medical-file-transfer": {"deny": ["/fitToFly"]}}}
                }}"#,
        );
        let policy = Policy::compile(&access, &partners, &schemas).unwrap();
        let consent = |id: &str, to: &str| {
            json!({"vNumber": "1", "consentId": id, "given": true, "recipients": [{"partner": to, "role": "r"}],
                   "signedAt": "1970-01-01T00:00:00Z"})
        };
        let mut book = ConsentBook::default();
        let record = |book: &mut ConsentBook, source, data: &Value| {
            policy.record_consent(book, &EventFacts { source, ..facts(CONSENT_TYPE, data) })
        };
        assert!(record(&mut book, "gza", &consent("x", "kmar")));
        assert!(record(&mut book, "dji", &consent("y", "dji")));
        assert!(!record(&mut book, "kmar", &consent("z", "kmar")), "kmar registers no consent");
        let file = json!({"vNumber": "1", "consentId": "x", "fitToFly": "fit",
                          "toCareProfessional": {"partner": "kmar", "role": "r"}});
        let mft = EventFacts { source: "gza", ..facts("medical-file-transfer", &file) };
        assert!(matches!(policy.view("kmar", &mft, &book, 1), Verdict::Deliver { .. }));
        assert_eq!(policy.view("dji", &mft, &book, 1), Verdict::NotAddressed, "covered by y, but not the addressee");
        assert!(matches!(policy.view("gza", &mft, &book, 1), Verdict::Deliver { .. }), "the publisher gets its own");
        let under_y = json!({"vNumber": "1", "consentId": "y", "toCareProfessional": {"partner": "kmar", "role": "r"}});
        let mft = EventFacts { source: "gza", ..facts("medical-file-transfer", &under_y) };
        assert_eq!(policy.view("kmar", &mft, &book, 1), Verdict::Withhold(Uncovered::RecipientNotListed));
        let checks = policy.medical_checks("kmar", &mft, &book, 1);
        assert!(checks.addressed && checks.consent_on_record);
        assert_eq!(checks.consent_id.as_deref(), Some("y"));
        let nobody = json!({"vNumber": "1", "consentId": "x"});
        let mft = EventFacts { source: "gza", ..facts("medical-file-transfer", &nobody) };
        assert_eq!(policy.view("kmar", &mft, &book, 1), Verdict::NotAddressed, "a file without addressee");
    }

    #[test]
    fn completeness_counts_only_the_fields_a_subscriber_sees() {
        let (access, partners) = parse(
            r#"{"access": {"auditors": [], "consent_registrars": []}, "partners": {
                  "a": {"subscribe": {"transport-status": {"allow": ["/status"]}}},
                  "b": {"subscribe": {"transport-status": {"deny": ["/riskAssessment/level"]}}},
                  "c": {"subscribe": {"transport-status": {}}}
                }}"#,
        );
        let policy = Policy::compile(&access, &partners, &schemas).unwrap();
        let expected = vec!["/status".to_owned(), "/riskAssessment".to_owned()];
        let missing = vec!["/riskAssessment".to_owned()];
        assert_eq!(policy.visible_completeness("a", "transport-status", &expected, &missing), (1.0, vec![]));
        assert_eq!(policy.visible_completeness("b", "transport-status", &expected, &missing), (1.0, vec![]));
        assert_eq!(policy.visible_completeness("c", "transport-status", &expected, &missing), (0.5, missing.clone()));
        assert_eq!(policy.visible_completeness("a", "transport-status", &missing, &missing), (1.0, vec![]));
    }
}
