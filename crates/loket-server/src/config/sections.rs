//! The sections of the gateway configuration besides the top level, each with its
//! defaults.

use std::path::PathBuf;

use serde::Deserialize;

use super::period::Period;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Export auditors: may export the whole message log as stored (accepted and
    /// rejected, every partner's events, payloads in full): by default only the chain's
    /// quality team. (`partners`, the key's former name, is still read.)
    #[serde(default = "default_export_partners", alias = "partners")]
    pub auditors: Vec<String>,
    /// Integration testers: may export the message log pseudonymised (V-numbers and free
    /// text replaced by keyed pseudonyms, the payloads of medical events no recipient was
    /// given left out), which still replays with the recorded outcomes.
    #[serde(default)]
    pub testers: Vec<String>,
}

fn default_export_partners() -> Vec<String> {
    vec!["quality".to_owned()]
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self { auditors: default_export_partners(), testers: Vec::new() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address to listen on, e.g. "127.0.0.1:7443" or "0.0.0.0:7443". Override: LOKET_LISTEN.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest accepted event payload (`data`) in bytes.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Serve plain TCP without TLS. Callers then identify with the `x-loket-partner` request
    /// header, which anybody can set: only for local experiments. Override: LOKET_INSECURE=true.
    #[serde(default)]
    pub insecure: bool,
    /// Most events of one publish stream being validated or stored at once; more requests
    /// wait (back-pressure through HTTP/2 flow control).
    #[serde(default = "default_stream_in_flight")]
    pub stream_in_flight: usize,
    /// Seconds a client may take from connecting to a finished TLS handshake; then the
    /// connection is closed (connections that never handshake hold no descriptor longer).
    #[serde(default = "default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
    /// Most open connections (handshaking or established) overall; a connection beyond
    /// it is closed at once, before its handshake.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most open connections from one client IP address.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: most calls open at once on one connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Seconds between HTTP/2 keepalive pings to an idle client; 0 sends none.
    #[serde(default = "default_keepalive_interval_secs")]
    pub keepalive_interval_secs: u64,
    /// Seconds to wait for a keepalive ping's answer before closing the connection.
    #[serde(default = "default_keepalive_timeout_secs")]
    pub keepalive_timeout_secs: u64,
    /// Seconds a unary call may take (a client's shorter `grpc-timeout` wins); then it
    /// ends with DEADLINE_EXCEEDED (reason REQUEST_TIMEOUT). Streams are not cut.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Seconds a publish stream may stay without a new event and with nothing pending
    /// before the gateway ends it (DEADLINE_EXCEEDED, reason STREAM_IDLE).
    #[serde(default = "default_stream_idle_timeout_secs")]
    pub stream_idle_timeout_secs: u64,
    /// Seconds a subscriber may go without reading while deliveries wait for it; then
    /// its stream ends with RESOURCE_EXHAUSTED (reason SLOW_SUBSCRIBER) and what was
    /// buffered for it is dropped (it resumes from its cursor or a start position).
    #[serde(default = "default_slow_subscriber_timeout_secs")]
    pub slow_subscriber_timeout_secs: u64,
    /// Most bytes of deliveries buffered in the gateway per subscriber stream, in journal
    /// and Kafka mode alike (besides HTTP/2's own send window); a larger single delivery
    /// still goes out alone.
    #[serde(default = "default_subscriber_buffer_bytes")]
    pub subscriber_buffer_bytes: usize,
}

/// What in a client certificate names the partner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentitySource {
    /// The subject common name, matched against `[partners.<id>] identity` (or the id):
    /// for development certificates.
    #[default]
    Cn,
    /// The OIN in the subject serialNumber (PKIoverheid), matched against
    /// `[partners.<id>] oin`; the common name is then only a service name.
    Oin,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// What in a client certificate identifies the partner: "cn" (the subject common
    /// name; development) or "oin" (the OIN in the subject serialNumber; PKIoverheid).
    #[serde(default)]
    pub identity: IdentitySource,
    /// Certificate revocation lists (PEM or DER files) checked at every handshake: a
    /// client certificate they revoke is refused. With lists given, every CA that signs
    /// client certificates needs a current one. Read at start-up.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// PEM file with the CA certificate(s) that sign partner client certificates.
    pub client_ca: Option<PathBuf>,
    /// PEM file with the server certificate chain.
    pub server_cert: Option<PathBuf>,
    /// PEM file with the server's private key.
    pub server_key: Option<PathBuf>,
    /// Partners to make development client certificates for when the gateway generates
    /// its own (no files set); defaults to every chain partner.
    #[serde(default)]
    pub dev_partners: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSettings {
    /// Page-cache cap for the journal in MiB (sled's default of 1 GiB is too much for a
    /// small gateway). sled holds somewhat more than this: it counts pages against the
    /// cap per shard and after a delay.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
    /// MiB of just-committed events kept in memory for the readers that follow the
    /// writer (the access indexer, the handover follower, live subscribers), so that they
    /// do not read back and decrypt what was just written; 0 turns it off.
    #[serde(default = "default_recent_mib")]
    pub recent_mib: usize,
    /// Most events written and flushed together in one group commit.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How long `(source, id)` identifies an event: a resend within it is a duplicate,
    /// after it a new event. The id index is pruned to it, so it does not grow with the
    /// whole history.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: Period,
    /// Most payload bytes a rejection keeps in the rejection log (its full size and
    /// SHA-256 are kept beside them).
    #[serde(default = "default_rejection_payload_bytes")]
    pub rejection_payload_bytes: usize,
    /// Below this many free bytes on the data directory's filesystem publishes are
    /// refused (`RESOURCE_EXHAUSTED`, reason `DISK_LOW`) until space returns; 0 turns the
    /// check off.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemasConfig {
    /// A directory of `<type>.v<N>.json` schemas to use instead of the ones built into
    /// the binary.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// A directory of `<type>.toml` quality rule files to use instead of the ones built
    /// into the binary (schemas/rules/). A missing directory means no rules.
    pub rules_dir: Option<PathBuf>,
    /// Partners that may read every partner's quality figures (GetQualityReport); every
    /// other partner reads its own only.
    #[serde(default = "default_quality_readers")]
    pub readers: Vec<String>,
    /// Seconds between quality digests: the gateway journals one `quality-digest` event
    /// per publishing partner each period (source "loket"). 0 turns digests off.
    #[serde(default = "default_digest_interval_secs")]
    pub digest_interval_secs: u64,
    /// A directory of `<kind>.toml` handover expectation files to use instead of the ones
    /// built into the binary (schemas/chain/). A missing directory means no handovers.
    pub chain_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` (Prometheus text format) and `/quality` (the dashboard).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Address of the HTTP listener, separate from gRPC. Plain HTTP: keep it on a
    /// loopback or management network.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

fn default_quality_readers() -> Vec<String> {
    vec!["quality".to_owned()]
}
fn default_digest_interval_secs() -> u64 {
    86_400
}
fn default_true() -> bool {
    true
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".to_owned()
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            rules_dir: None,
            readers: default_quality_readers(),
            digest_interval_secs: default_digest_interval_secs(),
            chain_dir: None,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, listen: default_metrics_listen() }
    }
}

fn default_listen() -> String {
    "127.0.0.1:7443".to_owned()
}
fn default_max_event_bytes() -> usize {
    256 * 1024
}
fn default_stream_in_flight() -> usize {
    1024
}
fn default_handshake_timeout_secs() -> u64 {
    10
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_connections_per_address() -> usize {
    1_000
}
fn default_max_concurrent_streams() -> u32 {
    256
}
fn default_keepalive_interval_secs() -> u64 {
    30
}
fn default_keepalive_timeout_secs() -> u64 {
    10
}
fn default_request_timeout_secs() -> u64 {
    30
}
fn default_stream_idle_timeout_secs() -> u64 {
    300
}
fn default_slow_subscriber_timeout_secs() -> u64 {
    60
}
fn default_subscriber_buffer_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_cache_mib() -> u64 {
    // The followers read what was just written; older events are read once, by a replay.
    32
}
fn default_recent_mib() -> usize {
    loket_journal::DEFAULT_RECENT_BYTES >> 20
}
fn default_max_batch() -> usize {
    4096
}
fn default_dedup_window() -> Period {
    Period::days(7)
}
fn default_rejection_payload_bytes() -> usize {
    loket_journal::DEFAULT_REJECTION_PAYLOAD_BYTES
}
fn default_min_free_bytes() -> u64 {
    64 << 20
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_event_bytes: default_max_event_bytes(),
            insecure: false,
            stream_in_flight: default_stream_in_flight(),
            handshake_timeout_secs: default_handshake_timeout_secs(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            max_concurrent_streams: default_max_concurrent_streams(),
            keepalive_interval_secs: default_keepalive_interval_secs(),
            keepalive_timeout_secs: default_keepalive_timeout_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            stream_idle_timeout_secs: default_stream_idle_timeout_secs(),
            slow_subscriber_timeout_secs: default_slow_subscriber_timeout_secs(),
            subscriber_buffer_bytes: default_subscriber_buffer_bytes(),
        }
    }
}

impl Default for JournalSettings {
    fn default() -> Self {
        Self {
            cache_mib: default_cache_mib(),
            recent_mib: default_recent_mib(),
            max_batch: default_max_batch(),
            dedup_window: default_dedup_window(),
            rejection_payload_bytes: default_rejection_payload_bytes(),
            min_free_bytes: default_min_free_bytes(),
        }
    }
}

/// How events are named on every output, per the NL GOV profile for CloudEvents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudEventsConfig {
    /// Reverse-DNS prefix of the event types: `transport-status` is published and
    /// delivered as `<type_prefix>.transport-status`; the short name stays accepted as an
    /// alias on input (publish, subscribe).
    #[serde(default = "default_type_prefix")]
    pub type_prefix: String,
}

fn default_type_prefix() -> String {
    loket_domain::profile::DEFAULT_TYPE_PREFIX.to_owned()
}

impl Default for CloudEventsConfig {
    fn default() -> Self {
        Self { type_prefix: default_type_prefix() }
    }
}

/// Export of the gateway's spans (intake, journal, delivery, relay) over OTLP.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint of an OpenTelemetry collector, e.g. `http://127.0.0.1:4317`.
    /// Absent: spans are not exported (they still shape the log lines).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_service_name() -> String {
    "loket".to_owned()
}

/// The log lines `loket serve` writes to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal unless NO_COLOR is set).
    #[default]
    Text,
    /// One JSON object per line, with the spans it happened in.
    Json,
}

/// Logging of `loket serve`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`. The level comes from RUST_LOG (default `info`).
    #[serde(default)]
    pub format: LogFormat,
}

/// The processing log (Logboek dataverwerkingen) in `<data_dir>/processing`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfig {
    /// Record every processing of personal data (publish, delivery, export).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Per event type, the processing activity its records name (an entry of the
    /// organisation's register of processing activities); the type itself when absent.
    #[serde(default)]
    pub activities: std::collections::BTreeMap<String, String>,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self { enabled: true, activities: Default::default() }
    }
}
