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
/// cannot know what a module's function does, so only trusted users may call it. That
/// includes every function whose argument is a variable NAME (`CUT`, `FIELDQTY`, `PUSH`,
/// `ARRAY`, `INC`, `IMPORT`, `MASTER_CHANNEL`, ...): Asterisk substitutes `${name}` or writes
/// `name` as a variable, and a name ending in `)` is itself a function call, so
/// `CUT(AST_CONFIG(manager.conf,proxy,secret),|,1)` would reach what `CUT` itself cannot.
/// `CHANNEL` and `FEATURE*` are shared: their writes send a channel into any context
/// (`hangup_handler_push`, `after_bridge_goto`) or arm features (automixmon).
const FUNCTIONS: &[(Reach, &[&str])] = &[
    (
        Reach::Own,
        &[
            "ABS",
            "AES_DECRYPT",
            "AES_ENCRYPT",
            "BASE64_DECODE",
            "BASE64_ENCODE",
            "BASENAME",
            "CALLCOMPLETION",
            "CALLERID",
            "CDR",
            "CDR_PROP",
            "CONFBRIDGE",
            "CONNECTEDLINE",
            "CSV_QUOTE",
            "DIGIT_SUM",
            "DIRNAME",
            "EXISTS",
            "FAXOPT",
            "FILTER",
            "FRAME_DROP",
            "FRAME_TRACE",
            "HANGUPCAUSE",
            "HANGUPCAUSE_KEYS",
            "HOLD_INTERCEPT",
            "ICONV",
            "IF",
            "IFTIME",
            "ISNULL",
            "JITTERBUFFER",
            "KEYPADHASH",
            "LEN",
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
            "QUOTE",
            "RAND",
            "RECORDING_INFO",
            "REDIRECTING",
            "REGEX",
            "RTRIM",
            "SAYFILES",
            "SHA1",
            "SORT",
            "SPEECH",
            "SPEECH_ENGINE",
            "SPEECH_GRAMMAR",
            "SPEECH_RESULTS_TYPE",
            "SPEECH_SCORE",
            "SPEECH_TEXT",
            "SPRINTF",
            "STACK_PEEK",
            "STRFTIME",
            "STRPTIME",
            "TALK_DETECT",
            "TESTTIME",
            "TIMEOUT",
            "TOLOWER",
            "TONE_DETECT",
            "TOUPPER",
            "TRIM",
            "URIDECODE",
            "URIENCODE",
            "UUID",
            "VERSION",
            "VOLUME",
        ],
    ),
    (
        Reach::Shared,
        &[
            "AGENT",
            "CHANNEL",
            "CHANNELS",
            "CHANNEL_EXISTS",
            "CONFBRIDGE_CHANNELS",
            "CONFBRIDGE_INFO",
            "DEVICE_STATE",
            "DIALGROUP",
            "DIALPLAN_EXISTS",
            "EXPORT",
            "EXTENSION_STATE",
            "FEATURE",
            "FEATUREMAP",
            "GLOBAL",
            "GLOBAL_DELETE",
            "GLOBAL_EXISTS",
            "GROUP",
            "GROUP_COUNT",
            "GROUP_LIST",
            "GROUP_MATCH_COUNT",
            "HINT",
            "LOCK",
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

/// Which of an application's arguments (comma-separated, by position) the proxy must read
/// into; the rest are plain (after Asterisk's substitution, which restricted users cannot
/// use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppArgs {
    /// A variable name the application sets (`Read(var,...)`): judged as a variable name.
    pub variable: Option<usize>,
    /// `&`-separated sound file names the application plays: names, not paths.
    pub files: Option<usize>,
    /// A channel the application acts on (`SendDTMF(digits,,,channel)`).
    pub channel: Option<usize>,
    /// A say-format whose `'quoted'` parts are sound files played as they are
    /// (`DateTime(time,zone,format)`).
    pub quoted_files: Option<usize>,
    pub assign: Assign,
}

/// Assignments in an application's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assign {
    No,
    /// `name=value`, split at the first `=` (Set).
    One,
    /// `name=value,...` (MSet).
    Many,
}

impl AppArgs {
    pub const PLAIN: AppArgs = AppArgs {
        variable: None,
        files: None,
        channel: None,
        quoted_files: None,
        assign: Assign::No,
    };

    const fn quoted_files(i: usize) -> AppArgs {
        AppArgs {
            quoted_files: Some(i),
            ..AppArgs::PLAIN
        }
    }

    const fn files(i: usize) -> AppArgs {
        AppArgs {
            files: Some(i),
            ..AppArgs::PLAIN
        }
    }

    const fn variable(i: usize) -> AppArgs {
        AppArgs {
            variable: Some(i),
            ..AppArgs::PLAIN
        }
    }

    const fn channel(i: usize) -> AppArgs {
        AppArgs {
            channel: Some(i),
            ..AppArgs::PLAIN
        }
    }

    const fn assign(assign: Assign) -> AppArgs {
        AppArgs {
            assign,
            ..AppArgs::PLAIN
        }
    }
}

/// Applications by reach, with how to read their arguments. Applications not named here
/// reach [`Reach::System`].
const APPLICATIONS: &[(&str, Reach, AppArgs)] = &[
    // Own: play, wait, answer, signal on the channel being originated.
    ("Answer", Reach::Own, AppArgs::PLAIN),
    ("BackgroundDetect", Reach::Own, AppArgs::files(0)),
    ("Busy", Reach::Own, AppArgs::PLAIN),
    ("Congestion", Reach::Own, AppArgs::PLAIN),
    ("ControlPlayback", Reach::Own, AppArgs::files(0)),
    ("DateTime", Reach::Own, AppArgs::quoted_files(2)),
    ("Echo", Reach::Own, AppArgs::PLAIN),
    ("Hangup", Reach::Own, AppArgs::PLAIN),
    ("HangupCauseClear", Reach::Own, AppArgs::PLAIN),
    ("Milliwatt", Reach::Own, AppArgs::PLAIN),
    ("Morsecode", Reach::Own, AppArgs::PLAIN),
    ("MSet", Reach::Own, AppArgs::assign(Assign::Many)),
    ("MusicOnHold", Reach::Own, AppArgs::PLAIN),
    ("NoOp", Reach::Own, AppArgs::PLAIN),
    ("Playback", Reach::Own, AppArgs::files(0)),
    ("PlayTones", Reach::Own, AppArgs::PLAIN),
    ("Proceeding", Reach::Own, AppArgs::PLAIN),
    ("Progress", Reach::Own, AppArgs::PLAIN),
    (
        "Read",
        Reach::Own,
        AppArgs {
            variable: Some(0),
            files: Some(1),
            ..AppArgs::PLAIN
        },
    ),
    ("ReceiveMF", Reach::Own, AppArgs::variable(0)),
    ("ReceiveSF", Reach::Own, AppArgs::variable(0)),
    ("ReceiveText", Reach::Own, AppArgs::variable(0)),
    ("Ringing", Reach::Own, AppArgs::PLAIN),
    ("SayAlpha", Reach::Own, AppArgs::PLAIN),
    ("SayAlphaCase", Reach::Own, AppArgs::PLAIN),
    ("SayDigits", Reach::Own, AppArgs::PLAIN),
    ("SayMoney", Reach::Own, AppArgs::PLAIN),
    ("SayNumber", Reach::Own, AppArgs::PLAIN),
    ("SayOrdinal", Reach::Own, AppArgs::PLAIN),
    ("SayPhonetic", Reach::Own, AppArgs::PLAIN),
    ("SayUnixTime", Reach::Own, AppArgs::quoted_files(2)),
    ("SendDTMF", Reach::Own, AppArgs::channel(3)),
    ("SendMF", Reach::Own, AppArgs::channel(5)),
    ("SendSF", Reach::Own, AppArgs::channel(2)),
    ("SendText", Reach::Own, AppArgs::PLAIN),
    ("Set", Reach::Own, AppArgs::assign(Assign::One)),
    ("StartMusicOnHold", Reach::Own, AppArgs::PLAIN),
    ("StopMusicOnHold", Reach::Own, AppArgs::PLAIN),
    ("StopPlayTones", Reach::Own, AppArgs::PLAIN),
    ("StreamEcho", Reach::Own, AppArgs::PLAIN),
    ("ToneScan", Reach::Own, AppArgs::PLAIN),
    ("Verbose", Reach::Own, AppArgs::PLAIN),
    ("Wait", Reach::Own, AppArgs::PLAIN),
    ("WaitDigit", Reach::Own, AppArgs::PLAIN),
    ("WaitForNoise", Reach::Own, AppArgs::PLAIN),
    ("WaitForRing", Reach::Own, AppArgs::PLAIN),
    ("WaitForSilence", Reach::Own, AppArgs::PLAIN),
    ("WaitForTone", Reach::Own, AppArgs::PLAIN),
    ("WaitUntil", Reach::Own, AppArgs::PLAIN),
    ("Zapateller", Reach::Own, AppArgs::PLAIN),
    // Shared: reach other channels, queues, conferences, parking lots, other contexts.
    ("AddQueueMember", Reach::Shared, AppArgs::PLAIN),
    ("AgentLogin", Reach::Shared, AppArgs::PLAIN),
    ("AgentRequest", Reach::Shared, AppArgs::PLAIN),
    ("AttendedTransfer", Reach::Shared, AppArgs::PLAIN),
    ("BackGround", Reach::Shared, AppArgs::PLAIN),
    ("BlindTransfer", Reach::Shared, AppArgs::PLAIN),
    ("Bridge", Reach::Shared, AppArgs::PLAIN),
    ("BridgeAdd", Reach::Shared, AppArgs::PLAIN),
    ("BridgeWait", Reach::Shared, AppArgs::PLAIN),
    ("Broadcast", Reach::Shared, AppArgs::PLAIN),
    ("ChanIsAvail", Reach::Shared, AppArgs::PLAIN),
    ("ChannelRedirect", Reach::Shared, AppArgs::PLAIN),
    ("ChanSpy", Reach::Shared, AppArgs::PLAIN),
    ("ConfBridge", Reach::Shared, AppArgs::PLAIN),
    ("ConfKick", Reach::Shared, AppArgs::PLAIN),
    ("Dial", Reach::Shared, AppArgs::PLAIN),
    ("Directory", Reach::Shared, AppArgs::PLAIN),
    ("ExtenSpy", Reach::Shared, AppArgs::PLAIN),
    ("Gosub", Reach::Shared, AppArgs::PLAIN),
    ("Goto", Reach::Shared, AppArgs::PLAIN),
    ("MessageSend", Reach::Shared, AppArgs::PLAIN),
    ("Page", Reach::Shared, AppArgs::PLAIN),
    ("Park", Reach::Shared, AppArgs::PLAIN),
    ("ParkAndAnnounce", Reach::Shared, AppArgs::PLAIN),
    ("ParkedCall", Reach::Shared, AppArgs::PLAIN),
    ("PauseQueueMember", Reach::Shared, AppArgs::PLAIN),
    ("Pickup", Reach::Shared, AppArgs::PLAIN),
    ("PickupChan", Reach::Shared, AppArgs::PLAIN),
    ("Queue", Reach::Shared, AppArgs::PLAIN),
    ("QueueLog", Reach::Shared, AppArgs::PLAIN),
    ("QueueUpdate", Reach::Shared, AppArgs::PLAIN),
    ("ReadExten", Reach::Shared, AppArgs::PLAIN),
    ("RemoveQueueMember", Reach::Shared, AppArgs::PLAIN),
    ("RetryDial", Reach::Shared, AppArgs::PLAIN),
    ("SLAStation", Reach::Shared, AppArgs::PLAIN),
    ("SLATrunk", Reach::Shared, AppArgs::PLAIN),
    ("SoftHangup", Reach::Shared, AppArgs::PLAIN),
    ("Transfer", Reach::Shared, AppArgs::PLAIN),
    ("UnpauseQueueMember", Reach::Shared, AppArgs::PLAIN),
    ("UserEvent", Reach::Shared, AppArgs::PLAIN),
    ("WaitExten", Reach::Shared, AppArgs::PLAIN),
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
        .unwrap_or((Reach::System, AppArgs::PLAIN))
}

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
