//! The compiled access policy: deny by default, checked against the schemas once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use loket_domain::{PartnerId, DIGEST_TYPE};

use crate::config::{AccessConfig, FieldsConfig, PartnerConfig, Roles};
use crate::consent::{ConsentBook, Uncovered};
use crate::pointer::Pointer;
use crate::redact::redact;

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
    /// The subscriber may not receive this type at all.
    NotEntitled,
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
    auditors: BTreeSet<String>,
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
        role(&roles.exporters, "export.partners", &mut policy.exporters);
        role(&roles.quality_readers, "quality.readers", &mut policy.quality_readers);

        for (id, partner) in partners {
            if id.parse::<PartnerId>().is_err() {
                problems.push(format!("partners.{id}: a partner id is 1 to 32 lowercase letters, digits or '-'"));
            }
            let identity = partner.identity.clone().unwrap_or_else(|| id.clone());
            if let Some(other) = policy.identities.insert(identity.clone(), id.clone()) {
                problems
                    .push(format!("partners.{id}.identity: {identity:?} is already the identity of partner {other}"));
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

    /// May export the message log.
    pub fn may_export(&self, partner: &str) -> bool {
        self.exporters.contains(partner)
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

    /// One stored event of `case` as `partner` may see it, with consent judged at `at`
    /// (Unix µs: the event's receive time, or the releasing consent's).
    pub fn view(
        &self,
        partner: &str,
        event_type: &str,
        case: &str,
        data: &Value,
        book: &ConsentBook,
        at: i64,
    ) -> Verdict {
        let Some(rule) = self.subscription(partner, event_type) else { return Verdict::NotEntitled };
        let (data, redacted) = redact(data, rule);
        if self.is_medical(event_type, &data) {
            if let Err(reason) = book.coverage(case, partner, at) {
                return Verdict::Withhold(reason);
            }
        }
        Verdict::Deliver { data, redacted }
    }
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
            r#"{"access": {"auditors": ["nobody"], "medical_types": ["x-ray"]},
                "partners": {
                  "dvo": {"publish": ["luggage"], "subscribe": {"transport-status": {"deny": ["/riskAssessment/score", "status"]}}},
                  "coa": {"identity": "dvo", "subscribe": {"transport-status": {"allow": ["/nope"], "deny": []}, "parcels": {}}}
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
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert_eq!(problems.len(), 8, "{all}");
    }

    #[test]
    fn deny_by_default_and_views() {
        let (access, partners) = parse(
            r#"{"access": {"auditors": []}, "partners": {
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
            policy.view("dvo", "transport-status", "1", &ts, &book, 0),
            Verdict::Deliver {
                data: json!({"vNumber": "1", "status": "planned"}),
                redacted: vec!["/riskAssessment".into()]
            }
        );
        assert_eq!(policy.view("ind", "transport-status", "1", &ts, &book, 0), Verdict::NotEntitled);
        let med = json!({"vNumber": "1", "fitToFly": "fit"});
        assert_eq!(
            policy.view("dji", "medical-file-transfer", "1", &med, &book, 0),
            Verdict::Withhold(Uncovered::NoConsent)
        );
    }

    #[test]
    fn medical_fields_gate_only_subscribers_who_would_see_them() {
        let (access, partners) = parse(
            r#"{"access": {"auditors": [], "medical_types": [], "medical_fields": {"transport-status": ["/riskAssessment/level"]}},
                "partners": {
                  "a": {"subscribe": {"transport-status": {}}},
                  "b": {"subscribe": {"transport-status": {"deny": ["/riskAssessment"]}}}
                }}"#,
        );
        let policy = Policy::compile(&access, &partners, &schemas).unwrap();
        let ts = json!({"vNumber": "1", "status": "planned", "riskAssessment": {"level": "low"}});
        let book = ConsentBook::default();
        assert_eq!(policy.view("a", "transport-status", "1", &ts, &book, 0), Verdict::Withhold(Uncovered::NoConsent));
        assert!(matches!(policy.view("b", "transport-status", "1", &ts, &book, 0), Verdict::Deliver { .. }));
    }
}
