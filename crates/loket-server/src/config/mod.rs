//! The gateway's configuration: one TOML file, every field documented, unknown keys refused.
//!
//! Environment overrides are passed in by the caller (the binary hands over the process
//! environment), so tests never depend on globals.

mod limits;
mod period;
mod retention;
mod sections;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use loket_access::{AccessConfig, PartnerConfig, Policy, Roles};
use loket_domain::PartnerId;
pub use loket_kafka::{AckMode, KafkaConfig};
use loket_schema::Registry;
use serde::Deserialize;

pub use limits::{LimitsConfig, PartnerLimitsConfig, PartnerQuotas};
pub use sections::{
    CloudEventsConfig, ExportConfig, GrpcConfig, IdentitySource, JournalSettings, LogConfig, LogFormat, MetricsConfig,
    ProcessingConfig, QualityConfig, SchemasConfig, TelemetryConfig, TlsConfig,
};

pub use period::Period;
pub use retention::RetentionConfig;

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
    /// How long events, rejections and denials are kept (absent: forever).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The envelope's names on every output (NL GOV profile for CloudEvents).
    #[serde(default)]
    pub cloudevents: CloudEventsConfig,
    /// Span export over OTLP (OpenTelemetry).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The format of the gateway's log lines.
    #[serde(default)]
    pub log: LogConfig,
    /// The processing log of personal data.
    #[serde(default)]
    pub processing: ProcessingConfig,
    /// Per-partner quotas and load shedding.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// The shipped configuration, whose `[partners]` are the built-in policy.
const SHIPPED: &str = include_str!("../../../../config/loket.toml");

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
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
            retention: RetentionConfig::default(),
            cloudevents: CloudEventsConfig::default(),
            telemetry: TelemetryConfig::default(),
            log: LogConfig::default(),
            processing: ProcessingConfig::default(),
            limits: LimitsConfig::default(),
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
        for (key, value) in [
            ("grpc.handshake_timeout_secs", self.grpc.handshake_timeout_secs),
            ("grpc.max_connections", self.grpc.max_connections as u64),
            ("grpc.max_connections_per_address", self.grpc.max_connections_per_address as u64),
            ("grpc.max_concurrent_streams", u64::from(self.grpc.max_concurrent_streams)),
            ("grpc.request_timeout_secs", self.grpc.request_timeout_secs),
            ("grpc.stream_idle_timeout_secs", self.grpc.stream_idle_timeout_secs),
            ("grpc.slow_subscriber_timeout_secs", self.grpc.slow_subscriber_timeout_secs),
            ("grpc.subscriber_buffer_bytes", self.grpc.subscriber_buffer_bytes as u64),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be greater than 0"));
            }
        }
        if self.journal.cache_mib == 0 {
            problems.push("journal.cache_mib: must be greater than 0".to_owned());
        }
        if self.journal.max_batch == 0 {
            problems.push("journal.max_batch: must be greater than 0".to_owned());
        }
        if self.journal.dedup_window.0.is_zero() {
            problems.push("journal.dedup_window: must be longer than 0s".to_owned());
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
        for (key, list) in [("export.auditors", &self.export.auditors), ("export.testers", &self.export.testers)] {
            for p in list {
                if let Err(e) = p.parse::<PartnerId>() {
                    problems.push(format!("{key}: {e}"));
                }
            }
        }
        for path in &tls.crl {
            if !path.is_file() {
                problems.push(format!("tls.crl: {} is not a readable file", path.display()));
            }
        }
        if self.grpc.insecure && tls.identity == IdentitySource::Oin {
            problems
                .push("tls.identity: \"oin\" reads client certificates, which an insecure gateway has not".to_owned());
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
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            let url = endpoint.parse::<tonic::transport::Uri>();
            let http =
                url.as_ref().is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
            if !http {
                problems.push(format!("telemetry.otlp_endpoint: {endpoint:?} is not a URL like http://127.0.0.1:4317"));
            }
        }
        let prefix = &self.cloudevents.type_prefix;
        let label =
            |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if prefix.split('.').count() < 2 || !prefix.split('.').all(label) {
            problems.push(format!(
                "cloudevents.type_prefix: {prefix:?} is not a reverse-DNS name like nl.vreemdelingenketen"
            ));
        }
        for (id, partner) in self.partners.iter().flatten() {
            let system_ok = |s: &String| {
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            };
            if partner.system.as_ref().is_some_and(|s| !system_ok(s)) {
                problems.push(format!("partners.{id}.system: use letters, digits, '.', '_' or '-'"));
            }
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

    /// How the gateway opens its journal (also the benchmark's journal arm).
    pub fn journal_config(&self) -> loket_journal::JournalConfig {
        loket_journal::JournalConfig {
            dir: self.journal_dir(),
            cache_capacity_bytes: self.journal.cache_mib * 1024 * 1024,
            max_batch: self.journal.max_batch,
            rejection_payload_bytes: self.journal.rejection_payload_bytes,
            dedup_window: Some(self.journal.dedup_window.0),
            recent_bytes: self.journal.recent_mib << 20,
        }
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

    /// The access policy in force, checked against the schemas of `registry`: the partner
    /// grants, `[access]`, and the roles `[export]` and `[quality]` grant.
    pub fn policy(&self, registry: &Registry) -> Result<Policy, Error> {
        let roles = Roles {
            exporters: self.export.auditors.clone(),
            quality_readers: self.quality.readers.clone(),
            testers: self.export.testers.clone(),
        };
        let retention = self.retention.problems(registry);
        if !retention.is_empty() {
            return Err(Error::Config(retention));
        }
        Policy::compile_with_roles(&self.access, &self.partner_policies()?, &roles, &|t: &str| {
            registry.schemas().filter(|s| s.event_type() == t).map(|s| s.document().clone()).collect()
        })
        .map_err(|problems| Error::Config(problems.into_iter().map(|p| format!("policy: {p}")).collect()))
        .and_then(|policy| match self.kafka.as_ref().and_then(|k| k.canonical_view.as_deref()) {
            Some(view) if !policy.is_partner(view) => {
                Err(Error::Config(vec![format!("kafka.canonical_view: {view:?} is not a partner in [partners]")]))
            }
            _ => Ok(policy),
        })
        .and_then(|policy| match self.limits.problems(|p| policy.is_partner(p)) {
            problems if problems.is_empty() => Ok(policy),
            problems => Err(Error::Config(problems)),
        })
    }

    /// How events are named on the outside: the type prefix and each partner's source
    /// URN (`[partners.<id>] oin` and `system`).
    pub fn profile(&self) -> Result<loket_domain::Profile, Error> {
        let partners = self.partner_policies()?;
        let sources = partners.iter().filter_map(|(id, p)| Some((id.as_str(), p.oin.as_deref()?, p.system.as_deref())));
        Ok(loket_domain::Profile::new(&self.cloudevents.type_prefix, sources))
    }

    /// The processing log's own store.
    pub fn processing_dir(&self) -> PathBuf {
        self.data_dir.join("processing")
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
mod tests;
