//! The `Nats-Msg-Id` of an exported event: the same on every replica that saw the event, so
//! JetStream's duplicate window keeps one copy however many replicas publish it.
//!
//! Asterisk formats an event once and writes the same bytes to every manager session, and
//! every replica tags it with the same server name, so the bytes a replica publishes are the
//! bytes every other replica publishes. The id is the server name, a 128-bit XXH3 of those
//! bytes (a published, stable algorithm: replicas built by different compilers agree), and
//! how many identical events this replica already saw since that event was last quiet for
//! twice the duplicate window: two genuinely identical events get `…-0` and `…-1` and are
//! both kept, on every replica alike, and no number is given twice while JetStream may still
//! hold it.
//!
//! The edge: a replica that started after the first of two identical events (within the
//! window) counts the second as `…-0`, which the stream already holds, and that one copy is
//! lost if no other replica exported it. `timestampevents = yes` in manager.conf makes every
//! event unique and closes the edge.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::Xxh3;

/// Counts identical events within the duplicate window to build their ids.
#[derive(Debug)]
pub struct MsgIds {
    window: Duration,
    /// A content hash → (its occurrences so far, when the last of them was seen).
    seen: HashMap<u128, (u32, Instant)>,
    /// One item per entry, in time order, to find those whose last occurrence is old (an
    /// item older than its entry's last occurrence is moved to the back when reached).
    order: VecDeque<(Instant, u128)>,
    cap: usize,
}

impl MsgIds {
    /// Remembers at most `cap` distinct events (the oldest are forgotten first, and then an
    /// identical event past the cap counts from 0 again: memory stays bounded at any rate).
    pub fn new(window: Duration, cap: usize) -> MsgIds {
        MsgIds {
            window,
            seen: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// The id of the event `bytes` from `server`, seen now.
    pub fn next(&mut self, server: &str, bytes: &[u8]) -> String {
        self.next_at(server, bytes, Instant::now())
    }

    fn next_at(&mut self, server: &str, bytes: &[u8], now: Instant) -> String {
        self.expire(now);
        // The server name is in the hash too (it is also in the bytes, as the server
        // header), so two servers' identical events never share an id.
        let mut h = Xxh3::new();
        h.update(server.as_bytes());
        h.update(&[0]);
        h.update(bytes);
        let hash = h.digest128();
        let n = match self.seen.get_mut(&hash) {
            Some((count, last)) => {
                *count = count.saturating_add(1);
                *last = now;
                *count
            }
            None => {
                if self.seen.len() >= self.cap {
                    if let Some((_, old)) = self.order.pop_front() {
                        self.seen.remove(&old);
                    }
                }
                self.seen.insert(hash, (0, now));
                self.order.push_back((now, hash));
                0
            }
        };
        format!("{server}-{hash:032x}-{n}")
    }

    /// Forgets an entry only when its *last* event is twice the window old: every id it
    /// gave has then left JetStream's window (with room for the time an event waits in the
    /// buffer before it is stored), so counting may restart at 0 without reusing an id the
    /// stream still holds. (Forgetting after the *first* event's window would hand out
    /// `…-1` again while the last `…-1` is still there: a real event dropped as a duplicate.)
    fn expire(&mut self, now: Instant) {
        let keep = self.window.saturating_mul(2);
        while let Some(&(t, hash)) = self.order.front() {
            if now.saturating_duration_since(t) <= keep {
                break;
            }
            self.order.pop_front();
            match self.seen.get(&hash) {
                Some((_, last)) if *last > t => self.order.push_back((*last, hash)),
                Some(_) => {
                    self.seen.remove(&hash);
                }
                None => {}
            }
        }
    }

    /// Distinct events remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &[u8] = b"Event: Hangup\r\nUniqueid: 1.1\r\nServer: pbx1\r\n\r\n";

    #[test]
    fn every_replica_computes_the_same_id() {
        let mut a = MsgIds::new(Duration::from_secs(120), 1000);
        let mut b = MsgIds::new(Duration::from_secs(120), 1000);
        let ia = a.next("pbx1", EV);
        assert_eq!(ia, b.next("pbx1", EV));
        assert!(ia.starts_with("pbx1-") && ia.ends_with("-0"), "{ia}");
        // A fixed algorithm: the id never changes between builds.
        assert_eq!(ia, MsgIds::new(Duration::from_secs(1), 1).next("pbx1", EV));
        assert_ne!(a.next("pbx1", b"Event: Other\r\n\r\n"), ia);
    }

    #[test]
    fn identical_events_are_counted_and_servers_kept_apart() {
        let mut ids = MsgIds::new(Duration::from_secs(120), 1000);
        let first = ids.next("pbx1", EV);
        let second = ids.next("pbx1", EV);
        assert!(second.ends_with("-1"), "{second}");
        assert_eq!(first.trim_end_matches("-0"), second.trim_end_matches("-1"));
        assert!(ids.next("pbx2", EV).ends_with("-0"));
        // Another replica seeing the same two events gives the same two ids.
        let mut other = MsgIds::new(Duration::from_secs(120), 1000);
        assert_eq!(other.next("pbx1", EV), first);
        assert_eq!(other.next("pbx1", EV), second);
    }

    #[test]
    fn counting_restarts_only_when_no_id_given_can_still_be_held() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut ids = MsgIds::new(s(10), 3);
        assert!(ids.next_at("s", EV, t0).ends_with("-0"));
        assert!(ids.next_at("s", EV, t0 + s(8)).ends_with("-1"));
        // The first left the window, the second not: a new number, never `-0` or `-1` again.
        assert!(ids.next_at("s", EV, t0 + s(12)).ends_with("-2"));
        assert!(ids.next_at("s", EV, t0 + s(25)).ends_with("-3"));
        // Twice the window after the last one: nothing given can be held any more.
        assert!(ids.next_at("s", EV, t0 + s(46)).ends_with("-0"));
        for i in 0..10u8 {
            ids.next_at("s", &[i], t0 + s(47));
        }
        assert_eq!(ids.len(), 3);
    }
}
