//! The access part of the gateway configuration, as written in TOML.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Gateway-wide access settings (`[access]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Partners that may read every partner's recorded denials (`loket audit denials`);
    /// every other partner sees only its own.
    #[serde(default = "default_auditors")]
    pub auditors: Vec<String>,
    /// Event types whose every event is medical data: delivered to a recipient only while a
    /// valid `medical-transfer-consent` for the case covers it.
    #[serde(default = "default_medical_types")]
    pub medical_types: Vec<String>,
    /// Per event type, JSON pointers of fields that are medical data: an event in which a
    /// subscriber would see one of them is consent-gated like a medical type.
    #[serde(default)]
    pub medical_fields: BTreeMap<String, Vec<String>>,
    /// Partners that register consent forms: only they may publish
    /// `medical-transfer-consent`, and a form (its `consentId`) belongs to the registrar
    /// that published it first: only that registrar may amend or withdraw it.
    #[serde(default = "default_consent_registrars")]
    pub consent_registrars: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            auditors: default_auditors(),
            medical_types: default_medical_types(),
            medical_fields: BTreeMap::new(),
            consent_registrars: default_consent_registrars(),
        }
    }
}

fn default_consent_registrars() -> Vec<String> {
    vec!["dji".to_owned(), "gza".to_owned()]
}

fn default_auditors() -> Vec<String> {
    vec!["quality".to_owned()]
}

fn default_medical_types() -> Vec<String> {
    vec!["medical-file-transfer".to_owned()]
}

/// One partner's grants (`[partners.<id>]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// The subject common name of the partner's client certificate (with `[tls] identity
    /// = "cn"`); the partner id when absent.
    pub identity: Option<String>,
    /// The partner's OIN (Organisatie-identificatienummer, 20 digits): with `[tls]
    /// identity = "oin"` the partner is the one whose OIN is in the certificate subject's
    /// serialNumber, whatever its common name.
    pub oin: Option<String>,
    /// The name of the partner's system that publishes (letters, digits, '.', '_', '-'):
    /// with `oin`, its events' CloudEvents `source` is `urn:nld:oin:<oin>:systeem:<system>`
    /// (the NL GOV profile); the partner id when absent. Without `oin` the source is the
    /// partner id.
    pub system: Option<String>,
    /// Event types the partner may publish.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Event types the partner may receive, each with the fields it may see.
    #[serde(default)]
    pub subscribe: BTreeMap<String, FieldsConfig>,
}

/// Which fields of a type a subscriber sees: all (neither list), only `allow`, or all but
/// `deny`. Pointers name object members; through arrays they apply to every element.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsConfig {
    /// Only these fields (and `/vNumber`, which the subject repeats anyway).
    pub allow: Option<Vec<String>>,
    /// Every field except these.
    pub deny: Option<Vec<String>>,
}

/// Partners holding a gateway-wide role that another section of the configuration names,
/// checked against `[partners]` with the rest of the policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roles {
    /// May export the whole message log (`[export] auditors`).
    pub exporters: Vec<String>,
    /// Read every partner's quality figures and digests (`[quality] readers`).
    pub quality_readers: Vec<String>,
    /// Export the message log pseudonymised (`[export] testers`).
    pub testers: Vec<String>,
}
