//! The `loket.v1.Gateway` service: wires identity, intake, journal and subscriptions.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use futures::stream::{FuturesOrdered, StreamExt};
use loket_domain::{FieldViolation, PartnerId, StartPosition};
use loket_journal::{Appended, Journal};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::error::to_rpc_status;
use crate::identity::{caller, IdentityMode};
use crate::intake::Intake;
use crate::log::{self, record_rejection};
use crate::proto::gateway_server::Gateway;
use crate::proto::{
    publish_stream_reply, subscribe_request, AckReply, AckRequest, Delivery, ExportEntry, ExportRequest,
    ListSchemasReply, ListSchemasRequest, PublishReply, PublishRequest, PublishStreamReply, SchemaInfo,
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
    /// Partners allowed to call Export.
    pub exporters: HashSet<String>,
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
        let event = request.into_inner().event;
        let event = match self.intake.admit(&partner, event.as_ref()) {
            Ok(admitted) => admitted,
            Err(e) => {
                let status = Status::from(e);
                record_rejection(&self.journal, &partner, event.as_ref(), &status);
                return Err(status);
            }
        };
        let dataschema = event.dataschema.clone();
        let appended = self.journal.submit(event).await.map_err(Error::from)?;
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
                        Ok(Some(req)) => pending.push_back(publish_one(&intake, &journal, &partner, req)),
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
        if !problems.is_empty() {
            return Err(Error::InvalidSubscription(problems).into());
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
            types: req.types.into_iter().collect::<HashSet<_>>(),
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

    type ExportStream = ReplyStream<ExportEntry>;

    async fn export(&self, request: Request<ExportRequest>) -> Result<Response<Self::ExportStream>, Status> {
        let partner = caller(&request, self.identity)?;
        if !self.exporters.contains(partner.as_str()) {
            return Err(Error::ExportNotAllowed { partner: partner.to_string() }.into());
        }
        let filter = log::filter(request.get_ref())?;
        let entries = self.journal.entries(filter).map_err(Error::from)?;
        tracing::info!(partner = %partner, "message log export started");
        let (tx, rx) = mpsc::channel(256);
        // Reading is blocking sled work: off the async threads, throttled by the channel.
        tokio::task::spawn_blocking(move || {
            for entry in entries {
                let item = entry.map(log::export_entry).map_err(|e| Status::from(Error::from(e)));
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
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

fn publish_one(intake: &Intake, journal: &Journal, partner: &PartnerId, req: PublishRequest) -> PendingReply {
    let id = req.event.as_ref().map(|e| e.id.clone()).unwrap_or_default();
    match intake.admit(partner, req.event.as_ref()) {
        Ok(event) => {
            let dataschema = event.dataschema.clone();
            let stored = journal.submit(event);
            Box::pin(async move {
                let outcome = match stored.await {
                    Ok(appended) => publish_stream_reply::Outcome::Accepted(accepted(appended, dataschema)),
                    Err(e) => publish_stream_reply::Outcome::Rejected(to_rpc_status(&Status::from(Error::from(e)))),
                };
                PublishStreamReply { id, outcome: Some(outcome) }
            })
        }
        Err(e) => {
            let status = Status::from(e);
            record_rejection(journal, partner, req.event.as_ref(), &status);
            let outcome = publish_stream_reply::Outcome::Rejected(to_rpc_status(&status));
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
