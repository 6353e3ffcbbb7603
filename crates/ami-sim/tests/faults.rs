//! Fault controls, generators and configuration variants.

mod common;
use ami_sim::SimConfig;
use common::{eventually, header, sim, sim_with, Client, DEADLINE};
use std::time::{Duration, Instant};

#[tokio::test]
async fn bad_login_waits_the_real_one_second_by_default() {
    let sim = sim_with(SimConfig::default()).await;
    let mut c = Client::connect(&sim).await;
    let t = Instant::now();
    c.send(b"Action: Login\r\nUsername: admin\r\nSecret: nope\r\nActionID: b\r\n\r\n")
        .await;
    let r = c.next().await;
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(
        r,
        "Response: Error\r\nActionID: b\r\nMessage: Authentication failed\r\n\r\n"
    );
    assert!(c.closed_within(DEADLINE).await);
}

#[tokio::test]
async fn drop_connections_closes_everyone() {
    let sim = sim().await;
    let mut a = Client::connect(&sim).await;
    a.login("admin", "admin-secret", "off").await;
    let mut b = Client::connect(&sim).await;
    eventually(DEADLINE, || sim.connection_count() == 2).await;
    sim.drop_connections();
    assert!(a.closed_within(DEADLINE).await);
    assert!(b.closed_within(DEADLINE).await);
    eventually(DEADLINE, || sim.connection_count() == 0).await;
    // New connections are still accepted.
    let mut c = Client::connect(&sim).await;
    c.login("admin", "admin-secret", "off").await;
}

#[tokio::test]
async fn stop_and_restart_listener() {
    let sim = sim().await;
    let mut a = Client::connect(&sim).await;
    a.login("admin", "admin-secret", "off").await;
    sim.stop_listener().await;
    assert!(a.closed_within(DEADLINE).await);
    assert!(tokio::net::TcpStream::connect(sim.addr()).await.is_err());
    sim.restart_listener().await.unwrap();
    let mut b = Client::connect(&sim).await;
    assert_eq!(b.banner, "Asterisk Call Manager/11.0.0\r\n");
    b.login("admin", "admin-secret", "off").await;
}

#[tokio::test]
async fn firehose_is_gapless_and_shared() {
    let sim = sim().await;
    let mut a = Client::connect(&sim).await;
    a.login("admin", "admin-secret", "user").await;
    let mut b = Client::connect(&sim).await;
    b.login("readonly", "ro-secret", "on").await;
    sim.set_firehose(Some(2000));
    let first = a.next_event("UserEvent").await;
    let mut seq: u64 = header(&first, "SimSeq").unwrap().parse().unwrap();
    assert!(first.starts_with("Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: SimFirehose\r\nSimSeq: "));
    for _ in 0..500 {
        let m = a.next_event("UserEvent").await;
        let n: u64 = header(&m, "SimSeq").unwrap().parse().unwrap();
        assert_eq!(n, seq + 1);
        seq = n;
    }
    sim.set_firehose(None);
    // readonly (read call,system) must not see user-class events.
    let r = b.action("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert!(r.contains("Pong"));
}

#[tokio::test]
async fn stalled_sim_answers_nothing_until_released() {
    let sim = sim().await;
    let mut a = Client::connect(&sim).await;
    a.login("admin", "admin-secret", "off").await;
    sim.set_stalled(true);
    a.send(b"Action: Ping\r\nActionID: s\r\n\r\n").await;
    // A new connection's banner (sent even while stalled): this test's one thread ran the
    // sim's tasks between the Ping reaching the socket and the banner, so a sim that did not
    // stall would have answered by now, and the answer would be waiting on `a`.
    let b = Client::connect(&sim).await;
    assert!(b.banner.starts_with("Asterisk Call Manager/"), "{}", b.banner);
    assert!(a.nothing_received(), "answered while stalled");
    sim.set_stalled(false);
    let r = a.next().await;
    assert!(r.starts_with("Response: Success\r\nActionID: s\r\nPing: Pong"), "{r}");
}

#[tokio::test]
async fn garbage_emit_and_shutdown() {
    let sim = sim().await;
    let mut a = Client::connect(&sim).await;
    a.login("admin", "admin-secret", "on").await;
    a.next_event("SuccessfulAuth").await;
    sim.send_garbage(b"\x00\xffnot ami\r\n\r\n");
    let g = a.next().await;
    assert!(g.contains("not ami"));
    let ev = ami_proto::MessageBuilder::event("TestEvent")
        .header("Privilege", "call,all")
        .header("X", "1")
        .build();
    sim.emit(ev);
    let m = a.next_event("TestEvent").await;
    assert_eq!(m, "Event: TestEvent\r\nPrivilege: call,all\r\nX: 1\r\n\r\n");
    sim.shutdown().await;
    let m = a.next().await;
    assert_eq!(
        m,
        "Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: False\r\n\r\n"
    );
    assert!(a.closed_within(DEADLINE).await);
}

#[tokio::test]
async fn system_name_and_channel_base_and_legacy_command() {
    let sim = sim_with(SimConfig {
        system_name: Some("pbx1".into()),
        channel_id_base: 0x100,
        legacy_command: true,
        ..SimConfig::default()
    })
    .await;
    let mut a = Client::connect(&sim).await;
    a.login("admin", "admin-secret", "call").await;
    a.send(b"Action: Originate\r\nChannel: Local/600@default\r\nApplication: Wait\r\nData: 5\r\nAsync: true\r\n\r\n")
        .await;
    let nc = a.next_event("Newchannel").await;
    assert!(
        nc.starts_with("Event: Newchannel\r\nPrivilege: call,all\r\nSystemName: pbx1\r\n"),
        "{nc}"
    );
    assert_eq!(header(&nc, "Channel"), Some("Local/600@default-00000100;1"));
    assert!(header(&nc, "Uniqueid").unwrap().starts_with("pbx1-"));
    eventually(DEADLINE, || sim.channel_count() == 2).await;
    a.send(b"Action: Command\r\nCommand: core show channels concise\r\nActionID: lc\r\n\r\n")
        .await;
    let r = loop {
        let m = a.next().await;
        if m.starts_with("Response:") {
            break m;
        }
    };
    assert!(
        r.starts_with("Response: Follows\r\nPrivilege: Command\r\nActionID: lc\r\nLocal/600@default-00000100;"),
        "{r}"
    );
    assert!(r.ends_with("\n--END COMMAND--\r\n\r\n"), "{r}");
    let h = a
        .action("Action: Hangup\r\nChannel: Local/600@default-00000100;1\r\n\r\n")
        .await;
    assert!(h.contains("Channel Hungup"), "{h}");
    eventually(DEADLINE, || sim.channel_count() == 0).await;
}

#[tokio::test]
async fn call_rate_generates_calls() {
    let sim = sim().await;
    let mut a = Client::connect(&sim).await;
    a.login("admin", "admin-secret", "call").await;
    sim.set_call_rate(20.0);
    for _ in 0..3 {
        a.next_event("Newchannel").await;
    }
    a.next_event("Hangup").await;
    sim.set_call_rate(0.0);
}

#[tokio::test]
async fn rejected_lines_and_binary_input_do_not_panic() {
    let sim = sim().await;
    let mut a = Client::connect(&sim).await;
    a.login("admin", "admin-secret", "off").await;
    let mut long = b"Action: Ping\r\nActionID: big\r\nX: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    long.extend_from_slice(b"\r\n\r\n");
    a.send(&long).await;
    let r = a.next().await;
    assert_eq!(
        r,
        "Response: Error\r\nActionID: big\r\nMessage: Failed to parse message: line too long\r\n\r\n"
    );
    a.send(b"\xff\xfe: \x00\r\nAction: \xff\r\n\r\n").await;
    let r = a.next().await;
    assert!(r.starts_with("Response: Error"), "{r}");
    let r = a.action("Action: Ping\r\n\r\n").await;
    assert!(r.contains("Pong"));
}
