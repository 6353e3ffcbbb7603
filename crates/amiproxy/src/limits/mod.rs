//! Rate and count limits: actions per second per user and per connection, failed logins per
//! source address (then the address is refused for a while), client connections per user
//! and in total.
//!
//! `local` keeps them in this process. With `[redis]`, the limits that must hold across
//! replicas live in Redis (`shared`): failed logins and bans per address, each user's action
//! rate, each user's connections. The rest stays local on purpose: the per-connection rate
//! (a connection lives on one replica), the proxy's total `max_connections` (a bound on this
//! process's own resources) and the MD5 challenge budget (a per-process guard against
//! challenge floods; a ban it causes is local too). When Redis cannot be asked, each call
//! falls back on the local limits or is refused, as `redis.on_unreachable` says.

mod breaker;
mod local;
mod scripts;
mod shared;
pub mod turns;

use crate::config::{LimitsConfig, OnUnreachable, RedisConfig, UserConfig};
use governor::DefaultDirectRateLimiter;
pub use local::ConnectionSlot;
use local::{Local, LocalUserSlot};
use shared::Shared;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Challenges an address may fetch per failed login it is allowed: a client logging in by
/// MD5 needs one per connection, a guesser one per guess.
pub const CHALLENGES_PER_FAILED_LOGIN: u32 = 4;

/// The shared limits could not be asked and `redis.on_unreachable = "refuse"`: the login or
/// action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

pub struct Limits {
    local: Local,
    shared: Option<Arc<Shared>>,
    /// The failed-login settings (fixed at start-up).
    failed_logins: u32,
    failed_login_window: Duration,
    ban: Duration,
    /// Logins refused because the address was banned.
    pub banned_refusals: AtomicU64,
    /// Actions refused by a rate limit.
    pub rate_limited: AtomicU64,
    /// Logins in verification at once per address (`failed_logins` of them).
    pub turns: turns::LoginTurns,
}

/// A user's connection slot; dropping it frees the slot here and across replicas.
pub struct UserSlot {
    _local: LocalUserSlot,
    shared: Option<(Arc<Shared>, String, String)>,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        if let Some((shared, user, member)) = self.shared.take() {
            shared.release(&user, member);
        }
    }
}

impl Limits {
    /// The limits for this configuration; shared through Redis when `redis` is given.
    pub fn new(cfg: &LimitsConfig, users: &[UserConfig], redis: Option<&RedisConfig>) -> Limits {
        Limits {
            local: Local::new(cfg, users),
            shared: redis.map(|r| Arc::new(Shared::new(r))),
            failed_logins: cfg.failed_logins,
            failed_login_window: cfg.failed_login_window,
            ban: cfg.ban,
            banned_refusals: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            turns: turns::LoginTurns::new(cfg.failed_logins),
        }
    }

    /// The work the shared limits do in the background (probing Redis while it is down,
    /// refreshing this replica's connection entries), to be spawned once; None without
    /// `[redis]`.
    pub fn shared_upkeep(&self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        self.shared.clone().map(|s| s.upkeep())
    }

    /// A reload: new per-user and per-connection rates (counters start afresh here; the
    /// shared rate state is read with the new figures). The failed-login, total-connection
    /// and Redis settings keep their start-up values.
    pub fn update(&self, cfg: &LimitsConfig, users: &[UserConfig]) {
        self.local.update(cfg, users);
    }

    /// A limiter for one new connection, when a per-connection rate is configured.
    pub fn connection_limiter(&self) -> Option<DefaultDirectRateLimiter> {
        self.local.connection_limiter()
    }

    /// Redis could not be asked for `op`: counted, and Err when the config says refuse.
    fn fall_back(shared: &Shared, op: &'static str) -> Result<(), Unavailable> {
        let refuse = shared.on_unreachable == OnUnreachable::Refuse;
        crate::metrics::redis_fallback(op, if refuse { "refuse" } else { "local" });
        if refuse {
            Err(Unavailable)
        } else {
            Ok(())
        }
    }

    /// Checks the user's rate (across replicas with `[redis]`) and the connection's own;
    /// Ok(false), counted, when over.
    pub async fn allow_action(&self, user: &str, conn: Option<&DefaultDirectRateLimiter>) -> Result<bool, Unavailable> {
        let user_ok = match (self.local.user_rate(user), &self.shared) {
            (None, _) => true,
            (Some(r), None) => r.limiter.check().is_ok(),
            (Some(r), Some(s)) => match s.allow_action(user, r.per_sec, r.burst).await {
                Ok(ok) => ok,
                Err(_) => {
                    Self::fall_back(s, "action-rate")?;
                    r.limiter.check().is_ok()
                }
            },
        };
        let conn_ok = conn.is_none_or(|l| l.check().is_ok());
        let ok = user_ok && conn_ok;
        if !ok {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        Ok(ok)
    }

    /// Whether the address is banned: here (after challenges, or failures counted while
    /// Redis was away) or, with `[redis]`, by any replica.
    pub async fn is_banned(&self, ip: IpAddr) -> Result<bool, Unavailable> {
        let ip = ban_key(ip);
        let banned = self.local.is_banned(ip)
            || match &self.shared {
                Some(s) if self.local.counts_failures() => match s.is_banned(ip).await {
                    Ok(b) => b,
                    Err(_) => {
                        Self::fall_back(s, "ban-check")?;
                        false
                    }
                },
                _ => false,
            };
        if banned {
            self.banned_refusals.fetch_add(1, Ordering::Relaxed);
        }
        Ok(banned)
    }

    /// Counts a failed login; past the limit the address is refused for the ban time (on
    /// every replica with `[redis]`). Counted here when Redis cannot be asked, whatever
    /// `on_unreachable` says: there is nothing left to refuse.
    pub async fn login_failed(&self, ip: IpAddr) {
        let ip = ban_key(ip);
        if let Some(s) = self.shared.as_ref().filter(|_| self.local.counts_failures()) {
            match s
                .login_failed(ip, self.failed_logins, self.failed_login_window, self.ban)
                .await
            {
                Ok(banned) => {
                    if banned {
                        tracing::warn!(%ip, ban_secs = self.ban.as_secs(), "too many failed logins; address refused for a while on every replica");
                    }
                    return;
                }
                Err(_) => {
                    crate::metrics::redis_fallback("login-failed", "local");
                }
            }
        }
        self.local.login_failed(ip);
    }

    /// Counts an MD5 challenge handed out (here only); past the limit the address is refused
    /// for the ban time, as after failed logins.
    pub fn challenge_issued(&self, ip: IpAddr) {
        self.local.challenge_issued(ban_key(ip));
    }

    /// A slot among the total client connections, or None when the proxy is full.
    pub fn connection_slot(&self) -> Option<ConnectionSlot> {
        self.local.connection_slot()
    }

    /// A slot among the user's connections (across replicas with `[redis]`), or Ok(None)
    /// when the user is at its limit. This replica's own count is checked first, so it also
    /// bounds the user here while Redis is away.
    pub async fn user_slot(&self, user: &str, max: usize) -> Result<Option<UserSlot>, Unavailable> {
        let Some(local) = self.local.user_slot(user, max) else {
            return Ok(None);
        };
        let shared = match &self.shared {
            Some(s) if max > 0 => s,
            _ => {
                return Ok(Some(UserSlot {
                    _local: local,
                    shared: None,
                }))
            }
        };
        let member = shared.register(user);
        // The slot exists from here: whatever ends this call (a refusal, or the login's
        // deadline dropping this future while Redis answers) releases the entry here and in
        // Redis, so no entry is left to be refreshed forever.
        let slot = UserSlot {
            _local: local,
            shared: Some((shared.clone(), user.to_owned(), member.clone())),
        };
        let admitted = match shared.acquire(user, &member, max).await {
            Ok(admitted) => Ok(admitted),
            Err(_) => Self::fall_back(shared, "user-connections").map(|()| true),
        };
        if admitted != Ok(true) {
            drop(slot);
            return admitted.map(|_| None);
        }
        Ok(Some(slot))
    }

    pub fn tracked_addresses(&self) -> usize {
        self.local.tracked_addresses()
    }

    /// Forgets addresses whose counters have refilled and bans that have expired.
    pub fn prune(&self) {
        self.local.prune();
    }
}

/// The address failed logins and challenges are counted against: an IPv4 address, or an
/// IPv6 address's /64, which one subscriber usually holds whole (counting each of its 2^64
/// addresses apart would give it as many guesses).
pub fn ban_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_subscriber_is_one_address_to_bans() {
        let key = |s: &str| ban_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_eq!(key("10.0.0.1").to_string(), "10.0.0.1");
    }
    use crate::config::RedisConfig;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            max_connections: 0,
            actions_per_sec: 0,
            burst: 0,
            failed_logins: 2,
            failed_login_window: Duration::from_secs(60),
            ban: Duration::from_secs(60),
        }
    }

    /// A Redis nobody listens on: port 1 on loopback refuses at once.
    fn unreachable(on: OnUnreachable) -> RedisConfig {
        RedisConfig {
            url: "redis://127.0.0.1:1/0".into(),
            key_prefix: "t:".into(),
            timeout: Duration::from_millis(50),
            on_unreachable: on,
        }
    }

    /// The local limits at work: three failed logins ban the address, and a cap of one
    /// connection holds until the slot is given back.
    async fn local_limits_decide(l: &Limits) {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.is_banned(ip).await, Ok(false));
            l.login_failed(ip).await;
        }
        assert_eq!(l.is_banned(ip).await, Ok(true));
        let a = l.user_slot("u", 1).await.unwrap().unwrap();
        assert!(l.user_slot("u", 1).await.unwrap().is_none());
        drop(a);
        assert!(l.user_slot("u", 1).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn without_redis_the_local_limits_decide() {
        local_limits_decide(&Limits::new(&cfg(), &[], None)).await;
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_on_the_local_limits() {
        let r = unreachable(OnUnreachable::Local);
        let l = Limits::new(&cfg(), &[], Some(&r));
        let t = std::time::Instant::now();
        local_limits_decide(&l).await;
        // One failed attempt, then the breaker skips Redis: no call waited long.
        assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn an_unreachable_redis_refuses_when_told_to() {
        let r = unreachable(OnUnreachable::Refuse);
        let mut user_cfg = crate::config::Config::from_toml(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"p\"\nkind = \"simulated\"\n\
             [[user]]\nname = \"u\"\nsecret = \"s\"\nactions_per_sec = 5\n",
            std::path::Path::new("."),
        )
        .unwrap();
        let users = std::mem::take(&mut user_cfg.users);
        let l = Limits::new(&cfg(), &users, Some(&r));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(l.is_banned(ip).await, Err(Unavailable));
        assert!(matches!(l.user_slot("u", 1).await, Err(Unavailable)));
        assert_eq!(l.allow_action("u", None).await, Err(Unavailable));
        // A user without a rate or a connection cap needs no Redis.
        assert_eq!(l.allow_action("other", None).await, Ok(true));
        assert!(matches!(l.user_slot("other", 0).await, Ok(Some(_))));
    }
}
