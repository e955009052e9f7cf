//! Who is calling: the partner named in the client certificate (the subject common name),
//! or, on an explicitly insecure gateway, the `x-loket-partner` header.

use loket_domain::PartnerId;
use tonic::Request;

use crate::Error;

/// The request header that names the caller on an insecure (plain TCP) gateway.
pub const PARTNER_HEADER: &str = "x-loket-partner";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityMode {
    ClientCertificate,
    InsecureHeader,
}

pub(crate) fn caller<T>(request: &Request<T>, mode: IdentityMode) -> Result<PartnerId, Error> {
    match mode {
        IdentityMode::ClientCertificate => {
            let certs = request.peer_certs().ok_or(Error::Unauthenticated("no client certificate"))?;
            let leaf = certs.first().ok_or(Error::Unauthenticated("no client certificate"))?;
            partner_from_certificate(leaf.as_ref())
        }
        IdentityMode::InsecureHeader => {
            let value = request
                .metadata()
                .get(PARTNER_HEADER)
                .ok_or(Error::Unauthenticated("this insecure gateway needs the x-loket-partner header"))?;
            let name = value.to_str().map_err(|_| Error::Unauthenticated("x-loket-partner is not text"))?;
            name.parse().map_err(|_| Error::Unauthenticated("x-loket-partner is not a valid partner id"))
        }
    }
}

/// The partner id in a DER certificate's subject common name.
pub(crate) fn partner_from_certificate(der: &[u8]) -> Result<PartnerId, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| Error::Unauthenticated("the client certificate cannot be parsed"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(Error::Unauthenticated("the client certificate has no subject common name"))?;
    cn.parse().map_err(|_| Error::Unauthenticated("the client certificate's common name is not a partner id"))
}
