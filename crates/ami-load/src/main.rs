#![forbid(unsafe_code)]
//! `ami-load`: drives many AMI clients against an AMI endpoint (the proxy, or a simulated
//! Asterisk directly as the baseline) and prints one table per scenario, or JSON.
//!
//! The figures are only worth comparing when both sides run on the same machine in the same
//! run, so every scenario can `--compare`: the same load straight to fresh simulators, then
//! through the proxy binary in its own process (whose CPU and memory are read from /proc).

mod client;
mod cluster;
mod counter;
mod env;
mod error;
mod fanout;
mod procstat;
mod report;
mod rtt;
mod scale;

use clap::{Args, Parser, Subcommand};
use client::Credentials;
use env::{Env, ProxyTuning, Via};
use error::{LoadError, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Load and latency benchmarks for AMI endpoints (loopback only).
#[derive(Parser)]
#[command(name = "ami-load", about)]
struct Cli {
    /// Print JSON (one object per scenario) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N clients with events on; per-client events/s of the SimFirehose and loss from SimSeq gaps.
    Fanout(FanoutArgs),
    /// Closed-loop round trip of a forwarded action (or a list action, until its Complete).
    Rtt(RttArgs),
    /// Idle clients' memory cost (RSS delta / N) and a login storm behind one barrier.
    Scale(ScaleArgs),
    /// Several simulators behind the proxy: merged event rate and merged-list checks.
    Cluster(ClusterArgs),
}

/// Where the load goes.
#[derive(Args, Clone)]
struct Front {
    /// An endpoint already running (nothing is started; a firehose must already run for fanout).
    #[arg(long)]
    target: Option<SocketAddr>,
    /// With --target: the endpoint is a proxy (events arrive tagged with `Server:`).
    #[arg(long)]
    target_is_proxy: bool,
    /// Process whose CPU seconds and RSS are reported (with --target).
    #[arg(long)]
    pid: Option<u32>,
    /// Measure the in-process simulators directly (the baseline).
    #[arg(long)]
    direct: bool,
    /// Measure through this `amiproxy` binary, started in its own process with a generated config.
    #[arg(long)]
    proxy_bin: Option<PathBuf>,
    /// Measure through a proxy started inside this process (no CPU/RSS figures; for tests).
    #[arg(long)]
    in_process: bool,
    /// Run direct, then through the proxy (--proxy-bin or --in-process), and print both plus ratios.
    #[arg(long)]
    compare: bool,
    #[arg(long, default_value = "admin")]
    user: String,
    #[arg(long, default_value = "admin-secret")]
    secret: String,
    /// RUST_LOG of the proxy binary.
    #[arg(long, default_value = "warn")]
    proxy_log: String,
    /// The proxy's `event_buffer`.
    #[arg(long, default_value_t = 1 << 18)]
    event_buffer: usize,
    /// Give the benchmark user this many `eventfilter` rules (0 to 10) that let the firehose
    /// through, to measure what policy costs.
    #[arg(long, default_value_t = 0)]
    filters: usize,
}

/// Realistic event filters, advanced and legacy, includes and excludes; the last one lets the
/// firehose's UserEvents through, and runs after the others fail to match.
const FILTER_RULES: &[&str] = &[
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
    fn creds(&self) -> Credentials {
        Credentials {
            user: self.user.clone(),
            secret: self.secret.clone(),
        }
    }

    fn tuning(&self, auth_limit: usize) -> ProxyTuning {
        ProxyTuning {
            event_buffer: self.event_buffer,
            auth_limit,
            log: self.proxy_log.clone(),
            filters: FILTER_RULES[FILTER_RULES.len() - self.filters.min(FILTER_RULES.len())..]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// The runs this command line asks for, in order (direct first when comparing).
    fn vias(&self, spawned: bool, direct_bin: Option<PathBuf>) -> Result<Vec<Via>> {
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
struct FanoutArgs {
    #[command(flatten)]
    front: Front,
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Firehose time before the window, seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Start an in-process simulator with its firehose at RATE events/s (0 = as fast as possible).
    #[arg(long, value_name = "RATE")]
    spawn_sim: Option<u64>,
}

#[derive(Args)]
struct RttArgs {
    #[command(flatten)]
    front: Front,
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Recorded requests in total (each client also sends 20 unrecorded warm-up requests).
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    #[arg(long, value_enum, ignore_case = true, default_value_t = rtt::ActionKind::CoreSettings)]
    action: rtt::ActionKind,
    /// `Server:` header added through a proxy (default for Ping: the first simulator, so it is forwarded).
    #[arg(long)]
    server: Option<String>,
    /// Start an in-process simulator.
    #[arg(long)]
    spawn_sim: bool,
    /// Direct baseline: this `ami-sim` binary in its own process, so the direct path crosses a
    /// process boundary (and its wake-ups) as the proxied path does.
    #[arg(long)]
    sim_bin: Option<PathBuf>,
}

#[derive(Args)]
struct ScaleArgs {
    #[command(flatten)]
    front: Front,
    /// Idle logged-in clients held while RSS is read (0 = skip).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Clients in the login storm (default: min(clients, 1000); 0 = skip).
    #[arg(long)]
    storm: Option<usize>,
    /// Start an in-process simulator (behind the proxy).
    #[arg(long)]
    spawn_sim: bool,
    /// Direct baseline: this `ami-sim` binary in its own process, so its RSS can be read.
    #[arg(long)]
    sim_bin: Option<PathBuf>,
}

#[derive(Args)]
struct ClusterArgs {
    #[command(flatten)]
    front: Front,
    /// Simulators started in-process.
    #[arg(long, default_value_t = 4)]
    sims: usize,
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Firehose per simulator, events/s (0 = as fast as possible).
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // 10,000 clients need 10,000 descriptors here and in the proxy we spawn (it inherits).
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ami-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ami-load: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Fanout(a) => fanout_cmd(cli.json, a).await,
        Cmd::Rtt(a) => rtt_cmd(cli.json, a).await,
        Cmd::Scale(a) => scale_cmd(cli.json, a).await,
        Cmd::Cluster(a) => cluster_cmd(cli.json, a).await,
    }
}

fn secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| *d <= Duration::from_secs(3600))
        .ok_or_else(|| LoadError::Usage(format!("{s} s is not a duration up to an hour")))
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "-".into()
    } else {
        format!("{:.3}", a / b)
    }
}

async fn fanout_cmd(json: bool, a: FanoutArgs) -> Result<()> {
    if a.clients == 0 || a.clients > 10_000 {
        return Err(LoadError::Usage("--clients must be 1..=10000".into()));
    }
    let spec = fanout::FanoutSpec {
        clients: a.clients,
        duration: secs(a.duration)?,
        warmup: secs(a.warmup)?,
        rate: a.spawn_sim,
        creds: a.front.creds(),
    };
    let mut rows = Vec::new();
    for via in a.front.vias(a.spawn_sim.is_some(), None)? {
        let env = Env::start(via, 1, &spec.creds, &a.front.tuning(1000)).await?;
        let r = fanout::run(&env, &spec).await;
        env.shutdown().await;
        rows.push(r?);
    }
    let mut notes = Vec::new();
    if let [d, p] = rows.as_slice() {
        notes.push(("ev/s/client proxy÷direct".to_owned(), ratio(p.eps_mean, d.eps_mean)));
        notes.push(("total ev/s proxy÷direct".to_owned(), ratio(p.total_eps, d.total_eps)));
    }
    report::print(json, "fanout", &rows, &notes);
    Ok(())
}

async fn rtt_cmd(json: bool, a: RttArgs) -> Result<()> {
    if a.clients == 0 || a.clients > 10_000 || a.requests < a.clients || a.requests > 10_000_000 {
        return Err(LoadError::Usage("need 1 <= clients <= requests <= 10,000,000".into()));
    }
    let creds = a.front.creds();
    let mut rows = Vec::new();
    for via in a.front.vias(a.spawn_sim || a.sim_bin.is_some(), a.sim_bin.clone())? {
        let env = Env::start(via, 1, &creds, &a.front.tuning(1000)).await?;
        let server = a.server.clone().or_else(|| {
            (a.action == rtt::ActionKind::Ping)
                .then(|| env.server_names().into_iter().next())
                .flatten()
        });
        let spec = rtt::RttSpec {
            clients: a.clients,
            requests: a.requests,
            action: a.action,
            server,
            creds: creds.clone(),
        };
        let r = rtt::run(&env, &spec).await;
        env.shutdown().await;
        rows.push(r?);
    }
    let mut notes = Vec::new();
    if let [d, p] = rows.as_slice() {
        notes.push((
            "p50 added by proxy µs".to_owned(),
            format!("{:+.1}", p.p50_us - d.p50_us),
        ));
        notes.push((
            "p99 added by proxy µs".to_owned(),
            format!("{:+.1}", p.p99_us - d.p99_us),
        ));
    }
    report::print(json, "rtt", &rows, &notes);
    Ok(())
}

async fn scale_cmd(json: bool, a: ScaleArgs) -> Result<()> {
    if a.clients > 10_000 || a.storm.is_some_and(|s| s > 10_000) {
        return Err(LoadError::Usage("at most 10,000 clients".into()));
    }
    let spec = scale::ScaleSpec {
        clients: a.clients,
        storm: a.storm.unwrap_or(a.clients.min(1000)),
        creds: a.front.creds(),
    };
    let spawned = a.spawn_sim || a.sim_bin.is_some();
    let auth_limit = spec.clients.max(spec.storm) + 64;
    let mut rows = Vec::new();
    for via in a.front.vias(spawned, a.sim_bin.clone())? {
        let env = Env::start(via, 1, &spec.creds, &a.front.tuning(auth_limit)).await?;
        let r = scale::run(&env, &spec).await;
        env.shutdown().await;
        rows.push(r?);
    }
    let mut notes = Vec::new();
    if let [d, p] = rows.as_slice() {
        if let (Some(dk), Some(pk)) = (d.kib_per_client, p.kib_per_client) {
            notes.push(("KiB/client proxy−direct".to_owned(), format!("{:+.1}", pk - dk)));
        }
    }
    report::print(json, "scale", &rows, &notes);
    Ok(())
}

async fn cluster_cmd(json: bool, a: ClusterArgs) -> Result<()> {
    if a.sims == 0 || a.sims > 16 || a.clients == 0 || a.clients > 1000 {
        return Err(LoadError::Usage("need 1..=16 sims and 1..=1000 clients".into()));
    }
    let spec = fanout::FanoutSpec {
        clients: a.clients,
        duration: secs(a.duration)?,
        warmup: Duration::from_millis(500),
        rate: Some(a.rate),
        creds: a.front.creds(),
    };
    let mut rows = Vec::new();
    let mut lists = Vec::new();
    for via in a.front.vias(true, None)? {
        let env = Env::start(via, a.sims, &spec.creds, &a.front.tuning(1000)).await?;
        let r = fanout::run(&env, &spec).await;
        let l = match (&r, env.through_proxy) {
            (Ok(_), true) => cluster::check_lists(&env, &spec.creds).await,
            _ => Ok(Vec::new()),
        };
        env.shutdown().await;
        rows.push(r?);
        lists.extend(l?);
    }
    let mut notes = Vec::new();
    if let [d, p] = rows.as_slice() {
        notes.push(("ev/s/client proxy÷direct".to_owned(), ratio(p.eps_mean, d.eps_mean)));
    }
    report::print(json, "cluster", &rows, &notes);
    if !lists.is_empty() {
        report::print(json, "cluster merged lists", &lists, &[]);
    }
    if let Some(bad) = lists.iter().find(|l| !l.ok) {
        return Err(LoadError::Check(format!(
            "merged {} list is wrong: {bad:?}",
            bad.action
        )));
    }
    Ok(())
}
