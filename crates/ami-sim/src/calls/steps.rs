//! One dialplan step at a time: the priorities of a half's extension evaluated and run,
//! how long each application blocks, and the ones that touch the call itself (UserEvent,
//! Queue).

use super::{Call, End};
use crate::channels::Side;
use crate::dialplan;
use crate::dialplan_eval::Ctx;
use crate::effects::Effect;
use crate::pbx::lock;
use std::time::Duration;

/// How long an application blocks (`None` = until hung up).
pub(super) fn app_duration(app: &str, data: &str) -> Option<Duration> {
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

impl Call {
    pub(super) fn enter_dialplan(&mut self, side: Side, context: &str, exten: &str, priority: u32) {
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
    pub(super) fn advance(&mut self, side: Side) -> Option<End> {
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
    pub(super) fn user_event(&self, side: Side, data: &str) {
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
    pub(super) fn join_queue(&mut self, side: Side, data: &str) {
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

    pub(super) fn leave_queue(&mut self, side: Side) {
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
}
