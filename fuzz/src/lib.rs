//! The fuzz targets' bodies, shared by `cargo fuzz` (fuzz_targets/) and by the plain test
//! that runs every target over the corpus (tests/fuzz_corpus.rs includes this file), so
//! both exercise the same code. A target must never panic or hang on any input; where the
//! input is accepted, it also checks what must then hold.

use std::collections::HashMap;
use std::sync::OnceLock;

use loket_messagelog::LogLine;
use loket_server::proto::{
    AckRequest, CloudEvent, DeleteSubscriptionRequest, EventStatusRequest, ExportRequest, ListDenialsRequest,
    ListExportsRequest, ListSchemasRequest, ListSubscriptionsRequest, PublishRequest, QualityReportRequest,
    StatusRequest, SubscribeRequest,
};
use loket_server::{Config, OfflineIntake};
use prost::Message;

/// The names of the targets, as directories of the corpus and binaries of `cargo fuzz`.
pub const TARGETS: &[&str] = &["intake", "config", "export_line", "proto_requests"];

/// The intake of a gateway with the shipped configuration.
fn offline() -> &'static OfflineIntake {
    static INTAKE: OnceLock<OfflineIntake> = OnceLock::new();
    INTAKE.get_or_init(|| {
        let config = Config::parse("", "fuzz", &HashMap::new()).expect("the default configuration loads");
        OfflineIntake::new(&config).expect("the shipped schemas, rules and policy load")
    })
}

/// Runs the target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "intake" => intake(data),
        "config" => config(data),
        "export_line" => export_line(data),
        "proto_requests" => proto_requests(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// Envelope + payload intake. Input: a header line `caller type id subject dataschema
/// name=value…` (space-separated, later fields optional; the `name=value` fields are
/// extension attributes), then the payload bytes.
pub fn intake(data: &[u8]) {
    let (header, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let header = String::from_utf8_lossy(header);
    let mut fields = header.split(' ');
    let mut next = || fields.next().unwrap_or_default().to_owned();
    let caller = next();
    let event = CloudEvent {
        source: caller.clone(),
        r#type: next(),
        id: next(),
        subject: next(),
        dataschema: next(),
        time: None,
        datacontenttype: "application/json".to_owned(),
        data: payload.to_vec(),
        specversion: "1.0".to_owned(),
        extensions: fields
            .filter_map(|f| f.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
    };
    check_event(&caller, &event);
}

/// The intake's verdict, and that it is the same the second time (intake is a function
/// of the event and the configuration).
fn check_event(caller: &str, event: &CloudEvent) {
    let first = offline().check(caller, Some(event));
    let again = offline().check(caller, Some(event));
    assert_eq!(first.is_ok(), again.is_ok(), "intake is deterministic");
    if let Err(refusal) = first {
        // Every refusal maps to a status with a stable reason (the edge must not panic).
        let reason = refusal.reason();
        assert!(!reason.is_empty());
        drop(tonic::Status::from(refusal));
    }
}

/// The configuration parser and the policy compiled from it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::parse(text, "fuzz", &HashMap::new()) else { return };
    static REGISTRY: OnceLock<loket_schema::Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(|| loket_schema::Registry::embedded().expect("built-in schemas"));
    let _ = config.policy(registry);
}

/// The export-line parser (what `replay` and `audit verify --log` read), and the event a
/// parsed line replays as.
pub fn export_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(line) = LogLine::parse(text) else { return };
    let _ = line.received_micros().expect("parse checked receivedat");
    if let Ok(event) = line.cloud_event() {
        // What replay would then publish goes through intake like any event.
        check_event(line.publisher(), &event);
    }
    let again = LogLine::parse(&line.to_json()).expect("a parsed line serialises to a parseable one");
    assert_eq!(again.to_json(), line.to_json(), "serialising is stable");
}

/// Protobuf decoding of every request message of the Gateway service; the first byte
/// picks the message. A decoded publish request goes on to intake, as on the wire.
pub fn proto_requests(data: &[u8]) {
    let Some((which, bytes)) = data.split_first() else { return };
    fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
        let message = M::decode(bytes).ok()?;
        let again = M::decode(message.encode_to_vec().as_slice()).expect("re-encoded message decodes");
        assert_eq!(again, message, "decode ∘ encode is the identity");
        Some(message)
    }
    match which % 12 {
        0 => {
            if let Some(request) = roundtrip::<PublishRequest>(bytes) {
                let caller = request.event.as_ref().map(|e| e.source.clone()).unwrap_or_default();
                if let Some(event) = &request.event {
                    check_event(&caller, event);
                }
            }
        }
        1 => drop(roundtrip::<SubscribeRequest>(bytes)),
        2 => drop(roundtrip::<AckRequest>(bytes)),
        3 => drop(roundtrip::<EventStatusRequest>(bytes)),
        4 => drop(roundtrip::<ListDenialsRequest>(bytes)),
        5 => drop(roundtrip::<ListSchemasRequest>(bytes)),
        6 => drop(roundtrip::<ExportRequest>(bytes)),
        7 => drop(roundtrip::<ListExportsRequest>(bytes)),
        8 => drop(roundtrip::<QualityReportRequest>(bytes)),
        9 => drop(roundtrip::<StatusRequest>(bytes)),
        10 => drop(roundtrip::<ListSubscriptionsRequest>(bytes)),
        _ => drop(roundtrip::<DeleteSubscriptionRequest>(bytes)),
    }
}
