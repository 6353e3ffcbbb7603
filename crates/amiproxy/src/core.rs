//! State shared by every session and upstream link.

use crate::busy_poll::BusyPoll;
use crate::config::Config;
use crate::dialect::Generation;
use crate::hub::Hub;
use crate::ids::UpstreamId;
use crate::limits::Limits;
use crate::routing::{Owners, Router};
use crate::upstream::{self, ActionIds, Upstream};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{watch, Semaphore};

/// What a configuration defines, swapped whole on reload: sessions and links read one
/// consistent snapshot per decision.
pub struct State {
    pub config: Arc<Config>,
    pub router: Router,
    /// Current upstreams, in configuration order (the router's positions index this).
    pub upstreams: Vec<Arc<Upstream>>,
}

impl State {
    pub fn upstream_named(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name().eq_ignore_ascii_case(name))
    }
}

/// Where the proxy is in its life; sessions watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Shutting down: take no new actions, deliver the answers still coming.
    Draining,
    /// Send `Event: Shutdown` and close.
    Closing,
}

pub struct Core {
    state: ArcSwap<State>,
    pub owners: Arc<Owners>,
    pub hub: Hub,
    pub ids: Arc<ActionIds>,
    /// Keeps a worker awake while actions are answered (`proxy.busy_poll_us`).
    pub busy: Arc<BusyPoll>,
    /// What the upstream links see of the core (the same hub, index and ids).
    pub links: Arc<upstream::Context>,
    next_upstream_id: AtomicUsize,
    pub started: Instant,
    /// Unauthenticated connections (Asterisk's `authlimit`; fixed at start-up).
    pub unauth: Arc<Semaphore>,
    /// Secret verifications running at once: one per CPU.
    pub verifications: Semaphore,
    /// Argon2 secrets verified in the last minute (see `auth::Verified`).
    pub verified: crate::auth::Verified,
    pub limits: Limits,
    /// Bumped on every reload; sessions re-read their user when it changes.
    generation: watch::Sender<u64>,
    phase: watch::Sender<Phase>,
    /// Set when a shutdown begins: `/health` turns 503 (`draining`) at once, so a load
    /// balancer stops sending clients here while the ones already here are still served.
    leaving: AtomicBool,

    server_header: String,
    /// Client connections open now (for shutdown to wait on).
    pub sessions: Arc<AtomicUsize>,
    /// Logged-in sessions, for the operator console.
    pub registry: Arc<crate::sessions::Registry>,
    /// The last refused actions, for the operator console.
    pub refusals: crate::sessions::RecentRefusals,
}

/// Counts one open client connection while alive.
pub struct SessionCount(Arc<AtomicUsize>);

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Core {
    pub fn new(config: Config) -> Arc<Core> {
        let hub = Hub::new(config.proxy.event_buffer);
        let unauth = Arc::new(Semaphore::new(config.proxy.auth_limit));
        let limits = Limits::new(&config.limits, &config.users, config.redis.as_ref());
        let owners = Arc::new(Owners::default());
        let ids = Arc::new(ActionIds::default());
        let busy = Arc::new(BusyPoll::new(config.proxy.busy_poll));
        let links = Arc::new(upstream::Context::new(
            hub.clone(),
            owners.clone(),
            ids.clone(),
            busy.clone(),
            &config.proxy.server_header,
            config.proxy.action_timeout,
        ));
        let core = Arc::new(Core {
            state: ArcSwap::from_pointee(State {
                config: Arc::new(config.clone()),
                router: Router::new(&config, &[]),
                upstreams: Vec::new(),
            }),
            owners,
            hub,
            ids,
            busy,
            links,
            next_upstream_id: AtomicUsize::new(1),
            started: Instant::now(),
            unauth,
            verifications: Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
            verified: Default::default(),
            limits,
            generation: watch::channel(0).0,
            phase: watch::channel(Phase::Running).0,
            leaving: AtomicBool::new(false),

            server_header: config.proxy.server_header.clone(),
            sessions: Arc::new(AtomicUsize::new(0)),
            registry: Arc::default(),
            refusals: Default::default(),
        });
        let upstreams: Vec<Arc<Upstream>> = config.upstreams.iter().map(|u| core.new_upstream(u.clone())).collect();
        core.install(config, upstreams);
        core
    }

    pub fn session_started(&self) -> SessionCount {
        self.sessions.fetch_add(1, Ordering::AcqRel);
        SessionCount(self.sessions.clone())
    }

    pub fn new_upstream(&self, cfg: crate::config::UpstreamConfig) -> Arc<Upstream> {
        Arc::new(Upstream::with_accounts(cfg, || {
            UpstreamId(self.next_upstream_id.fetch_add(1, Ordering::Relaxed))
        }))
    }

    /// Makes `config` (with these upstream links) the current state.
    pub fn install(&self, config: Config, upstreams: Vec<Arc<Upstream>>) {
        let ids: Vec<UpstreamId> = upstreams.iter().map(|u| u.id).collect();
        let router = Router::new(&config, &ids);
        self.limits.update(&config.limits, &config.users);
        self.links.set_action_timeout(config.proxy.action_timeout);
        self.busy.set_window(config.proxy.busy_poll);
        self.state.store(Arc::new(State {
            config: Arc::new(config),
            router,
            upstreams,
        }));
        self.generation.send_modify(|g| *g += 1);
    }

    /// The current state (cheap: an atomic load).
    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    pub fn config(&self) -> Arc<Config> {
        self.state.load().config.clone()
    }

    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.send_replace(p);
    }

    /// Marks the proxy as on its way out (see `leaving`); there is no way back.
    pub fn set_leaving(&self) {
        self.leaving.store(true, Ordering::Release);
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// The tag header name (fixed at start-up: clients and rules depend on it).
    pub fn server_header(&self) -> &str {
        &self.server_header
    }

    /// The generation the proxy speaks to a client connecting now, and its banner version:
    /// `proxy.dialect` if set; else, once every upstream has connected at least once, the
    /// upstreams' own when they agree, else the newest among them; Asterisk 22 before that. `banner_version`
    /// overrides the version only.
    pub fn dialect(&self) -> (Generation, String) {
        let st = self.state.load();
        let known: Vec<(Generation, String)> = st
            .upstreams
            .iter()
            .filter_map(|u| u.version())
            .map(|v| (Generation::from_ami_version(&v), v))
            .collect();
        let (generation, version) = match st.config.proxy.dialect {
            Some(g) => {
                let v = known.iter().find(|(kg, _)| *kg == g).map(|(_, v)| v.clone());
                (g, v.unwrap_or_else(|| g.ami_version().to_owned()))
            }
            // Until every upstream has shown its banner, one not yet seen could be the newest:
            // speak the newest generation rather than guess an older one.
            None => match known.iter().max_by_key(|(g, _)| *g) {
                Some((g, v)) if known.len() == st.upstreams.len() => (*g, v.clone()),
                _ => (Generation::Modern, Generation::Modern.ami_version().to_owned()),
            },
        };
        let version = st.config.proxy.banner_version.clone().unwrap_or(version);
        (generation, version)
    }
}
