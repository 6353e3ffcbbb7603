//! Asterisk's permission classes (`read`/`write` in manager.conf, `Privilege:` on events).

/// Class names in Asterisk's bit order (`main/manager.c` `perms[]`).
const CLASSES: &[(&str, u32)] = &[
    ("system", 1 << 0),
    ("call", 1 << 1),
    ("log", 1 << 2),
    ("verbose", 1 << 3),
    ("command", 1 << 4),
    ("agent", 1 << 5),
    ("user", 1 << 6),
    ("config", 1 << 7),
    ("dtmf", 1 << 8),
    ("reporting", 1 << 9),
    ("cdr", 1 << 10),
    ("dialplan", 1 << 11),
    ("originate", 1 << 12),
    ("agi", 1 << 13),
    ("cc", 1 << 14),
    ("aoc", 1 << 15),
    ("test", 1 << 16),
    ("security", 1 << 17),
    ("message", 1 << 18),
];

pub const SYSTEM: u32 = 1;
#[cfg(test)]
pub const CALL: u32 = 1 << 1;
/// Every class (`all`).
pub const ALL: u32 = (1 << 19) - 1;

/// Parses a comma list of class names (`call,system`, `all`); unknown names are ignored,
/// as Asterisk does.
pub fn parse_classes(list: &str) -> u32 {
    list.split(',')
        .map(str::trim)
        .map(|name| {
            if name.eq_ignore_ascii_case("all") {
                ALL
            } else {
                CLASSES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, b)| *b)
                    .unwrap_or(0)
            }
        })
        .fold(0, |a, b| a | b)
}

/// The class bits an event's `Privilege:` value names (`all` itself adds nothing: an event
/// marked `call,all` is a call event).
pub fn event_classes(privilege: &str) -> u32 {
    privilege
        .split(',')
        .map(str::trim)
        .filter(|n| !n.eq_ignore_ascii_case("all"))
        .map(parse_classes)
        .fold(0, |a, b| a | b)
}

/// The mask an `Events:` header (Login) or `EventMask:` (Events action) asks for:
/// on/yes/true → everything, off/no/false → nothing, else a class list.
pub fn parse_event_mask(value: &str) -> u32 {
    let v = value.trim();
    if ["on", "yes", "true"].iter().any(|x| v.eq_ignore_ascii_case(x)) {
        ALL
    } else if ["off", "no", "false"].iter().any(|x| v.eq_ignore_ascii_case(x)) {
        0
    } else {
        parse_classes(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(parse_classes("call,system"), CALL | SYSTEM);
        assert_eq!(parse_classes("all"), ALL);
        assert_eq!(parse_classes(""), 0);
        assert_eq!(event_classes("call,all"), CALL);
        assert_eq!(parse_event_mask("bogus"), 0);
        assert_eq!(parse_event_mask("on"), ALL);
    }
}
