//! A minimal AMI client for control traffic (login, actions, answers). It reads with the
//! project's own decoder in the upstream role, the role that expects a banner first, so the
//! benchmark reads an endpoint exactly as the proxy reads an Asterisk.

use crate::error::{LoadError, Result};
use ami_proto::{AmiDecoder, Decoded, Kind, Message, MessageBuilder, Role};
use bytes::BytesMut;
use futures::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

/// Parallel logins for bulk set-up: below the limit of 50 unauthenticated connections that
/// Asterisk (`authlimit`) and the simulator enforce, which would refuse the excess at once.
pub const SETUP_PARALLEL: usize = 40;

/// How long any single protocol step (banner, login answer) may take before the run fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Who logs in and whether events are wanted.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
}

/// One logged-in (or about to be) AMI connection.
pub struct AmiConn {
    rd: FramedRead<OwnedReadHalf, AmiDecoder>,
    wr: OwnedWriteHalf,
}

impl AmiConn {
    /// Connects and reads the banner.
    pub async fn connect(addr: SocketAddr) -> Result<AmiConn> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| LoadError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let (rd, wr) = tcp.into_split();
        let mut conn = AmiConn {
            rd: FramedRead::with_capacity(rd, AmiDecoder::new(Role::Upstream), 16 * 1024),
            wr,
        };
        match tokio::time::timeout(STEP_TIMEOUT, conn.rd.next()).await {
            Err(_) => Err(LoadError::Timeout(format!("banner from {addr}"))),
            Ok(None) => Err(LoadError::Protocol(format!("{addr} closed before its banner"))),
            Ok(Some(Err(e))) => Err(e.into()),
            Ok(Some(Ok(Decoded::Banner(_)))) => Ok(conn),
            Ok(Some(Ok(other))) => Err(LoadError::Protocol(format!("{addr}: expected a banner, got {other:?}"))),
        }
    }

    /// Connects, then logs in; `events` false sends `Events: off` so that control
    /// connections measure answers only.
    pub async fn login(addr: SocketAddr, creds: &Credentials, events: bool) -> Result<AmiConn> {
        let mut conn = AmiConn::connect(addr).await?;
        let login = MessageBuilder::action("Login")
            .header("ActionID", "ami-load-login")
            .header("Username", &creds.user)
            .header("Secret", &creds.secret)
            .header("Events", if events { "on" } else { "off" })
            .into_bytes();
        conn.send(&login).await?;
        let answer = tokio::time::timeout(STEP_TIMEOUT, conn.answer_to("ami-load-login"))
            .await
            .map_err(|_| LoadError::Timeout(format!("login answer from {addr}")))??;
        if answer.response() != Some("Success") {
            return Err(LoadError::Protocol(format!(
                "login to {addr} refused: {}",
                answer.get("Message").unwrap_or("?")
            )));
        }
        Ok(conn)
    }

    /// Writes raw action bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.wr.write_all(bytes).await?;
        Ok(())
    }

    /// The next message; end of stream is an error because every caller expects more.
    pub async fn next(&mut self) -> Result<Message> {
        loop {
            match self.rd.next().await {
                None => return Err(LoadError::Protocol("connection closed".into())),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Decoded::Message(m))) => return Ok(m),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads until the response carrying `action_id` (events and other answers skipped).
    pub async fn answer_to(&mut self, action_id: &str) -> Result<Message> {
        loop {
            let m = self.next().await?;
            if m.kind() == Kind::Response && m.action_id() == Some(action_id) {
                return Ok(m);
            }
        }
    }

    /// Gives the socket halves back with whatever the decoder had buffered, for readers that
    /// scan raw bytes instead of decoding every message (the fan-out counters).
    pub fn into_raw(mut self) -> (OwnedReadHalf, OwnedWriteHalf, BytesMut) {
        let pending = self.rd.read_buffer_mut().split();
        (self.rd.into_inner(), self.wr, pending)
    }
}

/// Logs in `n` connections to `addr`, at most `parallel` at a time: the proxy and the
/// simulator both refuse connections beyond their limit of unauthenticated sessions, so a
/// bulk set-up must not look like a login storm.
pub async fn login_many(
    addr: SocketAddr,
    n: usize,
    creds: &Credentials,
    events: bool,
    parallel: usize,
) -> Result<Vec<AmiConn>> {
    login_each(addr, vec![creds.clone(); n], events, parallel).await
}

/// As [`login_many`], one connection per credentials given (each tenant its own user).
pub async fn login_each(
    addr: SocketAddr,
    creds: Vec<Credentials>,
    events: bool,
    parallel: usize,
) -> Result<Vec<AmiConn>> {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(creds.len());
    for creds in creds {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore never closed");
            AmiConn::login(addr, &creds, events).await
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    for t in tasks {
        conns.push(t.await.map_err(|e| LoadError::Protocol(format!("login task: {e}")))??);
    }
    Ok(conns)
}
