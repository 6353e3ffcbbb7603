//! Per-user policy beyond Asterisk's classes: source-address ACL, action allow/deny lists,
//! the trust model Asterisk would apply (judged header by header from the audit in
//! [`table`]), tenant scope over channels, queues, contexts, AstDB families and servers, and
//! event filters.
//!
//! The proxy logs in upstream with every class, so Asterisk's own guards never apply behind
//! it: what a user may run, read, write or see is decided here, deny by default. A refused
//! action never reaches an upstream; the client gets `Permission denied` and keeps its
//! connection. The reason goes to the audit log only.

#![forbid(unsafe_code)]

pub mod audit_doc;
pub mod classes;
mod denial;
pub mod dialplan;
pub mod filter;
pub mod glob;
mod judge;
mod policy;
mod scope;
pub mod spec;
pub mod table;

pub use denial::{Denial, DenialKind};
pub use judge::DEFAULT_COMMANDS;
pub use policy::{ArgRule, Policy};
pub use scope::{EventNames, Scope};

/// What the policy needs to know of live channels: the proxy's ownership index, learned
/// from the upstreams' events. A trait, so the engine stays free of the proxy's state.
pub trait Channels {
    /// The channel a uniqueid names, when exactly one upstream has that uniqueid.
    fn channel_of(&self, uniqueid: &str) -> Option<String>;
    /// The channel a uniqueid in an event names: a live one, or (where the index knows when
    /// the event was read) one that hung up after the event was read. Events are judged
    /// after the index learned from them (and from those read with them), so an event about
    /// a call that has ended since must still find its channel. Actions use
    /// [`Channels::channel_of`]: a channel that is gone is nothing to act on.
    fn channel_of_event(&self, uniqueid: &str) -> Option<String> {
        self.channel_of(uniqueid)
    }
    /// Whether a channel name or uniqueid is live on exactly one upstream.
    fn is_live(&self, key: &str) -> bool;
}

#[cfg(test)]
mod tests;
