//! The limits several proxy replicas share through Redis (`[redis]`): failed-login counts
//! and bans per address, each user's action rate, each user's connections.
//!
//! Every call is bounded by `redis.timeout_ms` (connecting included) and passes the
//! [`Breaker`], so a Redis that is down or slow costs a login or an action at most that
//! long, and then nothing for a cool-down. A failed call is an `Err(Skipped)`: the caller
//! falls back on its local limits or refuses (`redis.on_unreachable`). One connection is
//! multiplexed by every session; it is dropped on any error and made again on the next call
//! the breaker lets through.

use super::breaker::{Breaker, Change, COOL_DOWN};
use super::scripts::{self, Keys};
use crate::config::{OnUnreachable, RedisConfig};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisResult};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a connection entry lives in Redis unless its replica refreshes it: a replica
/// that dies (even SIGKILLed) stops counting against its users after this long.
pub(super) const CONNECTION_TTL: Duration = Duration::from_secs(30);
/// How often a replica refreshes its live connection entries (a third of their life, so
/// two refreshes may fail before an entry of a live session expires).
const REFRESH_EVERY_TICKS: u64 = 10;
/// The upkeep's tick: a probe of a Redis that is down, at most once per tick.
const TICK: Duration = Duration::from_secs(1);

/// Redis was not asked (the breaker is open) or did not answer in time or correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Skipped;

pub(super) struct Shared {
    /// None if the URL could not be read (the config check makes that unlikely): every call
    /// then fails, and `on_unreachable` decides.
    client: Option<redis::Client>,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// One connection attempt at a time; the others wait for it (within their timeout).
    connecting: tokio::sync::Mutex<()>,
    breaker: Mutex<Breaker>,
    keys: Keys,
    timeout: Duration,
    pub(super) on_unreachable: OnUnreachable,
    /// `<hostname>-<pid>-<random>`: this process's connection entries.
    replica: String,
    next_session: AtomicU64,
    /// This replica's live connection entries, by user (what the upkeep refreshes).
    live: Mutex<HashMap<String, HashSet<String>>>,
    /// Redis just came (back) up: the upkeep refreshes the entries at its next tick, so
    /// sessions let in while it was away (or lost with a restarted Redis) count again.
    refresh_due: AtomicBool,
}

/// The replica's name in connection entries: new at every start, so a restarted replica
/// never refreshes the entries of the process it replaces.
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

impl Shared {
    pub(super) fn new(cfg: &RedisConfig) -> Shared {
        let client = match redis::Client::open(cfg.url.as_str()) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(url = %cfg.redacted_url(), error = %e, "redis.url cannot be used; shared limits are unavailable");
                None
            }
        };
        crate::metrics::redis_up(false);
        let replica = replica_id();
        info!(url = %cfg.redacted_url(), %replica, "limits shared through Redis");
        Shared {
            client,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            breaker: Mutex::new(Breaker::new(COOL_DOWN)),
            keys: Keys::new(&cfg.key_prefix),
            timeout: cfg.timeout,
            on_unreachable: cfg.on_unreachable,
            replica,
            next_session: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            refresh_due: AtomicBool::new(false),
        }
    }

    fn current(&self) -> Option<MultiplexedConnection> {
        crate::sync::lock(&self.conn).clone()
    }

    /// The shared connection, made if there is none; `fresh` when it was made now.
    async fn connection(&self) -> RedisResult<(MultiplexedConnection, bool)> {
        if let Some(c) = self.current() {
            return Ok((c, false));
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok((c, false));
        }
        let Some(client) = &self.client else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "redis.url cannot be used",
            )));
        };
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        let c = client.get_multiplexed_async_connection_with_config(&cfg).await?;
        *crate::sync::lock(&self.conn) = Some(c.clone());
        Ok((c, true))
    }

    /// One exchange on the shared connection. A connection made before Redis restarted
    /// fails at its first use: then one retry on a new connection (within the same time).
    async fn exchange<T, F, Fut>(&self, f: F) -> RedisResult<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (c, fresh) = self.connection().await?;
        match f(c).await {
            Err(e) if !fresh && (e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()) => {
                *crate::sync::lock(&self.conn) = None;
                let (c, _) = self.connection().await?;
                f(c).await
            }
            other => other,
        }
    }

    /// Runs one exchange with Redis, bounded by the timeout, through the breaker.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, Skipped>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !crate::sync::lock(&self.breaker).allow(Instant::now()) {
            return Err(Skipped);
        }
        let outcome = tokio::time::timeout(self.timeout, self.exchange(f)).await;
        let error = match outcome {
            Ok(Ok(v)) => {
                let change = crate::sync::lock(&self.breaker).success();
                if change == Change::Up {
                    info!("Redis reachable: limits are shared across replicas");
                    crate::metrics::redis_up(true);
                    self.refresh_due.store(true, Ordering::Relaxed);
                }
                return Ok(v);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        // The connection may be broken or stuck: the next call that may try makes a new one.
        *crate::sync::lock(&self.conn) = None;
        crate::metrics::redis_error();
        let change = crate::sync::lock(&self.breaker).failure(Instant::now());
        if change == Change::Down {
            let then = match self.on_unreachable {
                OnUnreachable::Local => "each replica falls back on its local limits",
                OnUnreachable::Refuse => "logins and rate-limited actions are refused",
            };
            warn!(%error, "Redis unreachable: {then} until it answers again");
            crate::metrics::redis_up(false);
        } else {
            tracing::debug!(%error, "Redis call failed");
        }
        Err(Skipped)
    }

    /// Runs a script with these keys and arguments.
    async fn script<T: FromRedisValue>(
        &self,
        script: &'static redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, Skipped> {
        let invocation = || {
            let mut inv = script.prepare_invoke();
            for k in keys {
                inv.key(*k);
            }
            for a in args {
                inv.arg(*a);
            }
            inv
        };
        self.run(|mut c| {
            let inv = invocation();
            async move { inv.invoke_async(&mut c).await }
        })
        .await
    }

    pub(super) async fn is_banned(&self, ip: IpAddr) -> Result<bool, Skipped> {
        let key = self.keys.ban(ip);
        self.run(|mut c| {
            let key = key.clone();
            async move { redis::cmd("EXISTS").arg(&key).query_async::<bool>(&mut c).await }
        })
        .await
    }

    /// Counts a failed login; Ok(true) when it banned the address.
    pub(super) async fn login_failed(
        &self,
        ip: IpAddr,
        allowed: u32,
        window: Duration,
        ban: Duration,
    ) -> Result<bool, Skipped> {
        let (fails, banned) = (self.keys.failures(ip), self.keys.ban(ip));
        let window = window.as_millis().max(1).to_string();
        let ban = ban.as_millis().to_string();
        let n: i64 = self
            .script(
                &scripts::LOGIN_FAILED,
                &[&fails, &banned],
                &[&window, &allowed.to_string(), &ban],
            )
            .await?;
        Ok(n == 1)
    }

    /// One action of a user whose rate is `per_sec` with `burst`, counted across replicas.
    pub(super) async fn allow_action(&self, user: &str, per_sec: u32, burst: u32) -> Result<bool, Skipped> {
        let key = self.keys.rate(user);
        let interval = scripts::interval_us(per_sec).to_string();
        let n: i64 = self
            .script(&scripts::ACTION, &[&key], &[&interval, &burst.max(1).to_string()])
            .await?;
        Ok(n == 1)
    }

    /// A new connection entry's name, registered as live here (refreshed by the upkeep
    /// until [`Shared::release`]), whatever Redis says next: a session let in while Redis
    /// is away is counted once it is back.
    pub(super) fn register(&self, user: &str) -> String {
        let member = format!("{}:{}", self.replica, self.next_session.fetch_add(1, Ordering::Relaxed));
        crate::sync::lock(&self.live)
            .entry(user.to_owned())
            .or_default()
            .insert(member.clone());
        member
    }

    /// Takes one of the user's `max` connections across replicas for `member`; Ok(false)
    /// when they are all taken.
    pub(super) async fn acquire(&self, user: &str, member: &str, max: usize) -> Result<bool, Skipped> {
        let key = self.keys.connections(user);
        let ttl = CONNECTION_TTL.as_millis().to_string();
        let n: i64 = self
            .script(&scripts::ACQUIRE, &[&key], &[member, &max.to_string(), &ttl])
            .await?;
        Ok(n == 1)
    }

    /// Forgets a connection entry here only (Redis refused it: it holds no such entry).
    pub(super) fn forget(&self, user: &str, member: &str) {
        let mut live = crate::sync::lock(&self.live);
        if let Some(set) = live.get_mut(user) {
            set.remove(member);
            if set.is_empty() {
                live.remove(user);
            }
        }
    }

    /// Forgets a connection entry here, and in Redis when it can be told (if not, the
    /// entry expires by itself).
    pub(super) fn release(self: &Arc<Self>, user: &str, member: String) {
        self.forget(user, &member);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (me, key) = (self.clone(), self.keys.connections(user));
        rt.spawn(async move {
            let _ = me
                .run(|mut c| {
                    let mut cmd = redis::cmd("ZREM");
                    cmd.arg(&key).arg(&member);
                    async move { cmd.query_async::<i64>(&mut c).await }
                })
                .await;
        });
    }

    /// Refreshes the entries of this replica's live connections.
    async fn refresh(&self) {
        let live: Vec<(String, Vec<String>)> = crate::sync::lock(&self.live)
            .iter()
            .map(|(u, m)| (u.clone(), m.iter().cloned().collect()))
            .collect();
        let ttl = CONNECTION_TTL.as_millis().to_string();
        for (user, members) in live {
            let key = self.keys.connections(&user);
            let mut args: Vec<&str> = vec![&ttl];
            args.extend(members.iter().map(String::as_str));
            if self.script::<i64>(&scripts::REFRESH, &[&key], &args).await.is_err() {
                return;
            }
        }
    }

    /// Runs for the life of the proxy: pings Redis every tick (so the gauge and the log say
    /// when it goes or comes back even without traffic; while it is down, the breaker lets
    /// one ping through per cool-down) and refreshes the connection entries.
    pub(super) async fn upkeep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u64.. {
            tick.tick().await;
            let _ = self
                .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
                .await;
            if self.refresh_due.swap(false, Ordering::Relaxed) || n % REFRESH_EVERY_TICKS == 0 {
                self.refresh().await;
            }
        }
    }
}
