//! One list answered by several upstreams, delivered as ONE list: one start response, every
//! item (tagged with its server), one `...Complete` whose `ListItems` (and `Items`) count all
//! items. Upstreams of different generations frame lists differently (with or without
//! `EventList`/`ListItems`); the merged list is framed as the client's generation expects.
//!
//! All sends happen under the merge's lock, so the start always precedes any item even
//! though the upstream readers run concurrently.

use crate::client_tx::ClientTx;
use ami_proto::{Message, MessageBuilder};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct State {
    tx: ClientTx,
    client_aid: Option<String>,
    /// Frame with `EventList` and `ListItems` (Asterisk 13 and later).
    framed: bool,
    waiting: usize,
    started: bool,
    delivered: u64,
    /// Sum of the parts' `Items:` (Status), when any part had one.
    items: Option<u64>,
    complete: Option<Message>,
    /// The answer for the client when no part opened a list: the first success, else the
    /// first error.
    answer: Option<Message>,
    /// The event that ends this action's list (see [`ami_proto::facts::list_end_event`]),
    /// for when no part sent its own (a part died mid-list).
    complete_name: String,
    /// Why a part ended without its own Complete (it died or timed out), if one did.
    incomplete: Option<String>,
    done: bool,
    /// The client session's in-flight slot, held until the merged answer is complete.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

#[derive(Debug, Clone)]
pub struct Merge(Arc<Mutex<State>>);

impl Merge {
    pub fn new(tx: ClientTx, client_aid: Option<String>, upstreams: usize, framed: bool, action: &str) -> Merge {
        Merge(Arc::new(Mutex::new(State {
            tx,
            client_aid,
            framed,
            waiting: upstreams,
            started: false,
            delivered: 0,
            items: None,
            complete: None,
            answer: None,
            complete_name: ami_proto::facts::list_end_event(action),
            incomplete: None,
            done: false,
            slot: None,
        })))
    }

    /// Holds the client session's in-flight slot until the whole answer has gone out.
    pub fn with_slot(self, slot: tokio::sync::OwnedSemaphorePermit) -> Merge {
        self.lock().slot = Some(slot);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.0)
    }

    /// A response from one upstream (ActionID already restored). Returns true when that
    /// upstream's part continues as a list.
    pub fn response(&self, msg: Message, is_list: bool) -> bool {
        let mut s = self.lock();
        if is_list {
            if !s.started {
                s.started = true;
                let msg = if s.framed && msg.get("EventList").is_none() {
                    msg.with_header("EventList", "start")
                } else {
                    msg
                };
                s.tx.try_send(msg);
            }
            return true;
        }
        let success = msg.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success"));
        let have_success = s
            .answer
            .as_ref()
            .is_some_and(|a| a.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success")));
        if s.answer.is_none() || (success && !have_success) {
            s.answer = Some(msg);
        }
        s.part_done();
        false
    }

    pub fn item(&self, msg: Message) {
        let mut s = self.lock();
        if !s.done {
            s.delivered += 1;
            s.tx.try_send(msg);
        }
    }

    /// The `...Complete` event of one upstream's part.
    pub fn complete(&self, msg: Message) {
        let mut s = self.lock();
        if msg.get("Items").is_some() {
            *s.items.get_or_insert(0) += msg.get("Items").and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
        }
        s.complete = Some(msg);
        s.part_done();
    }

    /// One upstream will not answer (disconnected, timed out, or ended its part without a
    /// Complete); `reason` says why, when it is a failure.
    pub fn abandon(&self, reason: &str) {
        let mut s = self.lock();
        if !reason.is_empty() && s.incomplete.is_none() {
            s.incomplete = Some(reason.to_owned());
        }
        s.part_done();
    }
}

impl State {
    fn part_done(&mut self) {
        if self.done {
            return;
        }
        self.waiting = self.waiting.saturating_sub(1);
        if self.waiting > 0 {
            return;
        }
        self.done = true;
        let aid = self.client_aid.as_deref();
        let out = if self.started {
            let base = self.complete.take().unwrap_or_else(|| {
                MessageBuilder::event(&self.complete_name)
                    .header_opt("ActionID", aid)
                    .build()
            });
            let mut m = base;
            if self.framed || m.get("ListItems").is_some() {
                if self.framed && m.get("EventList").is_none() {
                    m = m.with_header("EventList", "Complete");
                }
                m = m.with_header("ListItems", &self.delivered.to_string());
            }
            if let Some(items) = self.items {
                m = m.with_header("Items", &items.to_string());
            }
            if let Some(reason) = &self.incomplete {
                m = m.with_header("ProxyIncomplete", reason);
            }
            m
        } else {
            self.answer
                .take()
                .unwrap_or_else(|| MessageBuilder::error(aid, "No upstream server answered"))
        };
        self.tx.try_send(out);
        self.slot = None;
    }
}
