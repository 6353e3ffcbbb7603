//! Test certificates made with rcgen: CAs, server and client certificates with chosen names
//! and validity, CRLs; written as PEM files into a test's folder.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;

/// A certificate authority whose certificate is at `path`.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub path: PathBuf,
}

/// A certificate and its key, written to `cert` and `key`.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub sha256: String,
    pub der: Vec<u8>,
}

/// What a leaf certificate is made for.
pub struct LeafSpec<'a> {
    pub cn: &'a str,
    pub sans: &'a [&'a str],
    pub client: bool,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub serial: u64,
}

impl<'a> LeafSpec<'a> {
    /// A server certificate for localhost, valid from a year ago to ten years ahead.
    pub fn server(cn: &'a str) -> LeafSpec<'a> {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            cn,
            sans: &["localhost", "127.0.0.1"],
            client: false,
            not_before: now - time::Duration::days(365),
            not_after: now + time::Duration::days(3650),
            serial: 1,
        }
    }

    /// A client certificate.
    pub fn client(cn: &'a str, sans: &'a [&'a str], serial: u64) -> LeafSpec<'a> {
        LeafSpec {
            sans,
            client: true,
            serial,
            ..LeafSpec::server(cn)
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{}.pem", name.replace(' ', "-")));
        std::fs::write(&path, cert.pem()).unwrap();
        Ca { cert, key, path }
    }

    pub fn leaf(&self, dir: &Path, stem: &str, spec: LeafSpec) -> Leaf {
        let sans: Vec<String> = spec.sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, spec.cn);
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(SerialNumber::from(spec.serial));
        params.extended_key_usages = vec![if spec.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Leaf {
            cert: cert_path,
            key: key_path,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            sha256: sha256_hex(cert.der()),
            der: cert.der().to_vec(),
        }
    }

    /// A CRL revoking the certificates with these serials, written to `<dir>/<stem>.crl`.
    pub fn crl(&self, dir: &Path, stem: &str, serials: &[u64]) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::days(1),
            next_update: now + time::Duration::days(30),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - time::Duration::hours(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.cert, &self.key).unwrap();
        let path = dir.join(format!("{stem}.crl"));
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}

/// A rustls client config trusting `ca`, showing `client` (certificate and key) if given.
pub fn client_config(ca: &Path, client: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    client_config_versions(ca, client, rustls::DEFAULT_VERSIONS)
}

pub fn client_config_versions(
    ca: &Path,
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(leaf.der.clone())],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// A TLS connection to `addr` as `localhost` with `cfg`: the client (after the banner) and
/// the SHA-256 of the certificate the server showed; Err with why when the handshake or the
/// banner fails (a refused client certificate shows as either, by TLS version).
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
) -> Result<(super::Client, String, bool), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(
        super::DEADLINE,
        tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let seen = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| sha256_hex(c))
        .unwrap_or_default();
    let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let c = super::Client::try_over(Box::new(tls)).await?;
    Ok((c, seen, resumed))
}
