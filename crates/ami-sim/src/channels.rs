//! Channels as AMI shows them: the snapshot headers every channel event carries.

use crate::dialect::Dialect;
use crate::events::{Bus, Ev};
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// Which half of a Local channel pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    One,
    Two,
}

/// Requests from actions to the task that runs a call.
#[derive(Debug)]
pub enum Control {
    Hangup {
        side: Side,
        cause: u32,
    },
    Redirect {
        side: Side,
        context: String,
        exten: String,
        priority: u32,
    },
    /// The channel was renamed (the shared table already has the new name).
    Rename {
        side: Side,
        new: String,
    },
    /// A variable was set from outside the call (Setvar, a function of another channel):
    /// the table and the VarSet event are done; the call's own copy follows.
    SetVar {
        side: Side,
        name: String,
        value: String,
    },
}

/// One live channel.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub side: Side,
    pub state: u8,
    pub cid_num: Option<String>,
    pub cid_name: Option<String>,
    pub conn_num: Option<String>,
    pub conn_name: Option<String>,
    pub context: String,
    pub exten: String,
    pub priority: u32,
    pub uniqueid: String,
    pub linkedid: String,
    pub app: String,
    pub data: String,
    pub created: Instant,
    pub created_wall: SystemTime,
    pub answered_wall: Option<SystemTime>,
    /// Creation order, for newest-first listings.
    pub seq: u64,
    pub vars: BTreeMap<String, String>,
    /// The channel it is joined with (name, uniqueid), in the dialects that join the two
    /// halves of a Local call (1.4, 1.8, 13).
    pub peer: Option<(String, String)>,
    pub control: mpsc::UnboundedSender<Control>,
}

pub fn state_desc(state: u8) -> &'static str {
    match state {
        0 => "Down",
        1 => "Rsrvd",
        2 => "OffHook",
        3 => "Dialing",
        4 => "Ring",
        5 => "Ringing",
        6 => "Up",
        7 => "Busy",
        _ => "Unknown",
    }
}

fn or_unknown(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("<unknown>")
}

impl Channel {
    pub fn cid_num_str(&self) -> &str {
        or_unknown(&self.cid_num)
    }
    pub fn cid_name_str(&self) -> &str {
        or_unknown(&self.cid_name)
    }
    pub fn conn_num_str(&self) -> &str {
        or_unknown(&self.conn_num)
    }
    pub fn conn_name_str(&self) -> &str {
        or_unknown(&self.conn_name)
    }

    /// Appends the standard channel snapshot (`Channel` … `Linkedid`), with a key prefix
    /// (`Dest`, `LocalOne`, …) as Asterisk's multi-channel events do.
    pub fn snapshot(&self, ev: Ev, prefix: &str) -> Ev {
        let k = |s: &str| format!("{prefix}{s}");
        ev.h(&k("Channel"), &self.name)
            .h(&k("ChannelState"), &self.state.to_string())
            .h(&k("ChannelStateDesc"), state_desc(self.state))
            .h(&k("CallerIDNum"), self.cid_num_str())
            .h(&k("CallerIDName"), self.cid_name_str())
            .h(&k("ConnectedLineNum"), self.conn_num_str())
            .h(&k("ConnectedLineName"), self.conn_name_str())
            .h(&k("Language"), "en")
            .h(&k("AccountCode"), "")
            .h(&k("Context"), &self.context)
            .h(&k("Exten"), &self.exten)
            .h(&k("Priority"), &self.priority.to_string())
            .h(&k("Uniqueid"), &self.uniqueid)
            .h(&k("Linkedid"), &self.linkedid)
    }

    pub fn peer_name(&self) -> &str {
        self.peer.as_ref().map(|p| p.0.as_str()).unwrap_or("")
    }

    pub fn peer_uid(&self) -> &str {
        self.peer.as_ref().map(|p| p.1.as_str()).unwrap_or("")
    }

    /// Whole seconds alive.
    pub fn seconds(&self) -> u64 {
        self.created.elapsed().as_secs()
    }

    /// `HH:MM:SS` alive, as CoreShowChannel's Duration.
    pub fn duration_hms(&self) -> String {
        let s = self.seconds();
        format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    }
}

/// A channel event as Asterisk 1.4 or 1.8 wrote it (before Stasis channel snapshots):
/// `extra` holds the event's own fields by name (`Cause`, `Extension`, …). None when the
/// generation had no such event (DialBegin, DeviceStateChange, HangupRequest, …).
pub fn legacy_event(bus: &Bus, dialect: Dialect, name: &str, ch: &Channel, extra: &[(&str, &str)]) -> Option<Ev> {
    let v14 = dialect == Dialect::V1_4;
    let x = |k: &str| {
        extra
            .iter()
            .find(|(ek, _)| ek.eq_ignore_ascii_case(k))
            .map(|(_, v)| *v)
            .unwrap_or("")
    };
    let num = ch.cid_num.as_deref().unwrap_or("");
    let cname = ch.cid_name.as_deref().unwrap_or("");
    let conn_num = ch.conn_num.as_deref().unwrap_or("");
    let conn_name = ch.conn_name.as_deref().unwrap_or("");
    let desc = state_desc(ch.state);
    let state = ch.state.to_string();
    let prio = ch.priority.to_string();
    // The `dialplan` class came with 1.6; 1.4 sent these as `call`.
    let dialplan = if v14 { "call,all" } else { "dialplan,all" };
    let ev = match name {
        "Newchannel" => {
            let e = bus.event(name, "call,all").h("Channel", &ch.name);
            let e = if v14 {
                e.h("State", desc).h("CallerIDNum", num).h("CallerIDName", cname)
            } else {
                e.h("ChannelState", &state)
                    .h("ChannelStateDesc", desc)
                    .h("CallerIDNum", num)
                    .h("CallerIDName", cname)
                    .h("AccountCode", "")
                    .h("Exten", &ch.exten)
                    .h("Context", &ch.context)
            };
            e.h("Uniqueid", &ch.uniqueid)
        }
        "Newstate" => {
            let e = bus.event(name, "call,all").h("Channel", &ch.name);
            let e = if v14 {
                e.h("State", desc).h("CallerID", num).h("CallerIDName", cname)
            } else {
                e.h("ChannelState", &state)
                    .h("ChannelStateDesc", desc)
                    .h("CallerIDNum", num)
                    .h("CallerIDName", cname)
                    .h("ConnectedLineNum", conn_num)
                    .h("ConnectedLineName", conn_name)
            };
            e.h("Uniqueid", &ch.uniqueid)
        }
        "Newexten" => bus
            .event(name, dialplan)
            .h("Channel", &ch.name)
            .h("Context", &ch.context)
            .h("Extension", x("Extension"))
            .h("Priority", &prio)
            .h("Application", x("Application"))
            .h("AppData", x("AppData"))
            .h("Uniqueid", &ch.uniqueid),
        "VarSet" => bus
            .event(name, dialplan)
            .h("Channel", &ch.name)
            .h("Variable", x("Variable"))
            .h("Value", x("Value"))
            .h("Uniqueid", &ch.uniqueid),
        "NewCallerid" => {
            let e = if v14 {
                bus.event("Newcallerid", "call,all")
                    .h("Channel", &ch.name)
                    .h("CallerID", num)
            } else {
                bus.event(name, "call,all").h("Channel", &ch.name).h("CallerIDNum", num)
            };
            e.h("CallerIDName", cname)
                .h("Uniqueid", &ch.uniqueid)
                .h("CID-CallingPres", x("CID-CallingPres"))
        }
        "Hangup" => {
            let e = bus
                .event(name, "call,all")
                .h("Channel", &ch.name)
                .h("Uniqueid", &ch.uniqueid);
            let e = if v14 {
                e
            } else {
                e.h("CallerIDNum", num)
                    .h("CallerIDName", cname)
                    .h("ConnectedLineNum", conn_num)
                    .h("ConnectedLineName", conn_name)
            };
            e.h("Cause", x("Cause")).h("Cause-txt", x("Cause-txt"))
        }
        "QueueCallerJoin" => {
            let e = bus.event("Join", "call,all").h("Channel", &ch.name);
            let e = if v14 {
                e.h("CallerID", num).h("CallerIDName", cname)
            } else {
                e.h("CallerIDNum", num)
                    .h("CallerIDName", cname)
                    .h("ConnectedLineNum", conn_num)
                    .h("ConnectedLineName", conn_name)
            };
            e.h("Queue", x("Queue"))
                .h("Position", x("Position"))
                .h("Count", x("Count"))
                .h("Uniqueid", &ch.uniqueid)
        }
        "QueueCallerLeave" => {
            let e = bus
                .event("Leave", "call,all")
                .h("Channel", &ch.name)
                .h("Queue", x("Queue"))
                .h("Count", x("Count"));
            let e = if v14 { e } else { e.h("Position", x("Position")) };
            e.h("Uniqueid", &ch.uniqueid)
        }
        "UserEvent" => {
            let mut e = bus.event(name, "user,all");
            for (k, v) in extra {
                e = e.h(k, v);
            }
            e
        }
        _ => return None,
    };
    Some(ev)
}

/// A channel event in the sim's generation: Asterisk 13/22's snapshot block followed by
/// `extra`, or the 1.4/1.8 form (None when that generation had no such event).
pub fn chan_event(
    bus: &Bus,
    dialect: Dialect,
    name: &str,
    privilege: &str,
    ch: &Channel,
    extra: &[(&str, &str)],
) -> Option<Ev> {
    if dialect.pre_stasis() {
        return legacy_event(bus, dialect, name, ch, extra);
    }
    let mut ev = ch.snapshot(bus.event(name, privilege), "");
    for (k, v) in extra {
        ev = ev.h(k, v);
    }
    Some(ev)
}

/// The `Rename` event of each generation: 1.4 `Oldname`/`Newname`/`Uniqueid`, later
/// `Channel` (the old name)/`Newname`/`Uniqueid`.
pub fn rename_event(bus: &Bus, dialect: Dialect, old: &str, new: &str, uniqueid: &str) -> Ev {
    let e = bus.event("Rename", "call,all");
    let e = if dialect == Dialect::V1_4 {
        e.h("Oldname", old)
    } else {
        e.h("Channel", old)
    };
    e.h("Newname", new).h("Uniqueid", uniqueid)
}
