//! The queue functions (`QUEUE_MEMBER`, `QUEUE_MEMBER_LIST`, …) on the sim's queues: reads
//! answer from the queue table, writes change members and send the events Asterisk
//! sends.

use super::syntax::ast_true;
use crate::pbx::{lock, Pbx};

/// The read side of the queue functions.
pub(super) fn queue_read(pbx: &Pbx, func: &str, queue: &str, a1: &str, a2: &str) -> Option<String> {
    let queues = lock(&pbx.queues);
    if func == "QUEUE_EXISTS" {
        return Some(
            if queues.queues.iter().any(|q| q.name == queue) {
                "1"
            } else {
                "0"
            }
            .to_owned(),
        );
    }
    let q = queues.queues.iter().find(|q| q.name == queue)?;
    let free = |m: &&crate::queues::Member| !m.paused && !m.in_call && matches!(m.status, 0 | 1);
    let logged = |m: &&crate::queues::Member| !matches!(m.status, 4 | 5);
    let member = |iface: &str| q.members.iter().find(|m| m.interface.eq_ignore_ascii_case(iface));
    Some(match func {
        "QUEUE_MEMBER_LIST" => q
            .members
            .iter()
            .map(|m| m.interface.as_str())
            .collect::<Vec<_>>()
            .join(","),
        "QUEUE_MEMBER_COUNT" => q.members.iter().filter(logged).count().to_string(),
        "QUEUE_WAITING_COUNT" => q.callers.len().to_string(),
        "QUEUE_VARIABLES" => "0".to_owned(),
        "QUEUE_MEMBER_PENALTY" => member(a1)?.penalty.to_string(),
        "QUEUE_GET_CHANNEL" => {
            let pos = a1.trim().parse::<usize>().unwrap_or(1).max(1);
            q.callers.get(pos - 1).cloned().unwrap_or_default()
        }
        _ => match a1 {
            "logged" => q.members.iter().filter(logged).count().to_string(),
            "free" | "ready" => q.members.iter().filter(free).count().to_string(),
            "count" => q.members.len().to_string(),
            "penalty" => member(a2)?.penalty.to_string(),
            "paused" => if member(a2)?.paused { "1" } else { "0" }.to_owned(),
            "ringinuse" => {
                member(a2)?;
                "0".to_owned()
            }
            "wrapuptime" => {
                member(a2)?;
                "0".to_owned()
            }
            _ => return None,
        },
    })
}

/// The write side: `paused` and `penalty` change the member (with its event);
/// `ringinuse` and `wrapuptime` are accepted.
pub(super) fn queue_write(pbx: &Pbx, queue: &str, option: &str, iface: &str, value: &str) -> bool {
    let q = (!queue.is_empty()).then_some(queue);
    match option {
        "paused" => {
            let changed = lock(&pbx.queues).pause(q, iface, ast_true(value), "");
            for (qn, mb) in &changed {
                crate::queues::member_event(&pbx.bus, "QueueMemberPause", qn, mb);
            }
            !changed.is_empty()
        }
        "penalty" => {
            let Ok(p) = value.trim().parse::<i64>() else {
                return false;
            };
            if p < 0 {
                return false;
            }
            let changed = lock(&pbx.queues).set_penalty(q, iface, p);
            for (qn, mb) in &changed {
                crate::queues::member_event(&pbx.bus, "QueueMemberPenalty", qn, mb);
            }
            !changed.is_empty()
        }
        "ringinuse" | "ignorebusy" | "wrapuptime" => {
            let queues = lock(&pbx.queues);
            queues
                .queues
                .iter()
                .filter(|x| q.is_none_or(|w| w == x.name))
                .any(|x| x.members.iter().any(|m| m.interface.eq_ignore_ascii_case(iface)))
        }
        _ => false,
    }
}
