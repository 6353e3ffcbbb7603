//! A tiny HTTP/1.1 endpoint for operators: `GET /metrics` (Prometheus text) and
//! `GET /health` (200 when at least one upstream is connected, 503 otherwise, with the
//! state of each upstream as JSON). Hand-written because it needs two fixed routes and
//! nothing else; requests are bounded in size and time.

use crate::core::Core;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

const MAX_REQUEST: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(core: Arc<Core>, listener: TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let core = core.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, handle(&core, stream)).await {
                debug!(%peer, error = %e, "metrics request timed out");
            }
        });
    }
}

async fn handle(core: &Core, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(buf.split(|&b| b == b'\n').next().unwrap_or_default()).into_owned();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => match crate::metrics::render_with_state(core.state_sizes()) {
            Some(text) => ("200 OK", "text/plain; version=0.0.4", text),
            None => (
                "503 Service Unavailable",
                "text/plain",
                "metrics recorder unavailable\n".into(),
            ),
        },
        ("GET", "/health") | ("GET", "/ready") => health(core),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics or /health\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn health(core: &Core) -> (&'static str, &'static str, String) {
    let st = core.state();
    let ups: Vec<String> = st
        .upstreams
        .iter()
        .map(|u| format!("{{\"name\":{},\"connected\":{}}}", json_str(u.name()), u.is_connected()))
        .collect();
    let ready = st.upstreams.iter().any(|u| u.is_connected());
    let body = format!(
        "{{\"status\":\"{}\",\"upstreams\":[{}]}}\n",
        if ready { "ready" } else { "not ready" },
        ups.join(",")
    );
    (
        if ready { "200 OK" } else { "503 Service Unavailable" },
        "application/json",
        body,
    )
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
