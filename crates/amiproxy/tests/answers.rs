//! Every action answered once, whatever happens around it: calls that ring longer than the
//! action timeout, lists whose upstream dies halfway, shutdown with actions still in the
//! client's socket, signals while the proxy starts.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// One simulated Asterisk behind a proxy whose actions time out after a second, and an
/// admin client logged in once the link is up.
async fn one_second_action_timeout() -> (ami_sim::SimHandle, Proxy, Client) {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&format!(
        "[proxy]\naction_timeout_secs = 1\n\n{}{USERS}",
        upstreams_toml(&[&sim])
    ));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    (sim, proxy, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_originate_may_ring_longer_than_the_action_timeout() {
    let (_sim, _proxy, mut c) = one_second_action_timeout().await;
    // Local/03@ringing rings three seconds before it answers.
    let sent = Instant::now();
    c.send("Action: Originate\r\nChannel: Local/03@ringing\r\nApplication: Wait\r\nData: 1\r\nTimeout: 20000\r\nActionID: ring\r\n\r\n")
        .await;
    let r = c.response("ring").await;
    assert_eq!(r.get("Message"), Some("Originate successfully queued"), "{r:?}");
    assert!(sent.elapsed() >= Duration::from_secs(3), "answered before the call was");
    // Answered once: the next answer on this connection is the next action's.
    c.send("Action: Ping\r\nActionID: after\r\n\r\n").await;
    let next = c.until(|m| m.response().is_some()).await;
    assert_eq!(next.action_id(), Some("after"), "{next:?}");
}

/// A fake Asterisk on loopback that answers login, Ping and CoreShowChannels, and starts
/// every other list with one item, then dies: a list cut short.
async fn dying_lister() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"Asterisk Call Manager/11.0.0\r\n").await;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let msg = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let get = |k: &str| {
                            msg.lines()
                                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                                .unwrap_or("")
                                .to_owned()
                        };
                        let (action, aid) = (get("Action"), get("ActionID"));
                        let reply = match action.as_str() {
                            "Login" => format!("Response: Success\r\nActionID: {aid}\r\nMessage: Authentication accepted\r\n\r\n"),
                            "Ping" => format!("Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\n\r\n"),
                            "CoreShowChannels" => format!(
                                "Response: Success\r\nActionID: {aid}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n\
                                 Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
                            ),
                            _ => {
                                let start = format!(
                                    "Response: Success\r\nActionID: {aid}\r\nEventList: start\r\nMessage: {action} will follow\r\n\r\n\
                                     Event: ExtensionStatus\r\nActionID: {aid}\r\nExten: 100\r\nContext: default\r\nStatus: 0\r\n\r\n"
                                );
                                let _ = s.write_all(start.as_bytes()).await;
                                let _ = s.flush().await;
                                return;
                            }
                        };
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_cut_short_still_ends() {
    let addr = dying_lister().await;
    let proxy = start_proxy(&format!(
        "[[upstream]]\nname = \"pbx1\"\naddress = \"{addr}\"\nusername = \"admin\"\nsecret = \"x\"\nreconnect_min_ms = 50\nreconnect_max_ms = 100\n\n{USERS}"
    ));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    // One upstream's list, and a merged one (Status goes to every upstream), each ended
    // with the event Asterisk names, whatever the client's spelling of the action.
    for (action, complete) in [
        ("ExtensionStateList", "ExtensionStateListComplete"),
        ("status", "StatusComplete"),
        ("PJSIPShowEndpoints", "EndpointListComplete"),
    ] {
        wait_upstream(&mut c, "pbx1").await;
        let aid = format!("cut-{action}");
        c.send(&format!("Action: {action}\r\nActionID: {aid}\r\n\r\n")).await;
        let r = c.response(&aid).await;
        assert_eq!(r.get("EventList"), Some("start"), "{r:?}");
        let item = c.until(|m| m.action_id() == Some(aid.as_str())).await;
        assert_eq!(item.event_name(), Some("ExtensionStatus"), "{item:?}");
        let end = c.until(|m| m.action_id() == Some(aid.as_str())).await;
        assert_eq!(end.event_name(), Some(complete), "{end:?}");
        assert_eq!(end.get("EventList"), Some("Complete"), "{end:?}");
        assert_eq!(end.get("ListItems"), Some("1"), "{end:?}");
        assert!(
            end.get("ProxyIncomplete").is_some_and(|r| r.contains("pbx1")),
            "{end:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panoramisk_returns_from_a_list_cut_short() {
    let mut check = std::process::Command::new("python3");
    check.args(["-c", "import panoramisk"]);
    if !client_library("panoramisk", "pip install -r tests/python/requirements.txt", check) {
        return;
    }
    let addr = dying_lister().await;
    let proxy = start_proxy(&format!(
        "[[upstream]]\nname = \"pbx1\"\naddress = \"{addr}\"\nusername = \"admin\"\nsecret = \"x\"\nreconnect_min_ms = 50\nreconnect_max_ms = 100\n\n{USERS}"
    ));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/cut_list.py");
    for action in ["ExtensionStateList", "Status"] {
        wait_upstream(&mut c, "pbx1").await;
        let out = tokio::process::Command::new("python3")
            .arg(&script)
            .args([
                "127.0.0.1",
                &proxy.addr().port().to_string(),
                "admin",
                "admin-secret",
                action,
            ])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(45), out)
            .await
            .expect("the script finishes")
            .unwrap();
        assert!(
            out.status.success(),
            "{action}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Starts the binary and sends `sig` from the thread that reads its output the moment the
/// first "listening on" line appears; returns the child and the listener address.
fn start_and_signal(config: &str, sig: i32) -> (std::process::Child, std::net::SocketAddr, std::path::PathBuf) {
    use std::io::BufRead;
    let dir = tempdir("signal");
    let path = dir.join("proxy.toml");
    std::fs::write(&path, format!("[[listener]]\naddress = \"127.0.0.1:0\"\n\n{config}")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_amiproxy"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("amiproxy starts");
    let pid = child.id() as i32;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening on ") {
                // SAFETY: kill(2) on our own child's pid; no memory is involved.
                unsafe { libc::kill(pid, sig) };
                let _ = tx.send(a.parse::<std::net::SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx.recv_timeout(DEADLINE).expect("the proxy prints its address");
    (child, addr, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_during_start_up_are_handled() {
    let sim = sim("pbx1").await;
    let config = format!("{}{USERS}", upstreams_toml(&[&sim]));
    for _ in 0..10 {
        // HUP: a reload; the proxy keeps running and serving.
        let (mut child, addr, dir) = start_and_signal(&config, libc::SIGHUP);
        let c = Client::login(addr, "admin", "admin-secret").await;
        drop(c);
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIGHUP at start-up killed the proxy"
        );
        // TERM: a clean shutdown, exit code 0, not death by the signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
        let _ = std::fs::remove_dir_all(dir);
        let (mut child, _, dir) = start_and_signal(&config, libc::SIGTERM);
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(0), "SIGTERM at start-up: {status:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_action_already_sent_and_closes_cleanly() {
    use ami_proto::{AmiDecoder, Decoded, Role};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&format!("{}{USERS}", upstreams_toml(&[&sim])));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    drop(c);
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: login\r\n\r\n")
        .await
        .unwrap();
    // Logged in first: a connection that has not logged in when the proxy stops is closed
    // at once, whatever it sent.
    let mut dec = AmiDecoder::new(Role::Upstream);
    let mut buf = bytes::BytesMut::new();
    let end = tokio::time::Instant::now() + DEADLINE;
    'login: loop {
        while let Some(d) = dec.decode(&mut buf).expect("well-formed") {
            if let Decoded::Message(m) = d {
                if m.action_id() == Some("login") {
                    assert_eq!(m.get("Message"), Some("Authentication accepted"), "{m:?}");
                    break 'login;
                }
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(end, s.read(&mut chunk)).await {
            Ok(Ok(k)) if k > 0 => buf.extend_from_slice(&chunk[..k]),
            other => panic!("no login answer: {other:?}"),
        }
    }
    // Actions the proxy answers itself and actions it forwards, all in the socket when the
    // proxy is told to stop.
    let mut batch = String::new();
    let n = 300;
    for i in 0..n {
        let action = ["Ping", "CoreSettings", "DBGet\r\nFamily: f\r\nKey: k"][i % 3];
        batch.push_str(&format!("Action: {action}\r\nActionID: a{i}\r\n\r\n"));
    }
    s.write_all(batch.as_bytes()).await.unwrap();
    proxy.signal("TERM");
    let mut answered = std::collections::HashMap::new();
    let mut shutdown = false;
    let end = tokio::time::Instant::now() + DEADLINE;
    let eof = loop {
        while let Some(d) = dec.decode(&mut buf).expect("well-formed") {
            if let Decoded::Message(m) = d {
                if m.response().is_some() {
                    *answered.entry(m.action_id().unwrap_or("").to_owned()).or_insert(0) += 1;
                }
                shutdown |= m.event_name() == Some("Shutdown");
            }
        }
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout_at(end, s.read(&mut chunk)).await {
            Err(_) => panic!("the proxy did not close"),
            Ok(Ok(0)) => break true,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Ok(Err(e)) => {
                eprintln!("read error: {e}");
                break false;
            }
        }
    };
    assert!(eof, "the connection was reset, not closed");
    assert!(shutdown, "no Shutdown event");
    for i in 0..n {
        assert_eq!(answered.get(&format!("a{i}")), Some(&1), "action a{i}: {answered:?}");
    }
    let status = proxy_exit(proxy).await;
    assert!(status.success(), "{status:?}");
}

async fn proxy_exit(mut proxy: Proxy) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(10)).expect("the proxy exits"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_has_an_origin_and_logins_are_announced() {
    let s1 = sim("pbx1").await;
    let s2 = sim("pbx2").await;
    let proxy = start_proxy(&format!("{}{USERS}", upstreams_toml(&[&s1, &s2])));
    let mut admin = Client::login(proxy.addr(), "admin", "admin-secret").await;
    let fb = admin.event("FullyBooted").await;
    assert_eq!(fb.get("Server"), Some("amiproxy"), "{fb:?}");
    // Its own login, as Asterisk announces it to `security` readers. The upstreams announce
    // the proxy's own logins to them too, which may come first: the proxy's announcement is
    // the one on the proxy's address.
    let local = format!("IPV4/TCP/127.0.0.1/{}", proxy.addr().port());
    let auth = admin
        .until(|m| m.event_name() == Some("SuccessfulAuth") && m.get("LocalAddress") == Some(local.as_str()))
        .await;
    assert_eq!(auth.get("AccountID"), Some("admin"), "{auth:?}");
    assert_eq!(auth.get("Service"), Some("AMI"));
    assert_eq!(auth.get("Server"), Some("amiproxy"));
    assert!(
        auth.get("RemoteAddress")
            .is_some_and(|a| a.starts_with("IPV4/TCP/127.0.0.1/")),
        "{auth:?}"
    );
    wait_upstream(&mut admin, "pbx1").await;
    wait_upstream(&mut admin, "pbx2").await;
    // A merged list: items tagged by their server, the proxy's Complete by the proxy.
    let (start, items, complete) = admin.list("Action: Status\r\n", "st").await;
    assert!(start.get("Server").is_some(), "{start:?}");
    assert!(items.iter().all(|i| i.get("Server").is_some()), "{items:?}");
    assert_eq!(complete.get("Server"), Some("amiproxy"), "{complete:?}");
    // Another user's login is announced too (not to a user without `security`).
    let _ro = Client::login(proxy.addr(), "ro", "ro-secret").await;
    let auth = admin
        .until(|m| m.event_name() == Some("SuccessfulAuth") && m.get("AccountID") == Some("ro"))
        .await;
    assert_eq!(auth.get("Server"), Some("amiproxy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logoff_comes_after_the_answers_to_the_actions_sent_before_it() {
    let sim = sim("pbx1").await;
    let proxy = start_proxy(&format!("{}{USERS}", upstreams_toml(&[&sim])));
    let mut c = Client::login(proxy.addr(), "admin", "admin-secret").await;
    wait_upstream(&mut c, "pbx1").await;
    // One write, as a script piping into the socket sends it: Asterisk answers in order.
    c.send("Action: CoreSettings\r\nActionID: cs\r\n\r\nAction: Command\r\nCommand: core show uptime\r\nActionID: cmd\r\n\r\nAction: Logoff\r\nActionID: bye\r\n\r\n")
        .await;
    let mut order = Vec::new();
    while let Some(m) = c.next().await {
        if m.response().is_some() {
            order.push(m.action_id().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(
        order,
        ["cs", "cmd", "bye"],
        "every answer, the goodbye last, then the close"
    );
}

/// A synchronous Originate rings longer than the action timeout (its waiter counts the
/// ringing time): a Logoff after it still waits for its answer, as Asterisk, which reads
/// nothing until the Originate is done, would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logoff_waits_for_a_ringing_synchronous_originate() {
    let (_sim, _proxy, mut c) = one_second_action_timeout().await;
    c.send("Action: Originate\r\nChannel: Local/03@ringing\r\nApplication: Wait\r\nData: 1\r\nTimeout: 8000\r\nActionID: ring\r\n\r\nAction: Logoff\r\nActionID: bye\r\n\r\n")
        .await;
    let mut answers = Vec::new();
    while let Some(m) = c.next().await {
        if m.response().is_some() {
            answers.push(format!(
                "{} {}",
                m.action_id().unwrap_or_default(),
                m.get("Message").unwrap_or_default()
            ));
        }
    }
    assert_eq!(
        answers,
        ["ring Originate successfully queued", "bye Thanks for all the fish."],
        "the call's answer, then the goodbye"
    );
}
