//! The ring every session reads the merged event stream from.
//!
//! Events go in as batches, one per upstream read (up to a few hundred events at a flood,
//! one when the PBX is quiet), so a session wakes, takes the lock and counts a reference once
//! per read instead of once per event. The ring is bounded in events, not in batches: it
//! keeps the newest `capacity` events (and always the newest batch whole), so
//! `proxy.event_buffer` means what it says at any batch size, and its memory is bounded by
//! the events it holds. A reader that falls further behind than that is told how many events
//! it lost, exactly: every event has a sequence number. A batch every reader has left is
//! let go at the next publish, so a ring whose readers keep up holds next to nothing.

use super::Event;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

/// Events published together, numbered from `first`.
#[derive(Debug)]
struct Batch {
    first: u64,
    events: Vec<Event>,
    /// Subscribers (counted at publish) that have not left it yet.
    unread: AtomicUsize,
}

impl Batch {
    /// The sequence number after its last event.
    fn end(&self) -> u64 {
        self.first + self.events.len() as u64
    }
}

#[derive(Debug, Default)]
struct Retained {
    batches: VecDeque<Arc<Batch>>,
    /// Events in `batches`.
    events: usize,
}

#[derive(Debug)]
pub(super) struct Ring {
    capacity: usize,
    /// Written by the publisher only; every reader takes it shared.
    retained: RwLock<Retained>,
    /// The sequence number the next event gets: how many were published. Written under
    /// the lock, read without it to see whether anything is new.
    published: AtomicU64,
    /// Changed under the lock, so every batch counts exactly the readers that will read it.
    subscribers: AtomicUsize,
    notify: Notify,
}

impl Ring {
    pub(super) fn new(capacity: usize) -> Ring {
        Ring {
            capacity: capacity.max(1),
            retained: RwLock::new(Retained::default()),
            published: AtomicU64::new(0),
            subscribers: AtomicUsize::new(0),
            notify: Notify::new(),
        }
    }

    pub(super) fn publish(&self, events: Vec<Event>) {
        // Nobody reads: nothing is kept (a session that subscribes later starts after it).
        if events.is_empty() || self.subscribers.load(Ordering::Acquire) == 0 {
            return;
        }
        {
            let mut r = crate::sync::write(&self.retained);
            let readers = self.subscribers.load(Ordering::Acquire);
            if readers == 0 {
                return;
            }
            let first = self.published.load(Ordering::Relaxed);
            let batch = Batch {
                first,
                events,
                unread: AtomicUsize::new(readers),
            };
            let end = batch.end();
            r.events += batch.events.len();
            r.batches.push_back(Arc::new(batch));
            // The oldest go once every reader has left them, or when the ring is over its
            // capacity (the newest batch stays, whatever its size).
            while let Some(oldest) = r.batches.front() {
                let read = oldest.unread.load(Ordering::Acquire) == 0;
                if !read && (r.events <= self.capacity || r.batches.len() == 1) {
                    break;
                }
                if let Some(oldest) = r.batches.pop_front() {
                    r.events -= oldest.events.len();
                }
            }
            self.published.store(end, Ordering::Release);
        }
        self.notify.notify_waiters();
    }

    pub(super) fn subscribe(self: &Arc<Ring>) -> Subscription {
        // Under the lock: every batch from `next` on counts this reader, none before.
        let next = {
            let _r = crate::sync::read(&self.retained);
            self.subscribers.fetch_add(1, Ordering::AcqRel);
            self.published.load(Ordering::Acquire)
        };
        Subscription {
            ring: self.clone(),
            batch: None,
            next,
        }
    }

    pub(super) fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }
}

/// What a subscription reads next.
#[derive(Debug)]
pub enum Next<'a> {
    Event(&'a Event),
    /// This many events were lost: the ring dropped them before this reader took them.
    Lost(u64),
}

/// One reader of the stream, from the moment it subscribed.
#[derive(Debug)]
pub struct Subscription {
    ring: Arc<Ring>,
    /// The batch being read: the ring may have dropped it already.
    batch: Option<Arc<Batch>>,
    /// The sequence number of the next event to read.
    next: u64,
}

impl Subscription {
    /// The next event (or loss) ready now; None when this reader is at the head of the stream.
    pub fn try_next(&mut self) -> Option<Next<'_>> {
        if self.batch.as_ref().is_none_or(|b| self.next >= b.end()) && !self.fetch() {
            return None;
        }
        if self.batch.is_none() {
            // `fetch` found the reader passed by the ring.
            let lost = self.take_loss();
            return (lost > 0).then_some(Next::Lost(lost));
        }
        let batch = self.batch.as_ref()?;
        let at = (self.next - batch.first) as usize;
        self.next += 1;
        batch.events.get(at).map(Next::Event)
    }

    /// Takes the batch holding `next` from the ring. False when there is nothing new; true
    /// with no batch when the ring has dropped `next` (the loss is then counted by
    /// [`Subscription::take_loss`]).
    fn fetch(&mut self) -> bool {
        // Leave the batch read to its end.
        if let Some(done) = self.batch.take() {
            done.unread.fetch_sub(1, Ordering::AcqRel);
        }
        if self.next >= self.ring.published.load(Ordering::Acquire) {
            return false;
        }
        let r = crate::sync::read(&self.ring.retained);
        let at = r.batches.partition_point(|b| b.end() <= self.next);
        match r.batches.get(at) {
            Some(b) if b.first <= self.next => self.batch = Some(b.clone()),
            _ => {}
        }
        true
    }

    /// Moves a reader the ring has passed to the oldest event it still holds; how many
    /// events it skipped (0 when it was not passed).
    pub fn take_loss(&mut self) -> u64 {
        let r = crate::sync::read(&self.ring.retained);
        let oldest = r
            .batches
            .front()
            .map_or_else(|| self.ring.published.load(Ordering::Acquire), |b| b.first);
        drop(r);
        if self.next >= oldest {
            return 0;
        }
        let lost = oldest - self.next;
        self.next = oldest;
        // What is left of the batch in hand is skipped with the rest.
        if let Some(left) = self.batch.take() {
            left.unread.fetch_sub(1, Ordering::AcqRel);
        }
        lost
    }

    /// Events published and not read yet (lost ones included).
    pub fn len(&self) -> usize {
        let published = self.ring.published.load(Ordering::Acquire);
        published.saturating_sub(self.next) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until [`Subscription::try_next`] has something. Cancel-safe: nothing is taken.
    /// Counts against the task's cooperative budget, as a channel receive does: a reader
    /// working through a backlog (every event filtered out, say) still lets the other tasks
    /// of its thread run.
    pub async fn ready(&self) {
        tokio::task::consume_budget().await;
        loop {
            let notified = self.ring.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a publish between the two still wakes us.
            notified.as_mut().enable();
            if !self.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Subscription {
    /// Leaves the batch in hand and every batch not reached yet, so none waits for a
    /// reader that is gone.
    fn drop(&mut self) {
        let r = crate::sync::read(&self.ring.retained);
        if let Some(held) = self.batch.take() {
            held.unread.fetch_sub(1, Ordering::AcqRel);
        }
        for b in r.batches.iter().filter(|b| b.first >= self.next) {
            b.unread.fetch_sub(1, Ordering::AcqRel);
        }
        self.ring.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::MessageBuilder;

    fn events(range: std::ops::Range<u32>) -> Vec<Event> {
        range
            .map(|i| Event::new(MessageBuilder::event(&format!("E{i}")).build(), None, false))
            .collect()
    }

    /// What a subscription reads until it is at the head: event names, and losses as `-n`.
    fn drain(s: &mut Subscription) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(n) = s.try_next() {
            seen.push(match n {
                Next::Event(e) => e.msg.get("Event").unwrap_or("?").to_owned(),
                Next::Lost(n) => format!("-{n}"),
            });
        }
        seen
    }

    #[test]
    fn batches_read_as_one_stream_in_order() {
        let ring = Arc::new(Ring::new(100));
        let mut s = ring.subscribe();
        ring.publish(events(0..3));
        ring.publish(events(3..4));
        assert_eq!(s.len(), 4);
        assert_eq!(drain(&mut s), ["E0", "E1", "E2", "E3"]);
        assert!(s.is_empty());
        // A reader that subscribes later starts after what was published.
        let mut late = ring.subscribe();
        ring.publish(events(4..6));
        assert_eq!(drain(&mut late), ["E4", "E5"]);
        assert_eq!(drain(&mut s), ["E4", "E5"]);
    }

    #[test]
    fn a_reader_passed_by_the_ring_loses_exactly_the_oldest_events() {
        let ring = Arc::new(Ring::new(5));
        let mut slow = ring.subscribe();
        ring.publish(events(0..2));
        // Half a batch read, then the ring moves on.
        assert_eq!(slow.try_next().map(|n| matches!(n, Next::Event(_))), Some(true));
        ring.publish(events(2..5));
        ring.publish(events(5..9));
        // 9 published, at most 5 kept: batches [0,2) and [2,5) went; the reader had taken
        // E0 and still holds its batch, so it reads E1, then loses E2..E4.
        assert_eq!(drain(&mut slow), ["E1", "-3", "E5", "E6", "E7", "E8"]);
        // The newest batch is kept whole, even larger than the ring.
        let mut s = ring.subscribe();
        ring.publish(events(9..20));
        assert_eq!(drain(&mut s).len(), 11);
        assert_eq!(crate::sync::read(&ring.retained).events, 11);
    }

    #[test]
    fn batches_every_reader_has_left_are_let_go() {
        let ring = Arc::new(Ring::new(1000));
        let kept = || crate::sync::read(&ring.retained).events;
        let (mut a, mut b) = (ring.subscribe(), ring.subscribe());
        ring.publish(events(0..3));
        ring.publish(events(3..5));
        assert_eq!(drain(&mut a).len(), 5);
        assert_eq!(kept(), 5);
        // `b` read the first batch half: both stay.
        assert!(b.try_next().is_some());
        ring.publish(events(5..6));
        assert_eq!(kept(), 6);
        // `b` leaves the first batch (reads on into the second): the first goes.
        assert_eq!(drain(&mut b).len(), 5);
        ring.publish(events(6..7));
        // Every reader is in the newest batch or at its end: only what is unread stays.
        assert!(kept() <= 2, "{}", kept());
        // A reader that goes away leaves what it had not read.
        let c = ring.subscribe();
        ring.publish(events(7..9));
        drop(c);
        drain(&mut a);
        drain(&mut b);
        ring.publish(events(9..10));
        assert!(kept() <= 3, "{}", kept());
        // And one that the ring passed, mid-batch, leaves the batch it held.
        let small = Arc::new(Ring::new(2));
        let mut slow = small.subscribe();
        small.publish(events(0..2));
        assert!(slow.try_next().is_some());
        small.publish(events(2..4));
        small.publish(events(4..6));
        assert_eq!(slow.take_loss(), 3);
        assert_eq!(drain(&mut slow).len(), 2);
        small.publish(events(6..7));
        assert_eq!(crate::sync::read(&small.retained).events, 1);
    }

    #[test]
    fn take_loss_moves_a_passed_reader_and_only_then() {
        let ring = Arc::new(Ring::new(2));
        let mut s = ring.subscribe();
        ring.publish(events(0..2));
        assert_eq!(s.take_loss(), 0);
        ring.publish(events(2..4));
        assert_eq!(s.take_loss(), 2);
        assert_eq!(drain(&mut s), ["E2", "E3"]);
    }

    #[test]
    fn nothing_is_kept_without_subscribers() {
        let ring = Arc::new(Ring::new(10));
        ring.publish(events(0..3));
        assert_eq!(ring.published.load(Ordering::Relaxed), 0);
        let s = ring.subscribe();
        assert_eq!(ring.subscribers(), 1);
        drop(s);
        assert_eq!(ring.subscribers(), 0);
    }

    #[tokio::test]
    async fn ready_wakes_a_waiting_reader() {
        let ring = Arc::new(Ring::new(10));
        let mut s = ring.subscribe();
        let publisher = {
            let ring = ring.clone();
            tokio::spawn(async move {
                // Publishes once the reader waits (or right away: `ready` checks first).
                tokio::task::yield_now().await;
                ring.publish(events(0..1));
            })
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), s.ready())
            .await
            .expect("woken by the publish");
        assert_eq!(drain(&mut s), ["E0"]);
        publisher.await.expect("publisher");
    }
}
