//! Starting and stopping the gateway.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use loket_journal::{Journal, JournalConfig};
use loket_kafka::Relay;
use loket_schema::Registry;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::config::Config;
use crate::delivery::PartnerViews;
use crate::identity::IdentityMode;
use crate::intake::Intake;
use crate::kafka_mode::KafkaMode;
use crate::proto::gateway_server::GatewayServer;
use crate::service::GatewayService;
use crate::{proto, tls, Error};

/// Room for the envelope around the largest payload in one gRPC message.
const ENVELOPE_ALLOWANCE: usize = 64 * 1024;

/// Serves the gateway on `listener` until `shutdown` completes, then ends open subscriber
/// streams, lets in-flight publishes finish and closes the journal.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let registry = match &config.schemas.dir {
        Some(dir) => Registry::load_dir(dir),
        None => Registry::embedded(),
    }
    .map_err(|e| Error::Config(vec![e.to_string()]))?;
    let tls = tls::server_tls(&config)?;
    let journal = Journal::open(&JournalConfig {
        dir: config.journal_dir(),
        cache_capacity_bytes: config.journal.cache_mib * 1024 * 1024,
        max_batch: config.journal.max_batch,
    })?;

    let stopping = CancellationToken::new();
    // The relay outlives the request handlers, so publishes that wait for Kafka
    // (`ack = "kafka"`) during a graceful shutdown can still be confirmed.
    let relay_stop = CancellationToken::new();
    let (kafka, relay_task) = match (config.kafka_settings(), &config.kafka) {
        (Some(settings), Some(kafka)) => {
            let mut event_types: Vec<String> = registry.schemas().map(|s| s.event_type().to_owned()).collect();
            event_types.dedup();
            let relay = Relay {
                journal: journal.clone(),
                settings: settings.clone(),
                policy: Arc::new(PartnerViews { partners: kafka.delivery_partners.clone() }),
                event_types,
            };
            let (handle, task) = relay.start(relay_stop.clone())?;
            let timeout = Duration::from_millis(kafka.ack_timeout_ms);
            (Some(KafkaMode::new(settings, handle, kafka.ack, timeout)), Some(task))
        }
        _ => (None, None),
    };
    let service = GatewayService {
        intake: Intake { registry: Arc::new(registry), max_event_bytes: config.grpc.max_event_bytes },
        journal: journal.clone(),
        identity: if tls.is_some() { IdentityMode::ClientCertificate } else { IdentityMode::InsecureHeader },
        stream_in_flight: config.grpc.stream_in_flight,
        shutdown: stopping.clone(),
        kafka,
    };
    let gateway =
        GatewayServer::new(service).max_decoding_message_size(config.grpc.max_event_bytes + ENVELOPE_ALLOWANCE);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<GatewayServer<GatewayService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(vec![format!("reflection service: {e}")]))?;

    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|e| Error::Tls(e.to_string()))?;
    }
    let local = listener.local_addr().map_err(|e| Error::io("cannot read the listener address", e))?;
    tracing::info!(address = %local, journal = %config.journal_dir().display(), last_sequence = journal.last_sequence(), "loket gateway serving");

    let on_shutdown = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: ending subscriber streams, finishing publishes");
            health_reporter.set_not_serving::<GatewayServer<GatewayService>>().await;
            stopping.cancel();
        }
    };
    let served = builder
        .add_service(health)
        .add_service(reflection)
        .add_service(gateway)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), on_shutdown)
        .await;
    // The relay's cursor must be written before the journal closes.
    relay_stop.cancel();
    if let Some(task) = relay_task {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "the kafka relay task failed");
        }
    }
    let closed = journal.close();
    served?;
    closed?;
    tracing::info!("loket gateway stopped");
    Ok(())
}
