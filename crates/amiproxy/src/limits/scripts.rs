//! What the shared limits keep in Redis: the key names, and the Lua scripts that read and
//! change them in one atomic step each (a script runs alone on the server, so two replicas
//! can never both see "one slot left" and both take it).
//!
//! Every script that needs the time reads Redis's own clock (`TIME`) rather than taking the
//! caller's: the replicas then share one clock, so a replica whose clock runs ahead cannot
//! spend another's rate in advance, nor one behind make connection entries live longer.
//! Redis 5 and later replicate a script by its effects, so reading `TIME` before writing is
//! allowed (and Redis 7 knows no other mode).

use redis::Script;
use std::net::IpAddr;
use std::sync::LazyLock;

/// The names of the keys the shared limits use, all under `redis.key_prefix`.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// Failed logins from an address in the current window (a counter that expires).
    pub(super) fn failures(&self, ip: IpAddr) -> String {
        format!("{}fail:{ip}", self.prefix)
    }

    /// An address's ban (exists while the ban lasts).
    pub(super) fn ban(&self, ip: IpAddr) -> String {
        format!("{}ban:{ip}", self.prefix)
    }

    /// A user's GCRA state: its theoretical arrival time, in microseconds of Redis's clock.
    pub(super) fn rate(&self, user: &str) -> String {
        format!("{}rate:{user}", self.prefix)
    }

    /// A user's live connections on every replica: a sorted set of `<replica>:<session>`
    /// scored by the millisecond (Redis's clock) at which each entry expires.
    pub(super) fn connections(&self, user: &str) -> String {
        format!("{}conns:{user}", self.prefix)
    }
}

/// One failed login. KEYS: failures, ban. ARGV: window ms, failures allowed, ban ms.
/// Returns 1 when this failure banned the address. A fixed window that starts at the first
/// failure: the (allowed + 1)th failure within it bans, as the local limiter does.
pub(super) static LOGIN_FAILED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
  return 1
end
return 0
",
    )
});

/// One action of a user with a rate (GCRA). KEYS: rate. ARGV: emission interval µs (one
/// action's cost), burst. Returns 1 when the action may go. The stored time is at most
/// `burst` intervals ahead of now, and the key expires when it is back to now.
pub(super) static ACTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > interval * tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 1
",
    )
});

/// A new connection of a user. KEYS: connections. ARGV: member, max, ttl ms. Expired
/// entries (of replicas that died) are dropped first; returns 1 when the member was added.
pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return 1
",
    )
});

/// A replica's live connections of one user, refreshed. KEYS: connections. ARGV: ttl ms,
/// then the members. A member is added back if it was lost (Redis restarted, or the session
/// began while Redis was away): the count should be the sessions that are live.
pub(super) static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
return #ARGV - 1
",
    )
});

/// The emission interval of a rate, in microseconds (at least 1).
pub(super) fn interval_us(per_sec: u32) -> u64 {
    (1_000_000 / u64::from(per_sec.max(1))).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_the_prefix_and_name_what_they_limit() {
        let k = Keys::new("amiproxy:");
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(k.failures(ip), "amiproxy:fail:10.0.0.7");
        assert_eq!(k.ban(ip), "amiproxy:ban:10.0.0.7");
        assert_eq!(k.ban("::1".parse().unwrap()), "amiproxy:ban:::1");
        assert_eq!(k.rate("app"), "amiproxy:rate:app");
        assert_eq!(Keys::new("p/").connections("app"), "p/conns:app");
    }

    #[test]
    fn intervals() {
        assert_eq!(interval_us(20), 50_000);
        assert_eq!(interval_us(0), 1_000_000);
        assert_eq!(interval_us(u32::MAX), 1);
    }

    #[test]
    fn scripts_have_distinct_hashes() {
        let hashes = [&LOGIN_FAILED, &ACTION, &ACQUIRE, &REFRESH].map(|s| s.get_hash().to_owned());
        for (i, h) in hashes.iter().enumerate() {
            assert!(!hashes[..i].contains(h));
        }
    }
}
