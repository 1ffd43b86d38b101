//! Certificates that apps bring (`certs:add`): reading a PEM chain and key, checking that they
//! belong together, and what the certificate says (names, issuer, validity).
//!
//! The API stores the PEM text as given and shows [`inspect`]'s [`CertInfo`]; the router serves
//! the chain by SNI through [`certified_key`]. An expired certificate is not an error here: it
//! can be added and is shown with its expiry, as Heroku does.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::x509::X509Name;

use crate::TlsError;

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DNS names it covers, lower case: its subject alternative names, else its common name.
    pub names: Vec<String>,
    /// The subject, OpenSSL style: `/C=US/O=Example/CN=www.example.com`.
    pub subject: String,
    /// The issuer, in the same style.
    pub issuer: String,
    /// Valid from (Unix seconds).
    pub not_before: i64,
    /// Valid until (Unix seconds).
    pub not_after: i64,
    /// Issued by itself (subject and issuer are the same name).
    pub self_signed: bool,
}

impl CertInfo {
    /// Whether the certificate is valid for `host`: an exact name, or a `*.` wildcard name that
    /// matches exactly one label (`*.example.com` covers `www.example.com`, not `example.com`
    /// nor `a.b.example.com`). A wildcard host is covered only by the same wildcard name.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.names.iter().any(|name| name_covers(name, &host))
    }
}

/// One certificate name against one lower-case host name.
fn name_covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((first, rest))) => !first.is_empty() && first != "*" && rest == suffix,
        _ => false,
    }
}

/// The certificates of a PEM chain, leaf first.
fn parse_chain(chain_pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid(format!("the certificate chain is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(
            "no certificate found in the PEM: expected -----BEGIN CERTIFICATE-----".into(),
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
fn parse_key(key_pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::Invalid(
            "no private key found in the PEM: expected -----BEGIN PRIVATE KEY----- (or RSA / EC PRIVATE KEY)".into(),
        ),
        other => TlsError::Invalid(format!("the private key is not valid PEM: {other}")),
    })
}

/// Parses both PEMs and checks that the key is the leaf certificate's.
fn load(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, TlsError> {
    let certs = parse_chain(chain_pem)?;
    let key = parse_key(key_pem)?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Invalid(format!("the private key cannot be used: {e}")))?;
    let certified = CertifiedKey::new(certs, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(
            TlsError::Invalid("the private key does not match the certificate".into()),
        ),
        // The provider cannot tell the key's public half: nothing to compare, as rustls does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(TlsError::Invalid(format!(
            "the certificate cannot be read: {e}"
        ))),
    }
}

/// Reads a PEM chain (leaf first) and its PEM private key: checks that they belong together and
/// says what the leaf certificate covers and until when.
pub fn inspect(chain_pem: &str, key_pem: &str) -> Result<CertInfo, TlsError> {
    let certified = load(chain_pem, key_pem)?;
    let leaf = certified
        .end_entity_cert()
        .map_err(|e| TlsError::Invalid(format!("the certificate cannot be read: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| TlsError::Invalid(format!("the certificate cannot be read: {e}")))?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    Ok(CertInfo {
        names,
        subject: slash_name(cert.subject()),
        issuer: slash_name(cert.issuer()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
    })
}

/// The chain and key ready for a rustls server (after the same checks as [`inspect`]).
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    load(chain_pem, key_pem).map(Arc::new)
}

/// `/C=US/O=Example/CN=www.example.com`, as OpenSSL and Heroku print names.
fn slash_name(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for attr in name.iter_attributes() {
        let key = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
            .map(str::to_string)
            .unwrap_or_else(|_| attr.attr_type().to_id_string());
        let value = attr
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|_| "?".into());
        out.push('/');
        out.push_str(&key);
        out.push('=');
        out.push_str(&value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    #[test]
    fn reads_names_dates_and_issuer() {
        let (chain, key) = pair(&["Shop.Example.com", "*.example.com"]);
        let info = inspect(&chain, &key).unwrap();
        assert_eq!(info.names, vec!["shop.example.com", "*.example.com"]);
        assert!(info.self_signed);
        assert_eq!(info.subject, info.issuer);
        assert!(info.subject.contains("CN="), "{}", info.subject);
        assert!(info.not_after > info.not_before);
        assert!(info.covers("shop.example.com"));
        assert!(info.covers("WWW.example.com"));
        assert!(!info.covers("example.com"));
        assert!(!info.covers("a.b.example.com"));
        assert!(info.covers("*.example.com"));
        assert!(!info.covers("other.test"));
        assert!(certified_key(&chain, &key).is_ok());
    }

    #[test]
    fn clear_errors() {
        let (chain, key) = pair(&["a.example.com"]);
        let (_, other_key) = pair(&["b.example.com"]);
        let msg = |r: Result<CertInfo, TlsError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(inspect(&chain, &other_key)),
            "the private key does not match the certificate"
        );
        assert!(msg(inspect("hello", &key)).starts_with("no certificate found in the PEM"));
        assert!(msg(inspect(&chain, "")).starts_with("no private key found in the PEM"));
        // The key given as the certificate and the other way round.
        assert!(msg(inspect(&key, &chain)).starts_with("no certificate found"));
        let broken = chain.replace("MII", "!!!");
        assert!(inspect(&broken, &key).is_err());
    }

    #[test]
    fn expired_certificates_are_read_not_refused() {
        let mut params = rcgen::CertificateParams::new(vec!["old.example.com".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = inspect(&cert.pem(), &key.serialize_pem()).unwrap();
        assert_eq!(info.not_after, 978_307_200);
        assert_eq!(info.names, vec!["old.example.com"]);
    }
}
