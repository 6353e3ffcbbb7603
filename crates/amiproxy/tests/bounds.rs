//! Bounded state wherever a client or an upstream controls its size: actions in flight per
//! session and per upstream link (refused with clear errors, freed when answered), and
//! ActionIDs remembered for broadcast events forgotten when their action fails.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_cannot_fill_the_shared_upstream() {
    let sim = sim("pbx1").await;
    // No keepalive during the test: the stalled link stays up, full, until the test drops it.
    let ups = upstreams_toml(&[&sim])
        .replace("ping_interval_secs = 0.5", "ping_interval_secs = 60")
        .replace("ping_timeout_secs = 1.0", "ping_timeout_secs = 60");
    let proxy = start_proxy(&format!(
        "[proxy]\nmax_in_flight_per_session = 4\naction_timeout_secs = 60\n\n{ups}max_in_flight = 6\n\n{USERS}"
    ));
    let mut a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let mut b = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    // The upstream stops answering: what is sent stays in flight.
    sim.set_stalled(true);
    for i in 0..6 {
        a.send(&format!(
            "Action: DBGet\r\nFamily: f\r\nKey: k\r\nActionID: a{i}\r\n\r\n"
        ))
        .await;
    }
    for i in 4..6 {
        let r = a.response(&format!("a{i}")).await;
        assert_eq!(
            r.get("Message"),
            Some("Too many actions in flight for this session"),
            "{r:?}"
        );
    }
    // Another session has its own slots, until the link itself is full (4 + 2 = 6).
    for i in 0..3 {
        b.send(&format!(
            "Action: DBGet\r\nFamily: f\r\nKey: k\r\nActionID: b{i}\r\n\r\n"
        ))
        .await;
    }
    let r = b.response("b2").await;
    assert_eq!(
        r.get("Message"),
        Some("Upstream server pbx1 has too many actions in flight"),
        "{r:?}"
    );
    // Local answers need no slot.
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert_eq!(c.response("p").await.get("Ping"), Some("Pong"));
    // Once answered (here: the link drops and fails them), slots are free.
    sim.stop_listener().await;
    for i in 0..4 {
        let r = a.response(&format!("a{i}")).await;
        assert_eq!(r.get("Response"), Some("Error"), "{r:?}");
    }
    sim.set_stalled(false);
    sim.restart_listener().await.unwrap();
    wait_upstream(&mut a, "pbx1").await;
    for i in 0..4 {
        a.send(&format!(
            "Action: DBGet\r\nFamily: f\r\nKey: k\r\nActionID: again{i}\r\n\r\n"
        ))
        .await;
    }
    for i in 0..4 {
        let r = a.response(&format!("again{i}")).await;
        assert_ne!(
            r.get("Message"),
            Some("Too many actions in flight for this session"),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actionids_of_failed_actions_are_forgotten() {
    let sim = sim("pbx1").await;
    // No keepalive during the test: the stalled link stays up until the test drops it.
    let ups = upstreams_toml(&[&sim])
        .replace("ping_interval_secs = 0.5", "ping_interval_secs = 60")
        .replace("ping_timeout_secs = 1.0", "ping_timeout_secs = 60");
    let proxy = start_proxy(&format!(
        "[proxy]\naction_timeout_secs = 60\n\n[metrics]\naddress = \"127.0.0.1:0\"\n\n{ups}{USERS}"
    ));
    let metrics = proxy.metrics.expect("metrics address");
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    // Async Originates refused outright: no OriginateResponse will come for them.
    for i in 0..50 {
        c.send(&format!(
            "Action: Originate\r\nAsync: true\r\nApplication: Wait\r\nActionID: bad{i}\r\n\r\n"
        ))
        .await;
    }
    for i in 0..50 {
        let r = c.response(&format!("bad{i}")).await;
        assert_eq!(r.get("Response"), Some("Error"), "{r:?}");
    }
    // Async Originates lost with their link: remembered once sent (polled: nothing answers
    // them), forgotten when the link drops.
    sim.set_stalled(true);
    for i in 0..20 {
        c.send(&format!("Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\nActionID: lost{i}\r\n\r\n")).await;
    }
    let end = tokio::time::Instant::now() + DEADLINE;
    while metric(metrics, "amiproxy_broadcast_actionids").await != Some(20.0) {
        assert!(tokio::time::Instant::now() < end, "the ActionIDs were not remembered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.stop_listener().await;
    for i in 0..20 {
        let r = c.response(&format!("lost{i}")).await;
        assert_eq!(r.get("Response"), Some("Error"), "{r:?}");
    }
    assert_eq!(metric(metrics, "amiproxy_broadcast_actionids").await, Some(0.0));
    sim.set_stalled(false);
    sim.restart_listener().await.unwrap();
    // A good one is remembered until its event comes, then forgotten.
    wait_upstream(&mut c, "pbx1").await;
    c.send("Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\nActionID: good\r\n\r\n").await;
    let ev = c.until(|m| m.event_name() == Some("OriginateResponse")).await;
    assert_eq!(ev.action_id(), Some("good"));
    let end = tokio::time::Instant::now() + DEADLINE;
    while metric(metrics, "amiproxy_broadcast_actionids").await != Some(0.0) {
        assert!(tokio::time::Instant::now() < end, "the ActionID was kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ownership_index_converges_to_the_upstreams_channels() {
    let s1 = sim("pbx1").await;
    let s2 = sim("pbx2").await;
    let ups = upstreams_toml(&[&s1, &s2]).replace("reconnect_min_ms", "ownership_refresh_secs = 0.3\nreconnect_min_ms");
    let proxy = start_proxy(&format!("[routing]\ndefault_upstream = \"pbx1\"\n\n{ups}{USERS}"));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    wait_upstream(&mut c, "pbx2").await;
    // pbx2 announces a channel and never its hangup (a missed event).
    s2.emit(
        ami_proto::MessageBuilder::event("Newchannel")
            .header("Privilege", "call,all")
            .header("Channel", "PJSIP/ghost-00000001")
            .header("Uniqueid", "pbx2-1700000000.99")
            .build(),
    );
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut n = 0;
    // Learned: actions naming it go to pbx2.
    while route(&mut c, n).await.as_deref() != Some("pbx2") {
        n += 1;
        assert!(tokio::time::Instant::now() < end, "the channel was never learned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Relearned: pbx2 does not list it, so the index lets it go and the default applies.
    while route(&mut c, n).await.as_deref() != Some("pbx1") {
        n += 1;
        assert!(
            tokio::time::Instant::now() < end,
            "the ghost channel stayed in the index"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where an action naming the ghost channel goes: the server of its answer.
async fn route(c: &mut Client, n: u32) -> Option<String> {
    let aid = format!("r{n}");
    c.send(&format!(
        "Action: Getvar\r\nChannel: PJSIP/ghost-00000001\r\nVariable: X\r\nActionID: {aid}\r\n\r\n"
    ))
    .await;
    c.response(&aid).await.get("Server").map(str::to_owned)
}

/// A link full of clients' actions (calls still ringing) is a healthy link: its own
/// keepalive still goes, and only the next client action is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_full_of_ringing_calls_keeps_its_keepalive() {
    let sim = sim("pbx1").await;
    let ups = upstreams_toml(&[&sim]).replace("ping_interval_secs = 0.5", "ping_interval_secs = 0.2");
    let proxy = start_proxy(&format!("{ups}max_in_flight = 2\n\n{USERS}"));
    let mut a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    // Two synchronous Originates ring for three seconds: the link is full for that long.
    for i in 0..2 {
        a.send(&format!(
            "Action: Originate\r\nChannel: Local/03@ringing\r\nApplication: Wait\r\nData: 1\r\nActionID: ring{i}\r\n\r\n"
        ))
        .await;
    }
    // Several keepalive intervals pass while it is full.
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.send("Action: DBGet\r\nFamily: f\r\nKey: k\r\nActionID: third\r\n\r\n")
        .await;
    let r = a.response("third").await;
    assert_eq!(
        r.get("Message"),
        Some("Upstream server pbx1 has too many actions in flight"),
        "{r:?}"
    );
    // Both calls are answered, in whichever order their ringing ends.
    let mut answered = Vec::new();
    while answered.len() < 2 {
        let r = a.until(|m| m.response().is_some()).await;
        assert_eq!(r.get("Message"), Some("Originate successfully queued"), "{r:?}");
        answered.push(r.action_id().unwrap_or_default().to_owned());
    }
    answered.sort();
    assert_eq!(answered, ["ring0", "ring1"]);
}
