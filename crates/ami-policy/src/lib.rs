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
pub mod dialplan;
pub mod filter;
pub mod glob;
pub mod spec;
pub mod table;

use crate::classes::Classes;
use crate::filter::FilterSet;
use crate::glob::{any_match, Glob};
use ami_proto::Message;
use dialplan::{AppArgs, Assign, Reach, VarRef};
use ipnet::IpNet;
use regex::Regex;
use spec::Arg;
use std::net::IpAddr;

/// What the policy needs to know of live channels: the proxy's ownership index, learned
/// from the upstreams' events. A trait, so the engine stays free of the proxy's state.
pub trait Channels {
    /// The channel a uniqueid names, when exactly one upstream has that uniqueid.
    fn channel_of(&self, uniqueid: &str) -> Option<String>;
    /// Whether a channel name or uniqueid is live on exactly one upstream.
    fn is_live(&self, key: &str) -> bool;
}

/// Events a tenant-scoped user still sees although they name no channel or queue.
const GLOBAL_EVENTS: &[&str] = &[
    "FullyBooted",
    "Shutdown",
    "Reload",
    "ProxyUpstreamStatus",
    "ProxyEventsDropped",
    "WaitEventComplete",
];

/// Actions that act on every tenant's objects when the header that narrows them is empty:
/// (action, header). Refused to scoped users without it.
const WIDE_WITHOUT: &[(&str, &str)] = &[
    ("getvar", "Channel"),
    ("setvar", "Channel"),
    ("queuereset", "Queue"),
    ("queuereload", "Queue"),
    ("queuepause", "Queue"),
    ("queuepenalty", "Queue"),
    ("queuelog", "Queue"),
    ("queuememberringinuse", "Queue"),
    ("queueadd", "Queue"),
    ("queueremove", "Queue"),
    ("dbget", "Family"),
    ("dbgettree", "Family"),
    ("showdialplan", "Context"),
    ("extensionstate", "Context"),
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

/// A user-defined argument rule.
#[derive(Debug, Clone)]
pub struct ArgRule {
    pub action: Glob,
    pub header: String,
    pub pattern: Regex,
    /// Allow rules: the header must be present and match one of them. Deny rules: a match refuses.
    pub allow: bool,
}

/// What a tenant may touch. A user is scoped when it has channels or queues; contexts and
/// AstDB families narrow those headers for every user that names some.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub channels: Vec<Glob>,
    pub queues: Vec<Glob>,
    pub contexts: Vec<Glob>,
    pub db_families: Vec<Glob>,
    pub servers: Vec<String>,
}

impl Scope {
    pub fn scoped(&self) -> bool {
        !self.channels.is_empty() || !self.queues.is_empty()
    }

    fn server_ok(&self, server: &str) -> bool {
        self.servers.is_empty() || self.servers.iter().any(|s| s.eq_ignore_ascii_case(server))
    }

    /// A channel name, or a uniqueid standing for the channel it names.
    fn channel_ok(&self, v: &str, owners: &dyn Channels) -> bool {
        let name = owners.channel_of(v);
        any_match(&self.channels, name.as_deref().unwrap_or(v))
    }

    /// A name checked against an optional list: when the list is empty, only unscoped
    /// users may name anything.
    fn listed(&self, list: &[Glob], v: &str) -> bool {
        if list.is_empty() {
            !self.scoped()
        } else {
            any_match(list, v)
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub permit: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub actions: Option<Vec<Glob>>,
    pub deny_actions: Vec<Glob>,
    pub commands: Option<Vec<Glob>>,
    /// Dialplan functions a user without `system` may call in variable names (upper case).
    pub functions: Vec<String>,
    /// Applications a user without `system` may Originate (None: the safe default).
    pub applications: Option<Vec<String>>,
    /// Variable names a user without `system` may read and write (None: any but those
    /// Asterisk acts on; a tenant reads only the channel's built-ins).
    pub variables: Option<Vec<Glob>>,
    /// Configuration files a user without `system` may name (None: any but manager.conf).
    pub config_files: Option<Vec<Glob>>,
    pub rules: Vec<ArgRule>,
    pub scope: Scope,
    pub filters: FilterSet,
}

/// Whether a variable is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// Variables Asterisk reads from the channel itself, never from the globals
/// (`ast_str_retrieve_variable`'s built-ins).
const BUILTIN_VARIABLES: &[&str] = &[
    "CALLINGANI2",
    "CALLINGPRES",
    "CALLINGTNS",
    "CALLINGTON",
    "CHANNEL",
    "CONTEXT",
    "ENTITYID",
    "EPOCH",
    "EXTEN",
    "HANGUPCAUSE",
    "HINT",
    "HINTNAME",
    "PRIORITY",
    "SYSTEMNAME",
    "UNIQUEID",
];

/// Channel variables Asterisk acts on: commands it runs when a recording ends
/// (`MONITOR_EXEC`, MixMonitor options armed by `TOUCH_MIXMONITOR_OPTIONS`), features it arms,
/// contexts it sends the channel to. A user without `system` may not set them (with their
/// `_`/`__` inheritance prefixes stripped).
const INTERPRETED_VARIABLES: &[&str] = &[
    "MONITOR_*",
    "TOUCH_*",
    "MIXMON*",
    "*MIXMONITOR*",
    "AUTOMIXMON*",
    "AUTOMON*",
    "BRIDGE_FEATURES",
    "DYNAMIC_FEATURES",
    "TRANSFER_CONTEXT",
    "FORWARD_CONTEXT",
    "GOSUB_*",
    "MACRO_*",
    "PARKING*",
];

/// One action being judged: who sends it, and what the policy allows them.
struct Judge<'a> {
    policy: &'a Policy,
    /// Trusted with everything Asterisk evaluates: `system`, and no tenant scope.
    full: bool,
    /// The `system` class (shell commands, files), whatever the scope.
    system: bool,
    scoped: bool,
    owners: &'a dyn Channels,
    lc: &'a str,
    msg: &'a Message,
}

type Verdict = Result<(), String>;

impl Judge<'_> {
    fn no_expression(&self, what: &str, v: &str) -> Verdict {
        if !self.full && dialplan::has_expression(v) {
            return Err(format!("{what} holds a dialplan expression"));
        }
        Ok(())
    }

    /// A variable name, or a dialplan function call, as Getvar/Setvar/assignments read it.
    fn variable(&self, what: &str, v: &str, access: Access) -> Verdict {
        if self.full {
            return Ok(());
        }
        match dialplan::var_ref(v) {
            VarRef::Plain(name) => self.plain_variable(what, name, access),
            VarRef::Function { name, args } => {
                let upper = name.to_ascii_uppercase();
                match dialplan::function_reach(&upper) {
                    Reach::System => return Err(format!("{what}: function {upper} needs system")),
                    Reach::Shared if self.scoped => {
                        return Err(format!("{what}: function {upper} reaches other tenants"))
                    }
                    _ => {}
                }
                if !self.policy.functions.contains(&upper) {
                    return Err(format!("{what}: function {upper} is not in the user's functions"));
                }
                self.no_expression(what, args)
            }
            VarRef::Other => Err(format!("{what} `{v}` is not a variable name")),
        }
    }

    /// A plain variable name. Writes: never one Asterisk interprets (a command it runs, a
    /// context it jumps to, a feature it arms); reads by a tenant: only names Asterisk takes
    /// from the channel itself, since any other falls back to the global variables. With a
    /// `variables` list, only its names (builtins stay readable).
    fn plain_variable(&self, what: &str, name: &str, access: Access) -> Verdict {
        let base = name.split(':').next().unwrap_or(name);
        let bare = base.trim_start_matches('_');
        let listed = || self.policy.variables.as_ref().is_some_and(|l| any_match(l, bare));
        match access {
            Access::Write => {
                if INTERPRETED_VARIABLES.iter().any(|g| Glob::new(g).matches(bare)) {
                    return Err(format!("{what}: Asterisk acts on the variable {bare}"));
                }
                if self.policy.variables.is_some() && !listed() {
                    return Err(format!("{what}: {bare} is not in the user's variables"));
                }
            }
            Access::Read => {
                let builtin = BUILTIN_VARIABLES.iter().any(|b| b.eq_ignore_ascii_case(bare));
                let bounded = self.scoped || self.policy.variables.is_some();
                if bounded && !builtin && !listed() {
                    return Err(format!(
                        "{what}: {bare} may be a global variable; list it in the user's variables"
                    ));
                }
            }
        }
        Ok(())
    }

    /// `name=value` pairs as Asterisk splits them.
    fn assignments(&self, what: &str, v: &str) -> Verdict {
        if self.full {
            return Ok(());
        }
        let parts = dialplan::separate_args(v.trim_start(), ',')
            .ok_or_else(|| format!("{what} has too many parts or a trailing backslash"))?;
        for part in &parts {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            self.variable(what, name, Access::Write)?;
            self.no_expression(what, value)?;
        }
        Ok(())
    }

    fn context(&self, what: &str, v: &str) -> Verdict {
        if !self.policy.scope.listed(&self.policy.scope.contexts, v.trim()) {
            return Err(format!("{what} `{v}` is outside the user's contexts"));
        }
        Ok(())
    }

    fn channel(&self, what: &str, v: &str) -> Verdict {
        if self.scoped && !self.policy.scope.channel_ok(v, self.owners) {
            return Err(format!("{what} `{v}` is outside the user's scope"));
        }
        Ok(())
    }

    /// The application an Originate runs, and its data read as that application reads it.
    fn application(&self, app: &str) -> Verdict {
        if self.full {
            return Ok(());
        }
        let (reach, _) = dialplan::application(app.trim());
        match reach {
            Reach::System => return Err(format!("application `{app}` needs system")),
            Reach::Shared if self.scoped => return Err(format!("application `{app}` reaches other tenants")),
            _ => {}
        }
        let listed = match &self.policy.applications {
            Some(list) => list.iter().any(|a| a.eq_ignore_ascii_case(app.trim())),
            None => dialplan::DEFAULT_APPLICATIONS
                .iter()
                .any(|a| a.eq_ignore_ascii_case(app.trim())),
        };
        if !listed {
            return Err(format!("application `{app}` is not in the user's applications"));
        }
        Ok(())
    }

    fn app_data(&self, what: &str, data: &str) -> Verdict {
        self.no_expression(what, data)?;
        if self.full {
            return Ok(());
        }
        let app = self.msg.get("Application").unwrap_or("").trim();
        let spec = dialplan::application(app).1;
        match spec.assign {
            Assign::One => {
                if let Some((name, value)) = data.split_once('=') {
                    self.variable(what, name, Access::Write)?;
                    self.no_expression(what, value)?;
                }
                return Ok(());
            }
            Assign::Many => return self.assignments(what, data),
            Assign::No => {}
        }
        if spec == AppArgs::PLAIN {
            return Ok(());
        }
        let args = dialplan::separate_args(data, ',').ok_or_else(|| format!("{what} cannot be read"))?;
        let arg = |i: Option<usize>| i.and_then(|i| args.get(i)).map(|a| a.trim()).filter(|a| !a.is_empty());
        if let Some(v) = arg(spec.variable) {
            self.variable(what, v, Access::Write)?;
        }
        // Sound names, not paths: a file elsewhere may be another tenant's voicemail or
        // recording.
        if let Some(files) = arg(spec.files) {
            if files.split('&').any(not_a_sound_name) {
                return Err(format!("{what}: a sound file path leaves Asterisk's sound folders"));
            }
        }
        if let Some(channel) = arg(spec.channel) {
            self.channel(what, channel)?;
        }
        // Between quotes a say-format names a sound file: `'/var/spool/...'` is a path.
        if let Some(format) = arg(spec.quoted_files) {
            if format.split('\'').skip(1).step_by(2).any(not_a_sound_name) {
                return Err(format!("{what}: a sound file path leaves Asterisk's sound folders"));
            }
        }
        Ok(())
    }

    fn command(&self, cmd: &str) -> Verdict {
        let cmd = cmd.trim();
        let p = self.policy;
        let allowed = match &p.commands {
            Some(list) => any_match(list, cmd),
            None if self.scoped => false,
            None => self.system || DEFAULT_COMMANDS.iter().any(|g| Glob::new(g).matches(cmd)),
        };
        if !allowed {
            return Err(format!("command `{cmd}` is not allowed"));
        }
        Ok(())
    }

    /// A header of a UserEvent: it reaches every client, so it must not forge framing or
    /// name another tenant's objects.
    fn event_header(&self, key: &str, v: &str, server_header: &str) -> Verdict {
        if key.eq_ignore_ascii_case(server_header) {
            return Err(format!("{key} is the proxy's server tag"));
        }
        if !self.full && RESERVED_EVENT_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(key)) {
            return Err(format!("{key} frames AMI messages"));
        }
        if self.scoped {
            let s = &self.policy.scope;
            let ok = match event_header_kind(key) {
                Some(Named::Channel) => s.channel_ok(v, self.owners),
                Some(Named::Uniqueid) => s.channel_ok(v, self.owners),
                Some(Named::Queue) => any_match(&s.queues, v),
                None => true,
            };
            if !ok && !v.is_empty() {
                return Err(format!("{key} `{v}` is outside the user's scope"));
            }
        }
        Ok(())
    }

    fn header(&self, key: &str, v: &str, arg: Arg, server_header: &str) -> Verdict {
        let s = &self.policy.scope;
        let present = !v.trim().is_empty();
        match arg {
            Arg::Data => Ok(()),
            Arg::Channel | Arg::Interface if present => self.channel(key, v),
            Arg::ChannelOrRegex if present => {
                if self.scoped && v.starts_with('/') {
                    return Err(format!("{key}: a /regex/ is not allowed to a scoped user"));
                }
                self.channel(key, v)
            }
            Arg::ChannelPrefix if present => {
                // Asterisk takes the first channel whose name, or failing that uniqueid, starts
                // with the value: only the exact name of a live channel in scope is safe.
                if self.scoped && (!self.owners.is_live(v) || self.owners.channel_of(v).is_some()) {
                    return Err(format!("{key} `{v}` is not the exact name of a live channel"));
                }
                self.channel(key, v)
            }
            Arg::DialString if present => {
                // Dialled as given (Park's TimeoutChannel through Dial, with substitution).
                self.no_expression(key, v)?;
                if !self.full && v.contains(',') {
                    return Err(format!("{key} `{v}` carries Dial arguments"));
                }
                self.channel(key, v)?;
                match dialplan::local_context(v) {
                    Some(ctx) if !s.contexts.is_empty() => self.context(key, ctx),
                    _ => Ok(()),
                }
            }
            Arg::Queue if present => {
                if self.scoped && !any_match(&s.queues, v.trim()) {
                    return Err(format!("queue `{v}` is outside the user's scope"));
                }
                Ok(())
            }
            Arg::Context if present => self.context(key, v),
            Arg::DbFamily if present => {
                if !s.listed(&s.db_families, v.trim()) {
                    return Err(format!("AstDB family `{v}` is outside the user's families"));
                }
                Ok(())
            }
            Arg::Variable => {
                let access = if self.lc == "setvar" {
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
                let names = dialplan::separate_args(v, ',').ok_or_else(|| format!("{key} cannot be read"))?;
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
            Arg::Shell | Arg::Path | Arg::AgiCommand if present && !self.full => Err(format!("{key} needs system")),
            Arg::ConfigFile => {
                if v.starts_with('/') || v.split(['/', '\\']).any(|p| p == "..") {
                    return Err(format!("{key} `{v}` leaves the configuration folder"));
                }
                if present && self.scoped {
                    return Err(format!("{key}: configuration files are shared by every tenant"));
                }
                if self.full || !present {
                    return Ok(());
                }
                // Asterisk resolves the name (realpath, and glob() with live_dangerously):
                // judge its canonical form, and no pattern at all.
                if v.contains(['*', '?', '[', ']', '{', '}', '~']) || v.bytes().any(|b| b < 0x21) {
                    return Err(format!("{key} `{v}` is not a plain file name"));
                }
                let file = v
                    .split(['/', '\\'])
                    .filter(|p| !p.is_empty() && *p != ".")
                    .collect::<Vec<_>>()
                    .join("/")
                    .to_ascii_lowercase();
                if file == "manager.conf" || file.starts_with("manager.d/") || file == "manager.d" {
                    return Err(format!(
                        "{key} `{v}` holds the manager accounts and their secrets, the proxy's own among them"
                    ));
                }
                if let Some(list) = &self.policy.config_files {
                    if !any_match(list, &file) {
                        return Err(format!("{key} `{v}` is not in the user's config_files"));
                    }
                }
                Ok(())
            }
            Arg::CliCommand => self.command(v),
            Arg::EventHeader => self.event_header(key, v, server_header),
            Arg::Object(kind) if present && self.scoped => {
                Err(format!("{key} names a {kind}, which a scoped user cannot reach"))
            }
            _ => Ok(()),
        }
    }
}

/// A sound file given as a path (absolute, or climbing out with `..`) rather than a name
/// under Asterisk's sound folders.
fn not_a_sound_name(f: &str) -> bool {
    let f = f.trim();
    f.starts_with('/') || f.split('/').any(|p| p == "..")
}

/// What an event header names, for tenant scope.
enum Named {
    Channel,
    Uniqueid,
    Queue,
}

/// Whether an event header names a channel, a uniqueid or a queue: every `...Channel`
/// (`DestChannel`, `TransfererChannel`, ...), `Channel1`/`Channel2`, interfaces, every
/// `...Uniqueid`/`...Linkedid` but a bridge's, and every `...Queue`.
fn event_header_kind(key: &str) -> Option<Named> {
    let k = key.as_bytes();
    let ends = |suffix: &[u8]| k.len() >= suffix.len() && k[k.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
    if ends(b"Channel")
        || key.eq_ignore_ascii_case("Channel1")
        || key.eq_ignore_ascii_case("Channel2")
        || ends(b"Interface")
    {
        Some(Named::Channel)
    } else if (ends(b"Uniqueid") && !ends(b"BridgeUniqueid"))
        || ends(b"Linkedid")
        || ends(b"Uniqueid1")
        || ends(b"Uniqueid2")
    {
        Some(Named::Uniqueid)
    } else if ends(b"Queue") {
        Some(Named::Queue)
    } else {
        None
    }
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
        lc: &str,
        msg: &Message,
        owners: &dyn Channels,
        server_header: &str,
    ) -> Result<(), String> {
        let system = write.contains(Classes::named("system").unwrap_or(Classes::NONE));
        let scoped = self.scope.scoped();
        let full = system && !scoped;
        // For every user, trusted or not: what would make Asterisk see two messages where the
        // proxy judged one (a line that starts with NUL is an empty line to Asterisk), or
        // one action where the proxy judged another.
        if msg.has_line_starting_with_nul() {
            return Err("a line starting with NUL ends Asterisk's reading of the message".into());
        }
        if msg.count("Action") > 1 {
            return Err("two Action headers".into());
        }
        // Asterisk takes header values as bytes; a check that cannot read a value must not
        // pass it on. Only unrestricted users (system, no policy) may send non-UTF-8 values.
        if msg.has_invalid_utf8() && !(full && self.is_unrestricted()) {
            return Err("a header is not valid UTF-8".into());
        }
        if !full
            && msg
                .headers()
                .any(|(_, v)| v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f))
        {
            return Err("a header holds a control character".into());
        }
        if any_match(&self.deny_actions, lc) {
            return Err("action denied by policy".into());
        }
        if let Some(allow) = &self.actions {
            if !any_match(allow, lc) {
                return Err("action not in the user's allowed actions".into());
            }
        }
        let judge = Judge {
            policy: self,
            full,
            system,
            scoped,
            owners,
            lc,
            msg,
        };
        // A header name Asterisk would not match as written (blanks, control bytes) is one a
        // client reading the event or answer might still take for `Server` or `Event`.
        if !full && msg.headers().any(|(k, _)| !k.bytes().all(|b| b > 0x20 && b < 0x7f)) {
            return Err("a header name holds blanks or control characters".into());
        }
        match spec::action(lc) {
            Some(spec) => {
                if scoped && !TENANT_WIDE.contains(&lc) && !names_target(spec, msg) {
                    return Err(format!(
                        "{} names none of the tenant's objects and acts on the whole PBX",
                        spec.name
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
                            return Err(format!("{key} is not a header of {}", spec.name));
                        }
                        None => {}
                    }
                }
            }
            // An action the proxy does not know (its classes already need system): it cannot
            // judge its headers, so a tenant may not send it.
            None if scoped => return Err("an unknown action cannot be checked against the scope".into()),
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
                return Err(format!("{} matches a deny rule", rule.header));
            }
        }
        if let Some((h, _)) = allow_headers.iter().find(|(_, ok)| !ok) {
            return Err(format!("{h} does not match the allow rules"));
        }
        if let Some(server) = msg.get(server_header) {
            if !server.eq_ignore_ascii_case("all") && !self.scope.server_ok(server) {
                return Err(format!("server `{server}` is outside the user's scope"));
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

    /// Servers this user may reach (all when empty).
    pub fn server_allowed(&self, server: &str) -> bool {
        self.scope.server_ok(server)
    }

    /// Whether an event (or list item) is within the user's scope. `server` is the upstream
    /// it came from, as the proxy knows it (None: the proxy's own).
    pub fn event_in_scope(&self, ev: &Message, server: Option<&str>, owners: &dyn Channels) -> bool {
        let s = &self.scope;
        if let Some(server) = server {
            if !s.server_ok(server) {
                return false;
            }
        }
        if !s.scoped() {
            return true;
        }
        let (mut named, mut ok) = (false, false);
        let mut uniqueids = false;
        let user_event = ev.event_name().is_some_and(|n| n.eq_ignore_ascii_case("UserEvent"));
        for (k, v) in ev.headers() {
            if v.is_empty() {
                continue;
            }
            let this = match event_header_kind(k) {
                Some(Named::Channel) => any_match(&s.channels, v),
                Some(Named::Queue) => any_match(&s.queues, v),
                // Resolved only when needed: most events name their channel too.
                Some(Named::Uniqueid) => {
                    uniqueids = true;
                    continue;
                }
                None => continue,
            };
            named = true;
            ok |= this;
            // A UserEvent carries what a client wrote: every object it names must be the
            // tenant's; an upstream's own event is the tenant's when any object is.
            if user_event && !this {
                return false;
            }
        }
        if uniqueids && (user_event || !ok) {
            for (k, v) in ev.headers() {
                if v.is_empty() || !matches!(event_header_kind(k), Some(Named::Uniqueid)) {
                    continue;
                }
                let this = owners.channel_of(v).is_some_and(|name| any_match(&s.channels, &name));
                named = true;
                ok |= this;
                if user_event && !this {
                    return false;
                }
            }
        }
        if named {
            return ok;
        }
        ev.event_name()
            .is_some_and(|n| GLOBAL_EVENTS.iter().any(|g| g.eq_ignore_ascii_case(n)))
    }
}

impl Judge<'_> {
    /// What some actions do with headers beyond their kinds (found in Asterisk's source).
    fn action_specials(&self) -> Verdict {
        let (lc, msg) = (self.lc, self.msg);
        let any_has = |h: &str, bad: &[char]| msg.get_all(h).any(|v| v.contains(bad));
        match lc {
            // Park: an AnnounceChannel that does not exist crashes Asterisk (it subscribes a
            // NULL channel); Parkinglot becomes Park() arguments, whose options jump contexts.
            "park" => {
                for v in msg.get_all("AnnounceChannel").filter(|v| !v.trim().is_empty()) {
                    if !self.owners.is_live(v.trim()) {
                        return Err(format!("AnnounceChannel `{v}` is not a live channel"));
                    }
                }
                if any_has("Parkinglot", &[',', '(', ')']) {
                    return Err("Parkinglot carries Park options".into());
                }
            }
            // With persistentmembers, a member is stored as `iface;pen;paused;name;state;reason`
            // joined by `|` and parsed again at the next load: these would add members unjudged.
            "queueadd" | "queuepause" => {
                for h in ["Interface", "StateInterface", "MemberName", "Reason"] {
                    if any_has(h, &['|', ';', ',']) {
                        return Err(format!("{h} holds the separators of queue member records"));
                    }
                }
            }
            // Asterisk matches the family with SQL LIKE: `%` and `_` are wildcards there.
            "dbgettree" | "dbdeltree" if any_has("Family", &['%', '_']) || any_has("Key", &['%', '_']) => {
                return Err("Family or Key holds an SQL LIKE wildcard".into());
            }
            _ => {}
        }
        Ok(())
    }

    /// Rules of one action beyond its headers' kinds.
    fn action_rules(&self) -> Verdict {
        let (lc, msg) = (self.lc, self.msg);
        let empty = |h: &str| msg.get(h).is_none_or(|v| v.trim().is_empty());
        if !self.full {
            self.action_specials()?;
            // Asterisk gives these to `config`, but a configuration file can run commands
            // (`System()` in the dialplan, `#exec`) once reloaded: they need system here.
            if lc == "updateconfig" || lc == "createconfig" {
                return Err(format!("{lc} writes Asterisk's configuration, which can run commands"));
            }
            // Stored as is, but dialplan may evaluate it later (`EVAL`): no expressions.
            if lc == "setvar" {
                msg.get_all("Value").try_for_each(|v| self.no_expression("Value", v))?;
            }
        }
        // A list of contexts or families binds whoever has one, scoped or not: leaving the
        // header out must not escape it.
        let bound = |h: &str| match h {
            "Context" => self.scoped || !self.policy.scope.contexts.is_empty(),
            "Family" => self.scoped || !self.policy.scope.db_families.is_empty(),
            _ => self.scoped,
        };
        if let Some((_, h)) = WIDE_WITHOUT.iter().find(|(a, h)| *a == lc && empty(h) && bound(h)) {
            return Err(format!("{lc} without {h} reaches beyond the user's scope"));
        }
        // Into the dialplan: only the user's contexts (Asterisk's default is `default`).
        if lc == "originate" && empty("Application") && empty("Context") && bound("Context") {
            return Err("Originate into the dialplan needs one of the user's contexts".into());
        }
        if self.scoped && (lc == "queues" || (lc == "command" && self.policy.commands.is_none())) {
            return Err(format!(
                "{lc} shows every tenant's data; give the user a `commands` list"
            ));
        }
        if lc == "command" && msg.get("Command").is_none() {
            self.command("")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::MessageBuilder;
    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet};

    /// A stand-in for the proxy's ownership index.
    #[derive(Default)]
    struct Owners {
        live: RefCell<HashSet<String>>,
        names: RefCell<HashMap<String, String>>,
    }

    impl Owners {
        fn insert(&self, key: &str, _upstream: usize) {
            self.live.borrow_mut().insert(key.to_owned());
        }

        fn name_uniqueid(&self, uniqueid: &str, name: &str) {
            self.names.borrow_mut().insert(uniqueid.to_owned(), name.to_owned());
        }
    }

    impl Channels for Owners {
        fn channel_of(&self, uniqueid: &str) -> Option<String> {
            self.names.borrow().get(uniqueid).cloned()
        }

        fn is_live(&self, key: &str) -> bool {
            self.live.borrow().contains(key)
        }
    }

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
                contexts: vec![Glob::new("outbound")],
                db_families: vec![],
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

        let ev = |h: &[(&str, &str)]| {
            let server = h.iter().find(|(k, _)| *k == "Server").map(|(_, v)| *v);
            p.event_in_scope(&msg(h), server, &o)
        };
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

    /// What a user without `system` must never get through, in the variants an attacker
    /// tries: header case, repeated headers, quoting, escapes, nesting, functions inside
    /// application data.
    #[test]
    fn evaluated_headers_are_judged() {
        let o = Owners::default();
        let restricted = Policy::default();
        let w = write("call,originate,reporting,agent,user");
        let refused = |p: &Policy, h: &[(&str, &str)]| {
            let m = msg(h);
            let lc = m.action().unwrap().to_ascii_lowercase();
            let r = p.check_action(w, &lc, &m, &o, "Server");
            assert!(r.is_err(), "passed: {m:?}");
            assert!(
                p.check_action(write("all"), &lc, &m, &o, "Server").is_ok(),
                "a system user is refused: {m:?}"
            );
        };
        let orig = |extra: &[(&'static str, &'static str)]| {
            let mut h = vec![
                ("Action", "Originate"),
                ("Channel", "Local/1@default"),
                ("Application", "Wait"),
                ("Data", "1"),
            ];
            h.extend_from_slice(extra);
            h
        };
        for v in [
            "FILE(/tmp/x,,,al)=y",
            "file(/tmp/x)=y",
            "DB(family/key)=x",
            "A=1,DB(f/k)=x",
            "\"DB(f/k)\"=x",
            "A=1,  SHELL(id)=x",
            "X=${SHELL(id)}",
            "X=$[1+1]",
            "A\\,B=1,FILE(/x)=y",
            "CALLERID(num)=1",
        ] {
            refused(&restricted, &orig(&[("Variable", v)]));
            refused(&restricted, &orig(&[("Variable", "A=1"), ("variable", v)]));
        }
        for (app, data) in [
            ("System", "id"),
            ("TrySystem", "id"),
            ("EXEC", "System(id)"),
            ("MixMonitor", "/tmp/x.wav,,rm -rf /"),
            ("ChanSpy", "PJSIP/"),
            ("Set", "FILE(/tmp/x)=y"),
            ("NoOp", "${SHELL(id)}"),
            ("Wait", "$[${DB(a/b)}]"),
            ("AGI", "agi://evil"),
        ] {
            refused(
                &restricted,
                &[
                    ("Action", "Originate"),
                    ("Channel", "Local/1@default"),
                    ("Application", app),
                    ("Data", data),
                ],
            );
        }
        refused(
            &restricted,
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@default"),
                ("Exten", "1"),
                ("PreDialGoSub", "x,s,1(${SHELL(id)})"),
            ],
        );
        for var in [
            "SHELL(id)",
            "AST_CONFIG(manager.conf,admin,secret)",
            "ENV(HOME)",
            "FILE(/etc/passwd)",
            "EVAL(${X})",
            "CALLERID(num)",
            "${X}",
            "X Y",
        ] {
            refused(&restricted, &[("Action", "Getvar"), ("Variable", var)]);
            refused(
                &restricted,
                &[
                    ("Action", "Setvar"),
                    ("Channel", "Local/1@default-00000001;1"),
                    ("Variable", var),
                    ("Value", "1"),
                ],
            );
        }
        refused(
            &restricted,
            &[("Action", "MixMonitor"), ("Channel", "PJSIP/1"), ("Command", "id")],
        );
        for h in [
            &[("Action", "GetConfig"), ("Filename", "manager.conf")][..],
            &[("Action", "GetConfig"), ("Filename", "./Manager.conf")],
            &[("Action", "ListCategories"), ("Filename", "manager.d/proxy.conf")],
            &[
                ("Action", "UpdateConfig"),
                ("SrcFilename", "extensions.conf"),
                ("DstFilename", "extensions.conf"),
            ],
            &[("Action", "CreateConfig"), ("Filename", "x.conf")],
            &[
                ("Action", "Setvar"),
                ("Channel", "PJSIP/1"),
                ("Variable", "X"),
                ("Value", "${SHELL(id)}"),
            ],
            &[("Action", "GetConfig"), ("Filename", ".//manager.conf")],
            &[
                ("Action", "Park"),
                ("Channel", "PJSIP/1"),
                ("TimeoutChannel", "Local/${SHELL(id)}@x"),
                ("Timeout", "1000"),
            ],
            &[
                ("Action", "Park"),
                ("Channel", "PJSIP/1"),
                ("TimeoutChannel", "PJSIP/2,30,U(x)"),
            ],
            &[
                ("Action", "Park"),
                ("Channel", "PJSIP/1"),
                ("Parkinglot", "default,c(other,s,1)"),
            ],
            &[
                ("Action", "QueueAdd"),
                ("Queue", "q"),
                ("Interface", "PJSIP/1"),
                ("MemberName", "x|Local/1@victim/n;0;0;y;z;;0"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/1"),
                ("Application", "DateTime"),
                ("Data", ",,'/var/spool/asterisk/voicemail/beta/100/INBOX/msg0000'"),
            ],
            &[("Action", "GetConfig"), ("Filename", "manager.con[f]")],
            &[("Action", "GetConfigJSON"), ("Filename", "./././manager.conf")],
            &[("Action", "ListCategories"), ("Filename", ".//manager.d/x.conf")],
            &[
                ("Action", "Setvar"),
                ("Channel", "PJSIP/1"),
                ("Variable", "MONITOR_EXEC"),
                ("Value", "touch /tmp/x"),
            ],
            &[
                ("Action", "Setvar"),
                ("Channel", "PJSIP/1"),
                ("Variable", "__TOUCH_MIXMONITOR_OPTIONS"),
                ("Value", "b,id"),
            ],
            &[
                ("Action", "Setvar"),
                ("Channel", "PJSIP/1"),
                ("Variable", "TRANSFER_CONTEXT"),
                ("Value", "other"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/1"),
                ("Application", "Wait"),
                ("Data", "1"),
                ("Variable", "_BRIDGE_FEATURES=T"),
            ],
            &[
                ("Action", "Getvar"),
                ("Channel", "PJSIP/1"),
                ("Variable", "CUT(AST_CONFIG(manager.conf,proxy,secret),|,1)"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/1"),
                ("Application", "Wait"),
                ("Data", "1"),
                ("Variable", "PUSH(SHELL(id))=x"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/1"),
                ("Application", "Playback"),
                ("Data", "/var/spool/asterisk/voicemail/beta/1000/INBOX/msg0000"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/1"),
                ("Application", "Playback"),
                ("Data", "beep&../../../spool/x"),
            ],
            &[("Action", "UserEvent"), ("UserEvent", "x"), (" Server", "pbx2")],
            &[("Action", "UserEvent"), ("UserEvent", "x"), ("Event ", "Shutdown")],
        ] {
            refused(&restricted, h);
        }
        refused(
            &restricted,
            &[("Action", "UserEvent"), ("UserEvent", "x"), ("Event", "Hangup")],
        );
        refused(
            &restricted,
            &[("Action", "UserEvent"), ("UserEvent", "x"), ("Privilege", "system,all")],
        );
        // A header Asterisk does not document for the action is not passed on.
        refused(
            &restricted,
            &[("Action", "Getvar"), ("Variable", "X"), ("Variables", "SHELL(id)")],
        );

        let ok = |p: &Policy, h: &[(&str, &str)]| {
            let m = msg(h);
            let lc = m.action().unwrap().to_ascii_lowercase();
            assert_eq!(p.check_action(w, &lc, &m, &o, "Server"), Ok(()), "{m:?}");
        };
        ok(&restricted, &orig(&[("Variable", "A=1,__B=x(y),C=\"q,r\"")]));
        ok(&restricted, &[("Action", "Getvar"), ("Variable", "EXTEN:1")]);
        ok(
            &restricted,
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@default"),
                ("Application", "Playback"),
                ("Data", "hello-world&beep"),
            ],
        );
        ok(
            &restricted,
            &[("Action", "UserEvent"), ("UserEvent", "x"), ("Foo", "${not evaluated}")],
        );
        let callerid = Policy {
            functions: vec!["CALLERID".into()],
            applications: Some(vec!["Set".into(), "Wait".into()]),
            ..Default::default()
        };
        ok(&callerid, &orig(&[("Variable", "CALLERID(num)=100")]));
        ok(
            &callerid,
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@default"),
                ("Application", "Set"),
                ("Data", "CALLERID(name)=Bob"),
            ],
        );
        refused(&callerid, &orig(&[("Variable", "CALLERID(num)=${SHELL(id)}")]));
        refused(
            &callerid,
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@default"),
                ("Application", "Set"),
                ("Data", "FILE(/x)=y"),
            ],
        );
        refused(
            &callerid,
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@default"),
                ("Application", "Playback"),
                ("Data", "x"),
            ],
        );
    }

    /// What Asterisk would read as two messages, or as another action, is refused to every
    /// user, however trusted.
    #[test]
    fn no_second_action_for_anyone() {
        let o = Owners::default();
        for h in [
            &[("Action", "Ping"), ("Action", "Command"), ("Command", "core stop now")][..],
            &[("Action", "UserEvent"), ("UserEvent", "x"), ("\0Pad", "x")],
        ] {
            let m = msg(h);
            let lc = m.action().unwrap().to_ascii_lowercase();
            assert!(
                Policy::default()
                    .check_action(write("all"), &lc, &m, &o, "Server")
                    .is_err(),
                "{m:?}"
            );
        }
    }

    /// A tenant reaches nothing of another tenant's: not by header, not through a function
    /// or an application, not by a UserEvent naming the other's objects.
    #[test]
    fn scoped_users_stay_in_their_tenant() {
        let o = Owners::default();
        o.insert("beta-1.7", 0);
        o.name_uniqueid("beta-1.7", "PJSIP/beta-0007");
        let acme = Policy {
            functions: vec!["CALLERID".into()],
            variables: Some(vec![Glob::new("X"), Glob::new("A")]),
            scope: Scope {
                channels: vec![Glob::channel("PJSIP/acme-*"), Glob::channel("Local/*@acme")],
                queues: vec![Glob::new("acme-*")],
                contexts: vec![Glob::new("acme")],
                db_families: vec![Glob::new("acme")],
                servers: vec![],
            },
            ..Default::default()
        };
        let w = write("all");
        let chk = |h: &[(&str, &str)]| {
            let m = msg(h);
            let lc = m.action().unwrap().to_ascii_lowercase();
            acme.check_action(w, &lc, &m, &o, "Server")
        };
        let bad: &[&[(&str, &str)]] = &[
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@acme"),
                ("Application", "ChannelRedirect"),
                ("Data", "PJSIP/beta-1,beta,1,1"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@acme"),
                ("Application", "SoftHangup"),
                ("Data", "PJSIP/beta-1"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@acme"),
                ("Application", "Queue"),
                ("Data", "beta-sales"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@acme"),
                ("Application", "System"),
                ("Data", "id"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@acme"),
                ("Context", "beta"),
                ("Exten", "1"),
            ],
            &[("Action", "Originate"), ("Channel", "Local/1@acme"), ("Exten", "1")],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@beta"),
                ("Context", "acme"),
                ("Exten", "1"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@acme"),
                ("Context", "acme"),
                ("Exten", "1"),
                ("PreDialGoSub", "beta,s,1"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@acme"),
                ("Context", "acme"),
                ("Exten", "1"),
                ("Variable", "SHARED(x,PJSIP/beta-1)=y"),
            ],
            &[
                ("Action", "Getvar"),
                ("Channel", "PJSIP/acme-1"),
                ("Variable", "IMPORT(PJSIP/beta-1,SECRET)"),
            ],
            &[
                ("Action", "Getvar"),
                ("Channel", "PJSIP/acme-1"),
                ("Variable", "CHANNELS()"),
            ],
            &[
                ("Action", "Getvar"),
                ("Channel", "PJSIP/acme-1"),
                ("Variable", "QUEUE_MEMBER_LIST(beta-sales)"),
            ],
            &[("Action", "Getvar"), ("Variable", "GLOBALVAR")],
            &[("Action", "Setvar"), ("Variable", "GLOBALVAR"), ("Value", "1")],
            &[("Action", "Getvar"), ("Channel", "beta-1.7"), ("Variable", "X")],
            &[
                ("Action", "Redirect"),
                ("Channel", "PJSIP/acme-1"),
                ("Context", "beta"),
                ("Exten", "1"),
                ("Priority", "1"),
            ],
            &[
                ("Action", "Redirect"),
                ("Channel", "PJSIP/acme-1"),
                ("ExtraChannel", "PJSIP/beta-1"),
                ("Context", "acme"),
                ("Exten", "1"),
                ("Priority", "1"),
            ],
            &[
                ("Action", "UserEvent"),
                ("UserEvent", "x"),
                ("Channel", "PJSIP/acme-1"),
                ("DestChannel", "PJSIP/beta-1"),
            ],
            &[("Action", "UserEvent"), ("UserEvent", "x"), ("Uniqueid", "beta-1.7")],
            &[("Action", "UserEvent"), ("UserEvent", "x"), ("Queue", "beta-sales")],
            &[("Action", "DBGet"), ("Family", "beta"), ("Key", "k")],
            &[("Action", "DBGetTree")],
            &[("Action", "ShowDialPlan")],
            &[("Action", "ShowDialPlan"), ("Context", "beta")],
            &[("Action", "Hangup"), ("Channel", "/beta/")],
            &[("Action", "QueueStatus"), ("Queue", "beta-sales")],
            &[
                ("Action", "QueuePause"),
                ("Interface", "PJSIP/acme-1"),
                ("Paused", "true"),
            ],
            &[("Action", "Command"), ("Command", "core show channels")],
            &[("Action", "GetConfig"), ("Filename", "pjsip.conf")],
            &[
                ("Action", "Getvar"),
                ("Channel", "PJSIP/acme-1"),
                ("Variable", "TRUNK_PASSWORD"),
            ],
            &[
                ("Action", "Status"),
                ("Channel", "PJSIP/acme-1"),
                ("Variables", "X,TRUNK_PASSWORD"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/acme-1"),
                ("Application", "SendDTMF"),
                ("Data", "1234#,,,PJSIP/beta-7"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/acme-1"),
                ("Application", "SendDTMF"),
                ("Data", "1234#,,,beta-1.7"),
            ],
            &[
                ("Action", "Setvar"),
                ("Channel", "PJSIP/acme-1"),
                ("Variable", "CHANNEL(hangup_handler_push)"),
                ("Value", "beta,s,1"),
            ],
            &[
                ("Action", "Bridge"),
                ("Channel1", "PJSIP/acme-1"),
                ("Channel2", "PJSIP/acme"),
            ],
            &[
                ("Action", "Park"),
                ("Channel", "PJSIP/acme-1"),
                ("AnnounceChannel", "PJSIP/acme-404"),
            ],
            &[
                ("Action", "PJSIPNotify"),
                ("Channel", ""),
                ("Channel", "PJSIP/acme-1"),
                ("URI", "sip:x@y"),
            ],
            &[("Action", "DBGetTree"), ("Family", "acm%")],
            &[("Action", "DAHDIRestart")],
            &[("Action", "Reload")],
            &[("Action", "PRIDebugSet"), ("Span", "1"), ("Level", "1")],
        ];
        for h in bad {
            assert!(chk(h).is_err(), "passed: {h:?}");
        }
        let good: &[&[(&str, &str)]] = &[
            &[
                ("Action", "Originate"),
                ("Channel", "Local/1@acme"),
                ("Context", "acme"),
                ("Exten", "1"),
                ("Variable", "CALLERID(num)=1,A=2"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/acme-7"),
                ("Application", "Playback"),
                ("Data", "beep"),
            ],
            &[("Action", "Getvar"), ("Channel", "PJSIP/acme-1"), ("Variable", "X")],
            &[
                ("Action", "UserEvent"),
                ("UserEvent", "x"),
                ("Channel", "PJSIP/acme-1"),
                ("Queue", "acme-sales"),
            ],
            &[("Action", "DBGet"), ("Family", "acme"), ("Key", "k")],
            &[
                ("Action", "QueuePause"),
                ("Interface", "PJSIP/acme-1"),
                ("Queue", "acme-sales"),
                ("Paused", "true"),
            ],
            &[
                ("Action", "Getvar"),
                ("Channel", "PJSIP/acme-1"),
                ("Variable", "EXTEN:1"),
            ],
            &[
                ("Action", "Originate"),
                ("Channel", "PJSIP/acme-1"),
                ("Application", "SendDTMF"),
                ("Data", "12,,,PJSIP/acme-2"),
            ],
        ];
        for h in good {
            assert_eq!(chk(h), Ok(()), "{h:?}");
        }

        // Events: a UserEvent is the tenant's only when everything it names is; an
        // upstream's event when anything is. The server is what the proxy knows.
        let ev = |h: &[(&str, &str)]| acme.event_in_scope(&msg(h), Some("pbx1"), &o);
        assert!(!ev(&[
            ("Event", "UserEvent"),
            ("Channel", "PJSIP/acme-1"),
            ("DestChannel", "PJSIP/beta-1")
        ]));
        assert!(ev(&[("Event", "UserEvent"), ("Channel", "PJSIP/acme-1")]));
        assert!(!ev(&[("Event", "UserEvent"), ("Uniqueid", "beta-1.7")]));
        assert!(ev(&[
            ("Event", "DialBegin"),
            ("Channel", "PJSIP/acme-1"),
            ("DestChannel", "PJSIP/trunk-1")
        ]));
        assert!(!ev(&[("Event", "Cdr"), ("Uniqueid", "beta-1.7")]));
        let pinned = Policy {
            scope: Scope {
                servers: vec!["pbx1".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let forged = msg(&[("Event", "UserEvent"), ("Server", "pbx1")]);
        assert!(!pinned.event_in_scope(&forged, Some("pbx2"), &o));
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
