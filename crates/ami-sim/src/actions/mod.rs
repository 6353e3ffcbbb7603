//! The actions the simulator answers, with Asterisk 22's exact texts (transcripts 01–17).
//!
//! This module checks and dispatches; the answers live by what they act on: the session
//! (manager), channels, Originate, queues, AstDB, the PBX as a whole (core).

mod astdb;
mod channels;
mod core;
mod manager;
mod originate;
mod queues;

use crate::dialect::Dialect;
use crate::perms;
use crate::session::{After, Session};
use ami_proto::{Message, MessageBuilder};
use std::sync::OnceLock;

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
        include_str!("../data/listcommands.txt")
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
        let unknown_to_1_4 = dialect == Dialect::V1_4 && self.pbx.cfg.strict_1_4 && lower == "coreshowchannels";
        let known = action_table().iter().find(|a| a.name.eq_ignore_ascii_case(action));
        let Some(info) = known.filter(|_| !unknown_to_1_4) else {
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
            "logoff" => self.logoff(id),
            "ping" => self.ping(id),
            "events" => self.events(m, id),
            "filter" => self.filter(m, id),
            "listcommands" => self.list_commands(id),
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
            "corestatus" => self.core_status(id),
            "coresettings" => self.core_settings(id),
            "waitevent" => self.wait_event(m, id),
            "extensionstate" => self.extension_state(m, id),
            "showdialplan" => self.show_dialplan(m, id),
            "modulecheck" => self.module_check(m, id),
            "getconfig" => self.get_config(m, id),
            "reload" => success(self, id, "Module Reloaded"),
            "loggerrotate" => success(self, id, "Reloaded the logger and rotated log files"),
            _ => error(self, id, &format!("Action {action} is not simulated by ami-sim")),
        }
    }
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
