//! Actions about the PBX as a whole: Command, ShowDialPlan, GetConfig, CoreStatus,
//! CoreSettings, WaitEvent, ExtensionState, ModuleCheck.

use super::{error, list_complete, list_item, list_start, non_empty};
use crate::pbx::lock;
use crate::session::{After, Session};
use ami_proto::{Message, MessageBuilder};
use std::time::Duration;

impl Session {
    pub(super) fn command(&mut self, m: &Message, id: Option<&str>) -> After {
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

    pub(super) fn show_dialplan(&mut self, m: &Message, id: Option<&str>) -> After {
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

    pub(super) fn get_config(&mut self, m: &Message, id: Option<&str>) -> After {
        let Some(file) = non_empty(m, "Filename") else {
            return error(self, id, "Filename not specified");
        };
        let text = match file {
            "queues.conf" => include_str!("../../../../fixtures/asterisk-config/queues.conf"),
            "extensions.conf" => include_str!("../../../../fixtures/asterisk-config/extensions.conf"),
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

    pub(super) fn core_status(&mut self, id: Option<&str>) -> After {
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

    pub(super) fn core_settings(&mut self, id: Option<&str>) -> After {
        let r = MessageBuilder::response("Success", id)
            .header("AMIversion", &self.pbx.cfg.version)
            .header("AsteriskVersion", self.pbx.dialect().asterisk_version())
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

    /// WaitEvent: the session waits (at most an hour) for an event to hand over.
    pub(super) fn wait_event(&mut self, m: &Message, id: Option<&str>) -> After {
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

    /// ExtensionState: the sim has no hints, so every extension is unknown.
    pub(super) fn extension_state(&mut self, m: &Message, id: Option<&str>) -> After {
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

    pub(super) fn module_check(&mut self, m: &Message, id: Option<&str>) -> After {
        if non_empty(m, "Module").is_none() {
            return error(self, id, "Module not specified");
        }
        let r = MessageBuilder::response("Success", id).header("Version", "").build();
        self.push(r.as_bytes());
        After::Continue
    }
}
