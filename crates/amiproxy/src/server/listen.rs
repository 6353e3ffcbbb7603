//! The client listeners: bind (with a deep accept backlog), accept, and hand each
//! connection (after its TLS handshake, within the authlimit) to a client session.

use super::proxy_protocol;
use crate::client;
use crate::config::ListenerConfig;
use crate::core::Core;
use crate::error::ProxyError;
use crate::tls::server::ServerTls;
use crate::tls::PeerCert;
use crate::upstream::Io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub(super) struct ListenerHandle {
    /// As configured: a reload keeps the listener whose configured address it names.
    pub(super) config: ListenerConfig,
    pub(super) addr: SocketAddr,
    pub(super) stop: CancellationToken,
    /// Read by the accept loop for every connection; swapped by a reload.
    pub(super) tls: Arc<ServerTls>,
    /// The balancers whose connections start with a PROXY header; swapped by a reload.
    pub(super) balancers: Balancers,
}

/// `proxy_protocol_from`, as the accept loop reads it for every connection.
pub(super) type Balancers = Arc<arc_swap::ArcSwap<Vec<ipnet::IpNet>>>;

/// A listener bound but not yet accepting.
pub(super) struct Bound {
    pub(super) config: ListenerConfig,
    pub(super) listener: TcpListener,
    pub(super) tls: Arc<ServerTls>,
    pub(super) balancers: Balancers,
}

/// Binds `l` (the `i`th listener of the file) with its TLS loaded; errors name the key.
pub(super) async fn bind(l: &ListenerConfig, i: usize) -> Result<Bound, ProxyError> {
    let listener = listen(l.address).map_err(|source| ProxyError::Bind {
        addr: l.address,
        source,
    })?;
    let addr = listener.local_addr()?;
    let tls = ServerTls::new(&addr.to_string())?;
    let change = tls.prepare(l.tls.as_ref(), &format!("listener[{i}].tls"))?;
    tls.install(change);
    Ok(Bound {
        config: l.clone(),
        listener,
        tls: Arc::new(tls),
        balancers: Arc::new(arc_swap::ArcSwap::from_pointee(l.proxy_protocol_from.clone())),
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
    tls: Arc<ServerTls>,
    balancers: Balancers,
    stop: CancellationToken,
    label: Arc<str>,
) {
    // Bound on the caller's runtime; accepting here, on the control thread, it is moved to
    // this runtime's I/O driver, as is every connection it accepts.
    let listener = match crate::runtime::on_control() {
        true => match listener.into_std().and_then(TcpListener::from_std) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot move the listener to the control thread");
                return;
            }
        },
        false => listener,
    };
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
        // An IPv4 client on a dual-stack listener shows as `::ffff:a.b.c.d`: address rules,
        // bans and logs see it as the IPv4 address it is.
        let peer = std::net::SocketAddr::new(peer.ip().to_canonical(), peer.port());
        // The proxy's own cap on client connections, if configured.
        let Some(conn_slot) = core.limits.connection_slot() else {
            warn!(%peer, "refusing connection: limits.max_connections reached");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(peer);
        let core = core.clone();
        // What new handshakes use now: a reload may have swapped it since the last accept.
        let tls = tls.current();
        let label = label.clone();
        let from_balancer = balancers.load().iter().any(|n| n.contains(&peer.ip()));
        tokio::spawn(async move {
            let _count = core.session_started();
            let (mut tcp, mut peer) = (tcp, peer);
            // A balancer's connection names its client first: everything below (bans, ACLs,
            // logs, the session list) sees the client, never the balancer.
            if from_balancer {
                match tokio::time::timeout(proxy_protocol::HEADER_TIMEOUT, proxy_protocol::read_header(&mut tcp)).await
                {
                    Ok(Ok(Some(client))) => {
                        peer = SocketAddr::new(client.ip().to_canonical(), client.port());
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "refusing a balancer's connection");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "a balancer's connection sent no PROXY header in time");
                        return;
                    }
                }
            }
            let is_tls = tls.is_some();
            let mut peer_cert = None;
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                // On the heap: the handshake's state would otherwise stay in this task, which
                // lasts as long as the connection.
                Some(active) => match Box::pin(tokio::time::timeout(
                    active.handshake_timeout,
                    active.acceptor.accept(tcp),
                ))
                .await
                {
                    Ok(Ok(s)) => {
                        let conn = s.get_ref().1;
                        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                        crate::metrics::tls_handshake(&label, if resumed { "resumed" } else { "full" });
                        peer_cert = conn
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| Arc::new(PeerCert::from_der(c)));
                        Box::new(s)
                    }
                    Ok(Err(e)) => {
                        crate::metrics::tls_handshake(&label, "failed");
                        // A refused client certificate is worth an operator's eye (a client
                        // whose certificate expired or was revoked); the rest is noise.
                        let cause = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
                        match cause {
                            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
                                info!(%peer, error = %e, "client certificate refused")
                            }
                            _ => debug!(%peer, error = %e, "tls handshake failed"),
                        }
                        return;
                    }
                    Err(_) => {
                        crate::metrics::tls_handshake(&label, "timeout");
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
                peer_cert,
            };
            client::serve(core.clone(), io, conn, permit, label).await;
            drop(conn_slot);
        });
    }
}
