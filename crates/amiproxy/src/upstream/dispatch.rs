//! What a link does with each message its upstream sends: a response or list item goes to
//! its waiter, an event to the ownership index and the hub (tagged with the server, its
//! ActionID given back to the client whose action it follows from).

use super::action_ids::{restore_aid, Whose};
use super::waiter::{Held, Waiting};
use super::{Context, Upstream};
use crate::hub::{Event, Hub};
use ami_proto::facts::{names_complete, ListFraming};
use ami_proto::{Kind, Message, MessageBuilder};
use tracing::debug;

/// What a link read in one go, for the hub: the events for every client, and how many
/// events the upstream sent (counted once per read, not once per event).
#[derive(Debug, Default)]
pub struct Outbox {
    events: Vec<Event>,
    received: u64,
    /// The number of this read (see [`crate::routing::Owners::next_read`]).
    read: u64,
}

impl Outbox {
    /// What the read numbered `read` gives the hub.
    pub fn for_read(read: u64) -> Outbox {
        Outbox {
            read,
            ..Outbox::default()
        }
    }
}

impl Upstream {
    /// Publishes what `out` holds, as one batch, and counts what the upstream sent.
    pub fn flush(&self, ctx: &Context, out: Outbox) {
        if out.received > 0 {
            self.events_in.increment(out.received);
            self.events_total
                .fetch_add(out.received, std::sync::atomic::Ordering::Relaxed);
        }
        ctx.hub.publish_all(out.events);
    }

    /// Handles one message from the upstream. Anything that is neither a response nor an
    /// event means the stream can no longer be trusted (garbage, a desynchronised peer): the
    /// link is dropped and made anew.
    ///
    /// Events for every client go in `out`, for the caller to [`Upstream::flush`] when it
    /// has handled what it read.
    pub fn dispatch(&self, ctx: &Context, msg: Message, out: &mut Outbox) -> Result<(), String> {
        match msg.kind() {
            Kind::Response => self.on_response(ctx, msg),
            Kind::Event => self.on_event(ctx, msg, out),
            _ => return Err("protocol error: a message that is neither a response nor an event".into()),
        }
        Ok(())
    }

    fn on_response(&self, ctx: &Context, msg: Message) {
        ctx.busy.touch();
        let Some(aid) = msg.action_id().map(str::to_owned) else {
            return;
        };
        let mut link = self.link();
        let Some(waiter) = link.pending.get_mut(&aid) else {
            debug!(server = self.name(), action_id = %aid, "response nobody waits for");
            return;
        };
        let list = ListFraming::of_response(&msg);
        let refused = msg.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Error"));
        let header = ctx.server_header();
        let keep = match &mut waiter.waiting {
            Waiting::Client {
                tx, client_aid, sent, ..
            } => {
                crate::metrics::upstream_latency(self.name(), sent.elapsed().as_secs_f64());
                tx.try_send(restore_aid(msg, client_aid.as_deref()).with_only(header, self.name()));
                list != ListFraming::None
            }
            Waiting::Merge { merge, client_aid } => {
                let m = restore_aid(msg, client_aid.as_deref()).with_only(header, self.name());
                merge.response(m, list != ListFraming::None)
            }
            Waiting::SyncOriginate { tx, client_aid } => {
                if msg.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success")) {
                    // Queued: the answer comes with the OriginateResponse.
                    true
                } else {
                    tx.try_send(restore_aid(msg, client_aid.as_deref()).with_only(header, self.name()));
                    false
                }
            }
            Waiting::Internal { tx } => {
                if list == ListFraming::None {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(msg);
                    }
                }
                list != ListFraming::None
            }
        };
        if keep {
            waiter.list = list;
            // A list gets the action timeout again for its items; a queued synchronous
            // Originate keeps its deadline, which counts the call's ringing time.
            if list != ListFraming::None {
                link.pending.extend(&aid, ctx.action_timeout());
            }
        } else {
            link.pending.remove(&aid);
        }
        drop(link);
        // A refused action has no broadcast event to come (an async Originate refused
        // outright): its ActionID need not be remembered.
        if refused {
            ctx.ids.forget_broadcast(&aid);
        }
    }

    fn on_event(&self, ctx: &Context, msg: Message, out: &mut Outbox) {
        let name = msg.get("Event").unwrap_or("");
        let aid = msg.action_id();
        if let Some(aid) = aid {
            // Broadcast events reach the main link only (account links have events off): the
            // Originate it answers may wait on one of the extra links (control, accounts).
            if let Some(ok) = originate_outcome(name, &msg) {
                if self.finish_sync_originate(ctx, aid, ok)
                    || self.extra.iter().any(|a| a.finish_sync_originate(ctx, aid, ok))
                {
                    return;
                }
            }
            if self.list_item(ctx, aid, name, &msg) {
                return;
            }
        }
        // Only the main link publishes (the extra links' logins have events off).
        if !self.is_main() {
            return;
        }
        // The name and ActionID looked up once here: this is every event's path.
        ctx.owners.learn(self.id, name, &msg);
        let whose = aid.map_or(Whose::Nobody, |a| ctx.ids.whose(a));
        self.publish(ctx, msg, whose, out)
    }

    /// An item (or the end) of a list an action in flight here is answered with: to its
    /// waiter. False when the event is no list item of ours.
    fn list_item(&self, ctx: &Context, aid: &str, name: &str, msg: &Message) -> bool {
        let mut link = self.link();
        let Some(waiter) = link.pending.get_mut(aid) else {
            return false;
        };
        if matches!(waiter.waiting, Waiting::SyncOriginate { .. }) || waiter.list == ListFraming::None {
            return false;
        }
        // A relearn's items (1.4 relearns with Status); outside a relearn they teach nothing.
        if name.eq_ignore_ascii_case("CoreShowChannel")
            || (name.eq_ignore_ascii_case("Status") && matches!(waiter.waiting, Waiting::Internal { .. }))
        {
            ctx.owners.learn_listed(self.id, msg);
        }
        let done = waiter.list.ends_with(msg, name);
        let header = ctx.server_header();
        match &mut waiter.waiting {
            Waiting::Client {
                tx,
                client_aid,
                list_end,
                ..
            } => {
                if !done {
                    list_end.items += 1;
                }
                tx.try_send(restore_aid(msg.clone(), client_aid.as_deref()).with_only(header, self.name()));
            }
            Waiting::Merge { merge, client_aid } => {
                let m = restore_aid(msg.clone(), client_aid.as_deref());
                if done && names_complete(name) {
                    // The merged Complete is the proxy's: not tagged with this server (the
                    // link's decoder tagged it, as every event).
                    merge.complete(m.without_all(header));
                } else {
                    merge.item(m.with_only(header, self.name()));
                    if done {
                        merge.abandon("");
                    }
                }
            }
            Waiting::Internal { tx } => {
                if done {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(msg.clone());
                    }
                }
            }
            Waiting::SyncOriginate { .. } => {}
        }
        if done {
            link.pending.remove(aid);
        } else {
            link.pending.extend(aid, ctx.action_timeout());
        }
        true
    }

    /// An event from the main link for every client (the ownership index has learnt from it
    /// already): it gets its client's ActionID back when it follows from an action of ours,
    /// is tagged with this server, and goes in `out` (held first while the action it follows
    /// from is unanswered on an account link).
    ///
    /// `whose`: whose action its ActionID says it follows from.
    fn publish(&self, ctx: &Context, msg: Message, whose: Whose, out: &mut Outbox) {
        out.received += 1;
        // The proxy's ActionID, when the event follows from an action of ours.
        let mut raw_aid = None;
        let msg = match whose {
            Whose::Ours => {
                raw_aid = msg.action_id().map(str::to_owned);
                // One of ours: give it back to its client, or drop it (e.g. a list item that
                // arrives after its action timed out must not reach everyone).
                match ctx.ids.restore_broadcast(&msg) {
                    Some(m) => m,
                    None => {
                        debug!(
                            server = self.name(),
                            event = msg.get("Event").unwrap_or(""),
                            "dropping an event for a finished action"
                        );
                        return;
                    }
                }
            }
            // Another replica's (or a predecessor's): its client's ActionID is known only
            // there, and that replica delivers it.
            Whose::AnotherProxy => {
                debug!(
                    server = self.name(),
                    event = msg.get("Event").unwrap_or(""),
                    "dropping an event for another proxy's action"
                );
                return;
            }
            Whose::Nobody => msg,
        };
        let (header, name) = (ctx.server_header(), self.name());
        // Tagged by the link's decoder already, unless the upstream wrote that header itself
        // (or the event was changed since): then what it wrote is replaced.
        let tagged = msg
            .decoder_tag()
            .is_some_and(|(k, v)| k == header.as_bytes() && v == name.as_bytes());
        let mut event = Some(if tagged { msg } else { msg.into_only(header, name) });
        if let Some(aid) = raw_aid.as_deref() {
            for account in &self.extra {
                event = event.and_then(|e| account.hold(aid, (e, self.id, out.read), &ctx.hub));
            }
        }
        if let Some(event) = event {
            out.events
                .push(Event::read_from(event, self.origin.clone(), self.id, out.read));
        }
    }

    /// Answers the synchronous Originate waiting on this link for `aid`, from its
    /// OriginateResponse. False when none waits here.
    fn finish_sync_originate(&self, ctx: &Context, aid: &str, ok: bool) -> bool {
        let mut link = self.link();
        let Some(Waiting::SyncOriginate { tx, client_aid }) = link.pending.get_mut(aid).map(|w| &w.waiting) else {
            return false;
        };
        let answer = if ok {
            MessageBuilder::success(client_aid.as_deref(), "Originate successfully queued")
        } else {
            MessageBuilder::error(client_aid.as_deref(), "Originate failed")
        };
        tx.try_send(answer.with_only(ctx.server_header(), self.name()));
        link.pending.remove(aid);
        // A synchronous Originate has no OriginateResponse event in Asterisk.
        true
    }

    /// Keeps `event` (a broadcast event that follows from the action `aid`) until that
    /// action's answer has gone to its client, when the action waits on this link; gives
    /// it back otherwise.
    fn hold(&self, aid: &str, read: (Message, crate::ids::UpstreamId, u64), hub: &Hub) -> Option<Message> {
        let mut link = self.link();
        match link.pending.get_mut(aid) {
            Some(w) => {
                w.held
                    .get_or_insert_with(|| {
                        Box::new(Held {
                            events: Vec::new(),
                            hub: hub.clone(),
                            origin: self.origin.clone(),
                        })
                    })
                    .events
                    .push(read);
                None
            }
            None => Some(read.0),
        }
    }
}

/// Whether an event ends an Originate, and how: `OriginateResponse` with its `Response`
/// (1.6 and later), or 1.4's `OriginateSuccess` / `OriginateFailure`.
fn originate_outcome(name: &str, msg: &Message) -> Option<bool> {
    if name.eq_ignore_ascii_case("OriginateResponse") {
        Some(msg.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success")))
    } else if name.eq_ignore_ascii_case("OriginateSuccess") {
        Some(true)
    } else if name.eq_ignore_ascii_case("OriginateFailure") {
        Some(false)
    } else {
        None
    }
}
