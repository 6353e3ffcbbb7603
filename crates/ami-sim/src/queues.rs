//! Queues of fixtures/asterisk-config/queues.conf and their members (app_queue's state).

use crate::events::Bus;
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub interface: String,
    pub state_interface: String,
    pub dynamic: bool,
    pub penalty: i64,
    pub calls_taken: u64,
    pub last_call: u64,
    pub last_pause: u64,
    pub login_time: u64,
    pub in_call: bool,
    /// Device state number (1 = not in use).
    pub status: u32,
    pub paused: bool,
    pub paused_reason: String,
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    pub strategy: String,
    pub members: Vec<Member>,
    /// Callers waiting (channel names), in order.
    pub callers: Vec<String>,
    pub completed: u64,
    pub abandoned: u64,
}

/// Why a queue change was refused, each with Asterisk's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    NoSuchQueue,
    AlreadyThere,
    NotThere,
    NotDynamic,
}

/// A QueueAdd's parameters.
#[derive(Debug, Clone, Copy)]
pub struct NewMember<'a> {
    pub interface: &'a str,
    pub name: Option<&'a str>,
    pub state_interface: Option<&'a str>,
    pub penalty: i64,
    pub paused: bool,
    pub reason: &'a str,
}

#[derive(Debug)]
pub struct Queues {
    /// In the order Asterisk lists them (its hash order put `support` before `sales`).
    pub queues: Vec<Queue>,
}

impl Default for Queues {
    fn default() -> Self {
        let t = now();
        let q = |name: &str, members: Vec<Member>| Queue {
            name: name.into(),
            strategy: "ringall".into(),
            members,
            callers: Vec::new(),
            completed: 0,
            abandoned: 0,
        };
        Queues {
            queues: vec![
                q("support", vec![]),
                q(
                    "sales",
                    vec![Member {
                        name: "Agent 1001".into(),
                        interface: "Local/1001@agents".into(),
                        state_interface: "Local/1001@agents".into(),
                        dynamic: false,
                        penalty: 0,
                        calls_taken: 0,
                        last_call: 0,
                        last_pause: 0,
                        login_time: t,
                        in_call: false,
                        status: 1,
                        paused: false,
                        paused_reason: String::new(),
                    }],
                ),
            ],
        }
    }
}

impl Queues {
    fn get_mut(&mut self, name: &str) -> Option<&mut Queue> {
        self.queues.iter_mut().find(|q| q.name == name)
    }

    pub fn add(&mut self, queue: &str, new: NewMember<'_>) -> Result<Member, QueueError> {
        let NewMember {
            interface,
            name,
            state_interface,
            penalty,
            paused,
            reason,
        } = new;
        let q = self.get_mut(queue).ok_or(QueueError::NoSuchQueue)?;
        if q.members.iter().any(|m| m.interface.eq_ignore_ascii_case(interface)) {
            return Err(QueueError::AlreadyThere);
        }
        let t = now();
        let m = Member {
            name: name.filter(|n| !n.is_empty()).unwrap_or(interface).to_owned(),
            interface: interface.to_owned(),
            state_interface: state_interface
                .filter(|n| !n.is_empty())
                .unwrap_or(interface)
                .to_owned(),
            dynamic: true,
            penalty,
            calls_taken: 0,
            last_call: 0,
            last_pause: if paused { t } else { 0 },
            login_time: t,
            in_call: false,
            status: 1,
            paused,
            paused_reason: if paused { reason.to_owned() } else { String::new() },
        };
        q.members.push(m.clone());
        Ok(m)
    }

    pub fn remove(&mut self, queue: &str, interface: &str) -> Result<Member, QueueError> {
        let q = self.get_mut(queue).ok_or(QueueError::NoSuchQueue)?;
        let i = q
            .members
            .iter()
            .position(|m| m.interface.eq_ignore_ascii_case(interface))
            .ok_or(QueueError::NotThere)?;
        if !q.members[i].dynamic {
            return Err(QueueError::NotDynamic);
        }
        Ok(q.members.remove(i))
    }

    /// Pauses or unpauses the interface in one queue or (no queue) in all; returns the
    /// (queue, member) pairs changed.
    pub fn pause(&mut self, queue: Option<&str>, interface: &str, paused: bool, reason: &str) -> Vec<(String, Member)> {
        let t = now();
        let mut changed = Vec::new();
        for q in self.queues.iter_mut() {
            if queue.is_some_and(|want| want != q.name) {
                continue;
            }
            for m in q.members.iter_mut() {
                if m.interface.eq_ignore_ascii_case(interface) {
                    m.paused = paused;
                    m.paused_reason = if paused { reason.to_owned() } else { String::new() };
                    if paused {
                        m.last_pause = t;
                    }
                    changed.push((q.name.clone(), m.clone()));
                }
            }
        }
        changed
    }

    /// Sets a member's penalty in one queue or (no queue) in all; returns the (queue,
    /// member) pairs changed.
    pub fn set_penalty(&mut self, queue: Option<&str>, interface: &str, penalty: i64) -> Vec<(String, Member)> {
        let mut changed = Vec::new();
        for q in self.queues.iter_mut() {
            if queue.is_some_and(|want| want != q.name) {
                continue;
            }
            for m in q.members.iter_mut() {
                if m.interface.eq_ignore_ascii_case(interface) {
                    m.penalty = penalty;
                    changed.push((q.name.clone(), m.clone()));
                }
            }
        }
        changed
    }

    /// A caller enters a queue; returns (position, count).
    pub fn join(&mut self, queue: &str, channel: &str) -> Option<(usize, usize)> {
        let q = self.get_mut(queue)?;
        q.callers.push(channel.to_owned());
        Some((q.callers.len(), q.callers.len()))
    }

    /// A caller leaves; returns (position it had, count after).
    pub fn leave(&mut self, queue: &str, channel: &str) -> Option<(usize, usize)> {
        let q = self.get_mut(queue)?;
        let i = q.callers.iter().position(|c| c == channel)?;
        q.callers.remove(i);
        q.abandoned += 1;
        Some((i + 1, q.callers.len()))
    }
}

/// A queue member event (QueueMemberAdded, …Removed, …Pause, …Penalty) with app_queue's
/// member blob.
pub fn member_event(bus: &Bus, name: &str, queue: &str, mb: &Member) {
    bus.send(
        bus.event(name, "agent,all")
            .h("Queue", queue)
            .h("MemberName", &mb.name)
            .h("Interface", &mb.interface)
            .h("StateInterface", &mb.state_interface)
            .h("Membership", if mb.dynamic { "dynamic" } else { "static" })
            .h("Penalty", &mb.penalty.to_string())
            .h("CallsTaken", &mb.calls_taken.to_string())
            .h("LastCall", &mb.last_call.to_string())
            .h("LastPause", &mb.last_pause.to_string())
            .h("LoginTime", &mb.login_time.to_string())
            .h("InCall", if mb.in_call { "1" } else { "0" })
            .h("Status", &mb.status.to_string())
            .h("Paused", if mb.paused { "1" } else { "0" })
            .h("PausedReason", &mb.paused_reason)
            .h("Ringinuse", "0")
            .h("Wrapuptime", "0"),
    );
}
