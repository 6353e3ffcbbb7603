//! Whether to ask Redis at all: after a failure the shared limits skip Redis for a short
//! cool-down, so a dead Redis costs one `timeout_ms` per cool-down rather than one per
//! action; then a single call probes it. The state changes are reported once each, so the
//! log says "Redis went away" and "Redis is back", not one line per call.

use std::time::{Duration, Instant};

/// How long Redis is skipped after a failure before one call tries it again.
pub(super) const COOL_DOWN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing asked yet.
    Unknown,
    Up,
    /// Skipped until `retry_at`; then one call probes (and pushes `retry_at` on, so the
    /// calls that arrive meanwhile do not all probe at once).
    Down {
        retry_at: Instant,
    },
}

/// What a call's outcome changed, for the one log line and the `amiproxy_redis_up` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    None,
    /// Redis answered after being down or before anything was known.
    Up,
    /// Redis failed after being up or before anything was known.
    Down,
}

#[derive(Debug)]
pub(super) struct Breaker {
    state: State,
    cool_down: Duration,
}

impl Breaker {
    pub(super) fn new(cool_down: Duration) -> Breaker {
        Breaker {
            state: State::Unknown,
            cool_down,
        }
    }

    /// Whether a call may go to Redis now.
    pub(super) fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Unknown | State::Up => true,
            State::Down { retry_at } if now >= retry_at => {
                self.state = State::Down {
                    retry_at: now + self.cool_down,
                };
                true
            }
            State::Down { .. } => false,
        }
    }

    pub(super) fn success(&mut self) -> Change {
        let was = std::mem::replace(&mut self.state, State::Up);
        if was == State::Up {
            Change::None
        } else {
            Change::Up
        }
    }

    pub(super) fn failure(&mut self, now: Instant) -> Change {
        let was = std::mem::replace(
            &mut self.state,
            State::Down {
                retry_at: now + self.cool_down,
            },
        );
        match was {
            State::Down { .. } => Change::None,
            State::Unknown | State::Up => Change::Down,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_skips_redis_for_the_cool_down_then_one_call_probes() {
        let t0 = Instant::now();
        let s = Duration::from_millis;
        let mut b = Breaker::new(s(1000));
        assert!(b.allow(t0));
        assert_eq!(b.success(), Change::Up);
        assert_eq!(b.success(), Change::None);
        assert_eq!(b.failure(t0), Change::Down);
        // Reported once: more failures change nothing.
        assert_eq!(b.failure(t0), Change::None);
        assert!(!b.allow(t0 + s(999)));
        // One probe after the cool-down; the calls beside it are still skipped.
        assert!(b.allow(t0 + s(1000)));
        assert!(!b.allow(t0 + s(1001)));
        assert_eq!(b.failure(t0 + s(1002)), Change::None);
        assert!(!b.allow(t0 + s(2001)));
        assert!(b.allow(t0 + s(2002)));
        assert_eq!(b.success(), Change::Up);
        assert!(b.allow(t0 + s(2003)));
    }

    #[test]
    fn the_first_outcome_is_reported_whichever_it_is() {
        let t0 = Instant::now();
        let mut b = Breaker::new(COOL_DOWN);
        assert_eq!(b.failure(t0), Change::Down);
        let mut b = Breaker::new(COOL_DOWN);
        assert_eq!(b.success(), Change::Up);
    }
}
