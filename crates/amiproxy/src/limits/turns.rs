//! How many logins from one source address are verified at once. The ban is decided by
//! counting refused logins; logins verified in parallel all pass the ban check before the
//! first of them is counted, so a guesser opening `auth_limit` connections at once would get
//! that many guesses per ban period instead of `failed_logins`. At most `failed_logins` logins
//! per address are in verification at a time, each refusal counted before its place is given
//! to the next: a guesser gets at most twice the budget before the ban, while honest clients
//! behind one address (a NAT, one host's apps) still log in in parallel. (Per replica: with
//! `[redis]`, N replicas allow N times that.)

use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct LoginTurns {
    /// Logins in verification at once per address (0: no limit, bans are off).
    per_address: usize,
    gates: Arc<DashMap<IpAddr, Arc<Semaphore>>>,
}

/// A login's place in verification; dropped when its outcome has been counted.
pub struct LoginTurn {
    permit: Option<OwnedSemaphorePermit>,
    gates: Arc<DashMap<IpAddr, Arc<Semaphore>>>,
    ip: IpAddr,
}

impl LoginTurns {
    pub fn new(per_address: u32) -> LoginTurns {
        LoginTurns {
            per_address: per_address as usize,
            gates: Arc::default(),
        }
    }

    /// Waits for a place for a login from `ip` (at once while fewer than the limit are in
    /// verification).
    pub async fn take(&self, ip: IpAddr) -> LoginTurn {
        let permit = match self.per_address {
            0 => None,
            n => {
                let gate = self
                    .gates
                    .entry(ip)
                    .or_insert_with(|| Arc::new(Semaphore::new(n)))
                    .clone();
                gate.acquire_owned().await.ok()
            }
        };
        LoginTurn {
            permit,
            gates: self.gates.clone(),
            ip,
        }
    }

    /// Addresses with a login in verification or waiting.
    pub fn len(&self) -> usize {
        self.gates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }
}

impl Drop for LoginTurn {
    fn drop(&mut self) {
        drop(self.permit.take());
        // The map's entry goes with the last login that used it (the map holds one count).
        self.gates.remove_if(&self.ip, |_, g| Arc::strong_count(g) == 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn at_most_the_budget_per_address_at_once_and_nothing_left_after() {
        let turns = LoginTurns::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = turns.take(a).await;
        let second = tokio::time::timeout(Duration::from_secs(1), turns.take(a))
            .await
            .unwrap();
        // Another address is not held up.
        let other = tokio::time::timeout(Duration::from_secs(1), turns.take(b))
            .await
            .unwrap();
        // A third from the same address waits until one of the first two is counted.
        let waiting = tokio::time::timeout(Duration::from_millis(50), turns.take(a)).await;
        assert!(waiting.is_err(), "a third login from the address went in alongside two");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(1), turns.take(a))
            .await
            .unwrap();
        drop((second, third, other));
        assert!(turns.is_empty());
        // Without bans there is no limit and nothing is remembered.
        let off = LoginTurns::new(0);
        let _many: Vec<LoginTurn> = futures::future::join_all((0..10).map(|_| off.take(a))).await;
        assert!(off.is_empty());
    }
}
