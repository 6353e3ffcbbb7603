//! One persistent AMI login per upstream Asterisk.
//!
//! The link reconnects forever with capped exponential backoff and jitter, pings to find a
//! dead peer, relearns channel ownership on every (re)connect, and answers every action in
//! flight with `Response: Error` the moment the upstream goes away.

mod pending;
pub mod simulated;

use crate::client_tx::ClientTx;
use crate::config::{UpstreamConfig, UpstreamTarget};
use crate::core::{restore_aid, Core};
use crate::error::ProxyError;
use crate::hub::{self, Hub};
use crate::merge::Merge;
use crate::sync::lock;
use ami_proto::{AmiDecoder, Decoded, Kind, Message, MessageBuilder, Role};
use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

/// Actions queued for one upstream's socket before it counts as stalled.
const WRITE_QUEUE: usize = 65_536;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Who waits for the answer to an action sent upstream.
pub enum Waiting {
    /// One client; the answer gets its own ActionID back.
    Client {
        tx: ClientTx,
        client_aid: Option<String>,
        /// When the action went upstream, for the latency histogram.
        sent: Instant,
        /// How to end its list if the upstream cannot.
        list_end: ListEnd,
    },
    /// One part of a list (or action) fanned out to several upstreams.
    Merge { merge: Merge, client_aid: Option<String> },
    /// A synchronous Originate, sent upstream with `Async: true`: Asterisk runs one action
    /// at a time per manager session, and a synchronous Originate would block the session
    /// every client shares until the call is answered. The client's answer is made from the
    /// `OriginateResponse`, as Asterisk words it for a synchronous Originate.
    SyncOriginate { tx: ClientTx, client_aid: Option<String> },
    /// The proxy itself (keepalive, ownership relearning): the final message, nothing else.
    Internal { tx: Option<oneshot::Sender<Message>> },
}

/// How to end a list for its client when the upstream cannot (it died or timed out
/// halfway): a client library waiting for the `...Complete` must not wait forever.
pub struct ListEnd {
    /// `<Action>Complete`.
    complete: String,
    /// The client's generation frames lists (`EventList`, `ListItems`).
    framed: bool,
    /// Items delivered so far.
    items: u64,
}

impl ListEnd {
    pub fn new(action: &str, framed: bool) -> ListEnd {
        ListEnd {
            complete: format!("{action}Complete"),
            framed,
            items: 0,
        }
    }

    /// The `...Complete` of a list cut short, saying why in `ProxyIncomplete`.
    fn cut_short(&self, client_aid: Option<&str>, reason: &str) -> Message {
        let b = MessageBuilder::event(&self.complete).header_opt("ActionID", client_aid);
        let b = if self.framed {
            b.header("EventList", "Complete")
                .header("ListItems", &self.items.to_string())
        } else {
            b
        };
        b.header("ProxyIncomplete", reason).build()
    }
}

/// Whether an answer continues as a list, and how that list is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListState {
    No,
    /// `EventList: start` (Asterisk 13 and later): ends with `EventList: Complete`.
    Framed,
    /// Before Asterisk 13: ends with the `...Complete` event (or, for DBGet, its one item).
    Legacy,
}

pub struct Waiter {
    pub waiting: Waiting,
    list: ListState,
    deadline: Instant,
    /// Broadcast events that follow from this action but arrived (on the main link) before
    /// its answer (on an account link): published once the answer is on its way, so a
    /// client still sees the answer first, as from one Asterisk session.
    held: Option<Box<Held>>,
    /// The sending session's in-flight slot, freed with the waiter.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Events held for a waiter, and where to publish them.
struct Held {
    events: Vec<Message>,
    hub: Hub,
    origin: Arc<str>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            for m in held.events {
                held.hub.publish_from(m, held.origin.clone());
            }
        }
    }
}

impl Waiter {
    pub fn new(waiting: Waiting, timeout: Duration) -> Waiter {
        Waiter {
            waiting,
            list: ListState::No,
            deadline: Instant::now() + timeout,
            held: None,
            _slot: None,
        }
    }

    /// Holds one of the sending session's in-flight slots until the action is answered.
    pub fn with_slot(mut self, slot: tokio::sync::OwnedSemaphorePermit) -> Waiter {
        self._slot = Some(slot);
        self
    }

    /// Answers a waiter that will get no answer from the upstream, tagged with that
    /// upstream's name (`origin`: the server header and the name), so a client that
    /// dispatches by server sees which box failed.
    pub fn fail(mut self, message: &str, origin: (&str, &str)) {
        let (header, server) = origin;
        let waiting = std::mem::replace(&mut self.waiting, Waiting::Internal { tx: None });
        match waiting {
            // A list the client has seen start gets its end, not a second response.
            Waiting::Client {
                tx,
                client_aid,
                list_end,
                ..
            } if self.list != ListState::No => {
                tx.try_send(
                    list_end
                        .cut_short(client_aid.as_deref(), message)
                        .with_only(header, server),
                );
            }
            Waiting::Client { tx, client_aid, .. } | Waiting::SyncOriginate { tx, client_aid } => {
                tx.try_send(MessageBuilder::error(client_aid.as_deref(), message).with_only(header, server));
            }
            Waiting::Merge { merge, .. } => merge.abandon(message),
            Waiting::Internal { .. } => {}
        }
    }
}

#[derive(Default)]
struct Link {
    writer: Option<mpsc::Sender<Bytes>>,
    pending: pending::Pending,
    /// Set when shutdown fails what is in flight ([`Upstream::fail_all`]): clients' actions
    /// are refused from then on, so none a session forwards at that very moment is left in
    /// flight with nobody to answer it.
    shutting_down: bool,
}

/// Why an action could not be queued on a link; its waiter comes back to be answered.
pub struct Refused {
    pub waiter: Box<Waiter>,
    pub reason: String,
}

pub struct Upstream {
    /// Stable for the life of the link (positions change on reload; ids do not).
    pub id: usize,
    pub config: UpstreamConfig,
    /// Cancelled when a reload removes (or replaces) this upstream.
    pub stop: CancellationToken,
    events_in: metrics::Counter,
    link: Mutex<Link>,
    connected: AtomicBool,
    version: Mutex<Option<String>>,
    pub reconnects: AtomicU64,
    pub sim: Mutex<Option<simulated::Handle>>,
    /// The name events from this link are tagged with, shared by every event.
    origin: Arc<str>,
    /// Set on the extra login of an upstream account (`[[upstream]] accounts`): it carries
    /// the actions of the users mapped to it, with events off; the main link does the rest.
    pub account: Option<String>,
    /// The extra logins of this upstream's accounts (empty on an account link).
    pub accounts: Vec<Arc<Upstream>>,
}

impl Upstream {
    pub fn new(id: usize, config: UpstreamConfig) -> Upstream {
        Upstream {
            id,
            stop: CancellationToken::new(),
            events_in: crate::metrics::events_in(&config.name),
            link: Mutex::new(Link::default()),
            connected: AtomicBool::new(false),
            version: Mutex::new(None),
            reconnects: AtomicU64::new(0),
            sim: Mutex::new(None),
            origin: Arc::from(config.name.as_str()),
            config,
            account: None,
            accounts: Vec::new(),
        }
    }

    /// The main link of `config`, with one extra link per account of its `accounts`
    /// (ids from `next_id`), stopped with it.
    pub fn with_accounts(config: UpstreamConfig, mut next_id: impl FnMut() -> usize) -> Upstream {
        let mut up = Upstream::new(next_id(), config);
        up.accounts = up
            .config
            .accounts
            .iter()
            .map(|a| {
                let cfg = UpstreamConfig {
                    username: a.username.clone(),
                    secret: a.secret.clone(),
                    accounts: Vec::new(),
                    ..up.config.clone()
                };
                let mut link = Upstream::new(next_id(), cfg);
                link.account = Some(a.name.clone());
                link.stop = up.stop.child_token();
                Arc::new(link)
            })
            .collect();
        up
    }

    /// The link that carries the actions of a user mapped to `account` (None: this one).
    /// None when this upstream has no such account: never the all-class login instead.
    pub fn for_account(self: &Arc<Self>, account: Option<&str>) -> Option<Arc<Upstream>> {
        match account {
            None => Some(self.clone()),
            Some(name) => self
                .accounts
                .iter()
                .find(|a| a.account.as_deref() == Some(name))
                .cloned(),
        }
    }

    /// The main link: publishes events, learns ownership, reports its state.
    fn is_main(&self) -> bool {
        self.account.is_none()
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub fn version(&self) -> Option<String> {
        lock(&self.version).clone()
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        lock(&self.link)
    }

    /// Queues an action (already carrying `aid`) and registers who waits for its answer.
    /// Gives the waiter back (boxed: the error path is the rare one) if the upstream is down
    /// or stalled.
    pub fn send(&self, aid: String, bytes: Bytes, waiter: Waiter) -> Result<(), Refused> {
        let mut link = self.link();
        if link.shutting_down && !matches!(waiter.waiting, Waiting::Internal { .. }) {
            return Err(Refused {
                waiter: Box::new(waiter),
                reason: "Proxy is shutting down".into(),
            });
        }
        let reason = match &link.writer {
            None => Some("is not connected"),
            Some(_) if link.pending.len() >= self.config.max_in_flight => Some("has too many actions in flight"),
            Some(writer) => writer.try_send(bytes).err().map(|_| "is not connected"),
        };
        if let Some(reason) = reason {
            return Err(Refused {
                waiter: Box::new(waiter),
                reason: format!("Upstream server {} {reason}", self.name()),
            });
        }
        link.pending.insert(aid, waiter);
        Ok(())
    }

    /// Sends an action of the proxy's own and waits for its final message.
    async fn internal(&self, core: &Core, action: MessageBuilder, timeout: Duration) -> Option<Message> {
        let aid = core.next_action_id();
        let bytes = action.header("ActionID", &aid).into_bytes();
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter::new(Waiting::Internal { tx: Some(tx) }, timeout);
        self.send(aid, bytes, waiter).ok()?;
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }

    /// Handles one message from the upstream. Anything that is neither a response nor an
    /// event means the stream can no longer be trusted (garbage, a desynchronised peer): the
    /// link is dropped and made anew.
    fn dispatch(&self, core: &Core, msg: Message) -> Result<(), String> {
        match msg.kind() {
            Kind::Response => self.on_response(core, msg),
            Kind::Event => self.on_event(core, msg),
            _ => return Err("protocol error: a message that is neither a response nor an event".into()),
        }
        Ok(())
    }

    fn on_response(&self, core: &Core, msg: Message) {
        let Some(aid) = msg.action_id().map(str::to_owned) else {
            return;
        };
        let mut link = self.link();
        let Some(waiter) = link.pending.get_mut(&aid) else {
            debug!(server = self.name(), action_id = %aid, "response nobody waits for");
            return;
        };
        let list = list_state(&msg);
        let refused = msg.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Error"));
        let header = core.server_header();
        let keep = match &mut waiter.waiting {
            Waiting::Client {
                tx, client_aid, sent, ..
            } => {
                crate::metrics::upstream_latency(self.name(), sent.elapsed().as_secs_f64());
                tx.try_send(restore_aid(msg, client_aid.as_deref()).with_only(header, self.name()));
                list != ListState::No
            }
            Waiting::Merge { merge, client_aid } => {
                let m = restore_aid(msg, client_aid.as_deref()).with_only(header, self.name());
                merge.response(m, list != ListState::No)
            }
            Waiting::SyncOriginate { tx, client_aid } => {
                if msg.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success")) {
                    // Queued: the answer comes with the OriginateResponse.
                    true
                } else {
                    tx.try_send(restore_aid(msg, client_aid.as_deref()).with_only(header, self.name()));
                    false
                }
            }
            Waiting::Internal { tx } => {
                if list == ListState::No {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(msg);
                    }
                }
                list != ListState::No
            }
        };
        if keep {
            waiter.list = list;
            // A list gets the action timeout again for its items; a queued synchronous
            // Originate keeps its deadline, which counts the call's ringing time.
            if list != ListState::No {
                link.pending.extend(&aid, core.config().proxy.action_timeout);
            }
        } else {
            link.pending.remove(&aid);
        }
        drop(link);
        // A refused action has no broadcast event to come (an async Originate refused
        // outright): its ActionID need not be remembered.
        if refused {
            core.forget_broadcast_aid(&aid);
        }
    }

    fn on_event(&self, core: &Core, msg: Message) {
        let name = msg.get("Event").unwrap_or("");
        if let Some(aid) = msg.action_id() {
            // Broadcast events reach the main link only (account links have events off): the
            // Originate it answers may wait on one of the accounts' links.
            if name.eq_ignore_ascii_case("OriginateResponse")
                && (self.finish_sync_originate(core, aid, &msg)
                    || self.accounts.iter().any(|a| a.finish_sync_originate(core, aid, &msg)))
            {
                return;
            }
            let mut link = self.link();
            if let Some(waiter) = link.pending.get_mut(aid) {
                let aid = aid.to_owned();
                if !matches!(waiter.waiting, Waiting::SyncOriginate { .. }) && waiter.list != ListState::No {
                    if name.eq_ignore_ascii_case("CoreShowChannel") {
                        core.owners.learn_listed(self.id, &msg);
                    }
                    let done = ends_list(&msg, name, waiter.list);
                    let header = core.server_header();
                    match &mut waiter.waiting {
                        Waiting::Client {
                            tx,
                            client_aid,
                            list_end,
                            ..
                        } => {
                            if !done {
                                list_end.items += 1;
                            }
                            tx.try_send(restore_aid(msg.clone(), client_aid.as_deref()).with_only(header, self.name()));
                        }
                        Waiting::Merge { merge, client_aid } => {
                            let m = restore_aid(msg.clone(), client_aid.as_deref());
                            if done && names_complete(name) {
                                merge.complete(m);
                            } else {
                                merge.item(m.with_only(header, self.name()));
                                if done {
                                    merge.abandon("");
                                }
                            }
                        }
                        Waiting::Internal { tx } => {
                            if done {
                                if let Some(tx) = tx.take() {
                                    let _ = tx.send(msg.clone());
                                }
                            }
                        }
                        Waiting::SyncOriginate { .. } => {}
                    }
                    if done {
                        link.pending.remove(&aid);
                    } else {
                        link.pending.extend(&aid, core.config().proxy.action_timeout);
                    }
                    return;
                }
            }
        }
        if !self.is_main() {
            return;
        }
        self.events_in.increment(1);
        core.owners.learn(self.id, name, &msg);
        // The proxy's ActionID, when the event follows from an action of ours.
        let raw_aid = msg
            .action_id()
            .filter(|a| a.starts_with(crate::core::ACTION_ID_PREFIX))
            .map(str::to_owned);
        let msg = match msg.action_id() {
            Some(aid) if aid.starts_with(crate::core::ACTION_ID_PREFIX) => {
                // One of ours: give it back to its client, or drop it (e.g. a list item that
                // arrives after its action timed out must not reach everyone).
                match core.restore_broadcast_aid(name, &msg) {
                    Some(m) => m,
                    None => {
                        debug!(
                            server = self.name(),
                            event = name,
                            "dropping an event for a finished action"
                        );
                        return;
                    }
                }
            }
            _ => msg,
        };
        let mut event = Some(msg.with_only(core.server_header(), self.name()));
        if let Some(aid) = raw_aid.as_deref() {
            for account in &self.accounts {
                event = event.and_then(|e| account.hold(aid, e, &core.hub));
            }
        }
        if let Some(event) = event {
            core.hub.publish_from(event, self.origin.clone());
        }
    }

    /// Answers the synchronous Originate waiting on this link for `aid`, from its
    /// OriginateResponse. False when none waits here.
    fn finish_sync_originate(&self, core: &Core, aid: &str, msg: &Message) -> bool {
        let mut link = self.link();
        let Some(Waiting::SyncOriginate { tx, client_aid }) = link.pending.get_mut(aid).map(|w| &w.waiting) else {
            return false;
        };
        let ok = msg.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success"));
        let answer = if ok {
            MessageBuilder::success(client_aid.as_deref(), "Originate successfully queued")
        } else {
            MessageBuilder::error(client_aid.as_deref(), "Originate failed")
        };
        tx.try_send(answer.with_only(core.server_header(), self.name()));
        link.pending.remove(aid);
        // A synchronous Originate has no OriginateResponse event in Asterisk.
        true
    }

    /// Keeps `event` (a broadcast event that follows from the action `aid`) until that
    /// action's answer has gone to its client, when the action waits on this link; gives
    /// it back otherwise.
    fn hold(&self, aid: &str, event: Message, hub: &Hub) -> Option<Message> {
        let mut link = self.link();
        match link.pending.get_mut(aid) {
            Some(w) => {
                w.held
                    .get_or_insert_with(|| {
                        Box::new(Held {
                            events: Vec::new(),
                            hub: hub.clone(),
                            origin: self.origin.clone(),
                        })
                    })
                    .events
                    .push(event);
                None
            }
            None => Some(event),
        }
    }

    /// Actions sent and not yet fully answered.
    pub fn in_flight(&self) -> usize {
        self.link().pending.len() + self.accounts.iter().map(|a| a.in_flight()).sum::<usize>()
    }

    /// Answers everything in flight with an error (shutdown), keeping the link; clients'
    /// actions are refused from then on (a session may be forwarding one right now, before
    /// it has seen the shutdown).
    pub fn fail_all(&self, core: &Core, message: &str) {
        let pending = {
            let mut link = self.link();
            link.shutting_down = true;
            link.pending.take_all()
        };
        fail_each(core, self.name(), pending, message);
        for a in &self.accounts {
            a.fail_all(core, message);
        }
    }

    /// Fails everything in flight (the upstream is gone) and stops taking actions.
    fn disconnected(&self, core: &Core, reason: &str) {
        let pending = {
            let mut link = self.link();
            link.writer = None;
            self.connected.store(false, Ordering::Release);
            link.pending.take_all()
        };
        let msg = format!("Upstream server {} disconnected: {reason}", self.name());
        fail_each(core, self.name(), pending, &msg);
        core.owners.forget_upstream(self.id);
    }

    /// Answers actions whose upstream did not reply in time.
    fn expire(&self, core: &Core, now: Instant) {
        let expired = self.link().pending.expired(now);
        if expired.is_empty() {
            return;
        }
        let msg = format!("Timeout waiting for response from upstream server {}", self.name());
        fail_each(core, self.name(), expired, &msg);
    }
}

/// Answers waiters that will get no answer, and forgets their broadcast ActionIDs (the
/// event that would have carried one is not coming to anyone's client).
fn fail_each(core: &Core, server: &str, waiters: Vec<(String, Waiter)>, message: &str) {
    for (aid, w) in waiters {
        core.forget_broadcast_aid(&aid);
        w.fail(message, (core.server_header(), server));
    }
}

/// Whether a response opens a list: `EventList: start`, or, before Asterisk 13, a success
/// whose message says the items "will follow".
fn list_state(msg: &Message) -> ListState {
    if !msg.get("Response").is_some_and(|v| v.eq_ignore_ascii_case("Success")) {
        ListState::No
    } else if msg.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("start")) {
        ListState::Framed
    } else if msg
        .get("Message")
        .is_some_and(|m| m.to_ascii_lowercase().contains("will follow"))
    {
        ListState::Legacy
    } else {
        ListState::No
    }
}

/// An event named `...Complete`: every generation names a list's last event so.
fn names_complete(name: &str) -> bool {
    name.len() > 8 && name.as_bytes()[name.len() - 8..].eq_ignore_ascii_case(b"Complete")
}

/// Whether an event closes a list: `EventList: Complete` or a `...Complete` event.
pub(crate) fn closes_list(msg: &Message, name: &str) -> bool {
    msg.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete")) || names_complete(name)
}

/// Whether a list item closes its list; before Asterisk 13, DBGet's list is its one
/// `DBGetResponse`, with nothing after it.
fn ends_list(msg: &Message, name: &str, list: ListState) -> bool {
    closes_list(msg, name) || (list == ListState::Legacy && name.eq_ignore_ascii_case("DBGetResponse"))
}

/// Starts the link of `up` and those of its accounts, each reconnecting on its own until
/// `up.stop` is cancelled.
pub fn spawn(core: &Arc<Core>, up: &Arc<Upstream>) {
    tokio::spawn(run(core.clone(), up.clone()));
    for account in &up.accounts {
        tokio::spawn(run(core.clone(), account.clone()));
    }
}

/// Runs one upstream link until a reload removes it.
pub async fn run(core: Arc<Core>, up: Arc<Upstream>) {
    let span = match &up.account {
        None => tracing::info_span!("upstream", server = %up.name()),
        Some(a) => tracing::info_span!("upstream", server = %up.name(), account = %a),
    };
    async move {
        let address = match resolve_target(&up).await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "cannot start upstream");
                return;
            }
        };
        // Answers actions whose upstream stays silent, for the life of the proxy.
        let (sweeper_core, sweeper_up) = (core.clone(), up.clone());
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = t.tick() => sweeper_up.expire(&sweeper_core, Instant::now()),
                    _ = sweeper_up.stop.cancelled() => return,
                }
            }
        });
        if up.is_main() {
            crate::metrics::upstream_up(up.name(), false);
        }
        let mut failures: u32 = 0;
        loop {
            let result = tokio::select! {
                r = session(&core, &up, &address) => r,
                _ = up.stop.cancelled() => break,
            };
            match result {
                Ok(()) => failures = 0,
                Err(e) => {
                    if failures == 0 {
                        warn!(error = %e, "upstream unavailable");
                    } else {
                        debug!(error = %e, "upstream still unavailable");
                    }
                }
            }
            failures = failures.saturating_add(1);
            let delay = backoff(up.config.reconnect_min, up.config.reconnect_max, failures);
            debug!(?delay, "reconnecting after backoff");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = up.stop.cancelled() => break,
            }
        }
        // Removed by a reload: answer what is in flight, tell the clients, stop the sim.
        let was_up = up.is_connected();
        up.disconnected(&core, "removed from the configuration");
        if up.is_main() {
            crate::metrics::upstream_up(up.name(), false);
        }
        if was_up && up.is_main() {
            let ev = hub::upstream_status(
                core.server_header(),
                up.name(),
                "Disconnected",
                Some("removed from the configuration"),
            );
            core.hub.publish_from(ev, up.origin.clone());
        }
        let sim = lock(&up.sim).take();
        if let Some(sim) = sim {
            simulated::stop(sim).await;
        }
        info!("upstream removed");
    }
    .instrument(span)
    .await
}

/// Capped exponential backoff with jitter (half to full of the capped delay).
fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let exp = min.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(max);
    capped.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

async fn resolve_target(up: &Upstream) -> Result<String, ProxyError> {
    match &up.config.target {
        UpstreamTarget::Asterisk { address, .. } => Ok(address.clone()),
        UpstreamTarget::Simulated(s) => {
            let (addr, handle) = simulated::start(up.name(), s).await?;
            info!(%addr, "simulated Asterisk started in-process");
            *lock(&up.sim) = Some(handle);
            Ok(addr)
        }
    }
}

async fn connect(up: &Upstream, address: &str) -> Result<Box<dyn Io>, ProxyError> {
    let err = |reason: String| ProxyError::Upstream {
        server: up.name().to_owned(),
        reason,
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| err(format!("connect to {address} timed out")))?
        .map_err(|e| err(format!("connect to {address}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    match &up.config.target {
        UpstreamTarget::Asterisk { tls: Some(tls), .. } => {
            let cfg = crate::tls::client_config(tls)?;
            let host = tls.server_name.clone().unwrap_or_else(|| {
                address
                    .rsplit_once(':')
                    .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
                    .unwrap_or_default()
            });
            let name = crate::tls::server_name(&host)?;
            let stream = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| err(format!("tls handshake with {address}: {e}")))?;
            Ok(Box::new(stream))
        }
        _ => Ok(Box::new(tcp)),
    }
}

/// One connection: connect, log in, serve until it fails. Ok(()) when it was up at all.
async fn session(core: &Arc<Core>, up: &Arc<Upstream>, address: &str) -> Result<(), ProxyError> {
    let err = |reason: String| ProxyError::Upstream {
        server: up.name().to_owned(),
        reason,
    };
    let io = connect(up, address).await?;
    let (rd, wr) = tokio::io::split(io);
    let mut frames = FramedRead::with_capacity(rd, AmiDecoder::new(Role::Upstream), 64 * 1024);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);

    // Banner, then our login.
    let banner = match tokio::time::timeout(CONNECT_TIMEOUT, frames.next()).await {
        Ok(Some(Ok(Decoded::Banner(b)))) => b,
        Ok(Some(Ok(_))) => return Err(err("no banner".into())),
        Ok(Some(Err(e))) => return Err(err(format!("reading banner: {e}"))),
        Ok(None) => return Err(err("closed before the banner".into())),
        Err(_) => return Err(err("no banner in time".into())),
    };
    let version = banner
        .strip_prefix(ami_proto::BANNER_PREFIX)
        .unwrap_or(&banner)
        .trim()
        .to_owned();
    let login_aid = core.next_action_id();
    let login = MessageBuilder::action("Login")
        .header("ActionID", &login_aid)
        .header("Username", &up.config.username)
        .header("Secret", &up.config.secret)
        .header("Events", if up.is_main() { "on" } else { "off" })
        .into_bytes();
    wr.write_all(&login).await?;
    wr.flush().await?;
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, frames.next())
            .await
            .map_err(|_| err("no answer to login in time".into()))?;
        match frame {
            Some(Ok(Decoded::Message(m))) if m.kind() == Kind::Response && m.action_id() == Some(&login_aid) => {
                if m.get("Response").is_some_and(|r| r.eq_ignore_ascii_case("Success")) {
                    break;
                }
                return Err(err(format!(
                    "login refused: {}",
                    m.get("Message").unwrap_or("no reason given")
                )));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(err(format!("during login: {e}"))),
            None => return Err(err("closed during login".into())),
        }
    }

    // Up: open the write queue, announce, relearn channel ownership.
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let mut writer = tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            wr.write_all(&b).await?;
            if wrx.is_empty() {
                wr.flush().await?;
            }
        }
        Ok::<(), std::io::Error>(())
    });
    {
        let mut link = up.link();
        link.writer = Some(wtx);
        up.connected.store(true, Ordering::Release);
    }
    *lock(&up.version) = Some(version.clone());
    up.reconnects.fetch_add(1, Ordering::Relaxed);
    info!(%address, %version, "upstream connected");
    if up.is_main() {
        crate::metrics::upstream_connects(up.name());
        crate::metrics::upstream_up(up.name(), true);
        core.hub.publish_from(
            hub::upstream_status(core.server_header(), up.name(), "Connected", None),
            up.origin.clone(),
        );
        relearn(core, up);
    }

    let reason = serve(core, up, &mut frames, &mut writer).await;
    writer.abort();
    warn!(%reason, "upstream disconnected");
    up.disconnected(core, &reason);
    if up.is_main() {
        crate::metrics::upstream_up(up.name(), false);
        core.hub.publish_from(
            hub::upstream_status(core.server_header(), up.name(), "Disconnected", Some(&reason)),
            up.origin.clone(),
        );
    }
    Ok(())
}

/// Asks for every channel, so ownership is learned again after a (re)connect.
/// Relearns at once, then every `ownership_refresh` while this connection lasts, so the
/// index converges to the upstream's channels even after a missed Hangup.
fn relearn(core: &Arc<Core>, up: &Arc<Upstream>) {
    let (core, up) = (core.clone(), up.clone());
    let epoch = up.reconnects.load(Ordering::Relaxed);
    tokio::spawn(async move {
        loop {
            let timeout = core.config().proxy.action_timeout;
            core.owners.begin_relearn(up.id);
            let complete = up
                .internal(&core, MessageBuilder::action("CoreShowChannels"), timeout)
                .await
                .is_some();
            core.owners.end_relearn(up.id, complete);
            if !complete {
                debug!(server = up.name(), "could not relearn channels");
            }
            tokio::select! {
                _ = tokio::time::sleep(up.config.ownership_refresh) => {}
                _ = up.stop.cancelled() => return,
            }
            if !up.is_connected() || up.reconnects.load(Ordering::Relaxed) != epoch {
                return;
            }
        }
    });
}

type Frames = FramedRead<tokio::io::ReadHalf<Box<dyn Io>>, AmiDecoder>;

/// Reads until the connection fails; returns why.
async fn serve(
    core: &Arc<Core>,
    up: &Arc<Upstream>,
    frames: &mut Frames,
    writer: &mut tokio::task::JoinHandle<std::io::Result<()>>,
) -> String {
    // Any frame proves the upstream alive; a Ping each interval makes sure frames come.
    let mut ping = tokio::time::interval(up.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_seen = Instant::now();
    let allowed_silence = up.config.ping_interval + up.config.ping_timeout;
    loop {
        tokio::select! {
            frame = frames.next() => {
                last_seen = Instant::now();
                match frame {
                    Some(Ok(Decoded::Message(m))) => {
                        if let Err(reason) = up.dispatch(core, m) {
                            return reason;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return format!("read error: {e}"),
                    None => return "connection closed by upstream".into(),
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > allowed_silence {
                    return "keepalive ping timed out".into();
                }
                let aid = core.next_action_id();
                let bytes = MessageBuilder::action("Ping").header("ActionID", &aid).into_bytes();
                if up.send(aid, bytes, Waiter::new(Waiting::Internal { tx: None }, up.config.ping_timeout)).is_err() {
                    return "write queue full".into();
                }
            }
            res = &mut *writer => return match res {
                Ok(Ok(())) => "writer closed".into(),
                Ok(Err(e)) => format!("write error: {e}"),
                Err(e) => format!("writer failed: {e}"),
            },
        }
    }
}
