//! Shared helpers: start a sim, talk AMI to it, replay captured transcripts.
#![allow(dead_code)]

use ami_sim::{SimConfig, SimHandle};
use regex::Regex;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// How long any one wait may take before the test fails: generous, for a busy machine.
/// Waits end on a signal (a message, a close, a condition); this only bounds a hang.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/transcripts");

/// Starts a sim on an ephemeral port with a short bad-login delay.
pub async fn sim() -> SimHandle {
    sim_with(SimConfig {
        auth_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
}

pub async fn sim_with(cfg: SimConfig) -> SimHandle {
    ami_sim::start(cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// A raw AMI client: reads whole messages (split on the blank line).
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub banner: String,
}

impl Client {
    pub async fn connect(sim: &SimHandle) -> Client {
        let stream = TcpStream::connect(sim.addr()).await.unwrap();
        let mut c = Client {
            stream,
            buf: Vec::new(),
            banner: String::new(),
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(i) = c.buf.windows(2).position(|w| w == b"\r\n") {
                c.banner = String::from_utf8_lossy(&c.buf[..i + 2]).into_owned();
                c.buf.drain(..i + 2);
                break;
            }
            assert!(c.fill(deadline).await, "no banner");
        }
        c
    }

    /// Reads more bytes; false on EOF or deadline.
    async fn fill(&mut self, deadline: Instant) -> bool {
        let mut tmp = [0u8; 65536];
        match timeout_at(deadline, self.stream.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            _ => false,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Next whole message (text incl. the blank line) or None on EOF/deadline.
    pub async fn next_until(&mut self, deadline: Instant) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let m: Vec<u8> = self.buf.drain(..i + 4).collect();
                return Some(String::from_utf8_lossy(&m).into_owned());
            }
            if !self.fill(deadline).await {
                return None;
            }
        }
    }

    pub async fn next(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        self.next_until(deadline).await.expect("message from sim")
    }

    /// Next message whose first line is `Event: <name>` (others are skipped).
    pub async fn next_event(&mut self, name: &str) -> String {
        let want = format!("Event: {name}\r\n");
        loop {
            let m = self.next().await;
            if m.starts_with(&want) {
                return m;
            }
        }
    }

    /// Sends an action, returns the first message starting with `Response:`.
    pub async fn action(&mut self, text: &str) -> String {
        self.send(text.as_bytes()).await;
        loop {
            let m = self.next().await;
            if m.starts_with("Response:") {
                return m;
            }
        }
    }

    pub async fn login(&mut self, user: &str, secret: &str, events: &str) -> String {
        let r = self
            .action(&format!(
                "Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nEvents: {events}\r\n\r\n"
            ))
            .await;
        assert!(r.contains("Authentication accepted"), "{r}");
        r
    }

    /// True when nothing has arrived that was not read yet (checked now, without waiting).
    pub fn nothing_received(&mut self) -> bool {
        let mut tmp = [0u8; 1];
        self.buf.is_empty()
            && matches!(self.stream.try_read(&mut tmp), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// True when the server closes the connection before the deadline (pending messages
    /// are skipped).
    pub async fn closed_within(&mut self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            if Instant::now() >= deadline {
                return false;
            }
            let mut tmp = [0u8; 4096];
            match timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Value of a header in a message text.
pub fn header<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        l.split_once(": ")
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Polls until `f` holds, failing after `within`.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "condition not met in {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- transcripts

/// One `--- C`/`--- S` block of a transcript.
#[derive(Debug, Clone)]
pub enum Chunk {
    Client { at: f64, bytes: Vec<u8> },
    Server { bytes: Vec<u8> },
    Eof,
}

fn unescape(line: &str) -> Vec<u8> {
    line.replace("\\r", "\r").replace("\\n", "\n").into_bytes()
}

/// Parses NAME.txt into its blocks (lines shown with literal `\r\n`).
pub fn load(name: &str) -> Vec<Chunk> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}.txt")).unwrap();
    let mut out: Vec<Chunk> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("--- ") {
            let mut parts = rest.split_whitespace();
            let dir = parts.next().unwrap_or("");
            let at = parts
                .next()
                .and_then(|t| t.trim_start_matches('+').trim_end_matches('s').parse::<f64>().ok())
                .unwrap_or(0.0);
            if rest.contains("EOF") {
                out.push(Chunk::Eof);
            } else if dir == "C" {
                out.push(Chunk::Client { at, bytes: Vec::new() });
            } else {
                out.push(Chunk::Server { bytes: Vec::new() });
            }
        } else if let Some(l) = line.strip_prefix("C: ") {
            if let Some(Chunk::Client { bytes, .. }) = out.last_mut() {
                bytes.extend(unescape(l));
            }
        } else if let Some(l) = line.strip_prefix("S: ") {
            if let Some(Chunk::Server { bytes }) = out.last_mut() {
                bytes.extend(unescape(l));
            }
        }
    }
    out
}

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap()
}

/// Header values that differ between runs (times, ids, addresses, counters).
const VOLATILE: &[&str] = &[
    "Uptime",
    "LastReload",
    "SessionID",
    "LocalAddress",
    "RemoteAddress",
    "Challenge",
    "LoginTime",
    "LastPause",
    "LastCall",
    "Duration",
    "BillableSeconds",
    "Seconds",
    "CoreStartupDate",
    "CoreStartupTime",
    "CoreReloadDate",
    "CoreReloadTime",
    "CoreProcessedCalls",
    "Timestamp",
];

/// Rewrites everything that legitimately differs between two runs.
pub fn normalize(msg: &str, extra: &[&str]) -> String {
    static RES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        vec![
            (re(r"-[0-9a-f]{8};"), "-XXXXXXXX;"),
            (re(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000"), "<tv>"),
            (re(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"), "<datetime>"),
            (re(r"\d{9,10}\.\d+"), "<id>"),
            (re(r"!3!\d+!!"), "!3!<dur>!!"),
            (re(r"\d+ calls? processed"), "<n> calls processed"),
        ]
    });
    let mut s = msg.to_owned();
    for (r, with) in res {
        s = r.replace_all(&s, *with).into_owned();
    }
    s.split("\r\n")
        .map(|l| match l.split_once(": ") {
            Some((k, _)) if VOLATILE.contains(&k) || extra.contains(&k) => format!("{k}: <x>"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Splits server bytes into messages (text incl. blank line).
fn split_messages(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut rest: &str = &text;
    while let Some(i) = rest.find("\r\n\r\n") {
        out.push(rest[..i + 4].to_owned());
        rest = &rest[i + 4..];
    }
    out
}

/// What a helper connection does during a replay, run after the first answer to the
/// client block with the given index.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    /// Originate `Local/<exten>@default` Wait 1 from another connection.
    Originate(&'static str),
    /// The same, then wait until the call is over.
    OriginateAndWait(&'static str),
}

pub struct Replay {
    pub name: &'static str,
    /// Compare each block's answers as a multiset (event interleaving differs per run).
    pub unordered: bool,
    pub extra_volatile: &'static [&'static str],
    pub hooks: Vec<(usize, Hook)>,
    pub cfg: SimConfig,
    /// Client blocks to leave out (and their answers).
    pub skip: Vec<usize>,
}

impl Replay {
    pub fn new(name: &'static str) -> Replay {
        Replay {
            name,
            unordered: false,
            extra_volatile: &[],
            hooks: Vec::new(),
            cfg: SimConfig {
                auth_delay: Duration::from_millis(50),
                ..SimConfig::default()
            },
            skip: Vec::new(),
        }
    }

    /// Replays the client side against a fresh sim and compares every server message.
    pub async fn run(self) {
        let sim = sim_with(self.cfg.clone()).await;
        let mut helper = None;
        if !self.hooks.is_empty() {
            let mut h = Client::connect(&sim).await;
            h.login("admin", "admin-secret", "off").await;
            helper = Some(h);
        }
        let chunks = load(self.name);
        let mut c = Client::connect(&sim).await;
        // The banner (first server block).
        let mut chunks = chunks.into_iter().peekable();
        if let Some(Chunk::Server { bytes }) = chunks.next() {
            assert_eq!(c.banner.as_bytes(), &bytes[..], "{}: banner", self.name);
        }
        // Group: client block, then the server messages up to the next client block.
        let mut groups: Vec<(f64, Vec<u8>, Vec<u8>, bool)> = Vec::new();
        for ch in chunks {
            match ch {
                Chunk::Client { at, bytes } => groups.push((at, bytes, Vec::new(), false)),
                Chunk::Server { bytes } => {
                    if let Some(g) = groups.last_mut() {
                        g.2.extend(bytes);
                    }
                }
                Chunk::Eof => {
                    if let Some(g) = groups.last_mut() {
                        g.3 = true;
                    }
                }
            }
        }
        // No pacing: each block is sent once every message the previous one brought has
        // arrived (a call's events included), which is all the state the next one needs.
        for (i, (_, send, expect, eof)) in groups.into_iter().enumerate() {
            if self.skip.contains(&i) {
                continue;
            }
            c.send(&send).await;
            let expected = split_messages(&expect);
            // A block's messages may span a call of a few seconds.
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut got = Vec::new();
            while got.len() < expected.len() {
                let m = c.next_until(deadline).await;
                let Some(m) = m else {
                    panic!(
                        "{}: block {i}: got {} of {} messages:\n{}\nexpected:\n{}",
                        self.name,
                        got.len(),
                        expected.len(),
                        got.join(""),
                        expected.join("")
                    );
                };
                got.push(m);
                if got.len() == 1 {
                    for (_, hook) in self.hooks.iter().filter(|(k, _)| *k == i) {
                        run_hook(&sim, helper.as_mut().unwrap(), *hook).await;
                    }
                }
            }
            if expected.is_empty() {
                for (_, hook) in self.hooks.iter().filter(|(k, _)| *k == i) {
                    run_hook(&sim, helper.as_mut().unwrap(), *hook).await;
                }
            }
            let norm = |v: &[String]| -> Vec<String> {
                let mut n: Vec<String> = v.iter().map(|m| normalize(m, self.extra_volatile)).collect();
                if self.unordered {
                    n.sort();
                }
                n
            };
            let (g, e) = (norm(&got), norm(&expected));
            for (k, (a, b)) in g.iter().zip(e.iter()).enumerate() {
                assert_eq!(a, b, "{}: block {i}, message {k}", self.name);
            }
            if eof {
                assert!(c.closed_within(DEADLINE).await, "{}: expected EOF", self.name);
            }
        }
    }
}

async fn run_hook(sim: &SimHandle, h: &mut Client, hook: Hook) {
    let (exten, wait) = match hook {
        Hook::Originate(e) => (e, false),
        Hook::OriginateAndWait(e) => (e, true),
    };
    let r = h
        .action(&format!(
            "Action: Originate\r\nChannel: Local/{exten}@default\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\nActionID: trig\r\n\r\n"
        ))
        .await;
    assert!(r.contains("Originate successfully queued"), "{r}");
    if wait {
        eventually(DEADLINE, || sim.channel_count() > 0).await;
        eventually(DEADLINE, || sim.channel_count() == 0).await;
    }
}
