//! Subscribe and Ack: checks a subscription request and its grants, finds where it starts
//! (a start position, or a named subscription's durable cursor), and serves it from the
//! journal (`journal.rs`) or, for named subscriptions in Kafka mode, from the partner's
//! delivery topic (`crate::kafka`).

mod journal;
mod named;
pub(crate) mod outbox;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use loket_access::SubscribeRefusal;
use loket_domain::{FieldViolation, PartnerId, StartPosition, DIGEST_TYPE};
use loket_kafka::StartAt;
use loket_schema::Registry;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use self::journal::JournalSubscription;
use crate::access::denials;
use crate::http::metrics::SUBSCRIPTIONS_OPEN;
use crate::kafka::{KafkaMode, KafkaStreamRequest};
use crate::limits::Limits;
use crate::proto::timestamp::to_micros;
use crate::proto::{subscribe_request, AckReply, AckRequest, Delivery, SubscribeRequest};
use crate::view::{Digests, Viewer};
use crate::Error;

/// Longest durable subscription name.
const MAX_NAME_LEN: usize = 64;

pub(crate) type Deliveries = Pin<Box<dyn futures::Stream<Item = Result<Delivery, Status>> + Send>>;

/// Named subscriptions with a stream open on this gateway, by (partner, name), counted.
type OpenNames = Arc<Mutex<HashMap<(String, String), usize>>>;

/// What an open subscriber stream holds until it ends: its slot in the partner's quota,
/// its place in the open-subscriptions gauge and, when named, in [`OpenNames`].
pub(crate) struct Held {
    _slot: OwnedSemaphorePermit,
    partner: String,
    name: String,
    open: OpenNames,
}

impl Held {
    fn new(slot: OwnedSemaphorePermit, partner: &PartnerId, name: &str, open: &OpenNames) -> Self {
        metrics::gauge!(SUBSCRIPTIONS_OPEN, "partner" => partner.to_string()).increment(1.0);
        if !name.is_empty() {
            let mut names = open.lock().unwrap_or_else(|e| e.into_inner());
            *names.entry((partner.to_string(), name.to_owned())).or_insert(0) += 1;
        }
        Self { _slot: slot, partner: partner.to_string(), name: name.to_owned(), open: open.clone() }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        metrics::gauge!(SUBSCRIPTIONS_OPEN, "partner" => self.partner.clone()).decrement(1.0);
        if !self.name.is_empty() {
            let mut names = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let key = (std::mem::take(&mut self.partner), std::mem::take(&mut self.name));
            if let Some(n) = names.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    names.remove(&key);
                }
            }
        }
    }
}

/// What subscriptions need.
#[derive(Clone)]
pub(crate) struct Subscriptions {
    pub viewer: Viewer,
    pub registry: Arc<Registry>,
    /// Present when `[kafka]` is configured.
    pub kafka: Option<KafkaMode>,
    pub shutdown: CancellationToken,
    pub limits: Limits,
    /// Named subscriptions open now (not expired, listed as open).
    pub open: OpenNames,
    /// Bytes buffered per subscriber stream (`[grpc] subscriber_buffer_bytes`).
    pub buffer_bytes: usize,
    /// `[grpc] slow_subscriber_timeout_secs`.
    pub slow_after: Duration,
}

impl Subscriptions {
    /// Opens `partner`'s subscription: every problem with the request at once, then the
    /// grants (a refusal is recorded in the denial log).
    pub async fn subscribe(&self, partner: &PartnerId, mut req: SubscribeRequest) -> Result<Deliveries, Error> {
        // Types are asked for by their reverse-DNS name or its short alias; the policy and
        // the journal speak the short one.
        let profile = self.viewer.access.profile.clone();
        req.types = req.types.iter().map(|t| profile.short_type(t).to_owned()).collect();
        let (start, kafka_start) = self.check(&req)?;
        if let Err(refusal) = self.viewer.access.policy.check_subscription(partner.as_str(), &req.types) {
            let e = match refusal {
                SubscribeRefusal::NoGrants => Error::NoGrants { partner: partner.to_string() },
                SubscribeRefusal::NotGranted(types) => {
                    Error::SubscribeNotGranted { partner: partner.to_string(), types }
                }
            };
            let types = req.types.join(",");
            denials::record_refusal(&self.viewer.access, "subscribe-refused", partner.as_str(), &e, "", &types).await;
            return Err(e);
        }
        let slot = self.limits.open_subscription(partner)?;
        if let Some(kafka) = self.kafka.as_ref().filter(|_| !req.name.is_empty()) {
            // Bounded in bytes, and dropped when the subscriber stops reading, as below.
            let (outbox, deliveries) = outbox::outbox(self.buffer_bytes, self.slow_after);
            let request = KafkaStreamRequest {
                partner: partner.as_str(),
                name: &req.name,
                start: kafka_start,
                // Records carry the reverse-DNS type.
                types: req
                    .types
                    .iter()
                    .filter(|t| t.as_str() != DIGEST_TYPE)
                    .map(|t| profile.event_type(t))
                    .collect::<HashSet<_>>(),
                limit: req.limit,
            };
            kafka.subscribe(request, outbox, self.shutdown.clone())?;
            tracing::debug!(partner = %partner, name = %req.name, "kafka subscription started");
            let held = Held::new(slot, partner, &req.name, &self.open);
            // The stream holds the slot: tonic drops it when the client goes away.
            return Ok(Box::pin(deliveries.map(move |item| {
                let _held = &held;
                item
            })));
        }
        let next = if req.name.is_empty() {
            self.start_sequence(start)?
        } else {
            self.resume_or_create(partner, &req.name, start)?
        };
        tracing::debug!(partner = %partner, name = %req.name, next, "subscription started");
        let digests = if !req.types.is_empty() && req.types.iter().all(|t| t == DIGEST_TYPE) {
            Digests::Only
        } else if req.types.is_empty() || req.types.iter().any(|t| t == DIGEST_TYPE) {
            Digests::Include
        } else {
            Digests::Skip
        };
        let (outbox, deliveries) = outbox::outbox(self.buffer_bytes, self.slow_after);
        let subscription = JournalSubscription {
            viewer: self.viewer.clone(),
            partner: partner.to_string(),
            next,
            types: req.types.into_iter().filter(|t| t != DIGEST_TYPE).collect::<BTreeSet<_>>(),
            digests,
            limit: req.limit,
            _held: Held::new(slot, partner, &req.name, &self.open),
            name: req.name,
            shutdown: self.shutdown.clone(),
            slow_secs: self.slow_after.as_secs(),
            buffer_bytes: self.buffer_bytes,
        };
        tokio::spawn(subscription.run(outbox));
        Ok(Box::pin(deliveries))
    }

    /// Every problem with the request at once; where it starts, on the journal and on Kafka.
    fn check(&self, req: &SubscribeRequest) -> Result<(StartPosition, StartAt), Error> {
        let mut problems = Vec::new();
        for t in &req.types {
            if let Err(e) = self.registry.resolve(t, None) {
                problems.push(FieldViolation::new("types", e.to_string()));
            }
        }
        if !req.name.is_empty() {
            problems.extend(check_name(&req.name));
        }
        let start = match req.start {
            None | Some(subscribe_request::Start::Earliest(_)) => StartPosition::Earliest,
            Some(subscribe_request::Start::Latest(_)) => StartPosition::Latest,
            Some(subscribe_request::Start::Sequence(s)) => StartPosition::Sequence(s),
            Some(subscribe_request::Start::Time(ts)) => match to_micros(&ts) {
                Some(m) => StartPosition::Time(m),
                None => {
                    problems.push(FieldViolation::new("time", "must be a valid instant between years 1 and 9999"));
                    StartPosition::Earliest
                }
            },
        };
        let kafka_start = match start {
            StartPosition::Earliest => StartAt::Earliest,
            StartPosition::Latest => StartAt::Latest,
            StartPosition::Sequence(_) | StartPosition::Time(_) => {
                if self.kafka.is_some() && !req.name.is_empty() {
                    problems.push(FieldViolation::new(
                        "start",
                        "a named subscription reads its Kafka delivery topic: start at earliest or latest",
                    ));
                }
                StartAt::Earliest
            }
        };
        if problems.is_empty() {
            Ok((start, kafka_start))
        } else {
            Err(Error::InvalidSubscription(problems))
        }
    }

    /// The first sequence to read; a start past the next event to come is OUT_OF_RANGE
    /// (nothing could ever be delivered before the journal got there).
    fn start_sequence(&self, start: StartPosition) -> Result<u64, Error> {
        let journal = &self.viewer.journal;
        Ok(match start {
            StartPosition::Earliest => 1,
            StartPosition::Latest => journal.last_sequence() + 1,
            StartPosition::Sequence(s) => {
                let last = journal.last_sequence();
                if s > last.saturating_add(1) {
                    return Err(Error::StartBeyondEnd { start: s, last });
                }
                s.max(1)
            }
            StartPosition::Time(micros) => journal.first_sequence_at_or_after(micros)?,
        })
    }

    /// A named subscription resumes after its cursor; a new one starts at `start` and
    /// exists from now on, so a reconnect before the first ack starts at the same place.
    fn resume_or_create(&self, partner: &PartnerId, name: &str, start: StartPosition) -> Result<u64, Error> {
        let journal = &self.viewer.journal;
        if let Some(acked) = journal.cursor(partner.as_str(), name)? {
            journal.touch_cursor(partner.as_str(), name)?;
            return Ok(acked + 1);
        }
        let first = self.start_sequence(start)?;
        self.limits.check_named(partner, journal.cursors_of(partner.as_str())?.len())?;
        let acked = journal.create_cursor(partner.as_str(), name, first - 1)?;
        Ok(acked + 1)
    }

    /// Moves a named subscription's cursor forward (on Kafka: its consumer group's offsets).
    pub async fn ack(&self, partner: &PartnerId, req: AckRequest) -> Result<AckReply, Error> {
        if let Some(p) = check_name(&req.name) {
            return Err(Error::InvalidSubscription(vec![p]));
        }
        if let Some(kafka) = &self.kafka {
            let acked = kafka.ack(partner.as_str(), &req.name, req.sequence).await?;
            return Ok(AckReply { acked });
        }
        let journal = &self.viewer.journal;
        let last = journal.last_sequence();
        if req.sequence > last {
            return Err(Error::AckBeyondEnd { sequence: req.sequence, last });
        }
        let acked = journal.ack(partner.as_str(), &req.name, req.sequence)?;
        Ok(AckReply { acked })
    }
}

fn check_name(name: &str) -> Option<FieldViolation> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (!ok).then(|| FieldViolation::new("name", format!("must be 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-'")))
}
