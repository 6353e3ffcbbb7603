//! Dialplan functions read and written by name (`ast_func_read`, `ast_func_write`). The
//! ones that reach beyond the channel (files, AstDB, the shell, other channels, queues)
//! are journaled; those the sim can answer from its own state (AstDB, globals, queues,
//! the channel table) are answered, the rest give an empty value as harmless functions
//! would. The escalation guard refuses what Asterisk's would.

use super::conf_files::config_value;
use super::queue_functions::{queue_read, queue_write};
use super::registry::{function_exists, read_escalates, read_only, write_escalates};
use super::syntax::split_func;
use super::Ctx;
use crate::channels::state_desc;
use crate::effects::Effect;
use crate::pbx::lock;
use ami_proto::app_args::separate_args;

/// A function's comma-separated arguments, at most `n` (the last takes the rest).
fn args_upto(args: &str, n: usize) -> Vec<String> {
    separate_args(args, ',', true, n)
}

/// The `i`th argument, empty when absent.
fn nth(v: &[String], i: usize) -> String {
    v.get(i).cloned().unwrap_or_default()
}

impl Ctx<'_> {
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
        let arg = |n: usize| args_upto(args, n);
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
            "DB" | "DB_EXISTS" | "DB_DELETE" => self.db_read(name, args),
            "DB_KEYS" | "DB_KEYCOUNT" => Some(self.db_keys(name, args)),
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
            "IMPORT" => self.import(args),
            "SHARED" => self.shared_read(args),
            "CHANNELS" => self.channels(args),
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

    /// `DB(family/key)`, `DB_EXISTS`, `DB_DELETE` (which deletes what it reads).
    fn db_read(&mut self, name: &str, args: &str) -> Option<String> {
        let pbx = self.pbx;
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

    /// `DB_KEYS(prefix)` (the keys one level below, comma-separated) and `DB_KEYCOUNT`.
    fn db_keys(&mut self, name: &str, args: &str) -> String {
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
        let mut keys: Vec<String> = lock(&self.pbx.astdb)
            .tree(Some(family), key)
            .into_iter()
            .filter_map(|(k, _)| {
                k.strip_prefix(&base)
                    .map(|r| r.split('/').next().unwrap_or("").to_owned())
            })
            .collect();
        keys.dedup();
        if name == "DB_KEYS" {
            keys.join(",")
        } else {
            keys.len().to_string()
        }
    }

    /// `IMPORT(channel,var)`: a variable substituted on another channel.
    fn import(&mut self, args: &str) -> Option<String> {
        let a = args_upto(args, 2);
        let (channel, var) = (nth(&a, 0), nth(&a, 1));
        if var.is_empty() {
            return None;
        }
        let Some(mut other) = self.pbx.find_channel(&channel) else {
            return Some(String::new());
        };
        self.effect(Effect::ChannelVarRead {
            channel: other.name.clone(),
            var: var.clone(),
        });
        let templ = format!("${{{var}}}");
        Some(self.on_other(&mut other, |c| c.substitute(&templ)))
    }

    /// `SHARED(var[,channel])` read: this channel's or another's shared variable.
    fn shared_read(&mut self, args: &str) -> Option<String> {
        let pbx = self.pbx;
        let a = args_upto(args, 2);
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

    /// `CHANNELS([regex])`: the names of every channel (matching), space-separated.
    fn channels(&mut self, args: &str) -> Option<String> {
        self.effect(Effect::ChannelsListed);
        let re = if args.is_empty() {
            None
        } else {
            Some(regex::RegexBuilder::new(args).size_limit(1 << 20).build().ok()?)
        };
        let names: Vec<String> = lock(&self.pbx.channels)
            .keys()
            .filter(|n| re.as_ref().is_none_or(|re| re.is_match(n)))
            .cloned()
            .collect();
        Some(names.join(" "))
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
        let arg = |n: usize| args_upto(args, n);
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
            "SHARED" => self.shared_write(args, value),
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

    /// `SHARED(var[,channel])=value`: false without a channel to hold it.
    fn shared_write(&mut self, args: &str, value: &str) -> bool {
        let pbx = self.pbx;
        let a = args_upto(args, 2);
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
}

/// `CUT(var,delim,ranges)` on a value: fields numbered from 1, ranges `n`, `n-m`, `n-`,
/// `-m`, joined with `&`.
pub(super) fn cut(value: &str, delim: char, spec: &str) -> String {
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
