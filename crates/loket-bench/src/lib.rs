//! `loket bench`: throughput, latency, replay and memory of the gateway, side by side with
//! its baselines (the bare gRPC transport, validation alone, the journal alone, a plain
//! Kafka producer) in one run on one corpus. Figures are reported, never asserted: the
//! smoke run in the test suite only checks that every arm ran and produced them.
//!
//! The `loket` binary runs it ([`run`] for `loket bench`). The servers under test are that
//! binary again, as child processes (`loket serve`, and `loket bench-transport` for
//! [`serve_null_gateway`]), so their CPU time and memory are their own.

mod args;
mod arms;
mod broker;
mod consumer;
mod corpus;
mod load;
mod null;
mod plan;
mod procs;
mod report;
mod stats;

use std::sync::Arc;

use loket_domain::PartnerId;
use loket_server::certs;

use arms::replay::READER;
use broker::Broker;
use corpus::Item;
use plan::{Plan, Selection};
use procs::ServerProcess;
use report::CorpusFacts;

pub use args::BenchArgs;
pub use null::serve as serve_null_gateway;

/// The hidden subcommand of the `loket` binary that runs [`serve_null_gateway`]: the
/// benchmark starts the transport baseline with it.
pub const TRANSPORT_SUBCOMMAND: &str = "bench-transport";

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::new(&args);
    let selection = Selection::new(&args, &plan)?;
    // Resolved before any arm runs, so a missing broker does not end a long run half-way.
    let broker_source = if selection.runs("gateway-kafka") || selection.runs("rdkafka-raw") {
        Some(broker::Source::resolve(args.kafka.as_deref())?)
    } else {
        None
    };
    let work = tempfile::Builder::new().prefix("loket-bench-").tempdir()?;
    let corpus_path = match &args.corpus {
        Some(path) => path.clone(),
        None => corpus::generated(work.path(), plan.corpus_cases)?,
    };
    let items = Arc::new(corpus::load(&corpus_path)?);
    let mean_bytes = items.iter().map(Item::data_len).sum::<usize>() / items.len();
    eprintln!("corpus: {} events from {}, mean payload {mean_bytes} bytes", items.len(), corpus_path.display());

    let certs_dir = work.path().join("certs");
    let mut partners: Vec<PartnerId> = corpus::sources(&items).iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    partners.push(READER.parse()?);
    partners.sort();
    partners.dedup();
    certs::init(&certs_dir, &partners, false)?;

    let mut results = Vec::new();
    if selection.runs("validate") {
        results.push(arms::validate::validate_arm(&items, plan.events)?);
    }
    if selection.runs("journal") {
        results.push(arms::journal::journal_arm(&items, plan.events, work.path()).await?);
    }
    if selection.runs("transport-") {
        let server = ServerProcess::transport(&certs_dir)?;
        let arms = arms::publish::publish_arms("transport", &server, &certs_dir, &items, &plan, &selection, false);
        results.extend(arms.await?);
        server.stop()?;
    }
    if selection.runs("gateway-unary") || selection.runs("gateway-stream") || selection.runs("gateway-at-") {
        let server = ServerProcess::gateway(work.path(), "gateway", &certs_dir, "")?;
        let arms = arms::publish::publish_arms("gateway", &server, &certs_dir, &items, &plan, &selection, true);
        results.extend(arms.await?);
        server.stop()?;
    }
    if let Some(source) = &broker_source {
        let broker = Broker::open(source, &work.path().join("tansu"))?;
        broker.check().await?;
        // Topic names of their own on a broker that may be shared or kept between runs.
        let prefix = format!("bench{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        eprintln!("kafka: broker {}, topic prefix {prefix}", broker.bootstrap);
        if selection.has("gateway-kafka") {
            let gateway_prefix = format!("{prefix}gateway.");
            let e2e = !args.no_e2e;
            results.push(
                arms::gateway_kafka::gateway_kafka_arm(
                    work.path(),
                    &certs_dir,
                    &items,
                    plan.kafka_events,
                    &broker,
                    &gateway_prefix,
                    e2e,
                )
                .await?,
            );
        }
        if selection.runs("gateway-kafka-at-") {
            let arm = format!("gateway-kafka-at-{}/s", plan.kafka_rate);
            let rate_prefix = format!("{prefix}rate.");
            let run = arms::gateway_kafka::gateway_kafka_rate_arm(
                &arm,
                work.path(),
                &certs_dir,
                &items,
                &plan,
                &broker,
                &rate_prefix,
            );
            results.push(run.await?);
        }
        if selection.runs("rdkafka-raw") {
            let raw_prefix = format!("{prefix}raw.");
            results.push(arms::rdkafka_raw::rdkafka_raw_arm(&items, plan.kafka_events, &broker, &raw_prefix).await?);
        }
    }
    // One fill of the journal serves the four.
    if ["replay", "memory", "recovery", "journal-read"].iter().any(|a| selection.runs(a)) {
        let arms = arms::replay::replay_and_memory(work.path(), &certs_dir, &items, plan.replay_events, &selection);
        results.extend(arms.await?);
    }

    if selection.runs("soak") {
        results.push(arms::soak::soak_arm(work.path(), &certs_dir, &items, &plan).await?);
    }

    if selection.runs("overload") {
        let events = plan.events.min(20_000);
        let run = plan.overload_run;
        results.extend(
            arms::overload::overload_arm(work.path(), &certs_dir, &items, events, plan.concurrency, run).await?,
        );
    }

    report::print(&results);
    if let Some(path) = &args.json {
        let corpus = CorpusFacts { path: &corpus_path, events: items.len(), mean_payload_bytes: mean_bytes };
        report::write_json(path, &results, &corpus)?;
    }
    Ok(())
}
