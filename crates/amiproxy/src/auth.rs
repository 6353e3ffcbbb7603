//! Checking a client's credentials against the proxy's own users.

use crate::config::{CertBinding, Secret, UserConfig};
use crate::tls::PeerCert;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use md5::{Digest, Md5};

/// Compares without an early exit, so timing does not tell how much of a secret matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Plain login. Argon2 verification is slow on purpose: call it off the async threads.
pub fn check_plain(user: &UserConfig, secret: &str) -> bool {
    match &user.secret {
        Secret::Plain(s) => constant_time_eq(s.as_bytes(), secret.as_bytes()),
        Secret::Argon2(h) => match PasswordHash::new(h) {
            Ok(hash) => Argon2::default().verify_password(secret.as_bytes(), &hash).is_ok(),
            Err(_) => false,
        },
        Secret::None => false,
    }
}

/// Whether the client certificate of the connection (None: none shown) is the one `binding`
/// names: every part the binding gives must match.
pub fn cert_matches(binding: &CertBinding, peer: Option<&PeerCert>) -> bool {
    let Some(peer) = peer else {
        return false;
    };
    let subject = binding
        .subject
        .as_ref()
        .is_none_or(|s| peer.common_name.as_deref() == Some(s.as_str()));
    let san = binding
        .san
        .as_ref()
        .is_none_or(|s| peer.alt_names.iter().any(|n| n.eq_ignore_ascii_case(s)));
    let sha = binding
        .sha256
        .as_ref()
        .is_none_or(|d| constant_time_eq(d, &peer.sha256));
    subject && san && sha
}

/// Verifies `secret` against a hash no one knows the secret of, at the cost of a real user's:
/// a login for an unknown user costs what one for an argon2 user does.
pub fn check_dummy(secret: &str) -> bool {
    static DUMMY: std::sync::LazyLock<Option<String>> = std::sync::LazyLock::new(|| {
        let mut random = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut random);
        hash_secret(&String::from_utf8_lossy(&random)).ok()
    });
    if let Some(hash) = DUMMY.as_deref().and_then(|h| PasswordHash::new(h).ok()) {
        // The outcome is ignored: the work is the point.
        let _ = Argon2::default().verify_password(secret.as_bytes(), &hash);
    }
    false
}

/// MD5 challenge login: `key` must be lowercase hex md5(challenge + secret).
pub fn check_md5(user: &UserConfig, challenge: &str, key: &str) -> bool {
    let Secret::Plain(secret) = &user.secret else {
        return false;
    };
    if !user.allow_md5 {
        return false;
    }
    constant_time_eq(
        md5_hex(challenge, secret).as_bytes(),
        key.to_ascii_lowercase().as_bytes(),
    )
}

pub fn md5_hex(challenge: &str, secret: &str) -> String {
    let mut h = Md5::new();
    h.update(challenge.as_bytes());
    h.update(secret.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An argon2id PHC string for `secret` (for `amiproxy hash-secret`).
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::Classes;

    fn user(secret: Secret) -> UserConfig {
        UserConfig {
            name: "u".into(),
            secret,
            read: Classes::ALL,
            write: Classes::ALL,
            allow_md5: true,
            policy: Default::default(),
            actions_per_sec: 0,
            burst: 0,
            max_connections: 0,
            upstream_account: None,
            console: false,
            cert: None,
        }
    }

    #[test]
    fn md5_matches_the_transcript() {
        // 10_challenge_md5_login: challenge 104755524, secret admin-secret.
        assert_eq!(md5_hex("104755524", "admin-secret"), "8aab36aa5bde3d81c5964af3b51002b9");
        let u = user(Secret::Plain("admin-secret".into()));
        assert!(check_md5(&u, "104755524", "8AAB36AA5BDE3D81C5964AF3B51002B9"));
        assert!(!check_md5(&u, "104755525", "8aab36aa5bde3d81c5964af3b51002b9"));
    }

    #[test]
    fn plain_and_argon2() {
        assert!(check_plain(&user(Secret::Plain("a".into())), "a"));
        assert!(!check_plain(&user(Secret::Plain("a".into())), "b"));
        let h = hash_secret("pw").unwrap();
        let u = user(Secret::Argon2(h));
        assert!(check_plain(&u, "pw"));
        assert!(!check_plain(&u, "pw2"));
        assert!(!check_md5(&u, "1", &md5_hex("1", "pw")));
    }

    #[test]
    fn certificate_bindings_match_every_part_given() {
        let peer = PeerCert {
            sha256: [1; 32],
            common_name: Some("app1".into()),
            alt_names: vec!["app1.example.com".into()],
        };
        let binding = |subject: Option<&str>, san: Option<&str>, sha256: Option<[u8; 32]>| CertBinding {
            subject: subject.map(str::to_owned),
            san: san.map(str::to_owned),
            sha256,
            login: crate::config::CertLogin::Certificate,
        };
        assert!(cert_matches(&binding(Some("app1"), None, None), Some(&peer)));
        assert!(cert_matches(
            &binding(None, Some("APP1.example.com"), Some([1; 32])),
            Some(&peer)
        ));
        assert!(!cert_matches(&binding(Some("app1"), None, Some([2; 32])), Some(&peer)));
        assert!(!cert_matches(&binding(Some("app2"), None, None), Some(&peer)));
        assert!(!cert_matches(&binding(Some("app1"), None, None), None));
    }
}

/// Argon2 secrets verified lately, so that a client that logs in again and again (an HTTP API
/// caller: one login per request; an app that reconnects) costs one argon2 verification a
/// minute instead of one per login, and cannot keep the verification slots every login
/// shares busy. Only successes are kept, as a SHA-256 of the user, their configured hash and
/// the presented secret: a changed secret in the config misses, and the presented secret is
/// never held. A wrong secret is verified in full every time, as before.
#[derive(Debug, Default)]
pub struct Verified {
    seen: dashmap::DashMap<[u8; 32], std::time::Instant>,
}

impl Verified {
    /// How long a verified secret is taken without verifying it again.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(60);
    /// Entries kept at most (the map is emptied when full: only re-verification is lost).
    pub const CAP: usize = 10_000;

    fn key(user: &UserConfig, secret: &str) -> Option<[u8; 32]> {
        use sha2::{Digest, Sha256};
        let Secret::Argon2(hash) = &user.secret else {
            return None;
        };
        let mut h = Sha256::new();
        for part in [user.name.as_bytes(), hash.as_bytes(), secret.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Some(h.finalize().into())
    }

    /// Whether this user's argon2 secret was verified with this exact secret lately.
    pub fn recently(&self, user: &UserConfig, secret: &str) -> bool {
        Self::key(user, secret)
            .and_then(|k| self.seen.get(&k).map(|t| t.elapsed() < Self::TTL))
            .unwrap_or(false)
    }

    /// Remembers a successful argon2 verification.
    pub fn remember(&self, user: &UserConfig, secret: &str) {
        if let Some(k) = Self::key(user, secret) {
            if self.seen.len() >= Self::CAP {
                self.seen.retain(|_, t| t.elapsed() < Self::TTL);
                if self.seen.len() >= Self::CAP {
                    self.seen.clear();
                }
            }
            self.seen.insert(k, std::time::Instant::now());
        }
    }
}

#[cfg(test)]
mod verified_tests {
    use super::*;

    fn argon_user(secret: &str) -> UserConfig {
        let mut u = tests_user();
        u.secret = Secret::Argon2(hash_secret(secret).unwrap());
        u
    }

    fn tests_user() -> UserConfig {
        crate::config::Config::from_toml(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"p\"\nkind = \"simulated\"\n[[user]]\nname = \"u\"\nsecret = \"x\"\n",
            std::path::Path::new("."),
        )
        .unwrap()
        .users
        .remove(0)
    }

    #[test]
    fn only_the_same_user_hash_and_secret_hit() {
        let v = Verified::default();
        let u = argon_user("right");
        assert!(!v.recently(&u, "right"));
        v.remember(&u, "right");
        assert!(v.recently(&u, "right"));
        assert!(!v.recently(&u, "wrong"));
        // The secret changed in the config: a new hash, no hit.
        assert!(!v.recently(&argon_user("right"), "right"));
        // Plain secrets are cheap and never kept.
        let plain = tests_user();
        v.remember(&plain, "x");
        assert!(!v.recently(&plain, "x"));
    }
}
