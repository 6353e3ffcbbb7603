//! The operators' HTTP endpoint: `GET /metrics` (Prometheus text) and `GET /health` (200 when
//! at least one upstream is connected and no shutdown has begun, 503 otherwise, with the state of each upstream as JSON).
//!
//! Served with hyper (HTTP/1.1) rather than by hand: request parsing, framing, `HEAD`,
//! malformed requests and the header read timeout are hyper's, well tried against what real
//! clients send, and the same stack can later carry more routes (a WebSocket upgrade is one
//! arm in [`route`] plus `serve_connection(..).with_upgrades()`). What is left here is the
//! routes and the bounds:
//!
//! - the request head must arrive within [`HEADER_TIMEOUT`] and fit in [`MAX_HEAD`] bytes;
//! - a route must answer within [`HANDLER_TIMEOUT`] (else 503);
//! - one connection lives at most [`CONNECTION_TIMEOUT`] (a client that does not read its
//!   answer is dropped);
//! - every answer closes its connection (`Connection: close`), as Prometheus and the
//!   one-request clients of this endpoint expect; HTTP/1.1 keep-alive is one builder flag
//!   away, but then a client that reads to end of stream waits for the idle timeout.

use crate::core::Core;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::debug;

/// The request head (request line and headers) must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A route must have its answer ready within this.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole connection, from accept to the last byte written.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest request head read (hyper's smallest allowed buffer).
pub const MAX_HEAD: usize = 8192;
/// How long the accept loop waits after an accept error (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

type Body = Full<Bytes>;

/// Serves the endpoint on `listener` until the task is dropped; an accept error never ends it.
pub async fn serve(core: Arc<Core>, listener: TcpListener) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "metrics endpoint accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let core = core.clone();
        let conn = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| {
                let core = core.clone();
                async move { Ok::<_, Infallible>(answer(&core, req).await) }
            }),
        );
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "metrics request failed"),
                Err(_) => debug!(%peer, "metrics request timed out"),
            }
        });
    }
}

async fn answer(core: &Core, req: Request<Incoming>) -> Response<Body> {
    tokio::time::timeout(HANDLER_TIMEOUT, route(core, req))
        .await
        .unwrap_or_else(|_| text(StatusCode::SERVICE_UNAVAILABLE, "request timed out\n"))
}

/// The routes. Each takes GET and HEAD (hyper leaves the body out for HEAD); a route that
/// takes other methods checks them in its own arm.
async fn route(core: &Core, req: Request<Incoming>) -> Response<Body> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => metrics(core),
        "/health" | "/ready" => health(core),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics or /health\n"),
    }
}

fn metrics(core: &Core) -> Response<Body> {
    match crate::metrics::render_with_state(state_sizes(core)) {
        Some(body) => with_type(StatusCode::OK, "text/plain; version=0.0.4", body),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "metrics recorder unavailable\n"),
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    upstreams: Vec<UpstreamHealth<'a>>,
    /// Every loaded TLS certificate and how long it has left.
    certificates: Vec<CertHealth>,
}

#[derive(Serialize)]
struct CertHealth {
    #[serde(flatten)]
    cert: crate::tls::expiry::CertExpiry,
    expires_in_secs: i64,
}

#[derive(Serialize)]
struct UpstreamHealth<'a> {
    name: &'a str,
    connected: bool,
}

fn health(core: &Core) -> Response<Body> {
    let st = core.state();
    let upstreams: Vec<UpstreamHealth> = st
        .upstreams
        .iter()
        .map(|u| UpstreamHealth {
            name: u.name(),
            connected: u.is_connected(),
        })
        .collect();
    let leaving = core.is_leaving();
    let ready = upstreams.iter().any(|u| u.connected) && !leaving;
    let status = match (leaving, ready) {
        (true, _) => "draining",
        (false, true) => "ready",
        (false, false) => "not ready",
    };
    let certificates = crate::tls::expiry::all()
        .into_iter()
        .map(|cert| CertHealth {
            expires_in_secs: cert.seconds_left(),
            cert,
        })
        .collect();
    let health = Health {
        status,
        upstreams,
        certificates,
    };
    let mut body = serde_json::to_string(&health).unwrap_or_default();
    body.push('\n');
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    with_type(status, "application/json", body)
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    with_type(status, "text/plain", body)
}

fn with_type(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The sizes of the state clients and upstreams control, read now.
fn state_sizes(core: &Core) -> crate::metrics::StateSizes {
    crate::metrics::StateSizes {
        broadcast_actionids: core.ids.broadcast_len(),
        owned_channels: core.owners.len(),
        in_flight: core
            .state()
            .upstreams
            .iter()
            .map(|u| (u.name().to_owned(), u.in_flight()))
            .collect(),
        cert_expiry: crate::tls::expiry::for_metrics(),
    }
}
