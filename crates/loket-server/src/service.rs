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
use crate::metrics as m;
use crate::proto::gateway_server::Gateway;
use crate::proto::{
    publish_stream_reply, subscribe_request, AckReply, AckRequest, DayQuality, Delivery, FieldQuality,
    ListSchemasReply, ListSchemasRequest, PublishReply, PublishRequest, PublishStreamReply, QualityReport,
    QualityReportRequest, SchemaInfo, SubscribeRequest, TypeQuality,
};
use crate::quality::{now_micros, AdmittedFacts, Quality};
use crate::subscription::Subscription;
use crate::timestamp::{from_micros, to_micros};
use crate::Error;

/// Longest durable subscription name.
const MAX_NAME_LEN: usize = 64;

pub(crate) struct GatewayService {
    pub intake: Intake,
    pub journal: Journal,
    pub quality: Quality,
    pub identity: IdentityMode,
    pub stream_in_flight: usize,
    pub shutdown: CancellationToken,
}

type ReplyStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;
type PendingReply = Pin<Box<dyn Future<Output = PublishStreamReply> + Send>>;

fn accepted(appended: Appended, dataschema: String, flagged_rules: Vec<String>) -> PublishReply {
    PublishReply {
        flagged_rules,
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
        let publisher =
            Publisher { intake: self.intake.clone(), journal: self.journal.clone(), quality: self.quality.clone() };
        publisher.start(&partner, request.into_inner()).await.map(Response::new)
    }

    type PublishStreamStream = ReplyStream<PublishStreamReply>;

    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let partner = caller(&request, self.identity)?;
        let mut inbound = request.into_inner();
        let publisher =
            Publisher { intake: self.intake.clone(), journal: self.journal.clone(), quality: self.quality.clone() };
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
                        Ok(Some(req)) => pending.push_back(publish_one(&publisher, &partner, req)),
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
            partner: partner.clone(),
            name: req.name.clone(),
            quality_reader: self.quality.is_reader(&partner),
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

    async fn get_quality_report(
        &self,
        request: Request<QualityReportRequest>,
    ) -> Result<Response<QualityReport>, Status> {
        let partner = caller(&request, self.identity)?;
        let req = request.into_inner();
        let mut problems = Vec::new();
        let reader = self.quality.is_reader(&partner);
        let partners = if req.partners.is_empty() {
            (!reader).then(|| vec![partner.to_string()])
        } else {
            if let Some(other) = req.partners.iter().find(|p| !reader && p.as_str() != partner.as_str()) {
                return Err(Error::QualityAccessDenied { caller: partner.to_string(), requested: other.clone() }.into());
            }
            Some(req.partners.clone())
        };
        if !req.r#type.is_empty() {
            if let Err(e) = self.intake.registry.resolve(&req.r#type, None) {
                problems.push(FieldViolation::new("type", e.to_string()));
            }
        }
        let mut day = |field: &str, text: &str| {
            if text.is_empty() {
                return None;
            }
            let parsed = loket_quality::aggregate::parse_day(text);
            if parsed.is_none() {
                problems.push(FieldViolation::new(field, "must be a date like 2024-03-15"));
            }
            parsed
        };
        let from_day = day("from_day", &req.from_day);
        let to_day = day("to_day", &req.to_day);
        if !problems.is_empty() {
            return Err(Error::InvalidReportRequest(problems).into());
        }
        let filter = loket_quality::Filter {
            partners,
            event_type: (!req.r#type.is_empty()).then_some(req.r#type),
            from_day,
            to_day,
        };
        let report = self.quality.store.report(&filter).map_err(Error::from)?;
        Ok(Response::new(to_proto(report)))
    }
}

fn to_proto(report: loket_quality::Report) -> QualityReport {
    QualityReport {
        fields: report
            .fields
            .into_iter()
            .map(|f| FieldQuality {
                partner: f.partner,
                r#type: f.event_type,
                field: f.field,
                seen: f.seen,
                filled: f.filled,
                fill_rate: f.fill_rate,
            })
            .collect(),
        types: report
            .types
            .into_iter()
            .map(|t| TypeQuality {
                partner: t.partner,
                r#type: t.event_type,
                events: t.events,
                mean_completeness: t.mean_completeness,
                rejected: t.rejected,
                rejection_rate: t.rejection_rate,
                rejections: t.rejections.into_iter().collect(),
                rules_failed: t.rules_failed.into_iter().collect(),
            })
            .collect(),
        days: report
            .days
            .into_iter()
            .map(|d| DayQuality {
                day: d.day,
                partner: d.partner,
                r#type: d.event_type,
                events: d.events,
                mean_completeness: d.mean_completeness,
            })
            .collect(),
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

/// What the publish path needs, for unary calls and streams alike.
#[derive(Clone)]
struct Publisher {
    intake: Intake,
    journal: Journal,
    quality: Quality,
}

impl Publisher {
    /// Checks the event and enqueues it for the journal *now* (so a stream's events keep
    /// their order); the future resolves with the reply once it is durable. Counts the
    /// outcome in the metrics and the quality figures.
    fn start(
        &self,
        partner: &PartnerId,
        req: PublishRequest,
    ) -> impl Future<Output = Result<PublishReply, Status>> + Send + 'static {
        let started = std::time::Instant::now();
        let claimed_type = req.event.as_ref().map(|e| e.r#type.clone()).unwrap_or_default();
        // Only known types become labels and buckets: a client cannot invent series.
        let event_type = self.intake.registry.resolve(&claimed_type, None).is_ok().then_some(claimed_type);
        let quality = self.quality.clone();
        let partner = partner.clone();
        let stored = match self.intake.admit(&partner, req.event) {
            Ok(admitted) => {
                let dataschema = admitted.event.dataschema.clone();
                let facts = AdmittedFacts::of(&admitted);
                Ok((self.journal.submit(admitted.event), dataschema, facts))
            }
            Err(e) => Err(Status::from(e)),
        };
        // Spawned so that the figures and metrics count the event even when the caller
        // hangs up (dropping the reply future) after it was submitted to the journal.
        let counted = tokio::spawn(async move {
            let result = match stored {
                Ok((future, dataschema, facts)) => match future.await {
                    Ok(appended) => {
                        quality.accepted(&facts, &appended);
                        let outcome = if appended.duplicate { "duplicate" } else { "accepted" };
                        Ok((accepted(appended, dataschema, facts.flagged), outcome))
                    }
                    Err(e) => Err(Status::from(Error::from(e))),
                },
                Err(status) => {
                    if let Some(t) = &event_type {
                        quality.rejected(&partner, t, &status, now_micros());
                    }
                    Err(status)
                }
            };
            let outcome = match &result {
                Ok((_, outcome)) => *outcome,
                Err(_) => "rejected",
            };
            let labels = [
                ("partner", partner.to_string()),
                ("type", event_type.unwrap_or_else(|| "unknown".to_owned())),
                ("outcome", outcome.to_owned()),
            ];
            metrics::counter!(m::PUBLISH_TOTAL, &labels).increment(1);
            metrics::histogram!(m::PUBLISH_DURATION, "outcome" => outcome).record(started.elapsed().as_secs_f64());
            result.map(|(reply, _)| reply)
        });
        async move {
            counted.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "publish task failed");
                Err(Status::internal("internal error"))
            })
        }
    }
}

fn publish_one(publisher: &Publisher, partner: &PartnerId, req: PublishRequest) -> PendingReply {
    let id = req.event.as_ref().map(|e| e.id.clone()).unwrap_or_default();
    let reply = publisher.start(partner, req);
    Box::pin(async move {
        let outcome = match reply.await {
            Ok(reply) => publish_stream_reply::Outcome::Accepted(reply),
            Err(status) => publish_stream_reply::Outcome::Rejected(to_rpc_status(&status)),
        };
        PublishStreamReply { id, outcome: Some(outcome) }
    })
}

fn check_name(name: &str) -> Option<FieldViolation> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (!ok).then(|| FieldViolation::new("name", format!("must be 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-'")))
}
