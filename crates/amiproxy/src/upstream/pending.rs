//! The actions one upstream link has in flight: who waits for each answer, and when each
//! gives up. Bounded (a full link refuses new actions with a clear error instead of growing
//! without end), and ordered by deadline, so the sweep that answers the silent ones looks at
//! the expired entries only, not at every entry under the lock the reader shares.

use super::{ProxyActionId, Waiter};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(super) struct Pending {
    waiters: HashMap<ProxyActionId, Waiter>,
    /// (deadline, ActionID) of every waiter, soonest first.
    deadlines: BTreeSet<(Instant, ProxyActionId)>,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn insert(&mut self, aid: ProxyActionId, waiter: Waiter) {
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
        let (key, w) = self.waiters.remove_entry(aid)?;
        self.deadlines.remove(&(w.deadline, key));
        Some(w)
    }

    /// Gives `aid` a new deadline `by` from now (a list whose items keep coming).
    pub fn extend(&mut self, aid: &str, by: Duration) {
        let Some((key, w)) = self.waiters.get_key_value(aid) else {
            return;
        };
        let key = key.clone();
        let deadline = Instant::now() + by;
        self.deadlines.remove(&(w.deadline, key.clone()));
        self.deadlines.insert((deadline, key));
        if let Some(w) = self.waiters.get_mut(aid) {
            w.deadline = deadline;
        }
    }

    /// Removes and returns the waiters whose deadline has passed.
    pub fn expired(&mut self, now: Instant) -> Vec<(ProxyActionId, Waiter)> {
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
    pub fn take_all(&mut self) -> Vec<(ProxyActionId, Waiter)> {
        self.deadlines.clear();
        let mut all: Vec<(ProxyActionId, Waiter)> = self.waiters.drain().collect();
        all.sort_by_key(|(aid, _)| aid.seq());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{ActionIds, Waiting};

    fn waiter(ms: u64) -> Waiter {
        Waiter::new(Waiting::Internal { tx: None }, Duration::from_millis(ms))
    }

    #[test]
    fn expires_in_deadline_order_only_what_is_due() {
        let ids = ActionIds::default();
        let mut p = Pending::default();
        let (a, b, c) = (ids.next(), ids.next(), ids.next());
        p.insert(a.clone(), waiter(10_000));
        p.insert(b.clone(), waiter(0));
        p.insert(c.clone(), waiter(20_000));
        let now = Instant::now();
        let due: Vec<ProxyActionId> = p.expired(now).into_iter().map(|(a, _)| a).collect();
        assert_eq!(due, [b]);
        assert_eq!(p.len(), 2);
        p.extend(a.as_str(), Duration::from_secs(60));
        let later = now + Duration::from_secs(30);
        let due: Vec<ProxyActionId> = p.expired(later).into_iter().map(|(a, _)| a).collect();
        assert_eq!(due, [c]);
        assert!(p.remove(a.as_str()).is_some());
        // Sent in this order (counters of one, two and three digits), inserted in another:
        // taken in the order sent, not in the order of their text.
        let all: Vec<ProxyActionId> = (0..120).map(|_| ids.next()).collect();
        let sent: Vec<ProxyActionId> = [0, 5, 50, 110].iter().map(|&i| all[i].clone()).collect();
        for i in [2, 1, 3, 0] {
            p.insert(sent[i].clone(), waiter(5_000));
        }
        let order: Vec<ProxyActionId> = p.take_all().into_iter().map(|(a, _)| a).collect();
        assert_eq!(order, sent);
        assert_eq!(p.len(), 0);
        assert!(p.deadlines.is_empty());
    }
}
