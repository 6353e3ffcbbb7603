//! Calls: an Originate on `Local/exten@context` runs as one task that plays the event
//! sequence the captured Asterisk produced (transcripts 02, 03): two Newchannels, the
//! dialplan of the `;2` half, answer, OriginateResponse, then hangup when either half ends.

use crate::channels::{Channel, Control, Side};
use crate::dialect::Dialect;
use crate::dialplan::{self, Step};
use crate::dialplan_eval::Ctx;
use crate::effects::Effect;
use crate::pbx::{lock, Pbx};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

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

/// How long an application blocks (`None` = until hung up).
fn app_duration(app: &str, data: &str) -> Option<Duration> {
    let secs = |d: &str| {
        d.split(',')
            .next()
            .and_then(|x| x.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite() && *x >= 0.0)
            .unwrap_or(0.0)
    };
    match app.to_ascii_lowercase().as_str() {
        "wait" | "busy" | "congestion" | "playtones" => Some(Duration::from_secs_f64(secs(data).min(86_400.0))),
        "echo" | "musiconhold" | "park" | "waitforever" => None,
        "queue" => {
            let t = data.split(',').nth(4).map(secs).unwrap_or(20.0);
            Some(Duration::from_secs_f64(t.min(86_400.0)))
        }
        _ => Some(Duration::ZERO),
    }
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

    /// The 13 bridge header block.
    fn bridge_block(&self, name: &str, uid: &str, n: usize) -> crate::events::Ev {
        self.pbx
            .bus
            .event(name, "call,all")
            .h("BridgeUniqueid", uid)
            .h("BridgeType", "basic")
            .h("BridgeTechnology", "simple_bridge")
            .h("BridgeCreator", "<unknown>")
            .h("BridgeName", "<unknown>")
            .h("BridgeNumChannels", &n.to_string())
    }

    /// 1.4 `Link`, 1.8 `Bridge` (Link/Unlink) between the two halves.
    fn link_event(&self, name: &str, state: Option<&str>) -> crate::events::Ev {
        let mut ev = self.pbx.bus.event(name, "call,all");
        if let Some(state) = state {
            ev = ev.h("Bridgestate", state).h("Bridgetype", "core");
        }
        let cid = |c: &Channel| c.cid_num.clone().unwrap_or_default();
        ev.h("Channel1", &self.one.ch.name)
            .h("Channel2", &self.two.ch.name)
            .h("Uniqueid1", &self.one.ch.uniqueid)
            .h("Uniqueid2", &self.two.ch.uniqueid)
            .h("CallerID1", &cid(&self.one.ch))
            .h("CallerID2", &cid(&self.two.ch))
    }

    /// Joins the answered halves where the generation shows it (1.4 Link, 1.8 Bridge,
    /// 13 BridgeCreate + BridgeEnter); 22 keeps the captured sequence (no bridge).
    fn join(&mut self) {
        let bus = &self.pbx.bus;
        match self.dialect {
            Dialect::V22 => return,
            Dialect::V1_4 => bus.send(self.link_event("Link", None)),
            Dialect::V1_8 => bus.send(self.link_event("Bridge", Some("Link"))),
            Dialect::V13 => {
                let uid = bridge_uuid();
                bus.send(self.bridge_block("BridgeCreate", &uid, 0));
                let ev = self.bridge_block("BridgeEnter", &uid, 1);
                bus.send(self.one.ch.snapshot(ev, ""));
                let ev = self.bridge_block("BridgeEnter", &uid, 2);
                bus.send(self.two.ch.snapshot(ev, ""));
                self.joined = Some(uid);
            }
        }
        self.joined.get_or_insert_with(String::new);
        self.one.ch.peer = Some((self.two.ch.name.clone(), self.two.ch.uniqueid.clone()));
        self.two.ch.peer = Some((self.one.ch.name.clone(), self.one.ch.uniqueid.clone()));
        self.store(Side::One);
        self.store(Side::Two);
    }

    /// Undoes [`Call::join`] before the hangups: 1.4 Unlink, 1.8 Bridge Unlink, 13
    /// BridgeLeave x2 + BridgeDestroy.
    fn unjoin(&mut self) {
        let Some(uid) = self.joined.take() else {
            return;
        };
        let bus = &self.pbx.bus;
        match self.dialect {
            Dialect::V22 => {}
            Dialect::V1_4 => bus.send(self.link_event("Unlink", None)),
            Dialect::V1_8 => bus.send(self.link_event("Bridge", Some("Unlink"))),
            Dialect::V13 => {
                let ev = self.bridge_block("BridgeLeave", &uid, 1);
                bus.send(self.one.ch.snapshot(ev, ""));
                let ev = self.bridge_block("BridgeLeave", &uid, 0);
                bus.send(self.two.ch.snapshot(ev, ""));
                bus.send(self.bridge_block("BridgeDestroy", &uid, 0));
            }
        }
        self.one.ch.peer = None;
        self.two.ch.peer = None;
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

    async fn run(mut self) {
        self.store(Side::One);
        self.store(Side::Two);
        self.emit_chan("Newchannel", "call,all", Side::One);
        self.emit_chan("Newchannel", "call,all", Side::Two);

        let Some(steps) = dialplan::lookup(&self.req.context, &self.req.exten) else {
            self.fail().await;
            return;
        };
        self.pbx.processed_calls.fetch_add(1, Ordering::Relaxed);

        // The ;1 half starts dialing.
        self.one.ch.app = "AppDial2".into();
        self.one.ch.data = "(Outgoing Line)".into();
        self.store(Side::One);
        let exten = self.req.exten.clone();
        self.emit(
            "Newexten",
            "dialplan,all",
            Side::One,
            &[
                ("Extension", &exten),
                ("Application", "AppDial2"),
                ("AppData", "(Outgoing Line)"),
            ],
        );
        // ast_set_variables on ;1, in the reversed order astman_get_variables gives;
        // functions are written (not stored), so the ;2 half does not inherit them.
        let vars = self.req.vars.clone();
        for (k, v) in vars.iter().rev() {
            if k.ends_with(')') {
                let pbx = self.pbx.clone();
                Ctx::call(&pbx, &mut self.one.ch)
                    .inhibited(self.req.inhibit_escalations)
                    .func_write(k, v);
                continue;
            }
            self.one.ch.vars.insert(k.clone(), v.clone());
            self.emit("VarSet", "dialplan,all", Side::One, &[("Variable", k), ("Value", v)]);
        }
        const PRES: &str = "0 (Presentation Allowed, Not Screened)";
        if let Some((num, name)) = self.req.callerid.clone() {
            self.one.ch.cid_num = Some(num.clone());
            self.one.ch.cid_name = Some(name.clone());
            self.emit("NewCallerid", "call,all", Side::One, &[("CID-CallingPres", PRES)]);
            self.one.ch.conn_num = Some(num);
            self.one.ch.conn_name = Some(name);
            self.emit_chan("NewConnectedLine", "call,all", Side::One);
        }
        for (k, v) in vars.iter().filter(|(k, _)| !k.ends_with(')')) {
            self.two.ch.vars.insert(k.clone(), v.clone());
            self.emit("VarSet", "dialplan,all", Side::Two, &[("Variable", k), ("Value", v)]);
        }
        if let Some((num, name)) = self.req.callerid.clone() {
            self.two.ch.cid_num = Some(num.clone());
            self.two.ch.cid_name = Some(name.clone());
            self.two.ch.conn_num = Some(num);
            self.two.ch.conn_name = Some(name);
            self.emit("NewCallerid", "call,all", Side::Two, &[("CID-CallingPres", PRES)]);
            self.emit_chan("NewConnectedLine", "call,all", Side::Two);
        }
        self.store(Side::One);
        self.store(Side::Two);
        let bus = &self.pbx.bus;
        match self.dialect {
            Dialect::V1_4 => {}
            Dialect::V1_8 => bus.send(
                bus.event("LocalBridge", "call,all")
                    .h("Channel1", &self.one.ch.name)
                    .h("Channel2", &self.two.ch.name)
                    .h("Uniqueid1", &self.one.ch.uniqueid)
                    .h("Uniqueid2", &self.two.ch.uniqueid)
                    .h("Context", &self.req.context)
                    .h("Exten", &self.req.exten)
                    .h("LocalOptimization", "Yes"),
            ),
            Dialect::V13 | Dialect::V22 => {
                let ev = self.one.ch.snapshot(bus.event("LocalBridge", "call,all"), "LocalOne");
                let ev = self.two.ch.snapshot(ev, "LocalTwo");
                bus.send(
                    ev.h("Context", &self.req.context)
                        .h("Exten", &self.req.exten)
                        .h("LocalOptimization", "Yes"),
                );
                bus.send(
                    self.one
                        .ch
                        .snapshot(bus.event("DialBegin", "call,all"), "Dest")
                        .h("DialString", &format!("{}@{}", self.req.exten, self.req.context)),
                );
            }
        }

        self.two.steps = Some(steps);
        self.tick = Instant::now();
        let end = match self.advance(Side::Two) {
            Some(end) => Some(end),
            None => self.main_loop().await,
        };
        if let Some(end) = end {
            self.drain_renames();
            self.finish(end);
        }
    }

    /// The context does not exist: both halves die at once (transcript 03).
    async fn fail(&mut self) {
        let cause = [("Cause", "0"), ("Cause-txt", "Unknown")];
        self.emit("Hangup", "call,all", Side::Two, &cause);
        self.unstore(Side::Two);
        self.device_state("INVALID");
        self.emit("Hangup", "call,all", Side::One, &cause);
        self.unstore(Side::One);
        if self.req.is_async {
            self.originate_response(false);
        }
        self.device_state("INVALID");
    }

    fn originate_response(&self, success: bool) {
        let bus = &self.pbx.bus;
        let v14 = self.dialect == Dialect::V1_4;
        // 1.4 sent OriginateSuccess / OriginateFailure; 1.6 merged them into
        // OriginateResponse with a Response header.
        let name = match (v14, success) {
            (false, _) => "OriginateResponse",
            (true, true) => "OriginateSuccess",
            (true, false) => "OriginateFailure",
        };
        let mut ev = bus.event(name, "call,all");
        if let Some(id) = &self.req.action_id {
            ev = ev.h("ActionID", id);
        }
        if !v14 {
            ev = ev.h("Response", if success { "Success" } else { "Failure" });
        }
        ev = if success {
            ev.h("Channel", &self.one.ch.name)
        } else {
            ev.h("Channel", &self.device)
        };
        ev = match &self.req.target {
            Target::App { app, data } => ev.h("Application", app).h("Data", data),
            Target::Dialplan { context, exten, .. } => ev.h("Context", context).h("Exten", exten),
        };
        ev = ev
            .h("Reason", if success { "4" } else { "0" })
            .h("Uniqueid", if success { &self.one.ch.uniqueid } else { "<unknown>" });
        if v14 {
            ev = ev.h("CallerID", self.one.ch.cid_num_str());
        }
        ev = ev
            .h("CallerIDNum", self.one.ch.cid_num_str())
            .h("CallerIDName", self.one.ch.cid_name_str());
        bus.send(ev);
    }

    /// Both halves up: Newstate x2, DialEnd, OriginateResponse, DeviceStateChange x2.
    fn answer(&mut self) {
        self.answered = true;
        let now = SystemTime::now();
        self.two.ch.state = 6;
        self.two.ch.answered_wall = Some(now);
        self.store(Side::Two);
        self.emit_chan("Newstate", "call,all", Side::Two);
        self.one.ch.state = 6;
        self.one.ch.answered_wall = Some(now);
        self.store(Side::One);
        self.emit_chan("Newstate", "call,all", Side::One);
        let bus = &self.pbx.bus;
        if !self.dialect.pre_stasis() {
            bus.send(
                self.one
                    .ch
                    .snapshot(bus.event("DialEnd", "call,all"), "Dest")
                    .h("DialStatus", "ANSWER"),
            );
        }
        if self.req.is_async {
            self.originate_response(true);
        }
        self.device_state("INUSE");
        self.device_state("INUSE");
        self.join();
        // ;1 now runs what the Originate asked for.
        match self.req.target.clone() {
            Target::App { app, data } => {
                // ast_pbx_exec_application: the data is substituted, then the application
                // runs (nothing runs when Asterisk has no such application).
                let pbx = self.pbx.clone();
                let (data, ran) = Ctx::call(&pbx, &mut self.one.ch).exec_application(&app, &data);
                self.one.ch.app = app.clone();
                self.one.ch.data = data.clone();
                self.one.blocked = true;
                let (run_app, run_data) = match &ran {
                    Some(r) => (r.app, r.data.as_str()),
                    None => ("", data.as_str()),
                };
                self.one.wake = app_duration(run_app, run_data).map(|d| self.tick + d);
                self.store(Side::One);
                if let Some(r) = ran {
                    match r.app {
                        "Queue" => self.join_queue(Side::One, &r.data),
                        "UserEvent" => self.user_event(Side::One, &r.data),
                        _ => {}
                    }
                }
            }
            Target::Dialplan {
                context,
                exten,
                priority,
            } => {
                self.enter_dialplan(Side::One, &context, &exten, priority);
            }
        }
    }

    fn enter_dialplan(&mut self, side: Side, context: &str, exten: &str, priority: u32) {
        let steps = dialplan::lookup(context, exten).unwrap_or_default();
        let h = self.half(side);
        h.ch.context = context.to_owned();
        h.ch.exten = exten.to_owned();
        h.idx = (priority.max(1) - 1) as usize;
        h.steps = Some(steps);
        h.blocked = false;
        h.wake = None;
    }

    /// Runs a half's dialplan from its current step until it blocks (None) or ends.
    fn advance(&mut self, side: Side) -> Option<End> {
        loop {
            let pbx = self.pbx.clone();
            let h = self.half(side);
            let Some(steps) = &h.steps else {
                return None;
            };
            let Some(step) = steps.get(h.idx).cloned() else {
                return Some(if side == Side::Two {
                    End::TwoDialplan
                } else {
                    End::OneDialplan
                });
            };
            h.ch.priority = (h.idx + 1) as u32;
            let data = Ctx::call(&pbx, &mut h.ch).substitute(&step.data);
            h.ch.app = step.app.to_owned();
            h.ch.data = data.clone();
            let exten = h.ch.exten.clone();
            if step.app == "Hangup" && side == Side::Two {
                self.cdr(Side::Two);
            }
            self.store(side);
            self.emit(
                "Newexten",
                "dialplan,all",
                side,
                &[("Extension", &exten), ("Application", step.app), ("AppData", &data)],
            );
            let ran = Ctx::call(&pbx, &mut self.half(side).ch).run_app(step.app, &data);
            self.store(side);
            match ran.app {
                "Hangup" => {
                    return Some(if side == Side::Two {
                        End::TwoDialplan
                    } else {
                        End::OneDialplan
                    });
                }
                "Answer" if side == Side::Two && !self.answered => self.answer(),
                "UserEvent" => self.user_event(side, &ran.data),
                "Queue" => self.join_queue(side, &ran.data),
                _ => {}
            }
            let app = ran.app;
            let answered = self.answered;
            let tick = self.tick;
            let h = self.half(side);
            match app_duration(app, &ran.data) {
                Some(d) if d.is_zero() => {
                    h.idx += 1;
                }
                d => {
                    h.blocked = true;
                    h.wake = d.map(|d| tick + d);
                    if matches!(app, "Busy" | "Congestion") && !answered {
                        h.steps = Some(Vec::new());
                    }
                    return None;
                }
            }
        }
    }

    /// The `UserEvent` application: `name,Key: value,…`.
    fn user_event(&self, side: Side, data: &str) {
        let mut parts = data.split(',');
        let name = parts.next().unwrap_or("");
        let mut extra = vec![("UserEvent", name)];
        for p in parts {
            if let Some((k, v)) = p.split_once(':') {
                extra.push((k.trim(), v.trim_start()));
            }
        }
        self.emit("UserEvent", "user,all", side, &extra);
    }

    /// The `Queue` application: the half waits in the queue as a caller.
    fn join_queue(&mut self, side: Side, data: &str) {
        let queue = data.split(',').next().unwrap_or("").to_owned();
        let name = self.half(side).ch.name.clone();
        let joined = lock(&self.pbx.queues).join(&queue, &name);
        if let Some((pos, count)) = joined {
            self.pbx.effect(Effect::QueueJoin { queue: queue.clone() });
            let (pos, count) = (pos.to_string(), count.to_string());
            self.emit(
                "QueueCallerJoin",
                "agent,all",
                side,
                &[("Queue", &queue), ("Position", &pos), ("Count", &count)],
            );
            self.half(side).in_queue = Some(queue);
        }
    }

    fn leave_queue(&mut self, side: Side) {
        let Some(queue) = self.half(side).in_queue.take() else {
            return;
        };
        let name = self.half(side).ch.name.clone();
        let left = lock(&self.pbx.queues).leave(&queue, &name);
        if let Some((pos, count)) = left {
            let (pos, count) = (pos.to_string(), count.to_string());
            self.emit(
                "QueueCallerLeave",
                "agent,all",
                side,
                &[("Queue", &queue), ("Position", &pos), ("Count", &count)],
            );
        }
    }

    /// Wakes whichever half is due first (ties: `;1`) until the call ends.
    async fn main_loop(&mut self) -> Option<End> {
        loop {
            // A half that entered a dialplan (answer, Redirect) and has not run yet.
            for side in [Side::One, Side::Two] {
                let h = self.half(side);
                if h.steps.is_some() && !h.blocked {
                    if let Some(end) = self.advance(side) {
                        return Some(end);
                    }
                }
            }
            let w1 = if self.one.blocked { self.one.wake } else { None };
            let w2 = if self.two.blocked { self.two.wake } else { None };
            let next = match (w1, w2) {
                (Some(a), Some(b)) if b < a => Some((Side::Two, b)),
                (Some(a), _) => Some((Side::One, a)),
                (None, Some(b)) => Some((Side::Two, b)),
                (None, None) => None,
            };
            let sleep = async {
                match next {
                    Some((_, t)) => sleep_until(t.into()).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = sleep => {
                    let Some((side, at)) = next else { continue };
                    self.tick = at;
                    self.leave_queue(side);
                    let h = self.half(side);
                    h.blocked = false;
                    h.wake = None;
                    if h.steps.is_none() {
                        // ;1's application returned.
                        return Some(End::OneApp);
                    }
                    h.idx += 1;
                    if !self.answered && side == Side::Two && self.two.steps.as_ref().is_some_and(|s| s.is_empty()) {
                        let app = if self.two.ch.app == "Busy" { "BUSY" } else { "CONGESTION" };
                        return Some(End::Unanswered(app));
                    }
                    if let Some(end) = self.advance(side) {
                        return Some(end);
                    }
                }
                ctl = self.rx.recv() => match ctl {
                    Some(Control::Hangup { side, cause }) => return Some(End::Requested(side, cause)),
                    Some(Control::Redirect { side, context, exten, priority }) => {
                        self.tick = Instant::now();
                        self.leave_queue(side);
                        self.enter_dialplan(side, &context, &exten, priority);
                        if let Some(end) = self.advance(side) {
                            return Some(end);
                        }
                    }
                    Some(Control::Rename { side, new }) => self.renamed(side, new),
                    Some(Control::SetVar { side, name, value }) => {
                        self.half(side).ch.vars.insert(name, value);
                        if lock(&self.pbx.channels).contains_key(&self.ch(side).name) {
                            self.store(side);
                        }
                    }
                    None => return None,
                },
            }
        }
    }

    fn cdr(&self, side: Side) {
        let ch = match side {
            Side::One => &self.one.ch,
            Side::Two => &self.two.ch,
        };
        let now = SystemTime::now();
        let (num, name) = self.req.callerid.clone().unwrap_or_default();
        let dur = now.duration_since(ch.created_wall).unwrap_or_default().as_secs();
        let bill = ch
            .answered_wall
            .and_then(|a| now.duration_since(a).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let bus = &self.pbx.bus;
        bus.send(
            bus.event("Cdr", "cdr,all")
                .h("AccountCode", "")
                .h("Source", &num)
                .h("Destination", &self.req.exten)
                .h("DestinationContext", &self.req.context)
                .h("CallerID", &format!("\"{name}\" <{num}>"))
                .h("Channel", &ch.name)
                .h("DestinationChannel", "")
                .h("LastApplication", &ch.app)
                .h("LastData", &ch.data)
                .h("StartTime", &crate::clock::datetime(ch.created_wall))
                .h(
                    "AnswerTime",
                    &ch.answered_wall.map(crate::clock::datetime).unwrap_or_default(),
                )
                .h("EndTime", &crate::clock::datetime(now))
                .h("Duration", &dur.to_string())
                .h("BillableSeconds", &bill.to_string())
                .h(
                    "Disposition",
                    if ch.answered_wall.is_some() {
                        "ANSWERED"
                    } else {
                        "NO ANSWER"
                    },
                )
                .h("AMAFlags", "DOCUMENTATION")
                .h("UniqueID", &ch.uniqueid)
                .h("UserField", ""),
        );
    }

    fn request(&self, name: &str, side: Side, cause: u32) {
        self.emit(name, "call,all", side, &[("Cause", &cause.to_string())]);
    }

    fn hangup(&self, side: Side, cause: u32) {
        let txt = match cause {
            16 => "Normal Clearing",
            17 => "User busy",
            34 => "Circuit/channel congestion",
            _ => "Unknown",
        };
        self.emit(
            "Hangup",
            "call,all",
            side,
            &[("Cause", &cause.to_string()), ("Cause-txt", txt)],
        );
        self.unstore(side);
    }

    /// The hangup sequences of transcripts 02 and 03, by who ended the call.
    fn finish(&mut self, end: End) {
        self.leave_queue(Side::One);
        self.leave_queue(Side::Two);
        self.unjoin();
        match end {
            End::TwoDialplan | End::Requested(Side::Two, _) => {
                let cause = match end {
                    End::Requested(_, c) => c,
                    _ => 16,
                };
                self.request("SoftHangupRequest", Side::Two, cause);
                self.request("HangupRequest", Side::One, cause);
                self.hangup(Side::Two, cause);
                self.hangup(Side::One, cause);
                self.device_state("NOT_INUSE");
                self.cdr(Side::One);
                self.device_state("NOT_INUSE");
            }
            End::OneApp => {
                self.request("HangupRequest", Side::Two, 0);
                self.cdr(Side::One);
                self.hangup(Side::One, 0);
                self.request("SoftHangupRequest", Side::Two, 16);
                self.hangup(Side::Two, 0);
                self.device_state("NOT_INUSE");
                self.cdr(Side::Two);
                self.device_state("NOT_INUSE");
            }
            End::OneDialplan | End::Requested(Side::One, _) => {
                let cause = match end {
                    End::Requested(_, c) => c,
                    _ => 16,
                };
                self.request("SoftHangupRequest", Side::One, cause);
                self.request("HangupRequest", Side::Two, cause);
                self.cdr(Side::One);
                self.hangup(Side::One, cause);
                self.device_state("NOT_INUSE");
                self.request("SoftHangupRequest", Side::Two, 16);
                self.cdr(Side::Two);
                self.hangup(Side::Two, 16);
                self.device_state("NOT_INUSE");
            }
            End::Unanswered(status) => {
                let cause = if status == "BUSY" { 17 } else { 34 };
                self.hangup(Side::Two, cause);
                let bus = &self.pbx.bus;
                if !self.dialect.pre_stasis() {
                    bus.send(
                        self.one
                            .ch
                            .snapshot(bus.event("DialEnd", "call,all"), "Dest")
                            .h("DialStatus", status),
                    );
                }
                self.hangup(Side::One, cause);
                if self.req.is_async {
                    self.originate_response(false);
                }
                self.device_state("NOT_INUSE");
            }
        }
    }
}

/// A random v4 UUID, the form of Asterisk's bridge ids.
fn bridge_uuid() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::thread_rng().gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        8 + (b[8] & 3),
        &h[17..20],
        &h[20..32]
    )
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
