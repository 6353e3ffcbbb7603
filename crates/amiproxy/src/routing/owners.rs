//! Which upstream owns which channel, learned from the upstreams' events; what routes an
//! action that names a channel, and what the policy asks about live channels.

use super::departed::{Departed, Gone};
use crate::ids::UpstreamId;
use ami_proto::Message;
use dashmap::DashMap;

/// Which upstream owns which channel, learned from events. Keys are channel names and
/// uniqueids (uniqueids are globally unique when each Asterisk sets `systemname`).
#[derive(Debug, Default)]
pub struct Owners {
    /// Key → the upstreams that have it (almost always one; two boxes can both have a
    /// `PJSIP/trunk-0000002a`, and then a name alone does not say which is meant).
    map: DashMap<String, Vec<UpstreamId>>,
    /// Uniqueid → (channel name, upstream), so a scope given by channel names also covers
    /// actions that name a channel by its uniqueid.
    names: DashMap<String, (String, UpstreamId)>,
    /// Relearns in progress, per upstream: what the index held before, what the upstream's
    /// list confirmed, what live events touched meanwhile.
    relearns: DashMap<UpstreamId, Relearn>,
    /// Set once the index reached [`MAX_OWNED_KEYS`] (warned about once).
    full: std::sync::atomic::AtomicBool,
    /// At least `map.len()`: the length last counted plus the keys added since. Counting
    /// locks every shard of the map (there are 4 per CPU), far too dear for every new
    /// channel, so it is counted again only when this bound reaches the cap.
    len_bound: std::sync::atomic::AtomicUsize,
    /// The number of relearns in progress (one more for a moment while one starts): when 0,
    /// a live event has no relearn to tell about (the common case), and the map of relearns
    /// is not even looked at.
    relearning: std::sync::atomic::AtomicUsize,
    /// Uniqueids of channels that hung up lately: events naming them may still wait in a
    /// session's queue, and their tenant must still see them.
    departed: Departed,
    /// The last read number given out (see [`Owners::next_read`]).
    reads: std::sync::atomic::AtomicU64,
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
    pub fn insert(&self, key: &str, upstream: UpstreamId) {
        if key.is_empty() {
            return;
        }
        if !self.map.contains_key(key) && !self.room_for_one(MAX_OWNED_KEYS) {
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

    /// Whether one more key fits under `cap` ([`MAX_OWNED_KEYS`]), counting it in the bound.
    fn room_for_one(&self, cap: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.len_bound.fetch_add(1, Relaxed) < cap {
            return true;
        }
        let len = self.map.len();
        self.len_bound.store(len + 1, Relaxed);
        len < cap
    }

    /// Starts a relearn of `upstream`'s channels: remembers what the index holds for it.
    pub fn begin_relearn(&self, upstream: UpstreamId) {
        let before = self
            .map
            .iter()
            .filter(|e| e.value().contains(&upstream))
            .map(|e| e.key().clone())
            .collect();
        // Counted before it exists, so no live event in between goes unnoted; not twice when
        // it replaces a relearn of the same upstream.
        self.relearning.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let replaced = self.relearns.insert(
            upstream,
            Relearn {
                before,
                ..Default::default()
            },
        );
        if replaced.is_some() {
            self.relearning.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// One item of a relearn list (`CoreShowChannel`): learned unless a live Hangup for it
    /// came first.
    pub fn learn_listed(&self, upstream: UpstreamId, msg: &Message) {
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
    pub fn end_relearn(&self, upstream: UpstreamId, complete: bool) {
        let Some((_, r)) = self.relearns.remove(&upstream) else {
            return;
        };
        self.relearning.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
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
    fn touched(&self, upstream: UpstreamId, keys: &[&str], gone: bool) {
        if self.relearning.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
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
    pub fn remove_own(&self, key: &str, upstream: UpstreamId) {
        if let Some(mut owners) = self.map.get_mut(key) {
            owners.retain(|u| *u != upstream);
        }
        self.map.remove_if(key, |_, v| v.is_empty());
        if let Some((uid, (name, upstream))) = self.names.remove_if(key, |_, v| v.1 == upstream) {
            // Every event of this upstream read so far may still name it; none read later.
            let read = self.reads.load(std::sync::atomic::Ordering::Acquire);
            self.departed.bury(uid, Gone { name, upstream, read });
        }
    }

    /// Records that `uniqueid` is the channel `name`.
    pub fn name_uniqueid(&self, uniqueid: &str, name: &str) {
        if let Some(up) = self.get(uniqueid) {
            self.names.insert(uniqueid.to_owned(), (name.to_owned(), up));
        }
    }

    /// The channel name of a live uniqueid, when known.
    pub fn channel_of(&self, uniqueid: &str) -> Option<String> {
        self.resolve(uniqueid, None)
    }

    /// The channel name of a uniqueid an event names, the event read from `upstream` in its
    /// read `read`: a live channel's, or that of a channel of that upstream that hung up in
    /// that read or a later one (the index learns a whole read, and a session judges its
    /// events later still: a call's teardown, read at once, is judged whole). Never one that
    /// hung up in an earlier read: an event read after that which names it (a transferred
    /// party keeps the first channel's `Linkedid`) is no longer about it.
    pub fn channel_of_event_at(&self, uniqueid: &str, upstream: UpstreamId, read: u64) -> Option<String> {
        self.resolve(uniqueid, Some((upstream, read)))
    }

    /// Hands out the number of a read an upstream link is about to handle: each is larger
    /// than every number before it, so a channel buried with the last number given out
    /// hung up after every event read so far was read.
    pub fn next_read(&self) -> u64 {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1
    }

    fn resolve(&self, uniqueid: &str, event: Option<(UpstreamId, u64)>) -> Option<String> {
        // A uniqueid two upstreams share (no `systemname`) names no one channel: a scope
        // check must not take one box's channel for the other's.
        if let Some((name, live)) = self.names.get(uniqueid).map(|v| v.clone()) {
            let unique = self.get(uniqueid) == Some(live);
            match event {
                None => return unique.then_some(name),
                Some((from, _)) if from == live => return unique.then_some(name),
                // Another box's live channel: the event's own may be among the departed.
                Some(_) => {}
            }
        }
        let (from, read) = event?;
        let gone = self.departed.get(uniqueid)?;
        (gone.upstream == from && read <= gone.read).then_some(gone.name)
    }

    /// The one upstream that has `key` (None when unknown, or when several have it).
    pub fn get(&self, key: &str) -> Option<UpstreamId> {
        self.map
            .get(key)
            .and_then(|v| if v.len() == 1 { Some(v[0]) } else { None })
    }

    /// Every upstream that has `key`.
    pub fn owners(&self, key: &str) -> Vec<UpstreamId> {
        self.map.get(key).map(|v| v.clone()).unwrap_or_default()
    }

    /// Forgets everything an upstream owned (it disconnected; it will be relearned).
    pub fn forget_upstream(&self, upstream: UpstreamId) {
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
    pub fn learn(&self, upstream: UpstreamId, event: &str, msg: &Message) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::action;

    #[test]
    fn the_length_bound_counts_again_only_at_the_cap() {
        let o = Owners::default();
        let add = |k: &str| {
            let fits = o.room_for_one(3);
            if fits {
                o.map.insert(k.to_owned(), vec![UpstreamId(1)]);
            }
            fits
        };
        assert!(add("a") && add("b") && add("c"));
        // Full: the bound reached the cap, the count confirms it.
        assert!(!add("d"));
        o.remove("a");
        o.remove("b");
        // Room again once keys went: the bound is counted again and lets one in.
        assert!(add("e"));
        assert!(add("f"));
        assert!(!add("g"));
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn a_relearn_started_again_is_counted_once() {
        use std::sync::atomic::Ordering::Relaxed;
        let o = Owners::default();
        o.begin_relearn(UpstreamId(1));
        o.begin_relearn(UpstreamId(1));
        o.begin_relearn(UpstreamId(2));
        assert_eq!(o.relearning.load(Relaxed), 2);
        o.end_relearn(UpstreamId(1), false);
        o.end_relearn(UpstreamId(2), true);
        // None in progress: live events skip the relearn map again.
        assert_eq!(o.relearning.load(Relaxed), 0);
    }

    #[test]
    fn events_still_find_a_channel_that_hung_up_and_actions_do_not() {
        let o = Owners::default();
        let ev = |name: &str, chan: &str, uid: &str| action(&[("Event", name), ("Channel", chan), ("Uniqueid", uid)]);
        let (one, two) = (UpstreamId(1), UpstreamId(2));
        let read = o.next_read();
        o.learn(one, "Newchannel", &ev("Newchannel", "SIP/a-1", "u1"));
        o.learn(one, "Hangup", &ev("Hangup", "SIP/a-1", "u1"));
        assert_eq!(o.channel_of("u1"), None, "nothing to act on");
        // An event of that read (or an earlier one) of that upstream still finds it.
        assert_eq!(o.channel_of_event_at("u1", one, read).as_deref(), Some("SIP/a-1"));
        assert_eq!(o.channel_of_event_at("u1", one, read - 1).as_deref(), Some("SIP/a-1"));
        // A later read's event, or another upstream's, does not.
        let later = o.next_read();
        assert_eq!(o.channel_of_event_at("u1", one, later), None);
        assert_eq!(o.channel_of_event_at("u1", two, read), None);
        // Another box has that uniqueid now (no `systemname`): it names no one channel.
        o.learn(two, "Newchannel", &ev("Newchannel", "SIP/b-9", "u1"));
        assert_eq!(o.channel_of_event_at("u1", two, later).as_deref(), Some("SIP/b-9"));
        // An event of the first box is about the first box's channel, not the second's.
        assert_eq!(o.channel_of_event_at("u1", one, read).as_deref(), Some("SIP/a-1"));
        assert_eq!(o.channel_of_event_at("u1", one, later), None);
        assert_eq!(o.channel_of_event_at("never-seen", one, read), None);
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
            UpstreamId(1),
            "Newchannel",
            &ev(&[("Event", "Newchannel"), ("Channel", "SIP/a"), ("Uniqueid", "ua")]),
        );
        o.learn(
            UpstreamId(1),
            "Newchannel",
            &ev(&[("Event", "Newchannel"), ("Channel", "SIP/stale"), ("Uniqueid", "us")]),
        );
        o.begin_relearn(UpstreamId(1));
        // During the relearn: b hangs up before its (stale) list item arrives; c is new.
        o.learn(
            UpstreamId(1),
            "Hangup",
            &ev(&[("Event", "Hangup"), ("Channel", "SIP/b"), ("Uniqueid", "ub")]),
        );
        o.learn(
            UpstreamId(1),
            "Newchannel",
            &ev(&[("Event", "Newchannel"), ("Channel", "SIP/c"), ("Uniqueid", "uc")]),
        );
        o.learn_listed(UpstreamId(1), &chan("SIP/a", "ua"));
        o.learn_listed(UpstreamId(1), &chan("SIP/b", "ub"));
        o.end_relearn(UpstreamId(1), true);
        assert_eq!(o.get("SIP/a"), Some(UpstreamId(1)));
        assert_eq!(
            o.get("SIP/b"),
            None,
            "a list item must not bring back a hung-up channel"
        );
        assert_eq!(
            o.get("SIP/c"),
            Some(UpstreamId(1)),
            "a channel created during the relearn stays"
        );
        assert_eq!(o.get("SIP/stale"), None, "what the list did not confirm goes");
        assert_eq!(o.get("us"), None);
        // An incomplete relearn drops nothing; a list outside a relearn teaches nothing.
        o.begin_relearn(UpstreamId(1));
        o.end_relearn(UpstreamId(1), false);
        assert_eq!(o.get("SIP/a"), Some(UpstreamId(1)));
        o.learn_listed(UpstreamId(1), &chan("SIP/d", "ud"));
        assert_eq!(o.get("SIP/d"), None);
    }

    #[test]
    fn ownership_follows_events() {
        let o = Owners::default();
        let ev = |h: &[(&str, &str)]| action(h);
        o.learn(
            UpstreamId(1),
            "Newchannel",
            &ev(&[("Event", "Newchannel"), ("Channel", "SIP/a-1"), ("Uniqueid", "u1")]),
        );
        assert_eq!(o.get("SIP/a-1"), Some(UpstreamId(1)));
        o.learn(
            UpstreamId(1),
            "Rename",
            &ev(&[
                ("Event", "Rename"),
                ("Channel", "SIP/a-1"),
                ("Newname", "SIP/a-1<MASQ>"),
                ("Uniqueid", "u1"),
            ]),
        );
        assert_eq!(o.get("SIP/a-1"), None);
        assert_eq!(o.get("SIP/a-1<MASQ>"), Some(UpstreamId(1)));
        o.learn(
            UpstreamId(1),
            "Hangup",
            &ev(&[("Event", "Hangup"), ("Channel", "SIP/a-1<MASQ>"), ("Uniqueid", "u1")]),
        );
        assert!(o.is_empty());
        o.learn(
            UpstreamId(3),
            "Link",
            &ev(&[
                ("Event", "Link"),
                ("Channel1", "SIP/b-1"),
                ("Channel2", "SIP/c-2"),
                ("Uniqueid1", "u2"),
                ("Uniqueid2", "u3"),
            ]),
        );
        assert_eq!(o.get("SIP/c-2"), Some(UpstreamId(3)));
        assert_eq!(o.channel_of("u3").as_deref(), Some("SIP/c-2"));
        o.learn(
            UpstreamId(3),
            "Rename",
            &ev(&[
                ("Event", "Rename"),
                ("Oldname", "SIP/b-1"),
                ("Newname", "SIP/b-1<ZOMBIE>"),
                ("Uniqueid", "u2"),
            ]),
        );
        assert_eq!(o.get("SIP/b-1"), None);
        assert_eq!(o.get("SIP/b-1<ZOMBIE>"), Some(UpstreamId(3)));
        o.forget_upstream(UpstreamId(3));
        o.insert("same-name", UpstreamId(4));
        o.insert("same-name", UpstreamId(6));
        assert_eq!(o.get("same-name"), None, "on two boxes: ambiguous");
        assert_eq!(o.owners("same-name"), vec![UpstreamId(4), UpstreamId(6)]);
        o.remove_own("same-name", UpstreamId(6));
        o.learn(
            UpstreamId(5),
            "Hangup",
            &ev(&[("Event", "Hangup"), ("Channel", "same-name")]),
        );
        assert_eq!(o.get("same-name"), Some(UpstreamId(4)), "another box's hangup keeps it");
        o.remove_own("same-name", UpstreamId(4));
        o.insert("x", UpstreamId(2));
        o.insert("y", UpstreamId(1));
        o.forget_upstream(UpstreamId(2));
        assert_eq!(o.len(), 1);
    }
}
