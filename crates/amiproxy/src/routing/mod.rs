//! Where an action goes. Pure data and decisions, no sockets, so every rule is unit-tested.
//!
//! Order, first match wins:
//! 1. an explicit `Server: <name>` header (`all` fans out);
//! 2. the upstream that owns the channel or uniqueid the action names (learned from events);
//! 3. prefix rules: channel prefixes (`Channel`, `Interface`, ...) and queue prefixes (`Queue`);
//! 4. list actions with no target (`Status`, `CoreShowChannels`, `QueueStatus`, ...) and
//!    `Hangup` by `/regex/` go to every connected upstream, answered as one list;
//! 5. the default upstream.

mod departed;
mod owners;

pub use owners::{Owners, MAX_OWNED_KEYS};

use crate::config::Config;
use crate::ids::{Position, UpstreamId};
use ami_proto::facts::ACTION_CHANNEL_HEADERS;
use ami_proto::{Action, ActionName};

/// List actions answered by every upstream when the action names no target.
const DEFAULT_FANOUT: &[&str] = &["status", "coreshowchannels", "queuestatus", "queuesummary"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    One(Position),
    /// Every connected upstream; answers merged into one list.
    All,
    Fail(String),
}

#[derive(Debug)]
pub struct Router {
    names: Vec<String>,
    /// The stable id of each upstream (what [`Owners`] records), by position.
    ids: Vec<UpstreamId>,
    channel_prefixes: Vec<(String, Position)>,
    queue_prefixes: Vec<(String, Position)>,
    fanout: Vec<String>,
    default: Position,
}

impl Router {
    /// `ids` are the upstream links' stable ids, in configuration order.
    pub fn new(cfg: &Config, ids: &[UpstreamId]) -> Router {
        let names: Vec<String> = cfg.upstreams.iter().map(|u| u.name.clone()).collect();
        let mut channel_prefixes = Vec::new();
        let mut queue_prefixes = Vec::new();
        for (i, u) in cfg.upstreams.iter().enumerate() {
            channel_prefixes.extend(u.channel_prefixes.iter().map(|p| (p.clone(), Position(i))));
            queue_prefixes.extend(u.queue_prefixes.iter().map(|p| (p.clone(), Position(i))));
        }
        // Longest prefix first, so `PJSIP/pbx1-` wins over `PJSIP/`.
        channel_prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        queue_prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        let mut fanout: Vec<String> = DEFAULT_FANOUT.iter().map(|s| s.to_string()).collect();
        fanout.extend(cfg.routing.fanout_actions.iter().map(|s| s.to_ascii_lowercase()));
        let default = cfg
            .routing
            .default_upstream
            .as_ref()
            .and_then(|d| names.iter().position(|n| n == d))
            .map_or(Position(0), Position);
        Router {
            names,
            ids: ids.to_vec(),
            channel_prefixes,
            queue_prefixes,
            fanout,
            default,
        }
    }

    pub fn index_of(&self, name: &str) -> Option<Position> {
        self.names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(Position)
    }

    pub fn name(&self, pos: Position) -> &str {
        self.names.get(pos.index()).map(String::as_str).unwrap_or("?")
    }

    /// Decides where an action goes. `server` is the value of the client's routing header,
    /// if it sent one.
    pub fn route(&self, action: &Action, server: Option<&str>, owners: &Owners) -> Route {
        let msg = action.message();
        if let Some(s) = server {
            if s.eq_ignore_ascii_case("all") {
                return Route::All;
            }
            return match self.index_of(s) {
                Some(i) => Route::One(i),
                None => Route::Fail(format!("Unknown upstream server: {s}")),
            };
        }
        let is_hangup = *action.name() == ActionName::Hangup;
        for h in ACTION_CHANNEL_HEADERS {
            let Some(v) = msg.get(h).filter(|v| !v.is_empty()) else {
                continue;
            };
            if is_hangup && *h == "Channel" && v.len() >= 2 && v.starts_with('/') && v.ends_with('/') {
                return Route::All;
            }
            let have: Vec<Position> = owners
                .owners(v)
                .iter()
                .filter_map(|id| self.ids.iter().position(|x| x == id).map(Position))
                .collect();
            match have.as_slice() {
                [pos] => return Route::One(*pos),
                [] => {}
                several => {
                    let names: Vec<&str> = several.iter().map(|p| self.name(*p)).collect();
                    return Route::Fail(format!(
                        "{h} {v} exists on more than one server ({}); choose one with the server header or name it by its uniqueid",
                        names.join(", ")
                    ));
                }
            }
            if let Some((_, i)) = self.channel_prefixes.iter().find(|(p, _)| v.starts_with(p.as_str())) {
                return Route::One(*i);
            }
        }
        if let Some(q) = msg.get("Queue").filter(|v| !v.is_empty()) {
            if let Some((_, i)) = self.queue_prefixes.iter().find(|(p, _)| q.starts_with(p.as_str())) {
                return Route::One(*i);
            }
        }
        let lc = action.name().lowercase();
        if self.names.len() > 1 && self.fanout.iter().any(|f| f == lc) {
            return Route::All;
        }
        Route::One(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::{Message, MessageBuilder};
    use std::path::Path;

    fn router() -> Router {
        let cfg = Config::from_toml(
            r#"
[[listener]]
address = "127.0.0.1:0"
[[upstream]]
name = "pbx1"
kind = "simulated"
channel_prefixes = ["PJSIP/a-"]
queue_prefixes = ["sales"]
[[upstream]]
name = "pbx2"
kind = "simulated"
channel_prefixes = ["PJSIP/b-"]
queue_prefixes = ["support"]
[routing]
default_upstream = "pbx2"
"#,
            Path::new("."),
        )
        .unwrap();
        Router::new(&cfg, &[UpstreamId(10), UpstreamId(20)])
    }

    /// The action `name` with these headers.
    fn act(name: &str, m: &Message) -> Action {
        let b = m
            .headers()
            .fold(MessageBuilder::action(name), |b, (k, v)| b.header(k, v));
        Action::parse(b.build()).expect("an action")
    }

    /// A message of these headers, in order (for the ownership index's tests too).
    pub(super) fn action(headers: &[(&str, &str)]) -> Message {
        headers
            .iter()
            .fold(MessageBuilder::new(), |b, (k, v)| b.header(k, v))
            .build()
    }

    #[test]
    fn rules_in_order() {
        let r = router();
        let owners = Owners::default();
        owners.insert("Local/1@x-0001;1", UpstreamId(10));
        owners.insert("pbx1-123.4", UpstreamId(10));
        let m = action(&[("Action", "Hangup"), ("Channel", "Local/1@x-0001;1")]);
        assert_eq!(r.route(&act("Hangup", &m), None, &owners), Route::One(Position(0)));
        assert_eq!(
            r.route(&act("Hangup", &m), Some("pbx2"), &owners),
            Route::One(Position(1))
        );
        assert_eq!(
            r.route(&act("Hangup", &m), Some("nope"), &owners),
            Route::Fail("Unknown upstream server: nope".into())
        );
        let m = action(&[("Action", "Hangup"), ("Channel", "pbx1-123.4")]);
        assert_eq!(r.route(&act("Hangup", &m), None, &owners), Route::One(Position(0)));
        owners.insert("SIP/dup-1", UpstreamId(10));
        owners.insert("SIP/dup-1", UpstreamId(20));
        let m = action(&[("Action", "Hangup"), ("Channel", "SIP/dup-1")]);
        assert!(matches!(r.route(&act("Hangup", &m), None, &owners), Route::Fail(t) if t.contains("pbx1, pbx2")));
        assert_eq!(
            r.route(&act("Hangup", &m), Some("pbx2"), &owners),
            Route::One(Position(1))
        );
        let m = action(&[("Action", "Hangup"), ("Channel", "/Local/.*/")]);
        assert_eq!(r.route(&act("Hangup", &m), None, &owners), Route::All);
        let m = action(&[("Action", "Originate"), ("Channel", "PJSIP/b-100")]);
        assert_eq!(r.route(&act("Originate", &m), None, &owners), Route::One(Position(1)));
        let m = action(&[
            ("Action", "QueueAdd"),
            ("Queue", "sales-east"),
            ("Interface", "Local/9@y"),
        ]);
        assert_eq!(r.route(&act("QueueAdd", &m), None, &owners), Route::One(Position(0)));
        let m = action(&[("Action", "QueueStatus")]);
        assert_eq!(r.route(&act("QueueStatus", &m), None, &owners), Route::All);
        let m = action(&[("Action", "Status"), ("Channel", "Local/1@x-0001;1")]);
        assert_eq!(r.route(&act("Status", &m), None, &owners), Route::One(Position(0)));
        let m = action(&[("Action", "CoreStatus")]);
        assert_eq!(r.route(&act("CoreStatus", &m), None, &owners), Route::One(Position(1)));
    }
}
