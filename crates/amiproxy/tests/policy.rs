//! Policy at the wire, through the binary: attack payloads, tenant scope both ways, argument
//! rules, action lists, ACLs, event filters, rate limits and the audit log.

mod common;

use common::*;
use std::time::Duration;

const POLICY_USERS: &str = r#"
[[user]]
name = "admin"
secret = "admin-secret"
read = "all"
write = "all"

# May originate and run commands, but has no `system`.
[[user]]
name = "dialer"
secret = "dialer-secret"
read = "call,system"
write = "call,originate,command,config,user"

# A dialer allowed Originate into one context only.
[[user]]
name = "outbound"
secret = "outbound-secret"
read = "call"
write = "originate"
rule = [{ action = "Originate", header = "Context", pattern = "^outbound$", effect = "allow" }]

# A tenant: sees and touches only Local/100 channels and the sales queue.
[[user]]
name = "acme"
secret = "acme-secret"
read = "all"
write = "call,reporting,agent,originate"
channels = ["Local/100@default*"]
queues = ["sales"]

[[user]]
name = "lists"
secret = "lists-secret"
read = "all"
write = "all"
actions = ["DB*", "Ping"]
deny_actions = ["DBDelTree"]

[[user]]
name = "faraway"
secret = "faraway-secret"
write = "all"
permit = ["10.0.0.0/8"]

[[user]]
name = "filtered"
secret = "filtered-secret"
read = "all"
write = "all"
eventfilter = [
  "action(include),name(UserEvent)",
  "eventfilter(action(exclude),header(UserEvent),method(exact)) = Noise",
]

[[user]]
name = "limited"
secret = "limited-secret"
read = "all"
write = "all"
actions_per_sec = 1
burst = 5
max_connections = 1
"#;

async fn setup() -> (ami_sim::SimHandle, Proxy) {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&format!("{}{POLICY_USERS}", upstreams_toml(&[&sim])));
    (sim, proxy)
}

async fn denied(c: &mut Client, action: &str, aid: &str) {
    c.send(&format!("{action}ActionID: {aid}\r\n\r\n")).await;
    let r = c.response(aid).await;
    assert_eq!(r.get("Message"), Some("Permission denied"), "{action}: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_payloads_are_refused_and_the_connection_stays() {
    let (_sim, proxy) = setup().await;
    let mut c = Client::login(proxy.addr(), "dialer", "dialer-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    let attacks = [
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: System\r\nData: touch /tmp/pwned\r\n",
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: SET\r\nData: FILE(/etc/asterisk/manager.conf)=x\r\n",
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: NoOp\r\nData: ${SHELL(id)}\r\n",
        "Action: GetConfig\r\nFilename: ../../etc/passwd\r\n",
        "Action: Command\r\nCommand: !sh\r\n",
        "Action: Filter\r\nOperation: Add\r\nFilter: Event: Hangup\r\n",
        // Variables Asterisk reads: a Gosub at every bridge join, a file at every bridge change.
        "Action: Setvar\r\nChannel: Local/100@default\r\nVariable: CONNECTED_LINE_SEND_SUB\r\nValue: default,700,1\r\n",
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nVariable: BRIDGE_PLAY_SOUND=/etc/passwd\r\n",
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Playback\r\nData: http://169.254.169.254/x\r\n",
    ];
    for (i, a) in attacks.iter().enumerate() {
        denied(&mut c, a, &format!("atk-{i}")).await;
    }
    // Harmless forms of the same actions go through.
    c.send("Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\nActionID: fine\r\n\r\n")
        .await;
    assert_eq!(c.response("fine").await.get("Response"), Some("Success"));
    c.send("Action: Command\r\nCommand: core show version\r\nActionID: cmd\r\n\r\n")
        .await;
    assert_eq!(c.response("cmd").await.get("Response"), Some("Success"));
    c.send("Action: Ping\r\nActionID: alive\r\n\r\n").await;
    assert_eq!(c.response("alive").await.get("Ping"), Some("Pong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originate_into_one_context_only() {
    let (_sim, proxy) = setup().await;
    let mut c = Client::login(proxy.addr(), "outbound", "outbound-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    denied(
        &mut c,
        "Action: Originate\r\nChannel: Local/100@default\r\nContext: default\r\nExten: 100\r\nPriority: 1\r\n",
        "o1",
    )
    .await;
    denied(
        &mut c,
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: Wait\r\nData: 1\r\n",
        "o2",
    )
    .await;
    c.send("Action: Originate\r\nChannel: Local/100@default\r\nContext: outbound\r\nExten: 100\r\nPriority: 1\r\nActionID: o3\r\n\r\n").await;
    let r = c.response("o3").await;
    assert_ne!(r.get("Message"), Some("Permission denied"), "{r:?}");
    assert_eq!(r.get("Server"), Some("pbx1"), "forwarded: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_scope_applies_both_ways() {
    let (_sim, proxy) = setup().await;
    let mut admin = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let mut acme = Client::login(proxy.addr(), "acme", "acme-secret").await;
    wait_upstream(&mut admin, "pbx1").await;
    for (ext, aid) in [("600", "other"), ("100", "mine")] {
        admin.send(&format!("Action: Originate\r\nChannel: Local/{ext}@default\r\nApplication: Wait\r\nData: 60\r\nAsync: true\r\nActionID: {aid}\r\n\r\n")).await;
        admin
            .until(|m| m.event_name() == Some("OriginateResponse") && m.action_id() == Some(aid))
            .await;
    }
    // The tenant's event stream: only its own channels.
    let nc = acme.until(|m| m.event_name() == Some("Newchannel")).await;
    assert!(nc.get("Channel").unwrap().starts_with("Local/100@default"), "{nc:?}");
    // Its lists: only its own items, and ListItems counts what it saw.
    let (_, items, complete) = acme.list("Action: CoreShowChannels\r\n", "csc").await;
    assert!(!items.is_empty());
    for i in &items {
        assert!(i.get("Channel").unwrap().starts_with("Local/100@default"), "{i:?}");
    }
    assert_eq!(
        complete.get("ListItems").unwrap().parse::<usize>().unwrap(),
        items.len()
    );
    let (_, all, _) = admin.list("Action: CoreShowChannels\r\n", "csc-admin").await;
    assert!(all.len() > items.len());
    // Actions naming another tenant's channel or queue are refused.
    let foreign = all
        .iter()
        .find(|m| m.get("Channel").unwrap().starts_with("Local/600"))
        .unwrap();
    let chan = foreign.get("Channel").unwrap();
    denied(&mut acme, &format!("Action: Hangup\r\nChannel: {chan}\r\n"), "h1").await;
    let uid = foreign.get("Uniqueid").unwrap();
    denied(&mut acme, &format!("Action: Hangup\r\nChannel: {uid}\r\n"), "h2").await;
    denied(&mut acme, "Action: Hangup\r\nChannel: /.*/\r\n", "h3").await;
    denied(&mut acme, "Action: QueueStatus\r\nQueue: support\r\n", "q1").await;
    denied(
        &mut acme,
        "Action: Originate\r\nChannel: Local/600@default\r\nApplication: Wait\r\nData: 1\r\n",
        "o1",
    )
    .await;
    let (_, q, done) = acme.list("Action: QueueStatus\r\n", "qs").await;
    assert!(q.iter().all(|m| m.get("Queue") == Some("sales")), "{q:?}");
    assert_eq!(done.get("ListItems").unwrap().parse::<usize>().unwrap(), q.len());
    // Its own channel it may hang up.
    let mine = items[0].get("Channel").unwrap();
    acme.send(&format!("Action: Hangup\r\nChannel: {mine}\r\nActionID: h-own\r\n\r\n"))
        .await;
    assert_eq!(acme.response("h-own").await.get("Response"), Some("Success"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_allow_and_deny_lists() {
    let (_sim, proxy) = setup().await;
    let mut c = Client::login(proxy.addr(), "lists", "lists-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    c.send("Action: DBPut\r\nFamily: f\r\nKey: k\r\nVal: v\r\nActionID: ok\r\n\r\n")
        .await;
    assert_eq!(c.response("ok").await.get("Response"), Some("Success"));
    denied(&mut c, "Action: DBDelTree\r\nFamily: f\r\n", "d1").await;
    denied(&mut c, "Action: CoreShowChannels\r\n", "d2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_address_acl_refuses_like_a_bad_login() {
    let (_sim, proxy) = setup().await;
    let mut c = Client::connect(proxy.addr()).await;
    c.send("Action: Login\r\nUsername: faraway\r\nSecret: faraway-secret\r\nActionID: l\r\n\r\n")
        .await;
    assert_eq!(c.response("l").await.get("Message"), Some("Authentication failed"));
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_filters_from_config_and_the_filter_action() {
    let (sim, proxy) = setup().await;
    let mut f = Client::login(proxy.addr(), "filtered", "filtered-secret").await;
    let mut admin = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut admin, "pbx1").await;
    // A session filter through the Filter action (admin has system): advanced form.
    admin
        .send("Action: Filter\r\nOperation: Add\r\nMatchCriteria: action(exclude),header(UserEvent),method(starts_with)\r\nFilter: Skip\r\nActionID: flt\r\n\r\n")
        .await;
    assert_eq!(admin.response("flt").await.get("Message"), Some("Success"));
    admin
        .send("Action: Filter\r\nOperation: Add\r\nFilter: bad(regex\r\nActionID: bad\r\n\r\n")
        .await;
    assert_eq!(
        admin.response("bad").await.get("Message"),
        Some("Filter did not compile.  Check the syntax of the filter given.")
    );
    let mut burst = String::new();
    for name in ["Noise", "SkipMe", "Good"] {
        burst.push_str(&format!(
            "Action: UserEvent\r\nUserEvent: {name}\r\nActionID: ue-{name}\r\n\r\n"
        ));
    }
    admin.send(&burst).await;
    sim.set_firehose(None);
    // The filtered user: only UserEvents, not Noise. First UserEvent it sees is SkipMe.
    let first = f
        .until(|m| m.event_name().is_some() && m.event_name() != Some("FullyBooted"))
        .await;
    assert_eq!(first.get("UserEvent"), Some("SkipMe"), "{first:?}");
    let second = f.until(|m| m.event_name().is_some()).await;
    assert_eq!(second.get("UserEvent"), Some("Good"), "{second:?}");
    // The admin session: everything but SkipMe*.
    let seen: Vec<String> = {
        let mut v = Vec::new();
        while v.len() < 2 {
            let m = admin.until(|m| m.event_name() == Some("UserEvent")).await;
            v.push(m.get("UserEvent").unwrap().to_owned());
        }
        v
    };
    assert_eq!(seen, vec!["Noise", "Good"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_connection_caps() {
    let (_sim, proxy) = setup().await;
    let mut c = Client::login(proxy.addr(), "limited", "limited-secret").await;
    let mut burst = String::new();
    for i in 0..20 {
        burst.push_str(&format!("Action: Ping\r\nActionID: p{i}\r\n\r\n"));
    }
    let t = std::time::Instant::now();
    c.send(&burst).await;
    let mut allowed = 0;
    for i in 0..20 {
        let r = c.response(&format!("p{i}")).await;
        match r.get("Ping") {
            Some("Pong") => allowed += 1,
            _ => assert_eq!(r.get("Message"), Some("Rate limit exceeded"), "{r:?}"),
        }
    }
    // The burst (5) passes, then one more per second at most: bounded by the time the 20
    // took, however long that was.
    let took = t.elapsed().as_secs_f64();
    assert!(allowed >= 5, "only {allowed} of 20 allowed");
    assert!(
        f64::from(allowed) <= 5.0 + took,
        "{allowed} of 20 allowed in {took:.3} s"
    );
    // Still connected, and allowed again once the bucket refills (polled).
    let end = tokio::time::Instant::now() + DEADLINE;
    for n in 0.. {
        c.send(&format!("Action: Ping\r\nActionID: later{n}\r\n\r\n")).await;
        let r = c.response(&format!("later{n}")).await;
        if r.get("Ping") == Some("Pong") {
            break;
        }
        assert_eq!(r.get("Message"), Some("Rate limit exceeded"), "{r:?}");
        assert!(tokio::time::Instant::now() < end, "never allowed again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One connection at a time for this user.
    let mut second = Client::connect(proxy.addr()).await;
    second
        .send("Action: Login\r\nUsername: limited\r\nSecret: limited-secret\r\nActionID: l2\r\n\r\n")
        .await;
    assert_eq!(
        second.response("l2").await.get("Message"),
        Some("Too many connections for this user")
    );
    assert!(second.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_ban_the_address_and_the_audit_log_has_no_secrets() {
    let sim = sim("pbx1").await;
    let config = format!(
        "[limits]\nfailed_logins = 2\nfailed_login_window_secs = 60\nban_secs = 60\n\n{}{POLICY_USERS}",
        upstreams_toml(&[&sim])
    );
    let proxy = start_proxy_env(&config, &[("RUST_LOG", "trace")], true);
    for i in 0..3 {
        let mut c = Client::connect(proxy.addr()).await;
        c.send(&format!(
            "Action: Login\r\nUsername: admin\r\nSecret: wrong-{i}\r\nActionID: l\r\n\r\n"
        ))
        .await;
        assert_eq!(c.response("l").await.get("Message"), Some("Authentication failed"));
    }
    // Banned now: even the right secret is refused.
    let mut c = Client::connect(proxy.addr()).await;
    c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: l\r\n\r\n")
        .await;
    assert_eq!(c.response("l").await.get("Message"), Some("Authentication failed"));

    // The audit log has a line per refused action; no secret at any level.
    let sim2 = common::sim("pbx2").await;
    let proxy2 = start_proxy_env(
        &format!("{}{POLICY_USERS}", upstreams_toml(&[&sim2])),
        &[("RUST_LOG", "trace")],
        true,
    );
    let mut d = Client::login(proxy2.addr(), "dialer", "dialer-secret").await;
    wait_upstream(&mut d, "pbx2").await;
    denied(&mut d, "Action: Command\r\nCommand: !sh\r\n", "x").await;
    d.send("Action: Challenge\r\nAuthType: MD5\r\nActionID: ch\r\n\r\n")
        .await;
    d.response("ch").await;
    eventually("the audit line", || {
        proxy2
            .log()
            .lines()
            .any(|l| l.contains("amiproxy::audit") && l.contains("refused"))
    })
    .await;
    for p in [&proxy, &proxy2] {
        let log = p.log();
        assert!(log.contains("amiproxy::audit"), "no audit line in log");
        for secret in ["admin-secret", "dialer-secret", "wrong-0", "wrong-1"] {
            assert!(!log.contains(secret), "secret {secret} leaked into the log");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_connections_are_capped() {
    let sim = common::sim("pbx1").await;
    let proxy = start_proxy(&format!(
        "[limits]\nmax_connections = 2\n\n{}{POLICY_USERS}",
        upstreams_toml(&[&sim])
    ));
    let _a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let b = Client::connect(proxy.addr()).await;
    // The third is closed at once, without a banner.
    let mut raw = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read(&mut raw, &mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "got {n:?}");
    // A freed slot can be used again.
    drop(b);
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut c = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let n = tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read(&mut c, &mut buf))
            .await
            .unwrap();
        if matches!(n, Ok(n) if n > 0) {
            assert!(buf.starts_with(b"Asterisk Call Manager/"));
            break;
        }
        assert!(tokio::time::Instant::now() < end, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_tricks_do_not_pass_the_checks() {
    let (_sim, proxy) = setup().await;
    let mut d = Client::login(proxy.addr(), "dialer", "dialer-secret").await;
    wait_upstream(&mut d, "pbx1").await;
    // A value that is not UTF-8 cannot be checked, so it is refused.
    d.send_bytes(b"Action: Originate\r\nChannel: Local/100@default\r\nApplication: Set\r\nData: FILE(/etc/x)=y \xff\r\nActionID: u8\r\n\r\n").await;
    assert_eq!(d.response("u8").await.get("Message"), Some("Permission denied"));
    // Leading control bytes are skipped as Asterisk skips them, so the path is seen.
    d.send_bytes(b"Action: GetConfig\r\nFilename: \x0b/etc/passwd\r\nActionID: vt\r\n\r\n")
        .await;
    assert_eq!(d.response("vt").await.get("Message"), Some("Permission denied"));
    d.send_bytes(b"Action: \x0bCommand\r\nCommand: !sh\r\nActionID: vt2\r\n\r\n")
        .await;
    assert_eq!(d.response("vt2").await.get("Message"), Some("Permission denied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_users_cannot_reach_around_their_scope() {
    let (_sim, proxy) = setup().await;
    let mut acme = Client::login(proxy.addr(), "acme", "acme-secret").await;
    wait_upstream(&mut acme, "pbx1").await;
    denied(&mut acme, "Action: QueueReset\r\n", "qr").await;
    denied(
        &mut acme,
        "Action: QueuePause\r\nInterface: Local/100@default\r\nPaused: true\r\n",
        "qp",
    )
    .await;
    denied(
        &mut acme,
        "Action: Originate\r\nChannel: Local/100@default\r\nApplication: ChanSpy\r\nData: Local/600\r\n",
        "spy",
    )
    .await;
    denied(&mut acme, "Action: BridgeDestroy\r\nBridgeUniqueid: 1234\r\n", "br").await;
    // `*` stays within one part of a channel name.
    denied(
        &mut acme,
        "Action: Originate\r\nChannel: Local/100@default/n@x\r\nApplication: Wait\r\nData: 1\r\n",
        "slash",
    )
    .await;
    acme.send(
        "Action: QueuePause\r\nQueue: sales\r\nInterface: Local/100@default\r\nPaused: true\r\nActionID: ok\r\n\r\n",
    )
    .await;
    assert_ne!(acme.response("ok").await.get("Message"), Some("Permission denied"));
}

/// A call's teardown arrives in one read: the tenant's channel hangs up, then the trunk leg
/// it dialled, which names the tenant's channel only by its Linkedid. The index has learned
/// the first Hangup by the time the session judges the trunk's events; the tenant must
/// still see them, and must not see another call's trunk leg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_its_whole_call_when_the_teardown_comes_in_one_read() {
    let (sim, proxy) = setup().await;
    let mut acme = Client::login(proxy.addr(), "acme", "acme-secret").await;
    wait_upstream(&mut acme, "pbx1").await;
    let event = |name: &str, chan: &str, uid: &str, linked: &str| {
        format!(
            "Event: {name}\r\nPrivilege: call,all\r\nChannel: {chan}\r\nUniqueid: {uid}\r\nLinkedid: {linked}\r\n\r\n"
        )
    };
    let (mine, trunk) = ("Local/100@default-0000beef;1", "PJSIP/trunk-0000beef");
    let burst = [
        event("Newchannel", mine, "1700.801", "1700.801"),
        event("Newchannel", trunk, "1700.802", "1700.801"),
        event("Newchannel", "PJSIP/trunk-0000cafe", "1700.803", "1700.900"),
        event("Hangup", mine, "1700.801", "1700.801"),
        event("Hangup", trunk, "1700.802", "1700.801"),
        event("Hangup", "PJSIP/trunk-0000cafe", "1700.803", "1700.900"),
        // The end marker: the tenant's own channel again.
        event("Newchannel", "Local/100@default-0000f00d;1", "1700.804", "1700.804"),
    ]
    .concat();
    sim.send_garbage(burst.as_bytes());
    let mut seen = Vec::new();
    loop {
        let m = acme.until(|m| m.event_name().is_some()).await;
        let uid = m.get("Uniqueid").unwrap_or("").to_owned();
        if uid == "1700.804" {
            break;
        }
        if uid.starts_with("1700.8") {
            seen.push(format!(
                "{} {}",
                m.event_name().unwrap_or(""),
                m.get("Channel").unwrap_or("")
            ));
        }
    }
    assert_eq!(
        seen,
        [
            format!("Newchannel {mine}"),
            format!("Newchannel {trunk}"),
            format!("Hangup {mine}"),
            format!("Hangup {trunk}"),
        ]
    );
    // A later read: another tenant's call that kept the ended call's Linkedid (a transfer)
    // is no longer about the tenant's channel.
    let later = [
        event("Newchannel", "PJSIP/beta-0000dead", "1700.807", "1700.801"),
        event("Newchannel", "Local/100@default-0000f00e;1", "1700.808", "1700.808"),
    ]
    .concat();
    sim.send_garbage(later.as_bytes());
    let next = acme
        .until(|m| m.get("Uniqueid").is_some_and(|u| u == "1700.807" || u == "1700.808"))
        .await;
    assert_eq!(next.get("Uniqueid"), Some("1700.808"), "{next:?}");
}

/// A tenant that reuses an ActionID while a list is still coming must not learn, from a
/// list's `ListItems`, how many items the scope hid from another list: the merged list's
/// hidden items on pbx2 used to be taken off the pbx2-only list's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_action_id_does_not_move_hidden_items_between_lists() {
    let (s1, s2) = (sim("pbx1").await, sim("pbx2").await);
    let proxy = start_proxy(&format!("{}{POLICY_USERS}", upstreams_toml(&[&s1, &s2])));
    let mut admin = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let mut acme = Client::login(proxy.addr(), "acme", "acme-secret").await;
    for server in ["pbx1", "pbx2"] {
        wait_upstream(&mut admin, server).await;
        // A call of the tenant's and one of another's on each box: two Local channels each
        // (`;1`, `;2`), up for the two seconds extension 100 waits.
        for ext in ["600", "100"] {
            let aid = format!("{ext}-{server}");
            admin.send(&format!("Action: Originate\r\nChannel: Local/{ext}@default\r\nApplication: Wait\r\nData: 60\r\nAsync: true\r\nServer: {server}\r\nActionID: {aid}\r\n\r\n")).await;
            admin
                .until(|m| m.event_name() == Some("OriginateResponse") && m.action_id() == Some(aid.as_str()))
                .await;
        }
    }
    // pbx1 holds the merged list back while the pbx2-only list, same ActionID, completes.
    s1.set_stalled(true);
    acme.send("Action: CoreShowChannels\r\nActionID: x\r\n\r\nAction: CoreShowChannels\r\nActionID: x\r\nServer: pbx2\r\n\r\n")
        .await;
    let complete = |m: &ami_proto::Message| m.event_name() == Some("CoreShowChannelsComplete");
    let only = acme.until(|m| complete(m) && m.get("Server") == Some("pbx2")).await;
    s1.set_stalled(false);
    let merged = acme.until(complete).await;
    assert_eq!(only.get("ListItems"), Some("2"), "{only:?}");
    assert_eq!(merged.get("ListItems"), Some("4"), "{merged:?}");
}
