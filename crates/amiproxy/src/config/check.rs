//! From the raw file to the checked model: one checker per section, each naming the key of
//! every problem it finds, so `check-config` can list them all at once.

use super::raw::{Choice, LogFormat, RawConfig, RawRedis, UpstreamKind};
use super::users::users;
use super::*;

/// Where a checker reports a problem: the key it is about, and why.
pub(super) type Bad<'a> = &'a mut dyn FnMut(String, String);

/// The value of an enum key; None, with the problem reported under `key`, when it is none
/// of the enum's spellings.
pub(super) fn chosen<T: Copy>(value: &Choice<T>, key: impl FnOnce() -> String, bad: Bad) -> Option<T> {
    match value {
        Choice::Valid(v) => Some(*v),
        Choice::Invalid(why) => {
            bad(key(), why.clone());
            None
        }
    }
}

pub(super) fn check(raw: RawConfig, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut bad = |key: String, reason: String| problems.push(ConfigProblem { key, reason });
    let proxy = proxy(&raw, &mut bad);
    let listeners = listeners(&raw, base, &mut bad);
    let upstreams = upstreams(&raw, base, &mut bad);
    let users = users(&raw, &mut bad);
    let routing = routing(&raw, &upstreams, &mut bad);
    let limits = limits(&raw);
    let metrics = metrics(&raw, &mut bad);
    let web = web(&raw, base, &mut bad);
    let log = log(&raw, &mut bad);
    let export = super::export::export(&raw.export, &mut bad);
    let redis = redis(&raw, &mut bad);
    if problems.is_empty() {
        Ok(Config {
            proxy,
            listeners,
            upstreams,
            users,
            routing,
            limits,
            metrics,
            web,
            log,
            export,
            redis,
        })
    } else {
        Err(problems)
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `[proxy]`.
fn proxy(raw: &RawConfig, bad: Bad) -> ProxySettings {
    let p = &raw.proxy;
    let slow_client = chosen(&p.slow_client, || "proxy.slow_client".into(), bad).unwrap_or(SlowClient::DropOldest);
    if p.event_buffer < 16 {
        bad("proxy.event_buffer".into(), "must be at least 16".into());
    }
    if p.server_header.is_empty() || p.server_header.contains([':', '\r', '\n', ' ']) {
        bad(
            "proxy.server_header".into(),
            "must be a header name (no colon, space or line break)".into(),
        );
    }
    if p.max_line < 64 || p.max_lines < 4 {
        bad(
            "proxy.max_line".into(),
            "max_line must be at least 64 and max_lines at least 4".into(),
        );
    }
    // Asterisk reads a line into a 1024-byte buffer: a longer limit would let the proxy pass
    // a line that Asterisk cuts, and end a message where the proxy saw none.
    if p.max_line > 1024 || p.max_lines > 128 {
        bad(
            "proxy.max_line".into(),
            "max_line can be at most 1024 and max_lines at most 128 (Asterisk's own limits)".into(),
        );
    }
    if !(p.shutdown_timeout_secs > 0.0 && p.shutdown_timeout_secs < 3600.0) {
        bad(
            "proxy.shutdown_timeout_secs".into(),
            "must be between 0 and 3600".into(),
        );
    }
    if !(p.drain_grace_secs >= 0.0 && p.drain_grace_secs <= 600.0) {
        bad("proxy.drain_grace_secs".into(), "must be between 0 and 600".into());
    }
    let dialect = match p.dialect.as_str() {
        "auto" => None,
        other => match other.parse() {
            Ok(g) => Some(g),
            Err(e) => {
                bad("proxy.dialect".into(), e);
                None
            }
        },
    };
    if !(p.write_timeout_secs > 0.0 && p.write_timeout_secs <= 3600.0) {
        bad("proxy.write_timeout_secs".into(), "must be between 0 and 3600".into());
    }
    if p.worker_threads > 1024 {
        bad(
            "proxy.worker_threads".into(),
            "must be at most 1024 (0: one per CPU)".into(),
        );
    }
    if p.busy_poll_us > 10_000 {
        bad("proxy.busy_poll_us".into(), "must be at most 10000 (10 ms)".into());
    }
    let proxy = ProxySettings {
        write_timeout: Duration::from_secs_f64(p.write_timeout_secs.clamp(0.001, 3600.0)),
        dialect,
        shutdown_timeout: Duration::from_secs_f64(p.shutdown_timeout_secs.clamp(0.01, 3600.0)),
        drain_grace: Duration::from_secs_f64(p.drain_grace_secs.clamp(0.0, 600.0)),
        watch_config: p.watch_config,
        banner_version: p.banner_version.clone(),
        server_header: p.server_header.clone(),
        name: p.name.clone(),
        max_in_flight_per_session: p.max_in_flight_per_session.max(1),
        client_queue_bytes: p.client_queue_bytes.max(64 * 1024),
        auth_timeout: Duration::from_secs(p.auth_timeout_secs.max(1)),
        auth_limit: p.auth_limit.max(1),
        action_timeout: Duration::from_secs(p.action_timeout_secs.max(1)),
        event_buffer: p.event_buffer.max(16),
        slow_client,
        max_line: p.max_line,
        max_lines: p.max_lines,
        busy_poll: Duration::from_micros(p.busy_poll_us.min(10_000)),
        worker_threads: (p.worker_threads > 0).then_some(p.worker_threads.min(1024)),
    };
    if p.name.is_empty()
        || p.name.eq_ignore_ascii_case("all")
        || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || raw.upstreams.iter().any(|u| u.name.eq_ignore_ascii_case(&p.name))
    {
        bad(
            "proxy.name".into(),
            format!(
                "`{}` must be letters, digits, - _ or ., not `all` nor an upstream's name",
                p.name
            ),
        );
    }
    proxy
}

/// `[[listener]]`.
fn listeners(raw: &RawConfig, base: &Path, bad: Bad) -> Vec<ListenerConfig> {
    let resolve = |p: &Path| resolve(base, p);
    let mut listeners = Vec::new();
    if raw.listeners.is_empty() {
        bad("listener".into(), "at least one [[listener]] is needed".into());
    }
    for (i, l) in raw.listeners.iter().enumerate() {
        let address = match l.address.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(e) => {
                bad(
                    format!("listener[{i}].address"),
                    format!("`{}` is not an address: {e}", l.address),
                );
                continue;
            }
        };
        let tls = match &l.tls {
            None => None,
            Some(t) => match super::tls::listener_tls(&format!("listener[{i}].tls"), t, &resolve, bad) {
                Some(t) => Some(t),
                None => continue,
            },
        };
        let mut proxy_protocol_from = Vec::new();
        for (j, net) in l.proxy_protocol_from.iter().enumerate() {
            match super::users::parse_net(net) {
                Some(n) => proxy_protocol_from.push(n),
                None => bad(
                    format!("listener[{i}].proxy_protocol_from[{j}]"),
                    format!("`{net}` is not an address or CIDR network"),
                ),
            }
        }
        listeners.push(ListenerConfig {
            address,
            tls,
            proxy_protocol_from,
        });
    }
    listeners
}

/// `[[upstream]]`.
fn upstreams(raw: &RawConfig, base: &Path, bad: Bad) -> Vec<UpstreamConfig> {
    let resolve = |p: &Path| resolve(base, p);
    let mut upstreams: Vec<UpstreamConfig> = Vec::new();
    if raw.upstreams.is_empty() {
        bad("upstream".into(), "at least one [[upstream]] is needed".into());
    }
    for (i, u) in raw.upstreams.iter().enumerate() {
        let key = |k: &str| format!("upstream[{i}].{k}");
        if u.name.is_empty() || !u.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            bad(key("name"), format!("`{}` must be letters, digits, - _ or .", u.name));
        }
        if u.name.eq_ignore_ascii_case("all") {
            bad(key("name"), "`all` is reserved".into());
        }
        if upstreams.iter().any(|o| o.name.eq_ignore_ascii_case(&u.name)) {
            bad(key("name"), format!("`{}` is used twice", u.name));
        }
        let target = match chosen(&u.kind, || key("kind"), bad) {
            Some(UpstreamKind::Asterisk) => match &u.address {
                Some(a) => Some(UpstreamTarget::Asterisk {
                    address: a.clone(),
                    tls: super::tls::upstream_tls(u, &key, &resolve, bad),
                }),
                None => {
                    bad(
                        key("address"),
                        "an asterisk upstream needs an address (host:port)".into(),
                    );
                    None
                }
            },
            Some(UpstreamKind::Simulated) if !cfg!(feature = "sim") => {
                bad(
                    key("kind"),
                    "this build has no simulated Asterisk (built without the `sim` feature)".into(),
                );
                None
            }
            Some(UpstreamKind::Simulated) => Some(UpstreamTarget::Simulated(SimSettings {
                calls_per_sec: u.sim.calls_per_sec,
                legacy_command: u.sim.legacy_command,
                channel_id_base: u.sim.channel_id_base,
            })),
            None => None,
        };
        let simulated = matches!(target, Some(UpstreamTarget::Simulated(_)));
        for (j, a) in u.accounts.iter().enumerate() {
            if simulated {
                bad(
                    key(&format!("accounts[{j}]")),
                    "a simulated upstream has only its one account".into(),
                );
            }
            if a.name.is_empty() || u.accounts[..j].iter().any(|o| o.name == a.name) {
                bad(
                    key(&format!("accounts[{j}].name")),
                    format!("`{}` must be non-empty and unique", a.name),
                );
            }
        }
        let (username, secret) = match (&u.username, &u.secret, simulated) {
            (Some(n), Some(s), _) => (n.clone(), s.clone()),
            (None, None, true) => ("admin".to_string(), "admin-secret".to_string()),
            _ => {
                bad(key("secret"), "an upstream needs username and secret".into());
                (String::new(), String::new())
            }
        };
        if !(u.ping_interval_secs > 0.0 && u.ping_timeout_secs > 0.0) {
            bad(
                key("ping_interval_secs"),
                "ping interval and timeout must be positive".into(),
            );
        }
        if u.reconnect_min_ms == 0 || u.reconnect_max_ms < u.reconnect_min_ms {
            bad(
                key("reconnect_min_ms"),
                "need 0 < reconnect_min_ms <= reconnect_max_ms".into(),
            );
        }
        if let Some(target) = target {
            upstreams.push(UpstreamConfig {
                name: u.name.clone(),
                target,
                username,
                secret,
                ping_interval: Duration::from_secs_f64(u.ping_interval_secs.max(0.01)),
                ping_timeout: Duration::from_secs_f64(u.ping_timeout_secs.max(0.01)),
                reconnect_min: Duration::from_millis(u.reconnect_min_ms.max(1)),
                reconnect_max: Duration::from_millis(u.reconnect_max_ms.max(u.reconnect_min_ms.max(1))),
                channel_prefixes: u.channel_prefixes.clone(),
                queue_prefixes: u.queue_prefixes.clone(),
                max_in_flight: u.max_in_flight.max(1),
                ownership_refresh: Duration::from_secs_f64(u.ownership_refresh_secs.max(0.1)),
                control_link: u.control_link,
                accounts: u
                    .accounts
                    .iter()
                    .map(|a| AccountConfig {
                        name: a.name.clone(),
                        username: a.username.clone(),
                        secret: a.secret.clone(),
                    })
                    .collect(),
            });
        }
    }
    upstreams
}

/// `[routing]`.
fn routing(raw: &RawConfig, upstreams: &[UpstreamConfig], bad: Bad) -> RoutingConfig {
    if let Some(d) = &raw.routing.default_upstream {
        if !upstreams.iter().any(|u| &u.name == d) {
            bad(
                "routing.default_upstream".into(),
                format!("`{d}` is not a configured upstream"),
            );
        }
    }
    RoutingConfig {
        default_upstream: raw.routing.default_upstream.clone(),
        fanout_actions: raw.routing.fanout_actions.clone(),
    }
}

/// `[limits]`.
fn limits(raw: &RawConfig) -> LimitsConfig {
    let l = &raw.limits;
    LimitsConfig {
        max_connections: l.max_connections,
        actions_per_sec: l.actions_per_sec,
        burst: l.burst.max(l.actions_per_sec),
        failed_logins: l.failed_logins,
        failed_login_window: Duration::from_secs(l.failed_login_window_secs.max(1)),
        ban: Duration::from_secs(l.ban_secs),
    }
}

/// `[web]`.
fn web(raw: &RawConfig, base: &Path, bad: Bad) -> WebConfig {
    let w = &raw.web;
    let address = w.address.as_deref().and_then(|a| match a.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(e) => {
            bad("web.address".into(), format!("`{a}` is not an address: {e}"));
            None
        }
    });
    if !(1..=100_000).contains(&w.max_connections) {
        bad("web.max_connections".into(), "must be between 1 and 100000".into());
    }
    if !(1..=7 * 24 * 60).contains(&w.console_session_mins) {
        bad(
            "web.console_session_mins".into(),
            "must be between 1 and 10080 (a week)".into(),
        );
    }
    WebConfig {
        address,
        tls: w
            .tls
            .as_ref()
            .and_then(|t| super::tls::listener_tls("web.tls", t, &|p: &Path| resolve(base, p), bad)),
        console: w.console,
        api: w.api,
        websocket: w.websocket,
        ops: w.ops,
        max_connections: w.max_connections,
        console_session: Duration::from_secs(w.console_session_mins.clamp(1, 7 * 24 * 60) * 60),
    }
}

/// `[metrics]`.
fn metrics(raw: &RawConfig, bad: Bad) -> MetricsConfig {
    MetricsConfig {
        address: raw
            .metrics
            .address
            .as_deref()
            .and_then(|a| match a.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(e) => {
                    bad("metrics.address".into(), format!("`{a}` is not an address: {e}"));
                    None
                }
            }),
    }
}

/// `[log]`.
fn log(raw: &RawConfig, bad: Bad) -> LogConfig {
    let json = chosen(&raw.log.format, || "log.format".into(), bad) == Some(LogFormat::Json);
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        bad(
            "log.level".into(),
            format!(
                "`{}` is not a log filter (e.g. info, warn,amiproxy::audit=info)",
                raw.log.level
            ),
        );
    }
    LogConfig {
        level: raw.log.level.clone(),
        json,
    }
}

/// `[redis]`.
fn redis(raw: &RawConfig, bad: Bad) -> Option<RedisConfig> {
    let r: &RawRedis = raw.redis.as_ref()?;
    let on_unreachable = chosen(&r.on_unreachable, || "redis.on_unreachable".into(), bad);
    if let Err(e) = redis::Client::open(r.url.as_str()) {
        // The URL may carry a password: the problem names the key, not the value.
        bad(
            "redis.url".into(),
            format!("not a Redis URL (redis://host:port/db): {e}"),
        );
    }
    if r.key_prefix.len() > 64 || r.key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bad(
            "redis.key_prefix".into(),
            "at most 64 characters, without spaces or control characters".into(),
        );
    }
    if !(1..=10_000).contains(&r.timeout_ms) {
        bad("redis.timeout_ms".into(), "must be between 1 and 10000".into());
    }
    Some(RedisConfig {
        url: r.url.clone(),
        key_prefix: r.key_prefix.clone(),
        timeout: Duration::from_millis(r.timeout_ms.clamp(1, 10_000)),
        on_unreachable: on_unreachable.unwrap_or(OnUnreachable::Local),
    })
}
