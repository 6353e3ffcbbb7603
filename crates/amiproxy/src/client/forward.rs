//! Every action a logged-in client sends: the checks it passes (shutdown, rate, classes,
//! policy), then either the proxy's own answer or the hand-off to an upstream: routing,
//! Originate's rewriting, a fresh proxy ActionID, and the waiter that brings the answer
//! back (one client, or a merge of several upstreams' answers).

use super::end::{audit, End, Refusal};
use super::local::is_true;
use super::Session;
use crate::config::UserConfig;
use crate::core::State;
use crate::perms::{action_needs, Need};
use crate::routing::Route;
use crate::upstream::merge::Merge;
use crate::upstream::{ListEnd, Upstream, Waiter, Waiting};
use ami_proto::{Action, ActionName, Message};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use tokio::sync::OwnedSemaphorePermit;

/// How an action goes upstream, decided once before it is sent to one or several.
struct Outgoing {
    /// The message as it goes upstream (the proxy's routing header removed, a synchronous
    /// Originate made async).
    msg: Message,
    timeout: Duration,
    /// A synchronous Originate, answered from its OriginateResponse.
    sync_originate: bool,
    /// The broadcast event that echoes this action's ActionID (OriginateResponse of an
    /// async Originate, the UserEvent of UserEvent) gets the client's ActionID back.
    echoed: bool,
}

impl<W: AsyncWrite + Unpin> Session<W> {
    /// One action from a logged-in client.
    pub(super) async fn action(&mut self, action: Action) -> Result<(), End> {
        self.core.busy.touch();
        let Some(user) = self.user.clone() else {
            return Err(End::LoginRefused);
        };
        if let Err(refusal) = self.admit(&user, &action).await {
            return self.refuse(&user, &action, "", refusal).await;
        }
        // Ping with an explicit server header goes to that upstream: a way to check a link.
        let routed_ping =
            *action.name() == ActionName::Ping && action.message().get(self.core.server_header()).is_some();
        if action.name().is_session_local() && !routed_ping {
            return self.local(&action).await;
        }
        self.forward(&user, action).await
    }

    /// The checks every action passes before anything acts on it.
    /// The rate comes first (as before the policy), so a refused action still costs its
    /// share; with `[redis]` it is the one check that may wait, at most `redis.timeout_ms`.
    /// (`&mut self`: the session is Send, not Sync, and this future holds it.)
    async fn admit(&mut self, user: &UserConfig, action: &Action) -> Result<(), Refusal> {
        let name = action.name();
        if self.draining && *name != ActionName::Logoff {
            return Err(Refusal::Draining);
        }
        if *name != ActionName::Logoff {
            match self.core.limits.allow_action(&user.name, self.limiter.as_ref()).await {
                Ok(true) => {}
                Ok(false) => return Err(Refusal::RateLimit),
                Err(crate::limits::Unavailable) => return Err(Refusal::LimitsUnavailable),
            }
        }
        if let Need::Any(classes) = action_needs(name.lowercase()) {
            if !user.write.intersects(classes) {
                return Err(Refusal::WriteClasses);
            }
        }
        user.policy
            .check_action(user.write, action, self.core.owners.as_ref(), self.core.server_header())
            .map_err(Refusal::Policy)?;
        // `Queues` answers with raw CLI text that carries no ActionID and no `Response:`, so
        // on a shared upstream session it could not be given to the right client (Asterisk
        // 22 no longer has it either). QueueStatus and QueueSummary are the structured forms.
        if *name == ActionName::Queues {
            return Err(Refusal::QueuesUnroutable);
        }
        Ok(())
    }

    /// Audits a refusal, counts it, and answers the client.
    async fn refuse(&mut self, user: &UserConfig, action: &Action, server: &str, refusal: Refusal) -> Result<(), End> {
        audit(
            &user.name,
            self.peer,
            action.written(),
            server,
            "refused",
            &refusal.detail(),
        );
        crate::metrics::refusal(refusal.label());
        self.core.refusals.push(crate::sessions::RefusalView {
            at_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            user: user.name.clone(),
            peer: self.peer.to_string(),
            action: action.written().to_owned(),
            server: server.to_owned(),
            reason: refusal.detail().into_owned(),
        });
        self.error(action.id(), &refusal.client_message()).await
    }

    async fn forward(&mut self, user: &UserConfig, action: Action) -> Result<(), End> {
        let Ok(slot) = self.in_flight.clone().try_acquire_owned() else {
            return self.refuse(user, &action, "", Refusal::TooManyInFlight).await;
        };
        let header = self.core.server_header();
        // The routing header is the proxy's: it never reaches an upstream, and two that
        // disagree are refused rather than one of them picked.
        let m = action.message();
        let server = m.get(header).map(str::to_owned);
        if m.get_all(header).any(|s| Some(s) != server.as_deref()) {
            return self.refuse(user, &action, "", Refusal::ConflictingServers).await;
        }
        let st = self.core.state();
        let route = st.router.route(&action, server.as_deref(), self.core.owners.as_ref());
        let out = self.outgoing(&action, server.is_some(), &st);
        match route {
            Route::Fail(text) => self.refuse(user, &action, "", Refusal::NoRoute(text)).await,
            Route::One(pos) => {
                let up = &st.upstreams[pos.index()];
                match self.to_one(user, &action, up, out, slot) {
                    Ok(()) => Ok(()),
                    Err(refusal) => self.refuse(user, &action, up.name(), refusal).await,
                }
            }
            Route::All => match self.to_all(user, &action, &st, out, slot) {
                Ok(()) => Ok(()),
                Err(refusal) => self.refuse(user, &action, "all", refusal).await,
            },
        }
    }

    fn outgoing(&self, action: &Action, routed: bool, st: &State) -> Outgoing {
        let m = action.message();
        let mut msg = if routed {
            m.without_all(self.core.server_header())
        } else {
            m.clone()
        };
        let mut timeout = st.config.proxy.action_timeout;
        let originate = *action.name() == ActionName::Originate;
        // A synchronous Originate would block the upstream session every client shares
        // until the call is answered: it goes upstream as async, and is answered from its
        // OriginateResponse as Asterisk answers a synchronous one.
        let sync_originate = originate && !msg.get("Async").is_some_and(is_true);
        if sync_originate {
            msg = set_early(&msg, "Async", "true");
            let ring_ms: u64 = msg.get("Timeout").and_then(|t| t.trim().parse().ok()).unwrap_or(30_000);
            timeout += Duration::from_millis(ring_ms.min(3_600_000));
        }
        Outgoing {
            msg,
            timeout,
            sync_originate,
            echoed: (originate && !sync_originate) || *action.name() == ActionName::UserEvent,
        }
    }

    /// Sends to one upstream, through the user's account there.
    fn to_one(
        &self,
        user: &UserConfig,
        action: &Action,
        up: &Arc<Upstream>,
        out: Outgoing,
        slot: OwnedSemaphorePermit,
    ) -> Result<(), Refusal> {
        if !user.policy.server_allowed(up.name()) {
            return Err(Refusal::ServerOutOfScope);
        }
        let Some(up) = up.for_account(user.upstream_account.as_deref()) else {
            return Err(Refusal::NoUpstreamAccount);
        };
        if !up.is_connected() {
            return Err(Refusal::UpstreamDown(up.name().to_owned()));
        }
        let client_aid = action.id().map(str::to_owned);
        let tx = self.tx.for_request();
        let waiting = if out.sync_originate {
            Waiting::SyncOriginate { tx, client_aid }
        } else {
            Waiting::Client {
                tx,
                client_aid,
                sent: Instant::now(),
                list_end: ListEnd::new(action.written(), self.gen.framed_lists()),
            }
        };
        let waiter = Waiter::new(waiting, out.timeout).with_slot(slot);
        self.send_upstream(user, action, &up, &out, waiter);
        Ok(())
    }

    /// Sends to every upstream the user may reach, the answers merged into one.
    fn to_all(
        &self,
        user: &UserConfig,
        action: &Action,
        st: &State,
        out: Outgoing,
        slot: OwnedSemaphorePermit,
    ) -> Result<(), Refusal> {
        let ups: Vec<_> = st
            .upstreams
            .iter()
            .filter(|u| user.policy.server_allowed(u.name()))
            .filter_map(|u| u.for_account(user.upstream_account.as_deref()))
            .filter(|u| u.is_connected())
            .collect();
        if ups.is_empty() {
            return Err(Refusal::NoUpstreamConnected);
        }
        if out.sync_originate {
            return Err(Refusal::SyncOriginateToAll);
        }
        let client_aid = action.id().map(str::to_owned);
        let merge = Merge::new(
            self.tx.for_request(),
            client_aid.clone(),
            ups.len(),
            self.gen.framed_lists(),
            action.written(),
        )
        .with_slot(slot);
        for up in ups {
            let waiting = Waiting::Merge {
                merge: merge.clone(),
                client_aid: client_aid.clone(),
            };
            let waiter = Waiter::new(waiting, out.timeout);
            self.send_upstream(user, action, &up, &out, waiter);
        }
        audit(&user.name, self.peer, action.written(), "all", "forwarded", "");
        Ok(())
    }

    /// Hands one copy of the action to a link under a fresh proxy ActionID. A link that
    /// refuses it (stalled, shutting down) answers its waiter at once.
    fn send_upstream(&self, user: &UserConfig, action: &Action, up: &Arc<Upstream>, out: &Outgoing, waiter: Waiter) {
        let ids = &self.core.ids;
        let uaid = ids.next();
        if out.echoed {
            ids.remember_broadcast(&uaid, action.id());
        }
        let bytes = set_early(&out.msg, "ActionID", uaid.as_str()).bytes().clone();
        let single = matches!(waiter.waiting, Waiting::Client { .. } | Waiting::SyncOriginate { .. });
        match up.send(uaid, bytes, waiter) {
            Ok(()) if single => audit(&user.name, self.peer, action.written(), up.name(), "forwarded", ""),
            Ok(()) => {}
            Err(refused) => {
                if single {
                    audit(
                        &user.name,
                        self.peer,
                        action.written(),
                        up.name(),
                        "refused",
                        &refused.reason,
                    );
                }
                (*refused.waiter).fail(&refused.reason, (self.core.server_header(), up.name()));
            }
        }
    }
}

/// Sets a header the proxy adds to a client's action: in place when the client wrote it,
/// else right after `Action`. Asterisk keeps the first 128 lines of an action and answers
/// the rest with an error that echoes the ActionID only if it was among them: a line added
/// at the end of a client's 128 would be lost, and with it the answer.
fn set_early(m: &Message, key: &str, value: &str) -> Message {
    match m.get(key) {
        Some(_) => m.with_header(key, value),
        None => m.with_second(key, value),
    }
}
