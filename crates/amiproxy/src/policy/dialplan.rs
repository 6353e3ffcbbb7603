//! How Asterisk reads the dialplan syntax that reaches it through AMI headers: application
//! arguments, `name=value` lists, variable names that are function calls, and which
//! functions and applications reach beyond the channel an action targets.
//!
//! The proxy does not evaluate anything: it reads these strings exactly as Asterisk will, so
//! that what it judges is what Asterisk runs. Where an exact reading would be fragile, the
//! rule refuses instead (deny by default).

/// How far a dialplan function or application reaches, for the users who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Computes on its arguments, or reads and writes only the channel the action targets.
    Own,
    /// Reads or writes other channels, queues, conferences, global variables, device or
    /// extension states, other contexts: other tenants' objects. Refused to scoped users.
    Shared,
    /// Runs commands, reads or writes files, AstDB, the configuration or the environment,
    /// reaches the network, or evaluates its arguments as dialplan again: needs `system`.
    System,
}

/// Dialplan functions by reach. Functions not named here reach [`Reach::System`]: the proxy
/// cannot know what a module's function does, so only trusted users may call it.
const FUNCTIONS: &[(Reach, &[&str])] = &[
    (
        Reach::Own,
        &[
            "ABS",
            "AES_DECRYPT",
            "AES_ENCRYPT",
            "ARRAY",
            "BASE64_DECODE",
            "BASE64_ENCODE",
            "BASENAME",
            "CALLCOMPLETION",
            "CALLERID",
            "CDR",
            "CDR_PROP",
            "CHANNEL",
            "CONFBRIDGE",
            "CONNECTEDLINE",
            "CSV_QUOTE",
            "CUT",
            "DEC",
            "DIGIT_SUM",
            "DIRNAME",
            "EXISTS",
            "FAXOPT",
            "FEATURE",
            "FEATUREMAP",
            "FIELDNUM",
            "FIELDQTY",
            "FILTER",
            "FRAME_DROP",
            "FRAME_TRACE",
            "HANGUPCAUSE",
            "HANGUPCAUSE_KEYS",
            "HASH",
            "HASHKEYS",
            "HOLD_INTERCEPT",
            "ICONV",
            "IF",
            "IFTIME",
            "INC",
            "ISNULL",
            "JITTERBUFFER",
            "JSON_DECODE",
            "KEYPADHASH",
            "LEN",
            "LISTFILTER",
            "LOCAL",
            "LOCAL_PEEK",
            "LOG_GROUP",
            "LTRIM",
            "MATH",
            "MAX",
            "MD5",
            "MESSAGE",
            "MESSAGE_DATA",
            "MIN",
            "MIXMONITOR",
            "MUTEAUDIO",
            "PASSTHRU",
            "PITCH_SHIFT",
            "POP",
            "PUSH",
            "QUOTE",
            "RAND",
            "RECORDING_INFO",
            "REDIRECTING",
            "REGEX",
            "REPLACE",
            "RTRIM",
            "SAYFILES",
            "SHA1",
            "SHIFT",
            "SORT",
            "SPEECH",
            "SPEECH_ENGINE",
            "SPEECH_GRAMMAR",
            "SPEECH_RESULTS_TYPE",
            "SPEECH_SCORE",
            "SPEECH_TEXT",
            "SPRINTF",
            "STACK_PEEK",
            "STRBETWEEN",
            "STRFTIME",
            "STRPTIME",
            "STRREPLACE",
            "TALK_DETECT",
            "TESTTIME",
            "TIMEOUT",
            "TOLOWER",
            "TONE_DETECT",
            "TOUPPER",
            "TRIM",
            "UNSHIFT",
            "URIDECODE",
            "URIENCODE",
            "UUID",
            "VARIABLE_EXISTS",
            "VERSION",
            "VOLUME",
        ],
    ),
    (
        Reach::Shared,
        &[
            "AGENT",
            "CHANNELS",
            "CHANNEL_EXISTS",
            "CONFBRIDGE_CHANNELS",
            "CONFBRIDGE_INFO",
            "DEVICE_STATE",
            "DIALGROUP",
            "DIALPLAN_EXISTS",
            "EXPORT",
            "EXTENSION_STATE",
            "GLOBAL",
            "GLOBAL_DELETE",
            "GLOBAL_EXISTS",
            "GROUP",
            "GROUP_COUNT",
            "GROUP_LIST",
            "GROUP_MATCH_COUNT",
            "HINT",
            "IMPORT",
            "LOCK",
            "MASTER_CHANNEL",
            "PARK_GET_CHANNEL",
            "PERIODIC_HOOK",
            "PRESENCE_STATE",
            "QUEUE_EXISTS",
            "QUEUE_GET_CHANNEL",
            "QUEUE_MEMBER",
            "QUEUE_MEMBER_COUNT",
            "QUEUE_MEMBER_LIST",
            "QUEUE_MEMBER_PENALTY",
            "QUEUE_VARIABLES",
            "QUEUE_WAITING_COUNT",
            "SHARED",
            "TRYLOCK",
            "UNLOCK",
            "VALID_EXTEN",
            "VMCOUNT",
        ],
    ),
];

/// The reach of a dialplan function (names are case-sensitive in Asterisk, upper case).
pub fn function_reach(name: &str) -> Reach {
    FUNCTIONS
        .iter()
        .find(|(_, names)| names.contains(&name))
        .map(|(reach, _)| *reach)
        .unwrap_or(Reach::System)
}

/// What an application's arguments are, where the proxy must read into them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppArgs {
    /// Plain arguments (after Asterisk's substitution, which restricted users cannot use).
    Plain,
    /// The first argument is a variable name the application sets (`Read(var,...)`).
    SetsVariable,
    /// `name=value` (Set: one assignment, split at the first `=`).
    Assignment,
    /// `name=value,...` (MSet).
    Assignments,
}

/// Applications by reach, with how to read their arguments. Applications not named here
/// reach [`Reach::System`].
const APPLICATIONS: &[(&str, Reach, AppArgs)] = &[
    // Own: play, wait, answer, signal on the channel being originated.
    ("Answer", Reach::Own, AppArgs::Plain),
    ("BackgroundDetect", Reach::Own, AppArgs::Plain),
    ("Busy", Reach::Own, AppArgs::Plain),
    ("Congestion", Reach::Own, AppArgs::Plain),
    ("ControlPlayback", Reach::Own, AppArgs::Plain),
    ("DateTime", Reach::Own, AppArgs::Plain),
    ("Echo", Reach::Own, AppArgs::Plain),
    ("Hangup", Reach::Own, AppArgs::Plain),
    ("HangupCauseClear", Reach::Own, AppArgs::Plain),
    ("Milliwatt", Reach::Own, AppArgs::Plain),
    ("Morsecode", Reach::Own, AppArgs::Plain),
    ("MSet", Reach::Own, AppArgs::Assignments),
    ("MusicOnHold", Reach::Own, AppArgs::Plain),
    ("NoOp", Reach::Own, AppArgs::Plain),
    ("Playback", Reach::Own, AppArgs::Plain),
    ("PlayTones", Reach::Own, AppArgs::Plain),
    ("Proceeding", Reach::Own, AppArgs::Plain),
    ("Progress", Reach::Own, AppArgs::Plain),
    ("Read", Reach::Own, AppArgs::SetsVariable),
    ("ReceiveMF", Reach::Own, AppArgs::SetsVariable),
    ("ReceiveSF", Reach::Own, AppArgs::SetsVariable),
    ("ReceiveText", Reach::Own, AppArgs::SetsVariable),
    ("Ringing", Reach::Own, AppArgs::Plain),
    ("SayAlpha", Reach::Own, AppArgs::Plain),
    ("SayAlphaCase", Reach::Own, AppArgs::Plain),
    ("SayDigits", Reach::Own, AppArgs::Plain),
    ("SayMoney", Reach::Own, AppArgs::Plain),
    ("SayNumber", Reach::Own, AppArgs::Plain),
    ("SayOrdinal", Reach::Own, AppArgs::Plain),
    ("SayPhonetic", Reach::Own, AppArgs::Plain),
    ("SayUnixTime", Reach::Own, AppArgs::Plain),
    ("SendDTMF", Reach::Own, AppArgs::Plain),
    ("SendMF", Reach::Own, AppArgs::Plain),
    ("SendSF", Reach::Own, AppArgs::Plain),
    ("SendText", Reach::Own, AppArgs::Plain),
    ("Set", Reach::Own, AppArgs::Assignment),
    ("StartMusicOnHold", Reach::Own, AppArgs::Plain),
    ("StopMusicOnHold", Reach::Own, AppArgs::Plain),
    ("StopPlayTones", Reach::Own, AppArgs::Plain),
    ("StreamEcho", Reach::Own, AppArgs::Plain),
    ("ToneScan", Reach::Own, AppArgs::Plain),
    ("Verbose", Reach::Own, AppArgs::Plain),
    ("Wait", Reach::Own, AppArgs::Plain),
    ("WaitDigit", Reach::Own, AppArgs::Plain),
    ("WaitForNoise", Reach::Own, AppArgs::Plain),
    ("WaitForRing", Reach::Own, AppArgs::Plain),
    ("WaitForSilence", Reach::Own, AppArgs::Plain),
    ("WaitForTone", Reach::Own, AppArgs::Plain),
    ("WaitUntil", Reach::Own, AppArgs::Plain),
    ("Zapateller", Reach::Own, AppArgs::Plain),
    // Shared: reach other channels, queues, conferences, parking lots, other contexts.
    ("AddQueueMember", Reach::Shared, AppArgs::Plain),
    ("AgentLogin", Reach::Shared, AppArgs::Plain),
    ("AgentRequest", Reach::Shared, AppArgs::Plain),
    ("AttendedTransfer", Reach::Shared, AppArgs::Plain),
    ("BackGround", Reach::Shared, AppArgs::Plain),
    ("BlindTransfer", Reach::Shared, AppArgs::Plain),
    ("Bridge", Reach::Shared, AppArgs::Plain),
    ("BridgeAdd", Reach::Shared, AppArgs::Plain),
    ("BridgeWait", Reach::Shared, AppArgs::Plain),
    ("Broadcast", Reach::Shared, AppArgs::Plain),
    ("ChanIsAvail", Reach::Shared, AppArgs::Plain),
    ("ChannelRedirect", Reach::Shared, AppArgs::Plain),
    ("ChanSpy", Reach::Shared, AppArgs::Plain),
    ("ConfBridge", Reach::Shared, AppArgs::Plain),
    ("ConfKick", Reach::Shared, AppArgs::Plain),
    ("Dial", Reach::Shared, AppArgs::Plain),
    ("Directory", Reach::Shared, AppArgs::Plain),
    ("ExtenSpy", Reach::Shared, AppArgs::Plain),
    ("Gosub", Reach::Shared, AppArgs::Plain),
    ("Goto", Reach::Shared, AppArgs::Plain),
    ("MessageSend", Reach::Shared, AppArgs::Plain),
    ("Page", Reach::Shared, AppArgs::Plain),
    ("Park", Reach::Shared, AppArgs::Plain),
    ("ParkAndAnnounce", Reach::Shared, AppArgs::Plain),
    ("ParkedCall", Reach::Shared, AppArgs::Plain),
    ("PauseQueueMember", Reach::Shared, AppArgs::Plain),
    ("Pickup", Reach::Shared, AppArgs::Plain),
    ("PickupChan", Reach::Shared, AppArgs::Plain),
    ("Queue", Reach::Shared, AppArgs::Plain),
    ("QueueLog", Reach::Shared, AppArgs::Plain),
    ("QueueUpdate", Reach::Shared, AppArgs::Plain),
    ("ReadExten", Reach::Shared, AppArgs::Plain),
    ("RemoveQueueMember", Reach::Shared, AppArgs::Plain),
    ("RetryDial", Reach::Shared, AppArgs::Plain),
    ("SLAStation", Reach::Shared, AppArgs::Plain),
    ("SLATrunk", Reach::Shared, AppArgs::Plain),
    ("SoftHangup", Reach::Shared, AppArgs::Plain),
    ("Transfer", Reach::Shared, AppArgs::Plain),
    ("UnpauseQueueMember", Reach::Shared, AppArgs::Plain),
    ("UserEvent", Reach::Shared, AppArgs::Plain),
    ("WaitExten", Reach::Shared, AppArgs::Plain),
];

/// Applications a user without `system` may Originate when the policy names none: they only
/// play to, wait on, or signal the channel being originated.
pub const DEFAULT_APPLICATIONS: &[&str] = &[
    "Answer",
    "Busy",
    "Congestion",
    "DateTime",
    "Echo",
    "Hangup",
    "Milliwatt",
    "Morsecode",
    "MusicOnHold",
    "NoOp",
    "Playback",
    "PlayTones",
    "Progress",
    "Ringing",
    "SayAlpha",
    "SayDigits",
    "SayNumber",
    "SayPhonetic",
    "SendDTMF",
    "Wait",
];

/// An application's reach and how to read its arguments (names are case-insensitive).
pub fn application(name: &str) -> (Reach, AppArgs) {
    APPLICATIONS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, reach, args)| (*reach, *args))
        .unwrap_or((Reach::System, AppArgs::Plain))
}

/// Whether `s` holds syntax Asterisk's substitution evaluates: `${...}` or `$[...]`.
pub fn has_expression(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && (w[1] == b'{' || w[1] == b'['))
}

/// The most arguments `AST_STANDARD_APP_ARGS` splits into for the lists the proxy reads
/// (Asterisk's arrays hold 64; the last takes the unsplit rest). Longer lists are refused.
pub const MAX_ARGS: usize = 63;

/// Splits `s` as Asterisk's `AST_STANDARD_APP_ARGS` does (`__ast_app_separate_args` with
/// `remove_chars`): at `delim` outside parentheses, square brackets and double quotes;
/// quotes removed; a backslash makes the next character literal. `None` when the list is
/// longer than [`MAX_ARGS`], where Asterisk stops splitting, or ends in a backslash.
pub fn separate_args(s: &str, delim: char) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let (mut paren, mut bracket, mut quote) = (0usize, 0usize, false);
    let mut chars = s.chars();
    let mut ended_on_delim = false;
    while let Some(c) = chars.next() {
        ended_on_delim = false;
        match c {
            '(' => {
                paren += 1;
                cur.push(c);
            }
            ')' => {
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
            '"' if delim != '"' => quote = !quote,
            // A trailing backslash makes Asterisk step past the end of its buffer: refused.
            '\\' => cur.push(chars.next()?),
            c if c == delim && paren == 0 && bracket == 0 && !quote => {
                args.push(std::mem::take(&mut cur));
                ended_on_delim = true;
                if args.len() >= MAX_ARGS {
                    return None;
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() || ended_on_delim {
        args.push(cur);
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
        assert_eq!(function_reach("IMPORT"), Reach::Shared);
        assert_eq!(function_reach("CALLERID"), Reach::Own);
        assert_eq!(function_reach("NO_SUCH_FUNC"), Reach::System);
        assert_eq!(application("system").0, Reach::System);
        assert_eq!(application("TryExec").0, Reach::System);
        assert_eq!(application("chanspy").0, Reach::Shared);
        assert_eq!(application("wait"), (Reach::Own, AppArgs::Plain));
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
