//! A listener's TLS, held where the accept loop reads it for every connection: a reload
//! swaps in a new certificate, client CA or version floor without touching the socket, so
//! new handshakes get the new settings and established sessions are left as they are.
//!
//! A reload re-reads every file the listener's TLS uses and compares their content with
//! what is loaded (a certificate renewed in place under the same path counts as a change);
//! a file that does not parse, or a key that does not match its certificate, is refused
//! under its configuration key and what runs is kept.

use super::expiry::{self, CertExpiry};
use super::{keyed, parse_certs, parse_crls, parse_key, provider, read};
use crate::config::{CertSource, ClientAuth, ListenerTls, MinVersion};
use crate::error::ProxyError;
use arc_swap::ArcSwapOption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, StoresServerSessions, WebPkiClientVerifier};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;
use tracing::info;

/// TLS sessions a listener remembers for resumption by session ID (TLS 1.2); TLS 1.3
/// resumes with tickets, which need no memory here.
const SESSION_CACHE: usize = 4096;

/// The TLS of one listener (none: a plain listener), swappable in place.
pub struct ServerTls {
    /// The listener's address, for the expiry metric's labels.
    name: String,
    current: ArcSwapOption<Active>,
}

/// What resumes sessions: kept across a certificate rotation, so clients resume after it
/// too; made anew when the client certificate settings change, so that a session opened
/// with a certificate the new CA or CRL refuses cannot be resumed.
#[derive(Clone)]
struct Resumption {
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions + Send + Sync>,
}

impl Resumption {
    fn new() -> Result<Resumption, ProxyError> {
        Ok(Resumption {
            ticketer: rustls::crypto::ring::Ticketer::new().map_err(|e| ProxyError::Tls(e.to_string()))?,
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
        })
    }
}

/// What new handshakes use now.
pub struct Active {
    pub acceptor: TlsAcceptor,
    pub handshake_timeout: Duration,
    settings: ListenerTls,
    /// Of every file's content, to notice a change under the same path.
    digest: [u8; 32],
    /// Of the client CA and CRL files' content.
    client_digest: [u8; 32],
    certs: Vec<CertExpiry>,
    resumption: Resumption,
}

/// What a reload does to a listener's TLS, decided before anything changes.
pub enum Change {
    Same,
    To(Option<Arc<Active>>),
}

impl ServerTls {
    pub fn new(name: &str) -> Result<ServerTls, ProxyError> {
        Ok(ServerTls {
            name: name.to_owned(),
            current: ArcSwapOption::empty(),
        })
    }

    /// What new handshakes use; None on a plain listener.
    pub fn current(&self) -> Option<Arc<Active>> {
        self.current.load_full()
    }

    /// Reads the files of `settings` and builds what to swap in, changing nothing yet: Same
    /// when neither the settings nor any file's content changed. Errors name `at` (the
    /// listener's key, `listener[0].tls`).
    pub fn prepare(&self, settings: Option<&ListenerTls>, at: &str) -> Result<Change, ProxyError> {
        let old = self.current.load();
        let Some(t) = settings else {
            return Ok(if old.is_none() { Change::Same } else { Change::To(None) });
        };
        let files = Files::read(t, at)?;
        let resumption = match old.as_ref() {
            Some(old) if old.settings == *t && old.digest == files.digest => return Ok(Change::Same),
            Some(old) if old.settings.client == t.client && old.client_digest == files.client_digest => {
                old.resumption.clone()
            }
            _ => Resumption::new()?,
        };
        self.build(t, files, resumption, at)
            .map(|a| Change::To(Some(Arc::new(a))))
    }

    /// Swaps in a prepared change.
    pub fn install(&self, change: Change) {
        let Change::To(new) = change else { return };
        match &new {
            Some(a) => {
                expiry::replace(&self.owner(), a.certs.clone());
                if self.current.load().is_some() {
                    info!(listener = %self.name, "listener TLS settings replaced (new handshakes only)");
                }
            }
            None => expiry::remove(&self.owner()),
        }
        self.current.store(new);
    }

    fn owner(&self) -> String {
        format!("listener:{}", self.name)
    }

    fn build(&self, t: &ListenerTls, files: Files, resumption: Resumption, at: &str) -> Result<Active, ProxyError> {
        let versions: &[&'static rustls::SupportedProtocolVersion] = match t.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| ProxyError::Tls(format!("{at}.min_version: {e}")))?;
        let mut certs = Vec::new();
        if let Some(leaf) = files.chain.first() {
            certs.extend(CertExpiry::of("listener", &self.name, leaf));
        }
        let builder = match (&t.client, files.client_ca) {
            (Some(client), Some(cas)) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in cas {
                    let subject = CertExpiry::of("client_ca", "", &ca).map(|c| c.subject);
                    if let Some(s) = subject {
                        certs.extend(CertExpiry::of("client_ca", &format!("{}/{s}", self.name), &ca));
                    }
                    roots
                        .add(ca)
                        .map_err(|e| ProxyError::Tls(format!("{at}.client_ca: {e}")))?;
                }
                // A CRL past its nextUpdate is refused, not trusted forever: a broken CRL feed
                // must not keep accepting certificates revoked since.
                let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .with_crls(files.crls)
                    .enforce_revocation_expiration();
                if client.auth == ClientAuth::Optional {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| ProxyError::Tls(format!("{at}.client_ca: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(files.chain, files.key)
            .map_err(|e| ProxyError::Tls(format!("{at}.key: {e} (does it belong to the certificate?)")))?;
        cfg.session_storage = resumption.sessions.clone();
        cfg.ticketer = resumption.ticketer.clone();
        Ok(Active {
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
            handshake_timeout: t.handshake_timeout,
            settings: t.clone(),
            digest: files.digest,
            client_digest: files.client_digest,
            certs,
            resumption,
        })
    }
}

impl Drop for ServerTls {
    fn drop(&mut self) {
        expiry::remove(&self.owner());
    }
}

/// The content of a listener's TLS files, read once and parsed.
struct Files {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<Vec<CertificateDer<'static>>>,
    crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
    digest: [u8; 32],
    client_digest: [u8; 32],
}

impl Files {
    fn read(t: &ListenerTls, at: &str) -> Result<Files, ProxyError> {
        let (mut digest, mut client_digest) = (Sha256::new(), Sha256::new());
        let mut take = |what: &str, path: &std::path::Path| -> Result<Vec<u8>, ProxyError> {
            let bytes = read(path).map_err(|e| keyed(format!("{at}.{what}"), e))?;
            let len = (bytes.len() as u64).to_be_bytes();
            digest.update(len);
            digest.update(&bytes);
            if what.starts_with("client") {
                client_digest.update(len);
                client_digest.update(&bytes);
            }
            Ok(bytes)
        };
        let (chain, key) = match &t.source {
            CertSource::Files { cert, key } => {
                let c = take("cert", cert)?;
                let k = take("key", key)?;
                (
                    parse_certs(cert, &c).map_err(|e| keyed(format!("{at}.cert"), e))?,
                    parse_key(key, &k).map_err(|e| keyed(format!("{at}.key"), e))?,
                )
            }
            CertSource::SelfSigned => {
                let (c, k) = super::self_signed()?;
                (
                    parse_certs(std::path::Path::new("(self-signed)"), c.as_bytes())?,
                    parse_key(std::path::Path::new("(self-signed)"), k.as_bytes())?,
                )
            }
        };
        let (client_ca, crls) = match &t.client {
            Some(client) => {
                let bytes = take("client_ca", &client.ca)?;
                let cas = parse_certs(&client.ca, &bytes).map_err(|e| keyed(format!("{at}.client_ca"), e))?;
                let mut crls = Vec::new();
                for (j, path) in client.crls.iter().enumerate() {
                    let what = format!("client_crl[{j}]");
                    let bytes = take(&what, path)?;
                    crls.extend(parse_crls(path, &bytes).map_err(|e| keyed(format!("{at}.{what}"), e))?);
                }
                (Some(cas), crls)
            }
            None => (None, Vec::new()),
        };
        Ok(Files {
            chain,
            key,
            client_ca,
            crls,
            digest: digest.finalize().into(),
            client_digest: client_digest.finalize().into(),
        })
    }
}
