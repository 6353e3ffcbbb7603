//! `GET /metrics` and `GET /health`, for operators and load balancers.

use super::{text, with_type, Body};
use crate::core::Core;
use hyper::{Response, StatusCode};
use serde::Serialize;

pub(super) fn metrics(core: &Core) -> Response<Body> {
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

pub(super) fn health(core: &Core) -> Response<Body> {
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
