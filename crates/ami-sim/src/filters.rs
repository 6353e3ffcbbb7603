//! Per-session event filters: manager.conf `eventfilter` lines and the `Filter` action.

use crate::events::BusEvent;
use regex::Regex;

#[derive(Debug, Clone)]
enum Rule {
    /// Advanced form `action(include),name(Hangup)`: exact event name.
    Name(String),
    /// Legacy form: a regex over the event's text (`Event: Hangup` also matches
    /// `Event: HangupRequest`, as in transcript 12).
    Regex(Regex),
}

impl Rule {
    fn matches(&self, ev: &BusEvent, text: &str) -> bool {
        match self {
            Rule::Name(n) => ev.name.eq_ignore_ascii_case(n),
            Rule::Regex(r) => r.is_match(text),
        }
    }
}

/// Asterisk's rule: with include filters an event must match one; it must match no
/// exclude filter.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    include: Vec<Rule>,
    exclude: Vec<Rule>,
}

impl Filters {
    /// Filters from a user's manager.conf `eventfilter` entries; entries that do not parse
    /// are skipped (Asterisk logs and ignores them too).
    pub fn from_config(entries: &[String]) -> Filters {
        let mut f = Filters::default();
        for e in entries {
            if f.add_advanced(e).is_none() {
                let _ = f.add_legacy(e);
            }
        }
        f
    }

    fn add_advanced(&mut self, spec: &str) -> Option<()> {
        let mut include = None;
        let mut name = None;
        for part in spec.split(',') {
            let part = part.trim();
            let (key, rest) = part.split_once('(')?;
            let val = rest.strip_suffix(')')?;
            match key.trim() {
                "action" => include = Some(val.eq_ignore_ascii_case("include")),
                "name" => name = Some(val.to_owned()),
                _ => {}
            }
        }
        let rule = Rule::Name(name?);
        if include.unwrap_or(true) {
            self.include.push(rule);
        } else {
            self.exclude.push(rule);
        }
        Some(())
    }

    /// Adds a legacy regex filter (`!` prefix = exclude).
    pub fn add_legacy(&mut self, filter: &str) -> Result<(), regex::Error> {
        let (exclude, pattern) = match filter.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, filter),
        };
        let re = Regex::new(pattern)?;
        if exclude {
            self.exclude.push(Rule::Regex(re));
        } else {
            self.include.push(Rule::Regex(re));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    pub fn pass(&self, ev: &BusEvent) -> bool {
        if self.is_empty() {
            return true;
        }
        let text = String::from_utf8_lossy(&ev.bytes);
        if !self.include.is_empty() && !self.include.iter().any(|r| r.matches(ev, &text)) {
            return false;
        }
        !self.exclude.iter().any(|r| r.matches(ev, &text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(name: &str) -> BusEvent {
        BusEvent {
            classes: 0,
            name: name.into(),
            bytes: Bytes::from(format!("Event: {name}\r\nPrivilege: call,all\r\n\r\n")),
        }
    }

    #[test]
    fn advanced_and_legacy() {
        let f = Filters::from_config(&["action(include),name(Hangup)".into()]);
        assert!(f.pass(&ev("Hangup")));
        assert!(!f.pass(&ev("HangupRequest")));
        let mut f = Filters::default();
        f.add_legacy("Event: Hangup").unwrap();
        assert!(f.pass(&ev("HangupRequest")));
        assert!(!f.pass(&ev("Newchannel")));
        assert!(f.add_legacy("bad(regex").is_err());
        let mut f = Filters::default();
        f.add_legacy("!Event: Newchannel").unwrap();
        assert!(!f.pass(&ev("Newchannel")));
        assert!(f.pass(&ev("Hangup")));
    }
}
