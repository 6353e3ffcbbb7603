//! TLS for both sides: rustls server configs for listeners (PEM files, or a self-signed
//! development certificate made at start-up) and client configs for upstream links.

use crate::config::{ListenerTls, UpstreamTls};
use crate::error::ProxyError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| ProxyError::Tls(format!("{}: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| ProxyError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ProxyError::Tls(format!("{}: no certificate found", path.display())));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ProxyError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| ProxyError::Tls(format!("{}: {e}", path.display())))
}

/// A self-signed certificate and key for `localhost`/127.0.0.1/::1, PEM encoded.
pub fn self_signed() -> Result<(String, String), ProxyError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| ProxyError::Tls(e.to_string()))?;
    Ok((ck.cert.pem(), ck.key_pair.serialize_pem()))
}

pub fn server_config(tls: &ListenerTls) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
    let (certs, key) = match tls {
        ListenerTls::Files { cert, key } => (load_certs(cert)?, load_key(key)?),
        ListenerTls::SelfSigned => {
            let (cert, key) = self_signed()?;
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ProxyError::Tls(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| ProxyError::Tls(e.to_string()))?;
            (certs, key)
        }
    };
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ProxyError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ProxyError::Tls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

pub fn client_config(tls: &UpstreamTls) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            for cert in load_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| ProxyError::Tls(format!("{}: {e}", ca.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ProxyError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

pub fn server_name(host: &str) -> Result<ServerName<'static>, ProxyError> {
    ServerName::try_from(host.to_owned()).map_err(|e| ProxyError::Tls(format!("bad server name `{host}`: {e}")))
}
