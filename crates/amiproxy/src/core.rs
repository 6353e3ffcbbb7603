//! State shared by every session and upstream link.

use crate::config::Config;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::router::{Owners, Router};
use crate::upstream::Upstream;
use ami_proto::Message;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How long the ActionID of an async Originate or UserEvent is remembered, so the broadcast
/// event that carries it can be given back the client's own ActionID.
const BROADCAST_AID_TTL: Duration = Duration::from_secs(600);

pub struct Core {
    pub config: Config,
    pub router: Router,
    pub owners: Owners,
    pub hub: Hub,
    pub upstreams: Vec<Arc<Upstream>>,
    /// Upstream ActionID → the client's own (or none) for broadcast events that echo it.
    broadcast_aids: DashMap<String, (Option<String>, Instant)>,
    next_aid: AtomicU64,
    pub started: Instant,
    /// Unauthenticated connections (Asterisk's `authlimit`).
    pub unauth: Arc<Semaphore>,
    pub limits: Limits,
}

impl Core {
    pub fn new(config: Config) -> Arc<Core> {
        let router = Router::new(&config);
        let hub = Hub::new(config.proxy.event_buffer);
        let upstreams = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| Arc::new(Upstream::new(i, u.clone())))
            .collect();
        let unauth = Arc::new(Semaphore::new(config.proxy.auth_limit));
        let limits = Limits::new(&config.limits, &config.users);
        Arc::new(Core {
            config,
            router,
            owners: Owners::default(),
            hub,
            upstreams,
            broadcast_aids: DashMap::new(),
            next_aid: AtomicU64::new(1),
            started: Instant::now(),
            unauth,
            limits,
        })
    }

    /// A fresh upstream ActionID, unique for the life of the proxy.
    pub fn next_action_id(&self) -> String {
        format!("amiproxy-{}", self.next_aid.fetch_add(1, Ordering::Relaxed))
    }

    pub fn server_header(&self) -> &str {
        &self.config.proxy.server_header
    }

    /// Remembers that broadcast events carrying `upstream_aid` belong to a client action.
    pub fn remember_broadcast_aid(&self, upstream_aid: &str, client_aid: Option<&str>) {
        let now = Instant::now();
        if self.broadcast_aids.len() > 10_000 {
            self.broadcast_aids
                .retain(|_, (_, t)| now.duration_since(*t) < BROADCAST_AID_TTL);
        }
        self.broadcast_aids
            .insert(upstream_aid.to_owned(), (client_aid.map(str::to_owned), now));
    }

    /// Gives a broadcast event (OriginateResponse, UserEvent) the client's ActionID back.
    pub fn restore_broadcast_aid(&self, event: &str, msg: Message) -> Message {
        let Some(aid) = msg.action_id() else { return msg };
        let found = if event.eq_ignore_ascii_case("OriginateResponse") {
            self.broadcast_aids.remove(aid).map(|(_, v)| v.0)
        } else {
            self.broadcast_aids.get(aid).map(|v| v.0.clone())
        };
        match found {
            Some(client) => restore_aid(msg, client.as_deref()),
            None => msg,
        }
    }

    /// The banner version clients see: configured, else the first connected upstream's.
    pub fn banner_version(&self) -> String {
        if let Some(v) = &self.config.proxy.banner_version {
            return v.clone();
        }
        self.upstreams
            .iter()
            .find_map(|u| u.version())
            .unwrap_or_else(|| "11.0.0".to_owned())
    }
}

/// Puts the client's ActionID back, or removes ours if the client sent none.
pub fn restore_aid(msg: Message, client_aid: Option<&str>) -> Message {
    match client_aid {
        Some(a) => msg.with_header("ActionID", a),
        None => msg.without_header("ActionID"),
    }
}
