//! The gateway's configuration: one TOML file, every field documented, unknown keys refused.
//!
//! Environment overrides are passed in by the caller (the binary hands over the process
//! environment), so tests never depend on globals.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use loket_access::{AccessConfig, PartnerConfig};
use loket_domain::PartnerId;
pub use loket_kafka::{AckMode, KafkaConfig};
use serde::Deserialize;

use crate::Error;

/// The partners of the chain (see the brief); development certificates are made for these.
pub const CHAIN_PARTNERS: &[&str] = &["dtv", "kmar", "dji", "dvo", "coa", "ind", "politie", "gza", "quality"];

/// Environment variables that override the file, highest precedence first applied last.
pub const ENV_DATA_DIR: &str = "LOKET_DATA_DIR";
pub const ENV_LISTEN: &str = "LOKET_LISTEN";
pub const ENV_INSECURE: &str = "LOKET_INSECURE";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the journal and, when `[tls]` names no files, the development
    /// certificates generated on first start. Relative paths are relative to the working
    /// directory. Override: LOKET_DATA_DIR.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The gRPC listener.
    #[serde(default)]
    pub grpc: GrpcConfig,
    /// Mutual TLS. Leave all three files unset to use generated development certificates.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The embedded journal.
    #[serde(default)]
    pub journal: JournalSettings,
    /// Where the event schemas come from.
    #[serde(default)]
    pub schemas: SchemasConfig,
    /// Gateway-wide access rules: who reads all denials, what counts as medical data.
    #[serde(default)]
    pub access: AccessConfig,
    /// Per partner: certificate identity, the types it may publish, and per type it may
    /// receive the fields it sees. Deny by default: only listed grants exist. Absent
    /// altogether: the built-in need-to-know policy, the one config/loket.toml ships.
    pub partners: Option<BTreeMap<String, PartnerConfig>>,
    /// Who may export the message log over gRPC.
    #[serde(default)]
    pub export: ExportConfig,
    /// Quality measurement: rules, who reads every partner's figures, the digest.
    #[serde(default)]
    pub quality: QualityConfig,
    /// The HTTP listener for Prometheus metrics and the quality dashboard.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Fan-out over Kafka. Absent: no Kafka (the embedded default).
    pub kafka: Option<KafkaConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Partners allowed to call Export (the whole message log, accepted and rejected,
    /// every partner's events): by default only the chain's quality team.
    #[serde(default = "default_export_partners")]
    pub partners: Vec<String>,
}

fn default_export_partners() -> Vec<String> {
    vec!["quality".to_owned()]
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self { partners: default_export_partners() }
    }
}

/// The shipped configuration, whose `[partners]` are the built-in policy.
const SHIPPED: &str = include_str!("../../../config/loket.toml");

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
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
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
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, listen: default_metrics_listen() }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
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
        }
    }
}

impl Default for JournalSettings {
    fn default() -> Self {
        Self { cache_mib: default_cache_mib(), max_batch: default_max_batch() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            grpc: GrpcConfig::default(),
            tls: TlsConfig::default(),
            journal: JournalSettings::default(),
            schemas: SchemasConfig::default(),
            access: AccessConfig::default(),
            partners: None,
            export: ExportConfig::default(),
            quality: QualityConfig::default(),
            metrics: MetricsConfig::default(),
            kafka: None,
        }
    }
}

/// Where the TLS material comes from, once the configuration is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Files named in `[tls]`.
    Files { client_ca: PathBuf, server_cert: PathBuf, server_key: PathBuf },
    /// Development certificates in `<data_dir>/certs`, generated on first start.
    Generated { dir: PathBuf, partners: Vec<PartnerId> },
    /// No TLS (`insecure = true`).
    Insecure,
}

impl Config {
    /// Reads `path` (or the defaults when `None`), applies `env` overrides and checks the
    /// result, reporting every problem at once.
    pub fn load(path: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, Error> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| Error::Config(vec![format!("cannot read {}: {e}", p.display())]))?,
            None => String::new(),
        };
        let origin = path.map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
        Self::parse(&text, &origin, env)
    }

    /// Parses TOML `text` (named `origin` in messages), applies `env` and checks.
    pub fn parse(text: &str, origin: &str, env: &HashMap<String, String>) -> Result<Self, Error> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| Error::Config(vec![format!("{origin}: {}", e.to_string().trim_end())]))?;
        let mut problems = Vec::new();
        if let Some(dir) = env.get(ENV_DATA_DIR) {
            config.data_dir = PathBuf::from(dir);
        }
        if let Some(listen) = env.get(ENV_LISTEN) {
            config.grpc.listen = listen.clone();
        }
        if let Some(kafka) = &mut config.kafka {
            kafka.apply_env(env);
        }
        if let Some(flag) = env.get(ENV_INSECURE) {
            match flag.as_str() {
                "true" | "1" => config.grpc.insecure = true,
                "false" | "0" | "" => config.grpc.insecure = false,
                other => problems.push(format!("{ENV_INSECURE}: expected true or false, got {other:?}")),
            }
        }
        config.check(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Error::Config(problems.into_iter().map(|p| format!("{origin}: {p}")).collect()))
        }
    }

    fn check(&self, problems: &mut Vec<String>) {
        if self.grpc.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!("grpc.listen: {:?} is not an address like 127.0.0.1:7443", self.grpc.listen));
        }
        if self.grpc.max_event_bytes == 0 {
            problems.push("grpc.max_event_bytes: must be greater than 0".to_owned());
        }
        if self.grpc.stream_in_flight == 0 {
            problems.push("grpc.stream_in_flight: must be greater than 0".to_owned());
        }
        if self.journal.cache_mib == 0 {
            problems.push("journal.cache_mib: must be greater than 0".to_owned());
        }
        if self.journal.max_batch == 0 {
            problems.push("journal.max_batch: must be greater than 0".to_owned());
        }
        if self.data_dir.as_os_str().is_empty() {
            problems.push("data_dir: must not be empty".to_owned());
        }
        let tls = &self.tls;
        let set = [
            ("tls.client_ca", &tls.client_ca),
            ("tls.server_cert", &tls.server_cert),
            ("tls.server_key", &tls.server_key),
        ];
        let given = set.iter().filter(|(_, v)| v.is_some()).count();
        if given != 0 && given != set.len() {
            for (name, _) in set.iter().filter(|(_, v)| v.is_none()) {
                problems.push(format!("{name}: must be set together with the other tls files"));
            }
        }
        for (name, path) in set.iter().filter_map(|(n, v)| v.as_ref().map(|p| (n, p))) {
            if !path.is_file() {
                problems.push(format!("{name}: {} is not a readable file", path.display()));
            }
        }
        if given == set.len() && !tls.dev_partners.is_empty() {
            problems.push(
                "tls.dev_partners: only applies to generated certificates; remove it or the tls files".to_owned(),
            );
        }
        for p in &tls.dev_partners {
            if let Err(e) = p.parse::<PartnerId>() {
                problems.push(format!("tls.dev_partners: {e}"));
            }
        }
        for p in &self.export.partners {
            if let Err(e) = p.parse::<PartnerId>() {
                problems.push(format!("export.partners: {e}"));
            }
        }
        if self.metrics.enabled && self.metrics.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!("metrics.listen: {:?} is not an address like 127.0.0.1:9464", self.metrics.listen));
        }
        for p in &self.quality.readers {
            if let Err(e) = p.parse::<PartnerId>() {
                problems.push(format!("quality.readers: {e}"));
            }
        }
        if let Some(dir) = &self.quality.rules_dir {
            if !dir.is_dir() {
                problems.push(format!("quality.rules_dir: {} is not a directory", dir.display()));
            }
        }
        if let Some(kafka) = &self.kafka {
            problems.extend(kafka.problems());
        }
        if let Some(dir) = &self.schemas.dir {
            if !dir.is_dir() {
                problems.push(format!("schemas.dir: {} is not a directory", dir.display()));
            }
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.grpc.listen.parse().expect("checked when the config was loaded")
    }

    /// Where TLS material comes from.
    pub fn tls_source(&self) -> TlsSource {
        if self.grpc.insecure {
            return TlsSource::Insecure;
        }
        match (&self.tls.client_ca, &self.tls.server_cert, &self.tls.server_key) {
            (Some(ca), Some(cert), Some(key)) => {
                TlsSource::Files { client_ca: ca.clone(), server_cert: cert.clone(), server_key: key.clone() }
            }
            _ => {
                let names: Vec<&str> = if self.tls.dev_partners.is_empty() {
                    CHAIN_PARTNERS.to_vec()
                } else {
                    self.tls.dev_partners.iter().map(String::as_str).collect()
                };
                TlsSource::Generated {
                    dir: self.data_dir.join("certs"),
                    partners: names.iter().filter_map(|n| n.parse().ok()).collect(),
                }
            }
        }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    /// The access store (policy indexes and the denial log) beside the journal.
    pub fn access_dir(&self) -> PathBuf {
        self.data_dir.join("access")
    }

    /// The partner grants in force: the configured ones, or the built-in policy.
    pub fn partner_policies(&self) -> Result<BTreeMap<String, PartnerConfig>, Error> {
        if let Some(partners) = &self.partners {
            return Ok(partners.clone());
        }
        #[derive(Deserialize)]
        struct Shipped {
            partners: BTreeMap<String, PartnerConfig>,
        }
        let shipped: Shipped = toml::from_str(SHIPPED)
            .map_err(|e| Error::Config(vec![format!("built-in partner policy: {}", e.to_string().trim_end())]))?;
        Ok(shipped.partners)
    }

    /// The quality figures' own store.
    pub fn quality_dir(&self) -> PathBuf {
        self.data_dir.join("quality")
    }

    /// The metrics listener's address, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        if self.metrics.enabled {
            self.metrics.listen.parse().ok()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> HashMap<String, String> {
        HashMap::new()
    }

    #[test]
    fn quality_and_metrics_keys_are_checked_together() {
        let c = Config::parse("", "t", &no_env()).unwrap();
        assert_eq!(c.quality.readers, ["quality"]);
        assert_eq!(c.metrics_addr(), Some("127.0.0.1:9464".parse().unwrap()));
        let off = Config::parse("[metrics]\nenabled = false\nlisten = \"nowhere\"\n", "t", &no_env()).unwrap();
        assert_eq!(off.metrics_addr(), None);
        let text =
            "[metrics]\nlisten = \"nowhere\"\n[quality]\nreaders = [\"Not A Partner\"]\nrules_dir = \"/no/such/dir\"\n";
        let Err(Error::Config(problems)) = Config::parse(text, "t", &no_env()) else { panic!("accepted") };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("metrics.listen") && problems[1].contains("quality.readers"));
        assert!(problems[2].contains("quality.rules_dir"));
    }

    #[test]
    fn defaults_are_the_embedded_secure_gateway() {
        let c = Config::parse("", "t", &no_env()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(!c.grpc.insecure);
        assert!(matches!(c.tls_source(), TlsSource::Generated { .. }));
    }

    #[test]
    fn shipped_config_parses() {
        let text = include_str!("../../../config/loket.toml");
        let c = Config::parse(text, "config/loket.toml", &no_env()).unwrap();
        assert!(!c.grpc.insecure);
    }

    #[test]
    fn the_built_in_policy_is_the_shipped_one() {
        let shipped = Config::parse(SHIPPED, "config/loket.toml", &no_env()).unwrap();
        let default = Config::parse("", "t", &no_env()).unwrap();
        assert!(default.partners.is_none());
        assert_eq!(default.partner_policies().unwrap(), shipped.partner_policies().unwrap());
        assert_eq!(default.access, shipped.access);
        let partners = default.partner_policies().unwrap();
        let names: Vec<&str> = partners.keys().map(String::as_str).collect();
        let mut chain = CHAIN_PARTNERS.to_vec();
        chain.sort();
        assert_eq!(names, chain);
        assert!(partners["quality"].publish.is_empty(), "the quality team publishes nothing");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[grpc]\nlisten = \"127.0.0.1:1\"\nlsten = 3\n", "x.toml", &no_env()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("lsten"), "{text}");
        assert!(text.contains("x.toml"), "{text}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = "[grpc]\nlisten = \"nowhere\"\nmax_event_bytes = 0\n[journal]\nmax_batch = 0\n[tls]\nserver_cert = \"/nonexistent.pem\"\n";
        let Error::Config(problems) = Config::parse(text, "x.toml", &no_env()).unwrap_err() else {
            panic!("expected a config error")
        };
        let all = problems.join("\n");
        for needle in [
            "grpc.listen",
            "grpc.max_event_bytes",
            "journal.max_batch",
            "tls.client_ca",
            "tls.server_key",
            "tls.server_cert: /nonexistent.pem",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn exporters_default_to_quality_and_are_checked() {
        let c = Config::parse("", "t", &no_env()).unwrap();
        assert_eq!(c.export.partners, vec!["quality".to_owned()]);
        let err = Config::parse("[export]\npartners = [\"Quality\"]\n", "x.toml", &no_env()).unwrap_err();
        assert!(err.to_string().contains("export.partners"), "{err}");
    }

    #[test]
    fn kafka_section_defaults_and_problems() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("record.key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        let text =
            format!("[kafka]\nbrokers = \"127.0.0.1:9092\"\nrecord_key_file = {:?}\n", key.display().to_string());
        let c = Config::parse(&text, "t", &no_env()).unwrap();
        let k = c.kafka.as_ref().unwrap();
        assert_eq!((k.topic_prefix.as_str(), k.partitions, k.replication, k.ack), ("loket.", 3, 1, AckMode::Journal));
        let text = "[kafka]\nbrokers = \"nohost\"\npartitions = 0\nack = \"kafka\"\ntopic_prefix = \"a b\"\n";
        let Error::Config(problems) = Config::parse(text, "x.toml", &no_env()).unwrap_err() else {
            panic!("expected a config error")
        };
        let all = problems.join("\n");
        for needle in ["kafka.brokers", "kafka.partitions", "kafka.topic_prefix", "kafka.record_key_file"] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        let err = Config::parse("[kafka]\nbrokers = \"a:1\"\nack = \"never\"\n", "x.toml", &no_env()).unwrap_err();
        assert!(err.to_string().contains("never"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env: HashMap<String, String> = [
            (ENV_DATA_DIR.to_owned(), "/tmp/elsewhere".to_owned()),
            (ENV_LISTEN.to_owned(), "127.0.0.1:9999".to_owned()),
            (ENV_INSECURE.to_owned(), "true".to_owned()),
        ]
        .into();
        let c = Config::parse("data_dir = \"x\"\n", "t", &env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/elsewhere"));
        assert_eq!(c.listen_addr().port(), 9999);
        assert_eq!(c.tls_source(), TlsSource::Insecure);
        let bad: HashMap<String, String> = [(ENV_INSECURE.to_owned(), "yes".to_owned())].into();
        assert!(Config::parse("", "t", &bad).unwrap_err().to_string().contains(ENV_INSECURE));
    }
}
