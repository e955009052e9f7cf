//! A development PKI: one CA, a server certificate for localhost and one client
//! certificate per partner whose subject common name is the partner id.

use std::path::{Path, PathBuf};

use loket_domain::PartnerId;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::Error;

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";

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
    let mut files = vec![CA_CERT.to_owned(), CA_KEY.to_owned(), SERVER_CERT.to_owned(), SERVER_KEY.to_owned()];
    for p in partners {
        files.push(format!("{p}.pem"));
        files.push(format!("{p}.key"));
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

    let leaf =
        |common_name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| -> Result<(String, String), Error> {
            let mut params = CertificateParams::new(sans)?;
            params.distinguished_name.push(DnType::CommonName, common_name);
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            params.extended_key_usages = vec![usage];
            params.use_authority_key_identifier_extension = true;
            params.not_before = now - Duration::hours(1);
            params.not_after = now + Duration::days(365);
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            Ok((cert.pem(), key.serialize_pem()))
        };

    write(dir, CA_CERT, &ca.pem(), false)?;
    write(dir, CA_KEY, &ca_key_pem, true)?;
    let sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let (cert, key) = leaf("localhost", sans, ExtendedKeyUsagePurpose::ServerAuth)?;
    write(dir, SERVER_CERT, &cert, false)?;
    write(dir, SERVER_KEY, &key, true)?;
    for partner in partners {
        let (cert, key) = leaf(partner.as_str(), Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
        write(dir, &format!("{partner}.pem"), &cert, false)?;
        write(dir, &format!("{partner}.key"), &key, true)?;
    }
    Ok(())
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
}
