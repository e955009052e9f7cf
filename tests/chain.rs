//! Handover readiness end to end: gaps planted by `loket gen` measured exactly (two seeds
//! replayed into one gateway); a hand-made departure ready, then each gap named with its
//! partner in the report, the metrics and the handover-readiness event; the same figures
//! after a restart, an offline rebuild and a kill -9 while the follower counts; the chain
//! view, scorecard and case drill-down in headless Chromium.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use futures::StreamExt;
use loket_server::proto::{QualityReport, QualityReportRequest, SubscribeRequest};
use serde_json::{json, Value};

const RATES: &[&str] = &[
    "--missing-rate",
    "0",
    "--invalid-rate",
    "0",
    "--late-baggage-rate",
    "0.3",
    "--missing-features-rate",
    "0.2",
    "--no-consent-rate",
    "0.2",
];

fn loket(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loket")).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Generates a log with planted gaps; returns it and what was planted.
fn generate(dir: &Path, seed: u64, cases: u32) -> (PathBuf, Value) {
    let (log, planted) = (dir.join(format!("gen-{seed}.ndjson")), dir.join(format!("planted-{seed}.json")));
    let (s, c) = (seed.to_string(), cases.to_string());
    let mut args =
        vec!["gen", "--seed", &s, "--cases", &c, "-o", log.to_str().unwrap(), "--planted", planted.to_str().unwrap()];
    args.extend(RATES);
    let out = loket(&args);
    assert!(out.status.success(), "{}", text(&out));
    (log, serde_json::from_slice(&std::fs::read(planted).unwrap()).unwrap())
}

/// Publishes a generated log in its recorded order, each event as its publisher, one at a
/// time: `loket replay` runs one stream per partner concurrently, which keeps each
/// partner's order but not the order across partners that handovers are about.
async fn publish_in_order(server: &str, certs: &Path, log: &Path) {
    let mut clients = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let source = v["source"].as_str().unwrap().to_owned();
        if !clients.contains_key(&source) {
            let options = loket_server::client::ClientOptions {
                server: server.to_owned(),
                certs: certs.to_owned(),
                partner: source.clone(),
            };
            clients.insert(source.clone(), loket_server::client::connect(&options).await.unwrap());
        }
        let time =
            time::OffsetDateTime::parse(v["time"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
                .unwrap();
        let mut e = event(&source, v["type"].as_str().unwrap(), v["id"].as_str().unwrap(), &v["data"]);
        e.time = Some(prost_types::Timestamp { seconds: time.unix_timestamp(), nanos: 0 });
        let reply = publish(clients.get_mut(&source).unwrap(), e).await;
        // As recorded; and no id is shared with another seed's log (a conflict or duplicate).
        match v["outcome"].as_str() {
            Some("accepted") => assert!(reply.is_ok_and(|r| !r.duplicate), "{line}"),
            _ => assert_eq!(reply.map_err(|s| reason(&s)).unwrap_err(), "SCHEMA_VIOLATION", "{line}"),
        }
    }
}

async fn report(gw: &Gateway) -> QualityReport {
    let mut client = gw.client("quality").await;
    client.get_quality_report(QualityReportRequest::default()).await.unwrap().into_inner()
}

/// Handovers and ready per kind, and gaps by `kind item/partner/problem`, from the report.
fn measured(report: &QualityReport) -> (BTreeMap<String, (u64, u64)>, BTreeMap<String, u64>) {
    let kinds = report.handover_kinds.iter().map(|k| (k.handover.clone(), (k.handovers, k.ready))).collect();
    let mut gaps = BTreeMap::new();
    for i in &report.handover_items {
        for (problem, n) in [("missing", i.missing), ("stale", i.stale), ("unmet", i.unmet)] {
            if n > 0 {
                gaps.insert(format!("{} {}/{}/{problem}", i.handover, i.item, i.partner), n);
            }
        }
        assert_eq!(i.due, i.met + i.missing + i.stale + i.unmet, "{i:?}");
    }
    (kinds, gaps)
}

/// The same figures from what `loket gen` says it planted (summed over logs).
fn planted(logs: &[&Value]) -> (BTreeMap<String, (u64, u64)>, BTreeMap<String, u64>) {
    let (mut kinds, mut gaps) = (BTreeMap::new(), BTreeMap::new());
    for planted in logs {
        for (kind, k) in planted["handovers"].as_object().unwrap() {
            let entry: &mut (u64, u64) = kinds.entry(kind.clone()).or_default();
            entry.0 += k["handovers"].as_u64().unwrap();
            entry.1 += k["ready"].as_u64().unwrap();
            for (gap, n) in k["gaps"].as_object().unwrap() {
                *gaps.entry(format!("{kind} {gap}")).or_default() += n.as_u64().unwrap();
            }
        }
    }
    (kinds, gaps)
}

fn rebuild_config(data_dir: &Path) -> PathBuf {
    let path = data_dir.with_extension("rebuild.toml");
    std::fs::write(&path, format!("data_dir = {:?}\n[metrics]\nenabled = false\n", data_dir.display().to_string()))
        .unwrap();
    path
}

/// The first case link on the chain view, and that case's page.
fn drill_down(gw: &Gateway) -> (String, String) {
    let (code, chain) = http_get(gw.metrics_addr.unwrap(), "/quality/chain");
    assert_eq!(code, 200, "{chain}");
    let at = chain.find("href=\"/quality/case/").unwrap_or_else(|| panic!("no case link:\n{chain}")) + 6;
    let path = chain[at..at + chain[at..].find('"').unwrap()].to_owned();
    let (code, page) = http_get(gw.metrics_addr.unwrap(), &path);
    assert_eq!(code, 200, "{page}");
    (path, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_gaps_are_measured_exactly_and_survive_restart_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let gw = Gateway::start_in(&data_dir, "").await;
    let (log11, planted11) = generate(dir.path(), 11, 30);
    let (log12, planted12) = generate(dir.path(), 12, 30);
    // Two seeds in one gateway: no shared case, no id conflict.
    publish_in_order(&gw.url(), &gw.certs_dir(), &log11).await;
    publish_in_order(&gw.url(), &gw.certs_dir(), &log12).await;
    let live = report(&gw).await;
    let expected = planted(&[&planted11, &planted12]);
    for problem in ["missing", "stale", "unmet"] {
        assert!(expected.1.keys().any(|g| g.ends_with(problem)), "the rates plant {problem} gaps: {expected:?}");
    }
    assert_eq!(measured(&live), expected);
    let (case_path, case_page) = drill_down(&gw);
    assert!(!case_page.contains("9999"), "no V-number on the drill-down:\n{case_page}");
    gw.stop().await;

    let gw = Gateway::start_in(&data_dir, "").await;
    assert_eq!(report(&gw).await, live);
    gw.stop().await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loket"))
        .args(["quality", "rebuild", "--config"])
        .arg(rebuild_config(&data_dir))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let gw = Gateway::start_in(&data_dir, "").await;
    assert_eq!(report(&gw).await, live);
    let (code, again) = http_get(gw.metrics_addr.unwrap(), &case_path);
    assert_eq!((code, again), (200, case_page), "the rebuilt case state is the same, under the same pseudonym");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_while_counting_loses_no_handover() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (log21, planted21) = generate(dir.path(), 21, 25);
    let (log22, planted22) = generate(dir.path(), 22, 25);
    let serve = ServeProcess::spawn(&data_dir, "");
    publish_in_order(&serve.url(), &data_dir.join("certs"), &log21).await;
    // Killed right after the last acknowledgement: the follower is most likely still
    // evaluating; whatever it had not committed it must evaluate after the restart.
    serve.kill9();
    let gw = Gateway::start_in(&data_dir, "").await;
    publish_in_order(&gw.url(), &gw.certs_dir(), &log22).await;
    let after = report(&gw).await;
    assert_eq!(measured(&after), planted(&[&planted21, &planted22]));
    // Each handover was announced once: readiness events by id are unique and complete.
    let mut client = gw.client("kmar").await;
    let total: u64 = after.handover_kinds.iter().map(|k| k.handovers).sum();
    let req = SubscribeRequest { types: vec!["handover-readiness".into()], limit: total, ..Default::default() };
    let mut stream = client.subscribe(req).await.unwrap().into_inner();
    let mut ids = std::collections::BTreeSet::new();
    // The report above waited for the follower, which journals its events before it moves
    // on; the bound only turns a missing event into a failure instead of a hang.
    let collected = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(d) = stream.next().await {
            assert!(ids.insert(d.unwrap().event.unwrap().id), "a readiness event twice");
        }
    });
    assert!(collected.await.is_ok(), "only {} of {total} readiness events", ids.len());
    gw.stop().await;
}

fn timestamp(hours_ago: i64) -> prost_types::Timestamp {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    prost_types::Timestamp { seconds: now - hours_ago * 3600, nanos: 0 }
}

/// Publishes one case's events before its departure; `change` alters them first.
async fn departure_case(gw: &Gateway, case: &str, change: impl FnOnce(&mut BTreeMap<&str, (Value, i64)>)) {
    let mut events: BTreeMap<&str, (Value, i64)> = BTreeMap::new();
    let mut consent = example_for("medical-transfer-consent", case);
    consent["validUntil"] = json!("2099-01-01T00:00:00Z");
    consent.as_object_mut().unwrap().remove("withdrawnAt");
    events.insert("1 gza medical-transfer-consent", (consent, 30));
    events.insert("2 dtv physical-features", (example_for("physical-features", case), 20));
    events.insert("3 dji medical-file-transfer", (example_for("medical-file-transfer", case), 3));
    events.insert("4 dji baggage", (example_for("baggage", case), 2));
    events.insert("5 dvo transport-status", (example_for("transport-status", case), 0));
    change(&mut events);
    for (key, (data, hours_ago)) in events {
        let mut parts = key.split(' ').skip(1);
        let (source, event_type) = (parts.next().unwrap(), parts.next().unwrap());
        let mut e = event(source, event_type, &format!("{case}-{key}").replace(' ', "-"), &data);
        e.time = Some(timestamp(hours_ago));
        let mut client = gw.client(source).await;
        publish(&mut client, e).await.unwrap_or_else(|s| panic!("{key}: {s:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_departure_and_each_gap_named_in_report_metrics_and_event() {
    let gw = Gateway::start().await;
    departure_case(&gw, "9999700001", |_| {}).await;
    departure_case(&gw, "9999700002", |e| {
        e.remove("2 dtv physical-features");
    })
    .await;
    departure_case(&gw, "9999700003", |e| e.get_mut("4 dji baggage").unwrap().1 = 72).await;
    departure_case(&gw, "9999700004", |e| {
        e.get_mut("4 dji baggage").unwrap().0["instructionVersion"] = json!("2016-01")
    })
    .await;

    // The escort receives one finding per departure, naming what is missing and from whom.
    let mut client = gw.client("kmar").await;
    let req = SubscribeRequest { types: vec!["handover-readiness".into()], limit: 4, ..Default::default() };
    let mut stream = client.subscribe(req).await.unwrap().into_inner();
    let mut found = BTreeMap::new();
    while let Some(d) = stream.next().await {
        let e = d.unwrap().event.unwrap();
        assert_eq!(e.source, "loket");
        let data: Value = serde_json::from_slice(&e.data).unwrap();
        assert_eq!(
            (data["handover"].as_str(), data["receiver"].as_str()),
            (Some("detention-to-departure"), Some("kmar"))
        );
        let gaps: Vec<String> = data["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                format!(
                    "{} {} {}",
                    g["item"].as_str().unwrap(),
                    g["partner"].as_str().unwrap(),
                    g["problem"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(data["ready"].as_bool(), Some(gaps.is_empty()));
        found.insert(e.subject, gaps);
    }
    let expect = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(found["9999700001"], expect(&[]));
    assert_eq!(found["9999700002"], expect(&["physical-features dtv missing"]));
    assert_eq!(found["9999700003"], expect(&["baggage-registered dji stale"]));
    assert_eq!(found["9999700004"], expect(&["baggage-registered dji unmet"]));

    let r = report(&gw).await;
    let (kinds, gaps) = measured(&r);
    assert_eq!(kinds["detention-to-departure"], (4, 1));
    let key = |s: &str| format!("detention-to-departure {s}");
    assert_eq!(gaps[&key("physical-features/dtv/missing")], 1);
    assert_eq!(gaps[&key("baggage-registered/dji/stale")], 1);
    assert_eq!(gaps[&key("baggage-registered/dji/unmet")], 1);
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    let dji = r.dimensions.iter().find(|d| d.partner == "dji" && d.r#type == "baggage").unwrap();
    assert_eq!((dji.handover_items_due, dji.handover_items_met, dji.readiness), (4, 2, Some(0.5)));
    // A partner reads its own items, without the chain-wide totals.
    let mut dtv = gw.client("dtv").await;
    let own = dtv.get_quality_report(QualityReportRequest::default()).await.unwrap().into_inner();
    assert!(own.handover_kinds.is_empty() && own.handover_items.iter().all(|i| i.partner == "dtv"), "{own:?}");

    let (code, body) = http_get(gw.metrics_addr.unwrap(), "/metrics");
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let gauge = |name: &str, labels: &[(&str, &str)]| {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{body}"));
        match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{other:?}"),
        }
    };
    let item = |item: &str, partner: &str, status: &str| {
        gauge(
            "loket_handover_items",
            &[("handover", "detention-to-departure"), ("item", item), ("partner", partner), ("status", status)],
        )
    };
    assert_eq!(item("physical-features", "dtv", "missing"), 1.0);
    assert_eq!(item("baggage-registered", "dji", "stale"), 1.0);
    assert_eq!(item("baggage-registered", "dji", "unmet"), 1.0);
    assert_eq!(item("searched", "dvo", "met"), 4.0);
    assert_eq!(gauge("loket_handovers_ready", &[("handover", "detention-to-departure")]), 1.0);
    assert_eq!(gauge("loket_quality_readiness", &[("partner", "dji"), ("type", "baggage")]), 0.5);
    assert!(body.contains("loket_quality_timeliness_seconds{"), "{body}");

    dashboard_in_chromium(&gw).await;
    gw.stop().await;
}

/// The chain view, the scorecard and a drill-down as Chromium renders them (DOM checks),
/// with screenshots kept as test artifacts.
async fn dashboard_in_chromium(gw: &Gateway) {
    let base = format!("http://{}", gw.metrics_addr.unwrap());
    let chain = dump_dom(format!("{base}/quality/chain")).await;
    assert!(chain.contains("data-kind=\"detention-to-departure\" data-ready-share=\"0.2500\""), "{chain}");
    assert!(chain.contains("data-item=\"physical-features\" data-partner=\"dtv\" data-met-rate=\"0.7500\""), "{chain}");
    assert!(
        chain.contains("data-item=\"baggage-registered\" data-partner=\"dji\" data-met-rate=\"0.5000\""),
        "{chain}"
    );
    assert!(chain.contains("class=\"week\""), "a weekly trend row: {chain}");
    let at = chain.find("href=\"/quality/case/").expect("a link to a case that was not ready") + 6;
    let case_path = chain[at..at + chain[at..].find('"').unwrap()].to_owned();

    let card = dump_dom(format!("{base}/quality/scorecard")).await;
    assert!(card.contains("id=\"chain-median\""), "{card}");
    for partner in ["dji", "dtv", "dvo", "gza"] {
        assert!(card.contains(&format!("class=\"partner\" data-partner=\"{partner}\"")), "{partner}: {card}");
    }
    // dji met 2 of 4 baggage items and 4 of 4 medical files; dtv 3 of 4 features.
    assert!(card.contains("data-dimension=\"readiness\" data-value=\"0.7500\""), "readiness: {card}");
    assert!(card.contains("data-dimension=\"validity\" data-value=\"1.0000\""), "{card}");

    let case = dump_dom(format!("{base}{case_path}")).await;
    assert!(case.contains("class=\"lane\" data-partner=\"dji\""), "{case}");
    assert!(case.contains("data-kind=\"detention-to-departure\" data-ready=\"false\""), "{case}");
    assert!(case.contains("data-status=\"met\"") && case.contains("data-item=\"searched\""), "{case}");
    // Pseudonymised and without contents: no V-number, no payload value.
    assert!(!case.contains("99997000") && !case.contains("Schiphol") && !case.contains("consent-EXAMPLE"), "{case}");

    for (name, path) in
        [("chain", "/quality/chain".to_owned()), ("scorecard", "/quality/scorecard".to_owned()), ("case", case_path)]
    {
        screenshot(&format!("{base}{path}"), &format!("quality-{name}.png")).await;
    }
}

async fn dump_dom(url: String) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || headless(profile.path(), &["--dump-dom", &url])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn screenshot(url: &str, file: &str) {
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(file);
    let _ = std::fs::remove_file(&shot);
    let args = [format!("--screenshot={}", shot.display()), "--window-size=1280,1000".to_owned(), url.to_owned()];
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        headless(profile.path(), &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot of {} bytes", png.len());
    eprintln!("dashboard screenshot: {}", shot.display());
}
