//! The relay: journal → Kafka, in sequence order, from a cursor kept in the journal.
//!
//! Ordering: one idempotent producer (`enable.idempotence`, `acks=all`) enqueues records in
//! journal order and librdkafka keeps that order per partition across its internal
//! retries; the record key is the case, so a case is on one partition and in order.
//! Messages never time out in the client (`message.timeout.ms=0`): while the broker is
//! down librdkafka reconnects with backoff and the relay simply does not advance. The cursor
//! advances only when every record of an event (canonical and deliveries) has a successful
//! delivery report; a crash before the cursor is flushed re-produces those events, so a
//! duplicate on Kafka is always a complete copy with the same `ce_id`.
//!
//! The delivery policy keeps state along the journal (consents seen, events withheld), so
//! whenever the relay reads from anywhere but where the policy's state is (at start, after
//! a failure) it rewinds the policy to that position first: re-produced records are then
//! the same records.
//!
//! The relay produces nothing but the policy's views: each partner's delivery records and,
//! with a canonical view, the canonical records; the stored event as such never leaves the
//! gateway. Every record is tagged with the cluster's record key for its topic.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loket_journal::{Journal, StoredEvent};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::RecordKey;
use crate::client::Observed;
use crate::record::CloudEventRecord;
use crate::topics::ensure_topics;
use crate::view::{DeliveryPolicy, Target};
use crate::{Error, KafkaSettings};

/// The relay's cursor in the journal's cursor table. Partner ids are lowercase letters and
/// digits, so this owner can never collide with a subscriber's cursor.
pub const CURSOR_OWNER: &str = "@kafka";
pub const CURSOR_NAME: &str = "relay";

/// Journal events read and enqueued per step.
const READ_CHUNK: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a non-empty backlog is logged.
const BACKLOG_LOG_EVERY: Duration = Duration::from_secs(5);

/// The relay's progress, as reported to operators and the Status RPC.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RelayStatus {
    /// Every event up to this sequence is on Kafka.
    pub relayed: u64,
    /// The journal's last durable sequence.
    pub last: u64,
    /// Events stored but not yet on Kafka.
    pub backlog: u64,
    /// When the oldest of them was stored (Unix µs); `None` without a backlog.
    pub oldest_received_at_micros: Option<i64>,
    /// The last failure since the relay last made progress, if any: the relay's own or
    /// what the producer's client last reported (a broker it cannot reach, a refused
    /// certificate or login), naming the broker.
    pub last_error: Option<String>,
}

impl RelayStatus {
    /// How long the oldest event not yet on Kafka has waited; zero without a backlog.
    pub fn oldest_age(&self) -> Duration {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
        self.oldest_received_at_micros.map_or(Duration::ZERO, |oldest| {
            Duration::from_micros(u64::try_from(now - i128::from(oldest)).unwrap_or(0))
        })
    }
}

/// What the gateway keeps of a running relay.
#[derive(Clone)]
pub struct RelayHandle {
    journal: Journal,
    relayed: watch::Receiver<u64>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl RelayHandle {
    /// The relay's progress now.
    pub fn status(&self) -> Result<RelayStatus, Error> {
        let relayed = *self.relayed.borrow();
        let last = self.journal.last_sequence();
        let backlog = last.saturating_sub(relayed);
        let oldest = if backlog == 0 { None } else { self.journal.get(relayed + 1)?.map(|e| e.received_at_micros) };
        let last_error = self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(RelayStatus { relayed, last, backlog, oldest_received_at_micros: oldest, last_error })
    }

    /// Waits until `sequence` is on Kafka; false when `timeout` passes first.
    pub async fn wait_relayed(&self, sequence: u64, timeout: Duration) -> bool {
        let mut relayed = self.relayed.clone();
        tokio::time::timeout(timeout, relayed.wait_for(|r| *r >= sequence)).await.is_ok_and(|r| r.is_ok())
    }
}

/// A record and the topic it goes to.
type Outgoing = (String, CloudEventRecord);

/// A relay ready to start.
pub struct Relay {
    pub journal: Journal,
    pub settings: KafkaSettings,
    pub policy: Box<dyn DeliveryPolicy>,
    /// Event types whose canonical topics are created at start (with a canonical view).
    pub event_types: Vec<String>,
    /// The key every produced record is tagged with.
    pub record_key: RecordKey,
}

struct Running {
    journal: Journal,
    settings: KafkaSettings,
    policy: Box<dyn DeliveryPolicy>,
    /// The journal position the policy's state is at: the relay rewinds it when it reads
    /// from anywhere else (at start, and after a failure left the cursor behind).
    policy_at: u64,
    producer: FutureProducer<Observed>,
    record_key: RecordKey,
    relayed: watch::Sender<u64>,
    last_error: Arc<Mutex<Option<String>>>,
    /// Topics known to exist.
    topics: HashSet<String>,
}

impl Relay {
    /// Reads the cursor, creates the producer (which connects lazily) and spawns the relay
    /// until `shutdown`.
    pub fn start(self, shutdown: CancellationToken) -> Result<(RelayHandle, JoinHandle<()>), Error> {
        let cursor = match self.journal.cursor(CURSOR_OWNER, CURSOR_NAME)? {
            Some(c) => c,
            None => self.journal.create_cursor(CURSOR_OWNER, CURSOR_NAME, 0)?,
        };
        let last_error = Arc::new(Mutex::new(None));
        let producer: FutureProducer<Observed> = self
            .settings
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "5000")
            .set("retry.backoff.ms", "100")
            .set("retry.backoff.max.ms", "5000")
            .create_with_context(Observed::into_slot(last_error.clone()))
            .map_err(Error::Client)?;
        let (relayed, relayed_rx) = watch::channel(cursor);
        let handle = RelayHandle { journal: self.journal.clone(), relayed: relayed_rx, last_error: last_error.clone() };
        let running = Running {
            journal: self.journal,
            settings: self.settings,
            policy: self.policy,
            policy_at: 0,
            producer,
            record_key: self.record_key,
            relayed,
            last_error,
            topics: HashSet::new(),
        };
        tracing::info!(brokers = %running.settings.brokers, relayed = cursor, "kafka relay starting");
        let task = tokio::spawn(running.run(self.event_types, handle.clone(), shutdown));
        Ok((handle, task))
    }
}

impl Running {
    async fn run(mut self, event_types: Vec<String>, handle: RelayHandle, shutdown: CancellationToken) {
        let topics = &self.settings.topics;
        let initial: Vec<String> = self
            .policy
            .targets()
            .into_iter()
            .flat_map(|target| match target {
                Target::Canonical => event_types.iter().map(|t| topics.canonical(t)).collect(),
                Target::Delivery(partner) => vec![topics.delivery(&partner)],
            })
            .collect();
        let mut backoff = BACKOFF_MIN;
        // Create the topics before the first event so consumers can subscribe at once.
        while let Err(e) = self.ensure(&initial).await {
            if !self.pause(&e, &mut backoff, &shutdown).await {
                return self.stop();
            }
        }
        let mut durable = self.journal.watch();
        let mut report = tokio::time::interval(BACKLOG_LOG_EVERY);
        loop {
            durable.borrow_and_update();
            let from = *self.relayed.borrow() + 1;
            if self.policy_at != from {
                let rewound = tokio::select! {
                    rewound = self.policy.rewind(from) => rewound,
                    () = shutdown.cancelled() => return self.stop(),
                };
                if let Err(source) = rewound {
                    if !self.pause(&Error::Rewind { next: from, source }, &mut backoff, &shutdown).await {
                        return self.stop();
                    }
                    continue;
                }
                self.policy_at = from;
            }
            let batch = match self.journal.read_from(from, READ_CHUNK) {
                Ok(batch) => batch,
                Err(e) => {
                    if !self.pause(&e.into(), &mut backoff, &shutdown).await {
                        return self.stop();
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    changed = durable.changed() => if changed.is_err() { return self.stop() },
                    () = shutdown.cancelled() => return self.stop(),
                }
                continue;
            }
            let outcome = tokio::select! {
                outcome = self.relay(&batch, &handle, &mut report) => outcome,
                () = shutdown.cancelled() => return self.stop(),
            };
            match outcome {
                Ok(()) => {
                    backoff = BACKOFF_MIN;
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Err(e) => {
                    if !self.pause(&e, &mut backoff, &shutdown).await {
                        return self.stop();
                    }
                }
            }
        }
    }

    /// Records and logs a failure, then sleeps with exponential backoff; false on shutdown.
    async fn pause(&self, error: &Error, backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "kafka relay will retry");
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
        let wait = *backoff;
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = shutdown.cancelled() => false,
        }
    }

    fn stop(self) {
        // Dropping the producer purges what is unconfirmed: those events stay behind the
        // cursor and are produced again next time.
        tracing::info!(relayed = *self.relayed.borrow(), "kafka relay stopped");
    }

    async fn ensure(&mut self, names: &[String]) -> Result<(), Error> {
        let missing: Vec<String> = names.iter().filter(|n| !self.topics.contains(*n)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        ensure_topics(&self.settings, &missing).await?;
        self.topics.extend(missing);
        Ok(())
    }

    /// The records of one event: what the policy's views give, each with its topic.
    fn records(&mut self, event: &StoredEvent) -> Result<Vec<Outgoing>, Error> {
        let views = self.policy.records(event).map_err(|source| Error::View { sequence: event.sequence, source })?;
        Ok(views.into_iter().map(|v| (v.target.topic(&self.settings.topics, &v.event_type), v.record)).collect())
    }

    /// The records of a batch, moving the policy's state past it.
    fn plan(&mut self, batch: &[StoredEvent]) -> Result<Vec<(u64, Vec<Outgoing>)>, Error> {
        // Until the whole batch is planned the policy's state is nowhere in particular.
        self.policy_at = 0;
        let planned = batch.iter().map(|e| Ok((e.sequence, self.records(e)?))).collect::<Result<Vec<_>, Error>>()?;
        self.policy_at = batch.last().map_or(0, |e| e.sequence + 1);
        Ok(planned)
    }

    async fn relay(
        &mut self,
        batch: &[StoredEvent],
        handle: &RelayHandle,
        report: &mut tokio::time::Interval,
    ) -> Result<(), Error> {
        let planned = self.plan(batch)?;
        let topics: Vec<String> = planned.iter().flat_map(|(_, r)| r.iter().map(|(t, _)| t.clone())).collect();
        self.ensure(&topics).await?;
        let mut pending: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
        for (sequence, records) in planned {
            for (topic, record) in records {
                let headers = record.tagged_headers(&topic, &self.record_key);
                loop {
                    let base = FutureRecord::<str, [u8]>::to(&topic).key(&record.subject).headers(headers.clone());
                    // A tombstone has no value at all: that is what compaction acts on.
                    let produced = self.producer.send_result(match record.value() {
                        Some(value) => base.payload(value),
                        None => base,
                    });
                    match produced {
                        Ok(delivery) => {
                            pending.push_back((sequence, delivery));
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            // Make room by waiting for the oldest report (in order, so the
                            // cursor can move meanwhile).
                            if pending.is_empty() {
                                tokio::time::sleep(BACKOFF_MIN).await;
                            } else {
                                self.complete_front(&mut pending, handle, report).await?;
                            }
                        }
                        Err((reason, _)) => return Err(Error::Delivery { sequence, reason }),
                    }
                }
            }
        }
        while !pending.is_empty() {
            self.complete_front(&mut pending, handle, report).await?;
        }
        // Events that no view receives have no records: the batch is done all the same.
        if let Some(last) = batch.last().map(|e| e.sequence).filter(|last| *self.relayed.borrow() < *last) {
            self.journal.ack(CURSOR_OWNER, CURSOR_NAME, last)?;
            self.relayed.send_replace(last);
        }
        Ok(())
    }

    /// Awaits the oldest delivery report; when it was the last record of its event, the
    /// cursor moves to that event.
    async fn complete_front(
        &self,
        pending: &mut VecDeque<(u64, DeliveryFuture)>,
        handle: &RelayHandle,
        report: &mut tokio::time::Interval,
    ) -> Result<(), Error> {
        let Some((sequence, mut delivery)) = pending.pop_front() else { return Ok(()) };
        let outcome = loop {
            tokio::select! {
                outcome = &mut delivery => break outcome,
                _ = report.tick() => log_backlog(handle),
            }
        };
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err((reason, _))) => return Err(Error::Delivery { sequence, reason }),
            Err(_) => return Err(Error::Delivery { sequence, reason: KafkaError::Canceled }),
        }
        if pending.front().is_none_or(|(next, _)| *next != sequence) {
            self.journal.ack(CURSOR_OWNER, CURSOR_NAME, sequence)?;
            self.relayed.send_replace(sequence);
        }
        Ok(())
    }
}

fn log_backlog(handle: &RelayHandle) {
    match handle.status() {
        Ok(status) if status.backlog > 0 => {
            tracing::warn!(
                backlog_events = status.backlog,
                oldest_age_ms = status.oldest_age().as_millis() as u64,
                relayed = status.relayed,
                last_error = status.last_error.as_deref().unwrap_or(""),
                "kafka relay is behind"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the kafka relay's backlog"),
    }
}
