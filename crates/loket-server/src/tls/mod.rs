//! TLS: the server's material (configured files, or development certificates generated into
//! the data directory on first start), the development PKI (`certs.rs`) and the partner
//! client (`client.rs`).
//!
//! The server's TLS is rustls configured here rather than through tonic's `tls_config`,
//! because tonic cannot check client certificates against revocation lists: the client
//! verifier is webpki's with the `[tls] crl` lists, so a revoked certificate fails the
//! handshake. Handshakes run in their own tasks (a slow or hostile client holds up no
//! other, within `[grpc] handshake_timeout_secs` and the connection limits of
//! `limits/connections.rs`), where what the client certificate presents (its CN or OIN)
//! is also read, once per connection: tonic hands it to every request on the connection
//! (`limits::connections::Peer`), for `Access::caller` and the admission's fair shares.

pub mod certs;
pub mod client;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::access::{presented_by, IdentityMode};
use crate::config::{Config, TlsSource};
use crate::limits::connections::{self, ConnectionGate, Limited, Peer};
use crate::Error;

/// The server's rustls configuration, `None` on an insecure gateway.
pub(crate) fn server_tls(config: &Config) -> Result<Option<Arc<ServerConfig>>, Error> {
    let crls = &config.tls.crl;
    match config.tls_source() {
        TlsSource::Insecure => {
            tracing::warn!("serving plain TCP without TLS (insecure = true): callers are not authenticated");
            Ok(None)
        }
        TlsSource::Files { client_ca, server_cert, server_key } => {
            load(&client_ca, &server_cert, &server_key, crls).map(Some)
        }
        TlsSource::Generated { dir, partners } => {
            if certs::exists(&dir) {
                tracing::info!(dir = %dir.display(), "using the development certificates generated earlier");
            } else {
                certs::init(&dir, &partners, false)?;
                let names: Vec<&str> = partners.iter().map(|p| p.as_str()).collect();
                tracing::info!(
                    dir = %dir.display(),
                    partners = %names.join(","),
                    "no [tls] files configured: generated a development CA, a server certificate for localhost \
                     and one client certificate per partner; clients connect with --certs {}",
                    dir.display()
                );
            }
            load(&dir.join(certs::CA_CERT), &dir.join(certs::SERVER_CERT), &dir.join(certs::SERVER_KEY), crls).map(Some)
        }
    }
}

fn pem_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{}: cannot read {what}: {e}", path.display()))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "PEM certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "PEM certificates", e))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{} holds no PEM CERTIFICATE", path.display())));
    }
    Ok(certs)
}

/// The revocation lists of one file: PEM (`X509 CRL` blocks) or a single DER list.
fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    if !bytes.starts_with(b"-----") {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let lists = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "a PEM X509 CRL", e))?;
    if lists.is_empty() {
        return Err(Error::Tls(format!("{} holds no X509 CRL", path.display())));
    }
    Ok(lists)
}

fn load(client_ca: &Path, server_cert: &Path, server_key: &Path, crls: &[PathBuf]) -> Result<Arc<ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certificates(client_ca)? {
        roots.add(ca).map_err(|e| pem_error(client_ca, "a CA certificate", e))?;
    }
    let mut lists = Vec::new();
    for path in crls {
        lists.extend(revocation_lists(path)?);
    }
    // With lists, a certificate whose issuer has none is refused too (webpki's default):
    // a CA named in client_ca without a list would otherwise slip past revocation.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(lists)
        .build()
        .map_err(|e| Error::Tls(format!("client certificate verifier: {e}")))?;
    let key = PrivateKeyDer::from_pem_file(server_key).map_err(|e| pem_error(server_key, "a PEM PRIVATE KEY", e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(server_cert)?, key)
        .map_err(|e| Error::Tls(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The connections of `listener` under `gate` after a successful handshake within
/// `timeout`, each with what its certificate presents under `identity`. A refused
/// handshake (an unknown CA, a revoked or expired certificate) is logged with the peer's
/// address and the reason, and the connection closed.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    identity: IdentityMode,
    gate: ConnectionGate,
    timeout: Duration,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<Limited<TlsStream<TcpStream>>, std::io::Error>> {
    let acceptor = TlsAcceptor::from(tls);
    connections::incoming(listener, gate, timeout, shutdown, move |stream| {
        let accepted = acceptor.clone().accept(stream);
        async move {
            let stream = accepted.await?;
            let presented = presented_by(identity, stream.get_ref().1.peer_certificates().and_then(<[_]>::first));
            Ok((stream, Peer::certified(presented)))
        }
    })
}
