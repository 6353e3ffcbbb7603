//! Tenant scope: which channels, queues, contexts, AstDB families and servers a user may
//! reach, and whether an event (or list item) is within it.

use crate::glob::GlobSet;
use crate::{Channels, Policy};
use ami_proto::facts::{header_names_bytes, Names};
use ami_proto::Message;
use std::ops::Range;

/// Events a tenant-scoped user still sees although they name no channel or queue.
const GLOBAL_EVENTS: &[&str] = &[
    "FullyBooted",
    "Shutdown",
    "Reload",
    "ProxyUpstreamStatus",
    "ProxyEventsDropped",
    "WaitEventComplete",
];

/// What a tenant may touch. A user is scoped when it has channels or queues; contexts and
/// AstDB families narrow those headers for every user that names some.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub channels: GlobSet,
    pub queues: GlobSet,
    pub contexts: GlobSet,
    pub db_families: GlobSet,
    pub servers: Vec<String>,
}

impl Scope {
    pub fn scoped(&self) -> bool {
        !self.channels.is_empty() || !self.queues.is_empty()
    }

    pub(crate) fn server_ok(&self, server: &str) -> bool {
        self.servers.is_empty() || self.servers.iter().any(|s| s.eq_ignore_ascii_case(server))
    }

    /// A channel name, or a uniqueid standing for the channel it names.
    pub(crate) fn channel_ok(&self, v: &str, owners: &dyn Channels) -> bool {
        let name = owners.channel_of(v);
        self.channels.is_match(name.as_deref().unwrap_or(v))
    }

    /// A name checked against an optional list: when the list is empty, only unscoped
    /// users may name anything.
    pub(crate) fn listed(&self, list: &GlobSet, v: &str) -> bool {
        if list.is_empty() {
            !self.scoped()
        } else {
            list.is_match(v)
        }
    }
}

impl Policy {
    /// Servers this user may reach (all when empty).
    pub fn server_allowed(&self, server: &str) -> bool {
        self.scope.server_ok(server)
    }

    /// Whether an event (or list item) is within the user's scope. `server` is the upstream
    /// it came from, as the proxy knows it (None: the proxy's own).
    pub fn event_in_scope(&self, ev: &Message, server: Option<&str>, owners: &dyn Channels) -> bool {
        let names = std::cell::OnceCell::new();
        self.named_in_scope(ev, || names.get_or_init(|| EventNames::of(ev)), server, owners)
    }

    /// [`Policy::event_in_scope`] with what the event names read once for every client
    /// (asked for only when this user has a scope).
    pub fn named_in_scope<'a>(
        &self,
        ev: &Message,
        names: impl FnOnce() -> &'a EventNames,
        server: Option<&str>,
        owners: &dyn Channels,
    ) -> bool {
        let s = &self.scope;
        if let Some(server) = server {
            if !s.server_ok(server) {
                return false;
            }
        }
        if !s.scoped() {
            return true;
        }
        let names = names();
        let raw = ev.as_bytes();
        let (mut named, mut ok) = (false, false);
        let mut uniqueids = false;
        for (kind, span) in &names.named {
            let v = &raw[span.clone()];
            let this = match kind {
                Names::Channel => s.channels.is_match_bytes(v),
                Names::Queue => s.queues.is_match_bytes(v),
                // Resolved only when needed: most events name their channel too.
                Names::Uniqueid => {
                    uniqueids = true;
                    continue;
                }
            };
            named = true;
            ok |= this;
            // A UserEvent carries what a client wrote: every object it names must be the
            // tenant's; an upstream's own event is the tenant's when any object is.
            if names.user_event && !this {
                return false;
            }
        }
        if uniqueids && (names.user_event || !ok) {
            for (_, span) in names.named.iter().filter(|(k, _)| *k == Names::Uniqueid) {
                let v = std::str::from_utf8(&raw[span.clone()]).unwrap_or("");
                let this = owners
                    .channel_of_event(v)
                    .is_some_and(|name| s.channels.is_match(&name));
                named = true;
                ok |= this;
                if names.user_event && !this {
                    return false;
                }
            }
        }
        if named {
            return ok;
        }
        names.global
    }
}

/// What an event names (channels, uniqueids, queues), and whether it is a UserEvent or one
/// every tenant sees: read once per event, then checked against each client's scope.
#[derive(Debug, Clone, Default)]
pub struct EventNames {
    /// Every non-empty, valid UTF-8 value of a header that names something, in order.
    named: Vec<(Names, Range<usize>)>,
    user_event: bool,
    global: bool,
}

impl EventNames {
    pub fn of(ev: &Message) -> EventNames {
        let raw = ev.as_bytes();
        let named = ev
            .header_spans()
            .filter_map(|(k, span)| {
                let kind = header_names_bytes(k)?;
                let v = &raw[span.clone()];
                (!v.is_empty() && std::str::from_utf8(v).is_ok()).then_some((kind, span))
            })
            .collect();
        let name = ev.event_name();
        EventNames {
            named,
            user_event: name.is_some_and(|n| n.eq_ignore_ascii_case("UserEvent")),
            global: name.is_some_and(|n| GLOBAL_EVENTS.iter().any(|g| g.eq_ignore_ascii_case(n))),
        }
    }
}
