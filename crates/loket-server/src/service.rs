//! The `loket.v1.Gateway` service: wires identity, intake, journal and subscriptions.

use std::collections::BTreeSet;
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

use crate::access::{Access, DenialRecord};
use crate::error::to_rpc_status;
use crate::identity::{caller, IdentityMode};
use crate::intake::{Intake, DIGEST_TYPE};
use crate::kafka_mode::{KafkaMode, KafkaStreamRequest};
use crate::log::{self, record_rejection};
use crate::metrics as m;
use crate::proto::gateway_server::Gateway;
use crate::proto::{
    publish_stream_reply, subscribe_request, AckReply, AckRequest, DayQuality, Delivery, Denial, EventStatusReply,
    EventStatusRequest, ExportEntry, ExportRequest, FieldQuality, KafkaRelayStatus, ListDenialsReply,
    ListDenialsRequest, ListSchemasReply, ListSchemasRequest, PublishReply, PublishRequest, PublishStreamReply,
    QualityReport, QualityReportRequest, SchemaInfo, StatusReply, StatusRequest, SubscribeRequest, TypeQuality,
};
use crate::quality::{AdmittedFacts, Quality};
use crate::subscription::Subscription;
use crate::timestamp::{from_micros, now_micros, to_micros};
use crate::Error;

/// Longest durable subscription name.
const MAX_NAME_LEN: usize = 64;

/// Denials listed when the request names no limit.
const DEFAULT_DENIALS: usize = 1000;

pub(crate) struct GatewayService {
    pub intake: Intake,
    pub journal: Journal,
    pub access: Access,
    pub quality: Quality,
    pub identity: IdentityMode,
    pub stream_in_flight: usize,
    pub shutdown: CancellationToken,
    /// Partners allowed to call Export.
    pub exporters: HashSet<String>,
    /// Present when `[kafka]` is configured.
    pub kafka: Option<KafkaMode>,
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
        let partner = self.partner(&request, "publish").await?;
        self.publisher().start(&partner, request.into_inner()).await.map(Response::new)
    }

    type PublishStreamStream = ReplyStream<PublishStreamReply>;

    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let partner = self.partner(&request, "publish").await?;
        let mut inbound = request.into_inner();
        let publisher = self.publisher();
        let in_flight = self.stream_in_flight;
        let stopping = self.shutdown.clone();
        let (tx, rx) = mpsc::channel(in_flight);
        tokio::spawn(async move {
            // Replies leave in request order; the journal sequences events in submit order,
            // so one stream's events keep their order too.
            let mut pending: FuturesOrdered<PendingReply> = FuturesOrdered::new();
            let mut reading = true;
            let mut interrupted = false;
            while reading || !pending.is_empty() {
                tokio::select! {
                    biased;
                    Some(reply) = pending.next(), if !pending.is_empty() => {
                        if tx.send(Ok(reply)).await.is_err() {
                            return;
                        }
                    }
                    // On shutdown, stop taking new events but answer every one already taken.
                    () = stopping.cancelled(), if reading => {
                        reading = false;
                        interrupted = true;
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
            if interrupted {
                // Tell the publisher to reconnect and resend what got no reply.
                let _ = tx.send(Err(Error::ShuttingDown.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type SubscribeStream = ReplyStream<Delivery>;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let partner = self.partner(&request, "subscribe").await?;
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
        let granted = self.access.policy.subscribable(partner.as_str());
        // A partner's own quality digests need no grant: they are about the partner itself.
        let refused: Vec<String> =
            req.types.iter().filter(|t| !granted.contains(t) && t.as_str() != DIGEST_TYPE).cloned().collect();
        let denied = if req.types.is_empty() && granted.is_empty() {
            Some(Error::NoGrants { partner: partner.to_string() })
        } else if !refused.is_empty() {
            Some(Error::SubscribeNotGranted { partner: partner.to_string(), types: refused })
        } else {
            None
        };
        if let Some(e) = denied {
            record_refusal(&self.access, "subscribe-refused", &partner, &e, "", &req.types.join(",")).await;
            return Err(e.into());
        }
        let types = req.types.iter().filter(|t| t.as_str() != DIGEST_TYPE).cloned().collect::<HashSet<_>>();
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
            access: self.access.clone(),
            partner: partner.to_string(),
            next,
            digests: req.types.is_empty() || req.types.iter().any(|t| t == DIGEST_TYPE),
            only_digests: !req.types.is_empty() && req.types.iter().all(|t| t == DIGEST_TYPE),
            types: req.types.into_iter().filter(|t| t != DIGEST_TYPE).collect::<BTreeSet<_>>(),
            limit: req.limit,
            name: req.name.clone(),
            quality_reader: self.quality.is_reader(&partner),
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(subscription.run(tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        let partner = self.partner(&request, "ack").await?;
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

    async fn event_status(&self, request: Request<EventStatusRequest>) -> Result<Response<EventStatusReply>, Status> {
        let partner = self.partner(&request, "status").await?;
        let id = request.into_inner().id;
        let event = self
            .journal
            .find(partner.as_str(), &id)
            .map_err(Error::from)?
            .ok_or_else(|| Error::EventNotFound { partner: partner.to_string(), id })?;
        if !self.access.indexed_up_to(event.sequence, &self.shutdown).await {
            return Err(Error::ShuttingDown.into());
        }
        Ok(Response::new(self.access.status(&event)?))
    }

    async fn list_denials(&self, request: Request<ListDenialsRequest>) -> Result<Response<ListDenialsReply>, Status> {
        let partner = self.partner(&request, "audit").await?;
        let req = request.into_inner();
        let auditor = self.access.policy.is_auditor(partner.as_str());
        if !auditor && !req.partner.is_empty() && req.partner != partner.as_str() {
            let e = Error::AuditNotPermitted { partner: partner.to_string(), asked: req.partner };
            record_refusal(&self.access, "audit-refused", &partner, &e, "", "").await;
            return Err(e.into());
        }
        let since = match &req.since {
            None => i64::MIN,
            Some(ts) => to_micros(ts).ok_or_else(|| {
                Error::InvalidSubscription(vec![FieldViolation::new(
                    "since",
                    "must be a valid instant between years 1 and 9999",
                )])
            })?,
        };
        let filter = match (auditor, req.partner.is_empty()) {
            (true, true) => None,
            (true, false) => Some(req.partner.as_str()),
            (false, _) => Some(partner.as_str()),
        };
        let limit = if req.limit == 0 { DEFAULT_DENIALS } else { req.limit as usize };
        let denials = self
            .access
            .store
            .denials(since, filter, limit)?
            .into_iter()
            .map(|d| Denial {
                at: Some(from_micros(d.at_micros)),
                partner: d.partner,
                kind: d.kind,
                event_type: d.event_type,
                event_id: d.event_id,
                source: d.source,
                subject: d.subject,
                sequence: d.sequence,
                reason_code: d.reason_code,
                reason: d.reason,
                fields: d.fields,
            })
            .collect();
        Ok(Response::new(ListDenialsReply { denials }))
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
    KafkaRelayStatus {
        relayed_sequence: status.relayed,
        backlog_events: status.backlog,
        oldest_received_at: status.oldest_received_at_micros.map(from_micros),
        oldest_age_ms: u64::try_from(status.oldest_age().as_millis()).unwrap_or(u64::MAX),
        last_error: status.last_error.clone().unwrap_or_default(),
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
    fn publisher(&self) -> Publisher {
        Publisher {
            intake: self.intake.clone(),
            journal: self.journal.clone(),
            quality: self.quality.clone(),
            access: self.access.clone(),
            kafka: self.kafka.clone(),
        }
    }

    /// The calling partner: its certificate identity mapped through the policy. An
    /// identity the policy does not know is refused (and recorded).
    async fn partner<T>(&self, request: &Request<T>, action: &str) -> Result<PartnerId, Error> {
        let identity = caller(request, self.identity)?;
        match self.access.policy.partner_for_identity(identity.as_str()).map(str::parse::<PartnerId>) {
            Some(Ok(partner)) => Ok(partner),
            _ => {
                let e = Error::UnknownIdentity { identity: identity.to_string() };
                record_refusal(&self.access, &format!("{action}-refused"), &identity, &e, "", "").await;
                Err(e)
            }
        }
    }

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

/// Records a refusal in the denial log (when it is one that is recorded: permission, not
/// malformed input). A failure to record is logged; the caller still gets its refusal.
async fn record_refusal(access: &Access, kind: &str, partner: &PartnerId, error: &Error, id: &str, event_type: &str) {
    if let Some(record) = refusal(kind, partner, error, id, event_type) {
        store_refusal(access, record).await;
    }
}

/// The denial-log record of a refusal, for the refusals the denial log keeps.
fn refusal(kind: &str, partner: &PartnerId, error: &Error, id: &str, event_type: &str) -> Option<DenialRecord> {
    let code = error.denial_code()?;
    Some(DenialRecord {
        at_micros: now_micros(),
        partner: partner.to_string(),
        kind: kind.to_owned(),
        event_type: event_type.to_owned(),
        event_id: id.to_owned(),
        source: partner.to_string(),
        reason_code: code.to_owned(),
        reason: error.to_string(),
        fields: match error {
            Error::SubscribeNotGranted { types, .. } => types.clone(),
            _ => Vec::new(),
        },
        ..DenialRecord::default()
    })
}

async fn store_refusal(access: &Access, record: DenialRecord) {
    let (partner, kind) = (record.partner.clone(), record.kind.clone());
    if let Err(e) = access.store.refusal(record).await {
        tracing::error!(error = %e, partner = %partner, kind = %kind, "could not record a refusal in the denial log");
    }
}

/// What the publish path needs, for unary calls and streams alike.
#[derive(Clone)]
struct Publisher {
    intake: Intake,
    journal: Journal,
    quality: Quality,
    access: Access,
    /// With `ack = "kafka"`, replies wait for the relay's confirmation.
    kafka: Option<KafkaMode>,
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
        let access = self.access.clone();
        let kafka = self.kafka.clone();
        let partner = partner.clone();
        let stored = match self.intake.admit(&partner, req.event.as_ref()) {
            Ok(admitted) => {
                let dataschema = admitted.event.dataschema.clone();
                let facts = AdmittedFacts::of(&admitted);
                Ok((self.journal.submit(admitted.event), dataschema, facts))
            }
            Err(e) => {
                let id = req.event.as_ref().map(|e| e.id.as_str()).unwrap_or_default();
                let denial = refusal("publish-refused", &partner, &e, id, event_type.as_deref().unwrap_or_default());
                let status = Status::from(e);
                // Enqueued now, so the rejection log keeps the stream's order.
                record_rejection(&self.journal, &partner, req.event.as_ref(), &status);
                Err((status, denial))
            }
        };
        // Spawned so that the figures and metrics count the event even when the caller
        // hangs up (dropping the reply future) after it was submitted to the journal.
        let counted = tokio::spawn(async move {
            let result = match stored {
                Ok((future, dataschema, facts)) => match future.await {
                    Ok(appended) => {
                        quality.accepted(&facts, &appended);
                        let outcome = if appended.duplicate { "duplicate" } else { "accepted" };
                        let confirmed = match &kafka {
                            Some(kafka) => kafka.confirm(appended.sequence).await.map_err(Status::from),
                            None => Ok(()),
                        };
                        confirmed.map(|()| (accepted(appended, dataschema, facts.flagged), outcome))
                    }
                    Err(e) => Err(Status::from(Error::from(e))),
                },
                Err((status, denial)) => {
                    if let Some(denial) = denial {
                        store_refusal(&access, denial).await;
                    }
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
