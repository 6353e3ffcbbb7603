//! Busy polling while actions are in flight.
//!
//! An idle tokio worker parks in the kernel; the next packet then has to wake it. On a
//! virtual machine that wake-up (an inter-processor interrupt, the vCPU leaving its idle
//! state) costs tens of microseconds, and a forwarded action pays it twice: when the
//! client's action arrives and when the upstream's answer does. Measured on the 2-core VM
//! this proxy is benchmarked on, those two wake-ups were the whole of the +90 µs the proxy
//! added to a round trip of 84 µs (BENCHMARKS.md).
//!
//! So for a short window after each action and each answer, one task keeps a worker awake,
//! yielding (every `yield_now` polls the I/O driver), and the next packet is picked up
//! without a wake-up. Only control traffic opens the window, never events: the fan-out
//! path does not need it and must not pay for it. An idle proxy spins not at all; a client
//! in a closed loop keeps one worker busy while it runs; a runtime busy with other work (a
//! flood of events to deliver) ends the window early, since its workers do not sleep anyway
//! and the spinner would only take turns from them. `proxy.busy_poll_us = 0` turns it off.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// `last` before any control traffic.
const NEVER: u64 = u64::MAX;
/// A yield that takes longer than this ran other tasks in between.
const BUSY_TURN: Duration = Duration::from_micros(20);
/// Busy yields in a row after which the window closes early: the runtime has work enough to
/// stay awake without the spinner.
const BUSY_TURNS: u32 = 4;

pub struct BusyPoll {
    /// The window in nanoseconds (0: off); reloadable.
    window_ns: AtomicU64,
    epoch: Instant,
    /// When the window last opened, in nanoseconds since `epoch`.
    last: AtomicU64,
    /// The spinner is waiting for the next window (set before it parks).
    idle: AtomicBool,
    wake: Notify,
    /// Windows the spinner has run through (for tests and metrics).
    windows: AtomicU64,
}

impl BusyPoll {
    pub fn new(window: Duration) -> BusyPoll {
        let p = BusyPoll {
            window_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            last: AtomicU64::new(NEVER),
            idle: AtomicBool::new(false),
            wake: Notify::new(),
            windows: AtomicU64::new(0),
        };
        p.set_window(window);
        p
    }

    /// A reload changed `proxy.busy_poll_us`.
    pub fn set_window(&self, window: Duration) {
        let ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        self.window_ns.store(ns, Ordering::Relaxed);
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Control traffic happened: keep a worker awake for the window from now.
    pub fn touch(&self) {
        if self.window_ns.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.last.store(self.now_ns(), Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    /// Whether the window is open.
    fn open(&self) -> bool {
        let window = self.window_ns.load(Ordering::Relaxed);
        let last = self.last.load(Ordering::SeqCst);
        window > 0 && last != NEVER && self.now_ns().saturating_sub(last) <= window
    }

    /// Ends the window opened at `opened`, unless a touch has opened a newer one since (that
    /// one is kept: control traffic just came).
    fn close(&self, opened: u64) {
        let _ = self
            .last
            .compare_exchange(opened, NEVER, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Windows spun through so far.
    pub fn windows(&self) -> u64 {
        self.windows.load(Ordering::Relaxed)
    }

    /// The spinner: parked while no window is open, yielding while one is. Runs for the
    /// life of the runtime.
    pub async fn run(&self) {
        loop {
            self.idle.store(true, Ordering::SeqCst);
            // A touch between the store above and this check is seen here; one after it
            // finds `idle` set and leaves a permit in `wake`.
            if !self.open() {
                self.wake.notified().await;
            }
            self.idle.store(false, Ordering::SeqCst);
            self.windows.fetch_add(1, Ordering::Relaxed);
            let mut busy_turns = 0;
            while self.open() {
                let before = Instant::now();
                let opened = self.last.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                // A yield that took long means other tasks ran in between: the worker is
                // busy, will not sleep, and spinning would only take turns from them.
                if before.elapsed() > BUSY_TURN {
                    busy_turns += 1;
                    if busy_turns >= BUSY_TURNS {
                        self.close(opened);
                        break;
                    }
                } else {
                    busy_turns = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Waits (bounded) until `f` holds.
    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spins_only_after_control_traffic() {
        let p = Arc::new(BusyPoll::new(Duration::from_millis(20)));
        let spinner = tokio::spawn({
            let p = p.clone();
            async move { p.run().await }
        });
        // Nothing happened: the spinner parks without opening a window.
        eventually("the spinner parked", || p.idle.load(Ordering::SeqCst)).await;
        assert_eq!(p.windows(), 0);
        p.touch();
        eventually("a window opened", || p.windows() == 1).await;
        // The window closes by itself; the next touch opens another.
        eventually("the spinner parked again", || {
            p.idle.load(Ordering::SeqCst) && !p.open()
        })
        .await;
        p.touch();
        eventually("a second window", || p.windows() == 2).await;
        // Off: touches open nothing.
        eventually("parked", || p.idle.load(Ordering::SeqCst) && !p.open()).await;
        p.set_window(Duration::ZERO);
        p.touch();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(p.windows(), 2);
        spinner.abort();
    }
}
