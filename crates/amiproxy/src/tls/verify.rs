//! The verifier of an upstream's certificate: pinned digests (for a self-signed Asterisk)
//! or CA roots, the handshake signature always checked with the provider's algorithms. It
//! notes the certificate it saw: its end for the expiry metric once verified, its
//! fingerprint for the operator's hint when it was refused.

use super::expiry::{self, CertExpiry};
use super::{hex, sha256};
use crate::sync::lock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(super) struct UpstreamVerifier {
    /// The upstream's name (the expiry metric's label).
    pub(super) name: String,
    /// SHA-256 digests of certificates or of their public keys: a match is enough.
    pub(super) pins: Vec<[u8; 32]>,
    /// CA verification, unless only pins are configured.
    pub(super) roots: Option<Arc<WebPkiServerVerifier>>,
    pub(super) provider: Arc<CryptoProvider>,
    /// The fingerprint of the last certificate refused (for the log's hint).
    pub(super) refused: Arc<Mutex<Option<String>>>,
}

/// SHA-256 of the certificate's SubjectPublicKeyInfo (DER), as HPKP-style pins take it.
fn spki_sha256(der: &[u8]) -> Option<[u8; 32]> {
    let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(sha256(x.public_key().raw))
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = sha256(end_entity);
        let pinned = !self.pins.is_empty() && {
            let spki = spki_sha256(end_entity);
            self.pins.iter().any(|p| *p == cert || Some(*p) == spki)
        };
        let result = match (&self.roots, pinned) {
            (_, true) => Ok(ServerCertVerified::assertion()),
            (Some(roots), false) => {
                roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            (None, false) => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        };
        match &result {
            Ok(_) => {
                let seen = CertExpiry::of("upstream", &self.name, end_entity);
                expiry::replace(&format!("upstream:{}", self.name), seen.into_iter().collect());
            }
            Err(_) => *lock(&self.refused) = Some(hex(&cert)),
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
