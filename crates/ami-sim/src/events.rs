//! Event fan-out: one broadcast bus shared by every session.
//!
//! An event is rendered to bytes once and shared ([`Bytes`]) by all sessions; each session
//! decides on its own whether to deliver it (read permissions, `Events` mask, filters). A
//! session that falls behind loses the oldest events instead of slowing the publisher down,
//! as a benchmark with a hundred clients at tens of thousands of events per second needs.

use ami_proto::MessageBuilder;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

use crate::perms;

/// Events buffered per session before a slow one starts losing them.
const BUS_CAPACITY: usize = 1 << 16;

/// One event, rendered once.
#[derive(Debug)]
pub struct BusEvent {
    /// Class bits from its `Privilege:` line (0 = no class: everyone with events on).
    pub classes: u32,
    /// The `Event:` name, for name-based event filters.
    pub name: Box<str>,
    pub bytes: Bytes,
}

/// What travels on the bus.
#[derive(Debug, Clone)]
pub enum BusItem {
    Event(Arc<BusEvent>),
    /// Bytes written as they are to every logged-in session (fault injection).
    Raw(Bytes),
    /// Close every logged-in session once the events before this one are written
    /// (used by shutdown, so `Event: Shutdown` goes out first).
    Close,
}

/// The publisher side of the bus, plus how events are decorated (`SystemName`).
#[derive(Debug)]
pub struct Bus {
    tx: broadcast::Sender<BusItem>,
    system_name: Option<String>,
    /// Events skipped by lagging sessions, summed over sessions.
    lagged: AtomicU64,
}

impl Bus {
    pub fn new(system_name: Option<String>) -> Bus {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        Bus {
            tx,
            system_name,
            lagged: AtomicU64::new(0),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusItem> {
        self.tx.subscribe()
    }

    /// Starts an event as Asterisk writes it: `Event`, `Privilege`, then `SystemName`
    /// when the instance has one.
    pub fn event(&self, name: &str, privilege: &str) -> Ev {
        let mut b = MessageBuilder::event(name).header("Privilege", privilege);
        if let Some(sn) = &self.system_name {
            b = b.header("SystemName", sn);
        }
        Ev {
            name: name.into(),
            classes: perms::event_classes(privilege),
            b,
        }
    }

    /// Publishes a finished event. No subscriber is not an error: nobody is listening.
    pub fn send(&self, ev: Ev) {
        self.publish(ev.classes, &ev.name, ev.b.into_bytes());
    }

    pub fn publish(&self, classes: u32, name: &str, bytes: Bytes) {
        let _ = self.tx.send(BusItem::Event(Arc::new(BusEvent {
            classes,
            name: name.into(),
            bytes,
        })));
    }

    pub fn raw(&self, bytes: Bytes) {
        let _ = self.tx.send(BusItem::Raw(bytes));
    }

    pub fn close_all(&self) {
        let _ = self.tx.send(BusItem::Close);
    }

    pub fn note_lag(&self, n: u64) {
        self.lagged.fetch_add(n, Ordering::Relaxed);
    }

    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    pub fn system_name(&self) -> Option<&str> {
        self.system_name.as_deref()
    }
}

/// An event being built (name and classes kept for the bus).
#[derive(Debug)]
pub struct Ev {
    name: String,
    classes: u32,
    b: MessageBuilder,
}

impl Ev {
    pub fn h(mut self, key: &str, value: &str) -> Ev {
        self.b = self.b.header(key, value);
        self
    }

    pub fn bytes(self) -> Bytes {
        self.b.into_bytes()
    }
}
