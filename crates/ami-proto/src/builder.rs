use crate::message::Message;
use bytes::{BufMut, Bytes, BytesMut};

/// Builds a message in Asterisk's output form (CRLF lines, blank line at the end).
#[derive(Debug, Default, Clone)]
pub struct MessageBuilder {
    buf: BytesMut,
}

impl MessageBuilder {
    pub fn new() -> Self {
        MessageBuilder {
            buf: BytesMut::with_capacity(128),
        }
    }

    /// `Response: <kind>` then `ActionID` (only when the action carried one), as Asterisk orders them.
    pub fn response(kind: &str, action_id: Option<&str>) -> Self {
        let mut b = Self::new().header("Response", kind);
        if let Some(id) = action_id {
            b = b.header("ActionID", id);
        }
        b
    }

    /// `Response: Error` with its `Message`.
    pub fn error(action_id: Option<&str>, message: &str) -> Message {
        Self::response("Error", action_id).header("Message", message).build()
    }

    /// `Response: Success` with its `Message`.
    pub fn success(action_id: Option<&str>, message: &str) -> Message {
        Self::response("Success", action_id).header("Message", message).build()
    }

    pub fn event(name: &str) -> Self {
        Self::new().header("Event", name)
    }

    pub fn action(name: &str) -> Self {
        Self::new().header("Action", name)
    }

    /// Adds one line. Line breaks inside a key or value would forge headers, so they are
    /// replaced by spaces.
    pub fn header(mut self, key: &str, value: &str) -> Self {
        put_clean(&mut self.buf, key.as_bytes());
        self.buf.put_slice(b": ");
        put_clean(&mut self.buf, value.as_bytes());
        self.buf.put_slice(b"\r\n");
        self
    }

    pub fn header_opt(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.header(key, v),
            None => self,
        }
    }

    pub fn build(mut self) -> Message {
        self.buf.put_slice(b"\r\n");
        Message::parse(self.buf.freeze())
    }

    /// The bytes without parsing them back (for writers that only send).
    pub fn into_bytes(mut self) -> Bytes {
        self.buf.put_slice(b"\r\n");
        self.buf.freeze()
    }
}

fn put_clean(buf: &mut BytesMut, s: &[u8]) {
    if s.iter().any(|&b| b == b'\r' || b == b'\n') {
        buf.extend(s.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    } else {
        buf.put_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    #[test]
    fn builds_asterisk_error() {
        let m = MessageBuilder::error(Some("a1"), "Permission denied");
        assert_eq!(
            m.as_bytes(),
            b"Response: Error\r\nActionID: a1\r\nMessage: Permission denied\r\n\r\n"
        );
        assert_eq!(m.kind(), Kind::Response);
        let m = MessageBuilder::error(None, "x");
        assert_eq!(m.as_bytes(), b"Response: Error\r\nMessage: x\r\n\r\n");
    }

    #[test]
    fn values_cannot_inject_headers() {
        let m = MessageBuilder::event("UserEvent")
            .header("X", "a\r\nAction: Originate")
            .build();
        assert_eq!(m.field_count(), 2);
        assert_eq!(m.get("Action"), None);
    }
}
