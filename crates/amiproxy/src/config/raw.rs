//! The configuration file as written: what serde reads, before any check.

use super::{OnUnreachable, SlowClient};
use serde::de::{Deserializer, IntoDeserializer};
use serde::Deserialize;
use std::path::PathBuf;

/// A key whose value is one of an enum's spellings (the enum's serde names), read without
/// failing the whole file: a value that is none of them is kept, and `check` reports it
/// under its key along with every other problem. (A plain serde enum field would stop the
/// read at the first bad value, so `check-config` could no longer list all problems.)
#[derive(Debug, Clone)]
pub(super) enum Choice<T> {
    Valid(T),
    /// Serde's word on the value (`unknown variant `x`, expected `a` or `b``).
    Invalid(String),
}

impl<'de, T: for<'a> Deserialize<'a>> Deserialize<'de> for Choice<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read as a string first, as the field was before: a value of another type (or an
        // environment override parsed as a number) reads as it always did.
        let text = String::deserialize(d)?;
        let value: Result<T, serde::de::value::Error> = T::deserialize(text.as_str().into_deserializer());
        Ok(match value {
            Ok(v) => Choice::Valid(v),
            Err(e) => Choice::Invalid(e.to_string().replacen("unknown variant", "unknown value", 1)),
        })
    }
}

/// `upstream.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum UpstreamKind {
    /// A real Asterisk at `address`.
    Asterisk,
    /// The in-process simulated Asterisk (the `sim` feature).
    Simulated,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum LogFormat {
    Text,
    Json,
}

/// `user.rule.effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) proxy: RawProxy,
    #[serde(default, rename = "listener")]
    pub(super) listeners: Vec<RawListener>,
    #[serde(default, rename = "upstream")]
    pub(super) upstreams: Vec<RawUpstream>,
    #[serde(default, rename = "user")]
    pub(super) users: Vec<RawUser>,
    #[serde(default)]
    pub(super) routing: RawRouting,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) web: RawWeb,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) export: super::export::RawExport,
    /// Limits shared across replicas; absent: every limit is this process's own.
    #[serde(default)]
    pub(super) redis: Option<RawRedis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub(super) url: String,
    #[serde(default = "default_key_prefix")]
    pub(super) key_prefix: String,
    #[serde(default = "default_redis_timeout")]
    pub(super) timeout_ms: u64,
    #[serde(default = "default_on_unreachable")]
    pub(super) on_unreachable: Choice<OnUnreachable>,
}

pub(super) fn default_key_prefix() -> String {
    "amiproxy:".into()
}

pub(super) fn default_redis_timeout() -> u64 {
    50
}

pub(super) fn default_on_unreachable() -> Choice<OnUnreachable> {
    Choice::Valid(OnUnreachable::Local)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMetrics {
    pub(super) address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWeb {
    pub(super) address: Option<String>,
    pub(super) tls: Option<RawListenerTls>,
    pub(super) console: bool,
    pub(super) api: bool,
    pub(super) websocket: bool,
    pub(super) ops: bool,
    pub(super) console_session_mins: u64,
    pub(super) max_connections: usize,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            address: None,
            tls: None,
            console: true,
            api: true,
            websocket: true,
            ops: false,
            console_session_mins: 480,
            max_connections: 256,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) level: String,
    pub(super) format: Choice<LogFormat>,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: Choice::Valid(LogFormat::Text),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub(super) max_connections: usize,
    pub(super) actions_per_sec: u32,
    pub(super) burst: u32,
    pub(super) failed_logins: u32,
    pub(super) failed_login_window_secs: u64,
    pub(super) ban_secs: u64,
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
pub(super) struct RawProxy {
    pub(super) banner_version: Option<String>,
    pub(super) server_header: String,
    pub(super) name: String,
    pub(super) max_in_flight_per_session: usize,
    pub(super) client_queue_bytes: usize,
    pub(super) auth_timeout_secs: u64,
    pub(super) auth_limit: usize,
    pub(super) action_timeout_secs: u64,
    pub(super) event_buffer: usize,
    pub(super) slow_client: Choice<SlowClient>,
    pub(super) max_line: usize,
    pub(super) max_lines: usize,
    pub(super) shutdown_timeout_secs: f64,
    pub(super) drain_grace_secs: f64,
    pub(super) watch_config: bool,
    pub(super) dialect: String,
    pub(super) write_timeout_secs: f64,
    pub(super) busy_poll_us: u64,
    pub(super) worker_threads: usize,
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
            slow_client: Choice::Valid(SlowClient::DropOldest),
            max_line: 1024,
            max_lines: 128,
            shutdown_timeout_secs: 10.0,
            drain_grace_secs: 0.0,
            watch_config: false,
            dialect: "auto".into(),
            write_timeout_secs: 30.0,
            busy_poll_us: 200,
            worker_threads: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) address: String,
    #[serde(default)]
    pub(super) tls: Option<RawListenerTls>,
    #[serde(default)]
    pub(super) proxy_protocol_from: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListenerTls {
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    #[serde(default)]
    pub(super) self_signed: bool,
    pub(super) client_ca: Option<PathBuf>,
    pub(super) client_auth: Option<Choice<super::ClientAuth>>,
    #[serde(default)]
    pub(super) client_crl: Vec<PathBuf>,
    #[serde(default = "default_handshake_timeout")]
    pub(super) handshake_timeout_secs: f64,
    pub(super) min_version: Option<Choice<super::MinVersion>>,
}

pub(super) fn default_handshake_timeout() -> f64 {
    10.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) name: String,
    #[serde(default = "default_kind")]
    pub(super) kind: Choice<UpstreamKind>,
    pub(super) address: Option<String>,
    #[serde(default)]
    pub(super) username: Option<String>,
    #[serde(default)]
    pub(super) secret: Option<String>,
    #[serde(default)]
    pub(super) tls: bool,
    pub(super) ca: Option<PathBuf>,
    pub(super) server_name: Option<String>,
    #[serde(default)]
    pub(super) pin_sha256: Vec<String>,
    pub(super) client_cert: Option<PathBuf>,
    pub(super) client_key: Option<PathBuf>,
    #[serde(default = "default_ping_interval")]
    pub(super) ping_interval_secs: f64,
    #[serde(default = "default_ping_timeout")]
    pub(super) ping_timeout_secs: f64,
    #[serde(default = "default_backoff_min")]
    pub(super) reconnect_min_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub(super) reconnect_max_ms: u64,
    #[serde(default)]
    pub(super) channel_prefixes: Vec<String>,
    #[serde(default)]
    pub(super) queue_prefixes: Vec<String>,
    #[serde(default)]
    pub(super) sim: RawSim,
    /// Extra manager accounts on this Asterisk, with fewer classes, for users mapped to them.
    #[serde(default)]
    pub(super) accounts: Vec<RawAccount>,
    #[serde(default = "default_max_in_flight")]
    pub(super) max_in_flight: usize,
    #[serde(default = "default_ownership_refresh")]
    pub(super) ownership_refresh_secs: f64,
    /// A second login, events off, that carries clients' actions.
    #[serde(default = "default_control_link")]
    pub(super) control_link: bool,
}

pub(super) fn default_control_link() -> bool {
    false
}

pub(super) fn default_ownership_refresh() -> f64 {
    300.0
}

pub(super) fn default_max_in_flight() -> usize {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) name: String,
    pub(super) username: String,
    pub(super) secret: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSim {
    pub(super) calls_per_sec: f64,
    pub(super) legacy_command: bool,
    pub(super) channel_id_base: u32,
}

pub(super) fn default_kind() -> Choice<UpstreamKind> {
    Choice::Valid(UpstreamKind::Asterisk)
}
pub(super) fn default_ping_interval() -> f64 {
    10.0
}
pub(super) fn default_ping_timeout() -> f64 {
    5.0
}
pub(super) fn default_backoff_min() -> u64 {
    250
}
pub(super) fn default_backoff_max() -> u64 {
    30_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub(super) name: String,
    pub(super) secret: Option<String>,
    pub(super) secret_hash: Option<String>,
    #[serde(default = "default_read")]
    pub(super) read: String,
    #[serde(default)]
    pub(super) write: String,
    #[serde(default)]
    pub(super) console: bool,
    #[serde(default)]
    pub(super) allow_md5: Option<bool>,
    #[serde(default)]
    pub(super) permit: Vec<String>,
    #[serde(default)]
    pub(super) deny: Vec<String>,
    pub(super) actions: Option<Vec<String>>,
    #[serde(default)]
    pub(super) deny_actions: Vec<String>,
    pub(super) commands: Option<Vec<String>>,
    #[serde(default, rename = "rule")]
    pub(super) rules: Vec<RawRule>,
    #[serde(default)]
    pub(super) channels: Vec<String>,
    #[serde(default)]
    pub(super) queues: Vec<String>,
    #[serde(default)]
    pub(super) servers: Vec<String>,
    #[serde(default)]
    pub(super) contexts: Vec<String>,
    #[serde(default)]
    pub(super) db_families: Vec<String>,
    #[serde(default)]
    pub(super) functions: Vec<String>,
    pub(super) applications: Option<Vec<String>>,
    pub(super) variables: Option<Vec<String>>,
    pub(super) config_files: Option<Vec<String>>,
    #[serde(default)]
    pub(super) eventfilter: Vec<String>,
    #[serde(default)]
    pub(super) actions_per_sec: u32,
    #[serde(default)]
    pub(super) burst: u32,
    #[serde(default)]
    pub(super) max_connections: usize,
    pub(super) upstream_account: Option<String>,
    pub(super) cert_subject: Option<String>,
    pub(super) cert_san: Option<String>,
    pub(super) cert_sha256: Option<String>,
    pub(super) cert_login: Option<Choice<super::CertLogin>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) action: String,
    pub(super) header: String,
    pub(super) pattern: String,
    pub(super) effect: Choice<Effect>,
}

pub(super) fn default_read() -> String {
    "all".into()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRouting {
    pub(super) default_upstream: Option<String>,
    pub(super) fanout_actions: Vec<String>,
}
