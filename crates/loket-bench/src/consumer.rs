//! A plain Kafka consumer (rdkafka, no loket code) that reads topics from their beginning
//! while events are published, and measures for each record the time from when its event
//! was sent to when the consumer has it, matching records to events by the CloudEvents
//! `ce_source` and `ce_id` headers.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::load::SendLog;
use crate::stats::{long_histogram, record};

/// How long the topics may take to appear, and the consumer to catch up once the
/// producing side is done.
const TOPICS_WAIT: Duration = Duration::from_secs(60);
const CATCH_UP_WAIT: Duration = Duration::from_secs(120);
/// Tansu 0.6 holds every fetch for its maximum wait (half of it above 250 ms) even when
/// it has records to return, so librdkafka's default of 500 ms would add a quarter to half
/// a second to every record's latency; lower, the consumer's fetches would take more of
/// the broker's one storage task from the relay.
const FETCH_WAIT_MS: &str = "100";

/// What the consumer saw.
pub struct Consumed {
    /// Publish→consume latency of every record matched to a sent event (its first copy).
    pub latency: Histogram<u64>,
    pub matched: u64,
    /// Records of events this run did not send (the gateway's own digests) or repeated ones.
    pub other: u64,
}

type Partitions = Vec<(String, i32)>;

/// A consumer running on its own thread. Dropping it stops the thread.
pub struct E2eConsumer {
    thread: JoinHandle<anyhow::Result<Consumed>>,
    bootstrap: String,
    partitions: Partitions,
    /// The partitions' ends once everything is produced.
    ends: Sender<Vec<i64>>,
}

impl E2eConsumer {
    /// Starts reading `topics` (waiting until they exist) and returns once every partition
    /// is assigned from its beginning, so nothing sent afterwards is missed. `sent_as`
    /// maps (source, id) to the event's index in `sent`.
    pub async fn start(
        bootstrap: &str,
        topics: Vec<String>,
        sent_as: HashMap<(String, String), u64>,
        sent: Arc<SendLog>,
    ) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            // Partitions are assigned, not subscribed, so the group is never joined;
            // librdkafka still wants an id.
            .set("group.id", format!("loket-bench-e2e-{}", uuid::Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", FETCH_WAIT_MS)
            .create()
            .context("cannot create the kafka consumer")?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (ends_tx, ends_rx) = mpsc::channel();
        let thread = std::thread::Builder::new().name("bench-e2e-consumer".to_owned()).spawn(move || {
            let partitions = assign(&consumer, &topics, &ends_rx)?;
            let _ = ready_tx.send(partitions.clone());
            read(&consumer, &partitions, sent_as, &sent, &ends_rx)
        })?;
        match ready_rx.await {
            Ok(partitions) => Ok(Self { thread, bootstrap: bootstrap.to_owned(), partitions, ends: ends_tx }),
            // The thread ended before it was ready: its error says why.
            Err(_) => Err(join(thread).err().unwrap_or_else(|| anyhow::anyhow!("the kafka consumer stopped early"))),
        }
    }

    /// Everything is on Kafka: the consumer reads up to the partitions' ends as they are
    /// now, then stops. The ends are asked for here, with a client of their own, so that
    /// a broker slow to answer never holds up the reading (and its measured latencies).
    pub async fn finish(self) -> anyhow::Result<Consumed> {
        let Self { thread, bootstrap, partitions, ends } = self;
        let high = tokio::task::spawn_blocking(move || partition_ends(&bootstrap, &partitions)).await??;
        // A send fails only when the thread has already ended; joining says why.
        let _ = ends.send(high);
        tokio::task::spawn_blocking(move || join(thread)).await?
    }
}

fn join(thread: JoinHandle<anyhow::Result<Consumed>>) -> anyhow::Result<Consumed> {
    thread.join().map_err(|_| anyhow::anyhow!("the kafka consumer thread panicked"))?
}

/// Whether the owner of the consumer is gone.
fn abandoned(ends: &Receiver<Vec<i64>>) -> bool {
    matches!(ends.try_recv(), Err(TryRecvError::Disconnected))
}

/// Assigns every partition of `topics` from the beginning, once they all exist.
fn assign(consumer: &BaseConsumer, topics: &[String], ends: &Receiver<Vec<i64>>) -> anyhow::Result<Partitions> {
    let deadline = Instant::now() + TOPICS_WAIT;
    let mut partitions = Vec::new();
    for topic in topics {
        loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
            if let Ok(m) = &metadata {
                if let Some(t) = m.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty()) {
                    partitions.extend(t.partitions().iter().map(|p| (topic.clone(), p.id())));
                    break;
                }
            }
            if abandoned(ends) {
                bail!("abandoned");
            }
            if Instant::now() > deadline {
                bail!("topic {topic} did not appear within {} s", TOPICS_WAIT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut assignment = TopicPartitionList::new();
    for (topic, partition) in &partitions {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment).context("cannot assign the topics' partitions")?;
    Ok(partitions)
}

fn read(
    consumer: &BaseConsumer,
    partitions: &[(String, i32)],
    mut sent_as: HashMap<(String, String), u64>,
    sent: &SendLog,
    ends: &Receiver<Vec<i64>>,
) -> anyhow::Result<Consumed> {
    let mut out = Consumed { latency: long_histogram(), matched: 0, other: 0 };
    // Next offset to read, per entry of `partitions`.
    let mut next = vec![0i64; partitions.len()];
    // Once everything is produced: the partitions' ends, and until when to reach them.
    let mut target: Option<(Vec<i64>, Instant)> = None;
    // A broker busy with the relay may fail a fetch now and then; the deadline decides
    // when that is a failure.
    let mut last_error: Option<String> = None;
    loop {
        if target.is_none() {
            match ends.try_recv() {
                Ok(high) => target = Some((high, Instant::now() + CATCH_UP_WAIT)),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => bail!("abandoned"),
            }
        }
        if let Some((high, deadline)) = &target {
            if next.iter().zip(high).all(|(n, h)| n >= h) {
                return Ok(out);
            }
            if Instant::now() > *deadline {
                bail!(
                    "the consumer read {} records and had not reached the topics' ends {} s after the last was \
                     produced (last error: {})",
                    out.matched + out.other,
                    CATCH_UP_WAIT.as_secs(),
                    last_error.as_deref().unwrap_or("none")
                );
            }
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => {
                last_error = Some(e.to_string());
                continue;
            }
            Some(Ok(message)) => message,
        };
        let now = Instant::now();
        if let Some(k) = partitions.iter().position(|(t, p)| t == message.topic() && *p == message.partition()) {
            next[k] = next[k].max(message.offset() + 1);
        }
        let sent_at = event_of(&message).and_then(|key| sent_as.remove(&key)).and_then(|i| sent.get(i));
        match sent_at {
            Some(at) => {
                record(&mut out.latency, now.saturating_duration_since(at));
                out.matched += 1;
            }
            None => out.other += 1,
        }
    }
}

/// The high watermark of every partition, in the order of `partitions`, retrying while
/// the broker is too busy to answer in time.
fn partition_ends(bootstrap: &str, partitions: &[(String, i32)]) -> anyhow::Result<Vec<i64>> {
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let deadline = Instant::now() + CATCH_UP_WAIT;
    let mut high = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        loop {
            match client.fetch_watermarks(topic, *partition, Duration::from_secs(10)) {
                Ok((_, h)) => {
                    high.push(h);
                    break;
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("cannot read the end of {topic}/{partition}"));
                }
                Err(_) => {}
            }
        }
    }
    Ok(high)
}

/// The (source, id) of a CloudEvents record, from its binary-mode headers.
fn event_of(message: &BorrowedMessage<'_>) -> Option<(String, String)> {
    let headers = message.headers()?;
    let (mut source, mut id) = (None, None);
    for h in headers.iter() {
        match h.key {
            "ce_source" => source = h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
            "ce_id" => id = h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
            _ => {}
        }
    }
    Some((source?, id?))
}
