//! One client connection: the banner, login, the proxy's own answers (Ping, Events, Logoff,
//! Challenge, Filter, WaitEvent), permission checks, forwarding, and event delivery.
//!
//! Everything a client costs happens in its own task: its filters, its socket writes. A
//! client that stops reading only ever slows itself.

use crate::auth;
use crate::client_tx::{ClientRx, ClientTx};
use crate::config::{SlowClient, UserConfig};
use crate::core::{Core, Phase};
use crate::dialect::Generation;
use crate::filter::{EventFilter, FilterSet};
use crate::hub::{self, Event};
use crate::limits::UserSlot;
use crate::merge::Merge;
use crate::perms::{action_needs, Classes, Need};
use crate::router::Route;
use crate::upstream::{Io, ListEnd, Waiter, Waiting};
use ami_proto::{AmiDecoder, Decoded, Limits, Message, MessageBuilder, Role};
use futures::StreamExt;
use governor::DefaultDirectRateLimiter;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{broadcast, OwnedSemaphorePermit};
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn, Instrument};

/// Delay before answering a failed login, as Asterisk does, to slow down guessing.
const LOGIN_FAIL_DELAY: Duration = Duration::from_secs(1);
/// Responses and list items waiting for one client's socket.
const RESPONSE_QUEUE: usize = 65_536;
/// Bytes buffered for a client's socket before a write reaches it.
const OUT_BUFFER: usize = 32 * 1024;
/// How long a closing session reads (and drops) what its client still sends, waiting for
/// the client to close its side.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Events written before a flush.
const EVENT_BATCH: usize = 512;

/// Actions the proxy answers itself and never forwards: they change the state of a session,
/// and the upstream session is shared by everyone.
const LOCAL_ACTIONS: &[&str] = &["login", "logoff", "challenge", "ping", "events", "filter", "waitevent"];

/// Where a client connection comes from and arrives at.
pub struct Connection {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// When it was accepted (`SessionTV`).
    pub since: std::time::SystemTime,
}

/// Asterisk's `SuccessfulAuth` security event for a login (as transcript 01 shows it).
fn successful_auth(user: &str, conn: &Connection, origin: &str) -> Message {
    let addr = |a: &SocketAddr| {
        let family = if a.is_ipv4() { "IPV4" } else { "IPV6" };
        let transport = if conn.tls { "TLS" } else { "TCP" };
        format!("{family}/{transport}/{}/{}", a.ip(), a.port())
    };
    // A stable id per connection, in the shape of Asterisk's session pointer.
    let session_id = format!("0x{:x}", {
        let (p, l) = (conn.peer.port() as u64, conn.local.port() as u64);
        let t = conn
            .since
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        (t ^ (p << 16) ^ l) & 0xffff_ffff_ffff
    });
    MessageBuilder::event("SuccessfulAuth")
        .header("Privilege", "security,all")
        .header("EventTV", &ami_proto::clock::event_tv(std::time::SystemTime::now()))
        .header("Severity", "Informational")
        .header("Service", "AMI")
        .header("EventVersion", "1")
        .header("AccountID", user)
        .header("SessionID", &session_id)
        .header("LocalAddress", &addr(&conn.local))
        .header("RemoteAddress", &addr(&conn.peer))
        .header("UsingPassword", "0")
        .header("SessionTV", &ami_proto::clock::event_tv(conn.since))
        .header("Server", origin)
        .build()
}

/// Why a session ends.
enum End {
    Closed,
}

struct Session<W> {
    core: Arc<Core>,
    peer: SocketAddr,
    out: BufWriter<W>,
    tx: ClientTx,
    user: Option<Arc<UserConfig>>,
    /// Classes the client asked events for (`Events:` at login or the Events action).
    mask: Classes,
    challenge: Option<String>,
    /// The user's configured event filters plus those this session added with `Filter`.
    filters: FilterSet,
    /// The filters this session added, kept to rebuild `filters` when the config reloads.
    session_filters: Vec<EventFilter>,
    events_out: metrics::Counter,
    dropped_policy: metrics::Counter,
    /// The Asterisk generation whose words this session's own answers use.
    gen: Generation,
    write_timeout: Duration,
    /// Event batches written, to sample the queue depth.
    batches: u64,
    /// The pending `WaitEvent` answer, if any (one per session, ended with it).
    wait_event: Option<tokio::task::AbortHandle>,
    /// This connection's own action rate, when one is configured.
    limiter: Option<DefaultDirectRateLimiter>,
    /// Held while logged in: counts toward the user's `max_connections`.
    slot: Option<UserSlot>,
    /// List items hidden by the user's scope, per ActionID, to correct `ListItems`.
    hidden_items: HashMap<Option<String>, u64>,
    /// The proxy is shutting down: actions get `Proxy is shutting down` instead of going on.
    draining: bool,
    /// Slots for actions in flight upstream (`proxy.max_in_flight_per_session`): one client
    /// cannot fill the upstream session every client shares.
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// Serves one accepted connection to its end. `permit` is the connection's unauthenticated
/// slot (Asterisk's authlimit), released at login; `listener` labels its metrics.
pub async fn serve(
    core: Arc<Core>,
    io: Box<dyn Io>,
    conn: Connection,
    permit: OwnedSemaphorePermit,
    listener: Arc<str>,
) {
    let peer = conn.peer;
    let span = tracing::info_span!("client", %peer, user = tracing::field::Empty);
    async move {
        let config = core.config();
        let (rd, wr) = tokio::io::split(io);
        let limits = Limits {
            max_line: config.proxy.max_line,
            max_lines: config.proxy.max_lines,
            max_message: config.proxy.max_line * (config.proxy.max_lines + 1),
        };
        let mut frames = FramedRead::new(rd, AmiDecoder::with_limits(Role::Client, limits));
        let (tx, mut rx, overflow) = ClientTx::channel(RESPONSE_QUEUE, config.proxy.client_queue_bytes);
        let mut phase = core.phase();
        let mut s = Session {
            core: core.clone(),
            peer,
            out: BufWriter::with_capacity(OUT_BUFFER, wr),
            tx,
            user: None,
            mask: Classes::ALL,
            challenge: None,
            filters: FilterSet::default(),
            session_filters: Vec::new(),
            limiter: core.limits.connection_limiter(),
            slot: None,
            hidden_items: HashMap::new(),
            draining: false,
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.proxy.max_in_flight_per_session)),
            gen: Generation::Modern,
            write_timeout: config.proxy.write_timeout,
            batches: 0,
            wait_event: None,
            events_out: crate::metrics::events_out(),
            dropped_policy: crate::metrics::events_dropped("policy"),
        };
        let (generation, version) = core.dialect();
        s.gen = generation;
        let banner = format!("{}{}\r\n", ami_proto::BANNER_PREFIX, version);
        if s.write_raw(banner.as_bytes()).await.is_err() || s.flush().await.is_err() {
            return;
        }
        // Unauthenticated: only Login, Challenge and Logoff, within the auth timeout.
        let deadline = tokio::time::Instant::now() + config.proxy.auth_timeout;
        drop(config);
        loop {
            let frame = tokio::select! {
                f = tokio::time::timeout_at(deadline, frames.next()) => f,
                _ = phase.wait_for(|p| *p != Phase::Running) => return,
            };
            let frame = match frame {
                Err(_) => {
                    info!("closing: no login within the auth timeout");
                    return;
                }
                Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(f))) => f,
            };
            let handled = match tokio::time::timeout_at(deadline, s.pre_login(frame)).await {
                Ok(r) => r,
                Err(_) => return,
            };
            match handled {
                Ok(true) => break,
                Ok(false) => continue,
                Err(End::Closed) => return,
            }
        }
        drop(permit);
        let Some(user) = s.user.clone() else { return };
        tracing::Span::current().record("user", user.name.as_str());
        info!("logged in");
        let _gauge = crate::metrics::ClientGauge::new(&user.name, &listener);
        let mut events = core.hub.subscribe();
        // Asterisk announces every login to the sessions that read `security`: this one
        // included, so after the subscription.
        core.hub
            .publish(successful_auth(&user.name, &conn, core.config().proxy.name.as_str()));
        let mut generation = core.generation();
        generation.mark_unchanged();
        let _ = s.flush().await;
        loop {
            let res = tokio::select! {
                biased;
                _ = overflow.wait() => {
                    warn!("closing: client does not read its responses");
                    Err(End::Closed)
                }
                Ok(()) = phase.changed() => {
                    let p = *phase.borrow_and_update();
                    match p {
                        Phase::Running => Ok(()),
                        // Shutting down: new actions are answered `Proxy is shutting down`;
                        // answers still coming are delivered.
                        Phase::Draining => {
                            s.draining = true;
                            Ok(())
                        }
                        Phase::Closing => s.close_for_shutdown(&mut rx, &mut frames).await,
                    }
                }
                Ok(()) = generation.changed() => {
                    generation.mark_unchanged();
                    s.reload_user()
                }
                Some(m) = rx.recv() => {
                    let mut r = s.answer(m).await;
                    while r.is_ok() {
                        match rx.try_recv() {
                            Ok(m) => r = s.answer(m).await,
                            Err(_) => break,
                        }
                    }
                    r
                }
                frame = frames.next() => match frame {
                    Some(Ok(f)) => s.logged_in(f).await,
                    Some(Err(e)) => {
                        debug!(error = %e, "read error");
                        Err(End::Closed)
                    }
                    None => Err(End::Closed),
                },
                ev = events.recv() => s.on_event(ev, &mut events, &mut rx).await,
            };
            if res.is_err() || s.flush().await.is_err() {
                break;
            }
        }
        debug!("session ended");
    }
    .instrument(span)
    .await
}

impl<W> Drop for Session<W> {
    fn drop(&mut self) {
        if let Some(w) = self.wait_event.take() {
            w.abort();
        }
    }
}

impl<W: AsyncWrite + Unpin> Session<W> {
    /// After a reload: the user's new classes and policy apply at once; a removed user's
    /// session ends.
    fn reload_user(&mut self) -> Result<(), End> {
        let Some(old) = &self.user else { return Ok(()) };
        let config = self.core.config();
        let Some(new) = config.user(&old.name) else {
            info!(user = %old.name, "closing: the user was removed from the configuration");
            return Err(End::Closed);
        };
        let mut filters = new.policy.filters.clone();
        for f in &self.session_filters {
            filters.add(f.clone());
        }
        self.filters = filters;
        self.user = Some(Arc::new(new.clone()));
        Ok(())
    }

    /// Shutdown: deliver what is queued, answer every action already sent (`Proxy is
    /// shutting down`), then `Event: Shutdown` as Asterisk sends it, then close cleanly: the
    /// write side first, then what the client still sends is read and dropped until it
    /// closes too (bounded), so the connection ends with a FIN, never a reset.
    async fn close_for_shutdown<R>(
        &mut self,
        rx: &mut ClientRx,
        frames: &mut FramedRead<R, AmiDecoder>,
    ) -> Result<(), End>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        self.draining = true;
        while let Ok(m) = rx.try_recv() {
            self.answer(m).await?;
        }
        while let Some(Some(frame)) = futures::FutureExt::now_or_never(frames.next()) {
            match frame {
                Ok(f) => self.logged_in(f).await?,
                Err(_) => break,
            }
        }
        let ev = MessageBuilder::event("Shutdown")
            .header("Privilege", "system,all")
            .header("Shutdown", "Cleanly")
            .header("Restart", "False")
            .build();
        if self
            .user
            .as_ref()
            .is_some_and(|u| u.read.contains(Classes::parse_lenient("system")))
        {
            self.send(&ev).await?;
        }
        let _ = self.flush().await;
        let _ = tokio::time::timeout(self.write_timeout, self.out.shutdown()).await;
        let _ = tokio::time::timeout(CLOSE_LINGER, async { while let Some(Ok(_)) = frames.next().await {} }).await;
        Err(End::Closed)
    }

    /// Writes an answer from an upstream: list items outside the user's scope are hidden,
    /// and the list's `ListItems` counts only what the client saw.
    async fn answer(&mut self, m: Message) -> Result<(), End> {
        let Some(user) = &self.user else { return Ok(()) };
        if m.kind() == ami_proto::Kind::Event {
            let key = m.action_id().map(str::to_owned);
            let name = m.get("Event").unwrap_or("");
            if crate::upstream::closes_list(&m, name) {
                if let Some(hidden) = self.hidden_items.remove(&key) {
                    let fix = |m: Message, h: &str| match m.get(h).and_then(|v| v.trim().parse::<u64>().ok()) {
                        Some(n) => m.with_header(h, &n.saturating_sub(hidden).to_string()),
                        None => m,
                    };
                    let m = fix(fix(m, "ListItems"), "Items");
                    return self.send(&m).await;
                }
            } else if !user
                .policy
                .event_in_scope(&m, m.get(self.core.server_header()), &self.core.owners)
            {
                *self.hidden_items.entry(key).or_insert(0) += 1;
                return Ok(());
            }
        }
        self.send(&m).await
    }

    /// Writes a message that is not a hub event: responses, list items, the proxy's own
    /// answers and events. One without an origin gets the proxy's (`proxy.name`), so a
    /// client that dispatches every message by its server header finds one on each.
    async fn send(&mut self, m: &Message) -> Result<(), End> {
        let header = self.core.server_header();
        if m.get_bytes(header).is_none() {
            let tagged = m.with_appended(header, &self.core.config().proxy.name);
            return self.write_raw(tagged.as_bytes()).await;
        }
        self.write_raw(m.as_bytes()).await
    }

    /// Every write is bounded in time (Asterisk's `writetimeout`): a client that stops
    /// reading is closed instead of holding its task, its queues and its slot forever.
    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), End> {
        // What fits in the buffer is a memory copy that cannot block: no timer for it (this
        // is the per-event path). Only a write that reaches the socket is timed.
        if self.out.buffer().len() + bytes.len() <= OUT_BUFFER {
            return self.out.write_all(bytes).await.map_err(|_| End::Closed);
        }
        match tokio::time::timeout(self.write_timeout, self.out.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Closed),
            Err(_) => {
                info!("closing: the client did not read for the write timeout");
                Err(End::Closed)
            }
        }
    }

    async fn error(&mut self, aid: Option<&str>, text: &str) -> Result<(), End> {
        self.send(&MessageBuilder::error(aid, text)).await
    }

    /// Handles a frame before login. Ok(true) once logged in.
    async fn pre_login(&mut self, frame: Decoded) -> Result<bool, End> {
        let m = match frame {
            Decoded::Message(m) => m,
            Decoded::Rejected { reason, action_id } => {
                self.error(action_id.as_deref(), reason.asterisk_message()).await?;
                return self.flush().await.map(|_| false);
            }
            Decoded::Banner(_) => return Ok(false),
        };
        let aid = m.action_id();
        let res = match m.action().map(str::to_ascii_lowercase).as_deref() {
            None => self.error(aid, "Missing action in request").await.map(|_| false),
            Some("login") => self.login(&m).await,
            Some("challenge") => self.challenge(&m).await.map(|_| false),
            Some("logoff") if self.gen == Generation::V1_4 => {
                self.send(&MessageBuilder::success(aid, "See ya")).await?;
                self.flush().await?;
                Err(End::Closed)
            }
            Some("logoff") => {
                self.goodbye(aid).await?;
                Err(End::Closed)
            }
            Some(_) if self.gen == Generation::V1_4 => self.error(aid, "Authentication Required").await.map(|_| false),
            Some(_) => self.error(aid, "Permission denied").await.map(|_| false),
        };
        // An accepted login is flushed by the caller once the session is subscribed to the
        // events: a client that has read `Authentication accepted` misses no event
        // published after it.
        if !matches!(res, Ok(true)) {
            self.flush().await?;
        }
        res
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.buffer().is_empty() {
            return Ok(());
        }
        // Usually the socket takes it at once: try without arming a timer (a flush keeps
        // its progress in the BufWriter, so giving up on this poll loses nothing).
        if let Some(r) = futures::FutureExt::now_or_never(self.out.flush()) {
            return r.map_err(|_| End::Closed);
        }
        match tokio::time::timeout(self.write_timeout, self.out.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Closed),
            Err(_) => {
                info!("closing: the client did not read for the write timeout");
                Err(End::Closed)
            }
        }
    }

    async fn goodbye(&mut self, aid: Option<&str>) -> Result<(), End> {
        let m = MessageBuilder::response("Goodbye", aid)
            .header("Message", "Thanks for all the fish.")
            .build();
        self.send(&m).await?;
        self.flush().await
    }

    async fn challenge(&mut self, m: &Message) -> Result<(), End> {
        let aid = m.action_id();
        if !m.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("MD5")) {
            return self.error(aid, "Must specify AuthType").await;
        }
        // 128 random bits, in digits as Asterisk's challenges are; used by one login only.
        self.core.limits.challenge_issued(self.peer.ip());
        let challenge = self
            .challenge
            .get_or_insert_with(|| rand::thread_rng().gen::<u128>().to_string())
            .clone();
        let r = MessageBuilder::response("Success", aid)
            .header("Challenge", &challenge)
            .build();
        self.send(&r).await
    }

    /// Every refusal (unknown user, wrong secret, refused or banned address) gets the same
    /// answer at the same time after the login arrived, and an unknown user's secret is
    /// verified against a dummy hash: neither the answer nor its timing tells which users
    /// exist or why a login failed.
    async fn login(&mut self, m: &Message) -> Result<bool, End> {
        let answer_at = tokio::time::Instant::now() + LOGIN_FAIL_DELAY;
        let aid = m.action_id().map(str::to_owned);
        let username = m.get("Username").unwrap_or("");
        let ip = self.peer.ip();
        let banned = self.core.limits.is_banned(ip);
        let user = self.core.config().user(username).cloned();
        let md5 = m.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("MD5"));
        // A challenge answers one login, whatever its outcome.
        let challenge = self.challenge.take();
        let secret = m.get("Secret").unwrap_or("").to_owned();
        let mut reason = "bad secret";
        let ok = match &user {
            _ if banned => {
                reason = "address banned after failed logins";
                false
            }
            None => {
                reason = "unknown user";
                if !md5 {
                    let _ = tokio::task::spawn_blocking(move || auth::check_dummy(&secret)).await;
                }
                false
            }
            // The source-address ACL is checked before the secret, and answered the same way.
            Some(u) if !u.policy.permits_addr(ip) => {
                reason = "source address not permitted";
                false
            }
            Some(u) if md5 => match &challenge {
                Some(ch) => auth::check_md5(u, ch, m.get("Key").unwrap_or("")),
                None => false,
            },
            Some(u) => {
                let u = u.clone();
                tokio::task::spawn_blocking(move || auth::check_plain(&u, &secret))
                    .await
                    .unwrap_or(false)
            }
        };
        let Some(user) = user.filter(|_| ok) else {
            // Every refused plain login costs one argon2 verification, whatever the reason
            // (a plain-secret user, a refused address): the proxy's load tells nothing
            // either. Banned addresses are spared the work, and answered the same.
            if !md5 && !banned && reason != "unknown user" {
                let secret = m.get("Secret").unwrap_or("").to_owned();
                let _ = tokio::task::spawn_blocking(move || auth::check_dummy(&secret)).await;
            }
            // Never log the secret or key, only who tried.
            warn!(username = %username, reason, "authentication failed");
            audit(username, self.peer, "Login", "", "refused", reason);
            if !banned {
                self.core.limits.login_failed(ip);
            }
            tokio::time::sleep_until(answer_at).await;
            let _ = self.error(aid.as_deref(), "Authentication failed").await;
            let _ = self.flush().await;
            return Err(End::Closed);
        };
        match self.core.limits.user_slot(&user.name, user.max_connections) {
            Some(slot) => self.slot = Some(slot),
            None => {
                warn!(username = %username, "refusing login: the user has its maximum of connections");
                let _ = self.error(aid.as_deref(), "Too many connections for this user").await;
                let _ = self.flush().await;
                return Err(End::Closed);
            }
        }
        audit(&user.name, self.peer, "Login", "", "accepted", "");
        self.filters = user.policy.filters.clone();
        self.mask = match m.get("Events") {
            Some(e) => events_mask(e).unwrap_or(Classes::ALL),
            None => Classes::ALL,
        };
        self.send(&MessageBuilder::success(aid.as_deref(), "Authentication accepted"))
            .await?;
        let system = Classes::parse_lenient("system");
        if user.read.contains(system) && self.mask.contains(system) && !self.mask.is_empty() {
            let up = self.core.started.elapsed().as_secs().to_string();
            let fb = MessageBuilder::event("FullyBooted").header("Privilege", "system,all");
            // Uptime and LastReload came with Asterisk 17's AMI.
            let fb = if self.gen == Generation::Modern {
                fb.header("Uptime", &up).header("LastReload", &up)
            } else {
                fb
            };
            let fb = fb.header("Status", "Fully Booted").build();
            self.send(&fb).await?;
        }
        self.user = Some(Arc::new(user));
        Ok(true)
    }

    async fn logged_in(&mut self, frame: Decoded) -> Result<(), End> {
        let m = match frame {
            Decoded::Message(m) => m,
            Decoded::Rejected { reason, action_id } => {
                return self.error(action_id.as_deref(), reason.asterisk_message()).await;
            }
            Decoded::Banner(_) => return Ok(()),
        };
        let aid = m.action_id().map(str::to_owned);
        let aid = aid.as_deref();
        let Some(action) = m.action().map(str::to_owned) else {
            return self.error(aid, "Missing action in request").await;
        };
        let lc = action.to_ascii_lowercase();
        let Some(user) = self.user.clone() else {
            return Err(End::Closed);
        };
        if self.draining && lc != "logoff" {
            return self.error(aid, "Proxy is shutting down").await;
        }
        if lc != "logoff" && !self.core.limits.allow_action(&user.name, self.limiter.as_ref()) {
            self.audit(&user, &action, "", "refused", "rate limit");
            return self.error(aid, "Rate limit exceeded").await;
        }
        if let Need::Any(classes) = action_needs(&lc) {
            if !user.write.intersects(classes) {
                self.audit(&user, &action, "", "refused", "write classes");
                return self.error(aid, "Permission denied").await;
            }
        }
        if let Err(reason) = user
            .policy
            .check_action(user.write, &lc, &m, &self.core.owners, self.core.server_header())
        {
            self.audit(&user, &action, "", "refused", &reason);
            return self.error(aid, "Permission denied").await;
        }
        // `Queues` answers with raw CLI text that carries no ActionID and no `Response:`, so
        // on a shared upstream session it could not be given to the right client (Asterisk
        // 22 no longer has it either). QueueStatus and QueueSummary are the structured forms.
        if lc == "queues" {
            self.audit(&user, &action, "", "refused", "Queues output cannot be routed");
            let text = "Invalid/unknown command: Queues. Use Action: ListCommands to show available commands.";
            return self.error(aid, text).await;
        }
        // Ping with an explicit server header goes to that upstream: a way to check a link.
        let routed_ping = lc == "ping" && m.get(self.core.server_header()).is_some();
        if LOCAL_ACTIONS.contains(&lc.as_str()) && !routed_ping {
            return self.local(&lc, &m, aid).await;
        }
        self.forward(&user, &action, &lc, m.clone(), aid).await
    }

    fn audit(&self, user: &UserConfig, action: &str, server: &str, outcome: &str, reason: &str) {
        audit(&user.name, self.peer, action, server, outcome, reason);
    }

    async fn local(&mut self, lc: &str, m: &Message, aid: Option<&str>) -> Result<(), End> {
        match lc {
            "login" => {
                let text = if self.gen == Generation::V1_4 {
                    "Already logged in"
                } else {
                    "Already authenticated"
                };
                self.send(&MessageBuilder::success(aid, text)).await
            }
            "logoff" => {
                self.goodbye(aid).await?;
                Err(End::Closed)
            }
            "challenge" => self.challenge(m).await,
            "ping" if self.gen == Generation::V1_4 => self.send(&MessageBuilder::response("Pong", aid).build()).await,
            "ping" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let ts = format!("{}.{:06}", now.as_secs(), now.subsec_micros());
                self.send(
                    &MessageBuilder::response("Success", aid)
                        .header("Ping", "Pong")
                        .header("Timestamp", &ts)
                        .build(),
                )
                .await
            }
            "events" => {
                let Some(mask) = events_mask(m.get("EventMask").unwrap_or("")) else {
                    return self.error(aid, "Invalid event mask").await;
                };
                self.mask = mask;
                let state = if self.mask.is_empty() { "Off" } else { "On" };
                if self.gen == Generation::V1_4 {
                    return self
                        .send(&MessageBuilder::response(&format!("Events {state}"), aid).build())
                        .await;
                }
                self.send(&MessageBuilder::response("Success", aid).header("Events", state).build())
                    .await
            }
            "filter" => self.filter(m, aid).await,
            "waitevent" => {
                // Answered after the timeout without holding up this session's loop.
                let secs: u64 = m
                    .get("Timeout")
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0)
                    .min(300);
                let (tx, aid) = (self.tx.clone(), aid.map(str::to_owned));
                // One at a time per session: a new WaitEvent replaces the pending one.
                if let Some(prev) = self.wait_event.take() {
                    prev.abort();
                }
                let task = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    tx.try_send(MessageBuilder::success(aid.as_deref(), "Waiting for Event completed."));
                    tx.try_send(
                        MessageBuilder::event("WaitEventComplete")
                            .header_opt("ActionID", aid.as_deref())
                            .build(),
                    );
                });
                self.wait_event = Some(task.abort_handle());
                Ok(())
            }
            _ => self.error(aid, "Permission denied").await,
        }
    }

    /// Asterisk's `Filter` action: `Filter: <regex>` (`!` excludes), or the advanced form
    /// with `MatchCriteria: action(..),name(..),header(..),method(..)` and `Filter: <value>`.
    async fn filter(&mut self, m: &Message, aid: Option<&str>) -> Result<(), End> {
        if !m.get("Operation").unwrap_or("").eq_ignore_ascii_case("Add") {
            return self.error(aid, "Unknown operation").await;
        }
        let value = m.get("Filter").unwrap_or("");
        let parsed = match m.get("MatchCriteria").filter(|c| !c.is_empty()) {
            Some(criteria) => EventFilter::advanced(criteria, value),
            None => EventFilter::legacy(value),
        };
        match parsed {
            Ok(f) => {
                self.session_filters.push(f.clone());
                self.filters.add(f);
                self.send(&MessageBuilder::success(aid, "Success")).await
            }
            Err(_) => {
                self.error(aid, "Filter did not compile.  Check the syntax of the filter given.")
                    .await
            }
        }
    }

    async fn forward(
        &mut self,
        user: &UserConfig,
        action: &str,
        lc: &str,
        m: Message,
        aid: Option<&str>,
    ) -> Result<(), End> {
        let core = self.core.clone();
        let Ok(slot) = self.in_flight.clone().try_acquire_owned() else {
            audit(
                &user.name,
                self.peer,
                action,
                "",
                "refused",
                "too many actions in flight",
            );
            return self.error(aid, "Too many actions in flight for this session").await;
        };
        let header = core.server_header();
        // The routing header is the proxy's: it never reaches an upstream, and two that
        // disagree are refused rather than one of them picked.
        let server = m.get(header).map(str::to_owned);
        if m.get_all(header).any(|s| Some(s) != server.as_deref()) {
            audit(
                &user.name,
                self.peer,
                action,
                "",
                "refused",
                "two different server headers",
            );
            return self.error(aid, "Permission denied").await;
        }
        let st = core.state();
        let route = st.router.route(&m, action, server.as_deref(), &core.owners);
        let mut out = if server.is_some() { m.without_all(header) } else { m };
        let mut timeout = st.config.proxy.action_timeout;
        // A synchronous Originate would block the upstream session every client shares
        // until the call is answered: it goes upstream as async, and is answered from its
        // OriginateResponse as Asterisk answers a synchronous one.
        let sync_originate = lc == "originate" && !out.get("Async").is_some_and(is_true);
        if sync_originate {
            out = out.with_header("Async", "true");
            let ring_ms: u64 = out.get("Timeout").and_then(|t| t.trim().parse().ok()).unwrap_or(30_000);
            timeout += Duration::from_millis(ring_ms.min(3_600_000));
        }
        // The broadcast event that echoes this action's ActionID (OriginateResponse of an
        // async Originate, the UserEvent of UserEvent) gets the client's ActionID back.
        let echoed = (lc == "originate" && !sync_originate) || lc == "userevent";
        let peer = self.peer;
        let audit =
            |server: &str, outcome: &str, reason: &str| audit(&user.name, peer, action, server, outcome, reason);
        let client_aid = aid.map(str::to_owned);
        match route {
            Route::Fail(text) => {
                audit("", "refused", &text);
                self.error(aid, &text).await
            }
            Route::One(i) if !user.policy.server_allowed(st.upstreams[i].name()) => {
                audit(st.upstreams[i].name(), "refused", "server outside the user's scope");
                self.error(aid, "Permission denied").await
            }
            Route::One(i) => {
                let Some(up) = st.upstreams[i].for_account(user.upstream_account.as_deref()) else {
                    audit(st.upstreams[i].name(), "refused", "no upstream account for the user");
                    return self.error(aid, "Permission denied").await;
                };
                let down = format!("Upstream server {} is not connected", up.name());
                if !up.is_connected() {
                    audit(up.name(), "refused", "upstream down");
                    return self.error(aid, &down).await;
                }
                let uaid = core.next_action_id();
                if echoed {
                    core.remember_broadcast_aid(&uaid, aid);
                }
                let bytes = out.with_header("ActionID", &uaid).bytes().clone();
                let tx = self.tx.clone();
                let waiting = if sync_originate {
                    Waiting::SyncOriginate { tx, client_aid }
                } else {
                    Waiting::Client {
                        tx,
                        client_aid,
                        sent: Instant::now(),
                        list_end: ListEnd::new(action, self.gen.framed_lists()),
                    }
                };
                match up.send(uaid, bytes, Waiter::new(waiting, timeout).with_slot(slot)) {
                    Ok(()) => {
                        audit(up.name(), "forwarded", "");
                        Ok(())
                    }
                    Err(refused) => {
                        audit(up.name(), "refused", &refused.reason);
                        (*refused.waiter).fail(&refused.reason, (header, up.name()));
                        Ok(())
                    }
                }
            }
            Route::All => {
                let ups: Vec<_> = st
                    .upstreams
                    .iter()
                    .filter(|u| user.policy.server_allowed(u.name()))
                    .filter_map(|u| u.for_account(user.upstream_account.as_deref()))
                    .filter(|u| u.is_connected())
                    .collect();
                if ups.is_empty() {
                    audit("all", "refused", "no upstream connected");
                    return self.error(aid, "No upstream server is connected").await;
                }
                if sync_originate {
                    audit("all", "refused", "synchronous Originate to all servers");
                    return self.error(aid, "Originate to all servers must be Async").await;
                }
                let merge = Merge::new(
                    self.tx.clone(),
                    client_aid.clone(),
                    ups.len(),
                    self.gen.framed_lists(),
                    action,
                )
                .with_slot(slot);
                for up in ups {
                    let uaid = core.next_action_id();
                    if echoed {
                        core.remember_broadcast_aid(&uaid, aid);
                    }
                    let bytes = out.with_header("ActionID", &uaid).bytes().clone();
                    let waiting = Waiting::Merge {
                        merge: merge.clone(),
                        client_aid: client_aid.clone(),
                    };
                    if let Err(refused) = up.send(uaid, bytes, Waiter::new(waiting, timeout)) {
                        (*refused.waiter).fail(&refused.reason, (header, up.name()));
                    }
                }
                audit("all", "forwarded", "");
                Ok(())
            }
        }
    }

    async fn on_event(
        &mut self,
        ev: Result<Arc<Event>, broadcast::error::RecvError>,
        events: &mut broadcast::Receiver<Arc<Event>>,
        answers: &mut ClientRx,
    ) -> Result<(), End> {
        let mut ev = match ev {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => return self.lagged(n).await,
            Err(broadcast::error::RecvError::Closed) => return Err(End::Closed),
        };
        // Sampled: a histogram record per batch would cost more than the batch at low rates.
        self.batches = self.batches.wrapping_add(1);
        if self.batches % 64 == 1 {
            crate::metrics::queue_depth(events.len());
        }
        let (mut sent, mut skipped) = (0u64, 0u64);
        let mut result = Ok(());
        for i in 0..=EVENT_BATCH {
            // An upstream queues an answer before it publishes the events that follow it
            // (a response, then its OriginateResponse): answers already queued go first, so a
            // batch never overtakes them.
            while let Ok(m) = answers.try_recv() {
                if let Err(e) = self.answer(m).await {
                    result = Err(e);
                    break;
                }
            }
            if result.is_err() {
                break;
            }
            if self.wants(&ev) {
                // Hub events carry their origin already (tagged at publish).
                if let Err(e) = self.write_raw(ev.msg.as_bytes()).await {
                    result = Err(e);
                    break;
                }
                sent += 1;
            } else {
                skipped += 1;
            }
            if i == EVENT_BATCH {
                break;
            }
            ev = match events.try_recv() {
                Ok(ev) => ev,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    result = self.lagged(n).await;
                    break;
                }
                Err(_) => break,
            };
        }
        self.events_out.increment(sent);
        self.dropped_policy.increment(skipped);
        result
    }

    async fn lagged(&mut self, n: u64) -> Result<(), End> {
        crate::metrics::events_dropped("lag").increment(n);
        match self.core.config().proxy.slow_client {
            SlowClient::DropOldest => {
                debug!(dropped = n, "client fell behind; oldest events dropped");
                self.send(&hub::events_dropped(n)).await
            }
            SlowClient::Disconnect => {
                warn!(dropped = n, "closing: client fell behind the event stream");
                Err(End::Closed)
            }
        }
    }

    fn wants(&self, ev: &Event) -> bool {
        let Some(user) = &self.user else { return false };
        !ev.classes.is_empty()
            && user.read.contains(ev.classes)
            && self.mask.contains(ev.classes)
            && user
                .policy
                .event_in_scope(&ev.msg, ev.server.as_deref(), &self.core.owners)
            && self.filters.allows(&ev.msg)
    }
}

/// One audit line per action forwarded or refused, on its own target (`amiproxy::audit`) so
/// it can be routed to a file. Never any header values beyond the action name.
fn audit(user: &str, peer: SocketAddr, action: &str, server: &str, outcome: &str, reason: &str) {
    info!(target: "amiproxy::audit", user, %peer, action, server, outcome, reason);
    if action == "Login" {
        crate::metrics::login(outcome);
    } else {
        crate::metrics::action(action, server, outcome);
    }
}

/// Asterisk's reading of an `Events`/`EventMask` value (`strings_to_mask`): a number is a
/// bit mask, a true word is everything, a class list is those classes (none known: off);
/// empty is invalid.
fn events_mask(v: &str) -> Option<Classes> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Classes::from_asterisk_bits(v.parse().unwrap_or(u32::MAX)));
    }
    if is_true(v) || v.eq_ignore_ascii_case("all") {
        return Some(Classes::ALL);
    }
    Some(Classes::parse_lenient(v))
}

/// Asterisk's `ast_true`.
fn is_true(v: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|w| v.trim().eq_ignore_ascii_case(w))
}
