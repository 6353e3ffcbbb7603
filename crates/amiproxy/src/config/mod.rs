//! Configuration: one TOML file read with the `config` crate (environment overrides with the
//! `AMIPROXY__` prefix, e.g. `AMIPROXY__PROXY__ACTION_TIMEOUT_SECS=5`), checked once into
//! typed values. Every error names the key it is about.

mod check;
mod export;
mod raw;
mod tls;
mod users;

pub use tls::parse_sha256;

use crate::perms::Classes;
use crate::policy::Policy;
pub use export::{ExportConfig, NatsExport, StreamStorage};
use raw::RawConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// What to do with a client whose event queue overflows (`proxy.slow_client`, spelled
/// `drop-oldest` or `disconnect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    /// Before a shutdown starts: how long `/health` answers 503 while everything else goes on
    /// as before, so that a load balancer checking it sends no new clients here first.
    pub drain_grace: Duration,
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
    /// How long a worker stays awake after an action or its answer (`busy_poll`).
    pub busy_poll: Duration,
    /// Runtime worker threads (None: one per CPU). Read at start-up only.
    pub worker_threads: Option<usize>,
}

/// Where a listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// A certificate made at start-up for localhost (development only).
    SelfSigned,
}

/// `listener.tls.client_auth`: whether a client must show a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// No handshake without a certificate the client CA issued.
    Required,
    /// A client without a certificate is let in (a certificate it shows is still verified),
    /// for users bound to no certificate.
    Optional,
}

/// `listener.tls.min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum MinVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Client certificates (mutual TLS) on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCerts {
    /// PEM file of the CA certificates client certificates must chain to.
    pub ca: PathBuf,
    pub auth: ClientAuth,
    /// PEM CRLs; a revoked client certificate fails the handshake.
    pub crls: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub source: CertSource,
    pub client: Option<ClientCerts>,
    /// How long a client may take to finish its handshake.
    pub handshake_timeout: Duration,
    pub min_version: MinVersion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub tls: Option<ListenerTls>,
    /// Load balancers whose connections start with a PROXY protocol header (required from
    /// them, refused from anyone else): the client's real address for bans, ACLs and logs.
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
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
    /// PEM file of CA certificates; system (webpki) roots when absent (and no pins).
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    /// SHA-256 digests, each of a certificate (DER) or of its public key (SPKI DER): with
    /// any, the upstream's certificate is accepted when it matches one (instead of a CA).
    pub pins: Vec<[u8; 32]>,
    /// The proxy's own certificate and key (PEM), for an upstream that asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
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
    /// Clients' actions go on a second login with events off, so their answers never wait
    /// behind the event stream.
    pub control_link: bool,
}

/// How a user's secret is kept. A plain secret is needed for MD5 challenge login (the key is
/// md5(challenge + secret)); an argon2 hash serves plain login only.
#[derive(Clone)]
pub enum Secret {
    Plain(String),
    Argon2(String),
    /// No secret: the user logs in by certificate alone (`cert_login = "certificate"`).
    None,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Plain(_) => f.write_str("Secret::Plain(<redacted>)"),
            Secret::Argon2(_) => f.write_str("Secret::Argon2(<hash>)"),
            Secret::None => f.write_str("Secret::None"),
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
    /// May log in to the operator console (`[web] console`).
    pub console: bool,
    /// The TLS client certificate this user is bound to, if any.
    pub cert: Option<CertBinding>,
}

/// `user.cert_login`: what a login of a certificate-bound user must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum CertLogin {
    /// The certificate alone: any (or no) Secret.
    #[serde(rename = "certificate")]
    Certificate,
    /// The certificate and the secret.
    #[serde(rename = "certificate+secret")]
    CertificateAndSecret,
}

/// The client certificate a user is bound to: every part given must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertBinding {
    /// The subject's common name.
    pub subject: Option<String>,
    /// One subjectAltName (DNS name, e-mail, URI or IP address).
    pub san: Option<String>,
    /// The SHA-256 of the certificate's DER.
    pub sha256: Option<[u8; 32]>,
    pub login: CertLogin,
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

/// What a replica does when Redis cannot be asked in time (`redis.on_unreachable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnreachable {
    /// Each replica enforces the limits by itself until Redis answers again.
    Local,
    /// Logins, and actions of users with a rate, are refused until Redis answers again.
    Refuse,
}

/// `[redis]`: limits shared across replicas. Read at start-up only.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` (or `unix://`); may carry a password.
    pub url: String,
    pub key_prefix: String,
    /// The longest any Redis call may hold a login or an action (connecting included).
    pub timeout: Duration,
    pub on_unreachable: OnUnreachable,
}

impl RedisConfig {
    /// The URL without its password, for logs.
    pub fn redacted_url(&self) -> String {
        match (self.url.split_once("://"), self.url.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &self.url[at..]),
            _ => self.url.clone(),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("on_unreachable", &self.on_unreachable)
            .finish()
    }
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
    pub web: WebConfig,
    pub log: LogConfig,
    /// Copies of the event stream outside the proxy (`[export.nats]`).
    pub export: ExportConfig,
    pub redis: Option<RedisConfig>,
}

/// `[web]`: AMI as JSON over WebSocket and HTTP, the operator console, and (again) the
/// metrics and health routes, on one HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// Off when absent.
    pub address: Option<SocketAddr>,
    pub tls: Option<ListenerTls>,
    /// `/console`: the operator console (for users with `console = true`).
    pub console: bool,
    /// `POST /ami/action/{Name}`.
    pub api: bool,
    /// `/ami/ws`.
    pub websocket: bool,
    /// `/metrics` and `/health` here too.
    pub ops: bool,
    /// HTTP connections (and WebSockets) at once on this listener.
    pub max_connections: usize,
    /// How long a console login lasts.
    pub console_session: Duration,
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
        check::check(raw, base)
    }

    /// Parses config text (for tests and `check-config` on stdin).
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<RawConfig>())
            .map_err(|e| vec![from_config_error(e)])?;
        check::check(raw, base)
    }

    /// Every TLS file the configuration reads (certificates, keys, CAs, CRLs): with
    /// `watch_config`, a change to one reloads as a change to the file does.
    pub fn tls_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        // The AMI listeners' and the web listener's.
        for t in self
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref())
            .chain(self.web.tls.as_ref())
        {
            if let CertSource::Files { cert, key } = &t.source {
                files.extend([cert.clone(), key.clone()]);
            }
            if let Some(c) = &t.client {
                files.push(c.ca.clone());
                files.extend(c.crls.iter().cloned());
            }
        }
        for u in &self.upstreams {
            if let UpstreamTarget::Asterisk { tls: Some(t), .. } = &u.target {
                files.extend(t.ca.iter().cloned());
                if let Some((c, k)) = &t.client_cert {
                    files.extend([c.clone(), k.clone()]);
                }
            }
        }
        files
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
    fn the_console_is_for_operators_and_web_ops_are_off_by_default() {
        let c = Config::from_toml(
            &format!("{OK}console = true\n[web]\naddress = \"127.0.0.1:0\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert!(c.users[0].console);
        assert!(!c.web.ops && c.web.console && c.web.api && c.web.websocket);
        for scope in [
            "channels = [\"PJSIP/t1-*\"]",
            "queues = [\"t1-*\"]",
            "servers = [\"pbx1\"]",
        ] {
            let errs = Config::from_toml(&format!("{OK}console = true\n{scope}\n"), Path::new(".")).unwrap_err();
            assert_eq!(errs[0].key, "user[0].console", "{scope}: {errs:?}");
        }
    }

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
    fn enum_keys_take_their_spellings_and_every_bad_one_is_named() {
        let text = format!(
            "{OK}rule = [{{ action = \"Originate\", header = \"Context\", pattern = \"^x$\", effect = \"deny\" }}]\n\
             [proxy]\nslow_client = \"disconnect\"\n[log]\nformat = \"json\"\n"
        );
        let c = Config::from_toml(&text, Path::new(".")).unwrap();
        assert_eq!(c.proxy.slow_client, SlowClient::Disconnect);
        assert!(c.log.json);
        assert!(!c.users[0].policy.rules[0].allow);
        let text = text
            .replace("\"disconnect\"", "\"Disconnect\"")
            .replace("\"json\"", "\"yaml\"")
            .replace("\"deny\"", "\"maybe\"")
            .replace("kind = \"simulated\"", "kind = \"nope\"");
        let errs = Config::from_toml(&text, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "proxy.slow_client",
            "upstream[0].kind",
            "user[0].rule[0].effect",
            "log.format",
        ] {
            assert!(keys.contains(&key), "{key}: {errs:?}");
        }
        assert!(errs[0].reason.contains("`Disconnect`"), "{errs:?}");
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
        // The keys refused when the user's `write = "call"` line is replaced by `user`.
        let refused = |user: &str| -> Vec<String> {
            let errs = Config::from_toml(&OK.replace("write = \"call\"", user), Path::new(".")).unwrap_err();
            errs.into_iter().map(|e| e.key).collect()
        };
        assert_eq!(
            refused("write = \"call,originate\"\nfunctions = [\"CALLERID\", \"shell\"]\napplications = [\"Wait\", \"System\"]"),
            ["user[0].functions[1]", "user[0].applications[1]"]
        );
        // A tenant may not be given what reaches other tenants, even with system.
        assert_eq!(
            refused("write = \"all\"\nchannels = [\"PJSIP/acme-*\"]\nfunctions = [\"IMPORT\", \"CDR\"]\napplications = [\"Dial\"]"),
            ["user[0].functions[0]", "user[0].applications[0]"]
        );
        // Nor a user bound to a list of contexts what reaches any context.
        assert_eq!(
            refused("write = \"call,originate\"\ncontexts = [\"outbound\"]\nfunctions = [\"CHANNEL\"]\napplications = [\"Wait\", \"Dial\"]"),
            ["user[0].functions[0]", "user[0].applications[1]"]
        );
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

    #[test]
    fn redis_is_off_by_default_and_its_keys_are_checked() {
        assert!(Config::from_toml(OK, Path::new(".")).unwrap().redis.is_none());
        let c = Config::from_toml(
            &format!("{OK}[redis]\nurl = \"redis://:pw@127.0.0.1:6379/0\"\n"),
            Path::new("."),
        )
        .unwrap();
        let r = c.redis.unwrap();
        assert_eq!(r.key_prefix, "amiproxy:");
        assert_eq!(r.timeout, Duration::from_millis(50));
        assert_eq!(r.on_unreachable, OnUnreachable::Local);
        assert_eq!(r.redacted_url(), "redis://***@127.0.0.1:6379/0");
        assert!(!format!("{r:?}").contains("pw"));
        let text = format!(
            "{OK}[redis]\nurl = \"http://x\"\nkey_prefix = \"a b\"\ntimeout_ms = 0\non_unreachable = \"panic\"\n"
        );
        let errs = Config::from_toml(&text, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "redis.on_unreachable",
                "redis.url",
                "redis.key_prefix",
                "redis.timeout_ms"
            ],
            "{errs:?}"
        );
        let c = Config::from_toml(
            &format!("{OK}[redis]\nurl = \"redis://127.0.0.1/\"\non_unreachable = \"refuse\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.redis.unwrap().on_unreachable, OnUnreachable::Refuse);
        let errs = Config::from_toml(
            &format!("{OK}[redis]\nurl = \"redis://h/\"\nbogus = 1\n"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(errs[0].reason.contains("bogus"), "{errs:?}");
    }

    #[test]
    fn tls_keys_are_checked_under_their_names() {
        let dir = std::env::temp_dir();
        let file = dir.join(format!("amiproxy-config-tls-{}.pem", std::process::id()));
        std::fs::write(&file, "x").unwrap();
        let f = file.display();
        let good = OK
            .replace(
                "address = \"127.0.0.1:0\"\n[[upstream]]",
                &format!("address = \"127.0.0.1:0\"\ntls = {{ cert = \"{f}\", key = \"{f}\", client_ca = \"{f}\", client_auth = \"optional\", min_version = \"1.3\", handshake_timeout_secs = 2 }}\n[[upstream]]"),
            )
            .replace(
                "secret = \"s3cret\"",
                &format!("cert_sha256 = \"{}\"\ncert_login = \"certificate\"", "AB:".repeat(31) + "AB"),
            );
        let c = Config::from_toml(&good, Path::new(".")).unwrap();
        let tls = c.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.min_version, MinVersion::Tls13);
        assert_eq!(tls.client.as_ref().unwrap().auth, ClientAuth::Optional);
        assert_eq!(tls.handshake_timeout, Duration::from_secs(2));
        let binding = c.users[0].cert.as_ref().unwrap();
        assert_eq!(
            (binding.sha256, binding.login),
            (Some([0xab; 32]), CertLogin::Certificate)
        );
        assert!(matches!(c.users[0].secret, Secret::None));
        assert_eq!(c.tls_files().len(), 3);

        let bad = good
            .replace("\"optional\"", "\"sometimes\"")
            .replace("\"1.3\"", "\"1.1\"")
            .replace("cert_login = \"certificate\"", "cert_login = \"password\"")
            .replace(
                "kind = \"simulated\"",
                "address = \"h:1\"\nusername = \"a\"\nsecret = \"b\"\npin_sha256 = [\"nope\"]",
            );
        let errs = Config::from_toml(&bad, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "listener[0].tls.client_auth",
            "listener[0].tls.min_version",
            "user[0].cert_login",
            "upstream[0].pin_sha256[0]",
        ] {
            assert!(keys.contains(&key), "{key}: {errs:?}");
        }
        // cert_login needs a binding; client_auth needs client_ca.
        let bad = OK
            .replace("write = \"call\"", "write = \"call\"\ncert_login = \"certificate\"")
            .replace(
                "address = \"127.0.0.1:0\"\n[[upstream]]",
                "address = \"127.0.0.1:0\"\ntls = { self_signed = true, client_auth = \"required\" }\n[[upstream]]",
            );
        let errs = Config::from_toml(&bad, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["listener[0].tls.client_ca", "user[0].cert_login"], "{errs:?}");
        let _ = std::fs::remove_file(&file);
    }
}
