//! Queue actions: QueueAdd, QueueRemove, QueuePause, QueueStatus, QueueSummary, on the
//! sim's queue table ([`crate::queues`]), in each generation's framing.

use super::{error, list_complete, list_complete_in, list_start, list_start_in, non_empty, success, truthy, Framing};
use crate::dialect::Dialect;
use crate::effects::Effect;
use crate::pbx::lock;
use crate::queues::{NewMember, QueueError};
use crate::session::{After, Session};
use ami_proto::{Message, MessageBuilder};

impl Session {
    fn member_event(&self, name: &str, queue: &str, mb: &crate::queues::Member) {
        crate::queues::member_event(&self.pbx.bus, name, queue, mb);
    }

    pub(super) fn queue_add(&mut self, m: &Message, id: Option<&str>) -> After {
        let (Some(queue), Some(iface)) = (non_empty(m, "Queue"), non_empty(m, "Interface")) else {
            return error(self, id, "'Queue' and 'Interface' not specified.");
        };
        let penalty = m.get("Penalty").and_then(|p| p.trim().parse().ok()).unwrap_or(0);
        let paused = truthy(m.get("Paused"));
        let new = NewMember {
            interface: iface,
            name: m.get("MemberName"),
            state_interface: m.get("StateInterface"),
            penalty,
            paused,
            reason: m.get("Reason").unwrap_or(""),
        };
        let r = lock(&self.pbx.queues).add(queue, new);
        match r {
            Ok(mb) => {
                self.pbx.effect(Effect::QueueMemberWrite {
                    queue: queue.to_owned(),
                });
                success(self, id, "Added interface to queue");
                self.member_event("QueueMemberAdded", queue, &mb);
                After::Continue
            }
            Err(QueueError::AlreadyThere) => error(self, id, "Unable to add interface: Already there"),
            Err(_) => error(self, id, "Unable to add interface to queue: No such queue"),
        }
    }

    pub(super) fn queue_remove(&mut self, m: &Message, id: Option<&str>) -> After {
        let (Some(queue), Some(iface)) = (non_empty(m, "Queue"), non_empty(m, "Interface")) else {
            return error(self, id, "Need 'Queue' and 'Interface' parameters.");
        };
        let r = lock(&self.pbx.queues).remove(queue, iface);
        match r {
            Ok(mb) => {
                self.pbx.effect(Effect::QueueMemberWrite {
                    queue: queue.to_owned(),
                });
                success(self, id, "Removed interface from queue");
                self.member_event("QueueMemberRemoved", queue, &mb);
                After::Continue
            }
            Err(QueueError::NotThere) => error(self, id, "Unable to remove interface: Not there"),
            Err(QueueError::NotDynamic) => error(self, id, "Member not dynamic"),
            Err(_) => error(self, id, "Unable to remove interface from queue: No such queue"),
        }
    }

    pub(super) fn queue_pause(&mut self, m: &Message, id: Option<&str>) -> After {
        let (Some(iface), Some(paused)) = (non_empty(m, "Interface"), non_empty(m, "Paused")) else {
            return error(self, id, "Need 'Interface' and 'Paused' parameters.");
        };
        let paused = truthy(Some(paused));
        let changed = lock(&self.pbx.queues).pause(non_empty(m, "Queue"), iface, paused, m.get("Reason").unwrap_or(""));
        if changed.is_empty() {
            return error(self, id, "Interface not found");
        }
        success(
            self,
            id,
            if paused {
                "Interface paused successfully"
            } else {
                "Interface unpaused successfully"
            },
        );
        for (q, mb) in &changed {
            self.pbx.effect(Effect::QueueMemberWrite { queue: q.clone() });
            self.member_event("QueueMemberPause", q, mb);
        }
        After::Continue
    }

    pub(super) fn queue_status(&mut self, m: &Message, id: Option<&str>) -> After {
        let want = non_empty(m, "Queue");
        let member = non_empty(m, "Member");
        let queues = lock(&self.pbx.queues).queues.clone();
        let chans = self.pbx.channel_list();
        let dialect = self.pbx.dialect();
        if dialect.pre_stasis() {
            self.push(&list_start_in(Framing::Plain, id, "Queue status will follow").into_bytes());
            for q in queues.iter().filter(|q| want.is_none_or(|w| w == q.name)) {
                for b in legacy_queue_status(dialect, q, member, &chans, id) {
                    self.push(&b.into_bytes());
                }
            }
            self.push(&list_complete_in(Framing::Plain, "QueueStatusComplete", id, 0).into_bytes());
            return After::Continue;
        }
        self.push(&list_start(id, "Queue status will follow").into_bytes());
        let mut n = 0;
        for q in queues.iter().filter(|q| want.is_none_or(|w| w == q.name)) {
            let perf = if q.completed > 0 { "100.0" } else { "0.0" };
            let b = MessageBuilder::event("QueueParams")
                .header("Queue", &q.name)
                .header("Max", "0")
                .header("Strategy", &q.strategy)
                .header("Calls", &q.callers.len().to_string())
                .header("Holdtime", "0")
                .header("TalkTime", "0")
                .header("Completed", &q.completed.to_string())
                .header("Abandoned", &q.abandoned.to_string())
                .header("ServiceLevel", "0")
                .header("ServicelevelPerf", perf)
                .header("ServicelevelPerf2", perf)
                .header("Weight", "0")
                .header_opt("ActionID", id);
            self.push(&b.into_bytes());
            n += 1;
            for mb in q
                .members
                .iter()
                .filter(|mb| member.is_none_or(|w| w == mb.interface || w == mb.name))
            {
                let b = MessageBuilder::event("QueueMember")
                    .header("Queue", &q.name)
                    .header("Name", &mb.name)
                    .header("Location", &mb.interface)
                    .header("StateInterface", &mb.state_interface)
                    .header("Membership", if mb.dynamic { "dynamic" } else { "static" })
                    .header("Penalty", &mb.penalty.to_string())
                    .header("CallsTaken", &mb.calls_taken.to_string())
                    .header("LastCall", &mb.last_call.to_string())
                    .header("LastPause", &mb.last_pause.to_string())
                    .header("LoginTime", &mb.login_time.to_string())
                    .header("InCall", if mb.in_call { "1" } else { "0" })
                    .header("Status", &mb.status.to_string())
                    .header("Paused", if mb.paused { "1" } else { "0" })
                    .header("PausedReason", &mb.paused_reason)
                    .header("Wrapuptime", "0")
                    .header_opt("ActionID", id);
                self.push(&b.into_bytes());
                n += 1;
            }
            for (pos, caller) in q.callers.iter().enumerate() {
                let Some(c) = chans.iter().find(|c| &c.name == caller) else {
                    continue;
                };
                let b = MessageBuilder::event("QueueEntry")
                    .header("Queue", &q.name)
                    .header("Position", &(pos + 1).to_string())
                    .header("Channel", &c.name)
                    .header("Uniqueid", &c.uniqueid)
                    .header("CallerIDNum", c.cid_num_str())
                    .header("CallerIDName", c.cid_name_str())
                    .header("ConnectedLineNum", c.conn_num_str())
                    .header("ConnectedLineName", c.conn_name_str())
                    .header("Wait", &c.seconds().to_string())
                    .header("Priority", "0")
                    .header_opt("ActionID", id);
                self.push(&b.into_bytes());
                n += 1;
            }
        }
        self.push(&list_complete("QueueStatusComplete", id, n).into_bytes());
        After::Continue
    }

    pub(super) fn queue_summary(&mut self, m: &Message, id: Option<&str>) -> After {
        let want = non_empty(m, "Queue");
        let queues = lock(&self.pbx.queues).queues.clone();
        self.push(&list_start(id, "Queue summary will follow").into_bytes());
        let mut n = 0;
        for q in queues.iter().filter(|q| want.is_none_or(|w| w == q.name)) {
            let available = q
                .members
                .iter()
                .filter(|mb| !mb.paused && !mb.in_call && mb.status == 1)
                .count();
            let b = MessageBuilder::event("QueueSummary")
                .header("Queue", &q.name)
                .header("LoggedIn", &q.members.len().to_string())
                .header("Available", &available.to_string())
                .header("Callers", &q.callers.len().to_string())
                .header("HoldTime", "0")
                .header("TalkTime", "0")
                .header("LongestHoldTime", "0")
                .header_opt("ActionID", id);
            self.push(&b.into_bytes());
            n += 1;
        }
        self.push(&list_complete("QueueSummaryComplete", id, n).into_bytes());
        After::Continue
    }
}

/// One queue's QueueParams, QueueMember and QueueEntry items as app_queue 1.4 / 1.8 wrote them.
fn legacy_queue_status(
    dialect: Dialect,
    q: &crate::queues::Queue,
    member: Option<&str>,
    chans: &[crate::channels::Channel],
    id: Option<&str>,
) -> Vec<MessageBuilder> {
    let v18 = dialect == Dialect::V1_8;
    let perf = if q.completed > 0 { "100.0" } else { "0.0" };
    let mut out = Vec::new();
    let mut b = MessageBuilder::event("QueueParams")
        .header("Queue", &q.name)
        .header("Max", "0");
    if v18 {
        b = b.header("Strategy", &q.strategy);
    }
    b = b.header("Calls", &q.callers.len().to_string()).header("Holdtime", "0");
    if v18 {
        b = b.header("TalkTime", "0");
    }
    b = b
        .header("Completed", &q.completed.to_string())
        .header("Abandoned", &q.abandoned.to_string())
        .header("ServiceLevel", "0")
        .header("ServicelevelPerf", perf)
        .header("Weight", "0")
        .header_opt("ActionID", id);
    out.push(b);
    for mb in q
        .members
        .iter()
        .filter(|mb| member.is_none_or(|w| w == mb.interface || w == mb.name))
    {
        out.push(
            MessageBuilder::event("QueueMember")
                .header("Queue", &q.name)
                .header("Name", &mb.name)
                .header("Location", &mb.interface)
                .header("Membership", if mb.dynamic { "dynamic" } else { "static" })
                .header("Penalty", &mb.penalty.to_string())
                .header("CallsTaken", &mb.calls_taken.to_string())
                .header("LastCall", &mb.last_call.to_string())
                .header("Status", &mb.status.to_string())
                .header("Paused", if mb.paused { "1" } else { "0" })
                .header_opt("ActionID", id),
        );
    }
    for (pos, caller) in q.callers.iter().enumerate() {
        let Some(c) = chans.iter().find(|c| &c.name == caller) else {
            continue;
        };
        let b = MessageBuilder::event("QueueEntry")
            .header("Queue", &q.name)
            .header("Position", &(pos + 1).to_string())
            .header("Channel", &c.name);
        let b = if v18 {
            b.header("Uniqueid", &c.uniqueid)
                .header("CallerIDNum", c.cid_num_str())
                .header("CallerIDName", c.cid_name_str())
                .header("ConnectedLineNum", c.conn_num_str())
                .header("ConnectedLineName", c.conn_name_str())
        } else {
            b.header("CallerID", c.cid_num_str())
                .header("CallerIDName", c.cid_name_str())
        };
        out.push(b.header("Wait", &c.seconds().to_string()).header_opt("ActionID", id));
    }
    out
}
