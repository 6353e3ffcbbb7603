use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// One header line inside a [`Message`], stored as offsets into the message's bytes so a
/// message costs one allocation for its text and one for its index, whatever its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Start of the line.
    start: u32,
    /// End of the key (the colon), or the end of the line when it has no colon.
    key_end: u32,
    /// Start of the value: after the colon and any leading blanks.
    value_start: u32,
    /// End of the line, without its `\r\n` or `\n`.
    end: u32,
    /// End of the line including its terminator.
    next: u32,
}

impl Field {
    /// Builds the index entry for the line `raw[start..next]`, whose text ends at `end`.
    pub(crate) fn parse(raw: &[u8], start: usize, end: usize, next: usize) -> Field {
        let colon = memchr::memchr(b':', &raw[start..end]).map(|c| start + c);
        Field::with_colon(raw, start, end, next, colon)
    }

    /// [`Field::parse`] when the line's first colon (an index into `raw`, before `end`) is
    /// known already.
    pub(crate) fn with_colon(raw: &[u8], start: usize, end: usize, next: usize, colon: Option<usize>) -> Field {
        let (key_end, value_start) = match colon {
            Some(colon) => {
                let mut v = colon + 1;
                // Asterisk's ast_skip_blanks: every byte below '!' (space, tab, control bytes).
                while v < end && raw[v] < 0x21 {
                    v += 1;
                }
                (colon, v)
            }
            None => (end, end),
        };
        Field {
            start: start as u32,
            key_end: key_end as u32,
            value_start: value_start as u32,
            end: end as u32,
            next: next as u32,
        }
    }

    pub(crate) fn has_colon(&self) -> bool {
        self.key_end != self.end || self.value_start != self.end
    }

    /// Where its name is in the message's bytes.
    pub(crate) fn key_range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.key_end as usize
    }

    pub(crate) fn shifted(self, by: i64) -> Field {
        let s = |x: u32| (x as i64 + by) as u32;
        Field {
            start: s(self.start),
            key_end: s(self.key_end),
            value_start: s(self.value_start),
            end: s(self.end),
            next: s(self.next),
        }
    }
}

/// What a message is, taken from its FIRST header as Asterisk's clients do: an
/// `OriginateResponse` event also carries `Response:` but is an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Action,
    Response,
    Event,
    /// First header is none of the above (e.g. a client that sends `ActionID:` first).
    Other,
}

impl Kind {
    /// The kind of a message whose first header has the name `key` (None: no header).
    pub(crate) fn of_first_key(key: Option<&[u8]>) -> Kind {
        match key {
            Some(k) if k.eq_ignore_ascii_case(b"Event") => Kind::Event,
            Some(k) if k.eq_ignore_ascii_case(b"Response") => Kind::Response,
            Some(k) if k.eq_ignore_ascii_case(b"Action") => Kind::Action,
            _ => Kind::Other,
        }
    }
}

/// A decoded AMI message: its exact bytes (terminating blank line included) and an
/// index of its lines. Cheap to clone (the bytes are shared).
#[derive(Clone)]
pub struct Message {
    raw: Bytes,
    fields: Vec<Field>,
    /// Legacy command output (`Response: Follows`): the raw text between the headers and
    /// the end of the message, `--END COMMAND--` included.
    body: Option<(u32, u32)>,
    /// The last header was appended by a tagging decoder ([`crate::AmiDecoder::tagging_events`]),
    /// and no other header has its name. Any change to the message clears it: only the
    /// decoder that wrote the tag vouches for it.
    tagged: bool,
    /// Where its first `ActionID` is, when the decoder noted it on the way (the proxy asks
    /// every event, and most have none). Any change to the message forgets it.
    action_id_at: Lookup,
}

/// What the decoder learnt of one header while it indexed the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Not noted: look.
    Unknown,
    Absent,
    /// The index of its line.
    At(u32),
}

impl Message {
    pub(crate) fn from_parts(raw: Bytes, fields: Vec<Field>, body: Option<(u32, u32)>) -> Self {
        Message {
            raw,
            fields,
            body,
            tagged: false,
            action_id_at: Lookup::Unknown,
        }
    }

    /// Records where the first `ActionID` is (the decoder's [`Lookup`]).
    pub(crate) fn with_action_id_at(mut self, at: Lookup) -> Self {
        self.action_id_at = at;
        self
    }

    pub(crate) fn tagged(mut self) -> Self {
        self.tagged = true;
        self
    }

    /// The header a tagging decoder appended, as (name, value); None when it did not tag
    /// this message (not an event, or the upstream wrote a header of that name itself).
    pub fn decoder_tag(&self) -> Option<(&[u8], &[u8])> {
        let f = self.fields.last().filter(|_| self.tagged)?;
        Some((self.key_of(f), self.value_of(f)))
    }

    /// Parses one complete message from bytes (used by builders and tests). Lines are split
    /// on `\n`; an optional `\r` before it is not part of the value.
    pub fn parse(raw: Bytes) -> Message {
        let mut fields = Vec::new();
        let mut pos = 0;
        while pos < raw.len() {
            let nl = memchr::memchr(b'\n', &raw[pos..]).map(|i| pos + i);
            let (end, next) = match nl {
                Some(n) if n > pos && raw[n - 1] == b'\r' => (n - 1, n + 1),
                Some(n) => (n, n + 1),
                None => (raw.len(), raw.len()),
            };
            if end == pos {
                break;
            }
            fields.push(Field::parse(&raw, pos, end, next));
            pos = next;
        }
        Message::from_parts(raw, fields, None)
    }

    /// The bytes as received (or as built), ready to write to a socket.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The shared bytes, for zero-copy writes to many sockets.
    pub fn bytes(&self) -> &Bytes {
        &self.raw
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The kind, from the first header's key.
    pub fn kind(&self) -> Kind {
        Kind::of_first_key(self.fields.first().map(|f| self.key_of(f)))
    }

    fn key_of(&self, f: &Field) -> &[u8] {
        &self.raw[f.start as usize..f.key_end as usize]
    }

    fn value_of(&self, f: &Field) -> &[u8] {
        &self.raw[f.value_start as usize..f.end as usize]
    }

    fn find(&self, key: &str) -> Option<(usize, &Field)> {
        self.fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.has_colon() && self.key_of(f).eq_ignore_ascii_case(key.as_bytes()))
    }

    /// The value of the first header named `key` (ASCII case-insensitive), as raw bytes.
    pub fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        self.find(key).map(|(_, f)| self.value_of(f))
    }

    /// The value of the first header named `key`, if it is valid UTF-8.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_bytes(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of a repeated header (`Variable:`, `Output:`), in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields.iter().filter_map(move |f| {
            if f.has_colon() && self.key_of(f).eq_ignore_ascii_case(key.as_bytes()) {
                std::str::from_utf8(self.value_of(f)).ok()
            } else {
                None
            }
        })
    }

    /// Every header line as (key, value), in order; lines without a colon have an empty value.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|f| {
            (
                std::str::from_utf8(self.key_of(f)).unwrap_or(""),
                std::str::from_utf8(self.value_of(f)).unwrap_or(""),
            )
        })
    }

    /// Every header line as (key, where its value is in [`Message::as_bytes`]), with no UTF-8
    /// check: for the hot paths that look at a few headers of every event.
    pub fn header_spans(&self) -> impl Iterator<Item = (&[u8], std::ops::Range<usize>)> + '_ {
        self.fields
            .iter()
            .map(|f| (self.key_of(f), f.value_start as usize..f.end as usize))
    }

    /// Whether any line is not valid UTF-8 (Asterisk takes bytes; checks on `&str` cannot
    /// see such values, so policy refuses them).
    pub fn has_invalid_utf8(&self) -> bool {
        self.fields
            .iter()
            .any(|f| std::str::from_utf8(&self.raw[f.start as usize..f.end as usize]).is_err())
    }

    /// Whether a line starts with a NUL byte: Asterisk reads lines as C strings, so to it that
    /// line is empty and ends the message there.
    pub fn has_line_starting_with_nul(&self) -> bool {
        self.fields.iter().any(|f| self.raw.get(f.start as usize) == Some(&0))
    }

    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// `Action:` looked up anywhere in the message, as Asterisk does for client messages.
    pub fn action(&self) -> Option<&str> {
        self.get("Action").filter(|a| !a.is_empty())
    }

    pub fn action_id(&self) -> Option<&str> {
        match self.action_id_at {
            Lookup::Unknown => self.get("ActionID"),
            Lookup::Absent => None,
            Lookup::At(i) => {
                let f = self.fields.get(i as usize)?;
                std::str::from_utf8(self.value_of(f)).ok()
            }
        }
    }

    /// The `Event:` name, only when the message is an event.
    pub fn event_name(&self) -> Option<&str> {
        if self.kind() == Kind::Event {
            self.get("Event")
        } else {
            None
        }
    }

    /// `Response:` value, only when the message is a response.
    pub fn response(&self) -> Option<&str> {
        if self.kind() == Kind::Response {
            self.get("Response")
        } else {
            None
        }
    }

    /// Legacy command output text (`Response: Follows` form), marker included.
    pub fn legacy_output(&self) -> Option<&[u8]> {
        self.body.map(|(s, e)| &self.raw[s as usize..e as usize])
    }

    /// Offset where new headers are appended: after the last header before any legacy body,
    /// otherwise before the terminating blank line.
    fn header_end(&self) -> usize {
        match self.body {
            Some((s, _)) => s as usize,
            None => self.fields.last().map(|f| f.next as usize).unwrap_or(0),
        }
    }

    /// Replaces `raw[at..remove_to]` with `insert`, whose index entry (if any) is `new_field`.
    fn splice(&self, at: usize, remove_to: usize, insert: &[u8], new_field: Option<Field>) -> Message {
        let mut out = BytesMut::with_capacity(self.raw.len() + insert.len());
        out.put_slice(&self.raw[..at]);
        out.put_slice(insert);
        out.put_slice(&self.raw[remove_to..]);
        let delta = insert.len() as i64 - (remove_to - at) as i64;
        let mut fields = Vec::with_capacity(self.fields.len() + 1);
        let mut pending = new_field;
        for f in &self.fields {
            let s = f.start as usize;
            if s < at {
                fields.push(*f);
                continue;
            }
            if let Some(nf) = pending.take() {
                fields.push(nf);
            }
            if s >= remove_to {
                fields.push(f.shifted(delta));
            }
        }
        if let Some(nf) = pending {
            fields.push(nf);
        }
        let body = self
            .body
            .map(|(s, e)| ((s as i64 + delta) as u32, (e as i64 + delta) as u32));
        Message::from_parts(out.freeze(), fields, body)
    }

    /// One `Key: Value\r\n` line. Line breaks in either part (and a colon in the key) would
    /// forge extra headers, so they become spaces (`_` in the key); lengths are unchanged.
    pub(crate) fn line_for(at: usize, key: &str, value: &str) -> (Vec<u8>, Field) {
        let mut line = Vec::with_capacity(key.len() + value.len() + 4);
        line.extend(
            key.bytes()
                .map(|b| if matches!(b, b'\r' | b'\n' | b':') { b'_' } else { b }),
        );
        line.extend_from_slice(b": ");
        line.extend(value.bytes().map(|b| if matches!(b, b'\r' | b'\n') { b' ' } else { b }));
        let end = line.len();
        line.extend_from_slice(b"\r\n");
        // Leading blanks of the value are skipped, as `Field::parse` does.
        let value_at = key.len() + 2;
        let blanks = line[value_at..end].iter().take_while(|&&b| b < 0x21).count();
        let field = Field {
            start: at as u32,
            key_end: (at + key.len()) as u32,
            value_start: (at + value_at + blanks) as u32,
            end: (at + end) as u32,
            next: (at + line.len()) as u32,
        };
        (line, field)
    }

    /// Sets the first header named `key` to `value`, or appends it to the headers. Only the
    /// bytes are copied; nothing is re-encoded.
    pub fn with_header(&self, key: &str, value: &str) -> Message {
        match self.find(key) {
            Some((_, f)) => {
                let start = f.start as usize;
                let (mut line, nf) = Self::line_for(start, key, value);
                // keep the original key spelling and line ending style.
                let orig_key = &self.raw[start..f.key_end as usize];
                line.splice(..key.len(), orig_key.iter().copied());
                let term = &self.raw[f.end as usize..f.next as usize];
                line.truncate(line.len() - 2);
                line.extend_from_slice(term);
                let nf = Field {
                    next: start as u32 + line.len() as u32,
                    ..nf
                };
                self.splice(start, f.next as usize, &line, Some(nf))
            }
            None => self.with_appended(key, value),
        }
    }

    /// Appends a header after the existing ones (a repeated key is added, not replaced).
    pub fn with_appended(&self, key: &str, value: &str) -> Message {
        let at = self.header_end();
        let (line, nf) = Self::line_for(at, key, value);
        self.splice(at, at, &line, Some(nf))
    }

    /// Inserts a header right after the first line (where Asterisk puts `ActionID`).
    pub fn with_second(&self, key: &str, value: &str) -> Message {
        let at = self.fields.first().map(|f| f.next as usize).unwrap_or(0);
        let (line, nf) = Self::line_for(at, key, value);
        self.splice(at, at, &line, Some(nf))
    }

    /// How many headers are named `key`.
    pub fn count(&self, key: &str) -> usize {
        self.fields
            .iter()
            .filter(|f| f.has_colon() && self.key_of(f).eq_ignore_ascii_case(key.as_bytes()))
            .count()
    }

    /// Removes every header named `key` (a peer's copies of a header the proxy sets itself),
    /// also where the name has blanks around it (` Server`, `Server :`), which some client
    /// libraries trim. No copy when there is none.
    pub fn without_all(&self, key: &str) -> Message {
        if !self.fields.iter().any(|f| self.names_loosely(f, key)) {
            return self.clone();
        }
        let mut m = self.clone();
        while let Some(f) = m.fields.iter().find(|f| m.names_loosely(f, key)).copied() {
            m = m.splice(f.start as usize, f.next as usize, b"", None);
        }
        m
    }

    /// Whether the line `f` is a header named `key`, blanks around the name ignored.
    fn names_loosely(&self, f: &Field, key: &str) -> bool {
        f.has_colon() && key_names_loosely(self.key_of(f), key)
    }

    /// `key: value` as the only header of that name, after every other header: what a peer
    /// wrote under that name is gone, so a reader taking the first or the last sees the same.
    pub fn with_only(&self, key: &str, value: &str) -> Message {
        self.without_all(key).with_appended(key, value)
    }

    /// [`Message::with_only`], taking the message: when it has no header of that name (every
    /// event from a well-behaved upstream), its index is kept and grown in place, so tagging
    /// costs one buffer for the bytes and nothing else. This is the per-event path.
    pub fn into_only(mut self, key: &str, value: &str) -> Message {
        // A legacy body may have lines after it: the general splice places the tag there.
        if self.body.is_some() || self.fields.iter().any(|f| self.names_loosely(f, key)) {
            return self.with_only(key, value);
        }
        let at = self.header_end();
        let (line, nf) = Self::line_for(at, key, value);
        let mut out = BytesMut::with_capacity(self.raw.len() + line.len());
        out.put_slice(&self.raw[..at]);
        out.put_slice(&line);
        out.put_slice(&self.raw[at..]);
        // Every line is before `at`: the new one is the last.
        self.fields.push(nf);
        self.raw = out.freeze();
        self.tagged = false;
        self.action_id_at = Lookup::Unknown;
        self
    }

    /// Removes the first header named `key`, if any.
    pub fn without_header(&self, key: &str) -> Message {
        match self.find(key) {
            Some((_, f)) => self.splice(f.start as usize, f.next as usize, b"", None),
            None => self.clone(),
        }
    }
}

/// Whether a header's name `k` is `key`, blanks around it ignored, ASCII case too.
#[inline]
pub(crate) fn key_names_loosely(k: &[u8], key: &str) -> bool {
    // Most keys differ in length, and a key without blanks around it (nearly all) needs no
    // trimming: this runs over every header of every event the proxy tags.
    k.len() >= key.len()
        && match k.len() == key.len() {
            true => k.eq_ignore_ascii_case(key.as_bytes()),
            false => k.trim_ascii().eq_ignore_ascii_case(key.as_bytes()),
        }
}

/// Two messages are equal when their bytes and index are: what the decoder noted on the way
/// (the tag it vouches for, where the ActionID is) is not part of the message.
impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.raw == other.raw && self.fields == other.fields && self.body == other.body
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({:?})", String::from_utf8_lossy(&self.raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn only_one_of_a_header() {
        let m = msg("Event: UserEvent\r\nserver: forged\r\nA: 1\r\nSERVER: again\r\n Server : spaced\r\n\r\n");
        assert_eq!(m.count("Server"), 2);
        let t = m.with_only("Server", "pbx1");
        assert_eq!(t.count("Server"), 1);
        assert_eq!(t.get("Server"), Some("pbx1"));
        assert_eq!(t.as_bytes(), b"Event: UserEvent\r\nA: 1\r\nServer: pbx1\r\n\r\n");
        assert_eq!(t, Message::parse(t.bytes().clone()));
        let plain = msg("Event: X\r\n\r\n");
        assert_eq!(plain.without_all("Server").as_bytes(), plain.as_bytes());
        // Owned: the same bytes and index, whether or not a copy was there to remove.
        assert_eq!(m.clone().into_only("Server", "pbx1"), t);
        let owned = plain.clone().into_only("Server", "pbx1");
        assert_eq!(owned, plain.with_only("Server", "pbx1"));
        assert_eq!(owned, Message::parse(owned.bytes().clone()));
    }

    #[test]
    fn lookup_is_case_insensitive_first_wins() {
        let m = msg("Event: VarSet\r\nvariable: A\r\nVariable: B\r\nValue:   x \r\n\r\n");
        assert_eq!(m.kind(), Kind::Event);
        assert_eq!(m.get("VARIABLE"), Some("A"));
        assert_eq!(m.get_all("Variable").collect::<Vec<_>>(), vec!["A", "B"]);
        assert_eq!(m.get("Value"), Some("x "));
        assert_eq!(m.get("Missing"), None);
    }

    #[test]
    fn originate_response_is_an_event() {
        let m = msg("Event: OriginateResponse\r\nResponse: Success\r\n\r\n");
        assert_eq!(m.kind(), Kind::Event);
        assert_eq!(m.response(), None);
        assert_eq!(m.event_name(), Some("OriginateResponse"));
    }

    #[test]
    fn line_without_colon_never_matches() {
        let m = msg("Action: Ping\r\nGarbage\r\n\r\n");
        assert_eq!(m.get("Garbage"), None);
        assert_eq!(m.field_count(), 2);
    }

    #[test]
    fn replace_append_remove() {
        let m = msg("Response: Success\r\nActionID: 7\r\nMessage: ok\r\n\r\n");
        let r = m.with_header("actionid", "client-1");
        assert_eq!(
            r.as_bytes(),
            b"Response: Success\r\nActionID: client-1\r\nMessage: ok\r\n\r\n"
        );
        assert_eq!(r.get("Message"), Some("ok"));
        let a = r.with_appended("Server", "pbx1");
        assert_eq!(
            a.as_bytes(),
            b"Response: Success\r\nActionID: client-1\r\nMessage: ok\r\nServer: pbx1\r\n\r\n"
        );
        assert_eq!(a.get("Server"), Some("pbx1"));
        let d = a.without_header("ActionID");
        assert_eq!(
            d.as_bytes(),
            b"Response: Success\r\nMessage: ok\r\nServer: pbx1\r\n\r\n"
        );
        assert_eq!(d.get("Server"), Some("pbx1"));
        assert_eq!(d.action_id(), None);
        let s = d.with_second("ActionID", "z");
        assert_eq!(
            s.as_bytes(),
            b"Response: Success\r\nActionID: z\r\nMessage: ok\r\nServer: pbx1\r\n\r\n"
        );
        assert_eq!(s.get("message"), Some("ok"));
        assert_eq!(s, Message::parse(s.bytes().clone()));
    }

    #[test]
    fn edits_cannot_inject_headers() {
        let m = msg("Response: Success\r\n\r\n");
        let r = m
            .with_header("ActionID", "x\r\nAction: Originate")
            .with_appended("Bad:Key\n", "\nv");
        assert_eq!(r.get("Action"), None);
        assert_eq!(r.field_count(), 3);
        assert_eq!(r, Message::parse(r.bytes().clone()));
    }

    #[test]
    fn replace_keeps_bare_lf() {
        let m = msg("Action: Ping\nActionID: a\n\n");
        let r = m.with_header("ActionID", "bb");
        assert_eq!(r.as_bytes(), b"Action: Ping\nActionID: bb\n\n");
    }
}
