//! How long each loaded certificate has left: listeners' certificates and client CAs when
//! they are loaded, upstreams' certificates as seen at each handshake. Read at scrape time
//! (`amiproxy_tls_cert_expiry_seconds`), listed by `/health`, and warned about in the log
//! when fewer than [`WARN_BELOW`] remain: when loaded, and daily ([`warn_soon`]).

use crate::sync::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::warn;

/// A certificate closer than this to its end is warned about.
pub const WARN_BELOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the warnings are repeated while the certificates stay the same.
pub const WARN_EVERY: Duration = Duration::from_secs(24 * 3600);

/// One loaded certificate's end.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertExpiry {
    /// `listener`, `client_ca` or `upstream`.
    pub kind: &'static str,
    /// The listener's address, `<listener address>/<CA subject>` or the upstream's name.
    pub name: String,
    pub subject: String,
    /// notAfter, in seconds since the epoch.
    pub not_after: i64,
}

impl CertExpiry {
    /// From a certificate's DER; None when it cannot be parsed.
    pub fn of(kind: &'static str, name: &str, der: &[u8]) -> Option<CertExpiry> {
        let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = x
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| x.subject().to_string());
        Some(CertExpiry {
            kind,
            name: name.to_owned(),
            subject,
            not_after: x.validity().not_after.timestamp(),
        })
    }

    /// Seconds from now to notAfter (negative once expired).
    pub fn seconds_left(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.not_after - now
    }

    fn warn_if_soon(&self) {
        let left = self.seconds_left();
        if left < WARN_BELOW.as_secs() as i64 {
            warn!(
                kind = self.kind,
                name = %self.name,
                subject = %self.subject,
                days_left = left / 86_400,
                "certificate expires soon (or has expired): renew it"
            );
        }
    }
}

/// Every certificate loaded, by who loaded it (`listener:<addr>`, `upstream:<name>`).
static LOADED: Mutex<BTreeMap<String, Vec<CertExpiry>>> = Mutex::new(BTreeMap::new());

/// Sets what `owner` has loaded; a certificate new to it that ends soon is warned about.
pub fn replace(owner: &str, certs: Vec<CertExpiry>) {
    let mut loaded = lock(&LOADED);
    let before = loaded.get(owner);
    for c in &certs {
        if before.is_none_or(|b| !b.contains(c)) {
            c.warn_if_soon();
        }
    }
    loaded.insert(owner.to_owned(), certs);
}

/// Forgets what `owner` loaded (a listener closed, an upstream removed).
pub fn remove(owner: &str) {
    lock(&LOADED).remove(owner);
}

/// Every loaded certificate, by owner.
pub fn all() -> Vec<CertExpiry> {
    lock(&LOADED).values().flatten().cloned().collect()
}

/// Labels of the metric reported so far: a certificate no longer loaded (its listener
/// closed, its upstream removed) is reported as NaN, as the recorder cannot drop a series,
/// so that no alert keeps firing on a number that is no longer true.
static REPORTED: Mutex<BTreeSet<(&'static str, String)>> = Mutex::new(BTreeSet::new());

/// The metric's values now: kind, name, seconds left (NaN for a certificate gone).
pub fn for_metrics() -> Vec<(&'static str, String, f64)> {
    let now: Vec<(&'static str, String, f64)> = all()
        .into_iter()
        .map(|c| (c.kind, c.name.clone(), c.seconds_left() as f64))
        .collect();
    let mut reported = lock(&REPORTED);
    let mut out = now.clone();
    for (kind, name) in reported.iter() {
        if !now.iter().any(|(k, n, _)| k == kind && n == name) {
            out.push((kind, name.clone(), f64::NAN));
        }
    }
    reported.extend(now.into_iter().map(|(k, n, _)| (k, n)));
    out
}

/// Warns about every loaded certificate that ends soon (run daily).
pub fn warn_soon() {
    for c in all() {
        c.warn_if_soon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_not_after() {
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 6);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let e = CertExpiry::of("listener", "a", cert.der()).unwrap();
        assert_eq!(e.not_after, 1_935_792_000);
        assert!(e.seconds_left() > 0);
        replace("test:a", vec![e.clone()]);
        assert!(all().contains(&e));
        remove("test:a");
        assert!(!all().contains(&e));
    }
}
