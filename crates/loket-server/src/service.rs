//! The `loket.v1.Gateway` service: a thin adapter. Each RPC resolves its caller once
//! (`Access::caller`, the one identity resolution), calls into the feature that serves it, and turns an error into a
//! gRPC status at this edge.

use std::pin::Pin;
use std::sync::Arc;

use loket_journal::Journal;
use loket_kafka::RelayStatus;
use loket_schema::Registry;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::access::Access;
use crate::limits::admission::Admitted;
use crate::limits::guard::RateCharged;
use crate::proto::gateway_server::Gateway;
use crate::proto::timestamp::from_micros;
use crate::proto::{
    AckReply, AckRequest, DeleteSubscriptionReply, DeleteSubscriptionRequest, Delivery, EraseCaseReply,
    EraseCaseRequest, EventStatusReply, EventStatusRequest, ExportEntry, ExportRequest, KafkaRelayStatus,
    ListDenialsReply, ListDenialsRequest, ListExportsReply, ListExportsRequest, ListProcessingReply,
    ListProcessingRequest, ListSchemasReply, ListSchemasRequest, ListSubscriptionsReply, ListSubscriptionsRequest,
    PublishReply, PublishRequest, PublishStreamReply, QualityReport, QualityReportRequest, SchemaInfo, StatusReply,
    StatusRequest, SubscribeRequest,
};
use crate::publish::{publish_stream, Publisher};
use crate::quality::Quality;
use crate::subscribe::Subscriptions;
use crate::trace::CallTrace;
use crate::{messagelog, Error};

pub(crate) struct GatewayService {
    pub publisher: Publisher,
    pub subscriptions: Subscriptions,
    pub access: Access,
    pub journal: Journal,
    pub quality: Quality,
    pub registry: Arc<Registry>,
    pub stream_in_flight: usize,
    /// `[grpc] stream_idle_timeout_secs`.
    pub stream_idle: std::time::Duration,
    pub shutdown: CancellationToken,
    pub erasure: crate::erasure::Erasure,
}

type ReplyStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishReply>, Status> {
        // The place in the gateway-wide limit in flight its layer gave; held until the reply.
        let ticket = Admitted::take(&request);
        let rate_charged = RateCharged::of(&request);
        let partner = self.access.caller(&request, "publish").await?;
        if let Some(ticket) = &ticket {
            ticket.check_wait(&partner, self.publisher.limits.retry_after())?;
        }
        let call = CallTrace::of(request.metadata());
        let result = self.publisher.start(&partner, request.into_inner(), &call, rate_charged).await;
        if let Some(ticket) = ticket {
            ticket.finish(&result);
        }
        Ok(Response::new(result?))
    }

    type PublishStreamStream = ReplyStream<PublishStreamReply>;

    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let partner = self.access.caller(&request, "publish").await?;
        let call = CallTrace::of(request.metadata());
        let replies = publish_stream(
            self.publisher.clone(),
            partner,
            call,
            request.into_inner(),
            self.stream_in_flight,
            self.stream_idle,
            self.shutdown.clone(),
        );
        Ok(Response::new(Box::pin(replies)))
    }

    type SubscribeStream = ReplyStream<Delivery>;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let partner = self.access.caller(&request, "subscribe").await?;
        let deliveries = self.subscriptions.subscribe(&partner, request.into_inner()).await?;
        Ok(Response::new(Box::pin(deliveries)))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        let partner = self.access.caller(&request, "ack").await?;
        Ok(Response::new(self.subscriptions.ack(&partner, request.into_inner()).await?))
    }

    async fn event_status(&self, request: Request<EventStatusRequest>) -> Result<Response<EventStatusReply>, Status> {
        let partner = self.access.caller(&request, "status").await?;
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

    async fn erase_case(&self, request: Request<EraseCaseRequest>) -> Result<Response<EraseCaseReply>, Status> {
        let partner = self.access.caller(&request, "erase").await?;
        let reply = self.erasure.erase(&partner, request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn list_denials(&self, request: Request<ListDenialsRequest>) -> Result<Response<ListDenialsReply>, Status> {
        let partner = self.access.caller(&request, "audit").await?;
        let denials = self.access.list_denials(&partner, request.into_inner()).await?;
        Ok(Response::new(ListDenialsReply { denials }))
    }

    async fn list_schemas(&self, request: Request<ListSchemasRequest>) -> Result<Response<ListSchemasReply>, Status> {
        self.access.caller(&request, "schemas").await?;
        let registry = &self.registry;
        let schemas = registry
            .schemas()
            .map(|s| SchemaInfo {
                r#type: self.access.profile.event_type(s.event_type()),
                alias: s.event_type().to_owned(),
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
        let partner = self.access.caller(&request, "export").await?;
        let entries = messagelog::export(
            &self.access,
            &self.journal,
            &self.registry,
            &partner,
            request.get_ref(),
            &self.shutdown,
        )
        .await?;
        Ok(Response::new(Box::pin(entries)))
    }

    async fn list_exports(&self, request: Request<ListExportsRequest>) -> Result<Response<ListExportsReply>, Status> {
        let partner = self.access.caller(&request, "audit").await?;
        Ok(Response::new(messagelog::list_exports(&self.access, &partner, request.get_ref())?))
    }

    async fn get_quality_report(
        &self,
        request: Request<QualityReportRequest>,
    ) -> Result<Response<QualityReport>, Status> {
        let partner = self.access.caller(&request, "quality").await?;
        // The handovers of everything journalled so far are in the report.
        self.quality.chain.caught_up(self.journal.last_sequence()).await;
        self.quality.complete().await;
        let report = self.quality.report(&self.access, &self.registry, &partner, request.into_inner())?;
        Ok(Response::new(report))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        self.access.caller(&request, "status").await?;
        let kafka = match &self.subscriptions.kafka {
            Some(kafka) => Some(kafka_status(&kafka.relay.status().map_err(Error::from)?)),
            None => None,
        };
        Ok(Response::new(StatusReply { last_sequence: self.journal.last_sequence(), kafka }))
    }

    async fn list_processing(
        &self,
        request: Request<ListProcessingRequest>,
    ) -> Result<Response<ListProcessingReply>, Status> {
        let partner = self.access.caller(&request, "audit").await?;
        if !self.access.policy.is_auditor(partner.as_str()) {
            return Err(Error::ProcessingAuditNotPermitted { partner: partner.to_string() }.into());
        }
        let records = self.access.processing.list(&request.get_ref().case).await?;
        Ok(Response::new(ListProcessingReply { records }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> Result<Response<ListSubscriptionsReply>, Status> {
        let partner = self.access.caller(&request, "subscribe").await?;
        Ok(Response::new(self.subscriptions.list(&partner)?))
    }

    async fn delete_subscription(
        &self,
        request: Request<DeleteSubscriptionRequest>,
    ) -> Result<Response<DeleteSubscriptionReply>, Status> {
        let partner = self.access.caller(&request, "subscribe").await?;
        self.subscriptions.delete(&partner, &request.get_ref().name)?;
        Ok(Response::new(DeleteSubscriptionReply {}))
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
