//! Kafka as a government cluster runs it: the gateway's relay, topic admin and Kafka-mode
//! subscriptions over TLS with a client certificate, and with a SASL/SCRAM login inside
//! TLS, against a real broker.
//!
//! Tansu 0.6 cannot serve TLS itself (its broker takes `--cert`/`--key` but never wraps
//! a connection: `broker.rs` builds its acceptor as `_acceptor` and serves the plain
//! stream), so a TLS-terminating hop written here (tokio-rustls) sits in front of it and
//! requires a client certificate from the test CA. Tansu advertises the hop's address, so
//! librdkafka never connects around the hop after its first metadata request. Tansu does
//! serve SASL (SCRAM-SHA-512 with `--authentication`), which the SCRAM test logs in to
//! through the hop.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{from_earliest, record_key_file, unique_prefix, Tansu};
use common::*;
use loket_kafka::{KafkaSettings, Security, SecurityProtocol, Topics};
use loket_server::certs;
use loket_server::proto::StatusRequest;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A development PKI (CA, a server certificate for localhost/127.0.0.1, a client
/// certificate for `gateway`), as `loket certs init` writes it.
fn make_pki(dir: &Path) -> PathBuf {
    certs::init(dir, &["gateway".parse().unwrap()], false).unwrap();
    dir.to_owned()
}

/// TLS in front of a plaintext broker: requires a client certificate signed by the CA of
/// `pki`, then forwards the bytes both ways.
struct TlsHop {
    addr: SocketAddr,
    /// Every handshake the hop refused, with rustls's reason.
    refused: Arc<Mutex<Vec<String>>>,
    /// Handshakes completed with a verified client certificate.
    accepted: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsHop {
    async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    fn start(listener: TcpListener, pki: &Path, upstream: u16) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(pki.join(certs::CA_CERT)).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.join(certs::SERVER_CERT)).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(pki.join(certs::SERVER_KEY)).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let addr = listener.local_addr().unwrap();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let accepted: Arc<Mutex<usize>> = Arc::default();
        let (refused_log, accepted_count) = (refused.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, refused, accepted) = (acceptor.clone(), refused_log.clone(), accepted_count.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            refused.lock().unwrap().push(e.to_string());
                            return;
                        }
                    };
                    *accepted.lock().unwrap() += 1;
                    let Ok(mut broker) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    // Either side hanging up ends the connection.
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                });
            }
        });
        TlsHop { addr, refused, accepted, task }
    }

    fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }

    fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }
}

impl Drop for TlsHop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Tansu behind a TLS hop: (hop, broker, its directory).
async fn broker_behind_tls(pki: &Path, authentication: bool) -> (TlsHop, Tansu, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let listener = TlsHop::bind().await;
    let hop_addr = listener.local_addr().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tansu = Tansu::start_behind(dir.path(), port, &hop_addr.to_string(), authentication);
    (TlsHop::start(listener, pki, port), tansu, dir)
}

/// The `[kafka]` section of a gateway that reaches the broker through the hop.
fn secure_toml(hop: &TlsHop, prefix: &str, ca: &Path, pki: &Path, extra: &str) -> String {
    format!(
        "[kafka]\nbrokers = \"{}\"\ntopic_prefix = {prefix:?}\npartitions = 1\nrecord_key_file = {:?}\n\
         security_protocol = \"ssl\"\nca = {:?}\ncertificate = {:?}\nkey = {:?}\n{extra}",
        hop.addr,
        record_key_file(),
        ca.display().to_string(),
        pki.join("gateway.pem").display().to_string(),
        pki.join("gateway.key").display().to_string(),
    )
}

/// Publishes a baggage event as dtv and reads it back as kmar through a Kafka-mode
/// subscription: relay, topic admin and consumer all through the hop.
async fn publish_and_receive(gw: &Gateway, id: &str) {
    let mut dtv = gw.client("dtv").await;
    publish(&mut dtv, event("dtv", "baggage", id, &example_for("baggage", "7000000001"))).await.unwrap();
    let mut kmar = gw.client("kmar").await;
    let mut stream = kmar.subscribe(from_earliest("secure", 1)).await.unwrap().into_inner();
    let delivery = tokio::time::timeout(Duration::from_secs(90), stream.message())
        .await
        .expect("a delivery through TLS within 90 s")
        .unwrap()
        .unwrap();
    assert_eq!(delivery.event.unwrap().id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_kafka_subscription_work_through_tls_with_client_certificates() {
    let temp = tempfile::tempdir().unwrap();
    let pki = make_pki(&temp.path().join("kafka-pki"));
    let (hop, _tansu, _broker_dir) = broker_behind_tls(&pki, false).await;
    let prefix = unique_prefix();
    let toml = secure_toml(&hop, &prefix, &pki.join(certs::CA_CERT), &pki, "");
    let gw = Gateway::start_in(&temp.path().join("gw"), &toml).await;
    publish_and_receive(&gw, "tls-1").await;
    assert!(hop.accepted() >= 2, "producer, admin and consumer connected through the hop");
    assert_eq!(hop.refused(), Vec::<String>::new(), "every gateway connection presented its certificate");

    // The hop does verify client certificates: a client without one is refused.
    let settings = KafkaSettings {
        brokers: hop.addr.to_string(),
        topics: Topics { prefix },
        partitions: 1,
        replication: 1,
        security: Security {
            protocol: SecurityProtocol::Ssl,
            ca: Some(pki.join(certs::CA_CERT)),
            ..Security::default()
        },
    };
    let anonymous: BaseConsumer = settings.client_config().create().unwrap();
    let metadata = tokio::task::spawn_blocking(move || anonymous.fetch_metadata(None, Duration::from_secs(5)));
    assert!(metadata.await.unwrap().is_err(), "no metadata without a client certificate");
    let refused = hop.refused();
    assert!(refused.iter().any(|r| r.to_lowercase().contains("certificate")), "{refused:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_naming_the_broker_and_the_tls_failure() {
    let temp = tempfile::tempdir().unwrap();
    let pki = make_pki(&temp.path().join("kafka-pki"));
    let other = make_pki(&temp.path().join("other-pki"));
    let (hop, _tansu, _broker_dir) = broker_behind_tls(&pki, false).await;
    let toml = secure_toml(&hop, &unique_prefix(), &other.join(certs::CA_CERT), &pki, "");
    let gw = Gateway::start_in(&temp.path().join("gw"), &toml).await;
    let mut client = gw.client("dtv").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let error = loop {
        let status = client.status(StatusRequest {}).await.unwrap().into_inner();
        let error = status.kafka.expect("kafka status").last_error;
        if error.contains("certificate verify failed") {
            break error;
        }
        assert!(Instant::now() < deadline, "no TLS failure reported after 60 s; last error: {error:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // librdkafka words it "ssl://<broker>/bootstrap: SSL handshake failed: … certificate
    // verify failed …" or "ssl://<broker>/bootstrap: error:0A000086:SSL routines::certificate
    // verify failed (after … in state SSL_HANDSHAKE)".
    assert!(error.contains(&format!("ssl://{}/", hop.addr)), "the broker is named: {error}");
    assert!(error.contains("SSL"), "{error}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_inside_tls_logs_in_and_a_wrong_password_is_named() {
    let temp = tempfile::tempdir().unwrap();
    let pki = make_pki(&temp.path().join("kafka-pki"));
    let (hop, mut tansu, _broker_dir) = broker_behind_tls(&pki, false).await;
    // Users are stored by the broker; it requires a login from its next start on.
    tansu.create_user("gateway-1", "correct horse");
    tansu.stop();
    tansu.authentication = true;
    tansu.restart();

    let password = temp.path().join("password");
    std::fs::write(&password, "correct horse\n").unwrap();
    let sasl = format!(
        "sasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"gateway-1\"\nsasl_password_file = {:?}\n",
        password.display().to_string()
    );
    let prefix = unique_prefix();
    let toml = secure_toml(&hop, &prefix, &pki.join(certs::CA_CERT), &pki, &sasl)
        .replace("security_protocol = \"ssl\"", "security_protocol = \"sasl_ssl\"");
    let gw = Gateway::start_in(&temp.path().join("gw"), &toml).await;
    publish_and_receive(&gw, "scram-1").await;
    gw.stop().await;

    // The same settings with another password: refused, and the error says by whom.
    std::fs::write(&password, "wrong horse\n").unwrap();
    let text = toml.split_once("[kafka]\n").unwrap().1;
    let config: loket_kafka::KafkaConfig = toml::from_str(text).unwrap();
    let settings = config.settings().unwrap();
    let names = [format!("{prefix}delivery.never")];
    let err = loket_kafka::topics::ensure_topics(&settings, &names).await.unwrap_err().to_string();
    assert!(err.contains(&hop.addr.to_string()) && err.contains("SASL authentication error"), "{err}");
}
