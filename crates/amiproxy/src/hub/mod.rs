//! The merged event stream: every upstream event is parsed once, tagged once, and published
//! into one ring ([`ring`]), a read's worth at a time. Each client session reads the ring at
//! its own pace; a client that falls behind loses the oldest events (and is told how many),
//! never slowing the upstream readers or any other client.

mod ring;

pub use ring::{Next, Subscription};

use crate::ids::UpstreamId;
use crate::perms::Classes;
use crate::policy::EventNames;
use ami_policy::filter::FilterMemo;
use ami_proto::{Message, MessageBuilder};
use std::sync::{Arc, OnceLock};

/// One event as every client sees it (before per-client ActionID handling).
#[derive(Debug)]
pub struct Event {
    pub msg: Message,
    /// The classes of its `Privilege:` header; a client needs all of them.
    pub classes: Classes,
    /// The upstream it came from, as the proxy knows it (None: the proxy's own event).
    /// Scope checks read this, never a header a peer could have written.
    pub server: Option<Arc<str>>,
    /// True when the upstream `server` sent it; false for the proxy's own events, including
    /// those about an upstream (`ProxyUpstreamStatus`), which differ from replica to replica
    /// (the NATS export leaves them out).
    pub from_upstream: bool,
    /// What it names (channels, uniqueids, queues): read by the first client with a scope,
    /// then by every other from here, never when no client has a scope.
    names: OnceLock<EventNames>,
    /// The event as JSON for WebSocket clients: encoded by the first such client, shared by
    /// every other (never when no client reads JSON).
    json: OnceLock<bytes::Bytes>,
    /// What the configured event filters said of it: each judged by the first client that
    /// asks, read by every other client whose user has the same filter.
    pub filter_memo: FilterMemo,
    /// The upstream's id and the number of the read it came in: a scope check may resolve its
    /// uniqueids among the channels that upstream hung up in that read or a later one, never
    /// an earlier one (see [`crate::routing::Owners::channel_of_event_at`]). None for the
    /// proxy's own events.
    pub read: Option<(UpstreamId, u64)>,
}

impl Event {
    pub fn new(msg: Message, server: Option<Arc<str>>, from_upstream: bool) -> Event {
        let classes = privilege_classes(msg.get("Privilege").unwrap_or(""));
        Event {
            msg,
            classes,
            server,
            from_upstream,
            names: OnceLock::new(),
            json: OnceLock::new(),
            filter_memo: FilterMemo::default(),
            read: None,
        }
    }

    /// An event the upstream `server` (`id`) sent in its read number `read`.
    pub fn read_from(msg: Message, server: Arc<str>, id: UpstreamId, read: u64) -> Event {
        Event {
            read: Some((id, read)),
            ..Event::new(msg, Some(server), true)
        }
    }

    pub fn names(&self) -> &EventNames {
        self.names.get_or_init(|| EventNames::of(&self.msg))
    }

    /// See [`crate::json::pre_encoded`].
    pub fn pre_encoded(&self) -> &[u8] {
        self.json.get_or_init(|| crate::json::pre_encoded(&self.msg))
    }
}

#[derive(Debug, Clone)]
pub struct Hub {
    ring: Arc<ring::Ring>,
}

impl Hub {
    /// A hub whose ring keeps the newest `capacity` events.
    pub fn new(capacity: usize) -> Hub {
        Hub {
            ring: Arc::new(ring::Ring::new(capacity)),
        }
    }

    /// Publishes one of the proxy's own events.
    pub fn publish(&self, msg: Message) {
        self.ring.publish(vec![Event::new(msg, None, false)]);
    }

    /// Publishes one of the proxy's own events about the upstream `server` (scoped to it).
    pub fn publish_about(&self, msg: Message, server: Arc<str>) {
        self.ring.publish(vec![Event::new(msg, Some(server), false)]);
    }

    /// Publishes events in their order, as one batch: what a link read in one go.
    pub fn publish_all(&self, events: Vec<Event>) {
        self.ring.publish(events);
    }

    pub fn subscribe(&self) -> Subscription {
        self.ring.subscribe()
    }

    pub fn receivers(&self) -> usize {
        self.ring.subscribers()
    }
}

/// The classes of a `Privilege:` value. An upstream uses a few dozen distinct values for
/// millions of events, so each reading thread remembers what it parsed: the last few values
/// in a short list compared byte for byte (most events repeat one of them), the rest in a
/// bounded map.
fn privilege_classes(privilege: &str) -> Classes {
    const RECENT: usize = 4;
    const REMEMBERED: usize = 256;
    #[derive(Default)]
    struct Seen {
        recent: Vec<(Box<str>, Classes)>,
        next: usize,
        all: std::collections::HashMap<Box<str>, Classes>,
    }
    thread_local! {
        static SEEN: std::cell::RefCell<Seen> = std::cell::RefCell::new(Seen::default());
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some((_, c)) = seen.recent.iter().find(|(p, _)| **p == *privilege) {
            return *c;
        }
        let c = match seen.all.get(privilege) {
            Some(c) => *c,
            None => {
                let c = Classes::parse_lenient(privilege);
                if seen.all.len() < REMEMBERED {
                    seen.all.insert(privilege.into(), c);
                }
                c
            }
        };
        let entry = (Box::from(privilege), c);
        if seen.recent.len() < RECENT {
            seen.recent.push(entry);
        } else {
            let at = seen.next;
            seen.recent[at] = entry;
            seen.next = (at + 1) % RECENT;
        }
        c
    })
}

/// `Event: ProxyUpstreamStatus`: an upstream connected or went away.
pub fn upstream_status(server_header: &str, server: &str, status: &str, reason: Option<&str>) -> Message {
    MessageBuilder::event("ProxyUpstreamStatus")
        .header("Privilege", "system,all")
        .header(server_header, server)
        .header("Status", status)
        .header_opt("Reason", reason)
        .build()
}

/// `Event: ProxyEventsDropped`: this client fell behind and lost `count` events.
pub fn events_dropped(count: u64) -> Message {
    MessageBuilder::event("ProxyEventsDropped")
        .header("Privilege", "system,all")
        .header("Count", &count.to_string())
        .build()
}
