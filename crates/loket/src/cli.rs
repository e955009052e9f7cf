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
    /// Quality figures: fill rate per partner, type and field, completeness, rejections and
    /// failed rules (`loket quality` reports; `loket quality rebuild` recounts offline).
    #[command(args_conflicts_with_subcommands = true)]
    Quality {
        #[command(subcommand)]
        command: Option<QualityCommand>,
        #[command(flatten)]
        report: QualityReportArgs,
    },
    /// The event schemas the gateway accepts.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); without it, the built-in defaults (see config/loket.toml).
    #[arg(long, short, env = "LOKET_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a development CA, a server certificate for localhost and one client
    /// certificate per partner.
    Init(CertsInitArgs),
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
