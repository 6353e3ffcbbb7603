//! One action judged header by header: what Asterisk would do with each value, and whether
//! this user may have it done. Split by what is judged: variables and functions
//! ([`variables`]), what an Originate runs ([`originate`]), each action's own rules
//! ([`actions`]); this module holds the judge and the header kinds.

mod actions;
#[cfg(test)]
mod acts_on;
mod originate;
mod variables;

use crate::dialplan;
use crate::glob::{Glob, GlobSet};
use std::sync::LazyLock;

/// [`DEFAULT_COMMANDS`], compiled once.
static DEFAULT: LazyLock<GlobSet> = LazyLock::new(|| DEFAULT_COMMANDS.iter().map(|g| Glob::new(g)).collect());
use crate::denial::{Denial, DenialKind, Verdict};
use crate::spec::{self, Arg};
use crate::{Channels, Policy};
use ami_proto::facts::{header_names, Names};
use ami_proto::{Action, ActionName, Message};
pub(crate) use variables::Access;

/// Headers a user without `system` may not put into a UserEvent: they frame or route
/// messages, and a client that reads the last of two headers would take the forgery.
const RESERVED_EVENT_HEADERS: &[&str] = &[
    "Event",
    "Response",
    "Privilege",
    "ActionID",
    "EventList",
    "ListItems",
    "SequenceNumber",
    "SystemName",
];

/// Actions a tenant may send without naming one of its own objects: the proxy answers them
/// itself, or their answers are lists the proxy filters by scope, or their headers are
/// judged on their own (UserEvent, Command against the `commands` list). Any other action
/// that names no channel, queue, context or AstDB family acts on the whole PBX.
const TENANT_WIDE: &[&str] = &[
    "login",
    "logoff",
    "challenge",
    "ping",
    "events",
    "filter",
    "waitevent",
    "listcommands",
    "coresettings",
    "corestatus",
    "status",
    "coreshowchannels",
    "queuestatus",
    "queuesummary",
    "extensionstatelist",
    "devicestatelist",
    "presencestatelist",
    "bridgelist",
    "parkedcalls",
    "agents",
    "userevent",
    "command",
];

/// Whether the action names a channel, queue, context or AstDB family (then the scope
/// judges what it reaches).
///
/// Only the first copy of a header counts, as in Asterisk: an empty `Channel:` followed by a
/// tenant's own does not make an action that Asterisk runs without a channel look targeted.
fn names_target(spec: &spec::ActionSpec, msg: &Message) -> bool {
    msg.headers().any(|(k, _)| {
        matches!(
            spec.arg(k),
            Some(
                Arg::Channel
                    | Arg::ChannelOrRegex
                    | Arg::ChannelPrefix
                    | Arg::Interface
                    | Arg::DialString
                    | Arg::Queue
                    | Arg::Context
                    | Arg::DbFamily
            )
        ) && msg.get(k).is_some_and(|first| !first.trim().is_empty())
    })
}

/// Commands a user without `system` may run when no `commands` list is configured: status
/// that holds no secret. Not `database show` (AstDB), `sip show users` or `pjsip show auths`
/// (secrets), `core show channel <name>` (every variable of a channel), `dialplan show`.
pub const DEFAULT_COMMANDS: &[&str] = &[
    "core show version",
    "core show uptime*",
    "core show channels*",
    "core show calls*",
    "core show hints",
    "core show codecs*",
    "pjsip show endpoints",
    "pjsip show contacts",
    "pjsip show registrations",
    "pjsip show channels",
    "sip show peers",
    "sip show registry",
    "sip show channels",
    "iax2 show peers",
    "iax2 show registry",
    "queue show*",
    "agent show*",
    "confbridge list*",
    "bridge show all",
];

/// One action being judged: who sends it, and what the policy allows them.
pub(crate) struct Judge<'a> {
    pub(crate) policy: &'a Policy,
    /// Trusted with everything Asterisk evaluates: `system`, and no tenant scope.
    pub(crate) full: bool,
    /// The `system` class (shell commands, files), whatever the scope.
    pub(crate) system: bool,
    pub(crate) scoped: bool,
    pub(crate) owners: &'a dyn Channels,
    pub(crate) action: &'a Action,
    pub(crate) msg: &'a Message,
}

impl Judge<'_> {
    /// Why an application or function of this reach is refused to this user (not trusted
    /// with everything), if it is: it needs `system`; or, shared, it may reach other
    /// tenants (a scoped user) or contexts beyond the user's own list (`Dial` of
    /// `Local/s@internal`, `CHANNEL(hangup_handler_push)`, `Gosub` into any context).
    pub(crate) fn refused_reach(&self, reach: dialplan::Reach) -> Option<&'static str> {
        match reach {
            dialplan::Reach::System => Some("needs system"),
            dialplan::Reach::Shared if self.scoped => Some("reaches other tenants"),
            dialplan::Reach::Shared if !self.policy.scope.contexts.is_empty() => {
                Some("reaches contexts beyond the user's contexts")
            }
            _ => None,
        }
    }

    /// Every header of the action, each by its kind in the audit table. A header name
    /// Asterisk would not match as written (blanks, control bytes) is one a client reading
    /// the event or answer might still take for `Server` or `Event`.
    pub(crate) fn headers(&self, server_header: &str) -> Verdict {
        let msg = self.msg;
        if !self.full && msg.headers().any(|(k, _)| !k.bytes().all(|b| b > 0x20 && b < 0x7f)) {
            return Err(Denial::new(
                DenialKind::Framing,
                "a header name holds blanks or control characters",
            ));
        }
        let lc = self.action.name().lowercase();
        let Some(spec) = spec::action(lc) else {
            // An action the proxy does not know (its classes already need system): it cannot
            // judge its headers, so a tenant may not send it.
            if self.scoped {
                return Err(Denial::new(
                    DenialKind::Scope,
                    "an unknown action cannot be checked against the scope",
                ));
            }
            return Ok(());
        };
        if self.scoped && !TENANT_WIDE.contains(&lc) && !names_target(spec, msg) {
            return Err(Denial::new(
                DenialKind::Scope,
                format!(
                    "{} names none of the tenant's objects and acts on the whole PBX",
                    spec.name
                ),
            ));
        }
        let mut action_ids = 0;
        for (key, value) in msg.headers() {
            if key.eq_ignore_ascii_case("ActionID") {
                // Asterisk reads the first (the proxy puts its own there) and ignores the rest,
                // but a UserEvent copies them into the event every client gets, where a
                // client library may take one for the ActionID of its own action.
                action_ids += 1;
                if action_ids > 1 && !self.full && spec.name.eq_ignore_ascii_case("UserEvent") {
                    return Err(Denial::new(DenialKind::EventHeader, "a second ActionID"));
                }
                continue;
            }
            if key.eq_ignore_ascii_case("Action") || key.eq_ignore_ascii_case(server_header) {
                continue;
            }
            match spec.arg(key) {
                Some(arg) => self.header(key, value, arg, server_header)?,
                // Asterisk does not read it; a header it might read after all is not passed
                // on for a user the proxy does not trust with everything.
                None if !self.full => {
                    return Err(Denial::new(
                        DenialKind::UnknownHeader,
                        format!("{key} is not a header of {}", spec.name),
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }

    fn no_expression(&self, what: &str, v: &str) -> Verdict {
        if !self.full && dialplan::has_expression(v) {
            return Err(Denial::new(
                DenialKind::Expression,
                format!("{what} holds a dialplan expression"),
            ));
        }
        Ok(())
    }

    fn context(&self, what: &str, v: &str) -> Verdict {
        if !self.policy.scope.listed(&self.policy.scope.contexts, v.trim()) {
            return Err(Denial::new(
                DenialKind::Scope,
                format!("{what} `{v}` is outside the user's contexts"),
            ));
        }
        Ok(())
    }

    fn channel(&self, what: &str, v: &str) -> Verdict {
        if self.scoped && !self.policy.scope.channel_ok(v, self.owners) {
            return Err(Denial::new(
                DenialKind::Scope,
                format!("{what} `{v}` is outside the user's scope"),
            ));
        }
        Ok(())
    }

    fn command(&self, cmd: &str) -> Verdict {
        let cmd = cmd.trim();
        let p = self.policy;
        let allowed = match &p.commands {
            Some(list) => list.is_match(cmd),
            None if self.scoped => false,
            None => self.system || DEFAULT.is_match(cmd),
        };
        if !allowed {
            return Err(Denial::new(
                DenialKind::Command,
                format!("command `{cmd}` is not allowed"),
            ));
        }
        Ok(())
    }

    /// A header of a UserEvent: it reaches every client, so it must not forge framing or
    /// name another tenant's objects.
    fn event_header(&self, key: &str, v: &str, server_header: &str) -> Verdict {
        if key.eq_ignore_ascii_case(server_header) {
            return Err(Denial::new(
                DenialKind::EventHeader,
                format!("{key} is the proxy's server tag"),
            ));
        }
        if !self.full && RESERVED_EVENT_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(key)) {
            return Err(Denial::new(
                DenialKind::EventHeader,
                format!("{key} frames AMI messages"),
            ));
        }
        if self.scoped {
            let s = &self.policy.scope;
            let ok = match header_names(key) {
                Some(Names::Channel) => s.channel_ok(v, self.owners),
                Some(Names::Uniqueid) => s.channel_ok(v, self.owners),
                Some(Names::Queue) => s.queues.is_match(v),
                None => true,
            };
            if !ok && !v.is_empty() {
                return Err(Denial::new(
                    DenialKind::Scope,
                    format!("{key} `{v}` is outside the user's scope"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn header(&self, key: &str, v: &str, arg: Arg, server_header: &str) -> Verdict {
        let s = &self.policy.scope;
        let present = !v.trim().is_empty();
        match arg {
            Arg::Data => Ok(()),
            Arg::Channel | Arg::Interface if present => self.channel(key, v),
            Arg::ChannelOrRegex if present => {
                if self.scoped && v.starts_with('/') {
                    return Err(Denial::new(
                        DenialKind::Scope,
                        format!("{key}: a /regex/ is not allowed to a scoped user"),
                    ));
                }
                self.channel(key, v)
            }
            Arg::ChannelPrefix if present => {
                // Asterisk takes the first channel whose name, or failing that uniqueid, starts
                // with the value: only the exact name of a live channel in scope is safe.
                if self.scoped && (!self.owners.is_live(v) || self.owners.channel_of(v).is_some()) {
                    return Err(Denial::new(
                        DenialKind::Scope,
                        format!("{key} `{v}` is not the exact name of a live channel"),
                    ));
                }
                self.channel(key, v)
            }
            Arg::DialString if present => {
                // Dialled as given (Park's TimeoutChannel through Dial, with substitution).
                self.no_expression(key, v)?;
                if !self.full && v.contains(',') {
                    return Err(Denial::new(
                        DenialKind::Arguments,
                        format!("{key} `{v}` carries Dial arguments"),
                    ));
                }
                self.channel(key, v)?;
                match dialplan::local_context(v) {
                    Some(ctx) if !s.contexts.is_empty() => self.context(key, ctx),
                    _ => Ok(()),
                }
            }
            Arg::Queue if present => {
                if self.scoped && !s.queues.is_match(v.trim()) {
                    return Err(Denial::new(
                        DenialKind::Scope,
                        format!("queue `{v}` is outside the user's scope"),
                    ));
                }
                Ok(())
            }
            Arg::Context if present => self.context(key, v),
            Arg::DbFamily if present => {
                if !s.listed(&s.db_families, v.trim()) {
                    return Err(Denial::new(
                        DenialKind::Scope,
                        format!("AstDB family `{v}` is outside the user's families"),
                    ));
                }
                Ok(())
            }
            Arg::Variable => {
                let access = if *self.action.name() == ActionName::Setvar {
                    Access::Write
                } else {
                    Access::Read
                };
                self.variable(key, v, access)
            }
            Arg::VariableList => {
                if self.full {
                    return Ok(());
                }
                let names = dialplan::separate_args(v, ',')
                    .ok_or_else(|| Denial::new(DenialKind::Arguments, format!("{key} cannot be read")))?;
                names.iter().try_for_each(|n| self.variable(key, n, Access::Read))
            }
            Arg::Assignments => self.assignments(key, v),
            Arg::Application if present => self.application(v),
            Arg::AppData => self.app_data(key, v),
            Arg::Gosub if present => {
                self.no_expression(key, v)?;
                match dialplan::gosub_location(v).0 {
                    Some(ctx) => self.context(key, ctx),
                    None => Ok(()),
                }
            }
            Arg::Expression => self.no_expression(key, v),
            Arg::Shell | Arg::Path | Arg::AgiCommand if present && !self.full => {
                Err(Denial::new(DenialKind::NeedsSystem, format!("{key} needs system")))
            }
            Arg::ConfigFile => self.config_file(key, v, present),
            Arg::CliCommand => self.command(v),
            Arg::EventHeader => self.event_header(key, v, server_header),
            Arg::Object(kind) if present && self.scoped => Err(Denial::new(
                DenialKind::Scope,
                format!("{key} names a {kind}, which a scoped user cannot reach"),
            )),
            _ => Ok(()),
        }
    }

    /// A configuration file name: never a path out of Asterisk's configuration folder,
    /// never a pattern, never manager.conf (the accounts and secrets, the proxy's own among
    /// them), and only the user's `config_files` when it has a list.
    fn config_file(&self, key: &str, v: &str, present: bool) -> Verdict {
        if v.starts_with('/') || v.split(['/', '\\']).any(|p| p == "..") {
            return Err(Denial::new(
                DenialKind::File,
                format!("{key} `{v}` leaves the configuration folder"),
            ));
        }
        if present && self.scoped {
            return Err(Denial::new(
                DenialKind::Scope,
                format!("{key}: configuration files are shared by every tenant"),
            ));
        }
        if self.full || !present {
            return Ok(());
        }
        // Asterisk resolves the name (realpath, and glob() with live_dangerously):
        // judge its canonical form, and no pattern at all.
        if v.contains(['*', '?', '[', ']', '{', '}', '~']) || v.bytes().any(|b| b < 0x21) {
            return Err(Denial::new(
                DenialKind::File,
                format!("{key} `{v}` is not a plain file name"),
            ));
        }
        let file = v
            .split(['/', '\\'])
            .filter(|p| !p.is_empty() && *p != ".")
            .collect::<Vec<_>>()
            .join("/")
            .to_ascii_lowercase();
        if file == "manager.conf" || file.starts_with("manager.d/") || file == "manager.d" {
            return Err(Denial::new(
                DenialKind::File,
                format!("{key} `{v}` holds the manager accounts and their secrets, the proxy's own among them"),
            ));
        }
        if let Some(list) = &self.policy.config_files {
            if !list.is_match(&file) {
                return Err(Denial::new(
                    DenialKind::File,
                    format!("{key} `{v}` is not in the user's config_files"),
                ));
            }
        }
        Ok(())
    }
}
