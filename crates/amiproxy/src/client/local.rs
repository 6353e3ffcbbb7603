//! The actions the proxy answers itself and never forwards: they change the state of one
//! client's session, and the upstream session is shared by every client.

use super::{End, Session};
use crate::dialect::Generation;
use crate::filter::EventFilter;
use crate::perms::Classes;
use ami_proto::{Action, ActionName, Message, MessageBuilder};
use std::time::Duration;
use tokio::io::AsyncWrite;

impl<W: AsyncWrite + Unpin> Session<W> {
    pub(super) async fn local(&mut self, action: &Action) -> Result<(), End> {
        let (m, aid) = (action.message(), action.id());
        match action.name() {
            ActionName::Login => {
                let text = if self.gen == Generation::V1_4 {
                    "Already logged in"
                } else {
                    "Already authenticated"
                };
                self.send(&MessageBuilder::success(aid, text)).await
            }
            ActionName::Logoff => {
                self.logoff = Some(aid.map(str::to_owned));
                Ok(())
            }
            ActionName::Challenge => self.challenge(m).await,
            ActionName::Ping => self.pong(aid).await,
            ActionName::Events => self.events(m, aid).await,
            ActionName::Filter => self.filter(m, aid).await,
            ActionName::WaitEvent => {
                self.wait_event(m, aid);
                Ok(())
            }
            _ => self.error(aid, "Permission denied").await,
        }
    }

    async fn pong(&mut self, aid: Option<&str>) -> Result<(), End> {
        if self.gen == Generation::V1_4 {
            return self.send(&MessageBuilder::response("Pong", aid).build()).await;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let ts = format!("{}.{:06}", now.as_secs(), now.subsec_micros());
        let pong = MessageBuilder::response("Success", aid)
            .header("Ping", "Pong")
            .header("Timestamp", &ts)
            .build();
        self.send(&pong).await
    }

    async fn events(&mut self, m: &Message, aid: Option<&str>) -> Result<(), End> {
        let Some(mask) = events_mask(m.get("EventMask").unwrap_or("")) else {
            return self.error(aid, "Invalid event mask").await;
        };
        self.mask = mask;
        let state = if self.mask.is_empty() { "Off" } else { "On" };
        if self.gen == Generation::V1_4 {
            return self
                .send(&MessageBuilder::response(&format!("Events {state}"), aid).build())
                .await;
        }
        self.send(&MessageBuilder::response("Success", aid).header("Events", state).build())
            .await
    }

    /// Answered after the timeout without holding up this session's loop. One at a time
    /// per session: a new WaitEvent replaces the pending one.
    fn wait_event(&mut self, m: &Message, aid: Option<&str>) {
        let secs: u64 = m
            .get("Timeout")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
            .min(300);
        let (tx, aid) = (self.tx.clone(), aid.map(str::to_owned));
        if let Some(prev) = self.wait_event.take() {
            prev.abort();
        }
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            tx.try_send(MessageBuilder::success(aid.as_deref(), "Waiting for Event completed."));
            tx.try_send(
                MessageBuilder::event("WaitEventComplete")
                    .header_opt("ActionID", aid.as_deref())
                    .build(),
            );
        });
        self.wait_event = Some(task.abort_handle());
    }

    /// Asterisk's `Filter` action: `Filter: <regex>` (`!` excludes), or the advanced form
    /// with `MatchCriteria: action(..),name(..),header(..),method(..)` and `Filter: <value>`.
    async fn filter(&mut self, m: &Message, aid: Option<&str>) -> Result<(), End> {
        if !m.get("Operation").unwrap_or("").eq_ignore_ascii_case("Add") {
            return self.error(aid, "Unknown operation").await;
        }
        let value = m.get("Filter").unwrap_or("");
        let parsed = match m.get("MatchCriteria").filter(|c| !c.is_empty()) {
            Some(criteria) => EventFilter::advanced(criteria, value),
            None => EventFilter::legacy(value),
        };
        match parsed {
            Ok(f) => {
                self.session_filters.push(f.clone());
                self.filters.add(f);
                self.send(&MessageBuilder::success(aid, "Success")).await
            }
            Err(_) => {
                self.error(aid, "Filter did not compile.  Check the syntax of the filter given.")
                    .await
            }
        }
    }
}

/// Asterisk's reading of an `Events`/`EventMask` value (`strings_to_mask`): a number is a
/// bit mask, a true word is everything, a class list is those classes (none known: off);
/// empty is invalid.
pub(super) fn events_mask(v: &str) -> Option<Classes> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Classes::from_asterisk_bits(v.parse().unwrap_or(u32::MAX)));
    }
    if is_true(v) || v.eq_ignore_ascii_case("all") {
        return Some(Classes::ALL);
    }
    Some(Classes::parse_lenient(v))
}

/// Asterisk's `ast_true`.
pub(super) fn is_true(v: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|w| v.trim().eq_ignore_ascii_case(w))
}
