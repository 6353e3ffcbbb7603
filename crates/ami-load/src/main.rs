#![forbid(unsafe_code)]
//! `ami-load`: drives many AMI clients against an AMI endpoint (the proxy, or a simulated
//! Asterisk directly as the baseline) and prints one table per scenario, or JSON.
//!
//! The figures are only worth comparing when both sides run on the same machine in the same
//! run, so every scenario can `--compare`: the same load straight to fresh simulators, then
//! through the proxy binary in its own process (whose CPU and memory are read from /proc).

mod cli;
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
mod ws;

use clap::Parser;
use cli::*;
use env::{Env, ProxyTuning, Via};
use error::{LoadError, Result};
use std::process::ExitCode;
use std::time::Duration;

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
        ws: false,
    };
    let tuning = match a.scoped {
        true => ProxyTuning {
            tenants: a.clients,
            auth_limit: a.clients + 64,
            ..a.front.tuning_with(1000, FILTER_RULES.len())
        },
        false => a.front.tuning(1000),
    };
    let tuning = ProxyTuning { web: a.ws, ..tuning };
    let mut rows = Vec::new();
    for via in a.front.vias(a.spawn_sim.is_some(), None)? {
        let env = Env::start(via, 1, &spec.creds, &tuning).await?;
        let r = fanout::run(&env, &spec).await;
        // The same proxy process, WebSocket readers next: TCP and WebSocket in one run.
        let ws = match (a.ws && env.web.is_some(), &r) {
            (true, Ok(_)) => Some(
                fanout::run(
                    &env,
                    &fanout::FanoutSpec {
                        ws: true,
                        ..spec.clone()
                    },
                )
                .await,
            ),
            _ => None,
        };
        env.shutdown().await;
        rows.push(r?);
        if let Some(w) = ws {
            rows.push(w?);
        }
    }
    let mut notes = Vec::new();
    if let [d, p, ..] = rows.as_slice() {
        notes.push(("ev/s/client proxy÷direct".to_owned(), ratio(p.eps_mean, d.eps_mean)));
        notes.push(("total ev/s proxy÷direct".to_owned(), ratio(p.total_eps, d.total_eps)));
    }
    if let Some(w) = rows.iter().find(|r| r.via.ends_with("(ws)")) {
        if let Some(t) = rows.iter().find(|r| r.via == "proxy" || r.via == "proxy(in-proc)") {
            notes.push(("total ev/s websocket÷tcp".to_owned(), ratio(w.total_eps, t.total_eps)));
            notes.push((
                "proxy CPU websocket÷tcp".to_owned(),
                ratio(w.cpu_secs.unwrap_or(0.0), t.cpu_secs.unwrap_or(0.0)),
            ));
        }
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
    if a.load_clients > 0 && (a.spawn_sim == a.sim_bin.is_some() || a.front.target.is_some()) {
        return Err(LoadError::Usage(
            "--load-clients needs --spawn-sim (the firehose switched through the in-process simulator) or --sim-bin (a simulator process whose firehose runs from its start, behind both the baseline and the proxy), not both, and no --target".into(),
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
        ws: false,
    };
    let tuning = a.front.tuning(1000 + a.load_clients);
    for via in a.front.vias(a.spawn_sim || a.sim_bin.is_some(), a.sim_bin.clone())? {
        let env = match (&a.sim_bin, a.load_clients) {
            (Some(sim), 1..) => Env::start_on_sim_process(via, sim, a.load_rate, &creds, &tuning).await?,
            _ => Env::start(via, 1, &creds, &tuning).await?,
        };
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
        ws: false,
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
        ws: false,
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
    fn rtt_load_needs_one_simulator_with_a_firehose() {
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
        // A simulator process runs its firehose itself, behind both fronts.
        let Cmd::Rtt(a) = parse(&[
            "rtt",
            "--sim-bin",
            "x",
            "--compare",
            "--proxy-bin",
            "p",
            "--load-clients",
            "1",
        ]) else {
            panic!()
        };
        check_rtt(&a).unwrap();
        let Cmd::Rtt(a) = parse(&["rtt", "--direct", "--load-clients", "1"]) else {
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
