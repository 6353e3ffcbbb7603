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
        ["core", "show", "version"] => (
            true,
            vec!["Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-26 11:00:16 UTC".into()],
        ),
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
            (
                false,
                vec![format!(
                    "No such command '{cmd}' (type 'core show help {help}' for other possible commands)"
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
