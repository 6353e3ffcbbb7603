//! The client listeners: bind (with a deep accept backlog), accept, and hand each
//! connection (after its TLS handshake, within the authlimit) to a client session.

use crate::client;
use crate::config::ListenerConfig;
use crate::core::Core;
use crate::error::ProxyError;
use crate::upstream::Io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct ListenerHandle {
    pub(super) config: ListenerConfig,
    pub(super) addr: SocketAddr,
    pub(super) stop: CancellationToken,
}

/// A listener bound but not yet accepting.
pub(super) struct Bound {
    pub(super) config: ListenerConfig,
    pub(super) listener: TcpListener,
    pub(super) acceptor: Option<TlsAcceptor>,
}

pub(super) async fn bind(l: &ListenerConfig) -> Result<Bound, ProxyError> {
    let acceptor = match &l.tls {
        Some(t) => Some(TlsAcceptor::from(crate::tls::server_config(t)?)),
        None => None,
    };
    let listener = listen(l.address).map_err(|source| ProxyError::Bind {
        addr: l.address,
        source,
    })?;
    Ok(Bound {
        config: l.clone(),
        listener,
        acceptor,
    })
}

/// Connections the kernel may queue before the proxy accepts them. std's default (128) makes
/// a login storm of a thousand clients overflow the queue and stall on SYN retries.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub(super) async fn accept_loop(
    core: Arc<Core>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
    label: Arc<str>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        // The proxy's own cap on client connections, if configured.
        let Some(conn_slot) = core.limits.connection_slot() else {
            warn!(%peer, "refusing connection: limits.max_connections reached");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(peer);
        let is_tls = tls.is_some();
        let core = core.clone();
        let tls = tls.clone();
        let label = label.clone();
        let handshake_timeout = TLS_HANDSHAKE_TIMEOUT.min(core.config().proxy.auth_timeout);
        tokio::spawn(async move {
            let _count = core.session_started();
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
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
            // Asterisk's authlimit: too many connections that have not logged in yet. Counted
            // after the TLS handshake, as Asterisk does, so stalled handshakes cannot lock
            // everyone out (they are bounded by the handshake timeout instead).
            let Ok(permit) = core.unauth.clone().try_acquire_owned() else {
                warn!(%peer, "refusing connection: too many unauthenticated sessions");
                return;
            };
            let conn = client::Connection {
                peer,
                local,
                tls: is_tls,
                since: std::time::SystemTime::now(),
                transport: if is_tls {
                    crate::sessions::Transport::Tls
                } else {
                    crate::sessions::Transport::Tcp
                },
            };
            client::serve(core.clone(), io, conn, permit, label).await;
            drop(conn_slot);
        });
    }
}
