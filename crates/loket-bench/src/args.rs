//! The command line of `loket bench`, declared with clap for the binary's `Command` enum.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The message log to publish (NDJSON CloudEvents in structured mode, as `loket gen`
    /// and `loket export` write). Without it, a log generated like `loket gen --seed 1
    /// --cases 2000` (realistic defect rates).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Events per throughput arm.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Events of the gateway-kafka and rdkafka-raw arms. Tansu, the development broker,
    /// takes hundreds to a few thousand records a second (BENCHMARKS.md), so these arms
    /// get fewer events than the others; give a real Kafka cluster more.
    #[arg(long, default_value_t = 5_000)]
    pub kafka_events: u64,
    /// Events stored for the replay and memory arms.
    #[arg(long, default_value_t = 1_000_000)]
    pub replay_events: u64,
    /// Seconds of each fixed-rate latency run.
    #[arg(long, default_value_t = 10)]
    pub latency_seconds: u64,
    /// Offered loads (events/s) of the latency runs.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,20000")]
    pub rates: Vec<u64>,
    /// Offered load (events/s) of the fixed-rate Kafka arm, which measures publish → consume
    /// latency with the relay keeping up: keep it below what the broker takes.
    #[arg(long, default_value_t = 200)]
    pub kafka_rate: u64,
    /// Concurrent callers of the unary arms.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Only these arms, by name or prefix (validate, journal, transport-unary,
    /// transport-stream, gateway-unary, gateway-stream, gateway-at-N/s, gateway-at-70%,
    /// gateway-kafka-at-N/s, gateway-kafka, rdkafka-raw, replay, memory, recovery,
    /// journal-read, soak; `transport` or `gateway` for all of theirs). `soak` runs only
    /// when named.
    #[arg(long, value_delimiter = ',')]
    pub arms: Vec<String>,
    /// Kafka bootstrap servers (host:port[,host:port…]) for the gateway-kafka and
    /// rdkafka-raw arms. Without it the benchmark starts its own Tansu broker (`tansu` on
    /// PATH or in ~/.cargo/bin) with SQLite storage in its work directory.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Run gateway-kafka without its publish→consume consumer, so that the broker serves
    /// the relay alone (a consumer's reads can cost a development broker far more than the
    /// writes; see BENCHMARKS.md). The arm then reports no end-to-end latency.
    #[arg(long)]
    pub no_e2e: bool,
    /// Minutes of the soak arm.
    #[arg(long, default_value_t = 5)]
    pub soak_minutes: u64,
    /// Offered load (events/s) of the soak arm.
    #[arg(long, default_value_t = 500)]
    pub soak_rate: u64,
    /// Retention of every kind (and the dedup window) in the soak arm's gateway.
    #[arg(long, default_value = "1m")]
    pub soak_retention: String,
    /// A run of seconds with tiny numbers, to check that every arm works.
    #[arg(long)]
    pub smoke: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}
