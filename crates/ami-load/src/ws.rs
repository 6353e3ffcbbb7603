//! `fanout --ws`: clients that read AMI as JSON over the proxy's WebSocket (`/ami/ws`),
//! logged in by HTTP Basic auth on the upgrade, counted like the TCP readers.

use crate::client::Credentials;
use crate::counter::{ConnSeen, JsonScanner, Phase, PhaseCtl};
use crate::error::{LoadError, Result};
use base64::Engine;
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// Opens one WebSocket, logged in with events on.
pub async fn connect(web: SocketAddr, creds: &Credentials) -> Result<Ws> {
    let tcp = TcpStream::connect(web)
        .await
        .map_err(|source| LoadError::Connect { addr: web, source })?;
    tcp.set_nodelay(true)?;
    let mut req = format!("ws://{web}/ami/ws")
        .into_client_request()
        .map_err(|e| LoadError::Protocol(format!("websocket request: {e}")))?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.user, creds.secret));
    let value = HeaderValue::from_str(&format!("Basic {token}")).map_err(|e| LoadError::Usage(e.to_string()))?;
    req.headers_mut().insert("authorization", value);
    let config = WebSocketConfig::default().max_message_size(Some(1 << 20));
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(config))
        .await
        .map_err(|e| LoadError::Protocol(format!("websocket to {web}: {e}")))?;
    Ok(ws)
}

/// Reads one WebSocket until `Phase::Stop`, counting firehose events.
pub async fn count(mut ws: Ws, phase: PhaseCtl, progress: Arc<AtomicU64>) -> ConnSeen {
    let scanner = JsonScanner::new();
    let mut seen = ConnSeen::default();
    let mut changes = phase.subscribe();
    let mut cur = Phase::Warmup;
    loop {
        let now = phase.get();
        if now != cur {
            seen.phase_changed(cur, now);
            cur = now;
        }
        if cur == Phase::Stop {
            break;
        }
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    scanner.frame(t.as_bytes(), &mut seen, cur == Phase::Measure);
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_))) | None => {
                    seen.error = Some("websocket closed".into());
                    break;
                }
                Some(Err(e)) => {
                    seen.error = Some(e.to_string());
                    break;
                }
                Some(Ok(_)) => {}
            },
            _ = changes.changed() => {}
        }
    }
    seen
}
