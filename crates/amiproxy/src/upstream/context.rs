//! What an upstream link needs of the proxy, and nothing more: the hub it publishes to,
//! the ownership index it teaches, the ActionIDs it answers under, the tag header, and the
//! action timeout. The core hands links this, not itself, so links and core never import
//! each other.

use super::action_ids::ActionIds;
use crate::busy_poll::BusyPoll;
use crate::hub::Hub;
use crate::routing::Owners;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Context {
    pub hub: Hub,
    pub owners: Arc<Owners>,
    pub ids: Arc<ActionIds>,
    /// Kept awake while actions are answered.
    pub busy: Arc<BusyPoll>,
    /// The tag header name (fixed at start-up: clients and rules depend on it).
    server_header: Box<str>,
    /// `proxy.action_timeout` in milliseconds (reloadable).
    action_timeout_ms: AtomicU64,
}

impl Context {
    pub fn new(
        hub: Hub,
        owners: Arc<Owners>,
        ids: Arc<ActionIds>,
        busy: Arc<BusyPoll>,
        server_header: &str,
        action_timeout: Duration,
    ) -> Context {
        let ctx = Context {
            hub,
            owners,
            ids,
            busy,
            server_header: server_header.into(),
            action_timeout_ms: AtomicU64::new(0),
        };
        ctx.set_action_timeout(action_timeout);
        ctx
    }

    pub fn server_header(&self) -> &str {
        &self.server_header
    }

    pub fn action_timeout(&self) -> Duration {
        Duration::from_millis(self.action_timeout_ms.load(Ordering::Relaxed))
    }

    /// A reload changed `proxy.action_timeout`.
    pub fn set_action_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.action_timeout_ms.store(ms, Ordering::Relaxed);
    }
}
