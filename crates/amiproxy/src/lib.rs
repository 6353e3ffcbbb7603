//! amiproxy: an AMI proxy for Asterisk.
//!
//! Data flows one way in each direction:
//! client socket → [`session`] (login, permissions, the proxy's own answers) → [`router`] →
//! [`upstream`] link (ActionID rewrite, pending map) → Asterisk; and back: upstream link
//! (parse once, tag `Server`) → the waiting client, or → [`hub`] → every client's session.
#![forbid(unsafe_code)]

pub mod auth;
pub mod client_tx;
pub mod config;
pub mod core;
pub mod dialect;
pub mod error;
pub mod http;
pub mod hub;
pub mod limits;
pub mod merge;
pub mod metrics;
pub mod router;
pub mod server;
pub mod session;
pub mod sync;
pub mod tls;
pub mod upstream;

/// The policy engine, its own crate (no I/O): re-exported under the names the proxy uses.
pub use ami_policy as policy;
pub use ami_policy::classes as perms;
pub use ami_policy::{filter, glob};
pub use config::Config;
pub use error::ProxyError;
