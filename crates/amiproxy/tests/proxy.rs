//! End-to-end tests: the real `amiproxy` binary in front of simulated Asterisks on loopback.

mod common;

use common::*;
use std::time::Duration;

fn one_sim_config(sim: &ami_sim::SimHandle) -> String {
    format!("{}{USERS}", upstreams_toml(&[sim]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_ping_events_logoff_like_asterisk() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&one_sim_config(&sim));

    // Before login: nothing but Login/Challenge/Logoff.
    let mut c = Client::connect(proxy.addr()).await;
    assert!(c.banner.starts_with("Asterisk Call Manager/"), "{}", c.banner);
    c.send("Action: Ping\r\nActionID: pre-auth-ping\r\n\r\n").await;
    let r = c.next().await.unwrap();
    assert_eq!(
        r.as_bytes(),
        b"Response: Error\r\nActionID: pre-auth-ping\r\nMessage: Permission denied\r\nServer: amiproxy\r\n\r\n"
    );
    c.send("Foo: bar\r\nActionID: noaction\r\n\r\n").await;
    let r = c.next().await.unwrap();
    assert_eq!(
        r.as_bytes(),
        b"Response: Error\r\nActionID: noaction\r\nMessage: Missing action in request\r\nServer: amiproxy\r\n\r\n"
    );

    // Plain login with events on: response then FullyBooted.
    c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: login-1\r\n\r\n")
        .await;
    let r = c.next().await.unwrap();
    assert_eq!(
        r.as_bytes(),
        b"Response: Success\r\nActionID: login-1\r\nMessage: Authentication accepted\r\nServer: amiproxy\r\n\r\n"
    );
    let fb = c.next().await.unwrap();
    assert_eq!(fb.event_name(), Some("FullyBooted"));
    assert_eq!(fb.get("Status"), Some("Fully Booted"));

    // Ping answered by the proxy, with and without ActionID; lower-case and bare LF accepted.
    c.send("action: ping\nactionid: lowercase\n\n").await;
    let r = c.response("lowercase").await;
    assert_eq!(r.get("Ping"), Some("Pong"));
    assert!(r.get("Timestamp").is_some());
    c.send("Action: Ping\r\n\r\n").await;
    let r = c.until(|m| m.response().is_some()).await;
    assert_eq!(r.action_id(), None);
    assert_eq!(r.get("Ping"), Some("Pong"));

    // A second login, Events off and on, as Asterisk answers them.
    c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: relogin\r\n\r\n")
        .await;
    assert_eq!(
        c.response("relogin").await.get("Message"),
        Some("Already authenticated")
    );
    c.send("Action: Events\r\nEventMask: off\r\nActionID: ev-off\r\n\r\n")
        .await;
    assert_eq!(
        c.response("ev-off").await.as_bytes(),
        b"Response: Success\r\nActionID: ev-off\r\nEvents: Off\r\nServer: amiproxy\r\n\r\n"
    );
    c.send("Action: Events\r\nEventMask: bogus\r\nActionID: ev-bogus\r\n\r\n")
        .await;
    assert_eq!(c.response("ev-bogus").await.get("Events"), Some("Off"));
    c.send("Action: Events\r\nEventMask: call\r\nActionID: ev-call\r\n\r\n")
        .await;
    assert_eq!(c.response("ev-call").await.get("Events"), Some("On"));

    // An oversize line gets Asterisk's error and the session goes on.
    let long = "x".repeat(3000);
    c.send(&format!("Action: Ping\r\nActionID: big\r\nFoo: {long}\r\n\r\n"))
        .await;
    let r = c.response("big").await;
    assert_eq!(r.get("Message"), Some("Failed to parse message: line too long"));

    c.send("Action: Logoff\r\nActionID: bye-1\r\n\r\n").await;
    let r = c.response("bye-1").await;
    assert_eq!(
        r.as_bytes(),
        b"Response: Goodbye\r\nActionID: bye-1\r\nMessage: Thanks for all the fish.\r\nServer: amiproxy\r\n\r\n"
    );
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_login_is_delayed_then_closed() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&one_sim_config(&sim));
    for (user, secret) in [("admin", "wrong-secret"), ("nobody", "x")] {
        let mut c = Client::connect(proxy.addr()).await;
        let t = std::time::Instant::now();
        c.send(&format!(
            "Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nActionID: bad-1\r\n\r\n"
        ))
        .await;
        let r = c.next().await.unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(900),
            "answered after {:?}",
            t.elapsed()
        );
        assert_eq!(
            r.as_bytes(),
            b"Response: Error\r\nActionID: bad-1\r\nMessage: Authentication failed\r\nServer: amiproxy\r\n\r\n"
        );
        assert!(c.closed().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_challenge_login() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&one_sim_config(&sim));
    let mut c = Client::connect(proxy.addr()).await;
    c.send("Action: Challenge\r\nAuthType: plaintext\r\nActionID: ch-bad\r\n\r\n")
        .await;
    assert_eq!(c.response("ch-bad").await.get("Message"), Some("Must specify AuthType"));
    c.send("Action: Challenge\r\nAuthType: MD5\r\nActionID: ch-1\r\n\r\n")
        .await;
    let r = c.response("ch-1").await;
    let challenge = r.get("Challenge").unwrap().to_owned();
    let key = amiproxy::auth::md5_hex(&challenge, "admin-secret");
    c.send(&format!(
        "Action: Login\r\nAuthType: MD5\r\nUsername: admin\r\nKey: {key}\r\nEvents: off\r\nActionID: md5-login\r\n\r\n"
    ))
    .await;
    let r = c.next().await.unwrap();
    assert_eq!(
        r.as_bytes(),
        b"Response: Success\r\nActionID: md5-login\r\nMessage: Authentication accepted\r\nServer: amiproxy\r\n\r\n"
    );
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    // Events off: the very next message is the Ping answer (no FullyBooted).
    assert_eq!(c.next().await.unwrap().action_id(), Some("p"));

    let mut bad = Client::connect(proxy.addr()).await;
    bad.send("Action: Challenge\r\nAuthType: MD5\r\nActionID: ch\r\n\r\n")
        .await;
    bad.response("ch").await;
    bad.send("Action: Login\r\nAuthType: MD5\r\nUsername: admin\r\nKey: 00000000000000000000000000000000\r\nActionID: l\r\n\r\n").await;
    assert_eq!(bad.response("l").await.get("Message"), Some("Authentication failed"));
    assert!(bad.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_actions_with_the_clients_own_action_id() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&one_sim_config(&sim));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    c.send("Action: DBPut\r\nFamily: t\r\nKey: k\r\nVal: v1\r\nActionID: put\r\n\r\n")
        .await;
    let r = c.response("put").await;
    assert_eq!(r.get("Message"), Some("Updated database successfully"), "{r:?}");
    assert_eq!(r.get("Server"), Some("pbx1"));
    // No ActionID from the client: none in the answer either.
    c.send("Action: DBPut\r\nFamily: t\r\nKey: k2\r\nVal: v2\r\n\r\n").await;
    let r = c.until(|m| m.response().is_some()).await;
    assert_eq!(r.action_id(), None, "{r:?}");
    assert_eq!(r.get("Message"), Some("Updated database successfully"));
    // Unknown action: the upstream's own words, when the user may send it.
    c.send("Action: NoSuchAction\r\nActionID: unknown-1\r\n\r\n").await;
    let r = c.response("unknown-1").await;
    assert_eq!(
        r.get("Message"),
        Some("Invalid/unknown command: NoSuchAction. Use Action: ListCommands to show available commands.")
    );

    // A read-only user is refused what its write classes do not allow, and stays connected.
    let mut ro = Client::login(proxy.addr(), "ro", "ro-secret").await;
    ro.send("Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nActionID: o\r\n\r\n")
        .await;
    assert_eq!(ro.response("o").await.get("Message"), Some("Permission denied"));
    ro.send("Action: Ping\r\nActionID: still\r\n\r\n").await;
    assert_eq!(ro.response("still").await.get("Ping"), Some("Pong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_originate_response_carries_the_originators_action_id() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&one_sim_config(&sim));
    let mut a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let mut b = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    a.send("Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\nActionID: orig-1\r\n\r\n").await;
    let r = a.response("orig-1").await;
    assert_eq!(r.get("Message"), Some("Originate successfully queued"));
    let ev = a.event("OriginateResponse").await;
    assert_eq!(ev.action_id(), Some("orig-1"));
    assert_eq!(ev.get("Server"), Some("pbx1"));
    // Broadcast: the other session sees it too, with the originator's ActionID.
    let ev = b.event("OriginateResponse").await;
    assert_eq!(ev.action_id(), Some("orig-1"));

    a.send("Action: UserEvent\r\nUserEvent: AmiTest\r\nHeader1: one\r\nActionID: ue-1\r\n\r\n")
        .await;
    assert_eq!(a.response("ue-1").await.get("Message"), Some("Event Sent"));
    let ev = b.until(|m| m.get("UserEvent") == Some("AmiTest")).await;
    assert_eq!(ev.action_id(), Some("ue-1"));
}

/// Two proxies on one Asterisk (replicas, or a proxy and its restarted self) both see every
/// broadcast event. Each numbers its ActionIDs from 1, so without a tag of its own, B would
/// take A's UserEvents for the OriginateResponse its client still waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_on_one_upstream_never_take_each_others_events() {
    let sim = sim("pbx1").await;
    let (pa, pb) = (start_proxy(&one_sim_config(&sim)), start_proxy(&one_sim_config(&sim)));
    let mut a = Client::login(pa.addr(), "admin", "admin-secret").await;
    let mut b = Client::login(pb.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    wait_upstream(&mut b, "pbx1").await;
    // B's client waits three seconds of ringing for its OriginateResponse.
    b.send("Action: Originate\r\nChannel: Local/03@ringing\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\nActionID: b-orig\r\n\r\n").await;
    assert_eq!(b.response("b-orig").await.get("Response"), Some("Success"));
    // Meanwhile A's client sends enough UserEvents to use every number B has used.
    for i in 0..60 {
        a.send(&format!(
            "Action: UserEvent\r\nUserEvent: FromA\r\nActionID: a-{i}\r\n\r\n"
        ))
        .await;
    }
    for i in 0..60 {
        assert_eq!(a.response(&format!("a-{i}")).await.get("Response"), Some("Success"));
    }
    // A's client gets its own events back, with its own ActionIDs (the first may have
    // passed while the answers were read).
    let mine = a.until(|m| m.get("UserEvent") == Some("FromA")).await;
    assert!(mine.action_id().is_some_and(|a| a.starts_with("a-")), "{mine:?}");
    // B's client gets its OriginateResponse, and none of A's events took its ActionID.
    let ev = b
        .until(|m| m.action_id() == Some("b-orig") || m.get("UserEvent") == Some("FromA"))
        .await;
    assert_eq!(ev.event_name(), Some("OriginateResponse"), "{ev:?}");
    assert_eq!(ev.get("Response"), Some("Success"));
}

/// `control_link = true`: clients' actions go on a second login with events off (their
/// answers never queue behind the event stream); the broadcast event that echoes an action
/// still reaches its client after the answer, with the client's ActionID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_on_the_control_link_are_answered_in_order() {
    let sim = sim("pbx1").await;
    let config = one_sim_config(&sim).replace(
        "reconnect_max_ms = 300\n",
        "reconnect_max_ms = 300\ncontrol_link = true\n",
    );
    assert!(config.contains("control_link = true"));
    let proxy = start_proxy(&config);
    let mut a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    eventually("both logins up", || sim.connection_count() == 2).await;
    for i in 0..20 {
        a.send(&format!("Action: CoreSettings\r\nActionID: cs-{i}\r\n\r\n"))
            .await;
    }
    for i in 0..20 {
        let r = a.response(&format!("cs-{i}")).await;
        assert_eq!(r.get("Response"), Some("Success"), "{r:?}");
        assert_eq!(r.get("Server"), Some("pbx1"));
    }
    a.send("Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\nActionID: orig-c\r\n\r\n").await;
    let r = a.response("orig-c").await;
    assert_eq!(r.get("Message"), Some("Originate successfully queued"));
    let ev = a.event("OriginateResponse").await;
    assert_eq!(ev.action_id(), Some("orig-c"));
    // The control link goes away: actions fall back to the main login.
    sim.drop_connections();
    wait_upstream(&mut a, "pbx1").await;
    a.send("Action: CoreSettings\r\nActionID: after\r\n\r\n").await;
    assert_eq!(a.response("after").await.get("Response"), Some("Success"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_action_id_from_two_clients_never_crosses() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&one_sim_config(&sim));
    let mut a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let mut b = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    for (c, v) in [(&mut a, "from-a"), (&mut b, "from-b")] {
        c.send(&format!(
            "Action: DBPut\r\nFamily: x\r\nKey: {v}\r\nVal: {v}\r\nActionID: p\r\n\r\n"
        ))
        .await;
        c.response("p").await;
    }
    // Both pipeline 50 DBGets with the same ActionID at once.
    let mut burst_a = String::new();
    let mut burst_b = String::new();
    for _ in 0..50 {
        burst_a.push_str("Action: DBGet\r\nFamily: x\r\nKey: from-a\r\nActionID: same\r\n\r\n");
        burst_b.push_str("Action: DBGet\r\nFamily: x\r\nKey: from-b\r\nActionID: same\r\n\r\n");
    }
    a.send(&burst_a).await;
    b.send(&burst_b).await;
    for (c, want) in [(&mut a, "from-a"), (&mut b, "from-b")] {
        // Each DBGet answers a list: response, DBGetResponse, DBGetComplete.
        let (mut values, mut responses, mut completes) = (0, 0, 0);
        while values < 50 || responses < 50 || completes < 50 {
            let m = c.until(|m| m.action_id() == Some("same")).await;
            match (m.response(), m.event_name()) {
                (Some(_), _) => responses += 1,
                (_, Some("DBGetResponse")) => {
                    assert_eq!(m.get("Val"), Some(want), "crossed answer: {m:?}");
                    values += 1;
                }
                (_, Some("DBGetComplete")) => completes += 1,
                _ => panic!("unexpected {m:?}"),
            }
        }
        // Nothing more for this ActionID comes: a Ping sent after them through the same
        // upstream link is answered after anything that link still had for this client.
        c.send("Action: Ping\r\nServer: pbx1\r\nActionID: fence\r\n\r\n").await;
        let m = c.until(|m| m.action_id().is_some()).await;
        assert_eq!(m.action_id(), Some("fence"), "{m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_death_fails_in_flight_and_comes_back() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&format!(
        "[proxy]\naction_timeout_secs = 30\n\n{}",
        one_sim_config(&sim)
    ));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;

    // An action in flight when the upstream dies is answered at once.
    sim.set_stalled(true);
    c.send("Action: DBGet\r\nFamily: x\r\nKey: y\r\nActionID: inflight\r\n\r\n")
        .await;
    sim.stop_listener().await;
    let r = c.response("inflight").await;
    assert_eq!(r.get("Response"), Some("Error"));
    assert!(r.get("Message").unwrap().contains("pbx1"), "{r:?}");
    let ev = next_status_change(&mut c, "pbx1").await;
    assert_eq!(ev.get("Status"), Some("Disconnected"), "{ev:?}");

    // While it is down, an action for it is refused, naming it; never sent elsewhere.
    c.send("Action: DBGet\r\nFamily: x\r\nKey: y\r\nActionID: down\r\n\r\n")
        .await;
    let r = c.response("down").await;
    assert_eq!(r.get("Message"), Some("Upstream server pbx1 is not connected"));

    sim.set_stalled(false);
    sim.restart_listener().await.unwrap();
    let ev = c.until(|m| m.event_name() == Some("ProxyUpstreamStatus")).await;
    assert_eq!(ev.get("Status"), Some("Connected"));
    // Events resume.
    c.send("Action: UserEvent\r\nUserEvent: Back\r\nActionID: ue\r\n\r\n")
        .await;
    let ev = c.until(|m| m.get("UserEvent") == Some("Back")).await;
    assert_eq!(ev.get("Server"), Some("pbx1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_upstream_times_out_actions() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&format!("[proxy]\naction_timeout_secs = 1\n\n{}", one_sim_config(&sim)));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    sim.set_stalled(true);
    c.send("Action: DBGet\r\nFamily: x\r\nKey: y\r\nActionID: slow\r\n\r\n")
        .await;
    let r = c.response("slow").await;
    assert_eq!(r.get("Response"), Some("Error"));
    assert!(r.get("Message").unwrap().starts_with("Timeout"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_reaches_a_connection_that_has_not_logged_in() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&one_sim_config(&sim));
    let mut watcher = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut watcher, "pbx1").await;
    let mut anon = Client::connect(proxy.addr()).await;
    sim.set_firehose(Some(1000));
    // The logged-in client sees the stream; the anonymous one sees nothing at all.
    watcher.until(|m| m.get("UserEvent") == Some("SimFirehose")).await;
    watcher.until(|m| m.get("UserEvent") == Some("SimFirehose")).await;
    sim.set_firehose(None);
    // A Ping sent after those events were published is answered, and that answer is the
    // first message the anonymous connection gets: no event came before it.
    anon.send("Action: Ping\r\nActionID: after\r\n\r\n").await;
    let m = anon.next().await.expect("still connected");
    assert_eq!(m.action_id(), Some("after"), "{m:?}");
    assert_eq!(m.get("Message"), Some("Permission denied"), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_originate_never_blocks_the_shared_upstream() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&one_sim_config(&sim));
    let mut a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let mut b = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    // Sent upstream as async; answered as Asterisk answers a synchronous Originate.
    a.send(
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nActionID: sync-1\r\n\r\n",
    )
    .await;
    let r = a.response("sync-1").await;
    assert_eq!(r.get("Response"), Some("Success"), "{r:?}");
    assert_eq!(r.get("Message"), Some("Originate successfully queued"));
    a.send("Action: Originate\r\nChannel: Local/100@nosuchcontext\r\nContext: nosuchcontext\r\nExten: 1\r\nPriority: 1\r\nActionID: sync-2\r\n\r\n").await;
    let r = a.response("sync-2").await;
    assert_eq!(r.get("Response"), Some("Error"), "{r:?}");
    assert_eq!(r.get("Message"), Some("Originate failed"));
    // No OriginateResponse reaches anyone for a synchronous Originate, with any ActionID.
    b.send("Action: Ping\r\nActionID: fence\r\n\r\n").await;
    let mut saw = Vec::new();
    loop {
        let m = b.next().await.unwrap();
        if m.action_id() == Some("fence") {
            break;
        }
        if m.event_name() == Some("OriginateResponse") {
            saw.push(m);
        }
    }
    assert!(saw.is_empty(), "{saw:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_bad_event_masks_are_answered_not_forwarded() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&one_sim_config(&sim));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    c.send("Action: Queues\r\nActionID: q\r\n\r\n").await;
    assert_eq!(
        c.response("q").await.get("Message"),
        Some("Invalid/unknown command: Queues. Use Action: ListCommands to show available commands.")
    );
    c.send("Action: Events\r\nEventMask:\r\nActionID: e\r\n\r\n").await;
    assert_eq!(c.response("e").await.get("Message"), Some("Invalid event mask"));
    c.send("Action: Events\r\nEventMask: 0\r\nActionID: e0\r\n\r\n").await;
    assert_eq!(c.response("e0").await.get("Events"), Some("Off"));
    c.send("Action: Events\r\nEventMask: y\r\nActionID: ey\r\n\r\n").await;
    assert_eq!(c.response("ey").await.get("Events"), Some("On"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_after_the_write_timeout() {
    let sim = sim("pbx1").await;
    let config = format!("[proxy]\nwrite_timeout_secs = 1\n\n{}", one_sim_config(&sim));
    let proxy = start_proxy_env(&config, &[("RUST_LOG", "info")], true);
    let mut reader = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut reader, "pbx1").await;
    // A raw socket with a tiny receive buffer that logs in and then does not read.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stuck = sock.connect(proxy.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stuck,
        b"Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\n\r\n",
    )
    .await
    .unwrap();
    // Fill the stuck client's socket: a third client (events off, so it only gets its own
    // answers) sends rounds of 5 UserEvents of ~100 KB each (100 lines of 1,000 bytes), echoed
    // to every session; the reader reads each round, so only the stuck client falls behind, by
    // 0.5 MB a round, past any kernel buffer in a few rounds.
    let mut writer = Client::connect(proxy.addr()).await;
    writer
        .send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nEvents: off\r\nActionID: l\r\n\r\n")
        .await;
    writer.response("l").await;
    let pads: String = (0..100).map(|i| format!("Pad{i}: {}\r\n", "x".repeat(990))).collect();
    let end = tokio::time::Instant::now() + DEADLINE * 3;
    let mut round = 0;
    while !proxy.log().contains("did not read for the write timeout") {
        round += 1;
        let burst: String = (0..5)
            .map(|i| format!("Action: UserEvent\r\nUserEvent: Flood\r\nActionID: f{round}-{i}\r\n{pads}\r\n"))
            .collect();
        writer.send(&burst).await;
        for i in 0..5 {
            writer.response(&format!("f{round}-{i}")).await;
            reader.until(|m| m.get("UserEvent") == Some("Flood")).await;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the stuck client was never closed: {}",
            proxy.log()
        );
    }
    // What the kernel had buffered, then the end of the stream.
    let mut sink = Vec::new();
    let n = tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read_to_end(&mut stuck, &mut sink)).await;
    assert!(matches!(n, Ok(Ok(_)) | Ok(Err(_))), "the connection was not closed");
}

/// A relearn the upstream refuses (the proxy's account lacks the class `CoreShowChannels`
/// needs) is no empty channel list: the channels the index learned from events stay, and
/// actions naming them still go to the box that has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_relearn_forgets_no_channel() {
    let limited = |c: &mut ami_sim::SimConfig| {
        c.users = vec![ami_sim::SimUser::new("admin", "admin-secret", "all", "call,originate")]
    };
    let (s1, s2) = (sim_with("pbx1", limited).await, sim_with("pbx2", limited).await);
    let ups = upstreams_toml(&[&s1, &s2]).replace("reconnect_min_ms", "ownership_refresh_secs = 0.2\nreconnect_min_ms");
    let proxy = start_proxy(&format!("{ups}{USERS}"));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    wait_upstream(&mut c, "pbx2").await;
    c.send("Action: Originate\r\nChannel: Local/600@default\r\nApplication: Wait\r\nData: 30\r\nAsync: true\r\nServer: pbx2\r\nActionID: o\r\n\r\n")
        .await;
    let nc = c
        .until(|m| m.event_name() == Some("Newchannel") && m.get("Server") == Some("pbx2"))
        .await;
    let chan = nc.get("Channel").unwrap().to_owned();
    // Several refused relearns pass.
    tokio::time::sleep(Duration::from_millis(700)).await;
    c.send(&format!("Action: Hangup\r\nChannel: {chan}\r\nActionID: h\r\n\r\n"))
        .await;
    let r = c.response("h").await;
    assert_eq!(r.get("Server"), Some("pbx2"), "routed by what the index knows: {r:?}");
    assert_eq!(r.get("Response"), Some("Success"), "{r:?}");
}
