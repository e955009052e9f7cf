//! The publish path's checks and refusals as plain functions: no socket, no journal.

use std::collections::HashMap;
use std::sync::Arc;

use loket_domain::PartnerId;
use loket_quality::RuleSet;
use loket_schema::Registry;
use tonic::Code;
use tonic_types::StatusExt;

use super::Intake;
use crate::proto::CloudEvent;
use crate::{Config, Error};

fn intake() -> Intake {
    intake_with("")
}

/// Intake under the configuration `toml`.
fn intake_with(toml: &str) -> Intake {
    let registry = Registry::embedded().unwrap();
    let policy = Config::parse(toml, "t", &HashMap::new()).unwrap().policy(&registry).unwrap();
    let types: Vec<&str> = registry.event_types().collect();
    let rules = RuleSet::embedded(&types).unwrap();
    Intake {
        registry: Arc::new(registry),
        policy: Arc::new(policy),
        rules,
        max_event_bytes: 4096,
        claims: Default::default(),
    }
}

fn example(event_type: &str, source: &str) -> CloudEvent {
    let path = format!("{}/../../schemas/examples/{event_type}.json", env!("CARGO_MANIFEST_DIR"));
    CloudEvent {
        id: "e-1".into(),
        source: source.into(),
        r#type: event_type.into(),
        subject: "9999000001".into(),
        data: std::fs::read(path).unwrap(),
        ..CloudEvent::default()
    }
}

fn partner(id: &str) -> PartnerId {
    id.parse().unwrap()
}

#[test]
fn a_valid_event_is_admitted_re_serialised_with_its_completeness() {
    let admitted = intake().admit(&partner("dvo"), Some(&example("transport-status", "dvo"))).unwrap();
    assert_eq!(admitted.event.subject, "9999000001");
    assert_eq!(admitted.event.datacontenttype, "application/json");
    assert!(admitted.event.completeness > 0.0);
    let stored: serde_json::Value = serde_json::from_slice(&admitted.event.data).unwrap();
    assert_eq!(stored["status"], "departed");
}

#[test]
fn every_envelope_problem_is_reported_at_once() {
    let event = CloudEvent { subject: "12".into(), specversion: "0.3".into(), ..CloudEvent::default() };
    let Err(Error::InvalidEnvelope(problems)) = intake().admit(&partner("dvo"), Some(&event)) else {
        panic!("admitted")
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    for f in ["@id", "@source", "@type", "@subject", "@specversion", "@data"] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
}

#[test]
fn refusals_keep_their_kind_until_the_edge() {
    let intake = intake();
    let spoofed = intake.admit(&partner("dvo"), Some(&example("transport-status", "dtv"))).unwrap_err();
    assert_eq!((spoofed.reason(), spoofed.code()), ("SOURCE_MISMATCH", Code::PermissionDenied));
    assert_eq!(spoofed.denial_code(), Some("SOURCE_MISMATCH"));
    let ungranted = intake.admit(&partner("dvo"), Some(&example("physical-features", "dvo"))).unwrap_err();
    assert_eq!(ungranted.reason(), "TYPE_NOT_GRANTED");
    let digest = intake.admit(&partner("dvo"), Some(&example("quality-digest", "dvo"))).unwrap_err();
    assert_eq!(digest.reason(), "RESERVED_TYPE");
    let mut big = example("transport-status", "dvo");
    big.data = vec![b' '; 5000];
    let too_large = intake.admit(&partner("dvo"), Some(&big)).unwrap_err();
    assert_eq!(too_large.reason(), "PAYLOAD_TOO_LARGE");
    assert!(too_large.is_verdict() && too_large.denial_code().is_none());

    // At the edge the same value becomes a status with ErrorInfo and every violation.
    let mut invalid = example("transport-status", "dvo");
    invalid.data = br#"{"vNumber": "9999000001", "status": "teleported"}"#.to_vec();
    let refusal = intake.admit(&partner("dvo"), Some(&invalid)).unwrap_err();
    let fields: Vec<String> = refusal.violations().into_iter().map(|v| v.field).collect();
    let status = tonic::Status::from(refusal);
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, "SCHEMA_VIOLATION");
    let sent: Vec<String> = details.bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(sent, fields);
    assert!(sent.iter().any(|f| f == "/status"), "{sent:?}");
}

#[test]
fn only_registrars_publish_consent_and_only_its_registrar_amends_a_form() {
    let intake = intake();
    intake.admit(&partner("gza"), Some(&example("medical-transfer-consent", "gza"))).unwrap();
    // The same form again from its registrar (an amendment or withdrawal) is fine.
    intake.admit(&partner("gza"), Some(&example("medical-transfer-consent", "gza"))).unwrap();
    let forged = intake.admit(&partner("dji"), Some(&example("medical-transfer-consent", "dji"))).unwrap_err();
    assert_eq!((forged.reason(), forged.code()), ("CONSENT_NOT_OWNED", Code::PermissionDenied));
    assert_eq!(forged.denial_code(), Some("CONSENT_NOT_OWNED"));
    assert!(forged.is_verdict(), "journalled as a rejection");
    assert_eq!(forged.violations()[0].field, "/consentId");
    // dji may publish the type, but is no registrar under this configuration.
    let only_gza = intake_with("[access]\nconsent_registrars = [\"gza\"]\n");
    let refused = only_gza.admit(&partner("dji"), Some(&example("medical-transfer-consent", "dji"))).unwrap_err();
    assert_eq!((refused.reason(), refused.code()), ("NOT_A_CONSENT_REGISTRAR", Code::PermissionDenied));
    assert_eq!(refused.denial_code(), Some("NOT_A_CONSENT_REGISTRAR"));
}

#[test]
fn failures_inside_the_gateway_keep_their_details_in_the_log() {
    let status = tonic::Status::from(Error::Access("sled: disk on fire".into()));
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.message().contains("disk on fire"), "{}", status.message());
    assert_eq!(status.get_error_details().error_info().unwrap().reason, "ACCESS_STORE_UNAVAILABLE");
    let internal = tonic::Status::from(Error::TaskFailed("panicked at src/x.rs".into()));
    assert_eq!((internal.code(), internal.message()), (Code::Internal, "internal error"));
}
