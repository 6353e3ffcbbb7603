use crate::error::{Error, Rejection};
use crate::line_scan::next_line;
use crate::message::{key_names_loosely, Field, Kind, Lookup, Message};
use crate::END_COMMAND;
use bytes::{Buf, BytesMut};

/// Which side of the conversation the decoder faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reading what an AMI client sends: Asterisk's limits; an oversize message is
    /// refused (with the text Asterisk would answer) and the stream goes on.
    Client,
    /// Reading what an Asterisk sends: a banner line first, legacy command output, and
    /// larger limits; an oversize message ends the stream.
    Upstream,
}

/// Size limits. Client defaults are Asterisk's own (1024-byte line, 128 lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Client role: the most bytes of a line WITH its line end, as Asterisk's 1024-byte input
    /// buffer holds it. A 1023-byte line with `\r\n` does not fit: Asterisk discards it but
    /// keeps its `\r`, reads the `\n` as an empty line and ends the message there, running
    /// what follows as a new message. The proxy refuses such a line, so it never judges as
    /// one message what Asterisk runs as two. Upstream role: the most bytes of a line's
    /// content.
    pub max_line: usize,
    pub max_lines: usize,
    /// Whole-message cap (upstream role); guards memory against an endless message.
    pub max_message: usize,
}

impl Limits {
    pub const fn client() -> Self {
        Limits {
            max_line: 1024,
            max_lines: 128,
            max_message: 1024 * 129,
        }
    }
    pub const fn upstream() -> Self {
        Limits {
            max_line: 1 << 20,
            max_lines: 1 << 20,
            max_message: 64 << 20,
        }
    }
}

/// One unit of decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The upstream's first line (`Asterisk Call Manager/11.0.0`), without its line end.
    Banner(String),
    Message(Message),
    /// A client message that broke a limit. It was consumed up to its blank line; answer
    /// `Response: Error` with [`Rejection::asterisk_message`] and this ActionID.
    Rejected {
        reason: Rejection,
        action_id: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Banner,
    Headers,
    /// Legacy `Response: Follows`: header lines (CRLF, with a colon) before the output.
    FollowsHeaders,
    /// Legacy output text, until a line ending in `--END COMMAND--`.
    FollowsBody,
    /// After the marker: the message ends at the next blank line.
    FollowsTail,
}

/// Incremental AMI framer. The buffer always starts at the current message; `scan` is
/// where the search for the next `\n` resumes, so no byte is examined twice.
#[derive(Debug)]
pub struct AmiDecoder {
    role: Role,
    limits: Limits,
    state: State,
    scan: usize,
    line_start: usize,
    fields: Vec<Field>,
    body_start: usize,
    /// Set once the current message broke a limit: its bytes are dropped as they come.
    rejected: Option<Rejection>,
    rejected_action_id: Option<String>,
    /// The current line is too long; drop input until its end.
    skipping_line: bool,
    /// What [`AmiDecoder::tagging_events`] appends to each event.
    tag: Option<Tag>,
    /// The current message has a header named as the tag: it is not tagged here.
    tag_clash: bool,
    /// The current message's first `ActionID` line, noted as its lines are indexed.
    action_id_at: Lookup,
}

/// A header line appended to every event a decoder takes out of its buffer.
#[derive(Debug)]
struct Tag {
    key: Box<str>,
    /// `key: value\r\n`, made safe as [`Message::with_appended`] makes it.
    line: Vec<u8>,
    /// Its index entry, as if it began at 0.
    field: Field,
}

impl AmiDecoder {
    pub fn new(role: Role) -> Self {
        let limits = match role {
            Role::Client => Limits::client(),
            Role::Upstream => Limits::upstream(),
        };
        Self::with_limits(role, limits)
    }

    pub fn with_limits(role: Role, limits: Limits) -> Self {
        AmiDecoder {
            role,
            limits,
            state: if role == Role::Upstream {
                State::Banner
            } else {
                State::Headers
            },
            scan: 0,
            line_start: 0,
            fields: Vec::new(),
            body_start: 0,
            rejected: None,
            rejected_action_id: None,
            skipping_line: false,
            tag: None,
            tag_clash: false,
            action_id_at: Lookup::Absent,
        }
    }

    /// An upstream decoder that appends `key: value` as the last header of every event, in
    /// the one copy that takes the event out of the read buffer: a proxy tags each event
    /// with the server it came from without copying it a second time. An event that carries
    /// a header of that name already (blanks around the name and case ignored) is left
    /// untagged, for the caller to replace what the peer wrote; [`Message::decoder_tag`]
    /// says which is which.
    pub fn tagging_events(mut self, key: &str, value: &str) -> Self {
        let (line, field) = Message::line_for(0, key, value);
        self.tag = Some(Tag {
            key: key.into(),
            line,
            field,
        });
        self
    }

    /// An upstream decoder that expects no banner (e.g. after a test injects one itself).
    pub fn skip_banner(mut self) -> Self {
        if self.state == State::Banner {
            self.state = State::Headers;
        }
        self
    }

    fn reset(&mut self) {
        self.scan = 0;
        self.line_start = 0;
        self.fields.clear();
        self.body_start = 0;
        self.rejected = None;
        self.rejected_action_id = None;
        self.skipping_line = false;
        self.tag_clash = false;
        self.action_id_at = Lookup::Absent;
    }

    /// Marks the current message rejected, dropping what it buffered so memory stays bounded.
    fn reject(&mut self, buf: &mut BytesMut, reason: Rejection) {
        if self.rejected.is_none() {
            self.rejected = Some(reason);
        }
        // Keep the ActionID (Asterisk echoes the headers it had collected).
        if self.rejected_action_id.is_none() {
            self.rejected_action_id = self.take_action_id(buf);
        }
        self.fields.clear();
        buf.advance(self.line_start);
        self.scan -= self.line_start;
        self.line_start = 0;
    }

    fn take_action_id(&self, buf: &BytesMut) -> Option<String> {
        let m = Message::from_parts(
            bytes::Bytes::copy_from_slice(&buf[..self.line_start]),
            self.fields.clone(),
            None,
        );
        m.action_id().map(str::to_owned)
    }

    fn finish(&mut self, buf: &mut BytesMut, next: usize) -> Decoded {
        if let Some(reason) = self.rejected {
            let action_id = self.rejected_action_id.take();
            buf.advance(next);
            self.reset();
            return Decoded::Rejected { reason, action_id };
        }
        let body = if self.body_start > 0 {
            Some((self.body_start as u32, self.line_start as u32))
        } else {
            None
        };
        // An exact copy (one allocation, room for one header more: the proxy's tag) keeps
        // the decoder's own index at its size; taking it would regrow a new one per message.
        let mut fields = Vec::with_capacity(self.fields.len() + 1);
        fields.extend_from_slice(&self.fields);
        let kind = Kind::of_first_key(self.fields.first().map(|f| &buf[f.key_range()]));
        let tag = self
            .tag
            .as_ref()
            .filter(|_| !self.tag_clash && body.is_none() && kind == Kind::Event);
        let msg = match tag {
            Some(tag) => {
                // The headers, the tag, then the blank line that ends the message.
                let at = self.line_start;
                let mut raw = BytesMut::with_capacity(next + tag.line.len());
                raw.extend_from_slice(&buf[..at]);
                raw.extend_from_slice(&tag.line);
                raw.extend_from_slice(&buf[at..next]);
                buf.advance(next);
                fields.push(tag.field.shifted(at as i64));
                Message::from_parts(raw.freeze(), fields, None).tagged()
            }
            None => Message::from_parts(buf.split_to(next).freeze(), fields, body),
        }
        .with_action_id_at(self.action_id_at);
        self.reset();
        self.state = State::Headers;
        Decoded::Message(msg)
    }
}

impl AmiDecoder {
    /// Frames the next message from `buf`, consuming its bytes; None until one is whole.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        loop {
            // The scan found the line's first colon only when it began at the line's start
            // (not when it resumes a line that arrived in parts).
            let whole_line = self.scan == self.line_start;
            let (nl, colon) = match next_line(buf, self.scan) {
                Some(l) => (l.nl, l.colon.filter(|_| whole_line)),
                None => {
                    self.scan = buf.len();
                    // A trailing `\r` may be the start of the line's `\r\n`: not counted yet.
                    let tail = &buf[self.line_start..];
                    let too_long = match self.role {
                        // Its line end is still to come: at least one byte more.
                        Role::Client => tail.len() >= self.limits.max_line,
                        Role::Upstream => tail.len() - usize::from(tail.last() == Some(&b'\r')) > self.limits.max_line,
                    };
                    if too_long && self.state != State::FollowsBody {
                        match self.role {
                            Role::Upstream => {
                                return Err(Error::MessageTooLarge {
                                    limit: self.limits.max_line,
                                })
                            }
                            Role::Client => {
                                // Drop the partial line now; keep dropping until its end.
                                if !self.skipping_line {
                                    self.reject(buf, Rejection::LineTooLong);
                                    self.skipping_line = true;
                                }
                                buf.clear();
                                self.scan = 0;
                            }
                        }
                    }
                    // The buffer holds only the current message here. The whole-message cap is
                    // the upstream role's; a client's memory is bounded by its line limits.
                    if self.role == Role::Upstream && buf.len() > self.limits.max_message {
                        return Err(Error::MessageTooLarge {
                            limit: self.limits.max_message,
                        });
                    }
                    return Ok(None);
                }
            };
            let next = nl + 1;
            // The buffer starts at the current message, so `next` is its size so far.
            if self.role == Role::Upstream && next > self.limits.max_message {
                return Err(Error::MessageTooLarge {
                    limit: self.limits.max_message,
                });
            }
            let end = if nl > self.line_start && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            let start = self.line_start;
            self.scan = next;

            if self.skipping_line {
                // Tail of a line already refused: drop it.
                buf.advance(next);
                self.scan = 0;
                self.line_start = 0;
                self.skipping_line = false;
                continue;
            }

            match self.state {
                State::Banner => {
                    let line = String::from_utf8_lossy(&buf[start..end]).into_owned();
                    buf.advance(next);
                    self.reset();
                    self.state = State::Headers;
                    return Ok(Some(Decoded::Banner(line)));
                }
                State::Headers | State::FollowsHeaders | State::FollowsTail => {
                    if end == start {
                        if self.state == State::FollowsHeaders {
                            // A blank line before any output: the output begins here.
                            self.body_start = start;
                            self.state = State::FollowsBody;
                            self.line_start = next;
                            continue;
                        }
                        if self.fields.is_empty() && self.rejected.is_none() {
                            // Blank lines between messages carry nothing.
                            buf.advance(next);
                            self.reset();
                            continue;
                        }
                        return Ok(Some(self.finish(buf, next)));
                    }
                    let too_long = match self.role {
                        Role::Client => next - start > self.limits.max_line,
                        Role::Upstream => end - start > self.limits.max_line,
                    };
                    if too_long {
                        if self.role == Role::Upstream {
                            return Err(Error::MessageTooLarge {
                                limit: self.limits.max_line,
                            });
                        }
                        self.line_start = next;
                        self.reject(buf, Rejection::LineTooLong);
                        continue;
                    }
                    if self.state == State::FollowsHeaders {
                        let is_header = end != nl && memchr::memchr(b':', &buf[start..end]).is_some();
                        let line = &buf[start..end];
                        if !is_header || line.ends_with(END_COMMAND) {
                            self.body_start = start;
                            self.state = if line.ends_with(END_COMMAND) {
                                State::FollowsTail
                            } else {
                                State::FollowsBody
                            };
                            self.line_start = next;
                            continue;
                        }
                    }
                    let field = match whole_line {
                        true => Field::with_colon(buf, start, end, next, colon),
                        false => Field::parse(buf, start, end, next),
                    };
                    if self.fields.len() >= self.limits.max_lines || self.rejected.is_some() {
                        if self.role == Role::Upstream {
                            return Err(Error::MessageTooLarge {
                                limit: self.limits.max_lines,
                            });
                        }
                        self.fields.push(field);
                        self.line_start = next;
                        if self.rejected_action_id.is_none() {
                            self.rejected_action_id = self.take_action_id(buf);
                        }
                        let reason = self.rejected.unwrap_or(Rejection::TooManyLines);
                        self.reject(buf, reason);
                        continue;
                    }
                    if field.has_colon() {
                        let key = &buf[field.key_range()];
                        if let Some(tag) = &self.tag {
                            self.tag_clash |= key_names_loosely(key, &tag.key);
                        }
                        if self.action_id_at == Lookup::Absent && key.eq_ignore_ascii_case(b"ActionID") {
                            self.action_id_at = Lookup::At(self.fields.len() as u32);
                        }
                    }
                    self.fields.push(field);
                    self.line_start = next;
                    if self.role == Role::Upstream
                        && self.state == State::Headers
                        && self.fields.len() == 1
                        && is_follows(&buf[start..end])
                    {
                        self.state = State::FollowsHeaders;
                    }
                }
                State::FollowsBody => {
                    self.line_start = next;
                    if buf[start..end].ends_with(END_COMMAND) {
                        self.state = State::FollowsTail;
                    }
                }
            }
        }
    }

    /// At the end of the stream: the last whole message, or nothing (a partial message is
    /// dropped).
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        match self.decode(buf)? {
            Some(d) => Ok(Some(d)),
            None => {
                // A peer that closes mid-message loses only that message.
                buf.clear();
                self.reset();
                Ok(None)
            }
        }
    }
}

/// The decoder as a `tokio_util` codec (feature `codec`, on by default), for `FramedRead`.
#[cfg(feature = "codec")]
impl tokio_util::codec::Decoder for AmiDecoder {
    type Item = Decoded;
    type Error = Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        AmiDecoder::decode(self, buf)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        AmiDecoder::decode_eof(self, buf)
    }
}

fn is_follows(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    line[..colon].eq_ignore_ascii_case(b"Response") && line[colon + 1..].trim_ascii().eq_ignore_ascii_case(b"Follows")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(role: Role, input: &[u8], chunk: usize) -> Vec<Decoded> {
        let mut d = AmiDecoder::new(role);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(c);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        out
    }

    fn msgs(v: &[Decoded]) -> Vec<String> {
        v.iter()
            .map(|d| match d {
                Decoded::Message(m) => String::from_utf8_lossy(m.as_bytes()).into_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn bare_lf_and_crlf() {
        let input = b"Action: Ping\nActionID: a\n\nAction: Ping\r\n\r\n";
        let out = decode_all(Role::Client, input, 3);
        assert_eq!(
            msgs(&out),
            vec!["Action: Ping\nActionID: a\n\n", "Action: Ping\r\n\r\n"]
        );
    }

    #[test]
    fn line_too_long_is_rejected_with_action_id_and_stream_goes_on() {
        let mut input = b"Action: Ping\r\nActionID: x1\r\nFoo: ".to_vec();
        input.extend(std::iter::repeat_n(b'a', 5000));
        input.extend_from_slice(b"\r\n\r\nAction: Ping\r\n\r\n");
        for chunk in [1, 7, 100, 10000] {
            let out = decode_all(Role::Client, &input, chunk);
            assert_eq!(out.len(), 2, "chunk {chunk}");
            assert_eq!(
                out[0],
                Decoded::Rejected {
                    reason: Rejection::LineTooLong,
                    action_id: Some("x1".into())
                }
            );
            assert!(matches!(&out[1], Decoded::Message(m) if m.action() == Some("Ping")));
        }
    }

    #[test]
    fn too_many_lines() {
        let mut input = b"Action: Ping\r\nActionID: x2\r\n".to_vec();
        for i in 0..200 {
            input.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\nAction: Ping\r\n\r\n");
        let out = decode_all(Role::Client, &input, 13);
        assert_eq!(
            out[0],
            Decoded::Rejected {
                reason: Rejection::TooManyLines,
                action_id: Some("x2".into())
            }
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn upstream_banner_then_legacy_follows() {
        let input = b"Asterisk Call Manager/2.10.6\r\nResponse: Follows\r\nPrivilege: Command\r\nActionID: c1\r\nChannel: x\nline two\n\nafter blank\n--END COMMAND--\r\n\r\nResponse: Success\r\n\r\n";
        for chunk in [1, 2, 5, 1000] {
            let out = decode_all(Role::Upstream, input, chunk);
            assert_eq!(out[0], Decoded::Banner("Asterisk Call Manager/2.10.6".into()));
            let Decoded::Message(m) = &out[1] else {
                panic!("{out:?}")
            };
            assert_eq!(m.response(), Some("Follows"));
            assert_eq!(m.action_id(), Some("c1"));
            assert_eq!(
                m.legacy_output(),
                Some(&b"Channel: x\nline two\n\nafter blank\n--END COMMAND--\r\n"[..])
            );
            let r = m.with_header("ActionID", "client");
            assert!(r
                .as_bytes()
                .starts_with(b"Response: Follows\r\nPrivilege: Command\r\nActionID: client\r\nChannel: x\n"));
            assert_eq!(out.len(), 3);
        }
    }

    #[test]
    fn legacy_marker_glued_to_last_line() {
        let input = b"Asterisk Call Manager/1.0\r\nResponse: Follows\r\nPrivilege: Command\r\nno newline at end--END COMMAND--\r\n\r\n";
        let out = decode_all(Role::Upstream, input, 4);
        let Decoded::Message(m) = &out[1] else { panic!() };
        assert_eq!(m.legacy_output(), Some(&b"no newline at end--END COMMAND--\r\n"[..]));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn upstream_endless_line_is_an_error() {
        let mut d = AmiDecoder::new(Role::Upstream).skip_banner();
        let mut buf = BytesMut::new();
        let mut failed = false;
        for _ in 0..2000 {
            buf.extend_from_slice(&[b'x'; 1024]);
            if d.decode(&mut buf).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }
}
