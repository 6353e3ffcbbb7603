//! The one error type of the load tool. A benchmark that cannot trust its own setup must stop
//! and say why rather than print figures, so every failure is an error here, not a zero.

use std::net::SocketAddr;

/// Everything that can stop a load run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A socket or file operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The endpoint could not be reached.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The endpoint sent bytes the AMI decoder refused.
    #[error("AMI stream error: {0}")]
    Decode(#[from] ami_proto::Error),
    /// The endpoint spoke AMI but not as expected (closed early, no banner, refused login).
    #[error("protocol: {0}")]
    Protocol(String),
    /// A bounded wait ran out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// An in-process simulated Asterisk failed to start.
    #[error("simulator: {0}")]
    Sim(#[from] ami_sim::SimError),
    /// The proxy (binary or in-process) failed to start or become ready.
    #[error("proxy: {0}")]
    Proxy(String),
    /// The command line asks for something contradictory.
    #[error("usage: {0}")]
    Usage(String),
    /// A correctness check of the scenario failed (loss, missing answers, bad list).
    #[error("check failed: {0}")]
    Check(String),
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, LoadError>;
