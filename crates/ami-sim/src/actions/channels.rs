//! Actions on live channels: Status, CoreShowChannels, Hangup, Redirect, Getvar, Setvar,
//! MixMonitor, with the item layouts each Asterisk generation wrote.

use super::{
    error, list_complete, list_complete_in, list_item, list_start, list_start_in, non_empty, success, truthy, Framing,
};
use crate::channels::Control;
use crate::dialect::Dialect;
use crate::dialplan_eval::Ctx;
use crate::effects::Effect;
use crate::pbx::lock;
use crate::perms;
use crate::session::{After, Session};
use ami_proto::{Message, MessageBuilder};

impl Session {
    pub(super) fn status(&mut self, m: &Message, id: Option<&str>) -> After {
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

    pub(super) fn core_show_channels(&mut self, id: Option<&str>) -> After {
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

    pub(super) fn hangup(&mut self, m: &Message, id: Option<&str>) -> After {
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

    pub(super) fn redirect(&mut self, m: &Message, id: Option<&str>) -> After {
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
    pub(super) fn getvar(&mut self, m: &Message, id: Option<&str>) -> After {
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
    pub(super) fn setvar(&mut self, m: &Message, id: Option<&str>) -> After {
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
    pub(super) fn mixmonitor(&mut self, m: &Message, id: Option<&str>) -> After {
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
