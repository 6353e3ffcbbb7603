//! Configuration: one TOML file read with the `config` crate (environment overrides with the
//! `AMIPROXY__` prefix, e.g. `AMIPROXY__PROXY__ACTION_TIMEOUT_SECS=5`), checked once into
//! typed values. Every error names the key it is about.

use crate::filter::EventFilter;
use crate::glob::Glob;
use crate::perms::Classes;
use crate::policy::{ArgRule, Policy, Scope};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default, rename = "listener")]
    listeners: Vec<RawListener>,
    #[serde(default, rename = "upstream")]
    upstreams: Vec<RawUpstream>,
    #[serde(default, rename = "user")]
    users: Vec<RawUser>,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_connections: usize,
    actions_per_sec: u32,
    burst: u32,
    failed_logins: u32,
    failed_login_window_secs: u64,
    ban_secs: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_connections: 0,
            actions_per_sec: 0,
            burst: 0,
            failed_logins: 5,
            failed_login_window_secs: 60,
            ban_secs: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProxy {
    banner_version: Option<String>,
    server_header: String,
    name: String,
    max_in_flight_per_session: usize,
    client_queue_bytes: usize,
    auth_timeout_secs: u64,
    auth_limit: usize,
    action_timeout_secs: u64,
    event_buffer: usize,
    slow_client: String,
    max_line: usize,
    max_lines: usize,
    shutdown_timeout_secs: f64,
    watch_config: bool,
    dialect: String,
    write_timeout_secs: f64,
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            banner_version: None,
            server_header: "Server".into(),
            name: "amiproxy".into(),
            max_in_flight_per_session: 256,
            client_queue_bytes: 16 << 20,
            auth_timeout_secs: 30,
            auth_limit: 50,
            action_timeout_secs: 10,
            event_buffer: 16384,
            slow_client: "drop-oldest".into(),
            max_line: 1024,
            max_lines: 128,
            shutdown_timeout_secs: 10.0,
            watch_config: false,
            dialect: "auto".into(),
            write_timeout_secs: 30.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: String,
    #[serde(default)]
    tls: Option<RawListenerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenerTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    self_signed: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: String,
    #[serde(default = "default_kind")]
    kind: String,
    address: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    tls: bool,
    ca: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default = "default_ping_interval")]
    ping_interval_secs: f64,
    #[serde(default = "default_ping_timeout")]
    ping_timeout_secs: f64,
    #[serde(default = "default_backoff_min")]
    reconnect_min_ms: u64,
    #[serde(default = "default_backoff_max")]
    reconnect_max_ms: u64,
    #[serde(default)]
    channel_prefixes: Vec<String>,
    #[serde(default)]
    queue_prefixes: Vec<String>,
    #[serde(default)]
    sim: RawSim,
    /// Extra manager accounts on this Asterisk, with fewer classes, for users mapped to them.
    #[serde(default)]
    accounts: Vec<RawAccount>,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "default_ownership_refresh")]
    ownership_refresh_secs: f64,
}

fn default_ownership_refresh() -> f64 {
    300.0
}

fn default_max_in_flight() -> usize {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    username: String,
    secret: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawSim {
    calls_per_sec: f64,
    legacy_command: bool,
    channel_id_base: u32,
}

fn default_kind() -> String {
    "asterisk".into()
}
fn default_ping_interval() -> f64 {
    10.0
}
fn default_ping_timeout() -> f64 {
    5.0
}
fn default_backoff_min() -> u64 {
    250
}
fn default_backoff_max() -> u64 {
    30_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    secret: Option<String>,
    secret_hash: Option<String>,
    #[serde(default = "default_read")]
    read: String,
    #[serde(default)]
    write: String,
    #[serde(default)]
    allow_md5: Option<bool>,
    #[serde(default)]
    permit: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    actions: Option<Vec<String>>,
    #[serde(default)]
    deny_actions: Vec<String>,
    commands: Option<Vec<String>>,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    queues: Vec<String>,
    #[serde(default)]
    servers: Vec<String>,
    #[serde(default)]
    contexts: Vec<String>,
    #[serde(default)]
    db_families: Vec<String>,
    #[serde(default)]
    functions: Vec<String>,
    applications: Option<Vec<String>>,
    variables: Option<Vec<String>>,
    config_files: Option<Vec<String>>,
    #[serde(default)]
    eventfilter: Vec<String>,
    #[serde(default)]
    actions_per_sec: u32,
    #[serde(default)]
    burst: u32,
    #[serde(default)]
    max_connections: usize,
    upstream_account: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    action: String,
    header: String,
    pattern: String,
    effect: String,
}

/// The functions and applications a user may be given: what needs `system` only to a
/// user with `system` and no scope, what reaches other tenants only to an unscoped user.
/// A config that promises more is refused, so the trust model holds whatever it says.
fn check_dialplan_lists(u: &RawUser, write: Classes, scope: &Scope, bad: &mut dyn FnMut(String, String)) {
    use crate::policy::dialplan::{application, function_reach, Reach};
    let system = write.contains(Classes::named("system").unwrap_or(Classes::NONE));
    let full = system && !scope.scoped();
    let refuse = |reach: Reach| match reach {
        Reach::System if !full => Some("needs system (and no channel or queue scope)"),
        Reach::Shared if scope.scoped() => Some("reaches other tenants' objects; not for a scoped user"),
        _ => None,
    };
    for (j, f) in u.functions.iter().enumerate() {
        if let Some(why) = refuse(function_reach(&f.trim().to_ascii_uppercase())) {
            bad(format!("functions[{j}]"), format!("`{f}` {why}"));
        }
    }
    for (j, a) in u.applications.iter().flatten().enumerate() {
        if let Some(why) = refuse(application(a.trim()).0) {
            bad(format!("applications[{j}]"), format!("`{a}` {why}"));
        }
    }
}

fn default_read() -> String {
    "all".into()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawRouting {
    default_upstream: Option<String>,
    fanout_actions: Vec<String>,
}

/// One configuration problem: the key it is about and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// What to do with a client whose event queue overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowClient {
    /// Skip the oldest events and tell the client how many with `Event: ProxyEventsDropped`.
    DropOldest,
    /// Close the connection.
    Disconnect,
}

#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// A client write that makes no progress for this long closes the client.
    pub write_timeout: Duration,
    /// The Asterisk generation the proxy speaks to clients; None: the upstreams' own when
    /// they all agree, else the newest.
    pub dialect: Option<crate::dialect::Generation>,
    /// How long a graceful shutdown may take.
    pub shutdown_timeout: Duration,
    /// Reload when the config file changes (polled), as well as on SIGHUP.
    pub watch_config: bool,
    pub banner_version: Option<String>,
    pub server_header: String,
    /// The origin (server header value) of messages the proxy makes itself.
    pub name: String,
    /// Actions one client session may have in flight upstream at once.
    pub max_in_flight_per_session: usize,
    /// Bytes of answers queued for one client before it counts as not reading.
    pub client_queue_bytes: usize,
    pub auth_timeout: Duration,
    pub auth_limit: usize,
    pub action_timeout: Duration,
    pub event_buffer: usize,
    pub slow_client: SlowClient,
    pub max_line: usize,
    pub max_lines: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerTls {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// A certificate made at start-up for localhost (development only).
    SelfSigned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    pub calls_per_sec: f64,
    pub legacy_command: bool,
    pub channel_id_base: u32,
}

/// Where an upstream is: a real Asterisk at an address, or a simulated one run in-process.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamTarget {
    Asterisk { address: String, tls: Option<UpstreamTls> },
    Simulated(SimSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM file of CA certificates; system (webpki) roots when absent.
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// A second manager account on an upstream, so that Asterisk's own checks apply to the
/// users mapped to it as well as the proxy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    pub name: String,
    pub username: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub target: UpstreamTarget,
    pub username: String,
    pub secret: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub channel_prefixes: Vec<String>,
    pub queue_prefixes: Vec<String>,
    /// Extra manager accounts (fewer classes) for users mapped to them: one more login
    /// each, with events off.
    pub accounts: Vec<AccountConfig>,
    /// Actions in flight on this link at most; more are refused at once.
    pub max_in_flight: usize,
    /// How often the channel ownership index is relearned from the upstream.
    pub ownership_refresh: Duration,
}

/// How a user's secret is kept. A plain secret is needed for MD5 challenge login (the key is
/// md5(challenge + secret)); an argon2 hash serves plain login only.
#[derive(Clone)]
pub enum Secret {
    Plain(String),
    Argon2(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Plain(_) => f.write_str("Secret::Plain(<redacted>)"),
            Secret::Argon2(_) => f.write_str("Secret::Argon2(<hash>)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    pub secret: Secret,
    pub read: Classes,
    pub write: Classes,
    pub allow_md5: bool,
    pub policy: Policy,
    /// Actions per second shared by all the user's connections (0: no limit).
    pub actions_per_sec: u32,
    pub burst: u32,
    /// Connections at once (0: no limit).
    pub max_connections: usize,
    /// The upstream account (of each upstream's `accounts`) this user's actions go through;
    /// None: the proxy's main login.
    pub upstream_account: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_connections: usize,
    pub actions_per_sec: u32,
    pub burst: u32,
    pub failed_logins: u32,
    pub failed_login_window: Duration,
    pub ban: Duration,
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub default_upstream: Option<String>,
    pub fanout_actions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub proxy: ProxySettings,
    pub listeners: Vec<ListenerConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub users: Vec<UserConfig>,
    pub routing: RoutingConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `GET /metrics` and `GET /health` are served; off when absent.
    pub address: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter (`info`, `warn,amiproxy::audit=info`); `RUST_LOG` wins over it.
    pub level: String,
    pub json: bool,
}

impl Config {
    /// Reads and checks a config file (plus `AMIPROXY__...` environment overrides).
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigProblem>> {
        let raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("AMIPROXY")
                    .try_parsing(true)
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()
            .and_then(|c| c.try_deserialize::<RawConfig>())
            .map_err(|e| vec![from_config_error(e)])?;
        let base = path.parent().unwrap_or(Path::new("."));
        check(raw, base)
    }

    /// Parses config text (for tests and `check-config` on stdin).
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<RawConfig>())
            .map_err(|e| vec![from_config_error(e)])?;
        check(raw, base)
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

fn from_config_error(e: config::ConfigError) -> ConfigProblem {
    let text = e.to_string();
    // The config crate words errors as "... for key `x.y`"; surface the key first.
    let key = text
        .split("for key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned)
        .unwrap_or_else(|| "(file)".into());
    ConfigProblem { key, reason: text }
}

fn check(raw: RawConfig, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut bad = |key: String, reason: String| problems.push(ConfigProblem { key, reason });
    let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };

    let p = &raw.proxy;
    let slow_client = match p.slow_client.as_str() {
        "drop-oldest" => SlowClient::DropOldest,
        "disconnect" => SlowClient::Disconnect,
        other => {
            bad(
                "proxy.slow_client".into(),
                format!("`{other}` is not one of drop-oldest, disconnect"),
            );
            SlowClient::DropOldest
        }
    };
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
    let proxy = ProxySettings {
        write_timeout: Duration::from_secs_f64(p.write_timeout_secs.clamp(0.001, 3600.0)),
        dialect,
        shutdown_timeout: Duration::from_secs_f64(p.shutdown_timeout_secs.clamp(0.01, 3600.0)),
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
    };

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
            Some(t) if t.self_signed => Some(ListenerTls::SelfSigned),
            Some(RawListenerTls {
                cert: Some(c),
                key: Some(k),
                ..
            }) => {
                let (cert, key) = (resolve(c), resolve(k));
                for (what, path) in [("cert", &cert), ("key", &key)] {
                    if !path.exists() {
                        bad(
                            format!("listener[{i}].tls.{what}"),
                            format!("{} does not exist", path.display()),
                        );
                    }
                }
                Some(ListenerTls::Files { cert, key })
            }
            Some(_) => {
                bad(
                    format!("listener[{i}].tls"),
                    "give both cert and key, or self_signed = true".into(),
                );
                None
            }
        };
        listeners.push(ListenerConfig { address, tls });
    }

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
        let target = match u.kind.as_str() {
            "asterisk" => match &u.address {
                Some(a) => Some(UpstreamTarget::Asterisk {
                    address: a.clone(),
                    tls: (u.tls || u.ca.is_some()).then(|| UpstreamTls {
                        ca: u.ca.as_deref().map(resolve),
                        server_name: u.server_name.clone(),
                    }),
                }),
                None => {
                    bad(
                        key("address"),
                        "an asterisk upstream needs an address (host:port)".into(),
                    );
                    None
                }
            },
            "simulated" if !crate::upstream::simulated::AVAILABLE => {
                bad(
                    key("kind"),
                    "this build has no simulated Asterisk (built without the `sim` feature)".into(),
                );
                None
            }
            "simulated" => Some(UpstreamTarget::Simulated(SimSettings {
                calls_per_sec: u.sim.calls_per_sec,
                legacy_command: u.sim.legacy_command,
                channel_id_base: u.sim.channel_id_base,
            })),
            other => {
                bad(key("kind"), format!("`{other}` is not one of asterisk, simulated"));
                None
            }
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

    let mut users: Vec<UserConfig> = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let key = |k: &str| format!("user[{i}].{k}");
        if u.name.is_empty() {
            bad(key("name"), "must not be empty".into());
        }
        if users.iter().any(|o| o.name == u.name) {
            bad(key("name"), format!("`{}` is used twice", u.name));
        }
        let secret = match (&u.secret, &u.secret_hash) {
            (Some(s), None) => Secret::Plain(s.clone()),
            (None, Some(h)) => {
                if argon2::PasswordHash::new(h).is_err() {
                    bad(
                        key("secret_hash"),
                        "is not an argon2 PHC string (make one with `amiproxy hash-secret`)".into(),
                    );
                }
                Secret::Argon2(h.clone())
            }
            _ => {
                bad(key("secret"), "give exactly one of secret, secret_hash".into());
                continue;
            }
        };
        let allow_md5 = match (u.allow_md5, &secret) {
            (Some(true), Secret::Argon2(_)) => {
                bad(
                    key("allow_md5"),
                    "MD5 challenge login needs the plain secret; a user with secret_hash can only log in plainly"
                        .into(),
                );
                false
            }
            (Some(v), _) => v,
            (None, s) => matches!(s, Secret::Plain(_)),
        };
        let read = Classes::parse(&u.read).unwrap_or_else(|e| {
            bad(key("read"), e);
            Classes::NONE
        });
        let write = Classes::parse(&u.write).unwrap_or_else(|e| {
            bad(key("write"), e);
            Classes::NONE
        });
        let mut policy = Policy::default();
        for (list, field, out) in [
            (&u.permit, "permit", &mut policy.permit),
            (&u.deny, "deny", &mut policy.deny),
        ] {
            for (j, net) in list.iter().enumerate() {
                let parsed = net
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
                match parsed {
                    Ok(n) => out.push(n),
                    Err(_) => bad(
                        format!("user[{i}].{field}[{j}]"),
                        format!("`{net}` is not an address or CIDR network"),
                    ),
                }
            }
        }
        let globs = |l: &[String]| l.iter().map(|g| Glob::new(g)).collect::<Vec<_>>();
        policy.actions = u.actions.as_deref().map(globs);
        policy.deny_actions = globs(&u.deny_actions);
        policy.commands = u.commands.as_deref().map(globs);
        policy.scope = Scope {
            channels: u.channels.iter().map(|g| Glob::channel(g)).collect(),
            queues: globs(&u.queues),
            contexts: globs(&u.contexts),
            db_families: globs(&u.db_families),
            servers: u.servers.clone(),
        };
        check_dialplan_lists(u, write, &policy.scope, &mut |k, r| bad(format!("user[{i}].{k}"), r));
        policy.functions = u.functions.iter().map(|f| f.trim().to_ascii_uppercase()).collect();
        policy.applications = u.applications.clone();
        policy.variables = u.variables.as_deref().map(globs);
        policy.config_files = u.config_files.as_deref().map(globs);
        for (j, srv) in u.servers.iter().enumerate() {
            if !raw.upstreams.iter().any(|up| up.name.eq_ignore_ascii_case(srv)) {
                bad(
                    format!("user[{i}].servers[{j}]"),
                    format!("`{srv}` is not a configured upstream"),
                );
            }
        }
        for (j, r) in u.rules.iter().enumerate() {
            let allow = match r.effect.as_str() {
                "allow" => true,
                "deny" => false,
                other => {
                    bad(
                        format!("user[{i}].rule[{j}].effect"),
                        format!("`{other}` is not allow or deny"),
                    );
                    continue;
                }
            };
            match regex::Regex::new(&r.pattern) {
                Ok(pattern) => policy.rules.push(ArgRule {
                    action: Glob::new(&r.action),
                    header: r.header.clone(),
                    pattern,
                    allow,
                }),
                Err(e) => bad(format!("user[{i}].rule[{j}].pattern"), e.to_string()),
            }
        }
        for (j, f) in u.eventfilter.iter().enumerate() {
            match EventFilter::parse(f) {
                Ok(f) => policy.filters.add(f),
                Err(e) => bad(format!("user[{i}].eventfilter[{j}]"), e),
            }
        }
        users.push(UserConfig {
            name: u.name.clone(),
            secret,
            read,
            write,
            allow_md5,
            policy,
            actions_per_sec: u.actions_per_sec,
            burst: u.burst.max(u.actions_per_sec),
            max_connections: u.max_connections,
            upstream_account: u.upstream_account.clone(),
        });
        if let Some(acct) = &u.upstream_account {
            // Every upstream the user may reach must have the account: an action must never
            // fall back to the all-class login.
            for up in &raw.upstreams {
                let reachable = u.servers.is_empty() || u.servers.iter().any(|s| s.eq_ignore_ascii_case(&up.name));
                if reachable && !up.accounts.iter().any(|a| &a.name == acct) {
                    bad(
                        key("upstream_account"),
                        format!("upstream `{}` has no account `{acct}`", up.name),
                    );
                }
            }
        }
    }

    if let Some(d) = &raw.routing.default_upstream {
        if !upstreams.iter().any(|u| &u.name == d) {
            bad(
                "routing.default_upstream".into(),
                format!("`{d}` is not a configured upstream"),
            );
        }
    }
    let routing = RoutingConfig {
        default_upstream: raw.routing.default_upstream.clone(),
        fanout_actions: raw.routing.fanout_actions.clone(),
    };

    let l = &raw.limits;
    let limits = LimitsConfig {
        max_connections: l.max_connections,
        actions_per_sec: l.actions_per_sec,
        burst: l.burst.max(l.actions_per_sec),
        failed_logins: l.failed_logins,
        failed_login_window: Duration::from_secs(l.failed_login_window_secs.max(1)),
        ban: Duration::from_secs(l.ban_secs),
    };

    let metrics = MetricsConfig {
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
    };
    let json = match raw.log.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            bad("log.format".into(), format!("`{other}` is not one of text, json"));
            false
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        bad(
            "log.level".into(),
            format!(
                "`{}` is not a log filter (e.g. info, warn,amiproxy::audit=info)",
                raw.log.level
            ),
        );
    }
    let log = LogConfig {
        level: raw.log.level.clone(),
        json,
    };

    if problems.is_empty() {
        Ok(Config {
            proxy,
            listeners,
            upstreams,
            users,
            routing,
            limits,
            metrics,
            log,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[[listener]]
address = "127.0.0.1:0"
[[upstream]]
name = "pbx1"
kind = "simulated"
[[user]]
name = "app"
secret = "s3cret"
read = "call,system"
write = "call"
"#;

    #[test]
    fn minimal_config_loads() {
        let c = Config::from_toml(OK, Path::new(".")).unwrap();
        assert_eq!(c.upstreams[0].name, "pbx1");
        assert!(c.users[0].allow_md5);
        assert_eq!(c.proxy.auth_limit, 50);
    }

    #[test]
    fn errors_name_their_key() {
        let text = OK
            .replace(
                "write = \"call\"",
                "write = \"call,bogus\"\nallow_md5 = true\nsecret_hash = \"x\"",
            )
            .replace("kind = \"simulated\"", "kind = \"nope\"");
        let errs = Config::from_toml(&text, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"upstream[0].kind"), "{errs:?}");
        assert!(keys.contains(&"user[0].secret"), "{errs:?}");
    }

    #[test]
    fn hashed_user_with_md5_is_refused() {
        let text = OK.replace(
            "secret = \"s3cret\"",
            "secret_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG\"\nallow_md5 = true",
        );
        let errs = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert_eq!(errs[0].key, "user[0].allow_md5", "{errs:?}");
    }

    #[test]
    fn unknown_key_is_reported() {
        let errs = Config::from_toml(&format!("{OK}\n[proxy]\nbogus = 1\n"), Path::new(".")).unwrap_err();
        assert!(errs[0].reason.contains("bogus"), "{errs:?}");
    }

    #[test]
    fn a_config_cannot_promise_more_than_the_trust_model() {
        let text = OK.replace(
            "write = \"call\"",
            "write = \"call,originate\"\nfunctions = [\"CALLERID\", \"shell\"]\napplications = [\"Wait\", \"System\"]",
        );
        let errs = Config::from_toml(&text, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["user[0].functions[1]", "user[0].applications[1]"], "{errs:?}");
        // A tenant may not be given what reaches other tenants, even with system.
        let text = OK.replace(
            "write = \"call\"",
            "write = \"all\"\nchannels = [\"PJSIP/acme-*\"]\nfunctions = [\"IMPORT\", \"CDR\"]\napplications = [\"Dial\"]",
        );
        let errs = Config::from_toml(&text, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["user[0].functions[0]", "user[0].applications[0]"], "{errs:?}");
        // What needs system is fine for an unscoped system user.
        let text = OK.replace("write = \"call\"", "write = \"all\"\nfunctions = [\"SHELL\"]");
        assert!(Config::from_toml(&text, Path::new(".")).is_ok());
    }

    #[test]
    fn an_upstream_account_must_exist_on_every_reachable_upstream() {
        let text = format!("{OK}upstream_account = \"low\"\n");
        let errs = Config::from_toml(&text, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["user[0].upstream_account"], "{errs:?}");
        let text = OK.replace(
            "kind = \"simulated\"",
            "address = \"127.0.0.1:5038\"\nusername = \"a\"\nsecret = \"b\"\naccounts = [{ name = \"low\", username = \"l\", secret = \"s\" }]",
        );
        let c = Config::from_toml(&format!("{text}upstream_account = \"low\"\n"), Path::new(".")).unwrap();
        assert_eq!(c.upstreams[0].accounts[0].username, "l");
        assert_eq!(c.users[0].upstream_account.as_deref(), Some("low"));
    }
}
