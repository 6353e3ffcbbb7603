//! The proxy's HTTP side, on hyper (HTTP/1.1): the operators' `GET /metrics` (Prometheus
//! text) and `GET /health` (200 when at least one upstream is connected and no shutdown has
//! begun, 503 otherwise, with the state of each upstream as JSON) on `[metrics] address`;
//! and on `[web] address`, optionally over TLS, the same plus AMI as JSON over a WebSocket
//! ([`ws`]) and over HTTP ([`api`]), and the operator console ([`console`]).
//!
//! The JSON front ends are AMI clients of the proxy's own session code ([`bridge`]): a
//! WebSocket or HTTP client gets the same users, secrets, address rules, policy, scope,
//! filters, rate limits, audit, metrics and slow-client bounds as a TCP client, because it
//! goes through the very same session, over an in-memory pipe.
//!
//! Request parsing, framing, `HEAD`, malformed requests and the header read timeout are
//! hyper's. What is left here is the routes and the bounds:
//!
//! - the request head must arrive within [`HEADER_TIMEOUT`] and fit in [`MAX_HEAD`] bytes;
//! - a route must answer within [`HANDLER_TIMEOUT`] (else 503), an AMI action within the
//!   action timeout;
//! - one connection lives at most [`CONNECTION_TIMEOUT`] (a WebSocket, once upgraded, is on
//!   its own and bounded like an AMI client);
//! - on `[metrics] address` every answer closes its connection (`Connection: close`), as
//!   Prometheus and the one-request clients of that endpoint expect; `[web]` keeps them.

pub mod api;
pub mod bridge;
pub mod console;

mod ops;
pub mod ws;

use crate::core::Core;
use crate::tls::server::ServerTls;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

/// The request head (request line and headers) must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A route must have its answer ready within this (AMI actions: the action timeout).
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole connection, from accept to the last byte written (or to a WebSocket upgrade).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest request head read (hyper's smallest allowed buffer).
pub const MAX_HEAD: usize = 8192;
/// The largest request body read (a JSON action; Asterisk's own limit is 128 lines of 1 KiB).
pub const MAX_BODY: usize = 192 * 1024;
/// How long the accept loop waits after an accept error (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub type Body = Full<Bytes>;

/// What one HTTP listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub ops: bool,
    pub api: bool,
    pub websocket: bool,
    pub console: bool,
}

impl Parts {
    /// `[metrics] address`: metrics and health only.
    pub const OPS: Parts = Parts {
        ops: true,
        api: false,
        websocket: false,
        console: false,
    };
}

/// One HTTP listener's routes and the state they share.
pub struct Site {
    pub core: Arc<Core>,
    pub parts: Parts,
    pub tls: bool,
    pub consoles: console::Logins,
    /// The listener's address (the local end of the bridge sessions).
    pub local: SocketAddr,
    /// Connections (and WebSockets) open at once on this listener (`web.max_connections`).
    pub conns: Arc<tokio::sync::Semaphore>,
}

impl Site {
    pub fn new(core: Arc<Core>, parts: Parts, tls: bool, local: SocketAddr, max_connections: usize) -> Site {
        Site {
            core,
            parts,
            tls,
            consoles: Default::default(),
            local,
            conns: Arc::new(tokio::sync::Semaphore::new(max_connections.max(1))),
        }
    }
}

/// A request with where it came from.
pub struct Req {
    pub req: Request<Incoming>,
    pub peer: SocketAddr,
}

/// Serves `site` on `listener` until the task is dropped; an accept error never ends it.
pub async fn serve(site: Arc<Site>, listener: TcpListener, tls: Option<Arc<ServerTls>>) {
    let mut http = http1::Builder::new();
    // The metrics endpoint closes after each answer (its clients read to the end); the web
    // side keeps connections (browsers), and must: with keep-alive off hyper would add
    // `close` to a WebSocket's `Connection: Upgrade`, which strict clients refuse.
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(site.parts != Parts::OPS);
    let http = Arc::new(http);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "http accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // As on the AMI listeners: an IPv4 client is its IPv4 address, on any listener.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        // Over the cap, the connection is closed at once: nothing is read from it.
        let Ok(slot) = site.conns.clone().try_acquire_owned() else {
            debug!(%peer, "http connection refused: the listener's max_connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The TLS in force now: a reload swaps it for new connections only.
        let tls: Option<TlsAcceptor> = tls.as_ref().and_then(|t| t.current()).map(|a| a.acceptor.clone());
        let (site, http) = (site.clone(), http.clone());
        // A JSON action may take the login and the action's own time (a WebSocket, once
        // upgraded, lives on apart from this bound).
        let config = site.core.config();
        let lifetime =
            CONNECTION_TIMEOUT.max(config.proxy.auth_timeout + config.proxy.action_timeout + HANDLER_TIMEOUT);
        drop(config);
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let site = site.clone();
                async move { Ok::<_, Infallible>(answer(&site, Req { req, peer }).await) }
            });
            let served = async {
                match tls {
                    None => {
                        http.serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await
                    }
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => http.serve_connection(TokioIo::new(s), service).with_upgrades().await,
                        Err(e) => {
                            debug!(%peer, error = %e, "http tls handshake failed");
                            Ok(())
                        }
                    },
                }
            };
            match tokio::time::timeout(lifetime, served).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "http request failed"),
                Err(_) => debug!(%peer, "http request timed out"),
            }
        });
    }
}

async fn answer(site: &Site, r: Req) -> Response<Body> {
    // AMI actions have their own bound (the login and the action), the rest HANDLER_TIMEOUT.
    let limit = if r.req.uri().path().starts_with("/ami/") {
        let config = site.core.config();
        config.proxy.auth_timeout + config.proxy.action_timeout + HANDLER_TIMEOUT
    } else {
        HANDLER_TIMEOUT
    };
    tokio::time::timeout(limit, route(site, r))
        .await
        .unwrap_or_else(|_| text(StatusCode::SERVICE_UNAVAILABLE, "request timed out\n"))
}

/// The routes, each behind its part's switch.
async fn route(site: &Site, r: Req) -> Response<Body> {
    let path = r.req.uri().path().to_owned();
    let method = r.req.method().clone();
    let p = site.parts;
    // A browser names the page a request comes from; another site's page must not drive the
    // API, the WebSocket or the console with credentials the browser holds.
    if !same_origin(&r.req) && (path.starts_with("/ami/") || path.starts_with("/console/")) {
        return json_error(StatusCode::FORBIDDEN, "cross-site requests are refused");
    }
    match path.as_str() {
        "/metrics" | "/health" | "/ready" if p.ops => {
            if !matches!(method, Method::GET | Method::HEAD) {
                return not_allowed("GET, HEAD");
            }
            if path == "/metrics" {
                ops::metrics(&site.core)
            } else {
                ops::health(&site.core)
            }
        }
        "/ami/ws" if p.websocket => ws::upgrade(site, r).await,
        _ if p.api && path.starts_with("/ami/action/") => api::action(site, r).await,
        _ if p.console && (path == "/" || path == "/console" || path.starts_with("/console/")) => {
            console::route(site, r).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

pub(crate) fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    with_type(status, "text/plain", body)
}

pub(crate) fn with_type(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Whether a request's `Origin`, when it has one, names the host it was sent to. Clients
/// other than browsers send none.
pub(crate) fn same_origin(req: &hyper::Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(hyper::header::ORIGIN) else {
        return true;
    };
    let host = req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok());
    match (origin.to_str().ok().and_then(|o| o.split_once("://")), host) {
        (Some((_, rest)), Some(host)) => rest.trim_end_matches('/').eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// The user and secret of an `Authorization: Basic` header.
pub(crate) fn basic_auth(h: &hyper::HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = h.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, secret) = text.split_once(':')?;
    Some((user.to_owned(), secret.to_owned()))
}

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response<Body> {
    with_type(status, "application/json", body)
}

/// `{"error": "..."}` with a status.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, serde_json::json!({ "error": message }).to_string())
}
