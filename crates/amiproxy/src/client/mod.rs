//! One client connection, from its banner to its end.
//!
//! The session is a state machine in one task: unauthenticated (only Login, Challenge and
//! Logoff, within the auth timeout), then logged in (the proxy's own answers, forwarding,
//! event delivery), then closing. Everything a client costs happens in its own task (its
//! filters, its socket writes), so a client that stops reading only ever slows itself.
//!
//! - [`login`]: banner, Challenge, Login and what follows it;
//! - [`local`]: the actions the proxy answers itself (Ping, Events, Filter, WaitEvent, ...);
//! - [`forward`]: the checks every action passes, routing, and the hand-off upstream;
//! - [`deliver`]: answers and events on their way to the client, filtered by its policy;
//! - [`write`]: the write path, bounded in time;
//! - [`end`]: why a session ends and why an action is refused.

mod deliver;
mod end;
mod forward;
mod local;
mod login;
mod write;

use crate::client_tx::{Answer, ClientRx, ClientTx};
use crate::config::UserConfig;
use crate::core::{Core, Phase};
use crate::dialect::Generation;
use crate::filter::{EventFilter, FilterSet};
use crate::limits::UserSlot;
use crate::perms::Classes;
use crate::upstream::Io;
use ami_proto::{AmiDecoder, Decoded, MessageBuilder};
use end::End;
use futures::StreamExt;
use governor::DefaultDirectRateLimiter;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::FramedRead;
use tracing::{info, warn, Instrument};

/// Responses and list items waiting for one client's socket.
const RESPONSE_QUEUE: usize = 65_536;
/// Bytes buffered for a client's socket before a write reaches it.
const OUT_BUFFER: usize = 32 * 1024;
/// How long a closing session reads (and drops) what its client still sends, waiting for
/// the client to close its side.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// After `Event: Shutdown`: how long actions already on their way are still answered.
const SHUTDOWN_CROSSING: Duration = Duration::from_millis(250);

/// Where a client connection comes from and arrives at.
pub struct Connection {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// When it was accepted (`SessionTV`).
    pub since: std::time::SystemTime,
    /// How it reaches the proxy (for the console).
    pub transport: crate::sessions::Transport,
    /// The client's TLS certificate, verified at the handshake (mutual TLS), if it showed one.
    pub peer_cert: Option<Arc<crate::tls::PeerCert>>,
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
    hidden_items: HashMap<u64, u64>,
    /// The proxy is shutting down: actions get `Proxy is shutting down` instead of going on.
    draining: bool,
    /// Slots for actions in flight upstream (`proxy.max_in_flight_per_session`): one client
    /// cannot fill the upstream session every client shares.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// The size of `in_flight` (all slots back: nothing is in flight).
    in_flight_max: usize,
    /// The client sent `Logoff` (its ActionID): answered once the actions it sent before
    /// are answered, as Asterisk, which reads a session's actions one by one, would.
    logoff: Option<Option<String>>,
    /// This session's entry in the console's registry, once logged in.
    registered: Option<crate::sessions::Registered>,
    /// A WebSocket session: events go to its front end pre-encoded as JSON, encoded once
    /// for every such session (`hub::Event::pre_encoded`).
    json_events: bool,
    /// The client's TLS certificate, for users bound to one.
    peer_cert: Option<Arc<crate::tls::PeerCert>>,
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
    let span = tracing::info_span!("client", peer = %conn.peer, user = tracing::field::Empty);
    async move {
        let end = run(core, io, conn, permit, listener).await;
        end.record();
    }
    .instrument(span)
    .await
}

/// Logs the client in on the control thread, then runs the session where it belongs
/// (`crate::runtime`). Each phase is a future of its own on the heap, so what a session
/// keeps for its life is the one it is in: awaiting them inline would size this task for
/// both, and one moved to the delivery runtime would cost its memory twice.
async fn run(
    core: Arc<Core>,
    io: Box<dyn Io>,
    conn: Connection,
    permit: OwnedSemaphorePermit,
    listener: Arc<str>,
) -> End {
    let logging_in = Box::pin(login::log_in(core, io, conn, permit, listener));
    // Placed in a statement of its own: no session state outlives it in this future.
    let placed = match logging_in.await {
        Ok(session) => place(session),
        Err(end) => return end,
    };
    match placed {
        Placed::Here(session) => session.await,
        Placed::Delivery(task) => match task.await {
            Ok(end) => end,
            Err(e) if e.is_panic() => {
                tracing::error!(error = %e, "the session's task panicked");
                End::Failed
            }
            // Cancelled: the delivery runtime is stopping.
            Err(_) => End::Shutdown,
        },
    }
}

/// Where a logged-in session runs.
enum Placed {
    Here(std::pin::Pin<Box<dyn std::future::Future<Output = End> + Send>>),
    Delivery(tokio::task::JoinHandle<End>),
}

/// A session that takes events is delivery work: off the control thread.
fn place(session: LoggedIn) -> Placed {
    if !session.s.wants_events() {
        return Placed::Here(Box::pin(session.run()));
    }
    match crate::runtime::spawn_delivery(session.run().in_current_span()) {
        Ok(task) => Placed::Delivery(task),
        Err(here) => Placed::Here(Box::pin(here)),
    }
}

/// A logged-in session and all it owns, to run wherever it is spawned.
struct LoggedIn {
    core: Arc<Core>,
    s: Session<tokio::io::WriteHalf<Box<dyn Io>>>,
    frames: FramedRead<tokio::io::ReadHalf<Box<dyn Io>>, AmiDecoder>,
    rx: ClientRx,
    overflow: Arc<crate::client_tx::Overflow>,
    phase: tokio::sync::watch::Receiver<Phase>,
    user: Arc<UserConfig>,
    conn: Connection,
    listener: Arc<str>,
}

impl LoggedIn {
    async fn run(self) -> End {
        let LoggedIn {
            core,
            mut s,
            mut frames,
            mut rx,
            overflow,
            mut phase,
            user,
            conn,
            listener,
        } = self;
        let _gauge = crate::metrics::ClientGauge::new(&user.name, &listener);
        s.registered =
            Some(
                core.registry
                    .register(&user.name, conn.peer, listener.clone(), conn.transport, conn.since),
            );
        // A session with events off (`Events: off`, or a user who reads nothing) does not
        // follow the hub at all: at a full-speed flood, a hundred control clients would each
        // spend a core's worth of wake-ups discarding events (and delay everyone's logins).
        let mut events = s.wants_events().then(|| core.hub.subscribe());
        // Asterisk announces every login to the sessions that read `security`: this one
        // included, so after the subscription.
        core.hub.publish(login::successful_auth(
            &user.name,
            &conn,
            core.config().proxy.name.as_str(),
        ));
        let mut generation = core.generation();
        generation.mark_unchanged();
        if let Err(end) = s.flush().await {
            return end;
        }
        loop {
            let res = tokio::select! {
                biased;
                _ = overflow.wait() => {
                    warn!("closing: client does not read its responses");
                    Err(End::AnswersOverflow)
                }
                Ok(()) = phase.changed() => {
                    let p = *phase.borrow_and_update();
                    // Boxed, as the Logoff below: rare paths that would size every session's task.
                Box::pin(s.phase_changed(p, &mut rx, &mut frames)).await
                }
                Ok(()) = generation.changed() => {
                    generation.mark_unchanged();
                    s.reload_user()
                }
                Some(m) = rx.recv() => s.answers(m, &mut rx).await,
                frame = frames.next() => match frame {
                    // Boxed: an action's path is most of this future's size, and the
                    // future lasts as long as the session (an idle one too).
                    Some(Ok(f)) => Box::pin(s.logged_in(f)).await,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "read error");
                        Err(End::ReadFailed)
                    }
                    None => Err(End::ClientClosed),
                },
                () = next_events(&events) => match events.as_mut() {
                    Some(e) => s.on_events(e, &mut rx).await,
                    None => Ok(()),
                },
            };
            if let Err(end) = res {
                return end;
            }
            // `Events` or a reload may have turned events on or off.
            if s.wants_events() != events.is_some() {
                events = s.wants_events().then(|| core.hub.subscribe());
            }
            if let Some(aid) = s.logoff.take() {
                return match Box::pin(s.logoff_after_answers(aid, &mut rx)).await {
                    Ok(()) => End::Logoff,
                    Err(end) => end,
                };
            }
            if let Err(end) = s.flush().await {
                return end;
            }
        }
    }
}

/// Resolves when hub events are ready, or never when the session follows none.
async fn next_events(events: &Option<crate::hub::Subscription>) {
    match events {
        Some(e) => e.ready().await,
        None => std::future::pending().await,
    }
}

/// How much longer than the action timeout a `Logoff` waits at most for the answers before
/// it: above the longest ringing time a synchronous Originate is given (an hour).
const LOGOFF_BACKSTOP: Duration = Duration::from_secs(3_601);

impl<W: AsyncWrite + Unpin> Session<W> {
    /// Whether any event could reach this client now.
    fn wants_events(&self) -> bool {
        !self.mask.is_empty() && self.user.as_ref().is_some_and(|u| !u.read.is_empty())
    }

    fn new(core: Arc<Core>, peer: SocketAddr, wr: W, tx: ClientTx, gen: Generation) -> Session<W> {
        let config = core.config();
        Session {
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
            in_flight_max: config.proxy.max_in_flight_per_session,
            logoff: None,
            registered: None,
            json_events: false,
            peer_cert: None,
            gen,
            write_timeout: config.proxy.write_timeout,
            batches: 0,
            wait_event: None,
            events_out: crate::metrics::events_out(),
            dropped_policy: crate::metrics::events_dropped("policy"),
            core,
        }
    }

    /// The answer just received and every other already queued, in order.
    async fn answers(&mut self, first: Answer, rx: &mut ClientRx) -> Result<(), End> {
        self.answer(first).await?;
        while let Ok(m) = rx.try_recv() {
            self.answer(m).await?;
        }
        Ok(())
    }

    /// `Logoff` after actions still upstream: their answers first, then the goodbye.
    /// Nothing more is read from the client, as Asterisk reads nothing after it. Each
    /// action's waiter has its own deadline (a synchronous Originate's counts its ringing
    /// time, a list's moves with each item), after which the upstream side answers it with
    /// an error; the session's own deadline is only a backstop above the longest of them.
    async fn logoff_after_answers(&mut self, aid: Option<String>, rx: &mut ClientRx) -> Result<(), End> {
        let deadline = tokio::time::Instant::now() + self.core.config().proxy.action_timeout + LOGOFF_BACKSTOP;
        // A slot is freed after its last answer was queued, so once every slot is back
        // every answer is in `rx`. The slots are waited for, not checked after each answer:
        // the upstream side queues an answer and then frees its slot, and a session woken
        // in between (on another thread) would otherwise sleep until the deadline.
        let slots = u32::try_from(self.in_flight_max).unwrap_or(u32::MAX);
        let all_back = self.in_flight.clone().acquire_many_owned(slots);
        tokio::pin!(all_back);
        loop {
            tokio::select! {
                biased;
                Some(m) = rx.recv() => self.answers(m, rx).await?,
                _ = &mut all_back => break,
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        while let Ok(m) = rx.try_recv() {
            self.answer(m).await?;
        }
        match self.goodbye(aid.as_deref()).await {
            Err(End::Logoff) => Ok(()),
            other => other,
        }
    }

    /// Shutting down: new actions are answered `Proxy is shutting down` while answers still
    /// coming are delivered; then the session closes.
    async fn phase_changed<R: AsyncRead + Unpin>(
        &mut self,
        phase: Phase,
        rx: &mut ClientRx,
        frames: &mut FramedRead<R, AmiDecoder>,
    ) -> Result<(), End> {
        match phase {
            Phase::Running => Ok(()),
            Phase::Draining => {
                self.draining = true;
                Ok(())
            }
            Phase::Closing => self.close_for_shutdown(rx, frames).await,
        }
    }
}

impl<W> Drop for Session<W> {
    fn drop(&mut self) {
        if let Some(w) = self.wait_event.take() {
            w.abort();
        }
    }
}

impl<W: AsyncWrite + Unpin> Session<W> {
    /// Before login: only Login, Challenge and Logoff, within the auth timeout (and never
    /// past a shutdown). Ok once logged in.
    async fn until_login<R: AsyncRead + Unpin>(
        &mut self,
        frames: &mut FramedRead<R, AmiDecoder>,
        phase: &mut tokio::sync::watch::Receiver<Phase>,
        auth_timeout: Duration,
    ) -> Result<(), End> {
        let deadline = tokio::time::Instant::now() + auth_timeout;
        loop {
            let frame = tokio::select! {
                f = tokio::time::timeout_at(deadline, frames.next()) => f,
                _ = phase.wait_for(|p| *p != Phase::Running) => return Err(End::Shutdown),
            };
            let frame = match frame {
                Err(_) => {
                    info!("closing: no login within the auth timeout");
                    return Err(End::AuthTimeout);
                }
                Ok(None) => return Err(End::ClientClosed),
                Ok(Some(Err(_))) => return Err(End::ReadFailed),
                Ok(Some(Ok(f))) => f,
            };
            match tokio::time::timeout_at(deadline, self.pre_login(frame)).await {
                Err(_) => return Err(End::AuthTimeout),
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) => continue,
                Ok(Err(end)) => return Err(end),
            }
        }
    }

    /// After a reload: the user's new classes and policy apply at once; a removed user's
    /// session ends.
    fn reload_user(&mut self) -> Result<(), End> {
        let Some(old) = &self.user else { return Ok(()) };
        let config = self.core.config();
        let Some(new) = config.user(&old.name) else {
            info!(user = %old.name, "closing: the user was removed from the configuration");
            return Err(End::UserRemoved);
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
    async fn close_for_shutdown<R: AsyncRead + Unpin>(
        &mut self,
        rx: &mut ClientRx,
        frames: &mut FramedRead<R, AmiDecoder>,
    ) -> Result<(), End> {
        self.draining = true;
        while let Ok(m) = rx.try_recv() {
            self.answer(m).await?;
        }
        while let Some(Some(frame)) = futures::FutureExt::now_or_never(frames.next()) {
            match frame {
                Ok(f) => self.logged_in(f).await?,
                Err(_) => break,
            }
            // A Logoff already read is answered as it would be any other time: after the
            // answers to what came before it.
            if let Some(aid) = self.logoff.take() {
                while let Ok(m) = rx.try_recv() {
                    self.answer(m).await?;
                }
                let _ = self.goodbye(aid.as_deref()).await;
                let _ = tokio::time::timeout(self.write_timeout, self.out.shutdown()).await;
                return Err(End::Logoff);
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
        // An action that crossed `Event: Shutdown` on the wire (a balancer in between makes
        // that window wider) gets an answer, not silence: for a moment more every frame is
        // still answered (`Proxy is shutting down`), until the client closes its side.
        let crossing = tokio::time::Instant::now() + SHUTDOWN_CROSSING;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(crossing, frames.next()).await {
            self.logged_in(frame).await?;
            while let Ok(m) = rx.try_recv() {
                self.answer(m).await?;
            }
            if let Some(aid) = self.logoff.take() {
                let _ = self.goodbye(aid.as_deref()).await;
                break;
            }
            self.flush().await?;
        }
        let _ = tokio::time::timeout(self.write_timeout, self.out.shutdown()).await;
        let _ = tokio::time::timeout(CLOSE_LINGER, async { while let Some(Ok(_)) = frames.next().await {} }).await;
        Err(End::Shutdown)
    }

    /// A frame from a logged-in client: an action, or a framing error answered as
    /// Asterisk answers it.
    async fn logged_in(&mut self, frame: Decoded) -> Result<(), End> {
        match frame {
            Decoded::Message(m) => match ami_proto::Action::parse(m) {
                Ok(action) => self.action(action).await,
                Err(m) => self.error(m.action_id(), "Missing action in request").await,
            },
            Decoded::Rejected { reason, action_id } => {
                self.error(action_id.as_deref(), reason.asterisk_message()).await
            }
            Decoded::Banner(_) => Ok(()),
        }
    }
}
