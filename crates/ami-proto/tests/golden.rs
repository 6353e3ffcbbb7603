//! Golden tests: every byte-exact transcript captured from a real Asterisk 22.10.1
//! (`fixtures/transcripts/`) decodes, in either direction and under any chunking, into
//! exactly the messages its readable `.txt` form shows.
//!
//! The expected messages are rebuilt from the `.txt` rows independently of the decoder:
//! the rows of one direction are unescaped (`\r`, `\n`) and concatenated (a row is not always
//! a whole line: `18_pipelined_and_large` splits one action over four writes, mid-line), the
//! result is checked against the `.raw` file, then cut into lines and split on blank lines.

use ami_proto::{AmiDecoder, Decoded, Kind, Message, Role};
use bytes::{Bytes, BytesMut};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/transcripts"))
}

/// One direction of one transcript, as the `.txt` shows it.
#[derive(Default)]
struct Direction {
    /// The bytes rebuilt from the rows.
    bytes: Vec<u8>,
    /// recv()/write() chunk sizes from the `--- X +t N bytes` markers, in order.
    chunks: Vec<usize>,
}

struct Transcript {
    name: String,
    c2s: Direction,
    s2c: Direction,
}

/// Undoes the `.txt` escaping: the two-byte sequences `\r` and `\n` stand for CR and LF;
/// every other byte (a lone backslash too, as in `/^Local\/600/`) is literal.
fn unescape(row: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(row.len());
    let mut i = 0;
    while i < row.len() {
        if row[i] == b'\\' && i + 1 < row.len() && (row[i + 1] == b'r' || row[i + 1] == b'n') {
            out.push(if row[i + 1] == b'r' { b'\r' } else { b'\n' });
            i += 2;
        } else {
            out.push(row[i]);
            i += 1;
        }
    }
    out
}

/// Parses `--- S +0.002s 30 bytes` into (b'S', 30). EOF markers and anything else give None.
fn chunk_marker(line: &[u8]) -> Option<(u8, usize)> {
    let rest = line.strip_prefix(b"--- ")?;
    let dir = *rest.first()?;
    let text = std::str::from_utf8(rest).ok()?;
    let mut words = text.split(' ');
    let _dir = words.next()?;
    let _time = words.next()?;
    let n = words.next()?.parse().ok()?;
    (words.next()? == "bytes" && words.next().is_none()).then_some((dir, n))
}

fn load(txt: &Path) -> Transcript {
    let name = txt
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("utf-8 file name")
        .to_owned();
    let text = fs::read(txt).expect("read .txt");
    let mut c2s = Direction::default();
    let mut s2c = Direction::default();
    // Bytes of the rows under the current chunk marker, to check the marker's count.
    let mut current: Option<(u8, usize, usize)> = None;
    let check_chunk = |cur: Option<(u8, usize, usize)>| {
        if let Some((d, want, got)) = cur {
            assert_eq!(want, got, "{name}: rows under a `--- {}` marker", d as char);
        }
    };
    // 16b is an openssl s_client capture: no C:/S: rows, but its stdout section holds the
    // server's bytes, one line per row, CR shown as `\r` and LF implied.
    let mut in_stdout = false;
    for line in text.split(|&b| b == b'\n') {
        if in_stdout {
            if !line.is_empty() {
                s2c.bytes.extend(unescape(line));
                s2c.bytes.push(b'\n');
            }
            continue;
        }
        if line.starts_with(b"# --- stdout") {
            in_stdout = true;
            continue;
        }
        if let Some((d, n)) = chunk_marker(line) {
            check_chunk(current.take());
            match d {
                b'C' => c2s.chunks.push(n),
                b'S' => s2c.chunks.push(n),
                _ => panic!("{name}: bad marker {:?}", String::from_utf8_lossy(line)),
            }
            current = Some((d, n, 0));
            continue;
        }
        let (dir, row) = match line {
            [d @ (b'C' | b'S'), b':', b' ', row @ ..] => (*d, row),
            _ => continue,
        };
        let bytes = unescape(row);
        match &mut current {
            Some((d, _, got)) if *d == dir => *got += bytes.len(),
            _ => panic!("{name}: {} row outside a chunk of its direction", dir as char),
        }
        let target = if dir == b'C' { &mut c2s } else { &mut s2c };
        target.bytes.extend(bytes);
    }
    check_chunk(current.take());
    Transcript { name, c2s, s2c }
}

fn transcripts() -> Vec<Transcript> {
    let mut txts: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .expect("fixtures/transcripts")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    txts.sort();
    let all: Vec<Transcript> = txts.iter().map(|p| load(p)).collect();
    assert!(all.len() >= 20, "only {} transcripts found", all.len());
    all
}

fn raw(name: &str, dir: &str) -> Option<Vec<u8>> {
    let path = fixtures_dir().join(format!("{name}.{dir}.raw"));
    path.exists().then(|| fs::read(&path).expect("read .raw"))
}

/// What the decoder should yield, in a form whose failures print readably.
#[derive(Clone, PartialEq, Eq)]
enum Item {
    Banner(String),
    Message(Vec<u8>),
    Other(String),
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Banner(s) => write!(f, "Banner({s:?})"),
            Item::Message(b) => write!(f, "Message({:?})", String::from_utf8_lossy(b)),
            Item::Other(s) => write!(f, "{s}"),
        }
    }
}

/// The oracle: splits a stream into lines; in the upstream direction the first line is the
/// banner; a blank line (`\r\n` or `\n`) ends a message, blank lines between messages are
/// nothing. Returns the messages and whatever trailing bytes end no message.
fn expected(bytes: &[u8], banner: bool) -> (Vec<Item>, Vec<u8>) {
    let mut items = Vec::new();
    let mut current = Vec::new();
    let mut rest = bytes;
    let mut want_banner = banner;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let (line, tail) = rest.split_at(i + 1);
        rest = tail;
        if want_banner {
            want_banner = false;
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            items.push(Item::Banner(String::from_utf8_lossy(text).into_owned()));
            continue;
        }
        let blank = line == b"\r\n" || line == b"\n";
        if blank && current.is_empty() {
            continue;
        }
        current.extend_from_slice(line);
        if blank {
            items.push(Item::Message(std::mem::take(&mut current)));
        }
    }
    current.extend_from_slice(rest);
    (items, current)
}

/// Feeds `input` in chunks of the given sizes (the last one takes what is left), then EOF.
fn decode(role: Role, input: &[u8], sizes: impl IntoIterator<Item = usize>) -> Vec<Decoded> {
    let mut d = AmiDecoder::new(role);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut sizes = sizes.into_iter();
    while pos < input.len() {
        let n = sizes.next().unwrap_or(input.len() - pos).clamp(1, input.len() - pos);
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        while let Some(item) = d.decode(&mut buf).expect("decode error") {
            out.push(item);
        }
    }
    while let Some(item) = d.decode_eof(&mut buf).expect("decode_eof error") {
        out.push(item);
    }
    assert!(buf.is_empty(), "decode_eof left {} bytes buffered", buf.len());
    out
}

fn items(decoded: &[Decoded]) -> Vec<Item> {
    decoded
        .iter()
        .map(|d| match d {
            Decoded::Banner(s) => Item::Banner(s.clone()),
            Decoded::Message(m) => Item::Message(m.as_bytes().to_vec()),
            other => Item::Other(format!("{other:?}")),
        })
        .collect()
}

/// xorshift64*, so chunkings are reproducible without a rand crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Chunk sizes in 1..=max, enough to cover `len` bytes.
    fn sizes(&mut self, len: usize, max: usize) -> Vec<usize> {
        let mut v = Vec::new();
        let mut total = 0;
        while total < len {
            let n = 1 + (self.next() % max as u64) as usize;
            v.push(n);
            total += n;
        }
        v
    }
}

/// Every chunking to try for one stream: label and sizes.
fn chunkings(input_len: usize, real: &[usize]) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![
        ("all at once".to_owned(), vec![input_len.max(1)]),
        ("1 byte".to_owned(), vec![1; input_len]),
        ("2 bytes".to_owned(), vec![2; input_len.div_ceil(2)]),
        ("7 bytes".to_owned(), vec![7; input_len.div_ceil(7)]),
    ];
    if !real.is_empty() {
        v.push(("real recv chunks".to_owned(), real.to_vec()));
    }
    for seed in 1..=6u64 {
        let max = [3, 16, 64, 300, 1500, 9000][seed as usize - 1];
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        v.push((format!("random seed {seed} max {max}"), rng.sizes(input_len, max)));
    }
    v
}

/// Checks one direction of one transcript under every chunking; returns the messages.
fn check_direction(t: &Transcript, dir: &str, role: Role, d: &Direction) -> Vec<Message> {
    let Some(raw) = raw(&t.name, dir) else {
        assert!(d.bytes.is_empty(), "{}: rows but no {dir}.raw", t.name);
        return Vec::new();
    };
    assert_eq!(
        raw, d.bytes,
        "{}.{dir}: the .txt rows do not rebuild the .raw bytes",
        t.name
    );
    if !d.chunks.is_empty() {
        assert_eq!(
            d.chunks.iter().sum::<usize>(),
            raw.len(),
            "{}.{dir}: chunk sizes",
            t.name
        );
    }
    let (want, trailing) = expected(&raw, role == Role::Upstream);
    assert!(
        trailing.is_empty(),
        "{}.{dir}: stream ends mid-message: {:?}",
        t.name,
        String::from_utf8_lossy(&trailing)
    );
    if role == Role::Upstream {
        assert_eq!(
            want.first(),
            Some(&Item::Banner("Asterisk Call Manager/11.0.0".into())),
            "{}",
            t.name
        );
    }
    assert!(
        want.iter().any(|i| matches!(i, Item::Message(_))),
        "{}.{dir}: no message",
        t.name
    );

    let mut messages = Vec::new();
    for (label, sizes) in chunkings(raw.len(), &d.chunks) {
        let out = decode(role, &raw, sizes);
        assert_eq!(items(&out), want, "{}.{dir} ({label})", t.name);
        let msgs: Vec<Message> = out
            .into_iter()
            .filter_map(|d| match d {
                Decoded::Message(m) => Some(m),
                _ => None,
            })
            .collect();
        for m in &msgs {
            // Asterisk 22 sends no legacy `Response: Follows`, so the decoder's index must
            // be exactly what parsing the bytes alone gives.
            assert_eq!(m.legacy_output(), None, "{}.{dir} ({label})", t.name);
            assert_eq!(*m, Message::parse(m.bytes().clone()), "{}.{dir} ({label})", t.name);
        }
        if messages.is_empty() {
            messages = msgs;
        } else {
            assert_eq!(messages, msgs, "{}.{dir} ({label}): differs from all-at-once", t.name);
        }
    }
    messages
}

#[test]
fn every_transcript_decodes_to_its_messages_in_any_chunking() {
    let mut total = 0;
    for t in transcripts() {
        let c = check_direction(&t, "c2s", Role::Client, &t.c2s);
        let s = check_direction(&t, "s2c", Role::Upstream, &t.s2c);
        // Every client message is an action (or, in 09c, a message missing its Action).
        for m in &c {
            assert!(m.action().is_some() || m.kind() == Kind::Other, "{}: {m:?}", t.name);
        }
        // Every server message is a response or an event, by its first line.
        for m in &s {
            assert!(matches!(m.kind(), Kind::Response | Kind::Event), "{}: {m:?}", t.name);
        }
        total += c.len() + s.len();
    }
    assert!(total > 300, "only {total} messages in all transcripts");
}

/// Decodes one direction of a named transcript all at once.
fn messages(name: &str, dir: &str) -> Vec<Message> {
    let raw = raw(name, dir).expect("raw file");
    let role = if dir == "s2c" { Role::Upstream } else { Role::Client };
    decode(role, &raw, [raw.len()])
        .into_iter()
        .filter_map(|d| match d {
            Decoded::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn find<'a>(msgs: &'a [Message], what: &str, pred: impl Fn(&Message) -> bool) -> &'a Message {
    msgs.iter().find(|m| pred(m)).unwrap_or_else(|| panic!("no {what}"))
}

#[test]
fn login_and_split_ping_response() {
    let s = messages("01_banner_login_ping", "s2c");
    let login = find(&s, "login response", |m| m.action_id() == Some("login-1"));
    assert_eq!(login.kind(), Kind::Response);
    assert_eq!(login.response(), Some("Success"));
    assert_eq!(login.get("message"), Some("Authentication accepted"));
    assert_eq!(login.event_name(), None);

    // This response arrived in two recv() chunks.
    let ping = find(&s, "ping response", |m| m.action_id() == Some("ping-1"));
    assert_eq!(ping.get("Ping"), Some("Pong"));
    assert!(ping.get("Timestamp").is_some_and(|t| t.starts_with("1795691447.")));
    assert_eq!(ping.field_count(), 4);

    let booted = find(&s, "FullyBooted", |m| m.event_name() == Some("FullyBooted"));
    assert_eq!(booted.kind(), Kind::Event);
    assert_eq!(booted.get("Status"), Some("Fully Booted"));
    assert_eq!(booted.get("Privilege"), Some("system,all"));
    assert_eq!(booted.action_id(), None);

    let bye = find(&s, "Goodbye", |m| m.response() == Some("Goodbye"));
    assert_eq!(bye.action_id(), Some("bye-1"));
    assert_eq!(bye.get("Message"), Some("Thanks for all the fish."));

    let c = messages("01_banner_login_ping", "c2s");
    assert_eq!(c[0].kind(), Kind::Action);
    assert_eq!(c[0].action(), Some("Login"));
    assert_eq!(c[0].get("Secret"), Some("admin-secret"));
    let pings: Vec<_> = c.iter().filter(|m| m.action() == Some("Ping")).collect();
    assert_eq!(pings.len(), 2);
    assert_eq!(pings[0].action_id(), Some("ping-1"));
    assert_eq!(pings[1].action_id(), None);
}

#[test]
fn originate_response_is_an_event_and_variables_stay_in_order() {
    let c = messages("02_originate_local_wait_async", "c2s");
    let orig = find(&c, "Originate", |m| m.action() == Some("Originate"));
    assert_eq!(orig.action_id(), Some("orig-1"));
    assert_eq!(
        orig.get_all("Variable").collect::<Vec<_>>(),
        ["TST_VAR1=one", "TST_VAR2=two"]
    );
    assert_eq!(orig.get("variable"), Some("TST_VAR1=one"), "first one wins on lookup");
    assert_eq!(orig.get("CallerID"), Some("\"AMI Test\" <5551234>"));

    let s = messages("02_originate_local_wait_async", "s2c");
    let queued = find(&s, "queued response", |m| {
        m.kind() == Kind::Response && m.action_id() == Some("orig-1")
    });
    assert_eq!(queued.get("Message"), Some("Originate successfully queued"));

    let resp = find(&s, "OriginateResponse", |m| m.get("Event") == Some("OriginateResponse"));
    assert_eq!(resp.kind(), Kind::Event);
    assert_eq!(resp.event_name(), Some("OriginateResponse"));
    assert_eq!(resp.response(), None, "an event, whatever its Response: header says");
    assert_eq!(resp.get("Response"), Some("Success"));
    assert_eq!(resp.action_id(), Some("orig-1"));
    assert_eq!(resp.get("Channel"), Some("Local/100@default-00000000;1"));
    let keys: Vec<&str> = resp.headers().map(|(k, _)| k).take(4).collect();
    assert_eq!(keys, ["Event", "Privilege", "ActionID", "Response"]);
}

#[test]
fn failed_originates() {
    let s = messages("03_originate_local_sync_and_failure", "s2c");
    assert!(s
        .iter()
        .any(|m| m.event_name() == Some("OriginateResponse") && m.get("Response") == Some("Failure")));
    assert!(s
        .iter()
        .any(|m| m.response() == Some("Error") && m.get("Message") == Some("Originate failed")));
}

#[test]
fn command_output_lines_are_repeated_headers_in_order() {
    let s = messages("07_command", "s2c");
    let cmd = find(&s, "cmd-1", |m| m.action_id() == Some("cmd-1"));
    assert_eq!(cmd.get("Message"), Some("Command output follows"));
    let out: Vec<&str> = cmd.get_all("Output").collect();
    assert_eq!(out.len(), 6);
    // Trailing blanks of a value are kept.
    assert!(out[0].starts_with("Channel ") && out[0].ends_with("Application(Data)             "));
    assert!(out[1].starts_with("Local/600@default-00000007;2"));
    assert!(out[2].starts_with("Local/600@default-00000007;1"));
    assert_eq!(&out[3..], ["2 active channels", "1 active call", "7 calls processed"]);
    assert_eq!(cmd.get("Output"), Some(out[0]));

    // cmd-2 came in several recv() chunks.
    let cmd2 = find(&s, "cmd-2", |m| m.action_id() == Some("cmd-2"));
    assert!(cmd2
        .get_all("Output")
        .next()
        .is_some_and(|o| o.starts_with("Local/600@default-00000007;2!default!600!3!Up!Wait!30")));

    let c = messages("07_command", "c2s");
    let hangup = find(&c, "Hangup", |m| m.action() == Some("Hangup"));
    assert_eq!(hangup.get("Channel"), Some("/^Local\\/600@default-.*/"));
}

#[test]
fn event_lists_carry_the_action_id() {
    let s = messages("04_queue_actions", "s2c");
    let start = find(&s, "qs-1 start", |m| m.action_id() == Some("qs-1"));
    assert_eq!(start.kind(), Kind::Response);
    assert_eq!(start.get("EventList"), Some("start"));
    let items: Vec<&Message> = s.iter().filter(|m| m.action_id() == Some("qs-1")).collect();
    let done = items.last().expect("items");
    assert_eq!(done.event_name(), Some("QueueStatusComplete"));
    assert_eq!(done.get("EventList"), Some("Complete"));
    assert_eq!(done.get("ListItems"), Some("4"));
    assert_eq!(items.len(), 1 + 4 + 1);
}

#[test]
fn garbage_lowercase_and_bare_lf_from_clients() {
    let c = messages("09c_garbage_and_missing_action", "c2s");
    assert_eq!(c[0].kind(), Kind::Other);
    assert_eq!(c[0].action(), None);
    assert_eq!(c[0].action_id(), Some("noaction"));
    assert_eq!(c[0].get("Foo"), Some("bar"));

    let lower = find(&c, "lower-case", |m| m.action_id() == Some("lowercase"));
    assert_eq!(lower.kind(), Kind::Action);
    assert_eq!(lower.action(), Some("ping"));
    assert_eq!(lower.get("ACTION"), Some("ping"));

    let lf = find(&c, "bare LF", |m| m.action_id() == Some("bare-lf"));
    assert_eq!(lf.as_bytes(), b"Action: Ping\nActionID: bare-lf\n\n");
    assert_eq!(lf.action(), Some("Ping"));
    let r = lf.with_header("ActionID", "proxy-7");
    assert_eq!(r.as_bytes(), b"Action: Ping\nActionID: proxy-7\n\n");
    assert_eq!(r, Message::parse(Bytes::copy_from_slice(r.as_bytes())));

    let s = messages("09c_garbage_and_missing_action", "s2c");
    let missing = find(&s, "missing action", |m| m.action_id() == Some("noaction"));
    assert_eq!(missing.get("Message"), Some("Missing action in request"));
    // The bare-LF ping was answered in CRLF, across three recv() chunks.
    let pong = find(&s, "bare-lf pong", |m| m.action_id() == Some("bare-lf"));
    assert!(pong
        .as_bytes()
        .starts_with(b"Response: Success\r\nActionID: bare-lf\r\nPing: Pong\r\n"));
}

#[test]
fn user_event_copies_the_action_id() {
    let s = messages("13_userevent", "s2c");
    let ue = find(&s, "UserEvent", |m| {
        m.event_name() == Some("UserEvent") && m.action_id().is_some()
    });
    assert_eq!(ue.action_id(), Some("ue-1"));
    assert_eq!(ue.get("UserEvent"), Some("AmiTest"));
    assert_eq!(ue.get("Header1"), Some("value one"));
}

#[test]
fn pipelined_and_split_actions() {
    let c = messages("18_pipelined_and_large", "c2s");
    let ids: Vec<Option<&str>> = c.iter().map(|m| m.action_id()).collect();
    for id in ["p1", "p2", "p3", "split"] {
        assert!(ids.contains(&Some(id)), "{id} in {ids:?}");
    }
    let split = find(&c, "split", |m| m.action_id() == Some("split"));
    assert_eq!(split.as_bytes(), b"Action: Ping\r\nActionID: split\r\n\r\n");

    let s = messages("18_pipelined_and_large", "s2c");
    let biggest = s.iter().max_by_key(|m| m.len()).expect("messages");
    assert!(biggest.get_all("Output").count() > 100);
    assert!(biggest.len() > 4096);
}

#[test]
fn tls_openssl_capture() {
    let s = messages("16b_tls_openssl_s_client", "s2c");
    assert_eq!(s.len(), 3);
    assert_eq!(s[1].action_id(), Some("tls-cmd"));
    assert!(s[1]
        .get("Output")
        .is_some_and(|o| o.starts_with("Asterisk 22.10.1 built by root")));
    assert_eq!(s[2].response(), Some("Goodbye"));
}
