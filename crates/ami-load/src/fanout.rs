//! Fan-out: N clients with events on, a firehose at a fixed or unbounded rate, and per-client
//! delivery rate and loss. Loss is read from the simulator's gapless `SimSeq` per stream, so
//! it counts every event dropped anywhere: in the simulator, the proxy or the socket.

use crate::client::{login_each, Credentials, SETUP_PARALLEL};
use crate::counter::{self, ConnSeen, Phase, PhaseCtl};
use crate::env::Env;
use crate::error::{LoadError, Result};
use crate::procstat::{self, ProcSample};
use crate::tenants;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinHandle;

/// Longest wait for in-flight events after the firehose stops.
const DRAIN_MAX: Duration = Duration::from_secs(10);
/// A stream is quiet once no connection has read anything for this long.
const QUIET: Duration = Duration::from_millis(300);

/// What to run.
#[derive(Debug, Clone)]
pub struct FanoutSpec {
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Firehose rate per simulator we start (`Some(0)`: as fast as possible); `None` when the
    /// endpoint's firehose is someone else's.
    pub rate: Option<u64>,
    pub creds: Credentials,
    /// Through a proxy, client i logs in as tenant i (see `tenants`); in every via the
    /// events are the tenants' firehose instead of the simulator's.
    pub scoped: bool,
    /// Read AMI as JSON over the proxy's WebSocket instead of AMI over TCP.
    pub ws: bool,
}

/// One row of results.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FanoutRow {
    pub via: String,
    pub clients: usize,
    pub sims: usize,
    /// Firehose rate asked of each simulator (0 = as fast as possible).
    pub rate: String,
    pub window_secs: f64,
    /// Events per second per client: slowest, mean, fastest.
    pub eps_min: f64,
    pub eps_mean: f64,
    pub eps_max: f64,
    /// Events per second produced (summed over simulators, as far as the fastest client saw).
    pub source_eps: f64,
    /// Events delivered per second, all clients together.
    pub total_eps: f64,
    /// Events missed by clients, from sequence gaps, a late start and a short tail.
    pub lost: u64,
    /// Of which: notified by the proxy (`ProxyEventsDropped`).
    pub proxy_dropped: u64,
    /// Events the simulators skipped for lagging sessions (the proxy's link, or direct clients).
    pub sim_lagged: u64,
    /// Out-of-order or repeated sequence numbers (must be 0).
    pub disorder: u64,
    /// Connections that ended early.
    pub errors: usize,
    /// CPU seconds of the measured process during the window, and as a share of one core.
    pub cpu_secs: Option<f64>,
    pub cpu_pct: Option<f64>,
    /// Peak RSS of the measured process over its life, MiB.
    pub peak_rss_mib: Option<f64>,
}

/// Runs one fan-out measurement on a started environment. Each of the `clients` logical
/// clients holds one connection per target (a direct cluster run reads every simulator).
pub async fn run(env: &Env, spec: &FanoutSpec) -> Result<FanoutRow> {
    let mut readers = Readers::start(env, spec).await?;
    readers.measure();
    tokio::time::sleep(spec.duration).await;
    readers.finish().await
}

/// Clients with events on counting a firehose: started before some measurement (a fan-out
/// window, a round-trip run, a login storm) and summarised after it, so any scenario can
/// say what its background load received and lost meanwhile.
pub struct Readers<'e> {
    env: &'e Env,
    clients: usize,
    rate: Option<u64>,
    /// Each reader's task, with the write half a TCP reader keeps open (a WebSocket reader
    /// owns its whole stream).
    conns: Vec<(Option<OwnedWriteHalf>, JoinHandle<ConnSeen>)>,
    ws: bool,
    phase: PhaseCtl,
    progress: Arc<AtomicU64>,
    emitter: Option<tenants::Emitter>,
    window: Option<(Instant, Option<ProcSample>)>,
}

impl<'e> Readers<'e> {
    /// Logs the clients in (events on), starts the firehose and waits out the warm-up.
    /// `spec.duration` is not used here: the caller decides how long the window lasts.
    pub async fn start(env: &'e Env, spec: &FanoutSpec) -> Result<Readers<'e>> {
        let phase = PhaseCtl::new();
        let progress = Arc::new(AtomicU64::new(0));
        let mut conns = Vec::new();
        if spec.ws {
            let web = env
                .web
                .ok_or_else(|| LoadError::Usage("--ws needs a proxy started with [web]".into()))?;
            for _ in 0..spec.clients {
                let ws = crate::ws::connect(web, &spec.creds).await?;
                conns.push((
                    None,
                    tokio::spawn(crate::ws::count(ws, phase.clone(), progress.clone())),
                ));
            }
        }
        for &addr in env.targets.iter().filter(|_| !spec.ws) {
            let creds = (0..spec.clients)
                .map(|i| match spec.scoped && env.through_proxy {
                    true => tenants::creds(i),
                    false => spec.creds.clone(),
                })
                .collect();
            for conn in login_each(addr, creds, true, SETUP_PARALLEL).await? {
                let (rd, wr, buf) = conn.into_raw();
                conns.push((
                    Some(wr),
                    tokio::spawn(counter::count(rd, buf, phase.clone(), progress.clone())),
                ));
            }
        }
        let emitter = match (spec.rate, spec.scoped) {
            (Some(rate), true) => Some(tenants::Emitter::start(env.sims.clone(), rate)),
            (Some(rate), false) => {
                env.set_firehose(Some(rate));
                None
            }
            (None, _) => None,
        };
        tokio::time::sleep(spec.warmup).await;
        Ok(Readers {
            env,
            clients: spec.clients,
            rate: spec.rate,
            conns,
            ws: spec.ws,
            phase,
            progress,
            emitter,
            window: None,
        })
    }

    /// Opens the measurement window (rates count from here; CPU is read now).
    pub fn measure(&mut self) {
        let before = sample(self.env.pid);
        self.phase.set(Phase::Measure);
        self.window = Some((Instant::now(), before));
    }

    /// Closes the window, stops the firehose, waits for the tail and sums up.
    pub async fn finish(mut self) -> Result<FanoutRow> {
        let env = self.env;
        self.phase.set(Phase::Drain);
        let (window, before) = match self.window {
            Some((t0, before)) => (t0.elapsed().as_secs_f64(), before),
            None => (0.0, None),
        };
        let after = sample(env.pid);
        if let Some(e) = self.emitter.take() {
            e.stop().await;
        } else if self.rate.is_some() {
            env.set_firehose(None);
        }
        wait_quiet(&self.progress).await;
        self.phase.set(Phase::Stop);
        let mut seen = Vec::with_capacity(self.conns.len());
        for (wr, task) in std::mem::take(&mut self.conns) {
            seen.push(
                task.await
                    .map_err(|e| LoadError::Protocol(format!("reader task: {e}")))?,
            );
            drop(wr);
        }
        // Connection k of target t belongs to client k.
        let clients = self.clients;
        let mut per_client: Vec<Vec<ConnSeen>> = vec![Vec::new(); clients];
        for (i, mut s) in seen.into_iter().enumerate() {
            // Untagged streams (straight from a simulator) are told apart by the target.
            for st in s.streams.iter_mut().filter(|st| st.key.is_empty()) {
                st.key = format!("target{}", i / clients);
            }
            per_client[i % clients].push(s);
        }
        // A second run on the same simulator (`--ws`) starts mid-sequence: its loss counts
        // from the first number each reader saw.
        let from_one = self.rate.is_some() && !self.ws && !env.firehose_ran_before();
        let mut row = summarize(
            &per_client,
            window.max(f64::MIN_POSITIVE),
            from_one,
            env.firehose_ran_before(),
        );
        row.via = match self.ws {
            true => format!("{}(ws)", env.via.label()),
            false => env.via.label().to_owned(),
        };
        row.sims = env.sims.len().max(env.targets.len());
        row.rate = match self.rate {
            Some(0) => "max".into(),
            Some(r) => r.to_string(),
            None => "external".into(),
        };
        row.sim_lagged = env.sim_lagged();
        if let (Some(b), Some(a)) = (before, after) {
            let cpu = a.cpu_secs - b.cpu_secs;
            row.cpu_secs = Some(cpu);
            row.cpu_pct = Some(100.0 * cpu / window.max(f64::MIN_POSITIVE));
            row.peak_rss_mib = Some(a.hwm_kib as f64 / 1024.0);
        }
        Ok(row)
    }
}

impl Drop for Readers<'_> {
    /// A scenario that failed half-way must not leave readers or an emitter running.
    fn drop(&mut self) {
        for (_, task) in &self.conns {
            task.abort();
        }
        if let Some(e) = &self.emitter {
            e.abort();
        }
    }
}

fn sample(pid: Option<u32>) -> Option<ProcSample> {
    pid.and_then(|p| procstat::sample(p).ok())
}

/// Returns once no connection has read anything for `QUIET`, or after `DRAIN_MAX`.
async fn wait_quiet(progress: &AtomicU64) {
    let end = Instant::now() + DRAIN_MAX;
    let mut last = progress.load(Ordering::Relaxed);
    let mut still_since = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = progress.load(Ordering::Relaxed);
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= QUIET {
            return;
        }
    }
}

/// Per-client rates and loss. With `from_one`, the firehose started after every client was
/// subscribed, so each stream must start at `SimSeq: 1` and a later first number is loss.
/// With `tail_cut`, the stream was cut rather than ended (a simulator process stopped
/// mid-send): the tail everyone must have reached is the lowest last number, not the highest.
fn summarize(per_client: &[Vec<ConnSeen>], window: f64, from_one: bool, tail_cut: bool) -> FanoutRow {
    use std::collections::BTreeMap;
    // The highest number any client saw per stream: the tail everyone should have reached.
    let mut top: BTreeMap<&str, u64> = BTreeMap::new();
    let mut span: BTreeMap<&str, u64> = BTreeMap::new();
    for conns in per_client {
        for s in conns.iter().flat_map(|c| &c.streams) {
            let t = top.entry(&s.key).or_insert(if tail_cut { u64::MAX } else { 0 });
            *t = if tail_cut { (*t).min(s.last) } else { (*t).max(s.last) };
            let sp = span.entry(&s.key).or_default();
            *sp = (*sp).max(s.at_end.saturating_sub(s.at_start));
        }
    }
    let mut row = FanoutRow {
        clients: per_client.len(),
        window_secs: window,
        eps_min: f64::MAX,
        ..FanoutRow::default()
    };
    let mut sum = 0.0;
    for conns in per_client {
        let events: u64 = conns.iter().map(|c| c.in_window).sum();
        let eps = events as f64 / window;
        sum += eps;
        row.eps_min = row.eps_min.min(eps);
        row.eps_max = row.eps_max.max(eps);
        for c in conns {
            row.proxy_dropped += c.proxy_dropped;
            row.errors += usize::from(c.error.is_some());
        }
        for (key, &t) in &top {
            let mine = conns.iter().flat_map(|c| &c.streams).find(|s| s.key == *key);
            row.lost += match mine {
                Some(s) => s.gaps + t.saturating_sub(s.last) + if from_one { s.first - 1 } else { 0 },
                None => t,
            };
            row.disorder += mine.map_or(0, |s| s.disorder);
        }
    }
    if per_client.is_empty() {
        row.eps_min = 0.0;
    }
    row.eps_mean = sum / per_client.len().max(1) as f64;
    row.total_eps = sum;
    row.source_eps = span.values().sum::<u64>() as f64 / window;
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::StreamSeen;

    fn conn(key: &str, first: u64, last: u64, gaps: u64, n: u64) -> ConnSeen {
        ConnSeen {
            streams: vec![StreamSeen {
                key: key.into(),
                first,
                last,
                gaps,
                at_start: first,
                at_end: last,
                ..StreamSeen::default()
            }],
            in_window: n,
            ..ConnSeen::default()
        }
    }

    #[test]
    fn loss_counts_gaps_head_and_tail() {
        let clients = vec![vec![conn("", 1, 100, 0, 100)], vec![conn("", 3, 90, 5, 83)]];
        let r = summarize(&clients, 1.0, true, false);
        // Second client: 5 gaps, 10 short at the tail, 2 missed at the head.
        assert_eq!(r.lost, 17);
        assert_eq!((r.eps_min, r.eps_max), (83.0, 100.0));
        assert_eq!(r.source_eps, 99.0);
        // A stream that was running before anyone subscribed and was cut at the end: only
        // the gaps are loss.
        let r = summarize(&clients, 1.0, false, true);
        assert_eq!(r.lost, 5);
    }
}
