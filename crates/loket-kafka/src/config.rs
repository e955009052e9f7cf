//! The `[kafka]` section of the gateway configuration, as written in TOML.
//!
//! Secrets are never in the file: the SASL password comes from `sasl_password_file` or
//! from the environment variable [`ENV_SASL_PASSWORD`] (passed in by the caller, like the
//! gateway's other overrides), and the record key from `record_key_file`. Files are checked
//! when the configuration is read ([`KafkaConfig::problems`]) and read when the gateway
//! starts ([`KafkaConfig::settings`], [`KafkaConfig::record_key`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loket_domain::PartnerId;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;
use serde::{Deserialize, Deserializer};

use crate::auth::RecordKey;
use crate::client::{Sasl, SaslMechanism, Secret, Security, SecurityProtocol};
use crate::{Error, KafkaSettings, Topics};

/// Environment variable with the SASL password; it takes precedence over
/// `sasl_password_file`.
pub const ENV_SASL_PASSWORD: &str = "LOKET_KAFKA_SASL_PASSWORD";

/// librdkafka properties loket sets itself, from its own keys or because the relay and the
/// subscriptions rely on them; `[kafka.properties]` may not set them. Secrets are among
/// them: they never go into the configuration file.
const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.brokers"),
    ("metadata.broker.list", "kafka.brokers"),
    ("security.protocol", "kafka.security_protocol"),
    ("ssl.ca.location", "kafka.ca"),
    ("ssl.ca.pem", "kafka.ca"),
    ("ssl.certificate.location", "kafka.certificate"),
    ("ssl.certificate.pem", "kafka.certificate"),
    ("ssl.key.location", "kafka.key"),
    ("ssl.key.pem", "kafka.key"),
    ("ssl.key.password", "an unencrypted kafka.key (secrets are never in the configuration file)"),
    ("sasl.mechanisms", "kafka.sasl_mechanism"),
    ("sasl.mechanism", "kafka.sasl_mechanism"),
    ("sasl.username", "kafka.sasl_username"),
    ("sasl.password", "kafka.sasl_password_file (secrets are never in the configuration file)"),
    ("group.id", "loket (one consumer group per partner and subscription)"),
    ("enable.auto.commit", "loket (offsets are committed on Ack)"),
    ("enable.auto.offset.store", "loket (offsets are committed on Ack)"),
    ("auto.offset.reset", "the subscription's start (earliest or latest)"),
    ("enable.idempotence", "the relay (an idempotent producer keeps the journal's order)"),
    ("acks", "the relay (acks=all)"),
    ("request.required.acks", "the relay (acks=all)"),
    ("message.timeout.ms", "the relay (records never time out: the journal is the outbox)"),
    ("delivery.timeout.ms", "the relay (records never time out: the journal is the outbox)"),
];

/// When a publish is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// After the event is flushed to the local journal.
    #[default]
    Journal,
    /// After the relay has the broker's delivery report for the event's records.
    Kafka,
}

/// A `[kafka.properties]` value: TOML strings, integers, floats and booleans are all
/// passed to librdkafka as text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PropertyValue {
    /// A string, as it is.
    Text(String),
    /// An integer, in decimal.
    Integer(i64),
    /// A floating-point number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyValue::Text(s) => f.write_str(s),
            PropertyValue::Integer(n) => write!(f, "{n}"),
            PropertyValue::Float(x) => write!(f, "{x}"),
            PropertyValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A duration written as a number and a unit: `"500ms"`, `"90s"`, `"10m"`, `"2h"`; `"0s"`
/// turns deduplication off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(pub Duration);

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text).map(Window).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a duration like \"500ms\", \"90s\", \"10m\" or \"2h\""))
        })
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }?;
    Some(Duration::from_millis(millis))
}

/// `[kafka]`: fan-out over Kafka. Absent from the configuration: no Kafka (the embedded
/// default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, "host:port[,host:port…]".
    pub brokers: String,
    /// Prepended to every topic and consumer group name: topics are
    /// `<prefix>events.<type>` and `<prefix>delivery.<partner>`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Partitions of the topics loket creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topics loket creates.
    #[serde(default = "default_replication")]
    pub replication: i32,
    /// "journal" (ack after the local flush) or "kafka" (ack after the broker confirmed).
    #[serde(default)]
    pub ack: AckMode,
    /// With `ack = "kafka"`: how long a publish waits for the broker before it fails with
    /// UNAVAILABLE (the event stays stored and is relayed later; publishing it again
    /// waits again).
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// "plaintext" (default), "ssl", "sasl_plaintext" or "sasl_ssl": how every client of
    /// this gateway (relay, topic admin, subscriptions) talks to the brokers.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// With TLS: PEM file of the CA that signs the brokers' certificates (default: the
    /// system's trust store).
    pub ca: Option<PathBuf>,
    /// With TLS: PEM certificate the gateway authenticates with (together with `key`).
    pub certificate: Option<PathBuf>,
    /// With TLS: the PEM private key of `certificate`, unencrypted (protect the file).
    pub key: Option<PathBuf>,
    /// With SASL: "SCRAM-SHA-512", "SCRAM-SHA-256" or "PLAIN" (PLAIN only with
    /// `security_protocol = "sasl_ssl"`).
    pub sasl_mechanism: Option<SaslMechanism>,
    /// With SASL: the gateway's user name.
    pub sasl_username: Option<String>,
    /// With SASL: a file holding the password (trailing newline ignored); the environment
    /// variable LOKET_KAFKA_SASL_PASSWORD takes precedence. Never the password itself.
    pub sasl_password_file: Option<PathBuf>,
    /// Further librdkafka properties, passed as they are (e.g. `"client.id" = "gw-1"`);
    /// the ones loket sets from its own keys are refused, as is any librdkafka refuses.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
    /// The partner whose view the canonical topics `<prefix>events.<type>` carry: exactly
    /// what that partner may see (redacted, consent-gated events only when covered).
    /// Unset: no canonical topics at all, only the partners' delivery topics.
    pub canonical_view: Option<String>,
    /// Required. A file with the key (at least 32 bytes; trailing whitespace ignored) the
    /// gateways of a cluster share to tag every record they produce; Kafka-mode
    /// subscriptions deliver only records whose tag verifies with it.
    ///
    /// Why required rather than generated when unset: Kafka mode exists for several
    /// gateways sharing one cluster, and any gateway may serve any partner's named
    /// subscription. A key generated per gateway would make each gateway refuse every
    /// record the others produced, so every partner would silently miss the events
    /// published elsewhere; a missing key must stop the gateway at start instead.
    pub record_key_file: Option<PathBuf>,
    /// How far apart (in the gateways' receive times) two records with the same
    /// `ce_source` and `ce_id` may be for a Kafka-mode subscription to drop the second
    /// (a partner that published again through another gateway). "0s" drops nothing.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: Window,
    /// The SASL password from the environment ([`ENV_SASL_PASSWORD`]), set by
    /// [`KafkaConfig::apply_env`]; never read from the file.
    #[serde(skip)]
    pub sasl_password_env: Option<Secret>,
}

fn default_topic_prefix() -> String {
    "loket.".to_owned()
}
fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    1
}
fn default_ack_timeout_ms() -> u64 {
    30_000
}
fn default_dedup_window() -> Window {
    Window(Duration::from_secs(600))
}

/// The longest dedup window: memory is bounded by a count as well, but a day of ids is
/// already more than that count holds on a busy topic.
const MAX_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl KafkaConfig {
    /// Takes what the environment overrides ([`ENV_SASL_PASSWORD`]).
    pub fn apply_env(&mut self, env: &HashMap<String, String>) {
        if let Some(password) = env.get(ENV_SASL_PASSWORD) {
            self.sasl_password_env = Some(Secret::new(password.clone()));
        }
    }

    /// Every problem of this section, named by key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self
            .brokers
            .split(',')
            .any(|b| b.trim().rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()))
        {
            problems.push(format!("kafka.brokers: {:?} is not a list like host:9092,host2:9092", self.brokers));
        }
        // Kafka topic names: letters, digits, '.', '_', '-'.
        if !self.topic_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            problems.push(format!(
                "kafka.topic_prefix: {:?} may only hold letters, digits, '.', '_' and '-'",
                self.topic_prefix
            ));
        }
        if self.partitions < 1 {
            problems.push("kafka.partitions: must be at least 1".to_owned());
        }
        if self.replication < 1 {
            problems.push("kafka.replication: must be at least 1".to_owned());
        }
        if self.ack_timeout_ms == 0 {
            problems.push("kafka.ack_timeout_ms: must be greater than 0".to_owned());
        }
        self.tls_problems(&mut problems);
        self.sasl_problems(&mut problems);
        self.property_problems(&mut problems);
        if let Some(view) = &self.canonical_view {
            if let Err(e) = view.parse::<PartnerId>() {
                problems.push(format!("kafka.canonical_view: {e}"));
            }
        }
        match &self.record_key_file {
            None => problems.push(
                "kafka.record_key_file: required: a file with the key the gateways share to tag their records \
                 (make one with `head -c 48 /dev/urandom | base64 > record.key`)"
                    .to_owned(),
            ),
            Some(path) => {
                if let Err(e) = read_record_key(path) {
                    problems.push(format!("kafka.record_key_file: {e}"));
                }
            }
        }
        if self.dedup_window.0 > MAX_DEDUP_WINDOW {
            problems.push("kafka.dedup_window: must be at most 24h".to_owned());
        }
        problems
    }

    fn tls_problems(&self, problems: &mut Vec<String>) {
        let files = [("kafka.ca", &self.ca), ("kafka.certificate", &self.certificate), ("kafka.key", &self.key)];
        for (name, path) in files {
            let Some(path) = path else { continue };
            if !self.security_protocol.tls() {
                problems.push(format!(
                    "{name}: only used with security_protocol \"ssl\" or \"sasl_ssl\", not {:?}",
                    self.security_protocol.as_str()
                ));
            } else if let Err(e) = pem_file(path) {
                problems.push(format!("{name}: {e}"));
            }
        }
        if self.certificate.is_some() != self.key.is_some() {
            problems.push("kafka.certificate, kafka.key: set both or neither".to_owned());
        }
    }

    fn sasl_problems(&self, problems: &mut Vec<String>) {
        if !self.security_protocol.sasl() {
            for (name, set) in [
                ("kafka.sasl_mechanism", self.sasl_mechanism.is_some()),
                ("kafka.sasl_username", self.sasl_username.is_some()),
                ("kafka.sasl_password_file", self.sasl_password_file.is_some()),
            ] {
                if set {
                    problems.push(format!(
                        "{name}: only used with security_protocol \"sasl_plaintext\" or \"sasl_ssl\", not {:?}",
                        self.security_protocol.as_str()
                    ));
                }
            }
            return;
        }
        match self.sasl_mechanism {
            None => problems.push(format!(
                "kafka.sasl_mechanism: required with security_protocol {:?}: \"SCRAM-SHA-512\", \"SCRAM-SHA-256\" \
                 or \"PLAIN\"",
                self.security_protocol.as_str()
            )),
            Some(SaslMechanism::Plain) if !self.security_protocol.tls() => problems.push(
                "kafka.sasl_mechanism: PLAIN sends the password as it is; use it only with security_protocol \
                 \"sasl_ssl\""
                    .to_owned(),
            ),
            Some(_) => {}
        }
        if self.sasl_username.as_deref().is_none_or(str::is_empty) {
            problems.push("kafka.sasl_username: required with SASL".to_owned());
        }
        if self.sasl_password_env.is_none() {
            match &self.sasl_password_file {
                None => problems.push(format!(
                    "kafka.sasl_password_file: required with SASL (or the password in {ENV_SASL_PASSWORD})"
                )),
                Some(path) => {
                    if let Err(e) = read_password(path) {
                        problems.push(format!("kafka.sasl_password_file: {e}"));
                    }
                }
            }
        }
    }

    /// Each property on its own against librdkafka, so every refusal is reported.
    fn property_problems(&self, problems: &mut Vec<String>) {
        for (key, value) in &self.properties {
            if let Some((_, owner)) = RESERVED_PROPERTIES.iter().find(|(reserved, _)| reserved == key) {
                problems.push(format!("kafka.properties.{key}: set by {owner}, not here"));
                continue;
            }
            let value = value.to_string();
            match ClientConfig::new().set(key, &value).create_native_config() {
                Ok(_) => {}
                Err(KafkaError::ClientConfig(_, description, _, _)) => {
                    problems.push(format!("kafka.properties.{key}: librdkafka refuses {value:?}: {description}"));
                }
                Err(other) => problems.push(format!("kafka.properties.{key}: {other}")),
            }
        }
    }

    /// The client settings this section describes; reads the SASL password.
    pub fn settings(&self) -> Result<KafkaSettings, Error> {
        let sasl = match (self.security_protocol.sasl(), self.sasl_mechanism) {
            (true, Some(mechanism)) => {
                let password = match (&self.sasl_password_env, &self.sasl_password_file) {
                    (Some(password), _) => password.clone(),
                    (None, Some(path)) => {
                        read_password(path).map_err(|e| Error::Config(format!("kafka.sasl_password_file: {e}")))?
                    }
                    (None, None) => {
                        return Err(Error::Config(format!(
                            "kafka.sasl_password_file: required with SASL (or the password in {ENV_SASL_PASSWORD})"
                        )))
                    }
                };
                Some(Sasl { mechanism, username: self.sasl_username.clone().unwrap_or_default(), password })
            }
            _ => None,
        };
        Ok(KafkaSettings {
            brokers: self.brokers.clone(),
            topics: Topics { prefix: self.topic_prefix.clone() },
            partitions: self.partitions,
            replication: self.replication,
            security: Security {
                protocol: self.security_protocol,
                ca: self.ca.clone(),
                certificate: self.certificate.clone(),
                key: self.key.clone(),
                sasl,
                properties: self.properties.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
            },
        })
    }

    /// Reads the record key (`record_key_file`).
    pub fn record_key(&self) -> Result<RecordKey, Error> {
        let path = self
            .record_key_file
            .as_deref()
            .ok_or_else(|| Error::Config("kafka.record_key_file: required".to_owned()))?;
        read_record_key(path).map_err(|e| Error::Config(format!("kafka.record_key_file: {e}")))
    }
}

fn read_record_key(path: &Path) -> Result<RecordKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    RecordKey::from_file_contents(&bytes).map_err(|e| format!("{} {e}", path.display()))
}

fn read_password(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(password))
}

/// A readable file with at least one PEM block.
fn pem_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !text.contains("-----BEGIN ") {
        return Err(format!("{} is not a PEM file", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> KafkaConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// A directory with a record key, a password file, and PEM files.
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("record.key"), "k".repeat(40) + "\n").unwrap();
        std::fs::write(dir.path().join("password"), "s3cret\n").unwrap();
        for name in ["ca.pem", "gw.pem", "gw.key"] {
            std::fs::write(dir.path().join(name), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap();
        }
        dir
    }

    fn base(dir: &Path) -> String {
        format!("brokers = \"k:9093\"\nrecord_key_file = {:?}\n", dir.join("record.key"))
    }

    #[test]
    fn a_minimal_section_needs_only_brokers_and_the_record_key() {
        let dir = files();
        let config = parse(&base(dir.path()));
        assert_eq!(config.problems(), Vec::<String>::new());
        assert_eq!(config.dedup_window, Window(Duration::from_secs(600)));
        assert_eq!(config.canonical_view, None);
        assert_eq!(config.settings().unwrap().security, Security::default());
        config.record_key().unwrap();

        let problems = parse("brokers = \"k:9093\"\n").problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("kafka.record_key_file: required"), "{problems:?}");
    }

    #[test]
    fn sasl_ssl_with_scram_reads_the_password_from_a_file_or_the_environment() {
        let dir = files();
        let d = dir.path();
        let text = format!(
            "{}security_protocol = \"sasl_ssl\"\nca = {:?}\ncertificate = {:?}\nkey = {:?}\n\
             sasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"gateway-1\"\nsasl_password_file = {:?}\n\
             dedup_window = \"90s\"\ncanonical_view = \"quality\"\n[properties]\n\"client.id\" = \"gw-1\"\n\
             \"socket.keepalive.enable\" = true\n\"linger.ms\" = 20\n",
            base(d),
            d.join("ca.pem"),
            d.join("gw.pem"),
            d.join("gw.key"),
            d.join("password")
        );
        let mut config = parse(&text);
        assert_eq!(config.problems(), Vec::<String>::new());
        let settings = config.settings().unwrap();
        let sasl = settings.security.sasl.as_ref().unwrap();
        assert_eq!(
            (sasl.mechanism, sasl.username.as_str(), sasl.password.expose()),
            (SaslMechanism::ScramSha512, "gateway-1", "s3cret")
        );
        let client = settings.client_config();
        assert_eq!(client.get("linger.ms"), Some("20"));
        assert_eq!(client.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(config.dedup_window, Window(Duration::from_secs(90)));

        config.apply_env(&[(ENV_SASL_PASSWORD.to_owned(), "from-env".to_owned())].into());
        config.sasl_password_file = None;
        assert_eq!(config.problems(), Vec::<String>::new());
        assert_eq!(config.settings().unwrap().security.sasl.unwrap().password.expose(), "from-env");
    }

    #[test]
    fn every_security_problem_is_named_by_key() {
        let dir = files();
        let d = dir.path();
        let text = format!(
            "{}security_protocol = \"sasl_plaintext\"\nca = {:?}\nkey = {:?}\nsasl_mechanism = \"PLAIN\"\n\
             canonical_view = \"Not A Partner\"\n[properties]\n\"sasl.password\" = \"x\"\n\"no.such.property\" = 1\n\
             \"linger.ms\" = \"soon\"\n",
            base(d),
            d.join("ca.pem"),
            d.join("password")
        );
        let problems = parse(&text).problems();
        let all = problems.join("\n");
        for needle in [
            "kafka.ca: only used with security_protocol \"ssl\" or \"sasl_ssl\"",
            "kafka.key: only used with",
            "kafka.certificate, kafka.key: set both or neither",
            "kafka.sasl_mechanism: PLAIN sends the password as it is",
            "kafka.sasl_username: required with SASL",
            "kafka.sasl_password_file: required with SASL (or the password in LOKET_KAFKA_SASL_PASSWORD)",
            "kafka.properties.sasl.password: set by kafka.sasl_password_file",
            "kafka.properties.no.such.property: librdkafka refuses \"1\": No such configuration property",
            "kafka.properties.linger.ms: librdkafka refuses \"soon\"",
            "kafka.canonical_view:",
        ] {
            assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
        }
        assert_eq!(problems.len(), 10, "{all}");

        let tls = format!("{}security_protocol = \"ssl\"\nca = {:?}\n", base(d), d.join("password"));
        let problems = parse(&tls).problems();
        assert!(problems.len() == 1 && problems[0].contains("is not a PEM file"), "{problems:?}");
        let plain_sasl = format!("{}sasl_username = \"gw\"\n", base(d));
        assert!(parse(&plain_sasl).problems()[0].starts_with("kafka.sasl_username: only used with"));
    }

    #[test]
    fn dedup_windows_are_durations() {
        let dir = files();
        for (text, expected) in [("0s", 0), ("500ms", 500), ("10m", 600_000), ("2h", 7_200_000)] {
            let config = parse(&format!("{}dedup_window = {text:?}\n", base(dir.path())));
            assert_eq!(config.dedup_window.0, Duration::from_millis(expected), "{text}");
        }
        let err = toml::from_str::<KafkaConfig>(&format!("{}dedup_window = \"soon\"\n", base(dir.path())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dedup_window") && err.contains("not a duration"), "{err}");
        let long = parse(&format!("{}dedup_window = \"25h\"\n", base(dir.path())));
        assert_eq!(long.problems(), ["kafka.dedup_window: must be at most 24h"]);
    }
}
