use thiserror::Error;

/// Why a client's message was refused by the decoder. Each maps to the exact
/// `Message:` text Asterisk answers with, so a proxy can answer the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A line exceeded the line limit (Asterisk: 1024 bytes).
    LineTooLong,
    /// The message had more lines than the limit (Asterisk: 128).
    TooManyLines,
}

impl Rejection {
    /// The `Message:` text Asterisk sends for this rejection.
    pub fn asterisk_message(self) -> &'static str {
        match self {
            Rejection::LineTooLong => "Failed to parse message: line too long",
            Rejection::TooManyLines => "Too many lines in message or allocation failure",
        }
    }
}

/// Errors that end a decoding stream (the connection should be closed).
#[derive(Debug, Error)]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream message exceeds {limit} bytes")]
    MessageTooLarge { limit: usize },
    #[error("upstream banner is not an AMI banner")]
    BadBanner,
}
