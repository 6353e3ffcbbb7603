//! Counting firehose events on one connection without decoding every message: at tens of
//! thousands of events per second per client, a full parse in the load generator would eat
//! the CPU the system under test needs on a 2-core machine. Messages are framed by their
//! blank line and only `SimSeq:` and `Server:` are looked up.

use bytes::{Buf, BytesMut};
use memchr::memmem::Finder;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;

/// Where a run is; readers snapshot their streams when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Firehose on, not counted yet (connections and queues settle).
    Warmup = 0,
    /// Events counted towards rates.
    Measure = 1,
    /// Firehose off; loss still tracked until the stream is quiet.
    Drain = 2,
    /// Readers return their figures.
    Stop = 3,
}

/// Shared phase switch: an atomic for the hot path and a watch to wake idle readers.
#[derive(Clone)]
pub struct PhaseCtl {
    now: Arc<AtomicU8>,
    tx: Arc<watch::Sender<Phase>>,
}

impl PhaseCtl {
    pub fn new() -> PhaseCtl {
        let (tx, _) = watch::channel(Phase::Warmup);
        PhaseCtl {
            now: Arc::new(AtomicU8::new(Phase::Warmup as u8)),
            tx: Arc::new(tx),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }

    pub fn set(&self, p: Phase) {
        self.now.store(p as u8, Ordering::Release);
        self.tx.send_replace(p);
    }

    pub fn get(&self) -> Phase {
        match self.now.load(Ordering::Acquire) {
            0 => Phase::Warmup,
            1 => Phase::Measure,
            2 => Phase::Drain,
            _ => Phase::Stop,
        }
    }
}

/// One sequence stream (one simulator) as seen by one connection.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StreamSeen {
    /// `Server:` tag, or empty when events come straight from a simulator.
    pub key: String,
    pub first: u64,
    pub last: u64,
    /// Events missing between two received ones.
    pub gaps: u64,
    /// Sequence numbers that went backwards or repeated (should never happen).
    pub disorder: u64,
    /// `last` when the measurement window opened and closed.
    pub at_start: u64,
    pub at_end: u64,
}

/// What one connection saw.
#[derive(Debug, Default, Clone)]
pub struct ConnSeen {
    pub streams: Vec<StreamSeen>,
    /// Firehose events inside the measurement window.
    pub in_window: u64,
    /// Sum of `Count:` of `ProxyEventsDropped` notices.
    pub proxy_dropped: u64,
    /// Why the connection ended early, if it did.
    pub error: Option<String>,
}

struct Scanner {
    end: Finder<'static>,
    seq: Finder<'static>,
    server: Finder<'static>,
}

impl Scanner {
    fn new() -> Scanner {
        Scanner {
            end: Finder::new(b"\r\n\r\n").into_owned(),
            seq: Finder::new(b"\r\nSimSeq: ").into_owned(),
            server: Finder::new(b"\r\nServer: ").into_owned(),
        }
    }

    /// Handles every complete message in `buf`; returns the bytes consumed.
    fn scan(&self, buf: &[u8], seen: &mut ConnSeen, measuring: bool) -> usize {
        let mut pos = 0;
        while let Some(i) = self.end.find(&buf[pos..]) {
            let end = pos + i + 4;
            self.message(&buf[pos..end], seen, measuring);
            pos = end;
        }
        pos
    }

    fn message(&self, msg: &[u8], seen: &mut ConnSeen, measuring: bool) {
        if let Some(i) = self.seq.find(msg) {
            let seq = number(&msg[i + 10..]);
            let key = match self.server.find(msg) {
                Some(j) => value(&msg[j + 10..]),
                None => b"",
            };
            seen.record(key, seq, measuring);
        } else if msg.starts_with(b"Event: ProxyEventsDropped\r\n") {
            if let Some(i) = memchr::memmem::find(msg, b"\r\nCount: ") {
                seen.proxy_dropped += number(&msg[i + 9..]);
            }
        }
    }
}

impl ConnSeen {
    /// Snapshots where each stream is when the run moves from `cur` to `now`.
    pub fn phase_changed(&mut self, cur: Phase, now: Phase) {
        for s in &mut self.streams {
            if cur < Phase::Measure && now >= Phase::Measure {
                s.at_start = s.last;
            }
            if cur < Phase::Drain && now >= Phase::Drain {
                s.at_end = s.last;
            }
        }
    }

    /// One firehose event of stream `key` numbered `seq`.
    fn record(&mut self, key: &[u8], seq: u64, measuring: bool) {
        let seen = self;
        {
            let s = match seen.streams.iter().position(|s| s.key.as_bytes() == key) {
                Some(p) => &mut seen.streams[p],
                None => {
                    seen.streams.push(StreamSeen {
                        key: String::from_utf8_lossy(key).into_owned(),
                        ..StreamSeen::default()
                    });
                    seen.streams.last_mut().expect("just pushed")
                }
            };
            if s.first == 0 {
                s.first = seq;
            } else if seq > s.last + 1 {
                s.gaps += seq - s.last - 1;
            } else if seq <= s.last {
                s.disorder += 1;
            }
            s.last = s.last.max(seq);
            if measuring {
                seen.in_window += 1;
            }
        }
    }
}

/// The same count for AMI as JSON over a WebSocket (`fanout --ws`): one event per text
/// frame, `"SimSeq":"N"` and `"Server":"x"` looked up in the JSON text.
pub struct JsonScanner {
    seq: Finder<'static>,
    server: Finder<'static>,
    dropped: Finder<'static>,
    count: Finder<'static>,
}

impl JsonScanner {
    pub fn new() -> JsonScanner {
        JsonScanner {
            seq: Finder::new(b"\"SimSeq\":\"").into_owned(),
            server: Finder::new(b"\"Server\":\"").into_owned(),
            dropped: Finder::new(b"\"Event\":\"ProxyEventsDropped\"").into_owned(),
            count: Finder::new(b"\"Count\":\"").into_owned(),
        }
    }

    pub fn frame(&self, msg: &[u8], seen: &mut ConnSeen, measuring: bool) {
        if let Some(i) = self.seq.find(msg) {
            let seq = number(&msg[i + 10..]);
            let key = match self.server.find(msg) {
                Some(j) => {
                    let v = &msg[j + 10..];
                    &v[..memchr::memchr(b'"', v).unwrap_or(v.len())]
                }
                None => b"",
            };
            seen.record(key, seq, measuring);
        } else if self.dropped.find(msg).is_some() {
            if let Some(i) = self.count.find(msg) {
                seen.proxy_dropped += number(&msg[i + 9..]);
            }
        }
    }
}

fn number(b: &[u8]) -> u64 {
    b.iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |n, c| n * 10 + u64::from(c - b'0'))
}

fn value(b: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'\r', b).unwrap_or(b.len());
    &b[..end]
}

/// Reads one connection until `Phase::Stop`, counting firehose events. `progress` is
/// bumped per read so the controller can tell when every stream has gone quiet.
pub async fn count(mut rd: OwnedReadHalf, mut buf: BytesMut, phase: PhaseCtl, progress: Arc<AtomicU64>) -> ConnSeen {
    let scanner = Scanner::new();
    let mut seen = ConnSeen::default();
    let mut changes = phase.tx.subscribe();
    let mut cur = Phase::Warmup;
    loop {
        let now = phase.get();
        if now != cur {
            seen.phase_changed(cur, now);
            cur = now;
        }
        let used = scanner.scan(&buf, &mut seen, cur == Phase::Measure);
        buf.advance(used);
        if cur == Phase::Stop {
            break;
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => {
                    seen.error = Some("connection closed".into());
                    break;
                }
                Ok(_) => {
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    seen.error = Some(e.to_string());
                    break;
                }
            },
            _ = changes.changed() => {}
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_per_server_and_drops() {
        let s = Scanner::new();
        let mut seen = ConnSeen::default();
        let mut input = Vec::new();
        for (srv, seq) in [("a", 1), ("b", 1), ("a", 2), ("a", 5), ("b", 2)] {
            input.extend_from_slice(
                format!("Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: SimFirehose\r\nSimSeq: {seq}\r\nServer: {srv}\r\n\r\n")
                    .as_bytes(),
            );
        }
        input
            .extend_from_slice(b"Event: ProxyEventsDropped\r\nPrivilege: system,all\r\nCount: 7\r\n\r\nEvent: Partial");
        let used = s.scan(&input, &mut seen, true);
        assert_eq!(&input[used..], b"Event: Partial");
        assert_eq!(seen.in_window, 5);
        assert_eq!(seen.proxy_dropped, 7);
        let a = seen.streams.iter().find(|s| s.key == "a").unwrap();
        assert_eq!((a.first, a.last, a.gaps), (1, 5, 2));
        let b = seen.streams.iter().find(|s| s.key == "b").unwrap();
        assert_eq!((b.first, b.last, b.gaps), (1, 2, 0));
    }

    #[test]
    fn untagged_stream_and_disorder() {
        let s = Scanner::new();
        let mut seen = ConnSeen::default();
        let input = b"Event: UserEvent\r\nSimSeq: 3\r\n\r\nEvent: UserEvent\r\nSimSeq: 2\r\n\r\n";
        s.scan(input, &mut seen, false);
        assert_eq!(seen.in_window, 0);
        assert_eq!(seen.streams[0].key, "");
        assert_eq!(seen.streams[0].disorder, 1);
    }
}
