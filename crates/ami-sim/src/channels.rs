//! Channels as AMI shows them: the snapshot headers every channel event carries.

use crate::events::Ev;
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
