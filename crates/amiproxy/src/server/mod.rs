//! Start-up, reload and shutdown: the shared core, one task per upstream link, the
//! listeners, and the metrics/health endpoint.

mod listen;
mod proxy_protocol;

use crate::config::{Config, WebConfig};
use crate::core::{Core, Phase};
use crate::error::ProxyError;
use crate::tls::server::ServerTls;
use crate::upstream::{self, Upstream};
use crate::web::{Parts, Site};
use listen::{accept_loop, bind, Bound, ListenerHandle};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Checks the TLS files of the `i`th upstream (a broken one is refused under its key).
fn check_upstream_tls(i: usize, u: &crate::config::UpstreamConfig) -> Result<(), ProxyError> {
    match &u.target {
        crate::config::UpstreamTarget::Asterisk { tls: Some(t), .. } => {
            crate::tls::client::check(&format!("upstream[{i}]"), &u.name, t)
        }
        _ => Ok(()),
    }
}

/// Connections at once on `[metrics] address` (a scraper and a balancer's checks need few).
const METRICS_CONNECTIONS: usize = 64;

/// A running proxy.
pub struct Running {
    pub core: Arc<Core>,
    listeners: Mutex<Vec<ListenerHandle>>,
    /// Where the metrics and health endpoint listens, if configured.
    pub metrics_addr: Option<SocketAddr>,
    /// Where `[web]` listens, if configured.
    pub web_addr: Option<SocketAddr>,
    /// The web listener's TLS, swapped in place on reload as the AMI listeners' is.
    web_tls: Option<Arc<ServerTls>>,
    /// The NATS export, when `[export.nats]` is set.
    export: Option<crate::export::Exporter>,
}

/// Binds every listener and starts every upstream link; returns once all are bound.
pub async fn start(config: Config) -> Result<Running, ProxyError> {
    let mut bound = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        bound.push(bind(l, i).await?);
    }
    for (i, u) in config.upstreams.iter().enumerate() {
        check_upstream_tls(i, u)?;
    }
    let web_listener = match config.web.address {
        Some(addr) => {
            let acceptor = match &config.web.tls {
                Some(t) => {
                    let tls = ServerTls::new("web")?;
                    tls.install(tls.prepare(Some(t), "web.tls")?);
                    Some(Arc::new(tls))
                }
                None => None,
            };
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })?;
            Some((l, acceptor))
        }
        None => None,
    };
    if config.metrics.address.is_some() || (config.web.address.is_some() && config.web.ops) {
        crate::metrics::Metrics::install();
    }
    let metrics_listener = match config.metrics.address {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })?,
        ),
        None => None,
    };
    let core = Core::new(config);
    {
        let busy = core.busy.clone();
        // It keeps the control thread awake, where actions and answers pass.
        crate::runtime::spawn_control(async move { busy.run().await });
    }
    // Before the links: the exporter subscribes to the hub at once and misses no event.
    let config = core.config();
    let export = crate::export::spawn(&core.hub, config.proxy.event_buffer, config.export.nats.as_ref());
    for up in core.state().upstreams.iter() {
        upstream::spawn(&core.links, up);
    }
    {
        // Keyed limiter state (failed logins per address) is pruned so it stays small.
        let core = core.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(30));
            loop {
                t.tick().await;
                core.limits.prune();
            }
        });
    }
    if let Some(upkeep) = core.limits.shared_upkeep() {
        tokio::spawn(upkeep);
    }
    // Certificates close to their end are warned about when loaded, and then daily.
    tokio::spawn(async {
        let mut t = tokio::time::interval_at(
            tokio::time::Instant::now() + crate::tls::expiry::WARN_EVERY,
            crate::tls::expiry::WARN_EVERY,
        );
        loop {
            t.tick().await;
            crate::tls::expiry::warn_soon();
        }
    });
    let metrics_addr = match metrics_listener {
        Some(l) => {
            let addr = l.local_addr()?;
            info!(%addr, "metrics and health endpoint listening");
            let site = Site::new(core.clone(), Parts::OPS, false, addr, METRICS_CONNECTIONS);
            tokio::spawn(crate::web::serve(Arc::new(site), l, None));
            Some(addr)
        }
        None => None,
    };
    let web_tls = web_listener.as_ref().and_then(|(_, t)| t.clone());
    let web_addr = match web_listener {
        Some((l, acceptor)) => {
            let addr = l.local_addr()?;
            let w = &core.config().web;
            let parts = Parts {
                ops: w.ops,
                api: w.api,
                websocket: w.websocket,
                console: w.console,
            };
            info!(%addr, tls = acceptor.is_some(), ?parts, "web endpoint listening");
            let site = Site::new(core.clone(), parts, acceptor.is_some(), addr, w.max_connections);
            tokio::spawn(crate::web::serve(Arc::new(site), l, acceptor));
            Some(addr)
        }
        None => None,
    };
    let running = Running {
        core,
        listeners: Mutex::new(Vec::new()),
        metrics_addr,
        web_addr,
        web_tls,
        export,
    };
    for b in bound {
        running.accept(b)?;
    }
    Ok(running)
}

impl Running {
    fn accept(&self, b: Bound) -> Result<(), ProxyError> {
        let addr = b.listener.local_addr()?;
        info!(%addr, tls = b.tls.current().is_some(), "listening");
        let stop = CancellationToken::new();
        crate::runtime::spawn_control(accept_loop(
            self.core.clone(),
            b.listener,
            b.tls.clone(),
            b.balancers.clone(),
            stop.clone(),
            Arc::from(addr.to_string()),
        ));
        self.lock().push(ListenerHandle {
            config: b.config,
            addr,
            stop,
            tls: b.tls,
            balancers: b.balancers,
        });
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ListenerHandle>> {
        crate::sync::lock(&self.listeners)
    }

    /// The bound address of each listener, in the order they were started.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.lock().iter().map(|l| l.addr).collect()
    }

    /// Applies a new, already checked configuration without dropping clients: users,
    /// secrets, policies and routes at once; new listeners bound, removed ones closed (their
    /// clients stay), kept ones (same configured address) never rebound: their TLS files are
    /// re-read and a changed certificate, key, CA or setting swapped in for new handshakes;
    /// added upstreams connected, removed ones disconnected with a status event. On a bind
    /// error or a broken TLS file (named by its key) nothing changes.
    pub async fn reload(&self, new: Config) -> Result<(), ProxyError> {
        let old = self.core.config();
        for (what, changed) in [
            (
                "proxy.server_header",
                old.proxy.server_header != new.proxy.server_header,
            ),
            ("proxy.auth_limit", old.proxy.auth_limit != new.proxy.auth_limit),
            ("proxy.event_buffer", old.proxy.event_buffer != new.proxy.event_buffer),
            ("metrics.address", old.metrics.address != new.metrics.address),
            // The web listener's TLS files are re-read below; the rest of `[web]` is fixed.
            (
                "web",
                WebConfig {
                    tls: None,
                    ..old.web.clone()
                } != WebConfig {
                    tls: None,
                    ..new.web.clone()
                },
            ),
            ("export", old.export != new.export),
            (
                "limits.max_connections",
                old.limits.max_connections != new.limits.max_connections,
            ),
            ("redis", old.redis != new.redis),
        ] {
            if changed {
                warn!(
                    key = what,
                    "this setting changes only at restart; keeping the running value"
                );
            }
        }
        // Listeners, by configured address: one already bound keeps its socket (and its
        // clients), its TLS files re-read and a change prepared; a new address is bound. The
        // n-th listener of an address in the new file is the n-th one running with that
        // configured address (several may be configured on port 0). Everything that can fail
        // is done before anything changes.
        let running: Vec<(SocketAddr, Arc<ServerTls>)> =
            self.lock().iter().map(|h| (h.config.address, h.tls.clone())).collect();
        let mut keep = vec![false; running.len()];
        let mut fresh = Vec::new();
        let mut tls_changes = Vec::new();
        for (i, l) in new.listeners.iter().enumerate() {
            let same = (0..running.len()).find(|&j| !keep[j] && running[j].0 == l.address);
            match same {
                Some(j) => {
                    keep[j] = true;
                    let change = running[j].1.prepare(l.tls.as_ref(), &format!("listener[{i}].tls"))?;
                    tls_changes.push((j, l.clone(), change));
                }
                None => fresh.push(bind(l, i).await?),
            }
        }
        for (i, u) in new.upstreams.iter().enumerate() {
            check_upstream_tls(i, u)?;
        }
        let web_change = match (&self.web_tls, &new.web.tls) {
            (Some(tls), Some(t)) => Some(tls.prepare(Some(t), "web.tls")?),
            _ => None,
        };
        // Upstreams: keep the links whose configuration is unchanged.
        let st = self.core.state();
        let mut upstreams: Vec<Arc<Upstream>> = Vec::new();
        let mut started = Vec::new();
        for u in &new.upstreams {
            match st.upstreams.iter().find(|o| o.config == *u) {
                Some(o) => upstreams.push(o.clone()),
                None => {
                    let up = self.core.new_upstream(u.clone());
                    started.push(up.clone());
                    upstreams.push(up);
                }
            }
        }
        let removed: Vec<Arc<Upstream>> = st
            .upstreams
            .iter()
            .filter(|o| !upstreams.iter().any(|u| Arc::ptr_eq(u, o)))
            .cloned()
            .collect();
        drop(st);
        self.core.install(new, upstreams);
        for up in removed {
            info!(server = up.name(), "upstream removed by reload");
            up.stop.cancel();
            if !self.core.state().upstreams.iter().any(|u| u.name() == up.name()) {
                crate::tls::expiry::remove(&format!("upstream:{}", up.name()));
            }
        }
        for up in started {
            info!(server = up.name(), "upstream added by reload");
            upstream::spawn(&self.core.links, &up);
        }
        {
            let mut current = self.lock();
            for (j, config, change) in tls_changes {
                if let Some(h) = current.get_mut(j) {
                    h.tls.install(change);
                    h.balancers.store(Arc::new(config.proxy_protocol_from.clone()));
                    h.config = config;
                }
            }
            let mut i = 0;
            current.retain(|h| {
                let k = keep.get(i).copied().unwrap_or(true);
                i += 1;
                if !k {
                    info!(addr = %h.addr, "listener closed by reload");
                    h.stop.cancel();
                }
                k
            });
        }
        if let (Some(tls), Some(change)) = (&self.web_tls, web_change) {
            tls.install(change);
        }
        for b in fresh {
            self.accept(b)?;
        }
        info!("configuration reloaded");
        Ok(())
    }

    /// Graceful shutdown. First, for `proxy.drain_grace_secs`, only `/health` changes (503,
    /// `draining`): a load balancer in front stops sending clients here while every client
    /// here is served as before. Then: stop accepting; let answers in flight arrive (half the
    /// deadline at most), fail the rest; send every client `Event: Shutdown`; close; all
    /// within `deadline` (the grace comes before it).
    pub async fn shutdown(&self, deadline: Duration) {
        self.core.set_leaving();
        let grace = self.core.config().proxy.drain_grace;
        if !grace.is_zero() {
            info!(
                grace_ms = grace.as_millis() as u64,
                "draining: /health answers 503 before the listeners close"
            );
            tokio::time::sleep(grace).await;
        }
        let start = Instant::now();
        for l in self.lock().iter() {
            l.stop.cancel();
        }
        self.core.set_phase(Phase::Draining);
        let drain_until = start + deadline / 2;
        while Instant::now() < drain_until && self.core.state().upstreams.iter().any(|u| u.in_flight() > 0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for up in self.core.state().upstreams.iter() {
            up.fail_all(&self.core.links, "Proxy is shutting down");
        }
        self.core.set_phase(Phase::Closing);
        while start.elapsed() < deadline && self.core.sessions.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.core.sessions.load(Ordering::Acquire);
        if left > 0 {
            warn!(sessions = left, "shutdown deadline reached with sessions still open");
        }
        if let Some(export) = &self.export {
            export.drain(start + deadline).await;
        }
        info!(elapsed_ms = start.elapsed().as_millis() as u64, "shut down");
    }
}
