//! One persistent AMI login per upstream Asterisk, and the actions in flight on it.
//!
//! - [`link`]: the connection's life (connect, login, serve, reconnect, keepalive, relearn);
//! - [`dispatch`]: each message the upstream sends, to its waiter or to the hub;
//! - [`waiter`], [`pending`]: who waits for which answer, until when;
//! - [`merge`]: one answer made of several upstreams' (an action sent to all);
//! - [`action_ids`]: the proxy's ActionIDs and the client's given back;
//! - [`context`]: what a link needs of the proxy (not the whole core).
//!
//! Every action in flight is answered exactly once: by its upstream, or with
//! `Response: Error` the moment the upstream goes away, times out or the proxy shuts down.

pub mod action_ids;
mod context;
mod dispatch;
mod link;
pub mod merge;
mod pending;
pub mod simulated;
mod waiter;

pub use action_ids::{ActionIds, ProxyActionId};
pub use context::Context;
pub use dispatch::Outbox;
pub use link::spawn;
pub use waiter::{ListEnd, Refused, Waiter, Waiting};

use crate::config::UpstreamConfig;
use crate::ids::UpstreamId;
use crate::sync::lock;
use ami_proto::{Message, MessageBuilder};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Who waits for the answer to an action sent upstream.
#[derive(Default)]
struct Link {
    writer: Option<mpsc::Sender<Bytes>>,
    pending: pending::Pending,
    /// Set when shutdown fails what is in flight ([`Upstream::fail_all`]): clients' actions
    /// are refused from then on, so none a session forwards at that very moment is left in
    /// flight with nobody to answer it.
    shutting_down: bool,
}

pub struct Upstream {
    /// Stable for the life of the link (positions change on reload; ids do not).
    pub id: UpstreamId,
    pub config: UpstreamConfig,
    /// Cancelled when a reload removes (or replaces) this upstream.
    pub stop: CancellationToken,
    events_in: metrics::Counter,
    link: Mutex<Link>,
    connected: AtomicBool,
    version: Mutex<Option<String>>,
    pub reconnects: AtomicU64,
    /// Events published from this link (for the console's rates; the metric counter cannot
    /// be read back).
    pub events_total: AtomicU64,
    /// The last keepalive Ping's round trip, in microseconds (0: none yet).
    pub rtt_us: AtomicU64,
    pub sim: Mutex<Option<simulated::Handle>>,
    /// The name events from this link are tagged with, shared by every event.
    origin: Arc<str>,
    /// What this login is for.
    pub role: LinkRole,
    /// The extra logins of this upstream, events off: the control link and one per account
    /// (empty on an extra login itself).
    pub extra: Vec<Arc<Upstream>>,
}

/// What one login to an upstream is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRole {
    /// Events on: publishes events, learns ownership, keeps the link alive, reports state.
    Main,
    /// The same account, events off: carries the actions of users without an account of
    /// their own, so an answer never queues behind the event stream on the main login.
    Control,
    /// An account with fewer classes (`[[upstream]] accounts`), events off, for the users
    /// mapped to it.
    Account(String),
}

impl Upstream {
    pub fn new(id: UpstreamId, config: UpstreamConfig) -> Upstream {
        Upstream {
            id,
            stop: CancellationToken::new(),
            events_in: crate::metrics::events_in(&config.name),
            link: Mutex::new(Link::default()),
            connected: AtomicBool::new(false),
            version: Mutex::new(None),
            reconnects: AtomicU64::new(0),
            events_total: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            sim: Mutex::new(None),
            origin: Arc::from(config.name.as_str()),
            config,
            role: LinkRole::Main,
            extra: Vec::new(),
        }
    }

    /// The main link of `config`, with its control link (unless turned off) and one extra
    /// link per account of its `accounts` (ids from `next_id`), all stopped with it.
    pub fn with_accounts(config: UpstreamConfig, mut next_id: impl FnMut() -> UpstreamId) -> Upstream {
        let mut up = Upstream::new(next_id(), config);
        let main = (up.config.username.clone(), up.config.secret.clone());
        let control = up.config.control_link.then_some((LinkRole::Control, main));
        let accounts = up.config.accounts.iter().map(|a| {
            (
                LinkRole::Account(a.name.clone()),
                (a.username.clone(), a.secret.clone()),
            )
        });
        up.extra = control
            .into_iter()
            .chain(accounts)
            .map(|(role, (username, secret))| {
                let cfg = UpstreamConfig {
                    username,
                    secret,
                    accounts: Vec::new(),
                    ..up.config.clone()
                };
                let mut link = Upstream::new(next_id(), cfg);
                link.role = role;
                link.stop = up.stop.child_token();
                Arc::new(link)
            })
            .collect();
        up
    }

    /// The link that carries the actions of a user mapped to `account`; None (no account):
    /// the control link while it is up, else this one. None when this upstream has no such
    /// account: never the all-class login instead.
    pub fn for_account(self: &Arc<Self>, account: Option<&str>) -> Option<Arc<Upstream>> {
        match account {
            None => Some(
                self.extra
                    .iter()
                    .find(|l| l.role == LinkRole::Control && l.is_connected())
                    .unwrap_or(self)
                    .clone(),
            ),
            Some(name) => self
                .extra
                .iter()
                .find(|l| matches!(&l.role, LinkRole::Account(a) if a == name))
                .cloned(),
        }
    }

    /// The main link: publishes events, learns ownership, reports its state.
    fn is_main(&self) -> bool {
        self.role == LinkRole::Main
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
    pub fn send(&self, aid: ProxyActionId, bytes: Bytes, waiter: Waiter) -> Result<(), Refused> {
        let mut link = self.link();
        if link.shutting_down && !matches!(waiter.waiting, Waiting::Internal { .. }) {
            return Err(Refused {
                waiter: Box::new(waiter),
                reason: "Proxy is shutting down".into(),
            });
        }
        // The cap is the clients': the proxy's own few actions (keepalive, relearn) always
        // go, or a link full of ringing Originates would fail its own keepalive.
        let internal = matches!(waiter.waiting, Waiting::Internal { .. });
        let reason = match &link.writer {
            None => Some("is not connected"),
            Some(_) if !internal && link.pending.len() >= self.config.max_in_flight => {
                Some("has too many actions in flight")
            }
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

    /// Sends an action of the proxy's own and waits for its final message: a response, or
    /// the event that ends its list. The waiter's deadline bounds the wait (a list's moves
    /// on with each item, so a long list is read to its end); None when it passed, or the
    /// link went, first.
    async fn internal(&self, ctx: &Context, action: MessageBuilder, timeout: Duration) -> Option<Message> {
        let aid = ctx.ids.next();
        let bytes = action.header("ActionID", aid.as_str()).into_bytes();
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter::new(Waiting::Internal { tx: Some(tx) }, timeout);
        self.send(aid, bytes, waiter).ok()?;
        rx.await.ok()
    }

    /// Actions sent and not yet fully answered.
    pub fn in_flight(&self) -> usize {
        self.link().pending.len() + self.extra.iter().map(|a| a.in_flight()).sum::<usize>()
    }

    /// Answers everything in flight with an error (shutdown), keeping the link; clients'
    /// actions are refused from then on (a session may be forwarding one right now, before
    /// it has seen the shutdown).
    pub fn fail_all(&self, ctx: &Context, message: &str) {
        let pending = {
            let mut link = self.link();
            link.shutting_down = true;
            link.pending.take_all()
        };
        fail_each(ctx, self.name(), pending, message);
        for a in &self.extra {
            a.fail_all(ctx, message);
        }
    }

    /// Fails everything in flight (the upstream is gone) and stops taking actions.
    fn disconnected(&self, ctx: &Context, reason: &str) {
        let pending = {
            let mut link = self.link();
            link.writer = None;
            self.connected.store(false, Ordering::Release);
            link.pending.take_all()
        };
        let msg = format!("Upstream server {} disconnected: {reason}", self.name());
        fail_each(ctx, self.name(), pending, &msg);
        ctx.owners.forget_upstream(self.id);
        // Synchronous Originates waiting on the extra links stay until their own deadline:
        // Asterisk has queued their calls, and a main login back before a call's outcome
        // (a short drop) receives its OriginateResponse; an outcome that came while no main
        // login was there is lost, and that Originate times out. Failing them all now would
        // tell clients whose phones ring that their calls failed, and invite second calls.
    }

    /// Answers actions whose upstream did not reply in time.
    fn expire(&self, ctx: &Context, now: Instant) {
        let expired = self.link().pending.expired(now);
        if expired.is_empty() {
            return;
        }
        let msg = format!("Timeout waiting for response from upstream server {}", self.name());
        fail_each(ctx, self.name(), expired, &msg);
    }
}

/// Answers waiters that will get no answer, and forgets their broadcast ActionIDs (the
/// event that would have carried one is not coming to anyone's client).
fn fail_each(ctx: &Context, server: &str, waiters: Vec<(ProxyActionId, Waiter)>, message: &str) {
    for (aid, w) in waiters {
        ctx.ids.forget_broadcast(aid.as_str());
        w.fail(message, (ctx.server_header(), server));
    }
}
