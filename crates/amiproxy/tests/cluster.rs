//! The proxy over a cluster: routing rules, channel ownership, merged lists, tagged events,
//! and a slow client beside a fast one.

mod common;

use common::*;
use std::collections::HashSet;

async fn cluster() -> (Vec<ami_sim::SimHandle>, Proxy) {
    cluster_with("").await
}

async fn cluster_with(proxy_section: &str) -> (Vec<ami_sim::SimHandle>, Proxy) {
    let s1 = sim_with("pbx1", |c| c.channel_id_base = 0).await;
    let s2 = sim_with("pbx2", |c| c.channel_id_base = 0x1000).await;
    let mut ups = upstreams_toml(&[&s1, &s2]);
    // Prefix rules: Local/2xx channels and the support queue live on pbx2.
    ups = ups.replacen(
        "name = \"pbx2\"\n",
        "name = \"pbx2\"\nchannel_prefixes = [\"Local/2\"]\nqueue_prefixes = [\"support\"]\n",
        1,
    );
    let proxy = start_proxy(&format!(
        "{proxy_section}\n[routing]\ndefault_upstream = \"pbx1\"\n\n{ups}{USERS}"
    ));
    (vec![s1, s2], proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_by_header_prefix_owner_and_default() {
    let (_sims, proxy) = cluster().await;
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    wait_upstream(&mut c, "pbx2").await;

    // Explicit header; unknown server is an error naming it.
    c.send("Action: DBPut\r\nServer: pbx2\r\nFamily: r\r\nKey: k\r\nVal: on-pbx2\r\nActionID: h\r\n\r\n")
        .await;
    assert_eq!(c.response("h").await.get("Server"), Some("pbx2"));
    c.send("Action: DBGet\r\nServer: pbx9\r\nFamily: r\r\nKey: k\r\nActionID: u\r\n\r\n")
        .await;
    assert_eq!(
        c.response("u").await.get("Message"),
        Some("Unknown upstream server: pbx9")
    );
    // Default upstream: pbx1 has no such key.
    c.send("Action: DBGet\r\nFamily: r\r\nKey: k\r\nActionID: d\r\n\r\n")
        .await;
    let r = c.response("d").await;
    assert_eq!(r.get("Server"), Some("pbx1"));
    assert_eq!(r.get("Response"), Some("Error"));

    // Channel prefix rule: Local/2... goes to pbx2.
    c.send("Action: Originate\r\nChannel: Local/200@default\r\nApplication: Wait\r\nData: 60\r\nAsync: true\r\nActionID: o2\r\n\r\n").await;
    assert_eq!(c.response("o2").await.get("Server"), Some("pbx2"));
    // Its channel is learned from the events; a Hangup naming it goes to its owner.
    let nc = c
        .until(|m| m.event_name() == Some("Newchannel") && m.get("Server") == Some("pbx2"))
        .await;
    let chan = nc.get("Channel").unwrap().to_owned();
    // Make the default upstream own a channel too, so a wrong route would be visible.
    c.send("Action: Originate\r\nChannel: Local/600@default\r\nApplication: Wait\r\nData: 60\r\nAsync: true\r\nActionID: o1\r\n\r\n").await;
    assert_eq!(c.response("o1").await.get("Server"), Some("pbx1"));
    c.send(&format!("Action: Hangup\r\nChannel: {chan}\r\nActionID: hu\r\n\r\n"))
        .await;
    let r = c.response("hu").await;
    assert_eq!(r.get("Server"), Some("pbx2"), "{r:?}");
    assert_eq!(r.get("Response"), Some("Success"), "{r:?}");

    // Queue prefix rule.
    c.send("Action: QueueAdd\r\nQueue: support\r\nInterface: Local/2001@agents\r\nActionID: qa\r\n\r\n")
        .await;
    let r = c.response("qa").await;
    assert_eq!(r.get("Server"), Some("pbx2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_from_every_upstream_come_back_as_one() {
    let (_sims, proxy) = cluster().await;
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    wait_upstream(&mut c, "pbx2").await;

    let (resp, items, complete) = c.list("Action: QueueSummary\r\n", "qs").await;
    assert_eq!(resp.get("Response"), Some("Success"));
    let servers: HashSet<&str> = items.iter().filter_map(|m| m.get("Server")).collect();
    assert_eq!(servers, HashSet::from(["pbx1", "pbx2"]), "{items:?}");
    assert_eq!(
        complete.get("ListItems").unwrap().parse::<usize>().unwrap(),
        items.len()
    );
    assert_eq!(complete.event_name(), Some("QueueSummaryComplete"));

    // Channels on both servers, listed once each, tagged.
    for (i, ext) in ["100", "200"].iter().enumerate() {
        let server = if *ext == "200" { "pbx2" } else { "pbx1" };
        c.send(&format!(
            "Action: Originate\r\nServer: {server}\r\nChannel: Local/600@default\r\nApplication: Wait\r\nData: 60\r\nAsync: true\r\nActionID: o{i}\r\n\r\n"
        ))
        .await;
        c.response(&format!("o{i}")).await;
        c.until(|m| m.event_name() == Some("OriginateResponse") && m.action_id() == Some(&format!("o{i}")))
            .await;
    }
    let (_, items, complete) = c.list("Action: CoreShowChannels\r\n", "csc").await;
    let servers: HashSet<&str> = items.iter().filter_map(|m| m.get("Server")).collect();
    assert_eq!(servers, HashSet::from(["pbx1", "pbx2"]), "{items:?}");
    assert_eq!(
        complete.get("ListItems").unwrap().parse::<usize>().unwrap(),
        items.len()
    );
    let (_, items, complete) = c.list("Action: Status\r\n", "st").await;
    assert!(items.len() >= 4, "{items:?}");
    assert_eq!(complete.get("Items").unwrap().parse::<usize>().unwrap(), items.len());
    // Exactly one Complete: nothing else carries this ActionID afterwards.
    c.send("Action: Ping\r\nActionID: after\r\n\r\n").await;
    let next = c.until(|m| m.action_id().is_some()).await;
    assert_eq!(next.action_id(), Some("after"), "{next:?}");

    // Hangup by regex goes to all.
    let (_, _items, done) = c.list("Action: Hangup\r\nChannel: /Local/600/\r\n", "hr").await;
    assert!(done.get("ListItems").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_all_upstreams_tagged_and_a_slow_client_hurts_only_itself() {
    // The slow client's session may block on its full socket for as long as the test runs:
    // it is to fall behind the ring, not to be closed by the write timeout.
    let (sims, proxy) = cluster_with("[proxy]\nevent_buffer = 4096\nwrite_timeout_secs = 3600\n").await;
    let mut fast = Client::login(proxy.addr(), "admin", "admin-secret").await;
    // The slow client: a small receive window, and it reads nothing until the end.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = Client::over(Box::new(sock.connect(proxy.addr()).await.unwrap())).await;
    slow.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: l\r\n\r\n")
        .await;
    assert_eq!(slow.response("l").await.get("Message"), Some("Authentication accepted"));
    wait_upstream(&mut fast, "pbx1").await;
    wait_upstream(&mut fast, "pbx2").await;
    // The fast client reads 60k events from both servers, each server's sequence gapless, in
    // rounds of 1,000 per server (half the ring): it keeps up by design, at any speed. The
    // slow client reads nothing: 60k padded events (~20 MB) are more than its socket buffers
    // and the ring hold, so it falls behind.
    const ROUND: u64 = 1000;
    let mut last = [0u64; 2];
    for round in 0..30 {
        let want = (round + 1) * ROUND;
        for s in &sims {
            emit_numbered(s, round * ROUND + 1, want, 200);
        }
        while last[0] < want || last[1] < want {
            let m = fast.next().await.unwrap();
            assert_ne!(
                m.event_name(),
                Some("ProxyEventsDropped"),
                "the fast client fell behind"
            );
            let Some((server, seq)) = numbered(&m) else { continue };
            let i = match server.as_str() {
                "pbx1" => 0,
                "pbx2" => 1,
                other => panic!("an event from {other:?}"),
            };
            assert_eq!(seq, last[i] + 1, "gap on {server}");
            last[i] = seq;
        }
    }
    // The slow client, reading only now, is told it lost events.
    let dropped = slow.until(|m| m.event_name() == Some("ProxyEventsDropped")).await;
    assert!(dropped.get("Count").unwrap().parse::<u64>().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_name_on_two_servers_is_not_guessed() {
    // Same channel numbering on both sims: the same names exist on both boxes.
    let s1 = sim_with("pbx1", |c| c.channel_id_base = 0).await;
    let s2 = sim_with("pbx2", |c| c.channel_id_base = 0).await;
    let proxy = start_proxy(&format!("{}{USERS}", upstreams_toml(&[&s1, &s2])));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    wait_upstream(&mut c, "pbx2").await;
    let mut uids = Vec::new();
    for s in ["pbx1", "pbx2"] {
        c.send(&format!("Action: Originate\r\nServer: {s}\r\nChannel: Local/600@default\r\nApplication: Wait\r\nData: 20\r\nAsync: true\r\nActionID: o-{s}\r\n\r\n")).await;
        c.response(&format!("o-{s}")).await;
        let nc = c
            .until(|m| m.event_name() == Some("Newchannel") && m.get("Server") == Some(s))
            .await;
        uids.push((
            s,
            nc.get("Channel").unwrap().to_owned(),
            nc.get("Uniqueid").unwrap().to_owned(),
        ));
    }
    assert_eq!(uids[0].1, uids[1].1, "same name on both boxes");
    c.send(&format!(
        "Action: Hangup\r\nChannel: {}\r\nActionID: amb\r\n\r\n",
        uids[0].1
    ))
    .await;
    let r = c.response("amb").await;
    assert_eq!(r.get("Response"), Some("Error"));
    assert!(r.get("Message").unwrap().contains("more than one server"), "{r:?}");
    // By uniqueid (unique with systemname) it goes to the right box.
    c.send(&format!(
        "Action: Hangup\r\nChannel: {}\r\nActionID: by-uid\r\n\r\n",
        uids[1].2
    ))
    .await;
    let r = c.response("by-uid").await;
    assert_eq!(r.get("Server"), Some("pbx2"), "{r:?}");
    assert_eq!(r.get("Response"), Some("Success"));
}
