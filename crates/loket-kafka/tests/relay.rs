//! The relay against a real broker (the Tansu that tests/run starts) with a delivery
//! policy that redacts for one partner and withholds a type from another: the delivery
//! topics carry each partner's view, the canonical topics the canonical reader's view
//! (here coa's: never a medical file), and every record carries a tag that verifies.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loket_journal::{Journal, JournalConfig, NewEvent, StoredEvent};
use loket_kafka::{
    CloudEventRecord, DeliveryPolicy, KafkaSettings, RecordKey, Relay, Target, Topics, ViewError, ViewRecord,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// `event` as a record in the default profile's names, with no trace.
fn record(event: &StoredEvent, payload: Vec<u8>, redacted: Vec<String>) -> CloudEventRecord {
    CloudEventRecord::new(event, payload, redacted, &loket_domain::Profile::default(), String::new())
}

/// kmar sees everything but `/medical`; coa never sees `medical-file-transfer`, and coa's
/// is the canonical view.
struct Views;

impl Views {
    fn view(partner: &str, event: &StoredEvent) -> Option<CloudEventRecord> {
        match partner {
            "coa" if event.event_type == "medical-file-transfer" => None,
            "kmar" => {
                let mut data: Value = serde_json::from_slice(&event.data).unwrap();
                let removed = data.as_object_mut().unwrap().remove("medical").is_some();
                let redacted = if removed { vec!["/medical".into()] } else { vec![] };
                Some(record(event, serde_json::to_vec(&data).unwrap(), redacted))
            }
            _ => Some(record(event, event.data.clone(), vec![])),
        }
    }
}

impl DeliveryPolicy for Views {
    fn targets(&self) -> Vec<Target> {
        vec![Target::Delivery("kmar".into()), Target::Delivery("coa".into()), Target::Canonical]
    }

    fn rewind(&mut self, _next: u64) -> Pin<Box<dyn Future<Output = Result<(), ViewError>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }

    fn records(&mut self, event: &StoredEvent) -> Result<Vec<ViewRecord>, ViewError> {
        Ok(self
            .targets()
            .into_iter()
            .filter_map(|target| {
                let reader = match &target {
                    Target::Delivery(partner) => partner.as_str(),
                    Target::Canonical => "coa",
                };
                Some(ViewRecord { record: Self::view(reader, event)?, target, event_type: event.event_type.clone() })
            })
            .collect())
    }
}

/// A policy with state along the journal: kmar's record of the n-th event says n. It fails
/// once, at sequence 2, after it counted sequence 1, so the relay must rewind it.
struct Numbering {
    seen: u64,
    failed: bool,
    rewinds: Arc<Mutex<Vec<u64>>>,
}

impl DeliveryPolicy for Numbering {
    fn targets(&self) -> Vec<Target> {
        vec![Target::Delivery("kmar".into())]
    }

    fn rewind(&mut self, next: u64) -> Pin<Box<dyn Future<Output = Result<(), ViewError>> + Send + '_>> {
        self.seen = next - 1;
        self.rewinds.lock().unwrap().push(next);
        Box::pin(async { Ok(()) })
    }

    fn records(&mut self, event: &StoredEvent) -> Result<Vec<ViewRecord>, ViewError> {
        if event.sequence == 2 && !self.failed {
            self.failed = true;
            return Err("index not readable just now".into());
        }
        self.seen += 1;
        let payload = serde_json::to_vec(&json!({ "n": self.seen })).unwrap();
        let record = record(event, payload, vec![]);
        Ok(vec![ViewRecord { target: Target::Delivery("kmar".into()), record, event_type: event.event_type.clone() }])
    }
}

fn new_event(id: &str, event_type: &str, data: Value) -> NewEvent {
    NewEvent {
        source: "dtv".into(),
        id: id.into(),
        event_type: event_type.into(),
        schema_version: 1,
        dataschema: format!("urn:loket:schema:{event_type}:v1"),
        subject: "1234567890".into(),
        time_micros: None,
        datacontenttype: "application/json".into(),
        data: serde_json::to_vec(&data).unwrap(),
        completeness: 1.0,
        missing_expected: vec![],
        ..NewEvent::default()
    }
}

fn key() -> RecordKey {
    RecordKey::from_file_contents(b"relay test key, shared by no gateway").unwrap()
}

fn settings(brokers: &str, prefix: String, partitions: i32) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.to_owned(),
        topics: Topics { prefix },
        partitions,
        replication: 1,
        security: Default::default(),
    }
}

/// Every record of `topic` (one partition), each checked to carry a valid tag.
fn read(brokers: &str, topic: &str, want: usize) -> Vec<CloudEventRecord> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "relay-test-reader").create().unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.len() < want {
        assert!(Instant::now() < deadline, "{} of {want} records on {topic}", records.len());
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            assert_eq!(key().verify(&message), Ok(()), "{topic}: every record carries a valid tag");
            records.push(CloudEventRecord::from_message(&message).unwrap());
        }
    }
    // Nothing beyond: the topic ends where expected.
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    assert_eq!(high as usize, want, "{topic} holds exactly {want} records");
    records
}

/// The shared broker, and a fresh journal in a temporary directory.
fn setup() -> (String, tempfile::TempDir, Journal) {
    let brokers = std::env::var("LOKET_TEST_KAFKA").expect(
        "LOKET_TEST_KAFKA is not set: the Kafka tests need a broker; run them with tests/run, which starts Tansu",
    );
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&JournalConfig {
        dir: dir.path().to_owned(),
        cache_capacity_bytes: 8 << 20,
        max_batch: 64,
        ..JournalConfig::default()
    })
    .unwrap();
    (brokers, dir, journal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_topics_carry_each_partners_view() {
    let (brokers, _dir, journal) = setup();
    let events = [
        new_event("e1", "baggage", json!({"vNumber": "1234567890", "items": 2})),
        new_event("e2", "medical-file-transfer", json!({"vNumber": "1234567890", "medical": {"file": "x"}})),
        new_event("e3", "baggage", json!({"vNumber": "1234567890", "items": 3})),
    ];
    for e in events.iter().cloned() {
        journal.submit(e).await.unwrap();
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("r{}-{nanos}.", std::process::id());
    let settings = settings(&brokers, prefix, 1);
    let shutdown = CancellationToken::new();
    let relay = Relay {
        journal: journal.clone(),
        settings: settings.clone(),
        policy: Box::new(Views),
        event_types: vec!["baggage".into(), "medical-file-transfer".into()],
        record_key: key(),
    };
    let (handle, task) = relay.start(shutdown.clone()).unwrap();
    assert!(handle.wait_relayed(3, Duration::from_secs(60)).await, "{:?}", handle.status());
    assert_eq!(handle.status().unwrap().backlog, 0);

    // The canonical topics carry coa's view: no medical file on any of them.
    read(&brokers, &settings.topics.canonical("medical-file-transfer"), 0);
    let canonical: Vec<String> =
        read(&brokers, &settings.topics.canonical("baggage"), 2).into_iter().map(|r| r.id).collect();
    assert_eq!(canonical, ["e1", "e3"]);

    let kmar: HashMap<String, CloudEventRecord> =
        read(&brokers, &settings.topics.delivery("kmar"), 3).into_iter().map(|r| (r.id.clone(), r)).collect();
    assert_eq!(kmar["e2"].redacted, ["/medical"]);
    let seen: Value = serde_json::from_slice(&kmar["e2"].data).unwrap();
    assert_eq!(seen, json!({"vNumber": "1234567890"}));
    assert!(kmar["e1"].redacted.is_empty());

    let coa: Vec<String> = read(&brokers, &settings.topics.delivery("coa"), 2).into_iter().map(|r| r.id).collect();
    assert_eq!(coa, ["e1", "e3"], "coa does not get what it may not see");

    // The cursor is persisted: a new relay starts after what was delivered.
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(journal.cursor(loket_kafka::relay::CURSOR_OWNER, loket_kafka::relay::CURSOR_NAME).unwrap(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_rewinds_the_policy_to_the_cursor() {
    let (brokers, _dir, journal) = setup();
    for n in 1..=3 {
        journal.submit(new_event(&format!("e{n}"), "baggage", json!({"vNumber": "1234567890"}))).await.unwrap();
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("w{}-{nanos}.", std::process::id());
    let settings = settings(&brokers, prefix, 1);
    let rewinds = Arc::new(Mutex::new(Vec::new()));
    let policy = Numbering { seen: 0, failed: false, rewinds: rewinds.clone() };
    let shutdown = CancellationToken::new();
    let relay = Relay {
        journal,
        settings: settings.clone(),
        policy: Box::new(policy),
        event_types: vec!["baggage".into()],
        record_key: key(),
    };
    let (handle, task) = relay.start(shutdown.clone()).unwrap();
    assert!(handle.wait_relayed(3, Duration::from_secs(60)).await, "{:?}", handle.status());

    let kmar = read(&brokers, &settings.topics.delivery("kmar"), 3);
    let numbers: Vec<(String, Value)> =
        kmar.into_iter().map(|r| (r.id, serde_json::from_slice::<Value>(&r.data).unwrap()["n"].clone())).collect();
    assert_eq!(numbers, [("e1".into(), json!(1)), ("e2".into(), json!(2)), ("e3".into(), json!(3))]);
    assert_eq!(*rewinds.lock().unwrap(), [1, 1], "at start, and again from the cursor after the failure");
    shutdown.cancel();
    task.await.unwrap();
}

/// Throughput of the relay into the broker (run by hand:
/// `cargo test -p loket-kafka --release --test relay -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn relay_throughput() {
    let brokers = std::env::var("LOKET_TEST_KAFKA").expect("LOKET_TEST_KAFKA: run through tests/run");
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&JournalConfig {
        dir: dir.path().to_owned(),
        cache_capacity_bytes: 64 << 20,
        max_batch: 4096,
        ..JournalConfig::default()
    })
    .unwrap();
    const EVENTS: u64 = 20_000;
    let pending: Vec<_> = (0..EVENTS)
        .map(|n| {
            let case = format!("{:010}", n % 100);
            journal.submit(new_event(&format!("e{n}"), "baggage", json!({"vNumber": case, "items": n})))
        })
        .collect();
    for p in pending {
        p.await.unwrap();
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let settings = settings(&brokers, format!("bench{nanos}."), 3);
    let relay =
        Relay { journal, settings, policy: Box::new(Views), event_types: vec!["baggage".into()], record_key: key() };
    let started = Instant::now();
    let (handle, _task) = relay.start(CancellationToken::new()).unwrap();
    assert!(handle.wait_relayed(EVENTS, Duration::from_secs(600)).await);
    let elapsed = started.elapsed();
    eprintln!(
        "relayed {EVENTS} events (3 records each) in {elapsed:?}: {:.0} events/s",
        EVENTS as f64 / elapsed.as_secs_f64()
    );
}
