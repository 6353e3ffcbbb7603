//! The limits one process keeps by itself (governor): actions per second per user and per
//! connection, failed logins per source address (then the address is refused for a while),
//! client connections per user and in total. Keyed state is pruned so memory does not grow
//! with the number of addresses ever seen. With `[redis]` these are what a replica falls
//! back on while Redis cannot be reached.

use super::CHALLENGES_PER_FAILED_LOGIN;
use crate::config::{LimitsConfig, UserConfig};
use arc_swap::ArcSwap;
use dashmap::DashMap;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// A user's shared action rate: its limiter here, and the figures the Redis layer needs.
pub(super) struct UserRate {
    pub(super) limiter: DefaultDirectRateLimiter,
    pub(super) per_sec: u32,
    pub(super) burst: u32,
}

pub(super) struct Local {
    /// Swapped on reload (rates per user and per connection can change).
    per_user: ArcSwap<HashMap<String, Arc<UserRate>>>,
    conn_quota: ArcSwap<Option<Quota>>,
    failed: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// MD5 challenges handed out per address: [`CHALLENGES_PER_FAILED_LOGIN`] times the
    /// failed-login budget, so fetching challenges is not free either.
    challenges: Option<DefaultKeyedRateLimiter<IpAddr>>,
    banned: DashMap<IpAddr, Instant>,
    ban: Duration,
    user_conns: Arc<DashMap<String, usize>>,
    total: Option<Arc<Semaphore>>,
}

/// One client connection's place under `limits.max_connections`; dropping it frees it.
pub enum ConnectionSlot {
    Unlimited,
    Held(OwnedSemaphorePermit),
}

/// A user's connection slot in this process; dropping it frees the slot.
pub(super) struct LocalUserSlot {
    map: Arc<DashMap<String, usize>>,
    user: String,
}

impl Drop for LocalUserSlot {
    fn drop(&mut self) {
        if let Some(mut n) = self.map.get_mut(&self.user) {
            *n = n.saturating_sub(1);
        }
        self.map.remove_if(&self.user, |_, n| *n == 0);
    }
}

impl Local {
    pub(super) fn new(cfg: &LimitsConfig, users: &[UserConfig]) -> Local {
        let per_user = ArcSwap::from_pointee(Self::user_limiters(users));
        let per_window = |n: u32| {
            NonZeroU32::new(n).map(|n| {
                let period = cfg.failed_login_window / n.get();
                let q = Quota::with_period(period.max(Duration::from_millis(1)))
                    .unwrap_or_else(|| Quota::per_second(n))
                    .allow_burst(n);
                RateLimiter::keyed(q)
            })
        };
        let failed = per_window(cfg.failed_logins);
        let challenges = per_window(cfg.failed_logins.saturating_mul(CHALLENGES_PER_FAILED_LOGIN));
        Local {
            per_user,
            conn_quota: ArcSwap::from_pointee(quota(cfg.actions_per_sec, cfg.burst)),
            failed,
            challenges,
            banned: DashMap::new(),
            ban: cfg.ban,
            user_conns: Arc::new(DashMap::new()),
            total: (cfg.max_connections > 0).then(|| Arc::new(Semaphore::new(cfg.max_connections))),
        }
    }

    fn user_limiters(users: &[UserConfig]) -> HashMap<String, Arc<UserRate>> {
        users
            .iter()
            .filter_map(|u| {
                let q = quota(u.actions_per_sec, u.burst)?;
                let rate = UserRate {
                    limiter: RateLimiter::direct(q),
                    per_sec: u.actions_per_sec,
                    burst: u.burst.max(1),
                };
                Some((u.name.clone(), Arc::new(rate)))
            })
            .collect()
    }

    /// A reload: new per-user and per-connection rates (counters start afresh). The
    /// failed-login and total-connection settings keep their start-up values.
    pub(super) fn update(&self, cfg: &LimitsConfig, users: &[UserConfig]) {
        self.per_user.store(Arc::new(Self::user_limiters(users)));
        self.conn_quota.store(Arc::new(quota(cfg.actions_per_sec, cfg.burst)));
    }

    /// A limiter for one new connection, when a per-connection rate is configured.
    pub(super) fn connection_limiter(&self) -> Option<DefaultDirectRateLimiter> {
        self.conn_quota.load().map(RateLimiter::direct)
    }

    /// The user's action rate, when it has one.
    pub(super) fn user_rate(&self, user: &str) -> Option<Arc<UserRate>> {
        self.per_user.load().get(user).cloned()
    }

    pub(super) fn is_banned(&self, ip: IpAddr) -> bool {
        matches!(self.banned.get(&ip), Some(until) if *until > Instant::now())
    }

    /// Whether failed logins are counted at all (`limits.failed_logins` > 0).
    pub(super) fn counts_failures(&self) -> bool {
        self.failed.is_some()
    }

    /// Counts a failed login; past the limit the address is refused for the ban time.
    pub(super) fn login_failed(&self, ip: IpAddr) {
        if let Some(l) = &self.failed {
            if l.check_key(&ip).is_err() {
                self.banned.insert(ip, Instant::now() + self.ban);
                tracing::warn!(%ip, ban_secs = self.ban.as_secs(), "too many failed logins; address refused for a while");
            }
        }
    }

    /// Counts an MD5 challenge handed out; past the limit the address is refused for the
    /// ban time, as after failed logins.
    pub(super) fn challenge_issued(&self, ip: IpAddr) {
        if let Some(l) = &self.challenges {
            if l.check_key(&ip).is_err() {
                self.banned.insert(ip, Instant::now() + self.ban);
                tracing::warn!(%ip, ban_secs = self.ban.as_secs(), "too many login challenges; address refused for a while");
            }
        }
    }

    /// A slot among the total client connections, or None when the proxy is full.
    pub(super) fn connection_slot(&self) -> Option<ConnectionSlot> {
        match &self.total {
            None => Some(ConnectionSlot::Unlimited),
            Some(s) => s.clone().try_acquire_owned().ok().map(ConnectionSlot::Held),
        }
    }

    /// A slot among the user's connections, or None when the user is at its limit.
    pub(super) fn user_slot(&self, user: &str, max: usize) -> Option<LocalUserSlot> {
        let mut n = self.user_conns.entry(user.to_owned()).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(LocalUserSlot {
            map: self.user_conns.clone(),
            user: user.to_owned(),
        })
    }

    pub(super) fn tracked_addresses(&self) -> usize {
        self.failed.as_ref().map_or(0, |l| l.len())
            + self.challenges.as_ref().map_or(0, |l| l.len())
            + self.banned.len()
    }

    /// Forgets addresses whose counters have refilled and bans that have expired.
    pub(super) fn prune(&self) {
        for l in [&self.failed, &self.challenges].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        let now = Instant::now();
        self.banned.retain(|_, until| *until > now);
        self.banned.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            max_connections: 2,
            actions_per_sec: 0,
            burst: 0,
            failed_logins: 3,
            failed_login_window: Duration::from_secs(60),
            ban: Duration::from_secs(60),
        }
    }

    #[test]
    fn failed_logins_ban_then_prune() {
        let l = Local::new(&cfg(), &[]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            l.login_failed(ip);
            assert!(!l.is_banned(ip));
        }
        l.login_failed(ip);
        assert!(l.is_banned(ip));
        assert!(!l.is_banned("10.0.0.2".parse().unwrap()));
        for i in 0..1000u32 {
            l.login_failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.tracked_addresses() > 1000);
    }

    #[test]
    fn pruning_forgets_addresses_whose_counters_refilled() {
        let mut c = cfg();
        c.failed_login_window = Duration::from_millis(3);
        c.ban = Duration::from_millis(1);
        let l = Local::new(&c, &[]);
        for i in 0..1000u32 {
            l.login_failed(IpAddr::from(i.to_be_bytes()));
            l.challenge_issued(IpAddr::from((i + 5000).to_be_bytes()));
        }
        assert_eq!(l.tracked_addresses(), 2000);
        // Poll with a deadline: the counters refill after the (3 ms) window.
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            l.prune();
            if l.tracked_addresses() == 0 {
                break;
            }
            assert!(Instant::now() < end, "still tracking {}", l.tracked_addresses());
            std::thread::yield_now();
        }
    }

    #[test]
    fn connection_and_user_slots() {
        let l = Local::new(&cfg(), &[]);
        let a = l.connection_slot().unwrap();
        let _b = l.connection_slot().unwrap();
        assert!(l.connection_slot().is_none());
        drop(a);
        assert!(l.connection_slot().is_some());
        let s1 = l.user_slot("u", 1).unwrap();
        assert!(l.user_slot("u", 1).is_none());
        drop(s1);
        assert!(l.user_slot("u", 1).is_some());
    }

    #[test]
    fn connection_rate() {
        let mut c = cfg();
        c.actions_per_sec = 1;
        c.burst = 2;
        let l = Local::new(&c, &[]);
        let conn = l.connection_limiter().unwrap();
        assert!(conn.check().is_ok());
        assert!(conn.check().is_ok());
        assert!(conn.check().is_err());
        assert!(l.user_rate("u").is_none());
    }
}
