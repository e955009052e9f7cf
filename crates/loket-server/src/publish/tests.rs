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
use crate::trace::CallTrace;
use crate::{Config, Error};

fn intake() -> Intake {
    intake_with("")
}

/// Intake under the configuration `toml`.
fn intake_with(toml: &str) -> Intake {
    let registry = Registry::embedded().unwrap();
    let config = Config::parse(toml, "t", &HashMap::new()).unwrap();
    let policy = config.policy(&registry).unwrap();
    let types: Vec<&str> = registry.event_types().collect();
    let rules = RuleSet::embedded(&types).unwrap();
    Intake {
        registry: Arc::new(registry),
        policy: Arc::new(policy),
        rules,
        max_event_bytes: 4096,
        claims: Default::default(),
        profile: Arc::new(config.profile().unwrap()),
    }
}

/// `event` from `partner`, without trace context in the call.
fn admit(intake: &Intake, partner_id: &str, event: &CloudEvent) -> Result<super::Admitted, Error> {
    intake.admit(&partner(partner_id), Some(event), &CallTrace::default(), &tracing::Span::none())
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
    let admitted = admit(&intake(), "dvo", &example("transport-status", "dvo")).unwrap();
    assert_eq!(admitted.event.subject, "9999000001");
    assert_eq!(admitted.event.datacontenttype, "application/json");
    assert!(admitted.event.completeness > 0.0);
    let stored: serde_json::Value = serde_json::from_slice(&admitted.event.data).unwrap();
    assert_eq!(stored["status"], "departed");
}

#[test]
fn every_envelope_problem_is_reported_at_once() {
    let event = CloudEvent { subject: "12".into(), specversion: "0.3".into(), ..CloudEvent::default() };
    let Err(Error::InvalidEnvelope(problems)) = admit(&intake(), "dvo", &event) else { panic!("admitted") };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    for f in ["@id", "@source", "@type", "@subject", "@specversion", "@data"] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
}

#[test]
fn refusals_keep_their_kind_until_the_edge() {
    let intake = intake();
    let spoofed = admit(&intake, "dvo", &example("transport-status", "dtv")).unwrap_err();
    assert_eq!((spoofed.reason(), spoofed.code()), ("SOURCE_MISMATCH", Code::PermissionDenied));
    assert_eq!(spoofed.denial_code(), Some("SOURCE_MISMATCH"));
    let ungranted = admit(&intake, "dvo", &example("physical-features", "dvo")).unwrap_err();
    assert_eq!(ungranted.reason(), "TYPE_NOT_GRANTED");
    let digest = admit(&intake, "dvo", &example("quality-digest", "dvo")).unwrap_err();
    assert_eq!(digest.reason(), "RESERVED_TYPE");
    let mut big = example("transport-status", "dvo");
    big.data = vec![b' '; 5000];
    let too_large = admit(&intake, "dvo", &big).unwrap_err();
    assert_eq!(too_large.reason(), "PAYLOAD_TOO_LARGE");
    assert!(too_large.is_verdict() && too_large.denial_code().is_none());

    // At the edge the same value becomes a status with ErrorInfo and every violation.
    let mut invalid = example("transport-status", "dvo");
    invalid.data = br#"{"vNumber": "9999000001", "status": "teleported"}"#.to_vec();
    let refusal = admit(&intake, "dvo", &invalid).unwrap_err();
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
    admit(&intake, "gza", &example("medical-transfer-consent", "gza")).unwrap();
    // The same form again from its registrar (an amendment or withdrawal) is fine.
    admit(&intake, "gza", &example("medical-transfer-consent", "gza")).unwrap();
    let forged = admit(&intake, "dji", &example("medical-transfer-consent", "dji")).unwrap_err();
    assert_eq!((forged.reason(), forged.code()), ("CONSENT_NOT_OWNED", Code::PermissionDenied));
    assert_eq!(forged.denial_code(), Some("CONSENT_NOT_OWNED"));
    assert!(forged.is_verdict(), "journalled as a rejection");
    assert_eq!(forged.violations()[0].field, "/consentId");
    // dji may publish the type, but is no registrar under this configuration.
    let only_gza = intake_with("[access]\nconsent_registrars = [\"gza\"]\n");
    let refused = admit(&only_gza, "dji", &example("medical-transfer-consent", "dji")).unwrap_err();
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

#[test]
fn canonical_types_and_source_urns_are_accepted_and_stored_short() {
    let config = concat!(
        "[access]\nauditors = []\nconsent_registrars = []\n[export]\nauditors = []\n[quality]\nreaders = []\n",
        "[partners.dvo]\noin = \"00000001003214345000\"\nsystem = \"vervoer\"\npublish = [\"transport-status\"]\n",
    );
    let intake = intake_with(config);
    let mut event = example("transport-status", "urn:nld:oin:00000001003214345000:systeem:vervoer");
    event.r#type = "nl.vreemdelingenketen.transport-status".into();
    let admitted = admit(&intake, "dvo", &event).unwrap();
    assert_eq!((admitted.event.event_type.as_str(), admitted.event.source.as_str()), ("transport-status", "dvo"));
    // Another partner's URN is still someone else's source.
    event.source = "urn:nld:oin:00000001003214345000:systeem:ander".into();
    let spoofed = admit(&intake, "dvo", &event).unwrap_err();
    assert!(matches!(spoofed, Error::SourceMismatch { .. }), "{spoofed:?}");
}

#[test]
fn extensions_are_stored_and_loket_owned_ones_refused_by_name() {
    let intake = intake();
    let mut event = example("transport-status", "dvo");
    event.extensions.insert("dataref".into(), "https://dvo.example/dossier/1".into());
    let admitted = admit(&intake, "dvo", &event).unwrap();
    assert_eq!(admitted.event.extensions.get("dataref").map(String::as_str), Some("https://dvo.example/dossier/1"));
    for owned in ["completeness", "sequence", "receivedat", "sequencetype", "released", "time"] {
        let mut spoof = event.clone();
        spoof.extensions.insert(owned.into(), "1".into());
        let Err(Error::InvalidEnvelope(problems)) = admit(&intake, "dvo", &spoof) else {
            panic!("{owned} was accepted");
        };
        assert_eq!(problems[0].field, format!("@extensions.{owned}"));
        let status = tonic::Status::from(Error::InvalidEnvelope(problems));
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    event.extensions.insert("Data-Ref".into(), "x".into());
    let refused = admit(&intake, "dvo", &event).unwrap_err();
    assert!(matches!(refused, Error::InvalidEnvelope(ref p) if p[0].field == "@extensions.Data-Ref"), "{refused:?}");
}

#[test]
fn the_trace_continues_from_the_extension_or_the_metadata() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let intake = intake();
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("traceparent", parent.parse().unwrap());
    let call = CallTrace::of(&metadata);
    let with_call = |event: &CloudEvent| intake.admit(&partner("dvo"), Some(event), &call, &tracing::Span::none());
    let admitted = with_call(&example("transport-status", "dvo")).unwrap();
    let stored = loket_domain::TraceParent::parse(&admitted.event.traceparent).unwrap();
    assert_eq!(stored.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(stored.span_id_hex(), "00f067aa0ba902b7", "the intake is a span of its own");
    let mut event = example("transport-status", "dvo");
    event.extensions.insert("traceparent".into(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    let admitted = with_call(&event).unwrap();
    assert!(admitted.event.traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
    assert!(!admitted.event.extensions.contains_key("traceparent"), "stored as the trace, not an extension");
    event.extensions.insert("traceparent".into(), "garbage".into());
    let refused = with_call(&event).unwrap_err();
    assert!(matches!(refused, Error::InvalidEnvelope(ref p) if p[0].field == "@extensions.traceparent"));
    // Without any, a new trace starts.
    let fresh = admit(&intake, "dvo", &example("transport-status", "dvo"));
    assert!(loket_domain::TraceParent::parse(&fresh.unwrap().event.traceparent).is_some());
}
