//! One AMI client connection: banner, login, actions in order, and event delivery.

use crate::config::SimUser;
use crate::events::{BusEvent, BusItem};
use crate::filters::Filters;
use crate::pbx::Pbx;
use crate::perms;
use ami_proto::{AmiDecoder, Decoded, MessageBuilder, Role};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

/// Asterisk's `authtimeout`: seconds a connection may stay unauthenticated.
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Asterisk's `authlimit`: unauthenticated connections allowed at once.
pub const AUTH_LIMIT: usize = 50;
/// Events written per wake-up before the session checks its socket again.
const EVENT_BATCH: usize = 512;

/// What the connection loop must do after an action was answered.
pub enum After {
    Continue,
    /// Write what is pending, then close (Logoff).
    Close,
    /// Failed login: wait `auth_delay`, write this answer, close.
    AuthFailed(Bytes),
    /// WaitEvent: hold the answer until an event arrives or the timeout passes.
    WaitEvent {
        timeout: Duration,
        action_id: Option<String>,
    },
}

/// Keeps the live-connection counters right however the session ends.
struct Counted {
    pbx: Arc<Pbx>,
    unauth: bool,
}

impl Counted {
    fn authenticated(&mut self) {
        if self.unauth {
            self.unauth = false;
            self.pbx.unauthenticated.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.authenticated();
        self.pbx.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-connection state the action handlers work on.
pub struct Session {
    pub(crate) pbx: Arc<Pbx>,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) user: Option<SimUser>,
    pub(crate) read: u32,
    pub(crate) write: u32,
    /// The session's `Events` mask.
    pub(crate) send_events: u32,
    pub(crate) challenge: Option<String>,
    pub(crate) filters: Filters,
    /// Answers waiting to be written.
    pub(crate) out: BytesMut,
    /// Subscribed at login: events flow only to logged-in sessions.
    pub(crate) events: Option<broadcast::Receiver<BusItem>>,
}

impl Session {
    pub(crate) fn authed(&self) -> bool {
        self.user.is_some()
    }

    pub(crate) fn push(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// Whether this session takes an event: read permission for all its classes, an
    /// `Events` mask that holds them, and the session's filters.
    fn wants(&self, ev: &BusEvent) -> bool {
        self.send_events != 0
            && self.read & ev.classes == ev.classes
            && self.send_events & ev.classes == ev.classes
            && self.filters.pass(ev)
    }
}

/// Runs one accepted connection to its end.
pub async fn run(pbx: Arc<Pbx>, stream: TcpStream, peer: SocketAddr) {
    pbx.connections.fetch_add(1, Ordering::Relaxed);
    let unauth = pbx.unauthenticated.fetch_add(1, Ordering::Relaxed) + 1;
    let mut counted = Counted {
        pbx: pbx.clone(),
        unauth: true,
    };
    if unauth > AUTH_LIMIT {
        tracing::warn!(%peer, "authlimit reached, closing");
        return;
    }
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let (rd, wr) = stream.into_split();
    let mut reader = FramedRead::new(rd, AmiDecoder::new(Role::Client));
    let mut writer = BufWriter::with_capacity(64 * 1024, wr);
    let mut drop_rx = pbx.controls.drop_gen.subscribe();
    let mut stall_rx = pbx.controls.stalled.subscribe();
    let mut s = Session {
        pbx: pbx.clone(),
        peer,
        local,
        user: None,
        read: 0,
        write: 0,
        send_events: 0,
        challenge: None,
        filters: Filters::default(),
        out: BytesMut::with_capacity(4096),
        events: None,
    };
    tracing::debug!(%peer, "connected");
    let banner = format!("{}{}\r\n", ami_proto::BANNER_PREFIX, pbx.cfg.version);
    if writer.write_all(banner.as_bytes()).await.is_err() || writer.flush().await.is_err() {
        return;
    }
    let auth_deadline = Instant::now() + AUTH_TIMEOUT;
    loop {
        if *stall_rx.borrow_and_update() {
            tokio::select! {
                _ = drop_rx.changed() => break,
                r = stall_rx.changed() => if r.is_err() { break },
            }
            continue;
        }
        let authed = s.authed();
        let mut close = false;
        tokio::select! {
            biased;
            _ = drop_rx.changed() => break,
            r = stall_rx.changed() => if r.is_err() { break },
            _ = tokio::time::sleep_until(auth_deadline), if !authed => {
                tracing::debug!(%peer, "authtimeout");
                break;
            }
            frame = reader.next() => {
                let after = match frame {
                    None => break,
                    Some(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "read error");
                        break;
                    }
                    Some(Ok(Decoded::Message(m))) => s.dispatch(&m),
                    Some(Ok(Decoded::Rejected { reason, action_id })) => {
                        let r = MessageBuilder::error(action_id.as_deref(), reason.asterisk_message());
                        s.push(r.as_bytes());
                        After::Continue
                    }
                    Some(Ok(Decoded::Banner(_))) => After::Continue,
                };
                if s.authed() {
                    counted.authenticated();
                }
                match after {
                    After::Continue => {}
                    After::Close => close = true,
                    After::AuthFailed(answer) => {
                        tracing::info!(%peer, "authentication failed");
                        let _ = writer.write_all(&s.out).await;
                        let _ = writer.flush().await;
                        s.out.clear();
                        tokio::select! {
                            _ = tokio::time::sleep(pbx.cfg.auth_delay) => {}
                            _ = drop_rx.changed() => break,
                        }
                        let _ = writer.write_all(&answer).await;
                        let _ = writer.flush().await;
                        break;
                    }
                    After::WaitEvent { timeout, action_id } => {
                        if wait_event(&mut s, timeout, action_id.as_deref(), &mut drop_rx).await.is_err() {
                            break;
                        }
                    }
                }
            }
            item = recv(&mut s.events) => {
                match item {
                    Recv::Item(item) => {
                        if deliver(&mut s, item) {
                            close = true;
                        }
                        // Drain what is already queued, so one flush carries many events.
                        for _ in 0..EVENT_BATCH {
                            match try_recv(&mut s) {
                                Some(Recv::Item(item)) => {
                                    if deliver(&mut s, item) {
                                        close = true;
                                        break;
                                    }
                                }
                                Some(Recv::Closed) => { close = true; break; }
                                Some(Recv::Lagged(n)) => pbx.bus.note_lag(n),
                                None => break,
                            }
                        }
                    }
                    Recv::Lagged(n) => {
                        tracing::debug!(%peer, skipped = n, "slow session skipped events");
                        pbx.bus.note_lag(n);
                    }
                    Recv::Closed => close = true,
                }
            }
        }
        if !s.out.is_empty() {
            if writer.write_all(&s.out).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            s.out.clear();
            if s.out.capacity() > 1 << 20 {
                s.out = BytesMut::with_capacity(4096);
            }
        }
        if close {
            break;
        }
    }
    let _ = writer.shutdown().await;
    tracing::debug!(%peer, "disconnected");
}

enum Recv {
    Item(BusItem),
    Lagged(u64),
    Closed,
}

async fn recv(rx: &mut Option<broadcast::Receiver<BusItem>>) -> Recv {
    match rx {
        Some(rx) => match rx.recv().await {
            Ok(item) => Recv::Item(item),
            Err(broadcast::error::RecvError::Lagged(n)) => Recv::Lagged(n),
            Err(broadcast::error::RecvError::Closed) => Recv::Closed,
        },
        None => std::future::pending().await,
    }
}

fn try_recv(s: &mut Session) -> Option<Recv> {
    let rx = s.events.as_mut()?;
    match rx.try_recv() {
        Ok(item) => Some(Recv::Item(item)),
        Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Recv::Lagged(n)),
        Err(broadcast::error::TryRecvError::Closed) => Some(Recv::Closed),
        Err(broadcast::error::TryRecvError::Empty) => None,
    }
}

/// Queues an event if the session takes it; true when the bus says to close.
fn deliver(s: &mut Session, item: BusItem) -> bool {
    match item {
        BusItem::Event(ev) => {
            if s.wants(&ev) {
                s.out.extend_from_slice(&ev.bytes);
            }
            false
        }
        BusItem::Raw(b) => {
            s.out.extend_from_slice(&b);
            false
        }
        BusItem::Close => true,
    }
}

/// WaitEvent: answers once an event for this session arrives (or at the timeout), then
/// the events, then `WaitEventComplete`.
async fn wait_event(
    s: &mut Session,
    timeout: Duration,
    action_id: Option<&str>,
    drop_rx: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    let mut held = BytesMut::new();
    while held.is_empty() {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = drop_rx.changed() => return Err(()),
            item = recv(&mut s.events) => match item {
                Recv::Item(BusItem::Event(ev)) => {
                    if s.wants(&ev) {
                        held.extend_from_slice(&ev.bytes);
                    }
                }
                Recv::Item(BusItem::Raw(b)) => s.out.extend_from_slice(&b),
                Recv::Item(BusItem::Close) | Recv::Closed => return Err(()),
                Recv::Lagged(n) => s.pbx.bus.note_lag(n),
            }
        }
    }
    let r = MessageBuilder::success(action_id, "Waiting for Event completed.");
    s.push(r.as_bytes());
    s.out.extend_from_slice(&held);
    let done = MessageBuilder::event("WaitEventComplete")
        .header_opt("ActionID", action_id)
        .into_bytes();
    s.push(&done);
    Ok(())
}

/// The login bookkeeping shared by plain and MD5 logins.
pub(crate) fn login_ok(s: &mut Session, user: SimUser, events: Option<&str>, action_id: Option<&str>) {
    s.read = perms::parse_classes(&user.read);
    s.write = perms::parse_classes(&user.write);
    s.send_events = events.map(perms::parse_event_mask).unwrap_or(perms::ALL);
    s.filters = Filters::from_config(&user.eventfilters);
    s.events = Some(s.pbx.bus.subscribe());
    let r = MessageBuilder::success(action_id, "Authentication accepted");
    s.push(r.as_bytes());
    if s.read & perms::SYSTEM != 0 && s.send_events & perms::SYSTEM != 0 {
        let up = s.pbx.uptime_secs().to_string();
        let mut ev = s.pbx.bus.event("FullyBooted", "system,all");
        if s.pbx.dialect() == crate::Dialect::V22 {
            ev = ev.h("Uptime", &up).h("LastReload", &up);
        }
        let ev = ev.h("Status", "Fully Booted").bytes();
        s.push(&ev);
    }
    tracing::info!(peer = %s.peer, user = %user.username, "logged in");
    let now = std::time::SystemTime::now();
    let tv = crate::clock::event_tv(now);
    let addr = |a: &SocketAddr| {
        let v = if a.is_ipv4() { "IPV4" } else { "IPV6" };
        format!("{v}/TCP/{}/{}", a.ip(), a.port())
    };
    let bus = &s.pbx.bus;
    // Security events came with Asterisk 10.
    if s.pbx.dialect().pre_stasis() {
        s.user = Some(user);
        return;
    }
    bus.send(
        bus.event("SuccessfulAuth", "security,all")
            .h("EventTV", &tv)
            .h("Severity", "Informational")
            .h("Service", "AMI")
            .h("EventVersion", "1")
            .h("AccountID", &user.username)
            .h("SessionID", &s.pbx.next_session_id())
            .h("LocalAddress", &addr(&s.local))
            .h("RemoteAddress", &addr(&s.peer))
            .h("UsingPassword", "0")
            .h("SessionTV", &tv),
    );
    s.user = Some(user);
}
