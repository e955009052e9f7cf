//! `gateway-kafka`: the `gateway-stream` load against a gateway whose relay produces to
//! Kafka. It counts events as done when the relay has drained (the gateway's Status RPC
//! reports no backlog), and a plain consumer of the canonical topics measures the
//! publish→consume latency of every accepted event. `gateway-kafka-at-N/s`: unary
//! publishes at a fixed rate below what the broker takes, so that latency is measured with
//! the relay keeping up rather than behind a backlog.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use loket_kafka::Topics;
use loket_schema::Registry;
use loket_server::client::{connect, Client, ClientOptions};
use loket_server::proto::StatusRequest;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::replay::READER;
use crate::broker::Broker;
use crate::consumer::E2eConsumer;
use crate::corpus::{self, Item};
use crate::load::{self, Clients, SendLog};
use crate::plan::Plan;
use crate::procs::ServerProcess;
use crate::stats::ArmResult;

/// Partitions of every topic of both Kafka arms.
pub const PARTITIONS: i32 = 3;
/// How often the relay's backlog is asked for once every publish is acknowledged: the
/// arm's time is at most this much late, and the gateway's CPU time, which the asking
/// adds to, stays the relay's.
const DRAIN_POLL: Duration = Duration::from_millis(50);
const DRAIN_WAIT: Duration = Duration::from_secs(600);

/// The `[kafka]` section of the gateway under test: `ack = "journal"` like the other
/// gateway arms, so acknowledgements do not wait for the broker; the canonical topics carry
/// the reader's view, which the e2e consumer reads.
fn gateway_section(broker: &Broker, prefix: &str, record_key: &Path) -> String {
    format!(
        "[kafka]\nbrokers = {:?}\ntopic_prefix = {prefix:?}\npartitions = {PARTITIONS}\nack = \"journal\"\n\
         canonical_view = {READER:?}\nrecord_key_file = {:?}\n",
        broker.bootstrap,
        record_key.display().to_string()
    )
}

/// Runs the arm on a gateway of its own in `work`, with topics under `prefix`; without
/// `e2e`, no consumer reads while the relay produces.
pub async fn gateway_kafka_arm(
    work: &Path,
    certs_dir: &Path,
    items: &Arc<Vec<Item>>,
    events: u64,
    broker: &Broker,
    prefix: &str,
    e2e: bool,
) -> anyhow::Result<ArmResult> {
    let record_key = work.join("record.key");
    std::fs::write(&record_key, uuid::Uuid::new_v4().simple().to_string())?;
    // Dropped on an error, the server process is killed; here it is stopped cleanly.
    let server =
        ServerProcess::gateway(work, "gateway-kafka", certs_dir, &gateway_section(broker, prefix, &record_key))?;
    let topics = Topics { prefix: prefix.to_owned() };
    let sent = Arc::new(SendLog::new(events));
    let consumer = if e2e {
        let canonical = canonical_topics(&topics, items)?;
        Some(E2eConsumer::start(&broker.bootstrap, canonical, sent_as(items, events), sent.clone()).await?)
    } else {
        None
    };
    let clients = Clients::connect(&server.url(), certs_dir, items).await?;
    // Any partner may ask for the gateway's status.
    let options = ClientOptions { server: server.url(), certs: certs_dir.to_owned(), partner: READER.to_owned() };
    let mut probe = connect(&options).await?;

    let cpu0 = server.cpu()?;
    let broker_cpu0 = broker.cpu();
    let start = Instant::now();
    let run = load::streams_logged(&clients, items, events, Some(sent)).await?;
    let acked = start.elapsed();
    wait_drained(&mut probe).await?;
    let elapsed = start.elapsed();
    let cpu = server.cpu()? - cpu0;
    let broker_cpu = broker.cpu().zip(broker_cpu0).map(|(b, b0)| b.saturating_sub(b0));

    let consumed = match consumer {
        Some(c) => Some(c.finish().await?),
        None => None,
    };
    let accepted = run.done - run.rejected;
    let records = records_under(&broker.bootstrap, prefix).await?;
    let (_, peak) = server.memory()?;
    let streams = corpus::sources(items).len();
    let mut note = format!(
        "{streams} streams, ack = journal, done when the relay drained ({:.0}/s acknowledged); \
         {records} records on kafka ({:.1} per accepted event); ",
        run.done as f64 / acked.as_secs_f64(),
        records as f64 / accepted.max(1) as f64,
    );
    match &consumed {
        Some(c) => note.push_str(&format!("e2e over {} of {accepted} accepted events", c.matched)),
        None => note.push_str("no e2e consumer (--no-e2e)"),
    }
    if let Some(b) = broker_cpu {
        note.push_str(&format!("; tansu {:.1} µs CPU/event", b.as_secs_f64() * 1e6 / run.done.max(1) as f64));
    }
    let mut result = ArmResult::new("gateway-kafka", run.done, run.rejected, elapsed)
        .records(records)
        .latency(&run.latency)
        .cpu(cpu)
        .rss(Some(peak))
        .note(note);
    if let Some(c) = &consumed {
        result = result.e2e(&c.latency);
    }
    server.stop()?;
    Ok(result)
}

/// Runs the fixed-rate arm `arm` at `plan.kafka_rate` for `plan.latency_run`, on a gateway
/// of its own in `work` with topics under `prefix`.
pub async fn gateway_kafka_rate_arm(
    arm: &str,
    work: &Path,
    certs_dir: &Path,
    items: &Arc<Vec<Item>>,
    plan: &Plan,
    broker: &Broker,
    prefix: &str,
) -> anyhow::Result<ArmResult> {
    let record_key = work.join("record-at-rate.key");
    std::fs::write(&record_key, uuid::Uuid::new_v4().simple().to_string())?;
    let section = gateway_section(broker, prefix, &record_key);
    let server = ServerProcess::gateway(work, "gateway-kafka-at-rate", certs_dir, &section)?;
    let topics = Topics { prefix: prefix.to_owned() };
    let rate = plan.kafka_rate;
    let total = (rate as f64 * plan.latency_run.as_secs_f64()).max(1.0) as u64;
    let sent = Arc::new(SendLog::new(total));
    let canonical = canonical_topics(&topics, items)?;
    let consumer = E2eConsumer::start(&broker.bootstrap, canonical, sent_as(items, total), sent.clone()).await?;
    let clients = Clients::connect(&server.url(), certs_dir, items).await?;
    let options = ClientOptions { server: server.url(), certs: certs_dir.to_owned(), partner: READER.to_owned() };
    let mut probe = connect(&options).await?;

    let cpu0 = server.cpu()?;
    let start = Instant::now();
    let run = load::open_loop_logged(&clients, items, rate, plan.latency_run, 0, Some(sent)).await?;
    let offered = start.elapsed();
    wait_drained(&mut probe).await?;
    let drained = start.elapsed() - offered;
    let cpu = server.cpu()? - cpu0;
    let consumed = consumer.finish().await?;
    let (_, peak) = server.memory()?;
    server.stop()?;
    let mut note = format!(
        "open loop, offered {rate}/s unary, ack = journal; the relay drained {:.2} s after the last publish; \
         e2e over {} of {} accepted events",
        drained.as_secs_f64(),
        consumed.matched,
        run.done - run.rejected
    );
    if let Some(first) = &run.first_failure {
        note.push_str(&format!("; {} got no answer (first: {first})", run.failed));
    }
    Ok(ArmResult::new(arm, run.done, run.rejected, run.elapsed)
        .latency(&run.latency)
        .e2e(&consumed.latency)
        .cpu(cpu)
        .rss(Some(peak))
        .note(note))
}

/// The canonical topics the corpus's accepted events can land on: those of its types
/// that the gateway knows (the relay creates a topic for each known type at start).
fn canonical_topics(topics: &Topics, items: &[Item]) -> anyhow::Result<Vec<String>> {
    let registry = Registry::embedded()?;
    let known: BTreeSet<&str> = registry.event_types().collect();
    let types: BTreeSet<&str> = items.iter().map(|i| i.event.r#type.as_str()).filter(|t| known.contains(t)).collect();
    if types.is_empty() {
        bail!("the corpus holds no event of a type the gateway knows");
    }
    Ok(types.into_iter().map(|t| topics.canonical(t)).collect())
}

/// (source, id) → index of every event the load sends, as `load::streams` names them.
fn sent_as(items: &[Item], events: u64) -> HashMap<(String, String), u64> {
    let n = items.len() as u64;
    (0..events)
        .map(|i| {
            let item = &items[(i % n) as usize];
            ((item.source.clone(), item.id(i / n)), i)
        })
        .collect()
}

async fn wait_drained(probe: &mut Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + DRAIN_WAIT;
    loop {
        let status = probe.status(StatusRequest {}).await.context("status of the gateway")?.into_inner();
        let relay = status.kafka.context("the gateway under test runs without its kafka relay")?;
        if relay.backlog_events == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the relay still had {} events to produce after {} s (last error: {:?})",
                relay.backlog_events,
                DRAIN_WAIT.as_secs(),
                relay.last_error
            );
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Records on every topic whose name starts with `prefix` (the topics are this run's own,
/// so their end offsets are what was produced to them).
async fn records_under(bootstrap: &str, prefix: &str) -> anyhow::Result<u64> {
    let (bootstrap, prefix) = (bootstrap.to_owned(), prefix.to_owned());
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
        let metadata = client.fetch_metadata(None, Duration::from_secs(10)).context("kafka metadata")?;
        let mut total = 0u64;
        for topic in metadata.topics().iter().filter(|t| t.name().starts_with(&prefix)) {
            for p in topic.partitions() {
                let (low, high) = client
                    .fetch_watermarks(topic.name(), p.id(), Duration::from_secs(10))
                    .with_context(|| format!("cannot read the offsets of {}/{}", topic.name(), p.id()))?;
                total += u64::try_from(high - low).unwrap_or(0);
            }
        }
        Ok(total)
    })
    .await?
}
