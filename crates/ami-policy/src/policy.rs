//! A user's policy, and the judgement of one action against it.

use crate::classes::Classes;
use crate::denial::{Denial, DenialKind};
use crate::filter::FilterSet;
use crate::glob::{Glob, GlobSet};
use crate::judge::Judge;
use crate::spec::{self, Arg};
use crate::{Channels, Scope};
use ami_proto::{Action, Message};
use ipnet::IpNet;
use regex::Regex;
use std::net::IpAddr;

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

/// A user-defined argument rule.
#[derive(Debug, Clone)]
pub struct ArgRule {
    pub action: Glob,
    pub header: String,
    pub pattern: Regex,
    /// Allow rules: the header must be present and match one of them. Deny rules: a match refuses.
    pub allow: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub permit: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub actions: Option<GlobSet>,
    pub deny_actions: GlobSet,
    pub commands: Option<GlobSet>,
    /// Dialplan functions a user without `system` may call in variable names (upper case).
    pub functions: Vec<String>,
    /// Applications a user without `system` may Originate (None: the safe default).
    pub applications: Option<Vec<String>>,
    /// Variable names a user without `system` may read and write (None: any but those
    /// Asterisk acts on; a tenant reads only the channel's built-ins).
    pub variables: Option<GlobSet>,
    /// Configuration files a user without `system` may name (None: any but manager.conf).
    pub config_files: Option<GlobSet>,
    pub rules: Vec<ArgRule>,
    pub scope: Scope,
    pub filters: FilterSet,
}

impl Policy {
    /// Source-address ACL: a deny match refuses; a non-empty permit list must match.
    pub fn permits_addr(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.permit.is_empty() || self.permit.iter().any(|n| n.contains(&ip))
    }

    /// Whether this user may send this action. Err holds the reason, for the audit log.
    ///
    /// Every header is judged by what Asterisk does with it ([`spec::Arg`]), every
    /// occurrence of it (Asterisk reads the first, or all for `Variable`), so a second copy
    /// cannot slip past.
    pub fn check_action(
        &self,
        write: Classes,
        action: &Action,
        owners: &dyn Channels,
        server_header: &str,
    ) -> Result<(), Denial> {
        let msg = action.message();
        let lc = action.name().lowercase();
        let system = write.contains(Classes::named("system").unwrap_or(Classes::NONE));
        let scoped = self.scope.scoped();
        let full = system && !scoped;
        // For every user, trusted or not: what would make Asterisk see two messages where the
        // proxy judged one (a line that starts with NUL is an empty line to Asterisk), or
        // one action where the proxy judged another.
        if msg.has_line_starting_with_nul() {
            return Err(Denial::new(
                DenialKind::Framing,
                "a line starting with NUL ends Asterisk's reading of the message",
            ));
        }
        if msg.count("Action") > 1 {
            return Err(Denial::new(DenialKind::Framing, "two Action headers"));
        }
        // Asterisk takes header values as bytes; a check that cannot read a value must not
        // pass it on. Only unrestricted users (system, no policy) may send non-UTF-8 values.
        if msg.has_invalid_utf8() && !(full && self.is_unrestricted()) {
            return Err(Denial::new(DenialKind::Framing, "a header is not valid UTF-8"));
        }
        if !full
            && msg
                .headers()
                .any(|(_, v)| v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f))
        {
            return Err(Denial::new(DenialKind::Framing, "a header holds a control character"));
        }
        if self.deny_actions.is_match(lc) {
            return Err(Denial::new(DenialKind::ActionList, "action denied by policy"));
        }
        if let Some(allow) = &self.actions {
            if !allow.is_match(lc) {
                return Err(Denial::new(
                    DenialKind::ActionList,
                    "action not in the user's allowed actions",
                ));
            }
        }
        let judge = Judge {
            policy: self,
            full,
            system,
            scoped,
            owners,
            action,
            msg,
        };
        // A header name Asterisk would not match as written (blanks, control bytes) is one a
        // client reading the event or answer might still take for `Server` or `Event`.
        if !full && msg.headers().any(|(k, _)| !k.bytes().all(|b| b > 0x20 && b < 0x7f)) {
            return Err(Denial::new(
                DenialKind::Framing,
                "a header name holds blanks or control characters",
            ));
        }
        match spec::action(lc) {
            Some(spec) => {
                if scoped && !TENANT_WIDE.contains(&lc) && !names_target(spec, msg) {
                    return Err(Denial::new(
                        DenialKind::Scope,
                        format!(
                            "{} names none of the tenant's objects and acts on the whole PBX",
                            spec.name
                        ),
                    ));
                }
                for (key, value) in msg.headers() {
                    if key.eq_ignore_ascii_case("Action")
                        || key.eq_ignore_ascii_case("ActionID")
                        || key.eq_ignore_ascii_case(server_header)
                    {
                        continue;
                    }
                    match spec.arg(key) {
                        Some(arg) => judge.header(key, value, arg, server_header)?,
                        // Asterisk does not read it; a header it might read after all is not
                        // passed on for a user the proxy does not trust with everything.
                        None if !full => {
                            return Err(Denial::new(
                                DenialKind::UnknownHeader,
                                format!("{key} is not a header of {}", spec.name),
                            ));
                        }
                        None => {}
                    }
                }
            }
            // An action the proxy does not know (its classes already need system): it cannot
            // judge its headers, so a tenant may not send it.
            None if scoped => {
                return Err(Denial::new(
                    DenialKind::Scope,
                    "an unknown action cannot be checked against the scope",
                ))
            }
            None => {}
        }
        judge.action_rules()?;
        let mut allow_headers: Vec<(&str, bool)> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.action.matches(lc)) {
            let value = msg.get(&rule.header);
            if rule.allow {
                let ok = value.is_some_and(|v| rule.pattern.is_match(v));
                match allow_headers
                    .iter_mut()
                    .find(|(h, _)| h.eq_ignore_ascii_case(&rule.header))
                {
                    Some((_, seen)) => *seen |= ok,
                    None => allow_headers.push((&rule.header, ok)),
                }
            } else if msg.get_all(&rule.header).any(|v| rule.pattern.is_match(v)) {
                return Err(Denial::new(
                    DenialKind::UserRule,
                    format!("{} matches a deny rule", rule.header),
                ));
            }
        }
        if let Some((h, _)) = allow_headers.iter().find(|(_, ok)| !ok) {
            return Err(Denial::new(
                DenialKind::UserRule,
                format!("{h} does not match the allow rules"),
            ));
        }
        if let Some(server) = msg.get(server_header) {
            if !server.eq_ignore_ascii_case("all") && !self.scope.server_ok(server) {
                return Err(Denial::new(
                    DenialKind::Scope,
                    format!("server `{server}` is outside the user's scope"),
                ));
            }
        }
        Ok(())
    }

    /// No policy beyond classes.
    pub fn is_unrestricted(&self) -> bool {
        self.actions.is_none()
            && self.deny_actions.is_empty()
            && self.commands.is_none()
            && self.rules.is_empty()
            && !self.scope.scoped()
            && self.scope.servers.is_empty()
            && self.scope.contexts.is_empty()
            && self.scope.db_families.is_empty()
    }
}
