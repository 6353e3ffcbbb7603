//! Asterisk's argument splitting: `__ast_app_separate_args` (`main/app.c`), which
//! `AST_STANDARD_APP_ARGS` (quotes and backslashes removed) and `AST_NONSTANDARD_RAW_ARGS`
//! (kept) call for every application, dialplan function and list-valued AMI header.
//!
//! It lives here because two crates must cut arguments exactly where Asterisk does: the
//! policy, so that what it judges is what Asterisk will run, and the simulator, so that
//! what it runs is what Asterisk would. One reading keeps the two from drifting apart.
//! Pure text in, text out: no I/O.

/// The most arguments [`separate_all_args`] accepts. Asterisk's argument arrays for lists
/// of any length hold 64 elements and the last one takes the unsplit rest, so a list that
/// reaches a 64th element is not split the way it reads.
pub const MAX_ARGS: usize = 63;

/// What one split produced.
struct Split {
    args: Vec<String>,
    /// The text ended in a backslash that had nothing left to escape. Asterisk's own
    /// loop steps past the end of its buffer there.
    dangling_escape: bool,
}

/// The split itself. At most `max` elements; the last one is the rest of the text as it
/// stands, not parsed. Nesting and quoting carry over from one argument to the next, as in
/// Asterisk (the counters live outside its per-argument loop).
fn split(buf: &str, delim: char, remove_chars: bool, max: usize) -> Split {
    let mut out = Split {
        args: Vec::new(),
        dangling_escape: false,
    };
    if max == 0 || buf.is_empty() {
        return out;
    }
    let (mut paren, mut bracket, mut quote) = (0u32, 0u32, false);
    let mut cur = String::new();
    let mut chars = buf.chars();
    while out.args.len() + 1 < max {
        let Some(c) = chars.next() else {
            // The text ends the current argument, empty after a trailing delimiter.
            out.args.push(cur);
            return out;
        };
        match c {
            '(' => {
                paren += 1;
                cur.push(c);
            }
            ')' => {
                // An unbalanced `)` does not go negative.
                paren = paren.saturating_sub(1);
                cur.push(c);
            }
            '[' => {
                bracket += 1;
                cur.push(c);
            }
            ']' => {
                bracket = bracket.saturating_sub(1);
                cur.push(c);
            }
            '"' if delim != '"' => {
                quote = !quote;
                if !remove_chars {
                    cur.push(c);
                }
            }
            '\\' => {
                if !remove_chars {
                    cur.push(c);
                }
                // The next character is taken literally.
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => out.dangling_escape = true,
                }
            }
            c if c == delim && paren == 0 && bracket == 0 && !quote => {
                out.args.push(std::mem::take(&mut cur));
            }
            c => cur.push(c),
        }
    }
    // The last element: the rest, unparsed (empty after a trailing delimiter).
    out.args.push(chars.as_str().to_owned());
    out
}

/// Splits `buf` as `__ast_app_separate_args(buf, delim, remove_chars, array, max)` does:
/// at `delim` outside parentheses, square brackets and double quotes. With
/// `remove_chars` the quotes go and a backslash makes the next character literal;
/// without it both stay, the escaped character still taken literally. At most `max`
/// parts: the last one is the rest of the text, unparsed. A trailing delimiter gives a
/// last, empty part; an empty text gives none. A trailing backslash is dropped, never
/// read past.
///
/// This is the reading of a PBX that runs what it is given (the simulator).
pub fn separate_args(buf: &str, delim: char, remove_chars: bool, max: usize) -> Vec<String> {
    split(buf, delim, remove_chars, max).args
}

/// Splits `buf` as `AST_STANDARD_APP_ARGS` does into one of Asterisk's 64-element arrays,
/// but only when every argument was really split: `None` when the list reaches more than
/// [`MAX_ARGS`] elements (the last would be the unparsed rest) or ends in a backslash
/// (where Asterisk reads past its buffer).
///
/// This is the reading of a judge that must not guess (the policy): where the split would
/// not be exact, the caller refuses.
pub fn separate_all_args(buf: &str, delim: char) -> Option<Vec<String>> {
    let Split { args, dangling_escape } = split(buf, delim, true, MAX_ARGS + 1);
    (args.len() <= MAX_ARGS && !dangling_escape).then_some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn splits_like_asterisk() {
        assert_eq!(separate_args("", ',', true, 64), Vec::<String>::new());
        assert_eq!(separate_args("a,b", ',', true, 64), s(&["a", "b"]));
        assert_eq!(separate_args("a,b,", ',', true, 64), s(&["a", "b", ""]));
        assert_eq!(separate_args(",", ',', true, 64), s(&["", ""]));
        assert_eq!(separate_args("DB(a,b)=1,X=2", ',', true, 64), s(&["DB(a,b)=1", "X=2"]));
        assert_eq!(separate_args("A=[1,2],B=3", ',', true, 64), s(&["A=[1,2]", "B=3"]));
        assert_eq!(separate_args(r#"A="x,y",B=z"#, ',', true, 64), s(&["A=x,y", "B=z"]));
        assert_eq!(
            separate_args(r#"A="x,y",B=z"#, ',', false, 64),
            s(&[r#"A="x,y""#, "B=z"])
        );
        assert_eq!(separate_args(r"A=\,x,B", ',', true, 64), s(&["A=,x", "B"]));
        assert_eq!(separate_args(r"A=\,x,B", ',', false, 64), s(&[r"A=\,x", "B"]));
        // A lone closing parenthesis does not go negative.
        assert_eq!(separate_args("a),b", ',', true, 64), s(&["a)", "b"]));
        // An unclosed parenthesis swallows the rest.
        assert_eq!(separate_args("SHELL(id,x=1", ',', true, 64), s(&["SHELL(id,x=1"]));
        // The last part is the unparsed rest.
        assert_eq!(separate_args(r#"a,b,"c",d"#, ',', true, 3), s(&["a", "b", r#""c",d"#]));
        assert_eq!(separate_args("a,b", ',', true, 1), s(&["a,b"]));
        // A trailing backslash is dropped, never read past.
        assert_eq!(separate_args("a\\", ',', true, 64), s(&["a"]));
        let many: String = (0..70).map(|i| format!("V{i}=x")).collect::<Vec<_>>().join(",");
        let parts = separate_args(&many, ',', true, 64);
        assert_eq!(parts.len(), 64);
        assert!(parts[63].starts_with("V63=x,V64=x"));
    }

    #[test]
    fn all_args_or_none() {
        let s = |v: &str| separate_all_args(v, ',').unwrap();
        assert_eq!(s("a=1,\"b,c\"=2,d\\,e"), ["a=1", "b,c=2", "d,e"]);
        assert_eq!(s(""), Vec::<String>::new());
        // Unlike the policy's reading, Asterisk keeps an argument of quotes alone.
        assert_eq!(s("a,\"\""), ["a", ""]);
        assert!(separate_all_args("a=b\\", ',').is_none());
        // 62 delimiters: 63 arguments, all split. 63: the 64th would be the unparsed rest.
        assert_eq!(s(&"a,".repeat(62)).len(), MAX_ARGS);
        assert!(separate_all_args(&"a,".repeat(63), ',').is_none());
        assert!(separate_all_args(&"a,".repeat(70), ',').is_none());
    }
}
