//! Who waits for the answer to an action sent upstream, and how a waiter that will get no
//! answer is answered anyway (an error, or the end of a list cut short).

use super::merge::Merge;
use crate::client_tx::ClientTx;
use crate::hub::{Event, Hub};
use ami_proto::facts::ListFraming;
use ami_proto::{Message, MessageBuilder};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Who waits for the answer to an action sent upstream.
pub enum Waiting {
    /// One client; the answer gets its own ActionID back.
    Client {
        tx: ClientTx,
        client_aid: Option<String>,
        /// When the action went upstream, for the latency histogram.
        sent: Instant,
        /// How to end its list if the upstream cannot.
        list_end: ListEnd,
    },
    /// One part of a list (or action) fanned out to several upstreams.
    Merge { merge: Merge, client_aid: Option<String> },
    /// A synchronous Originate, sent upstream with `Async: true`: Asterisk runs one action
    /// at a time per manager session, and a synchronous Originate would block the session
    /// every client shares until the call is answered. The client's answer is made from the
    /// `OriginateResponse`, as Asterisk words it for a synchronous Originate.
    SyncOriginate { tx: ClientTx, client_aid: Option<String> },
    /// The proxy itself (keepalive, ownership relearning): the final message, nothing else.
    Internal { tx: Option<oneshot::Sender<Message>> },
}

/// How to end a list for its client when the upstream cannot (it died or timed out
/// halfway): a client library waiting for the `...Complete` must not wait forever.
pub struct ListEnd {
    /// The event that ends this action's list, as Asterisk names it.
    complete: String,
    /// The client's generation frames lists (`EventList`, `ListItems`).
    framed: bool,
    /// Items delivered so far.
    pub(super) items: u64,
}

impl ListEnd {
    pub fn new(action: &str, framed: bool) -> ListEnd {
        ListEnd {
            complete: ami_proto::facts::list_end_event(action),
            framed,
            items: 0,
        }
    }

    /// The `...Complete` of a list cut short, saying why in `ProxyIncomplete`.
    fn cut_short(&self, client_aid: Option<&str>, reason: &str) -> Message {
        let b = MessageBuilder::event(&self.complete).header_opt("ActionID", client_aid);
        let b = if self.framed {
            b.header("EventList", "Complete")
                .header("ListItems", &self.items.to_string())
        } else {
            b
        };
        b.header("ProxyIncomplete", reason).build()
    }
}

pub struct Waiter {
    pub waiting: Waiting,
    pub(super) list: ListFraming,
    pub(super) deadline: Instant,
    /// Broadcast events that follow from this action but arrived (on the main link) before
    /// its answer (on an account link): published once the answer is on its way, so a
    /// client still sees the answer first, as from one Asterisk session.
    pub(super) held: Option<Box<Held>>,
    /// The sending session's in-flight slot, freed with the waiter.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Events held for a waiter, and where to publish them.
pub(super) struct Held {
    /// Each with the main link's id and the number of the read it came in: held or not,
    /// an event is judged as of when it was read.
    pub(super) events: Vec<(Message, crate::ids::UpstreamId, u64)>,
    pub(super) hub: Hub,
    pub(super) origin: Arc<str>,
}

impl Drop for Waiter {
    /// Publishes the held events. In the binary every link runs on the one control thread,
    /// so this never runs while the main link is between reading events and publishing
    /// them: held events keep their place after the events read before them. (Where links
    /// share a multi-threaded runtime, as in tests, a held event can pass events the main
    /// link read in the same read and has not published yet.)
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            let events = held.events.into_iter();
            held.hub.publish_all(
                events
                    .map(|(m, id, read)| Event::read_from(m, held.origin.clone(), id, read))
                    .collect(),
            );
        }
    }
}

impl Waiter {
    pub fn new(waiting: Waiting, timeout: Duration) -> Waiter {
        Waiter {
            waiting,
            list: ListFraming::None,
            deadline: Instant::now() + timeout,
            held: None,
            _slot: None,
        }
    }

    /// Holds one of the sending session's in-flight slots until the action is answered.
    pub fn with_slot(mut self, slot: tokio::sync::OwnedSemaphorePermit) -> Waiter {
        self._slot = Some(slot);
        self
    }

    /// Answers a waiter that will get no answer from the upstream, tagged with that
    /// upstream's name (`origin`: the server header and the name), so a client that
    /// dispatches by server sees which box failed.
    pub fn fail(mut self, message: &str, origin: (&str, &str)) {
        let (header, server) = origin;
        let waiting = std::mem::replace(&mut self.waiting, Waiting::Internal { tx: None });
        match waiting {
            // A list the client has seen start gets its end, not a second response.
            Waiting::Client {
                tx,
                client_aid,
                list_end,
                ..
            } if self.list != ListFraming::None => {
                tx.try_send(
                    list_end
                        .cut_short(client_aid.as_deref(), message)
                        .with_only(header, server),
                );
            }
            Waiting::Client { tx, client_aid, .. } | Waiting::SyncOriginate { tx, client_aid } => {
                tx.try_send(MessageBuilder::error(client_aid.as_deref(), message).with_only(header, server));
            }
            Waiting::Merge { merge, .. } => merge.abandon(message),
            Waiting::Internal { .. } => {}
        }
    }
}

/// Why an action could not be queued on a link; its waiter comes back to be answered.
pub struct Refused {
    pub waiter: Box<Waiter>,
    pub reason: String,
}
