//! Who is logged in, for the operator console: one entry per logged-in session, added at
//! login and removed when the session ends, with the few figures an operator watches (its
//! event queue, what it lost). Sessions write their own entry with relaxed atomics; the
//! console reads a snapshot. Nothing on the event path takes a lock.

use dashmap::DashMap;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// How a client reaches the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Tls,
    /// AMI as JSON over a WebSocket (`/ami/ws`).
    WebSocket,
    /// One JSON action over HTTP (`POST /ami/action/{Name}`).
    Http,
}

/// One logged-in session as the console shows it.
#[derive(Debug)]
pub struct SessionInfo {
    pub id: u64,
    pub user: String,
    pub peer: SocketAddr,
    pub listener: Arc<str>,
    pub transport: Transport,
    pub since: SystemTime,
    /// Events waiting in the hub for this session (sampled).
    pub queued_events: AtomicUsize,
    /// Events this session lost by falling behind.
    pub dropped: AtomicU64,
    /// Events delivered to it.
    pub delivered: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Registry {
    map: DashMap<u64, Arc<SessionInfo>>,
    next: AtomicU64,
}

/// A session's entry; removed from the registry when dropped.
pub struct Registered {
    registry: Arc<Registry>,
    pub info: Arc<SessionInfo>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.map.remove(&self.info.id);
    }
}

/// A session as JSON.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: u64,
    pub user: String,
    pub peer: String,
    pub listener: String,
    pub transport: Transport,
    pub since_unix: u64,
    pub queued_events: usize,
    pub dropped: u64,
    pub delivered: u64,
}

impl Registry {
    pub fn register(
        self: &Arc<Self>,
        user: &str,
        peer: SocketAddr,
        listener: Arc<str>,
        transport: Transport,
        since: SystemTime,
    ) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(SessionInfo {
            id,
            user: user.to_owned(),
            peer,
            listener,
            transport,
            since,
            queued_events: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        });
        self.map.insert(id, info.clone());
        Registered {
            registry: self.clone(),
            info,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every session now, oldest first.
    pub fn snapshot(&self) -> Vec<SessionView> {
        let mut v: Vec<SessionView> = self
            .map
            .iter()
            .map(|e| {
                let s = e.value();
                SessionView {
                    id: s.id,
                    user: s.user.clone(),
                    peer: s.peer.to_string(),
                    listener: s.listener.to_string(),
                    transport: s.transport,
                    since_unix: s
                        .since
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    queued_events: s.queued_events.load(Ordering::Relaxed),
                    dropped: s.dropped.load(Ordering::Relaxed),
                    delivered: s.delivered.load(Ordering::Relaxed),
                }
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

/// How many refusals the console keeps.
pub const RECENT_REFUSALS: usize = 100;

/// One refused action as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalView {
    pub at_unix_ms: u64,
    pub user: String,
    pub peer: String,
    pub action: String,
    pub server: String,
    /// The audit reason (what the operator needs; the client got fewer words).
    pub reason: String,
}

/// The last [`RECENT_REFUSALS`] refused actions (a refusal is rare next to an event: one
/// short lock per refusal is nothing).
#[derive(Debug, Default)]
pub struct RecentRefusals(std::sync::Mutex<std::collections::VecDeque<RefusalView>>);

impl RecentRefusals {
    pub fn push(&self, r: RefusalView) {
        let mut q = crate::sync::lock(&self.0);
        if q.len() == RECENT_REFUSALS {
            q.pop_front();
        }
        q.push_back(r);
    }

    /// Newest first.
    pub fn snapshot(&self) -> Vec<RefusalView> {
        crate::sync::lock(&self.0).iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_as_long_as_its_session() {
        let r = Arc::new(Registry::default());
        let a = r.register(
            "a",
            "127.0.0.1:1".parse().unwrap(),
            Arc::from("x"),
            Transport::Tcp,
            SystemTime::now(),
        );
        let b = r.register(
            "b",
            "127.0.0.1:2".parse().unwrap(),
            Arc::from("x"),
            Transport::WebSocket,
            SystemTime::now(),
        );
        b.info.dropped.fetch_add(3, Ordering::Relaxed);
        let snap = r.snapshot();
        assert_eq!(snap.iter().map(|s| s.user.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(snap[1].dropped, 3);
        drop(a);
        assert_eq!(r.len(), 1);
        drop(b);
        assert!(r.is_empty());
    }

    #[test]
    fn refusals_keep_the_newest() {
        let r = RecentRefusals::default();
        for i in 0..RECENT_REFUSALS + 5 {
            r.push(RefusalView {
                at_unix_ms: i as u64,
                user: "u".into(),
                peer: "p".into(),
                action: "Command".into(),
                server: String::new(),
                reason: "denied".into(),
            });
        }
        let s = r.snapshot();
        assert_eq!(s.len(), RECENT_REFUSALS);
        assert_eq!(s[0].at_unix_ms, (RECENT_REFUSALS + 4) as u64);
    }
}
