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
}

impl EventFilter {
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
        })
    }

    /// The advanced form: `criteria` like `action(exclude),header(Channel),method(starts_with)`.
    pub fn advanced(criteria: &str, value: &str) -> Result<EventFilter, String> {
        let mut f = EventFilter {
            exclude: false,
            name: None,
            header: None,
            method: Method::None,
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
        if self.is_empty() {
            return true;
        }
        let event = ev.get_bytes("Event");
        (self.include.is_empty() || self.include.iter().any(|f| f.matches(ev, event)))
            && !self.exclude.iter().any(|f| f.matches(ev, event))
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
