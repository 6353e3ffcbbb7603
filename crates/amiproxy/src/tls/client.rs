//! Upstream links' TLS: built from the files at every connect, so a CA, client certificate
//! or pin list renewed on disk is used by the next connection. A reload checks the files
//! first and is refused under the key of a broken one; a file that breaks between reloads
//! leaves the link with the last config that was good.

use super::verify::UpstreamVerifier;
use super::{keyed, parse_certs, parse_key, provider, read};
use crate::config::UpstreamTls;
use crate::error::ProxyError;
use crate::sync::lock;
use rustls::client::WebPkiServerVerifier;
use rustls::ClientConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::error;

/// A client config for one upstream, and what its verifier noted.
#[derive(Clone)]
pub struct Connector {
    pub config: Arc<ClientConfig>,
    refused: Arc<Mutex<Option<String>>>,
}

/// The last good connector of each upstream (by name).
static LAST_GOOD: Mutex<Option<HashMap<String, Connector>>> = Mutex::new(None);

/// The connector of upstream `name` from its files now; the last good one (with an error in
/// the log) when a file has broken since.
pub fn connector(name: &str, tls: &UpstreamTls) -> Result<Connector, ProxyError> {
    match build(name, tls, &format!("upstream `{name}`")) {
        Ok(c) => {
            lock(&LAST_GOOD)
                .get_or_insert_with(HashMap::new)
                .insert(name.to_owned(), c.clone());
            Ok(c)
        }
        Err(e) => {
            let last = lock(&LAST_GOOD).as_ref().and_then(|m| m.get(name).cloned());
            match last {
                Some(c) => {
                    error!(error = %e, "upstream TLS files are broken; connecting with the last good ones");
                    Ok(c)
                }
                None => Err(e),
            }
        }
    }
}

/// Checks an upstream's TLS files before a configuration is applied; errors name `at`
/// (`upstream[0]`) and the key of the broken file.
pub fn check(at: &str, name: &str, tls: &UpstreamTls) -> Result<(), ProxyError> {
    build(name, tls, at).map(|_| ())
}

fn build(name: &str, tls: &UpstreamTls, at: &str) -> Result<Connector, ProxyError> {
    let provider = provider();
    let roots = match (&tls.ca, tls.pins.is_empty()) {
        (Some(ca), _) => {
            let bytes = read(ca).map_err(|e| keyed(format!("{at}.ca"), e))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in parse_certs(ca, &bytes).map_err(|e| keyed(format!("{at}.ca"), e))? {
                roots
                    .add(cert)
                    .map_err(|e| ProxyError::Tls(format!("{at}.ca: {}: {e}", ca.display())))?;
            }
            Some(roots)
        }
        (None, true) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Some(roots)
        }
        // Pins alone: no CA is trusted, whatever the system has.
        (None, false) => None,
    };
    let roots = match roots {
        Some(r) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(r), provider.clone())
                .build()
                .map_err(|e| ProxyError::Tls(format!("{at}.ca: {e}")))?,
        ),
        None => None,
    };
    let refused = Arc::new(Mutex::new(None));
    let verifier = UpstreamVerifier {
        name: name.to_owned(),
        pins: tls.pins.clone(),
        roots,
        provider: provider.clone(),
        refused: refused.clone(),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ProxyError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match &tls.client_cert {
        Some((cert, key)) => {
            let c = read(cert).map_err(|e| keyed(format!("{at}.client_cert"), e))?;
            let k = read(key).map_err(|e| keyed(format!("{at}.client_key"), e))?;
            let chain = parse_certs(cert, &c).map_err(|e| keyed(format!("{at}.client_cert"), e))?;
            let key = parse_key(key, &k).map_err(|e| keyed(format!("{at}.client_key"), e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ProxyError::Tls(format!("{at}.client_key: {e} (does it belong to the certificate?)")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Connector {
        config: Arc::new(config),
        refused,
    })
}

impl Connector {
    /// A failed handshake in words that tell the operator what to set: for a certificate no
    /// trusted CA issued (a self-signed Asterisk), its fingerprint to pin or the `ca` option.
    pub fn explain(&self, e: &std::io::Error) -> String {
        let refused = lock(&self.refused).clone();
        let Some(fp) = refused else {
            return e.to_string();
        };
        let cause = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
        let untrusted = match cause {
            Some(rustls::Error::InvalidCertificate(c)) => {
                matches!(c, rustls::CertificateError::UnknownIssuer) || format!("{c:?}").contains("CaUsedAsEndEntity")
            }
            _ => false,
        };
        let pin_failed = matches!(
            cause,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure
            ))
        );
        if untrusted {
            format!(
                "{e}: the upstream's certificate (sha256 {fp}) is not issued by a trusted CA: set `ca` to the \
                 CA file that issued it, or, for a self-signed certificate, pin it with pin_sha256 = [\"{fp}\"]"
            )
        } else if pin_failed {
            format!("{e}: the upstream's certificate (sha256 {fp}) matches no pin_sha256 (nor the `ca`)")
        } else {
            format!("{e} (upstream certificate sha256 {fp})")
        }
    }
}
