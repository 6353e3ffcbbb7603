//! Many clients: the memory an idle logged-in client costs the endpoint, and a login storm
//! (every client released by one barrier) timed until the last one is logged in.

use crate::client::{login_many, AmiConn, Credentials, SETUP_PARALLEL};
use crate::env::Env;
use crate::error::{LoadError, Result};
use crate::procstat;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

/// Time the endpoint gets to settle (allocator, lazy buffers) before RSS is read.
const SETTLE: Duration = Duration::from_secs(1);
/// The storm is abandoned after this long (it counts as failures).
const STORM_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct ScaleSpec {
    pub clients: usize,
    pub storm: usize,
    pub creds: Credentials,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScaleRow {
    pub via: String,
    pub idle_clients: usize,
    /// RSS of the measured process before and with the idle clients, MiB.
    pub rss_before_mib: Option<f64>,
    pub rss_idle_mib: Option<f64>,
    /// (RSS with clients − RSS before) / clients, KiB.
    pub kib_per_client: Option<f64>,
    /// Seconds to log the idle clients in, SETUP_PARALLEL at a time.
    pub setup_secs: f64,
    pub storm_clients: usize,
    /// From the barrier to the last successful login, ms.
    pub storm_all_ms: Option<f64>,
    pub storm_p50_ms: Option<f64>,
    pub storm_p99_ms: Option<f64>,
    /// Logged in within one second of the barrier.
    pub storm_within_1s: usize,
    pub storm_failed: usize,
    /// First failure reason, if any.
    pub storm_error: Option<String>,
}

pub async fn run(env: &Env, spec: &ScaleSpec) -> Result<ScaleRow> {
    let addr = env.targets[0];
    let mut row = ScaleRow {
        via: env.via.label().to_owned(),
        idle_clients: spec.clients,
        storm_clients: spec.storm,
        ..ScaleRow::default()
    };
    let rss = || env.pid.and_then(|p| procstat::sample(p).ok()).map(|s| s.rss_kib);
    if spec.clients > 0 {
        tokio::time::sleep(SETTLE).await;
        let before = rss();
        let t0 = Instant::now();
        let idle = login_many(addr, spec.clients, &spec.creds, true, SETUP_PARALLEL).await?;
        row.setup_secs = t0.elapsed().as_secs_f64();
        tokio::time::sleep(SETTLE).await;
        let with = rss();
        if let (Some(b), Some(w)) = (before, with) {
            row.rss_before_mib = Some(b as f64 / 1024.0);
            row.rss_idle_mib = Some(w as f64 / 1024.0);
            row.kib_per_client = Some((w as f64 - b as f64) / spec.clients as f64);
        }
        drop(idle);
        // Let the endpoint see the closes before the storm.
        tokio::time::sleep(SETTLE).await;
    }
    if spec.storm > 0 {
        storm(addr, spec, &mut row).await?;
    }
    Ok(row)
}

async fn storm(addr: std::net::SocketAddr, spec: &ScaleSpec, row: &mut ScaleRow) -> Result<()> {
    let barrier = Arc::new(Barrier::new(spec.storm + 1));
    let mut tasks = Vec::with_capacity(spec.storm);
    for _ in 0..spec.storm {
        let (barrier, creds) = (barrier.clone(), spec.creds.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = tokio::time::timeout(STORM_TIMEOUT, AmiConn::login(addr, &creds, true)).await;
            (Instant::now(), r)
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut done: Vec<f64> = Vec::with_capacity(spec.storm);
    let mut conns = Vec::with_capacity(spec.storm);
    for t in tasks {
        let (at, r) = t.await.map_err(|e| LoadError::Protocol(format!("storm task: {e}")))?;
        match r {
            Ok(Ok(c)) => {
                done.push(at.saturating_duration_since(start).as_secs_f64() * 1000.0);
                conns.push(c);
            }
            Ok(Err(e)) => {
                row.storm_failed += 1;
                row.storm_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                row.storm_failed += 1;
                row.storm_error.get_or_insert_with(|| "timed out".into());
            }
        }
    }
    // Held until every task finished, so the endpoint never sees a logoff during the storm.
    drop(conns);
    done.sort_by(f64::total_cmp);
    row.storm_within_1s = done.iter().filter(|&&ms| ms <= 1000.0).count();
    if !done.is_empty() {
        let q = |p: f64| done[((done.len() - 1) as f64 * p).round() as usize];
        row.storm_all_ms = Some(done[done.len() - 1]);
        row.storm_p50_ms = Some(q(0.5));
        row.storm_p99_ms = Some(q(0.99));
    }
    Ok(())
}
