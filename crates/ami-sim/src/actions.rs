//! The actions the simulator answers, with Asterisk 22's exact texts (transcripts 01–17).

use crate::calls::{self, OriginateReq, Target};
use crate::channels::Control;
use crate::dialect::Dialect;
use crate::dialplan_eval::Ctx;
use crate::effects::Effect;
use crate::pbx::lock;
use crate::perms;
use crate::queues::{NewMember, QueueError};
use crate::session::{login_ok, After, Session};
use ami_proto::{Message, MessageBuilder};
use md5::{Digest, Md5};
use rand::Rng;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// One line of ListCommands: name, the whole `Synopsis  (Priv: …)` text, required classes.
struct ActionInfo {
    name: &'static str,
    text: &'static str,
    authority: u32,
}

/// The action table of the captured Asterisk (transcript 08), which also gives each
/// action's required write classes.
fn action_table() -> &'static [ActionInfo] {
    static TABLE: OnceLock<Vec<ActionInfo>> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("data/listcommands.txt")
            .lines()
            .filter_map(|line| {
                let (name, text) = line.split_once(": ")?;
                let privs = text.rsplit_once("(Priv: ")?.1.trim_end_matches(')');
                let authority = if privs == "<none>" {
                    0
                } else {
                    perms::event_classes(privs)
                };
                Some(ActionInfo { name, text, authority })
            })
            .collect()
    })
}

fn error(s: &mut Session, id: Option<&str>, msg: &str) -> After {
    s.push(MessageBuilder::error(id, msg).as_bytes());
    After::Continue
}

fn success(s: &mut Session, id: Option<&str>, msg: &str) -> After {
    s.push(MessageBuilder::success(id, msg).as_bytes());
    After::Continue
}

fn list_start(id: Option<&str>, msg: &str) -> MessageBuilder {
    MessageBuilder::response("Success", id)
        .header("EventList", "start")
        .header("Message", msg)
}

fn list_item(name: &str, id: Option<&str>) -> MessageBuilder {
    MessageBuilder::event(name).header_opt("ActionID", id)
}

/// How a generation frames a list answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Message: … will follow`, items, `…Complete` with only the ActionID (1.4, 1.8).
    Plain,
    /// `EventList: start` … `EventList: Complete` + `ListItems` (13, 22).
    Full,
}

fn list_start_in(f: Framing, id: Option<&str>, msg: &str) -> MessageBuilder {
    match f {
        Framing::Plain => MessageBuilder::response("Success", id).header("Message", msg),
        Framing::Full => list_start(id, msg),
    }
}

fn list_complete_in(f: Framing, name: &str, id: Option<&str>, items: usize) -> MessageBuilder {
    match f {
        Framing::Plain => MessageBuilder::event(name).header_opt("ActionID", id),
        Framing::Full => list_complete(name, id, items),
    }
}

fn list_complete(name: &str, id: Option<&str>, items: usize) -> MessageBuilder {
    MessageBuilder::event(name)
        .header_opt("ActionID", id)
        .header("EventList", "Complete")
        .header("ListItems", &items.to_string())
}

fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| {
        ["yes", "true", "y", "t", "1", "on"]
            .iter()
            .any(|x| v.trim().eq_ignore_ascii_case(x))
    })
}

fn non_empty<'a>(m: &'a Message, key: &str) -> Option<&'a str> {
    m.get(key).filter(|v| !v.is_empty())
}

/// Apps and data that run code on the PBX (CVE-2012-2414, CVE-2024-42365): Asterisk wants
/// `system` for them.
fn dangerous(app: &str, data: &str) -> bool {
    let app = app.to_ascii_lowercase();
    let data = data.to_ascii_uppercase();
    [
        "agi",
        "dbdeltree",
        "exec",
        "externalivr",
        "mixmonitor",
        "originate",
        "reload",
        "system",
    ]
    .iter()
    .any(|x| app.contains(x))
        || ["CURL", "DB", "EVAL", "FILE", "ODBC", "REALTIME", "SHELL"]
            .iter()
            .any(|x| data.contains(x))
}

impl Session {
    /// Answers one client message.
    pub(crate) fn dispatch(&mut self, m: &Message) -> After {
        let id = m.action_id();
        let Some(action) = m.action() else {
            return error(self, id, "Missing action in request");
        };
        let lower = action.to_ascii_lowercase();
        let dialect = self.pbx.dialect();
        if !self.authed() && !matches!(lower.as_str(), "login" | "challenge" | "logoff") {
            let msg = if dialect == Dialect::V1_4 {
                "Authentication Required"
            } else {
                "Permission denied"
            };
            return error(self, id, msg);
        }
        let Some(info) = action_table().iter().find(|a| a.name.eq_ignore_ascii_case(action)) else {
            if dialect == Dialect::V1_4 {
                return error(self, id, "Invalid/unknown command");
            }
            let msg =
                format!("Invalid/unknown command: {action}. Use Action: ListCommands to show available commands.");
            return error(self, id, &msg);
        };
        if self.authed() && info.authority != 0 && self.write & info.authority == 0 {
            return error(self, id, "Permission denied");
        }
        match lower.as_str() {
            "login" => self.login(m, id),
            "challenge" => self.challenge(m, id),
            "logoff" if dialect == Dialect::V1_4 && !self.authed() => {
                success(self, id, "See ya");
                After::Close
            }
            "logoff" => {
                let r = MessageBuilder::response("Goodbye", id)
                    .header("Message", "Thanks for all the fish.")
                    .build();
                self.push(r.as_bytes());
                After::Close
            }
            "ping" if dialect == Dialect::V1_4 => {
                self.push(MessageBuilder::response("Pong", id).build().as_bytes());
                After::Continue
            }
            "ping" => {
                let r = MessageBuilder::response("Success", id)
                    .header("Ping", "Pong")
                    .header("Timestamp", &crate::clock::timestamp(SystemTime::now()))
                    .build();
                self.push(r.as_bytes());
                After::Continue
            }
            "events" => {
                let mask = perms::parse_event_mask(m.get("EventMask").unwrap_or(""));
                self.send_events = mask;
                if dialect == Dialect::V1_4 {
                    let r = MessageBuilder::response(if mask != 0 { "Events On" } else { "Events Off" }, id);
                    self.push(r.build().as_bytes());
                    return After::Continue;
                }
                let r = MessageBuilder::response("Success", id)
                    .header("Events", if mask != 0 { "On" } else { "Off" })
                    .build();
                self.push(r.as_bytes());
                After::Continue
            }
            "filter" => self.filter(m, id),
            "listcommands" => {
                let mut b = MessageBuilder::response("Success", id);
                for a in action_table() {
                    if a.authority == 0 || self.write & a.authority != 0 {
                        b = b.header(a.name, a.text);
                    }
                }
                self.push(&b.into_bytes());
                After::Continue
            }
            "userevent" => self.user_event(m, id),
            "originate" => self.originate(m, id),
            "status" => self.status(m, id),
            "coreshowchannels" => self.core_show_channels(id),
            "hangup" => self.hangup(m, id),
            "redirect" => self.redirect(m, id),
            "getvar" => self.getvar(m, id),
            "mixmonitor" => self.mixmonitor(m, id),
            "setvar" => self.setvar(m, id),
            "queueadd" => self.queue_add(m, id),
            "queueremove" => self.queue_remove(m, id),
            "queuepause" => self.queue_pause(m, id),
            "queuestatus" => self.queue_status(m, id),
            "queuesummary" => self.queue_summary(m, id),
            "dbput" | "dbget" | "dbdel" | "dbdeltree" | "dbgettree" => self.astdb(&lower, m, id),
            "command" => self.command(m, id),
            "corestatus" => {
                let pbx = &self.pbx;
                let w = pbx.started_wall;
                let r = MessageBuilder::response("Success", id)
                    .header("CoreStartupDate", &crate::clock::date(w))
                    .header("CoreStartupTime", &crate::clock::time(w))
                    .header("CoreReloadDate", &crate::clock::date(w))
                    .header("CoreReloadTime", &crate::clock::time(w))
                    .header("CoreCurrentCalls", &lock(&pbx.channels).len().to_string())
                    .header(
                        "CoreProcessedCalls",
                        &pbx.processed_calls
                            .load(std::sync::atomic::Ordering::Relaxed)
                            .to_string(),
                    )
                    .build();
                self.push(r.as_bytes());
                After::Continue
            }
            "coresettings" => {
                let r = MessageBuilder::response("Success", id)
                    .header("AMIversion", &self.pbx.cfg.version)
                    .header("AsteriskVersion", dialect.asterisk_version())
                    .header("SystemName", self.pbx.cfg.system_name.as_deref().unwrap_or(""))
                    .header("CoreMaxCalls", "0")
                    .header("CoreMaxLoadAvg", "0.000000")
                    .header("CoreRunUser", "")
                    .header("CoreRunGroup", "")
                    .header("CoreMaxFilehandles", "0")
                    .header("CoreRealTimeEnabled", "No")
                    .header("CoreCDRenabled", "Yes")
                    .header("CoreHTTPenabled", "No")
                    .header("SoundsSearchCustomDir", "No")
                    .build();
                self.push(r.as_bytes());
                After::Continue
            }
            "waitevent" => {
                let secs = m
                    .get("Timeout")
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .unwrap_or(60)
                    .min(3600);
                After::WaitEvent {
                    timeout: Duration::from_secs(secs),
                    action_id: id.map(str::to_owned),
                }
            }
            "extensionstate" => {
                let r = MessageBuilder::response("Success", id)
                    .header("Message", "Extension Status")
                    .header("Exten", m.get("Exten").unwrap_or(""))
                    .header("Context", m.get("Context").unwrap_or(""))
                    .header("Hint", "")
                    .header("Status", "-1")
                    .header("StatusText", "Unknown")
                    .build();
                self.push(r.as_bytes());
                After::Continue
            }
            "showdialplan" => self.show_dialplan(m, id),
            "modulecheck" => {
                if non_empty(m, "Module").is_none() {
                    return error(self, id, "Module not specified");
                }
                let r = MessageBuilder::response("Success", id).header("Version", "").build();
                self.push(r.as_bytes());
                After::Continue
            }
            "getconfig" => self.get_config(m, id),
            "reload" => success(self, id, "Module Reloaded"),
            "loggerrotate" => success(self, id, "Reloaded the logger and rotated log files"),
            _ => error(self, id, &format!("Action {action} is not simulated by ami-sim")),
        }
    }

    fn login(&mut self, m: &Message, id: Option<&str>) -> After {
        if self.authed() {
            let msg = if self.pbx.dialect() == Dialect::V1_4 {
                "Already logged in"
            } else {
                "Already authenticated"
            };
            return success(self, id, msg);
        }
        let fail = || After::AuthFailed(MessageBuilder::error(id, "Authentication failed").bytes().clone());
        let username = m.get("Username").unwrap_or("");
        let Some(user) = self.pbx.cfg.users.iter().find(|u| u.username == username).cloned() else {
            return fail();
        };
        let ok = if m.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
            match (&self.challenge, m.get("Key")) {
                (Some(ch), Some(key)) => {
                    let digest = Md5::digest(format!("{ch}{}", user.secret).as_bytes());
                    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                    hex.eq_ignore_ascii_case(key.trim())
                }
                _ => false,
            }
        } else {
            m.get("Secret") == Some(user.secret.as_str())
        };
        if !ok {
            return fail();
        }
        login_ok(self, user, m.get("Events"), id);
        After::Continue
    }

    fn challenge(&mut self, m: &Message, id: Option<&str>) -> After {
        if !m.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
            return error(self, id, "Must specify AuthType");
        }
        let ch = self
            .challenge
            .get_or_insert_with(|| rand::thread_rng().gen_range(100_000_000u64..2_147_483_647).to_string())
            .clone();
        let r = MessageBuilder::response("Success", id).header("Challenge", &ch).build();
        self.push(r.as_bytes());
        After::Continue
    }

    fn filter(&mut self, m: &Message, id: Option<&str>) -> After {
        if !m.get("Operation").is_some_and(|o| o.eq_ignore_ascii_case("add")) {
            return error(self, id, "Unknown operation");
        }
        let f = m.get("Filter").unwrap_or("");
        match self.filters.add_legacy(f) {
            Ok(()) => success(self, id, "Success"),
            Err(_) => error(
                self,
                id,
                "Filter did not compile.  Check the syntax of the filter given.",
            ),
        }
    }

    fn user_event(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(name) = non_empty(m, "UserEvent") else {
            return error(self, id, "UserEvent header missing");
        };
        let mut ev = self.pbx.bus.event("UserEvent", "user,all").h("UserEvent", name);
        for (k, v) in m.headers() {
            if k.eq_ignore_ascii_case("Action") || k.eq_ignore_ascii_case("UserEvent") || k.is_empty() {
                continue;
            }
            ev = ev.h(k, v);
        }
        success(self, id, "Event Sent");
        self.pbx.effect(Effect::UserEvent { name: name.to_owned() });
        self.pbx.bus.send(ev);
        After::Continue
    }

    fn originate(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(channel) = non_empty(m, "Channel") else {
            return error(self, id, "Channel not specified");
        };
        let is_async = truthy(m.get("Async"));
        let target = match non_empty(m, "Application") {
            Some(app) => {
                let data = m.get("Data").unwrap_or("");
                if dangerous(app, data) && self.write & perms::SYSTEM == 0 {
                    return error(
                        self,
                        id,
                        "Originate with certain 'Application' arguments requires the additional System privilege, which you do not have.",
                    );
                }
                Target::App {
                    app: app.to_owned(),
                    data: data.to_owned(),
                }
            }
            None => {
                let priority = match m.get("Priority").map(str::trim).filter(|p| !p.is_empty()) {
                    None => 1,
                    Some(p) => match p.parse::<u32>() {
                        Ok(n) => n,
                        Err(_) => return error(self, id, "Invalid priority"),
                    },
                };
                Target::Dialplan {
                    context: m.get("Context").unwrap_or("default").to_owned(),
                    exten: m.get("Exten").unwrap_or("s").to_owned(),
                    priority,
                }
            }
        };
        let callerid = non_empty(m, "CallerID").map(calls::parse_callerid);
        // Every `Variable:` header, split as man_do_variable_value does.
        let vars = m
            .get_all("Variable")
            .flat_map(crate::dialplan_eval::originate_variables)
            .collect();
        let Some((exten, context)) = OriginateReq::parse_local(channel) else {
            // Only Local channels exist in the simulator.
            if !is_async {
                return error(self, id, "Originate failed");
            }
            success(self, id, "Originate successfully queued");
            let v14 = self.pbx.dialect() == Dialect::V1_4;
            let name = if v14 { "OriginateFailure" } else { "OriginateResponse" };
            let mut ev = self.pbx.bus.event(name, "call,all");
            if let Some(id) = id {
                ev = ev.h("ActionID", id);
            }
            if !v14 {
                ev = ev.h("Response", "Failure");
            }
            ev = ev.h("Channel", channel);
            ev = match &target {
                Target::App { app, data } => ev.h("Application", app).h("Data", data),
                Target::Dialplan { context, exten, .. } => ev.h("Context", context).h("Exten", exten),
            };
            self.pbx.bus.send(ev.h("Reason", "0").h("Uniqueid", "<unknown>"));
            return After::Continue;
        };
        let req = OriginateReq {
            exten,
            context,
            target,
            callerid,
            vars,
            is_async,
            inhibit_escalations: !is_async && !self.pbx.cfg.live_dangerously,
            action_id: id.map(str::to_owned),
        };
        if !is_async && !req.reachable() {
            error(self, id, "Originate failed");
        } else {
            success(self, id, "Originate successfully queued");
        }
        calls::originate(&self.pbx, req);
        After::Continue
    }

    fn status(&mut self, m: &Message, id: Option<&str>) -> After {
        let variables = m.get("Variables").unwrap_or("");
        if self.write & perms::SYSTEM == 0 && (variables.contains("SHELL") || variables.contains("EVAL")) {
            return error(self, id, "Status Access Forbidden: Variables");
        }
        let all_variables = truthy(m.get("AllVariables"));
        let mut chans = self.pbx.channel_list();
        if let Some(want) = non_empty(m, "Channel") {
            chans.retain(|c| c.name == want || c.uniqueid == want);
            if chans.is_empty() {
                return error(self, id, "No such channel");
            }
        }
        let dialect = self.pbx.dialect();
        if dialect.pre_stasis() {
            self.push(&list_start_in(Framing::Plain, id, "Channel status will follow").into_bytes());
            for c in &chans {
                let b = legacy_status(dialect, c, id);
                self.push(&b.into_bytes());
            }
            let mut done = list_complete_in(Framing::Plain, "StatusComplete", id, chans.len());
            if dialect == Dialect::V1_8 {
                done = done.header("Items", &chans.len().to_string());
            }
            self.push(&done.into_bytes());
            return After::Continue;
        }
        self.push(&list_start(id, "Channel status will follow").into_bytes());
        let wanted = ami_proto::app_args::separate_args(variables, ',', true, 100);
        for c in &chans {
            let vars = self.status_variables(c, &wanted, all_variables);
            let b = MessageBuilder::event("Status").header("Privilege", "Call");
            let b = snapshot(b, c)
                .header("Type", "Local")
                .header("DNID", "")
                .header("EffectiveConnectedLineNum", c.conn_num_str())
                .header("EffectiveConnectedLineName", c.conn_name_str())
                .header("TimeToHangup", "0")
                .header("BridgeID", "")
                .header("Application", &c.app)
                .header("Data", &c.data)
                .header("Nativeformats", "(slin)")
                .header("Readformat", "slin")
                .header("Readtrans", "")
                .header("Writeformat", "slin")
                .header("Writetrans", "")
                .header("Callgroup", "0")
                .header("Pickupgroup", "0")
                .header("Seconds", &c.seconds().to_string());
            let b = vars
                .iter()
                .fold(b, |b, v| b.header("Variable", v))
                .header_opt("ActionID", id);
            self.push(&b.into_bytes());
        }
        let done = list_complete("StatusComplete", id, chans.len()).header("Items", &chans.len().to_string());
        self.push(&done.into_bytes());
        After::Continue
    }

    /// Status `Variables:` (names ending in `)` are function reads on the channel) and
    /// `AllVariables:` as `generate_status` writes them: `name=value`, an unset variable
    /// printed as glibc prints a NULL string.
    fn status_variables(&self, c: &crate::channels::Channel, wanted: &[String], all: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut chan = c.clone();
        let mut ctx = Ctx::action(&self.pbx, Some(&mut chan));
        for name in wanted.iter().filter(|n| !n.is_empty()) {
            let v = if name.ends_with(')') {
                Some(ctx.func_read(name).unwrap_or_default())
            } else {
                ctx.retrieve(name)
            };
            out.push(format!("{name}={}", v.as_deref().unwrap_or("(null)")));
        }
        if all {
            out.extend(c.vars.iter().map(|(k, v)| format!("{k}={v}")));
        }
        out
    }

    fn core_show_channels(&mut self, id: Option<&str>) -> After {
        let chans = self.pbx.channel_list();
        let dialect = self.pbx.dialect();
        if dialect.pre_stasis() {
            let f = if dialect == Dialect::V1_4 {
                Framing::Plain
            } else {
                Framing::Full
            };
            self.push(&list_start_in(f, id, "Channels will follow").into_bytes());
            for c in &chans {
                let b = list_item("CoreShowChannel", id)
                    .header("Channel", &c.name)
                    .header("UniqueID", &c.uniqueid)
                    .header("Context", &c.context)
                    .header("Extension", &c.exten)
                    .header("Priority", &c.priority.to_string())
                    .header("ChannelState", &c.state.to_string())
                    .header("ChannelStateDesc", crate::channels::state_desc(c.state))
                    .header("Application", &c.app)
                    .header("ApplicationData", &c.data)
                    .header("CallerIDnum", c.cid_num.as_deref().unwrap_or(""))
                    .header("Duration", &c.duration_hms())
                    .header("AccountCode", "")
                    .header("BridgedChannel", c.peer_name())
                    .header("BridgedUniqueID", c.peer_uid());
                self.push(&b.into_bytes());
            }
            // 1.8 puts the ActionID after ListItems.
            let done = match f {
                Framing::Plain => list_complete_in(f, "CoreShowChannelsComplete", id, chans.len()),
                Framing::Full => MessageBuilder::event("CoreShowChannelsComplete")
                    .header("EventList", "Complete")
                    .header("ListItems", &chans.len().to_string())
                    .header_opt("ActionID", id),
            };
            self.push(&done.into_bytes());
            return After::Continue;
        }
        self.push(&list_start(id, "Channels will follow").into_bytes());
        for c in &chans {
            let b = snapshot(list_item("CoreShowChannel", id), c)
                .header("Application", &c.app)
                .header("ApplicationData", &c.data)
                .header("Duration", &c.duration_hms())
                .header("BridgeId", "");
            self.push(&b.into_bytes());
        }
        self.push(&list_complete("CoreShowChannelsComplete", id, chans.len()).into_bytes());
        After::Continue
    }

    fn hangup(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(target) = non_empty(m, "Channel") else {
            return error(self, id, "No channel specified");
        };
        let cause = m
            .get("Cause")
            .and_then(|c| c.trim().parse::<u32>().ok())
            .filter(|c| *c > 0)
            .unwrap_or(16);
        let chans = self.pbx.channel_list();
        if let Some(re) = target.strip_prefix('/').and_then(|t| t.strip_suffix('/')) {
            let Ok(re) = regex::Regex::new(re) else {
                return error(self, id, "Invalid regex");
            };
            self.push(&list_start(id, "Channels hung up will follow").into_bytes());
            let mut n = 0;
            for c in chans.iter().filter(|c| re.is_match(&c.name)) {
                self.pbx.effect(Effect::Hangup {
                    channel: c.name.clone(),
                });
                let _ = c.control.send(Control::Hangup { side: c.side, cause });
                let b = MessageBuilder::event("ChannelHungup")
                    .header("Channel", &c.name)
                    .header_opt("ActionID", id);
                self.push(&b.into_bytes());
                n += 1;
            }
            self.push(&list_complete("ChannelsHungupListComplete", id, n).into_bytes());
            return After::Continue;
        }
        match chans.iter().find(|c| c.name == target || c.uniqueid == target) {
            Some(c) => {
                self.pbx.effect(Effect::Hangup {
                    channel: c.name.clone(),
                });
                let _ = c.control.send(Control::Hangup { side: c.side, cause });
                success(self, id, "Channel Hungup")
            }
            None => error(self, id, "No such channel"),
        }
    }

    fn redirect(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(target) = non_empty(m, "Channel") else {
            return error(self, id, "Channel not specified");
        };
        let Some(exten) = non_empty(m, "Exten") else {
            return error(self, id, "Exten not specified");
        };
        let context = m.get("Context").unwrap_or("default");
        let priority = m
            .get("Priority")
            .and_then(|p| p.trim().parse::<u32>().ok())
            .unwrap_or(1);
        let chans = self.pbx.channel_list();
        let Some(c) = chans.iter().find(|c| c.name == target || c.uniqueid == target) else {
            return error(self, id, &format!("Channel does not exist: {target}"));
        };
        self.pbx.effect(Effect::Redirect {
            channel: c.name.clone(),
        });
        let _ = c.control.send(Control::Redirect {
            side: c.side,
            context: context.to_owned(),
            exten: exten.to_owned(),
            priority,
        });
        success(self, id, "Redirect successful")
    }

    /// Getvar (manager.c `action_getvar`): a name ending in `)` is a function read (on
    /// the channel, or on a dummy channel without one); otherwise a variable (the globals
    /// without a channel).
    fn getvar(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(var) = non_empty(m, "Variable") else {
            return error(self, id, "No variable specified");
        };
        if self.write & perms::SYSTEM == 0 && (var.contains("SHELL") || var.contains("EVAL")) {
            return error(self, id, "GetVar Access Forbidden: Variable");
        }
        let mut chan = match non_empty(m, "Channel") {
            Some(name) => match self.channel(name) {
                Some(c) => Some(c),
                None => return error(self, id, "No such channel"),
            },
            None => None,
        };
        let mut ctx = Ctx::action(&self.pbx, chan.as_mut());
        let value = if var.ends_with(')') {
            ctx.func_read(var)
        } else {
            ctx.retrieve(var)
        };
        let r = MessageBuilder::response("Success", id)
            .header("Variable", var)
            .header("Value", value.as_deref().unwrap_or(""))
            .build();
        self.push(r.as_bytes());
        After::Continue
    }

    /// Setvar (`action_setvar`): `pbx_builtin_setvar_helper` on the channel or globally.
    fn setvar(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(var) = non_empty(m, "Variable") else {
            return error(self, id, "No variable specified");
        };
        let value = m.get("Value").unwrap_or("");
        let mut chan = match non_empty(m, "Channel") {
            Some(name) => match self.channel(name) {
                Some(c) => Some(c),
                None => return error(self, id, "No such channel"),
            },
            None => None,
        };
        if Ctx::action(&self.pbx, chan.as_mut()).set_var(var, value) {
            success(self, id, "Variable Set")
        } else {
            error(self, id, "Variable not set")
        }
    }

    /// A live channel by exact name or uniqueid (a copy).
    fn channel(&self, name: &str) -> Option<crate::channels::Channel> {
        lock(&self.pbx.channels)
            .values()
            .find(|c| c.name == name || c.uniqueid == name)
            .cloned()
    }

    /// MixMonitor (app_mixmonitor `manager_mixmonitor`): `File,Options,Command` run as
    /// the application's arguments on the channel.
    fn mixmonitor(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(name) = non_empty(m, "Channel") else {
            return error(self, id, "No channel specified");
        };
        let Some(mut chan) = self.channel(name) else {
            return error(self, id, "No such channel");
        };
        let args = format!(
            "{},{},{}",
            m.get("File").unwrap_or(""),
            m.get("Options").unwrap_or(""),
            m.get("Command").unwrap_or("")
        );
        match Ctx::action(&self.pbx, Some(&mut chan)).mixmonitor(&args) {
            None => error(self, id, "Could not start monitoring channel"),
            Some(monitor_id) => {
                let r = MessageBuilder::response("Success", id).header_opt("MixMonitorID", monitor_id.as_deref());
                self.push(&r.into_bytes());
                After::Continue
            }
        }
    }

    fn member_event(&self, name: &str, queue: &str, mb: &crate::queues::Member) {
        crate::queues::member_event(&self.pbx.bus, name, queue, mb);
    }

    fn queue_add(&mut self, m: &Message, id: Option<&str>) -> After {
        let (Some(queue), Some(iface)) = (non_empty(m, "Queue"), non_empty(m, "Interface")) else {
            return error(self, id, "'Queue' and 'Interface' not specified.");
        };
        let penalty = m.get("Penalty").and_then(|p| p.trim().parse().ok()).unwrap_or(0);
        let paused = truthy(m.get("Paused"));
        let new = NewMember {
            interface: iface,
            name: m.get("MemberName"),
            state_interface: m.get("StateInterface"),
            penalty,
            paused,
            reason: m.get("Reason").unwrap_or(""),
        };
        let r = lock(&self.pbx.queues).add(queue, new);
        match r {
            Ok(mb) => {
                self.pbx.effect(Effect::QueueMemberWrite {
                    queue: queue.to_owned(),
                });
                success(self, id, "Added interface to queue");
                self.member_event("QueueMemberAdded", queue, &mb);
                After::Continue
            }
            Err(QueueError::AlreadyThere) => error(self, id, "Unable to add interface: Already there"),
            Err(_) => error(self, id, "Unable to add interface to queue: No such queue"),
        }
    }

    fn queue_remove(&mut self, m: &Message, id: Option<&str>) -> After {
        let (Some(queue), Some(iface)) = (non_empty(m, "Queue"), non_empty(m, "Interface")) else {
            return error(self, id, "Need 'Queue' and 'Interface' parameters.");
        };
        let r = lock(&self.pbx.queues).remove(queue, iface);
        match r {
            Ok(mb) => {
                self.pbx.effect(Effect::QueueMemberWrite {
                    queue: queue.to_owned(),
                });
                success(self, id, "Removed interface from queue");
                self.member_event("QueueMemberRemoved", queue, &mb);
                After::Continue
            }
            Err(QueueError::NotThere) => error(self, id, "Unable to remove interface: Not there"),
            Err(QueueError::NotDynamic) => error(self, id, "Member not dynamic"),
            Err(_) => error(self, id, "Unable to remove interface from queue: No such queue"),
        }
    }

    fn queue_pause(&mut self, m: &Message, id: Option<&str>) -> After {
        let (Some(iface), Some(paused)) = (non_empty(m, "Interface"), non_empty(m, "Paused")) else {
            return error(self, id, "Need 'Interface' and 'Paused' parameters.");
        };
        let paused = truthy(Some(paused));
        let changed = lock(&self.pbx.queues).pause(non_empty(m, "Queue"), iface, paused, m.get("Reason").unwrap_or(""));
        if changed.is_empty() {
            return error(self, id, "Interface not found");
        }
        success(
            self,
            id,
            if paused {
                "Interface paused successfully"
            } else {
                "Interface unpaused successfully"
            },
        );
        for (q, mb) in &changed {
            self.pbx.effect(Effect::QueueMemberWrite { queue: q.clone() });
            self.member_event("QueueMemberPause", q, mb);
        }
        After::Continue
    }

    fn queue_status(&mut self, m: &Message, id: Option<&str>) -> After {
        let want = non_empty(m, "Queue");
        let member = non_empty(m, "Member");
        let queues = lock(&self.pbx.queues).queues.clone();
        let chans = self.pbx.channel_list();
        let dialect = self.pbx.dialect();
        if dialect.pre_stasis() {
            self.push(&list_start_in(Framing::Plain, id, "Queue status will follow").into_bytes());
            for q in queues.iter().filter(|q| want.is_none_or(|w| w == q.name)) {
                for b in legacy_queue_status(dialect, q, member, &chans, id) {
                    self.push(&b.into_bytes());
                }
            }
            self.push(&list_complete_in(Framing::Plain, "QueueStatusComplete", id, 0).into_bytes());
            return After::Continue;
        }
        self.push(&list_start(id, "Queue status will follow").into_bytes());
        let mut n = 0;
        for q in queues.iter().filter(|q| want.is_none_or(|w| w == q.name)) {
            let perf = if q.completed > 0 { "100.0" } else { "0.0" };
            let b = MessageBuilder::event("QueueParams")
                .header("Queue", &q.name)
                .header("Max", "0")
                .header("Strategy", &q.strategy)
                .header("Calls", &q.callers.len().to_string())
                .header("Holdtime", "0")
                .header("TalkTime", "0")
                .header("Completed", &q.completed.to_string())
                .header("Abandoned", &q.abandoned.to_string())
                .header("ServiceLevel", "0")
                .header("ServicelevelPerf", perf)
                .header("ServicelevelPerf2", perf)
                .header("Weight", "0")
                .header_opt("ActionID", id);
            self.push(&b.into_bytes());
            n += 1;
            for mb in q
                .members
                .iter()
                .filter(|mb| member.is_none_or(|w| w == mb.interface || w == mb.name))
            {
                let b = MessageBuilder::event("QueueMember")
                    .header("Queue", &q.name)
                    .header("Name", &mb.name)
                    .header("Location", &mb.interface)
                    .header("StateInterface", &mb.state_interface)
                    .header("Membership", if mb.dynamic { "dynamic" } else { "static" })
                    .header("Penalty", &mb.penalty.to_string())
                    .header("CallsTaken", &mb.calls_taken.to_string())
                    .header("LastCall", &mb.last_call.to_string())
                    .header("LastPause", &mb.last_pause.to_string())
                    .header("LoginTime", &mb.login_time.to_string())
                    .header("InCall", if mb.in_call { "1" } else { "0" })
                    .header("Status", &mb.status.to_string())
                    .header("Paused", if mb.paused { "1" } else { "0" })
                    .header("PausedReason", &mb.paused_reason)
                    .header("Wrapuptime", "0")
                    .header_opt("ActionID", id);
                self.push(&b.into_bytes());
                n += 1;
            }
            for (pos, caller) in q.callers.iter().enumerate() {
                let Some(c) = chans.iter().find(|c| &c.name == caller) else {
                    continue;
                };
                let b = MessageBuilder::event("QueueEntry")
                    .header("Queue", &q.name)
                    .header("Position", &(pos + 1).to_string())
                    .header("Channel", &c.name)
                    .header("Uniqueid", &c.uniqueid)
                    .header("CallerIDNum", c.cid_num_str())
                    .header("CallerIDName", c.cid_name_str())
                    .header("ConnectedLineNum", c.conn_num_str())
                    .header("ConnectedLineName", c.conn_name_str())
                    .header("Wait", &c.seconds().to_string())
                    .header("Priority", "0")
                    .header_opt("ActionID", id);
                self.push(&b.into_bytes());
                n += 1;
            }
        }
        self.push(&list_complete("QueueStatusComplete", id, n).into_bytes());
        After::Continue
    }

    fn queue_summary(&mut self, m: &Message, id: Option<&str>) -> After {
        let want = non_empty(m, "Queue");
        let queues = lock(&self.pbx.queues).queues.clone();
        self.push(&list_start(id, "Queue summary will follow").into_bytes());
        let mut n = 0;
        for q in queues.iter().filter(|q| want.is_none_or(|w| w == q.name)) {
            let available = q
                .members
                .iter()
                .filter(|mb| !mb.paused && !mb.in_call && mb.status == 1)
                .count();
            let b = MessageBuilder::event("QueueSummary")
                .header("Queue", &q.name)
                .header("LoggedIn", &q.members.len().to_string())
                .header("Available", &available.to_string())
                .header("Callers", &q.callers.len().to_string())
                .header("HoldTime", "0")
                .header("TalkTime", "0")
                .header("LongestHoldTime", "0")
                .header_opt("ActionID", id);
            self.push(&b.into_bytes());
            n += 1;
        }
        self.push(&list_complete("QueueSummaryComplete", id, n).into_bytes());
        After::Continue
    }

    fn astdb(&mut self, action: &str, m: &Message, id: Option<&str>) -> After {
        let family = non_empty(m, "Family");
        let key = non_empty(m, "Key");
        let path = |f: &str, k: Option<&str>| match k {
            Some(k) => format!("{f}/{k}"),
            None => f.to_owned(),
        };
        if action == "dbgettree" {
            self.pbx
                .effect(Effect::DbRead(family.map(|f| path(f, key)).unwrap_or_default()));
            let entries = lock(&self.pbx.astdb).tree(family, key);
            self.push(&list_start(id, "Result will follow").into_bytes());
            for (k, v) in &entries {
                let b = MessageBuilder::event("DBGetTreeResponse")
                    .header("Key", k)
                    .header("Val", v)
                    .header_opt("ActionID", id);
                self.push(&b.into_bytes());
            }
            self.push(&list_complete("DBGetTreeComplete", id, entries.len()).into_bytes());
            return After::Continue;
        }
        let Some(family) = family else {
            return error(self, id, "No family specified.");
        };
        if action == "dbdeltree" {
            self.pbx.effect(Effect::DbDelete(path(family, key)));
            let n = lock(&self.pbx.astdb).del_tree(family, key);
            return if n > 0 {
                success(self, id, "Key tree deleted successfully")
            } else {
                error(self, id, "Database entry not found")
            };
        }
        let Some(key) = key else {
            return error(self, id, "No key specified");
        };
        match action {
            "dbput" => {
                self.pbx.effect(Effect::DbWrite(path(family, Some(key))));
                lock(&self.pbx.astdb).put(family, key, m.get("Val").unwrap_or(""));
                success(self, id, "Updated database successfully")
            }
            "dbget" => {
                self.pbx.effect(Effect::DbRead(path(family, Some(key))));
                let v = lock(&self.pbx.astdb).get(family, key).map(str::to_owned);
                match v {
                    None => error(self, id, "Database entry not found"),
                    Some(v) if self.pbx.dialect().pre_stasis() => {
                        // No DBGetComplete before Asterisk 11.
                        success(self, id, "Result will follow");
                        let b = MessageBuilder::event("DBGetResponse")
                            .header("Family", family)
                            .header("Key", key)
                            .header("Val", &v)
                            .header_opt("ActionID", id);
                        self.push(&b.into_bytes());
                        After::Continue
                    }
                    Some(v) => {
                        self.push(&list_start(id, "Result will follow").into_bytes());
                        let b = MessageBuilder::event("DBGetResponse")
                            .header("Family", family)
                            .header("Key", key)
                            .header("Val", &v)
                            .header_opt("ActionID", id);
                        self.push(&b.into_bytes());
                        self.push(&list_complete("DBGetComplete", id, 1).into_bytes());
                        After::Continue
                    }
                }
            }
            _ => {
                self.pbx.effect(Effect::DbDelete(path(family, Some(key))));
                if lock(&self.pbx.astdb).del(family, key) {
                    success(self, id, "Key deleted successfully")
                } else {
                    error(self, id, "Database entry could not be deleted")
                }
            }
        }
    }

    fn command(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(cmd) = non_empty(m, "Command") else {
            return error(self, id, "No command provided");
        };
        let (ok, lines) = crate::commands::run(&self.pbx, cmd);
        if self.pbx.cfg.legacy_command_output() {
            let head = MessageBuilder::response("Follows", None)
                .header("Privilege", "Command")
                .header_opt("ActionID", id)
                .into_bytes();
            // into_bytes ends with the blank line; the legacy body replaces it.
            self.push(&head[..head.len() - 2]);
            for l in &lines {
                self.push(l.as_bytes());
                self.push(b"\n");
            }
            self.push(b"--END COMMAND--\r\n\r\n");
            return After::Continue;
        }
        let mut b = MessageBuilder::response(if ok { "Success" } else { "Error" }, id)
            .header("Message", "Command output follows");
        for l in &lines {
            b = b.header("Output", l);
        }
        self.push(&b.into_bytes());
        After::Continue
    }

    fn show_dialplan(&mut self, m: &Message, id: Option<&str>) -> After {
        let want = non_empty(m, "Context");
        let rows = crate::dialplan::listing(want);
        if rows.is_empty() {
            let msg = format!("Did not find context {}", want.unwrap_or(""));
            return error(self, id, &msg);
        }
        self.push(&list_start(id, "DialPlan list will follow").into_bytes());
        let mut extens = std::collections::BTreeSet::new();
        let mut contexts = std::collections::BTreeSet::new();
        for (c, e, p, app, data) in &rows {
            extens.insert((*c, *e));
            contexts.insert(*c);
            let b = list_item("ListDialplan", id)
                .header("Context", c)
                .header("Extension", e)
                .header("Priority", &p.to_string())
                .header("Application", app)
                .header("AppData", data)
                .header("Registrar", "pbx_config");
            self.push(&b.into_bytes());
        }
        let done = list_complete("ShowDialPlanComplete", id, rows.len())
            .header("ListExtensions", &extens.len().to_string())
            .header("ListPriorities", &rows.len().to_string())
            .header("ListContexts", &contexts.len().to_string());
        self.push(&done.into_bytes());
        After::Continue
    }

    fn get_config(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(file) = non_empty(m, "Filename") else {
            return error(self, id, "Filename not specified");
        };
        let text = match file {
            "queues.conf" => include_str!("../../../fixtures/asterisk-config/queues.conf"),
            "extensions.conf" => include_str!("../../../fixtures/asterisk-config/extensions.conf"),
            _ => return error(self, id, "Config file not found"),
        };
        let want = non_empty(m, "Category");
        let mut b = MessageBuilder::response("Success", id);
        let mut cat: Option<usize> = None;
        let mut line = 0;
        let mut skip = true;
        let mut ncat = 0;
        for raw in text.lines() {
            let l = raw.split(';').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            if let Some(name) = l.strip_prefix('[').and_then(|x| x.split(']').next()) {
                skip = want.is_some_and(|w| w != name);
                if !skip {
                    b = b.header(&format!("Category-{ncat:06}"), name);
                    cat = Some(ncat);
                    ncat += 1;
                    line = 0;
                }
                continue;
            }
            let (Some(c), false) = (cat, skip) else { continue };
            let (k, v) = match l.split_once("=>").or_else(|| l.split_once('=')) {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (l, ""),
            };
            b = b.header(&format!("Line-{c:06}-{line:06}"), &format!("{k}={v}"));
            line += 1;
        }
        self.push(&b.into_bytes());
        After::Continue
    }
}

/// A Status item as 1.4 and 1.8 wrote it (main/manager.c `action_status`).
fn legacy_status(dialect: Dialect, c: &crate::channels::Channel, id: Option<&str>) -> MessageBuilder {
    let b = MessageBuilder::event("Status")
        .header("Privilege", "Call")
        .header("Channel", &c.name);
    let cid_num = c.cid_num.as_deref().unwrap_or("");
    let cid_name = c.cid_name.as_deref().unwrap_or("");
    let b = if dialect == Dialect::V1_4 {
        let b = b
            .header("CallerID", cid_num)
            .header("CallerIDNum", cid_num)
            .header("CallerIDName", cid_name)
            .header("Account", "")
            .header("State", crate::channels::state_desc(c.state))
            .header("Context", &c.context)
            .header("Extension", &c.exten)
            .header("Priority", &c.priority.to_string())
            .header("Seconds", &c.seconds().to_string());
        match &c.peer {
            Some((name, _)) => b.header("Link", name),
            None => b,
        }
    } else {
        let b = b
            .header("CallerIDNum", cid_num)
            .header("CallerIDName", cid_name)
            .header("ConnectedLineNum", c.conn_num.as_deref().unwrap_or(""))
            .header("ConnectedLineName", c.conn_name.as_deref().unwrap_or(""))
            .header("Accountcode", "")
            .header("ChannelState", &c.state.to_string())
            .header("ChannelStateDesc", crate::channels::state_desc(c.state))
            .header("Context", &c.context)
            .header("Extension", &c.exten)
            .header("Priority", &c.priority.to_string())
            .header("Seconds", &c.seconds().to_string());
        match &c.peer {
            Some((name, uid)) => b.header("BridgedChannel", name).header("BridgedUniqueid", uid),
            None => b,
        }
    };
    b.header("Uniqueid", &c.uniqueid).header_opt("ActionID", id)
}

/// One queue's QueueParams, QueueMember and QueueEntry items as app_queue 1.4 / 1.8 wrote them.
fn legacy_queue_status(
    dialect: Dialect,
    q: &crate::queues::Queue,
    member: Option<&str>,
    chans: &[crate::channels::Channel],
    id: Option<&str>,
) -> Vec<MessageBuilder> {
    let v18 = dialect == Dialect::V1_8;
    let perf = if q.completed > 0 { "100.0" } else { "0.0" };
    let mut out = Vec::new();
    let mut b = MessageBuilder::event("QueueParams")
        .header("Queue", &q.name)
        .header("Max", "0");
    if v18 {
        b = b.header("Strategy", &q.strategy);
    }
    b = b.header("Calls", &q.callers.len().to_string()).header("Holdtime", "0");
    if v18 {
        b = b.header("TalkTime", "0");
    }
    b = b
        .header("Completed", &q.completed.to_string())
        .header("Abandoned", &q.abandoned.to_string())
        .header("ServiceLevel", "0")
        .header("ServicelevelPerf", perf)
        .header("Weight", "0")
        .header_opt("ActionID", id);
    out.push(b);
    for mb in q
        .members
        .iter()
        .filter(|mb| member.is_none_or(|w| w == mb.interface || w == mb.name))
    {
        out.push(
            MessageBuilder::event("QueueMember")
                .header("Queue", &q.name)
                .header("Name", &mb.name)
                .header("Location", &mb.interface)
                .header("Membership", if mb.dynamic { "dynamic" } else { "static" })
                .header("Penalty", &mb.penalty.to_string())
                .header("CallsTaken", &mb.calls_taken.to_string())
                .header("LastCall", &mb.last_call.to_string())
                .header("Status", &mb.status.to_string())
                .header("Paused", if mb.paused { "1" } else { "0" })
                .header_opt("ActionID", id),
        );
    }
    for (pos, caller) in q.callers.iter().enumerate() {
        let Some(c) = chans.iter().find(|c| &c.name == caller) else {
            continue;
        };
        let b = MessageBuilder::event("QueueEntry")
            .header("Queue", &q.name)
            .header("Position", &(pos + 1).to_string())
            .header("Channel", &c.name);
        let b = if v18 {
            b.header("Uniqueid", &c.uniqueid)
                .header("CallerIDNum", c.cid_num_str())
                .header("CallerIDName", c.cid_name_str())
                .header("ConnectedLineNum", c.conn_num_str())
                .header("ConnectedLineName", c.conn_name_str())
        } else {
            b.header("CallerID", c.cid_num_str())
                .header("CallerIDName", c.cid_name_str())
        };
        out.push(b.header("Wait", &c.seconds().to_string()).header_opt("ActionID", id));
    }
    out
}

/// The channel snapshot for list items (no prefix).
fn snapshot(b: MessageBuilder, c: &crate::channels::Channel) -> MessageBuilder {
    b.header("Channel", &c.name)
        .header("ChannelState", &c.state.to_string())
        .header("ChannelStateDesc", crate::channels::state_desc(c.state))
        .header("CallerIDNum", c.cid_num_str())
        .header("CallerIDName", c.cid_name_str())
        .header("ConnectedLineNum", c.conn_num_str())
        .header("ConnectedLineName", c.conn_name_str())
        .header("Language", "en")
        .header("AccountCode", "")
        .header("Context", &c.context)
        .header("Exten", &c.exten)
        .header("Priority", &c.priority.to_string())
        .header("Uniqueid", &c.uniqueid)
        .header("Linkedid", &c.linkedid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_what_we_answer() {
        for a in [
            "Login",
            "Logoff",
            "Challenge",
            "Ping",
            "Events",
            "Filter",
            "ListCommands",
            "UserEvent",
            "Originate",
            "Status",
            "CoreShowChannels",
            "Hangup",
            "Redirect",
            "Getvar",
            "Setvar",
            "QueueAdd",
            "QueueRemove",
            "QueuePause",
            "QueueStatus",
            "QueueSummary",
            "DBPut",
            "DBGet",
            "DBDel",
            "DBDelTree",
            "DBGetTree",
            "Command",
            "CoreStatus",
            "CoreSettings",
            "WaitEvent",
            "ExtensionState",
            "ShowDialPlan",
            "ModuleCheck",
            "GetConfig",
            "Reload",
            "LoggerRotate",
        ] {
            assert!(action_table().iter().any(|x| x.name == a), "{a}");
        }
        let o = action_table().iter().find(|x| x.name == "Originate").unwrap();
        assert_eq!(o.authority, 1 << 12);
    }
}
