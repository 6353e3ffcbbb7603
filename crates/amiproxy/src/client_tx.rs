//! The path from upstream readers to one client session. Responses and list items are few
//! per action, but a client that never reads while asking for huge lists must not make the
//! proxy buffer without end: the queue is bounded, and overflowing it closes that client.

use ami_proto::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

#[derive(Debug, Clone)]
pub struct ClientTx {
    tx: mpsc::Sender<Message>,
    overflow: Arc<Overflow>,
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
    pub fn channel(capacity: usize) -> (ClientTx, mpsc::Receiver<Message>, Arc<Overflow>) {
        let (tx, rx) = mpsc::channel(capacity);
        let overflow = Arc::new(Overflow::default());
        (
            ClientTx {
                tx,
                overflow: overflow.clone(),
            },
            rx,
            overflow,
        )
    }

    /// Never blocks the caller (an upstream reader). Returns false if the client is gone.
    pub fn try_send(&self, msg: Message) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.flag.store(true, Ordering::Release);
                self.overflow.notify.notify_waiters();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
