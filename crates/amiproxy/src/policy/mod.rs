//! Per-user policy beyond Asterisk's classes: source-address ACL, action allow/deny lists,
//! argument rules (the built-in ones stop the known ways a leaked AMI login runs code on the
//! PBX), tenant scope over channels, queues and servers, and event filters.
//!
//! A refused action never reaches an upstream; the client gets `Permission denied` and
//! keeps its connection. The reason goes to the audit log only.

pub mod audit_doc;
pub mod spec;
pub mod table;

use crate::filter::FilterSet;
use crate::glob::{any_match, Glob};
use crate::perms::Classes;
use crate::router::{Owners, CHANNEL_HEADERS};
use ami_proto::Message;
use ipnet::IpNet;
use regex::Regex;
use std::net::IpAddr;
use std::sync::LazyLock;

/// Originate applications that run code, as Asterisk's own check lists them
/// (CVE-2012-2414, CVE-2024-42365): refused to users without `system`.
const DANGEROUS_APPS: &[&str] = &[
    "agi",
    "dbdeltree",
    "exec",
    "externalivr",
    "mixmonitor",
    "originate",
    "reload",
    "system",
];

/// Dialplan functions in Originate data that read or write files, databases or run shells.
static DANGEROUS_DATA: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(CURL|DB|EVAL|FILE|ODBC|REALTIME|SHELL)[A-Z_]*\s*\(").expect("valid regex"));

/// Actions that take configuration file names.
const CONFIG_ACTIONS: &[&str] = &[
    "getconfig",
    "getconfigjson",
    "updateconfig",
    "listcategories",
    "createconfig",
];
const CONFIG_FILE_HEADERS: &[&str] = &["Filename", "SrcFilename", "DstFilename"];

/// Events a tenant-scoped user still sees although they name no channel or queue.
const GLOBAL_EVENTS: &[&str] = &[
    "FullyBooted",
    "Shutdown",
    "Reload",
    "ProxyUpstreamStatus",
    "ProxyEventsDropped",
    "WaitEventComplete",
];

/// Headers naming targets (bridges, conferences, channel prefixes) a tenant scope over
/// channel names and queues cannot check: refused to scoped users.
const UNSCOPABLE_HEADERS: &[&str] = &[
    "BridgeUniqueid",
    "Conference",
    "ChannelPrefix",
    "AnnounceChannel",
    "Caller",
];

/// Queue actions that act on every queue when no `Queue` is given.
const QUEUE_WIDE_ACTIONS: &[&str] = &[
    "queuereset",
    "queuereload",
    "queuepause",
    "queuepenalty",
    "queuelog",
    "queuememberringinuse",
    "queueadd",
    "queueremove",
];

/// Applications that reach other channels by name (spying, dialing, picking up, paging):
/// refused in Originate to scoped users, whose reach is given by channel names.
const SPY_APPS: &[&str] = &[
    "ChanSpy",
    "ExtenSpy",
    "Dial",
    "Page",
    "Pickup",
    "PickupChan",
    "Bridge",
    "BargeIn",
    "DAHDIBarge",
];

/// Commands a user without `system` may run when no `commands` list is configured.
pub const DEFAULT_COMMANDS: &[&str] = &[
    "core show *",
    "pjsip show *",
    "sip show *",
    "queue show*",
    "database show*",
];

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
pub struct Scope {
    pub channels: Vec<Glob>,
    pub queues: Vec<Glob>,
    pub servers: Vec<String>,
}

impl Scope {
    fn scoped(&self) -> bool {
        !self.channels.is_empty() || !self.queues.is_empty()
    }

    fn server_ok(&self, server: &str) -> bool {
        self.servers.is_empty() || self.servers.iter().any(|s| s.eq_ignore_ascii_case(server))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub permit: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub actions: Option<Vec<Glob>>,
    pub deny_actions: Vec<Glob>,
    pub commands: Option<Vec<Glob>>,
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
    pub fn check_action(
        &self,
        write: Classes,
        lc: &str,
        msg: &Message,
        owners: &Owners,
        server_header: &str,
    ) -> Result<(), String> {
        // Asterisk takes header values as bytes; a check that cannot read a value must not
        // pass it on. Only unrestricted users (system, no policy) may send non-UTF-8 values.
        if msg.has_invalid_utf8() && !(write.contains(Classes::parse_lenient("system")) && self.is_unrestricted()) {
            return Err("a header is not valid UTF-8".into());
        }
        if any_match(&self.deny_actions, lc) {
            return Err("action denied by policy".into());
        }
        if let Some(allow) = &self.actions {
            if !any_match(allow, lc) {
                return Err("action not in the user's allowed actions".into());
            }
        }
        let system = write.contains(Classes::parse_lenient("system"));
        if lc == "originate" && !system {
            if let Some(app) = msg.get("Application") {
                let app_lc = app.to_ascii_lowercase();
                if let Some(bad) = DANGEROUS_APPS.iter().find(|a| app_lc.contains(*a)) {
                    return Err(format!("Originate application `{app}` ({bad}) needs system"));
                }
            }
            if let Some(data) = msg.get("Data") {
                if DANGEROUS_DATA.is_match(data) {
                    return Err("Originate data calls a dangerous dialplan function".into());
                }
            }
        }
        if CONFIG_ACTIONS.contains(&lc) {
            for h in CONFIG_FILE_HEADERS {
                if let Some(f) = msg.get(h) {
                    if f.starts_with('/') || f.split(['/', '\\']).any(|p| p == "..") {
                        return Err(format!("{h} `{f}` leaves the configuration folder"));
                    }
                }
            }
        }
        if lc == "command" {
            let cmd = msg.get("Command").unwrap_or("").trim();
            let allowed = match &self.commands {
                Some(list) => any_match(list, cmd),
                None => system || DEFAULT_COMMANDS.iter().any(|g| Glob::new(g).matches(cmd)),
            };
            if !allowed {
                return Err(format!("command `{cmd}` is not allowed"));
            }
        }
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
            } else if value.is_some_and(|v| rule.pattern.is_match(v)) {
                return Err(format!("{} matches a deny rule", rule.header));
            }
        }
        if let Some((h, _)) = allow_headers.iter().find(|(_, ok)| !ok) {
            return Err(format!("{h} does not match the allow rules"));
        }
        self.check_scope(lc, msg, owners, server_header)
    }

    /// No policy beyond classes.
    pub fn is_unrestricted(&self) -> bool {
        self.actions.is_none()
            && self.deny_actions.is_empty()
            && self.commands.is_none()
            && self.rules.is_empty()
            && !self.scope.scoped()
            && self.scope.servers.is_empty()
    }

    fn check_scope(&self, lc: &str, msg: &Message, owners: &Owners, server_header: &str) -> Result<(), String> {
        let s = &self.scope;
        if let Some(server) = msg.get(server_header) {
            if !server.eq_ignore_ascii_case("all") && !s.server_ok(server) {
                return Err(format!("server `{server}` is outside the user's scope"));
            }
        }
        if !s.scoped() {
            return Ok(());
        }
        // Targets that a channel or queue scope cannot describe.
        for h in UNSCOPABLE_HEADERS {
            if msg.get_bytes(h).is_some_and(|v| !v.is_empty()) {
                return Err(format!("{h} is not allowed to a scoped user"));
            }
        }
        if (lc == "command" && self.commands.is_none()) || lc == "queues" {
            return Err(format!(
                "{lc} shows every tenant's data; give the user a `commands` list"
            ));
        }
        if QUEUE_WIDE_ACTIONS.contains(&lc) && msg.get("Queue").is_none_or(|q| q.is_empty()) {
            return Err(format!("{lc} without a Queue acts on every tenant's queues"));
        }
        if lc == "originate" {
            if let Some(app) = msg.get("Application") {
                if SPY_APPS.iter().any(|a| app.eq_ignore_ascii_case(a)) {
                    return Err(format!(
                        "Originate application `{app}` reaches channels outside the scope"
                    ));
                }
            }
        }
        for h in CHANNEL_HEADERS {
            let Some(v) = msg.get(h).filter(|v| !v.is_empty()) else {
                continue;
            };
            if lc == "hangup" && v.starts_with('/') {
                return Err("Hangup by regular expression is not allowed to a scoped user".into());
            }
            // A uniqueid stands for the channel it names.
            let name = owners.channel_of(v);
            let name = name.as_deref().unwrap_or(v);
            if !any_match(&s.channels, name) {
                return Err(format!("{h} `{v}` is outside the user's scope"));
            }
        }
        if let Some(q) = msg.get("Queue").filter(|q| !q.is_empty()) {
            if !any_match(&s.queues, q) {
                return Err(format!("queue `{q}` is outside the user's scope"));
            }
        }
        Ok(())
    }

    /// Servers this user may reach (all when empty).
    pub fn server_allowed(&self, server: &str) -> bool {
        self.scope.server_ok(server)
    }

    /// Whether an event (or list item) is within the user's scope.
    pub fn event_in_scope(&self, ev: &Message, server_header: &str) -> bool {
        let s = &self.scope;
        if !s.servers.is_empty() {
            if let Some(server) = ev.get(server_header) {
                if !s.server_ok(server) {
                    return false;
                }
            }
        }
        if !s.scoped() {
            return true;
        }
        let mut has_channel = false;
        let mut channel_ok = false;
        for (k, v) in ev.headers() {
            let kb = k.as_bytes();
            let is_channel = (kb.len() >= 7 && kb[kb.len() - 7..].eq_ignore_ascii_case(b"Channel"))
                || k.eq_ignore_ascii_case("Channel1")
                || k.eq_ignore_ascii_case("Channel2");
            if is_channel && !v.is_empty() {
                has_channel = true;
                channel_ok |= any_match(&s.channels, v);
            }
        }
        let queue = ev.get("Queue");
        let queue_ok = queue.is_some_and(|q| any_match(&s.queues, q));
        match (has_channel, queue.is_some()) {
            (true, true) => channel_ok || queue_ok,
            (true, false) => channel_ok,
            (false, true) => queue_ok,
            (false, false) => ev
                .event_name()
                .is_some_and(|n| GLOBAL_EVENTS.iter().any(|g| g.eq_ignore_ascii_case(n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::MessageBuilder;

    fn msg(h: &[(&str, &str)]) -> Message {
        h.iter().fold(MessageBuilder::new(), |b, (k, v)| b.header(k, v)).build()
    }

    fn write(c: &str) -> Classes {
        Classes::parse(c).unwrap()
    }

    #[test]
    fn attack_payloads_are_refused_without_system() {
        let p = Policy::default();
        let o = Owners::default();
        let cases: &[&[(&str, &str)]] = &[
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@x"),
                ("Application", "System"),
                ("Data", "rm -rf /"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@x"),
                ("Application", "Set"),
                ("Data", "FILE(/etc/x)=y"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@x"),
                ("Application", "NoOp"),
                ("Data", "${SHELL(id)}"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@x"),
                ("Application", "TryExec"),
                ("Data", "x"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@x"),
                ("Application", "NoOp"),
                ("Data", "${db_delete(a/b)}"),
            ],
        ];
        for c in cases {
            let m = msg(c);
            assert!(
                p.check_action(write("originate"), "originate", &m, &o, "Server")
                    .is_err(),
                "{m:?}"
            );
            assert!(
                p.check_action(write("originate,system"), "originate", &m, &o, "Server")
                    .is_ok(),
                "{m:?}"
            );
        }
        let ok = msg(&[
            ("Action", "Originate"),
            ("Channel", "Local/1@x"),
            ("Application", "Wait"),
            ("Data", "feedback 3"),
        ]);
        assert!(p
            .check_action(write("originate"), "originate", &ok, &o, "Server")
            .is_ok());
        let trav = msg(&[("Action", "GetConfig"), ("Filename", "../../etc/passwd")]);
        assert!(p.check_action(write("all"), "getconfig", &trav, &o, "Server").is_err());
        let abs = msg(&[("Action", "GetConfig"), ("Filename", "/etc/passwd")]);
        assert!(p
            .check_action(write("config"), "getconfig", &abs, &o, "Server")
            .is_err());
        let fine = msg(&[("Action", "GetConfig"), ("Filename", "sip.conf")]);
        assert!(p
            .check_action(write("config"), "getconfig", &fine, &o, "Server")
            .is_ok());
        let sh = msg(&[("Action", "Command"), ("Command", "!sh")]);
        assert!(p.check_action(write("command"), "command", &sh, &o, "Server").is_err());
        let show = msg(&[("Action", "Command"), ("Command", "core show channels")]);
        assert!(p.check_action(write("command"), "command", &show, &o, "Server").is_ok());
    }

    #[test]
    fn rules_lists_and_scope() {
        let o = Owners::default();
        o.insert("acme-1.5", 0);
        o.name_uniqueid("acme-1.5", "PJSIP/acme-0005");
        let p = Policy {
            actions: Some(vec![Glob::new("originate"), Glob::new("hangup"), Glob::new("queue*")]),
            deny_actions: vec![Glob::new("queuereset")],
            rules: vec![ArgRule {
                action: Glob::new("originate"),
                header: "Context".into(),
                pattern: Regex::new("^outbound$").unwrap(),
                allow: true,
            }],
            scope: Scope {
                channels: vec![Glob::new("PJSIP/acme-*"), Glob::new("Local/*@acme")],
                queues: vec![Glob::new("acme-*")],
                servers: vec!["pbx1".into()],
            },
            ..Default::default()
        };
        let w = write("all");
        let chk = |h: &[(&str, &str)]| {
            let m = msg(h);
            let lc = m.action().unwrap().to_ascii_lowercase();
            p.check_action(w, &lc, &m, &o, "Server")
        };
        assert!(chk(&[
            ("Action", "Originate"),
            ("Channel", "PJSIP/acme-1"),
            ("Context", "outbound"),
            ("Exten", "1")
        ])
        .is_ok());
        assert!(chk(&[
            ("Action", "Originate"),
            ("Channel", "PJSIP/acme-1"),
            ("Context", "internal")
        ])
        .is_err());
        assert!(chk(&[("Action", "Originate"), ("Channel", "PJSIP/acme-1")]).is_err());
        assert!(chk(&[
            ("Action", "Originate"),
            ("Channel", "PJSIP/other-1"),
            ("Context", "outbound")
        ])
        .is_err());
        assert!(chk(&[("Action", "Hangup"), ("Channel", "acme-1.5")]).is_ok());
        assert!(chk(&[("Action", "Hangup"), ("Channel", "/.*/")]).is_err());
        assert!(chk(&[("Action", "QueueStatus"), ("Queue", "acme-sales")]).is_ok());
        assert!(chk(&[("Action", "QueueStatus"), ("Queue", "other-sales")]).is_err());
        assert!(chk(&[("Action", "QueueReset"), ("Queue", "acme-sales")]).is_err());
        assert!(chk(&[("Action", "Status")]).is_err());
        assert!(chk(&[("Action", "QueueStatus"), ("Server", "pbx2")]).is_err());

        let ev = |h: &[(&str, &str)]| p.event_in_scope(&msg(h), "Server");
        assert!(ev(&[
            ("Event", "Newchannel"),
            ("Channel", "PJSIP/acme-1"),
            ("Server", "pbx1")
        ]));
        assert!(!ev(&[
            ("Event", "Newchannel"),
            ("Channel", "PJSIP/other-1"),
            ("Server", "pbx1")
        ]));
        assert!(!ev(&[
            ("Event", "Newchannel"),
            ("Channel", "PJSIP/acme-1"),
            ("Server", "pbx2")
        ]));
        assert!(ev(&[
            ("Event", "DialBegin"),
            ("Channel", "PJSIP/acme-1"),
            ("DestChannel", "PJSIP/trunk-9")
        ]));
        assert!(ev(&[("Event", "QueueParams"), ("Queue", "acme-sales")]));
        assert!(!ev(&[("Event", "QueueParams"), ("Queue", "beta-sales")]));
        assert!(!ev(&[("Event", "UserEvent"), ("UserEvent", "x")]));
        assert!(ev(&[("Event", "ProxyUpstreamStatus"), ("Status", "Connected")]));
    }

    #[test]
    fn acl() {
        let p = Policy {
            permit: vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()],
            deny: vec!["10.0.5.0/24".parse().unwrap()],
            ..Default::default()
        };
        assert!(p.permits_addr("10.1.2.3".parse().unwrap()));
        assert!(!p.permits_addr("10.0.5.3".parse().unwrap()));
        assert!(!p.permits_addr("192.168.1.1".parse().unwrap()));
        assert!(p.permits_addr("::ffff:127.0.0.1".parse().unwrap()));
        assert!(Policy::default().permits_addr("192.168.1.1".parse().unwrap()));
    }
}
