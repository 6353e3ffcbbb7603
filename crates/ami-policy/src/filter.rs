//! Asterisk's event filters, both forms, with Asterisk's semantics: with no filter every
//! event passes; with include filters an event must match one of them; then any matching
//! exclude filter drops it.
//!
//! - Legacy: a regular expression over the whole event text; `!` in front excludes.
//!   (POSIX regexes as Asterisk compiles them let `.` match a line break, so `(?s)` here.)
//! - Advanced: `action(include|exclude),name(Event),header(Key),method(regex|exact|
//!   starts_with|ends_with|contains|none) = value`, optionally wrapped in `eventfilter(...)`,
//!   as in manager.conf; or as the Filter action's `MatchCriteria` plus `Filter` value.

use ami_proto::Message;
use regex::bytes::Regex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Filters a [`FilterMemo`] remembers at most: the first distinct configured filter texts.
pub const MEMO_SLOTS: usize = 64;

/// The configured filter texts that have a memo slot, in slot order. Process-wide and never
/// reassigned, so a slot means the same filter before and after a configuration reload (an
/// event already in flight keeps what it learnt).
static MEMO_TEXTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The memo slot of a configured filter text, given on first sight; None once every slot is
/// taken.
fn memo_slot(text: &str) -> Option<u8> {
    let mut texts = MEMO_TEXTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = texts.iter().position(|t| t == text) {
        return u8::try_from(i).ok();
    }
    if texts.len() >= MEMO_SLOTS {
        return None;
    }
    texts.push(text.to_owned());
    u8::try_from(texts.len() - 1).ok()
}

/// What one event's filters came to, shared by every client that judges it: users whose
/// configured filters are the same text (a hundred tenant dashboards with one filter list)
/// judge each filter once per event, not once per client. A filter's result depends only on
/// the event, so whoever judges it first may write it for all.
#[derive(Debug, Default)]
pub struct FilterMemo {
    known: AtomicU64,
    matched: AtomicU64,
}

#[derive(Debug, Clone)]
enum Method {
    None,
    Regex(Regex),
    Exact(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
}

#[derive(Debug, Clone)]
pub struct EventFilter {
    exclude: bool,
    name: Option<String>,
    header: Option<String>,
    method: Method,
    /// Its slot in an event's [`FilterMemo`] (configured filters only).
    memo: Option<u8>,
}

impl EventFilter {
    /// A filter of the configuration ([`EventFilter::parse`]), remembered per event under its
    /// text: every user configured with the same text shares what one of them judged.
    pub fn parse_configured(text: &str) -> Result<EventFilter, String> {
        let mut f = Self::parse(text)?;
        f.memo = memo_slot(text.trim());
        Ok(f)
    }

    /// A filter in manager.conf's text form (legacy or advanced).
    pub fn parse(text: &str) -> Result<EventFilter, String> {
        let t = text.trim();
        let inner = t.strip_prefix("eventfilter").map(str::trim_start);
        let (criteria, value) = match inner {
            Some(rest) if rest.starts_with('(') => split_wrapped(rest)?,
            _ if looks_advanced(t) => match t.find('=') {
                Some(eq) => (&t[..eq], t[eq + 1..].trim()),
                None => (t, ""),
            },
            _ => return Self::legacy(t),
        };
        Self::advanced(criteria.trim(), value)
    }

    /// The legacy form: a regex, `!` in front to exclude.
    pub fn legacy(text: &str) -> Result<EventFilter, String> {
        let (exclude, pattern) = match text.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, text),
        };
        if pattern.is_empty() {
            return Err("empty filter".into());
        }
        let re = Regex::new(&format!("(?s){pattern}")).map_err(|e| e.to_string())?;
        Ok(EventFilter {
            exclude,
            name: None,
            header: None,
            method: Method::Regex(re),
            memo: None,
        })
    }

    /// The advanced form: `criteria` like `action(exclude),header(Channel),method(starts_with)`.
    pub fn advanced(criteria: &str, value: &str) -> Result<EventFilter, String> {
        let mut f = EventFilter {
            exclude: false,
            name: None,
            header: None,
            method: Method::None,
            memo: None,
        };
        let mut method = "none".to_string();
        for part in criteria.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, arg) = part
                .strip_suffix(')')
                .and_then(|p| p.split_once('('))
                .ok_or_else(|| format!("`{part}` is not key(value)"))?;
            match key.trim() {
                "action" => {
                    f.exclude = match arg {
                        "include" => false,
                        "exclude" => true,
                        other => return Err(format!("action({other}) is not include or exclude")),
                    }
                }
                "name" => f.name = Some(arg.to_owned()),
                "header" => f.header = Some(arg.to_owned()),
                "method" => method = arg.to_owned(),
                other => return Err(format!("unknown criterion `{other}`")),
            }
        }
        let v = value.to_owned();
        f.method = match method.as_str() {
            "none" => Method::None,
            "regex" => Method::Regex(Regex::new(&format!("(?s){value}")).map_err(|e| e.to_string())?),
            "exact" => Method::Exact(v),
            "starts_with" => Method::StartsWith(v),
            "ends_with" => Method::EndsWith(v),
            "contains" => Method::Contains(v),
            other => {
                return Err(format!(
                    "method({other}) is not one of regex, exact, starts_with, ends_with, contains, none"
                ))
            }
        };
        Ok(f)
    }

    pub fn is_exclude(&self) -> bool {
        self.exclude
    }

    /// [`EventFilter::matches`], from the event's memo when this filter has a slot there.
    fn matches_memo(&self, ev: &Message, event: Option<&[u8]>, memo: Option<&FilterMemo>) -> bool {
        let (Some(slot), Some(memo)) = (self.memo, memo) else {
            return self.matches(ev, event);
        };
        let bit = 1u64 << slot;
        // `matched` is written before `known`: whoever sees the bit known sees its result.
        if memo.known.load(Ordering::Acquire) & bit != 0 {
            return memo.matched.load(Ordering::Acquire) & bit != 0;
        }
        let m = self.matches(ev, event);
        if m {
            memo.matched.fetch_or(bit, Ordering::Release);
        }
        memo.known.fetch_or(bit, Ordering::Release);
        m
    }

    /// Matches on the raw bytes: no copy, no UTF-8 check per event and client.
    /// `event` is the event's `Event:` value, read once for every filter.
    fn matches(&self, ev: &Message, event: Option<&[u8]>) -> bool {
        if let Some(n) = &self.name {
            // Event names are matched exactly (case-sensitive), as Asterisk does.
            if event != Some(n.as_bytes()) {
                return false;
            }
        }
        let data: &[u8] = match &self.header {
            Some(h) => match ev.get_bytes(h) {
                Some(v) => v,
                None => return false,
            },
            None => ev.as_bytes(),
        };
        match &self.method {
            Method::None => true,
            Method::Regex(r) => r.is_match(data),
            Method::Exact(v) => data == v.as_bytes(),
            Method::StartsWith(v) => data.starts_with(v.as_bytes()),
            Method::EndsWith(v) => data.ends_with(v.as_bytes()),
            Method::Contains(v) => memchr::memmem::find(data, v.as_bytes()).is_some(),
        }
    }
}

fn looks_advanced(t: &str) -> bool {
    ["action(", "name(", "header(", "method("]
        .iter()
        .any(|k| t.starts_with(k))
}

/// `(criteria) = value` → (criteria, value).
fn split_wrapped(rest: &str) -> Result<(&str, &str), String> {
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let criteria = &rest[1..i];
                    let after = rest[i + 1..].trim_start();
                    let value = after.strip_prefix('=').map(str::trim).unwrap_or("");
                    return Ok((criteria, value));
                }
            }
            _ => {}
        }
    }
    Err("unbalanced parentheses".into())
}

/// A list of filters, applied as Asterisk does.
#[derive(Debug, Clone, Default)]
pub struct FilterSet {
    include: Vec<EventFilter>,
    exclude: Vec<EventFilter>,
}

impl FilterSet {
    pub fn add(&mut self, f: EventFilter) {
        if f.exclude {
            self.exclude.push(f);
        } else {
            self.include.push(f);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    pub fn len(&self) -> usize {
        self.include.len() + self.exclude.len()
    }

    pub fn allows(&self, ev: &Message) -> bool {
        self.allows_memo(ev, None)
    }

    /// [`FilterSet::allows`], sharing `memo` (the event's) with every other client that
    /// judges the same event.
    pub fn allows_memo(&self, ev: &Message, memo: Option<&FilterMemo>) -> bool {
        if self.is_empty() {
            return true;
        }
        let event = ev.get_bytes("Event");
        (self.include.is_empty() || self.include.iter().any(|f| f.matches_memo(ev, event, memo)))
            && !self.exclude.iter().any(|f| f.matches_memo(ev, event, memo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::MessageBuilder;

    fn ev(name: &str, chan: &str) -> Message {
        MessageBuilder::event(name)
            .header("Privilege", "call,all")
            .header("Channel", chan)
            .build()
    }

    fn set(filters: &[&str]) -> FilterSet {
        let mut s = FilterSet::default();
        for f in filters {
            s.add(EventFilter::parse(f).unwrap());
        }
        s
    }

    #[test]
    fn a_memo_judges_each_configured_filter_once_for_everyone() {
        let texts = ["Event: Newchannel", "!Channel: DAHDI/", "action(exclude),name(VarSet)"];
        let configured = |texts: &[&str]| {
            let mut s = FilterSet::default();
            for t in texts {
                s.add(EventFilter::parse_configured(t).unwrap());
            }
            s
        };
        // Two users with the same texts share slots; a session's own filter has none.
        let (a, b) = (configured(&texts), configured(&texts));
        assert_eq!(a.include[0].memo, b.include[0].memo);
        assert!(a.include[0].memo.is_some());
        assert_ne!(a.include[0].memo, a.exclude[0].memo);
        assert!(EventFilter::parse(texts[0]).unwrap().memo.is_none());
        for (name, chan) in [
            ("Newchannel", "PJSIP/1"),
            ("Newchannel", "DAHDI/1"),
            ("Hangup", "PJSIP/1"),
        ] {
            let e = ev(name, chan);
            let memo = FilterMemo::default();
            let first = a.allows_memo(&e, Some(&memo));
            assert_eq!(first, a.allows(&e), "{name} {chan}");
            // The second user reads what the first judged, and comes to the same.
            assert_eq!(b.allows_memo(&e, Some(&memo)), first);
            // A set with other filters, sharing one slot, still judges its own.
            let c = configured(&["Event: Newchannel"]);
            assert_eq!(c.allows_memo(&e, Some(&memo)), c.allows(&e));
        }
        // The memo holds what was judged: a filter judged false stays false for all.
        let e = ev("Hangup", "PJSIP/1");
        let memo = FilterMemo::default();
        assert!(!a.allows_memo(&e, Some(&memo)));
        assert!(!b.allows_memo(&e, Some(&memo)));
    }

    #[test]
    fn no_filter_passes_everything() {
        assert!(set(&[]).allows(&ev("Newchannel", "PJSIP/a")));
    }

    #[test]
    fn legacy_include_and_exclude() {
        let s = set(&["Event: Newchannel", "!Channel: DAHDI/"]);
        assert!(s.allows(&ev("Newchannel", "PJSIP/1")));
        assert!(!s.allows(&ev("Newchannel", "DAHDI/1")));
        assert!(!s.allows(&ev("Hangup", "PJSIP/1")));
        // Exclude only: everything else passes.
        let s = set(&["!Channel: DAHDI/"]);
        assert!(s.allows(&ev("Hangup", "PJSIP/1")));
        assert!(!s.allows(&ev("Hangup", "DAHDI/1")));
        // `.` crosses lines, as with Asterisk's POSIX regexes.
        let s = set(&["Event: Newchannel.*Channel: PJSIP/"]);
        assert!(s.allows(&ev("Newchannel", "PJSIP/1")));
        assert!(!s.allows(&ev("Newchannel", "SIP/1")));
    }

    #[test]
    fn advanced_forms_from_the_asterisk_docs() {
        let s = set(&[
            "eventfilter(action(include),name(Newchannel)) =",
            "eventfilter(action(include),name(Hangup)) =",
            "eventfilter(action(exclude),header(Channel),method(starts_with)) = Local/",
        ]);
        assert!(s.allows(&ev("Newchannel", "PJSIP/1")));
        assert!(s.allows(&ev("Hangup", "PJSIP/1")));
        assert!(!s.allows(&ev("Hangup", "Local/1@x")));
        assert!(!s.allows(&ev("VarSet", "PJSIP/1")));
        // Names are case-sensitive.
        assert!(!set(&["name(newchannel)"]).allows(&ev("Newchannel", "x")));
        let s = set(&["header(Channel),method(regex) = (PJ)?SIP/(james|jim|john)-"]);
        assert!(s.allows(&ev("Newchannel", "PJSIP/jim-0001")));
        assert!(s.allows(&ev("Newchannel", "SIP/john-0001")));
        assert!(!s.allows(&ev("Newchannel", "PJSIP/bob-0001")));
        // header() without method: the header must be present.
        let s = set(&["header(Queue)"]);
        assert!(!s.allows(&ev("Newchannel", "x")));
        for (m, v, want) in [
            ("exact", "PJSIP/a", true),
            ("ends_with", "/a", true),
            ("contains", "SIP", true),
            ("exact", "PJSIP", false),
        ] {
            let s = set(&[&format!("header(Channel),method({m}) = {v}")]);
            assert_eq!(s.allows(&ev("X", "PJSIP/a")), want, "{m} {v}");
        }
    }

    #[test]
    fn bad_filters_are_errors() {
        assert!(EventFilter::parse("bad(regex").is_err());
        assert!(EventFilter::parse("action(maybe),name(X)").is_err());
        assert!(EventFilter::parse("method(fuzzy) = x").is_err());
        assert!(EventFilter::parse("eventfilter(name(X)").is_err());
    }
}
