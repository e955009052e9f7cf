//! How loket's Kafka clients reach the cluster: the one place a librdkafka configuration
//! is made ([`KafkaSettings::client_config`]), for the relay's producer, the admin client
//! that creates topics and the consumers of Kafka-mode subscriptions alike; and the client
//! context ([`Observed`]) that keeps the last error librdkafka reported, so a failure to
//! connect (a refused certificate, a failed login) can be named in the relay's status and
//! in errors instead of only in the log.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::KafkaSettings;

/// How clients talk to the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// Neither encrypted nor authenticated: a local broker only.
    #[default]
    Plaintext,
    /// TLS; the client authenticates with its certificate when one is given.
    Ssl,
    /// SASL authentication without encryption.
    SaslPlaintext,
    /// SASL authentication inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The value librdkafka expects.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the client logs in with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// The SASL mechanisms loket's librdkafka is built with (GSSAPI is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// User name and password as they are: only inside TLS.
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The value librdkafka expects.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A secret that never shows in debug output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one client setting that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A SASL login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sasl {
    /// How the client proves who it is.
    pub mechanism: SaslMechanism,
    /// The principal's user name.
    pub username: String,
    /// Read from a file or the environment, never from the configuration file.
    pub password: Secret,
}

/// Encryption, authentication and any further librdkafka settings of every client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// Plaintext, TLS, SASL or SASL inside TLS.
    pub protocol: SecurityProtocol,
    /// PEM file of the CA that signs the brokers' certificates; without it (and with TLS)
    /// the system's trust store.
    pub ca: Option<PathBuf>,
    /// PEM certificate the client authenticates with over TLS.
    pub certificate: Option<PathBuf>,
    /// The unencrypted PEM key of `certificate`.
    pub key: Option<PathBuf>,
    /// With a SASL protocol.
    pub sasl: Option<Sasl>,
    /// Passed to librdkafka as they are (`[kafka.properties]`).
    pub properties: BTreeMap<String, String>,
}

impl KafkaSettings {
    /// The librdkafka configuration of every loket client: bootstrap servers, security and
    /// the passed-through properties. Callers add what is theirs (a group id, idempotence).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        let security = &self.security;
        config.set("security.protocol", security.protocol.as_str());
        if security.protocol.tls() {
            match &security.ca {
                Some(ca) => config.set("ssl.ca.location", ca.display().to_string()),
                // The vendored OpenSSL knows no system paths; librdkafka looks for the
                // usual trust stores.
                None => config.set("ssl.ca.location", "probe"),
            };
            if let Some(certificate) = &security.certificate {
                config.set("ssl.certificate.location", certificate.display().to_string());
            }
            if let Some(key) = &security.key {
                config.set("ssl.key.location", key.display().to_string());
            }
        }
        if let Some(sasl) = security.sasl.as_ref().filter(|_| security.protocol.sasl()) {
            config.set("sasl.mechanisms", sasl.mechanism.as_str());
            config.set("sasl.username", &sasl.username);
            config.set("sasl.password", sasl.password.expose());
        }
        for (key, value) in &security.properties {
            config.set(key, value);
        }
        config
    }
}

/// A client context that logs what librdkafka reports and keeps the last error, which
/// names the broker and what failed (e.g. `ssl://host:9093/bootstrap: SSL handshake
/// failed: … certificate verify failed`).
#[derive(Clone, Default)]
pub struct Observed {
    last_error: Arc<Mutex<Option<String>>>,
}

impl Observed {
    /// A context that writes its errors into `slot`.
    pub fn into_slot(slot: Arc<Mutex<Option<String>>>) -> Self {
        Observed { last_error: slot }
    }

    /// The last error the client reported, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientContext for Observed {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        // "All brokers are down" follows the error that brought them down, which says more.
        let consequence = matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown));
        if !(consequence && last.is_some()) {
            *last = Some(format!("{reason} ({error})"));
        }
    }
}

/// Why a client of `settings` cannot work with the cluster, as librdkafka reports it while
/// it connects (within `wait`), or `None` when it reports nothing. For clients whose own
/// error events nobody reads: rdkafka's admin client never polls them.
pub(crate) fn diagnose(settings: &KafkaSettings, wait: Duration) -> Option<String> {
    let context = Observed::default();
    let probe: BaseProducer<Observed> = match settings.client_config().create_with_context(context.clone()) {
        Ok(probe) => probe,
        Err(e) => return Some(e.to_string()),
    };
    let deadline = Instant::now() + wait;
    // Asking for metadata makes it connect; what went wrong arrives as error events.
    if let Err(e) = probe.client().fetch_metadata(None, wait) {
        tracing::debug!(error = %e, "kafka metadata probe failed");
    }
    loop {
        probe.poll(Duration::from_millis(100));
        if let Some(error) = context.last_error() {
            return Some(error);
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

impl ConsumerContext for Observed {}

/// For [`diagnose`]'s probe, which produces nothing.
impl ProducerContext for Observed {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topics;

    fn settings(security: Security) -> KafkaSettings {
        KafkaSettings {
            brokers: "k1:9093".into(),
            topics: Topics { prefix: "loket.".into() },
            partitions: 1,
            replication: 1,
            security,
        }
    }

    #[test]
    fn the_client_configuration_carries_tls_sasl_and_properties() {
        let security = Security {
            protocol: SecurityProtocol::SaslSsl,
            ca: Some("/etc/ca.pem".into()),
            certificate: Some("/etc/c.pem".into()),
            key: Some("/etc/c.key".into()),
            sasl: Some(Sasl {
                mechanism: SaslMechanism::ScramSha512,
                username: "gateway".into(),
                password: Secret::new("s3cret"),
            }),
            properties: [("client.id".to_owned(), "gw-1".to_owned())].into(),
        };
        let config = settings(security.clone()).client_config();
        for (key, value) in [
            ("bootstrap.servers", "k1:9093"),
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", "/etc/ca.pem"),
            ("ssl.certificate.location", "/etc/c.pem"),
            ("ssl.key.location", "/etc/c.key"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "gateway"),
            ("sasl.password", "s3cret"),
            ("client.id", "gw-1"),
        ] {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
        assert!(!format!("{security:?}").contains("s3cret"), "the password never shows in debug output");
        // librdkafka accepts the whole configuration.
        config.create_native_config().unwrap();

        let plain = settings(Security::default()).client_config();
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
        assert_eq!(plain.get("ssl.ca.location"), None);
        let tls = settings(Security { protocol: SecurityProtocol::Ssl, ..Security::default() }).client_config();
        assert_eq!(tls.get("ssl.ca.location"), Some("probe"), "the system trust store without a ca");
    }
}
