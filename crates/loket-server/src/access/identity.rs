//! Who is calling: the identity the transport vouches for (the client certificate's subject
//! common name, or on an explicitly insecure gateway the `x-loket-partner` header), mapped
//! to a partner through the policy. Every RPC resolves its caller here, once.

use loket_domain::PartnerId;
use tonic::Request;

use super::{denials, Access};
use crate::Error;

/// The request header that names the caller on an insecure (plain TCP) gateway.
pub const PARTNER_HEADER: &str = "x-loket-partner";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityMode {
    ClientCertificate,
    InsecureHeader,
}

impl Access {
    /// The calling partner: the presented identity mapped through the policy. An identity
    /// the policy does not know is refused, and recorded as a refusal of `action`.
    pub async fn caller<T>(&self, request: &Request<T>, action: &str) -> Result<PartnerId, Error> {
        let identity = presented_identity(request, self.identity)?;
        match self.policy.partner_for_identity(identity.as_str()).map(str::parse::<PartnerId>) {
            Some(Ok(partner)) => Ok(partner),
            _ => {
                let e = Error::UnknownIdentity { identity: identity.to_string() };
                denials::record_refusal(self, &format!("{action}-refused"), &identity, &e, "", "").await;
                Err(e)
            }
        }
    }
}

/// The identity the transport vouches for, before the policy maps it to a partner.
fn presented_identity<T>(request: &Request<T>, mode: IdentityMode) -> Result<PartnerId, Error> {
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
fn partner_from_certificate(der: &[u8]) -> Result<PartnerId, Error> {
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
