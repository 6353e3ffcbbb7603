//! Property tests for the codec: builder/decoder round trips, chunking independence,
//! robustness against arbitrary bytes, and the header edits agreeing with a re-parse.

use ami_proto::{AmiDecoder, Decoded, Kind, Limits, Message, MessageBuilder, Role};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

/// Header names as clients and Asterisk write them (no colon, no blanks, no line breaks).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z][A-Za-z0-9_-]{0,15}",
        1 => prop::sample::select(vec!["ActionID", "actionid", "Variable", "Output", "Event", "Channel"])
            .prop_map(str::to_owned),
    ]
}

/// Any text, line breaks included (the builder must neutralise them).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ -~]{0,30}",
        1 => prop::collection::vec(any::<char>(), 0..30).prop_map(|v| v.into_iter().collect()),
        1 => prop::sample::select(vec!["", " lead", "\tx", "trail ", "a\r\nAction: Originate", "x\ry", "\n"])
            .prop_map(str::to_owned),
    ]
}

fn headers(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((key(), value()), n)
}

fn build(h: &[(String, String)]) -> Message {
    h.iter().fold(MessageBuilder::new(), |b, (k, v)| b.header(k, v)).build()
}

/// What a value reads back as: line breaks became blanks, leading blanks are skipped.
fn cleaned(v: &str) -> String {
    // Leading bytes below '!' are skipped, as Asterisk's ast_skip_blanks does.
    v.replace(['\r', '\n'], " ")
        .trim_start_matches(|c: char| (c as u32) < 0x21)
        .to_owned()
}

fn is_follows(h: &[(String, String)]) -> bool {
    h.first()
        .is_some_and(|(k, v)| k.eq_ignore_ascii_case("Response") && cleaned(v).trim().eq_ignore_ascii_case("Follows"))
}

fn decoder(role: Role, limits: Option<Limits>) -> AmiDecoder {
    let d = match limits {
        Some(l) => AmiDecoder::with_limits(role, l),
        None => AmiDecoder::new(role),
    };
    d.skip_banner()
}

/// The outcome of decoding a stream: everything decoded, and whether it ended in an error.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    items: Vec<Decoded>,
    error: bool,
    /// Largest buffer seen after a `decode` that asked for more input.
    max_buffered: usize,
}

/// Feeds `input` in chunks whose sizes cycle through `sizes` (0 means 1), then EOF.
fn run(mut d: AmiDecoder, input: &[u8], sizes: &[usize]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut out = Outcome {
        items: Vec::new(),
        error: false,
        max_buffered: 0,
    };
    let mut pos = 0;
    let mut i = 0;
    while pos < input.len() {
        let n = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(input.len()).max(1);
        let n = n.min(input.len() - pos);
        i += 1;
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        loop {
            match d.decode(&mut buf) {
                Ok(Some(item)) => out.items.push(item),
                Ok(None) => break,
                Err(_) => {
                    out.error = true;
                    return out;
                }
            }
        }
        out.max_buffered = out.max_buffered.max(buf.len());
    }
    loop {
        match d.decode_eof(&mut buf) {
            Ok(Some(item)) => out.items.push(item),
            Ok(None) => break,
            Err(_) => {
                out.error = true;
                break;
            }
        }
    }
    out
}

fn one_chunk(role: Role, limits: Option<Limits>, input: &[u8]) -> Outcome {
    run(decoder(role, limits), input, &[input.len()])
}

fn messages(items: &[Decoded]) -> Vec<&Message> {
    items
        .iter()
        .filter_map(|d| match d {
            Decoded::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Byte streams shaped like AMI, with every hazard the decoder knows about.
fn ami_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            &b"\r\n"[..], b"\n", b"\r", b":", b" ", b"\r\n\r\n", b"Action: Ping\r\n", b"ActionID: a1\r\n",
            b"actionid:x\n", b"Event: X\r\n", b"Response: Follows\r\n", b"Response: Success\r\n",
            b"Privilege: Command\r\n", b"--END COMMAND--", b"--END COMMAND--\r\n\r\n", b"Asterisk Call Manager/11.0.0\r\n",
        ])
        .prop_map(<[u8]>::to_vec),
        2 => "[a-zA-Z0-9 :\t]{0,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..8),
        1 => (0usize..80).prop_map(|n| vec![b'x'; n]),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

/// Small limits so the line, line-count and message caps are all reached quickly.
fn small_limits() -> impl Strategy<Value = Limits> {
    (4usize..40, 1usize..8).prop_map(|(max_line, max_lines)| Limits {
        max_line,
        max_lines,
        max_message: max_line * (max_lines + 1),
    })
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![1]),
        prop::collection::vec(1usize..8, 1..20),
        prop::collection::vec(1usize..200, 1..20),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A built message decodes, in either role, to exactly itself: same bytes, same index,
    /// every header back in order with its cleaned value.
    #[test]
    fn builder_decoder_round_trip(h in headers(1..24), upstream in any::<bool>()) {
        prop_assume!(!(upstream && is_follows(&h)));
        let built = build(&h);
        let bytes = built.bytes().clone();
        prop_assert!(bytes.ends_with(b"\r\n\r\n"));
        prop_assert_eq!(&built, &Message::parse(bytes.clone()));

        let role = if upstream { Role::Upstream } else { Role::Client };
        let out = one_chunk(role, None, &bytes);
        prop_assert!(!out.error);
        prop_assert_eq!(out.items.len(), 1);
        let Decoded::Message(m) = &out.items[0] else {
            return Err(TestCaseError::fail(format!("{:?}", out.items)));
        };
        prop_assert_eq!(m, &built);
        prop_assert_eq!(m.field_count(), h.len());
        let want: Vec<(String, String)> = h.iter().map(|(k, v)| (k.clone(), cleaned(v))).collect();
        let got: Vec<(String, String)> = m.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        prop_assert_eq!(&got, &want);
        for (k, _) in &h {
            let same_key = || want.iter().filter(|(k2, _)| k2.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
            prop_assert_eq!(m.get(&k.to_ascii_uppercase()), same_key().next());
            let lower = k.to_ascii_lowercase();
            prop_assert_eq!(m.get_all(&lower).collect::<Vec<_>>(), same_key().collect::<Vec<_>>());
        }
        let first = h[0].0.to_ascii_lowercase();
        let kind = match first.as_str() {
            "event" => Kind::Event,
            "response" => Kind::Response,
            "action" => Kind::Action,
            _ => Kind::Other,
        };
        prop_assert_eq!(m.kind(), kind);
    }

    /// Several messages back to back (CRLF or bare LF, stray blank lines between them) give
    /// the same messages whatever the chunking, in either role.
    #[test]
    fn chunking_does_not_matter_for_a_message_stream(
        msgs in prop::collection::vec((headers(1..10), any::<bool>(), 0usize..3), 1..8),
        sizes in chunk_sizes(),
        upstream in any::<bool>(),
    ) {
        let role = if upstream { Role::Upstream } else { Role::Client };
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (h, bare_lf, blanks) in &msgs {
            prop_assume!(!(upstream && is_follows(h)));
            let mut b = build(h).as_bytes().to_vec();
            if *bare_lf {
                b = String::from_utf8(b).map_err(|e| TestCaseError::fail(e.to_string()))?.replace("\r\n", "\n").into_bytes();
            }
            for _ in 0..*blanks {
                stream.extend_from_slice(b"\r\n");
            }
            stream.extend_from_slice(&b);
            want.push(b);
        }
        let whole = one_chunk(role, None, &stream);
        prop_assert!(!whole.error);
        let got: Vec<&[u8]> = messages(&whole.items).iter().map(|m| m.as_bytes()).collect();
        prop_assert_eq!(got, want.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let chunked = run(decoder(role, None), &stream, &sizes);
        prop_assert_eq!(&chunked.items, &whole.items);
        prop_assert!(!chunked.error);
    }

    /// A tagging decoder gives every event exactly what tagging it afterwards would
    /// (`into_only`: bytes and index), and leaves alone what it must not tag: messages that
    /// are not events, and events that name the tag's header themselves.
    #[test]
    fn a_tagging_decoder_tags_as_into_only_would(
        msgs in prop::collection::vec((headers(1..10), any::<bool>(), any::<bool>()), 1..8),
        sizes in chunk_sizes(),
        value in value(),
    ) {
        const KEY: &str = "Server";
        let mut stream = Vec::new();
        for (h, event, clash) in &msgs {
            let mut h = h.clone();
            if *event {
                h.insert(0, ("Event".into(), "Newstate".into()));
            }
            if *clash {
                let at = h.len() / 2;
                h.insert(at, (" server ".into(), "forged".into()));
            }
            prop_assume!(!is_follows(&h));
            stream.extend_from_slice(build(&h).as_bytes());
        }
        let plain = run(decoder(Role::Upstream, None), &stream, &sizes);
        let tagging = run(decoder(Role::Upstream, None).tagging_events(KEY, &value), &stream, &sizes);
        prop_assert_eq!(plain.error, tagging.error);
        let (plain, tagged) = (messages(&plain.items), messages(&tagging.items));
        prop_assert_eq!(plain.len(), tagged.len());
        for (p, t) in plain.into_iter().zip(tagged) {
            let names_key = p.headers().any(|(k, _)| k.trim().eq_ignore_ascii_case(KEY));
            if p.kind() == Kind::Event && !names_key {
                let want = p.clone().into_only(KEY, &value);
                prop_assert_eq!(t.as_bytes(), want.as_bytes());
                prop_assert_eq!(t.headers().collect::<Vec<_>>(), want.headers().collect::<Vec<_>>());
                prop_assert_eq!(t.decoder_tag().map(|(_, v)| v.to_vec()), Some(cleaned(&value).into_bytes()));
                // Its index is the one a fresh parse gives.
                let reparsed = Message::parse(Bytes::copy_from_slice(t.as_bytes()));
                prop_assert_eq!(t.headers().collect::<Vec<_>>(), reparsed.headers().collect::<Vec<_>>());
            } else {
                prop_assert_eq!(t.as_bytes(), p.as_bytes());
                prop_assert!(t.decoder_tag().is_none());
            }
            // An edit drops the decoder's word for the tag.
            prop_assert!(t.with_header("X", "y").decoder_tag().is_none());
        }
    }

    /// Arbitrary bytes never panic the decoder, in either role, default limits; the client
    /// role never fails (it refuses and goes on); chunking changes nothing; every message
    /// without legacy output re-parses to itself.
    #[test]
    fn arbitrary_bytes_default_limits(input in ami_ish_bytes(), sizes in chunk_sizes()) {
        for role in [Role::Client, Role::Upstream] {
            let whole = one_chunk(role, None, &input);
            let chunked = run(decoder(role, None), &input, &sizes);
            prop_assert_eq!(&chunked.items, &whole.items, "{:?}", role);
            prop_assert_eq!(chunked.error, whole.error, "{:?}", role);
            if role == Role::Client {
                prop_assert!(!whole.error);
            }
            for m in messages(&whole.items) {
                if m.legacy_output().is_none() {
                    prop_assert_eq!(m, &Message::parse(m.bytes().clone()));
                }
                // Where the decoder noted the ActionID is where a look finds it.
                prop_assert_eq!(m.action_id(), m.get("ActionID"));
                let edited = m.with_header("X", "y");
                prop_assert_eq!(edited.action_id(), m.get("ActionID"));
            }
        }
    }

    /// Same with small limits, so every limit path is exercised; the client role still never
    /// fails and buffers at most a full message of maximal lines plus one partial line.
    #[test]
    fn arbitrary_bytes_small_limits(input in ami_ish_bytes(), sizes in chunk_sizes(), limits in small_limits()) {
        let whole = one_chunk(Role::Client, Some(limits), &input);
        let chunked = run(decoder(Role::Client, Some(limits)), &input, &sizes);
        prop_assert_eq!(&chunked.items, &whole.items);
        prop_assert!(!whole.error && !chunked.error);
        let bound = limits.max_lines * (limits.max_line + 2) + limits.max_line + 1;
        prop_assert!(chunked.max_buffered <= bound, "buffered {} > {}", chunked.max_buffered, bound);
        for m in messages(&whole.items) {
            prop_assert!(m.field_count() <= limits.max_lines);
            prop_assert_eq!(m, &Message::parse(m.bytes().clone()));
        }

        let whole = one_chunk(Role::Upstream, Some(limits), &input);
        let chunked = run(decoder(Role::Upstream, Some(limits)), &input, &sizes);
        prop_assert_eq!(&chunked.items, &whole.items);
        prop_assert_eq!(chunked.error, whole.error);
    }

    /// Raw random bytes (no AMI shape at all), both roles, with the banner state too.
    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..3000), sizes in chunk_sizes()) {
        for role in [Role::Client, Role::Upstream] {
            let _ = run(AmiDecoder::new(role), &input, &sizes);
            let _ = run(AmiDecoder::new(role), &input, &[input.len()]);
        }
    }

    /// The header edits give exactly what parsing their output bytes gives, on CRLF and
    /// bare-LF messages, lines without a colon, and keys present, absent or in another case.
    #[test]
    fn edits_equal_reparse(
        h in headers(0..10),
        bare_lf in any::<bool>(),
        junk_line in any::<bool>(),
        pick in any::<prop::sample::Index>(),
        other_key in key(),
        upper in any::<bool>(),
        new_value in "[ -~]{0,20}",
    ) {
        let mut text = String::new();
        for (k, v) in &h {
            text.push_str(&format!("{k}: {}\r\n", v.replace(['\r', '\n'], " ")));
        }
        if junk_line {
            text.push_str("no colon here\r\n");
        }
        text.push_str("\r\n");
        if bare_lf {
            text = text.replace("\r\n", "\n");
        }
        let m = Message::parse(Bytes::from(text));
        let key = if h.is_empty() { other_key } else { h[pick.index(h.len())].0.clone() };
        let key = if upper { key.to_ascii_uppercase() } else { key };
        let edits = [
            ("with_header", m.with_header(&key, &new_value)),
            ("with_appended", m.with_appended(&key, &new_value)),
            ("with_second", m.with_second(&key, &new_value)),
            ("without_header", m.without_header(&key)),
            ("with_only", m.with_only(&key, &new_value)),
            ("into_only", m.clone().into_only(&key, &new_value)),
        ];
        // The owned tag is the shared one, byte for byte and index for index.
        prop_assert_eq!(&edits[5].1, &edits[4].1);
        for (what, e) in &edits {
            prop_assert_eq!(e, &Message::parse(e.bytes().clone()), "{}", what);
            // And the decoder agrees too.
            let out = one_chunk(Role::Client, None, e.as_bytes());
            if e.field_count() > 0 {
                prop_assert_eq!(out.items.len(), 1, "{}", what);
                prop_assert_eq!(&out.items[0], &Decoded::Message(e.clone()), "{}", what);
            }
        }
        let want = new_value.trim_start_matches([' ', '\t']);
        prop_assert_eq!(edits[0].1.get(&key), Some(want));
        prop_assert_eq!(edits[1].1.get_all(&key).last(), Some(want));
        prop_assert_eq!(edits[1].1.field_count(), m.field_count() + 1);
        prop_assert_eq!(edits[2].1.field_count(), m.field_count() + 1);
        let had = m.get(&key).is_some();
        prop_assert_eq!(edits[3].1.field_count(), m.field_count() - usize::from(had));
        prop_assert_eq!(edits[3].1.get_all(&key).count(), m.get_all(&key).count().saturating_sub(1));
    }
}

// Regressions for what the properties above found; each failed before the fix in src/.

/// The longest line Asterisk reads whole (1024 bytes with its `\r\n`) is accepted in any
/// chunking, its `\r` and `\n` in different reads included.
#[test]
fn max_length_line_with_split_crlf_is_accepted() {
    let mut input = b"Action: Ping\r\nX: ".to_vec();
    input.extend(std::iter::repeat_n(b'v', 1022 - 3));
    input.extend_from_slice(b"\r\n\r\n");
    let cut = input.len() - 3; // just after the long line's `\r`
    let whole = one_chunk(Role::Client, None, &input);
    let split = run(decoder(Role::Client, None), &input, &[cut, 3]);
    assert_eq!(messages(&whole.items).len(), 1, "{:?}", whole.items);
    assert_eq!(split.items, whole.items);
}

/// A 1023-byte line with `\r\n` is the one Asterisk ends a message on (its buffer fills
/// with the `\r`, the `\n` then reads as an empty line): refused whole, in any chunking,
/// never passed on as one message (the lines after it would run as another action).
#[test]
fn the_line_asterisk_splits_a_message_on_is_refused() {
    for (len, end) in [(1023usize, &b"\r\n"[..]), (1024, b"\n")] {
        let mut input = b"Action: UserEvent\r\nUserEvent: x\r\nPad: ".to_vec();
        input.extend(std::iter::repeat_n(b'A', len - 5));
        input.extend_from_slice(end);
        input.extend_from_slice(b"Action: Command\r\nCommand: core stop now\r\n\r\n");
        for chunk in [input.len(), 1, 7, 100] {
            let cuts: Vec<usize> = std::iter::repeat_n(chunk, input.len() / chunk + 1).collect();
            let out = run(decoder(Role::Client, None), &input, &cuts);
            assert_eq!(messages(&out.items).len(), 0, "{len}: {:?}", out.items);
            assert!(matches!(out.items[0], Decoded::Rejected { .. }), "{:?}", out.items);
        }
    }
    // 1023 bytes with a bare LF still fit Asterisk's buffer.
    let mut input = b"Action: Ping\r\nPad: ".to_vec();
    input.extend(std::iter::repeat_n(b'A', 1023 - 5));
    input.extend_from_slice(b"\n\n");
    assert_eq!(messages(&one_chunk(Role::Client, None, &input).items).len(), 1);
}

/// A client message of 128 maximal lines plus a maximal partial line made the client-role
/// decoder fail with `MessageTooLarge` (an upstream-only cap) instead of going on.
#[test]
fn client_role_never_fails_on_long_legal_lines() {
    let line = [b"K: ".as_slice(), &[b'v'; 1019], b"\r\n"].concat();
    let mut input = line.repeat(128);
    input.extend(std::iter::repeat_n(b'w', 1024));
    let out = run(decoder(Role::Client, None), &input, &[input.len()]);
    assert!(!out.error);
    input.extend_from_slice(b"\r\n\r\nAction: Ping\r\n\r\n");
    let out = run(decoder(Role::Client, None), &input, &[7]);
    assert!(!out.error);
    assert_eq!(out.items.len(), 2, "{:?}", out.items.first());
    assert!(matches!(out.items[0], Decoded::Rejected { .. }));
}

/// Upstream: the whole-message cap counted bytes of the following messages that happened
/// to be in the same read, so a small legacy message failed or not depending on chunking.
#[test]
fn upstream_message_cap_counts_only_the_message() {
    let limits = Limits {
        max_line: 100,
        max_lines: 100,
        max_message: 100,
    };
    let legacy = b"Response: Follows\r\nPrivilege: Command\r\nline\n--END COMMAND--\r\n\r\n";
    let mut input = legacy.to_vec();
    for _ in 0..10 {
        input.extend_from_slice(b"Event: X\r\n\r\n");
    }
    for sizes in [vec![input.len()], vec![1], vec![legacy.len()]] {
        let out = run(decoder(Role::Upstream, Some(limits)), &input, &sizes);
        assert!(!out.error, "{sizes:?}");
        assert_eq!(out.items.len(), 11);
    }
    // A message over the cap fails whatever the chunking.
    let big = [b"Event: X\r\n".as_slice(), &b"K: v\r\n".repeat(20), b"\r\n"].concat();
    for sizes in [vec![big.len()], vec![1], vec![9]] {
        assert!(
            run(decoder(Role::Upstream, Some(limits)), &big, &sizes).error,
            "{sizes:?}"
        );
    }
}

/// `with_header`/`with_appended` indexed a value given with leading blanks as if the blanks
/// were part of it, while anyone parsing the bytes skips them.
#[test]
fn edited_value_with_leading_blank_matches_reparse() {
    let m = MessageBuilder::event("X").header("A", "1").build();
    for e in [m.with_header("A", "  two"), m.with_appended("B", "\tthree")] {
        assert_eq!(e, Message::parse(e.bytes().clone()));
    }
    assert_eq!(m.with_header("A", "  two").get("A"), Some("two"));
}
