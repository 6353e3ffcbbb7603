//! The write path to one client. Every write is bounded in time (Asterisk's
//! `writetimeout`): a client that stops reading is closed instead of holding its task, its
//! queues and its slot forever.

use super::{End, Session, OUT_BUFFER};
use ami_proto::{Message, MessageBuilder};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::info;

impl<W: AsyncWrite + Unpin> Session<W> {
    /// Writes a message that is not a hub event: responses, list items, the proxy's own
    /// answers and events. One without an origin gets the proxy's (`proxy.name`), so a
    /// client that dispatches every message by its server header finds one on each.
    pub(super) async fn send(&mut self, m: &Message) -> Result<(), End> {
        let header = self.core.server_header();
        if m.get_bytes(header).is_none() {
            let tagged = m.with_appended(header, &self.core.config().proxy.name);
            return self.write_raw(tagged.as_bytes()).await;
        }
        self.write_raw(m.as_bytes()).await
    }

    pub(super) async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), End> {
        // What fits in the buffer is a memory copy that cannot block: no timer for it (this
        // is the per-event path). Only a write that reaches the socket is timed.
        if self.out.buffer().len() + bytes.len() <= OUT_BUFFER {
            return self.out.write_all(bytes).await.map_err(|_| End::WriteFailed);
        }
        match tokio::time::timeout(self.write_timeout, self.out.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::WriteFailed),
            Err(_) => {
                info!("closing: the client did not read for the write timeout");
                Err(End::WriteTimeout)
            }
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), End> {
        if self.out.buffer().is_empty() {
            return Ok(());
        }
        // Usually the socket takes it at once: try without arming a timer (a flush keeps
        // its progress in the BufWriter, so giving up on this poll loses nothing).
        if let Some(r) = futures::FutureExt::now_or_never(self.out.flush()) {
            return r.map_err(|_| End::WriteFailed);
        }
        match tokio::time::timeout(self.write_timeout, self.out.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::WriteFailed),
            Err(_) => {
                info!("closing: the client did not read for the write timeout");
                Err(End::WriteTimeout)
            }
        }
    }

    pub(super) async fn error(&mut self, aid: Option<&str>, text: &str) -> Result<(), End> {
        self.send(&MessageBuilder::error(aid, text)).await
    }

    /// Asterisk's answer to Logoff; the session ends after it.
    pub(super) async fn goodbye(&mut self, aid: Option<&str>) -> Result<(), End> {
        let m = MessageBuilder::response("Goodbye", aid)
            .header("Message", "Thanks for all the fish.")
            .build();
        self.send(&m).await?;
        self.flush().await?;
        Err(End::Logoff)
    }
}
