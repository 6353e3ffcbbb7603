//! Faults through the real binary: upstreams that restart or send junk or an endless line,
//! clients that stop reading or send junk, TLS handshakes that go wrong, and Asterisk's
//! authlimit/authtimeout. In every case the proxy keeps serving everyone else.

mod common;

use ami_proto::{AmiDecoder, Decoded, Message, Role};
use bytes::BytesMut;
use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn is_status(m: &Message, server: &str, status: &str) -> bool {
    m.event_name() == Some("ProxyUpstreamStatus") && m.get("Server") == Some(server) && m.get("Status") == Some(status)
}

fn firehose_seq(m: &Message) -> Option<(String, u64)> {
    if m.get("UserEvent") != Some("SimFirehose") {
        return None;
    }
    let server = m.get("Server").expect("firehose events are tagged").to_owned();
    Some((server, m.get("SimSeq").unwrap().parse().unwrap()))
}

/// Reads AMI messages from the read half of a socket (when the write half is busy elsewhere).
struct Reader<R> {
    rd: R,
    buf: BytesMut,
    dec: AmiDecoder,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(rd: R) -> Self {
        Reader {
            rd,
            buf: BytesMut::new(),
            dec: AmiDecoder::new(Role::Upstream),
        }
    }

    /// The next banner or message; None at EOF. Panics after `DEADLINE`.
    async fn next(&mut self) -> Option<Decoded> {
        let fut = async {
            loop {
                if let Some(d) = self.dec.decode(&mut self.buf).expect("well-formed stream") {
                    return Some(d);
                }
                let mut chunk = [0u8; 16384];
                match self.rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(DEADLINE, fut)
            .await
            .expect("a message before the deadline")
    }

    async fn message(&mut self) -> Message {
        match self.next().await {
            Some(Decoded::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Follows the merged stream of a client that watches the firehose of every upstream while
/// `restarted` goes up and down: each server's `SimSeq` must be gapless except across a
/// Disconnected/Connected pair of that server.
struct SeqWatch {
    restarted: &'static str,
    last: HashMap<String, u64>,
    down: bool,
    gap_allowed: bool,
    disconnects: usize,
    reconnects: usize,
    events: u64,
}

impl SeqWatch {
    fn new(restarted: &'static str) -> Self {
        SeqWatch {
            restarted,
            last: HashMap::new(),
            down: false,
            gap_allowed: false,
            disconnects: 0,
            reconnects: 0,
            events: 0,
        }
    }

    fn check(&mut self, m: &Message) {
        assert_ne!(
            m.event_name(),
            Some("ProxyEventsDropped"),
            "the watcher lost events: {m:?}"
        );
        if m.event_name() == Some("ProxyUpstreamStatus") {
            let server = m.get("Server").unwrap();
            let status = m.get("Status").unwrap();
            if server != self.restarted {
                // Only its first connect, announced while the watcher was logging in.
                assert!(
                    status == "Connected" && !self.last.contains_key(server),
                    "{server} should stay up: {m:?}"
                );
                return;
            }
            match status {
                "Disconnected" => {
                    assert!(!self.down, "two Disconnected in a row: {m:?}");
                    assert!(m.get("Reason").is_some(), "{m:?}");
                    self.down = true;
                    self.disconnects += 1;
                }
                "Connected" if self.down => {
                    self.down = false;
                    self.gap_allowed = true;
                    self.reconnects += 1;
                }
                // The first connect, announced while the watcher was logging in.
                "Connected" => assert_eq!(self.disconnects, 0, "Connected while up: {m:?}"),
                other => panic!("unknown status {other}"),
            }
            return;
        }
        let Some((server, seq)) = firehose_seq(m) else { return };
        self.events += 1;
        let restarted = server == self.restarted;
        assert!(
            !(restarted && self.down),
            "an event from {server} while it is down: {m:?}"
        );
        if let Some(&last) = self.last.get(&server) {
            if restarted && self.gap_allowed {
                assert!(seq > last, "{server} went back: {last} -> {seq}");
            } else {
                assert_eq!(seq, last + 1, "events lost from {server} outside a down window");
            }
        }
        if restarted {
            self.gap_allowed = false;
        }
        self.last.insert(server, seq);
    }

    async fn read_until(&mut self, c: &mut Client, mut f: impl FnMut(&Message) -> bool) -> Message {
        loop {
            let m = c.next().await.expect("the watcher stays connected");
            self.check(&m);
            if f(&m) {
                return m;
            }
        }
    }
}

/// Sends DBPut actions four at a time until `stop`, most to the default upstream (pbx1, the
/// one that restarts) and every fourth to pbx2. Every action must be answered: success, or
/// an error naming pbx1. Returns (successes, errors).
async fn action_load(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> (usize, usize) {
    let mut c = Client::connect(addr).await;
    c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nEvents: off\r\nActionID: l\r\n\r\n")
        .await;
    assert_eq!(c.response("l").await.get("Message"), Some("Authentication accepted"));
    let (mut ok, mut errors, mut n) = (0, 0, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let mut outstanding = HashMap::new();
        let mut batch = String::new();
        for _ in 0..4 {
            n += 1;
            let aid = format!("load-{n}");
            let server = if n % 4 == 0 { "Server: pbx2\r\n" } else { "" };
            batch.push_str(&format!(
                "Action: DBPut\r\n{server}Family: load\r\nKey: k{n}\r\nVal: v\r\nActionID: {aid}\r\n\r\n"
            ));
            outstanding.insert(aid, !server.is_empty());
        }
        c.send(&batch).await;
        while !outstanding.is_empty() {
            let m = match c.next_within(DEADLINE).await {
                Ok(Some(m)) => m,
                Ok(None) => panic!("the proxy closed the action client"),
                Err(()) => panic!("actions never answered: {:?}", outstanding.keys()),
            };
            let Some(aid) = m.action_id() else { continue };
            let to_pbx2 = outstanding
                .remove(aid)
                .unwrap_or_else(|| panic!("unexpected or repeated answer {m:?}"));
            match (m.get("Response"), m.get("Message")) {
                (Some("Success"), Some("Updated database successfully")) => ok += 1,
                (Some("Error"), Some(text)) if !to_pbx2 && text.contains("pbx1") => errors += 1,
                _ => panic!("bad answer (to pbx2: {to_pbx2}): {m:?}"),
            }
        }
    }
    c.send("Action: Ping\r\nActionID: load-end\r\n\r\n").await;
    assert_eq!(c.response("load-end").await.get("Ping"), Some("Pong"));
    (ok, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restarted_20_times_under_load() {
    let s1 = sim_with("pbx1", |c| c.channel_id_base = 0).await;
    let s2 = sim_with("pbx2", |c| c.channel_id_base = 0x1000).await;
    let proxy = start_proxy(&format!(
        "[routing]\ndefault_upstream = \"pbx1\"\n\n{}{USERS}",
        upstreams_toml(&[&s1, &s2])
    ));
    let mut watcher = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut watcher, "pbx1").await;
    wait_upstream(&mut watcher, "pbx2").await;
    let mut watch = SeqWatch::new("pbx1");
    s1.set_firehose(Some(1000));
    s2.set_firehose(Some(1000));
    for server in ["pbx1", "pbx2"] {
        watch
            .read_until(&mut watcher, |m| firehose_seq(m).is_some_and(|(s, _)| s == server))
            .await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(action_load(proxy.addr(), stop.clone()));

    for cycle in 0..20 {
        s1.stop_listener().await;
        watch
            .read_until(&mut watcher, |m| is_status(m, "pbx1", "Disconnected"))
            .await;
        s1.restart_listener().await.unwrap();
        watch
            .read_until(&mut watcher, |m| is_status(m, "pbx1", "Connected"))
            .await;
        // Events resume: a few from pbx1 after each reconnect, checked for gaps.
        for _ in 0..20 {
            watch
                .read_until(&mut watcher, |m| firehose_seq(m).is_some_and(|(s, _)| s == "pbx1"))
                .await;
        }
        assert_eq!(watch.reconnects, cycle + 1);
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, errors) = load.await.expect("the action client never failed");
    s1.set_firehose(None);
    s2.set_firehose(None);
    assert_eq!((watch.disconnects, watch.reconnects), (20, 20));
    assert!(ok > 0, "no action succeeded ({errors} errors)");
    assert_eq!(
        s1.lagged_events() + s2.lagged_events(),
        0,
        "the proxy fell behind a sim"
    );
    // The watcher is still connected and served.
    watcher
        .send("Action: Ping\r\nServer: pbx1\r\nActionID: end\r\n\r\n")
        .await;
    let r = watch.read_until(&mut watcher, |m| m.action_id() == Some("end")).await;
    assert_eq!(r.get("Response"), Some("Success"), "{r:?}");
    println!(
        "20 restarts: {} events checked, {ok} actions answered with success, {errors} with an error naming pbx1",
        watch.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_client_does_not_hold_up_a_normal_one() {
    let sim = sim("pbx1").await;
    // The half-open client's session may block on its full socket for as long as the test
    // runs: it is to fall behind the ring, not to be closed by the write timeout.
    let proxy = start_proxy(&format!(
        "[proxy]\nevent_buffer = 4096\nwrite_timeout_secs = 3600\n\n{}{USERS}",
        upstreams_toml(&[&sim])
    ));
    let mut normal = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut normal, "pbx1").await;
    // The half-open client: a tiny receive window, logs in, then never reads and never closes.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(proxy.addr()).await.unwrap();
    let mut half_open = Client::over(Box::new(stream)).await;
    half_open
        .send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: l\r\n\r\n")
        .await;
    assert_eq!(
        half_open.response("l").await.get("Message"),
        Some("Authentication accepted")
    );

    // The normal client reads 30k events without a gap and gets an answer in each round.
    // Rounds of 1,000 events (a quarter of the ring): it keeps up by design, at any speed.
    // Kernel buffers on loopback hold megabytes: with 1 KB of padding, 30k events (30 MB)
    // fill them, so the half-open client's session blocks and its ring is lapped.
    const ROUND: u64 = 1000;
    let mut last = 0u64;
    for round in 0..30 {
        let want = (round + 1) * ROUND;
        emit_numbered(&sim, round * ROUND + 1, want, 1000);
        let aid = format!("ping-{round}");
        normal
            .send(&format!("Action: Ping\r\nServer: pbx1\r\nActionID: {aid}\r\n\r\n"))
            .await;
        let mut answered = false;
        while last < want || !answered {
            let m = normal.next().await.expect("the normal client stays connected");
            assert_ne!(m.event_name(), Some("ProxyEventsDropped"), "{m:?}");
            if let Some((_, seq)) = numbered(&m) {
                assert_eq!(seq, last + 1, "gap");
                last = seq;
            } else if m.action_id() == Some(aid.as_str()) {
                assert_eq!(m.get("Response"), Some("Success"), "{m:?}");
                answered = true;
            }
        }
    }
    // The half-open client was left behind: once it reads, it learns it lost events, and it
    // is still connected.
    let dropped = half_open.event("ProxyEventsDropped").await;
    assert!(dropped.get("Count").unwrap().parse::<u64>().unwrap() > 0);
    half_open.send("Action: Ping\r\nActionID: back\r\n\r\n").await;
    assert_eq!(half_open.response("back").await.get("Ping"), Some("Pong"));
}

/// Reads until `server`'s ProxyUpstreamStatus is `status`; panics after `DEADLINE`.
async fn wait_status(c: &mut Client, server: &str, status: &str) -> Message {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            Ok(Some(m)) if is_status(&m, server, status) => return m,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the proxy closed a client"),
            Err(()) => panic!("no ProxyUpstreamStatus {status} for {server} within {DEADLINE:?}"),
        }
    }
}

/// Clients see `server` go down and come back; actions and events through it work again.
async fn expect_relink(clients: &mut [Client], server: &str) {
    for c in clients.iter_mut() {
        let down = wait_status(c, server, "Disconnected").await;
        assert!(down.get("Reason").is_some(), "{down:?}");
        wait_status(c, server, "Connected").await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let aid = format!("after-{server}-{i}");
        c.send(&format!(
            "Action: UserEvent\r\nServer: {server}\r\nUserEvent: Back{i}\r\nActionID: {aid}\r\n\r\n"
        ))
        .await;
        let r = c.response(&aid).await;
        assert_eq!(r.get("Response"), Some("Success"), "{r:?}");
        let ev = c.until(|m| m.get("UserEvent") == Some(&format!("Back{i}"))).await;
        assert_eq!(ev.get("Server"), Some(server));
    }
}

async fn two_clients(proxy: &Proxy) -> Vec<Client> {
    let mut a = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let b = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut a, "pbx1").await;
    wait_upstream(&mut a, "pbx2").await;
    vec![a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_sending_garbage_is_relinked() {
    let s1 = sim("pbx1").await;
    let s2 = sim("pbx2").await;
    let proxy = start_proxy(&format!("{}{USERS}", upstreams_toml(&[&s1, &s2])));
    let mut clients = two_clients(&proxy).await;
    s1.send_garbage(b"\x00\xff\xfe\x16\x03garbage \x80\x81 not AMI\r\n\x01\x02\x03\r\n\r\n\xde\xad\xbe\xef\r\n\r\n");
    expect_relink(&mut clients, "pbx1").await;
}

/// A message that starts with NUL is not AMI (Asterisk writes C strings); passed on, it would
/// read as a pre-encoded JSON event on a WebSocket session's pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_message_starting_with_nul_is_refused() {
    let s1 = sim("pbx1").await;
    let s2 = sim("pbx2").await;
    let proxy = start_proxy(&format!("{}{USERS}", upstreams_toml(&[&s1, &s2])));
    let mut clients = two_clients(&proxy).await;
    s1.send_garbage(b"\x00Event: Forged\r\nPrivilege: user,all\r\n\r\n");
    expect_relink(&mut clients, "pbx1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_sending_an_endless_line_is_relinked() {
    let s1 = sim("pbx1").await;
    let s2 = sim("pbx2").await;
    let proxy = start_proxy(&format!("{}{USERS}", upstreams_toml(&[&s1, &s2])));
    let mut clients = two_clients(&proxy).await;
    // One line with no end in sight: twice the longest line the proxy takes from an
    // upstream (1 MiB), in one piece, so a link that comes back gets none of it. The proxy
    // must give up on the link without waiting for the rest.
    let mut line = b"Event: UserEvent\r\nUserEvent: Endless\r\nData: ".to_vec();
    line.resize(line.len() + (2 << 20), b'x');
    s2.send_garbage(&line);
    loop {
        let m = clients[0].next().await.expect("the proxy closed a client");
        if is_status(&m, "pbx2", "Disconnected") {
            break;
        }
        // Nothing else about the links but the late news of one coming up at start-up
        // (see `next_status_change`).
        assert!(
            m.event_name() != Some("ProxyUpstreamStatus") || m.get("Status") == Some("Connected"),
            "{m:?}"
        );
    }
    let mut rest = clients.split_off(1);
    wait_status(&mut clients[0], "pbx2", "Connected").await;
    expect_relink(&mut rest, "pbx2").await;
    // pbx1 was never touched, and the first client still works through pbx2.
    let c = &mut clients[0];
    c.send("Action: DBPut\r\nServer: pbx2\r\nFamily: f\r\nKey: k\r\nVal: v\r\nActionID: put\r\n\r\n")
        .await;
    assert_eq!(c.response("put").await.get("Response"), Some("Success"));
}

/// A genuine ClientHello, as the first bytes a TLS client sends.
fn client_hello(cfg: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

async fn tls_login(addr: std::net::SocketAddr, cfg: &Arc<rustls::ClientConfig>, n: usize) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(
        DEADLINE,
        tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake succeeds");
    let mut c = Client::over(Box::new(tls)).await;
    c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: l\r\n\r\n")
        .await;
    assert_eq!(c.response("l").await.get("Message"), Some("Authentication accepted"));
    let aid = format!("p{n}");
    c.send(&format!("Action: Ping\r\nServer: pbx1\r\nActionID: {aid}\r\n\r\n"))
        .await;
    assert_eq!(c.response(&aid).await.get("Response"), Some("Success"));
}

/// Reads until EOF or a reset; true if that happens within `within`.
async fn closes_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_survives_garbage_and_truncated_handshakes() {
    let sim = sim("pbx1").await;
    let (proxy, ca) = tls_proxy(&[&sim]);
    let addr = proxy.addr();
    let cfg = tls_client_config(&ca, rustls::DEFAULT_VERSIONS);
    let _ = std::fs::remove_dir_all(ca.parent().unwrap());
    tls_login(addr, &cfg, 0).await;
    let hello = client_hello(&cfg);

    // Held open, each stuck at a different point of the handshake.
    let mut held = Vec::new();
    let stuck: [&[u8]; 5] = [
        b"",                                 // says nothing at all
        &hello[..5],                         // a record header, then nothing
        &hello[..hello.len() / 2],           // half a ClientHello
        &hello,                              // a whole ClientHello, then never answers
        b"\x16\x03\x01\x40\x00\x01\x00\x3f", // a 16 KiB record that never comes
    ];
    for bytes in stuck {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        held.push(s);
    }
    tls_login(addr, &cfg, 1).await;

    // Plain text, binary junk and a bad record: the proxy closes each, and serves the next.
    let mut junk = vec![0u8; 64 * 1024];
    let mut x: u32 = 0x1234_5678;
    for b in junk.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let garbage: [&[u8]; 5] = [
        b"Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\n\r\n",
        &junk,
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff",
        b"\x15\x03\x03\x00\x02\x02\x28",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The proxy may close before it has read everything; a reset on write is fine.
        let _ = s.write_all(bytes).await;
        assert!(closes_within(&mut s, DEADLINE).await, "garbage {i} left open");
        tls_login(addr, &cfg, 10 + i).await;
    }
    // Garbage then a closed socket mid-handshake.
    for n in [1, 3, hello.len() - 1] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&hello[..n]).await.unwrap();
        drop(s);
    }
    tls_login(addr, &cfg, 20).await;
    // The stuck handshakes never get a banner in clear text: everything the proxy ever
    // sends on them, read until it gives up on the handshake (after 10 s) and closes them.
    for (i, s) in held.iter_mut().enumerate() {
        let mut got = Vec::new();
        let read = tokio::time::timeout(DEADLINE * 2, s.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "stuck handshake {i} was never closed");
        assert!(
            !got.windows(8).any(|w| w == b"Asterisk"),
            "clear-text banner on a TLS listener: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

/// The answer a malformed message must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Error(&'static str),
    Pong,
    Success(&'static str),
    Unknown,
}

/// 10,000 malformed messages of many shapes on one connection, and what each must get back.
/// Messages with no ActionID are counted by their answer instead.
fn malformed(n: usize) -> (Vec<u8>, HashMap<String, Want>, HashMap<&'static str, usize>) {
    const MISSING: &str = "Missing action in request";
    const LONG: &str = "Failed to parse message: line too long";
    const MANY: &str = "Too many lines in message or allocation failure";
    let mut out = Vec::new();
    let mut want = HashMap::new();
    let mut anonymous: HashMap<&'static str, usize> = HashMap::new();
    let mut x: u32 = 0x9e37_79b9;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let long = "y".repeat(2000);
    for i in 0..n {
        let aid = format!("m-{i}");
        let (text, w): (Vec<u8>, Option<Want>) = match i % 20 {
            0 => (
                format!("ActionID: {aid}\r\nFoo: bar\r\n\r\n").into(),
                Some(Want::Error(MISSING)),
            ),
            1 => (
                format!("Action: \r\nActionID: {aid}\r\n\r\n").into(),
                Some(Want::Error(MISSING)),
            ),
            2 => (
                format!("ActionID: {aid}\r\nAction: Ping\r\nX: {long}\r\n\r\n").into(),
                Some(Want::Error(LONG)),
            ),
            3 => (
                format!("Action: Ping\r\nX: {long}\r\nActionID: {aid}\r\n\r\n").into(),
                Some(Want::Error(LONG)),
            ),
            4 => {
                let mut s = format!("ActionID: {aid}\r\nAction: Ping\r\n");
                for l in 0..140 {
                    s.push_str(&format!("H{l}: v\r\n"));
                }
                s.push_str("\r\n");
                (s.into(), Some(Want::Error(MANY)))
            }
            5 => {
                // A line of binary junk (no line feed in it), no Action.
                let mut s = format!("ActionID: {aid}\r\n").into_bytes();
                s.extend((0..200).map(|_| rnd() as u8).map(|b| if b == b'\n' { b'?' } else { b }));
                s.extend_from_slice(b"\r\n\r\n");
                (s, Some(Want::Error(MISSING)))
            }
            6 => {
                // Binary junk in a header of a good action.
                let mut s = format!("Action: Ping\r\nActionID: {aid}\r\nJunk: ").into_bytes();
                s.extend((0..100).map(|_| rnd() as u8).map(|b| if b == b'\n' { 0 } else { b }));
                s.extend_from_slice(b"\r\n\r\n");
                (s, Some(Want::Pong))
            }
            7 => (
                format!("Action: Ping\r\nActionID: {aid}\r\nX: a\rb\rc\r\n\r\r\n\r\n").into(),
                Some(Want::Pong),
            ),
            8 => (b"\r\r\r\r\n\r\n".to_vec(), None),
            9 => (
                format!("Action: NoSuchAction{i}\r\nActionID: {aid}\r\n\r\n").into(),
                Some(Want::Unknown),
            ),
            10 => (
                format!("action: nosuch{i}\nactionid: {aid}\n\n").into(),
                Some(Want::Unknown),
            ),
            11 => (
                format!("Action: DBGet\r\nActionID: {aid}\r\n\r\n").into(),
                Some(Want::Error("No family specified.")),
            ),
            12 => (
                format!("Action: Originate\r\nActionID: {aid}\r\nApplication: Wait\r\n\r\n").into(),
                Some(Want::Error("Channel not specified")),
            ),
            13 => (
                format!("Action: Challenge\r\nActionID: {aid}\r\n\r\n").into(),
                Some(Want::Error("Must specify AuthType")),
            ),
            14 => (
                format!("Action : Ping\r\nActionID: {aid}\r\n\r\n").into(),
                Some(Want::Error(MISSING)),
            ),
            15 => (
                format!("Action:Ping\r\nActionID:{aid}\r\n\r\n").into(),
                Some(Want::Pong),
            ),
            16 => (
                format!("Action: Login\r\nActionID: {aid}\r\n\r\n").into(),
                Some(Want::Success("Already authenticated")),
            ),
            17 => (
                format!("Action: QueueAdd\r\nActionID: {aid}\r\n\r\n").into(),
                Some(Want::Error("'Queue' and 'Interface' not specified.")),
            ),
            18 => (format!("no colon here\r\n{long}\r\n\r\n").into(), None),
            _ => (
                format!("\r\n\r\n\n\nActionID: {aid}\r\nAction: Ping\r\n\r\n").into(),
                Some(Want::Pong),
            ),
        };
        out.extend_from_slice(&text);
        match w {
            Some(w) => {
                want.insert(aid, w);
            }
            None if i % 20 == 8 => *anonymous.entry(MISSING).or_default() += 1,
            None => *anonymous.entry(LONG).or_default() += 1,
        }
    }
    (out, want, anonymous)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_messages_each_get_their_answer() {
    let sim = sim("pbx1").await;
    // Room for every forwarded one in flight at once: how many are depends on how fast the
    // upstream answers while the flood comes in, and the limit is not what this checks.
    let proxy = start_proxy(&format!(
        "[proxy]\nmax_in_flight_per_session = 10000\n\n{}{USERS}",
        upstreams_toml(&[&sim])
    ));
    let mut other = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut other, "pbx1").await;

    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let (rd, mut wr) = tcp.into_split();
    let mut rd = Reader::new(rd);
    assert!(matches!(rd.next().await, Some(Decoded::Banner(_))));
    wr.write_all(b"Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nEvents: off\r\nActionID: l\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(rd.message().await.get("Message"), Some("Authentication accepted"));

    let (bytes, mut want, mut anonymous) = malformed(10_000);
    let total = bytes.len();
    // Meanwhile the other client keeps getting answers, local and forwarded; the first two
    // while the flood is stopped halfway (in the middle of a message), so they are answered
    // while that connection is mid-flood, whatever the speed of the machine.
    let (halfway_tx, halfway_rx) = tokio::sync::oneshot::channel::<()>();
    // Written in odd-sized pieces, while the answers are read.
    let writer = tokio::spawn(async move {
        let (head, tail) = bytes.split_at(total / 2);
        for piece in head.chunks(7919) {
            wr.write_all(piece).await.unwrap();
        }
        halfway_rx.await.expect("the other client was answered");
        for piece in tail.chunks(7919) {
            wr.write_all(piece).await.unwrap();
        }
        wr
    });
    let done = Arc::new(AtomicBool::new(false));
    let other_task = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut n, mut worst) = (0, Duration::ZERO);
            let mut halfway = Some(halfway_tx);
            while !done.load(Ordering::Relaxed) || n < 10 {
                let t = Instant::now();
                let server = if n % 2 == 0 { "Server: pbx1\r\n" } else { "" };
                other
                    .send(&format!("Action: Ping\r\n{server}ActionID: o{n}\r\n\r\n"))
                    .await;
                let r = other.response(&format!("o{n}")).await;
                assert_eq!(r.get("Response"), Some("Success"), "{r:?}");
                worst = worst.max(t.elapsed());
                n += 1;
                if n == 2 {
                    let _ = halfway.take().map(|h| h.send(()));
                }
            }
            (n, worst)
        })
    };

    let unknown = "Invalid/unknown command: ";
    while !want.is_empty() || anonymous.values().any(|&n| n > 0) {
        let m = rd.message().await;
        let r = m.get("Response");
        let text = m.get("Message");
        let Some(aid) = m.action_id() else {
            let key = text.unwrap_or("");
            let left = anonymous
                .get_mut(key)
                .unwrap_or_else(|| panic!("unexpected answer without ActionID: {m:?}"));
            assert!(*left > 0, "one answer too many: {m:?}");
            assert_eq!(r, Some("Error"), "{m:?}");
            *left -= 1;
            continue;
        };
        let w = want
            .remove(aid)
            .unwrap_or_else(|| panic!("unexpected or repeated answer: {m:?}"));
        let ok = match w {
            Want::Error(t) => r == Some("Error") && text == Some(t),
            Want::Success(t) => r == Some("Success") && text == Some(t),
            Want::Pong => r == Some("Success") && m.get("Ping") == Some("Pong"),
            Want::Unknown => {
                r == Some("Error")
                    && text.is_some_and(|t| {
                        t.starts_with(unknown) && t.ends_with(". Use Action: ListCommands to show available commands.")
                    })
            }
        };
        assert!(ok, "{aid} wants {w:?}, got {m:?}");
    }
    done.store(true, Ordering::Relaxed);
    let mut wr = writer.await.unwrap();
    let (rounds, worst) = other_task.await.unwrap();
    // The flooding client is still connected and served.
    wr.write_all(b"Action: Ping\r\nActionID: still\r\n\r\n").await.unwrap();
    let r = rd.message().await;
    assert_eq!((r.action_id(), r.get("Ping")), (Some("still"), Some("Pong")), "{r:?}");
    println!("10000 malformed messages ({total} bytes) answered; other client: {rounds} round trips, worst {worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_limit_and_auth_timeout() {
    let sim = sim("pbx1").await;
    // Asterisk's authlimit, on a proxy whose auth timeout outlasts the test: the idle
    // connections hold their slots until the test lets one go.
    let limited = start_proxy(&format!(
        "[proxy]\nauth_limit = 3\nauth_timeout_secs = 600\n\n{}{USERS}",
        upstreams_toml(&[&sim])
    ));
    // A logged-in session no longer counts against the limit.
    let mut member = Client::login(limited.addr(), "admin", "admin-secret").await;
    member.send("Action: Ping\r\nActionID: in\r\n\r\n").await;
    member.response("in").await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let c = Client::connect(limited.addr()).await;
        assert!(c.banner.starts_with("Asterisk Call Manager/"));
        idle.push(c);
    }
    // The fourth unauthenticated connection is closed at once: without a banner, which a
    // session closed by its auth timeout would have sent first.
    let mut extra = TcpStream::connect(limited.addr()).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(DEADLINE, extra.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "the extra connection got {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A slot given back is taken again (the proxy sees the close in its own time: polled).
    drop(idle.pop());
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut c = TcpStream::connect(limited.addr()).await.unwrap();
        let n = tokio::time::timeout(DEADLINE, c.read(&mut buf))
            .await
            .expect("answered");
        if matches!(n, Ok(n) if n > 0) {
            assert!(buf.starts_with(b"Asterisk Call Manager/"));
            break;
        }
        assert!(tokio::time::Instant::now() < end, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    member.send("Action: Ping\r\nActionID: still\r\n\r\n").await;
    assert_eq!(member.response("still").await.get("Ping"), Some("Pong"));

    // The auth timeout (1 s), with the same limit.
    let timed = start_proxy(&format!(
        "[proxy]\nauth_limit = 3\nauth_timeout_secs = 1\n\n{}{USERS}",
        upstreams_toml(&[&sim])
    ));
    let mut member = Client::login(timed.addr(), "admin", "admin-secret").await;
    member.send("Action: Ping\r\nActionID: in\r\n\r\n").await;
    member.response("in").await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        // Taken before the connection: its timeout starts later, when the proxy accepts it.
        let since = Instant::now();
        let c = Client::connect(timed.addr()).await;
        idle.push((c, since));
    }
    // The idle ones are closed after the auth timeout, not before (`closed` waits up to the
    // test's deadline, far less than the default timeout of 30 s).
    for (c, since) in idle.iter_mut() {
        assert!(c.closed().await, "an idle unauthenticated connection stayed open");
        let after = since.elapsed();
        assert!(after >= Duration::from_secs(1), "closed after {after:?}");
    }
    // The logged-in one outlived the timeout; the slots are free again.
    member.send("Action: Ping\r\nActionID: alive\r\n\r\n").await;
    assert_eq!(member.response("alive").await.get("Ping"), Some("Pong"));
    let mut again = Client::login(timed.addr(), "admin", "admin-secret").await;
    again.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert_eq!(again.response("p").await.get("Ping"), Some("Pong"));
    // A connection that keeps talking without logging in is still closed at the timeout:
    // one Ping every 50 ms, each answered, until the proxy closes it, which must happen
    // before the test's deadline (talking does not extend the timeout).
    let t = Instant::now();
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut chatty = Client::connect(timed.addr()).await;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut answered = 0;
    loop {
        tick.tick().await;
        assert!(
            tokio::time::Instant::now() < end,
            "a chatty unauthenticated connection stayed open"
        );
        chatty
            .send(&format!("Action: Ping\r\nActionID: c{answered}\r\n\r\n"))
            .await;
        match chatty.next().await {
            Some(m) => {
                assert_eq!(m.get("Message"), Some("Permission denied"), "{m:?}");
                answered += 1;
            }
            None => break,
        }
    }
    let after = t.elapsed();
    assert!(
        after >= Duration::from_secs(1),
        "closed after {after:?} ({answered} answers)"
    );
}
