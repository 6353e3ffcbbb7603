//! A call from start to end: the channels appear, the `;2` half runs its dialplan, the call
//! is answered (or fails with OriginateResponse: Failure), then both halves step and wait
//! on their timers and controls until one of them ends.

use super::steps::app_duration;
use super::{Call, End, Target};
use crate::channels::{Control, Side};
use crate::dialect::Dialect;
use crate::dialplan;
use crate::dialplan_eval::Ctx;
use crate::pbx::lock;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};
use tokio::time::sleep_until;

impl Call {
    pub(super) async fn run(mut self) {
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

    pub(super) fn originate_response(&self, success: bool) {
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
    pub(super) fn answer(&mut self) {
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
}
