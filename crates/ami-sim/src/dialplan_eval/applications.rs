//! Applications as a channel or an action runs them: `ast_pbx_exec_application` for an
//! Originate, what `Exec`/`ExecIf` choose, and the applications that reach beyond their
//! own channel (shell, AGI, other channels, recordings, AstDB). What they would do to the
//! machine is journaled, never done; what they do to the PBX (redirects, hangups,
//! variables) is simulated.

use super::registry::find_app;
use super::syntax::check_condition;
use super::{Ctx, Ran, MAX_DEPTH};
use crate::channels::{Channel, Control};
use crate::effects::Effect;
use crate::pbx::lock;
use ami_proto::app_args::separate_args;

/// Asterisk's `ast_config_AST_MONITOR_DIR`.
const MONITOR_DIR: &str = "/var/spool/asterisk/monitor";

impl Ctx<'_> {
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
                if let Some(r) = self.run_nested(inner, &args) {
                    return r;
                }
            }
            "execif" => {
                if let Some(r) = execif_choice(data).and_then(|(inner, args)| self.run_nested(&inner, &args)) {
                    return r;
                }
            }
            "channelredirect" => self.channel_redirect(data),
            "softhangup" => self.soft_hangup(data),
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

    /// Runs the application `Exec` or `ExecIf` chose, one level deeper; None when
    /// Asterisk has no such application.
    fn run_nested(&mut self, app: &str, data: &str) -> Option<Ran> {
        let app = find_app(app)?;
        self.depth += 1;
        let r = self.run_app(app, data);
        self.depth -= 1;
        Some(r)
    }

    /// `ChannelRedirect(channel,[[context,]exten,]priority)`: the other channel jumps.
    fn channel_redirect(&mut self, data: &str) {
        let pbx = self.pbx;
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

    /// `SoftHangup(channel[,a])`: hangs up the named channel, or with `a` every channel of
    /// that device (the name without its `-sequence`).
    fn soft_hangup(&mut self, data: &str) {
        let pbx = self.pbx;
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
pub(super) fn app_options(opts: &str) -> Vec<(char, Option<String>)> {
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
pub(super) fn execif_choice(data: &str) -> Option<(String, String)> {
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
