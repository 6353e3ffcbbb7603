//! Variable substitution: `${…}` and `$[…]` in a text, variable lookup in Asterisk's
//! order (channel built-ins, core, channel, globals), and assignment. Every lookup spends
//! from the evaluation's budget, so hostile input cannot make it run long.

use super::syntax::{parse_variable_name, substring};
use super::{expr, Ctx, MAX_DEPTH, MAX_LEN};
use crate::channels::{chan_event, Channel, Control};
use crate::effects::Effect;
use crate::pbx::{lock, Pbx};
use std::time::SystemTime;

impl Ctx<'_> {
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
                let v = expr::evaluate(&inner);
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
