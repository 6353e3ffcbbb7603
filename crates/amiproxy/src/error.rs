use thiserror::Error;

/// Errors of the proxy, by the side that failed.
#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("listener {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream {server}: {reason}")]
    Upstream { server: String, reason: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A connection from a trusted balancer that did not start with a valid header.
    #[error("PROXY protocol: {0}")]
    ProxyHeader(&'static str),
    #[error("codec: {0}")]
    Codec(#[from] ami_proto::Error),
}
