//! A user's policy, and the judgement of one action against it.

use crate::classes::Classes;
use crate::denial::{Denial, DenialKind};
use crate::filter::FilterSet;
use crate::glob::{Glob, GlobSet};
use crate::judge::Judge;
use crate::{Channels, Scope};
use ami_proto::{Action, Message};
use ipnet::IpNet;
use regex::Regex;
use std::net::IpAddr;

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
        self.framing(msg, full)?;
        self.action_lists(lc)?;
        let judge = Judge {
            policy: self,
            full,
            system,
            scoped,
            owners,
            action,
            msg,
        };
        judge.headers(server_header)?;
        judge.action_rules()?;
        self.user_rules(lc, msg)?;
        self.server_scope(msg, server_header)
    }

    /// For every user, trusted or not: what would make Asterisk see two messages where the
    /// proxy judged one (a line that starts with NUL is an empty line to Asterisk), or one
    /// action where the proxy judged another, or a value the proxy cannot read.
    fn framing(&self, msg: &Message, full: bool) -> Result<(), Denial> {
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
        Ok(())
    }

    /// The user's `actions` and `deny_actions`.
    fn action_lists(&self, lc: &str) -> Result<(), Denial> {
        if self.deny_actions.is_match(lc) {
            return Err(Denial::new(DenialKind::ActionList, "action denied by policy"));
        }
        match &self.actions {
            Some(allow) if !allow.is_match(lc) => Err(Denial::new(
                DenialKind::ActionList,
                "action not in the user's allowed actions",
            )),
            _ => Ok(()),
        }
    }

    /// The user's own `rules`: a deny rule that matches any copy of its header refuses; for
    /// each header with allow rules, the header must be there and match one of them.
    fn user_rules(&self, lc: &str, msg: &Message) -> Result<(), Denial> {
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
        match allow_headers.iter().find(|(_, ok)| !ok) {
            Some((h, _)) => Err(Denial::new(
                DenialKind::UserRule,
                format!("{h} does not match the allow rules"),
            )),
            None => Ok(()),
        }
    }

    /// The server the client names must be one of the user's.
    fn server_scope(&self, msg: &Message, server_header: &str) -> Result<(), Denial> {
        match msg.get(server_header) {
            Some(server) if !server.eq_ignore_ascii_case("all") && !self.scope.server_ok(server) => Err(Denial::new(
                DenialKind::Scope,
                format!("server `{server}` is outside the user's scope"),
            )),
            _ => Ok(()),
        }
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
