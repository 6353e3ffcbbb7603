#![no_main]
//! Bytes in, the proxy's answers out: one client session (`amiproxy::client::serve`) over an
//! in-memory duplex pipe, against a Core whose only upstream is never connected.
//!
//! First byte `b`: bit 7 prefixes a valid Login (bit 6: as the restricted `tenant`, else as
//! `admin`) so post-login paths are reached; bits 4..=5 pick the generation the proxy speaks
//! (`proxy.dialect`: auto, which is modern with no upstream connected, then 13, 1.8, 1.4);
//! bits 0..=3 the chunking of the rest (`0` one chunk, `1..=11` fixed chunks of that many
//! bytes, `12..=15` pseudo-random chunks of 1..=64).
//!
//! Checked on every input: no panic; the session ends once the client closes its side; the
//! output is the banner, then whole messages an upstream-role `AmiDecoder` reads cleanly; every
//! message is a `Response:` or an `Event:`; no event before a successful login, at most one
//! login, and only with a secret in the input; at most one response per request; nothing
//! after `Goodbye` (1.4: `See ya`) or `Authentication failed`; no configured secret in any answer (except
//! inside an ActionID the client itself sent with it); nothing leaks from one session to the
//! next (unauthenticated slots, event subscriptions).

use ami_proto::{AmiDecoder, Decoded, Kind, Message, Role, BANNER_PREFIX};
use ami_proto_fuzz::chunk_sizes;
use amiproxy::core::Core;
use amiproxy::Config;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One listener that is never bound, one upstream that is never connected (port 9, discard),
/// an admin and a restricted tenant. Failed logins never ban (`failed_logins = 0`): the ban
/// state lives in the shared Core, in real time, and would make every later login fail.
const CONFIG: &str = r#"
[proxy]
event_buffer = 16

[limits]
failed_logins = 0

[[listener]]
address = "127.0.0.1:0"

[[upstream]]
name = "pbx1"
kind = "asterisk"
address = "127.0.0.1:9"
username = "proxy"
secret = "upstream-secret"
channel_prefixes = ["PJSIP/", "Local/"]
queue_prefixes = ["sales"]

[[user]]
name = "admin"
secret = "admin-secret"
read = "all"
write = "all"

[[user]]
name = "tenant"
secret = "tenant-secret"
read = "call,agent,user,system"
write = "call,agent,originate,user,reporting"
channels = ["PJSIP/100*", "Local/100@default*"]
queues = ["sales"]
rule = [
  { action = "Originate", header = "Context", pattern = "^outbound$", effect = "allow" },
  { action = "QueueAdd", header = "Interface", pattern = "^PJSIP/100", effect = "allow" },
  { action = "Setvar", header = "Variable", pattern = "(?i)^secret", effect = "deny" },
]
eventfilter = [
  "action(include),name(UserEvent)",
  "!Channel: DAHDI/",
]
actions_per_sec = 5
burst = 10
"#;

/// Every secret the configuration holds; none may reach a client.
const SECRETS: [&str; 3] = ["admin-secret", "tenant-secret", "upstream-secret"];

const LOGIN_ADMIN: &[u8] = b"Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\n\r\n";
const LOGIN_TENANT: &[u8] = b"Action: Login\r\nUsername: tenant\r\nSecret: tenant-secret\r\n\r\n";

/// Virtual time (the runtime's clock is paused) a session may take to answer and close.
const SESSION_LIMIT: Duration = Duration::from_secs(3600);

/// `proxy.dialect` by selector bits 4..=5.
const DIALECTS: [&str; 4] = ["auto", "13", "1.8", "1.4"];

struct Fixture {
    /// The configuration once per dialect.
    configs: Vec<Config>,
    core: Arc<Core>,
    /// `CLIENT_SESSION_DUMP` set: print each session's output (to replay an input by hand).
    dump: bool,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let configs: Vec<Config> = DIALECTS
            .iter()
            .map(|d| {
                let text = CONFIG.replace("[proxy]\n", &format!("[proxy]\ndialect = \"{d}\"\n"));
                Config::from_toml(&text, Path::new(".")).expect("the fuzz configuration loads")
            })
            .collect();
        // Core::new starts no upstream link: pbx1 stays disconnected.
        let core = Core::new(configs[0].clone());
        let dump = std::env::var_os("CLIENT_SESSION_DUMP").is_some();
        Fixture { configs, core, dump }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let f = fixture();
    // Installing the configuration restarts the per-user rate limiters (they run on real
    // time), so every input starts from the same state; the upstream objects stay.
    let config = &f.configs[usize::from((selector >> 4) & 3)];
    f.core.install(config.clone(), f.core.state().upstreams.clone());
    let prefix: &[u8] = match selector & 0xC0 {
        0x80 => LOGIN_ADMIN,
        0xC0 => LOGIN_TENANT,
        _ => b"",
    };
    let chunking = selector & 0x0F;
    let sizes = chunk_sizes(if chunking < 12 { chunking } else { 0x80 | selector }, input.len());
    let out = converse(&f.core, config, prefix, input, &sizes);
    if f.dump {
        eprintln!("--- session output ---\n{}", String::from_utf8_lossy(&out));
    }
    check(prefix, input, &out);
});

/// Runs one session to its end: writes `prefix`, then `input` in chunks of `sizes`, closes
/// the write side, and returns everything the session wrote.
fn converse(core: &Arc<Core>, config: &Config, prefix: &[u8], input: &[u8], sizes: &[usize]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let out = rt.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let permit = core
            .unauth
            .clone()
            .try_acquire_owned()
            .expect("an unauthenticated slot is free");
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
        let session = tokio::spawn(amiproxy::client::serve(
            core.clone(),
            Box::new(server),
            amiproxy::client::Connection {
                peer,
                local: "127.0.0.1:5038".parse().expect("an address"),
                tls: false,
                since: std::time::SystemTime::now(),
                transport: amiproxy::sessions::Transport::Tcp,
                peer_cert: None,
            },
            permit,
            Arc::from("127.0.0.1:0"),
        ));
        let (mut rd, mut wr) = tokio::io::split(client);
        let write = async move {
            if wr.write_all(prefix).await.is_err() {
                return;
            }
            let mut pos = 0;
            let mut i = 0;
            while pos < input.len() {
                let n = sizes[i % sizes.len()].clamp(1, input.len() - pos);
                i += 1;
                // The session may have closed (Logoff, failed login): the rest goes nowhere.
                if wr.write_all(&input[pos..pos + n]).await.is_err() {
                    return;
                }
                pos += n;
                // Let the session read this chunk on its own.
                tokio::task::yield_now().await;
            }
            let _ = wr.shutdown().await;
        };
        let read = async move {
            let mut out = Vec::new();
            rd.read_to_end(&mut out).await.expect("reading the session's output");
            out
        };
        let (_, out) = tokio::time::timeout(SESSION_LIMIT, async { tokio::join!(write, read) })
            .await
            .expect("the session does not close its side after the client closed");
        tokio::time::timeout(SESSION_LIMIT, session)
            .await
            .expect("the session task does not end after closing its side")
            .expect("the session task failed");
        out
    });
    drop(rt);
    assert_eq!(
        core.unauth.available_permits(),
        config.proxy.auth_limit,
        "an unauthenticated slot outlived its session"
    );
    assert_eq!(core.hub.receivers(), 0, "an event subscription outlived its session");
    out
}

/// How many requests (messages and refused messages) a client-role decoder finds in what
/// the client sent: the session answers each at most once.
fn requests(prefix: &[u8], input: &[u8]) -> usize {
    let mut d = AmiDecoder::new(Role::Client);
    let mut buf = BytesMut::from(prefix);
    buf.extend_from_slice(input);
    let mut n = 0;
    while let Ok(Some(_)) = d.decode(&mut buf) {
        n += 1;
    }
    while let Ok(Some(_)) = d.decode_eof(&mut buf) {
        n += 1;
    }
    n
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn check(prefix: &[u8], input: &[u8], out: &[u8]) {
    assert!(
        out.starts_with(BANNER_PREFIX.as_bytes()),
        "output does not start with the banner: {:?}",
        lossy(out)
    );
    let mut d = AmiDecoder::new(Role::Upstream);
    let mut buf = BytesMut::from(out);
    let mut items = Vec::new();
    loop {
        match d.decode(&mut buf) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => break,
            Err(e) => panic!("output does not decode ({e}): {:?}", lossy(out)),
        }
    }
    assert!(buf.is_empty(), "output ends inside a message: {:?}", lossy(&buf));
    let mut items = items.into_iter();
    assert!(
        matches!(items.next(), Some(Decoded::Banner(_))),
        "no banner first: {:?}",
        lossy(out)
    );
    let msgs: Vec<Message> = items
        .map(|item| match item {
            Decoded::Message(m) => m,
            other => panic!("after the banner: {other:?}"),
        })
        .collect();

    let mut logged_in = false;
    let mut responses = 0;
    for (i, m) in msgs.iter().enumerate() {
        match m.kind() {
            Kind::Response => responses += 1,
            Kind::Event => assert!(logged_in, "event before login: {m:?}"),
            _ => panic!("neither a Response nor an Event: {m:?}"),
        }
        for line in m.as_bytes().split(|&b| b == b'\n') {
            // Lines that echo what the client wrote: its ActionID, and error messages that
            // name a value it sent (`Unknown upstream server: <its Server header>`).
            let echoed = (line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"actionid:"))
                || (line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"message:"));
            for s in SECRETS {
                if contains(line, s.as_bytes()) {
                    assert!(echoed && contains(input, s.as_bytes()), "a secret in the output: {m:?}");
                }
            }
        }
        let message = m.get("Message");
        if m.response() == Some("Success") && message == Some("Authentication accepted") {
            assert!(!logged_in, "a second login accepted: {m:?}");
            let whole = [prefix, input].concat();
            assert!(
                SECRETS[..2].iter().any(|s| contains(&whole, s.as_bytes())),
                "login accepted without a secret"
            );
            logged_in = true;
        }
        let last = m.response() == Some("Goodbye")
            || (m.response() == Some("Success") && message == Some("See ya"))
            || (m.response() == Some("Error") && message == Some("Authentication failed"));
        assert!(
            !last || i + 1 == msgs.len(),
            "{m:?} is followed by {:?}",
            &msgs[i + 1..]
        );
    }
    let asked = requests(prefix, input);
    assert!(
        responses <= asked,
        "{responses} responses to {asked} requests: {:?}",
        lossy(out)
    );
}
