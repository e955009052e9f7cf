//! Who is calling: the identity the transport vouches for, mapped to a partner through the
//! policy. Every RPC resolves its caller here, once:
//! - `[tls] identity = "cn"`: the client certificate's subject common name (development
//!   certificates), matched against `[partners.<id>] identity`;
//! - `[tls] identity = "oin"`: the OIN in the certificate subject's serialNumber
//!   (PKIoverheid), matched against `[partners.<id>] oin`; the common name is then only a
//!   service name and decides nothing;
//! - on an explicitly insecure gateway, the `x-loket-partner` header.
//!
//! What a certificate presents is read once per connection, in its handshake task
//! ([`presented_by`], kept in the connection's `limits::connections::Peer`); the policy
//! lookup, and the denial log of an unknown identity, stay per request.

use loket_access::{is_oin, Policy};
use loket_domain::PartnerId;
use rustls::pki_types::CertificateDer;
use tonic::Request;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::OID_X509_SERIALNUMBER;

use super::{denials, Access};
use crate::limits::connections::Peer;
use crate::Error;

/// The request header that names the caller on an insecure (plain TCP) gateway.
pub const PARTNER_HEADER: &str = "x-loket-partner";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityMode {
    CommonName,
    Oin,
    InsecureHeader,
}

impl Access {
    /// The calling partner. An identity the policy does not know is refused, and recorded
    /// as a refusal of `action` under what the caller presented (its common name or OIN).
    pub async fn caller<T>(&self, request: &Request<T>, action: &str) -> Result<PartnerId, Error> {
        let from_header;
        let presented = match self.identity {
            IdentityMode::InsecureHeader => {
                from_header = Presented::Name(header_identity(request)?);
                &from_header
            }
            IdentityMode::CommonName | IdentityMode::Oin => {
                let peer = request.extensions().get::<Peer>().and_then(|peer| peer.certified.as_deref());
                peer.ok_or(Error::Unauthenticated("no client certificate"))?
                    .as_ref()
                    .map_err(|&e| Error::Unauthenticated(e))?
            }
        };
        if let Some(partner) = presented.partner(&self.policy) {
            return Ok(partner);
        }
        let (who, e) = match presented.clone() {
            Presented::Name(name) => (name.clone(), Error::UnknownIdentity { identity: name }),
            Presented::Oin(oin) => (oin.clone(), Error::UnknownOin { oin }),
            Presented::NoOin { common_name, problem } => (common_name.clone(), Error::NoOin { common_name, problem }),
        };
        denials::record_refusal(self, &format!("{action}-refused"), &who, &e, "", "").await;
        Err(e)
    }
}

/// What a connection's client certificate presents, or why it presents nothing usable
/// (refused as UNAUTHENTICATED on every call).
pub(crate) type Certified = Result<Presented, &'static str>;

/// What the leaf certificate `leaf` presents under `mode` (`CommonName` or `Oin`).
pub(crate) fn presented_by(mode: IdentityMode, leaf: Option<&CertificateDer<'_>>) -> Certified {
    let leaf = leaf.ok_or("no client certificate")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|_| "the client certificate cannot be parsed")?;
    if mode == IdentityMode::Oin {
        Ok(oin_identity(&cert))
    } else {
        common_name(&cert).map(Presented::Name)
    }
}

/// What a caller presented, before the policy maps it to a partner.
#[derive(Debug, Clone)]
pub(crate) enum Presented {
    /// A common name or header value.
    Name(String),
    /// A well-formed OIN.
    Oin(String),
    /// A certificate without a well-formed OIN.
    NoOin { common_name: String, problem: &'static str },
}

impl Presented {
    /// The partner `policy` maps this identity to, if any.
    pub fn partner(&self, policy: &Policy) -> Option<PartnerId> {
        let found = match self {
            Presented::Name(name) => policy.partner_for_identity(name),
            Presented::Oin(oin) => policy.partner_for_oin(oin),
            Presented::NoOin { .. } => None,
        };
        found?.parse().ok()
    }

    /// The text the caller is known by before the policy lookup: the admission's fair
    /// shares are keyed by it.
    pub fn key(&self) -> &str {
        match self {
            Presented::Name(name) | Presented::Oin(name) => name,
            Presented::NoOin { common_name, .. } => common_name,
        }
    }
}

fn header_identity<T>(request: &Request<T>) -> Result<String, Error> {
    let value = request
        .metadata()
        .get(PARTNER_HEADER)
        .ok_or(Error::Unauthenticated("this insecure gateway needs the x-loket-partner header"))?;
    let name = value.to_str().map_err(|_| Error::Unauthenticated("x-loket-partner is not text"))?;
    let id: PartnerId =
        name.parse().map_err(|_| Error::Unauthenticated("x-loket-partner is not a valid partner id"))?;
    Ok(id.to_string())
}

/// The subject common name, when it can be a partner identity.
fn common_name(cert: &X509Certificate<'_>) -> Result<String, &'static str> {
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("the client certificate has no subject common name")?;
    let id: PartnerId = cn.parse().map_err(|_| "the client certificate's common name is not a partner id")?;
    Ok(id.to_string())
}

/// The OIN in the subject serialNumber (exactly one, 20 digits).
fn oin_identity(cert: &X509Certificate<'_>) -> Presented {
    // Shown in the refusal and the denial log: the common name says which system called.
    let common_name: String = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(|cn| cn.chars().filter(|c| !c.is_control()).take(64).collect())
        .unwrap_or_else(|| "(none)".to_owned());
    let mut serials = cert.subject().iter_by_oid(&OID_X509_SERIALNUMBER);
    let problem = match (serials.next().map(|a| a.as_str()), serials.next()) {
        (None, _) => "the subject has no serialNumber",
        (Some(_), Some(_)) => "the subject has more than one serialNumber",
        (Some(Err(_)), None) => "the subject serialNumber is not text",
        (Some(Ok(oin)), None) if is_oin(oin) => return Presented::Oin(oin.to_owned()),
        (Some(Ok(_)), None) => "the subject serialNumber is not an OIN (20 digits)",
    };
    Presented::NoOin { common_name, problem }
}
