//! How Asterisk reads the dialplan syntax that reaches it through AMI headers: application
//! arguments, `name=value` lists, variable names that are function calls, and which
//! functions and applications reach beyond the channel an action targets.
//!
//! The proxy does not evaluate anything: it reads these strings exactly as Asterisk will, so
//! that what it judges is what Asterisk runs. Where an exact reading would be fragile, the
//! rule refuses instead (deny by default).
//!
//! The reach tables are in `reach`; this module reads the syntax.

mod reach;

pub use reach::{application, function_reach, AppArgs, Assign, Reach, DEFAULT_APPLICATIONS};

/// Whether `s` holds syntax Asterisk's substitution evaluates: `${...}` or `$[...]`.
pub fn has_expression(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && (w[1] == b'{' || w[1] == b'['))
}

pub use ami_proto::app_args::MAX_ARGS;

/// Splits `s` as Asterisk's `AST_STANDARD_APP_ARGS` does
/// ([`ami_proto::app_args::separate_all_args`]): at `delim` outside parentheses, square
/// brackets and double quotes; quotes removed; a backslash makes the next character
/// literal. `None` when the list is longer than [`MAX_ARGS`], where Asterisk stops
/// splitting, or ends in a backslash.
///
/// One difference from Asterisk, kept from the proxy's earlier reading: a last argument
/// made only of double quotes (`a,""`) is dropped, where Asterisk passes it empty. A
/// trailing delimiter (`a,`) still gives the empty last argument.
pub fn separate_args(s: &str, delim: char) -> Option<Vec<String>> {
    let mut args = ami_proto::app_args::separate_all_args(s, delim)?;
    if args.last().is_some_and(String::is_empty) && !s.ends_with(delim) {
        args.pop();
    }
    Some(args)
}

/// A variable reference as Asterisk reads a name (`Getvar`'s `Variable`, the name of an
/// assignment): a name ending in `)` is a dialplan function call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarRef<'a> {
    /// A plain variable: letters, digits, `_` (leading `_`/`__` mark inheritance), with an
    /// optional `:offset[:length]` substring.
    Plain(&'a str),
    /// `NAME(args)`.
    Function { name: &'a str, args: &'a str },
    /// Anything else: refused to restricted users rather than guessed at.
    Other,
}

pub fn var_ref(name: &str) -> VarRef<'_> {
    let name = name.trim();
    if let Some(inner) = name.strip_suffix(')') {
        return match inner.split_once('(') {
            Some((f, args)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                VarRef::Function { name: f, args }
            }
            _ => VarRef::Other,
        };
    }
    let (base, substr) = match name.split_once(':') {
        Some((b, s)) => (b, Some(s)),
        None => (name, None),
    };
    let base_ok = !base.is_empty() && base.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let substr_ok = substr.is_none_or(|s| {
        s.split(':').count() <= 2
            && s.split(':')
                .all(|n| n.strip_prefix('-').unwrap_or(n).bytes().all(|b| b.is_ascii_digit()))
    });
    if base_ok && substr_ok {
        VarRef::Plain(name)
    } else {
        VarRef::Other
    }
}

/// A dialplan location `[[context,]exten,]priority[(args)]` (Gosub, PreDialGoSub): the
/// context it names, if any, and the arguments.
pub fn gosub_location(s: &str) -> (Option<&str>, &str) {
    let (loc, args) = match s.find('(') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let parts: Vec<&str> = loc.split(',').collect();
    let context = (parts.len() >= 3).then(|| parts[0].trim());
    (context, args)
}

/// For a Local channel dial string `Local/exten@context[/options]`, the context.
pub fn local_context(dial: &str) -> Option<&str> {
    let rest = dial
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("Local/"))
        .map(|_| &dial[6..])?;
    let (_, ctx) = rest.split_once('@')?;
    Some(ctx.split('/').next().unwrap_or(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_asterisk() {
        let s = |v: &str| separate_args(v, ',').unwrap();
        assert_eq!(s("a=1,b=2"), ["a=1", "b=2"]);
        assert_eq!(s("FILE(/tmp/x,,,al)=y"), ["FILE(/tmp/x,,,al)=y"]);
        assert_eq!(s("\"a,b\"=1,c"), ["a,b=1", "c"]);
        assert_eq!(s("a\\,b=1"), ["a,b=1"]);
        assert_eq!(s("x=[1,2],y"), ["x=[1,2]", "y"]);
        assert_eq!(s("a,"), ["a", ""]);
        assert_eq!(s(""), Vec::<String>::new());
        // An unbalanced `)` does not go negative.
        assert_eq!(s("a),b"), ["a)", "b"]);
        assert!(separate_args("a=b\\", ',').is_none());
        assert!(separate_args(&"a,".repeat(70), ',').is_none());
        assert_eq!(s(&"a,".repeat(62)).len(), 63);
        // A last argument of quotes alone is dropped; a trailing delimiter is not.
        assert_eq!(s("a,\"\""), ["a"]);
        assert_eq!(s("\"\""), Vec::<String>::new());
    }

    #[test]
    fn variable_references() {
        assert_eq!(var_ref("FOO"), VarRef::Plain("FOO"));
        assert_eq!(var_ref("__FOO_1"), VarRef::Plain("__FOO_1"));
        assert_eq!(var_ref("EXTEN:1"), VarRef::Plain("EXTEN:1"));
        assert_eq!(var_ref("EXTEN:-4:2"), VarRef::Plain("EXTEN:-4:2"));
        assert_eq!(
            var_ref("SHELL(id)"),
            VarRef::Function {
                name: "SHELL",
                args: "id"
            }
        );
        assert_eq!(
            var_ref(" FILE(/etc/passwd) "),
            VarRef::Function {
                name: "FILE",
                args: "/etc/passwd"
            }
        );
        assert_eq!(var_ref("${X}"), VarRef::Other);
        assert_eq!(var_ref("A B"), VarRef::Other);
        assert_eq!(var_ref("(x)"), VarRef::Other);
        assert_eq!(var_ref(""), VarRef::Other);
    }

    #[test]
    fn expressions_functions_and_apps() {
        assert!(has_expression("a${SHELL(id)}"));
        assert!(has_expression("$[1+1]"));
        assert!(!has_expression("costs $5 {x} [y]"));
        assert_eq!(function_reach("SHELL"), Reach::System);
        assert_eq!(function_reach("EVAL"), Reach::System);
        assert_eq!(function_reach("shell"), Reach::System);
        assert_eq!(function_reach("IMPORT"), Reach::System);
        assert_eq!(function_reach("CUT"), Reach::System);
        assert_eq!(function_reach("PUSH"), Reach::System);
        assert_eq!(function_reach("CHANNEL"), Reach::Shared);
        assert_eq!(function_reach("CHANNELS"), Reach::Shared);
        assert_eq!(function_reach("CALLERID"), Reach::Own);
        assert_eq!(function_reach("NO_SUCH_FUNC"), Reach::System);
        assert_eq!(application("system").0, Reach::System);
        assert_eq!(application("TryExec").0, Reach::System);
        assert_eq!(application("chanspy").0, Reach::Shared);
        assert_eq!(application("wait"), (Reach::Own, AppArgs::PLAIN));
        assert_eq!(application("SendDTMF").1.channel, Some(3));
        for app in DEFAULT_APPLICATIONS {
            assert_eq!(application(app).0, Reach::Own, "{app}");
        }
    }

    #[test]
    fn locations() {
        assert_eq!(gosub_location("ctx,s,1(a,b)"), (Some("ctx"), "(a,b)"));
        assert_eq!(gosub_location("s,1"), (None, ""));
        assert_eq!(local_context("Local/100@acme/n"), Some("acme"));
        assert_eq!(local_context("local/100@acme"), Some("acme"));
        assert_eq!(local_context("PJSIP/100"), None);
    }
}
