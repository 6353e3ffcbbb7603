//! Asterisk's permission classes, as a bit set, and the class table of actions.
//!
//! The proxy logs in to each upstream with one powerful account, so it must enforce the
//! classes itself, with Asterisk's rules: an action is allowed when the user's write classes
//! share any class with the action's; an event is delivered when the user's read classes hold
//! all of the event's.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Classes(u32);

/// Asterisk's class names, in the bit order used here.
const NAMES: [&str; 19] = [
    "system",
    "call",
    "log",
    "verbose",
    "command",
    "agent",
    "user",
    "config",
    "dtmf",
    "reporting",
    "cdr",
    "dialplan",
    "originate",
    "agi",
    "cc",
    "aoc",
    "test",
    "security",
    "message",
];

impl Classes {
    pub const NONE: Classes = Classes(0);
    pub const ALL: Classes = Classes((1 << NAMES.len()) - 1);

    pub fn named(name: &str) -> Option<Classes> {
        if name.eq_ignore_ascii_case("all") {
            return Some(Classes::ALL);
        }
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| Classes(1 << i))
    }

    pub const fn bit(i: usize) -> Classes {
        Classes(1 << i)
    }

    /// Parses a comma list (`call,system`); unknown names are reported.
    pub fn parse(list: &str) -> Result<Classes, String> {
        let mut c = Classes::NONE;
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            c = c | Classes::named(part).ok_or_else(|| format!("unknown permission class `{part}`"))?;
        }
        Ok(c)
    }

    /// Parses an event's `Privilege:` header. Asterisk renders an event's classes followed by
    /// `all` (`call,all`), which is not a class of the event, so `all` and unknown names are
    /// ignored here.
    pub fn parse_lenient(list: &str) -> Classes {
        list.split(',')
            .map(str::trim)
            .filter(|p| !p.eq_ignore_ascii_case("all"))
            .filter_map(Classes::named)
            .fold(Classes::NONE, |a, b| a | b)
    }

    /// From Asterisk's numeric event mask (`EVENT_FLAG_*` bits; bit 14, hookresponse, has no
    /// name here).
    pub fn from_asterisk_bits(bits: u32) -> Classes {
        // Asterisk's bits follow NAMES, with its unnamed hookresponse flag at bit 14.
        let asterisk_bit = |i: usize| if i < 14 { i } else { i + 1 };
        (0..NAMES.len())
            .filter(|&i| bits & (1 << asterisk_bit(i)) != 0)
            .fold(Classes::NONE, |a, i| a | Classes::bit(i))
    }

    pub fn intersects(self, other: Classes) -> bool {
        self.0 & other.0 != 0
    }

    pub fn contains(self, other: Classes) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Classes {
    type Output = Classes;
    fn bitor(self, o: Classes) -> Classes {
        Classes(self.0 | o.0)
    }
}

impl fmt::Debug for Classes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Classes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Classes::ALL {
            return f.write_str("all");
        }
        let names: Vec<&str> = NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// What an action needs.
pub enum Need {
    /// Every logged-in user may send it.
    Nothing,
    /// The user's write classes must share one of these.
    Any(Classes),
}

/// Whether the action is one the proxy knows (used to bound metric labels).
pub fn is_known(action: &str) -> bool {
    crate::spec::action(action).is_some()
}

/// The write classes of an action, exactly as Asterisk declares them (the audit table in
/// [`crate::table`], checked against Asterisk's reference). Unknown actions need
/// `system`: the proxy cannot know what they do, so only trusted users may pass them on.
pub fn action_needs(action: &str) -> Need {
    match crate::spec::action(action) {
        Some(spec) if spec.privilege.is_empty() => Need::Nothing,
        Some(spec) => Need::Any(Classes::parse_lenient(spec.privilege)),
        None => Need::Any(Classes::parse_lenient("system")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_rules() {
        let rw = Classes::parse("call, system").unwrap();
        assert!(rw.contains(Classes::parse_lenient("call")));
        assert!(rw.contains(Classes::parse_lenient("call,all")));
        assert!(!rw.contains(Classes::parse_lenient("security,all")));
        assert!(Classes::ALL.contains(Classes::parse_lenient("security,all")));
        assert!(Classes::parse("bogus").is_err());
        assert_eq!(Classes::parse("all").unwrap(), Classes::ALL);
        assert_eq!(format!("{}", Classes::parse("call,system").unwrap()), "system,call");
        match action_needs("Originate") {
            Need::Any(c) => assert!(!rw.intersects(c)),
            Need::Nothing => panic!("originate needs a class"),
        }
        match action_needs("hangup") {
            Need::Any(c) => assert!(rw.intersects(c)),
            Need::Nothing => panic!(),
        }
        assert!(matches!(action_needs("PING"), Need::Nothing));
        assert_eq!(
            Classes::from_asterisk_bits(1 | 2),
            Classes::parse("system,call").unwrap()
        );
        assert_eq!(Classes::from_asterisk_bits(1 << 15), Classes::parse("cc").unwrap());
        assert_eq!(Classes::from_asterisk_bits(1 << 19), Classes::parse("message").unwrap());
        assert_eq!(Classes::from_asterisk_bits(1 << 14), Classes::NONE);
    }
}
