//! Channels that hung up not long ago, by uniqueid: what a scope check needs to judge an
//! event that names a channel only by its uniqueid after the channel is gone.
//!
//! The ownership index learns from an event as the link reads it, but sessions judge the
//! event later: after the rest of the read is learned too, and much later for a session
//! that lags behind. Without this memory, a short call's Hangup would make every earlier
//! event of the call that names only a uniqueid (or a Linkedid) unreadable to the tenant
//! whose channel it was.

use crate::ids::UpstreamId;
use dashmap::DashMap;
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many hung-up channels are remembered: many more than the calls whose events a
/// lagging session can still have queued, at about 100 bytes each.
pub const REMEMBERED: usize = 16_384;

/// One hung-up channel: its name, its upstream, and the last read number given out when it
/// hung up (its Hangup's read, or later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub name: String,
    pub upstream: UpstreamId,
    pub read: u64,
}

/// Uniqueid → the channel it was, for recently hung-up channels, oldest forgotten first.
#[derive(Debug, Default)]
pub struct Departed {
    /// Read by every scope check that resolves a uniqueid the live index does not know:
    /// sharded, so readers on several threads do not queue.
    names: DashMap<String, Gone>,
    /// The order they came in; touched only when a channel hangs up.
    order: Mutex<VecDeque<String>>,
}

impl Departed {
    /// Remembers that `uniqueid` was the channel `gone`.
    pub fn bury(&self, uniqueid: String, gone: Gone) {
        self.bury_within(uniqueid, gone, REMEMBERED);
    }

    fn bury_within(&self, uniqueid: String, gone: Gone, cap: usize) {
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        if self.names.insert(uniqueid.clone(), gone).is_none() {
            order.push_back(uniqueid);
        }
        while order.len() > cap {
            if let Some(old) = order.pop_front() {
                self.names.remove(&old);
            }
        }
    }

    /// The channel `uniqueid` was.
    pub fn get(&self, uniqueid: &str) -> Option<Gone> {
        self.names.get(uniqueid).map(|v| v.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone(name: &str) -> Gone {
        Gone {
            name: name.into(),
            upstream: UpstreamId(1),
            read: 7,
        }
    }

    #[test]
    fn the_oldest_are_forgotten_first() {
        let d = Departed::default();
        for i in 0..5 {
            d.bury_within(format!("u{i}"), gone(&format!("SIP/{i}")), 3);
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.get("u1"), None);
        assert_eq!(d.get("u2"), Some(gone("SIP/2")));
        // The same uniqueid again is one entry, not two.
        d.bury_within("u4".into(), gone("SIP/4b"), 3);
        assert_eq!(d.len(), 3);
        assert_eq!(d.get("u2").map(|v| v.name), Some("SIP/2".into()));
        assert_eq!(d.get("u4").map(|v| v.name), Some("SIP/4b".into()));
    }
}
