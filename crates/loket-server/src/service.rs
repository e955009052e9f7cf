//! The `loket.v1.Gateway` service: wires identity, intake, journal and subscriptions.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use futures::stream::{FuturesOrdered, StreamExt};
use loket_domain::{FieldViolation, PartnerId, StartPosition};
use loket_journal::{Appended, Journal};
use loket_kafka::{RelayStatus, StartAt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::error::to_rpc_status;
use crate::identity::{caller, IdentityMode};
use crate::intake::Intake;
use crate::kafka_mode::{KafkaMode, KafkaStreamRequest};
use crate::proto::gateway_server::Gateway;
use crate::proto::{
    publish_stream_reply, subscribe_request, AckReply, AckRequest, Delivery, KafkaRelayStatus, ListSchemasReply,
    ListSchemasRequest, PublishReply, PublishRequest, PublishStreamReply, SchemaInfo, StatusReply, StatusRequest,
    SubscribeRequest,
};
use crate::subscription::Subscription;
use crate::timestamp::{from_micros, to_micros};
use crate::Error;

/// Longest durable subscription name.
const MAX_NAME_LEN: usize = 64;

pub(crate) struct GatewayService {
    pub intake: Intake,
    pub journal: Journal,
    pub identity: IdentityMode,
    pub stream_in_flight: usize,
    pub shutdown: CancellationToken,
    /// Present when `[kafka]` is configured.
    pub kafka: Option<KafkaMode>,
}

type ReplyStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;
type PendingReply = Pin<Box<dyn Future<Output = PublishStreamReply> + Send>>;

fn accepted(appended: Appended, dataschema: String) -> PublishReply {
    PublishReply {
        sequence: appended.sequence,
        duplicate: appended.duplicate,
        completeness: appended.completeness,
        missing_expected: appended.missing_expected,
        dataschema,
        received_at: Some(from_micros(appended.received_at_micros)),
    }
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishReply>, Status> {
        let partner = caller(&request, self.identity)?;
        let event = self.intake.admit(&partner, request.into_inner().event)?;
        let dataschema = event.dataschema.clone();
        let appended = self.journal.submit(event).await.map_err(Error::from)?;
        if let Some(kafka) = &self.kafka {
            kafka.confirm(appended.sequence).await?;
        }
        Ok(Response::new(accepted(appended, dataschema)))
    }

    type PublishStreamStream = ReplyStream<PublishStreamReply>;

    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let partner = caller(&request, self.identity)?;
        let mut inbound = request.into_inner();
        let intake = self.intake.clone();
        let journal = self.journal.clone();
        let kafka = self.kafka.clone();
        let in_flight = self.stream_in_flight;
        let (tx, rx) = mpsc::channel(in_flight);
        tokio::spawn(async move {
            // Replies leave in request order; the journal sequences events in submit order,
            // so one stream's events keep their order too.
            let mut pending: FuturesOrdered<PendingReply> = FuturesOrdered::new();
            let mut reading = true;
            while reading || !pending.is_empty() {
                tokio::select! {
                    biased;
                    Some(reply) = pending.next(), if !pending.is_empty() => {
                        if tx.send(Ok(reply)).await.is_err() {
                            return;
                        }
                    }
                    message = inbound.message(), if reading && pending.len() < in_flight => match message {
                        Ok(Some(req)) => pending.push_back(publish_one(&intake, &journal, kafka.as_ref(), &partner, req)),
                        Ok(None) => reading = false,
                        Err(status) => {
                            tracing::debug!(%status, partner = %partner, "publish stream ended by the client");
                            reading = false;
                        }
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type SubscribeStream = ReplyStream<Delivery>;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let partner = caller(&request, self.identity)?;
        let req = request.into_inner();
        let mut problems = Vec::new();
        for t in &req.types {
            if let Err(e) = self.intake.registry.resolve(t, None) {
                problems.push(FieldViolation::new("types", e.to_string()));
            }
        }
        if !req.name.is_empty() {
            if let Some(p) = check_name(&req.name) {
                problems.push(p);
            }
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
        let kafka = self.kafka.as_ref().filter(|_| !req.name.is_empty());
        let kafka_start = match start {
            StartPosition::Earliest => StartAt::Earliest,
            StartPosition::Latest => StartAt::Latest,
            StartPosition::Sequence(_) | StartPosition::Time(_) => {
                if kafka.is_some() {
                    problems.push(FieldViolation::new(
                        "start",
                        "a named subscription reads its Kafka delivery topic: start at earliest or latest",
                    ));
                }
                StartAt::Earliest
            }
        };
        if !problems.is_empty() {
            return Err(Error::InvalidSubscription(problems).into());
        }
        let types = req.types.into_iter().collect::<HashSet<_>>();
        if let Some(kafka) = kafka {
            let (tx, rx) = mpsc::channel(256);
            let request = KafkaStreamRequest {
                partner: partner.as_str(),
                name: &req.name,
                start: kafka_start,
                types,
                limit: req.limit,
            };
            kafka.subscribe(request, tx, self.shutdown.clone())?;
            tracing::debug!(partner = %partner, name = %req.name, "kafka subscription started");
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }

        let next = if req.name.is_empty() {
            self.start_sequence(start)?
        } else {
            self.resume_or_create(&partner, &req.name, start)?
        };
        tracing::debug!(partner = %partner, name = %req.name, next, "subscription started");
        let (tx, rx) = mpsc::channel(256);
        let subscription = Subscription {
            journal: self.journal.clone(),
            next,
            types,
            limit: req.limit,
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(subscription.run(tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        let partner = caller(&request, self.identity)?;
        let req = request.into_inner();
        if let Some(p) = check_name(&req.name) {
            return Err(Error::InvalidSubscription(vec![p]).into());
        }
        if let Some(kafka) = &self.kafka {
            let acked = kafka.ack(partner.as_str(), &req.name, req.sequence).await?;
            return Ok(Response::new(AckReply { acked }));
        }
        let last = self.journal.last_sequence();
        if req.sequence > last {
            return Err(Error::AckBeyondEnd { sequence: req.sequence, last }.into());
        }
        let acked = self.journal.ack(partner.as_str(), &req.name, req.sequence).map_err(Error::from)?;
        Ok(Response::new(AckReply { acked }))
    }

    async fn list_schemas(&self, request: Request<ListSchemasRequest>) -> Result<Response<ListSchemasReply>, Status> {
        caller(&request, self.identity)?;
        let registry = &self.intake.registry;
        let schemas = registry
            .schemas()
            .map(|s| SchemaInfo {
                r#type: s.event_type().to_owned(),
                version: s.version(),
                id: s.id().to_owned(),
                title: s.title().to_owned(),
                description: s.description().to_owned(),
                required: s.required().to_vec(),
                expected: s.expected().to_vec(),
                schema_json: s.document().to_string(),
                latest: registry.resolve(s.event_type(), None).map(|l| l.id() == s.id()).unwrap_or(false),
            })
            .collect();
        Ok(Response::new(ListSchemasReply { schemas }))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        caller(&request, self.identity)?;
        let kafka = match &self.kafka {
            Some(kafka) => Some(kafka_status(&kafka.relay.status().map_err(Error::from)?)),
            None => None,
        };
        Ok(Response::new(StatusReply { last_sequence: self.journal.last_sequence(), kafka }))
    }
}

fn kafka_status(status: &RelayStatus) -> KafkaRelayStatus {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
    KafkaRelayStatus {
        relayed_sequence: status.relayed,
        backlog_events: status.backlog,
        oldest_received_at: status.oldest_received_at_micros.map(from_micros),
        oldest_age_ms: status
            .oldest_received_at_micros
            .map_or(0, |oldest| u64::try_from((now - i128::from(oldest)) / 1_000).unwrap_or(0)),
        last_error: status.last_error.clone().unwrap_or_default(),
    }
}

impl GatewayService {
    fn start_sequence(&self, start: StartPosition) -> Result<u64, Error> {
        Ok(match start {
            StartPosition::Earliest => 1,
            StartPosition::Latest => self.journal.last_sequence() + 1,
            StartPosition::Sequence(s) => s.max(1),
            StartPosition::Time(micros) => self.journal.first_sequence_at_or_after(micros)?,
        })
    }

    /// A named subscription resumes after its cursor; a new one starts at `start` and
    /// exists from now on, so a reconnect before the first ack starts at the same place.
    fn resume_or_create(&self, partner: &PartnerId, name: &str, start: StartPosition) -> Result<u64, Error> {
        if let Some(acked) = self.journal.cursor(partner.as_str(), name)? {
            return Ok(acked + 1);
        }
        let first = self.start_sequence(start)?;
        let acked = self.journal.create_cursor(partner.as_str(), name, first - 1)?;
        Ok(acked + 1)
    }
}

fn publish_one(
    intake: &Intake,
    journal: &Journal,
    kafka: Option<&KafkaMode>,
    partner: &PartnerId,
    req: PublishRequest,
) -> PendingReply {
    let id = req.event.as_ref().map(|e| e.id.clone()).unwrap_or_default();
    match intake.admit(partner, req.event) {
        Ok(event) => {
            let dataschema = event.dataschema.clone();
            let stored = journal.submit(event);
            let kafka = kafka.cloned();
            Box::pin(async move {
                let confirmed = async {
                    let appended = stored.await?;
                    if let Some(kafka) = &kafka {
                        kafka.confirm(appended.sequence).await?;
                    }
                    Ok::<_, Error>(appended)
                };
                let outcome = match confirmed.await {
                    Ok(appended) => publish_stream_reply::Outcome::Accepted(accepted(appended, dataschema)),
                    Err(e) => publish_stream_reply::Outcome::Rejected(to_rpc_status(&Status::from(e))),
                };
                PublishStreamReply { id, outcome: Some(outcome) }
            })
        }
        Err(e) => {
            let outcome = publish_stream_reply::Outcome::Rejected(to_rpc_status(&Status::from(e)));
            Box::pin(std::future::ready(PublishStreamReply { id, outcome: Some(outcome) }))
        }
    }
}

fn check_name(name: &str) -> Option<FieldViolation> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (!ok).then(|| FieldViolation::new("name", format!("must be 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-'")))
}
