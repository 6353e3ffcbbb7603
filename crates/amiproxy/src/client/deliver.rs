//! Answers and events on their way to the client, each judged by the user's classes,
//! the session's Events mask, the tenant scope and the event filters.

use super::{End, Session};
use crate::client_tx::{Answer, ClientRx};
use crate::config::SlowClient;
use crate::hub::{self, Event, Next, Subscription};
use ami_proto::Message;
use std::sync::atomic::Ordering;
use tokio::io::AsyncWrite;
use tracing::{debug, warn};

/// Events written before a flush.
const EVENT_BATCH: usize = 512;

impl<W: AsyncWrite + Unpin> Session<W> {
    /// Writes an answer from an upstream: list items outside the user's scope are hidden,
    /// and the list's `ListItems` (`Items`, `Total`) counts only what the client saw.
    pub(super) async fn answer(&mut self, a: Answer) -> Result<(), End> {
        let Some(user) = &self.user else { return Ok(()) };
        let Answer { request: key, msg: m } = a;
        if m.kind() == ami_proto::Kind::Event {
            let name = m.get("Event").unwrap_or("");
            if ami_proto::facts::closes_list(&m, name) {
                if let Some(hidden) = self.hidden_items.remove(&key) {
                    let fix = |m: Message, h: &str| match m.get(h).and_then(|v| v.trim().parse::<u64>().ok()) {
                        Some(n) => m.with_header(h, &n.saturating_sub(hidden).to_string()),
                        None => m,
                    };
                    // `Total` counts the items too (`ParkedCallsComplete`, `FAXSessionsComplete`).
                    let m = fix(fix(fix(m, "ListItems"), "Items"), "Total");
                    return self.send(&m).await;
                }
            } else if !user
                .policy
                .event_in_scope(&m, m.get(self.core.server_header()), self.core.owners.as_ref())
            {
                *self.hidden_items.entry(key).or_insert(0) += 1;
                return Ok(());
            }
        }
        self.send(&m).await
    }

    /// Writes the hub events ready now, a bounded batch of them.
    pub(super) async fn on_events(&mut self, events: &mut Subscription, answers: &mut ClientRx) -> Result<(), End> {
        // Sampled: a histogram record per batch would cost more than the batch at low rates.
        self.batches = self.batches.wrapping_add(1);
        if self.batches % 64 == 1 {
            crate::metrics::queue_depth(events.len());
            if let Some(r) = &self.registered {
                r.info.queued_events.store(events.len(), Ordering::Relaxed);
            }
        }
        let (mut sent, mut skipped) = (0u64, 0u64);
        let mut result = Ok(());
        for _ in 0..EVENT_BATCH {
            // An upstream queues an answer before it publishes the events that follow it
            // (a response, then its OriginateResponse). The event is taken first, then the
            // answers queued by then are written: every answer queued before the event was
            // published is among them, so no event overtakes its answer (answers drained
            // first, an answer and its event could both land in between).
            let next = events.try_next();
            while let Ok(m) = answers.try_recv() {
                if let Err(e) = self.answer(m).await {
                    result = Err(e);
                    break;
                }
            }
            if result.is_err() {
                break;
            }
            let ev = match next {
                Some(Next::Event(ev)) => ev,
                Some(Next::Lost(n)) => {
                    result = self.lagged(n).await;
                    if result.is_err() {
                        break;
                    }
                    continue;
                }
                None => break,
            };
            if self.wants(ev) {
                // Hub events carry their origin already (tagged at publish).
                let bytes = match self.json_events {
                    true => ev.pre_encoded(),
                    false => ev.msg.as_bytes(),
                };
                if let Err(e) = self.write_raw(bytes).await {
                    result = Err(e);
                    break;
                }
                sent += 1;
            } else {
                skipped += 1;
            }
        }
        self.events_out.increment(sent);
        if let Some(r) = &self.registered {
            r.info.delivered.fetch_add(sent, Ordering::Relaxed);
        }
        self.dropped_policy.increment(skipped);
        result
    }

    async fn lagged(&mut self, n: u64) -> Result<(), End> {
        crate::metrics::events_dropped("lag").increment(n);
        if let Some(r) = &self.registered {
            r.info.dropped.fetch_add(n, Ordering::Relaxed);
        }
        match self.core.config().proxy.slow_client {
            SlowClient::DropOldest => {
                debug!(dropped = n, "client fell behind; oldest events dropped");
                self.send(&hub::events_dropped(n)).await
            }
            SlowClient::Disconnect => {
                warn!(dropped = n, "closing: client fell behind the event stream");
                Err(End::FellBehind)
            }
        }
    }

    fn wants(&self, ev: &Event) -> bool {
        let Some(user) = &self.user else { return false };
        !ev.classes.is_empty()
            && user.read.contains(ev.classes)
            && self.mask.contains(ev.classes)
            && user.policy.named_in_scope(
                &ev.msg,
                || ev.names(),
                ev.server.as_deref(),
                &EventChannels {
                    owners: &self.core.owners,
                    read: ev.read,
                },
            )
            && self.filters.allows_memo(&ev.msg, Some(&ev.filter_memo))
    }
}

/// The ownership index as the scope check of one hub event sees it: the event's uniqueids
/// may also name channels its upstream hung up after the event was read.
struct EventChannels<'a> {
    owners: &'a crate::routing::Owners,
    read: Option<(crate::ids::UpstreamId, u64)>,
}

impl ami_policy::Channels for EventChannels<'_> {
    fn channel_of(&self, uniqueid: &str) -> Option<String> {
        self.owners.channel_of(uniqueid)
    }

    fn is_live(&self, key: &str) -> bool {
        ami_policy::Channels::is_live(self.owners, key)
    }

    fn channel_of_event(&self, uniqueid: &str) -> Option<String> {
        match self.read {
            Some((upstream, read)) => self.owners.channel_of_event_at(uniqueid, upstream, read),
            None => self.owners.channel_of(uniqueid),
        }
    }
}
