//! Calls: an Originate on `Local/exten@context` runs as one task that plays the event
//! sequence the captured Asterisk produced (transcripts 02, 03): two Newchannels, the
//! dialplan of the `;2` half, answer, OriginateResponse, then hangup when either half ends.
//!
//! The call's state lives here; its parts are the life cycle (start to end), the dialplan
//! steps each half runs, the bridge that joins the halves, and the hangup.

mod bridge;
mod hangup;
mod lifecycle;
mod steps;

use crate::channels::{Channel, Control, Side};
use crate::dialect::Dialect;
use crate::dialplan::{self, Step};
use crate::pbx::{lock, Pbx};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// What the `;1` half does once answered.
#[derive(Debug, Clone)]
pub enum Target {
    App {
        app: String,
        data: String,
    },
    Dialplan {
        context: String,
        exten: String,
        priority: u32,
    },
}

/// A parsed Originate on a Local channel.
#[derive(Debug, Clone)]
pub struct OriginateReq {
    pub exten: String,
    pub context: String,
    pub target: Target,
    /// (number, name)
    pub callerid: Option<(String, String)>,
    /// `Variable:` name=value pairs in header order; names ending in `)` are function
    /// writes on the `;1` half.
    pub vars: Vec<(String, String)>,
    pub is_async: bool,
    /// The function writes of `vars` run under Asterisk's escalation guard (a synchronous
    /// Originate sets them from the manager thread, with `live_dangerously` off).
    pub inhibit_escalations: bool,
    pub action_id: Option<String>,
}

impl OriginateReq {
    /// `Local/100@default` (optionally with `/n` options) → (exten, context).
    pub fn parse_local(channel: &str) -> Option<(String, String)> {
        let rest = channel
            .strip_prefix("Local/")
            .or_else(|| channel.strip_prefix("local/"))?;
        let rest = rest.split('/').next().unwrap_or(rest);
        let (exten, context) = match rest.split_once('@') {
            Some((e, c)) => (e, c),
            None => (rest, "default"),
        };
        if exten.is_empty() || context.is_empty() {
            return None;
        }
        Some((exten.to_owned(), context.to_owned()))
    }

    /// Whether the call will reach a dialplan extension (a sync Originate answers
    /// `Originate failed` when not).
    pub fn reachable(&self) -> bool {
        dialplan::lookup(&self.context, &self.exten).is_some()
    }
}

/// Parses `"Name" <num>`, `Name <num>`, or a bare number.
pub fn parse_callerid(s: &str) -> (String, String) {
    let s = s.trim();
    if let (Some(lt), Some(gt)) = (s.rfind('<'), s.rfind('>')) {
        if lt < gt {
            let num = s[lt + 1..gt].trim().to_owned();
            let name = s[..lt].trim().trim_matches('"').to_owned();
            return (num, name);
        }
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '+') {
        (s.to_owned(), String::new())
    } else {
        (String::new(), s.trim_matches('"').to_owned())
    }
}

/// Starts the call task.
pub fn originate(pbx: &Arc<Pbx>, req: OriginateReq) {
    let pbx = pbx.clone();
    tokio::spawn(async move {
        Call::new(pbx, req).run().await;
    });
}

/// Why the call ended.
enum End {
    /// `;2` ran `Hangup()` or fell off its dialplan (cause 16).
    TwoDialplan,
    /// `;1`'s application returned (cause 0).
    OneApp,
    /// `;1` ran `Hangup()` in its dialplan (cause 16).
    OneDialplan,
    /// A Hangup action on one half.
    Requested(Side, u32),
    /// `;2` ended before answering (Busy, Congestion).
    Unanswered(&'static str),
}

/// Progress of one half.
struct Half {
    ch: Channel,
    /// Dialplan steps, or none when running a plain application.
    steps: Option<Vec<Step>>,
    /// Index of the current step.
    idx: usize,
    /// When the current blocking step ends; `None` with `blocked` = forever.
    wake: Option<Instant>,
    blocked: bool,
    /// Queue the half waits in (left on wake or hangup).
    in_queue: Option<String>,
}

struct Call {
    pbx: Arc<Pbx>,
    req: OriginateReq,
    one: Half,
    two: Half,
    rx: mpsc::UnboundedReceiver<Control>,
    answered: bool,
    device: String,
    /// The instant the current burst of steps happens at: blocking steps are timed from
    /// it, so two halves waiting equally long wake in a fixed order (`;1` first).
    tick: Instant,
    dialect: Dialect,
    /// The halves are joined (Link / Bridge / BridgeEnter sent); for 13 the bridge id.
    joined: Option<String>,
}

impl Call {
    fn new(pbx: Arc<Pbx>, req: OriginateReq) -> Call {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = pbx.next_local_id();
        let dialect = pbx.dialect();
        // 1.4 named Local halves `Local/100@default-7f3a,1`; 1.8 on `-00000001;1`.
        let (base, sep) = if dialect == Dialect::V1_4 {
            (format!("Local/{}@{}-{:04x}", req.exten, req.context, id), ',')
        } else {
            (format!("Local/{}@{}-{:08x}", req.exten, req.context, id), ';')
        };
        let uid1 = pbx.next_uniqueid();
        let uid2 = pbx.next_uniqueid();
        let mk = |side: Side, suffix: &str, uid: &str, state: u8, seq: u64| Channel {
            name: format!("{base}{sep}{suffix}"),
            side,
            state,
            cid_num: None,
            cid_name: None,
            conn_num: None,
            conn_name: None,
            context: req.context.clone(),
            exten: req.exten.clone(),
            priority: 1,
            uniqueid: uid.to_owned(),
            linkedid: uid1.clone(),
            app: String::new(),
            data: String::new(),
            created: Instant::now(),
            created_wall: SystemTime::now(),
            answered_wall: None,
            seq,
            vars: BTreeMap::new(),
            peer: None,
            control: tx.clone(),
        };
        let s1 = pbx.next_channel_seq();
        let s2 = pbx.next_channel_seq();
        let half = |ch| Half {
            ch,
            steps: None,
            idx: 0,
            wake: None,
            blocked: false,
            in_queue: None,
        };
        let one = half(mk(Side::One, "1", &uid1, 0, s1));
        let two = half(mk(Side::Two, "2", &uid2, 4, s2));
        let device = format!("Local/{}@{}", req.exten, req.context);
        Call {
            pbx,
            req,
            one,
            two,
            rx,
            answered: false,
            device,
            tick: Instant::now(),
            dialect,
            joined: None,
        }
    }

    fn ch(&self, side: Side) -> &Channel {
        match side {
            Side::One => &self.one.ch,
            Side::Two => &self.two.ch,
        }
    }

    /// Sends a channel event in the call's generation: Asterisk 13/22's snapshot block
    /// followed by `extra`, or the 1.4/1.8 form (nothing when that generation had no such
    /// event).
    fn emit(&self, name: &str, privilege: &str, side: Side, extra: &[(&str, &str)]) {
        let bus = &self.pbx.bus;
        if let Some(ev) = crate::channels::chan_event(bus, self.dialect, name, privilege, self.ch(side), extra) {
            bus.send(ev);
        }
    }

    /// A rename reported by [`crate::SimHandle::rename_channel`]: the table already holds
    /// the new name; the call's own copy and its peer follow.
    fn renamed(&mut self, side: Side, new: String) {
        let old = std::mem::replace(&mut self.half(side).ch.name, new.clone());
        {
            let mut t = lock(&self.pbx.channels);
            t.remove(&old);
        }
        self.store(side);
        let other = match side {
            Side::One => Side::Two,
            Side::Two => Side::One,
        };
        let uid = self.ch(side).uniqueid.clone();
        let h = self.half(other);
        if h.ch.peer.is_some() {
            h.ch.peer = Some((new, uid));
            let name = h.ch.name.clone();
            if lock(&self.pbx.channels).contains_key(&name) {
                self.store(other);
            }
        }
    }

    /// Applies renames still queued when the call ends, so its hangups use the new names.
    fn drain_renames(&mut self) {
        while let Ok(ctl) = self.rx.try_recv() {
            if let Control::Rename { side, new } = ctl {
                self.renamed(side, new);
            }
        }
    }

    fn half(&mut self, side: Side) -> &mut Half {
        match side {
            Side::One => &mut self.one,
            Side::Two => &mut self.two,
        }
    }

    /// Copies a half's channel into the shared table (Status, Hangup, Command see it).
    fn store(&self, side: Side) {
        let ch = match side {
            Side::One => &self.one.ch,
            Side::Two => &self.two.ch,
        };
        lock(&self.pbx.channels).insert(ch.name.clone(), ch.clone());
    }

    fn unstore(&self, side: Side) {
        let uid = &self.ch(side).uniqueid;
        lock(&self.pbx.channels).retain(|_, c| &c.uniqueid != uid);
        lock(&self.pbx.shared).remove(uid);
    }

    fn emit_chan(&self, name: &str, privilege: &str, side: Side) {
        self.emit(name, privilege, side, &[]);
    }

    fn device_state(&self, state: &str) {
        if self.dialect.pre_stasis() {
            return;
        }
        let bus = &self.pbx.bus;
        bus.send(
            bus.event("DeviceStateChange", "call,all")
                .h("Device", &self.device)
                .h("State", state),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callerid_forms() {
        assert_eq!(
            parse_callerid("\"AMI Test\" <5551234>"),
            ("5551234".into(), "AMI Test".into())
        );
        assert_eq!(parse_callerid("100"), ("100".into(), String::new()));
        assert_eq!(
            OriginateReq::parse_local("Local/100@default/n"),
            Some(("100".into(), "default".into()))
        );
        assert_eq!(OriginateReq::parse_local("SIP/x"), None);
    }
}
