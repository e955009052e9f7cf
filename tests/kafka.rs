//! Fan-out over Kafka, against a real broker (Tansu, started by tests/run): CloudEvents
//! records on the canonical and delivery topics, store-and-forward through a broker
//! outage and a gateway crash, `ack = "kafka"`, Kafka-mode subscriptions that resume
//! through another gateway, refuse records no gateway produced and drop an event
//! published again through another gateway, and canonical topics that carry no more than
//! their configured reader may see.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{
    from_earliest, read_topic, record_key_file, shared_broker, topic_exists, unique_prefix, Record, Tansu,
};
use common::*;
use loket_server::client::{connect, Client, ClientOptions};
use loket_server::proto::{
    subscribe_request::Start, AckRequest, Earliest, EraseCaseRequest, PublishReply, StatusReply, StatusRequest,
    SubscribeRequest,
};
use loket_server::timestamp::to_micros;
use time::format_description::well_known::Rfc3339;

/// A `[kafka]` section with the tests' shared record key and no canonical topics.
fn kafka_section(brokers: &str, prefix: &str, extra: &str) -> String {
    format!(
        "[kafka]\nbrokers = {brokers:?}\ntopic_prefix = {prefix:?}\npartitions = 2\nrecord_key_file = {:?}\n{extra}",
        record_key_file()
    )
}

/// [`kafka_section`] with dtv's view on the canonical topics: every event but medical
/// data, unredacted.
fn kafka_toml(brokers: &str, prefix: &str, extra: &str) -> String {
    kafka_section(brokers, prefix, &format!("canonical_view = \"dtv\"\n{extra}"))
}

async fn status(client: &mut Client) -> StatusReply {
    client.status(StatusRequest {}).await.unwrap().into_inner()
}

/// Waits until the gateway's relay has everything on Kafka.
async fn wait_drained(client: &mut Client) -> StatusReply {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(client).await;
        let relay = s.kafka.clone().expect("kafka status");
        if relay.backlog_events == 0 {
            return s;
        }
        assert!(Instant::now() < deadline, "relay still behind after 120 s: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn micros_of(text: &str) -> i64 {
    let t = time::OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    (t.unix_timestamp_nanos() / 1_000) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_cloudevents_headers_on_canonical_and_delivery_topics() {
    let brokers = shared_broker();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    // This test reads back the records of partners' events; the gateway's own handover
    // findings (the example departure is a handover) are turned off: no expectations.
    let no_handovers = dir.path().join("no-handovers").display().to_string();
    let toml = format!("{}\n[quality]\nchain_dir = {no_handovers:?}\n", kafka_toml(&brokers, &prefix, ""));
    let gw = Gateway::start_in(dir.path(), &toml).await;
    let mut dvo = gw.client("dvo").await;
    let mut dtv = gw.client("dtv").await;

    let mut first = event("dvo", "transport-status", "ts-1", &example_for("transport-status", "1000000001"));
    first.time = Some(prost_types::Timestamp { seconds: 1_767_225_600, nanos: 250_000_000 });
    // Missing an expected field coa sees (/plannedAt) and one it does not
    // (/dangerousItemsFound).
    let mut incomplete = example_for("transport-status", "1000000002");
    incomplete.as_object_mut().unwrap().remove("plannedAt");
    incomplete.as_object_mut().unwrap().remove("dangerousItemsFound");
    let published = [
        (first.clone(), publish(&mut dvo, first).await.unwrap()),
        (
            event("dtv", "baggage", "bg-1", &example_for("baggage", "1000000001")),
            publish(&mut dtv, event("dtv", "baggage", "bg-1", &example_for("baggage", "1000000001"))).await.unwrap(),
        ),
        (
            event("dvo", "transport-status", "ts-2", &incomplete),
            publish(&mut dvo, event("dvo", "transport-status", "ts-2", &incomplete)).await.unwrap(),
        ),
    ];
    assert_eq!(published[2].1.missing_expected, ["/dangerousItemsFound", "/plannedAt"]);
    wait_drained(&mut dvo).await;

    // The completeness headers describe what the topic's reader sees: a whole event's are
    // the publisher's figures; coa's view of the incomplete transport counts only the two
    // expected fields its rule shows (/departureKind, /plannedAt), so it never learns
    // whether /dangerousItemsFound was filled.
    let figures = |record: &Record, full: bool, reply: &PublishReply| -> (f64, String) {
        if full || record.header("ce_id") != "ts-2" {
            (reply.completeness, reply.missing_expected.join(","))
        } else {
            (0.5, "/plannedAt".to_owned())
        }
    };
    let check = |record: &Record, topic: &str, full: bool| {
        let id = record.header("ce_id");
        let (sent, reply) = published.iter().find(|(e, _)| e.id == id).unwrap_or_else(|| panic!("{id} on {topic}"));
        assert_eq!(record.key, sent.subject, "key is the case");
        assert_eq!(record.header("ce_specversion"), "1.0");
        assert_eq!(record.header("ce_source"), sent.source);
        // The NL GOV profile's names: a reverse-DNS type (no OIN configured: the source is
        // the partner id).
        assert_eq!(record.header("ce_type"), format!("nl.vreemdelingenketen.{}", sent.r#type));
        assert_eq!(record.header("ce_subject"), sent.subject);
        assert_eq!(record.header("ce_dataschema"), reply.dataschema);
        assert_eq!(record.header("content-type"), "application/json");
        assert_eq!(record.header("ce_sequence"), format!("{:020}", reply.sequence));
        assert_eq!(record.header("ce_sequencetype"), "DecimalU64");
        assert!(record.header("ce_traceparent").starts_with("00-"), "{:?}", record.headers);
        let (completeness, missing) = figures(record, full, reply);
        assert_eq!(record.header("ce_completeness").parse::<f64>().unwrap(), completeness, "{topic}");
        assert_eq!(record.header("ce_missingexpected"), missing, "{topic}");
        if full {
            assert_eq!(record.header("ce_redacted"), "");
        }
        let received = to_micros(reply.received_at.as_ref().unwrap()).unwrap();
        assert_eq!(micros_of(record.header("ce_receivedat")), received);
        // ce_time is the publisher's time, absent when it gave none.
        let time = sent.time.as_ref().map(|t| to_micros(t).unwrap());
        assert_eq!(record.headers.get("ce_time").map(|t| micros_of(t)), time);
        let payload: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
        let original: serde_json::Value = serde_json::from_slice(&sent.data).unwrap();
        if full {
            assert_eq!(payload, original, "payload on {topic}");
        } else {
            // The partner's view: the original minus exactly the fields named as redacted.
            let mut expected = original.clone();
            for pointer in record.header("ce_redacted").split(',').filter(|p| !p.is_empty()) {
                assert!(original.pointer(pointer).is_some(), "{pointer} was in the event ({topic})");
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                expected.pointer_mut(parent).and_then(|v| v.as_object_mut()).unwrap().remove(key);
            }
            assert_eq!(payload, expected, "redacted payload on {topic}");
        }
        assert!(record.header("loket-tag").starts_with("v1="), "tagged: {:?}", record.headers);
        let specified = if time.is_some() { 16 } else { 15 };
        assert_eq!(record.headers.len(), specified, "exactly the specified headers and the tag: {:?}", record.headers);
    };

    let transport = read_topic(&brokers, &format!("{prefix}events.transport-status"), 2);
    let baggage = read_topic(&brokers, &format!("{prefix}events.baggage"), 1);
    for record in &transport {
        check(record, "canonical transport-status", true);
    }
    check(&baggage[0], "canonical baggage", true);
    assert_eq!(
        transport.iter().map(|r| r.header("ce_type")).collect::<HashSet<_>>(),
        HashSet::from(["nl.vreemdelingenketen.transport-status"])
    );
    // Canonical topics exist for every type from the start, also those without events.
    assert!(topic_exists(&brokers, &format!("{prefix}events.medical-file-transfer")));

    // The shipped policy: kmar receives transport status and baggage whole; coa sees only
    // where and when a transport goes, and baggage without who it was handed over to.
    for (partner, full) in [("kmar", true), ("coa", false)] {
        let topic = format!("{prefix}delivery.{partner}");
        let records = read_topic(&brokers, &topic, 3);
        for record in &records {
            check(record, &topic, full);
        }
        let ids: HashSet<&str> = records.iter().map(|r| r.header("ce_id")).collect();
        assert_eq!(ids, HashSet::from(["ts-1", "bg-1", "ts-2"]));
        if !full {
            let transport =
                records.iter().find(|r| r.header("ce_type") == "nl.vreemdelingenketen.transport-status").unwrap();
            assert!(transport.header("ce_redacted").contains("/riskAssessment"), "{:?}", transport.headers);
        }
    }
    assert!(
        !topic_exists(&brokers, &format!("{prefix}delivery.quality")),
        "no topic for a partner that receives nothing"
    );
    gw.stop().await;
}

fn consent(case: &str, consent_id: &str, recipients: &[&str]) -> serde_json::Value {
    let mut c = example_for("medical-transfer-consent", case);
    c["consentId"] = serde_json::json!(consent_id);
    c["recipients"] = recipients.iter().map(|p| serde_json::json!({"partner": p, "role": "medical-service"})).collect();
    c["signedAt"] = serde_json::json!("2024-03-12T11:00:00+01:00");
    c["validUntil"] = serde_json::json!("2099-01-01T00:00:00Z");
    c
}

/// A medical file of `case` for `to`, under consent form `consent_id`.
fn medical_file(case: &str, consent_id: &str, to: &str) -> serde_json::Value {
    let mut f = example_for("medical-file-transfer", case);
    f["consentId"] = serde_json::json!(consent_id);
    f["toCareProfessional"] = serde_json::json!({"partner": to, "role": "medical-service"});
    f
}

/// The shipped policy: KMar receives medical files (not consents), DJI both. A medical
/// file reaches only its addressee, withheld until the form it names covers it, then
/// produced right after that form, marked released; the form's withdrawal stops later
/// files. Other forms of the case release nothing to anyone else. A gateway restart in
/// between must not forget what is withheld.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medical_files_reach_delivery_topics_only_when_released() {
    let brokers = shared_broker();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let toml = kafka_toml(&brokers, &prefix, "");
    let case = "6000000001";
    // One file for KMar under f-kmar, one for DJI under f-dji.
    let transfer = medical_file(case, "f-kmar", "kmar");
    let for_dji = medical_file(case, "f-dji", "dji");

    let gw = Gateway::start_in(dir.path(), &toml).await;
    let mut gza = gw.client("gza").await;
    let first = publish(&mut gza, event("gza", "medical-file-transfer", "mft-1", &transfer)).await.unwrap();
    let dji_file = publish(&mut gza, event("gza", "medical-file-transfer", "mft-dji", &for_dji)).await.unwrap();
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-kmar", &consent(case, "f-kmar", &["kmar"])))
        .await
        .unwrap();
    wait_drained(&mut gza).await;
    gw.stop().await;

    let gw = Gateway::start_in(dir.path(), &toml).await;
    let mut gza = gw.client("gza").await;
    // f-dji names DJI and KMar: it releases DJI's file to DJI only, and nothing to KMar.
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-dji", &consent(case, "f-dji", &["dji", "kmar"])))
        .await
        .unwrap();
    let mut withdrawn = consent(case, "f-kmar", &["kmar"]);
    withdrawn["withdrawnAt"] = serde_json::json!("2025-01-01T00:00:00Z");
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-kmar-withdrawn", &withdrawn)).await.unwrap();
    publish(&mut gza, event("gza", "medical-file-transfer", "mft-2", &transfer)).await.unwrap();
    wait_drained(&mut gza).await;

    let released = |r: &Record| r.headers.get("ce_released").map(String::as_str) == Some("true");
    let kmar = read_topic(&brokers, &format!("{prefix}delivery.kmar"), 1);
    let summary: Vec<(&str, bool)> = kmar.iter().map(|r| (r.header("ce_id"), released(r))).collect();
    assert_eq!(summary, [("mft-1", true)], "withheld until f-kmar, nothing after its withdrawal");
    assert_eq!(kmar[0].header("ce_sequence"), format!("{:020}", first.sequence), "its own sequence");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&kmar[0].payload).unwrap(), transfer);

    let dji = read_topic(&brokers, &format!("{prefix}delivery.dji"), 4);
    let summary: Vec<(&str, bool)> = dji.iter().map(|r| (r.header("ce_id"), released(r))).collect();
    assert_eq!(
        summary,
        [("c-kmar", false), ("c-dji", false), ("mft-dji", true), ("c-kmar-withdrawn", false)],
        "one case, one partition, in journal order with the release right after its form; no file for KMar"
    );
    assert_eq!(dji[2].header("ce_sequence"), format!("{:020}", dji_file.sequence));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&dji[2].payload).unwrap(), for_dji);
    // The canonical topics carry dtv's view, which holds no medical data: read every record
    // of every canonical topic, and no medical file is there, released or not.
    let files = [serde_json::to_vec(&transfer).unwrap(), serde_json::to_vec(&for_dji).unwrap()];
    let registry = loket_schema::Registry::embedded().unwrap();
    for event_type in registry.event_types() {
        for record in read_topic(&brokers, &format!("{prefix}events.{event_type}"), 0) {
            assert_ne!(record.header("ce_type"), "nl.vreemdelingenketen.medical-file-transfer", "{record:?}");
            assert_ne!(record.header("ce_type"), "nl.vreemdelingenketen.medical-transfer-consent", "{record:?}");
            assert_eq!(record.header("ce_type"), format!("nl.vreemdelingenketen.{event_type}"), "{record:?}");
            assert!(!files.contains(&record.payload), "a medical payload on a canonical topic: {record:?}");
        }
    }

    // A Kafka-mode subscription passes the release on.
    let mut kmar_client = gw.client("kmar").await;
    let mut stream = kmar_client.subscribe(from_earliest("medical", 1)).await.unwrap().into_inner();
    let d = tokio::time::timeout(Duration::from_secs(90), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!((d.event.as_ref().unwrap().id.as_str(), d.released, d.sequence), ("mft-1", true, first.sequence));
    drop(stream);
    gw.stop().await;
}

/// Publishers per case, each publishing in order; what each got acknowledged, in order.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(options: impl Fn(&str) -> ClientOptions, cases: &[&str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
        let mut tasks = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let options = options(["dtv", "kmar", "dji", "dvo"][i % 4]);
            let (stop, acked, case) = (stop.clone(), acked.clone(), (*case).to_owned());
            tasks.push(tokio::spawn(async move {
                let mut client = connect(&options).await.unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{case}-{n:06}");
                    let e = event(&options.partner, "baggage", &id, &example_for("baggage", &case));
                    match publish(&mut client, e).await {
                        Ok(_) => acked.lock().unwrap().entry(case.clone()).or_default().push(id),
                        Err(status) => panic!("publish {id} failed: {status:?}"),
                    }
                    n += 1;
                }
            }));
        }
        Load { stop, acked, tasks }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().values().map(Vec::len).sum()
    }

    async fn until(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < count {
            assert!(Instant::now() < deadline, "only {} of {count} publishes acknowledged", self.count());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> BTreeMap<String, Vec<String>> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Every acknowledged event is on `topic`, per case in publication order (first
/// occurrences), and every duplicate is the same event (same ce_id, same record).
fn assert_complete_and_ordered(brokers: &str, topic: &str, acked: &BTreeMap<String, Vec<String>>) {
    let total: usize = acked.values().map(Vec::len).sum();
    let records = read_topic(brokers, topic, total);
    let mut by_case: HashMap<String, Vec<&Record>> = HashMap::new();
    for r in &records {
        by_case.entry(r.key.clone()).or_default().push(r);
    }
    let mut seen: HashMap<String, &Record> = HashMap::new();
    let mut duplicates = 0;
    for (case, ids) in acked {
        let mut records = by_case.remove(case).unwrap_or_default();
        records.sort_by_key(|r| (r.partition, r.offset));
        assert!(records.iter().all(|r| r.partition == records[0].partition), "case {case} on one partition");
        let mut first: Vec<&str> = Vec::new();
        for r in records {
            let id = r.header("ce_id");
            if let Some(earlier) = seen.get(id) {
                duplicates += 1;
                assert_eq!(
                    (&earlier.headers, &earlier.payload),
                    (&r.headers, &r.payload),
                    "a duplicate is the same record"
                );
            } else {
                seen.insert(id.to_owned(), r);
                first.push(id);
            }
        }
        let acked_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        // Everything acked is there, in order; at most unacknowledged extras after it.
        assert!(
            first.len() >= acked_ids.len(),
            "case {case}: {} of {} acked events on kafka",
            first.len(),
            acked_ids.len()
        );
        assert_eq!(&first[..acked_ids.len()], &acked_ids[..], "case {case}: per-case order");
    }
    eprintln!("{topic}: {} records, {} events, {duplicates} duplicates", records.len(), seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_under_load_loses_and_reorders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start(dir.path());
    let prefix = unique_prefix();
    let gw = Gateway::start_in(&dir.path().join("gw"), &kafka_toml(&tansu.bootstrap(), &prefix, "")).await;
    let mut probe = gw.client("quality").await;
    let cases = ["2000000001", "2000000002", "2000000003", "2000000004"];
    let load = Load::start(|p| gw.options(p), &cases);
    load.until(100).await;
    tansu.stop();
    let at_stop = load.count();
    load.until(at_stop + 300).await;
    // Publishing goes on into the journal; the relay reports what it owes.
    let behind = status(&mut probe).await.kafka.unwrap();
    assert!(behind.backlog_events > 0, "{behind:?}");
    assert!(behind.oldest_received_at.is_some(), "{behind:?}");
    // The backlog shows on /metrics too.
    let (code, metrics) = http_get(gw.metrics_addr.unwrap(), "/metrics");
    assert_eq!(code, 200);
    let backlog: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("loket_relay_backlog_events "))
        .unwrap_or_else(|| panic!("no relay backlog in\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(backlog > 0.0, "{metrics}");
    tansu.restart();
    let at_restart = load.count();
    load.until(at_restart + 100).await;
    let acked = load.finish().await;
    wait_drained(&mut probe).await;
    assert_complete_and_ordered(&tansu.bootstrap(), &format!("{prefix}events.baggage"), &acked);
    assert_complete_and_ordered(&tansu.bootstrap(), &format!("{prefix}delivery.kmar"), &acked);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_the_relay_is_behind_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start(dir.path());
    let prefix = unique_prefix();
    let data_dir = dir.path().join("gw");
    let toml = kafka_toml(&tansu.bootstrap(), &prefix, "");
    let cases = ["3000000001", "3000000002", "3000000003"];
    let gw = ServeProcess::spawn(&data_dir, &toml);
    let options =
        |url: String, p: &str| ClientOptions { server: url, certs: data_dir.join("certs"), partner: p.to_owned() };
    let load = Load::start(|p| options(gw.url(), p), &cases);
    load.until(50).await;
    tansu.stop();
    let at_stop = load.count();
    load.until(at_stop + 200).await;
    let acked = load.finish().await;
    let mut probe = connect(&options(gw.url(), "quality")).await.unwrap();
    assert!(status(&mut probe).await.kafka.unwrap().backlog_events > 0);
    gw.kill9();

    tansu.restart();
    let gw = ServeProcess::spawn(&data_dir, &toml);
    let mut probe = connect(&options(gw.url(), "quality")).await.unwrap();
    wait_drained(&mut probe).await;
    assert_complete_and_ordered(&tansu.bootstrap(), &format!("{prefix}events.baggage"), &acked);
    assert_complete_and_ordered(&tansu.bootstrap(), &format!("{prefix}delivery.coa"), &acked);
    assert_eq!(gw.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_kafka_acknowledges_only_what_the_broker_has() {
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start(dir.path());
    let prefix = unique_prefix();
    let toml = kafka_toml(&tansu.bootstrap(), &prefix, "ack = \"kafka\"\nack_timeout_ms = 3000\n");
    let gw = Gateway::start_in(&dir.path().join("gw"), &toml).await;
    let mut dtv = gw.client("dtv").await;
    let topic = format!("{prefix}events.baggage");

    let one = event("dtv", "baggage", "k-1", &example_for("baggage", "4000000001"));
    let reply = publish(&mut dtv, one).await.unwrap();
    assert!(!reply.duplicate);
    // Acknowledged means on the broker: a consumer finds it right away.
    assert_eq!(read_topic(&tansu.bootstrap(), &topic, 1)[0].header("ce_id"), "k-1");

    tansu.stop();
    let two = event("dtv", "baggage", "k-2", &example_for("baggage", "4000000001"));
    let refused = publish(&mut dtv, two.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(reason(&refused), "KAFKA_NOT_CONFIRMED");

    tansu.restart();
    // Publishing again waits for the relay, which delivers the stored event.
    let deadline = Instant::now() + Duration::from_secs(60);
    let again = loop {
        match publish(&mut dtv, two.clone()).await {
            Ok(reply) => break reply,
            Err(status) => {
                assert_eq!(reason(&status), "KAFKA_NOT_CONFIRMED", "{status:?}");
                assert!(Instant::now() < deadline, "not confirmed 60 s after the broker came back");
            }
        }
    };
    assert!(again.duplicate, "the first attempt was stored: {again:?}");
    let ids: Vec<String> =
        read_topic(&tansu.bootstrap(), &topic, 2).iter().map(|r| r.header("ce_id").to_owned()).collect();
    assert_eq!(ids, ["k-1", "k-2"]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_subscription_resumes_through_a_second_gateway() {
    let brokers = shared_broker();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let a = Gateway::start_in(&dir.path().join("a"), &kafka_toml(&brokers, &prefix, "")).await;
    let b = Gateway::start_in(&dir.path().join("b"), &kafka_toml(&brokers, &prefix, "")).await;
    let mut dtv = a.client("dtv").await;
    let ids: Vec<String> = (0..10).map(|n| format!("s-{n:02}")).collect();
    for id in &ids {
        publish(&mut dtv, event("dtv", "baggage", id, &example_for("baggage", "5000000001"))).await.unwrap();
    }
    wait_drained(&mut dtv).await;

    let request = || SubscribeRequest {
        types: vec![],
        start: Some(Start::Earliest(Earliest {})),
        name: "main".to_owned(),
        limit: 0,
    };
    let mut kmar_a = a.client("kmar").await;
    let mut stream = kmar_a.subscribe(request()).await.unwrap().into_inner();
    let mut got = Vec::new();
    let mut last_sequence = 0;
    while got.len() < 4 {
        let d = stream.message().await.unwrap().expect("a delivery");
        last_sequence = d.sequence;
        got.push(d.event.unwrap().id);
    }
    assert_eq!(got, ids[..4]);
    let acked = kmar_a.ack(AckRequest { name: "main".into(), sequence: last_sequence }).await.unwrap().into_inner();
    assert_eq!(acked.acked, last_sequence);
    // An acknowledgement belongs to the gateway that streams the subscription.
    let mut kmar_b = b.client("kmar").await;
    let elsewhere = kmar_b.ack(AckRequest { name: "main".into(), sequence: last_sequence }).await.unwrap_err();
    assert_eq!(reason(&elsewhere), "SUBSCRIPTION_NOT_OPEN");
    drop(stream);
    drop(kmar_a);

    // Reconnect through the other gateway: it resumes after the acknowledged event.
    let mut stream = kmar_b.subscribe(request()).await.unwrap().into_inner();
    let mut rest = Vec::new();
    while rest.len() < 6 {
        let d = tokio::time::timeout(Duration::from_secs(90), stream.message())
            .await
            .expect("deliveries through the second gateway")
            .unwrap()
            .expect("a delivery");
        rest.push(d.event.unwrap().id);
    }
    assert_eq!(rest, ids[4..]);
    drop(stream);

    // A named subscription in Kafka mode starts at earliest or latest only.
    let mut by_sequence = request();
    by_sequence.start = Some(Start::Sequence(3));
    by_sequence.name = "other".into();
    let refused = kmar_b.subscribe(by_sequence).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(violation_fields(&refused), ["start"]);
    // A type filter applies to what the delivery topic holds.
    let mut filtered = request();
    filtered.name = "transport-only".into();
    filtered.types = vec!["transport-status".into()];
    let mut dvo = a.client("dvo").await;
    publish(&mut dvo, event("dvo", "transport-status", "t-1", &example_for("transport-status", "5000000001")))
        .await
        .unwrap();
    let mut stream = kmar_b.subscribe(filtered).await.unwrap().into_inner();
    let d = tokio::time::timeout(Duration::from_secs(90), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.event.unwrap().id, "t-1", "the baggage events before it are filtered out");
    drop(stream);
    a.stop().await;
    b.stop().await;
}

#[test]
fn cli_subscription_in_kafka_mode_acknowledges_after_its_limit() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let gw = ServeProcess::spawn(&data_dir, &kafka_toml(&shared_broker(), &unique_prefix(), ""));
    let url = gw.url();
    let certs = data_dir.join("certs").display().to_string();
    let loket = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_loket")).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "loket {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let file = dir.path().join("baggage.json");
    std::fs::write(&file, serde_json::to_vec(&example("baggage")).unwrap()).unwrap();
    let file = file.display().to_string();
    for id in ["c-1", "c-2", "c-3"] {
        loket(&[
            "publish", "--server", &url, "--certs", &certs, "--as", "dtv", "--type", "baggage", "--data", &file,
            "--id", id,
        ]);
    }
    let ids = |limit: &str| -> Vec<String> {
        let out = loket(&[
            "subscribe",
            "--server",
            &url,
            "--certs",
            &certs,
            "--as",
            "coa",
            "--name",
            "cli",
            "--limit",
            limit,
        ]);
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // The CLI acknowledges after the stream ended; the next run resumes after that.
    assert_eq!(ids("2"), ["c-1", "c-2"]);
    assert_eq!(ids("1"), ["c-3"]);
    assert_eq!(gw.terminate(), Some(0));
}

/// A record with valid CloudEvents headers for `topic`, tagged with `key` when given.
fn forged_record(
    topic: &str,
    id: &str,
    case: &str,
    key: Option<&loket_kafka::RecordKey>,
) -> (Vec<(String, String)>, Vec<u8>) {
    let payload = serde_json::to_vec(&example_for("baggage", case)).unwrap();
    let mut headers: Vec<(String, String)> = [
        ("ce_specversion", "1.0"),
        ("ce_id", id),
        ("ce_source", "dtv"),
        ("ce_type", "baggage"),
        ("ce_subject", case),
        ("ce_time", "2026-01-01T00:00:00Z"),
        ("ce_dataschema", "urn:loket:schema:baggage:v1"),
        ("content-type", "application/json"),
        ("ce_sequence", "1"),
        ("ce_completeness", "1"),
        ("ce_missingexpected", ""),
        ("ce_redacted", ""),
        ("ce_receivedat", "2026-01-01T00:00:00Z"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    if let Some(key) = key {
        let signed = headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes())));
        let tag = key.tag(topic, Some(case.as_bytes()), Some(&payload), signed);
        headers.push(("loket-tag".to_owned(), tag));
    }
    (headers, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_records_on_a_delivery_topic_are_refused_logged_and_counted() {
    use loket_server::proto::ListDenialsRequest;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let brokers = shared_broker();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), &kafka_toml(&brokers, &prefix, "")).await;
    let topic = format!("{prefix}delivery.kmar");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !topic_exists(&brokers, &topic) {
        assert!(Instant::now() < deadline, "the relay did not create {topic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Straight onto kmar's delivery topic, as anyone with write access could: one record
    // without a tag, one tagged with a key no gateway has. Same case as the real event
    // after them, so the same partition, read before it.
    let case = "8000000001";
    let other_key = loket_kafka::RecordKey::from_file_contents(b"a key that is not the gateways' key").unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    for (id, key) in [("forged-1", None), ("forged-2", Some(&other_key))] {
        let (headers, payload) = forged_record(&topic, id, case, key);
        let headers = headers
            .iter()
            .fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: Some(v.as_bytes()) }));
        producer
            .send(FutureRecord::to(&topic).key(case).payload(&payload).headers(headers), Duration::from_secs(30))
            .await
            .unwrap();
    }
    let mut dtv = gw.client("dtv").await;
    publish(&mut dtv, event("dtv", "baggage", "real-1", &example_for("baggage", case))).await.unwrap();

    let mut kmar = gw.client("kmar").await;
    let mut stream = kmar.subscribe(from_earliest("main", 1)).await.unwrap().into_inner();
    let d = tokio::time::timeout(Duration::from_secs(90), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.event.unwrap().id, "real-1", "the forged records before it are not delivered");
    drop(stream);

    // Written to the denial log, as kmar's, with what they claimed and where they were.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let denials = kmar
            .list_denials(ListDenialsRequest { since: None, partner: String::new(), limit: 0 })
            .await
            .unwrap()
            .into_inner()
            .denials;
        let refused: Vec<(String, String)> = denials
            .into_iter()
            .filter(|d| d.kind == "kafka-record-refused")
            .map(|d| (d.event_id, d.reason_code))
            .collect();
        if refused.len() >= 2 || Instant::now() > deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        refused,
        [("forged-1".to_owned(), "MISSING_TAG".to_owned()), ("forged-2".to_owned(), "WRONG_TAG".to_owned())]
    );
    // And counted.
    let (code, metrics) = http_get(gw.metrics_addr.unwrap(), "/metrics");
    assert_eq!(code, 200);
    for reason in ["missing-tag", "wrong-tag"] {
        let line = format!("loket_kafka_records_refused_total{{reason=\"{reason}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line} missing from:\n{metrics}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_again_through_another_gateway_is_delivered_once() {
    let brokers = shared_broker();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    // No canonical view: no canonical topics at all.
    let a = Gateway::start_in(&dir.path().join("a"), &kafka_section(&brokers, &prefix, "")).await;
    let b = Gateway::start_in(&dir.path().join("b"), &kafka_section(&brokers, &prefix, "")).await;
    let case = "8100000001";
    let baggage = example_for("baggage", case);
    // dtv published through A, lost A's reply and published again through B; each
    // gateway journals and relays it. One after the other, so the copies are in this order.
    let mut through_a = a.client("dtv").await;
    let mut through_b = b.client("dtv").await;
    publish(&mut through_a, event("dtv", "baggage", "again-1", &baggage)).await.unwrap();
    wait_drained(&mut through_a).await;
    publish(&mut through_b, event("dtv", "baggage", "again-1", &baggage)).await.unwrap();
    wait_drained(&mut through_b).await;
    publish(&mut through_a, event("dtv", "baggage", "next-1", &baggage)).await.unwrap();
    wait_drained(&mut through_a).await;

    let on_kafka = read_topic(&brokers, &format!("{prefix}delivery.kmar"), 3);
    let ids: Vec<&str> = on_kafka.iter().map(|r| r.header("ce_id")).collect();
    assert_eq!(ids, ["again-1", "again-1", "next-1"], "both copies are on the delivery topic");
    assert!(!topic_exists(&brokers, &format!("{prefix}events.baggage")), "no canonical topic without a view");

    let mut kmar = b.client("kmar").await;
    let mut stream = kmar.subscribe(from_earliest("main", 2)).await.unwrap().into_inner();
    let mut got = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(90), stream.message()).await.unwrap().unwrap() {
        got.push(d.event.unwrap().id);
    }
    assert_eq!(got, ["again-1", "next-1"], "the second copy is dropped");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_case_leaves_a_tombstone_per_event_on_the_delivery_topics() {
    let brokers = shared_broker();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let no_handovers = dir.path().join("no-handovers").display().to_string();
    let toml = format!("{}\n[quality]\nchain_dir = {no_handovers:?}\n", kafka_section(&brokers, &prefix, ""));
    let gw = Gateway::start_in(dir.path(), &toml).await;
    let mut dvo = gw.client("dvo").await;
    let (erased, kept) = ("1000000071", "1000000072");
    for (id, case) in [("ts-e1", erased), ("ts-k1", kept), ("ts-e2", erased)] {
        publish(&mut dvo, event("dvo", "transport-status", id, &example_for("transport-status", case))).await.unwrap();
    }
    wait_drained(&mut dvo).await;
    let mut auditor = gw.client("quality").await;
    let request = EraseCaseRequest { case: erased.to_owned(), reason: "legal ground ended".to_owned() };
    let reply = auditor.erase_case(request).await.unwrap().into_inner();
    assert_eq!(reply.sequences.len(), 2);
    wait_drained(&mut dvo).await;

    // dji receives transport statuses: its delivery topic gets, after the three events, a
    // null-value record per erased event, keyed by the case (what compaction acts on).
    let records = read_topic(&brokers, &format!("{prefix}delivery.dji"), 5);
    let tombstones: Vec<(&str, &str, bool)> = records
        .iter()
        .filter(|r| r.headers.get("ce_tombstone").is_some_and(|v| v == "true"))
        .map(|r| (r.header("ce_id"), r.key.as_str(), r.null_value))
        .collect();
    let mut sorted = tombstones.clone();
    sorted.sort();
    assert_eq!(sorted, [("ts-e1", erased, true), ("ts-e2", erased, true)], "{records:#?}");
    assert_eq!(records.iter().filter(|r| !r.null_value).count(), 3, "the events themselves were produced before");
    gw.stop().await;
}

/// A Kafka-mode subscriber that stops reading holds no more than its buffer (in bytes, as
/// in journal mode) and, after the slow-subscriber timeout, is disconnected with
/// SLOW_SUBSCRIBER: what was buffered, then the status, and nothing of the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_mode_subscriber_that_stops_reading_is_bounded_and_dropped() {
    const EVENTS: usize = 40;
    let brokers = shared_broker();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[grpc]\nsubscriber_buffer_bytes = 65536\nslow_subscriber_timeout_secs = 2\n",
        kafka_toml(&brokers, &prefix, "")
    );
    let gw = Gateway::start_in(dir.path(), &toml).await;
    let mut dtv = gw.client("dtv").await;
    // About 100 KB each: 4 MB in all, more than HTTP/2's windows and the socket buffers
    // take, so the gateway's side of the stream fills up.
    for i in 0..EVENTS {
        let mut data = example_for("baggage", "5000000002");
        let description = format!("{i:05}").repeat(100);
        data["items"] =
            serde_json::json!(vec![serde_json::json!({"category": "other", "description": description}); 200]);
        publish(&mut dtv, event("dtv", "baggage", &format!("big-{i:02}"), &data)).await.unwrap();
    }
    wait_drained(&mut dtv).await;

    let mut kmar = gw.client("kmar").await;
    let request = SubscribeRequest {
        types: vec![],
        start: Some(Start::Earliest(Earliest {})),
        name: "stalled".to_owned(),
        limit: 0,
    };
    let mut stream = kmar.subscribe(request).await.unwrap().into_inner();
    let metrics = gw.metrics_addr.unwrap();
    let slow = || metric(metrics, "loket_slow_subscribers_total", &[("partner", "kmar")]).unwrap_or(0.0);
    for _ in 0..600 {
        if slow() >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(slow(), 1.0, "the stalled Kafka-mode subscriber was dropped");
    let mut delivered = 0;
    let ending = loop {
        match stream.message().await {
            Ok(Some(_)) => delivered += 1,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    let (reason, retry, _) = exhausted(&ending);
    assert_eq!(reason, "SLOW_SUBSCRIBER");
    assert!(retry.is_some(), "RetryInfo: {ending:?}");
    assert!(delivered < EVENTS, "only what was in flight before the stall: {delivered} of {EVENTS}");
    let open = || metric(metrics, "loket_subscriptions_open", &[("partner", "kmar")]);
    for _ in 0..600 {
        if open() == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open(), Some(0.0), "its slot is free again");
    gw.stop().await;
}
