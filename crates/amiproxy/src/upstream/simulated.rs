//! The in-process simulated Asterisk behind `kind = "simulated"` upstreams (the demo config,
//! tests). Built with the default `sim` feature; a packaged build can leave it out, and then
//! such an upstream is refused when the configuration is checked.

use crate::config::SimSettings;
use crate::error::ProxyError;

#[cfg(feature = "sim")]
pub type Handle = ami_sim::SimHandle;

/// Nothing to hold without the simulator.
#[cfg(not(feature = "sim"))]
pub enum Handle {}

/// Starts a simulated Asterisk on a free loopback port; returns its address.
#[cfg(feature = "sim")]
pub async fn start(name: &str, s: &SimSettings) -> Result<(String, Handle), ProxyError> {
    let cfg = ami_sim::SimConfig {
        name: name.to_owned(),
        system_name: Some(name.to_owned()),
        legacy_command: s.legacy_command,
        channel_id_base: s.channel_id_base,
        ..Default::default()
    };
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let handle = ami_sim::start(cfg, listen).await.map_err(|e| ProxyError::Upstream {
        server: name.to_owned(),
        reason: e.to_string(),
    })?;
    if s.calls_per_sec > 0.0 {
        handle.set_call_rate(s.calls_per_sec);
    }
    Ok((handle.addr().to_string(), handle))
}

#[cfg(not(feature = "sim"))]
pub async fn start(name: &str, _: &SimSettings) -> Result<(String, Handle), ProxyError> {
    Err(ProxyError::Upstream {
        server: name.to_owned(),
        reason: "this build has no simulated Asterisk (cargo feature `sim`)".into(),
    })
}

pub async fn stop(handle: Handle) {
    #[cfg(feature = "sim")]
    handle.stop_listener().await;
    #[cfg(not(feature = "sim"))]
    match handle {}
}
