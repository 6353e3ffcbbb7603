//! Prometheus metrics (the `metrics` facade with its Prometheus recorder) and their names.
//!
//! Hot paths (events in and out) use counter handles registered once, so a delivery costs an
//! atomic add, not a registry lookup; per-session counts are added per batch.

use metrics::{counter, gauge, histogram, Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets for upstream answers, in seconds (50 µs to 10 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const DEPTH_BUCKETS: &[f64] = &[0.0, 1.0, 8.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0];

/// The process-wide Prometheus recorder.
pub struct Metrics;

impl Metrics {
    /// Installs the process-wide recorder (once; later calls reuse it).
    pub fn install() -> Option<&'static PrometheusHandle> {
        HANDLE
            .get_or_init(|| {
                PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full("amiproxy_upstream_response_seconds".into()),
                        LATENCY_BUCKETS,
                    )
                    .and_then(|b| {
                        b.set_buckets_for_metric(
                            metrics_exporter_prometheus::Matcher::Full("amiproxy_client_queue_depth".into()),
                            DEPTH_BUCKETS,
                        )
                    })
                    .ok()?
                    .install_recorder()
                    .ok()
            })
            .as_ref()
    }

    /// The exposition text, or None when no recorder could be installed.
    pub fn render() -> Option<String> {
        HANDLE.get().and_then(|h| h.as_ref()).map(|h| {
            h.run_upkeep();
            h.render()
        })
    }
}

/// Counts a connected client while alive.
pub struct ClientGauge(Gauge);

impl ClientGauge {
    pub fn new(user: &str, listener: &str) -> ClientGauge {
        let g = gauge!("amiproxy_clients_connected", "user" => user.to_owned(), "listener" => listener.to_owned());
        g.increment(1.0);
        ClientGauge(g)
    }
}

impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

pub fn login(outcome: &str) {
    counter!("amiproxy_logins_total", "outcome" => outcome.to_owned()).increment(1);
}

pub fn action(action: &str, server: &str, outcome: &str) {
    let action = if crate::perms::is_known(action) {
        action.to_ascii_lowercase()
    } else {
        "other".to_owned()
    };
    counter!("amiproxy_actions_total", "action" => action, "server" => server.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
}

pub fn upstream_up(server: &str, up: bool) {
    gauge!("amiproxy_upstream_up", "server" => server.to_owned()).set(if up { 1.0 } else { 0.0 });
}

pub fn upstream_connects(server: &str) {
    counter!("amiproxy_upstream_connects_total", "server" => server.to_owned()).increment(1);
}

pub fn events_in(server: &str) -> Counter {
    counter!("amiproxy_events_in_total", "server" => server.to_owned())
}

pub fn events_out() -> Counter {
    counter!("amiproxy_events_out_total")
}

/// Events not delivered: `policy` (classes, mask, scope, filters) or `lag` (slow client).
pub fn events_dropped(reason: &'static str) -> Counter {
    counter!("amiproxy_events_dropped_total", "reason" => reason)
}

pub fn queue_depth(depth: usize) {
    histogram!("amiproxy_client_queue_depth").record(depth as f64);
}

pub fn upstream_latency(server: &str, secs: f64) {
    histogram!("amiproxy_upstream_response_seconds", "server" => server.to_owned()).record(secs);
}

/// A TLS handshake on a listener: `full`, `resumed`, `failed` or `timeout`.
pub fn tls_handshake(listener: &str, outcome: &'static str) {
    counter!("amiproxy_tls_handshakes_total", "listener" => listener.to_owned(), "outcome" => outcome).increment(1);
}

/// Sizes of the state clients and upstreams control, read at scrape time: ActionIDs kept for
/// broadcast events still to come, the ownership index, actions in flight per upstream.
pub struct StateSizes {
    pub broadcast_actionids: usize,
    pub owned_channels: usize,
    pub in_flight: Vec<(String, usize)>,
    /// Seconds left to each loaded certificate: kind, name, seconds (NaN: no longer loaded).
    pub cert_expiry: Vec<(&'static str, String, f64)>,
}

/// The Prometheus text, with these state sizes.
pub fn render_with_state(sizes: StateSizes) -> Option<String> {
    gauge!("amiproxy_broadcast_actionids").set(sizes.broadcast_actionids as f64);
    gauge!("amiproxy_owned_channels").set(sizes.owned_channels as f64);
    for (server, n) in sizes.in_flight {
        gauge!("amiproxy_upstream_in_flight", "server" => server).set(n as f64);
    }
    for (kind, name, secs) in sizes.cert_expiry {
        gauge!("amiproxy_tls_cert_expiry_seconds", "kind" => kind, "name" => name).set(secs);
    }
    Metrics::render()
}

/// Why a session ended (`client::End`).
pub fn session_ended(reason: &'static str) {
    counter!("amiproxy_sessions_ended_total", "reason" => reason).increment(1);
}

/// Why an action was refused (`client::Refusal`, the policy's `DenialKind`).
pub fn refusal(reason: &'static str) {
    counter!("amiproxy_refusals_total", "reason" => reason).increment(1);
}

/// The NATS export (`export/`): handles registered once by its tasks.
pub struct ExportMetrics {
    /// Events waiting in the buffer or for their ack.
    pub buffered: Gauge,
    /// 1 while JetStream answers, 0 while it does not.
    pub connected: Gauge,
    /// Publishes sent, re-sends included.
    pub published: Counter,
    /// Events JetStream acknowledged (each once).
    pub acked: Counter,
    /// Of those, the ones JetStream already held (another replica's, or a re-send).
    pub duplicates: Counter,
    /// Failed publishes, timed-out acks, failed stream look-ups.
    pub errors: Counter,
    /// Events published again after an error.
    pub retries: Counter,
}

impl ExportMetrics {
    pub fn new() -> ExportMetrics {
        ExportMetrics {
            buffered: gauge!("amiproxy_export_buffered"),
            connected: gauge!("amiproxy_export_connected"),
            published: counter!("amiproxy_export_published_total"),
            acked: counter!("amiproxy_export_acked_total"),
            duplicates: counter!("amiproxy_export_duplicates_total"),
            errors: counter!("amiproxy_export_errors_total"),
            retries: counter!("amiproxy_export_retries_total"),
        }
    }
}

impl Default for ExportMetrics {
    fn default() -> Self {
        ExportMetrics::new()
    }
}

/// Events the export lost because its buffer was full (NATS slow or away).
pub fn export_dropped() -> Counter {
    counter!("amiproxy_export_dropped_total")
}

/// Whether the last call to Redis (`[redis]`) succeeded: 1 up, 0 down or not yet reached.
pub fn redis_up(up: bool) {
    gauge!("amiproxy_redis_up").set(if up { 1.0 } else { 0.0 });
}

/// A Redis call that failed or timed out.
pub fn redis_error() {
    counter!("amiproxy_redis_errors_total").increment(1);
}

/// A shared limit decided without Redis: `op` (`ban-check`, `login-failed`, `action-rate`,
/// `user-connections`), `to` what decided instead (`local` limits, or `refuse`).
pub fn redis_fallback(op: &'static str, to: &'static str) {
    counter!("amiproxy_redis_fallbacks_total", "op" => op, "to" => to).increment(1);
}
