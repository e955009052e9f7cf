//! Consent for medical data: the `medical-transfer-consent` events of each case, and
//! whether they cover a recipient at a given moment.
//!
//! The moment is always a gateway receive time (of the medical event, or of the consent
//! that releases it), never the wall clock: so every subscriber, every restart and every
//! replay reaches the same decision for the same journal.

use std::collections::HashMap;
use std::fmt;

use loket_domain::time::parse_rfc3339;
use serde_json::Value;

/// The event type that carries consent forms.
pub const CONSENT_TYPE: &str = "medical-transfer-consent";

/// One consent form as the latest event with its `consentId` states it (a withdrawal is
/// published as the same form again with `withdrawnAt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub consent_id: String,
    /// The consent registrar that published the form first: only it may amend it.
    pub registrar: String,
    pub given: bool,
    /// Partner ids of the recipients, sorted (a few per form: a list costs a fraction of
    /// a set, and a book holds a form per case).
    pub recipients: Vec<String>,
    /// Unix microseconds.
    pub signed_at: Option<i64>,
    pub valid_until: Option<i64>,
    pub withdrawn_at: Option<i64>,
}

/// Why a consent book does not cover a recipient; the most telling reason is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Uncovered {
    /// No consent form for the case.
    NoConsent,
    /// The medical file names a consent that is not on record for the case.
    NamedConsentMissing,
    /// The forms of the case do not name the recipient.
    RecipientNotListed,
    /// The form names the recipient but was not signed (yet) at that moment.
    NotSigned,
    /// The person refused consent.
    NotGiven,
    /// The form's validity had ended.
    Expired,
    /// The form was withdrawn.
    Withdrawn,
}

impl Uncovered {
    /// A stable code for clients and the audit log.
    pub fn code(self) -> &'static str {
        match self {
            Uncovered::NoConsent => "NO_CONSENT",
            Uncovered::NamedConsentMissing => "NAMED_CONSENT_MISSING",
            Uncovered::RecipientNotListed => "RECIPIENT_NOT_IN_CONSENT",
            Uncovered::NotSigned => "CONSENT_NOT_SIGNED",
            Uncovered::NotGiven => "CONSENT_REFUSED",
            Uncovered::Expired => "CONSENT_EXPIRED",
            Uncovered::Withdrawn => "CONSENT_WITHDRAWN",
        }
    }
}

impl fmt::Display for Uncovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Uncovered::NoConsent => "no medical-transfer-consent for the case",
            Uncovered::NamedConsentMissing => "the consent the medical file names is not on record for the case",
            Uncovered::RecipientNotListed => "the case's consent does not name this recipient",
            Uncovered::NotSigned => "the consent was not signed",
            Uncovered::NotGiven => "consent was refused",
            Uncovered::Expired => "the consent had expired",
            Uncovered::Withdrawn => "the consent was withdrawn",
        })
    }
}

fn micros(v: Option<&Value>) -> Option<i64> {
    parse_rfc3339(v?.as_str()?)
}

impl Consent {
    /// Reads a (schema-valid) `medical-transfer-consent` payload published by `registrar`;
    /// `None` without an id.
    pub fn from_data(registrar: &str, data: &Value) -> Option<Consent> {
        let consent_id = data.get("consentId")?.as_str()?.to_owned();
        let mut recipients: Vec<String> = data
            .get("recipients")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(|r| r.get("partner")?.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        recipients.sort();
        recipients.dedup();
        recipients.shrink_to_fit();
        Some(Consent {
            consent_id,
            registrar: registrar.to_owned(),
            given: data.get("given").and_then(Value::as_bool).unwrap_or(false),
            recipients,
            signed_at: micros(data.get("signedAt")),
            valid_until: micros(data.get("validUntil")),
            withdrawn_at: micros(data.get("withdrawnAt")),
        })
    }

    /// Whether this form lets `partner` receive medical data at `at` (Unix µs).
    pub fn covers(&self, partner: &str, at: i64) -> Result<(), Uncovered> {
        if self.recipients.binary_search_by(|r| r.as_str().cmp(partner)).is_err() {
            return Err(if self.given { Uncovered::RecipientNotListed } else { Uncovered::NotGiven });
        }
        if self.withdrawn_at.is_some_and(|w| w <= at) {
            return Err(Uncovered::Withdrawn);
        }
        if !self.given {
            return Err(Uncovered::NotGiven);
        }
        if self.signed_at.is_none_or(|s| s > at) {
            return Err(Uncovered::NotSigned);
        }
        if self.valid_until.is_some_and(|v| v <= at) {
            return Err(Uncovered::Expired);
        }
        Ok(())
    }
}

/// The consent forms of every case seen so far. A gateway's book holds every case with a
/// consent, so it is kept compact: a short list of forms per case, not a map.
#[derive(Debug, Clone, Default)]
pub struct ConsentBook {
    cases: HashMap<String, Vec<Consent>>,
}

impl ConsentBook {
    /// Records a consent event of `case` published by `registrar`; a later event for the
    /// same form replaces it, but only when its registrar published it: a form belongs to
    /// (registrar, `consentId`), so another partner reusing the id changes nothing. Returns
    /// whether the event was taken. (The gateway refuses such a reuse at intake; the book
    /// holds the same line so that the journal alone decides, whatever got into it.)
    pub fn record(&mut self, case: &str, registrar: &str, data: &Value) -> bool {
        let Some(consent) = Consent::from_data(registrar, data) else { return false };
        let forms = self.cases.entry(case.to_owned()).or_default();
        match forms.iter_mut().find(|f| f.consent_id == consent.consent_id) {
            Some(form) if form.registrar != consent.registrar => return false,
            Some(form) => *form = consent,
            None => {
                // Most cases have one form: no room for more until one comes.
                forms.reserve_exact(1);
                forms.push(consent);
            }
        }
        true
    }

    /// The registrar of form `consent_id` of `case`, when on record.
    pub fn registrar(&self, case: &str, consent_id: &str) -> Option<&str> {
        self.form(case, consent_id).map(|f| f.registrar.as_str())
    }

    fn form(&self, case: &str, consent_id: &str) -> Option<&Consent> {
        self.cases.get(case)?.iter().find(|f| f.consent_id == consent_id)
    }

    /// Whether `partner` may receive medical data of `case` at `at`: under the form
    /// `named` when the data names one (a medical file names its consent), else under any
    /// form of the case.
    pub fn coverage(&self, case: &str, named: Option<&str>, partner: &str, at: i64) -> Result<(), Uncovered> {
        if let Some(id) = named {
            return match self.form(case, id) {
                Some(form) => form.covers(partner, at),
                None if self.cases.contains_key(case) => Err(Uncovered::NamedConsentMissing),
                None => Err(Uncovered::NoConsent),
            };
        }
        let Some(forms) = self.cases.get(case) else { return Err(Uncovered::NoConsent) };
        let mut worst = Uncovered::NoConsent;
        for form in forms {
            match form.covers(partner, at) {
                Ok(()) => return Ok(()),
                Err(reason) => worst = worst.max(reason),
            }
        }
        Err(worst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_710_000_000_000_000; // 2024-03-09T16:00:00Z

    fn form(id: &str, recipients: &[&str]) -> Value {
        json!({"vNumber": "1", "consentId": id, "given": true,
               "recipients": recipients.iter().map(|p| json!({"partner": p, "role": "medical-service"})).collect::<Vec<_>>(),
               "signedAt": "2024-03-09T16:00:00Z", "validUntil": "2024-04-09T16:00:00Z"})
    }

    #[test]
    fn covers_listed_recipients_while_valid() {
        let mut book = ConsentBook::default();
        assert_eq!(book.coverage("c", None, "dji", T0), Err(Uncovered::NoConsent));
        book.record("c", "gza", &form("f1", &["dji"]));
        assert_eq!(book.coverage("c", None, "dji", T0), Ok(()));
        assert_eq!(book.coverage("c", None, "dji", T0 - 1), Err(Uncovered::NotSigned));
        assert_eq!(book.coverage("c", None, "kmar", T0), Err(Uncovered::RecipientNotListed));
        assert_eq!(book.coverage("other", None, "dji", T0), Err(Uncovered::NoConsent));
        let month = 31 * 24 * 3600 * 1_000_000;
        assert_eq!(book.coverage("c", None, "dji", T0 + month), Err(Uncovered::Expired));
    }

    #[test]
    fn withdrawal_and_refusal_stop_coverage() {
        let mut book = ConsentBook::default();
        book.record("c", "gza", &form("f1", &["dji"]));
        let mut withdrawn = form("f1", &["dji"]);
        withdrawn["withdrawnAt"] = json!("2024-03-10T16:00:00Z");
        book.record("c", "gza", &withdrawn);
        assert_eq!(book.coverage("c", None, "dji", T0), Ok(()), "before the withdrawal took effect");
        assert_eq!(book.coverage("c", None, "dji", T0 + 24 * 3600 * 1_000_000), Err(Uncovered::Withdrawn));
        let mut refused = form("f2", &[]);
        refused["given"] = json!(false);
        let mut other = ConsentBook::default();
        other.record("c", "gza", &refused);
        assert_eq!(other.coverage("c", None, "dji", T0), Err(Uncovered::NotGiven));
    }

    #[test]
    fn a_form_belongs_to_its_registrar_and_a_named_form_is_the_only_one_that_counts() {
        let mut book = ConsentBook::default();
        let mut withdrawn = form("c-77", &["kmar"]);
        withdrawn["withdrawnAt"] = json!("2024-03-09T17:00:00Z");
        assert!(book.record("c", "gza", &form("c-77", &["kmar"])));
        assert!(book.record("c", "gza", &withdrawn));
        // Another partner publishing the same consentId without withdrawnAt revives nothing.
        assert!(!book.record("c", "dji", &form("c-77", &["kmar"])));
        assert_eq!(book.registrar("c", "c-77"), Some("gza"));
        let later = T0 + 2 * 3600 * 1_000_000;
        assert_eq!(book.coverage("c", Some("c-77"), "kmar", later), Err(Uncovered::Withdrawn));
        // A second form naming dji covers dji for files that name it, not for files under c-77.
        assert!(book.record("c", "dji", &form("c-78", &["dji"])));
        assert_eq!(book.coverage("c", Some("c-78"), "dji", later), Ok(()));
        assert_eq!(book.coverage("c", Some("c-77"), "dji", later), Err(Uncovered::RecipientNotListed));
        assert_eq!(book.coverage("c", Some("c-79"), "dji", later), Err(Uncovered::NamedConsentMissing));
        assert_eq!(book.coverage("d", Some("c-78"), "dji", later), Err(Uncovered::NoConsent));
    }
}
