//! Shell-style globs (`*`, `?`), ASCII case-insensitive, for action names, commands,
//! channels and queues in the policy. Matching is linear in practice (one backtrack point).
//!
//! A user's lists are checked on every event a scoped client might receive, so they are
//! compiled once, at configuration load, into one [`GlobSet`] (a `regex::bytes::RegexSet`):
//! matching a whole list is then one pass over the text, with no allocation.

use regex::bytes::{RegexSet, RegexSetBuilder};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<u8>,
    /// Bytes `*` and `?` never match (see [`Glob::channel`]).
    stop: &'static [u8],
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.as_bytes().to_ascii_lowercase(),
            stop: b"",
        }
    }

    /// A glob over channel names, whose wildcards stay within one part of the name: `*`
    /// does not match `/` or `@`, so `Local/*@acme-*` cannot match `Local/1@beta/n@acme-x`
    /// (which Asterisk dials in context `beta`).
    pub fn channel(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.as_bytes().to_ascii_lowercase(),
            stop: b"/@",
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.pattern).unwrap_or("")
    }

    pub fn matches(&self, text: &str) -> bool {
        if !self.stop.is_empty() {
            return self.matches_within_parts(text.as_bytes());
        }
        let (p, t) = (&self.pattern[..], text.as_bytes());
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti].to_ascii_lowercase()) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

impl Glob {
    /// Dynamic programming over (text, pattern): O(len(text) × len(pattern)), whatever the
    /// number of stars, so no input makes it slow.
    fn matches_within_parts(&self, t: &[u8]) -> bool {
        let p = &self.pattern[..];
        // cur[j]: p[..j] matches the text read so far.
        let mut cur = vec![false; p.len() + 1];
        cur[0] = true;
        for j in 1..=p.len() {
            cur[j] = cur[j - 1] && p[j - 1] == b'*';
        }
        let mut next = vec![false; p.len() + 1];
        for &c in t {
            let c = c.to_ascii_lowercase();
            let free = !self.stop.contains(&c);
            next[0] = false;
            for j in 1..=p.len() {
                next[j] = match p[j - 1] {
                    b'*' => next[j - 1] || (cur[j] && free),
                    b'?' => cur[j - 1] && free,
                    pc => cur[j - 1] && pc == c,
                };
            }
            std::mem::swap(&mut cur, &mut next);
        }
        cur[p.len()]
    }
}

impl Glob {
    /// The same language as a regular expression over bytes (ASCII case-insensitive, as
    /// [`Glob::matches`]).
    fn to_regex(&self) -> String {
        let any = if self.stop.is_empty() {
            String::from("(?s:.)")
        } else {
            let stops: String = self.stop.iter().map(|b| format!("\\x{b:02x}")).collect();
            format!("[^{stops}]")
        };
        let mut re = String::from("(?i-u)^");
        for &b in &self.pattern {
            match b {
                b'*' => {
                    re.push_str(&any);
                    re.push('*');
                }
                b'?' => re.push_str(&any),
                b if b.is_ascii_alphanumeric() => re.push(b as char),
                b => re.push_str(&format!("\\x{b:02x}")),
            }
        }
        re.push('$');
        re
    }
}

/// A list of globs, compiled once into one automaton.
#[derive(Debug, Clone, Default)]
pub struct GlobSet {
    globs: Vec<Glob>,
    /// None when the list is empty, or (never in practice) too large to compile: then each
    /// glob is tried in turn.
    set: Option<RegexSet>,
}

impl GlobSet {
    pub fn new(globs: Vec<Glob>) -> GlobSet {
        let set = if globs.is_empty() {
            None
        } else {
            RegexSetBuilder::new(globs.iter().map(Glob::to_regex))
                .unicode(false)
                .build()
                .ok()
        };
        GlobSet { globs, set }
    }

    pub fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    pub fn globs(&self) -> &[Glob] {
        &self.globs
    }

    /// [`GlobSet::is_match`] on text as read from the wire.
    pub fn is_match_bytes(&self, text: &[u8]) -> bool {
        match &self.set {
            Some(set) => set.is_match(text),
            None => std::str::from_utf8(text).is_ok_and(|t| self.globs.iter().any(|g| g.matches(t))),
        }
    }

    /// True when any glob of the list matches.
    pub fn is_match(&self, text: &str) -> bool {
        match &self.set {
            Some(set) => set.is_match(text.as_bytes()),
            None => self.globs.iter().any(|g| g.matches(text)),
        }
    }
}

impl PartialEq for GlobSet {
    fn eq(&self, other: &GlobSet) -> bool {
        self.globs == other.globs
    }
}

impl From<Vec<Glob>> for GlobSet {
    fn from(globs: Vec<Glob>) -> GlobSet {
        GlobSet::new(globs)
    }
}

impl FromIterator<Glob> for GlobSet {
    fn from_iter<I: IntoIterator<Item = Glob>>(iter: I) -> GlobSet {
        GlobSet::new(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(Glob::new("Queue*").matches("queuestatus"));
        assert!(Glob::new("core show *").matches("core show channels"));
        assert!(!Glob::new("core show *").matches("!sh"));
        assert!(Glob::new("PJSIP/acme-*").matches("PJSIP/acme-0001"));
        assert!(!Glob::new("PJSIP/acme-*").matches("PJSIP/other-0001"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("*a*b").matches("xxaxxb"));
        assert!(!Glob::new("*a*b").matches("xxaxxbc"));
        let c = Glob::channel("Local/*@acme-*");
        assert!(c.matches("Local/100@acme-sales-00000001;1"));
        assert!(!c.matches("Local/1@beta/n@acme-x"));
        assert!(!c.matches("Local/1@beta"));
        assert!(Glob::channel("PJSIP/acme-*").matches("pjsip/ACME-0001"));
        assert!(!Glob::channel("PJSIP/acme-*").matches("PJSIP/acme-1/n"));
        assert!(Glob::channel("PJSIP/acme-???").matches("PJSIP/acme-001"));
        let long = "a".repeat(1000);
        assert!(!Glob::channel("*a*a*a*a*a*b").matches(&long));
    }

    #[test]
    fn a_set_matches_as_its_globs() {
        let globs = [
            Glob::channel("Local/*@acme-*"),
            Glob::channel("PJSIP/acme-???"),
            Glob::new("queue*"),
            Glob::new("a.b+c(d)[e]"),
            Glob::new("*"),
        ];
        let texts = [
            "Local/100@acme-sales-00000001;1",
            "Local/1@beta/n@acme-x",
            "PJSIP/ACME-001",
            "PJSIP/acme-1/n",
            "QueueStatus",
            "a.b+c(d)[e]",
            "aXb+c(d)[e]",
            "",
            "\u{e9}t\u{e9}",
        ];
        for i in 0..globs.len() {
            for n in 1..=globs.len() - i {
                let list = globs[i..i + n].to_vec();
                let set = GlobSet::new(list.clone());
                for t in texts {
                    assert_eq!(set.is_match(t), list.iter().any(|g| g.matches(t)), "{list:?} {t}");
                }
            }
        }
        assert!(!GlobSet::default().is_match("x"));
    }
}
