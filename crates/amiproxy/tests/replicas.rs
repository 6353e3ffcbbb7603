//! Replicas behind a real HAProxy (TCP mode, health-checked on `/health`): a rolling restart
//! (SIGTERM with a drain grace) and a replica killed with SIGKILL under load. Clients are
//! plain AMI clients that reconnect through HAProxy when their connection ends, as AMI client
//! libraries do; every ActionID they send is unique, so an answer given twice would show.

mod common;

use ami_proto::{AmiDecoder, Decoded, Message, Role};
use bytes::BytesMut;
use common::servers::{free_port, Haproxy};
use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REPLICAS: usize = 3;
const CLIENTS: usize = 24;

/// A replica's config: one plain listener, the metrics/health endpoint, the sim upstreams.
fn replica_config(sims: &[&ami_sim::SimHandle], grace_secs: f64) -> String {
    format!(
        "[proxy]\ndrain_grace_secs = {grace_secs}\nshutdown_timeout_secs = 5\n\n[metrics]\naddress = \"127.0.0.1:0\"\n\n{}{USERS}",
        upstreams_toml(sims)
    )
}

/// HAProxy in TCP mode over the replicas, checking each one's `/health` every 100 ms; a
/// connection refused by a dead replica is retried on another (`redispatch`).
fn haproxy_config(front: u16, replicas: &[&Proxy]) -> String {
    let mut servers = String::new();
    for (i, r) in replicas.iter().enumerate() {
        servers.push_str(&format!(
            "    server r{} {} check port {}\n",
            i + 1,
            r.addr(),
            r.metrics.expect("replicas have a metrics address").port()
        ));
    }
    format!(
        "global\n    stats socket {{dir}}/admin.sock level admin\n\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1h\n    timeout server 1h\n    retries 3\n    option redispatch 1\n\nfrontend ami\n    bind 127.0.0.1:{front}\n    default_backend amiproxies\n\nbackend amiproxies\n    balance leastconn\n    option httpchk\n    http-check send meth GET uri /health\n    http-check expect status 200\n    default-server inter 100ms fall 1 rise 1\n{servers}"
    )
}

/// One AMI connection that never panics on what the network does: every failure is an Err.
struct Conn {
    tcp: TcpStream,
    buf: BytesMut,
    dec: AmiDecoder,
}

impl Conn {
    async fn login(addr: SocketAddr) -> Result<Conn, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut c = Conn {
            tcp,
            buf: BytesMut::new(),
            dec: AmiDecoder::new(Role::Upstream),
        };
        match c.next_decoded().await? {
            Decoded::Banner(_) => {}
            other => return Err(format!("expected a banner, got {other:?}")),
        }
        c.send("Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\nActionID: login\r\n\r\n")
            .await?;
        loop {
            let m = c.next().await?;
            if m.action_id() == Some("login") {
                return match m.get("Message") {
                    Some("Authentication accepted") => Ok(c),
                    _ => Err(format!("login refused: {m:?}")),
                };
            }
        }
    }

    async fn send(&mut self, text: &str) -> Result<(), String> {
        self.tcp.write_all(text.as_bytes()).await.map_err(|e| e.to_string())
    }

    async fn next_decoded(&mut self) -> Result<Decoded, String> {
        loop {
            match self.dec.decode(&mut self.buf) {
                Ok(Some(d)) => return Ok(d),
                Ok(None) => {}
                Err(e) => return Err(format!("malformed: {e}")),
            }
            let mut chunk = [0u8; 8192];
            let n = match tokio::time::timeout(DEADLINE, self.tcp.read(&mut chunk)).await {
                Err(_) => return Err("read timed out".into()),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(0)) => return Err("closed".into()),
                Ok(Ok(n)) => n,
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn next(&mut self) -> Result<Message, String> {
        match self.next_decoded().await? {
            Decoded::Message(m) => Ok(m),
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// What every client saw, shared with the test.
#[derive(Default)]
struct Ledger {
    /// Answers received per ActionID (each must be 1 at most).
    answers: HashMap<String, u32>,
    sent: usize,
    /// How long each reconnection took: from the end of the old connection to the new login.
    reconnects: Vec<Duration>,
    /// `Event: Shutdown` received before a close.
    shutdown_events: usize,
    sent_ids: Vec<String>,
}

/// A client that logs in through `front`, then sends `Ping`s in a closed loop until `stop`;
/// when its connection ends it logs in again (bounded: until the deadline) and goes on.
async fn client(n: usize, front: SocketAddr, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicUsize>, pace: Duration) {
    let mut seq = 0u64;
    let mut conn = Conn::login(front).await.expect("first login through haproxy");
    let give_up = Instant::now() + Duration::from_secs(60);
    // As AMI client libraries do, nothing is sent after `Event: Shutdown`: the connection
    // is read to its end, then the client logs in again.
    let mut shut = false;
    while stop.load(Ordering::Acquire) == 0 && Instant::now() < give_up {
        seq += 1;
        let aid = format!("c{n}-{seq}");
        let sent = match shut {
            true => Err("shut down".to_owned()),
            false => conn.send(&format!("Action: Ping\r\nActionID: {aid}\r\n\r\n")).await,
        };
        if sent.is_ok() {
            let mut l = ledger.lock().unwrap();
            l.sent += 1;
            l.sent_ids.push(aid.clone());
        }
        let mut answered = sent.is_err();
        let mut ended = false;
        while !ended && (!answered || shut) {
            match conn.next().await {
                Ok(m) if m.response().is_some() => {
                    if let Some(id) = m.action_id() {
                        *ledger.lock().unwrap().answers.entry(id.to_owned()).or_default() += 1;
                        answered |= id == aid;
                    }
                }
                Ok(m) if m.event_name() == Some("Shutdown") => {
                    ledger.lock().unwrap().shutdown_events += 1;
                    shut = true;
                }
                Ok(_) => {}
                Err(_) => ended = true,
            }
        }
        shut = false;
        if ended {
            let lost_at = Instant::now();
            let end = lost_at + DEADLINE;
            conn = loop {
                match Conn::login(front).await {
                    Ok(c) => break c,
                    Err(e) => {
                        assert!(Instant::now() < end, "client {n} could not log in again: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            };
            ledger.lock().unwrap().reconnects.push(lost_at.elapsed());
        }
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out))
}

/// The sum of a metric's samples (every label set) in a replica's `/metrics`.
async fn metric_sum(addr: SocketAddr, name: &str) -> f64 {
    let Some((_, text)) = http_get(addr, "/metrics").await else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Three replicas on one sim, HAProxy in front, every replica UP in HAProxy's eyes.
async fn cluster(grace_secs: f64) -> Option<(ami_sim::SimHandle, Vec<Proxy>, Haproxy, SocketAddr)> {
    let sim = sim("pbx1").await;
    let replicas: Vec<Proxy> = (0..REPLICAS)
        .map(|_| start_proxy(&replica_config(&[&sim], grace_secs)))
        .collect();
    for r in &replicas {
        let m = r.metrics.unwrap();
        let end = Instant::now() + DEADLINE;
        while http_get(m, "/health").await.map(|(s, _)| s) != Some(200) {
            assert!(Instant::now() < end, "replica never healthy");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let front = free_port();
    let refs: Vec<&Proxy> = replicas.iter().collect();
    let ha = Haproxy::start(&haproxy_config(front, &refs), front)?;
    common::servers::poll_until("every replica UP in haproxy", Duration::ZERO, || {
        (1..=REPLICAS).all(|i| ha.server_status("amiproxies", &format!("r{i}")).as_deref() == Some("UP"))
    });
    Some((sim, replicas, ha, SocketAddr::from(([127, 0, 0, 1], front))))
}

/// Clients per replica, from each replica's `amiproxy_clients_connected`.
async fn spread(replicas: &[Proxy]) -> Vec<f64> {
    let mut v = Vec::new();
    for r in replicas {
        v.push(metric_sum(r.metrics.unwrap(), "amiproxy_clients_connected").await);
    }
    v
}

/// Waits until every client is logged in somewhere; returns how many each replica holds.
async fn all_logged_in(replicas: &[Proxy]) -> Vec<f64> {
    let mut on = Vec::new();
    let end = Instant::now() + DEADLINE;
    while on.iter().sum::<f64>() < CLIENTS as f64 {
        assert!(Instant::now() < end, "clients never all logged in: {on:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        on = spread(replicas).await;
    }
    on
}

fn no_answer_twice(l: &Ledger) {
    let twice: Vec<_> = l.answers.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "actions answered more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_moves_clients_without_losing_an_answer() {
    let Some((_sim, mut replicas, ha, front)) = cluster(1.0).await else {
        return;
    };
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client(
                n,
                front,
                ledger.clone(),
                stop.clone(),
                Duration::from_millis(20),
            ))
        })
        .collect();
    let on = all_logged_in(&replicas).await;
    assert!(on[0] >= 1.0, "leastconn put clients on every replica: {on:?}");

    // The rolling restart's first step: replica 1 gets SIGTERM.
    replicas[0].signal("TERM");
    let m1 = replicas[0].metrics.unwrap();
    let end = Instant::now() + DEADLINE;
    loop {
        let (status, body) = http_get(m1, "/health").await.expect("health answers while draining");
        if status == 503 {
            assert!(body.contains("\"draining\""), "{body}");
            break;
        }
        assert!(Instant::now() < end, "health never turned 503: {body}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // HAProxy sees it and sends new clients elsewhere, while replica 1 still serves its own.
    common::servers::poll_until("haproxy to mark r1 down", Duration::ZERO, || {
        ha.server_status("amiproxies", "r1")
            .is_some_and(|s| s.starts_with("DOWN"))
    });
    let answered_in_grace = ledger.lock().unwrap().answers.len();
    let newcomer = Conn::login(front).await.expect("a new client logs in during the drain");
    drop(newcomer);
    // Then replica 1 closes its clients; they come back through HAProxy.
    let status = replicas[0].wait_exit(Duration::from_secs(10)).expect("replica 1 exits");
    assert!(status.success(), "{status:?}");
    let want = on[0] as usize;
    let end = Instant::now() + DEADLINE;
    while ledger.lock().unwrap().reconnects.len() < want {
        assert!(Instant::now() < end, "clients of replica 1 did not all come back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = Instant::now() + DEADLINE;
    loop {
        let after = spread(&replicas[1..]).await;
        if after.iter().sum::<f64>() as usize == CLIENTS {
            break;
        }
        assert!(Instant::now() < end, "every client on the two others: {after:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(1, Ordering::Release);
    for t in tasks {
        t.await.unwrap();
    }
    let l = ledger.lock().unwrap();
    no_answer_twice(&l);
    assert!(
        l.answers.len() > answered_in_grace,
        "actions were answered during the grace"
    );
    // A drain answers every action: those read before the close, and those that crossed
    // `Event: Shutdown` on the wire (the client sends nothing after it).
    let unanswered = l.sent - l.answers.len();
    let missing: Vec<&String> = l.sent_ids.iter().filter(|id| !l.answers.contains_key(*id)).collect();
    assert_eq!(unanswered, 0, "actions never answered: {missing:?}");
    assert_eq!(
        l.shutdown_events, want,
        "each client of replica 1 was told it shut down"
    );
    let worst = l.reconnects.iter().max().copied().unwrap_or_default();
    eprintln!(
        "rolling restart: {want} clients moved off r1; slowest reconnect+login {worst:?}; unanswered {unanswered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_killed_under_load_its_clients_come_back_through_the_others() {
    let Some((sim, mut replicas, ha, front)) = cluster(0.0).await else {
        return;
    };
    sim.set_firehose(Some(2000));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(n, front, ledger.clone(), stop.clone(), Duration::ZERO)))
        .collect();
    let on = all_logged_in(&replicas).await;
    let victims = on[1] as usize;
    assert!(victims >= 1, "leastconn put clients on replica 2: {on:?}");
    // Under load: wait until some actions went through, then SIGKILL replica 2.
    let end = Instant::now() + DEADLINE;
    while ledger.lock().unwrap().answers.len() < 1000 {
        assert!(Instant::now() < end, "no load");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = Instant::now();
    replicas[1].signal("KILL");
    let end = Instant::now() + DEADLINE;
    while ledger.lock().unwrap().reconnects.len() < victims {
        assert!(
            Instant::now() < end,
            "clients of the killed replica did not all come back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_back = killed_at.elapsed();
    assert!(replicas[1].wait_exit(Duration::from_secs(5)).is_some());
    common::servers::poll_until("haproxy to mark r2 down", Duration::ZERO, || {
        ha.server_status("amiproxies", "r2")
            .is_some_and(|s| s.starts_with("DOWN"))
    });
    // Work goes on after the failover.
    let before = ledger.lock().unwrap().answers.len();
    let end = Instant::now() + DEADLINE;
    while ledger.lock().unwrap().answers.len() < before + 1000 {
        assert!(Instant::now() < end, "work stopped after the failover");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(1, Ordering::Release);
    sim.set_firehose(None);
    for t in tasks {
        t.await.unwrap();
    }
    let l = ledger.lock().unwrap();
    no_answer_twice(&l);
    // What was in flight on the dead replica is lost: at most one action per client there.
    let lost = l.sent - l.answers.len();
    assert!(
        lost <= victims,
        "lost {lost} answers for {victims} clients of the dead replica"
    );
    let worst = l.reconnects.iter().max().copied().unwrap_or_default();
    eprintln!(
        "SIGKILL: {victims} clients of r2 logged in again through haproxy; all back {all_back:?} after the kill; slowest single reconnect {worst:?}; actions lost in flight {lost}"
    );
}

/// `examples/cluster/run.sh --smoke`, as the README gives it: 2 simulated Asterisks, 3
/// replicas and HAProxy from one command, a login and an action through HAProxy.
#[test]
fn the_example_cluster_starts_with_one_command() {
    if common::servers::server_binary("haproxy", "haproxy").is_none() {
        return;
    }
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_amiproxy"))
        .parent()
        .unwrap()
        .to_owned();
    if !bin_dir.join("ami-sim").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = std::process::Command::new(cargo)
            .args(["build", "-q", "-p", "ami-sim"])
            .status()
            .unwrap();
        assert!(built.success());
    }
    // 23 ports from a base where every one of them is free now.
    let base = (0..20)
        .map(|_| free_port().saturating_sub(30).max(1024))
        .find(|b| (1..=22).all(|i| std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok()))
        .expect("a free run of ports");
    // HAProxy binds with SO_REUSEPORT: a front port inside that run would share a replica's
    // health port (its clients then meet HTTP), so it is taken from outside the run.
    let ami_port = (0..100)
        .map(|_| free_port())
        .find(|p| !(base..=base + 22).contains(p))
        .expect("a free port outside the run");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("bash")
        .arg(root.join("examples/cluster/run.sh"))
        .arg("--smoke")
        .env("BIN_DIR", &bin_dir)
        .env("AMI_PORT", ami_port.to_string())
        .env("BASE_PORT", base.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Authentication accepted") && text.contains("AsteriskVersion"),
        "{text}"
    );
    assert!(text.contains("Server: pbx1"), "the action went to an upstream: {text}");
}
