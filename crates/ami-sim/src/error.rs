//! The one error type of the simulator.

use std::net::SocketAddr;

/// Everything that can go wrong while starting or controlling a simulated Asterisk.
/// Peer input never produces one of these: bad input is answered on the wire instead.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listening socket could not be bound (even after retrying briefly).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Any other socket error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A users file could not be read or parsed.
    #[error("bad configuration: {0}")]
    Config(String),
}
