//! The sections of the gateway configuration besides the top level, each with its
//! defaults.

use std::path::PathBuf;

use serde::Deserialize;

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
    /// ends with CANCELLED ("Timeout expired", tonic's own status). Streams are not cut.
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
    /// Most bytes of deliveries buffered in the gateway per subscriber stream (besides
    /// HTTP/2's own send window); a larger single delivery still goes out alone.
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
    /// small gateway).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
    /// Most events written and flushed together in one group commit.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
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
    64
}
fn default_max_batch() -> usize {
    4096
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
        Self { cache_mib: default_cache_mib(), max_batch: default_max_batch() }
    }
}
