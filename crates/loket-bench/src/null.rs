//! The transport ceiling: the same gRPC service over the same mutual TLS, with handlers
//! that acknowledge without doing any work.

use std::path::PathBuf;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use loket_server::certs;
use loket_server::proto::gateway_server::{Gateway, GatewayServer};
use loket_server::proto::{
    publish_stream_reply, AckReply, AckRequest, Delivery, ListSchemasReply, ListSchemasRequest, PublishReply,
    PublishRequest, PublishStreamReply, SubscribeRequest,
};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

struct NullGateway;

fn ack() -> PublishReply {
    PublishReply { sequence: 1, completeness: 1.0, ..Default::default() }
}

#[tonic::async_trait]
impl Gateway for NullGateway {
    async fn publish(&self, _request: Request<PublishRequest>) -> Result<Response<PublishReply>, Status> {
        Ok(Response::new(ack()))
    }

    type PublishStreamStream = Pin<Box<dyn Stream<Item = Result<PublishStreamReply, Status>> + Send>>;

    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let replies = request.into_inner().map(|req| {
            let id = req?.event.map(|e| e.id).unwrap_or_default();
            Ok(PublishStreamReply { id, outcome: Some(publish_stream_reply::Outcome::Accepted(ack())) })
        });
        Ok(Response::new(Box::pin(replies)))
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Delivery, Status>> + Send>>;

    async fn subscribe(&self, _request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn ack(&self, _request: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn event_status(
        &self,
        _request: Request<loket_server::proto::EventStatusRequest>,
    ) -> Result<Response<loket_server::proto::EventStatusReply>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn list_denials(
        &self,
        _request: Request<loket_server::proto::ListDenialsRequest>,
    ) -> Result<Response<loket_server::proto::ListDenialsReply>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn list_exports(
        &self,
        _request: Request<loket_server::proto::ListExportsRequest>,
    ) -> Result<Response<loket_server::proto::ListExportsReply>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    type ExportStream = Pin<Box<dyn Stream<Item = Result<loket_server::proto::ExportEntry, Status>> + Send>>;

    async fn export(
        &self,
        _request: Request<loket_server::proto::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn get_quality_report(
        &self,
        _request: Request<loket_server::proto::QualityReportRequest>,
    ) -> Result<Response<loket_server::proto::QualityReport>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn erase_case(
        &self,
        _request: Request<loket_server::proto::EraseCaseRequest>,
    ) -> Result<Response<loket_server::proto::EraseCaseReply>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn status(
        &self,
        _request: Request<loket_server::proto::StatusRequest>,
    ) -> Result<Response<loket_server::proto::StatusReply>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn list_processing(
        &self,
        _request: Request<loket_server::proto::ListProcessingRequest>,
    ) -> Result<Response<loket_server::proto::ListProcessingReply>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn list_schemas(&self, _request: Request<ListSchemasRequest>) -> Result<Response<ListSchemasReply>, Status> {
        Ok(Response::new(ListSchemasReply::default()))
    }

    async fn list_subscriptions(
        &self,
        _request: Request<loket_server::proto::ListSubscriptionsRequest>,
    ) -> Result<Response<loket_server::proto::ListSubscriptionsReply>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }

    async fn delete_subscription(
        &self,
        _request: Request<loket_server::proto::DeleteSubscriptionRequest>,
    ) -> Result<Response<loket_server::proto::DeleteSubscriptionReply>, Status> {
        Err(Status::unimplemented("the transport baseline only acknowledges publishes"))
    }
}

/// Serves the null gateway with the certificates in `certs_dir` until killed.
pub async fn serve(certs_dir: PathBuf) -> anyhow::Result<()> {
    let read = |name: &str| std::fs::read(certs_dir.join(name));
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(certs::SERVER_CERT)?, read(certs::SERVER_KEY)?))
        .client_ca_root(Certificate::from_pem(read(certs::CA_CERT)?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    tracing::info!(address = %listener.local_addr()?, "null gateway serving");
    Server::builder()
        .tls_config(tls)?
        .add_service(GatewayServer::new(NullGateway))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
