//! Closed-loop round trips: each client sends one action, waits for its whole answer (the
//! response, or for a list action its `…Complete` event), then sends the next. Closed loop
//! measures latency, not queueing, which is what a proxy adds to every request.

use crate::client::{login_many, AmiConn, Credentials, SETUP_PARALLEL};
use crate::env::Env;
use crate::error::{LoadError, Result};
use ami_proto::{Kind, MessageBuilder};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// Longest wait for one answer before the run counts it as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Unrecorded requests per client first (connections, caches and branch predictors warm).
const WARMUP_PER_CLIENT: usize = 20;

/// The actions the benchmark knows how to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum ActionKind {
    /// Answered by the proxy itself unless it carries `Server:`; the benchmark adds it.
    #[value(name = "Ping")]
    Ping,
    /// A single forwarded response.
    #[value(name = "CoreSettings")]
    CoreSettings,
    /// A list: response, one event per queue member/param, `QueueStatusComplete`.
    #[value(name = "QueueStatus")]
    QueueStatus,
    /// A list: `QueueSummaryComplete`.
    #[value(name = "QueueSummary")]
    QueueSummary,
    /// A list: `CoreShowChannelsComplete`.
    #[value(name = "CoreShowChannels")]
    CoreShowChannels,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Ping => "Ping",
            ActionKind::CoreSettings => "CoreSettings",
            ActionKind::QueueStatus => "QueueStatus",
            ActionKind::QueueSummary => "QueueSummary",
            ActionKind::CoreShowChannels => "CoreShowChannels",
        }
    }

    pub fn is_list(self) -> bool {
        matches!(
            self,
            ActionKind::QueueStatus | ActionKind::QueueSummary | ActionKind::CoreShowChannels
        )
    }
}

#[derive(Debug, Clone)]
pub struct RttSpec {
    pub clients: usize,
    pub requests: usize,
    pub action: ActionKind,
    /// `Server:` header to add when talking to a proxy (routes and, for Ping, forwards).
    pub server: Option<String>,
    pub creds: Credentials,
}

/// One row of results; times in microseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RttRow {
    pub via: String,
    pub action: String,
    pub clients: usize,
    pub requests: usize,
    pub answered: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    pub req_per_sec: f64,
}

/// Runs the round-trip measurement on a started environment.
pub async fn run(env: &Env, spec: &RttSpec) -> Result<RttRow> {
    let addr = env.targets[0];
    let conns = login_many(addr, spec.clients, &spec.creds, false, SETUP_PARALLEL).await?;
    let server = if env.through_proxy { spec.server.clone() } else { None };
    let base = spec.requests / spec.clients;
    let extra = spec.requests % spec.clients;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        let n = base + usize::from(i < extra);
        let server = server.clone();
        let action = spec.action;
        tasks.push(tokio::spawn(
            async move { client_loop(conn, i, n, action, server).await },
        ));
    }
    let mut hist = new_hist();
    let mut row = RttRow::default();
    for t in tasks {
        let (h, errors) = t.await.map_err(|e| LoadError::Protocol(format!("rtt task: {e}")))??;
        hist.add(&h)
            .map_err(|e| LoadError::Protocol(format!("histogram: {e}")))?;
        row.errors += errors;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let us = |ns: u64| ns as f64 / 1000.0;
    row.via = env.via.label().to_owned();
    row.action = spec.action.name().to_owned();
    row.clients = spec.clients;
    row.requests = spec.requests;
    row.answered = hist.len();
    row.p50_us = us(hist.value_at_quantile(0.50));
    row.p90_us = us(hist.value_at_quantile(0.90));
    row.p99_us = us(hist.value_at_quantile(0.99));
    row.max_us = us(hist.max());
    row.mean_us = hist.mean() / 1000.0;
    row.req_per_sec = (spec.requests + spec.clients * WARMUP_PER_CLIENT) as f64 / elapsed;
    Ok(row)
}

fn new_hist() -> Histogram<u64> {
    // 1 ns to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// One client's closed loop; returns its latencies (ns) and the error answers it got.
async fn client_loop(
    mut conn: AmiConn,
    client: usize,
    n: usize,
    action: ActionKind,
    server: Option<String>,
) -> Result<(Histogram<u64>, u64)> {
    let mut hist = new_hist();
    let mut errors = 0;
    for j in 0..(WARMUP_PER_CLIENT + n) {
        let aid = format!("rtt-{client}-{j}");
        let bytes = MessageBuilder::action(action.name())
            .header("ActionID", &aid)
            .header_opt("Server", server.as_deref())
            .into_bytes();
        let start = Instant::now();
        conn.send(&bytes).await?;
        let ok = tokio::time::timeout(ANSWER_TIMEOUT, wait_answer(&mut conn, &aid, action.is_list()))
            .await
            .map_err(|_| LoadError::Timeout(format!("answer to {aid}")))??;
        let ns = start.elapsed().as_nanos() as u64;
        if j >= WARMUP_PER_CLIENT {
            if ok {
                hist.record(ns.max(1))
                    .map_err(|e| LoadError::Protocol(format!("histogram: {e}")))?;
            } else {
                errors += 1;
            }
        }
    }
    Ok((hist, errors))
}

/// Waits for the end of the answer to `aid`; false if it was an error response.
async fn wait_answer(conn: &mut AmiConn, aid: &str, list: bool) -> Result<bool> {
    loop {
        let m = conn.next().await?;
        if m.action_id() != Some(aid) {
            continue;
        }
        match m.kind() {
            Kind::Response if m.response() != Some("Success") => return Ok(false),
            Kind::Response if !list => return Ok(true),
            Kind::Event if list && m.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete")) => {
                return Ok(true)
            }
            _ => {}
        }
    }
}
