//! The publisher: buffered events → JetStream, at least once.
//!
//! Every event stays in the window until JetStream acked it. Publishes are pipelined, up to
//! `max_in_flight` awaiting their acks. On any error (a publish that fails or times out, an
//! ack that does not come, NATS away) the publisher backs off and publishes everything
//! unacked again from the oldest; the repeats carry the same `Nats-Msg-Id`, so the stream's
//! duplicate window absorbs them. The window only takes from the buffer while it has room, so
//! a slow or absent NATS fills the buffer, and then the intake stops reading the hub.

use super::Outgoing;
use crate::config::{NatsExport, StreamStorage};
use crate::metrics::ExportMetrics;
use async_nats::connection::State;
use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, context::Context, stream};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Room for the headers (id, server, sequence, replica) when an event's size is checked
/// against the server's `max_payload`.
const HEADER_ROOM: usize = 1024;
/// How often an idle publisher looks at the connection, for the gauge and the log.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// An event in the window.
struct Item {
    out: Outgoing,
    acked: bool,
}

/// The events taken from the buffer and not yet acked, oldest first.
struct Window {
    items: VecDeque<Item>,
    /// The number of `items[0]`; numbers tell acks apart after items left the front.
    first: u64,
    /// `items[..next]` were published in this round.
    next: usize,
}

impl Window {
    fn push(&mut self, out: Outgoing) {
        self.items.push_back(Item { out, acked: false });
    }

    /// Marks event `n` acked and lets go of the acked front; true when it was new.
    fn ack(&mut self, n: u64) -> bool {
        let Some(i) = n.checked_sub(self.first).and_then(|i| usize::try_from(i).ok()) else {
            return false;
        };
        let Some(item) = self.items.get_mut(i) else {
            return false;
        };
        let new = !item.acked;
        item.acked = true;
        while self.items.front().is_some_and(|i| i.acked) {
            self.items.pop_front();
            self.first += 1;
            self.next = self.next.saturating_sub(1);
        }
        new
    }
}

type Ack = BoxFuture<'static, (u64, Result<jetstream::publish::PublishAck, String>)>;

/// Whether JetStream answers, as last seen; logs the changes only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Health {
    Starting,
    Up,
    Down,
}

struct Publisher {
    cfg: NatsExport,
    replica: String,
    m: ExportMetrics,
    health: Health,
    backoff: Duration,
}

impl Publisher {
    fn up(&mut self) {
        self.backoff = BACKOFF_MIN;
        if self.health != Health::Up {
            info!(url = %self.cfg.url, stream = %self.cfg.stream, "NATS export connected");
            self.m.connected.set(1.0);
            self.health = Health::Up;
        }
    }

    fn down(&mut self, why: &str) {
        self.m.errors.increment(1);
        if self.health != Health::Down {
            warn!(url = %self.cfg.url, reason = why, "NATS export unavailable; keeping events and retrying");
            self.m.connected.set(0.0);
            self.health = Health::Down;
        }
    }

    /// Waits out the backoff (doubling up to `BACKOFF_MAX`).
    async fn pause(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn headers(&self, out: &Outgoing) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", out.msg_id.as_str());
        h.insert("Ami-Server", &*out.server);
        h.insert("Amiproxy-Seq", out.seq.to_string());
        h.insert("Amiproxy-Replica", self.replica.as_str());
        h
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.cfg.stream.clone(),
            subjects: vec![format!("{}.>", self.cfg.subject_prefix)],
            storage: match self.cfg.storage {
                StreamStorage::File => stream::StorageType::File,
                StreamStorage::Memory => stream::StorageType::Memory,
            },
            max_age: self.cfg.max_age,
            max_bytes: self.cfg.max_bytes,
            duplicate_window: self.cfg.duplicate_window,
            ..Default::default()
        }
    }

    /// Finds the stream or creates it with our settings. A stream that exists is used as it
    /// is (its settings are not changed); a difference that matters is logged.
    async fn ensure_stream(&mut self, js: &Context) -> Result<(), String> {
        let want = self.stream_config();
        let found = tokio::time::timeout(self.cfg.ack_timeout, js.get_or_create_stream(want.clone()))
            .await
            .map_err(|_| "stream look-up timed out".to_owned())?
            .map_err(|e| format!("stream look-up: {e}"))?;
        let have = &found.cached_info().config;
        let subject = &want.subjects[0];
        if !have.subjects.iter().any(|s| s == subject || s == ">") {
            warn!(stream = %have.name, subjects = ?have.subjects, "the stream exists without subject {subject}: publishes will fail");
        }
        if have.duplicate_window < want.duplicate_window {
            warn!(
                stream = %have.name,
                window_secs = have.duplicate_window.as_secs(),
                "the stream exists with a shorter duplicate window than configured: replicas' copies may be kept twice"
            );
        }
        Ok(())
    }
}

/// Runs for the life of the process (until the intake stops).
pub(super) async fn run(cfg: NatsExport, replica: String, mut rx: mpsc::Receiver<Outgoing>, pending: Arc<AtomicUsize>) {
    let m = ExportMetrics::new();
    m.connected.set(0.0);
    let max = cfg.max_in_flight;
    let mut p = Publisher {
        cfg,
        replica,
        m,
        health: Health::Starting,
        backoff: BACKOFF_MIN,
    };
    // The client connects in the background and reconnects by itself; this returns at once.
    let options = |name: String| {
        async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                let shift = attempts.min(5) as u32;
                (BACKOFF_MIN * 2u32.pow(shift)).min(Duration::from_secs(2))
            })
    };
    let client = loop {
        match options(format!("amiproxy {}", p.replica))
            .connect(p.cfg.url.as_str())
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                error!(url = %p.cfg.url, error = %e, "NATS export cannot connect");
                p.down("connect failed");
                p.pause().await;
            }
        }
    };
    let mut js = jetstream::new(client.clone());
    js.set_timeout(p.cfg.ack_timeout);
    let mut w = Window {
        items: VecDeque::with_capacity(max),
        first: 0,
        next: 0,
    };
    let mut acks: FuturesUnordered<Ack> = FuturesUnordered::new();
    let mut stream_ready = false;
    let mut closed = false;
    let mut check = tokio::time::interval(CHECK_EVERY);
    let started = std::time::Instant::now();
    loop {
        if closed && w.items.is_empty() {
            return;
        }
        if !stream_ready {
            // Not connected (yet, or again): no request could be answered; wait for the
            // client's own reconnect rather than for a request's timeout.
            if client.connection_state() != State::Connected {
                // The first connect gets its own timeout's worth before it counts as down,
                // watched closely so the stream is there as soon as NATS answers.
                if p.health == Health::Starting && started.elapsed() < Duration::from_secs(3) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                p.down("not connected");
                p.pause().await;
                continue;
            }
            match p.ensure_stream(&js).await {
                Ok(()) => {
                    stream_ready = true;
                    p.up();
                }
                Err(why) => {
                    p.down(&why);
                    p.pause().await;
                    continue;
                }
            }
        }
        // Take what waits, while the window has room.
        while w.items.len() < max {
            match rx.try_recv() {
                Ok(out) => w.push(out),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        // Publish what this round has not.
        let mut failed = None;
        while w.next < w.items.len() {
            let n = w.first + w.next as u64;
            let item = &w.items[w.next];
            w.next += 1;
            if item.acked {
                continue;
            }
            // NATS closes the connection on a message over its max_payload: such an event
            // could never be published, and re-sending it would stall the export for good.
            // It is dropped for the export (counted, logged) and the rest goes on.
            let size = item.out.payload.len() + item.out.subject.len() + HEADER_ROOM;
            let max_payload = client.server_info().max_payload;
            if max_payload > 0 && size > max_payload {
                warn!(size, max_payload, subject = %item.out.subject, "event too large for NATS; not exported");
                crate::metrics::export_dropped().increment(1);
                w.ack(n);
                continue;
            }
            let out = &item.out;
            // Bounded in time by the context's timeout (`ack_timeout`), as is the ack.
            match js
                .publish_with_headers(out.subject.clone(), p.headers(out), out.payload.clone())
                .await
            {
                Ok(ack) => {
                    p.m.published.increment(1);
                    acks.push(Box::pin(async move { (n, ack.await.map_err(|e| e.to_string())) }));
                }
                Err(e) => {
                    failed = Some(format!("publish: {e}"));
                    break;
                }
            }
        }
        let held = w.items.iter().filter(|i| !i.acked).count() + rx.len();
        pending.store(held, Ordering::Release);
        p.m.buffered.set(held as f64);
        if failed.is_none() {
            tokio::select! {
                Some((n, res)) = acks.next(), if !acks.is_empty() => match res {
                    Ok(ack) => {
                        if w.ack(n) {
                            p.m.acked.increment(1);
                            if ack.duplicate {
                                p.m.duplicates.increment(1);
                            }
                        }
                        p.up();
                    }
                    Err(e) => failed = Some(format!("ack: {e}")),
                },
                out = rx.recv(), if w.items.len() < max && !closed => match out {
                    Some(out) => w.push(out),
                    None => closed = true,
                },
                _ = check.tick() => {
                    if client.connection_state() != State::Connected {
                        p.down("disconnected");
                    }
                }
            }
        }
        if let Some(why) = failed {
            // Start over from the oldest unacked; the stream drops the repeats by their id.
            p.down(&why);
            acks = FuturesUnordered::new();
            let resend = w.items.iter().filter(|i| !i.acked).count();
            p.m.retries.increment(resend as u64);
            w.next = 0;
            stream_ready = false;
            p.pause().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(seq: u64) -> Outgoing {
        Outgoing {
            subject: "ami.s.E".into(),
            server: Arc::from("s"),
            seq,
            msg_id: format!("id{seq}"),
            payload: bytes::Bytes::new(),
        }
    }

    #[test]
    fn the_window_lets_go_of_the_acked_front_only() {
        let mut w = Window {
            items: VecDeque::new(),
            first: 0,
            next: 0,
        };
        for s in 0..4 {
            w.push(out(s));
        }
        w.next = 4;
        assert!(w.ack(2));
        assert!(!w.ack(2), "an ack counts once");
        assert_eq!((w.items.len(), w.first), (4, 0));
        assert!(w.ack(0));
        assert_eq!((w.items.len(), w.first, w.next), (3, 1, 3));
        assert!(w.ack(1));
        assert_eq!((w.items.len(), w.first, w.next), (1, 3, 1));
        assert_eq!(w.items[0].out.seq, 3);
        assert!(!w.ack(0), "an ack from before the front is ignored");
        assert!(!w.ack(99));
    }
}
