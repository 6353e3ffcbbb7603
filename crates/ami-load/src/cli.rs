//! The command line: subcommands, their arguments, and what every scenario shares (the
//! front: where to connect, how to start the proxy, the benchmark user).

use crate::client::Credentials;
use crate::env::{ProxyTuning, Via};
use crate::error::{LoadError, Result};
use crate::rtt;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Load and latency benchmarks for AMI endpoints (loopback only).
#[derive(Parser)]
#[command(name = "ami-load", about)]
pub(crate) struct Cli {
    /// Print JSON (one object per scenario) instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// N clients with events on; per-client events/s of the SimFirehose and loss from SimSeq gaps
    /// (with --scoped: each client its own tenant-scoped proxy user with event filters).
    Fanout(FanoutArgs),
    /// Closed-loop round trip of a forwarded action (or a list action, until its Complete),
    /// optionally while other clients read a firehose (--load-clients).
    Rtt(RttArgs),
    /// Idle clients' memory cost (RSS delta / N) and a login storm behind one barrier.
    Scale(ScaleArgs),
    /// Several simulators behind the proxy: merged event rate and merged-list checks.
    Cluster(ClusterArgs),
    /// A login storm while the simulator floods and some clients read the flood
    /// (plain secrets, or argon2-hashed ones in the proxy with --argon2).
    Logins(LoginsArgs),
}

/// Where the load goes.
#[derive(Args, Clone)]
pub(crate) struct Front {
    /// An endpoint already running (nothing is started; a firehose must already run for fanout).
    #[arg(long)]
    pub(crate) target: Option<SocketAddr>,
    /// With --target: the endpoint is a proxy (events arrive tagged with `Server:`).
    #[arg(long)]
    pub(crate) target_is_proxy: bool,
    /// Process whose CPU seconds and RSS are reported (with --target).
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// Measure the in-process simulators directly (the baseline).
    #[arg(long)]
    pub(crate) direct: bool,
    /// Measure through this `amiproxy` binary, started in its own process with a generated config.
    #[arg(long)]
    pub(crate) proxy_bin: Option<PathBuf>,
    /// Measure through a proxy started inside this process (no CPU/RSS figures; for tests).
    #[arg(long)]
    pub(crate) in_process: bool,
    /// Run direct, then through the proxy (--proxy-bin or --in-process), and print both plus ratios.
    #[arg(long)]
    pub(crate) compare: bool,
    #[arg(long, default_value = "admin")]
    pub(crate) user: String,
    #[arg(long, default_value = "admin-secret")]
    pub(crate) secret: String,
    /// RUST_LOG of the proxy binary.
    #[arg(long, default_value = "warn")]
    pub(crate) proxy_log: String,
    /// The proxy's `event_buffer`.
    #[arg(long, default_value_t = 1 << 18)]
    pub(crate) event_buffer: usize,
    /// Give the benchmark user this many `eventfilter` rules (0 to 10) that let the firehose
    /// through, to measure what policy costs [default: 0; with `fanout --scoped`, every
    /// tenant gets them, default 10].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=10))]
    pub(crate) filters: Option<u8>,
    /// `KEY=VALUE` (a TOML value) added to every upstream of the proxy's config, e.g.
    /// `--upstream-set control_link=true`. Repeatable.
    #[arg(long = "upstream-set", value_name = "KEY=VALUE", value_parser = upstream_setting)]
    pub(crate) upstream_set: Vec<(String, String)>,
    /// `KEY=VALUE` (a TOML value) added to the proxy's `[proxy]` section, e.g.
    /// `--proxy-set busy_poll_us=0`. Repeatable.
    #[arg(long = "proxy-set", value_name = "KEY=VALUE", value_parser = upstream_setting)]
    pub(crate) proxy_set: Vec<(String, String)>,
}

/// Realistic event filters, advanced and legacy, includes and excludes; the last one lets the
/// firehose's UserEvents through, and runs after the others fail to match.
pub(crate) const FILTER_RULES: &[&str] = &[
    "action(exclude),name(VarSet)",
    "action(exclude),header(Channel),method(starts_with) = Local/",
    "!Variable: SECRET.*",
    "action(exclude),header(UserEvent),method(exact) = Noise",
    "action(exclude),name(Newexten)",
    "action(include),name(Hangup)",
    "action(include),name(Newchannel)",
    "action(include),name(Cdr)",
    "action(include),header(Queue),method(regex) = ^sales",
    "Event: UserEvent",
];

impl Front {
    pub(crate) fn creds(&self) -> Credentials {
        Credentials {
            user: self.user.clone(),
            secret: self.secret.clone(),
        }
    }

    pub(crate) fn tuning(&self, auth_limit: usize) -> ProxyTuning {
        self.tuning_with(auth_limit, 0)
    }

    /// As `tuning`, with `filters` rules when `--filters` is not given.
    pub(crate) fn tuning_with(&self, auth_limit: usize, filters: usize) -> ProxyTuning {
        let n = self.filters.map_or(filters, usize::from).min(FILTER_RULES.len());
        ProxyTuning {
            event_buffer: self.event_buffer,
            auth_limit,
            log: self.proxy_log.clone(),
            filters: FILTER_RULES[FILTER_RULES.len() - n..]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            upstream_set: self.upstream_set.clone(),
            proxy_set: self.proxy_set.clone(),
            ..ProxyTuning::default()
        }
    }

    /// The runs this command line asks for, in order (direct first when comparing).
    pub(crate) fn vias(&self, spawned: bool, direct_bin: Option<PathBuf>) -> Result<Vec<Via>> {
        if let Some(addr) = self.target {
            if self.compare || self.direct || self.proxy_bin.is_some() || self.in_process || spawned {
                return Err(LoadError::Usage(
                    "--target excludes starting simulators or a proxy".into(),
                ));
            }
            return Ok(vec![Via::External {
                addr,
                pid: self.pid,
                is_proxy: self.target_is_proxy,
            }]);
        }
        if !spawned {
            return Err(LoadError::Usage(
                "give --target ADDR, or --spawn-sim to start simulators".into(),
            ));
        }
        let proxy = match (&self.proxy_bin, self.in_process) {
            (Some(_), true) => return Err(LoadError::Usage("--proxy-bin or --in-process, not both".into())),
            (Some(p), false) => Some(Via::ProxyBin(p.clone())),
            (None, true) => Some(Via::InProcess),
            (None, false) => None,
        };
        let direct = direct_bin.map_or(Via::Direct, Via::SimBin);
        match (self.compare, self.direct, proxy) {
            (true, _, Some(p)) => Ok(vec![direct, p]),
            (true, _, None) => Err(LoadError::Usage("--compare needs --proxy-bin or --in-process".into())),
            (false, true, None) => Ok(vec![direct]),
            (false, false, Some(p)) => Ok(vec![p]),
            (false, true, Some(_)) => Err(LoadError::Usage("--direct with a proxy: use --compare".into())),
            (false, false, None) => Err(LoadError::Usage(
                "choose --direct, --proxy-bin PATH or --in-process".into(),
            )),
        }
    }
}

#[derive(Args)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    pub(crate) front: Front,
    #[arg(long, default_value_t = 10)]
    pub(crate) clients: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Firehose time before the window, seconds.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) warmup: f64,
    /// Start an in-process simulator with its firehose at RATE events/s (0 = as fast as possible).
    #[arg(long, value_name = "RATE")]
    pub(crate) spawn_sim: Option<u64>,
    /// Through the proxy, client i logs in as its own user `tenantNNN` with a tenant scope
    /// (channels `PJSIP/tNNN-*` and the shared `PJSIP/trunk-*`, queues `tNNN-*`) and the
    /// `--filters` rules (default 10). The events are then a firehose this tool emits into
    /// the in-process simulator, each naming a trunk channel, so every tenant should get
    /// every one (the simulator's own firehose names no channel: a scoped user sees none of
    /// it). Direct, the same events go to plain clients: Asterisk has no per-user scope.
    /// Needs --spawn-sim.
    #[arg(long)]
    pub(crate) scoped: bool,
    /// Through the proxy, measure again on the same proxy with the clients reading AMI as
    /// JSON over its WebSocket (`[web]`, `/ami/ws`): TCP and WebSocket in one run.
    #[arg(long)]
    pub(crate) ws: bool,
}

#[derive(Args)]
pub(crate) struct RttArgs {
    #[command(flatten)]
    pub(crate) front: Front,
    #[arg(long, default_value_t = 1)]
    pub(crate) clients: usize,
    /// Recorded requests in total (each client also sends 20 unrecorded warm-up requests).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) requests: usize,
    #[arg(long, value_enum, ignore_case = true, default_value_t = rtt::ActionKind::CoreSettings)]
    pub(crate) action: rtt::ActionKind,
    /// `Server:` header added through a proxy (default for Ping: the first simulator, so it is forwarded).
    #[arg(long)]
    pub(crate) server: Option<String>,
    /// Start an in-process simulator.
    #[arg(long)]
    pub(crate) spawn_sim: bool,
    /// Direct baseline: this `ami-sim` binary in its own process, so the direct path crosses a
    /// process boundary (and its wake-ups) as the proxied path does.
    #[arg(long)]
    pub(crate) sim_bin: Option<PathBuf>,
    /// Background load: this many other clients log in with events on and read the
    /// simulator's firehose during the whole measurement (direct: from the simulator; proxy:
    /// through the proxy). Needs --spawn-sim: the firehose is switched through the
    /// in-process simulator's handle, and an `ami-sim` binary (--sim-bin) has no way to.
    #[arg(long, default_value_t = 0)]
    pub(crate) load_clients: usize,
    /// The background firehose, events/s (0 = as fast as possible).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) load_rate: u64,
}

#[derive(Args)]
pub(crate) struct ScaleArgs {
    #[command(flatten)]
    pub(crate) front: Front,
    /// Idle logged-in clients held while RSS is read (0 = skip).
    #[arg(long, default_value_t = 1000)]
    pub(crate) clients: usize,
    /// Clients in the login storm (default: min(clients, 1000); 0 = skip).
    #[arg(long)]
    pub(crate) storm: Option<usize>,
    /// Start an in-process simulator (behind the proxy).
    #[arg(long)]
    pub(crate) spawn_sim: bool,
    /// Direct baseline: this `ami-sim` binary in its own process, so its RSS can be read.
    #[arg(long)]
    pub(crate) sim_bin: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct ClusterArgs {
    #[command(flatten)]
    pub(crate) front: Front,
    /// Simulators started in-process.
    #[arg(long, default_value_t = 4)]
    pub(crate) sims: usize,
    #[arg(long, default_value_t = 10)]
    pub(crate) clients: usize,
    /// Firehose per simulator, events/s (0 = as fast as possible).
    #[arg(long, default_value_t = 5000)]
    pub(crate) rate: u64,
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
}

#[derive(Args)]
pub(crate) struct LoginsArgs {
    #[command(flatten)]
    pub(crate) front: Front,
    /// Clients logged in (events on) reading the flood before and during the storm.
    #[arg(long, default_value_t = 10)]
    pub(crate) clients: usize,
    /// New clients logging in at once, behind one barrier (Events: off).
    #[arg(long, default_value_t = 100)]
    pub(crate) storm: usize,
    /// The simulator's firehose during the storm, events/s (0 = as fast as possible).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) flood: u64,
    /// Through the proxy, the benchmark user has an argon2 `secret_hash` (made here like
    /// `amiproxy hash-secret` does) instead of its plain secret, so each login costs an
    /// argon2 verification. Direct runs stay plain: Asterisk has no argon2.
    #[arg(long)]
    pub(crate) argon2: bool,
    /// Firehose time before the storm, seconds.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) warmup: f64,
    /// Start an in-process simulator (its firehose is switched through its handle).
    #[arg(long)]
    pub(crate) spawn_sim: bool,
}

/// One `--upstream-set` or `--proxy-set KEY=VALUE`: a plain key, and a value TOML reads.
fn upstream_setting(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    let (k, v) = (k.trim(), v.trim());
    if k.is_empty()
        || !k
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
    {
        return Err(format!("`{k}` is not a config key"));
    }
    let parsed: std::result::Result<toml::Table, _> = format!("{k} = {v}").parse();
    parsed.map_err(|e| format!("`{v}` is not a TOML value: {e}"))?;
    Ok((k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod upstream_set_tests {
    use super::upstream_setting;

    #[test]
    fn upstream_settings_are_checked() {
        assert_eq!(
            upstream_setting("control_link=true"),
            Ok(("control_link".to_owned(), "true".to_owned()))
        );
        assert!(upstream_setting("control_link").is_err());
        assert!(upstream_setting("bad key=1").is_err());
        assert!(upstream_setting("x=not toml").is_err());
    }
}
