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
mod logins;
mod procstat;
mod report;
mod rtt;
mod scale;
mod tenants;

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
    /// through, to measure what policy costs [default: 0; with `fanout --scoped`, every
    /// tenant gets them, default 10].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=10))]
    filters: Option<u8>,
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
        self.tuning_with(auth_limit, 0)
    }

    /// As `tuning`, with `filters` rules when `--filters` is not given.
    fn tuning_with(&self, auth_limit: usize, filters: usize) -> ProxyTuning {
        let n = self.filters.map_or(filters, usize::from).min(FILTER_RULES.len());
        ProxyTuning {
            event_buffer: self.event_buffer,
            auth_limit,
            log: self.proxy_log.clone(),
            filters: FILTER_RULES[FILTER_RULES.len() - n..]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..ProxyTuning::default()
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
    /// Through the proxy, client i logs in as its own user `tenantNNN` with a tenant scope
    /// (channels `PJSIP/tNNN-*` and the shared `PJSIP/trunk-*`, queues `tNNN-*`) and the
    /// `--filters` rules (default 10). The events are then a firehose this tool emits into
    /// the in-process simulator, each naming a trunk channel, so every tenant should get
    /// every one (the simulator's own firehose names no channel: a scoped user sees none of
    /// it). Direct, the same events go to plain clients: Asterisk has no per-user scope.
    /// Needs --spawn-sim.
    #[arg(long)]
    scoped: bool,
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
    /// Background load: this many other clients log in with events on and read the
    /// simulator's firehose during the whole measurement (direct: from the simulator; proxy:
    /// through the proxy). Needs --spawn-sim: the firehose is switched through the
    /// in-process simulator's handle, and an `ami-sim` binary (--sim-bin) has no way to.
    #[arg(long, default_value_t = 0)]
    load_clients: usize,
    /// The background firehose, events/s (0 = as fast as possible).
    #[arg(long, default_value_t = 20_000)]
    load_rate: u64,
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

#[derive(Args)]
struct LoginsArgs {
    #[command(flatten)]
    front: Front,
    /// Clients logged in (events on) reading the flood before and during the storm.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// New clients logging in at once, behind one barrier (Events: off).
    #[arg(long, default_value_t = 100)]
    storm: usize,
    /// The simulator's firehose during the storm, events/s (0 = as fast as possible).
    #[arg(long, default_value_t = 20_000)]
    flood: u64,
    /// Through the proxy, the benchmark user has an argon2 `secret_hash` (made here like
    /// `amiproxy hash-secret` does) instead of its plain secret, so each login costs an
    /// argon2 verification. Direct runs stay plain: Asterisk has no argon2.
    #[arg(long)]
    argon2: bool,
    /// Firehose time before the storm, seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Start an in-process simulator (its firehose is switched through its handle).
    #[arg(long)]
    spawn_sim: bool,
}

/// Firehose time before a background load is measured.
const LOAD_WARMUP: Duration = Duration::from_millis(500);
/// The readers' window around a login storm lasts at least this long: a plain storm is
/// over in milliseconds, too short a window for a rate or a CPU share to mean anything.
const STORM_WINDOW_MIN: Duration = Duration::from_secs(1);

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
        Cmd::Logins(a) => logins_cmd(cli.json, a).await,
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

fn check_fanout(a: &FanoutArgs) -> Result<()> {
    if a.clients == 0 || a.clients > 10_000 {
        return Err(LoadError::Usage("--clients must be 1..=10000".into()));
    }
    if a.scoped && a.spawn_sim.is_none() {
        return Err(LoadError::Usage(
            "--scoped needs --spawn-sim RATE: its events are emitted into an in-process simulator".into(),
        ));
    }
    Ok(())
}

async fn fanout_cmd(json: bool, a: FanoutArgs) -> Result<()> {
    check_fanout(&a)?;
    let spec = fanout::FanoutSpec {
        clients: a.clients,
        duration: secs(a.duration)?,
        warmup: secs(a.warmup)?,
        rate: a.spawn_sim,
        creds: a.front.creds(),
        scoped: a.scoped,
    };
    let tuning = match a.scoped {
        true => ProxyTuning {
            tenants: a.clients,
            auth_limit: a.clients + 64,
            ..a.front.tuning_with(1000, FILTER_RULES.len())
        },
        false => a.front.tuning(1000),
    };
    let mut rows = Vec::new();
    for via in a.front.vias(a.spawn_sim.is_some(), None)? {
        let env = Env::start(via, 1, &spec.creds, &tuning).await?;
        let r = fanout::run(&env, &spec).await;
        env.shutdown().await;
        rows.push(r?);
    }
    let mut notes = Vec::new();
    if let [d, p] = rows.as_slice() {
        notes.push(("ev/s/client proxy÷direct".to_owned(), ratio(p.eps_mean, d.eps_mean)));
        notes.push(("total ev/s proxy÷direct".to_owned(), ratio(p.total_eps, d.total_eps)));
    }
    if a.scoped {
        notes.push((
            "scoped".to_owned(),
            format!(
                "through the proxy each client is its own tenant (2 channel globs, 1 queue glob, {} eventfilter rules); direct clients are plain (Asterisk has no per-user scope); events: UserEvent with Channel PJSIP/trunk-…, in every tenant's scope",
                tuning.filters.len()
            ),
        ));
    }
    report::print(json, if a.scoped { "fanout scoped" } else { "fanout" }, &rows, &notes);
    Ok(())
}

fn check_rtt(a: &RttArgs) -> Result<()> {
    if a.clients == 0 || a.clients > 10_000 || a.requests < a.clients || a.requests > 10_000_000 {
        return Err(LoadError::Usage("need 1 <= clients <= requests <= 10,000,000".into()));
    }
    if a.load_clients > 10_000 {
        return Err(LoadError::Usage("--load-clients must be at most 10000".into()));
    }
    if a.load_clients > 0 && (!a.spawn_sim || a.sim_bin.is_some() || a.front.target.is_some()) {
        return Err(LoadError::Usage(
            "--load-clients needs --spawn-sim (and no --sim-bin or --target): the firehose is switched through the in-process simulator".into(),
        ));
    }
    Ok(())
}

async fn rtt_cmd(json: bool, a: RttArgs) -> Result<()> {
    check_rtt(&a)?;
    let creds = a.front.creds();
    let mut rows = Vec::new();
    let mut loads = Vec::new();
    let load = fanout::FanoutSpec {
        clients: a.load_clients,
        duration: Duration::ZERO,
        warmup: LOAD_WARMUP,
        rate: Some(a.load_rate),
        creds: creds.clone(),
        scoped: false,
    };
    let tuning = a.front.tuning(1000 + a.load_clients);
    for via in a.front.vias(a.spawn_sim || a.sim_bin.is_some(), a.sim_bin.clone())? {
        let env = Env::start(via, 1, &creds, &tuning).await?;
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
        let r = rtt_under_load(&env, &spec, &load).await;
        env.shutdown().await;
        let (r, l) = r?;
        rows.push(r);
        loads.extend(l);
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
    if !loads.is_empty() {
        let mut notes = Vec::new();
        if let [d, p] = loads.as_slice() {
            notes.push(("ev/s/client proxy÷direct".to_owned(), ratio(p.eps_mean, d.eps_mean)));
        }
        report::print(json, "rtt background load", &loads, &notes);
    }
    Ok(())
}

/// The round trip, with the background readers (if any) reading through the whole run.
async fn rtt_under_load(
    env: &Env,
    spec: &rtt::RttSpec,
    load: &fanout::FanoutSpec,
) -> Result<(rtt::RttRow, Option<fanout::FanoutRow>)> {
    if load.clients == 0 {
        return Ok((rtt::run(env, spec).await?, None));
    }
    let mut readers = fanout::Readers::start(env, load).await?;
    readers.measure();
    let r = rtt::run(env, spec).await?;
    Ok((r, Some(readers.finish().await?)))
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

fn check_logins(a: &LoginsArgs) -> Result<()> {
    if a.storm == 0 || a.storm > 10_000 || a.clients > 10_000 {
        return Err(LoadError::Usage(
            "need 1..=10000 storm clients and at most 10000 readers".into(),
        ));
    }
    if !a.spawn_sim || a.front.target.is_some() {
        return Err(LoadError::Usage(
            "logins needs --spawn-sim: the flood is switched through the in-process simulator".into(),
        ));
    }
    Ok(())
}

async fn logins_cmd(json: bool, a: LoginsArgs) -> Result<()> {
    check_logins(&a)?;
    let creds = a.front.creds();
    let readers = fanout::FanoutSpec {
        clients: a.clients,
        duration: Duration::ZERO,
        warmup: secs(a.warmup)?,
        rate: Some(a.flood),
        creds: creds.clone(),
        scoped: false,
    };
    let hash = match a.argon2 {
        true => Some(amiproxy::auth::hash_secret(&creds.secret).map_err(LoadError::Proxy)?),
        false => None,
    };
    let mut rows = Vec::new();
    let mut loads = Vec::new();
    for via in a.front.vias(true, None)? {
        let direct = matches!(via, Via::Direct);
        let kind = match (a.argon2, direct) {
            (true, false) => logins::SecretKind::Argon2,
            _ => logins::SecretKind::Plain,
        };
        let tuning = ProxyTuning {
            secret_hash: hash.clone().filter(|_| kind == logins::SecretKind::Argon2),
            ..a.front.tuning(a.storm + a.clients + 64)
        };
        let env = Env::start(via, 1, &creds, &tuning).await?;
        let r = storm_under_flood(&env, a.storm, &readers).await;
        env.shutdown().await;
        let (mut r, l) = r?;
        r.secret = kind.label().to_owned();
        rows.push(r);
        loads.push(l);
    }
    let mut notes = Vec::new();
    if let [d, p] = rows.as_slice() {
        if let (Some(dp), Some(pp)) = (d.p50_ms, p.p50_ms) {
            notes.push(("p50 login proxy−direct ms".to_owned(), format!("{:+.1}", pp - dp)));
        }
    }
    if a.argon2 && rows.iter().any(|r| r.via == "direct") {
        notes.push(("direct".to_owned(), "plain secret: Asterisk has no argon2".to_owned()));
    }
    for r in &rows {
        if let Some(e) = &r.error {
            notes.push((format!("{} first failure", r.via), e.clone()));
        }
    }
    report::print(json, "logins", &rows, &notes);
    report::print(json, "logins background load", &loads, &[]);
    Ok(())
}

/// Readers take the flood, then the storm runs inside their measurement window (which
/// lasts the storm, and at least `STORM_WINDOW_MIN`).
async fn storm_under_flood(
    env: &Env,
    storm: usize,
    spec: &fanout::FanoutSpec,
) -> Result<(logins::LoginsRow, fanout::FanoutRow)> {
    let mut readers = fanout::Readers::start(env, spec).await?;
    readers.measure();
    let min_end = tokio::time::Instant::now() + STORM_WINDOW_MIN;
    let mut row = logins::storm(env.targets[0], storm, &spec.creds).await?;
    tokio::time::sleep_until(min_end).await;
    let load = readers.finish().await?;
    row.via = env.via.label().to_owned();
    row.flood = load.rate.clone();
    row.readers = spec.clients;
    Ok((row, load))
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
        scoped: false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cmd {
        let mut v = vec!["ami-load"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap_or_else(|e| panic!("{args:?}: {e}")).cmd
    }

    fn usage(r: Result<()>) -> String {
        match r {
            Err(LoadError::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rtt_load_needs_the_in_process_sim() {
        let Cmd::Rtt(a) = parse(&[
            "rtt",
            "--spawn-sim",
            "--direct",
            "--load-clients",
            "100",
            "--load-rate",
            "0",
        ]) else {
            panic!()
        };
        check_rtt(&a).unwrap();
        assert_eq!((a.load_clients, a.load_rate), (100, 0));
        let Cmd::Rtt(a) = parse(&["rtt", "--sim-bin", "x", "--direct", "--load-clients", "1"]) else {
            panic!()
        };
        assert!(usage(check_rtt(&a)).contains("--spawn-sim"));
        let Cmd::Rtt(a) = parse(&[
            "rtt",
            "--spawn-sim",
            "--sim-bin",
            "x",
            "--direct",
            "--load-clients",
            "1",
        ]) else {
            panic!()
        };
        assert!(usage(check_rtt(&a)).contains("--sim-bin"));
        // Without background load, --sim-bin alone is still the direct baseline.
        let Cmd::Rtt(a) = parse(&["rtt", "--sim-bin", "x", "--direct"]) else {
            panic!()
        };
        check_rtt(&a).unwrap();
        let Cmd::Rtt(a) = parse(&["rtt", "--spawn-sim", "--direct", "--load-clients", "10001"]) else {
            panic!()
        };
        usage(check_rtt(&a));
    }

    #[test]
    fn scoped_fanout_needs_a_spawned_sim_and_defaults_to_ten_filters() {
        let Cmd::Fanout(a) = parse(&["fanout", "--target", "127.0.0.1:5038", "--scoped"]) else {
            panic!()
        };
        assert!(usage(check_fanout(&a)).contains("--spawn-sim"));
        let Cmd::Fanout(a) = parse(&["fanout", "--spawn-sim", "0", "--direct", "--scoped"]) else {
            panic!()
        };
        check_fanout(&a).unwrap();
        assert_eq!(a.front.tuning_with(1000, FILTER_RULES.len()).filters.len(), 10);
        assert!(a.front.tuning(1000).filters.is_empty());
        let Cmd::Fanout(a) = parse(&["fanout", "--spawn-sim", "0", "--direct", "--scoped", "--filters", "3"]) else {
            panic!()
        };
        let f = a.front.tuning_with(1000, FILTER_RULES.len()).filters;
        // The last rules: the one that lets the firehose's UserEvents through is among them.
        assert_eq!(f.len(), 3);
        assert_eq!(f.last().map(String::as_str), Some("Event: UserEvent"));
        assert!(Cli::try_parse_from(["ami-load", "fanout", "--filters", "11"]).is_err());
    }

    #[test]
    fn logins_checks() {
        let Cmd::Logins(a) = parse(&["logins", "--spawn-sim", "--direct", "--argon2"]) else {
            panic!()
        };
        check_logins(&a).unwrap();
        assert_eq!((a.storm, a.clients, a.flood), (100, 10, 20_000));
        let Cmd::Logins(a) = parse(&["logins", "--target", "127.0.0.1:5038"]) else {
            panic!()
        };
        assert!(usage(check_logins(&a)).contains("--spawn-sim"));
        let Cmd::Logins(a) = parse(&["logins", "--spawn-sim", "--direct", "--storm", "0"]) else {
            panic!()
        };
        usage(check_logins(&a));
    }
}
