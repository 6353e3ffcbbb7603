//! The path from upstream readers to one client session. Responses and list items are few
//! per action, but a client that never reads while asking for huge lists must not make the
//! proxy buffer without end: the queue is bounded in messages and in bytes, and overflowing
//! either closes that client.

use ami_proto::Message;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// A message for the session, with the request it answers.
#[derive(Debug)]
pub struct Answer {
    /// Which forwarded action (one list, merged or not) it belongs to; 0 for the proxy's
    /// own answers. A client may reuse an ActionID while a list is still coming, so the
    /// items a scope hides are counted per request, not per ActionID.
    pub request: u64,
    pub msg: Message,
}

/// Request numbers, unique in the process.
static NEXT_REQUEST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[derive(Debug, Clone)]
pub struct ClientTx {
    tx: mpsc::Sender<Answer>,
    request: u64,
    overflow: Arc<Overflow>,
    /// Bytes queued and not yet taken by the session.
    queued: Arc<AtomicUsize>,
    budget: usize,
}

/// The session's end: takes messages and gives their bytes back to the budget.
pub struct ClientRx {
    rx: mpsc::Receiver<Answer>,
    queued: Arc<AtomicUsize>,
}

impl ClientRx {
    pub async fn recv(&mut self) -> Option<Answer> {
        let a = self.rx.recv().await?;
        self.queued.fetch_sub(a.msg.len(), Ordering::AcqRel);
        Some(a)
    }

    pub fn try_recv(&mut self) -> Result<Answer, mpsc::error::TryRecvError> {
        let a = self.rx.try_recv()?;
        self.queued.fetch_sub(a.msg.len(), Ordering::AcqRel);
        Ok(a)
    }
}

#[derive(Debug, Default)]
pub struct Overflow {
    flag: AtomicBool,
    notify: Notify,
}

impl Overflow {
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

impl ClientTx {
    /// A queue of at most `capacity` messages and `budget` bytes.
    pub fn channel(capacity: usize, budget: usize) -> (ClientTx, ClientRx, Arc<Overflow>) {
        let (tx, rx) = mpsc::channel(capacity);
        let overflow = Arc::new(Overflow::default());
        let queued = Arc::new(AtomicUsize::new(0));
        (
            ClientTx {
                tx,
                request: 0,
                overflow: overflow.clone(),
                queued: queued.clone(),
                budget,
            },
            ClientRx { rx, queued },
            overflow,
        )
    }

    /// The same queue, for the answers to one forwarded action.
    pub fn for_request(&self) -> ClientTx {
        ClientTx {
            request: NEXT_REQUEST.fetch_add(1, Ordering::Relaxed),
            ..self.clone()
        }
    }

    /// Never blocks the caller (an upstream reader). Returns false if the client is gone or
    /// its queue is over budget (then it is closed).
    pub fn try_send(&self, msg: Message) -> bool {
        let len = msg.len();
        if self.queued.fetch_add(len, Ordering::AcqRel) + len > self.budget {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.overflowed();
            return false;
        }
        match self.tx.try_send(Answer {
            request: self.request,
            msg,
        }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued.fetch_sub(len, Ordering::AcqRel);
                self.overflowed();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued.fetch_sub(len, Ordering::AcqRel);
                false
            }
        }
    }

    fn overflowed(&self) {
        self.overflow.flag.store(true, Ordering::Release);
        self.overflow.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::MessageBuilder;

    #[test]
    fn bounded_in_bytes_as_in_messages() {
        let (tx, mut rx, overflow) = ClientTx::channel(100, 300);
        let big = MessageBuilder::event("X").header("Data", &"x".repeat(200)).build();
        assert!(tx.try_send(big.clone()));
        assert!(!tx.try_send(big.clone()), "over the byte budget");
        assert!(overflow.is_set());
        // Taking a message gives its bytes back.
        assert!(rx.try_recv().is_ok());
        let (tx, mut rx, _) = ClientTx::channel(100, 300);
        assert!(tx.try_send(big.clone()));
        rx.try_recv().unwrap();
        assert!(tx.try_send(big));
    }
}
