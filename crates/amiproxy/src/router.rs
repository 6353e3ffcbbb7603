//! Where an action goes. Pure data and decisions, no sockets, so every rule is unit-tested.
//!
//! Order, first match wins:
//! 1. an explicit `Server: <name>` header (`all` fans out);
//! 2. the upstream that owns the channel or uniqueid the action names (learned from events);
//! 3. prefix rules: channel prefixes (`Channel`, `Interface`, ...) and queue prefixes (`Queue`);
//! 4. list actions with no target (`Status`, `CoreShowChannels`, `QueueStatus`, ...) and
//!    `Hangup` by `/regex/` go to every connected upstream, answered as one list;
//! 5. the default upstream.

use crate::config::Config;
use ami_proto::Message;
use dashmap::DashMap;

/// Headers by which actions name a channel (by name or uniqueid).
pub const CHANNEL_HEADERS: &[&str] = &[
    "Channel",
    "ExtraChannel",
    "ChannelId",
    "OtherChannelId",
    "Channel1",
    "Channel2",
    "Uniqueid",
    "Interface",
];

/// List actions answered by every upstream when the action names no target.
const DEFAULT_FANOUT: &[&str] = &["status", "coreshowchannels", "queuestatus", "queuesummary"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    One(usize),
    /// Every connected upstream; answers merged into one list.
    All,
    Fail(String),
}

/// Which upstream owns which channel, learned from events. Keys are channel names and
/// uniqueids (uniqueids are globally unique when each Asterisk sets `systemname`).
#[derive(Debug, Default)]
pub struct Owners {
    /// Key → the upstreams that have it (almost always one; two boxes can both have a
    /// `PJSIP/trunk-0000002a`, and then a name alone does not say which is meant).
    map: DashMap<String, Vec<usize>>,
    /// Uniqueid → (channel name, upstream), so a scope given by channel names also covers
    /// actions that name a channel by its uniqueid.
    names: DashMap<String, (String, usize)>,
    /// Relearns in progress, per upstream: what the index held before, what the upstream's
    /// list confirmed, what live events touched meanwhile.
    relearns: DashMap<usize, Relearn>,
    /// Set once the index reached [`MAX_OWNED_KEYS`] (warned about once).
    full: std::sync::atomic::AtomicBool,
}

/// Keys (channel names and uniqueids) the index holds at most: a PBX with far fewer live
/// channels never reaches it; an index that would (missed hangups, a misbehaving upstream)
/// stops growing and converges again at the next relearn.
pub const MAX_OWNED_KEYS: usize = 1_000_000;

/// One relearn of one upstream's channels (`CoreShowChannels`), so the index converges to
/// what the upstream has: a list item never brings back a channel whose Hangup came first
/// (list items and events travel separately inside Asterisk), and what the index held that
/// neither the list nor a live event confirmed is dropped when the list is complete.
#[derive(Debug, Default)]
struct Relearn {
    before: std::collections::HashSet<String>,
    listed: std::collections::HashSet<String>,
    touched: std::collections::HashSet<String>,
    gone: std::collections::HashSet<String>,
}

impl ami_policy::Channels for Owners {
    fn channel_of(&self, uniqueid: &str) -> Option<String> {
        Owners::channel_of(self, uniqueid)
    }

    fn is_live(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl Owners {
    pub fn insert(&self, key: &str, upstream: usize) {
        if key.is_empty() {
            return;
        }
        if self.map.len() >= MAX_OWNED_KEYS && !self.map.contains_key(key) {
            if !self.full.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    max = MAX_OWNED_KEYS,
                    "channel ownership index is full; new channels route by rules until the next relearn"
                );
            }
            return;
        }
        let mut owners = self.map.entry(key.to_owned()).or_default();
        if !owners.contains(&upstream) {
            owners.push(upstream);
        }
    }

    /// Starts a relearn of `upstream`'s channels: remembers what the index holds for it.
    pub fn begin_relearn(&self, upstream: usize) {
        let before = self
            .map
            .iter()
            .filter(|e| e.value().contains(&upstream))
            .map(|e| e.key().clone())
            .collect();
        self.relearns.insert(
            upstream,
            Relearn {
                before,
                ..Default::default()
            },
        );
    }

    /// One item of a relearn list (`CoreShowChannel`): learned unless a live Hangup for it
    /// came first.
    pub fn learn_listed(&self, upstream: usize, msg: &Message) {
        let (chan, uid) = (msg.get("Channel").unwrap_or(""), msg.get("Uniqueid").unwrap_or(""));
        // Only during a relearn: a list a client asked for is a snapshot too, and outside a
        // relearn nothing tells a stale item from a live channel.
        let Some(mut r) = self.relearns.get_mut(&upstream) else {
            return;
        };
        if r.gone.contains(chan) || r.gone.contains(uid) {
            return;
        }
        r.listed.insert(chan.to_owned());
        r.listed.insert(uid.to_owned());
        drop(r);
        self.insert(chan, upstream);
        self.insert(uid, upstream);
        self.name_uniqueid(uid, chan);
    }

    /// Ends a relearn: when its list was complete, drops what the index held for the
    /// upstream that neither the list nor a live event confirmed.
    pub fn end_relearn(&self, upstream: usize, complete: bool) {
        let Some((_, r)) = self.relearns.remove(&upstream) else {
            return;
        };
        if !complete {
            return;
        }
        for key in r
            .before
            .iter()
            .filter(|k| !r.listed.contains(*k) && !r.touched.contains(*k))
        {
            self.remove_own(key, upstream);
        }
        if self.map.len() < MAX_OWNED_KEYS {
            self.full.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Notes live-event changes to keys during a relearn of `upstream`.
    fn touched(&self, upstream: usize, keys: &[&str], gone: bool) {
        if let Some(mut r) = self.relearns.get_mut(&upstream) {
            for k in keys.iter().filter(|k| !k.is_empty()) {
                r.touched.insert((*k).to_owned());
                if gone {
                    r.gone.insert((*k).to_owned());
                }
            }
        }
    }

    pub fn remove(&self, key: &str) {
        self.map.remove(key);
        self.names.remove(key);
    }

    /// Forgets `key` if `upstream` owns it: a Hangup on one box must not erase another box's
    /// channel of the same name.
    pub fn remove_own(&self, key: &str, upstream: usize) {
        if let Some(mut owners) = self.map.get_mut(key) {
            owners.retain(|u| *u != upstream);
        }
        self.map.remove_if(key, |_, v| v.is_empty());
        self.names.remove_if(key, |_, v| v.1 == upstream);
    }

    /// Records that `uniqueid` is the channel `name`.
    pub fn name_uniqueid(&self, uniqueid: &str, name: &str) {
        if let Some(up) = self.get(uniqueid) {
            self.names.insert(uniqueid.to_owned(), (name.to_owned(), up));
        }
    }

    /// The channel name of a uniqueid, when known.
    pub fn channel_of(&self, uniqueid: &str) -> Option<String> {
        let (name, upstream) = self.names.get(uniqueid).map(|v| v.clone())?;
        // A uniqueid two upstreams share (no `systemname`) names no one channel: a scope
        // check must not take one box's channel for the other's.
        (self.get(uniqueid) == Some(upstream)).then_some(name)
    }

    /// The one upstream that has `key` (None when unknown, or when several have it).
    pub fn get(&self, key: &str) -> Option<usize> {
        self.map
            .get(key)
            .and_then(|v| if v.len() == 1 { Some(v[0]) } else { None })
    }

    /// Every upstream that has `key`.
    pub fn owners(&self, key: &str) -> Vec<usize> {
        self.map.get(key).map(|v| v.clone()).unwrap_or_default()
    }

    /// Forgets everything an upstream owned (it disconnected; it will be relearned).
    pub fn forget_upstream(&self, upstream: usize) {
        self.map.retain(|_, v| {
            v.retain(|u| *u != upstream);
            !v.is_empty()
        });
        self.names.retain(|_, v| v.1 != upstream);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Updates ownership from one upstream event.
    pub fn learn(&self, upstream: usize, event: &str, msg: &Message) {
        let ev = event.as_bytes();
        if ev.eq_ignore_ascii_case(b"Newchannel") || ev.eq_ignore_ascii_case(b"CoreShowChannel") {
            let (chan, uid) = (msg.get("Channel").unwrap_or(""), msg.get("Uniqueid").unwrap_or(""));
            self.touched(upstream, &[chan, uid], false);
            self.insert(chan, upstream);
            self.insert(uid, upstream);
            self.name_uniqueid(uid, chan);
        } else if ev.eq_ignore_ascii_case(b"Rename") {
            for k in ["Channel", "Oldname"] {
                if let Some(old) = msg.get(k) {
                    self.touched(upstream, &[old], true);
                    self.remove_own(old, upstream);
                }
            }
            let (chan, uid) = (msg.get("Newname").unwrap_or(""), msg.get("Uniqueid").unwrap_or(""));
            self.touched(upstream, &[chan, uid], false);
            self.insert(chan, upstream);
            self.insert(uid, upstream);
            self.name_uniqueid(uid, chan);
        } else if ev.eq_ignore_ascii_case(b"Link")
            || ev.eq_ignore_ascii_case(b"Unlink")
            || ev.eq_ignore_ascii_case(b"Bridge")
        {
            // 1.4 and 1.8 name the two joined channels Channel1/Channel2.
            for (c, u) in [("Channel1", "Uniqueid1"), ("Channel2", "Uniqueid2")] {
                let (chan, uid) = (msg.get(c).unwrap_or(""), msg.get(u).unwrap_or(""));
                self.touched(upstream, &[chan, uid], false);
                self.insert(chan, upstream);
                self.insert(uid, upstream);
                self.name_uniqueid(uid, chan);
            }
        } else if ev.eq_ignore_ascii_case(b"Hangup") {
            for k in ["Channel", "Uniqueid"] {
                if let Some(v) = msg.get(k) {
                    self.touched(upstream, &[v], true);
                    self.remove_own(v, upstream);
                }
            }
        }
    }
}

#[derive(Debug)]
pub struct Router {
    names: Vec<String>,
    /// The stable id of each upstream (what [`Owners`] records), by position.
    ids: Vec<usize>,
    channel_prefixes: Vec<(String, usize)>,
    queue_prefixes: Vec<(String, usize)>,
    fanout: Vec<String>,
    default: usize,
}

impl Router {
    /// `ids` are the upstream links' stable ids, in configuration order.
    pub fn new(cfg: &Config, ids: &[usize]) -> Router {
        let names: Vec<String> = cfg.upstreams.iter().map(|u| u.name.clone()).collect();
        let mut channel_prefixes = Vec::new();
        let mut queue_prefixes = Vec::new();
        for (i, u) in cfg.upstreams.iter().enumerate() {
            channel_prefixes.extend(u.channel_prefixes.iter().map(|p| (p.clone(), i)));
            queue_prefixes.extend(u.queue_prefixes.iter().map(|p| (p.clone(), i)));
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
            .unwrap_or(0);
        Router {
            names,
            ids: ids.to_vec(),
            channel_prefixes,
            queue_prefixes,
            fanout,
            default,
        }
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    pub fn name(&self, idx: usize) -> &str {
        self.names.get(idx).map(String::as_str).unwrap_or("?")
    }

    /// Decides where `msg` (an action named `action`) goes. `server` is the value of the
    /// client's routing header, if it sent one.
    pub fn route(&self, msg: &Message, action: &str, server: Option<&str>, owners: &Owners) -> Route {
        if let Some(s) = server {
            if s.eq_ignore_ascii_case("all") {
                return Route::All;
            }
            return match self.index_of(s) {
                Some(i) => Route::One(i),
                None => Route::Fail(format!("Unknown upstream server: {s}")),
            };
        }
        let is_hangup = action.eq_ignore_ascii_case("hangup");
        for h in CHANNEL_HEADERS {
            let Some(v) = msg.get(h).filter(|v| !v.is_empty()) else {
                continue;
            };
            if is_hangup && *h == "Channel" && v.len() >= 2 && v.starts_with('/') && v.ends_with('/') {
                return Route::All;
            }
            let have: Vec<usize> = owners
                .owners(v)
                .iter()
                .filter_map(|id| self.ids.iter().position(|x| x == id))
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
        let lc = action.to_ascii_lowercase();
        if self.names.len() > 1 && self.fanout.contains(&lc) {
            return Route::All;
        }
        Route::One(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::MessageBuilder;
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
        Router::new(&cfg, &[10, 20])
    }

    fn action(headers: &[(&str, &str)]) -> Message {
        headers
            .iter()
            .fold(MessageBuilder::new(), |b, (k, v)| b.header(k, v))
            .build()
    }

    #[test]
    fn rules_in_order() {
        let r = router();
        let owners = Owners::default();
        owners.insert("Local/1@x-0001;1", 10);
        owners.insert("pbx1-123.4", 10);
        let m = action(&[("Action", "Hangup"), ("Channel", "Local/1@x-0001;1")]);
        assert_eq!(r.route(&m, "Hangup", None, &owners), Route::One(0));
        assert_eq!(r.route(&m, "Hangup", Some("pbx2"), &owners), Route::One(1));
        assert_eq!(
            r.route(&m, "Hangup", Some("nope"), &owners),
            Route::Fail("Unknown upstream server: nope".into())
        );
        let m = action(&[("Action", "Hangup"), ("Channel", "pbx1-123.4")]);
        assert_eq!(r.route(&m, "Hangup", None, &owners), Route::One(0));
        owners.insert("SIP/dup-1", 10);
        owners.insert("SIP/dup-1", 20);
        let m = action(&[("Action", "Hangup"), ("Channel", "SIP/dup-1")]);
        assert!(matches!(r.route(&m, "Hangup", None, &owners), Route::Fail(t) if t.contains("pbx1, pbx2")));
        assert_eq!(r.route(&m, "Hangup", Some("pbx2"), &owners), Route::One(1));
        let m = action(&[("Action", "Hangup"), ("Channel", "/Local/.*/")]);
        assert_eq!(r.route(&m, "Hangup", None, &owners), Route::All);
        let m = action(&[("Action", "Originate"), ("Channel", "PJSIP/b-100")]);
        assert_eq!(r.route(&m, "Originate", None, &owners), Route::One(1));
        let m = action(&[
            ("Action", "QueueAdd"),
            ("Queue", "sales-east"),
            ("Interface", "Local/9@y"),
        ]);
        assert_eq!(r.route(&m, "QueueAdd", None, &owners), Route::One(0));
        let m = action(&[("Action", "QueueStatus")]);
        assert_eq!(r.route(&m, "QueueStatus", None, &owners), Route::All);
        let m = action(&[("Action", "Status"), ("Channel", "Local/1@x-0001;1")]);
        assert_eq!(r.route(&m, "Status", None, &owners), Route::One(0));
        let m = action(&[("Action", "CoreStatus")]);
        assert_eq!(r.route(&m, "CoreStatus", None, &owners), Route::One(1));
    }

    #[test]
    fn relearn_converges_to_the_upstreams_truth() {
        let o = Owners::default();
        let ev = |h: &[(&str, &str)]| action(h);
        let chan = |name: &'static str, uid: &'static str| {
            ev(&[("Event", "CoreShowChannel"), ("Channel", name), ("Uniqueid", uid)])
        };
        // Known before: a (still up), stale (its Hangup was missed).
        o.learn(
            1,
            "Newchannel",
            &ev(&[("Event", "Newchannel"), ("Channel", "SIP/a"), ("Uniqueid", "ua")]),
        );
        o.learn(
            1,
            "Newchannel",
            &ev(&[("Event", "Newchannel"), ("Channel", "SIP/stale"), ("Uniqueid", "us")]),
        );
        o.begin_relearn(1);
        // During the relearn: b hangs up before its (stale) list item arrives; c is new.
        o.learn(
            1,
            "Hangup",
            &ev(&[("Event", "Hangup"), ("Channel", "SIP/b"), ("Uniqueid", "ub")]),
        );
        o.learn(
            1,
            "Newchannel",
            &ev(&[("Event", "Newchannel"), ("Channel", "SIP/c"), ("Uniqueid", "uc")]),
        );
        o.learn_listed(1, &chan("SIP/a", "ua"));
        o.learn_listed(1, &chan("SIP/b", "ub"));
        o.end_relearn(1, true);
        assert_eq!(o.get("SIP/a"), Some(1));
        assert_eq!(
            o.get("SIP/b"),
            None,
            "a list item must not bring back a hung-up channel"
        );
        assert_eq!(o.get("SIP/c"), Some(1), "a channel created during the relearn stays");
        assert_eq!(o.get("SIP/stale"), None, "what the list did not confirm goes");
        assert_eq!(o.get("us"), None);
        // An incomplete relearn drops nothing; a list outside a relearn teaches nothing.
        o.begin_relearn(1);
        o.end_relearn(1, false);
        assert_eq!(o.get("SIP/a"), Some(1));
        o.learn_listed(1, &chan("SIP/d", "ud"));
        assert_eq!(o.get("SIP/d"), None);
    }

    #[test]
    fn ownership_follows_events() {
        let o = Owners::default();
        let ev = |h: &[(&str, &str)]| action(h);
        o.learn(
            1,
            "Newchannel",
            &ev(&[("Event", "Newchannel"), ("Channel", "SIP/a-1"), ("Uniqueid", "u1")]),
        );
        assert_eq!(o.get("SIP/a-1"), Some(1));
        o.learn(
            1,
            "Rename",
            &ev(&[
                ("Event", "Rename"),
                ("Channel", "SIP/a-1"),
                ("Newname", "SIP/a-1<MASQ>"),
                ("Uniqueid", "u1"),
            ]),
        );
        assert_eq!(o.get("SIP/a-1"), None);
        assert_eq!(o.get("SIP/a-1<MASQ>"), Some(1));
        o.learn(
            1,
            "Hangup",
            &ev(&[("Event", "Hangup"), ("Channel", "SIP/a-1<MASQ>"), ("Uniqueid", "u1")]),
        );
        assert!(o.is_empty());
        o.learn(
            3,
            "Link",
            &ev(&[
                ("Event", "Link"),
                ("Channel1", "SIP/b-1"),
                ("Channel2", "SIP/c-2"),
                ("Uniqueid1", "u2"),
                ("Uniqueid2", "u3"),
            ]),
        );
        assert_eq!(o.get("SIP/c-2"), Some(3));
        assert_eq!(o.channel_of("u3").as_deref(), Some("SIP/c-2"));
        o.learn(
            3,
            "Rename",
            &ev(&[
                ("Event", "Rename"),
                ("Oldname", "SIP/b-1"),
                ("Newname", "SIP/b-1<ZOMBIE>"),
                ("Uniqueid", "u2"),
            ]),
        );
        assert_eq!(o.get("SIP/b-1"), None);
        assert_eq!(o.get("SIP/b-1<ZOMBIE>"), Some(3));
        o.forget_upstream(3);
        o.insert("same-name", 4);
        o.insert("same-name", 6);
        assert_eq!(o.get("same-name"), None, "on two boxes: ambiguous");
        assert_eq!(o.owners("same-name"), vec![4, 6]);
        o.remove_own("same-name", 6);
        o.learn(5, "Hangup", &ev(&[("Event", "Hangup"), ("Channel", "same-name")]));
        assert_eq!(o.get("same-name"), Some(4), "another box's hangup keeps it");
        o.remove_own("same-name", 4);
        o.insert("x", 2);
        o.insert("y", 1);
        o.forget_upstream(2);
        assert_eq!(o.len(), 1);
    }
}
