//! Tenant-scoped users: one proxy user per client, each with its own channel and queue scope
//! and the same `eventfilter` rules, so the proxy does per-client scope and filter work on
//! every event it fans out.
//!
//! The simulator's own firehose cannot serve here: its `UserEvent: SimFirehose` names no
//! channel or queue, and a scoped user sees no such event (only the few global ones), so
//! every scoped client would count nothing and zero loss would mean nothing. This module
//! therefore emits its own firehose into the in-process simulators: the same gapless
//! `SimSeq` per simulator, plus a `Channel:` on a shared trunk that every tenant's scope
//! lists. Every user should see every event, so loss is counted against the whole sequence
//! exactly as `fanout` counts it.

use crate::client::Credentials;
use ami_proto::MessageBuilder;
use ami_sim::SimHandle;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{interval, Instant, MissedTickBehavior};

/// The channel-name prefix of every emitted event; every tenant's scope lists `TRUNK*`.
/// It is not `Local/` because one of the benchmark's filter rules excludes `Local/` channels.
const TRUNK: &str = "PJSIP/trunk-";
/// Events emitted per batch at full speed before yielding to the readers.
const BATCH: usize = 64;
/// No emitter outlives this, whatever happens to its controller.
const MAX_RUN: Duration = Duration::from_secs(2 * 3600);

/// The login of tenant `i` (0-based): `tenant001`, … .
pub fn creds(i: usize) -> Credentials {
    Credentials {
        user: format!("tenant{:03}", i + 1),
        secret: format!("tenant{:03}-secret", i + 1),
    }
}

/// Tenant `i`'s channel globs: its own phones, and the shared trunk the firehose names.
pub fn channels(i: usize) -> Vec<String> {
    vec![format!("PJSIP/t{:03}-*", i + 1), format!("{TRUNK}*")]
}

/// Tenant `i`'s queue globs.
pub fn queues(i: usize) -> Vec<String> {
    vec![format!("t{:03}-*", i + 1)]
}

/// `[[user]]` sections for `n` tenants, each with `filters` as its `eventfilter` rules.
/// Scoped users get `call,user,agent` read (enough for the firehose's `user,all`
/// privilege) and no write: what a tenant dashboard has.
pub fn proxy_users(n: usize, filters: &[String]) -> String {
    let mut s = String::new();
    for i in 0..n {
        let c = creds(i);
        s.push_str(&format!(
            "\n[[user]]\nname = {:?}\nsecret = {:?}\nread = \"call,user,agent\"\nwrite = \"\"\nchannels = {:?}\nqueues = {:?}\neventfilter = {:?}\n",
            c.user,
            c.secret,
            channels(i),
            queues(i),
            filters
        ));
    }
    s
}

/// One emitted event: a UserEvent naming the trunk channel, with the stream's `SimSeq`.
fn event(seq: u64) -> ami_proto::Message {
    MessageBuilder::event("UserEvent")
        .header("Privilege", "user,all")
        .header("UserEvent", "SimFirehose")
        .header("Channel", &format!("{TRUNK}{:08x}", seq % 4096))
        .header("SimSeq", &seq.to_string())
        .build()
}

/// An event as the emitter sends it (for checks against a proxy user's policy).
#[cfg(test)]
pub fn sample_event(seq: u64) -> ami_proto::Message {
    event(seq)
}

/// A running tenant firehose; [`Emitter::stop`] ends it.
pub struct Emitter {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Emitter {
    /// Emits into every simulator at `rate` events/s each (0: as fast as possible), each
    /// simulator's `SimSeq` counting from 1.
    pub fn start(sims: Vec<SimHandle>, rate: u64) -> Emitter {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(emit(sims, rate, rx));
        Emitter { stop, task }
    }

    /// Stops emitting and waits for the task to end.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }

    /// Ends the task at once (a scenario that failed).
    pub fn abort(&self) {
        self.task.abort();
    }
}

async fn emit(sims: Vec<SimHandle>, rate: u64, mut stop: watch::Receiver<bool>) {
    let start = Instant::now();
    let end = start + MAX_RUN;
    let mut sent: u64 = 0;
    let fire = |n: u64| {
        for s in &sims {
            s.emit(event(n));
        }
    };
    if rate == 0 {
        // `has_changed` fails once the controller is gone.
        while !*stop.borrow() && stop.has_changed().is_ok() && Instant::now() < end {
            for _ in 0..BATCH {
                sent += 1;
                fire(sent);
            }
            tokio::task::yield_now().await;
        }
        return;
    }
    let mut tick = interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    while Instant::now() < end {
        tokio::select! {
            _ = tick.tick() => {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    sent += 1;
                    fire(sent);
                }
            }
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amiproxy::glob::Glob;

    #[test]
    fn every_tenant_scope_covers_the_emitted_channel() {
        let ev = event(4097);
        let chan = ev.get("Channel").unwrap();
        assert_eq!(chan, "PJSIP/trunk-00000001");
        assert_eq!(ev.get("SimSeq"), Some("4097"));
        for i in [0, 41, 99, 999] {
            assert!(channels(i).iter().any(|g| Glob::channel(g).matches(chan)), "tenant {i}");
            // The tenant's own glob is not the one that lets the trunk through.
            assert!(!Glob::channel(&channels(i)[0]).matches(chan));
        }
    }

    #[test]
    fn tenants_are_distinct() {
        assert_eq!(creds(0).user, "tenant001");
        assert_eq!(creds(99).secret, "tenant100-secret");
        assert_ne!(channels(1)[0], channels(2)[0]);
        assert_eq!(queues(9), vec!["t010-*".to_owned()]);
    }
}
