//! The CLI commands `Action: Command` can run, with Asterisk 22's output layout.

use crate::pbx::{lock, Pbx};
use std::sync::atomic::Ordering;

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Runs a CLI command: (known command?, output lines).
pub fn run(pbx: &Pbx, cmd: &str) -> (bool, Vec<String>) {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match l.as_slice() {
        ["core", "show", "channels"] | ["core", "show", "channels", "verbose"] => (true, show_channels(pbx)),
        ["core", "show", "channels", "concise"] => (true, concise(pbx)),
        ["core", "show", "version"] | ["show", "version"] => (
            true,
            vec![format!(
                "Asterisk {} built by root @ vm on a x86_64 running Linux on 2026-11-26 11:00:16 UTC",
                pbx.dialect().asterisk_version()
            )],
        ),
        ["queue", "show"] | ["show", "queues"] => (true, queue_show(pbx)),
        ["core", "show", "uptime"] => {
            let up = pbx.uptime_secs();
            (
                true,
                vec![
                    format!("System uptime: {up} second{}", plural(up as usize)),
                    format!("Last reload: {up} second{}", plural(up as usize)),
                ],
            )
        }
        ["database", "show", rest @ ..] => {
            let family = rest.first().map(|_| words[2]);
            let key = rest.get(1).map(|_| words[3]);
            let entries = lock(&pbx.astdb).tree(family, key);
            let mut out: Vec<String> = entries.iter().map(|(k, v)| format!("{k:<50}: {v:<25}")).collect();
            out.push(format!("{} result{} found.", entries.len(), plural(entries.len())));
            (true, out)
        }
        _ => {
            let help = if words.len() > 2 {
                words[..words.len() - 2].join(" ")
            } else {
                words.first().copied().unwrap_or("").to_owned()
            };
            // `core show help` arrived with 1.6; 1.4 and 1.8 point at `help`.
            let helpcmd = if pbx.dialect().pre_stasis() {
                "help"
            } else {
                "core show help"
            };
            (
                false,
                vec![format!(
                    "No such command '{cmd}' (type '{helpcmd} {help}' for other possible commands)"
                )],
            )
        }
    }
}

fn show_channels(pbx: &Pbx) -> Vec<String> {
    let chans = pbx.channel_list();
    let mut out = vec![format!(
        "{:<64} {:<32} {:<7} {:<30}",
        "Channel", "Location", "State", "Application(Data)"
    )];
    for c in &chans {
        let loc = format!("{}@{}:{}", c.exten, c.context, c.priority);
        let app = format!("{}({})", c.app, c.data);
        out.push(format!(
            "{:<64} {:<32} {:<7} {:<30}",
            c.name,
            loc,
            crate::channels::state_desc(c.state),
            app
        ));
    }
    let calls = chans.iter().filter(|c| c.side == crate::channels::Side::One).count();
    out.push(format!("{} active channel{}", chans.len(), plural(chans.len())));
    out.push(format!("{} active call{}", calls, plural(calls)));
    let processed = pbx.processed_calls.load(Ordering::Relaxed) as usize;
    out.push(format!("{} call{} processed", processed, plural(processed)));
    out
}

fn concise(pbx: &Pbx) -> Vec<String> {
    pbx.channel_list()
        .iter()
        .map(|c| {
            format!(
                "{}!{}!{}!{}!{}!{}!{}!{}!!!3!{}!!{}",
                c.name,
                c.context,
                c.exten,
                c.priority,
                crate::channels::state_desc(c.state),
                c.app,
                c.data,
                c.cid_num.as_deref().unwrap_or(""),
                c.seconds(),
                c.uniqueid
            )
        })
        .collect()
}

/// `queue show`: one paragraph per queue, each ended by a blank line (so legacy Command
/// output carries blank lines inside it, as the real one does).
fn queue_show(pbx: &Pbx) -> Vec<String> {
    let v14 = pbx.dialect() == crate::Dialect::V1_4;
    let queues = lock(&pbx.queues).queues.clone();
    let mut out = Vec::new();
    for q in &queues {
        let sl = if q.completed > 0 { "100.0" } else { "0.0" };
        out.push(if v14 {
            format!(
                "{:<12} has {} calls (max unlimited) in '{}' strategy (0s holdtime), W:0, C:{}, A:{}, SL:{sl}% within 0s",
                q.name,
                q.callers.len(),
                q.strategy,
                q.completed,
                q.abandoned
            )
        } else {
            // SL2 came with Asterisk 13.
            let sl2 = if pbx.dialect() == crate::Dialect::V1_8 {
                String::new()
            } else {
                format!(", SL2:{sl}%")
            };
            format!(
                "{} has {} calls (max unlimited) in '{}' strategy (0s holdtime, 0s talktime), W:0, C:{}, A:{}, SL:{sl}%{sl2} within 0s",
                q.name,
                q.callers.len(),
                q.strategy,
                q.completed,
                q.abandoned
            )
        });
        if q.members.is_empty() {
            out.push("   No Members".into());
        } else {
            out.push("   Members: ".into());
            for m in &q.members {
                let kind = if m.dynamic { " (dynamic)" } else { "" };
                let paused = if m.paused { " (paused)" } else { "" };
                let state = if m.in_call { "In use" } else { "Not in use" };
                let calls = if m.calls_taken == 0 {
                    "has taken no calls yet".to_owned()
                } else {
                    format!("has taken {} calls (last was {} secs ago)", m.calls_taken, 0)
                };
                if v14 {
                    out.push(format!(
                        "      {} ({}){kind}{paused} ({state}) {calls}",
                        m.name, m.interface
                    ));
                } else {
                    out.push(format!(
                        "      {} ({} from {}){kind}{paused} ({state}) {calls}",
                        m.name, m.interface, m.state_interface
                    ));
                }
            }
        }
        if q.callers.is_empty() {
            out.push("   No Callers".into());
        } else {
            out.push("   Callers: ".into());
            for (i, c) in q.callers.iter().enumerate() {
                out.push(format!("      {}. {c} (wait: 0:00, prio: 0)", i + 1));
            }
        }
        out.push(String::new());
    }
    out
}
