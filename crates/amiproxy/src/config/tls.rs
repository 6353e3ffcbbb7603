//! The TLS keys checked: a listener's `tls` table (certificate, client certificates,
//! handshake settings) and an upstream's TLS keys (CA, pins, client certificate). Files are
//! only checked to exist here; their content is read (and a broken one refused under its
//! key) when the TLS configs are built, at start and at every reload.

use super::check::{chosen, Bad};
use super::raw::{RawListenerTls, RawUpstream};
use super::{CertSource, ClientAuth, ClientCerts, ListenerTls, MinVersion, UpstreamTls};
use base64::Engine;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A SHA-256 digest written as hex (64 digits; `:` and spaces between them are ignored, as
/// `openssl x509 -fingerprint -sha256` prints them) or as base64 (as HPKP-style SPKI pins).
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    let mut out = [0u8; 32];
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        return Some(out);
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    (bytes.len() == 32).then(|| {
        out.copy_from_slice(&bytes);
        out
    })
}

fn exists(path: &Path, key: String, bad: Bad) {
    if !path.exists() {
        bad(key, format!("{} does not exist", path.display()));
    }
}

/// `listener[i].tls`.
pub(super) fn listener_tls(
    prefix: &str,
    t: &RawListenerTls,
    resolve: &dyn Fn(&Path) -> PathBuf,
    bad: Bad,
) -> Option<ListenerTls> {
    let key = |k: &str| format!("{prefix}.{k}");
    let source = match (t.self_signed, &t.cert, &t.key) {
        (true, None, None) => CertSource::SelfSigned,
        (false, Some(c), Some(k)) => {
            let (cert, k2) = (resolve(c), resolve(k));
            exists(&cert, key("cert"), bad);
            exists(&k2, key("key"), bad);
            CertSource::Files { cert, key: k2 }
        }
        _ => {
            bad(
                prefix.to_owned(),
                "give both cert and key, or self_signed = true".into(),
            );
            return None;
        }
    };
    let auth = match &t.client_auth {
        Some(c) => chosen(c, || key("client_auth"), bad),
        None => Some(ClientAuth::Required),
    };
    let client = match (&t.client_ca, auth) {
        (Some(ca), Some(auth)) => {
            let ca = resolve(ca);
            exists(&ca, key("client_ca"), bad);
            let crls: Vec<PathBuf> = t.client_crl.iter().map(|p| resolve(p)).collect();
            for (j, crl) in crls.iter().enumerate() {
                exists(crl, key(&format!("client_crl[{j}]")), bad);
            }
            Some(ClientCerts { ca, auth, crls })
        }
        (None, _) if t.client_auth.is_some() || !t.client_crl.is_empty() => {
            bad(
                key("client_ca"),
                "client_auth and client_crl need client_ca (the CA client certificates chain to)".into(),
            );
            None
        }
        _ => None,
    };
    if !(t.handshake_timeout_secs > 0.0 && t.handshake_timeout_secs <= 300.0) {
        bad(key("handshake_timeout_secs"), "must be between 0 and 300".into());
    }
    let min_version = match &t.min_version {
        Some(v) => chosen(v, || key("min_version"), bad).unwrap_or(MinVersion::Tls12),
        None => MinVersion::Tls12,
    };
    Some(ListenerTls {
        source,
        client,
        handshake_timeout: Duration::from_secs_f64(t.handshake_timeout_secs.clamp(0.001, 300.0)),
        min_version,
    })
}

/// An `[[upstream]]`'s TLS keys; None for a plain link.
pub(super) fn upstream_tls(
    u: &RawUpstream,
    key: &dyn Fn(&str) -> String,
    resolve: &dyn Fn(&Path) -> PathBuf,
    bad: Bad,
) -> Option<UpstreamTls> {
    let mut pins = Vec::new();
    for (j, p) in u.pin_sha256.iter().enumerate() {
        match parse_sha256(p) {
            Some(d) => pins.push(d),
            None => bad(
                key(&format!("pin_sha256[{j}]")),
                format!("`{p}` is not a SHA-256 digest (64 hex digits or 44 base64 characters)"),
            ),
        }
    }
    let client_cert = match (&u.client_cert, &u.client_key) {
        (Some(c), Some(k)) => {
            let (c, k) = (resolve(c), resolve(k));
            exists(&c, key("client_cert"), bad);
            exists(&k, key("client_key"), bad);
            Some((c, k))
        }
        (None, None) => None,
        _ => {
            bad(key("client_cert"), "give both client_cert and client_key".into());
            None
        }
    };
    let ca = u.ca.as_deref().map(resolve);
    if let Some(ca) = &ca {
        exists(ca, key("ca"), bad);
    }
    let on = u.tls || ca.is_some() || !u.pin_sha256.is_empty() || client_cert.is_some();
    on.then(|| UpstreamTls {
        ca,
        server_name: u.server_name.clone(),
        pins,
        client_cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_read_as_hex_or_base64() {
        let hex = "AB:".repeat(31) + "AB";
        assert_eq!(parse_sha256(&hex), Some([0xab; 32]));
        assert_eq!(parse_sha256(&"ab".repeat(32)), Some([0xab; 32]));
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_sha256(&b64), Some([7; 32]));
        assert_eq!(parse_sha256("abc"), None);
        assert_eq!(parse_sha256(&"zz".repeat(32)), None);
    }
}
