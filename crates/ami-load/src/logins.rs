//! A login storm under an event flood: while the simulator floods and a few clients are
//! already reading it, many new clients log in at once (behind one barrier). Each login is
//! timed from its own start to its `Success`, so the figures are the login path's latency
//! while the proxy is busy fanning events out, and, with an argon2 `secret_hash`, while
//! the verifications compete for the same cores.
//!
//! The storm's clients log in with `Events: off`: what is timed is the login path, not the
//! load generator reading a hundred more floods on the same two cores. Whether the storm
//! disturbs event delivery is what the readers' loss and rate (a second table) show.

use crate::client::{AmiConn, Credentials};
use crate::error::{LoadError, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

/// A login not done after this long counts as failed.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How the benchmark user's secret is held by the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Plain,
    Argon2,
}

impl SecretKind {
    pub fn label(self) -> &'static str {
        match self {
            SecretKind::Plain => "plain",
            SecretKind::Argon2 => "argon2",
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoginsRow {
    pub via: String,
    /// `plain` or `argon2` (the secret as the endpoint stores it).
    pub secret: String,
    /// Firehose rate (`max`: as fast as possible).
    pub flood: String,
    /// Clients reading the flood during the storm.
    pub readers: usize,
    pub storm: usize,
    /// From the first login's start to the last successful one's end, ms.
    pub all_in_ms: Option<f64>,
    /// Per login, from its connect to its `Success`, ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub failed: usize,
    /// First failure reason, if any.
    pub error: Option<String>,
}

/// Releases `n` logins to `addr` at once and times them; the connections are held until
/// every login has finished, so the endpoint sees no logoff during the storm.
pub async fn storm(addr: SocketAddr, n: usize, creds: &Credentials) -> Result<LoginsRow> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (barrier, creds) = (barrier.clone(), creds.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let t0 = Instant::now();
            let r = tokio::time::timeout(LOGIN_TIMEOUT, AmiConn::login(addr, &creds, false)).await;
            (t0, Instant::now(), r)
        }));
    }
    barrier.wait().await;
    let mut row = LoginsRow {
        storm: n,
        ..LoginsRow::default()
    };
    let mut took: Vec<f64> = Vec::with_capacity(n);
    // The storm starts when the first login does: the barrier wakes this task no earlier
    // than the others, often later.
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        let (t0, at, r) = t.await.map_err(|e| LoadError::Protocol(format!("login task: {e}")))?;
        first = Some(first.map_or(t0, |f| f.min(t0)));
        match r {
            Ok(Ok(c)) => {
                took.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                last = last.max(Some(at));
                conns.push(c);
            }
            Ok(Err(e)) => {
                row.failed += 1;
                row.error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                row.failed += 1;
                row.error.get_or_insert_with(|| "timed out".into());
            }
        }
    }
    drop(conns);
    row.all_in_ms = match (first, last) {
        (Some(f), Some(l)) => Some(l.saturating_duration_since(f).as_secs_f64() * 1000.0),
        _ => None,
    };
    took.sort_by(f64::total_cmp);
    row.p50_ms = quantile(&took, 0.50);
    row.p99_ms = quantile(&took, 0.99);
    row.max_ms = took.last().copied();
    Ok(row)
}

/// The nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64) * q).round() as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_few_values() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0], 0.99), Some(3.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(51.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
    }
}
