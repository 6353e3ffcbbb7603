//! The AMI wire format, with no sockets and no runtime.
//!
//! AMI is a line protocol: `Key: Value\r\n` lines, a blank line ends a message. The
//! [`Message`] type keeps the bytes it was decoded from, so a proxy can forward it without
//! re-encoding, and keeps every header in order (repeated keys such as `Variable:` matter).
//! [`AmiDecoder`] frames messages incrementally in the two roles a proxy needs: facing
//! clients (Asterisk's own limits and error answers) and facing an upstream Asterisk (the
//! banner line and legacy `Response: Follows` command output).
#![forbid(unsafe_code)]

pub mod action;
pub mod app_args;
mod builder;
pub mod clock;
mod decoder;
mod error;
pub mod facts;
mod line_scan;
mod message;

pub use action::{Action, ActionName};
pub use builder::MessageBuilder;
pub use decoder::{AmiDecoder, Decoded, Limits, Role};
pub use error::{Error, Rejection};
pub use message::{Field, Kind, Message};

/// The prefix every Asterisk banner starts with; clients match on it.
pub const BANNER_PREFIX: &str = "Asterisk Call Manager/";

/// Marker that ends legacy (`Response: Follows`) command output.
pub const END_COMMAND: &[u8] = b"--END COMMAND--";
