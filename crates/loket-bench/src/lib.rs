//! `loket bench`: throughput, latency, replay and memory of the gateway, side by side with
//! its baselines (the bare gRPC transport, validation alone, the journal alone, a plain
//! Kafka producer) in one run on one corpus. Figures are reported, never asserted: the
//! smoke run in the test suite only checks that every arm ran and produced them.
//!
//! The `loket` binary runs it ([`run`] for `loket bench`). The servers under test are that
//! binary again, as child processes (`loket serve`, and `loket bench-transport` for
//! [`serve_null_gateway`]), so their CPU time and memory are their own.

mod args;
mod broker;
mod consumer;
mod corpus;
mod kafka;
mod load;
mod null;
mod procs;
mod rdkafka_raw;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::{FuturesUnordered, StreamExt};
use loket_domain::PartnerId;
use loket_journal::{Journal, JournalConfig, NewEvent};
use loket_schema::Registry;
use loket_server::certs;
use loket_server::client::{connect, ClientOptions};
use loket_server::proto::{subscribe_request::Start, Earliest, SubscribeRequest};
use serde_json::Value;

use broker::Broker;
use corpus::Item;
use load::Clients;
use procs::{disk_usage, own_cpu, own_peak_rss, ServerProcess};
use stats::{histogram, record, table, ArmResult};

pub use args::BenchArgs;
pub use null::serve as serve_null_gateway;

/// The hidden subcommand of the `loket` binary that runs [`serve_null_gateway`]: the
/// benchmark starts the transport baseline with it.
pub const TRANSPORT_SUBCOMMAND: &str = "bench-transport";

/// The partner that reads the log back in the replay arm, and the types it receives whole
/// under the shipped need-to-know policy (so the arm measures reading, not redaction).
const READER: &str = "dtv";
const READER_TYPES: &[&str] = &["physical-features", "baggage", "transport-status"];

struct Plan {
    events: u64,
    /// Events of the two Kafka arms: a development broker takes them far slower.
    kafka_events: u64,
    replay_events: u64,
    latency_run: Duration,
    rates: Vec<u64>,
    concurrency: usize,
}

impl Plan {
    /// Every arm this plan can run, in the order they run.
    fn arms(&self) -> Vec<String> {
        let mut arms: Vec<String> =
            ["validate", "journal", "transport-unary", "transport-stream", "gateway-unary", "gateway-stream"]
                .map(str::to_owned)
                .into();
        arms.extend(self.rates.iter().map(|r| format!("gateway-at-{r}/s")));
        arms.extend(["gateway-kafka", "rdkafka-raw", "replay", "memory"].map(str::to_owned));
        arms
    }
}

/// The arms to run: all, or those whose names start with an entry of `--arms`.
struct Selection(Vec<String>);

impl Selection {
    fn new(args: &BenchArgs, plan: &Plan) -> anyhow::Result<Self> {
        let all = plan.arms();
        for a in &args.arms {
            if !all.iter().any(|arm| arm.starts_with(a.as_str())) {
                anyhow::bail!("--arms {a:?} names no arm; the arms are {}", all.join(", "));
            }
        }
        let picked = |arm: &String| args.arms.is_empty() || args.arms.iter().any(|a| arm.starts_with(a.as_str()));
        Ok(Self(all.iter().filter(|a| picked(a)).cloned().collect()))
    }

    /// Whether an arm whose name starts with `prefix` runs (a whole name: whether it runs).
    fn runs(&self, prefix: &str) -> bool {
        self.0.iter().any(|a| a.starts_with(prefix))
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = if args.smoke {
        Plan {
            events: 300,
            kafka_events: 300,
            replay_events: 500,
            latency_run: Duration::from_millis(500),
            rates: vec![200],
            concurrency: 8,
        }
    } else {
        Plan {
            events: args.events,
            kafka_events: args.kafka_events,
            replay_events: args.replay_events,
            latency_run: Duration::from_secs(args.latency_seconds),
            rates: args.rates.clone(),
            concurrency: args.concurrency,
        }
    };
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
        None => generated_corpus(work.path(), if args.smoke { 40 } else { 2000 })?,
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
        results.push(validate_arm(&items, plan.events)?);
    }
    if selection.runs("journal") {
        results.push(journal_arm(&items, plan.events, work.path()).await?);
    }
    if selection.runs("transport-") {
        let server = ServerProcess::spawn(&[TRANSPORT_SUBCOMMAND, "--certs", &certs_dir.display().to_string()], &[])?;
        results.extend(publish_arms("transport", &server, &certs_dir, &items, &plan, &selection, false).await?);
        server.stop()?;
    }
    if selection.runs("gateway-unary") || selection.runs("gateway-stream") || selection.runs("gateway-at-") {
        let config = gateway_config(work.path(), "gateway", &certs_dir, "")?;
        let server = ServerProcess::spawn(&["serve", "--config", &config.display().to_string()], &[])?;
        results.extend(publish_arms("gateway", &server, &certs_dir, &items, &plan, &selection, true).await?);
        server.stop()?;
    }
    if let Some(source) = &broker_source {
        let broker = Broker::open(source, &work.path().join("tansu"))?;
        broker.check().await?;
        // Topic names of their own on a broker that may be shared or kept between runs.
        let prefix = format!("bench{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        eprintln!("kafka: broker {}, topic prefix {prefix}", broker.bootstrap);
        if selection.runs("gateway-kafka") {
            let gateway_prefix = format!("{prefix}gateway.");
            let e2e = !args.no_e2e;
            results.push(
                kafka::gateway_kafka_arm(
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
        if selection.runs("rdkafka-raw") {
            results.push(
                rdkafka_raw::rdkafka_raw_arm(&items, plan.kafka_events, &broker, &format!("{prefix}raw.")).await?,
            );
        }
    }
    if selection.runs("replay") || selection.runs("memory") {
        results.extend(replay_and_memory(work.path(), &certs_dir, &items, plan.replay_events).await?);
    }

    println!("{}", table(&results));
    for line in ratios(&results) {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({ "results": results, "ratios": ratios(&results), "corpus_events": items.len(),
                                      "corpus": corpus_path.display().to_string(),
                                      "mean_payload_bytes": mean_bytes });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The default corpus: the synthetic chain log of `loket gen` with its default defect rates.
fn generated_corpus(dir: &Path, cases: u32) -> anyhow::Result<PathBuf> {
    let path = dir.join("corpus.ndjson");
    let options =
        loket_messagelog::GenOptions { seed: 1, cases, missing_rate: 0.2, invalid_rate: 0.05, start: 1_767_600_000 };
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    loket_messagelog::generate(&options, &mut out)?;
    std::io::Write::flush(&mut out)?;
    Ok(path)
}

fn ratios(results: &[ArmResult]) -> Vec<String> {
    let rate = |arm: &str| results.iter().find(|r| r.arm == arm).map(|r| r.events_per_second);
    let mut out = Vec::new();
    for (a, b) in
        [("gateway-stream", "transport-stream"), ("gateway-kafka", "rdkafka-raw"), ("gateway-unary", "transport-unary")]
    {
        if let (Some(x), Some(y)) = (rate(a), rate(b)) {
            out.push(format!("ratio {a} / {b}: {:.2}", x / y));
        }
    }
    out
}

/// Validation and completeness alone, in this process, one core: the CPU floor of our work.
fn validate_arm(items: &[Item], events: u64) -> anyhow::Result<ArmResult> {
    let registry = Registry::embedded()?;
    let cpu0 = own_cpu()?;
    let start = Instant::now();
    let mut h = histogram();
    let mut rejected = 0;
    for i in 0..events {
        let item = &items[(i % items.len() as u64) as usize];
        let t0 = Instant::now();
        let ok = registry
            .resolve(&item.event.r#type, Some(&item.event.dataschema))
            .ok()
            .and_then(|schema| {
                let data: Value = serde_json::from_slice(&item.event.data).ok()?;
                schema.check(&data).ok()?;
                serde_json::to_vec(&data).ok()
            })
            .is_some();
        record(&mut h, t0.elapsed());
        if !ok {
            rejected += 1;
        }
    }
    let elapsed = start.elapsed();
    Ok(ArmResult::new("validate", events, rejected, elapsed)
        .latency(&h)
        .cpu(own_cpu()? - cpu0)
        .rss(own_peak_rss())
        .note("in-process, 1 thread"))
}

/// Journal entries for the valid corpus events, as the gateway would store them.
fn journal_entries(items: &[Item]) -> anyhow::Result<Vec<NewEvent>> {
    let registry = Registry::embedded()?;
    let mut out = Vec::new();
    for item in items {
        let Ok(schema) = registry.resolve(&item.event.r#type, Some(&item.event.dataschema)) else { continue };
        let Ok(data) = serde_json::from_slice::<Value>(&item.event.data) else { continue };
        let Ok(completeness) = schema.check(&data) else { continue };
        out.push(NewEvent {
            source: item.source.clone(),
            id: item.event.id.clone(),
            event_type: item.event.r#type.clone(),
            schema_version: schema.version(),
            dataschema: schema.id().to_owned(),
            subject: data.get("vNumber").and_then(Value::as_str).unwrap_or_default().to_owned(),
            time_micros: None,
            datacontenttype: "application/json".to_owned(),
            data: serde_json::to_vec(&data)?,
            completeness: completeness.score,
            missing_expected: completeness.missing,
        });
    }
    anyhow::ensure!(!out.is_empty(), "the corpus holds no valid event");
    Ok(out)
}

/// Journal appends alone with the gateway's group-commit policy: many concurrent
/// submitters, one writer, one flush per batch.
async fn journal_arm(items: &[Item], events: u64, work: &Path) -> anyhow::Result<ArmResult> {
    let entries = Arc::new(journal_entries(items)?);
    let defaults = loket_server::Config::default();
    let journal = Journal::open(&JournalConfig {
        dir: work.join("journal-arm"),
        cache_capacity_bytes: defaults.journal.cache_mib * 1024 * 1024,
        max_batch: defaults.journal.max_batch,
    })?;
    let cpu0 = own_cpu()?;
    let start = Instant::now();
    let submitters = 256u64;
    let mut tasks = FuturesUnordered::new();
    for t in 0..submitters {
        let journal = journal.clone();
        let entries = entries.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut i = t;
            while i < events {
                let mut e = entries[(i % entries.len() as u64) as usize].clone();
                e.id = format!("{}~{i}", e.id);
                let t0 = Instant::now();
                journal.submit(e).await?;
                record(&mut h, t0.elapsed());
                i += submitters;
            }
            Ok::<_, anyhow::Error>(h)
        }));
    }
    let mut h = histogram();
    while let Some(done) = tasks.next().await {
        h.add(&done??)?;
    }
    let elapsed = start.elapsed();
    let cpu = own_cpu()? - cpu0;
    journal.close()?;
    Ok(ArmResult::new("journal", events, 0, elapsed)
        .latency(&h)
        .cpu(cpu)
        .rss(own_peak_rss())
        .note(format!("in-process, {submitters} submitters, {} per flush", journal_batch_note(&journal))))
}

fn journal_batch_note(journal: &Journal) -> String {
    let s = journal.stats();
    if s.batches == 0 {
        return "-".to_owned();
    }
    format!("{:.0} events", s.events as f64 / s.batches as f64)
}

/// The config of a gateway under test, with `extra` (further sections) at its end.
fn gateway_config(work: &Path, name: &str, certs_dir: &Path, extra: &str) -> anyhow::Result<PathBuf> {
    let data_dir = work.join(name);
    let path = work.join(format!("{name}.toml"));
    let text = format!(
        "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[tls]\nclient_ca = {:?}\nserver_cert = {:?}\nserver_key = {:?}\n{extra}",
        data_dir.display().to_string(),
        certs_dir.join(certs::CA_CERT).display().to_string(),
        certs_dir.join(certs::SERVER_CERT).display().to_string(),
        certs_dir.join(certs::SERVER_KEY).display().to_string(),
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Unary with concurrent callers, publish streams, and (for the gateway) unary latency at
/// fixed offered loads: those of them that `selection` wants.
async fn publish_arms(
    name: &str,
    server: &ServerProcess,
    certs_dir: &Path,
    items: &Arc<Vec<Item>>,
    plan: &Plan,
    selection: &Selection,
    fixed_rates: bool,
) -> anyhow::Result<Vec<ArmResult>> {
    let clients = Clients::connect(&server.url(), certs_dir, items).await?;
    let mut out = Vec::new();

    let arm = format!("{name}-unary");
    if selection.runs(&arm) {
        let cpu0 = server.cpu()?;
        let run = load::unary_closed(&clients, items, plan.concurrency, plan.events).await?;
        out.push(
            ArmResult::new(&arm, run.done, run.rejected, run.elapsed)
                .latency(&run.latency)
                .cpu(server.cpu()? - cpu0)
                .note(format!("{} concurrent callers", plan.concurrency)),
        );
    }

    let arm = format!("{name}-stream");
    if selection.runs(&arm) {
        let cpu0 = server.cpu()?;
        let run = streams_after_unary(&clients, items, plan.events).await?;
        let streams = corpus::sources(items).len();
        out.push(
            ArmResult::new(&arm, run.done, run.rejected, run.elapsed)
                .latency(&run.latency)
                .cpu(server.cpu()? - cpu0)
                .note(format!("{streams} streams, one per partner")),
        );
    }

    if fixed_rates {
        for (k, &rate) in plan.rates.iter().enumerate() {
            let arm = format!("{name}-at-{rate}/s");
            if !selection.runs(&arm) {
                continue;
            }
            let cpu0 = server.cpu()?;
            // Distinct id rounds per run, so that no run's events are duplicates of another's.
            let base = 1_000_000 * (k as u64 + 1);
            let run = load::open_loop(&clients, items, rate, plan.latency_run, base).await?;
            out.push(
                ArmResult::new(&arm, run.done, run.rejected, run.elapsed)
                    .latency(&run.latency)
                    .cpu(server.cpu()? - cpu0)
                    .note(match &run.first_failure {
                        None => format!("open loop, offered {rate}/s"),
                        Some(first) => {
                            format!("open loop, offered {rate}/s; {} got no answer (first: {first})", run.failed)
                        }
                    }),
            );
        }
    }
    let (_, peak) = server.memory()?;
    for r in &mut out {
        r.peak_rss_mib = Some(peak as f64 / (1024.0 * 1024.0));
    }
    Ok(out)
}

/// The stream run sends ids of a later round than the unary run, so it stores new events.
async fn streams_after_unary(
    clients: &Clients,
    items: &Arc<Vec<Item>>,
    events: u64,
) -> anyhow::Result<load::RunOutcome> {
    let shifted: Vec<Item> = items
        .iter()
        .map(|i| {
            let mut i = i.clone();
            i.event.id = format!("{}~s", i.event.id);
            i
        })
        .collect();
    load::streams(clients, &Arc::new(shifted), events).await
}

/// Stores `events` events through publish streams, then reads them all back through one
/// subscriber, and reports the gateway's memory and the journal's size on disk.
async fn replay_and_memory(
    work: &Path,
    certs_dir: &Path,
    items: &Arc<Vec<Item>>,
    events: u64,
) -> anyhow::Result<Vec<ArmResult>> {
    let valid: Vec<Item> = {
        let registry = Registry::embedded()?;
        items
            .iter()
            .filter(|i| {
                // The recorded outcome also covers quality rules and grants; a log without
                // outcomes is judged by its schemas.
                i.recorded_accepted.unwrap_or_else(|| {
                    registry.resolve(&i.event.r#type, Some(&i.event.dataschema)).is_ok_and(|s| {
                        serde_json::from_slice::<Value>(&i.event.data).is_ok_and(|d| s.check(&d).is_ok())
                    })
                })
            })
            .cloned()
            .collect()
    };
    anyhow::ensure!(!valid.is_empty(), "the corpus holds no valid event");
    let valid = Arc::new(valid);
    let config = gateway_config(work, "replay", certs_dir, "")?;
    let server = ServerProcess::spawn(&["serve", "--config", &config.display().to_string()], &[])?;
    let clients = Clients::connect(&server.url(), certs_dir, &valid).await?;
    let fill = load::streams(&clients, &valid, events).await?;
    anyhow::ensure!(fill.rejected == 0, "valid events were refused while filling");
    drop(clients);

    let options = ClientOptions { server: server.url(), certs: certs_dir.to_owned(), partner: READER.to_owned() };
    let mut reader = connect(&options).await?.max_decoding_message_size(64 * 1024 * 1024);
    let cpu0 = server.cpu()?;
    let start = Instant::now();
    let expected = (0..events)
        .filter(|i| READER_TYPES.contains(&valid[(i % valid.len() as u64) as usize].event.r#type.as_str()))
        .count() as u64;
    anyhow::ensure!(expected > 0, "the corpus holds none of {READER_TYPES:?}");
    let request = SubscribeRequest {
        types: READER_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        start: Some(Start::Earliest(Earliest {})),
        name: String::new(),
        limit: expected,
    };
    let mut stream = reader.subscribe(request).await?.into_inner();
    let mut received = 0u64;
    while stream.message().await?.is_some() {
        received += 1;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(received == expected, "replay delivered {received} of {expected} events");
    let cpu = server.cpu()? - cpu0;
    let (rss, peak) = server.memory()?;
    let disk = disk_usage(&work.join("replay"));
    server.stop()?;
    Ok(vec![
        ArmResult::new("replay", received, 0, elapsed).cpu(cpu).rss(Some(peak)).note(format!(
            "{READER} from earliest: {expected} of {events} stored events are its types; filled at {:.0}/s",
            fill.done as f64 / fill.elapsed.as_secs_f64()
        )),
        ArmResult::new("memory", events, 0, Duration::ZERO).rss(Some(rss)).note(format!(
            "gateway RSS after storing and replaying; journal {:.0} MiB on disk",
            disk as f64 / 1048576.0
        )),
    ])
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `loket bench` as the binary declares it.
    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn selection(arms: &str) -> anyhow::Result<Selection> {
        let args = Bench::parse_from(["bench", "--arms", arms]).args;
        let plan = Plan {
            events: 1,
            kafka_events: 1,
            replay_events: 1,
            latency_run: Duration::ZERO,
            rates: vec![100, 1000],
            concurrency: 1,
        };
        Selection::new(&args, &plan)
    }

    #[test]
    fn arms_are_picked_by_name_or_prefix() {
        let s = selection("gateway-stream,rdkafka").unwrap();
        assert_eq!(s.0, ["gateway-stream", "rdkafka-raw"]);
        let s = selection("gateway").unwrap();
        assert_eq!(s.0, ["gateway-unary", "gateway-stream", "gateway-at-100/s", "gateway-at-1000/s", "gateway-kafka"]);
        assert!(s.runs("gateway-at-") && !s.runs("transport-") && !s.runs("rdkafka-raw"));
        let s = selection("gateway-at-100/s").unwrap();
        assert_eq!(s.0, ["gateway-at-100/s"]);
    }

    #[test]
    fn an_entry_that_names_no_arm_is_refused_with_the_arms() {
        let err = selection("gateway,kafka").err().unwrap().to_string();
        assert!(err.contains("\"kafka\"") && err.contains("gateway-kafka, rdkafka-raw"), "{err}");
    }
}
