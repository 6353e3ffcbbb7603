//! Export of the merged upstream event stream outside the proxy (`[export.nats]`: NATS
//! JetStream). The exporter reads the hub like one more client, so it can never slow the
//! upstream readers or the AMI clients: when its buffer is full (NATS slow or away) it stops
//! taking from its hub receiver, and the hub's ring drops the oldest events for the
//! exporter alone (counted in `amiproxy_export_dropped_total`).
//!
//! Two tasks: the intake here (hub → filter → subject, headers, `Nats-Msg-Id` → a bounded
//! buffer) and the publisher in `nats.rs` (buffer → JetStream, pipelined, every event kept
//! until acked). Only events an upstream sent are exported: the proxy's own events
//! (`ProxyUpstreamStatus`, ...) differ per replica, so they would never de-duplicate.

mod msg_id;
mod nats;

pub use msg_id::MsgIds;

use crate::config::NatsExport;
use crate::filter::{EventFilter, FilterSet};
use crate::hub::{Event, Hub, Next, Subscription};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Distinct events the msg-id counter remembers at most (about 80 bytes each, so 80 MiB at
/// most: the duplicate window at 8,000 events/s). Past it the oldest are forgotten early.
const MAX_REMEMBERED: usize = 1_000_000;

/// One event on its way to NATS.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    pub server: Arc<str>,
    /// This replica's count of exported events from `server` (1, 2, ...).
    pub seq: u64,
    pub msg_id: String,
    /// The event as AMI text, as a client reads it (with the server header).
    pub payload: Bytes,
}

/// Starts the exporter when `[export.nats]` is set. Subscribes to the hub at once, so call
/// it before the upstream links start and no event is missed; never waits for NATS.
/// `ring` is the hub's capacity (`proxy.event_buffer`).
pub fn spawn(hub: &Hub, ring: usize, cfg: Option<&NatsExport>) -> Option<Exporter> {
    let cfg = cfg?;
    let replica = cfg.replica.clone().unwrap_or_else(default_replica);
    info!(
        url = %cfg.url,
        stream = %cfg.stream,
        prefix = %cfg.subject_prefix,
        %replica,
        "exporting upstream events to NATS JetStream"
    );
    let rx = hub.subscribe();
    let (tx, buffered) = mpsc::channel(cfg.buffer);
    let prepare = Prepare::new(cfg);
    let stop = CancellationToken::new();
    tokio::spawn(intake(rx, tx, prepare, ring, stop.clone()));
    let pending = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn(nats::run(cfg.clone(), replica, buffered, pending.clone()));
    Some(Exporter {
        stop,
        publisher: std::sync::Mutex::new(Some(publisher)),
        pending,
    })
}

/// A running exporter, for the shutdown.
#[derive(Debug)]
pub struct Exporter {
    /// Stops the intake: no more events are taken from the hub.
    stop: CancellationToken,
    /// Ends once everything taken is acked and the intake has stopped.
    publisher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Events taken from the hub and not yet acked, as the publisher last counted them.
    pending: Arc<AtomicUsize>,
}

impl Exporter {
    /// Stops taking events from the hub and waits, until `until` at most, for what was taken
    /// to be acked, so that a proxy stopped with SIGTERM hands over what it holds (a killed
    /// one relies on the other replicas).
    pub async fn drain(&self, until: Instant) {
        let start = Instant::now();
        self.stop.cancel();
        let publisher = crate::sync::lock(&self.publisher).take();
        let Some(publisher) = publisher else { return };
        if tokio::time::timeout_at(until.into(), publisher).await.is_ok() {
            info!(elapsed_ms = start.elapsed().as_millis() as u64, "NATS export drained");
        } else {
            warn!(
                events = self.pending.load(Ordering::Acquire),
                "shutdown: NATS export not drained in time; those events rely on other replicas"
            );
        }
    }
}

/// `<hostname>-<pid>`: distinct per process, readable in the stream's headers.
fn default_replica() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "amiproxy".into());
    format!("{host}-{}", std::process::id())
}

/// Hub → buffer. Waits when the buffer is full; the ring then skips the oldest for us alone.
async fn intake(
    mut events: Subscription,
    tx: mpsc::Sender<Outgoing>,
    mut prepare: Prepare,
    ring: usize,
    stop: CancellationToken,
) {
    let mut lag = Lag::default();
    loop {
        let out = match events.try_next() {
            Some(Next::Event(ev)) => prepare.prepare(ev),
            Some(Next::Lost(n)) => {
                lag.count(n);
                continue;
            }
            None => {
                tokio::select! {
                    () = events.ready() => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        let Some(out) = out else { continue };
        // Wait for room. Meanwhile, once the ring has passed us, take the loss now (the
        // reader skips to the oldest event the ring still holds) so the metric and the log
        // say so while NATS is away, not only once it is back.
        let permit = loop {
            if stop.is_cancelled() {
                return;
            }
            match tokio::time::timeout(Duration::from_secs(1), tx.reserve()).await {
                Ok(Ok(permit)) => break permit,
                Ok(Err(_)) => return,
                Err(_) => {
                    if events.len() > ring {
                        let lost = events.take_loss();
                        if lost > 0 {
                            lag.count(lost);
                        }
                    }
                }
            }
        };
        permit.send(out);
    }
}

/// Events the export lost to a full buffer: counted, and logged at most once per 10 s.
struct Lag {
    dropped: metrics::Counter,
    last_warn: Option<Instant>,
    unwarned: u64,
}

impl Default for Lag {
    fn default() -> Self {
        Lag {
            dropped: crate::metrics::export_dropped(),
            last_warn: None,
            unwarned: 0,
        }
    }
}

impl Lag {
    fn count(&mut self, n: u64) {
        self.dropped.increment(n);
        self.unwarned = self.unwarned.saturating_add(n);
        if self.last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            warn!(
                events = self.unwarned,
                "NATS export buffer full: events dropped for the export (clients unaffected)"
            );
            self.last_warn = Some(Instant::now());
            self.unwarned = 0;
        }
    }
}

/// What the intake needs to turn a hub event into an [`Outgoing`].
struct Prepare {
    prefix: String,
    filters: FilterSet,
    ids: MsgIds,
    seqs: HashMap<Arc<str>, u64>,
}

impl Prepare {
    fn new(cfg: &NatsExport) -> Prepare {
        let mut filters = FilterSet::default();
        // Checked with the configuration; one that fails here cannot occur.
        for f in cfg.filter.iter().filter_map(|f| EventFilter::parse(f).ok()) {
            filters.add(f);
        }
        Prepare {
            prefix: cfg.subject_prefix.clone(),
            filters,
            ids: MsgIds::new(cfg.duplicate_window, MAX_REMEMBERED),
            seqs: HashMap::new(),
        }
    }

    /// The event as exported, or None when it is the proxy's own or filtered out.
    fn prepare(&mut self, ev: &Event) -> Option<Outgoing> {
        let server = ev.server.as_ref().filter(|_| ev.from_upstream)?;
        if !self.filters.allows(&ev.msg) {
            return None;
        }
        let name = ev.msg.get("Event").unwrap_or("");
        let subject = format!("{}.{}.{}", self.prefix, token(server), token(name));
        let seq = self.seqs.entry(server.clone()).or_insert(0);
        *seq += 1;
        Some(Outgoing {
            subject,
            server: server.clone(),
            seq: *seq,
            msg_id: self.ids.next(server, ev.msg.as_bytes()),
            payload: ev.msg.bytes().clone(),
        })
    }
}

/// One subject token from a name: `.`, `*`, `>`, whitespace and control characters become
/// `_` (they would split or widen the subject); an empty name becomes `_`.
pub fn token(name: &str) -> String {
    if name.is_empty() {
        return "_".into();
    }
    name.chars()
        .map(|c| {
            if matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::MessageBuilder;
    use std::path::Path;

    fn cfg(extra: &str) -> NatsExport {
        let text = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"pbx1\"\nkind = \"simulated\"\n[export.nats]\nurl = \"nats://127.0.0.1:1\"\n{extra}"
        );
        crate::Config::from_toml(&text, Path::new("."))
            .expect("valid")
            .export
            .nats
            .expect("set")
    }

    fn event(name: &str, server: Option<&str>, from_upstream: bool) -> Event {
        let msg = MessageBuilder::event(name)
            .header("Privilege", "call,all")
            .header("Server", server.unwrap_or("amiproxy"))
            .build();
        Event::new(msg, server.map(Arc::from), from_upstream)
    }

    #[test]
    fn tokens_are_sanitized() {
        assert_eq!(token("pbx-1"), "pbx-1");
        assert_eq!(token("a.b*c>d e\tf"), "a_b_c_d_e_f");
        assert_eq!(token(""), "_");
    }

    #[test]
    fn only_upstream_events_that_pass_the_filter_are_exported() {
        let mut p = Prepare::new(&cfg("filter = [\"!Event: Newexten\"]\nsubject_prefix = \"x.ami\"\n"));
        let out = p.prepare(&event("Hangup", Some("pbx.1"), true)).expect("exported");
        assert_eq!(out.subject, "x.ami.pbx_1.Hangup");
        assert_eq!(out.seq, 1);
        assert_eq!(&*out.server, "pbx.1");
        assert!(out.payload.starts_with(b"Event: Hangup\r\n"));
        assert!(p.prepare(&event("Newexten", Some("pbx.1"), true)).is_none());
        assert!(p.prepare(&event("ProxyUpstreamStatus", Some("pbx.1"), false)).is_none());
        assert!(p.prepare(&event("Hangup", None, false)).is_none());
        assert_eq!(p.prepare(&event("Hangup", Some("pbx.1"), true)).map(|o| o.seq), Some(2));
    }
}
