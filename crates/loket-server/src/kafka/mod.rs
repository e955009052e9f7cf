//! The gateway's Kafka mode: publish acks that wait for the broker (`ack = "kafka"`) and
//! named subscriptions served from the partner's delivery topic through a consumer group,
//! delivering only records a gateway produced (each event once within the dedup window);
//! refused records go to the denial log ([`denial_hook`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loket_domain::time::now_micros;
use loket_kafka::{AckMode, KafkaSettings, KafkaSubscription, RecordChecks, RefusalHook, RelayHandle, StartAt};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::access::{Access, DenialRecord};
use crate::http::metrics::SLOW_SUBSCRIBERS;
use crate::proto::Delivery;
use crate::subscribe::outbox::{Outbox, Refused};
use crate::view::from_kafka;
use crate::Error;

/// After a stream ends (limit reached or the client left), its consumer stays in the
/// group this long to take the acknowledgements of what it delivered (the CLI acks after
/// the stream ends). A new stream of the same subscription on this gateway ends it at once.
const ACK_GRACE: Duration = Duration::from_secs(10);

type AckCommand = (u64, oneshot::Sender<Result<bool, Error>>);
type OpenKey = (String, String);
/// Open streams by (partner, name): a stream id (so a replaced stream does not remove its
/// successor's entry) and where its acknowledgements go.
type OpenStreams = HashMap<OpenKey, (u64, mpsc::Sender<AckCommand>)>;

/// What a Kafka-mode Subscribe asked for.
pub(crate) struct KafkaStreamRequest<'a> {
    pub partner: &'a str,
    pub name: &'a str,
    pub start: StartAt,
    /// Event types to deliver, by their reverse-DNS names (as records carry them); empty
    /// means all.
    pub types: HashSet<String>,
    /// Stop after this many deliveries; 0 means never.
    pub limit: u64,
}

#[derive(Clone)]
pub(crate) struct KafkaMode {
    pub settings: KafkaSettings,
    pub relay: RelayHandle,
    pub ack: AckMode,
    pub ack_timeout: Duration,
    /// Tag verification and deduplication of every subscription.
    checks: RecordChecks,
    /// Streams open on this gateway, by (partner, name), for `Ack`.
    open: Arc<Mutex<OpenStreams>>,
    next_stream: Arc<std::sync::atomic::AtomicU64>,
}

impl KafkaMode {
    pub fn new(
        settings: KafkaSettings,
        relay: RelayHandle,
        ack: AckMode,
        ack_timeout: Duration,
        checks: RecordChecks,
    ) -> Self {
        KafkaMode { settings, relay, ack, ack_timeout, checks, open: Arc::default(), next_stream: Arc::default() }
    }

    /// With `ack = "kafka"`, waits until the event is on the broker.
    pub async fn confirm(&self, sequence: u64) -> Result<(), Error> {
        if self.ack == AckMode::Kafka && !self.relay.wait_relayed(sequence, self.ack_timeout).await {
            return Err(Error::NotOnKafka { sequence });
        }
        Ok(())
    }

    /// Joins the subscription's consumer group and streams its records into `outbox`.
    pub fn subscribe(
        &self,
        request: KafkaStreamRequest<'_>,
        outbox: Outbox,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let KafkaStreamRequest { partner, name, start, types, limit } = request;
        let subscription = KafkaSubscription::open(&self.settings, partner, name, start, self.checks.clone())?;
        let (ack_tx, acks) = mpsc::channel(16);
        let key = (partner.to_owned(), name.to_owned());
        let id = self.next_stream.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), (id, ack_tx));
        let open = self.open.clone();
        tokio::spawn(async move {
            let partner = key.0.clone();
            let stream = Stream { subscription, partner, types, limit, outbox, acks, shutdown };
            let subscription = stream.run().await;
            subscription.close();
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            if open.get(&key).is_some_and(|(current, _)| *current == id) {
                open.remove(&key);
            }
        });
        Ok(())
    }

    /// Commits the group's offsets up to the delivery with `sequence`.
    pub async fn ack(&self, partner: &str, name: &str, sequence: u64) -> Result<u64, Error> {
        let not_open = || Error::SubscriptionNotOpen { name: name.to_owned() };
        let sender = {
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.get(&(partner.to_owned(), name.to_owned())).map(|(_, s)| s.clone()).ok_or_else(not_open)?
        };
        let (reply, answer) = oneshot::channel();
        sender.send((sequence, reply)).await.map_err(|_| not_open())?;
        match answer.await.map_err(|_| not_open())? {
            Ok(true) => Ok(sequence),
            Ok(false) => Err(Error::AckNotDelivered { name: name.to_owned(), sequence }),
            Err(e) => Err(e),
        }
    }
}

/// Writes every record a subscription refused to the denial log (kind
/// `kafka-record-refused`, the claimed event and where the record was as its field).
pub(crate) fn denial_hook(access: Access) -> RefusalHook {
    Arc::new(move |refusal| {
        let record = DenialRecord {
            at_micros: now_micros(),
            partner: refusal.partner.clone(),
            kind: "kafka-record-refused".to_owned(),
            event_type: refusal.claimed_type.clone(),
            event_id: refusal.claimed_id.clone(),
            source: refusal.claimed_source.clone(),
            subject: refusal.claimed_subject.clone(),
            sequence: refusal.claimed_sequence,
            reason_code: refusal.reason_code.replace('-', "_").to_uppercase(),
            reason: refusal.reason.clone(),
            fields: vec![format!("{}/{}@{}", refusal.topic, refusal.partition, refusal.offset)],
        };
        let access = access.clone();
        tokio::spawn(async move {
            if let Err(e) = access.store.refusal(record).await {
                tracing::error!(error = %e, "could not record a refused kafka record in the denial log");
            }
        });
    })
}

struct Stream {
    subscription: KafkaSubscription,
    partner: String,
    types: HashSet<String>,
    limit: u64,
    /// Bounded in bytes; a subscriber that takes nothing for the slow-subscriber timeout
    /// is dropped with its buffer.
    outbox: Outbox,
    acks: mpsc::Receiver<AckCommand>,
    shutdown: CancellationToken,
}

/// How a stream's delivery loop ended.
enum End {
    /// Limit reached, or the client gone.
    Done,
    Status(Status),
    /// The subscriber took nothing for the slow-subscriber timeout.
    Slow,
}

impl Stream {
    async fn run(mut self) -> KafkaSubscription {
        match self.deliver().await {
            End::Done => self.outbox.finish(None),
            End::Status(status) => self.outbox.finish(Some(status)),
            End::Slow => {
                metrics::counter!(SLOW_SUBSCRIBERS, "partner" => self.partner.clone()).increment(1);
                tracing::info!(partner = %self.partner, "slow kafka-mode subscriber disconnected");
                let seconds = self.outbox.slow_after().as_secs();
                self.outbox.abort(Error::SlowSubscriber { seconds }.into());
            }
        }
        // Take the acknowledgements that follow the end of the stream.
        let grace = tokio::time::sleep(ACK_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                () = &mut grace => break,
                () = self.shutdown.cancelled() => break,
                command = self.acks.recv() => match command {
                    Some((sequence, reply)) => {
                        let _ = reply.send(self.subscription.ack(sequence).await.map_err(Error::from));
                    }
                    None => break,
                },
            }
        }
        self.subscription
    }

    /// Delivers records into the outbox until the limit, the client's going away, an
    /// error, shutdown or a slow subscriber.
    async fn deliver(&mut self) -> End {
        let mut delivered = 0u64;
        // The next delivery (and its size), read but not yet in the outbox. Acks are
        // served meanwhile: a client that waits for an Ack reply before it reads on must
        // not stall a stream that waits for the client.
        let mut ready: Option<(Delivery, usize)> = None;
        // Since when the ready delivery waits for room, as the slow-subscriber deadline.
        let mut deadline = None;
        loop {
            if ready.is_none() && self.limit != 0 && delivered >= self.limit {
                return End::Done;
            }
            let (size, until) = match &ready {
                Some((_, size)) => (*size, *deadline.get_or_insert_with(|| self.outbox.deadline())),
                None => (0, self.outbox.deadline()),
            };
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return End::Status(Error::ShuttingDown.into()),
                () = self.outbox.closed() => return End::Done,
                Some((sequence, reply)) = self.acks.recv() => {
                    let _ = reply.send(self.subscription.ack(sequence).await.map_err(Error::from));
                }
                room = self.outbox.room(size, until), if ready.is_some() => match (room, ready.take()) {
                    (Ok(()), Some((delivery, size))) => {
                        self.outbox.push(Ok(delivery), size);
                        delivered += 1;
                        deadline = None;
                    }
                    (Err(Refused::Slow), _) => return End::Slow,
                    _ => return End::Done,
                },
                record = self.subscription.next(), if ready.is_none() => match record {
                    Ok(record) => {
                        if self.types.is_empty() || self.types.contains(&record.event_type) {
                            let delivery = from_kafka(record);
                            let size = delivery.encoded_len();
                            ready = Some((delivery, size));
                        }
                    }
                    Err(e) => return End::Status(Error::from(e).into()),
                },
            }
        }
    }
}
