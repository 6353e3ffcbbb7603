//! Start-up: the shared core, one task per upstream link, and the listeners.

use crate::config::Config;
use crate::core::Core;
use crate::error::ProxyError;
use crate::session;
use crate::upstream::{self, Io};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy.
pub struct Running {
    pub core: Arc<Core>,
    /// The bound address of each listener, in config order (useful when a port was 0).
    pub listeners: Vec<SocketAddr>,
}

/// Binds every listener and starts every upstream link; returns once all are bound.
pub async fn start(config: Config) -> Result<Running, ProxyError> {
    let mut bound = Vec::new();
    for l in &config.listeners {
        let acceptor = match &l.tls {
            Some(t) => Some(TlsAcceptor::from(crate::tls::server_config(t)?)),
            None => None,
        };
        let listener = TcpListener::bind(l.address).await.map_err(|source| ProxyError::Bind {
            addr: l.address,
            source,
        })?;
        bound.push((listener, acceptor));
    }
    let core = Core::new(config);
    for i in 0..core.upstreams.len() {
        tokio::spawn(upstream::run(core.clone(), i));
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
    let mut addrs = Vec::new();
    for (listener, acceptor) in bound {
        let addr = listener.local_addr()?;
        info!(%addr, tls = acceptor.is_some(), "listening");
        addrs.push(addr);
        tokio::spawn(accept_loop(core.clone(), listener, acceptor));
    }
    Ok(Running { core, listeners: addrs })
}

async fn accept_loop(core: Arc<Core>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The proxy's own cap on client connections, if configured.
        let Some(conn_slot) = core.limits.connection_slot() else {
            warn!(%peer, "refusing connection: limits.max_connections reached");
            drop(tcp);
            continue;
        };
        // Asterisk's authlimit: too many connections that have not logged in yet.
        let Ok(permit) = core.unauth.clone().try_acquire_owned() else {
            warn!(%peer, "refusing connection: too many unauthenticated sessions");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let core = core.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "tls handshake timed out");
                        return;
                    }
                },
            };
            session::serve(core, io, peer, permit).await;
            drop(conn_slot);
        });
    }
}
