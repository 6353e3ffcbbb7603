//! A cluster behind the proxy: several simulators' firehoses merged into one stream, and a
//! fanned-out list action answered as ONE list (one start, one Complete, `ListItems` equal
//! to the items actually sent), which is the proxy's promise for cluster-wide lists.

use crate::client::{AmiConn, Credentials};
use crate::env::Env;
use crate::error::{LoadError, Result};
use ami_proto::{Kind, MessageBuilder};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest wait for a merged list.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// After the Complete event, how long to keep reading for a stray second start/Complete.
const LIST_LINGER: Duration = Duration::from_millis(300);
/// Calls per second per simulator while the channel list is checked (each lives 3 s), so
/// CoreShowChannels has items from every simulator.
const CALLS_PER_SEC: f64 = 4.0;

/// The result of one merged-list check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ListCheck {
    pub action: String,
    pub starts: usize,
    pub completes: usize,
    /// Item events received.
    pub items: usize,
    /// `ListItems:` of the Complete event.
    pub list_items: Option<usize>,
    /// Distinct `Server:` tags on the items.
    pub servers: usize,
    pub ok: bool,
}

/// Checks QueueSummary and CoreShowChannels through the proxy with calls running.
pub async fn check_lists(env: &Env, creds: &Credentials) -> Result<Vec<ListCheck>> {
    for s in &env.sims {
        s.set_call_rate(CALLS_PER_SEC);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut out = Vec::new();
    for action in ["QueueSummary", "CoreShowChannels"] {
        out.push(check_list(env.targets[0], creds, action, env.sims.len()).await?);
    }
    for s in &env.sims {
        s.set_call_rate(0.0);
    }
    Ok(out)
}

async fn check_list(addr: SocketAddr, creds: &Credentials, action: &str, servers: usize) -> Result<ListCheck> {
    let mut conn = AmiConn::login(addr, creds, false).await?;
    let aid = "cluster-list";
    conn.send(&MessageBuilder::action(action).header("ActionID", aid).into_bytes())
        .await?;
    let mut c = ListCheck {
        action: action.to_owned(),
        ..ListCheck::default()
    };
    let mut tags = BTreeSet::new();
    let mut deadline = tokio::time::Instant::now() + LIST_TIMEOUT;
    let mut complete_seen = false;
    loop {
        let m = match tokio::time::timeout_at(deadline, conn.next()).await {
            Ok(m) => m?,
            Err(_) if complete_seen => break,
            Err(_) => return Err(LoadError::Timeout(format!("{action} list"))),
        };
        if m.action_id() != Some(aid) {
            continue;
        }
        let list = m.get("EventList").map(str::to_ascii_lowercase);
        match (m.kind(), list.as_deref()) {
            (Kind::Response, Some("start")) => c.starts += 1,
            (Kind::Response, _) => {
                return Err(LoadError::Check(format!(
                    "{action}: {}",
                    m.get("Message").unwrap_or("unexpected response")
                )))
            }
            (Kind::Event, Some("complete")) => {
                c.completes += 1;
                c.list_items = m.get("ListItems").and_then(|v| v.trim().parse().ok());
                if !complete_seen {
                    complete_seen = true;
                    deadline = tokio::time::Instant::now() + LIST_LINGER;
                }
            }
            (Kind::Event, _) => {
                c.items += 1;
                if let Some(s) = m.get("Server") {
                    tags.insert(s.to_owned());
                }
            }
            _ => {}
        }
    }
    c.servers = tags.len();
    c.ok = c.starts == 1 && c.completes == 1 && c.list_items == Some(c.items) && c.servers == servers;
    Ok(c)
}
