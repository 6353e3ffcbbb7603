//! AMI messages as JSON objects, both ways, for the WebSocket and HTTP front ends.
//!
//! Out: one object per message, its headers as keys in their order; a header that appears
//! more than once (`Variable`, `ChanVariable`, `Output`) becomes an array of its values.
//!
//! In: an object whose keys are AMI headers and whose values are strings, numbers, booleans
//! or arrays of those (an array sends the header once per value). JSON can carry any
//! character, AMI cannot: a key or value that would break the line framing (CR, LF, NUL), a
//! key that is not a header name, or a line over Asterisk's limit is refused here, before
//! anything is written, so a JSON client can never smuggle a second header or a second
//! action into what the proxy judges and forwards.

use ami_proto::{Message, MessageBuilder};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Keys that start with this are the front end's own options, never AMI headers.
pub const OPTION_PREFIX: char = '_';

/// The first byte of an event already encoded as JSON, as a WebSocket session writes it to
/// its front end: `\0`, the JSON text, `\n`. No AMI message the proxy writes can start so
/// (the upstream links refuse a message that does, and Asterisk writes C strings), and JSON
/// text has no raw line break, so the front end tells the two apart by the first byte.
pub const PRE_ENCODED: u8 = 0;

/// An event as a pre-encoded line (see [`PRE_ENCODED`]).
pub fn pre_encoded(m: &Message) -> bytes::Bytes {
    let mut v = Vec::with_capacity(m.len() + m.field_count() * 4 + 8);
    v.push(PRE_ENCODED);
    if serde_json::to_writer(&mut v, &AsJson(m)).is_err() {
        v.truncate(1);
        v.extend_from_slice(b"{}");
    }
    v.push(b'\n');
    v.into()
}

/// A message serialized as a JSON object (borrowing the message).
pub struct AsJson<'a>(pub &'a Message);

impl Serialize for AsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Keys in first-seen order with every value; headers are few, a Vec is enough.
        let mut keys: Vec<(&str, Vec<&str>)> = Vec::new();
        for (k, v) in self.0.headers() {
            match keys.iter_mut().find(|(seen, _)| *seen == k) {
                Some((_, vs)) => vs.push(v),
                None => keys.push((k, vec![v])),
            }
        }
        // The text of a legacy `Response: Follows` (a `Command` before Asterisk 14): its lines.
        let output: Option<Vec<&str>> = self.0.legacy_output().map(|raw| {
            std::str::from_utf8(raw)
                .unwrap_or("")
                .lines()
                .map(|l| l.trim_end_matches('\r').trim_end_matches("--END COMMAND--"))
                .filter(|l| !l.is_empty())
                .collect()
        });
        let mut map = s.serialize_map(Some(keys.len() + usize::from(output.is_some())))?;
        for (k, vs) in &keys {
            match vs.as_slice() {
                [one] => map.serialize_entry(k, one)?,
                many => map.serialize_entry(k, many)?,
            }
        }
        if let Some(lines) = output {
            map.serialize_entry("Output", &lines)?;
        }
        map.end()
    }
}

/// A message as JSON text.
pub fn to_json(m: &Message) -> String {
    serde_json::to_string(&AsJson(m)).unwrap_or_else(|_| "{}".into())
}

/// A JSON object's entries in document order (serde_json's own map sorts its keys, and the
/// order of an action's headers is the client's to choose).
#[derive(Debug, Default)]
pub struct Ordered(pub Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of AMI headers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, Value>()? {
                    v.push((k, val));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Why a JSON action could not become an AMI action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("not a JSON object of AMI headers: {0}")]
    NotAnObject(String),
    #[error("missing Action")]
    NoAction,
    #[error("header name `{0}` is not a valid AMI header name")]
    BadKey(String),
    #[error("the value of `{0}` contains a line break or NUL")]
    BadValue(String),
    #[error("the value of `{0}` must be a string, number, boolean or an array of those")]
    BadType(String),
    #[error("`{0}` may appear once")]
    Repeated(String),
    #[error("the `{0}` line is longer than {1} bytes")]
    TooLong(String, usize),
    #[error("more than {0} header lines")]
    TooMany(usize),
    #[error("unknown option `{0}`")]
    UnknownOption(String),
}

/// An action read from JSON, with the front end's options taken out.
#[derive(Debug)]
pub struct JsonAction {
    pub msg: Message,
    /// `_collect: true`: a list comes back as one object (response, items, Complete).
    pub collect: bool,
}

/// The longest line and most lines an action may have (Asterisk's own limits).
pub struct Bounds {
    pub max_line: usize,
    pub max_lines: usize,
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn scalar(key: &str, v: &Value) -> Result<String, JsonError> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(JsonError::BadType(key.to_owned())),
    };
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(JsonError::BadValue(key.to_owned()));
    }
    Ok(s)
}

/// Reads an action from JSON text. `action` names it when the route did (`POST
/// /ami/action/{Name}`): a body that names another is refused, never silently overridden.
pub fn action_from_json(text: &str, action: Option<&str>, bounds: &Bounds) -> Result<JsonAction, JsonError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    let Ordered(entries) = serde_json::from_str(text).map_err(|e| JsonError::NotAnObject(e.to_string()))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut collect = false;
    for (k, v) in &entries {
        if let Some(opt) = k.strip_prefix(OPTION_PREFIX) {
            match (opt, v) {
                ("collect", Value::Bool(b)) => collect = *b,
                _ => return Err(JsonError::UnknownOption(k.clone())),
            }
            continue;
        }
        if !valid_key(k) {
            return Err(JsonError::BadKey(k.chars().take(64).collect()));
        }
        match v {
            Value::Array(items) => {
                for item in items {
                    headers.push((k.clone(), scalar(k, item)?));
                }
            }
            Value::Null => {}
            other => headers.push((k.clone(), scalar(k, other)?)),
        }
    }
    for once in ["Action", "ActionID"] {
        if headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(once)).count() > 1 {
            return Err(JsonError::Repeated(once.to_owned()));
        }
    }
    let named = headers
        .iter()
        .position(|(k, _)| k.eq_ignore_ascii_case("Action"))
        .map(|i| headers.remove(i).1);
    let name = match (action, named) {
        (Some(route), Some(body)) if !route.eq_ignore_ascii_case(&body) => {
            return Err(JsonError::Repeated("Action".into()))
        }
        (Some(route), _) => route.to_owned(),
        (None, Some(body)) => body,
        (None, None) => return Err(JsonError::NoAction),
    };
    if name.is_empty() || !valid_key(&name) {
        return Err(JsonError::NoAction);
    }
    if headers.len() + 1 > bounds.max_lines {
        return Err(JsonError::TooMany(bounds.max_lines));
    }
    let mut b = MessageBuilder::action(&name);
    for (k, v) in &headers {
        // `Key: Value\r\n` must fit in Asterisk's line buffer.
        if k.len() + 2 + v.len() + 2 > bounds.max_line {
            return Err(JsonError::TooLong(k.clone(), bounds.max_line));
        }
        b = b.header(k, v);
    }
    Ok(JsonAction {
        msg: b.build(),
        collect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        max_line: 1024,
        max_lines: 128,
    };

    #[test]
    fn repeated_headers_become_arrays_in_their_order() {
        let m = Message::parse(bytes::Bytes::from_static(
            b"Event: VarSet\r\nVariable: a=1\r\nChannel: PJSIP/1\r\nVariable: b=2\r\n\r\n",
        ));
        assert_eq!(
            to_json(&m),
            r#"{"Event":"VarSet","Variable":["a=1","b=2"],"Channel":"PJSIP/1"}"#
        );
    }

    #[test]
    fn legacy_command_output_becomes_output_lines() {
        let mut dec = ami_proto::AmiDecoder::new(ami_proto::Role::Upstream);
        let mut buf = bytes::BytesMut::from(
            &b"Asterisk Call Manager/1.1\r\nResponse: Follows\r\nPrivilege: Command\r\nActionID: c1\r\nline one\nline two--END COMMAND--\r\n\r\n"[..],
        );
        let mut msg = None;
        while let Ok(Some(d)) = dec.decode(&mut buf) {
            if let ami_proto::Decoded::Message(m) = d {
                msg = Some(m);
            }
        }
        let json = to_json(&msg.expect("a message"));
        assert!(json.ends_with(r#""Output":["line one","line two"]}"#), "{json}");
    }

    #[test]
    fn an_action_keeps_its_header_order_and_repeats() {
        let a = action_from_json(
            r#"{"Channel":"Local/1@x","Action":"Originate","Variable":["a=1","b=2"],"Timeout":3000,"Async":true}"#,
            None,
            &B,
        )
        .unwrap();
        assert_eq!(
            a.msg.as_bytes(),
            b"Action: Originate\r\nChannel: Local/1@x\r\nVariable: a=1\r\nVariable: b=2\r\nTimeout: 3000\r\nAsync: true\r\n\r\n"
        );
        assert!(!a.collect);
    }

    #[test]
    fn nothing_can_break_the_line_framing() {
        for bad in [
            r#"{"Action":"Ping","ActionID":"1\r\nAction: Command"}"#,
            r#"{"Action":"Ping\nCommand: x"}"#,
            r#"{"Action":"Ping","X\r\nY":"1"}"#,
            r#"{"Action":"Ping","A: B":"1"}"#,
            r#"{"Action":"Ping","Variable":["ok","x\u0000"]}"#,
            r#"{"Action":"Ping","Variable":{"a":"b"}}"#,
            r#"{"Action":"Ping","Action":"Command"}"#,
            r#"["Action","Ping"]"#,
            r#"{"Action":"Ping","_sudo":true}"#,
        ] {
            assert!(action_from_json(bad, None, &B).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_route_names_the_action_and_a_body_cannot_contradict_it() {
        let a = action_from_json(r#"{"_collect":true}"#, Some("CoreShowChannels"), &B).unwrap();
        assert_eq!(a.msg.action(), Some("CoreShowChannels"));
        assert!(a.collect);
        assert!(action_from_json(r#"{"Action":"Command"}"#, Some("Ping"), &B).is_err());
        assert!(action_from_json("", Some("Ping"), &B).is_ok());
    }

    #[test]
    fn limits_are_asterisks() {
        let long = format!(r#"{{"Action":"Ping","X":"{}"}}"#, "a".repeat(1020));
        assert!(matches!(action_from_json(&long, None, &B), Err(JsonError::TooLong(..))));
    }
}
