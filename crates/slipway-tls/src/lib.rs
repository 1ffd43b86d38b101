//! Slipway's own certificate authority, and the rustls configurations built on it.
//!
//! On first start the server makes a CA (`<data-dir>/tls/ca.pem`, key `ca.key`, mode 0600) and,
//! on every start, a server certificate signed by it for the names the server answers to. Clients
//! that trust `ca.pem` (the `slipway` CLI by default; the official CLI through
//! `NODE_EXTRA_CA_CERTS`) then verify Slipway's TLS endpoints as they would any other.
//!
//! Apps' own certificates (`certs:add`) enter as PEM text: [`inspect`] checks the chain against
//! its key and reads its names and dates ([`CertInfo`]); [`certified_key`] makes it servable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

mod certs;

pub use certs::{certified_key, inspect, CertInfo};
pub use rustls_pki_types::ServerName;
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The CA's subject, the same every time it is loaded.
const CA_NAME: &str = "Slipway local certificate authority";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The certificate authority kept in the data dir.
pub struct Authority {
    key: KeyPair,
    cert: rcgen::Certificate,
    pem_path: PathBuf,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "Slipway");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    params
}

impl Authority {
    /// Loads the CA from `dir`, making it (and `dir`) the first time.
    pub fn load_or_create(dir: &Path) -> Result<Authority, TlsError> {
        let (pem_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key = if key_path.exists() && pem_path.exists() {
            let pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            KeyPair::from_pem(&pem)?
        } else {
            let key = KeyPair::generate()?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            key
        };
        // The issuer is rebuilt from the same name and key, so certificates it signs chain to the
        // ca.pem written the first time.
        let cert = ca_params().self_signed(&key)?;
        if !pem_path.exists() {
            let tmp = dir.join("ca.pem.tmp");
            std::fs::write(&tmp, cert.pem()).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &pem_path).map_err(io(&pem_path))?;
        }
        Ok(Authority {
            key,
            cert,
            pem_path,
        })
    }

    /// Where the CA certificate clients should trust is.
    pub fn ca_file(&self) -> &Path {
        &self.pem_path
    }

    /// A certificate for `names` (DNS names or IP addresses; `*.example.com` allowed), and its key.
    pub fn issue(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "slipway".into()),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| TlsError::Invalid(format!("{n:?} is not a host name"))),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(86_400)).into();
        params.not_after = (now + std::time::Duration::from_secs(397 * 86_400)).into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((
            vec![cert.der().clone(), self.cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }

    /// A rustls server configuration presenting a fresh certificate for `names`.
    pub fn server_config(
        &self,
        names: &[String],
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let (chain, key) = self.issue(names)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn write_private(path: &Path, body: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(body).map_err(io(path))
}

/// A rustls client configuration trusting the CA certificates in the PEM file `ca_file`.
pub fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let pem = std::fs::read(ca_file).map_err(io(ca_file))?;
    client_config_from_pem(&pem)
}

/// A rustls client configuration trusting the CA certificates in `pem`.
pub fn client_config_from_pem(pem: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsError::Invalid(format!("CA file: {e}")))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Invalid("the CA file holds no certificate".into()));
    }
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_client_trusting_the_ca_file_accepts_the_server_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = Authority::load_or_create(dir.path()).unwrap();
        let pem = std::fs::read(first.ca_file()).unwrap();
        drop(first);
        // A restart reloads the same CA; the certificate it issues must chain to the old file.
        let ca = Authority::load_or_create(dir.path()).unwrap();
        assert_eq!(std::fs::read(ca.ca_file()).unwrap(), pem);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let server = ca
            .server_config(&["localhost".into(), "127.0.0.1".into()], &[])
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server);
        tokio::spawn(async move {
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    tls.write_all(b"hello").await.unwrap();
                    tls.shutdown().await.unwrap();
                }
            }
        });
        let connector = TlsConnector::from(client_config_from_pem(&pem).unwrap());
        for name in ["127.0.0.1", "localhost"] {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            let mut got = String::new();
            tls.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, "hello");
        }
        // A name the certificate does not cover is refused.
        let other = tempfile::tempdir().unwrap();
        let stranger = Authority::load_or_create(other.path()).unwrap();
        let bad = client_config(stranger.ca_file()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(ca.server_config(&["localhost".into()], &[]).unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        assert!(TlsConnector::from(bad).connect(name, tcp).await.is_err());
    }
}
