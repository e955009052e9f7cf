//! The command line, declared with clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "loket", version, about = "A message-exchange hub for the partners of the migration chain")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (embedded journal, mutual TLS).
    Serve(ServeArgs),
    /// Ask a gateway whether it is serving (gRPC health), as a partner. Exit status: 0
    /// serving, 1 not serving or unreachable.
    Health(HealthArgs),
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Publish one event and print the gateway's reply as a JSON line.
    /// Exit status: 0 accepted, 2 rejected (violations printed), 1 any other failure.
    Publish(PublishArgs),
    /// Receive events as NDJSON CloudEvents (structured mode), acknowledging as it goes.
    Subscribe(SubscribeArgs),
    /// Who receives one of your published events, and from whom it is withheld and why
    /// (medical data without consent). Exit status: 0 found, 2 unknown id, 1 other failure.
    Status(StatusArgs),
    /// The audit trail: the denial log and the journal's tamper evidence.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Quality figures: fill rate per partner, type and field, completeness, rejections and
    /// failed rules (`loket quality` reports; `loket quality rebuild` recounts offline).
    #[command(args_conflicts_with_subcommands = true)]
    Quality {
        #[command(subcommand)]
        command: Option<QualityCommand>,
        #[command(flatten)]
        report: QualityReportArgs,
    },
    /// Your named subscriptions: list them, or delete one (its cursor and name).
    Subscriptions {
        #[command(subcommand)]
        command: crate::subscriptions::SubscriptionsCommand,
    },
    /// The event schemas the gateway accepts.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// Measure throughput, latency, replay and memory against the baselines (build with
    /// --release). See BENCHMARKS.md.
    Bench(loket_bench::BenchArgs),
    /// The benchmark's transport baseline: the gRPC service acking without work.
    #[command(name = loket_bench::TRANSPORT_SUBCOMMAND, hide = true)]
    BenchTransport {
        /// Directory with ca.pem, server.pem and server.key.
        #[arg(long)]
        certs: PathBuf,
    },
    /// Export the message log (accepted and/or rejected events) as NDJSON CloudEvents with
    /// their outcome, from a running gateway or a stopped gateway's data directory.
    Export(ExportArgs),
    /// Publish every event of a message log again, each as its original publisher, and
    /// compare the outcomes with the recorded ones.
    /// Exit status: 0 done, 1 malformed lines or failures, 2 mismatches with --expect-recorded.
    Replay(ReplayArgs),
    /// Generate a deterministic synthetic message log of the whole chain (no real data).
    Gen(GenArgs),
    /// Start a gateway in a temporary directory, replay a generated log from all partners
    /// and show what two subscribing partners receive.
    Demo(DemoArgs),
    /// Erase every payload of a case (auditors; the gateway's EraseCase): its data key is
    /// destroyed, the erasure is recorded, subscribers and Kafka get tombstones. Prints the
    /// erasure as a JSON line. Exit status: 0 erased, 2 refused (not found, not allowed), 1
    /// any other failure.
    Erase(EraseArgs),
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The case (V-number) to erase.
    #[arg(long)]
    pub case: String,
    /// Why (the legal ground that ended); kept in the erasure record.
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Read the journal of a stopped gateway in this data directory instead of asking a
    /// running gateway.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["server", "partner"])]
    pub data: Option<PathBuf>,
    /// Gateway URL (online export).
    #[arg(long, env = "LOKET_SERVER", default_value = "https://127.0.0.1:7443")]
    pub server: String,
    /// Directory with ca.pem and <partner>.pem/.key.
    #[arg(long, env = "LOKET_CERTS", default_value = "./data/certs")]
    pub certs: PathBuf,
    /// The partner to export as: an export auditor gets the log as stored, a tester
    /// pseudonymised (the gateway's [export] auditors and testers).
    #[arg(long = "as", env = "LOKET_PARTNER", value_name = "PARTNER", default_value = "quality")]
    pub partner: String,
    /// First entry: an accepted sequence number or an RFC 3339 time (inclusive).
    #[arg(long)]
    pub from: Option<String>,
    /// Last entry: an accepted sequence number or an RFC 3339 time (inclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// Only these event types (comma-separated or repeated).
    #[arg(long = "type", value_delimiter = ',', value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only events from these sources.
    #[arg(long = "source", value_delimiter = ',', value_name = "PARTNER")]
    pub sources: Vec<String>,
    /// Only these cases (V-numbers).
    #[arg(long = "case", value_delimiter = ',', value_name = "VNUMBER")]
    pub cases: Vec<String>,
    /// Only rejected events.
    #[arg(long, conflicts_with = "all")]
    pub rejected: bool,
    /// Accepted and rejected events (default: accepted only).
    #[arg(long)]
    pub all: bool,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With --data: the stopped gateway's configuration, for the names events are
    /// exported under (`[cloudevents] type_prefix`, the partners' OIN and system); the
    /// defaults when absent.
    #[arg(long, value_name = "FILE", requires = "data")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The message log (NDJSON, as export or gen write it).
    pub file: PathBuf,
    /// Gateway URL.
    #[arg(long, env = "LOKET_SERVER", default_value = "https://127.0.0.1:7443")]
    pub server: String,
    /// Directory with ca.pem and a <partner>.pem/.key for every publisher in the log.
    #[arg(long, env = "LOKET_CERTS", default_value = "./data/certs")]
    pub certs: PathBuf,
    /// max (as fast as the gateway takes them), original (the recorded gaps) or a factor
    /// of the original pace such as 10x or 0.5x.
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Exit non-zero when any outcome differs from the recorded one.
    #[arg(long)]
    pub expect_recorded: bool,
    /// Write every mismatch as a JSON line to this file.
    #[arg(long, value_name = "FILE")]
    pub diff: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Seed: the same seed and options give a byte-identical log.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of cases moving through the chain.
    #[arg(long, default_value_t = 20)]
    pub cases: u32,
    /// Share of events that leave out some expected fields (0..1).
    #[arg(long, default_value_t = 0.2)]
    pub missing_rate: f64,
    /// Share of events that break their schema and will be rejected (0..1).
    #[arg(long, default_value_t = 0.05)]
    pub invalid_rate: f64,
    /// Start of the synthetic clock (RFC 3339).
    #[arg(long, default_value = "2026-01-05T08:00:00Z")]
    pub start: String,
    /// Number of the first case (V-numbers 9999 + six digits); default 1000 × (seed mod
    /// 1000), so logs of different seeds can be replayed into one gateway.
    #[arg(long)]
    pub first_case: Option<u32>,
    /// Share of departures for which detention re-registers the baggage only afterwards
    /// (a stale baggage registration at the handover to the escort).
    #[arg(long, default_value_t = 0.1)]
    pub late_baggage_rate: f64,
    /// Share of cases whose physical features are never recorded.
    #[arg(long, default_value_t = 0.1)]
    pub missing_features_rate: f64,
    /// Share of cases whose medical files are handed over without a registered consent.
    #[arg(long, default_value_t = 0.1)]
    pub no_consent_rate: f64,
    /// Write what was planted (handovers and their gaps per kind) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub planted: Option<PathBuf>,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Refused publishes and subscribes, redactions and withholdings, as JSON lines, oldest
    /// first. A partner sees its own refusals; an auditor (the quality team) sees
    /// everything, everyone's.
    Denials(AuditDenialsArgs),
    /// Every export of the message log (who, when, full or pseudonymised, filters, entries
    /// sent), as JSON lines, oldest first. An auditor sees every export, a partner its own.
    Exports(AuditExportsArgs),
    /// The processing log of one data subject (Logboek dataverwerkingen): every publish,
    /// delivery and export of the case's data, who, when, under which trace, as JSON lines,
    /// oldest first. Auditors only.
    Processing(AuditProcessingArgs),
    /// Walk the hash chain and report the first entry that was altered, removed or
    /// reordered. Exit status 3 when the chain is broken.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// Data directory of a stopped gateway.
    #[arg(long, default_value = "./data", value_name = "DIR")]
    pub data: PathBuf,
    /// Verify an exported log instead (a complete `export --all` unless --partial).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// The log is a filtered export: skipped chain positions are not reported, the links
    /// between consecutive entries are still checked.
    #[arg(long, requires = "log")]
    pub partial: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the generated log.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Number of cases.
    #[arg(long, default_value_t = 6)]
    pub cases: u32,
    /// Events to print per subscriber (the summary counts all).
    #[arg(long, default_value_t = 4)]
    pub show: usize,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); without it, the built-in defaults (see config/loket.toml).
    #[arg(long, short, env = "LOKET_CONFIG")]
    pub config: Option<PathBuf>,
    /// Only read and check the configuration (with the environment's overrides), print
    /// every problem and exit: 0 valid, 1 not. Starts nothing and writes nothing.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a development CA, a server certificate for localhost and one client
    /// certificate per partner.
    Init(CertsInitArgs),
    /// Write a revocation list (crl.pem), signed by the development CA, that revokes the
    /// named client certificates; for `[tls] crl`, read when the gateway starts.
    Revoke(CertsRevokeArgs),
}

#[derive(Debug, Args)]
pub struct CertsRevokeArgs {
    /// The development PKI (as written by `certs init`): its ca.pem and ca.key sign the
    /// list, which is written there as crl.pem.
    #[arg(long)]
    pub dir: PathBuf,
    /// The certificates to revoke, by file name without `.pem` (a partner id for those
    /// `certs init` wrote). The list names exactly these: a new run replaces it.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CertsInitArgs {
    /// Directory to write ca.pem, server.pem, server.key and <partner>.pem/.key into.
    #[arg(long)]
    pub out: PathBuf,
    /// Comma-separated partner ids.
    #[arg(long, value_delimiter = ',', default_value = "dtv,kmar,dji,dvo,coa,ind,politie,gza,quality")]
    pub partners: Vec<String>,
    /// Replace files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Put a development OIN (20 digits) in each client certificate's subject
    /// serialNumber, as PKIoverheid certificates carry the organisation's OIN, and write
    /// the matching `[partners.<id>] oin` lines to oins.toml: for `[tls] identity = "oin"`.
    #[arg(long)]
    pub oin: bool,
}

/// How to reach the gateway and as whom.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Gateway URL: https:// for mutual TLS, http:// only for an insecure gateway.
    #[arg(long, env = "LOKET_SERVER", default_value = "https://127.0.0.1:7443")]
    pub server: String,
    /// Directory with ca.pem and <partner>.pem/.key (as `loket certs init` or the first
    /// `loket serve` writes them).
    #[arg(long, env = "LOKET_CERTS", default_value = "./data/certs")]
    pub certs: PathBuf,
    /// The partner to act as (its certificate is used).
    #[arg(long = "as", env = "LOKET_PARTNER", value_name = "PARTNER")]
    pub partner: String,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Event type, e.g. transport-status (see `loket schemas list`).
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,
    /// The JSON payload: a file, or - for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub data: String,
    /// Event id; a new UUID when absent. Reuse an id to resend safely.
    #[arg(long)]
    pub id: Option<String>,
    /// Case V-number; taken from the payload's vNumber when absent.
    #[arg(long)]
    pub subject: Option<String>,
    /// When the fact happened (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub time: Option<String>,
    /// Schema id (dataschema); the type's latest version when absent.
    #[arg(long)]
    pub dataschema: Option<String>,
    /// A CloudEvents extension attribute NAME=VALUE (repeatable), e.g. dataref=https://...
    /// or traceparent=00-...: names are 1 to 20 lowercase letters or digits.
    #[arg(long = "extension", value_name = "NAME=VALUE")]
    pub extensions: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Comma-separated event types; all types when absent.
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Where a new subscription starts: earliest, latest, a sequence number or an RFC 3339
    /// time. A named subscription that exists resumes after its last acknowledged event.
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// Durable subscription name: the gateway keeps its position across reconnects.
    #[arg(long)]
    pub name: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// List event types and schema versions.
    List(SchemasListArgs),
}

#[derive(Debug, Args)]
pub struct SchemasListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The id the event was published with (by the partner given with --as).
    #[arg(long)]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct AuditExportsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only exports started at or after this RFC 3339 time.
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditProcessingArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The data subject's V-number; the gateway looks it up by its keyed pseudonym.
    #[arg(long, value_name = "VNUMBER")]
    pub case: String,
}

#[derive(Debug, Args)]
pub struct AuditDenialsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only denials at or after this RFC 3339 time.
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
    /// Only this partner's denials (auditors; others may name only themselves).
    #[arg(long = "partner", value_name = "PARTNER")]
    pub of_partner: Option<String>,
    /// At most this many, the most recent (default 1000).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum QualityCommand {
    /// Recount the quality figures from the journal of a stopped gateway (offline, on its
    /// data directory). Refusals are not in the journal: their counts are kept as they are.
    Rebuild(ServeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportView {
    /// Per partner, type and expected field: seen, filled, fill rate.
    Fields,
    /// Per partner and type: events, mean completeness, rejections, failed rules.
    Types,
    /// Per day, partner and type: events and mean completeness.
    Days,
    /// Handover readiness: per handover kind, item and responsible partner how often the
    /// item was due, met, missing, stale or unmet (and, for quality readers, per kind the
    /// share of handovers that were ready).
    Handovers,
    /// Per partner and type the quality dimensions: validity, completeness, timeliness
    /// p50/p90 (seconds from an event's time to its receipt), uniqueness and readiness.
    Dimensions,
}

#[derive(Debug, Args)]
pub struct QualityReportArgs {
    /// How to reach the gateway and as whom (needed unless rebuilding).
    #[arg(long, env = "LOKET_SERVER", default_value = "https://127.0.0.1:7443")]
    pub server: String,
    #[arg(long, env = "LOKET_CERTS", default_value = "./data/certs")]
    pub certs: PathBuf,
    #[arg(long = "as", env = "LOKET_PARTNER", value_name = "PARTNER")]
    pub partner: Option<String>,
    /// Comma-separated partners to report on (default: yourself; a quality reader: all).
    #[arg(long = "partner", value_delimiter = ',')]
    pub partners: Vec<String>,
    /// One event type.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// First UTC day included (YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Last UTC day included (YYYY-MM-DD).
    #[arg(long)]
    pub to: Option<String>,
    /// Output format; a table on a terminal, JSON otherwise.
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// What the table and CSV show (JSON always has everything).
    #[arg(long, value_enum)]
    pub view: Option<ReportView>,
}
