//! Originate: the checks and answers of `action_originate`, then the call itself
//! ([`crate::calls`]). Asterisk wants `system` for applications and data that run code on
//! the PBX, which the proxy's policy must also catch.

use super::{error, non_empty, success, truthy};
use crate::calls::{self, OriginateReq, Target};
use crate::dialect::Dialect;
use crate::perms;
use crate::session::{After, Session};
use ami_proto::Message;

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
    pub(super) fn originate(&mut self, m: &Message, id: Option<&str>) -> After {
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
}
