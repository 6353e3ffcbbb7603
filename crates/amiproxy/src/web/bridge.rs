//! A web client's AMI session: the proxy's own session code ([`crate::client::serve`]) on
//! one end of an in-memory pipe, the WebSocket or HTTP front end on the other. Everything a
//! TCP client is subject to (address rules, bans, secrets, policy, scope, filters, rate
//! limits, audit, metrics, the bounds on a client that does not read) applies unchanged,
//! because it is the same code; the front end only turns JSON into AMI and back.

use crate::client::{self, Connection};
use crate::core::Core;
use crate::json::AsJson;
use crate::sessions::Transport;
use ami_proto::facts::ListFraming;
use ami_proto::{AmiDecoder, Decoded, Message, MessageBuilder, Role};
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::codec::FramedRead;

/// Bytes the pipe holds each way: a front end that does not read fills it, and then the
/// session's own bounds (write timeout, event drops) apply as to a TCP client.
const PIPE_BYTES: usize = 256 * 1024;

/// Why a bridge could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Busy(&'static str),
    #[error("the session closed")]
    Closed,
    #[error("no answer in time")]
    Timeout,
    #[error("{0}")]
    Refused(String),
}

pub struct Bridge {
    wr: WriteHalf<DuplexStream>,
    frames: Frames,
}

/// The reading side of a bridge: what the session sends its front end.
pub struct Frames(FramedRead<ReadHalf<DuplexStream>, PipeDecoder>);

impl Frames {
    /// The next thing the session sends; None when it has closed.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.0.next().await? {
                Ok(Frame::Banner) => continue,
                Ok(f) => return Some(f),
                Err(_) => return None,
            }
        }
    }
}

/// What the session sends its front end.
#[derive(Debug)]
pub enum Frame {
    /// The AMI banner: the session is up.
    Banner,
    /// An AMI message (a response, a list item, one of the proxy's own messages).
    Ami(Message),
    /// A hub event already encoded as JSON, shared with every other WebSocket session.
    Json(bytes::Bytes),
}

/// The pipe's framing: AMI messages, and pre-encoded events (`json::PRE_ENCODED`).
struct PipeDecoder(AmiDecoder);

impl tokio_util::codec::Decoder for PipeDecoder {
    type Item = Frame;
    type Error = ami_proto::Error;

    fn decode(&mut self, buf: &mut bytes::BytesMut) -> Result<Option<Frame>, Self::Error> {
        loop {
            if buf.first() == Some(&crate::json::PRE_ENCODED) {
                return Ok(memchr::memchr(b'\n', buf).map(|end| {
                    let line = buf.split_to(end + 1);
                    Frame::Json(line.freeze().slice(1..end))
                }));
            }
            match self.0.decode(buf)? {
                Some(Decoded::Message(m)) => return Ok(Some(Frame::Ami(m))),
                Some(Decoded::Banner(_)) => return Ok(Some(Frame::Banner)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }
}

impl Bridge {
    /// Starts a session for a client at `peer`, as an accepted connection would, within the
    /// same caps (`limits.max_connections`, the unauthenticated limit), and reads its banner.
    pub async fn open(
        core: &Arc<Core>,
        peer: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        tls: bool,
        label: Arc<str>,
    ) -> Result<Bridge, BridgeError> {
        let conn_slot = core
            .limits
            .connection_slot()
            .ok_or(BridgeError::Busy("too many connections"))?;
        let permit = core
            .unauth
            .clone()
            .try_acquire_owned()
            .map_err(|_| BridgeError::Busy("too many unauthenticated sessions"))?;
        let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
        let conn = Connection {
            peer,
            local,
            tls,
            since: std::time::SystemTime::now(),
            transport,
            peer_cert: None,
        };
        let core = core.clone();
        tokio::spawn(async move {
            let _count = core.session_started();
            client::serve(core.clone(), Box::new(theirs), conn, permit, label).await;
            drop(conn_slot);
        });
        let (rd, wr) = tokio::io::split(ours);
        let mut b = Bridge {
            wr,
            frames: Frames(FramedRead::new(rd, PipeDecoder(AmiDecoder::new(Role::Upstream)))),
        };
        match tokio::time::timeout(Duration::from_secs(5), b.frames.0.next()).await {
            Ok(Some(Ok(Frame::Banner))) => Ok(b),
            Ok(_) => Err(BridgeError::Closed),
            Err(_) => Err(BridgeError::Timeout),
        }
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), BridgeError> {
        self.wr.write_all(m.as_bytes()).await.map_err(|_| BridgeError::Closed)
    }

    /// The next thing the session sends; None when it has closed.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        self.frames.next_frame().await
    }

    /// The next AMI message, events pre-encoded as JSON passed over; None when closed.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            if let Frame::Ami(m) = self.next_frame().await? {
                return Some(m);
            }
        }
    }

    /// Logs in with a plain secret (Basic auth, the console's form): the session answers it
    /// as it would a TCP client's Login, bans and all.
    /// With `events` off, a one-action HTTP client never holds events it will not read.
    pub async fn login(&mut self, user: &str, secret: &str, events: bool, within: Duration) -> Result<(), BridgeError> {
        let login = MessageBuilder::action("Login")
            .header("ActionID", LOGIN_ID)
            .header("Username", user)
            .header("Secret", secret)
            .header("Events", if events { "on" } else { "off" })
            .build();
        self.send(&login).await?;
        let answer = tokio::time::timeout(within, async {
            while let Some(m) = self.next().await {
                if m.response().is_some() && m.action_id() == Some(LOGIN_ID) {
                    return Some(m);
                }
            }
            None
        })
        .await
        .map_err(|_| BridgeError::Timeout)?
        .ok_or(BridgeError::Closed)?;
        if answer.response().is_some_and(|r| r.eq_ignore_ascii_case("Success")) {
            Ok(())
        } else {
            Err(BridgeError::Refused(
                answer.get("Message").unwrap_or("Authentication failed").to_owned(),
            ))
        }
    }

    /// Sends an action and collects its whole answer: the response and, when it opens a
    /// list, every item to the one that closes it. Events in between are skipped (an HTTP
    /// client logs in with events off; a WebSocket collects with [`Collector`]).
    pub async fn call(&mut self, action: &Message, within: Duration) -> Result<Collected, BridgeError> {
        let aid = action.action_id().unwrap_or_default().to_owned();
        self.send(action).await?;
        tokio::time::timeout(within, async {
            let mut c = Collector::new(aid.clone());
            while let Some(m) = self.next().await {
                if let Offer::Done(done) = c.offer(m) {
                    return Ok(done);
                }
            }
            Err(BridgeError::Closed)
        })
        .await
        .map_err(|_| BridgeError::Timeout)?
    }

    /// Splits off the write side into a task fed by a bounded queue, so a front end that
    /// reads the session and writes actions to it never waits on the session's input while
    /// the session waits on its output (each pipe full, both stuck until the write timeout).
    /// `try_send` on the queue fails when `depth` actions are waiting: the front end then
    /// answers that action itself. Dropping the sender logs off and closes.
    pub fn split(self, depth: usize) -> (Frames, tokio::sync::mpsc::Sender<Message>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(depth.max(1));
        let (rd, mut wr) = (self.frames, self.wr);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if wr.write_all(m.as_bytes()).await.is_err() {
                    return;
                }
            }
            let bye = MessageBuilder::action("Logoff").header("ActionID", "logoff").build();
            let _ = wr.write_all(bye.as_bytes()).await;
            let _ = wr.shutdown().await;
        });
        (rd, tx)
    }

    /// Ends the session politely (its answers already read).
    pub async fn logoff(mut self) {
        let bye = MessageBuilder::action("Logoff").header("ActionID", "logoff").build();
        let _ = self.send(&bye).await;
        let _ = self.wr.shutdown().await;
    }
}

const LOGIN_ID: &str = "amiproxy-web-login";

/// One action's whole answer.
#[derive(Debug)]
pub struct Collected {
    pub response: Message,
    /// The list items and the event that closed the list (empty when not a list).
    pub events: Vec<Message>,
}

impl Collected {
    /// `{"response": {...}, "events": [...]}`, each message's headers in their order.
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            response: AsJson<'a>,
            events: Vec<AsJson<'a>>,
        }
        let out = Out {
            response: AsJson(&self.response),
            events: self.events.iter().map(AsJson).collect(),
        };
        serde_json::to_string(&out).unwrap_or_else(|_| "{}".into())
    }
}

/// The most a collected list may hold; a longer one is answered with an error (ask for it
/// without `_collect` to get its items one by one).
pub const MAX_COLLECTED_ITEMS: usize = 10_000;
pub const MAX_COLLECTED_BYTES: usize = 16 << 20;

/// Gathers one ActionID's answer out of a session's stream of messages.
pub struct Collector {
    aid: String,
    response: Option<(Message, ListFraming)>,
    events: Vec<Message>,
    bytes: usize,
    /// Over the bounds: the rest is read and dropped, the answer is an error.
    overflowed: bool,
}

impl Collector {
    pub fn new(aid: String) -> Collector {
        Collector {
            aid,
            response: None,
            events: Vec::new(),
            bytes: 0,
            overflowed: false,
        }
    }

    pub fn action_id(&self) -> &str {
        &self.aid
    }

    /// Takes `m` if it belongs to this answer, and gives the answer when complete.
    pub fn offer(&mut self, m: Message) -> Offer {
        if m.action_id() != Some(self.aid.as_str()) {
            return Offer::NotMine(m);
        }
        match self.response.take() {
            None if m.response().is_some() => {
                let framing = ListFraming::of_response(&m);
                if framing == ListFraming::None {
                    return Offer::Done(Collected {
                        response: m,
                        events: Vec::new(),
                    });
                }
                self.response = Some((m, framing));
                Offer::Taken
            }
            None => Offer::NotMine(m),
            Some((response, framing)) => {
                let name = m.event_name().unwrap_or("").to_owned();
                let ends = framing.ends_with(&m, &name);
                self.bytes += m.len();
                if self.events.len() >= MAX_COLLECTED_ITEMS || self.bytes > MAX_COLLECTED_BYTES {
                    self.overflowed = true;
                    self.events = Vec::new();
                }
                if !self.overflowed {
                    self.events.push(m);
                }
                if ends {
                    if self.overflowed {
                        let text = "The list is too long to collect; ask for it without _collect";
                        return Offer::Done(Collected {
                            response: MessageBuilder::error(Some(&self.aid), text),
                            events: Vec::new(),
                        });
                    }
                    return Offer::Done(Collected {
                        response,
                        events: std::mem::take(&mut self.events),
                    });
                }
                self.response = Some((response, framing));
                Offer::Taken
            }
        }
    }
}

/// What a [`Collector`] did with a message.
#[derive(Debug)]
pub enum Offer {
    /// Another ActionID's (or an event before the response): given back.
    NotMine(Message),
    /// Part of the answer, kept.
    Taken,
    /// The last part: the whole answer.
    Done(Collected),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> Message {
        Message::parse(bytes::Bytes::from(text.replace('\n', "\r\n") + "\r\n"))
    }

    #[test]
    fn a_list_is_collected_to_its_complete() {
        let mut c = Collector::new("7".into());
        assert!(matches!(c.offer(msg("Event: Other\nActionID: 8\n")), Offer::NotMine(_)));
        let r = c.offer(msg(
            "Response: Success\nActionID: 7\nEventList: start\nMessage: will follow\n",
        ));
        assert!(matches!(r, Offer::Taken));
        assert!(matches!(
            c.offer(msg("Event: CoreShowChannel\nActionID: 7\n")),
            Offer::Taken
        ));
        let Offer::Done(done) = c.offer(msg(
            "Event: CoreShowChannelsComplete\nActionID: 7\nEventList: Complete\nListItems: 1\n",
        )) else {
            panic!("not complete")
        };
        assert_eq!(done.events.len(), 2);
        assert_eq!(done.response.get("EventList"), Some("start"));
    }

    #[test]
    fn a_plain_answer_is_whole() {
        let mut c = Collector::new("1".into());
        let Offer::Done(done) = c.offer(msg("Response: Error\nActionID: 1\nMessage: Permission denied\n")) else {
            panic!("not whole")
        };
        assert!(done.events.is_empty());
        assert!(done.to_json().contains("Permission denied"));
    }
}
