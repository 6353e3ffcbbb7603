//! The proxy in front of every Asterisk generation (1.4, 1.8, 13, 22) alone, and in front of
//! a cluster mixing 1.4, 13 and 22.

mod common;

use ami_proto::Message;
use ami_sim::Dialect;
use common::*;
use std::collections::HashSet;

async fn gen_sim(name: &str, dialect: Dialect, base: u32) -> ami_sim::SimHandle {
    sim_with(name, |c| {
        c.dialect = dialect;
        c.channel_id_base = base;
    })
    .await
}

/// A list in any generation's framing: the response, the items, the `...Complete` event.
async fn list(c: &mut Client, action: &str, aid: &str) -> (Message, Vec<Message>, Message) {
    c.send(&format!("{action}ActionID: {aid}\r\n\r\n")).await;
    let resp = c.response(aid).await;
    assert_eq!(resp.get("Response"), Some("Success"), "{resp:?}");
    let mut items = Vec::new();
    loop {
        let m = c
            .until(|m| m.action_id() == Some(aid) && m.event_name().is_some())
            .await;
        if m.event_name().is_some_and(|n| n.ends_with("Complete")) {
            return (resp, items, m);
        }
        items.push(m);
    }
}

/// Waits for the Newchannel of a call this client originated on `server`.
async fn originate(c: &mut Client, server: Option<&str>, ext: &str, aid: &str) -> Message {
    let route = server.map(|s| format!("Server: {s}\r\n")).unwrap_or_default();
    c.send(&format!(
        "Action: Originate\r\n{route}Channel: Local/{ext}@default\r\nApplication: Wait\r\nData: 20\r\nAsync: true\r\nActionID: {aid}\r\n\r\n"
    ))
    .await;
    let r = c.response(aid).await;
    assert_eq!(r.get("Response"), Some("Success"), "{r:?}");
    let server = r.get("Server").unwrap().to_owned();
    c.until(|m| m.event_name() == Some("Newchannel") && m.get("Server") == Some(&server))
        .await
}

async fn one_generation(dialect: Dialect) {
    let sim = gen_sim("pbx1", dialect, 0).await;
    let proxy = start_proxy(&format!("{}{USERS}", upstreams_toml(&[&sim])));
    let mut first = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut first, "pbx1").await;

    // A client connecting now sees that generation's banner and words.
    let mut c = Client::connect(proxy.addr()).await;
    assert_eq!(
        c.banner,
        format!("Asterisk Call Manager/{}", dialect.ami_version()),
        "{dialect}"
    );
    c.send("Action: Ping\r\nActionID: pre\r\n\r\n").await;
    let r = c.response("pre").await;
    let want = if dialect == Dialect::V1_4 {
        "Authentication Required"
    } else {
        "Permission denied"
    };
    assert_eq!(r.get("Message"), Some(want));
    c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: l\r\n\r\n")
        .await;
    c.response("l").await;
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    let r = c.response("p").await;
    if dialect == Dialect::V1_4 {
        assert_eq!(
            r.as_bytes(),
            b"Response: Pong\r\nActionID: p\r\nServer: amiproxy\r\n\r\n"
        );
    } else {
        assert_eq!(r.get("Ping"), Some("Pong"));
    }
    c.send("Action: Events\r\nEventMask: off\r\nActionID: e\r\n\r\n").await;
    let r = c.response("e").await;
    if dialect == Dialect::V1_4 {
        assert_eq!(r.get("Response"), Some("Events Off"));
    } else {
        assert_eq!(r.get("Events"), Some("Off"));
    }
    c.send("Action: Events\r\nEventMask: on\r\nActionID: e2\r\n\r\n").await;
    c.response("e2").await;

    // Command output passes through in the upstream's framing, blank lines and all.
    c.send("Action: Command\r\nCommand: queue show\r\nActionID: cmd\r\n\r\n")
        .await;
    let r = c.response("cmd").await;
    if dialect == Dialect::V22 {
        assert_eq!(r.get("Message"), Some("Command output follows"));
        assert!(r.get_all("Output").count() > 2, "{r:?}");
    } else {
        assert_eq!(r.get("Response"), Some("Follows"), "{r:?}");
        let out = String::from_utf8_lossy(r.legacy_output().expect("legacy output"));
        assert!(out.contains("\n\n") && out.ends_with("--END COMMAND--\r\n"), "{out:?}");
        assert_eq!(r.action_id(), Some("cmd"));
    }

    // Lists in that generation's framing.
    let (resp, items, done) = list(&mut c, "Action: QueueStatus\r\n", "qs").await;
    assert_eq!(done.event_name(), Some("QueueStatusComplete"));
    assert!(items.iter().any(|m| m.event_name() == Some("QueueParams")));
    assert_eq!(
        resp.get("EventList").is_some(),
        matches!(dialect, Dialect::V13 | Dialect::V22),
        "{resp:?}"
    );

    // Originate, learn the channel, rename it upstream, hang it up by its new name.
    let nc = originate(&mut c, None, "600", "o1").await;
    let chan = nc.get("Channel").unwrap().to_owned();
    let (_, st, _) = list(&mut c, "Action: Status\r\n", "st").await;
    assert!(st.iter().any(|m| m.get("Channel") == Some(&chan)), "{st:?}");
    let renamed = format!("{chan}<R>");
    assert!(sim.rename_channel(&chan, &renamed));
    c.until(|m| m.event_name() == Some("Rename")).await;
    c.send(&format!("Action: Hangup\r\nChannel: {renamed}\r\nActionID: h\r\n\r\n"))
        .await;
    let r = c.response("h").await;
    assert_eq!(r.get("Response"), Some("Success"), "{dialect}: {r:?}");
    assert_eq!(r.get("Server"), Some("pbx1"));

    // A synchronous Originate is answered from the call's outcome, which 1.4 reports as
    // OriginateSuccess / OriginateFailure and later generations as OriginateResponse.
    for (ext, aid, want) in [
        ("100", "sync-ok", "Originate successfully queued"),
        ("999", "sync-fail", "Originate failed"),
    ] {
        c.send(&format!(
            "Action: Originate\r\nChannel: Local/{ext}@default\r\nApplication: Wait\r\nData: 1\r\nActionID: {aid}\r\n\r\n"
        ))
        .await;
        let r = c.response(aid).await;
        assert_eq!(r.get("Message"), Some(want), "{dialect}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_1_4() {
    one_generation(Dialect::V1_4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_1_8() {
    one_generation(Dialect::V1_8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_13() {
    one_generation(Dialect::V13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_22() {
    one_generation(Dialect::V22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_mixing_1_4_13_and_22() {
    let a = gen_sim("old", Dialect::V1_4, 0).await;
    let b = gen_sim("mid", Dialect::V13, 0x1000).await;
    let c22 = gen_sim("new", Dialect::V22, 0x2000).await;
    let proxy = start_proxy(&format!("{}{USERS}", upstreams_toml(&[&a, &b, &c22])));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    for s in ["old", "mid", "new"] {
        wait_upstream(&mut c, s).await;
    }
    // Mixed generations: the proxy speaks the newest.
    let mut fresh = Client::connect(proxy.addr()).await;
    assert_eq!(fresh.banner, "Asterisk Call Manager/11.0.0");
    fresh.send("Action: Ping\r\nActionID: pre\r\n\r\n").await;
    assert_eq!(fresh.response("pre").await.get("Message"), Some("Permission denied"));

    // One call on each server; each learned from its own event form, tagged.
    let mut chans = Vec::new();
    for (i, s) in ["old", "mid", "new"].iter().enumerate() {
        let nc = originate(&mut c, Some(s), "600", &format!("o{i}")).await;
        chans.push((s.to_string(), nc.get("Channel").unwrap().to_owned()));
    }
    // Merged lists from three framings: one start, one Complete, all items tagged.
    for (action, complete) in [("QueueStatus", "QueueStatusComplete"), ("Status", "StatusComplete")] {
        let (resp, items, done) = list(&mut c, &format!("Action: {action}\r\n"), action).await;
        assert_eq!(resp.get("EventList"), Some("start"), "{resp:?}");
        assert_eq!(done.event_name(), Some(complete));
        assert_eq!(done.get("EventList"), Some("Complete"));
        assert_eq!(done.get("ListItems").unwrap().parse::<usize>().unwrap(), items.len());
        let servers: HashSet<&str> = items.iter().filter_map(|m| m.get("Server")).collect();
        assert_eq!(servers, HashSet::from(["old", "mid", "new"]), "{action}: {items:?}");
    }
    // Routing by learned ownership: a Hangup naming each channel goes to its own server.
    for (i, (server, chan)) in chans.iter().enumerate() {
        c.send(&format!("Action: Hangup\r\nChannel: {chan}\r\nActionID: h{i}\r\n\r\n"))
            .await;
        let r = c.response(&format!("h{i}")).await;
        assert_eq!(r.get("Server"), Some(server.as_str()), "{chan}: {r:?}");
        assert_eq!(r.get("Response"), Some("Success"), "{chan}: {r:?}");
        let hangup = c
            .until(|m| m.event_name() == Some("Hangup") && m.get("Channel") == Some(chan))
            .await;
        assert_eq!(hangup.get("Server"), Some(server.as_str()));
    }
}

/// A proxy that starts while calls are up learns them from its relearn: Asterisk 1.4 has no
/// `CoreShowChannels`, so there the relearn reads `Status`. A channel learned so routes to
/// its own server, not the default one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_proxy_learns_the_channels_of_a_1_4_upstream() {
    let new = gen_sim("new", Dialect::V22, 0).await;
    let old = sim_with("old", |c| {
        c.dialect = Dialect::V1_4;
        c.channel_id_base = 0x1000;
        c.strict_1_4 = true;
    })
    .await;
    let ups = upstreams_toml(&[&new, &old]);
    let first = start_proxy(&format!("{ups}{USERS}"));
    let mut c = Client::login(first.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "old").await;
    let chan = originate(&mut c, Some("old"), "600", "o")
        .await
        .get("Channel")
        .unwrap()
        .to_owned();
    // A second proxy, started now, has seen no Newchannel for it.
    let late = start_proxy(&format!("[routing]\ndefault_upstream = \"new\"\n\n{ups}{USERS}"));
    let mut l = Client::login(late.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut l, "new").await;
    wait_upstream(&mut l, "old").await;
    // Its relearn runs once the link is up: poll until the channel routes to its server.
    let end = tokio::time::Instant::now() + DEADLINE;
    for n in 0.. {
        let aid = format!("gv{n}");
        l.send(&format!(
            "Action: Getvar\r\nChannel: {chan}\r\nVariable: CHANNEL\r\nActionID: {aid}\r\n\r\n"
        ))
        .await;
        if l.response(&aid).await.get("Server") == Some("old") {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "{chan} never learned");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
