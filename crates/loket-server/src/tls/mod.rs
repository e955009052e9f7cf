//! TLS: the server's material (configured files, or development certificates generated into
//! the data directory on first start), the development PKI (`certs.rs`) and the partner
//! client (`client.rs`).

pub mod certs;
pub mod client;

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::{Config, TlsSource};
use crate::Error;

pub(crate) fn server_tls(config: &Config) -> Result<Option<ServerTlsConfig>, Error> {
    match config.tls_source() {
        TlsSource::Insecure => {
            tracing::warn!("serving plain TCP without TLS (insecure = true): callers are not authenticated");
            Ok(None)
        }
        TlsSource::Files { client_ca, server_cert, server_key } => {
            load(&client_ca, &server_cert, &server_key).map(Some)
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
            load(&dir.join(certs::CA_CERT), &dir.join(certs::SERVER_CERT), &dir.join(certs::SERVER_KEY)).map(Some)
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

fn load(client_ca: &Path, server_cert: &Path, server_key: &Path) -> Result<ServerTlsConfig, Error> {
    for (path, marker) in [(client_ca, "CERTIFICATE"), (server_cert, "CERTIFICATE"), (server_key, "PRIVATE KEY")] {
        let text = read(path)?;
        if !String::from_utf8_lossy(&text).contains(marker) {
            return Err(Error::Tls(format!("{} holds no PEM {marker}", path.display())));
        }
    }
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(read(server_cert)?, read(server_key)?))
        .client_ca_root(Certificate::from_pem(read(client_ca)?)))
}
