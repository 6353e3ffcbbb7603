//! The merged event stream: every upstream event is parsed once, tagged once, and published
//! into one broadcast ring. Each client session reads the ring at its own pace; a client
//! that falls behind loses the oldest events (and is told how many), never slowing the
//! upstream readers or any other client.

use crate::perms::Classes;
use crate::policy::EventNames;
use ami_proto::{Message, MessageBuilder};
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

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
    tx: broadcast::Sender<Arc<Event>>,
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        let (tx, _) = broadcast::channel(capacity);
        Hub { tx }
    }

    /// Publishes one of the proxy's own events.
    pub fn publish(&self, msg: Message) {
        self.send(Event::new(msg, None, false));
    }

    /// Publishes an event the upstream `server` sent.
    pub fn publish_from(&self, msg: Message, server: Arc<str>) {
        self.send(Event::new(msg, Some(server), true));
    }

    /// Publishes one of the proxy's own events about the upstream `server` (scoped to it).
    pub fn publish_about(&self, msg: Message, server: Arc<str>) {
        self.send(Event::new(msg, Some(server), false));
    }

    fn send(&self, ev: Event) {
        // No receiver is not an error: nobody is logged in.
        let _ = self.tx.send(Arc::new(ev));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub fn receivers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// The classes of a `Privilege:` value. An upstream uses a few dozen distinct values for
/// millions of events, so each reading thread remembers what it parsed (bounded).
fn privilege_classes(privilege: &str) -> Classes {
    const REMEMBERED: usize = 256;
    thread_local! {
        static SEEN: std::cell::RefCell<std::collections::HashMap<Box<str>, Classes>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(c) = seen.get(privilege) {
            return *c;
        }
        let c = Classes::parse_lenient(privilege);
        if seen.len() < REMEMBERED {
            seen.insert(privilege.into(), c);
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
