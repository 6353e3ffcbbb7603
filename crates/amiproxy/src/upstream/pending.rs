//! The actions one upstream link has in flight: who waits for each answer, and when each
//! gives up. Bounded (a full link refuses new actions with a clear error instead of growing
//! without end), and ordered by deadline, so the sweep that answers the silent ones looks at
//! the expired entries only, not at every entry under the lock the reader shares.

use super::Waiter;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(super) struct Pending {
    waiters: HashMap<String, Waiter>,
    /// (deadline, ActionID) of every waiter, soonest first.
    deadlines: BTreeSet<(Instant, String)>,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn insert(&mut self, aid: String, waiter: Waiter) {
        self.deadlines.insert((waiter.deadline, aid.clone()));
        if let Some(old) = self.waiters.insert(aid, waiter) {
            // An ActionID is never reused; if it were, the old deadline entry goes too.
            self.deadlines.retain(|(d, _)| *d != old.deadline);
        }
    }

    pub fn get_mut(&mut self, aid: &str) -> Option<&mut Waiter> {
        self.waiters.get_mut(aid)
    }

    pub fn remove(&mut self, aid: &str) -> Option<Waiter> {
        let w = self.waiters.remove(aid)?;
        self.deadlines.remove(&(w.deadline, aid.to_owned()));
        Some(w)
    }

    /// Gives `aid` a new deadline `by` from now (a list whose items keep coming).
    pub fn extend(&mut self, aid: &str, by: Duration) {
        if let Some(w) = self.waiters.get_mut(aid) {
            self.deadlines.remove(&(w.deadline, aid.to_owned()));
            w.deadline = Instant::now() + by;
            self.deadlines.insert((w.deadline, aid.to_owned()));
        }
    }

    /// Removes and returns the waiters whose deadline has passed.
    pub fn expired(&mut self, now: Instant) -> Vec<(String, Waiter)> {
        let mut out = Vec::new();
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > now {
                break;
            }
            let Some((_, aid)) = self.deadlines.pop_first() else {
                break;
            };
            if let Some(w) = self.waiters.remove(&aid) {
                out.push((aid, w));
            }
        }
        out
    }

    /// Removes and returns every waiter, in the order the actions were sent (a client that
    /// pipelined them gets their errors in that order too).
    pub fn take_all(&mut self) -> Vec<(String, Waiter)> {
        self.deadlines.clear();
        let mut all: Vec<(String, Waiter)> = self.waiters.drain().collect();
        all.sort_by_key(|(aid, _)| sequence(aid));
        all
    }
}

/// The proxy's ActionIDs end in a counter (`amiproxy-42`): their order is the sending order.
fn sequence(aid: &str) -> (u64, String) {
    let n = aid.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
    (n, aid.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Waiting;

    fn waiter(ms: u64) -> Waiter {
        Waiter::new(Waiting::Internal { tx: None }, Duration::from_millis(ms))
    }

    #[test]
    fn expires_in_deadline_order_only_what_is_due() {
        let mut p = Pending::default();
        p.insert("a".into(), waiter(10_000));
        p.insert("b".into(), waiter(0));
        p.insert("c".into(), waiter(20_000));
        let now = Instant::now();
        let due: Vec<String> = p.expired(now).into_iter().map(|(a, _)| a).collect();
        assert_eq!(due, ["b"]);
        assert_eq!(p.len(), 2);
        p.extend("a", Duration::from_secs(60));
        let later = now + Duration::from_secs(30);
        let due: Vec<String> = p.expired(later).into_iter().map(|(a, _)| a).collect();
        assert_eq!(due, ["c"]);
        assert!(p.remove("a").is_some());
        for n in [10, 9, 100, 1] {
            p.insert(format!("amiproxy-{n}"), waiter(5_000));
        }
        let order: Vec<String> = p.take_all().into_iter().map(|(a, _)| a).collect();
        assert_eq!(order, ["amiproxy-1", "amiproxy-9", "amiproxy-10", "amiproxy-100"]);
        assert_eq!(p.len(), 0);
        assert!(p.deadlines.is_empty());
    }
}
