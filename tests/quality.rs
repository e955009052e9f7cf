//! Quality measurement end to end: figures from a generated log with known defect rates,
//! after a restart and after `loket quality rebuild`; rule severities; rule files checked
//! at start-up; report access; /metrics; the dashboard in headless Chromium; digests.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use common::*;
use futures::StreamExt;
use loket_server::proto::{subscribe_request, Earliest, QualityReport, QualityReportRequest, SubscribeRequest};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tonic::Code;

const PARTNERS_UNDER_TEST: &[&str] = &["dvo", "kmar", "dji"];

/// A planned transport: every expected field filled, no rule touched.
fn planned_transport(case: &str) -> Value {
    let mut v = example_for("transport-status", case);
    v["status"] = json!("planned");
    v.as_object_mut().unwrap().remove("departedAt");
    v
}

/// Baggage whose pieces equal its items (the example has 2 pieces and 3 items).
fn baggage(case: &str) -> Value {
    let mut v = example_for("baggage", case);
    v["pieces"] = json!(v["items"].as_array().unwrap().len());
    v
}

async fn expected_fields(gw: &Gateway) -> HashMap<String, Vec<String>> {
    let mut client = gw.client("dvo").await;
    let reply = client.list_schemas(loket_server::proto::ListSchemasRequest {}).await.unwrap().into_inner();
    // By the short name, as the figures name types.
    reply.schemas.into_iter().map(|s| (s.alias, s.expected)).collect()
}

async fn report_as(gw: &Gateway, partner: &str, partners: &[&str]) -> Result<QualityReport, tonic::Status> {
    let mut client = gw.client(partner).await;
    let req =
        QualityReportRequest { partners: partners.iter().map(|p| (*p).to_owned()).collect(), ..Default::default() };
    client.get_quality_report(req).await.map(tonic::Response::into_inner)
}

/// What the generator knows it sent, per (partner, type).
#[derive(Default, Debug)]
struct Known {
    events: u64,
    completeness_sum: f64,
    fields: BTreeMap<String, (u64, u64)>,
    rejections: BTreeMap<String, u64>,
    rules_failed: BTreeMap<String, u64>,
}

/// Publishes a seeded log with known defect rates and returns what it knows about it.
async fn generate(gw: &Gateway, seed: u64, count: usize) -> BTreeMap<(String, String), Known> {
    let expected = expected_fields(gw).await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut clients = HashMap::new();
    for p in PARTNERS_UNDER_TEST {
        clients.insert(*p, gw.client(p).await);
    }
    let mut known: BTreeMap<(String, String), Known> = BTreeMap::new();
    let mut last_accepted: HashMap<&str, loket_server::proto::CloudEvent> = HashMap::new();
    for i in 0..count {
        let partner = PARTNERS_UNDER_TEST[rng.random_range(0..PARTNERS_UNDER_TEST.len())];
        let client = clients.get_mut(partner).unwrap();
        // 5%: resend the partner's last accepted event (a duplicate, never counted twice).
        if rng.random_bool(0.05) {
            if let Some(event) = last_accepted.get(partner) {
                let reply = publish(client, event.clone()).await.unwrap();
                assert!(reply.duplicate);
                continue;
            }
        }
        let case = format!("{:010}", 1_000_000 + i);
        let transport = rng.random_bool(0.5);
        let event_type = if transport { "transport-status" } else { "baggage" };
        let mut data = if transport { planned_transport(&case) } else { baggage(&case) };
        let k = known.entry((partner.to_owned(), event_type.to_owned())).or_default();
        // 4%: a schema violation; 4% of transports: arrival before departure (reject rule).
        if rng.random_bool(0.04) {
            data["bogus"] = json!(true);
            let status = publish(client, event(partner, event_type, &format!("e{i}"), &data)).await.unwrap_err();
            assert_eq!(reason(&status), "SCHEMA_VIOLATION");
            *k.rejections.entry("SCHEMA_VIOLATION".into()).or_default() += 1;
            continue;
        }
        if transport && rng.random_bool(0.04) {
            data["status"] = json!("arrived");
            data["departedAt"] = json!("2024-03-15T06:10:00+01:00");
            data["arrivedAt"] = json!("2024-03-15T05:10:00+01:00");
            let status = publish(client, event(partner, event_type, &format!("e{i}"), &data)).await.unwrap_err();
            assert_eq!(reason(&status), "RULE_VIOLATION", "{status:?}");
            *k.rejections.entry("RULE_VIOLATION".into()).or_default() += 1;
            *k.rules_failed.entry("arrival-not-before-departure".into()).or_default() += 1;
            continue;
        }
        // 10% of baggage: one piece more than items (a flag rule).
        let extra_piece = !transport && rng.random_bool(0.10);
        if extra_piece {
            data["pieces"] = json!(data["pieces"].as_u64().unwrap() + 1);
        }
        // Each expected field is left empty with probability 0.25.
        let fields = &expected[event_type];
        let mut filled = 0;
        for field in fields {
            let missing = rng.random_bool(0.25);
            if missing {
                // `search` requires `searched` when present: leave the whole object out.
                if field == "/search/searched" {
                    data.as_object_mut().unwrap().remove("search");
                } else {
                    *data.pointer_mut(field).unwrap() = Value::Null;
                }
                // A risk assessment that was made needs its level: this one is not made yet.
                if field == "/riskAssessment/level" {
                    data["riskAssessment"]["done"] = json!(false);
                }
            } else {
                filled += 1;
            }
            let c = k.fields.entry(field.clone()).or_default();
            c.0 += 1;
            c.1 += u64::from(!missing);
        }
        // Without items (left empty above) the rule has nothing to compare.
        let flagged = extra_piece && !data["items"].is_null();
        if flagged {
            *k.rules_failed.entry("pieces-equal-items".into()).or_default() += 1;
        }
        let ev = event(partner, event_type, &format!("e{i}"), &data);
        let reply = publish(client, ev.clone()).await.unwrap_or_else(|s| panic!("{data}: {s:?}"));
        assert!(!reply.duplicate);
        assert_eq!(reply.flagged_rules, if flagged { vec!["pieces-equal-items".to_owned()] } else { vec![] });
        k.events += 1;
        k.completeness_sum += filled as f64 / fields.len() as f64;
        last_accepted.insert(partner, ev);
    }
    known
}

fn assert_matches_known(report: &QualityReport, known: &BTreeMap<(String, String), Known>) {
    assert_eq!(report.types.len(), known.len(), "{report:#?}");
    for t in &report.types {
        let k = &known[&(t.partner.clone(), t.r#type.clone())];
        assert_eq!(t.events, k.events, "{} {}", t.partner, t.r#type);
        let mean = k.completeness_sum / k.events as f64;
        assert!((t.mean_completeness - mean).abs() < 1e-6, "{} vs {mean}", t.mean_completeness);
        let rejections: BTreeMap<String, u64> = t.rejections.clone().into_iter().collect();
        assert_eq!(rejections, k.rejections);
        assert_eq!(t.rejected, k.rejections.values().sum::<u64>());
        let rules: BTreeMap<String, u64> = t.rules_failed.clone().into_iter().collect();
        assert_eq!(rules, k.rules_failed);
    }
    let fields: usize = known.values().map(|k| k.fields.len()).sum();
    assert_eq!(report.fields.len(), fields);
    for f in &report.fields {
        let (seen, filled) = known[&(f.partner.clone(), f.r#type.clone())].fields[&f.field];
        assert_eq!((f.seen, f.filled), (seen, filled), "{} {} {}", f.partner, f.r#type, f.field);
        assert_eq!(f.fill_rate, filled as f64 / seen as f64);
    }
}

fn write_config(data_dir: &Path) -> std::path::PathBuf {
    let path = data_dir.with_extension("rebuild.toml");
    std::fs::write(&path, format!("data_dir = {:?}\n[metrics]\nenabled = false\n", data_dir.display().to_string()))
        .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_defect_rates_are_measured_exactly_and_survive_restart_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let gw = Gateway::start_in(&data_dir, "").await;
    let known = generate(&gw, 42, 300).await;
    // The generator's rates are not trivially 0 or 1.
    assert!(known.values().any(|k| k.fields.values().any(|(s, f)| f < s && *f > 0)));
    assert!(known.values().any(|k| !k.rejections.is_empty()));
    let live = report_as(&gw, "quality", &[]).await.unwrap();
    assert_matches_known(&live, &known);
    gw.stop().await;

    let gw = Gateway::start_in(&data_dir, "").await;
    let restarted = report_as(&gw, "quality", &[]).await.unwrap();
    assert_eq!(restarted, live);
    gw.stop().await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loket"))
        .args(["quality", "rebuild", "--config"])
        .arg(write_config(&data_dir))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("journalled events"));
    let gw = Gateway::start_in(&data_dir, "").await;
    let rebuilt = report_as(&gw, "quality", &[]).await.unwrap();
    assert_eq!(rebuilt, live);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_are_rebuilt_when_the_gateway_did_not_close_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let serve = ServeProcess::spawn(&data_dir, "");
    let (code, _) = http_get(serve.metrics_addr.expect("the binary logs its metrics address"), "/metrics");
    assert_eq!(code, 200);
    let opts = loket_server::client::ClientOptions {
        server: serve.url(),
        certs: data_dir.join("certs"),
        partner: "dvo".into(),
    };
    let mut client = loket_server::client::connect(&opts).await.unwrap();
    for i in 0..5 {
        publish(&mut client, event("dvo", "baggage", &format!("b{i}"), &baggage(&format!("{:010}", i)))).await.unwrap();
    }
    serve.kill9();
    // The figures are recounted in the background: the gateway serves meanwhile, counts
    // what it accepts beside the recount, and its report waits for the recount.
    let gw = Gateway::start_in(&data_dir, "").await;
    let mut client = gw.client("dvo").await;
    for i in 5..7 {
        publish(&mut client, event("dvo", "baggage", &format!("b{i}"), &baggage(&format!("{:010}", i)))).await.unwrap();
    }
    let report = report_as(&gw, "dvo", &[]).await.unwrap();
    assert_eq!(report.types[0].events, 7);
    gw.stop().await;
    // Closed cleanly after the recount: the next start counts nothing again.
    let gw = Gateway::start_in(&data_dir, "").await;
    assert_eq!(report_as(&gw, "dvo", &[]).await.unwrap().types[0].events, 7);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_rules_refuse_and_flag_rules_accept_and_name_the_rule() {
    let gw = Gateway::start().await;
    let mut client = gw.client("dvo").await;
    let mut data = example_for("transport-status", "1234567890");
    data["status"] = json!("arrived");
    data["arrivedAt"] = json!("2024-03-15T06:00:00+01:00");
    let status = publish(&mut client, event("dvo", "transport-status", "t1", &data)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "RULE_VIOLATION");
    assert_eq!(violation_fields(&status), ["rule:arrival-not-before-departure"]);
    assert!(status.message().contains("arrival-not-before-departure"), "{}", status.message());

    // The example baggage has 2 pieces and 3 items: accepted, flagged, counted.
    let reply = publish(&mut client, event("dvo", "baggage", "b1", &example("baggage"))).await.unwrap();
    assert_eq!(reply.flagged_rules, ["pieces-equal-items"]);
    let report = report_as(&gw, "dvo", &[]).await.unwrap();
    let baggage = report.types.iter().find(|t| t.r#type == "baggage").unwrap();
    assert_eq!(baggage.rules_failed.get("pieces-equal-items"), Some(&1));
    let transport = report.types.iter().find(|t| t.r#type == "transport-status").unwrap();
    assert_eq!(transport.rejections.get("RULE_VIOLATION"), Some(&1));
    assert_eq!(transport.rules_failed.get("arrival-not-before-departure"), Some(&1));
    gw.stop().await;
}

#[test]
fn bad_rule_files_are_all_reported_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("baggage.toml"),
        "[[rule]]\nname = \"half-expression\"\nseverity = \"flag\"\ndescription = \"d\"\nexpr = \"data.pieces ==\"\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("transport-status.toml"),
        "[[rule]]\nname = \"odd-severity\"\nseverity = \"maybe\"\ndescription = \"d\"\nexpr = \"true\"\n",
    )
    .unwrap();
    let config = dir.path().join("loket.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nenabled = false\n[quality]\nrules_dir = {:?}\n",
            dir.path().join("data").display().to_string(),
            rules.display().to_string()
        ),
    )
    .unwrap();
    let Err((code, log)) = ServeProcess::spawn_with_config(&config) else { panic!("started with bad rules") };
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("baggage.toml: rule \"half-expression\": the expression does not compile"), "{log}");
    assert!(log.contains("transport-status.toml") && log.contains("maybe"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_reads_its_own_figures_and_the_quality_role_reads_all() {
    let gw = Gateway::start().await;
    for p in ["dvo", "kmar"] {
        let mut client = gw.client(p).await;
        publish(&mut client, event(p, "transport-status", "t", &planned_transport("1234567890"))).await.unwrap();
    }
    let own = report_as(&gw, "dvo", &[]).await.unwrap();
    assert!(!own.types.is_empty() && own.types.iter().all(|t| t.partner == "dvo"));
    assert_eq!(report_as(&gw, "dvo", &["dvo"]).await.unwrap(), own);
    let denied = report_as(&gw, "dvo", &["kmar"]).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason(&denied), "QUALITY_ACCESS_DENIED");
    let all = report_as(&gw, "quality", &[]).await.unwrap();
    let partners: Vec<&str> = all.types.iter().map(|t| t.partner.as_str()).collect();
    assert_eq!(partners, ["dvo", "kmar"]);
    assert_eq!(report_as(&gw, "quality", &["kmar"]).await.unwrap().types.len(), 1);

    // The same through the CLI: CSV for the caller, a refusal (exit 2) for another partner.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loket"))
            .arg("quality")
            .args(["--server", &gw.url(), "--certs"])
            .arg(gw.certs_dir())
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["--as", "dvo", "--format", "csv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("partner,type,field,seen,filled,fill_rate_pct\n"), "{csv}");
    assert!(csv.contains("dvo,transport-status,/plannedAt,1,1,100.0") && !csv.contains("kmar"), "{csv}");
    let out = cli(&["--as", "dvo", "--partner", "kmar"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&["--as", "quality", "--format", "json", "--type", "transport-status"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["types"].as_array().unwrap().len(), 2);
    let out = cli(&["--as", "quality", "--format", "table", "--view", "types"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("PARTNER") && table.contains("kmar"), "{table}");
    gw.stop().await;
}

/// A known data set: dvo sends 4 planned transports, one without /plannedAt; kmar 2
/// complete ones; dji one baggage with a piece too many.
async fn known_data_set(gw: &Gateway) {
    let mut dvo = gw.client("dvo").await;
    for i in 0..4 {
        let mut data = planned_transport("1234567890");
        if i == 0 {
            data["plannedAt"] = Value::Null;
        }
        publish(&mut dvo, event("dvo", "transport-status", &format!("d{i}"), &data)).await.unwrap();
    }
    let mut kmar = gw.client("kmar").await;
    for i in 0..2 {
        publish(&mut kmar, event("kmar", "transport-status", &format!("k{i}"), &planned_transport("1234567890")))
            .await
            .unwrap();
    }
    let mut dji = gw.client("dji").await;
    publish(&mut dji, event("dji", "baggage", "b", &example("baggage"))).await.unwrap();
}

fn parse_metrics(body: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The sample of `name` with (at least) these labels.
fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_the_named_series() {
    let gw = Gateway::start().await;
    known_data_set(&gw).await;
    let mut client = gw.client("dvo").await;
    let _ = publish(&mut client, event("dvo", "baggage", "bad", &json!({"vNumber": "1234567890"}))).await;
    let req = SubscribeRequest {
        name: "lagging".into(),
        limit: 1,
        start: Some(subscribe_request::Start::Earliest(Earliest {})),
        ..Default::default()
    };
    let mut stream = client.subscribe(req).await.unwrap().into_inner();
    while stream.next().await.is_some() {}

    let (code, body) = http_get(gw.metrics_addr.unwrap(), "/metrics");
    assert_eq!(code, 200);
    let scrape = parse_metrics(&body);
    let find = |name: &str, labels: &[(&str, &str)]| sample(&scrape, name, labels);
    for outcome in ["accepted", "rejected"] {
        assert!(find("loket_publish_total", &[("partner", "dvo"), ("outcome", outcome)]).is_some(), "{body}");
    }
    let latency = find("loket_publish_duration_seconds", &[("outcome", "accepted")]).unwrap();
    assert!(matches!(&latency.value, prometheus_parse::Value::Histogram(h) if !h.is_empty()), "{latency:?}");
    assert!(find("loket_journal_size_bytes", &[]).is_some(), "{body}");
    let lag = find("loket_subscriber_lag_events", &[("partner", "dvo"), ("subscription", "lagging")]).unwrap();
    assert!(matches!(lag.value, prometheus_parse::Value::Gauge(v) if v >= 1.0), "{lag:?}");
    let fill =
        find("loket_quality_fill_rate", &[("partner", "dvo"), ("type", "transport-status"), ("field", "/plannedAt")])
            .unwrap();
    assert!(matches!(fill.value, prometheus_parse::Value::Gauge(v) if v == 0.75), "{fill:?}");
    let mean = find("loket_quality_mean_completeness", &[("partner", "kmar"), ("type", "transport-status")]).unwrap();
    assert!(matches!(mean.value, prometheus_parse::Value::Gauge(v) if v == 1.0), "{mean:?}");
    assert!(find("loket_quality_rule_failures", &[("rule", "pieces-equal-items")]).is_some(), "{body}");

    // Each follower of the journal reports how far it got; once idle, both are at its end.
    let gauge = |scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| {
        sample(scrape, name, labels).map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            _ => panic!("{name} is not a gauge"),
        })
    };
    let mut positions = None;
    for _ in 0..100 {
        let scrape = parse_metrics(&http_get(gw.metrics_addr.unwrap(), "/metrics").1);
        let last = gauge(&scrape, "loket_journal_last_sequence", &[]).expect("the journal's last sequence");
        let index = gauge(&scrape, "loket_follower_sequence", &[("follower", "access-index")]);
        let handover = gauge(&scrape, "loket_follower_sequence", &[("follower", "handover")]);
        positions = Some((last, index, handover));
        if last > 0.0 && index == Some(last) && handover == Some(last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (last, index, handover) = positions.unwrap();
    assert!(last > 0.0 && index == Some(last) && handover == Some(last), "{last} {index:?} {handover:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_heatmap_of_a_known_data_set_in_chromium() {
    let gw = Gateway::start().await;
    known_data_set(&gw).await;
    let url = format!("http://{}/quality", gw.metrics_addr.unwrap());
    let (profile, url2) = (tempfile::tempdir().unwrap(), url.clone());
    let dom = tokio::task::spawn_blocking(move || headless(profile.path(), &["--dump-dom", &url2])).await.unwrap();
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.status.success() && html.contains("heatmap-transport-status"),
        "{}\n{html}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let cell = |partner: &str, field: &str| {
        let at = format!("data-partner=\"{partner}\" data-field=\"{field}\" data-fill=\"");
        let start = html.find(&at).unwrap_or_else(|| panic!("no cell {partner} {field}:\n{html}")) + at.len();
        html[start..start + 6].to_owned()
    };
    assert_eq!(cell("dvo", "/plannedAt"), "0.7500");
    assert_eq!(cell("dvo", "/escort"), "1.0000");
    assert_eq!(cell("kmar", "/plannedAt"), "1.0000");
    assert_eq!(cell("dji", "/items"), "1.0000");
    assert!(html.contains("id=\"heatmap-baggage\""));
    assert!(html.contains("<td class=\"rule\">pieces-equal-items</td><td>1</td>"), "{html}");
    assert!(html.contains("class=\"series\" data-partner=\"dvo\""), "{html}");
    // dvo's four transports miss one of seven expected fields once: (3 * 1 + 6/7) / 4.
    let dvo_mean = format!("{:.4}", (3.0 + 6.0 / 7.0) / 4.0);
    assert!(html.contains("class=\"point\" data-partner=\"dvo\" data-day="), "{html}");
    assert!(html.contains(&format!("data-completeness=\"{dvo_mean}\"")), "{html}");

    // The screenshot stays as a test artifact.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quality-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let arg = format!("--screenshot={}", shot.display());
    let out = tokio::task::spawn_blocking(move || headless(profile.path(), &[&arg, "--window-size=1280,1100", &url]))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot of {} bytes", png.len());
    eprintln!("dashboard screenshot: {}", shot.display());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_receive_their_own_quality_digest() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[quality]\ndigest_interval_secs = 1\n").await;
    known_data_set(&gw).await;
    let digests = |partner: &'static str, limit: u64| {
        let gw_client = gw.client(partner);
        async move {
            let mut client = gw_client.await;
            let req = SubscribeRequest { types: vec!["quality-digest".into()], limit, ..Default::default() };
            let mut stream = client.subscribe(req).await.unwrap().into_inner();
            let mut out = Vec::new();
            while let Some(d) = stream.next().await {
                let e = d.unwrap().event.unwrap();
                out.push((e.source, e.subject, serde_json::from_slice::<Value>(&e.data).unwrap()));
            }
            out
        }
    };
    // Two digests in a row for dvo are both dvo's own, though kmar and dji get theirs too.
    let own = digests("dvo", 2).await;
    for (source, subject, data) in &own {
        assert_eq!((source.as_str(), subject.as_str()), ("loket", "dvo"));
        assert_eq!(data["partner"], "dvo");
        let t = &data["types"][0];
        assert_eq!((t["type"].as_str(), t["events"].as_u64()), (Some("transport-status"), Some(4)));
        let planned = t["fields"].as_array().unwrap().iter().find(|f| f["field"] == "/plannedAt").unwrap();
        assert_eq!(planned["fillRate"], 0.75);
    }
    let all = digests("quality", 3).await;
    let mut subjects: Vec<&str> = all.iter().map(|(_, s, _)| s.as_str()).collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["dji", "dvo", "kmar"]);
    // Partners cannot publish digests themselves.
    let mut client = gw.client("dvo").await;
    let status = publish(&mut client, event("dvo", "quality-digest", "x", &own[0].2)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "RESERVED_TYPE");
    gw.stop().await;
}
