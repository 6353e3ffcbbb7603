//! AMI over a WebSocket (`/ami/ws`): a JSON object per action in (text frames), one per
//! response and event out. Login by a first `{"Action":"Login",...}` message, as over TCP
//! (MD5 challenge included), or by HTTP Basic auth on the upgrade request. An action with
//! `"_collect": true` gets its list back as one `{"response":..., "events":[...]}` object.
//!
//! A client that does not read: its frames wait in the socket, then in the pipe to the
//! session, and then the session's own bounds apply (its oldest events dropped with
//! `ProxyEventsDropped`, or the session closed by `slow_client = "disconnect"` or the write
//! timeout), as for a TCP client.

use super::bridge::{Bridge, Collector, Frame, Offer};
use super::{basic_auth, json_error, not_allowed, Body, Req, Site};
use crate::json::{self, Bounds};
use crate::sessions::Transport;
use ami_proto::MessageBuilder;
use futures::{FutureExt, SinkExt, StreamExt};
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

/// Lists being collected at once on one WebSocket (more are refused).
const MAX_COLLECTING: usize = 64;

/// The checks of an upgrade request; the `Sec-WebSocket-Accept` value when it is one.
pub(super) fn accept_key(req: &hyper::Request<hyper::body::Incoming>) -> Result<String, Box<Response<Body>>> {
    if req.method() != Method::GET {
        return Err(Box::new(not_allowed("GET")));
    }
    let h = req.headers();
    let is = |name, want: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(want))
    };
    if !is(UPGRADE, "websocket") || !is(CONNECTION, "upgrade") {
        return Err(Box::new(json_error(
            StatusCode::UPGRADE_REQUIRED,
            "a WebSocket upgrade is expected here",
        )));
    }
    if h.get("sec-websocket-version").and_then(|v| v.to_str().ok()) != Some("13") {
        return Err(Box::new(json_error(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Version 13 is required",
        )));
    }
    match h.get("sec-websocket-key") {
        Some(k) => Ok(derive_accept_key(k.as_bytes())),
        None => Err(Box::new(json_error(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key is missing",
        ))),
    }
}

/// The 101 answer.
pub(super) fn switching(accept: &str) -> Response<Body> {
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

/// The frame limits of every WebSocket the proxy serves.
pub(super) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(super::MAX_BODY))
        .max_frame_size(Some(super::MAX_BODY))
}

pub(super) async fn upgrade(site: &Site, r: Req) -> Response<Body> {
    let Req { mut req, peer } = r;
    let accept = match accept_key(&req) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    // A WebSocket counts toward the listener's connections for its whole life.
    let Ok(slot) = site.conns.clone().try_acquire_owned() else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    };
    let core = &site.core;
    let mut bridge = match Bridge::open(core, peer, site.local, Transport::WebSocket, site.tls, Arc::from("web")).await
    {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    if let Some((user, secret)) = basic_auth(req.headers()) {
        if let Err(e) = bridge
            .login(&user, &secret, true, core.config().proxy.auth_timeout)
            .await
        {
            return json_error(StatusCode::UNAUTHORIZED, &e.to_string());
        }
    }
    let upgrading = hyper::upgrade::on(&mut req);
    let config = core.config();
    let bounds = Bounds {
        max_line: config.proxy.max_line,
        max_lines: config.proxy.max_lines,
    };
    let write_timeout = config.proxy.write_timeout;
    tokio::spawn(async move {
        let _slot = slot;
        match upgrading.await {
            Ok(io) => {
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(ws_config())).await;
                run(ws, bridge, bounds, write_timeout).await;
            }
            Err(e) => debug!(%peer, error = %e, "websocket upgrade failed"),
        }
    });
    switching(&accept)
}

/// An error answer for a frame that is not an action, with its ActionID when one is
/// readable (the answer is JSON only, so echoing it is safe).
fn refusal(text: &str, why: &str) -> String {
    let aid = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("ActionID")?.as_str().map(str::to_owned))
        .filter(|a| !a.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
    let m = MessageBuilder::response("Error", aid.as_deref())
        .header("Message", why)
        .build();
    json::to_json(&m)
}

/// Frames written to the socket per flush, at most (one write for a burst of events rather
/// than one per event; the session's own batching feeds it).
const WRITE_BATCH: usize = 256;

/// What the client gets for one frame of its session, collecting lists it asked to have
/// collected.
fn outgoing(frame: Frame, collecting: &mut Vec<Collector>) -> Option<WsMessage> {
    let text = match frame {
        Frame::Banner => return None,
        Frame::Json(bytes) => return Utf8Bytes::try_from(bytes).ok().map(WsMessage::Text),
        Frame::Ami(m) => match collecting.iter().position(|c| Some(c.action_id()) == m.action_id()) {
            Some(i) => match collecting[i].offer(m) {
                Offer::NotMine(m) => json::to_json(&m),
                Offer::Taken => return None,
                Offer::Done(done) => {
                    collecting.swap_remove(i);
                    done.to_json()
                }
            },
            None => json::to_json(&m),
        },
    };
    Some(WsMessage::text(text))
}

/// Actions a WebSocket client may have queued for its session at once; more are answered
/// `Too many actions waiting` at once.
const ACTION_QUEUE: usize = 256;

/// One action frame from the client: queued for the session, or an error answer.
fn incoming(
    text: &str,
    actions: &tokio::sync::mpsc::Sender<ami_proto::Message>,
    bounds: &Bounds,
    collecting: &mut Vec<Collector>,
    assigned: &mut u64,
) -> Result<Option<String>, ()> {
    let a = match json::action_from_json(text, None, bounds) {
        Ok(a) => a,
        Err(e) => return Ok(Some(refusal(text, &e.to_string()))),
    };
    let mut msg = a.msg;
    let mut collect = None;
    if a.collect {
        if collecting.len() >= MAX_COLLECTING {
            return Ok(Some(refusal(text, "Too many lists being collected")));
        }
        let aid = match msg.action_id() {
            Some(aid) => aid.to_owned(),
            None => {
                *assigned += 1;
                let aid = format!("ws-{assigned}");
                msg = msg.with_header("ActionID", &aid);
                aid
            }
        };
        collect = Some(aid);
    }
    match actions.try_send(msg) {
        Ok(()) => {
            // Its answer is read on this same task, after this returns: never before.
            collecting.extend(collect.map(Collector::new));
            Ok(None)
        }
        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => Ok(Some(refusal(text, "Too many actions waiting"))),
        Err(_) => Err(()),
    }
}

async fn run<S>(ws: WebSocketStream<S>, bridge: Bridge, bounds: Bounds, write_timeout: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let (mut bridge, actions) = bridge.split(ACTION_QUEUE);
    let mut collecting: Vec<Collector> = Vec::new();
    let mut assigned = 0u64;
    loop {
        let written = tokio::select! {
            frame = stream.next() => {
                let answer = match frame {
                    Some(Ok(WsMessage::Text(t))) => {
                        match incoming(t.as_str(), &actions, &bounds, &mut collecting, &mut assigned) {
                            Ok(a) => a,
                            Err(()) => break,
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => Some(refusal("", "Send actions as JSON text frames")),
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => None,
                };
                match answer {
                    Some(text) => tokio::time::timeout(write_timeout, sink.send(WsMessage::text(text))).await,
                    None => Ok(Ok(())),
                }
            }
            frame = bridge.next_frame() => {
                let Some(first) = frame else {
                    let _ = tokio::time::timeout(write_timeout, sink.send(WsMessage::Close(None))).await;
                    break;
                };
                // This frame and every other already in the pipe, then one flush.
                let mut next = Some(first);
                let mut fed = Ok(Ok(()));
                for _ in 0..WRITE_BATCH {
                    let Some(f) = next.take() else { break };
                    if let Some(m) = outgoing(f, &mut collecting) {
                        fed = tokio::time::timeout(write_timeout, sink.feed(m)).await;
                        if !matches!(fed, Ok(Ok(()))) {
                            break;
                        }
                    }
                    next = bridge.next_frame().now_or_never().flatten();
                }
                if let Some(f) = next {
                    // The batch is full: this one goes first next turn's way, in order.
                    if let Some(m) = outgoing(f, &mut collecting) {
                        if matches!(fed, Ok(Ok(()))) {
                            fed = tokio::time::timeout(write_timeout, sink.feed(m)).await;
                        }
                    }
                }
                match fed {
                    Ok(Ok(())) => tokio::time::timeout(write_timeout, sink.flush()).await,
                    other => other,
                }
            }
        };
        if !matches!(written, Ok(Ok(()))) {
            break;
        }
    }
    // Dropping the queue logs the session off (see `Bridge::split`).
    drop(actions);
    drop(bridge);
}
