//! Conformance to the NL GOV profile for CloudEvents, read from every output form: the gRPC
//! delivery, the CLI's NDJSON, a Kafka record read by a plain consumer, and an exported
//! message-log line. Each must carry a reverse-DNS type, a string-sortable `sequence`
//! with `sequencetype`, a non-empty id and source (the partner's OIN URN where
//! configured), specversion 1.0, the publisher's time only when it gave one, the
//! publisher's extensions unchanged, and the publisher's trace continued with a span of
//! its own. Needs the broker of `tests/run`.

mod common;

use std::process::{Command, Stdio};

use common::kafka::{read_topic, record_key_file, shared_broker, unique_prefix};
use common::*;
use loket_server::proto::{subscribe_request::Start, Earliest, PublishRequest, SubscribeRequest};
use serde_json::Value;

const OIN: &str = "00000001003214345000";
const URN: &str = "urn:nld:oin:00000001003214345000:systeem:vervoersplanning";
/// The publisher's trace: its trace id and the span that published.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PUBLISHER_SPAN: &str = "00f067aa0ba902b7";
const DATAREF: &str = "https://dvo.example/dossiers/1000000001?versie=2";

/// The shipped partner policy, with an OIN and system name for dvo.
fn partners_with_dvo_oin() -> String {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/loket.toml")).unwrap();
    let mut out = String::new();
    let mut inside = false;
    for line in shipped.lines() {
        if line.starts_with('[') {
            inside = line.starts_with("[partners.");
        }
        if inside {
            out.push_str(line);
            out.push('\n');
            if line == "[partners.dvo]" {
                out.push_str(&format!("oin = \"{OIN}\"\nsystem = \"vervoersplanning\"\n"));
            }
        }
    }
    assert!(out.contains(URN.split(":systeem").next().unwrap().trim_start_matches("urn:nld:oin:")));
    out
}

/// The profile's MUSTs for one output form, given as attribute → value (`None`: absent).
fn check_profile(form: &str, get: &dyn Fn(&str) -> Option<String>) {
    let must = |name: &str| get(name).unwrap_or_else(|| panic!("{form}: {name} is missing"));
    assert_eq!(must("specversion"), "1.0", "{form}");
    assert!(!must("id").is_empty(), "{form}: id");
    assert_eq!(must("source"), URN, "{form}: source is dvo's OIN URN");
    let event_type = must("type");
    let labels: Vec<&str> = event_type.split('.').collect();
    assert!(
        labels.len() >= 3
            && labels.iter().all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')),
        "{form}: type {event_type:?} is not reverse-DNS"
    );
    assert_eq!(event_type, "nl.vreemdelingenketen.transport-status", "{form}");
    let sequence = must("sequence");
    assert!(sequence.len() == 20 && sequence.bytes().all(|b| b.is_ascii_digit()), "{form}: sequence {sequence:?}");
    assert_eq!(must("sequencetype"), "DecimalU64", "{form}");
    assert_eq!(get("time"), None, "{form}: no publisher's time, so no time");
    assert!(must("receivedat").ends_with('Z'), "{form}: receivedat");
    assert_eq!(must("dataref"), DATAREF, "{form}: the publisher's extension, unchanged");
    let traceparent = must("traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[1]), (4, "00", TRACE_ID), "{form}: {traceparent}");
    assert!(parts[2].len() == 16 && parts[2] != PUBLISHER_SPAN, "{form}: a span of the gateway's: {traceparent}");
}

fn string(v: &Value, name: &str) -> Option<String> {
    v.get(name).map(|v| v.as_str().unwrap_or_else(|| panic!("{name} is not a string: {v}")).to_owned())
}

fn loket(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loket")).args(args).stdin(Stdio::null()).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_output_form_follows_the_nl_gov_profile() {
    let brokers = shared_broker();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let no_handovers = dir.path().join("no-handovers").display().to_string();
    let toml = format!(
        "[kafka]\nbrokers = {brokers:?}\ntopic_prefix = {prefix:?}\npartitions = 1\nrecord_key_file = {:?}\n\
         [quality]\nchain_dir = {no_handovers:?}\n{}",
        record_key_file(),
        partners_with_dvo_oin()
    );
    let gw = Gateway::start_in(dir.path(), &toml).await;
    let mut dvo = gw.client("dvo").await;

    // Published by its URN and the short type, with a dataref and the publisher's trace in
    // the gRPC metadata.
    let mut event = event(URN, "transport-status", "ts-1", &example_for("transport-status", "1000000001"));
    event.extensions.insert("dataref".into(), DATAREF.into());
    let mut request = tonic::Request::new(PublishRequest { event: Some(event.clone()) });
    let traceparent = format!("00-{TRACE_ID}-{PUBLISHER_SPAN}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    let reply = dvo.publish(request).await.unwrap().into_inner();
    assert_eq!(reply.sequence, 1);

    // A publisher cannot set what loket owns: each is named by its field path.
    for owned in ["completeness", "sequence", "sequencetype", "receivedat", "released", "redacted"] {
        let mut spoof = event.clone();
        spoof.id = format!("spoof-{owned}");
        spoof.extensions.insert(owned.into(), "1".into());
        let status = publish(&mut dvo, spoof).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{owned}");
        assert_eq!(violation_fields(&status), [format!("@extensions.{owned}")], "{owned}");
        assert_eq!(reason(&status), "INVALID_ENVELOPE");
    }

    // 1. The gRPC delivery, to a subscriber that asks by the reverse-DNS name.
    let mut dtv = gw.client("dtv").await;
    let request = SubscribeRequest {
        types: vec!["nl.vreemdelingenketen.transport-status".into()],
        start: Some(Start::Earliest(Earliest {})),
        name: String::new(),
        limit: 1,
    };
    let mut stream = dtv.subscribe(request).await.unwrap().into_inner();
    let delivery = stream.message().await.unwrap().expect("a delivery");
    let e = delivery.event.clone().unwrap();
    let grpc = |name: &str| match name {
        "specversion" => Some(e.specversion.clone()),
        "id" => Some(e.id.clone()),
        "source" => Some(e.source.clone()),
        "type" => Some(e.r#type.clone()),
        "time" => e.time.as_ref().map(|t| format!("{t:?}")),
        other => e.extensions.get(other).cloned(),
    };
    check_profile("gRPC delivery", &grpc);

    // 2. NDJSON: the CLI's subscription output.
    let certs = gw.certs_dir().display().to_string();
    let url = gw.url();
    let out = loket(&["subscribe", "--server", &url, "--certs", &certs, "--as", "dtv", "--limit", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    check_profile("NDJSON subscription line", &|name| string(&line, name));

    // 3. The Kafka record on dtv's delivery topic, as a plain consumer reads it.
    let records = read_topic(&brokers, &format!("{prefix}delivery.dtv"), 1);
    let record = records.iter().find(|r| r.headers.get("ce_id").is_some_and(|id| id == "ts-1")).unwrap();
    let kafka = |name: &str| match name {
        "specversion" | "id" | "source" | "type" | "time" | "sequence" | "sequencetype" | "receivedat" | "dataref"
        | "traceparent" => record.headers.get(&format!("ce_{name}")).cloned(),
        _ => unreachable!(),
    };
    check_profile("Kafka record", &kafka);
    assert_eq!(record.header("content-type"), "application/json");
    // Every hop is a span of its own.
    let spans = [grpc("traceparent"), string(&line, "traceparent"), kafka("traceparent")];
    let distinct: std::collections::HashSet<_> = spans.iter().collect();
    assert_eq!(distinct.len(), 3, "{spans:?}");

    // 4. The exported message-log line: the trace as stored (the intake's span).
    let export = dir.path().join("export.ndjson");
    let export_text = export.display().to_string();
    let out = loket(&["export", "--server", &url, "--certs", &certs, "--as", "quality", "-o", &export_text]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&export).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    check_profile("export line", &|name| string(&line, name));
    assert_eq!(line["caller"], "dvo", "the partner behind the URN");
    let intake_span = string(&line, "traceparent").unwrap();
    assert!(!spans.contains(&Some(intake_span.clone())), "deliveries are spans after the intake's");
    // The line still verifies against the journal's hash chain.
    let out = loket(&["audit", "verify", "--log", &export_text]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    gw.stop().await;
}
