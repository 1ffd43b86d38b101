//! HTTPS: certificates chosen by SNI — an app's own (`certs:add`) for the names it covers, else
//! the certificate Slipway makes for `*.<base-domain>`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tracing::warn;

use crate::settings::CertPair;

/// A certificate and the names it covers.
type Named = (Vec<String>, Arc<CertifiedKey>);

#[derive(Default)]
struct Certs {
    /// App name → its certificates with the names each covers.
    by_app: HashMap<String, Vec<Named>>,
    /// Host name (exact, or `*.parent` kept as `parent` in `wildcard`) → certificate.
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Served when no app certificate covers the name.
    default: Option<Arc<CertifiedKey>>,
    /// Makes a certificate for `<app>.<base-domain>` (a wildcard for a one-label base domain
    /// such as `localhost` is not accepted by clients).
    issuer: Option<Issuer>,
    /// Certificates the issuer made, by name.
    issued: HashMap<String, Arc<CertifiedKey>>,
}

/// Makes a certificate for a host name.
pub type Issuer = Arc<dyn Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync>;

/// The certificates the HTTPS listener can present.
#[derive(Clone, Default)]
pub(crate) struct CertStore {
    inner: Arc<RwLock<Certs>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").finish_non_exhaustive()
    }
}

impl CertStore {
    pub(crate) fn set_default(&self, key: Arc<CertifiedKey>) {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .default = Some(key);
    }

    /// Replaces an app's certificates. One that cannot be read is skipped (the API refuses
    /// those before they are stored).
    pub(crate) fn set_app(&self, app_name: &str, certs: &[CertPair]) {
        let mut loaded = Vec::new();
        for c in certs {
            match slipway_tls::inspect(&c.chain_pem, &c.key_pem).and_then(|info| {
                Ok((
                    info.names,
                    slipway_tls::certified_key(&c.chain_pem, &c.key_pem)?,
                ))
            }) {
                Ok(pair) => loaded.push(pair),
                Err(error) => warn!(app = app_name, %error, "Certificate skipped."),
            }
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if loaded.is_empty() {
            inner.by_app.remove(app_name);
        } else {
            inner.by_app.insert(app_name.to_string(), loaded);
        }
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (names, key) in inner.by_app.values().flatten() {
            for n in names {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix("*.") {
                    Some(parent) => wildcard.insert(parent.to_string(), key.clone()),
                    None => exact.insert(n, key.clone()),
                };
            }
        }
        inner.exact = exact;
        inner.wildcard = wildcard;
    }

    pub(crate) fn set_issuer(&self, issuer: Issuer) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.issuer = Some(issuer);
        inner.issued.clear();
    }

    /// The app's own certificate for `name`, if one covers it.
    fn app_cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = inner.exact.get(name) {
            return Some(k.clone());
        }
        name.split_once('.')
            .and_then(|(_, parent)| inner.wildcard.get(parent))
            .cloned()
    }

    /// A certificate made for `name` (an app's name under the base domain), made on first use.
    fn issued(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let issuer = {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some(k) = inner.issued.get(name) {
                return Some(k.clone());
            }
            inner.issuer.clone()?
        };
        let key = issuer(name)?;
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.issued.len() > 10_000 {
            inner.issued.clear();
        }
        inner.issued.insert(name.to_string(), key.clone());
        Some(key)
    }

    fn default_cert(&self) -> Option<Arc<CertifiedKey>> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .default
            .clone()
    }
}

/// Chooses the certificate for a TLS handshake: the app's own for the name, else one made for
/// `<app>.<base-domain>` when that app exists, else the default.
pub(crate) struct Resolver {
    pub table: crate::RouteTable,
    pub base_domain: String,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = &self.table.certs;
        let Some(name) = hello.server_name().map(|n| n.to_ascii_lowercase()) else {
            return certs.default_cert();
        };
        if let Some(k) = certs.app_cert(&name) {
            return Some(k);
        }
        let app = name
            .strip_suffix(self.base_domain.as_str())
            .and_then(|n| n.strip_suffix('.'))
            .filter(|n| !n.is_empty() && !n.contains('.'));
        if let Some(app) = app {
            if self.table.app(app).is_some() {
                if let Some(k) = certs.issued(&name) {
                    return Some(k);
                }
            }
        }
        certs.default_cert()
    }
}

/// Builds the HTTPS server configuration: certificates by SNI, ALPN `h2` and `http/1.1`.
pub(crate) fn server_config(
    resolver: Resolver,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A certificate and key (DER, as `slipway_tls::Authority::issue` makes them) ready to serve.
pub fn certified(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: &rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let key = rustls::crypto::ring::sign::any_supported_type(key)?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}
