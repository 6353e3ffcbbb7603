//! Each Asterisk generation on the wire (fixtures/LEGACY.md): banner, login, Ping, Events,
//! actions before login, Logoff, Command output, list framing, call events and a rename,
//! all decoded with the proxy's own upstream decoder.

use ami_proto::{AmiDecoder, Decoded, Kind, Message, Role};
use ami_sim::{Dialect, SimConfig, SimHandle};
use futures::StreamExt;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

const WAIT: Duration = Duration::from_secs(10);

async fn sim(dialect: Dialect) -> SimHandle {
    let cfg = SimConfig {
        auth_delay: Duration::from_millis(20),
        system_name: Some("pbxa".into()),
        dialect,
        ..SimConfig::default()
    };
    ami_sim::start(cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

struct Client {
    rd: FramedRead<OwnedReadHalf, AmiDecoder>,
    wr: OwnedWriteHalf,
    banner: String,
    /// Every message read so far, in order.
    seen: Vec<Message>,
    /// Index in `seen` of the next message `until` looks at.
    cursor: usize,
}

impl Client {
    async fn connect(sim: &SimHandle) -> Client {
        let (rd, wr) = TcpStream::connect(sim.addr()).await.unwrap().into_split();
        let mut rd = FramedRead::new(rd, AmiDecoder::new(Role::Upstream));
        let banner = match tokio::time::timeout(WAIT, rd.next()).await {
            Ok(Some(Ok(Decoded::Banner(b)))) => b,
            other => panic!("no banner: {other:?}"),
        };
        Client {
            rd,
            wr,
            banner,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    async fn send(&mut self, text: &str) {
        self.wr.write_all(text.as_bytes()).await.unwrap();
    }

    /// Reads one more message; None at end of stream.
    async fn read(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.rd.next())
            .await
            .expect("sim went quiet")
        {
            Some(Ok(Decoded::Message(m))) => {
                self.seen.push(m.clone());
                Some(m)
            }
            None => None,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The next message (from `cursor` on) that `f` accepts.
    async fn until(&mut self, f: impl Fn(&Message) -> bool) -> Message {
        loop {
            while self.cursor < self.seen.len() {
                let m = &self.seen[self.cursor];
                self.cursor += 1;
                if f(m) {
                    return m.clone();
                }
            }
            if self.read().await.is_none() {
                panic!("stream ended; seen: {:#?}", self.seen);
            }
        }
    }

    /// Sends an action and returns its response (events before it stay readable).
    async fn action(&mut self, text: &str, id: &str) -> Message {
        self.send(&format!("{text}ActionID: {id}\r\n\r\n")).await;
        let start = self.cursor;
        let r = self
            .until(|m| m.kind() == Kind::Response && m.action_id() == Some(id))
            .await;
        // Keep events that arrived meanwhile visible to later `until`s.
        self.cursor = start;
        self.seen
            .retain(|m| !(m.kind() == Kind::Response && m.action_id() == Some(id)));
        r
    }

    /// A list action: its response, the items carrying the ActionID, the Complete event.
    async fn list(&mut self, text: &str, id: &str, complete: &str) -> (Message, Vec<Message>, Message) {
        let resp = self.action(text, id).await;
        let mut items = Vec::new();
        loop {
            let m = self
                .until(|m| m.kind() == Kind::Event && m.action_id() == Some(id))
                .await;
            if m.event_name() == Some(complete) {
                return (resp, items, m);
            }
            items.push(m);
        }
    }

    async fn event(&mut self, name: &str) -> Message {
        self.until(|m| m.event_name() == Some(name)).await
    }

    async fn event_on(&mut self, name: &str, channel: &str) -> Message {
        self.until(|m| {
            m.event_name() == Some(name)
                && (m.get("Channel") == Some(channel)
                    || m.get("Channel1") == Some(channel)
                    || m.get("Oldname") == Some(channel))
        })
        .await
    }

    async fn login(&mut self) {
        let r = self
            .action("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\n", "login")
            .await;
        assert_eq!(r.response(), Some("Success"), "{r:?}");
        assert_eq!(r.get("Message"), Some("Authentication accepted"));
    }

    /// True once the sim closes the connection.
    async fn closes(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.rd.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn legacy(d: Dialect) -> bool {
    matches!(d, Dialect::V1_4 | Dialect::V1_8)
}

async fn before_login(sim: &SimHandle, d: Dialect) {
    let mut c = Client::connect(sim).await;
    assert_eq!(c.banner, format!("Asterisk Call Manager/{}", d.ami_version()));
    let r = c.action("Action: Ping\r\n", "early").await;
    assert_eq!(r.response(), Some("Error"));
    let want = if d == Dialect::V1_4 {
        "Authentication Required"
    } else {
        "Permission denied"
    };
    assert_eq!(r.get("Message"), Some(want), "{d:?}");
    let r = c.action("Action: Logoff\r\n", "bye").await;
    if d == Dialect::V1_4 {
        assert_eq!(r.response(), Some("Success"));
        assert_eq!(r.get("Message"), Some("See ya"));
    } else {
        assert_eq!(r.response(), Some("Goodbye"));
        assert_eq!(r.get("Message"), Some("Thanks for all the fish."));
    }
    assert!(c.closes().await);
}

async fn session_basics(c: &mut Client, d: Dialect) {
    let fb = c.event("FullyBooted").await;
    assert_eq!(fb.get("Status"), Some("Fully Booted"));
    assert_eq!(fb.get("Uptime").is_some(), d == Dialect::V22, "{fb:?}");
    assert_eq!(fb.get("LastReload").is_some(), d == Dialect::V22);

    let r = c
        .action("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\n", "again")
        .await;
    let want = if d == Dialect::V1_4 {
        "Already logged in"
    } else {
        "Already authenticated"
    };
    assert_eq!(r.get("Message"), Some(want));

    let r = c.action("Action: Ping\r\n", "ping").await;
    if d == Dialect::V1_4 {
        assert_eq!(r.as_bytes(), b"Response: Pong\r\nActionID: ping\r\n\r\n");
    } else {
        assert_eq!(r.response(), Some("Success"));
        assert_eq!(r.get("Ping"), Some("Pong"));
        assert!(r.get("Timestamp").is_some());
    }

    for (mask, word) in [("off", "Off"), ("on", "On")] {
        let r = c
            .action(&format!("Action: Events\r\nEventMask: {mask}\r\n"), mask)
            .await;
        if d == Dialect::V1_4 {
            assert_eq!(r.response(), Some(format!("Events {word}").as_str()), "{r:?}");
            assert_eq!(r.get("Events"), None);
        } else {
            assert_eq!(r.response(), Some("Success"));
            assert_eq!(r.get("Events"), Some(word));
        }
    }

    // `queue show` has a blank line after every queue.
    let r = c.action("Action: Command\r\nCommand: queue show\r\n", "cmd").await;
    if d == Dialect::V22 {
        assert_eq!(r.response(), Some("Success"));
        assert_eq!(r.get("Message"), Some("Command output follows"));
        let out: Vec<&str> = r.get_all("Output").collect();
        assert!(out.iter().any(|l| l.is_empty()), "{out:?}");
        assert!(out.iter().any(|l| l.starts_with("sales has")), "{out:?}");
    } else {
        assert_eq!(r.response(), Some("Follows"), "{r:?}");
        assert_eq!(r.get("Privilege"), Some("Command"));
        assert_eq!(r.action_id(), Some("cmd"));
        let text = std::str::from_utf8(r.legacy_output().expect("legacy body")).unwrap();
        assert!(text.contains("sales"), "{text}");
        assert!(text.contains("\n\n"), "blank line inside: {text:?}");
        assert!(text.ends_with("--END COMMAND--\r\n"), "{text:?}");
        // The output proper is LF-only.
        let body = text.trim_end_matches("--END COMMAND--\r\n");
        assert!(!body.contains('\r'), "{body:?}");
        assert!(r.as_bytes().ends_with(b"--END COMMAND--\r\n\r\n"));
        let r = c
            .action("Action: Command\r\nCommand: core show version\r\n", "ver")
            .await;
        let text = std::str::from_utf8(r.legacy_output().unwrap()).unwrap();
        assert!(
            text.contains(&format!("Asterisk {} built", d.asterisk_version())),
            "{text}"
        );
    }
}

/// Checks the framing of a list answer.
fn framing(resp: &Message, complete: &Message, event_list: bool, list_items: bool, n: usize) {
    assert_eq!(resp.response(), Some("Success"));
    assert!(resp.get("Message").unwrap().ends_with("will follow"), "{resp:?}");
    assert_eq!(resp.get("EventList") == Some("start"), event_list, "{resp:?}");
    assert_eq!(
        complete.get("EventList") == Some("Complete"),
        event_list,
        "{complete:?}"
    );
    assert_eq!(
        complete.get("ListItems"),
        list_items.then(|| n.to_string()).as_deref(),
        "{complete:?}"
    );
}

async fn lists_and_calls(sim: &SimHandle, c: &mut Client, d: Dialect) {
    // Queue lists with no call up: params + the static member.
    let (resp, items, done) = c.list("Action: QueueStatus\r\n", "qs", "QueueStatusComplete").await;
    framing(&resp, &done, !legacy(d), !legacy(d), items.len());
    assert!(items.iter().any(|m| m.event_name() == Some("QueueParams")));
    let member = items
        .iter()
        .find(|m| m.event_name() == Some("QueueMember"))
        .expect("member");
    assert_eq!(member.get("Location"), Some("Local/1001@agents"));
    assert_eq!(member.get("StateInterface").is_some(), !legacy(d));

    // A call: ;2 answers at once (ext 600 waits 30 s), ;1 runs Wait(20).
    let r = c
        .action(
            "Action: Originate\r\nChannel: Local/600@default\r\nApplication: Wait\r\nData: 20\r\nAsync: true\r\n",
            "orig",
        )
        .await;
    assert_eq!(r.response(), Some("Success"));
    let nc = c.event("Newchannel").await;
    let one = nc.get("Channel").unwrap().to_owned();
    let uid1 = nc.get("Uniqueid").unwrap().to_owned();
    assert!(uid1.starts_with("pbxa-"), "{uid1}");
    match d {
        Dialect::V1_4 => {
            assert!(one.ends_with(",1"), "{one}");
            assert_eq!(nc.get("State"), Some("Down"));
            assert_eq!(nc.get("CallerIDNum"), Some(""));
            assert!(nc.get("ChannelState").is_none() && nc.get("Linkedid").is_none());
            assert!(nc.get("SystemName").is_none());
        }
        Dialect::V1_8 => {
            assert!(one.ends_with(";1"), "{one}");
            assert_eq!(nc.get("ChannelState"), Some("0"));
            assert_eq!(nc.get("ChannelStateDesc"), Some("Down"));
            assert_eq!(nc.get("Exten"), Some("600"));
            assert_eq!(nc.get("AccountCode"), Some(""));
            assert!(nc.get("Linkedid").is_none() && nc.get("State").is_none());
        }
        Dialect::V13 | Dialect::V22 => {
            assert!(one.ends_with(";1"), "{one}");
            assert_eq!(nc.get("Linkedid"), Some(uid1.as_str()));
            assert_eq!(nc.get("SystemName"), Some("pbxa"));
        }
    }
    let two = format!("{}2", &one[..one.len() - 1]);
    let mark = c.cursor;

    // The halves joined, in the generation's form.
    match d {
        Dialect::V1_4 => {
            let l = c.event("Link").await;
            assert_eq!(l.get("Channel1"), Some(one.as_str()));
            assert_eq!(l.get("Channel2"), Some(two.as_str()));
            assert_eq!(l.get("Uniqueid1"), Some(uid1.as_str()));
            assert!(l.get("Uniqueid2").is_some() && l.get("CallerID1").is_some() && l.get("CallerID2").is_some());
        }
        Dialect::V1_8 => {
            let b = c.event("Bridge").await;
            assert_eq!(b.get("Bridgestate"), Some("Link"));
            assert_eq!(b.get("Bridgetype"), Some("core"));
            assert_eq!(b.get("Channel1"), Some(one.as_str()));
            assert_eq!(b.get("Channel2"), Some(two.as_str()));
            assert_eq!(b.get("Uniqueid1"), Some(uid1.as_str()));
        }
        Dialect::V13 => {
            let bc = c.event("BridgeCreate").await;
            let bid = bc.get("BridgeUniqueid").unwrap().to_owned();
            for ch in [&one, &two] {
                let be = c.event_on("BridgeEnter", ch).await;
                assert_eq!(be.get("BridgeUniqueid"), Some(bid.as_str()));
                assert!(be.get("Linkedid").is_some());
            }
        }
        Dialect::V22 => {
            // As captured (transcript 02): a LocalBridge, no bridge of the halves.
            let lb = c.event("LocalBridge").await;
            assert_eq!(lb.get("LocalOneChannel"), Some(one.as_str()));
        }
    }
    c.cursor = mark;
    if d == Dialect::V1_4 {
        let o = c.event("OriginateSuccess").await;
        assert_eq!(o.get("Response"), None);
        assert_eq!(o.get("Uniqueid"), Some(uid1.as_str()));
    } else {
        let o = c.event("OriginateResponse").await;
        assert_eq!(o.get("Response"), Some("Success"));
    }

    // Status: both halves, in the generation's framing.
    let (resp, items, done) = c.list("Action: Status\r\n", "st", "StatusComplete").await;
    assert_eq!(items.len(), 2, "{items:?}");
    framing(&resp, &done, !legacy(d), !legacy(d), 2);
    assert_eq!(done.get("Items"), (d != Dialect::V1_4).then_some("2"), "{done:?}");
    let st = items.iter().find(|m| m.get("Channel") == Some(one.as_str())).unwrap();
    assert_eq!(st.get("Uniqueid"), Some(uid1.as_str()));
    match d {
        Dialect::V1_4 => {
            assert_eq!(st.get("State"), Some("Up"));
            assert_eq!(st.get("Link"), Some(two.as_str()));
        }
        Dialect::V1_8 => {
            assert_eq!(st.get("ChannelState"), Some("6"));
            assert_eq!(st.get("BridgedChannel"), Some(two.as_str()));
        }
        _ => assert_eq!(st.get("ChannelState"), Some("6")),
    }
    let (resp, items, done) = c
        .list("Action: CoreShowChannels\r\n", "csc", "CoreShowChannelsComplete")
        .await;
    assert_eq!(items.len(), 2);
    framing(&resp, &done, d != Dialect::V1_4, d != Dialect::V1_4, 2);

    // A rename (masquerade): the event, then the new name everywhere.
    let new = format!("{one}<MASQ>");
    assert!(sim.rename_channel(&one, &new));
    assert!(!sim.rename_channel(&one, "Local/nobody"), "old name is gone");
    let rn = c.event("Rename").await;
    if d == Dialect::V1_4 {
        assert_eq!(rn.get("Oldname"), Some(one.as_str()));
        assert_eq!(rn.get("Channel"), None);
    } else {
        assert_eq!(rn.get("Channel"), Some(one.as_str()));
    }
    assert_eq!(rn.get("Newname"), Some(new.as_str()));
    assert_eq!(rn.get("Uniqueid"), Some(uid1.as_str()));
    let (_, items, _) = c.list("Action: Status\r\n", "st2", "StatusComplete").await;
    let names: Vec<&str> = items.iter().filter_map(|m| m.get("Channel")).collect();
    assert!(
        names.contains(&new.as_str()) && !names.contains(&one.as_str()),
        "{names:?}"
    );

    // Hang up by the new name: unjoin, then the Hangups.
    let r = c.action(&format!("Action: Hangup\r\nChannel: {new}\r\n"), "hu").await;
    assert_eq!(r.response(), Some("Success"), "{r:?}");
    match d {
        Dialect::V1_4 => {
            let u = c.event("Unlink").await;
            assert_eq!(u.get("Channel1"), Some(new.as_str()));
            assert_eq!(u.get("Channel2"), Some(two.as_str()));
        }
        Dialect::V1_8 => {
            let u = c
                .until(|m| m.event_name() == Some("Bridge") && m.get("Bridgestate") == Some("Unlink"))
                .await;
            assert_eq!(u.get("Channel1"), Some(new.as_str()));
        }
        Dialect::V13 => {
            c.event_on("BridgeLeave", &new).await;
            c.event_on("BridgeLeave", &two).await;
            c.event("BridgeDestroy").await;
        }
        Dialect::V22 => {}
    }
    let h = c.event_on("Hangup", &new).await;
    assert_eq!(h.get("Uniqueid"), Some(uid1.as_str()));
    assert_eq!(h.get("Cause"), Some("16"));
    assert_eq!(h.get("Cause-txt"), Some("Normal Clearing"));
    assert_eq!(h.get("CallerIDNum").is_some(), d != Dialect::V1_4, "{h:?}");
    assert_eq!(h.get("Linkedid").is_some(), !legacy(d), "{h:?}");
    c.event_on("Hangup", &two).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim.channel_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "channels left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // No event of another generation slipped through.
    let names: Vec<&str> = c.seen.iter().filter_map(|m| m.event_name()).collect();
    if legacy(d) {
        for n in [
            "DeviceStateChange",
            "DialBegin",
            "HangupRequest",
            "NewConnectedLine",
            "BridgeEnter",
        ] {
            assert!(!names.contains(&n), "{n} in {names:?}");
        }
    }
    if d == Dialect::V1_4 {
        assert!(!names.contains(&"LocalBridge") && !names.contains(&"OriginateResponse"));
    }
    if d == Dialect::V22 {
        assert!(!names.contains(&"BridgeEnter") && !names.contains(&"Link"));
    }
}

async fn run(d: Dialect) {
    let sim = sim(d).await;
    before_login(&sim, d).await;
    let mut c = Client::connect(&sim).await;
    c.login().await;
    session_basics(&mut c, d).await;
    lists_and_calls(&sim, &mut c, d).await;
}

#[tokio::test]
async fn asterisk_1_4() {
    run(Dialect::V1_4).await;
}

#[tokio::test]
async fn asterisk_1_8() {
    run(Dialect::V1_8).await;
}

#[tokio::test]
async fn asterisk_13() {
    run(Dialect::V13).await;
}

#[tokio::test]
async fn asterisk_22() {
    run(Dialect::V22).await;
}

#[tokio::test]
async fn version_follows_the_dialect_unless_set() {
    let s = sim(Dialect::V1_8).await;
    assert_eq!(Client::connect(&s).await.banner, "Asterisk Call Manager/1.1");
    let cfg = SimConfig {
        version: "1.0.1".into(),
        dialect: Dialect::V1_4,
        ..SimConfig::default()
    };
    let s = ami_sim::start(cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_eq!(Client::connect(&s).await.banner, "Asterisk Call Manager/1.0.1");
    assert_eq!(s.dialect(), Dialect::V1_4);
}
