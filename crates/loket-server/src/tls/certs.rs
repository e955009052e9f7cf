//! A development PKI: one CA, a server certificate for localhost and one client
//! certificate per partner whose subject common name is the partner id and, with OINs,
//! whose subject serialNumber is a development OIN ([`dev_oin`]), as PKIoverheid
//! certificates carry the organisation's OIN. Also single certificates signed by the CA
//! ([`issue`]) and a revocation list ([`revoke`]), to exercise `[tls] identity = "oin"` and
//! `[tls] crl` end to end.

use std::path::{Path, PathBuf};

use loket_domain::PartnerId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
    SigningKey,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::Error;

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
/// The revocation list [`revoke`] writes.
pub const CRL: &str = "crl.pem";
/// The `[partners]` OIN lines of development certificates made with OINs.
pub const OINS: &str = "oins.toml";
/// The subject attribute serialNumber (X.520), where PKIoverheid puts the OIN.
const SERIAL_NUMBER_OID: [u64; 4] = [2, 5, 4, 5];

/// A partner's development OIN: 20 digits, "00000099" (a prefix no registered OIN uses)
/// and twelve digits derived from the partner id, so the same id always gets the same OIN.
pub fn dev_oin(partner: &str) -> String {
    let digest = Sha256::digest(partner.as_bytes());
    let n = digest[..8].iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)) % 1_000_000_000_000;
    format!("00000099{n:012}")
}

/// The certificate and key file of a partner inside a certificates directory.
pub fn partner_files(dir: &Path, partner: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{partner}.pem")), dir.join(format!("{partner}.key")))
}

/// Whether `dir` already holds a CA and a server certificate.
pub fn exists(dir: &Path) -> bool {
    [CA_CERT, SERVER_CERT, SERVER_KEY].iter().all(|f| dir.join(f).is_file())
}

/// Writes a fresh development PKI into `dir`. Refuses to overwrite any existing file unless
/// `overwrite` is set, so a CA that partners already trust is never replaced by accident.
pub fn init(dir: &Path, partners: &[PartnerId], overwrite: bool) -> Result<(), Error> {
    generate(dir, partners, overwrite, false)
}

/// [`init`] with each partner's development OIN ([`dev_oin`]) in its certificate's subject
/// serialNumber, and `oins.toml` holding the `[partners.<id>] oin` lines to configure.
pub fn init_with_oins(dir: &Path, partners: &[PartnerId], overwrite: bool) -> Result<(), Error> {
    generate(dir, partners, overwrite, true)
}

fn generate(dir: &Path, partners: &[PartnerId], overwrite: bool, oins: bool) -> Result<(), Error> {
    let mut files = vec![CA_CERT.to_owned(), CA_KEY.to_owned(), SERVER_CERT.to_owned(), SERVER_KEY.to_owned()];
    for p in partners {
        files.push(format!("{p}.pem"));
        files.push(format!("{p}.key"));
    }
    if oins {
        files.push(OINS.to_owned());
    }
    if !overwrite {
        let present: Vec<&String> = files.iter().filter(|f| dir.join(f).exists()).collect();
        if !present.is_empty() {
            let names: Vec<&str> = present.iter().map(|s| s.as_str()).collect();
            return Err(Error::io(
                format!(
                    "{} already holds {}; choose another directory or overwrite them (certs init --force)",
                    dir.display(),
                    names.join(", ")
                ),
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;

    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "loket development CA");
    ca_params.distinguished_name.push(DnType::OrganizationName, "loket (development only)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = now - Duration::hours(1);
    ca_params.not_after = now + Duration::days(3 * 365);
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    write(dir, CA_CERT, &ca.pem(), false)?;
    write(dir, CA_KEY, &ca_key_pem, true)?;
    let sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let (cert, key) = leaf(&ca, "localhost", None, sans, ExtendedKeyUsagePurpose::ServerAuth)?;
    write(dir, SERVER_CERT, &cert, false)?;
    write(dir, SERVER_KEY, &key, true)?;
    let mut oin_lines =
        String::from("# Development OINs of the certificates in this directory (not registered OINs).\n");
    for partner in partners {
        let oin = oins.then(|| dev_oin(partner.as_str()));
        let (cert, key) = leaf(&ca, partner.as_str(), oin.as_deref(), Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
        write(dir, &format!("{partner}.pem"), &cert, false)?;
        write(dir, &format!("{partner}.key"), &key, true)?;
        if let Some(oin) = oin {
            oin_lines.push_str(&format!("[partners.{partner}]\noin = \"{oin}\"\n"));
        }
    }
    if oins {
        write(dir, OINS, &oin_lines, false)?;
    }
    Ok(())
}

/// A certificate and key (PEM) signed by `ca`, with `common_name` and, when given, `oin`
/// as the subject serialNumber.
fn leaf(
    ca: &Issuer<'_, impl SigningKey>,
    common_name: &str,
    oin: Option<&str>,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), Error> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    if let Some(oin) = oin {
        params.distinguished_name.push(DnType::CustomDnType(SERIAL_NUMBER_OID.to_vec()), oin);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The CA of `dir` as an issuer (its certificate and key as [`init`] wrote them).
fn issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, Error> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
    };
    let key = KeyPair::from_pem(&read(CA_KEY)?)?;
    Ok(Issuer::from_ca_cert_pem(&read(CA_CERT)?, key)?)
}

/// Issues one client certificate `<name>.pem` / `<name>.key` in `dir`, signed by its CA,
/// with any common name and optionally an OIN: e.g. a certificate whose common name
/// claims another partner's.
pub fn issue(dir: &Path, name: &str, common_name: &str, oin: Option<&str>) -> Result<(), Error> {
    let (cert, key) = leaf(&issuer(dir)?, common_name, oin, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
    write(dir, &format!("{name}.pem"), &cert, false)?;
    write(dir, &format!("{name}.key"), &key, true)
}

/// Writes `crl.pem` in `dir`: a revocation list signed by its CA that revokes the
/// certificates `<name>.pem` of `names` (valid for a week).
pub fn revoke(dir: &Path, names: &[&str]) -> Result<PathBuf, Error> {
    let now = OffsetDateTime::now_utc();
    let mut revoked = Vec::new();
    for name in names {
        let path = dir.join(format!("{name}.pem"));
        let pem = std::fs::read(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        let (_, der) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| Error::Tls(format!("{}: not a PEM certificate: {e}", path.display())))?;
        let cert = der.parse_x509().map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: now - Duration::minutes(1),
            reason_code: None,
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(7),
        crl_number: SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap_or_default()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer(dir)?)?;
    write(dir, CRL, &crl.pem()?, false)?;
    Ok(dir.join(CRL))
}

fn write(dir: &Path, name: &str, contents: &str, secret: bool) -> Result<(), Error> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("cannot restrict {}", path.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let partners: Vec<PartnerId> = ["dtv", "kmar"].iter().map(|p| p.parse().unwrap()).collect();
        init(dir.path(), &partners, false).unwrap();
        for f in ["ca.pem", "ca.key", "server.pem", "server.key", "dtv.pem", "dtv.key", "kmar.pem", "kmar.key"] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        let pem = std::fs::read(dir.path().join("dtv.pem")).unwrap();
        let (_, der) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = der.parse_x509().unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(cn, "dtv");
        let err = init(dir.path(), &partners, false).unwrap_err();
        assert!(err.to_string().contains("already holds"), "{err}");
        init(dir.path(), &partners, true).unwrap();
    }

    #[test]
    fn oin_certificates_carry_the_oin_in_the_subject_serial_number() {
        let dir = tempfile::tempdir().unwrap();
        let partners: Vec<PartnerId> = ["dtv"].iter().map(|p| p.parse().unwrap()).collect();
        init_with_oins(dir.path(), &partners, false).unwrap();
        let serial_number = |name: &str| {
            let pem = std::fs::read(dir.path().join(format!("{name}.pem"))).unwrap();
            let (_, der) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
            let cert = der.parse_x509().unwrap();
            let oid = x509_parser::oid_registry::OID_X509_SERIALNUMBER;
            let found = cert.subject().iter_by_oid(&oid).next().map(|a| a.as_str().unwrap().to_owned());
            found
        };
        assert_eq!(serial_number("dtv"), Some(dev_oin("dtv")));
        assert_eq!(dev_oin("dtv").len(), 20);
        assert_ne!(dev_oin("dtv"), dev_oin("kmar"));
        let oins = std::fs::read_to_string(dir.path().join(OINS)).unwrap();
        assert!(oins.contains(&format!("[partners.dtv]\noin = \"{}\"", dev_oin("dtv"))), "{oins}");
        issue(dir.path(), "spoof", "dtv", Some("00000099000000000001")).unwrap();
        assert_eq!(serial_number("spoof").as_deref(), Some("00000099000000000001"));
        let crl = revoke(dir.path(), &["spoof"]).unwrap();
        assert!(std::fs::read_to_string(crl).unwrap().contains("X509 CRL"));
    }
}
