//! Shell-style globs (`*`, `?`), ASCII case-insensitive, for action names, commands,
//! channels and queues in the policy. Matching is linear in practice (one backtrack point).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<u8>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.as_bytes().to_ascii_lowercase(),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.pattern).unwrap_or("")
    }

    pub fn matches(&self, text: &str) -> bool {
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
    }
}
