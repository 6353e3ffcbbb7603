//! Dialplan evaluation as Asterisk 22 does it: variable substitution (`${NAME}`,
//! `${NAME:offset:length}`, `${FUNC(args)}`, `$[expr]`), dialplan functions read and
//! written by name, and the applications that reach beyond their own channel. Arguments
//! are split by [`ami_proto::app_args`], the reading the proxy's policy shares.
//! Everything that touches the PBX goes to the journal ([`crate::effects`]); nothing
//! touches the machine the sim runs on.
//!
//! Sources followed: `main/pbx_variables.c` (substitution, `pbx_builtin_setvar_helper`),
//! `main/pbx_functions.c` (function lookup, escalation guard), `main/pbx_app.c`,
//! `apps/app_exec.c`, `apps/app_softhangup.c`, `apps/app_mixmonitor.c`, `main/manager.c`.
//!
//! Input comes from the network: evaluation is bounded (nesting depth, lookups per
//! evaluation, result length) and never panics.

use crate::channels::{chan_event, state_desc, Channel, Control};
use crate::effects::Effect;
use crate::pbx::{lock, Pbx};
use ami_proto::app_args::separate_args;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Nesting of substitutions, `EVAL`, `IMPORT`, `Exec` and expressions.
const MAX_DEPTH: u32 = 32;
/// Variable and function lookups one evaluation may make.
const BUDGET: u32 = 4096;
/// Longest result kept (Asterisk's own buffers are a few KiB).
const MAX_LEN: usize = 64 * 1024;
/// Asterisk's `ast_config_AST_MONITOR_DIR`.
const MONITOR_DIR: &str = "/var/spool/asterisk/monitor";

/// `core show applications`: `  Name: synopsis` lines.
fn application_names(text: &'static str) -> Vec<&'static str> {
    text.lines()
        .filter_map(|l| l.trim_start().split_once(": ").map(|(n, _)| n))
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect()
}

/// `core show functions`: `NAME   NAME(args)   synopsis` lines.
fn function_names(text: &'static str) -> Vec<&'static str> {
    text.lines()
        .filter(|l| l.split_whitespace().count() > 1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(|c: char| c.is_ascii_uppercase()))
        .filter(|n| {
            n.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

/// Applications of the captured Asterisk 22 (fixtures/asterisk22).
fn applications() -> &'static [&'static str] {
    static APPS: OnceLock<Vec<&'static str>> = OnceLock::new();
    APPS.get_or_init(|| application_names(include_str!("../../../fixtures/asterisk22/applications.txt")))
}

/// Functions of the captured Asterisk 22 (fixtures/asterisk22).
fn functions() -> &'static [&'static str] {
    static FUNCS: OnceLock<Vec<&'static str>> = OnceLock::new();
    FUNCS.get_or_init(|| function_names(include_str!("../../../fixtures/asterisk22/functions.txt")))
}

/// The registered name of an application (`pbx_findapp` ignores case), None when Asterisk
/// has no such application.
pub fn find_app(name: &str) -> Option<&'static str> {
    applications().iter().copied().find(|a| a.eq_ignore_ascii_case(name))
}

/// Whether a function is registered (`strcmp`: names are case-sensitive). `CURL` and the
/// `ODBC` family were not built into the captured PBX; a production one may have them.
fn function_exists(name: &str) -> bool {
    functions().contains(&name) || name == "CURL" || name == "CURLOPT" || name.starts_with("ODBC")
}

/// Functions registered with `ast_custom_function_register_escalating` for reads.
fn read_escalates(name: &str) -> bool {
    matches!(
        name,
        "SHELL"
            | "FILE"
            | "DB"
            | "DB_DELETE"
            | "STAT"
            | "FILE_COUNT_LINE"
            | "FILE_FORMAT"
            | "LOCK"
            | "TRYLOCK"
            | "UNLOCK"
            | "PERIODIC_HOOK"
            | "REALTIME_DESTROY"
    ) || name.starts_with("ODBC")
}

/// … and for writes.
fn write_escalates(name: &str) -> bool {
    matches!(name, "FILE" | "DB" | "CURL" | "PERIODIC_HOOK") || name.starts_with("ODBC")
}

/// Functions without a write callback ("Function X cannot be written to").
fn read_only(name: &str) -> bool {
    matches!(
        name,
        "SHELL"
            | "EVAL"
            | "IMPORT"
            | "CHANNELS"
            | "LEN"
            | "CUT"
            | "TOUPPER"
            | "TOLOWER"
            | "AST_CONFIG"
            | "STAT"
            | "FILE_COUNT_LINE"
            | "FILE_FORMAT"
            | "DB_DELETE"
            | "DB_EXISTS"
            | "DB_KEYS"
            | "DB_KEYCOUNT"
            | "GLOBAL_DELETE"
            | "GLOBAL_EXISTS"
            | "QUEUE_MEMBER_LIST"
            | "QUEUE_MEMBER_COUNT"
            | "QUEUE_WAITING_COUNT"
            | "QUEUE_EXISTS"
            | "QUEUE_VARIABLES"
            | "QUEUE_GET_CHANNEL"
    )
}

/// The name=value pairs of one Originate `Variable:` header as `man_do_variable_value`
/// reads them: split like `AST_STANDARD_APP_ARGS` (at most 64 parts), each part cut at
/// its first `=`; parts without `=` or with an empty name are skipped. Names and values
/// are not trimmed (Asterisk does not either).
pub fn originate_variables(header_value: &str) -> Vec<(String, String)> {
    separate_args(header_value, ',', true, 64)
        .into_iter()
        .filter_map(|part| {
            let (k, v) = part.split_once('=')?;
            (!k.is_empty()).then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// `func_args`: `NAME(args)` → (NAME, args): the name ends at the first `(`, the
/// arguments at the last `)`. Without parentheses the whole text is the name.
fn split_func(full: &str) -> (&str, &str) {
    match full.split_once('(') {
        Some((name, rest)) => (name, rest.rfind(')').map_or(rest, |p| &rest[..p])),
        None => (full, ""),
    }
}

/// `sscanf("%30d")`: leading blanks, a sign, digits.
fn scan_int(s: &str) -> Option<(i32, &str)> {
    let t = s.trim_start();
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() && i < 30 {
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    let v: i64 = t[..i]
        .parse()
        .unwrap_or(if b.first() == Some(&b'-') { i64::MIN } else { i64::MAX });
    Some((v.clamp(i32::MIN as i64, i32::MAX as i64) as i32, &t[i..]))
}

/// `parse_variable_name`: (name, offset, length, is a function). `NAME:offset:length`
/// is cut at the first `:` outside parentheses.
fn parse_variable_name(var: &str) -> (&str, i32, i32, bool) {
    let mut parens = 0i32;
    let mut isfunc = false;
    for (i, c) in var.char_indices() {
        match c {
            '(' => {
                isfunc = true;
                parens += 1;
            }
            ')' => parens -= 1,
            ':' if parens == 0 => {
                let rest = &var[i + 1..];
                let (offset, length) = match scan_int(rest) {
                    None => (0, i32::MAX),
                    Some((o, after)) => match after.strip_prefix(':').and_then(scan_int) {
                        Some((l, _)) => (o, l),
                        None => (o, i32::MAX),
                    },
                };
                return (&var[..i], offset, length, isfunc);
            }
            _ => {}
        }
    }
    (var, 0, i32::MAX, isfunc)
}

/// `ast_str_substring` (on bytes, as Asterisk does).
fn substring(value: &str, offset: i32, length: i32) -> String {
    let b = value.as_bytes();
    let lr = b.len() as i64;
    let (mut offset, length) = (offset as i64, length as i64);
    if offset == 0 && length >= lr {
        return value.to_owned();
    }
    if offset < 0 {
        offset = (lr + offset).max(0);
    }
    if offset >= lr {
        return String::new();
    }
    let rest = &b[offset as usize..];
    let lr = rest.len() as i64;
    let cut: &[u8] = if length >= 0 && length < lr {
        &rest[..length as usize]
    } else if length < 0 {
        if lr > -length {
            &rest[..(lr + length) as usize]
        } else {
            &[]
        }
    } else {
        rest
    };
    String::from_utf8_lossy(cut).into_owned()
}

/// `pbx_checkcondition`: empty is false, a number is its value, any other text is true.
fn check_condition(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    match scan_int(s) {
        Some((n, _)) => n != 0,
        None => true,
    }
}

/// `ast_true`.
fn ast_true(s: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|x| s.trim().eq_ignore_ascii_case(x))
}

/// MixMonitor's `filename_parse`: relative names go into the monitor directory.
fn monitor_path(file: &str) -> String {
    if file.starts_with('/') {
        file.to_owned()
    } else {
        format!("{MONITOR_DIR}/{file}")
    }
}

/// An application option string (`br(in.wav)i(ID)`): each letter with its optional
/// parenthesised argument.
fn app_options(opts: &str) -> Vec<(char, Option<String>)> {
    let mut out = Vec::new();
    let mut it = opts.chars().peekable();
    while let Some(c) = it.next() {
        if it.peek() == Some(&'(') {
            it.next();
            let mut depth = 1;
            let mut arg = String::new();
            for a in it.by_ref() {
                match a {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                arg.push(a);
            }
            out.push((c, Some(arg)));
        } else {
            out.push((c, None));
        }
    }
    out
}

/// A value from one of the embedded configuration files (first `var = value` or
/// `var => value` of the category).
fn embedded_config(text: &str, category: &str, variable: &str) -> Option<String> {
    let mut in_cat = false;
    for raw in text.lines() {
        let l = raw.split(';').next().unwrap_or("").trim();
        if let Some(name) = l.strip_prefix('[').and_then(|x| x.split(']').next()) {
            in_cat = name == category;
            continue;
        }
        if !in_cat {
            continue;
        }
        let (k, v) = match l.split_once("=>").or_else(|| l.split_once('=')) {
            Some((k, v)) => (k.trim(), v.trim()),
            None => continue,
        };
        if k.eq_ignore_ascii_case(variable) {
            return Some(v.to_owned());
        }
    }
    None
}

/// What an application run left for the call to do: the application that finally ran
/// (through `Exec` / `ExecIf`) and its data, for the call's own handling (Answer, Hangup,
/// Queue, UserEvent, how long it blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub app: &'static str,
    pub data: String,
}

/// One evaluation: on a channel (or Asterisk's dummy channel when None), from a call or
/// from an action.
pub struct Ctx<'a> {
    pbx: &'a Pbx,
    chan: Option<&'a mut Channel>,
    /// The channel is a call's own copy (the call stores it); otherwise a copy of the
    /// table entry, and variable writes are forwarded to the table and the call.
    owned: bool,
    /// Escalating functions are refused (an AMI action evaluating with
    /// `live_dangerously` off).
    inhibit: bool,
    budget: u32,
    depth: u32,
}

impl<'a> Ctx<'a> {
    /// Evaluation by a call on its own channel (a PBX thread: never inhibited).
    pub fn call(pbx: &'a Pbx, chan: &'a mut Channel) -> Ctx<'a> {
        Ctx {
            pbx,
            chan: Some(chan),
            owned: true,
            inhibit: false,
            budget: BUDGET,
            depth: 0,
        }
    }

    /// Evaluation by an AMI action, on a copy of a live channel or on no channel.
    pub fn action(pbx: &'a Pbx, chan: Option<&'a mut Channel>) -> Ctx<'a> {
        Ctx {
            pbx,
            chan,
            owned: false,
            inhibit: !pbx.cfg.live_dangerously,
            budget: BUDGET,
            depth: 0,
        }
    }

    /// Overrides the escalation guard (a synchronous Originate sets its `Variable:`
    /// functions from the manager thread; an asynchronous one from its own).
    pub fn inhibited(mut self, inhibit: bool) -> Ctx<'a> {
        self.inhibit = inhibit;
        self
    }

    fn effect(&self, e: Effect) {
        self.pbx.effect(e);
    }

    fn chan_name(&self) -> String {
        self.chan.as_ref().map(|c| c.name.clone()).unwrap_or_default()
    }

    /// Takes one lookup from the budget; false when spent.
    fn spend(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    /// Runs `f` on another channel (a copy from the table), sharing this evaluation's
    /// budget and depth.
    fn on_other<T>(&mut self, other: &mut Channel, f: impl FnOnce(&mut Ctx<'_>) -> T) -> T {
        let mut sub = Ctx {
            pbx: self.pbx,
            chan: Some(other),
            owned: false,
            inhibit: self.inhibit,
            budget: self.budget,
            depth: self.depth + 1,
        };
        let r = f(&mut sub);
        self.budget = sub.budget;
        r
    }

    // ------------------------------------------------------------------ substitution

    /// `ast_str_substitute_variables`: the text with every `${…}` and `$[…]` replaced.
    pub fn substitute(&mut self, templ: &str) -> String {
        let mut out = String::new();
        if self.depth >= MAX_DEPTH {
            return out;
        }
        self.depth += 1;
        let b = templ.as_bytes();
        let mut pos = 0;
        while pos < b.len() && out.len() <= MAX_LEN {
            let Some(off) = templ[pos..].find('$') else {
                out.push_str(&templ[pos..]);
                break;
            };
            let d = pos + off;
            let is_var = match b.get(d + 1) {
                Some(b'{') => true,
                Some(b'[') => false,
                _ => {
                    out.push_str(&templ[pos..=d]);
                    pos = d + 1;
                    continue;
                }
            };
            out.push_str(&templ[pos..d]);
            let (open, close) = if is_var { (b'{', b'}') } else { (b'[', b']') };
            let start = d + 2;
            let mut i = start;
            let mut brackets = 1;
            let mut needsub = false;
            while brackets > 0 && i < b.len() {
                if b[i] == b'$' && b.get(i + 1) == Some(&open) {
                    needsub = true;
                    brackets += 1;
                    i += 1;
                } else if b[i] == open {
                    brackets += 1;
                } else if b[i] == close {
                    brackets -= 1;
                } else if b[i] == b'$' && matches!(b.get(i + 1), Some(b'{' | b'[')) {
                    needsub = true;
                    i += 1;
                }
                i += 1;
            }
            // Unterminated: Asterisk takes the rest of the text.
            let end = if brackets == 0 { i - 1 } else { i };
            pos = i;
            let inner = &templ[start..end];
            let inner = if needsub {
                self.substitute(inner)
            } else {
                inner.to_owned()
            };
            if is_var {
                let (name, offset, length, isfunc) = parse_variable_name(&inner);
                let value = if isfunc {
                    self.func_read(name)
                } else {
                    self.variable(name)
                };
                if let Some(v) = value {
                    out.push_str(&substring(&v, offset, length));
                }
            } else {
                let v = self.expression(&inner);
                out.push_str(&v);
            }
        }
        self.depth -= 1;
        if out.len() > MAX_LEN {
            let mut cut = MAX_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }

    /// `ast_str_retrieve_variable`: a channel's built-in variables, the core's, the
    /// channel's own, then the globals. None when unset.
    pub fn variable(&mut self, name: &str) -> Option<String> {
        if !self.spend() {
            return None;
        }
        if let Some(c) = &self.chan {
            let v = match name {
                "EXTEN" => Some(c.exten.clone()),
                "CONTEXT" => Some(c.context.clone()),
                "PRIORITY" => Some(c.priority.to_string()),
                "CHANNEL" => Some(c.name.clone()),
                "UNIQUEID" => Some(c.uniqueid.clone()),
                "HANGUPCAUSE" => Some("0".to_owned()),
                _ => None,
            };
            if v.is_some() {
                return v;
            }
        }
        let core = match name {
            "EPOCH" => Some(crate::clock::unix(SystemTime::now()).as_secs().to_string()),
            "SYSTEMNAME" => Some(self.pbx.cfg.system_name.clone().unwrap_or_default()),
            "ASTCACHEDIR" => Some("/var/cache/asterisk".to_owned()),
            "ASTETCDIR" => Some("/etc/asterisk".to_owned()),
            "ASTMODDIR" => Some("/usr/lib/asterisk/modules".to_owned()),
            "ASTVARLIBDIR" | "ASTDATADIR" => Some("/var/lib/asterisk".to_owned()),
            "ASTDBDIR" => Some("/var/lib/asterisk/astdb".to_owned()),
            "ASTKEYDIR" => Some("/var/lib/asterisk/keys".to_owned()),
            "ASTAGIDIR" => Some("/var/lib/asterisk/agi-bin".to_owned()),
            "ASTSPOOLDIR" => Some("/var/spool/asterisk".to_owned()),
            "ASTRUNDIR" => Some("/var/run/asterisk".to_owned()),
            "ASTLOGDIR" => Some("/var/log/asterisk".to_owned()),
            "ASTSBINDIR" => Some("/usr/sbin".to_owned()),
            _ => None,
        };
        if core.is_some() {
            return core;
        }
        if let Some(v) = self.chan.as_ref().and_then(|c| c.vars.get(name)) {
            return Some(v.clone());
        }
        self.effect(Effect::GlobalRead(name.to_owned()));
        lock(&self.pbx.globals).get(name).cloned()
    }

    /// `pbx_retrieve_variable` as Getvar and Status call it with a whole `Variable:`
    /// value: the `:offset:length` part is parsed but the lookup uses the whole text (so
    /// it only applies to a variable whose name holds it), as Asterisk does.
    pub fn retrieve(&mut self, var: &str) -> Option<String> {
        let (_, offset, length, _) = parse_variable_name(var);
        let need_substring = var.len() != parse_variable_name(var).0.len();
        let v = self.variable(var)?;
        Some(if need_substring {
            substring(&v, offset, length)
        } else {
            v
        })
    }

    /// `pbx_builtin_setvar_helper`: `FUNC(args)` is a function write; otherwise a
    /// variable of the channel (a VarSet event), or a global one without a channel.
    /// False when a function write fails.
    pub fn set_var(&mut self, name: &str, value: &str) -> bool {
        if name.ends_with(')') {
            return self.func_write(name, value);
        }
        let Some(ch) = self.chan.as_deref_mut() else {
            self.effect(Effect::GlobalWrite(name.to_owned()));
            lock(&self.pbx.globals).insert(name.to_owned(), value.to_owned());
            return true;
        };
        ch.vars.insert(name.to_owned(), value.to_owned());
        let pbx = self.pbx;
        let extra = [("Variable", name), ("Value", value)];
        if let Some(ev) = chan_event(&pbx.bus, pbx.dialect(), "VarSet", "dialplan,all", ch, &extra) {
            pbx.bus.send(ev);
        }
        if !self.owned {
            forward_var(pbx, ch, name, value);
        }
        true
    }

    // ------------------------------------------------------------------ functions

    /// `ast_func_read`: `NAME(args)` evaluated (the arguments as given: only `${…}`
    /// substitution evaluates them first). None when the function fails or does not exist.
    pub fn func_read(&mut self, full: &str) -> Option<String> {
        if !self.spend() {
            return None;
        }
        let (name, args) = split_func(full);
        if self.inhibit && read_escalates(name) {
            tracing::debug!(name, "dangerous function read blocked");
            return None;
        }
        self.effect(Effect::FunctionCall {
            name: name.to_owned(),
            args: args.to_owned(),
        });
        if !function_exists(name) {
            return None;
        }
        let arg = |n: usize| -> Vec<String> { separate_args(args, ',', true, n) };
        let nth = |v: &[String], i: usize| v.get(i).cloned().unwrap_or_default();
        let pbx = self.pbx;
        match name {
            "SHELL" => {
                self.effect(Effect::Shell(args.to_owned()));
                Some(String::new())
            }
            "EVAL" => {
                let args = args.to_owned();
                Some(self.substitute(&args))
            }
            "FILE" | "FILE_COUNT_LINE" | "FILE_FORMAT" => {
                self.effect(Effect::FileRead(nth(&arg(5), 0)));
                Some(String::new())
            }
            "STAT" => {
                self.effect(Effect::FileRead(nth(&arg(2), 1)));
                Some(String::new())
            }
            "DB" | "DB_EXISTS" | "DB_DELETE" => {
                let parts = separate_args(args, '/', true, 2);
                let (Some(family), Some(key)) = (parts.first(), parts.get(1)) else {
                    return None;
                };
                let path = format!("{family}/{key}");
                self.effect(Effect::DbRead(path.clone()));
                let v = lock(&pbx.astdb).get(family, key).map(str::to_owned);
                match name {
                    "DB_EXISTS" => Some(if v.is_some() { "1" } else { "0" }.to_owned()),
                    "DB_DELETE" => {
                        self.effect(Effect::DbDelete(path));
                        lock(&pbx.astdb).del(family, key);
                        Some(v.unwrap_or_default())
                    }
                    _ => Some(v.unwrap_or_default()),
                }
            }
            "DB_KEYS" | "DB_KEYCOUNT" => {
                let prefix = args.trim_matches('/');
                self.effect(Effect::DbRead(prefix.to_owned()));
                let (family, key) = match prefix.split_once('/') {
                    Some((f, k)) => (f, Some(k)),
                    None => (prefix, None),
                };
                let base = if prefix.is_empty() {
                    "/".to_owned()
                } else {
                    format!("/{prefix}/")
                };
                let mut keys: Vec<String> = lock(&pbx.astdb)
                    .tree(Some(family), key)
                    .into_iter()
                    .filter_map(|(k, _)| {
                        k.strip_prefix(&base)
                            .map(|r| r.split('/').next().unwrap_or("").to_owned())
                    })
                    .collect();
                keys.dedup();
                Some(if name == "DB_KEYS" {
                    keys.join(",")
                } else {
                    keys.len().to_string()
                })
            }
            "AST_CONFIG" => {
                let a = arg(4);
                let (file, category, variable) = (nth(&a, 0), nth(&a, 1), nth(&a, 2));
                self.effect(Effect::ConfigRead {
                    file: file.clone(),
                    category: category.clone(),
                    variable: variable.clone(),
                });
                config_value(pbx, &file, &category, &variable)
            }
            "ENV" => {
                self.effect(Effect::EnvRead(args.to_owned()));
                Some(lock(&pbx.env).get(args).cloned().unwrap_or_default())
            }
            "CURL" => {
                self.effect(Effect::Curl { url: nth(&arg(2), 0) });
                Some(String::new())
            }
            n if n.starts_with("ODBC") || n.starts_with("REALTIME") => {
                self.effect(Effect::ExternalDb {
                    function: name.to_owned(),
                    args: args.to_owned(),
                });
                Some(String::new())
            }
            "GLOBAL" | "GLOBAL_EXISTS" => {
                self.effect(Effect::GlobalRead(args.to_owned()));
                let v = lock(&pbx.globals).get(args).cloned();
                Some(if name == "GLOBAL" {
                    v.unwrap_or_default()
                } else if v.is_some() {
                    "1".to_owned()
                } else {
                    "0".to_owned()
                })
            }
            "GLOBAL_DELETE" => {
                self.effect(Effect::GlobalWrite(args.to_owned()));
                lock(&pbx.globals).remove(args);
                Some(String::new())
            }
            "IMPORT" => {
                let a = arg(2);
                let (channel, var) = (nth(&a, 0), nth(&a, 1));
                if var.is_empty() {
                    return None;
                }
                let Some(mut other) = pbx.find_channel(&channel) else {
                    return Some(String::new());
                };
                self.effect(Effect::ChannelVarRead {
                    channel: other.name.clone(),
                    var: var.clone(),
                });
                let templ = format!("${{{var}}}");
                Some(self.on_other(&mut other, |c| c.substitute(&templ)))
            }
            "SHARED" => {
                let a = arg(2);
                let (var, channel) = (nth(&a, 0), nth(&a, 1));
                let uid = if channel.is_empty() {
                    self.chan.as_ref().map(|c| c.uniqueid.clone())
                } else {
                    let other = pbx.find_channel(&channel)?;
                    self.effect(Effect::ChannelVarRead {
                        channel: other.name.clone(),
                        var: var.clone(),
                    });
                    Some(other.uniqueid)
                };
                let Some(uid) = uid else {
                    return Some(String::new());
                };
                Some(
                    lock(&pbx.shared)
                        .get(&uid)
                        .and_then(|m| m.get(&var).cloned())
                        .unwrap_or_default(),
                )
            }
            "CHANNELS" => {
                self.effect(Effect::ChannelsListed);
                let re = if args.is_empty() {
                    None
                } else {
                    Some(regex::RegexBuilder::new(args).size_limit(1 << 20).build().ok()?)
                };
                let names: Vec<String> = lock(&pbx.channels)
                    .keys()
                    .filter(|n| re.as_ref().is_none_or(|re| re.is_match(n)))
                    .cloned()
                    .collect();
                Some(names.join(" "))
            }
            "QUEUE_MEMBER"
            | "QUEUE_MEMBER_LIST"
            | "QUEUE_MEMBER_COUNT"
            | "QUEUE_WAITING_COUNT"
            | "QUEUE_EXISTS"
            | "QUEUE_VARIABLES"
            | "QUEUE_MEMBER_PENALTY"
            | "QUEUE_GET_CHANNEL" => {
                let a = arg(3);
                let queue = nth(&a, 0);
                self.effect(Effect::QueueMemberRead { queue: queue.clone() });
                queue_read(pbx, name, &queue, &nth(&a, 1), &nth(&a, 2))
            }
            "CALLERID" => {
                let c = self.chan.as_ref()?;
                let num = c.cid_num.clone().unwrap_or_default();
                let cname = c.cid_name.clone().unwrap_or_default();
                Some(match nth(&arg(2), 0).as_str() {
                    "num" | "number" => num,
                    "name" => cname,
                    "all" => format!("\"{cname}\" <{num}>"),
                    _ => String::new(),
                })
            }
            "CHANNEL" => {
                let c = self.chan.as_ref()?;
                Some(match args {
                    "name" => c.name.clone(),
                    "uniqueid" => c.uniqueid.clone(),
                    "linkedid" => c.linkedid.clone(),
                    "state" => state_desc(c.state).to_owned(),
                    "language" => "en".to_owned(),
                    _ => String::new(),
                })
            }
            "LEN" => Some(args.len().to_string()),
            "TOUPPER" => Some(args.to_ascii_uppercase()),
            "TOLOWER" => Some(args.to_ascii_lowercase()),
            "CUT" => {
                let a = arg(3);
                if a.len() < 3 {
                    return None;
                }
                let delim = a[1].chars().next().unwrap_or('-');
                let value = self.substitute(&format!("${{{}}}", a[0]));
                Some(cut(&value, delim, &a[2]))
            }
            // Registered but harmless here (CDR, HASH, ARRAY, …).
            _ => Some(String::new()),
        }
    }

    /// `ast_func_write`: `NAME(args)=value`. False when the function does not exist,
    /// cannot be written, is refused by the escalation guard, or fails.
    pub fn func_write(&mut self, full: &str, value: &str) -> bool {
        if !self.spend() {
            return false;
        }
        let (name, args) = split_func(full);
        if self.inhibit && write_escalates(name) {
            tracing::debug!(name, "dangerous function write blocked");
            return false;
        }
        self.effect(Effect::FunctionWrite {
            name: name.to_owned(),
            args: args.to_owned(),
            value: value.to_owned(),
        });
        if !function_exists(name) || read_only(name) {
            return false;
        }
        let arg = |n: usize| -> Vec<String> { separate_args(args, ',', true, n) };
        let nth = |v: &[String], i: usize| v.get(i).cloned().unwrap_or_default();
        let pbx = self.pbx;
        match name {
            "FILE" => {
                self.effect(Effect::FileWrite(nth(&arg(5), 0)));
                true
            }
            "DB" => {
                let parts = separate_args(args, '/', true, 2);
                let (Some(family), Some(key)) = (parts.first(), parts.get(1)) else {
                    return false;
                };
                self.effect(Effect::DbWrite(format!("{family}/{key}")));
                lock(&pbx.astdb).put(family, key, value);
                true
            }
            "ENV" => {
                self.effect(Effect::EnvWrite(args.to_owned()));
                let mut env = lock(&pbx.env);
                if value.is_empty() {
                    env.remove(args);
                } else {
                    env.insert(args.to_owned(), value.to_owned());
                }
                true
            }
            "CURL" => {
                self.effect(Effect::Curl { url: nth(&arg(2), 0) });
                true
            }
            n if n.starts_with("ODBC") || n.starts_with("REALTIME") => {
                self.effect(Effect::ExternalDb {
                    function: name.to_owned(),
                    args: args.to_owned(),
                });
                true
            }
            "GLOBAL" => {
                self.effect(Effect::GlobalWrite(args.to_owned()));
                lock(&pbx.globals).insert(args.to_owned(), value.to_owned());
                true
            }
            "SHARED" => {
                let a = arg(2);
                let (var, channel) = (nth(&a, 0), nth(&a, 1));
                let uid = if channel.is_empty() {
                    match self.chan.as_ref() {
                        Some(c) => c.uniqueid.clone(),
                        None => return false,
                    }
                } else {
                    let Some(other) = pbx.find_channel(&channel) else {
                        return false;
                    };
                    self.effect(Effect::ChannelVarWrite {
                        channel: other.name.clone(),
                        var: var.clone(),
                    });
                    other.uniqueid
                };
                lock(&pbx.shared).entry(uid).or_default().insert(var, value.to_owned());
                true
            }
            "QUEUE_MEMBER" | "QUEUE_MEMBER_PENALTY" => {
                let a = arg(3);
                let queue = nth(&a, 0);
                self.effect(Effect::QueueMemberWrite { queue: queue.clone() });
                let (option, iface) = if name == "QUEUE_MEMBER" {
                    (nth(&a, 1), nth(&a, 2))
                } else {
                    ("penalty".to_owned(), nth(&a, 1))
                };
                queue_write(pbx, &queue, &option, &iface, value)
            }
            "CALLERID" => self.chan.is_some(),
            // Registered and writable, harmless here (CDR, CHANNEL, HASH, …).
            _ => true,
        }
    }

    // ------------------------------------------------------------------ expressions

    /// `$[…]`: integer arithmetic, comparisons, `&` and `|`; anything it cannot read is
    /// returned as the (substituted) text.
    fn expression(&mut self, text: &str) -> String {
        let toks = tokenize(text);
        if toks.is_empty() {
            return String::new();
        }
        let mut p = ExprParser {
            toks: &toks,
            pos: 0,
            depth: 0,
        };
        match p.or() {
            Some(v) if p.pos == toks.len() => v,
            _ => text.trim().to_owned(),
        }
    }

    // ------------------------------------------------------------------ applications

    /// Runs an application as `ast_pbx_exec_application` does for an Originate: nothing
    /// when Asterisk has no such application, else the data is substituted first.
    /// Returns the substituted data (what the channel shows) and what ran.
    pub fn exec_application(&mut self, app: &str, data: &str) -> (String, Option<Ran>) {
        let Some(canonical) = find_app(app) else {
            return (data.to_owned(), None);
        };
        let data = self.substitute(data);
        let ran = self.run_app(canonical, &data);
        (data, Some(ran))
    }

    /// Runs an application whose data is already substituted (a dialplan priority, or
    /// `exec_application`): journals it and simulates what reaches beyond the channel.
    pub fn run_app(&mut self, app: &'static str, data: &str) -> Ran {
        let pbx = self.pbx;
        self.effect(Effect::AppRun {
            channel: self.chan_name(),
            app: app.to_owned(),
            data: data.to_owned(),
        });
        let ran = Ran {
            app,
            data: data.to_owned(),
        };
        if self.depth >= MAX_DEPTH {
            return ran;
        }
        let first = || separate_args(data, ',', true, 2).into_iter().next().unwrap_or_default();
        match app.to_ascii_lowercase().as_str() {
            "system" | "trysystem" if !data.is_empty() => self.effect(Effect::Shell(data.to_owned())),
            "agi" | "eagi" => self.effect(Effect::Agi(first())),
            "externalivr" => {
                let cmd = first();
                if !cmd.starts_with("ivr://") && !cmd.is_empty() {
                    self.effect(Effect::Shell(cmd));
                }
            }
            "set" => {
                if let Some((name, value)) = data.split_once('=') {
                    self.set_var(name, value);
                }
            }
            "mset" => {
                for pair in separate_args(data, ',', true, 99) {
                    let nv = separate_args(&pair, '=', true, 2);
                    if let [name, value] = nv.as_slice() {
                        self.set_var(name, value);
                    }
                }
            }
            "exec" | "tryexec" => {
                let (inner, args) = match data.split_once('(') {
                    Some((a, rest)) => (a, Some(rest.rfind(')').map_or(rest, |p| &rest[..p]))),
                    None => (data, None),
                };
                let args = args.map(|a| self.substitute(a)).unwrap_or_default();
                if let Some(inner) = find_app(inner) {
                    self.depth += 1;
                    let r = self.run_app(inner, &args);
                    self.depth -= 1;
                    return r;
                }
            }
            "execif" => {
                if let Some((inner, args)) = execif_choice(data) {
                    if let Some(inner) = find_app(&inner) {
                        self.depth += 1;
                        let r = self.run_app(inner, &args);
                        self.depth -= 1;
                        return r;
                    }
                }
            }
            "channelredirect" => {
                let a = separate_args(data, ',', true, 2);
                let target = a.first().cloned().unwrap_or_default();
                if let Some(other) = pbx.find_channel(&target) {
                    let label = a.get(1).cloned().unwrap_or_default();
                    let (context, exten, priority) = parse_goto(&label, &other);
                    self.effect(Effect::Redirect {
                        channel: other.name.clone(),
                    });
                    let _ = other.control.send(Control::Redirect {
                        side: other.side,
                        context,
                        exten,
                        priority,
                    });
                }
            }
            "softhangup" => {
                let a = separate_args(data, ',', true, 2);
                let want = a.first().cloned().unwrap_or_default();
                if !want.is_empty() {
                    let all = a.get(1).is_some_and(|o| o.contains('a'));
                    for c in pbx.channel_list() {
                        let prefix = c.name.get(..want.len()).is_some_and(|p| p.eq_ignore_ascii_case(&want));
                        if !prefix {
                            continue;
                        }
                        let name = if all {
                            c.name.rsplit_once('-').map_or(c.name.as_str(), |(n, _)| n)
                        } else {
                            c.name.as_str()
                        };
                        if name.eq_ignore_ascii_case(&want) {
                            self.effect(Effect::Hangup {
                                channel: c.name.clone(),
                            });
                            let _ = c.control.send(Control::Hangup {
                                side: c.side,
                                cause: 16,
                            });
                            if !all {
                                break;
                            }
                        }
                    }
                }
            }
            "chanspy" | "extenspy" => self.effect(Effect::Spy { channel: first() }),
            "dial" => self.effect(Effect::Dial { target: first() }),
            "record" => {
                let file = first();
                if !file.is_empty() {
                    self.effect(Effect::Recording { path: file });
                }
            }
            "mixmonitor" => {
                self.mixmonitor(data);
            }
            "userevent" => self.effect(Effect::UserEvent { name: first() }),
            "dbdeltree" if !data.is_empty() => {
                self.effect(Effect::DbDelete(data.to_owned()));
                let (family, key) = match data.split_once('/') {
                    Some((f, k)) => (f, Some(k)),
                    None => (data, None),
                };
                lock(&pbx.astdb).del_tree(family, key);
            }
            _ => {}
        }
        ran
    }

    /// MixMonitor (`file,options,command`), the application or the action: the
    /// recordings start, `MIXMONITOR_FILENAME` is set, the command (`^{` read as `${`)
    /// is substituted now and run when the recording ends (journaled at once). False when
    /// nothing would be recorded. Returns the `i()` option's variable with the id set.
    pub fn mixmonitor(&mut self, data: &str) -> Option<Option<String>> {
        let a = separate_args(data, ',', true, 3);
        let file = a.first().cloned().unwrap_or_default();
        let opts = app_options(a.get(1).map(String::as_str).unwrap_or(""));
        let command = a.get(2).cloned().unwrap_or_default();
        let side_files: Vec<String> = opts
            .iter()
            .filter(|(o, _)| matches!(o, 'r' | 't'))
            .filter_map(|(_, f)| f.clone())
            .filter(|f| !f.is_empty())
            .collect();
        if file.is_empty() && side_files.is_empty() {
            return None;
        }
        for f in &side_files {
            self.effect(Effect::Recording { path: monitor_path(f) });
        }
        if !file.is_empty() {
            let path = monitor_path(&file);
            self.effect(Effect::Recording { path: path.clone() });
            self.set_var("MIXMONITOR_FILENAME", &path);
        }
        if !command.is_empty() {
            let cmd = self.substitute(&command.replace("^{", "${"));
            self.effect(Effect::Shell(cmd));
        }
        let uid_var = opts.into_iter().find(|(o, _)| *o == 'i').and_then(|(_, v)| v);
        let id = uid_var.map(|var| {
            let id = format!("0x7f76{:08x}", rand::random::<u32>());
            self.set_var(&var, &id);
            id
        });
        Some(id)
    }
}

/// A variable set on a table copy of a channel reaches the table and the call.
fn forward_var(pbx: &Pbx, ch: &Channel, name: &str, value: &str) {
    if let Some(c) = lock(&pbx.channels).get_mut(&ch.name) {
        c.vars.insert(name.to_owned(), value.to_owned());
    }
    let _ = ch.control.send(Control::SetVar {
        side: ch.side,
        name: name.to_owned(),
        value: value.to_owned(),
    });
}

/// `ast_parseable_goto`: `[[context,]exten,]priority` from the channel's position.
fn parse_goto(label: &str, ch: &Channel) -> (String, String, u32) {
    let parts: Vec<&str> = label.splitn(3, ',').collect();
    let (context, exten, pri) = match parts.as_slice() {
        [p] => (ch.context.as_str(), ch.exten.as_str(), *p),
        [e, p] => (ch.context.as_str(), *e, *p),
        [c, e, p] => (*c, *e, *p),
        _ => (ch.context.as_str(), ch.exten.as_str(), "1"),
    };
    let priority = pri.trim().parse::<u32>().unwrap_or(1).max(1);
    (context.to_owned(), exten.to_owned(), priority)
}

/// ExecIf's choice: (application, its arguments) for `expr?app(args)[:app(args)]` or the
/// deprecated `expr,app,args`; None when nothing is to run.
fn execif_choice(data: &str) -> Option<(String, String)> {
    let comma = data.find(',');
    let question = data.find('?');
    let deprecated = match (comma, question) {
        (_, None) => true,
        (Some(c), Some(q)) => c < q,
        _ => false,
    };
    let (expr, t, f) = if deprecated {
        let a = separate_args(data, ',', true, 3);
        let expr = a.first().cloned().unwrap_or_default();
        let t = a.get(1).map(|app| (app.clone(), a.get(2).cloned().unwrap_or_default()));
        (expr, t, None)
    } else {
        let e = separate_args(data, '?', false, 2);
        let expr = e.first().cloned().unwrap_or_default();
        let rest = e.get(1).cloned().unwrap_or_default();
        if rest.is_empty() {
            return None;
        }
        let apps = separate_args(&rest, ':', false, 2);
        let split = |s: &String| match s.split_once('(') {
            Some((a, r)) => (a.to_owned(), r.rfind(')').map_or(r, |p| &r[..p]).to_owned()),
            None => (s.clone(), String::new()),
        };
        (expr, apps.first().map(split), apps.get(1).map(split))
    };
    let chosen = if check_condition(&expr) { t } else { f };
    chosen.filter(|(app, _)| !app.is_empty())
}

/// `CUT(var,delim,ranges)` on a value: fields numbered from 1, ranges `n`, `n-m`, `n-`,
/// `-m`, joined with `&`.
fn cut(value: &str, delim: char, spec: &str) -> String {
    let fields: Vec<&str> = value.split(delim).collect();
    let n = fields.len();
    let mut out: Vec<&str> = Vec::new();
    for range in spec.split('&') {
        let (from, to) = match range.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().unwrap_or(1),
                if b.trim().is_empty() {
                    n
                } else {
                    b.trim().parse::<usize>().unwrap_or(n)
                },
            ),
            None => match range.trim().parse::<usize>() {
                Ok(x) => (x, x),
                Err(_) => continue,
            },
        };
        for i in from.max(1)..=to.min(n) {
            out.push(fields[i - 1]);
        }
    }
    out.join(&delim.to_string())
}

/// `AST_CONFIG(file,category,variable)`: manager.conf gives the sim's own users (their
/// secret included, as a real PBX would leak it); queues.conf and extensions.conf come
/// from the captured configuration.
fn config_value(pbx: &Pbx, file: &str, category: &str, variable: &str) -> Option<String> {
    match file {
        "manager.conf" => {
            if category == "general" {
                return match variable.to_ascii_lowercase().as_str() {
                    "enabled" => Some("yes".to_owned()),
                    "port" => Some("5038".to_owned()),
                    "bindaddr" => Some("0.0.0.0".to_owned()),
                    _ => None,
                };
            }
            let u = pbx.cfg.users.iter().find(|u| u.username == category)?;
            match variable.to_ascii_lowercase().as_str() {
                "secret" => Some(u.secret.clone()),
                "read" => Some(u.read.clone()),
                "write" => Some(u.write.clone()),
                _ => None,
            }
        }
        "queues.conf" => embedded_config(
            include_str!("../../../fixtures/asterisk-config/queues.conf"),
            category,
            variable,
        ),
        "extensions.conf" => embedded_config(
            include_str!("../../../fixtures/asterisk-config/extensions.conf"),
            category,
            variable,
        ),
        _ => None,
    }
}

/// The read side of the queue functions.
fn queue_read(pbx: &Pbx, func: &str, queue: &str, a1: &str, a2: &str) -> Option<String> {
    let queues = lock(&pbx.queues);
    if func == "QUEUE_EXISTS" {
        return Some(
            if queues.queues.iter().any(|q| q.name == queue) {
                "1"
            } else {
                "0"
            }
            .to_owned(),
        );
    }
    let q = queues.queues.iter().find(|q| q.name == queue)?;
    let free = |m: &&crate::queues::Member| !m.paused && !m.in_call && matches!(m.status, 0 | 1);
    let logged = |m: &&crate::queues::Member| !matches!(m.status, 4 | 5);
    let member = |iface: &str| q.members.iter().find(|m| m.interface.eq_ignore_ascii_case(iface));
    Some(match func {
        "QUEUE_MEMBER_LIST" => q
            .members
            .iter()
            .map(|m| m.interface.as_str())
            .collect::<Vec<_>>()
            .join(","),
        "QUEUE_MEMBER_COUNT" => q.members.iter().filter(logged).count().to_string(),
        "QUEUE_WAITING_COUNT" => q.callers.len().to_string(),
        "QUEUE_VARIABLES" => "0".to_owned(),
        "QUEUE_MEMBER_PENALTY" => member(a1)?.penalty.to_string(),
        "QUEUE_GET_CHANNEL" => {
            let pos = a1.trim().parse::<usize>().unwrap_or(1).max(1);
            q.callers.get(pos - 1).cloned().unwrap_or_default()
        }
        _ => match a1 {
            "logged" => q.members.iter().filter(logged).count().to_string(),
            "free" | "ready" => q.members.iter().filter(free).count().to_string(),
            "count" => q.members.len().to_string(),
            "penalty" => member(a2)?.penalty.to_string(),
            "paused" => if member(a2)?.paused { "1" } else { "0" }.to_owned(),
            "ringinuse" => {
                member(a2)?;
                "0".to_owned()
            }
            "wrapuptime" => {
                member(a2)?;
                "0".to_owned()
            }
            _ => return None,
        },
    })
}

/// The write side: `paused` and `penalty` change the member (with its event);
/// `ringinuse` and `wrapuptime` are accepted.
fn queue_write(pbx: &Pbx, queue: &str, option: &str, iface: &str, value: &str) -> bool {
    let q = (!queue.is_empty()).then_some(queue);
    match option {
        "paused" => {
            let changed = lock(&pbx.queues).pause(q, iface, ast_true(value), "");
            for (qn, mb) in &changed {
                crate::queues::member_event(&pbx.bus, "QueueMemberPause", qn, mb);
            }
            !changed.is_empty()
        }
        "penalty" => {
            let Ok(p) = value.trim().parse::<i64>() else {
                return false;
            };
            if p < 0 {
                return false;
            }
            let changed = lock(&pbx.queues).set_penalty(q, iface, p);
            for (qn, mb) in &changed {
                crate::queues::member_event(&pbx.bus, "QueueMemberPenalty", qn, mb);
            }
            !changed.is_empty()
        }
        "ringinuse" | "ignorebusy" | "wrapuptime" => {
            let queues = lock(&pbx.queues);
            queues
                .queues
                .iter()
                .filter(|x| q.is_none_or(|w| w == x.name))
                .any(|x| x.members.iter().any(|m| m.interface.eq_ignore_ascii_case(iface)))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------- $[ ] parser

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Op(&'static str),
    Word(String),
}

const OPS: &[&str] = &[
    "!=", "<=", ">=", "==", "|", "&", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "!",
];

fn tokenize(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Tok::Op(op));
            rest = &rest[op.len()..];
            continue;
        }
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            out.push(Tok::Word(q[..end].to_owned()));
            rest = q.get(end + 1..).unwrap_or("");
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || "|&=<>+-*/%()!\"".contains(c))
            .unwrap_or(rest.len());
        let end = end.max(rest.chars().next().map_or(1, char::len_utf8));
        out.push(Tok::Word(rest[..end].to_owned()));
        rest = &rest[end..];
    }
}

struct ExprParser<'t> {
    toks: &'t [Tok],
    pos: usize,
    depth: u32,
}

fn num(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

fn truthy(s: &str) -> bool {
    !s.is_empty() && s != "0"
}

impl ExprParser<'_> {
    fn peek_op(&self) -> Option<&'static str> {
        match self.toks.get(self.pos) {
            Some(Tok::Op(o)) => Some(o),
            _ => None,
        }
    }

    fn or(&mut self) -> Option<String> {
        let mut l = self.and()?;
        while self.peek_op() == Some("|") {
            self.pos += 1;
            let r = self.and()?;
            l = if truthy(&l) { l } else { r };
        }
        Some(l)
    }

    fn and(&mut self) -> Option<String> {
        let mut l = self.cmp()?;
        while self.peek_op() == Some("&") {
            self.pos += 1;
            let r = self.cmp()?;
            l = if truthy(&l) && truthy(&r) { l } else { "0".to_owned() };
        }
        Some(l)
    }

    fn cmp(&mut self) -> Option<String> {
        let mut l = self.add()?;
        while let Some(op @ ("=" | "==" | "!=" | "<" | ">" | "<=" | ">=")) = self.peek_op() {
            self.pos += 1;
            let r = self.add()?;
            let ord = match (num(&l), num(&r)) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => l.cmp(&r),
            };
            let res = match op {
                "=" | "==" => ord.is_eq(),
                "!=" => ord.is_ne(),
                "<" => ord.is_lt(),
                ">" => ord.is_gt(),
                "<=" => ord.is_le(),
                _ => ord.is_ge(),
            };
            l = if res { "1" } else { "0" }.to_owned();
        }
        Some(l)
    }

    fn add(&mut self) -> Option<String> {
        let mut l = self.mul()?;
        while let Some(op @ ("+" | "-")) = self.peek_op() {
            self.pos += 1;
            let r = self.mul()?;
            let (a, b) = (num(&l)?, num(&r)?);
            l = if op == "+" {
                a.checked_add(b)?
            } else {
                a.checked_sub(b)?
            }
            .to_string();
        }
        Some(l)
    }

    fn mul(&mut self) -> Option<String> {
        let mut l = self.unary()?;
        while let Some(op @ ("*" | "/" | "%")) = self.peek_op() {
            self.pos += 1;
            let r = self.unary()?;
            let (a, b) = (num(&l)?, num(&r)?);
            l = match op {
                "*" => a.checked_mul(b)?,
                "/" => a.checked_div(b)?,
                _ => a.checked_rem(b)?,
            }
            .to_string();
        }
        Some(l)
    }

    fn unary(&mut self) -> Option<String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let r = match self.peek_op() {
            Some("-") => {
                self.pos += 1;
                let v = self.unary()?;
                Some(num(&v)?.checked_neg()?.to_string())
            }
            Some("!") => {
                self.pos += 1;
                let v = self.unary()?;
                Some(if truthy(&v) { "0" } else { "1" }.to_owned())
            }
            _ => self.primary(),
        };
        self.depth -= 1;
        r
    }

    fn primary(&mut self) -> Option<String> {
        match self.toks.get(self.pos)? {
            Tok::Word(w) => {
                self.pos += 1;
                Some(w.clone())
            }
            Tok::Op("(") => {
                self.pos += 1;
                let v = self.or()?;
                if self.peek_op() != Some(")") {
                    return None;
                }
                self.pos += 1;
                Some(v)
            }
            Tok::Op(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;
    use std::sync::Arc;

    #[test]
    fn originate_variable_headers() {
        assert_eq!(
            originate_variables("A=1,DB(acme/k)=v,SHELL(a,b)=c, B=2,noeq,=x,C=d=e"),
            vec![
                ("A".into(), "1".into()),
                ("DB(acme/k)".into(), "v".into()),
                ("SHELL(a,b)".into(), "c".into()),
                (" B".into(), "2".into()),
                ("C".into(), "d=e".into()),
            ]
        );
        assert_eq!(
            originate_variables(r#"X="a,b",Y=\"q"#),
            vec![("X".into(), "a,b".into()), ("Y".into(), "\"q".into())]
        );
    }

    #[test]
    fn reference_lists() {
        assert_eq!(super::applications().len(), 158);
        assert_eq!(functions().len(), 168);
        assert_eq!(find_app("chanspy"), Some("ChanSpy"));
        assert_eq!(find_app("Zapateller"), Some("Zapateller"));
        assert!(function_exists("SHELL") && function_exists("VOLUME") && !function_exists("shell"));
    }

    #[test]
    fn variable_names() {
        assert_eq!(parse_variable_name("FOO"), ("FOO", 0, i32::MAX, false));
        assert_eq!(parse_variable_name("FOO:1:2"), ("FOO", 1, 2, false));
        assert_eq!(parse_variable_name("FOO:-3"), ("FOO", -3, i32::MAX, false));
        assert_eq!(parse_variable_name("FOO::2"), ("FOO", 0, i32::MAX, false));
        assert_eq!(parse_variable_name("CUT(a:b,c):1"), ("CUT(a:b,c)", 1, i32::MAX, true));
        assert_eq!(substring("abcdef", 1, 2), "bc");
        assert_eq!(substring("abcdef", -2, i32::MAX), "ef");
        assert_eq!(substring("abcdef", 0, -2), "abcd");
        assert_eq!(substring("abcdef", 9, 1), "");
        assert_eq!(substring("abcdef", 2, -9), "");
        assert_eq!(split_func("SHELL(id)"), ("SHELL", "id"));
        assert_eq!(split_func("A(b(c))x"), ("A", "b(c)"));
        assert_eq!(split_func("A(b"), ("A", "b"));
        assert_eq!(split_func("NOPE"), ("NOPE", ""));
        assert!(check_condition("abc") && check_condition(" 2") && !check_condition("0") && !check_condition(""));
        assert_eq!(cut("a-b-c-d", '-', "2"), "b");
        assert_eq!(cut("a-b-c-d", '-', "2-3"), "b-c");
        assert_eq!(cut("a-b-c-d", '-', "3-"), "c-d");
        assert_eq!(cut("a,b,c", ',', "1&3"), "a,c");
    }

    fn pbx() -> Arc<Pbx> {
        Arc::new(Pbx::new(SimConfig::default()))
    }

    fn chan(name: &str) -> (Channel, tokio::sync::mpsc::UnboundedReceiver<Control>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let ch = Channel {
            name: name.into(),
            side: crate::channels::Side::One,
            state: 6,
            cid_num: Some("100".into()),
            cid_name: Some("Alice".into()),
            conn_num: None,
            conn_name: None,
            context: "default".into(),
            exten: "100".into(),
            priority: 1,
            uniqueid: format!("uid-{name}"),
            linkedid: format!("uid-{name}"),
            app: String::new(),
            data: String::new(),
            created: std::time::Instant::now(),
            created_wall: SystemTime::now(),
            answered_wall: None,
            seq: 0,
            vars: Default::default(),
            peer: None,
            control: tx,
        };
        (ch, rx)
    }

    #[test]
    fn substitution() {
        let pbx = pbx();
        lock(&pbx.globals).insert("G".into(), "global".into());
        let (mut ch, _rx) = chan("Local/1@default-00000000;1");
        ch.vars.insert("FOO".into(), "hello".into());
        ch.vars.insert("NAME".into(), "FOO".into());
        let mut c = Ctx::call(&pbx, &mut ch);
        assert_eq!(c.substitute("x ${FOO} y"), "x hello y");
        assert_eq!(c.substitute("${FOO:1:3}"), "ell");
        assert_eq!(c.substitute("${FOO:-2}"), "lo");
        assert_eq!(c.substitute("${${NAME}}"), "hello");
        assert_eq!(c.substitute("${EXTEN}@${CONTEXT}"), "100@default");
        assert_eq!(c.substitute("${G}"), "global");
        assert_eq!(c.substitute("${UNSET}"), "");
        assert_eq!(c.substitute("cost $5 $"), "cost $5 $");
        assert_eq!(c.substitute("$[1 + 2 * 3]"), "7");
        assert_eq!(c.substitute("$[(1+2)*3]"), "9");
        assert_eq!(c.substitute("$[${LEN(${FOO})} > 3]"), "1");
        assert_eq!(c.substitute("$[abc]"), "abc");
        assert_eq!(c.substitute("$[1/0]"), "1/0");
        assert_eq!(c.substitute("$[${FOO} = hello]"), "1");
        assert_eq!(c.substitute("${LEN(abc)}"), "3");
        assert_eq!(c.substitute("${TOUPPER(${FOO})}"), "HELLO");
        assert_eq!(c.substitute("${CALLERID(num)} ${CALLERID(all)}"), "100 \"Alice\" <100>");
        assert_eq!(c.substitute("${unterminated"), "");
        // Depth and budget: no overflow, no panic.
        let deep = "${".repeat(5000) + "X" + &"}".repeat(5000);
        let _ = c.substitute(&deep);
        let deep = "$[".repeat(5000);
        let _ = c.substitute(&deep);
        let deep = "$[".to_owned() + &"(".repeat(5000) + "]";
        let _ = c.substitute(&deep);
        // EVAL of a variable that evaluates itself.
        ch.vars.insert("LOOP".into(), "${EVAL(${LOOP})}".into());
        let mut c = Ctx::call(&pbx, &mut ch);
        let _ = c.substitute("${EVAL(${LOOP})}");
    }

    #[test]
    fn dangerous_functions_are_journaled_not_run() {
        let pbx = pbx();
        let (mut ch, _rx) = chan("Local/1@default-00000000;1");
        let mut c = Ctx::call(&pbx, &mut ch);
        assert_eq!(c.substitute("a${SHELL(id)}b"), "ab");
        assert!(c.set_var("FILE(/tmp/x)", "data"));
        assert!(c.set_var("DB(acme/k)", "v"));
        assert_eq!(c.substitute("${DB(acme/k)}"), "v");
        assert_eq!(c.substitute("${AST_CONFIG(manager.conf,admin,secret)}"), "admin-secret");
        assert_eq!(c.substitute("${ENV(HOME)}"), "");
        assert!(!c.set_var("SHELL(x)", "y"));
        assert!(!c.set_var("NOSUCH(x)", "y"));
        assert_eq!(c.func_read("nosuch(x)"), None);
        let e = pbx.journal.snapshot();
        assert_eq!(
            e,
            vec![
                Effect::FunctionCall {
                    name: "SHELL".into(),
                    args: "id".into()
                },
                Effect::Shell("id".into()),
                Effect::FunctionWrite {
                    name: "FILE".into(),
                    args: "/tmp/x".into(),
                    value: "data".into()
                },
                Effect::FileWrite("/tmp/x".into()),
                Effect::FunctionWrite {
                    name: "DB".into(),
                    args: "acme/k".into(),
                    value: "v".into()
                },
                Effect::DbWrite("acme/k".into()),
                Effect::FunctionCall {
                    name: "DB".into(),
                    args: "acme/k".into()
                },
                Effect::DbRead("acme/k".into()),
                Effect::FunctionCall {
                    name: "AST_CONFIG".into(),
                    args: "manager.conf,admin,secret".into()
                },
                Effect::ConfigRead {
                    file: "manager.conf".into(),
                    category: "admin".into(),
                    variable: "secret".into()
                },
                Effect::FunctionCall {
                    name: "ENV".into(),
                    args: "HOME".into()
                },
                Effect::EnvRead("HOME".into()),
                Effect::FunctionWrite {
                    name: "SHELL".into(),
                    args: "x".into(),
                    value: "y".into()
                },
                Effect::FunctionWrite {
                    name: "NOSUCH".into(),
                    args: "x".into(),
                    value: "y".into()
                },
                Effect::FunctionCall {
                    name: "nosuch".into(),
                    args: "x".into()
                },
            ]
        );
    }

    #[test]
    fn eval_substitutes_again_and_the_guard_blocks() {
        let pbx = pbx();
        lock(&pbx.globals).insert("CMD".into(), "${SHELL(rm -rf /)}".into());
        let mut c = Ctx::action(&pbx, None);
        // Read directly (Getvar), EVAL substitutes its argument once: the text comes back.
        assert_eq!(c.func_read("EVAL(${CMD})").as_deref(), Some("${SHELL(rm -rf /)}"));
        assert!(!pbx.journal.snapshot().contains(&Effect::Shell("rm -rf /".into())));
        // Within a substitution the argument was substituted already: EVAL runs it.
        assert_eq!(c.substitute("${EVAL(${CMD})}"), "");
        assert!(pbx.journal.snapshot().contains(&Effect::Shell("rm -rf /".into())));
        pbx.journal.clear();
        let mut c = Ctx::action(&pbx, None).inhibited(true);
        assert_eq!(c.func_read("SHELL(id)"), None);
        assert!(!c.func_write("FILE(/etc/passwd)", "x"));
        assert_eq!(c.func_read("ENV(PATH)"), Some(String::new()));
        assert_eq!(
            pbx.journal.snapshot(),
            vec![
                Effect::FunctionCall {
                    name: "ENV".into(),
                    args: "PATH".into()
                },
                Effect::EnvRead("PATH".into())
            ]
        );
    }

    #[test]
    fn cross_channel_functions() {
        let pbx = pbx();
        let (mut mine, _rx1) = chan("Local/1@default-00000000;1");
        let (mut other, mut rx2) = chan("Local/2@default-00000001;1");
        other.vars.insert("SECRET".into(), "s3".into());
        lock(&pbx.channels).insert(other.name.clone(), other.clone());
        lock(&pbx.channels).insert(mine.name.clone(), mine.clone());
        let mut c = Ctx::call(&pbx, &mut mine);
        assert_eq!(c.substitute("${IMPORT(Local/2@default-00000001;1,SECRET)}"), "s3");
        assert!(c.set_var("SHARED(X,Local/2@default-00000001;1)", "v"));
        assert_eq!(c.substitute("${SHARED(X,Local/2@default-00000001;1)}"), "v");
        assert_eq!(c.substitute("${CHANNELS(00000001)}"), "Local/2@default-00000001;1");
        let ran = c.run_app(
            find_app("ChannelRedirect").unwrap(),
            "Local/2@default-00000001;1,default,600,1",
        );
        assert_eq!(ran.app, "ChannelRedirect");
        let ran = c.run_app(find_app("SoftHangup").unwrap(), "Local/2@default-00000001;1");
        assert_eq!(ran.app, "SoftHangup");
        let e = pbx.journal.snapshot();
        assert!(e.contains(&Effect::ChannelVarRead {
            channel: "Local/2@default-00000001;1".into(),
            var: "SECRET".into()
        }));
        assert!(e.contains(&Effect::ChannelVarWrite {
            channel: "Local/2@default-00000001;1".into(),
            var: "X".into()
        }));
        assert!(e.contains(&Effect::ChannelsListed));
        assert!(e.contains(&Effect::Redirect {
            channel: "Local/2@default-00000001;1".into()
        }));
        assert!(e.contains(&Effect::Hangup {
            channel: "Local/2@default-00000001;1".into()
        }));
        assert!(matches!(rx2.try_recv(), Ok(Control::Redirect { exten, priority: 1, .. }) if exten == "600"));
        assert!(matches!(rx2.try_recv(), Ok(Control::Hangup { .. })));
    }

    /// Arbitrary text through every entry point: no panic, whatever it holds.
    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet: Vec<char> = "${}[]()\\\",:=?&|-+*/%!^ aZ09_/;é\u{0}".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pbx = pbx();
        let (mut ch, _rx) = chan("Local/1@default-00000000;1");
        lock(&pbx.channels).insert(ch.name.clone(), ch.clone());
        let funcs = [
            "SHELL",
            "EVAL",
            "FILE",
            "STAT",
            "DB",
            "DB_DELETE",
            "DB_KEYS",
            "AST_CONFIG",
            "ENV",
            "CURL",
            "ODBC_X",
            "GLOBAL",
            "GLOBAL_DELETE",
            "IMPORT",
            "SHARED",
            "CHANNELS",
            "QUEUE_MEMBER",
            "QUEUE_GET_CHANNEL",
            "CALLERID",
            "CHANNEL",
            "LEN",
            "CUT",
            "NOPE",
        ];
        let apps = [
            "System",
            "Set",
            "MSet",
            "Exec",
            "ExecIf",
            "ChannelRedirect",
            "SoftHangup",
            "ChanSpy",
            "Dial",
            "MixMonitor",
            "Record",
            "AGI",
            "ExternalIVR",
            "UserEvent",
            "DBdeltree",
            "Queue",
            "NoOp",
        ];
        for round in 0..3000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = separate_args(&text, ',', round % 2 == 0, 1 + (next() % 5) as usize);
            let _ = originate_variables(&text);
            let _ = execif_choice(&text);
            let _ = parse_variable_name(&text);
            let _ = cut(&text, '-', &text);
            let _ = app_options(&text);
            let mut c = Ctx::call(&pbx, &mut ch);
            let _ = c.substitute(&text);
            let f = funcs[round % funcs.len()];
            let _ = c.func_read(&format!("{f}({text})"));
            let _ = c.func_write(&format!("{f}({text})"), &text);
            let _ = c.set_var(&text, &text);
            let _ = c.retrieve(&text);
            let _ = c.run_app(find_app(apps[round % apps.len()]).unwrap(), &text);
            let _ = c.exec_application(&text, &text);
        }
    }

    #[test]
    fn applications() {
        let pbx = pbx();
        let (mut ch, _rx) = chan("Local/1@default-00000000;1");
        ch.vars.insert("F".into(), "rec".into());
        let mut c = Ctx::call(&pbx, &mut ch);
        let (data, ran) = c.exec_application("noop", "${SHELL(id)}x");
        assert_eq!((data.as_str(), ran.map(|r| r.app)), ("x", Some("NoOp")));
        assert_eq!(c.exec_application("NoSuchApp", "${SHELL(id)}").1, None);
        let ran = c.run_app(find_app("Exec").unwrap(), "System(touch ${F})");
        assert_eq!(ran.app, "System");
        let ran = c.run_app(find_app("ExecIf").unwrap(), "1?Wait(3):System(no)");
        assert_eq!((ran.app, ran.data.as_str()), ("Wait", "3"));
        let ran = c.run_app(find_app("ExecIf").unwrap(), "0?Wait(3):System(yes)");
        assert_eq!((ran.app, ran.data.as_str()), ("System", "yes"));
        c.run_app(find_app("MSet").unwrap(), "A=1,DB(f/k)=2");
        c.exec_application("MixMonitor", "${F}.wav,b,^{SHELL(x)} /bin/post");
        c.run_app(find_app("AGI").unwrap(), "agi://evil/x,a");
        c.run_app(find_app("ChanSpy").unwrap(), "PJSIP/,q");
        c.run_app(find_app("Dial").unwrap(), "PJSIP/alice,30");
        c.run_app(find_app("DBdeltree").unwrap(), "f");
        assert_eq!(ch.vars.get("A").map(String::as_str), Some("1"));
        assert_eq!(
            ch.vars.get("MIXMONITOR_FILENAME").map(String::as_str),
            Some("/var/spool/asterisk/monitor/rec.wav")
        );
        let e = pbx.journal.snapshot();
        let want = [
            Effect::Shell("touch rec".into()),
            Effect::Shell("yes".into()),
            Effect::DbWrite("f/k".into()),
            Effect::Recording {
                path: "/var/spool/asterisk/monitor/rec.wav".into(),
            },
            Effect::Shell(" /bin/post".into()),
            Effect::Agi("agi://evil/x".into()),
            Effect::Spy {
                channel: "PJSIP/".into(),
            },
            Effect::Dial {
                target: "PJSIP/alice".into(),
            },
            Effect::DbDelete("f".into()),
        ];
        let got: Vec<&Effect> = e
            .iter()
            .filter(|x| {
                !matches!(
                    x,
                    Effect::AppRun { .. } | Effect::FunctionCall { .. } | Effect::FunctionWrite { .. }
                )
            })
            .filter(|x| !matches!(x, Effect::Shell(s) if s == "id" || s == "x"))
            .collect();
        assert_eq!(got, want.iter().collect::<Vec<_>>());
        assert!(!e.contains(&Effect::Shell("no".into())));
        assert!(e.contains(&Effect::AppRun {
            channel: "Local/1@default-00000000;1".into(),
            app: "System".into(),
            data: "touch rec".into()
        }));
    }
}
