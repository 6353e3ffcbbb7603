//! Shared body of the fuzz targets: feed arbitrary bytes to an [`AmiDecoder`] in a chunking
//! chosen by the first input byte, and check the decoder's invariants.
//!
//! First byte `b`: `0` feeds the rest in one chunk; `1..=127` in chunks of `b` bytes;
//! `128..=255` in pseudo-random chunks of 1..=64 bytes seeded by `b`.
//!
//! [`chunk_sizes`] is shared with the `client_session` target.

use ami_proto::{AmiDecoder, Decoded, Limits, Message, Role, END_COMMAND};
use bytes::BytesMut;

/// Everything decoded from one stream, and whether it ended in an error.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    items: Vec<Decoded>,
    error: bool,
}

/// Chunk sizes for `len` bytes: `0` one chunk; `1..=127` fixed chunks of `selector` bytes
/// (the list repeats); `128..=255` pseudo-random chunks of 1..=64 bytes seeded by `selector`.
pub fn chunk_sizes(selector: u8, len: usize) -> Vec<usize> {
    match selector {
        0 => vec![len.max(1)],
        1..=127 => vec![selector as usize],
        _ => {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ selector as u64;
            let mut v = Vec::new();
            let mut total = 0;
            while total < len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = 1 + (x % 64) as usize;
                v.push(n);
                total += n;
            }
            v
        }
    }
}

/// The tag a tagging upstream decoder appends (see [`check`]).
const TAG: (&str, &str) = ("Server", "pbx1");

fn run(role: Role, input: &[u8], sizes: &[usize]) -> Outcome {
    run_with(AmiDecoder::new(role), role, input, sizes)
}

fn run_with(mut d: AmiDecoder, role: Role, input: &[u8], sizes: &[usize]) -> Outcome {
    let limits = match role {
        Role::Client => Limits::client(),
        Role::Upstream => Limits::upstream(),
    };
    // Largest buffer a client-role decoder may hold between reads: a message of the
    // maximal number of maximal lines, plus a partial line (and its `\r`).
    let client_bound = limits.max_lines * (limits.max_line + 2) + limits.max_line + 1;
    let mut buf = BytesMut::new();
    let mut out = Outcome {
        items: Vec::new(),
        error: false,
    };
    let mut pos = 0;
    let mut i = 0;
    while pos < input.len() {
        let n = sizes[i % sizes.len()].clamp(1, input.len() - pos);
        i += 1;
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        loop {
            match d.decode(&mut buf) {
                Ok(Some(item)) => out.items.push(item),
                Ok(None) => break,
                Err(e) => {
                    assert!(role == Role::Upstream, "client-role decoder failed: {e}");
                    out.error = true;
                    return out;
                }
            }
        }
        if role == Role::Client {
            assert!(buf.len() <= client_bound, "client decoder buffers {} bytes", buf.len());
        }
    }
    loop {
        match d.decode_eof(&mut buf) {
            Ok(Some(item)) => out.items.push(item),
            Ok(None) => break,
            Err(e) => {
                assert!(role == Role::Upstream, "client-role decoder failed at EOF: {e}");
                out.error = true;
                break;
            }
        }
    }
    assert!(out.error || buf.is_empty(), "decode_eof left {} bytes", buf.len());
    out
}

fn check_items(role: Role, items: &[Decoded]) {
    for (i, item) in items.iter().enumerate() {
        match item {
            Decoded::Banner(_) => assert!(role == Role::Upstream && i == 0, "banner at {i} in {role:?}"),
            Decoded::Rejected { .. } => assert_eq!(role, Role::Client, "rejection upstream"),
            Decoded::Message(m) => {
                let bytes = m.as_bytes();
                assert!(m.field_count() > 0, "empty message {m:?}");
                assert!(bytes.ends_with(b"\n"), "message does not end a line: {m:?}");
                match m.legacy_output() {
                    // The index the decoder built is the one parsing the bytes gives.
                    None => assert_eq!(*m, Message::parse(m.bytes().clone())),
                    Some(out) => {
                        assert_eq!(role, Role::Upstream);
                        assert!(
                            memchr_subslice(out, END_COMMAND),
                            "legacy output without its marker: {m:?}"
                        );
                    }
                }
                if role == Role::Client {
                    let l = Limits::client();
                    assert!(m.field_count() <= l.max_lines);
                }
                // Where the decoder noted the first ActionID is where a look finds it.
                assert_eq!(m.action_id(), m.get("ActionID"), "{m:?}");
            }
        }
    }
}

fn memchr_subslice(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The fuzz target body.
pub fn check(role: Role, data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let chunked = run(role, input, &chunk_sizes(selector, input.len()));
    check_items(role, &chunked.items);
    // However the bytes were cut, the result is the one a single read gives.
    if selector != 0 {
        let whole = run(role, input, &[input.len().max(1)]);
        assert_eq!(chunked, whole, "chunking changed the result");
    }
    // A tagging upstream decoder gives each message what tagging it afterwards would.
    if role == Role::Upstream {
        let tagging = AmiDecoder::new(role).tagging_events(TAG.0, TAG.1);
        let tagged = run_with(tagging, role, input, &chunk_sizes(selector, input.len()));
        assert_eq!(tagged.error, chunked.error);
        assert_eq!(tagged.items.len(), chunked.items.len());
        for (t, p) in tagged.items.iter().zip(&chunked.items) {
            match (t, p) {
                (Decoded::Message(t), Decoded::Message(p)) => match t.decoder_tag() {
                    Some(_) => assert_eq!(t.as_bytes(), p.clone().into_only(TAG.0, TAG.1).as_bytes()),
                    None => assert_eq!(t, p),
                },
                (t, p) => assert_eq!(t, p),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target body over the captured transcripts, in several chunkings: what the fuzzer
    /// starts from, checked on stable without libFuzzer.
    #[test]
    fn the_transcripts_pass_every_check() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/transcripts");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures/transcripts") {
            let path = entry.expect("an entry").path();
            let name = path.to_string_lossy().into_owned();
            let role = match () {
                _ if name.ends_with(".s2c.raw") => Role::Upstream,
                _ if name.ends_with(".c2s.raw") => Role::Client,
                _ => continue,
            };
            let bytes = std::fs::read(&path).expect("a transcript");
            for selector in [0u8, 1, 7, 200] {
                let mut data = vec![selector];
                data.extend_from_slice(&bytes);
                check(role, &data);
            }
            n += 1;
        }
        assert!(n > 10, "only {n} transcripts");
        // A forged tag and an ActionID after it, cut anywhere.
        let forged = b"Event: Newstate\r\nActionID: 1\r\n server : evil\r\n\r\nEvent: X\r\nActionid: 2\r\n\r\n";
        for selector in [0u8, 1, 3, 130] {
            let mut data = vec![selector];
            data.extend_from_slice(forged);
            check(Role::Upstream, &data);
        }
    }
}
