//! The manager's own actions, about the session rather than the PBX: Login, Challenge,
//! Logoff, Ping, Events, Filter, ListCommands, UserEvent.

use super::{action_table, error, non_empty, success};
use crate::dialect::Dialect;
use crate::effects::Effect;
use crate::perms;
use crate::session::{login_ok, After, Session};
use ami_proto::{Message, MessageBuilder};
use md5::{Digest, Md5};
use rand::Rng;
use std::time::SystemTime;

impl Session {
    pub(super) fn login(&mut self, m: &Message, id: Option<&str>) -> After {
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

    pub(super) fn challenge(&mut self, m: &Message, id: Option<&str>) -> After {
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

    pub(super) fn filter(&mut self, m: &Message, id: Option<&str>) -> After {
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

    pub(super) fn user_event(&mut self, m: &Message, id: Option<&str>) -> After {
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

    pub(super) fn logoff(&mut self, id: Option<&str>) -> After {
        if self.pbx.dialect() == Dialect::V1_4 && !self.authed() {
            success(self, id, "See ya");
            return After::Close;
        }
        let r = MessageBuilder::response("Goodbye", id)
            .header("Message", "Thanks for all the fish.")
            .build();
        self.push(r.as_bytes());
        After::Close
    }

    pub(super) fn ping(&mut self, id: Option<&str>) -> After {
        if self.pbx.dialect() == Dialect::V1_4 {
            self.push(MessageBuilder::response("Pong", id).build().as_bytes());
            return After::Continue;
        }
        let r = MessageBuilder::response("Success", id)
            .header("Ping", "Pong")
            .header("Timestamp", &crate::clock::timestamp(SystemTime::now()))
            .build();
        self.push(r.as_bytes());
        After::Continue
    }

    pub(super) fn events(&mut self, m: &Message, id: Option<&str>) -> After {
        let mask = perms::parse_event_mask(m.get("EventMask").unwrap_or(""));
        self.send_events = mask;
        if self.pbx.dialect() == Dialect::V1_4 {
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

    /// The actions this user's write classes allow, with their synopses.
    pub(super) fn list_commands(&mut self, id: Option<&str>) -> After {
        let mut b = MessageBuilder::response("Success", id);
        for a in action_table() {
            if a.authority == 0 || self.write & a.authority != 0 {
                b = b.header(a.name, a.text);
            }
        }
        self.push(&b.into_bytes());
        After::Continue
    }
}
