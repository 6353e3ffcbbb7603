//! amiproxy: an AMI proxy for Asterisk.
//!
//! Data flows one way in each direction:
//! client socket → [`client`] (login, permissions, the proxy's own answers) → [`routing`] →
//! [`upstream`] link (ActionID rewrite, pending map) → Asterisk; and back: upstream link
//! (parse once, tag `Server`) → the waiting client, or → [`hub`] → every client's session.
//! ARCHITECTURE.md has the map: who owns which state, the lock order, where to add things.
#![forbid(unsafe_code)]

pub mod auth;
pub mod busy_poll;
pub mod client;
pub mod client_tx;
pub mod config;
pub mod core;
pub mod dialect;
pub mod error;
pub mod export;
pub mod hub;
pub mod ids;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod sessions;
pub mod sync;
pub mod tls;
pub mod upstream;
pub mod web;

/// The policy engine, its own crate (no I/O): re-exported under the names the proxy uses.
pub use ami_policy as policy;
pub use ami_policy::classes as perms;
pub use ami_policy::{filter, glob};
pub use config::Config;
pub use error::ProxyError;
