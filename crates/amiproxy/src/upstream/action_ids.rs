//! The proxy's own ActionIDs. Every action goes upstream under a fresh one (clients'
//! ActionIDs may collide: each client picks its own), and the answer gets the client's
//! back. Broadcast events that echo an ActionID (the OriginateResponse of an async
//! Originate, the UserEvent of UserEvent) are remembered here to be given back too.

use crate::sync::lock;
use ami_proto::Message;
use dashmap::DashMap;
use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every ActionID a proxy sends upstream starts with this, then its instance tag.
pub const ACTION_ID_PREFIX: &str = "amiproxy-";

/// How long the ActionID of an async Originate or UserEvent is remembered, so the broadcast
/// event that carries it can be given back the client's own ActionID.
const BROADCAST_AID_TTL: Duration = Duration::from_secs(600);
const BROADCAST_AIDS_SOFT: usize = 10_000;
const BROADCAST_AIDS_HARD: usize = 200_000;

/// An ActionID the proxy made: `amiproxy-<instance>-<counter>`, unique for the life of the
/// process and never a client's. The instance tag is random per process: replicas share an
/// upstream, and a restarted proxy still receives the broadcast events of calls its
/// predecessor started, so a counter alone would take their events for its own actions'.
/// It ends in the counter, so ActionIDs order as their actions were sent.
#[derive(Debug, Clone)]
pub struct ProxyActionId {
    seq: u64,
    text: Box<str>,
}

impl ProxyActionId {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The sending order.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Whose action an ActionID read from an upstream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    /// One this process sent.
    Ours,
    /// Another proxy's (a replica beside this one, or this one's predecessor).
    AnotherProxy,
    /// No proxy's: a client of the upstream's own, or none.
    Nobody,
}

// Equal and hashed as its text, so maps keyed by it are searched with the `&str` an
// upstream's message carries.
impl PartialEq for ProxyActionId {
    fn eq(&self, other: &ProxyActionId) -> bool {
        self.text == other.text
    }
}

impl Eq for ProxyActionId {}

impl std::hash::Hash for ProxyActionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state)
    }
}

impl Ord for ProxyActionId {
    fn cmp(&self, other: &ProxyActionId) -> std::cmp::Ordering {
        (self.seq, &self.text).cmp(&(other.seq, &other.text))
    }
}

impl PartialOrd for ProxyActionId {
    fn partial_cmp(&self, other: &ProxyActionId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Borrow<str> for ProxyActionId {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for ProxyActionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Makes ActionIDs, and remembers those whose broadcast event is still to come.
pub struct ActionIds {
    next: AtomicU64,
    /// `amiproxy-<instance>-`: what each of this process's ActionIDs starts with.
    prefix: Box<str>,
    /// Proxy ActionID → the client's own (or none) for broadcast events that echo it.
    broadcast: DashMap<ProxyActionId, (Option<String>, Instant)>,
    last_sweep: Mutex<Instant>,
}

impl Default for ActionIds {
    fn default() -> ActionIds {
        ActionIds {
            next: AtomicU64::new(1),
            prefix: format!("{ACTION_ID_PREFIX}{:016x}-", rand::random::<u64>()).into_boxed_str(),
            broadcast: DashMap::new(),
            last_sweep: Mutex::new(Instant::now()),
        }
    }
}

impl ActionIds {
    /// A fresh ActionID, unique for the life of the proxy.
    pub fn next(&self) -> ProxyActionId {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        ProxyActionId {
            seq,
            text: format!("{}{seq}", self.prefix).into_boxed_str(),
        }
    }

    /// Whose action an ActionID an upstream sent belongs to.
    pub fn whose(&self, aid: &str) -> Whose {
        if aid.starts_with(&*self.prefix) {
            Whose::Ours
        } else if aid.starts_with(ACTION_ID_PREFIX) {
            Whose::AnotherProxy
        } else {
            Whose::Nobody
        }
    }

    /// Remembers that the broadcast event echoing `aid` belongs to a client action. The
    /// map is bounded: swept of old entries at most once a second past a soft size, and
    /// past a hard size new entries are not remembered (their event is then dropped rather
    /// than shown to everyone with a proxy ActionID).
    pub fn remember_broadcast(&self, aid: &ProxyActionId, client_aid: Option<&str>) {
        let now = Instant::now();
        if self.broadcast.len() > BROADCAST_AIDS_SOFT {
            let mut last = lock(&self.last_sweep);
            if now.duration_since(*last) > Duration::from_secs(1) {
                *last = now;
                self.broadcast
                    .retain(|_, (_, t)| now.duration_since(*t) < BROADCAST_AID_TTL);
            }
        }
        if self.broadcast.len() < BROADCAST_AIDS_HARD {
            self.broadcast.insert(aid.clone(), (client_aid.map(str::to_owned), now));
        }
    }

    /// Forgets a remembered ActionID whose action failed: its event is not coming.
    pub fn forget_broadcast(&self, aid: &str) {
        self.broadcast.remove(aid);
    }

    /// ActionIDs remembered for broadcast events still to come.
    pub fn broadcast_len(&self) -> usize {
        self.broadcast.len()
    }

    /// The broadcast event with its client's ActionID back (each is echoed once), or None
    /// when no client action is known for it.
    pub fn restore_broadcast(&self, msg: &Message) -> Option<Message> {
        let aid = msg.action_id()?;
        let (_, (client, _)) = self.broadcast.remove(aid)?;
        Some(restore_aid(msg.clone(), client.as_deref()))
    }
}

/// Puts the client's ActionID back, or removes ours if the client sent none.
pub fn restore_aid(msg: Message, client_aid: Option<&str>) -> Message {
    match client_aid {
        Some(a) => msg.with_header("ActionID", a),
        None => msg.without_header("ActionID"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::MessageBuilder;

    #[test]
    fn broadcast_ids_are_given_back_once() {
        let ids = ActionIds::default();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(ids.whose(a.as_str()), Whose::Ours);
        // Another process (a replica, or the one before a restart) numbers from 1 too.
        let other = ActionIds::default();
        let theirs = other.next();
        assert_eq!(ids.whose(theirs.as_str()), Whose::AnotherProxy);
        assert_eq!(other.whose(a.as_str()), Whose::AnotherProxy);
        assert_eq!(ids.whose("crm-7"), Whose::Nobody);
        ids.remember_broadcast(&a, Some("mine"));
        let foreign = MessageBuilder::event("UserEvent")
            .header("ActionID", theirs.as_str())
            .build();
        assert!(ids.restore_broadcast(&foreign).is_none(), "not ours to give back");
        let ev = MessageBuilder::event("UserEvent")
            .header("ActionID", a.as_str())
            .build();
        let back = ids.restore_broadcast(&ev).expect("remembered");
        assert_eq!(back.action_id(), Some("mine"));
        assert!(ids.restore_broadcast(&ev).is_none());
        ids.remember_broadcast(&b, None);
        ids.forget_broadcast(b.as_str());
        assert_eq!(ids.broadcast_len(), 0);
    }
}
