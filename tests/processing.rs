//! The processing log (Logboek dataverwerkingen): `loket audit processing --case V` lists
//! every processing of that person's data (the publish, each delivery, each export) with
//! its trace, and nothing of another case; only auditors may ask; the log's files never
//! hold a V-number in clear.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use loket_server::proto::{subscribe_request::Start, Earliest, PublishRequest, SubscribeRequest};
use serde_json::Value;

const CASE: &str = "1000000011";
const OTHER: &str = "1000000012";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PUBLISHER_SPAN: &str = "00f067aa0ba902b7";

async fn loket(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_loket")).args(&args).stdin(Stdio::null()).output().unwrap()
    })
    .await
    .unwrap()
}

async fn audit(gw: &Gateway, partner: &str, case: &str) -> std::process::Output {
    let certs = gw.certs_dir().display().to_string();
    let args = ["audit", "processing", "--server", &gw.url(), "--certs", &certs, "--as", partner, "--case", case];
    loket(args.iter().map(|a| (*a).to_owned()).collect()).await
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_lists_every_processing_of_a_case_under_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    // The gateway's own handover findings (about the same case) are turned off: the log
    // then holds exactly what this test causes.
    let no_handovers = dir.path().join("no-handovers").display().to_string();
    let toml = format!(
        "[quality]\nchain_dir = {no_handovers:?}\n[processing.activities]\ntransport-status = \"vertrek-uitvoeren\"\n"
    );
    let gw = Gateway::start_in(&dir.path().join("data"), &toml).await;
    let mut dvo = gw.client("dvo").await;
    let mut request = tonic::Request::new(PublishRequest {
        event: Some(event("dvo", "transport-status", "ts-case", &example_for("transport-status", CASE))),
    });
    request.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-{PUBLISHER_SPAN}-01").parse().unwrap());
    let published = dvo.publish(request).await.unwrap().into_inner();
    publish(&mut dvo, event("dvo", "transport-status", "ts-other", &example_for("transport-status", OTHER)))
        .await
        .unwrap();

    for partner in ["dtv", "kmar"] {
        let request = SubscribeRequest {
            types: vec!["transport-status".into()],
            start: Some(Start::Earliest(Earliest {})),
            name: String::new(),
            limit: 2,
        };
        let mut stream = gw.client(partner).await.subscribe(request).await.unwrap().into_inner();
        for _ in 0..2 {
            stream.message().await.unwrap().expect("a delivery");
        }
    }
    let export = dir.path().join("export.ndjson").display().to_string();
    let certs = gw.certs_dir().display().to_string();
    let args = ["export", "--server", &gw.url(), "--certs", &certs, "--as", "quality", "-o", &export];
    let out = loket(args.iter().map(|a| (*a).to_owned()).collect()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = audit(&gw, "quality", CASE).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let what: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| (r["operation"].as_str().unwrap(), r["channel"].as_str().unwrap(), r["partner"].as_str().unwrap()))
        .collect();
    assert_eq!(
        what,
        [
            ("publish", "grpc", "dvo"),
            ("delivery", "grpc", "dtv"),
            ("delivery", "grpc", "kmar"),
            ("export", "export", "quality")
        ],
        "{records:#?}"
    );
    let intake = &records[0];
    assert_eq!(intake["parentSpanId"], PUBLISHER_SPAN, "the publish continued the publisher's span");
    for r in &records {
        assert_eq!((r["id"].as_str(), r["sequence"].as_u64()), (Some("ts-case"), Some(published.sequence)), "{r}");
        assert_eq!(r["traceId"], TRACE_ID, "{r}");
        assert_eq!((r["type"].as_str(), r["activity"].as_str()), (Some("transport-status"), Some("vertrek-uitvoeren")));
        assert_eq!(r["status"], "ok");
        assert!(r["startedAt"].as_str().unwrap() <= r["endedAt"].as_str().unwrap(), "{r}");
        assert_eq!(r["subject"], intake["subject"], "one pseudonym per person");
        assert_ne!(r["subject"], CASE);
        if r["operation"] != "publish" {
            assert_eq!(r["parentSpanId"], intake["spanId"], "each hop continues the stored intake span: {r}");
            assert_ne!(r["spanId"], intake["spanId"]);
        }
    }

    // Another person's log holds only its own event.
    let out = audit(&gw, "quality", OTHER).await;
    let other: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(other.len(), 4);
    assert!(other.iter().all(|r| r["id"] == "ts-other" && r["subject"] != intake["subject"]));

    // Only auditors; a V-number it must be.
    let out = audit(&gw, "dvo", CASE).await;
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PROCESSING_AUDIT_NOT_PERMITTED"));
    let out = audit(&gw, "quality", "12").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("INVALID_CASE"));

    let data_dir = gw.data_dir.clone();
    gw.stop().await;
    // The log's files hold pseudonyms only.
    let bytes = all_bytes(&data_dir.join("processing"));
    assert!(!bytes.is_empty());
    for case in [CASE, OTHER] {
        assert!(!bytes.windows(case.len()).any(|w| w == case.as_bytes()), "{case} in clear in the processing log");
    }
}
