//! Starting and stopping the gateway.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use loket_journal::Journal;
use loket_kafka::{RecordChecks, Relay};
use loket_quality::chain::{ChainStore, HandoverSet};
use loket_quality::{QualityStore, RuleSet};
use loket_schema::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::access::Access;
use crate::config::Config;
use crate::disk::DiskGuard;
use crate::http::metrics;
use crate::kafka::{denial_hook, KafkaMode};
use crate::limits::connections::{self, ConnectionGate, Peer};
use crate::limits::Limits;
use crate::proto::gateway_server::GatewayServer;
use crate::publish::{Intake, Publisher};
use crate::quality::{run_digests, Chain, Quality};
use crate::retention::Compaction;
use crate::service::GatewayService;
use crate::subscribe::Subscriptions;
use crate::view::{PartnerViews, Viewer};
use crate::{http, proto, tls, Error};

/// Room for the envelope around the largest payload in one gRPC message.
const ENVELOPE_ALLOWANCE: usize = 64 * 1024;

/// Serves the gateway on `listener` until `shutdown` completes, then ends open subscriber
/// streams, lets in-flight publishes finish and closes the journal.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let metrics_listener = match config.metrics_addr() {
        Some(addr) => Some(
            TcpListener::bind(addr).await.map_err(|e| Error::io(format!("cannot listen for metrics on {addr}"), e))?,
        ),
        None => None,
    };
    run_with(listener, metrics_listener, config, shutdown).await
}

/// [`run`] with the metrics listener bound by the caller (`None`: no metrics endpoint),
/// for callers that need its address before the gateway starts, such as tests.
pub async fn run_with(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let (registry, rules) = load_schemas_and_rules(&config)?;
    let policy = config.policy(&registry)?;
    let handovers = load_handovers(&config, &registry, &policy)?;
    let tls = tls::server_tls(&config)?;
    // sled reads at open what each database logged since its last open, which after a
    // kill -9 takes most of a restart: the three large databases open side by side.
    let (journal, quality_store, access_db) = std::thread::scope(|s| {
        let quality = s.spawn(|| QualityStore::open(&config.quality_dir()).map_err(Error::from));
        let access = s.spawn(|| Access::open_db(&config));
        let journal = open_journal(&config);
        let joined = |what: &str| Error::TaskFailed(format!("opening the {what} database panicked"));
        (journal, quality.join().map_err(|_| joined("quality")), access.join().map_err(|_| joined("access")))
    });
    let journal = journal?;
    let disk = DiskGuard::new(config.data_dir.clone(), config.journal.min_free_bytes)?;
    let (store, recount) = check_quality(quality_store??, &journal)?;
    let store = Arc::new(store);
    let chain = Chain::new(ChainStore::open(store.db(), &handovers)?, Arc::new(handovers))?;
    let quality = Quality::new(store.clone(), chain.clone());
    let registry = Arc::new(registry);

    let access = Access::open_with(&config, policy, &journal, access_db??)?;
    access.load_consent_claims(&journal)?;
    let viewer = Viewer { access: access.clone(), journal: journal.clone(), registry: registry.clone() };

    let stopping = CancellationToken::new();
    let indexer = tokio::spawn(access.clone().run_indexer(journal.clone(), stopping.clone()));
    // The relay outlives the request handlers, so publishes that wait for Kafka
    // (`ack = "kafka"`) during a graceful shutdown can still be confirmed.
    let relay_stop = CancellationToken::new();
    let (kafka, relay_task) = match &config.kafka {
        Some(kafka) => {
            let settings = kafka.settings()?;
            let record_key = kafka.record_key()?;
            let mut event_types: Vec<String> = registry.schemas().map(|s| s.event_type().to_owned()).collect();
            event_types.dedup();
            let canonical = kafka.canonical_view.as_deref();
            let views = PartnerViews::new(viewer.clone(), &event_types, canonical, relay_stop.clone());
            let relay = Relay {
                journal: journal.clone(),
                settings: settings.clone(),
                policy: Box::new(views),
                event_types,
                record_key: record_key.clone(),
            };
            let (handle, task) = relay.start(relay_stop.clone())?;
            let timeout = Duration::from_millis(kafka.ack_timeout_ms);
            let checks = RecordChecks {
                key: record_key,
                dedup_window: kafka.dedup_window.0,
                on_refused: denial_hook(access.clone()),
            };
            (Some(KafkaMode::new(settings, handle, kafka.ack, timeout, checks)), Some(task))
        }
        None => (None, None),
    };
    let relay_handle = kafka.as_ref().map(|k| k.relay.clone());
    let limits = Limits::new(config.limits.clone(), journal.clone());
    let publisher = Publisher {
        intake: Intake {
            registry: registry.clone(),
            policy: access.policy.clone(),
            rules: rules.clone(),
            max_event_bytes: config.grpc.max_event_bytes,
            claims: access.claims.clone(),
            profile: access.profile.clone(),
        },
        journal: journal.clone(),
        quality: quality.clone(),
        access: access.clone(),
        kafka: kafka.clone(),
        disk: disk.clone(),
        limits: limits.clone(),
    };
    let grpc = &config.grpc;
    let subscriptions = Subscriptions {
        viewer,
        registry: registry.clone(),
        kafka,
        shutdown: stopping.clone(),
        limits: limits.clone(),
        open: Default::default(),
        buffer_bytes: grpc.subscriber_buffer_bytes,
        slow_after: Duration::from_secs(grpc.slow_subscriber_timeout_secs),
    };
    let service = GatewayService {
        publisher,
        subscriptions,
        access: access.clone(),
        journal: journal.clone(),
        quality: quality.clone(),
        registry: registry.clone(),
        stream_in_flight: config.grpc.stream_in_flight,
        stream_idle: Duration::from_secs(grpc.stream_idle_timeout_secs),
        shutdown: stopping.clone(),
        erasure: crate::erasure::Erasure {
            journal: journal.clone(),
            access: access.clone(),
            chain: chain.store.clone(),
        },
    };
    let expiry =
        limits.subscription_expiry().map(|after| service.subscriptions.clone().expire_unused(after, stopping.clone()));
    let gateway =
        GatewayServer::new(service).max_decoding_message_size(config.grpc.max_event_bytes + ENVELOPE_ALLOWANCE);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<GatewayServer<GatewayService>>().await;
    // Reflection in both versions (grpcurl speaks v1, grpcio's Python client v1alpha), each
    // listing the gateway, health and both reflection services.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
            .include_reflection_service(false)
    };
    let reflection_error = |e: tonic_reflection::server::Error| Error::Config(vec![format!("reflection service: {e}")]);
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;

    let keepalive = (grpc.keepalive_interval_secs > 0).then(|| Duration::from_secs(grpc.keepalive_interval_secs));
    let mut builder = Server::builder()
        .max_concurrent_streams(grpc.max_concurrent_streams)
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(Some(Duration::from_secs(grpc.keepalive_timeout_secs)))
        // Unary publishes are charged to their partner's rate and admitted (or refused)
        // as their headers arrive, before any work; unary calls end at the request timeout.
        .layer(limits.guard_layer(Duration::from_secs(grpc.request_timeout_secs), access.policy.clone()));
    let local = listener.local_addr().map_err(|e| Error::io("cannot read the listener address", e))?;

    // Tasks that hold the journal and the quality store: awaited before both are closed,
    // so that a restart on the same data directory finds them released.
    let mut background = Vec::new();
    if let Some(listener) = metrics_listener {
        let prometheus = metrics::handle().map_err(|e| Error::Config(vec![format!("metrics recorder: {e}")]))?;
        let metrics_addr =
            listener.local_addr().map_err(|e| Error::io("cannot read the metrics listener address", e))?;
        tracing::info!(address = %metrics_addr, "metrics and quality dashboard serving over http");
        background.push(tokio::spawn(http::serve(
            listener,
            http::router(prometheus, journal.clone(), quality.clone(), relay_handle, disk.clone()),
            stopping.clone(),
        )));
    }
    let compaction = Compaction {
        journal: journal.clone(),
        access: access.store.clone(),
        processing: access.processing.clone(),
        quality: quality.store.clone(),
        chain: chain.store.clone(),
        config: config.retention.clone(),
    };
    background.push(tokio::spawn(compaction.run(stopping.clone())));
    background.push(tokio::spawn(crate::retention::run_pruning(
        journal.clone(),
        config.journal.dedup_window.0,
        stopping.clone(),
    )));
    background.push(tokio::spawn(disk.clone().run(health_reporter.clone(), stopping.clone())));
    if let Some(expiry) = expiry {
        background.push(tokio::spawn(expiry));
    }
    background.push(tokio::spawn(chain.run(journal.clone(), registry.clone(), stopping.clone())));
    if let Some(last) = recount {
        let recount = quality.clone().recount(journal.clone(), registry.clone(), rules.clone(), last, stopping.clone());
        background.push(tokio::spawn(recount));
    }
    if config.quality.digest_interval_secs > 0 {
        let every = std::time::Duration::from_secs(config.quality.digest_interval_secs);
        background.push(tokio::spawn(run_digests(
            every,
            journal.clone(),
            registry.clone(),
            store.clone(),
            stopping.clone(),
        )));
    }

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
    let router =
        builder.add_service(health).add_service(reflection_v1).add_service(reflection_v1alpha).add_service(gateway);
    let gate = ConnectionGate::new(grpc.max_connections, grpc.max_connections_per_address);
    let handshake = Duration::from_secs(grpc.handshake_timeout_secs);
    let served = match tls {
        Some(tls) => {
            let identity = access.identity_mode();
            let connections = tls::incoming(listener, tls, identity, gate, handshake, stopping.clone());
            router.serve_with_incoming_shutdown(connections, on_shutdown).await
        }
        None => {
            let connections = connections::incoming(listener, gate, handshake, stopping.clone(), |stream| {
                std::future::ready(Ok((stream, Peer::default())))
            });
            router.serve_with_incoming_shutdown(connections, on_shutdown).await
        }
    };
    stopping.cancel();
    if let Err(e) = indexer.await {
        tracing::error!(error = %e, "access indexer ended abnormally");
    }
    for task in background {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "a background task failed");
        }
    }
    // The relay's cursor must be written before the journal closes.
    relay_stop.cancel();
    if let Some(task) = relay_task {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "the kafka relay task failed");
        }
    }
    let closed = journal.close();
    let access_flushed = access.store.flush();
    let processing_closed = access.processing.close();
    served?;
    closed?;
    access_flushed?;
    processing_closed?;
    store.close_clean(journal.last_sequence())?;
    tracing::info!("loket gateway stopped");
    Ok(())
}

/// `loket serve --check-config`: everything a start checks before it opens a store or a
/// socket (the file, the schemas, the rules, the policy), every problem at once.
pub fn check_config(config: &Config) -> Result<(), Error> {
    let (registry, _) = load_schemas_and_rules(config)?;
    config.policy(&registry).map(drop)
}

pub(crate) fn load_schemas_and_rules(config: &Config) -> Result<(Registry, Arc<RuleSet>), Error> {
    let registry = match &config.schemas.dir {
        Some(dir) => Registry::load_dir(dir),
        None => Registry::embedded(),
    }
    .map_err(|e| Error::Config(vec![e.to_string()]))?;
    let types: Vec<&str> = registry.event_types().collect();
    let rules = match &config.quality.rules_dir {
        Some(dir) => RuleSet::load_dir(dir, &types),
        None => RuleSet::embedded(&types),
    };
    let rules = match rules {
        Ok(rules) => rules,
        Err(loket_quality::Error::Rules(problems)) => return Err(Error::Config(problems)),
        Err(other) => return Err(other.into()),
    };
    Ok((registry, rules))
}

/// The handover expectations, every partner they name checked against the policy.
fn load_handovers(config: &Config, registry: &Registry, policy: &loket_access::Policy) -> Result<HandoverSet, Error> {
    let types: Vec<&str> = registry.event_types().collect();
    let set = match &config.quality.chain_dir {
        Some(dir) => HandoverSet::load_dir(dir, &types),
        None => HandoverSet::embedded(&types),
    };
    let set = match set {
        Ok(set) => set,
        Err(loket_quality::Error::Handovers(problems)) => return Err(Error::Config(problems)),
        Err(other) => return Err(other.into()),
    };
    let unknown: Vec<String> = set
        .partners()
        .into_iter()
        .filter(|(_, partner)| !policy.is_partner(partner))
        .map(|(kind, partner)| format!("handover {kind:?} names partner {partner:?}, which is not in [partners]"))
        .collect();
    if unknown.is_empty() {
        Ok(set)
    } else {
        Err(Error::Config(unknown))
    }
}

fn open_journal(config: &Config) -> Result<Journal, Error> {
    Ok(Journal::open(&config.journal_config())?)
}

/// Checks the opened quality store against the journal: when it does not match (no clean
/// mark: a crash, or the first start with this feature; or another last sequence) its
/// figures are to be recounted up to the journal's last sequence, returned: in the
/// background ([`Quality::recount`]).
fn check_quality(store: QualityStore, journal: &Journal) -> Result<(QualityStore, Option<u64>), Error> {
    let mark = store.take_clean_mark()?;
    let last = journal.last_sequence();
    if mark == Some(last) {
        return Ok((store, None));
    }
    store.begin_rebuild()?;
    Ok((store, Some(last)))
}

/// `loket quality rebuild`: recounts the quality figures and the handover state of a
/// stopped gateway's data directory from its journal. Returns the number of events read.
pub fn rebuild_quality(config: &Config) -> Result<u64, Error> {
    let (registry, rules) = load_schemas_and_rules(config)?;
    let handovers = load_handovers(config, &registry, &config.policy(&registry)?)?;
    let journal = open_journal(config)?;
    let store = QualityStore::open(&config.quality_dir())?;
    store.take_clean_mark()?;
    let read = store.rebuild(&journal, &registry, &rules)?;
    ChainStore::open(store.db(), &handovers)?.rebuild(&journal, &handovers)?;
    journal.close()?;
    store.close_clean(journal.last_sequence())?;
    Ok(read)
}
