//! Limits shared across proxy replicas through a real Redis (`[redis]`): two (or three)
//! proxy processes in front of one simulated Asterisk, one `redis-server`. A ban made on
//! one replica refuses the address on the other, a user's rate and connection cap hold over
//! both, and when Redis is killed the replicas fall back on their local limits (or refuse,
//! as configured) within a bounded time, then share again once it is back.

mod common;

use common::servers::Redis;
use common::{sim, start_proxy, upstreams_toml, Client, Proxy, DEADLINE, USERS};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFIX: &str = "amiproxy-test:";

/// A replica's config: the sim, the shared users, limits, metrics and `[redis]`.
fn config(sim: &ami_sim::SimHandle, redis: &Redis, on_unreachable: &str) -> String {
    format!(
        "[metrics]\naddress = \"127.0.0.1:0\"\n\n{}{USERS}
[[user]]
name = \"rated\"
secret = \"rated-secret\"
read = \"all\"
write = \"all\"
actions_per_sec = 10

[[user]]
name = \"capped\"
secret = \"capped-secret\"
read = \"all\"
write = \"all\"
max_connections = 2

[limits]
failed_logins = 3
failed_login_window_secs = 60
ban_secs = 60

[redis]
url = \"{}\"
key_prefix = \"{PREFIX}\"
timeout_ms = 500
on_unreachable = \"{on_unreachable}\"
",
        upstreams_toml(&[sim]),
        redis.url()
    )
}

/// One login attempt; the answer's `Message`.
async fn try_login(addr: SocketAddr, from: Option<IpAddr>, user: &str, secret: &str) -> (Client, String) {
    let mut c = match from {
        Some(ip) => Client::connect_from(addr, ip).await,
        None => Client::connect(addr).await,
    };
    c.send(&format!(
        "Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nActionID: login\r\n\r\n"
    ))
    .await;
    let r = c.response("login").await;
    (c, r.get("Message").unwrap_or("").to_owned())
}

/// One Ping; its `Response` and `Message`.
async fn ping(c: &mut Client, aid: &str) -> (String, String) {
    c.send(&format!("Action: Ping\r\nActionID: {aid}\r\n\r\n")).await;
    let r = c.response(aid).await;
    (
        r.get("Response").unwrap_or("").to_owned(),
        r.get("Message").unwrap_or("").to_owned(),
    )
}

/// The sum of the samples of `name` carrying all of `labels` in one scrape of `/metrics`.
async fn metric(proxy: &Proxy, name: &str, labels: &[(&str, &str)]) -> f64 {
    let addr = proxy.metrics.expect("metrics address");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Scrapes until `f` holds for the metric's value (the proxy updates it after its work).
async fn metric_until(proxy: &Proxy, name: &str, labels: &[(&str, &str)], f: impl Fn(f64) -> bool) -> f64 {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let v = metric(proxy, name, labels).await;
        if f(v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < end, "{name}{labels:?} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_one_replica_refuses_the_address_on_the_other() {
    let Some(redis) = Redis::start() else { return };
    let s1 = sim("pbx1").await;
    let a = start_proxy(&config(&s1, &redis, "local"));
    let b = start_proxy(&config(&s1, &redis, "local"));
    let guesser: IpAddr = "127.0.0.7".parse().unwrap();
    // Four failures at once (each answer waits a second): the fourth bans the address.
    let tries = (0..4).map(|_| {
        let addr = a.addr();
        tokio::spawn(async move { try_login(addr, Some(guesser), "admin", "wrong").await.1 })
    });
    for t in tries {
        assert_eq!(t.await.unwrap(), "Authentication failed");
    }
    assert_eq!(
        redis.command(&format!("EXISTS {PREFIX}ban:127.0.0.7")).as_deref(),
        Some(":1")
    );
    // B never saw those failures, and refuses the right secret from that address.
    let (_, m) = try_login(b.addr(), Some(guesser), "admin", "admin-secret").await;
    assert_eq!(m, "Authentication failed");
    assert!(metric(&b, "amiproxy_logins_total", &[("outcome", "refused")]).await >= 1.0);
    // Another address still logs in on B (and on A).
    let other: IpAddr = "127.0.0.8".parse().unwrap();
    for p in [&a, &b] {
        let (_, m) = try_login(p.addr(), Some(other), "admin", "admin-secret").await;
        assert_eq!(m, "Authentication accepted");
    }
    assert_eq!(metric(&b, "amiproxy_redis_up", &[]).await, 1.0);
    assert_eq!(metric(&b, "amiproxy_redis_fallbacks_total", &[]).await, 0.0);
}

/// Sends Pings as fast as answers come for `span` (and at most `cap` of them); the count of
/// those that went through.
async fn ping_flood(mut c: Client, span: Duration, cap: u32) -> u32 {
    let end = Instant::now() + span;
    let mut ok = 0;
    for n in 0..cap {
        if Instant::now() >= end {
            break;
        }
        let (response, message) = ping(&mut c, &format!("p{n}")).await;
        match response.as_str() {
            "Success" => ok += 1,
            _ => assert_eq!(message, "Rate limit exceeded"),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_rate_holds_over_two_replicas() {
    let Some(redis) = Redis::start() else { return };
    let s1 = sim("pbx1").await;
    let a = start_proxy(&config(&s1, &redis, "local"));
    let b = start_proxy(&config(&s1, &redis, "local"));
    let ca = Client::login(a.addr(), "rated", "rated-secret").await;
    let cb = Client::login(b.addr(), "rated", "rated-secret").await;
    let span = Duration::from_millis(1500);
    let t = Instant::now();
    let (na, nb) = tokio::join!(ping_flood(ca, span, 20_000), ping_flood(cb, span, 20_000));
    let elapsed = t.elapsed().as_secs_f64();
    let total = f64::from(na + nb);
    // 10 a second and a burst of 10 (a burst is at least the rate), shared: never more
    // than that (2 of slack for the rounding of the clock), whichever replica a client is
    // on. Each replica by itself would let as many through again.
    let bound = 10.0 * elapsed + 10.0 + 2.0;
    assert!(
        total <= bound,
        "{na} + {nb} through in {elapsed:.2} s (at most {bound:.1})"
    );
    assert!(na > 0 && nb > 0, "both replicas let some through: {na}, {nb}");
    // And the rate is not refused outright: most of what it allows went through.
    assert!(total >= 10.0 * 1.5, "only {total} through");
    assert!(metric(&a, "amiproxy_refusals_total", &[("reason", "rate-limit")]).await > 0.0);
    for p in [&a, &b] {
        assert_eq!(metric(p, "amiproxy_redis_fallbacks_total", &[]).await, 0.0);
    }
}

/// Logs `capped` in on `proxy` until it is accepted (an entry freed elsewhere is removed
/// from Redis by the replica that held it, a moment after the client closed).
async fn login_when_free(proxy: &Proxy) -> Client {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (c, m) = try_login(proxy.addr(), None, "capped", "capped-secret").await;
        if m == "Authentication accepted" {
            return c;
        }
        assert_eq!(m, "Too many connections for this user");
        assert!(tokio::time::Instant::now() < end, "the freed slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_connection_cap_holds_over_two_replicas() {
    let Some(redis) = Redis::start() else { return };
    let s1 = sim("pbx1").await;
    let a = start_proxy(&config(&s1, &redis, "local"));
    let b = start_proxy(&config(&s1, &redis, "local"));
    // Two entries of a replica that died long ago (scored by when they expired): they would
    // fill the cap, but expired entries never count.
    assert_eq!(
        redis
            .command(&format!("ZADD {PREFIX}conns:capped 1 gone-1-0:1 2 gone-1-0:2"))
            .as_deref(),
        Some(":2")
    );
    let c1 = Client::login(a.addr(), "capped", "capped-secret").await;
    let _c2 = Client::login(b.addr(), "capped", "capped-secret").await;
    for p in [&a, &b] {
        let (_, m) = try_login(p.addr(), None, "capped", "capped-secret").await;
        assert_eq!(m, "Too many connections for this user");
    }
    assert_eq!(
        redis.command(&format!("ZCARD {PREFIX}conns:capped")).as_deref(),
        Some(":2")
    );
    // One closes on A: a login on B gets its place.
    drop(c1);
    let _c3 = login_when_free(&b).await;
    let (_, m) = try_login(a.addr(), None, "capped", "capped-secret").await;
    assert_eq!(m, "Too many connections for this user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_falls_back_or_refuses_and_sharing_resumes_when_it_is_back() {
    let Some(mut redis) = Redis::start() else { return };
    let s1 = sim("pbx1").await;
    let a = start_proxy(&config(&s1, &redis, "local"));
    let b = start_proxy(&config(&s1, &redis, "local"));
    let strict = start_proxy(&config(&s1, &redis, "refuse"));
    let mut rated_a = Client::login(a.addr(), "rated", "rated-secret").await;
    let mut rated_strict = Client::login(strict.addr(), "rated", "rated-secret").await;
    for p in [&a, &b, &strict] {
        metric_until(p, "amiproxy_redis_up", &[], |v| v == 1.0).await;
    }

    redis.proc.kill();
    // "local": a login that needs a shared limit, and a rated action, still go, quickly.
    let t = Instant::now();
    let (held, m) = try_login(a.addr(), None, "capped", "capped-secret").await;
    assert_eq!(m, "Authentication accepted");
    assert!(t.elapsed() < Duration::from_secs(1), "login took {:?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(ping(&mut rated_a, "during").await.0, "Success");
    assert!(t.elapsed() < Duration::from_secs(1), "action took {:?}", t.elapsed());
    metric_until(&a, "amiproxy_redis_fallbacks_total", &[("to", "local")], |v| v >= 1.0).await;
    metric_until(&a, "amiproxy_redis_up", &[], |v| v == 0.0).await;
    assert!(metric(&a, "amiproxy_redis_errors_total", &[]).await >= 1.0);
    // "refuse": the rated action is refused, saying why.
    let (response, message) = ping(&mut rated_strict, "strict").await;
    assert_eq!(
        (response.as_str(), message.as_str()),
        ("Error", "Shared limits unavailable, try again later")
    );
    assert!(metric(&strict, "amiproxy_refusals_total", &[("reason", "limits-unavailable")]).await >= 1.0);
    assert!(metric(&strict, "amiproxy_redis_fallbacks_total", &[("to", "refuse")]).await >= 1.0);
    // So is a login (its ban cannot be checked), at the time every refused login takes.
    let (_, m) = try_login(strict.addr(), None, "admin", "admin-secret").await;
    assert_eq!(m, "Shared limits unavailable, try again later");

    // Back (empty, as after a crash): the replicas see it by themselves, and A puts back
    // the entry of the session it let in meanwhile.
    redis.restart();
    for p in [&a, &b, &strict] {
        metric_until(p, "amiproxy_redis_up", &[], |v| v == 1.0).await;
    }
    let end = Instant::now() + DEADLINE;
    while redis.command(&format!("ZCARD {PREFIX}conns:capped")).as_deref() != Some(":1") {
        assert!(Instant::now() < end, "A never refreshed its connection entry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _second = Client::login(b.addr(), "capped", "capped-secret").await;
    let (_, m) = try_login(b.addr(), None, "capped", "capped-secret").await;
    assert_eq!(m, "Too many connections for this user");
    assert_eq!(ping(&mut rated_strict, "after").await.0, "Success");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_running_redis_settings() {
    let Some(redis) = Redis::start() else { return };
    let s1 = sim("pbx1").await;
    let text = config(&s1, &redis, "local");
    let proxy = common::start_proxy_env(&text, &[("RUST_LOG", "warn")], true);
    let written = std::fs::read_to_string(proxy.config_path()).unwrap();
    std::fs::write(
        proxy.config_path(),
        written.replace(&format!("key_prefix = \"{PREFIX}\""), "key_prefix = \"other:\""),
    )
    .unwrap();
    proxy.signal("HUP");
    common::eventually("the restart-only warning", || {
        let log = proxy.log();
        log.contains("changes only at restart") && log.contains("redis")
    })
    .await;
    // Still the start-up prefix.
    let _c = Client::login(proxy.addr(), "capped", "capped-secret").await;
    assert_eq!(
        redis.command(&format!("ZCARD {PREFIX}conns:capped")).as_deref(),
        Some(":1")
    );
    assert_eq!(redis.command("EXISTS other:conns:capped").as_deref(), Some(":0"));
}
