//! The relay against a real broker (the Tansu that tests/run starts) with a delivery
//! policy that redacts for one partner and withholds a type from another: the delivery
//! topics carry each partner's view, the canonical topic the full event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loket_journal::{Journal, JournalConfig, NewEvent, StoredEvent};
use loket_kafka::{CloudEventRecord, DeliveryPolicy, KafkaSettings, Relay, Topics, View};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// kmar sees everything but `/medical`; coa never sees `medical-file-transfer`.
struct Views;

impl DeliveryPolicy for Views {
    fn subscribers(&self) -> Vec<String> {
        vec!["kmar".into(), "coa".into()]
    }

    fn view(&self, partner: &str, event: &StoredEvent) -> View {
        match partner {
            "coa" if event.event_type == "medical-file-transfer" => View::Skip,
            "kmar" => {
                let mut data: Value = serde_json::from_slice(&event.data).unwrap();
                let removed = data.as_object_mut().unwrap().remove("medical").is_some();
                View::Deliver {
                    payload: serde_json::to_vec(&data).unwrap(),
                    redacted: if removed { vec!["/medical".into()] } else { vec![] },
                }
            }
            _ => View::Deliver { payload: event.data.clone(), redacted: vec![] },
        }
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
    }
}

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
            records.push(CloudEventRecord::from_message(&message.unwrap()).unwrap());
        }
    }
    // Nothing beyond: the topic ends where expected.
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    assert_eq!(high as usize, want, "{topic} holds exactly {want} records");
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_topics_carry_each_partners_view() {
    let brokers = std::env::var("LOKET_TEST_KAFKA").expect(
        "LOKET_TEST_KAFKA is not set: the Kafka tests need a broker; run them with tests/run, which starts Tansu",
    );
    let dir = tempfile::tempdir().unwrap();
    let journal =
        Journal::open(&JournalConfig { dir: dir.path().to_owned(), cache_capacity_bytes: 8 << 20, max_batch: 64 })
            .unwrap();
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
    let settings = KafkaSettings { brokers: brokers.clone(), topics: Topics { prefix }, partitions: 1, replication: 1 };
    let shutdown = CancellationToken::new();
    let relay = Relay {
        journal: journal.clone(),
        settings: settings.clone(),
        policy: Arc::new(Views),
        event_types: vec!["baggage".into(), "medical-file-transfer".into()],
    };
    let (handle, task) = relay.start(shutdown.clone()).unwrap();
    assert!(handle.wait_relayed(3, Duration::from_secs(60)).await, "{:?}", handle.status());
    assert_eq!(handle.status().unwrap().backlog, 0);

    let canonical = read(&brokers, &settings.topics.canonical("medical-file-transfer"), 1);
    assert_eq!(canonical[0].data, events[1].data, "the canonical topic has the full event");
    assert!(canonical[0].redacted.is_empty());

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

/// Throughput of the relay into the broker (run by hand:
/// `cargo test -p loket-kafka --release --test relay -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn relay_throughput() {
    let brokers = std::env::var("LOKET_TEST_KAFKA").expect("LOKET_TEST_KAFKA: run through tests/run");
    let dir = tempfile::tempdir().unwrap();
    let journal =
        Journal::open(&JournalConfig { dir: dir.path().to_owned(), cache_capacity_bytes: 64 << 20, max_batch: 4096 })
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
    let settings =
        KafkaSettings { brokers, topics: Topics { prefix: format!("bench{nanos}.") }, partitions: 3, replication: 1 };
    let relay = Relay { journal, settings, policy: Arc::new(Views), event_types: vec!["baggage".into()] };
    let started = Instant::now();
    let (handle, _task) = relay.start(CancellationToken::new()).unwrap();
    assert!(handle.wait_relayed(EVENTS, Duration::from_secs(600)).await);
    let elapsed = started.elapsed();
    eprintln!(
        "relayed {EVENTS} events (3 records each) in {elapsed:?}: {:.0} events/s",
        EVENTS as f64 / elapsed.as_secs_f64()
    );
}
