//! Connecting to a gateway as a partner: mutual TLS with the partner's certificate from a
//! certificates directory (as `loket certs init` writes it), or the insecure header.

use std::path::PathBuf;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::certs;
use crate::access::PARTNER_HEADER;
use crate::proto::gateway_client::GatewayClient;
use crate::Error;

/// How a client reaches the gateway.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `https://host:port` for mutual TLS, `http://host:port` for an insecure gateway.
    pub server: String,
    /// Directory with `ca.pem`, `<partner>.pem` and `<partner>.key`.
    pub certs: PathBuf,
    /// The partner to act as.
    pub partner: String,
}

/// Adds the `x-loket-partner` header on insecure connections; does nothing under TLS,
/// where the certificate speaks for the caller.
#[derive(Debug, Clone)]
pub struct PartnerHeader(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for PartnerHeader {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(PARTNER_HEADER, value.clone());
        }
        Ok(request)
    }
}

pub type Client = GatewayClient<InterceptedService<Channel, PartnerHeader>>;

/// The endpoint and header for `options`, without connecting.
pub fn endpoint(options: &ClientOptions) -> Result<(Endpoint, PartnerHeader), Error> {
    let endpoint = Endpoint::from_shared(options.server.clone())
        .map_err(|_| Error::Tls(format!("{:?} is not a URL like https://127.0.0.1:7443", options.server)))?;
    if options.server.starts_with("http://") {
        let value = options
            .partner
            .parse()
            .map_err(|_| Error::Tls(format!("{:?} is not a valid partner id", options.partner)))?;
        return Ok((endpoint, PartnerHeader(Some(value))));
    }
    let read =
        |path: PathBuf| std::fs::read(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e));
    let (cert, key) = certs::partner_files(&options.certs, &options.partner);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(options.certs.join(certs::CA_CERT))?))
        .identity(Identity::from_pem(read(cert)?, read(key)?));
    let endpoint = endpoint.tls_config(tls).map_err(|e| Error::Tls(e.to_string()))?;
    Ok((endpoint, PartnerHeader(None)))
}

/// Connects now; fails when the gateway cannot be reached or refuses the handshake.
pub async fn connect(options: &ClientOptions) -> Result<Client, Error> {
    let (endpoint, header) = endpoint(options)?;
    let channel = endpoint.connect().await?;
    Ok(GatewayClient::with_interceptor(channel, header))
}

/// Whether HTTP/2 refused the call's stream (REFUSED_STREAM, e.g. at the connection's
/// concurrent-stream limit): the gateway did not process it, so it may be sent again at
/// once. gRPC clients do that transparently (gRFC A6); tonic does not.
pub fn refused_stream(status: &tonic::Status) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cause {
        if e.downcast_ref::<h2::Error>().and_then(h2::Error::reason) == Some(h2::Reason::REFUSED_STREAM) {
            return true;
        }
        cause = e.source();
    }
    false
}
