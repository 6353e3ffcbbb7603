//! Shell-style globs (`*`, `?`), ASCII case-insensitive, for action names, commands,
//! channels and queues in the policy. Matching is linear in practice (one backtrack point).

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

/// True when any glob of the list matches.
pub fn any_match(globs: &[Glob], text: &str) -> bool {
    globs.iter().any(|g| g.matches(text))
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
}
