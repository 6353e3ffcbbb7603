//! `$[…]`: Asterisk's expression language, as far as the dialplan the sim runs needs it:
//! integer arithmetic, comparisons, `&` and `|`. Anything it cannot read comes back as the
//! (already substituted) text, which is what Asterisk's parser leaves for a bare word.

use super::MAX_DEPTH;

/// The value of an expression, or the trimmed text when it does not parse.
pub(super) fn evaluate(text: &str) -> String {
    let toks = tokenize(text);
    if toks.is_empty() {
        return String::new();
    }
    let mut p = ExprParser {
        toks: &toks,
        pos: 0,
        depth: 0,
    };
    match p.or() {
        Some(v) if p.pos == toks.len() => v,
        _ => text.trim().to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Op(&'static str),
    Word(String),
}

const OPS: &[&str] = &[
    "!=", "<=", ">=", "==", "|", "&", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "!",
];

fn tokenize(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Tok::Op(op));
            rest = &rest[op.len()..];
            continue;
        }
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            out.push(Tok::Word(q[..end].to_owned()));
            rest = q.get(end + 1..).unwrap_or("");
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || "|&=<>+-*/%()!\"".contains(c))
            .unwrap_or(rest.len());
        let end = end.max(rest.chars().next().map_or(1, char::len_utf8));
        out.push(Tok::Word(rest[..end].to_owned()));
        rest = &rest[end..];
    }
}

struct ExprParser<'t> {
    toks: &'t [Tok],
    pos: usize,
    depth: u32,
}

fn num(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

fn truthy(s: &str) -> bool {
    !s.is_empty() && s != "0"
}

impl ExprParser<'_> {
    fn peek_op(&self) -> Option<&'static str> {
        match self.toks.get(self.pos) {
            Some(Tok::Op(o)) => Some(o),
            _ => None,
        }
    }

    fn or(&mut self) -> Option<String> {
        let mut l = self.and()?;
        while self.peek_op() == Some("|") {
            self.pos += 1;
            let r = self.and()?;
            l = if truthy(&l) { l } else { r };
        }
        Some(l)
    }

    fn and(&mut self) -> Option<String> {
        let mut l = self.cmp()?;
        while self.peek_op() == Some("&") {
            self.pos += 1;
            let r = self.cmp()?;
            l = if truthy(&l) && truthy(&r) { l } else { "0".to_owned() };
        }
        Some(l)
    }

    fn cmp(&mut self) -> Option<String> {
        let mut l = self.add()?;
        while let Some(op @ ("=" | "==" | "!=" | "<" | ">" | "<=" | ">=")) = self.peek_op() {
            self.pos += 1;
            let r = self.add()?;
            let ord = match (num(&l), num(&r)) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => l.cmp(&r),
            };
            let res = match op {
                "=" | "==" => ord.is_eq(),
                "!=" => ord.is_ne(),
                "<" => ord.is_lt(),
                ">" => ord.is_gt(),
                "<=" => ord.is_le(),
                _ => ord.is_ge(),
            };
            l = if res { "1" } else { "0" }.to_owned();
        }
        Some(l)
    }

    fn add(&mut self) -> Option<String> {
        let mut l = self.mul()?;
        while let Some(op @ ("+" | "-")) = self.peek_op() {
            self.pos += 1;
            let r = self.mul()?;
            let (a, b) = (num(&l)?, num(&r)?);
            l = if op == "+" {
                a.checked_add(b)?
            } else {
                a.checked_sub(b)?
            }
            .to_string();
        }
        Some(l)
    }

    fn mul(&mut self) -> Option<String> {
        let mut l = self.unary()?;
        while let Some(op @ ("*" | "/" | "%")) = self.peek_op() {
            self.pos += 1;
            let r = self.unary()?;
            let (a, b) = (num(&l)?, num(&r)?);
            l = match op {
                "*" => a.checked_mul(b)?,
                "/" => a.checked_div(b)?,
                _ => a.checked_rem(b)?,
            }
            .to_string();
        }
        Some(l)
    }

    fn unary(&mut self) -> Option<String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let r = match self.peek_op() {
            Some("-") => {
                self.pos += 1;
                let v = self.unary()?;
                Some(num(&v)?.checked_neg()?.to_string())
            }
            Some("!") => {
                self.pos += 1;
                let v = self.unary()?;
                Some(if truthy(&v) { "0" } else { "1" }.to_owned())
            }
            _ => self.primary(),
        };
        self.depth -= 1;
        r
    }

    fn primary(&mut self) -> Option<String> {
        match self.toks.get(self.pos)? {
            Tok::Word(w) => {
                self.pos += 1;
                Some(w.clone())
            }
            Tok::Op("(") => {
                self.pos += 1;
                let v = self.or()?;
                if self.peek_op() != Some(")") {
                    return None;
                }
                self.pos += 1;
                Some(v)
            }
            Tok::Op(_) => None,
        }
    }
}
