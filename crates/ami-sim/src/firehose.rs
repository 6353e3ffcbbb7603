//! Load generators: the UserEvent firehose and the call-rate traffic generator.

use crate::calls::{self, OriginateReq, Target};
use crate::pbx::Pbx;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{interval, Instant, MissedTickBehavior};

/// Publishes one firehose event; its `SimSeq` is gapless per sim, starting at 1.
fn fire(pbx: &Pbx) {
    let n = pbx.firehose_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let ev = pbx
        .bus
        .event("UserEvent", "user,all")
        .h("UserEvent", "SimFirehose")
        .h("SimSeq", &n.to_string());
    pbx.bus.send(ev);
}

/// Runs for the life of the sim, following `set_firehose`.
pub async fn firehose_task(pbx: Arc<Pbx>) {
    let mut rx = pbx.controls.firehose.subscribe();
    loop {
        let rate = *rx.borrow_and_update();
        match rate {
            None => {
                if rx.changed().await.is_err() {
                    return;
                }
            }
            Some(0) => {
                // As fast as possible, yielding so sessions get to run.
                while !rx.has_changed().unwrap_or(true) {
                    for _ in 0..64 {
                        fire(&pbx);
                    }
                    tokio::task::yield_now().await;
                }
            }
            Some(rate) => {
                let start = Instant::now();
                let mut sent: u64 = 0;
                let mut tick = interval(Duration::from_millis(1));
                tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                            while sent < due {
                                fire(&pbx);
                                sent += 1;
                            }
                        }
                        r = rx.changed() => {
                            if r.is_err() { return; }
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Originates `Local/100@default` calls (Wait 3) at the configured rate.
pub async fn traffic_task(pbx: Arc<Pbx>) {
    let mut rx = pbx.controls.call_rate.subscribe();
    loop {
        let rate = *rx.borrow_and_update();
        if !(rate.is_finite() && rate > 0.0) {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        }
        let start = Instant::now();
        let mut started: u64 = 0;
        let mut tick = interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
                    while started < due {
                        calls::originate(&pbx, OriginateReq {
                            exten: "100".into(),
                            context: "default".into(),
                            target: Target::App { app: "Wait".into(), data: "3".into() },
                            callerid: None,
                            vars: Vec::new(),
                            is_async: false,
                            inhibit_escalations: false,
                            action_id: None,
                        });
                        started += 1;
                    }
                }
                r = rx.changed() => {
                    if r.is_err() { return; }
                    break;
                }
            }
        }
    }
}
