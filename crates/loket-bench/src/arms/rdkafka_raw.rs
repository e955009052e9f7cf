//! `rdkafka-raw`: the Kafka baseline. A plain idempotent rdkafka producer, configured
//! like the relay's, sends the corpus events (key = subject, CloudEvents binary-mode
//! headers) straight to the broker; the arm ends when every delivery report is in. Its
//! latency is from handing a record to the producer to that record's delivery report.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use loket_kafka::topics::ensure_topics;
use loket_kafka::{KafkaSettings, Topics};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use time::format_description::well_known::Rfc3339;

use super::gateway_kafka::PARTITIONS;
use crate::broker::Broker;
use crate::corpus::Item;
use crate::load::SendLog;
use crate::procs::own_cpu;
use crate::stats::{histogram, record, ArmResult};

/// The relay's `linger.ms` (crates/loket-kafka/src/relay.rs), so both batch alike.
const LINGER_MS: &str = "5";
const REPORTS_WAIT: Duration = Duration::from_secs(600);

pub async fn rdkafka_raw_arm(
    items: &Arc<Vec<Item>>,
    events: u64,
    broker: &Broker,
    prefix: &str,
) -> anyhow::Result<ArmResult> {
    let topics = Topics { prefix: prefix.to_owned() };
    let by_type: HashMap<String, String> = items
        .iter()
        .map(|i| i.event.r#type.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|t| {
            let topic = topics.canonical(&t);
            (t, topic)
        })
        .collect();
    let settings = KafkaSettings {
        brokers: broker.bootstrap.clone(),
        topics,
        partitions: PARTITIONS,
        replication: 1,
        security: Default::default(),
    };
    let names: Vec<String> = by_type.values().cloned().collect();
    ensure_topics(&settings, &names).await.context("cannot create the rdkafka-raw topics")?;

    let broker_cpu0 = broker.cpu();
    let (bootstrap, items) = (broker.bootstrap.clone(), items.clone());
    let run = tokio::task::spawn_blocking(move || produce(&bootstrap, &items, &by_type, events)).await??;
    let broker_cpu = broker.cpu().zip(broker_cpu0).map(|(b, b0)| b.saturating_sub(b0));

    let mut note =
        format!("in-process, enable.idempotence, acks=all, linger.ms={LINGER_MS}; latency to delivery report");
    if let Some(b) = broker_cpu {
        note.push_str(&format!("; tansu {:.1} µs CPU/event", b.as_secs_f64() * 1e6 / events.max(1) as f64));
    }
    Ok(ArmResult::new("rdkafka-raw", events, 0, run.elapsed)
        .records(events)
        .latency(&run.latency)
        .cpu(run.cpu)
        .note(note))
}

struct Produced {
    elapsed: Duration,
    cpu: Duration,
    latency: Histogram<u64>,
}

/// What the delivery callback, on the producer's polling thread, keeps.
struct Reports {
    sent: SendLog,
    latency: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

struct Deliveries(Arc<Reports>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// The event's index in the run.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let now = Instant::now();
        match result {
            Ok(_) => {
                if let Some(at) = self.0.sent.get(index as u64) {
                    record(&mut self.0.latency.lock().unwrap_or_else(|e| e.into_inner()), now - at);
                }
                self.0.delivered.fetch_add(1, Ordering::Release);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Release);
                self.0.first_failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Record headers of one corpus event that do not change between rounds.
struct Envelope<'a> {
    topic: &'a str,
    time: String,
}

fn produce(
    bootstrap: &str,
    items: &[Item],
    by_type: &HashMap<String, String>,
    events: u64,
) -> anyhow::Result<Produced> {
    let reports = Arc::new(Reports {
        sent: SendLog::new(events),
        latency: Mutex::new(histogram()),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_failure: Mutex::new(None),
    });
    // Unlike the relay's, messages time out (librdkafka's default 5 minutes): a broker
    // that goes away fails the arm instead of stalling it.
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", LINGER_MS)
        .create_with_context(Deliveries(reports.clone()))
        .context("cannot create the kafka producer")?;
    // Connect before the clock starts, as the relay has long been connected when it runs.
    producer
        .client()
        .fetch_metadata(None, Duration::from_secs(15))
        .with_context(|| format!("cannot reach the kafka broker at {bootstrap}"))?;
    let envelopes: Vec<Envelope<'_>> = items
        .iter()
        .map(|item| {
            let topic = by_type.get(&item.event.r#type).map(String::as_str).unwrap_or_default();
            let time = item
                .event
                .time
                .and_then(|t| {
                    time::OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos),
                    )
                    .ok()
                })
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_default();
            Envelope { topic, time }
        })
        .collect();

    let n = items.len() as u64;
    let cpu0 = own_cpu()?;
    let start = Instant::now();
    for i in 0..events {
        let k = (i % n) as usize;
        let (item, envelope) = (&items[k], &envelopes[k]);
        let id = item.id(i / n);
        let e = &item.event;
        let headers = [
            ("ce_specversion", e.specversion.as_str()),
            ("ce_id", id.as_str()),
            ("ce_source", e.source.as_str()),
            ("ce_type", e.r#type.as_str()),
            ("ce_subject", e.subject.as_str()),
            ("ce_time", envelope.time.as_str()),
            ("ce_dataschema", e.dataschema.as_str()),
            ("content-type", e.datacontenttype.as_str()),
        ]
        .iter()
        // An attribute the event does not have is no header, as in the relay's records.
        .filter(|(_, value)| !value.is_empty())
        .fold(OwnedHeaders::new_with_capacity(8), |h, (key, value)| {
            h.insert(Header { key, value: Some(value.as_bytes()) })
        });
        reports.sent.mark(i, Instant::now());
        let mut record = BaseRecord::with_opaque_to(envelope.topic, i as usize)
            .key(e.subject.as_str())
            .payload(e.data.as_slice())
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The producer's queue is full: its polling thread frees room as
                    // delivery reports arrive.
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("cannot produce event {i}: {e}"),
            }
        }
    }
    // Counted rather than flushed: `flush` returns when librdkafka has handed out the last
    // report, which the polling thread may still be running the callback of.
    let deadline = start + REPORTS_WAIT;
    let reported = || reports.delivered.load(Ordering::Acquire) + reports.failed.load(Ordering::Acquire);
    while reported() < events {
        if Instant::now() > deadline {
            bail!("{} of {events} delivery reports arrived within {} s", reported(), REPORTS_WAIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    let cpu = own_cpu()? - cpu0;
    let failed = reports.failed.load(Ordering::Acquire);
    if failed > 0 {
        let first = reports.first_failure.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
        bail!("{failed} of {events} records were not delivered (first: {first})");
    }
    let latency = reports.latency.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Produced { elapsed, cpu, latency })
}
