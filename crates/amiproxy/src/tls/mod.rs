//! TLS for both sides.
//!
//! - [`server`]: a listener's TLS, swapped in place on reload (rotation without a rebind),
//!   with client certificates (mutual TLS), CRLs, session resumption and a minimum version;
//! - [`client`]: upstream links' TLS (CA, pins, a client certificate), rebuilt per connect
//!   from the files, the last good one kept when a file breaks;
//! - [`verify`]: the upstream certificate verifier (CA or pins), which also notes what it saw;
//! - [`expiry`]: how long each loaded certificate has left, for metrics, `/health` and the
//!   log's warnings.

pub mod client;
pub mod expiry;
pub mod server;
mod verify;

use crate::error::ProxyError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::Tls(format!("{}: {e}", path.display()))
}

/// Reads and parses every TLS file of `config` as start-up and reload would: each problem
/// in words that name its key (`listener[0].tls.cert: ...`). For `check-config`.
pub fn check_files(config: &crate::config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if l.tls.is_some() {
            let built = server::ServerTls::new(&l.address.to_string())
                .and_then(|t| t.prepare(l.tls.as_ref(), &format!("listener[{i}].tls")).map(|_| ()));
            problems.extend(built.err().map(|e| e.to_string()));
        }
    }
    for (i, u) in config.upstreams.iter().enumerate() {
        if let crate::config::UpstreamTarget::Asterisk { tls: Some(t), .. } = &u.target {
            problems.extend(
                client::check(&format!("upstream[{i}]"), &u.name, t)
                    .err()
                    .map(|e| e.to_string()),
            );
        }
    }
    problems
}

/// A file's bytes, read once: what is parsed is what is compared on the next reload.
fn read(path: &Path) -> Result<Vec<u8>, ProxyError> {
    std::fs::read(path).map_err(|e| file_error(path, e))
}

/// An error of the file under configuration key `key` (`listener[0].tls.cert: ...`).
fn keyed(key: String, e: ProxyError) -> ProxyError {
    match e {
        ProxyError::Tls(m) => ProxyError::Tls(format!("{key}: {m}")),
        other => ProxyError::Tls(format!("{key}: {other}")),
    }
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate found"));
    }
    Ok(certs)
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, ProxyError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| file_error(path, e))
}

fn parse_crls(path: &Path, pem: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, ProxyError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if crls.is_empty() {
        return Err(file_error(path, "no CRL found"));
    }
    Ok(crls)
}

/// A self-signed certificate and key for `localhost`/127.0.0.1/::1, PEM encoded.
pub fn self_signed() -> Result<(String, String), ProxyError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| ProxyError::Tls(e.to_string()))?;
    Ok((ck.cert.pem(), ck.key_pair.serialize_pem()))
}

pub fn server_name(host: &str) -> Result<ServerName<'static>, ProxyError> {
    ServerName::try_from(host.to_owned()).map_err(|e| ProxyError::Tls(format!("bad server name `{host}`: {e}")))
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lowercase hex, as `openssl x509 -fingerprint -sha256` prints it (without the colons).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a session needs of a client's TLS certificate: to match a user's binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// SHA-256 of the certificate's DER.
    pub sha256: [u8; 32],
    /// The subject's common name.
    pub common_name: Option<String>,
    /// subjectAltNames: DNS names, e-mail addresses, URIs, IP addresses (as text).
    pub alt_names: Vec<String>,
}

impl PeerCert {
    /// From the end-entity certificate of an accepted handshake (already verified by rustls);
    /// the names are read leniently: a certificate they cannot be read from matches by its
    /// fingerprint only.
    pub fn from_der(der: &[u8]) -> PeerCert {
        let mut cert = PeerCert {
            sha256: sha256(der),
            common_name: None,
            alt_names: Vec::new(),
        };
        let Ok((_, x)) = x509_parser::parse_x509_certificate(der) else {
            return cert;
        };
        cert.common_name = x
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        if let Ok(Some(san)) = x.subject_alternative_name() {
            use x509_parser::extensions::GeneralName;
            for name in &san.value.general_names {
                let text = match name {
                    GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => s.to_string(),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
                        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
                        _ => continue,
                    },
                    _ => continue,
                };
                cert.alt_names.push(text);
            }
        }
        cert
    }
}
